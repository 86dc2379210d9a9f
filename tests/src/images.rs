//! Test images in memory and their encodings.

use image::{EncodableLayout, ImageBuffer, ImageEncoder, PixelWithColorType, RgbImage};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A PNG of `image` (any pixel type PNG can hold).
pub fn png<P: PixelWithColorType>(image: &ImageBuffer<P, Vec<P::Subpixel>>) -> Vec<u8>
where
    [P::Subpixel]: EncodableLayout,
{
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            image.as_raw().as_bytes(),
            image.width(),
            image.height(),
            P::COLOR_TYPE,
        )
        .expect("PNG encoding of an image in memory");
    out
}

/// A JPEG of `image` at `quality` (1 to 100).
pub fn jpeg(image: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(image)
        .expect("JPEG encoding of an image in memory");
    out
}

/// A `side` x `side` image of colour `base` with uniform noise of up to 60 added to each
/// channel, drawn from `rng`.
pub fn noisy_square(side: u32, base: [u8; 3], rng: &mut ChaCha8Rng) -> RgbImage {
    RgbImage::from_fn(side, side, |_, _| {
        image::Rgb(base.map(|c| c.saturating_add(rng.random_range(0..60))))
    })
}
