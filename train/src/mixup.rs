//! Mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"): a training batch
//! is blended with a shuffled copy of itself, `lambda * x + (1 - lambda) * x[partner]` with
//! `lambda ~ Beta(alpha, alpha)`, and the loss is `lambda * loss(y) + (1 - lambda) *
//! loss(y[partner])`, as in the paper's reference code (one `lambda` per batch).

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Beta, Distribution};

/// The blend of one batch.
#[derive(Debug, Clone)]
pub struct Mixup {
    /// The weight of the batch itself; its partner gets `1 - lambda`.
    pub lambda: f64,
    /// For each image, the index of the image it is blended with `[B]` (a permutation).
    pub partner: Tensor,
}

impl Mixup {
    /// Draws the blend of a batch of `batch` images: `lambda` from `Beta(alpha, alpha)`, then
    /// the partners by shuffling. `alpha` must be positive.
    pub fn draw<R: Rng>(alpha: f64, batch: usize, device: &Device, rng: &mut R) -> Result<Mixup> {
        let beta = Beta::new(alpha, alpha)
            .with_context(|| format!("mixup alpha {alpha} must be positive and finite"))?;
        let lambda = beta.sample(rng);
        let mut partner: Vec<u32> = (0..batch as u32).collect();
        partner.shuffle(rng);
        Ok(Mixup {
            lambda,
            partner: Tensor::new(partner, device)?,
        })
    }

    /// `lambda * images + (1 - lambda) * images[partner]` (`images` `[B, ...]`).
    pub fn blend(&self, images: &Tensor) -> Result<Tensor> {
        let partners = images.index_select(&self.partner, 0)?;
        Ok(((images * self.lambda)? + (partners * (1.0 - self.lambda))?)?)
    }

    /// `lambda * loss(labels) + (1 - lambda) * loss(labels[partner])`.
    pub fn loss(
        &self,
        labels: &Tensor,
        loss: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let own = loss(labels)?;
        let partners = loss(&labels.index_select(&self.partner, 0)?)?;
        Ok(((own * self.lambda)? + (partners * (1.0 - self.lambda))?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn draw(alpha: f64, seed: u64) -> Result<Mixup> {
        Mixup::draw(alpha, 6, &Device::Cpu, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    #[test]
    fn the_draw_is_a_permutation_and_a_weight_and_repeats_under_a_seed() {
        let mut lambdas = Vec::new();
        for seed in 0..32 {
            let mix = draw(0.4, seed).unwrap();
            let again = draw(0.4, seed).unwrap();
            let mut partner = mix.partner.to_vec1::<u32>().unwrap();
            assert_eq!(partner, again.partner.to_vec1::<u32>().unwrap());
            assert_eq!(mix.lambda, again.lambda);
            partner.sort();
            assert_eq!(partner, (0..6).collect::<Vec<u32>>());
            assert!((0.0..=1.0).contains(&mix.lambda));
            lambdas.push(mix.lambda);
        }
        // Beta(0.4, 0.4) is U-shaped: most draws lie near 0 or 1, on both sides.
        let near_ends = lambdas
            .iter()
            .filter(|&&l| !(0.1..0.9).contains(&l))
            .count();
        assert!(near_ends >= 12, "{near_ends} of 32 near 0 or 1");
        assert!(lambdas.iter().any(|&l| l < 0.5) && lambdas.iter().any(|&l| l > 0.5));
        assert!(draw(0.0, 0).is_err());
    }

    #[test]
    fn blend_and_loss_weigh_each_image_with_its_partner() {
        let mix = Mixup {
            lambda: 0.75,
            partner: Tensor::new(&[2u32, 0, 1], &Device::Cpu).unwrap(),
        };
        let images = Tensor::new(&[[4f32, 8.0], [0.0, 4.0], [8.0, 0.0]], &Device::Cpu).unwrap();
        let blended = mix.blend(&images).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(blended, [[5.0, 6.0], [1.0, 5.0], [6.0, 1.0]]);
        // A loss of the first image's label only: image 0 is 1, its partner (image 2) 0.
        let labels = Tensor::new(&[1u32, 0, 0], &Device::Cpu).unwrap();
        let first = |l: &Tensor| {
            let label = l.to_vec1::<u32>()?[0] as f32;
            Ok(Tensor::new(label * 4.0, &Device::Cpu)?)
        };
        let loss = mix
            .loss(&labels, first)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(loss, 0.75 * 4.0 + 0.25 * 0.0);
        assert_eq!(labels.to_vec1::<u32>().unwrap(), [1, 0, 0]);
    }
}
