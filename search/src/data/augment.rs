//! Training-time augmentation of cached images, as DARTS does it for CIFAR: random crop with
//! zero padding, horizontal flip, normalisation, then cutout.

use image::RgbImage;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::ChannelStats;

/// The augmentation of one training image. Every random choice is drawn from the
/// `ChaCha8Rng` passed to [`Augment::apply`], in a fixed order (crop top, crop left, flip,
/// cutout centre row, cutout centre column; a disabled step draws nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// Zero padding on each side before a random `size` x `size` crop (0 = no crop).
    pub pad: u32,
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// Side of the square set to zero after normalisation, centred on a random pixel and
    /// clipped at the borders (0 = off).
    pub cutout: u32,
}

impl Augment {
    /// DARTS' setting scaled to `size`: padding `size / 8` (4 at 32), flip on, cutout off.
    pub fn standard(size: u32) -> Augment {
        Augment {
            pad: size / 8,
            flip: true,
            cutout: 0,
        }
    }

    /// The same with cutout of side `length` (0 = off).
    pub fn with_cutout(self, length: u32) -> Augment {
        Augment {
            cutout: length,
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
        let flip = self.flip && rng.random_bool(0.5);

        let mut moved = vec![0u8; 3 * s * s];
        for y in 0..s {
            // Row y of the crop is row y + top of the padded image, row y + top - pad of the
            // original.
            let Some(sy) = (y + top).checked_sub(pad).filter(|&v| v < s) else {
                continue;
            };
            for x in 0..s {
                let cx = if flip { s - 1 - x } else { x };
                let Some(sx) = (cx + left).checked_sub(pad).filter(|&v| v < s) else {
                    continue;
                };
                let src = 3 * (sy * s + sx);
                let dst = 3 * (y * s + x);
                moved[dst..dst + 3].copy_from_slice(&image[src..src + 3]);
            }
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
            cutout: 0,
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
                flip: true,
                cutout: 0,
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
    fn cutout_zeroes_a_clipped_square() {
        let aug = Augment {
            pad: 0,
            flip: false,
            cutout: 2,
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
}
