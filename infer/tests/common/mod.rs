//! Shared helpers of hands-infer's integration tests: fixtures, the sample, bad files, and
//! the skip-or-fail rule for ONNX Runtime.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use hands_tests::images::{jpeg, png};

use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};

/// The `hands-infer` binary with `args`, without `$HANDS_MODEL`, ready to run.
pub fn hands_infer_command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hands-infer"));
    command.args(args).env_remove("HANDS_MODEL");
    command
}

/// Runs the `hands-infer` binary with `args`, without `$HANDS_MODEL`.
pub fn hands_infer<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Output {
    hands_infer_command(args).output().unwrap()
}

/// A process output as text (lossily).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A committed fixture model.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Whether ONNX Runtime can be loaded. When it cannot, prints a notice and returns false
/// (the caller skips), except under `CI=true`, where it fails the test.
pub fn have_ort(test: &str) -> bool {
    hands_tests::available(test, "ONNX Runtime", hands_infer::runtime::runtime(None))
}

/// The shared 11K Hands sample's image folder ([`hands_tests::sample_dir`]: a notice naming
/// `test` when absent, a failure under `CI=true`).
pub fn sample_images(test: &str) -> Option<PathBuf> {
    let Some(sample) = hands_tests::sample_dir() else {
        eprintln!("SKIPPED {test}");
        return None;
    };
    let images = sample.join("images");
    assert!(
        images.is_dir(),
        "{test}: no images folder at {}",
        images.display()
    );
    Some(images)
}

/// The first `n` sample images, sorted.
pub fn first_images(dir: &Path, n: usize) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files.truncate(n);
    files
}

fn photo(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 7 % 256) as u8,
            (y * 5 % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    })
}

/// Inserts an EXIF APP1 segment with the given orientation after the SOI marker.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Files every image kind must survive, by name; the bad ones with the text their error
/// must contain.
pub struct Zoo {
    /// Names of files that must be predicted.
    pub good: Vec<&'static str>,
    /// Names of files that must get an error row, with a fragment of the reason.
    pub bad: Vec<(&'static str, &'static str)>,
}

/// Writes the zoo into `dir`: good files in every supported kind, and one file per bad kind.
pub fn write_zoo(dir: &Path) -> Zoo {
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    let big = jpeg(&photo(400, 300), 90);
    write("photo.jpg", &big);
    write("rotated.jpg", &with_exif_orientation(&big, 6));
    let gray = GrayImage::from_fn(60, 40, |x, _| Luma([(x * 4) as u8]));
    let mut gray_jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut gray_jpeg, 90)
        .encode_image(&gray)
        .unwrap();
    write("gray.jpg", &gray_jpeg);
    write("gray.png", &png(&gray));
    write(
        "rgba.png",
        &png(&RgbaImage::from_fn(50, 50, |x, y| {
            Rgba([x as u8, y as u8, 9, 128])
        })),
    );
    let deep: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(50, 30, |x, y| {
        Rgb([x as u16 * 1000, y as u16 * 2000, 40000])
    });
    write("deep16.png", &png(&deep));
    let mut bmp = Vec::new();
    image::codecs::bmp::BmpEncoder::new(&mut bmp)
        .encode(
            photo(30, 20).as_raw(),
            30,
            20,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    write("photo.bmp", &bmp);
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .encode(
            photo(30, 20).as_raw(),
            30,
            20,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    write("photo.webp", &webp);
    write("truncated.jpg", &big[..big.len() / 2]);
    let mut corrupt = big[..big.len() / 3].to_vec();
    corrupt.extend_from_slice(&[0xFF, 0xD9]);
    write("corrupt.jpg", &corrupt);
    write("empty.jpg", b"");
    write(
        "notes.jpg",
        b"these are not the pixels you are looking for\n",
    );
    write("truncated.png", &png(&photo(40, 40))[..50]);
    Zoo {
        good: vec![
            "deep16.png",
            "gray.jpg",
            "gray.png",
            "photo.bmp",
            "photo.jpg",
            "photo.webp",
            "rgba.png",
            "rotated.jpg",
        ],
        bad: vec![
            ("corrupt.jpg", "corrupt JPEG"),
            ("empty.jpg", "empty file"),
            ("notes.jpg", "not a supported image"),
            ("truncated.jpg", "truncated JPEG"),
            ("truncated.png", "cannot decode"),
        ],
    }
}

/// A 40x30 PNG photo (a colour gradient) written to `dir/name`.
pub fn photo_png(dir: &Path, name: impl AsRef<Path>) -> PathBuf {
    photo_png_sized(dir, name, 40, 30)
}

/// A `width` x `height` PNG photo (a colour gradient) written to `dir/name`.
pub fn photo_png_sized(dir: &Path, name: impl AsRef<Path>, width: u32, height: u32) -> PathBuf {
    let path = dir.join(name);
    let image = RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x * 5) as u8, (y * 7) as u8, 90])
    });
    std::fs::write(&path, png(&image)).unwrap();
    path
}
