//! Image preprocessing shared by training's data cache and inference: decode, orient,
//! resize to the network's square input, and normalise.
//!
//! Both sides call [`decode_resized`], so the pixels a network is trained on and the pixels
//! it predicts on come from the same code.

use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::card::InputSpec;
use crate::Error;

/// Decodes an encoded image (JPEG, PNG, BMP, WebP), applies its EXIF orientation, converts it
/// to 8-bit RGB and resizes it to `size` x `size` with a bilinear filter.
///
/// `path` only names the source in errors.
pub fn decode_resized(bytes: &[u8], size: u32, path: &Path) -> Result<RgbImage, Error> {
    let fail = |reason: String| Error::Image {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(fail("empty file".into()));
    }
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| fail(e.to_string()))?;
    if reader.format().is_none() {
        return Err(fail("not a supported image (JPEG, PNG, BMP, WebP)".into()));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| fail(format!("cannot decode: {e}")))?;
    let orientation = decoder
        .orientation()
        .map_err(|e| fail(format!("cannot read orientation: {e}")))?;
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| fail(format!("cannot decode: {e}")))?;
    image.apply_orientation(orientation);
    let rgb = image.into_rgb8();
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(fail("image has no pixels".into()));
    }
    Ok(image::imageops::resize(
        &rgb,
        size,
        size,
        image::imageops::FilterType::Triangle,
    ))
}

/// Reads and preprocesses an image file, see [`decode_resized`].
pub fn load_resized(path: &Path, size: u32) -> Result<RgbImage, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_resized(&bytes, size, path)
}

/// Writes `image` as normalised planar (CHW) floats into `out`, which must hold
/// `3 * width * height` values: `(pixel / 255 - mean[c]) / std[c]`.
pub fn normalise_into(image: &RgbImage, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let plane = (image.width() * image.height()) as usize;
    assert_eq!(out.len(), 3 * plane, "output buffer size");
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (pixel[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
}

/// The network input for one image file under `spec`, as CHW floats.
pub fn load_input(path: &Path, spec: &InputSpec) -> Result<Vec<f32>, Error> {
    let image = load_resized(path, spec.size)?;
    let mut out = vec![0.0; 3 * (spec.size * spec.size) as usize];
    normalise_into(&image, spec.mean, spec.std, &mut out);
    Ok(out)
}
