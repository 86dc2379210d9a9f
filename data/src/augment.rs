//! Training-time augmentation of cached images: DARTS' CIFAR recipe (random crop with zero
//! padding, horizontal flip, cutout) and a recipe for photos of hands (random resized crop,
//! small rotation, flip, brightness / contrast / saturation jitter, cutout); either may add
//! a vertical flip, for hands that point up in some photos and down in others, and random
//! greyscale.

use std::fmt;

use image::RgbImage;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::ChannelStats;
use crate::Choice;

/// A named augmentation recipe (`--augment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AugmentRecipe {
    /// DARTS' CIFAR setting: zero-padded random crop (`size / 8`) and horizontal flip.
    Darts,
    /// For photos of hands: random resized crop (area 0.6-1, aspect 3/4-4/3), rotation up to
    /// 15 degrees, horizontal flip, brightness, contrast and saturation jitter of 0.2.
    Photo,
}

impl AugmentRecipe {
    /// The name, as on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AugmentRecipe::Darts => "darts",
            AugmentRecipe::Photo => "photo",
        }
    }
}

impl fmt::Display for AugmentRecipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Choice for AugmentRecipe {
    const WHAT: &'static str = "augmentation recipe";
    const ALL: &'static [AugmentRecipe] = &[AugmentRecipe::Darts, AugmentRecipe::Photo];

    fn name(self) -> &'static str {
        self.as_str()
    }

    fn about(self) -> &'static str {
        match self {
            AugmentRecipe::Darts => "DARTS' padded random crop and horizontal flip",
            AugmentRecipe::Photo => {
                "random resized crop, rotation, horizontal flip and colour jitter, for photos"
            }
        }
    }
}

/// Random resized crop: the crop covers a share of the image area drawn from `scale` and an
/// aspect ratio drawn log-uniformly from `ratio`, at a random position, resized back to the
/// full side (bilinear, edges replicated), as torchvision's `RandomResizedCrop`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResizedCrop {
    /// Smallest and largest share of the area.
    pub scale: [f32; 2],
    /// Smallest and largest width / height.
    pub ratio: [f32; 2],
}

/// The augmentation of one training image. Every random choice is drawn from the
/// `ChaCha8Rng` passed to [`Augment::apply`], in a fixed order (crop top, crop left; resized
/// crop scale, ratio, centre column, centre row; rotation angle; flip; vertical flip;
/// brightness, contrast, saturation; greyscale; cutout centre row, cutout centre column; a
/// disabled step draws nothing). The label is never touched.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Zero padding on each side before a random `size` x `size` crop (0 = no crop).
    pub pad: u32,
    /// Random resized crop (`None` = off).
    pub resized_crop: Option<ResizedCrop>,
    /// Rotation by an angle drawn uniformly from `[-rotate, rotate]` degrees (0 = off).
    pub rotate: f32,
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// Mirror top-bottom with probability 1/2 (with `flip`, every quarter of the turns and
    /// mirrors of a hand is seen pointing up and down).
    pub vertical_flip: bool,
    /// Brightness, contrast and saturation factors each drawn from `[1 - j, 1 + j]`
    /// (0 = off), applied in that order as torchvision's `ColorJitter`.
    pub colour_jitter: f32,
    /// Probability of turning the image grey (its luma, 0.299 R + 0.587 G + 0.114 B, in all
    /// three channels) after the colour jitter, as torchvision's `RandomGrayscale` (0 = off).
    #[serde(default)]
    pub greyscale: f32,
    /// Side of the square set to zero after normalisation, centred on a random pixel and
    /// clipped at the borders (0 = off).
    pub cutout: u32,
}

impl Augment {
    /// DARTS' setting scaled to `size`: padding `size / 8` (4 at 32), flip on, cutout off.
    pub fn standard(size: u32) -> Augment {
        Augment {
            pad: size / 8,
            resized_crop: None,
            rotate: 0.0,
            flip: true,
            vertical_flip: false,
            colour_jitter: 0.0,
            greyscale: 0.0,
            cutout: 0,
        }
    }

    /// The photo recipe (see [`AugmentRecipe::Photo`]), cutout off.
    pub fn photo() -> Augment {
        Augment {
            pad: 0,
            resized_crop: Some(ResizedCrop {
                scale: [0.6, 1.0],
                ratio: [0.75, 4.0 / 3.0],
            }),
            rotate: 15.0,
            flip: true,
            vertical_flip: false,
            colour_jitter: 0.2,
            greyscale: 0.0,
            cutout: 0,
        }
    }

    /// The augmentation of `recipe` at input side `size`, cutout off.
    pub fn recipe(recipe: AugmentRecipe, size: u32) -> Augment {
        match recipe {
            AugmentRecipe::Darts => Augment::standard(size),
            AugmentRecipe::Photo => Augment::photo(),
        }
    }

    /// The same with cutout of side `length` (0 = off).
    pub fn with_cutout(self, length: u32) -> Augment {
        Augment {
            cutout: length,
            ..self
        }
    }

    /// The same with brightness, contrast and saturation jitter `j` (0 = off).
    pub fn with_colour_jitter(self, j: f32) -> Augment {
        Augment {
            colour_jitter: j,
            ..self
        }
    }

    /// The same, turned grey with probability `p` (0 = off).
    pub fn with_greyscale(self, p: f32) -> Augment {
        Augment {
            greyscale: p,
            ..self
        }
    }

    /// The same, mirrored top-bottom with probability 1/2 when `on`.
    pub fn with_vertical_flip(self, on: bool) -> Augment {
        Augment {
            vertical_flip: on,
            ..self
        }
    }

    /// Augments `image` (`size` x `size` interleaved RGB bytes) into `out` as normalised
    /// planar floats (CHW, `3 * size * size` values).
    pub fn apply(
        &self,
        image: &[u8],
        size: u32,
        stats: &ChannelStats,
        rng: &mut ChaCha8Rng,
        out: &mut [f32],
    ) {
        let s = size as usize;
        assert_eq!(image.len(), 3 * s * s, "image buffer size");
        let pad = self.pad as usize;
        let (top, left) = if pad > 0 {
            (rng.random_range(0..=2 * pad), rng.random_range(0..=2 * pad))
        } else {
            (pad, pad)
        };
        let warp = self.draw_warp(rng);
        let flip = Mirror {
            left_right: self.flip && rng.random_bool(0.5),
            top_bottom: self.vertical_flip && rng.random_bool(0.5),
        };

        let mut moved = vec![0u8; 3 * s * s];
        match warp {
            Some(warp) => warp.apply(image, s, flip, &mut moved),
            None => shift_and_flip(image, s, (top, left, pad), flip, &mut moved),
        }
        if self.colour_jitter > 0.0 {
            let j = self.colour_jitter;
            let mut factor = || rng.random_range(1.0 - j..=1.0 + j);
            let factors = [factor(), factor(), factor()];
            jitter_colour(&mut moved, factors);
        }
        if self.greyscale > 0.0 && rng.random_bool(f64::from(self.greyscale)) {
            jitter_colour(&mut moved, [1.0, 1.0, 0.0]);
        }
        normalise(&moved, size, stats, out);

        if self.cutout > 0 {
            let cy = rng.random_range(0..s);
            let cx = rng.random_range(0..s);
            let half = (self.cutout / 2) as usize;
            let (y0, y1) = (cy.saturating_sub(half), (cy + half).min(s));
            let (x0, x1) = (cx.saturating_sub(half), (cx + half).min(s));
            for plane in out.chunks_exact_mut(s * s) {
                for y in y0..y1 {
                    plane[y * s + x0..y * s + x1].fill(0.0);
                }
            }
        }
    }

    /// Draws the resized crop and the rotation (`None` when both are off).
    fn draw_warp(&self, rng: &mut ChaCha8Rng) -> Option<Warp> {
        if self.resized_crop.is_none() && self.rotate == 0.0 {
            return None;
        }
        let (mut width, mut height, mut cx, mut cy) = (1.0f32, 1.0f32, 0.5f32, 0.5f32);
        if let Some(crop) = self.resized_crop {
            let area = rng.random_range(crop.scale[0]..=crop.scale[1]);
            let log_ratio = rng.random_range(crop.ratio[0].ln()..=crop.ratio[1].ln());
            let ratio = log_ratio.exp();
            width = (area * ratio).sqrt().min(1.0);
            height = (area / ratio).sqrt().min(1.0);
            cx = rng.random_range(width / 2.0..=1.0 - width / 2.0);
            cy = rng.random_range(height / 2.0..=1.0 - height / 2.0);
        }
        let angle = if self.rotate > 0.0 {
            rng.random_range(-self.rotate..=self.rotate).to_radians()
        } else {
            0.0
        };
        Some(Warp {
            width,
            height,
            cx,
            cy,
            angle,
        })
    }
}

/// Which mirrors of the output are taken.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Mirror {
    left_right: bool,
    top_bottom: bool,
}

/// A crop of `width` x `height` (shares of the side) centred at (`cx`, `cy`) (shares of the
/// side), rotated by `angle` radians about its centre, resampled to the full image.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Warp {
    width: f32,
    height: f32,
    cx: f32,
    cy: f32,
    angle: f32,
}

impl Warp {
    /// Resamples `image` (`s` x `s` RGB) into `out` bilinearly, replicating the edges;
    /// `flip` mirrors the output.
    fn apply(&self, image: &[u8], s: usize, flip: Mirror, out: &mut [u8]) {
        let side = s as f32;
        let (sin, cos) = self.angle.sin_cos();
        for y in 0..s {
            // Output position in [-1/2, 1/2] of the crop.
            let mut v = (y as f32 + 0.5) / side - 0.5;
            if flip.top_bottom {
                v = -v;
            }
            for x in 0..s {
                let mut u = (x as f32 + 0.5) / side - 0.5;
                if flip.left_right {
                    u = -u;
                }
                let (du, dv) = (u * self.width, v * self.height);
                let sx = (self.cx + cos * du - sin * dv) * side - 0.5;
                let sy = (self.cy + sin * du + cos * dv) * side - 0.5;
                let pixel = bilinear(image, s, sx, sy);
                out[3 * (y * s + x)..3 * (y * s + x) + 3].copy_from_slice(&pixel);
            }
        }
    }
}

/// The RGB value of `image` (`s` x `s`) at pixel coordinates (`x`, `y`), bilinear, with
/// coordinates outside the image clamped to its edge.
fn bilinear(image: &[u8], s: usize, x: f32, y: f32) -> [u8; 3] {
    let max = (s - 1) as f32;
    let (x, y) = (x.clamp(0.0, max), y.clamp(0.0, max));
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(s - 1), (y0 + 1).min(s - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let at = |px: usize, py: usize, c: usize| f32::from(image[3 * (py * s + px) + c]);
    std::array::from_fn(|c| {
        let top = at(x0, y0, c) * (1.0 - fx) + at(x1, y0, c) * fx;
        let bottom = at(x0, y1, c) * (1.0 - fx) + at(x1, y1, c) * fx;
        (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
    })
}

/// DARTS' crop of the zero-padded image (`top`, `left` into a padding of `pad`), mirrored.
fn shift_and_flip(
    image: &[u8],
    s: usize,
    (top, left, pad): (usize, usize, usize),
    flip: Mirror,
    out: &mut [u8],
) {
    for y in 0..s {
        // Row y of the crop is row y + top of the padded image, row y + top - pad of the
        // original.
        let cy = if flip.top_bottom { s - 1 - y } else { y };
        let Some(sy) = (cy + top).checked_sub(pad).filter(|&v| v < s) else {
            continue;
        };
        for x in 0..s {
            let cx = if flip.left_right { s - 1 - x } else { x };
            let Some(sx) = (cx + left).checked_sub(pad).filter(|&v| v < s) else {
                continue;
            };
            let src = 3 * (sy * s + sx);
            let dst = 3 * (y * s + x);
            out[dst..dst + 3].copy_from_slice(&image[src..src + 3]);
        }
    }
}

/// Brightness (scale), contrast (blend with the image's mean grey) and saturation (blend
/// with each pixel's grey) by `factors`, in that order, on interleaved RGB bytes.
fn jitter_colour(pixels: &mut [u8], [brightness, contrast, saturation]: [f32; 3]) {
    let grey = |p: &[f32]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let mut values: Vec<f32> = pixels
        .iter()
        .map(|&v| (f32::from(v) * brightness).min(255.0))
        .collect();
    let mean_grey = values.chunks_exact(3).map(grey).sum::<f32>() / (values.len() / 3) as f32;
    for v in &mut values {
        *v = (mean_grey + (*v - mean_grey) * contrast).clamp(0.0, 255.0);
    }
    for p in values.chunks_exact_mut(3) {
        let g = grey(p);
        for v in p {
            *v = (g + (*v - g) * saturation).clamp(0.0, 255.0);
        }
    }
    for (out, v) in pixels.iter_mut().zip(values) {
        *out = v.round() as u8;
    }
}

/// Normalises `image` (`size` x `size` interleaved RGB bytes) into `out` (CHW floats) with
/// [`hands_models::preprocess::normalise_into`], the code inference uses.
pub fn normalise(image: &[u8], size: u32, stats: &ChannelStats, out: &mut [f32]) {
    let image = RgbImage::from_raw(size, size, image.to_vec()).expect("image buffer size");
    hands_models::preprocess::normalise_into(&image, stats.mean, stats.std, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const UNIT: ChannelStats = ChannelStats {
        mean: [0.0; 3],
        std: [1.0; 3],
    };

    /// A 4x4 image whose red channel numbers the pixels 1..=16.
    fn numbered() -> Vec<u8> {
        (0..16u8).flat_map(|i| [i + 1, 0, 0]).collect()
    }

    fn red(out: &[f32]) -> Vec<u8> {
        out[..16]
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect()
    }

    #[test]
    fn no_augmentation_is_plain_normalisation() {
        let off = Augment {
            pad: 0,
            flip: false,
            ..Augment::standard(4)
        };
        let mut out = vec![0.0; 48];
        off.apply(
            &numbered(),
            4,
            &UNIT,
            &mut ChaCha8Rng::seed_from_u64(0),
            &mut out,
        );
        assert_eq!(red(&out), (1..=16).collect::<Vec<u8>>());
    }

    #[test]
    fn crop_shifts_in_zeros_and_flip_mirrors() {
        let mut seen_shift = false;
        let mut seen_flip = false;
        for seed in 0..64 {
            let aug = Augment {
                pad: 1,
                ..Augment::standard(4)
            };
            let mut out = vec![0.0; 48];
            aug.apply(
                &numbered(),
                4,
                &UNIT,
                &mut ChaCha8Rng::seed_from_u64(seed),
                &mut out,
            );
            let r = red(&out);
            // Every kept value is a pixel of the original, each at most once.
            let kept: Vec<u8> = r.iter().copied().filter(|&v| v != 0).collect();
            let mut sorted = kept.clone();
            sorted.sort();
            sorted.dedup();
            assert!(kept.len() >= 9 && sorted.len() == kept.len());
            seen_shift |= r.contains(&0);
            // A flipped row decreases left to right.
            seen_flip |= r[5] != 0 && r[6] != 0 && r[5] > r[6];
        }
        assert!(seen_shift && seen_flip);
    }

    #[test]
    fn vertical_flip_mirrors_the_rows_about_half_the_time() {
        let rows_reversed: Vec<u8> = (0..4u8)
            .rev()
            .flat_map(|row| (1..=4).map(move |col| 4 * row + col))
            .collect();
        let aug = Augment {
            pad: 0,
            flip: false,
            ..Augment::standard(4).with_vertical_flip(true)
        };
        let mut flipped = 0;
        for seed in 0..64 {
            let mut out = vec![0.0; 48];
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            aug.apply(&numbered(), 4, &UNIT, &mut rng, &mut out);
            let r = red(&out);
            if r == rows_reversed {
                flipped += 1;
            } else {
                assert_eq!(r, (1..=16).collect::<Vec<u8>>(), "seed {seed}");
            }
        }
        assert!((16..=48).contains(&flipped), "{flipped} of 64 flipped");
        // The photo recipe with it stays deterministic under a seed.
        let photo = Augment::photo().with_vertical_flip(true);
        assert_eq!(
            photo_out(&photo, &quadrants(), 5),
            photo_out(&photo, &quadrants(), 5)
        );
    }

    #[test]
    fn colour_jitter_on_the_darts_recipe_keeps_its_crops_and_varies_the_colours() {
        let plain = Augment::standard(16);
        let jittered = plain.with_colour_jitter(0.2);
        // Grey with one white pixel: the jitter keeps the white one the brightest.
        let mut image = vec![80u8; 3 * 16 * 16];
        image[3 * (5 * 16 + 9)..][..3].fill(255);
        let run = |aug: &Augment, seed: u64| {
            let mut out = vec![0.0; 3 * 16 * 16];
            aug.apply(
                &image,
                16,
                &UNIT,
                &mut ChaCha8Rng::seed_from_u64(seed),
                &mut out,
            );
            out
        };
        let brightest = |out: &[f32]| {
            let red = &out[..16 * 16];
            (0..red.len()).max_by(|&a, &b| red[a].total_cmp(&red[b]))
        };
        let mut changed = 0;
        for seed in 0..16 {
            let (a, b) = (run(&plain, seed), run(&jittered, seed));
            // The same seed draws the same crop and flips: the white pixel lands in one place.
            assert_eq!(brightest(&a), brightest(&b), "seed {seed}");
            changed += usize::from(a != b);
            assert_eq!(b, run(&jittered, seed), "deterministic under seed {seed}");
        }
        assert!(changed >= 14, "{changed} of 16 jittered");
    }

    #[test]
    fn greyscale_turns_about_its_share_grey_and_keeps_the_crops() {
        let plain = Augment::standard(8).with_vertical_flip(true);
        let greyed = plain.with_greyscale(0.5);
        // Reddish with one white pixel: the crop and flips are drawn before the greyscale.
        let mut image: Vec<u8> = [200u8, 60, 40].repeat(8 * 8);
        image[3 * (2 * 8 + 5)..][..3].fill(255);
        let run = |aug: &Augment, seed: u64| {
            let mut out = vec![0.0; 3 * 8 * 8];
            aug.apply(
                &image,
                8,
                &UNIT,
                &mut ChaCha8Rng::seed_from_u64(seed),
                &mut out,
            );
            out
        };
        let is_grey = |out: &[f32]| {
            let (r, rest) = out.split_at(64);
            let (g, b) = rest.split_at(64);
            (0..64).all(|i| (r[i] - g[i]).abs() < 0.01 && (g[i] - b[i]).abs() < 0.01)
        };
        let white = |out: &[f32]| out[..64].iter().position(|&v| v > 0.99);
        let mut grey = 0;
        for seed in 0..64 {
            let (a, b) = (run(&plain, seed), run(&greyed, seed));
            assert!(!is_grey(&a));
            assert_eq!(white(&a), white(&b), "seed {seed}: same crop and flips");
            if is_grey(&b) {
                grey += 1;
            } else {
                assert_eq!(a, b, "seed {seed}: an image left in colour is untouched");
            }
            assert_eq!(b, run(&greyed, seed), "deterministic under seed {seed}");
        }
        assert!((20..=44).contains(&grey), "{grey} of 64 grey");
        let always = plain.with_greyscale(1.0);
        assert!((0..8).all(|seed| is_grey(&run(&always, seed))));
    }

    #[test]
    fn cutout_zeroes_a_clipped_square() {
        let aug = Augment {
            pad: 0,
            flip: false,
            ..Augment::standard(4).with_cutout(2)
        };
        let mut out = vec![0.0; 48];
        aug.apply(
            &numbered(),
            4,
            &UNIT,
            &mut ChaCha8Rng::seed_from_u64(3),
            &mut out,
        );
        let zeros = red(&out).iter().filter(|&&v| v == 0).count();
        assert!((1..=4).contains(&zeros), "{zeros} zeros");
    }

    /// A 16x16 image with a distinct colour per quadrant and a gradient inside.
    fn quadrants() -> Vec<u8> {
        let mut image = vec![0u8; 3 * 256];
        for y in 0..16 {
            for x in 0..16 {
                let q = (y / 8) * 2 + x / 8;
                let p = 3 * (y * 16 + x);
                image[p] = [200, 20, 20, 200][q];
                image[p + 1] = [20, 200, 20, 200][q];
                image[p + 2] = (x * 8 + y * 4) as u8;
            }
        }
        image
    }

    fn photo_out(aug: &Augment, image: &[u8], seed: u64) -> Vec<f32> {
        let mut out = vec![0.0; image.len()];
        aug.apply(
            image,
            16,
            &UNIT,
            &mut ChaCha8Rng::seed_from_u64(seed),
            &mut out,
        );
        out
    }

    #[test]
    fn photo_recipe_is_deterministic_under_a_seed_and_varies_across_seeds() {
        let image = quadrants();
        let aug = Augment::photo();
        assert_eq!(photo_out(&aug, &image, 7), photo_out(&aug, &image, 7));
        let outputs: Vec<Vec<f32>> = (0..8).map(|seed| photo_out(&aug, &image, seed)).collect();
        for (i, a) in outputs.iter().enumerate() {
            for b in &outputs[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn identity_warp_and_neutral_jitter_keep_the_image() {
        let image = quadrants();
        let warp = Warp {
            width: 1.0,
            height: 1.0,
            cx: 0.5,
            cy: 0.5,
            angle: 0.0,
        };
        let mut out = vec![0u8; image.len()];
        warp.apply(&image, 16, Mirror::default(), &mut out);
        assert_eq!(out, image);
        for (left_right, top_bottom) in [(true, false), (false, true), (true, true)] {
            let flip = Mirror {
                left_right,
                top_bottom,
            };
            warp.apply(&image, 16, flip, &mut out);
            for y in 0..16 {
                for x in 0..16 {
                    let sx = if left_right { 15 - x } else { x };
                    let sy = if top_bottom { 15 - y } else { y };
                    let (a, b) = (3 * (y * 16 + x), 3 * (sy * 16 + sx));
                    assert_eq!(out[a..a + 3], image[b..b + 3], "{flip:?}");
                }
            }
        }
        let mut jittered = image.clone();
        jitter_colour(&mut jittered, [1.0, 1.0, 1.0]);
        assert_eq!(jittered, image);
    }

    #[test]
    fn rotation_by_a_quarter_turn_moves_the_quadrants() {
        let image = quadrants();
        let warp = Warp {
            width: 1.0,
            height: 1.0,
            cx: 0.5,
            cy: 0.5,
            angle: std::f32::consts::FRAC_PI_2,
        };
        let mut out = vec![0u8; image.len()];
        warp.apply(&image, 16, Mirror::default(), &mut out);
        // The output's top-left pixel samples the source's top-right quadrant, its top-right
        // pixel the source's bottom-right one.
        let red_green =
            |img: &[u8], x: usize, y: usize| (img[3 * (y * 16 + x)], img[3 * (y * 16 + x) + 1]);
        assert_eq!(red_green(&out, 2, 2), red_green(&image, 13, 2));
        assert_eq!(red_green(&out, 13, 2), red_green(&image, 13, 13));
        assert_ne!(red_green(&image, 13, 2), red_green(&image, 13, 13));
    }

    #[test]
    fn a_resized_crop_zooms_into_the_image() {
        let image = quadrants();
        // A crop inside the top-left quadrant, scaled to the whole image: only its colour.
        let warp = Warp {
            width: 0.4,
            height: 0.4,
            cx: 0.25,
            cy: 0.25,
            angle: 0.0,
        };
        let mut out = vec![0u8; image.len()];
        warp.apply(&image, 16, Mirror::default(), &mut out);
        assert!(out.chunks_exact(3).all(|p| p[0] == 200 && p[1] == 20));
    }

    #[test]
    fn colour_jitter_changes_brightness_contrast_and_saturation() {
        let image = quadrants();
        let mean = |img: &[u8]| img.iter().map(|&v| f64::from(v)).sum::<f64>() / img.len() as f64;
        let mut brighter = image.clone();
        jitter_colour(&mut brighter, [1.2, 1.0, 1.0]);
        assert!(mean(&brighter) > mean(&image));
        let mut grey = image.clone();
        jitter_colour(&mut grey, [1.0, 1.0, 0.0]);
        assert!(grey
            .chunks_exact(3)
            .all(|p| p[0].abs_diff(p[1]) <= 1 && p[1].abs_diff(p[2]) <= 1));
        let mut flat = image.clone();
        jitter_colour(&mut flat, [1.0, 0.0, 1.0]);
        let first = flat[0];
        assert!(flat.iter().all(|&v| v.abs_diff(first) <= 1));
    }
}
