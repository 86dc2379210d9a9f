//! Recomputing a network's BatchNorm running statistics after training ("precise BN", Wu &
//! Johnson 2021, *Rethinking "Batch" in BatchNorm*).
//!
//! The running statistics a training leaves are an exponential moving average (momentum
//! [`BN_MOMENTUM`]) of the last few dozen batches, taken while the weights were still moving
//! and the images were augmented. On a small dataset that average swings from epoch to epoch
//! and so does every evaluation made with it. Here each BatchNorm's running mean and variance
//! are replaced by the average, weighted by batch size, of the batch statistics the network
//! computes in training mode on the batches given (the weights unchanged, no drop path).

use candle_core::{Result, Tensor, Var};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;

use super::layers::{is_running_statistic, BN_MOMENTUM};
use super::network::Network;

/// Replaces the running statistics of `network` (whose variables live in `varmap`) by the
/// batch-size-weighted average of its training-mode batch statistics over `batches`; returns
/// the number of images seen (0 leaves the statistics untouched).
///
/// A training-mode forward pass moves each running statistic `r` to
/// `(1 - m) r + m s` with `s` the batch's statistic, so `s` is read back as
/// `(r_after - (1 - m) r_before) / m`: the layers stay as they are.
pub fn recompute_batch_norm<I>(network: &Network, varmap: &VarMap, batches: I) -> Result<usize>
where
    I: IntoIterator<Item = Result<Tensor>>,
{
    let statistics: Vec<Var> = varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .filter(|(name, _)| is_running_statistic(name))
        .map(|(_, var)| var.clone())
        .collect();
    let mut sums: Option<Vec<Tensor>> = None;
    let mut images = 0usize;
    for batch in batches {
        let batch = batch?;
        let n = batch.dim(0)?;
        let before: Vec<Tensor> = statistics
            .iter()
            .map(|var| var.as_tensor().copy())
            .collect::<Result<_>>()?;
        network.forward_t::<ChaCha8Rng>(&batch, true, None)?;
        let mut batch_statistics = Vec::with_capacity(statistics.len());
        for (var, before) in statistics.iter().zip(&before) {
            let moved = (var.as_tensor() - (before * (1.0 - BN_MOMENTUM))?)?;
            batch_statistics.push((moved * (n as f64 / BN_MOMENTUM))?);
        }
        sums = Some(match sums {
            None => batch_statistics,
            Some(sums) => sums
                .iter()
                .zip(&batch_statistics)
                .map(|(sum, s)| sum + s)
                .collect::<Result<_>>()?,
        });
        images += n;
    }
    if let Some(sums) = sums {
        for (var, sum) in statistics.iter().zip(&sums) {
            var.set(&(sum / images as f64)?)?;
        }
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;
    use crate::nn::network::NetworkConfig;
    use crate::Genotype;

    fn network() -> (Network, VarMap) {
        let config = NetworkConfig {
            init_channels: 4,
            layers: 3,
            stem_stride: 1,
            num_classes: 2,
            auxiliary: false,
        };
        let genotype = Genotype::published("DARTS_V2").unwrap();
        Network::seeded(&genotype, &config, 1, DType::F32, &Device::Cpu).unwrap()
    }

    fn statistic(varmap: &VarMap, name: &str) -> Vec<f32> {
        let vars = varmap.data().lock().unwrap();
        vars[name].as_tensor().to_vec1().unwrap()
    }

    #[test]
    fn the_stem_statistics_become_the_average_of_the_batches() {
        let (network, varmap) = network();
        let mut random = hands_tests::SeededTensors::new(0);
        let a = random.normal(0.5, 1.0, (3, 3, 8, 8));
        let b = random.normal(-0.2, 2.0, (5, 3, 8, 8));
        // The stem BatchNorm sees the stem convolution's output: its batch mean over
        // both batches together is the size-weighted mean of the two batch means.
        let conv = varmap.data().lock().unwrap()["stem.0.weight"]
            .as_tensor()
            .clone();
        let mean_of = |x: &Tensor| -> Vec<f32> {
            x.conv2d(&conv, 1, 1, 1, 1)
                .unwrap()
                .mean_keepdim(0)
                .unwrap()
                .mean_keepdim(2)
                .unwrap()
                .mean_keepdim(3)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let (ma, mb) = (mean_of(&a), mean_of(&b));
        let images =
            recompute_batch_norm(&network, &varmap, [Ok(a.clone()), Ok(b.clone())]).unwrap();
        assert_eq!(images, 8);
        let got = statistic(&varmap, "stem.1.running_mean");
        for (c, g) in got.iter().enumerate() {
            let want = (3.0 * ma[c] + 5.0 * mb[c]) / 8.0;
            assert!((g - want).abs() < 1e-4, "channel {c}: {g} against {want}");
        }
        // Doing it again on the same batches gives the same statistics: the running
        // statistics before do not leak into the result.
        recompute_batch_norm(&network, &varmap, [Ok(a), Ok(b)]).unwrap();
        let again = statistic(&varmap, "stem.1.running_mean");
        for (x, y) in got.iter().zip(&again) {
            assert!((x - y).abs() < 1e-5);
        }
    }

    #[test]
    fn no_batch_leaves_the_statistics_as_they_were() {
        let (network, varmap) = network();
        let before = statistic(&varmap, "cells.1.preprocess1.op.2.running_var");
        let images = recompute_batch_norm(&network, &varmap, std::iter::empty()).unwrap();
        assert_eq!(images, 0);
        assert_eq!(
            statistic(&varmap, "cells.1.preprocess1.op.2.running_var"),
            before
        );
    }
}
