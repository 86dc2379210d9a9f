//! Calibration of a network's probabilities by temperature scaling (Guo et al. 2017, "On
//! Calibration of Modern Neural Networks"): one temperature `T` divides the logits before the
//! softmax, fitted by minimising the negative log-likelihood of predictions on images the
//! network never saw; and the measures of calibration, the reliability bins and the expected
//! calibration error (ECE).
//!
//! Dividing the logits by `T` changes no prediction (the argmax is the same), only how sure
//! the probabilities say the network is.

use serde::{Deserialize, Serialize};

/// The temperatures a fit searches (and a card may record).
pub const TEMPERATURES: std::ops::RangeInclusive<f64> = 0.01..=100.0;

/// The number of equal-width confidence bins of the expected calibration error, as in Guo et
/// al.
pub const ECE_BINS: usize = 15;

/// `log(softmax(logits / temperature))`, shifted by the largest logit so that no `exp`
/// overflows.
fn log_softmax(logits: &[f64], temperature: f64) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let shifted: Vec<f64> = logits.iter().map(|z| (z - max) / temperature).collect();
    let log_sum = shifted.iter().map(|z| z.exp()).sum::<f64>().ln();
    shifted.into_iter().map(|z| z - log_sum).collect()
}

/// `softmax(logits / temperature)`.
pub fn softmax(logits: &[f64], temperature: f64) -> Vec<f64> {
    log_softmax(logits, temperature)
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// The mean negative log-likelihood of `labels` under `softmax(logits / temperature)`.
pub fn negative_log_likelihood(logits: &[Vec<f64>], labels: &[usize], temperature: f64) -> f64 {
    let total: f64 = logits
        .iter()
        .zip(labels)
        .map(|(row, &label)| -log_softmax(row, temperature)[label])
        .sum();
    total / logits.len().max(1) as f64
}

/// The temperature in [`TEMPERATURES`] that minimises [`negative_log_likelihood`]: a
/// golden-section search over `ln T` (the likelihood is convex in `1 / T`, so it has one
/// minimum along `ln T`), to a relative precision of about 1e-9.
pub fn fit_temperature(logits: &[Vec<f64>], labels: &[usize]) -> f64 {
    assert_eq!(logits.len(), labels.len(), "one label per row of logits");
    let nll = |log_t: f64| negative_log_likelihood(logits, labels, log_t.exp());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (TEMPERATURES.start().ln(), TEMPERATURES.end().ln());
    let mut c = b - ratio * (b - a);
    let mut d = a + ratio * (b - a);
    let (mut fc, mut fd) = (nll(c), nll(d));
    while b - a > 1e-9 {
        if fc <= fd {
            b = d;
            d = c;
            fd = fc;
            c = b - ratio * (b - a);
            fc = nll(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + ratio * (b - a);
            fd = nll(d);
        }
    }
    ((a + b) / 2.0).exp()
}

/// The answer of one row of probabilities: the most probable label (the first on ties) and
/// its probability, the confidence.
pub fn answer(probabilities: &[f64]) -> (usize, f64) {
    probabilities
        .iter()
        .copied()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, p)| {
            if p > best.1 {
                (i, p)
            } else {
                best
            }
        })
}

/// One equal-width confidence bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// The bin's lower confidence bound (exclusive, but 0 is in the first bin).
    pub lower: f64,
    /// Its upper bound (inclusive).
    pub upper: f64,
    /// Images whose confidence (the largest probability) falls in it.
    pub images: usize,
    /// Their mean confidence (0 when empty).
    pub confidence: f64,
    /// The share of them predicted right (0 when empty).
    pub accuracy: f64,
}

/// The reliability bins of `probabilities` (one row per image) against `labels`: `bins`
/// equal-width bins of the confidence, each with its images' mean confidence and accuracy.
pub fn reliability(
    probabilities: &[Vec<f64>],
    labels: &[usize],
    bins: usize,
) -> Vec<ReliabilityBin> {
    assert!(bins > 0, "at least one bin");
    let mut sums = vec![(0usize, 0f64, 0usize); bins];
    for (row, &label) in probabilities.iter().zip(labels) {
        let (predicted, confidence) = answer(row);
        let bin = ((confidence * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        sums[bin].0 += 1;
        sums[bin].1 += confidence;
        sums[bin].2 += usize::from(predicted == label);
    }
    sums.into_iter()
        .enumerate()
        .map(|(b, (images, confidence, right))| ReliabilityBin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            images,
            confidence: if images == 0 {
                0.0
            } else {
                confidence / images as f64
            },
            accuracy: if images == 0 {
                0.0
            } else {
                right as f64 / images as f64
            },
        })
        .collect()
}

/// The expected calibration error of reliability `bins`: the image-weighted mean of
/// `|accuracy - confidence|` over the bins.
pub fn expected_calibration_error(bins: &[ReliabilityBin]) -> f64 {
    let images: usize = bins.iter().map(|b| b.images).sum();
    if images == 0 {
        return 0.0;
    }
    bins.iter()
        .map(|b| b.images as f64 * (b.accuracy - b.confidence).abs())
        .sum::<f64>()
        / images as f64
}

/// The mean log-probability of each label over several photos of the same person: the
/// logits of their combined answer (see [`combine_photos`]). `None` for no photo.
pub fn mean_log_probabilities(rows: &[&[f64]]) -> Option<Vec<f64>> {
    let first = rows.first()?;
    let mut mean_log = vec![0f64; first.len()];
    for row in rows {
        for (sum, p) in mean_log.iter_mut().zip(row.iter()) {
            *sum += p.max(f64::MIN_POSITIVE).ln() / rows.len() as f64;
        }
    }
    Some(mean_log)
}

/// One answer for several photos of the same person: `softmax(mean log-probability /
/// temperature)`. At temperature 1 that is the normalised geometric mean of the photos'
/// probabilities, which counts the photos as one piece of evidence, not as independent ones:
/// a person's photos share the hand, the light and the camera, so multiplying their
/// probabilities as if independent would make the answer far surer than it has reason to
/// be. The temperature that makes the combined answers calibrated is fitted per person on the
/// cross-validation (`hands-search calibrate`; a temperature below 1 says the photos add up
/// to more than one). `None` for no photo.
pub fn combine_photos(rows: &[&[f64]], temperature: f64) -> Option<Vec<f64>> {
    Some(softmax(&mean_log_probabilities(rows)?, temperature))
}

/// One point of the accuracy-coverage curve: what keeping only the answers at least
/// `threshold` sure leaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoveragePoint {
    /// The confidence (largest probability) an answer needs to be kept.
    pub threshold: f64,
    /// The share of the images kept.
    pub kept: f64,
    /// The accuracy of the kept answers (0 when none is kept).
    pub accuracy: f64,
    /// Their mean per-class accuracy, over the classes with kept images.
    pub mean_class_accuracy: f64,
}

/// The thresholds of [`coverage_curve`]: 0.50 to 0.99 by 0.01.
pub fn coverage_thresholds() -> impl Iterator<Item = f64> {
    (50..=99).map(|p| p as f64 / 100.0)
}

/// The accuracy-coverage curve of `probabilities` (one row per image, over `classes`
/// classes) against `labels`, at each of [`coverage_thresholds`].
pub fn coverage_curve(probabilities: &[Vec<f64>], labels: &[usize]) -> Vec<CoveragePoint> {
    let classes = probabilities.first().map_or(0, Vec::len);
    let answers: Vec<(usize, f64, usize)> = probabilities
        .iter()
        .zip(labels)
        .map(|(row, &label)| {
            let (predicted, confidence) = answer(row);
            (predicted, confidence, label)
        })
        .collect();
    coverage_thresholds()
        .map(|threshold| {
            let mut per_class = vec![(0usize, 0usize); classes];
            for &(predicted, confidence, label) in &answers {
                if confidence >= threshold {
                    per_class[label].0 += 1;
                    per_class[label].1 += usize::from(predicted == label);
                }
            }
            let kept: usize = per_class.iter().map(|c| c.0).sum();
            let right: usize = per_class.iter().map(|c| c.1).sum();
            let recalls: Vec<f64> = per_class
                .iter()
                .filter(|c| c.0 > 0)
                .map(|&(n, r)| r as f64 / n as f64)
                .collect();
            CoveragePoint {
                threshold,
                kept: kept as f64 / answers.len().max(1) as f64,
                accuracy: if kept == 0 {
                    0.0
                } else {
                    right as f64 / kept as f64
                },
                mean_class_accuracy: if recalls.is_empty() {
                    0.0
                } else {
                    recalls.iter().sum::<f64>() / recalls.len() as f64
                },
            }
        })
        .collect()
}

/// The point of `curve` with the lowest threshold whose accuracy is at least `target`; when
/// none reaches it, the error is the best accuracy the curve reaches.
pub fn threshold_for(curve: &[CoveragePoint], target: f64) -> Result<&CoveragePoint, f64> {
    curve
        .iter()
        .filter(|p| p.kept > 0.0 && p.accuracy >= target)
        .min_by(|a, b| a.threshold.total_cmp(&b.threshold))
        .ok_or_else(|| {
            curve
                .iter()
                .filter(|p| p.kept > 0.0)
                .map(|p| p.accuracy)
                .fold(0.0, f64::max)
        })
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Two-class logits whose labels are drawn from `softmax(true_logits / t)`, the logits
    /// given to the fit being `true_logits`: the fit must find `t`.
    fn synthetic(t: f64, n: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut logits = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let z: f64 = rng.random_range(-8.0..8.0);
            let p = softmax(&[0.0, z], t);
            labels.push(usize::from(rng.random::<f64>() < p[1]));
            logits.push(vec![0.0, z]);
        }
        (logits, labels)
    }

    #[test]
    fn the_fit_recovers_a_known_temperature() {
        for t in [0.5, 1.0, 2.5] {
            let (logits, labels) = synthetic(t, 20_000, 3);
            let fitted = fit_temperature(&logits, &labels);
            assert!((fitted / t - 1.0).abs() < 0.05, "fitted {fitted} for {t}");
            // The fit is the minimum of the likelihood.
            let at = |t| negative_log_likelihood(&logits, &labels, t);
            assert!(at(fitted) <= at(fitted * 1.01) && at(fitted) <= at(fitted / 1.01));
        }
    }

    #[test]
    fn the_coverage_curve_and_the_threshold_of_a_target_by_hand() {
        // Confidences 0.95 right, 0.9 wrong, 0.8 right, 0.6 wrong (labels 0, 1, 1, 0).
        let probabilities = vec![
            vec![0.95, 0.05],
            vec![0.9, 0.1],
            vec![0.2, 0.8],
            vec![0.4, 0.6],
        ];
        let curve = coverage_curve(&probabilities, &[0, 1, 1, 0]);
        assert_eq!(curve.len(), 50);
        let at = |t: f64| {
            curve
                .iter()
                .find(|p| (p.threshold - t).abs() < 1e-9)
                .unwrap()
        };
        assert_eq!((at(0.5).kept, at(0.5).accuracy), (1.0, 0.5));
        assert_eq!((at(0.7).kept, at(0.7).accuracy), (0.75, 2.0 / 3.0));
        // Kept at 0.85: label 0 right (0.95), label 1 wrong (0.9): recalls 1 and 0.
        assert_eq!(at(0.85).mean_class_accuracy, 0.5);
        assert_eq!((at(0.91).kept, at(0.91).accuracy), (0.25, 1.0));
        assert_eq!(at(0.99).kept, 0.0);
        assert_eq!(threshold_for(&curve, 0.6).unwrap().threshold, 0.61);
        assert_eq!(threshold_for(&curve, 0.99).unwrap().threshold, 0.91);
        // A hand-made curve whose best is 0.9: a higher target names it.
        let flat: Vec<CoveragePoint> = curve
            .iter()
            .map(|p| CoveragePoint {
                accuracy: p.accuracy.min(0.9),
                ..p.clone()
            })
            .collect();
        assert_eq!(threshold_for(&flat, 0.95), Err(0.9));
    }

    #[test]
    fn photos_combine_by_their_mean_log_probability() {
        // sqrt(0.9 * 0.6) against sqrt(0.1 * 0.4), normalised.
        let combined = combine_photos(&[&[0.9, 0.1], &[0.6, 0.4]], 1.0).unwrap();
        let (a, b) = ((0.9f64 * 0.6).sqrt(), (0.1f64 * 0.4).sqrt());
        assert!((combined[0] - a / (a + b)).abs() < 1e-12, "{combined:?}");
        assert!((combined[0] + combined[1] - 1.0).abs() < 1e-12);
        // One photo is itself; the same photo twice is no surer than once.
        assert_eq!(combine_photos(&[&[0.7, 0.3]], 1.0).unwrap()[0], 0.7);
        let twice = combine_photos(&[&[0.7, 0.3], &[0.7, 0.3]], 1.0).unwrap();
        assert!((twice[0] - 0.7).abs() < 1e-12);
        // A zero probability does not make the others' evidence vanish into NaN.
        let zero = combine_photos(&[&[1.0, 0.0], &[0.2, 0.8]], 1.0).unwrap();
        assert!(zero.iter().all(|p| p.is_finite()) && zero[0] > 0.99);
        assert_eq!(combine_photos(&[], 1.0), None);
        // A temperature of 1/2 squares the geometric means before normalising.
        let sharp = combine_photos(&[&[0.9, 0.1], &[0.6, 0.4]], 0.5).unwrap();
        assert!(
            (sharp[0] - a * a / (a * a + b * b)).abs() < 1e-12,
            "{sharp:?}"
        );
    }

    #[test]
    fn softmax_with_temperature_and_the_likelihood_by_hand() {
        let p = softmax(&[0.0, 2.0], 2.0);
        let e = 1f64.exp();
        assert!((p[1] - e / (1.0 + e)).abs() < 1e-15);
        assert!((p[0] + p[1] - 1.0).abs() < 1e-15);
        let nll = negative_log_likelihood(&[vec![0.0, 2.0], vec![0.0, 2.0]], &[1, 0], 2.0);
        assert!((nll - (-(p[1].ln()) - p[0].ln()) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn reliability_bins_and_ece_by_hand() {
        // Confidences 0.95 (right), 0.95 (wrong), 0.6 (right), 0.55 (right), three bins.
        let probabilities = vec![
            vec![0.95, 0.05],
            vec![0.05, 0.95],
            vec![0.6, 0.4],
            vec![0.45, 0.55],
        ];
        let bins = reliability(&probabilities, &[0, 0, 0, 1], 3);
        assert_eq!(bins.iter().map(|b| b.images).collect::<Vec<_>>(), [0, 2, 2]);
        assert!((bins[1].confidence - 0.575).abs() < 1e-12 && bins[1].accuracy == 1.0);
        assert!((bins[2].confidence - 0.95).abs() < 1e-12 && bins[2].accuracy == 0.5);
        let ece = expected_calibration_error(&bins);
        assert!(
            (ece - (2.0 * 0.425 + 2.0 * 0.45) / 4.0).abs() < 1e-12,
            "{ece}"
        );
        assert_eq!(expected_calibration_error(&reliability(&[], &[], 15)), 0.0);
    }
}
