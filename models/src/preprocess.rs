//! Image preprocessing shared by training's data cache and inference: decode, orient,
//! resize to the network's square input, and normalise.
//!
//! Both sides call [`decode_resized`], so the pixels a network is trained on and the pixels
//! it predicts on come from the same code.
//!
//! Decoding dominates the cost of predicting on photos, so the path was chosen by
//! measurement. Bringing a 1600x1200 JPEG to 64x64 on one core took ~20 ms with a full
//! `image` decode and triangle resize, ~8 ms with `jpeg-decoder` at 1/8 scale, ~1.5 ms with
//! libjpeg-turbo at 1/8 scale, against ~2 ms for Pillow's `draft()`. Hence:
//!
//! - JPEG: libjpeg-turbo decodes at the smallest DCT scale (1/8, 1/4, 1/2 or 1) that keeps
//!   both sides at least the input size, see `jpeg`.
//! - PNG, BMP, WebP (and CMYK JPEGs): the `image` crate decodes at full size.
//! - Then the EXIF orientation is applied and the image is stretched to a square with a
//!   bilinear (triangle) filter by `fast_image_resize`.
//!
//! Everything sized by the input is bounded before it is allocated: only regular files of at
//! most [`MAX_FILE_BYTES`] are read ([`read_image_file`]), and an image whose header claims
//! more than [`MAX_PIXELS`] is refused before any pixel is decoded.

use std::cell::RefCell;
use std::io::Read;
use std::path::Path;

use fast_image_resize as fir;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::card::InputSpec;
use crate::Error;

mod jpeg;

/// The pixel budget: the most pixels (width x height, from the header) an image may have.
///
/// 40 megapixels (e.g. 7746 x 5164) is twenty times a 1600 x 1200 hand photo and above a
/// 24-megapixel camera's photos. It bounds the memory of one decode: a PNG, BMP or WebP is
/// decoded at full size (at most 8 bytes a pixel, 16-bit RGBA, plus 3 for the RGB copy:
/// 440 MB), a progressive JPEG keeps its DCT coefficients (at most 6 bytes a pixel); a
/// baseline JPEG needs only its reduced output. Each decoding thread holds at most one.
pub const MAX_PIXELS: u64 = 40_000_000;

/// The largest image file read, in bytes: an uncompressed 32-bit BMP at the pixel budget
/// ([`MAX_PIXELS`] x 4 bytes) plus 1 MiB of headers and metadata. A larger file is refused
/// from its size alone, before anything is read.
pub const MAX_FILE_BYTES: u64 = MAX_PIXELS * 4 + (1 << 20);

/// Reads an image file, refusing anything that is not a regular file after following
/// symlinks (a FIFO, a device, a socket or a folder, which could block or never end) and any
/// file larger than [`MAX_FILE_BYTES`] (by its size, and by reading at most one byte more in
/// case it grows).
pub fn read_image_file(path: &Path) -> Result<Vec<u8>, Error> {
    let fail = |reason: String| Error::Image {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !metadata.is_file() {
        return Err(fail(format!(
            "not a regular file ({}); only image files are read",
            file_kind(&metadata.file_type())
        )));
    }
    let too_large = |size: u64| {
        fail(format!(
            "the file is {size} bytes, more than the {MAX_FILE_BYTES}-byte maximum image file size"
        ))
    };
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large(metadata.len()));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// What kind of file system entry `kind` is, in words.
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a folder"
    } else {
        "not a plain file"
    }
}

/// Refuses an image whose header dimensions exceed the pixel budget [`MAX_PIXELS`].
fn check_pixels(width: u64, height: u64) -> Result<(), String> {
    let pixels = width * height;
    if pixels > MAX_PIXELS {
        return Err(format!(
            "the image is {width} x {height} pixels ({:.1} megapixels), more than the {} megapixel budget",
            pixels as f64 / 1e6,
            MAX_PIXELS / 1_000_000
        ));
    }
    Ok(())
}

/// Decodes an encoded image (JPEG, PNG, BMP, WebP), applies its EXIF orientation, converts it
/// to 8-bit RGB and resizes it to `size` x `size` with a bilinear filter.
///
/// Grayscale images are replicated to three channels, alpha is dropped and 16-bit samples
/// are reduced to 8 bits. JPEGs are decoded at a reduced DCT scale when that still leaves at
/// least `size` pixels on each side. An empty, truncated, corrupt or unsupported file is an
/// [`Error::Image`] naming `path`, which is only used in errors.
pub fn decode_resized(bytes: &[u8], size: u32, path: &Path) -> Result<RgbImage, Error> {
    let fail = |reason: String| Error::Image {
        path: path.to_path_buf(),
        reason,
    };
    if size == 0 {
        return Err(fail("requested size is zero".into()));
    }
    let rgb = decode_at_least(bytes, size).map_err(fail)?;
    resize_square(rgb, size).map_err(fail)
}

/// Decodes an encoded image to oriented 8-bit RGB, as [`decode_resized`] does before it
/// resizes: a JPEG at the smallest DCT scale that keeps both sides at least `min_size`
/// (`u32::MAX`: full size), anything else at full size. Errors name `path`.
pub fn decode_oriented(bytes: &[u8], min_size: u32, path: &Path) -> Result<RgbImage, Error> {
    decode_at_least(bytes, min_size).map_err(|reason| Error::Image {
        path: path.to_path_buf(),
        reason,
    })
}

/// Reads (see [`read_image_file`]) and preprocesses an image file, see [`decode_resized`].
pub fn load_resized(path: &Path, size: u32) -> Result<RgbImage, Error> {
    let bytes = read_image_file(path)?;
    decode_resized(&bytes, size, path)
}

/// Writes `image` as normalised planar (CHW) floats into `out`, which must hold
/// `3 * width * height` values: `(pixel / 255 - mean[c]) / std[c]`.
pub fn normalise_into(image: &RgbImage, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let plane = (image.width() * image.height()) as usize;
    assert_eq!(out.len(), 3 * plane, "output buffer size");
    // The same arithmetic per value as the formula above, done once per channel and level.
    let mut table = [[0f32; 256]; 3];
    for (c, row) in table.iter_mut().enumerate() {
        for (level, value) in row.iter_mut().enumerate() {
            *value = (level as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    let (red, rest) = out.split_at_mut(plane);
    let (green, blue) = rest.split_at_mut(plane);
    for (i, pixel) in image.as_raw().chunks_exact(3).enumerate() {
        red[i] = table[0][pixel[0] as usize];
        green[i] = table[1][pixel[1] as usize];
        blue[i] = table[2][pixel[2] as usize];
    }
}

/// The network input for one image file under `spec`, as CHW floats.
pub fn load_input(path: &Path, spec: &InputSpec) -> Result<Vec<f32>, Error> {
    let image = load_resized(path, spec.size)?;
    let mut out = vec![0.0; 3 * (spec.size * spec.size) as usize];
    normalise_into(&image, spec.mean, spec.std, &mut out);
    Ok(out)
}

/// The network input for an encoded image under `spec`, written as CHW floats into `out`
/// (`3 * size * size` values). `path` only names the source in errors.
pub fn decode_input_into(
    bytes: &[u8],
    spec: &InputSpec,
    path: &Path,
    out: &mut [f32],
) -> Result<(), Error> {
    let image = decode_resized(bytes, spec.size, path)?;
    normalise_into(&image, spec.mean, spec.std, out);
    Ok(())
}

/// Brings an already decoded image to the network's square input: orientation is the
/// caller's business; colour conversion and the same bilinear resize as [`decode_resized`].
pub fn resize_image(image: &DynamicImage, size: u32) -> Result<RgbImage, String> {
    if size == 0 {
        return Err("requested size is zero".into());
    }
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => rgb.clone(),
        other => other.to_rgb8(),
    };
    resize_square(rgb, size)
}

/// Decodes to oriented 8-bit RGB, at a reduced scale for JPEGs when that keeps both sides at
/// least `min_size`.
fn decode_at_least(bytes: &[u8], min_size: u32) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let format = image::guess_format(bytes)
        .map_err(|_| "not a supported image (JPEG, PNG, BMP, WebP)".to_string())?;
    match format {
        ImageFormat::Jpeg => match jpeg::decode_scaled(bytes, min_size)? {
            Some(rgb) => Ok(rgb),
            None => decode_full(bytes, format),
        },
        ImageFormat::Png | ImageFormat::Bmp | ImageFormat::WebP => decode_full(bytes, format),
        other => Err(format!(
            "{} images are not supported (JPEG, PNG, BMP, WebP are)",
            other
                .extensions_str()
                .first()
                .unwrap_or(&"these")
                .to_uppercase()
        )),
    }
}

/// Decodes at full size with the `image` crate, after checking the header's dimensions
/// against the pixel budget; the decoder's own allocations are capped at the budget's
/// largest image (16-bit RGBA).
fn decode_full(bytes: &[u8], format: ImageFormat) -> Result<RgbImage, String> {
    let mut reader = ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| format!("cannot decode: {e}"))?;
    let (width, height) = decoder.dimensions();
    check_pixels(width.into(), height.into())?;
    let orientation = decoder
        .orientation()
        .map_err(|e| format!("cannot read orientation: {e}"))?;
    let image = DynamicImage::from_decoder(decoder).map_err(|e| format!("cannot decode: {e}"))?;
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.into_rgb8(),
    };
    Ok(orient(rgb, orientation))
}

/// Applies an EXIF orientation.
fn orient(rgb: RgbImage, orientation: Orientation) -> RgbImage {
    if orientation == Orientation::NoTransforms {
        return rgb;
    }
    let mut image = DynamicImage::ImageRgb8(rgb);
    image.apply_orientation(orientation);
    image.into_rgb8()
}

thread_local! {
    /// Resizers keep scratch buffers and the detected CPU extensions; one per thread.
    static RESIZER: RefCell<fir::Resizer> = RefCell::new(fir::Resizer::new());
}

/// Stretches `rgb` to `size` x `size` with a bilinear (triangle) convolution whose support
/// grows with the reduction, so downscaling averages every source pixel.
fn resize_square(rgb: RgbImage, size: u32) -> Result<RgbImage, String> {
    let (width, height) = rgb.dimensions();
    if width == 0 || height == 0 {
        return Err("image has no pixels".into());
    }
    if (width, height) == (size, size) {
        return Ok(rgb);
    }
    let source =
        fir::images::Image::from_vec_u8(width, height, rgb.into_raw(), fir::PixelType::U8x3)
            .map_err(|e| format!("cannot resize: {e}"))?;
    let mut target = fir::images::Image::new(size, size, fir::PixelType::U8x3);
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
    RESIZER
        .with(|r| r.borrow_mut().resize(&source, &mut target, &options))
        .map_err(|e| format!("cannot resize: {e}"))?;
    RgbImage::from_raw(size, size, target.into_vec())
        .ok_or_else(|| "resized buffer has the wrong size".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hands_tests::images::png;
    use image::{GrayImage, Rgb, Rgba, RgbaImage};

    fn jpeg(image: &RgbImage) -> Vec<u8> {
        hands_tests::images::jpeg(image, 95)
    }

    fn gradient(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            Rgb([
                (x * 255 / width.max(1)) as u8,
                (y * 255 / height.max(1)) as u8,
                128,
            ])
        })
    }

    /// Inserts an EXIF APP1 segment holding only an orientation tag after the SOI marker.
    fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"II*\0");
        tiff.extend_from_slice(&8u32.to_le_bytes()); // first IFD offset
        tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_le_bytes()); // count
        tiff.extend_from_slice(&orientation.to_le_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
        let mut payload = b"Exif\0\0".to_vec();
        payload.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn decode(bytes: &[u8], size: u32) -> Result<RgbImage, Error> {
        decode_resized(bytes, size, Path::new("test.img"))
    }

    #[test]
    fn large_jpeg_is_decoded_reduced_and_close_to_a_full_decode() {
        let source = gradient(800, 600);
        let bytes = jpeg(&source);
        let fast = decode(&bytes, 32).unwrap();
        assert_eq!(fast.dimensions(), (32, 32));
        let reference = image::imageops::resize(
            &image::load_from_memory(&bytes).unwrap().to_rgb8(),
            32,
            32,
            image::imageops::FilterType::Triangle,
        );
        let worst = fast
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        assert!(worst <= 12, "reduced decode differs by {worst} levels");
    }

    #[test]
    fn exif_orientation_is_applied_to_jpegs() {
        // Left half red, right half blue; orientation 6 means "rotate 90 degrees clockwise
        // to display", so red ends up on top.
        let source = RgbImage::from_fn(64, 32, |x, _| {
            if x < 32 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let rotated = decode(&with_exif_orientation(&jpeg(&source), 6), 16).unwrap();
        let top = rotated.get_pixel(8, 1);
        let bottom = rotated.get_pixel(8, 14);
        assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");
        let plain = decode(&jpeg(&source), 16).unwrap();
        assert!(plain.get_pixel(1, 8)[0] > 200 && plain.get_pixel(14, 8)[2] > 200);
    }

    #[test]
    fn grayscale_rgba_and_16_bit_images_become_rgb() {
        let gray = GrayImage::from_fn(40, 30, |x, _| image::Luma([(x * 6) as u8]));
        let mut gray_jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut gray_jpeg, 95)
            .encode_image(&gray)
            .unwrap();
        for bytes in [png(&gray), gray_jpeg] {
            let out = decode(&bytes, 8).unwrap();
            assert!(out
                .pixels()
                .all(|p| p[0].abs_diff(p[1]) <= 1 && p[1].abs_diff(p[2]) <= 1));
        }
        let rgba = RgbaImage::from_pixel(10, 10, Rgba([10, 20, 30, 40]));
        assert_eq!(
            *decode(&png(&rgba), 4).unwrap().get_pixel(0, 0),
            Rgb([10, 20, 30])
        );
        let deep =
            image::ImageBuffer::<Rgb<u16>, Vec<u16>>::from_pixel(10, 10, Rgb([65535, 0, 32896]));
        assert_eq!(
            *decode(&png(&deep), 4).unwrap().get_pixel(2, 2),
            Rgb([255, 0, 128])
        );
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let good = jpeg(&gradient(200, 200));
        let truncated = &good[..good.len() / 2];
        let mut corrupt = good.clone();
        corrupt.truncate(400); // headers intact, most entropy data gone
        corrupt.extend_from_slice(&[0xFF, 0xD9]);
        let cases: [(&[u8], &str); 5] = [
            (b"", "empty"),
            (b"hello, I am text", "not a supported image"),
            (truncated, "truncated"),
            (&corrupt, "JPEG"),
            (&png(&gradient(50, 50))[..60], "cannot decode"),
        ];
        for (bytes, expected) in cases {
            let err = decode(bytes, 16).unwrap_err().to_string();
            assert!(err.starts_with("test.img: "), "{err}");
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
    }

    #[test]
    fn normalise_matches_the_formula() {
        let image = gradient(5, 3);
        let (mean, std) = ([0.5, 0.4, 0.3], [0.2, 0.25, 0.3]);
        let mut out = vec![0.0; 45];
        normalise_into(&image, mean, std, &mut out);
        for (i, p) in image.pixels().enumerate() {
            for c in 0..3 {
                assert_eq!(out[c * 15 + i], (p[c] as f32 / 255.0 - mean[c]) / std[c]);
            }
        }
    }

    #[test]
    fn small_images_are_upscaled_and_exact_sizes_kept() {
        let source = gradient(16, 16);
        assert_eq!(
            resize_image(&DynamicImage::ImageRgb8(source.clone()), 16).unwrap(),
            source
        );
        assert_eq!(decode(&png(&source), 40).unwrap().dimensions(), (40, 40));
    }
}
