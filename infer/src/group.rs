//! One answer per person from several photos: [`Predictor::predict_group`] predicts each
//! photo and combines their probabilities with
//! [`hands_models::calibration::combine_photos`] (the normalised geometric mean of their
//! probabilities, at the temperature the card fitted per person).

use std::path::Path;

use hands_models::calibration::combine_photos;
use hands_models::graph::argmax;

use crate::predictor::UNCERTAIN;
use crate::{Error, Predictor};

/// The combined answer for a group of photos (e.g. one person's).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPrediction {
    /// Photos predicted and combined.
    pub images: usize,
    /// Photos that could not be predicted (left out of the answer).
    pub failed: usize,
    /// The most probable label, or [`UNCERTAIN`] when its combined probability is below the
    /// predictor's threshold (as for one photo).
    pub label: String,
    /// The index of the most probable label in [`Predictor::labels`].
    pub index: usize,
    /// Whether the most probable label reaches the predictor's threshold.
    pub confident: bool,
    /// The combined probability of each label.
    pub probabilities: Vec<f32>,
}

impl GroupPrediction {
    /// The answer of the photos with probabilities `rows` (`failed` more could not be
    /// predicted) at the card's group `temperature` (see
    /// [`hands_models::ModelCard::group_temperature`]), labelled with `labels` and abstaining
    /// below `min_confidence`; `None` without a photo.
    pub fn combine(
        rows: &[&[f32]],
        failed: usize,
        labels: &[String],
        min_confidence: Option<f32>,
        temperature: f64,
    ) -> Option<GroupPrediction> {
        let rows64: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.iter().map(|&p| f64::from(p)).collect())
            .collect();
        let refs: Vec<&[f64]> = rows64.iter().map(Vec::as_slice).collect();
        let probabilities: Vec<f32> = combine_photos(&refs, temperature)?
            .into_iter()
            .map(|p| p as f32)
            .collect();
        let index = argmax(&probabilities);
        let confident = min_confidence.is_none_or(|p| probabilities[index] >= p);
        Some(GroupPrediction {
            images: rows.len(),
            failed,
            label: if confident {
                labels[index].clone()
            } else {
                UNCERTAIN.to_string()
            },
            index,
            confident,
            probabilities,
        })
    }
}

impl Predictor {
    /// Predicts each of `paths` (photos of one group, e.g. one person) and combines the
    /// photos that could be predicted into one answer; an error when none could.
    pub fn predict_group<P: AsRef<Path> + Sync>(
        &self,
        paths: &[P],
    ) -> Result<GroupPrediction, Error> {
        let results = self.predict_paths(paths)?;
        let rows: Vec<&[f32]> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|p| p.probabilities.as_slice())
            .collect();
        let failed = results.len() - rows.len();
        let temperature = self.card().group_temperature();
        GroupPrediction::combine(
            &rows,
            failed,
            self.labels(),
            self.min_confidence(),
            temperature,
        )
        .ok_or_else(|| {
            Error::Usage(format!(
                "no photo of the group could be predicted ({} given, {failed} failed)",
                paths.len()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_combines_its_photos_and_abstains_by_the_same_rule() {
        let labels = vec!["female".to_string(), "male".to_string()];
        let group =
            GroupPrediction::combine(&[&[0.9, 0.1], &[0.4, 0.6]], 1, &labels, None, 1.0).unwrap();
        let (a, b) = ((0.9f64 * 0.4).sqrt(), (0.1f64 * 0.6).sqrt());
        assert!((f64::from(group.probabilities[0]) - a / (a + b)).abs() < 1e-6);
        assert_eq!((group.images, group.failed), (2, 1));
        assert_eq!(
            (group.label.as_str(), group.index, group.confident),
            ("female", 0, true)
        );
        let unsure =
            GroupPrediction::combine(&[&[0.9, 0.1], &[0.4, 0.6]], 0, &labels, Some(0.9), 1.0)
                .unwrap();
        assert_eq!(
            (unsure.label.as_str(), unsure.confident),
            (UNCERTAIN, false)
        );
        assert_eq!(GroupPrediction::combine(&[], 3, &labels, None, 1.0), None);
    }
}
