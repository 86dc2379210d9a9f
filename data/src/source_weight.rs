//! Loss weights by image source: the original photos (like a user's own) weighed more, or
//! less, than the square copies, every image still drawn once an epoch.

use candle_core::{Device, Tensor};

use super::source_share::originals_and_others;
use super::{Dataset, Error};

/// The flag that sets the weight, named in errors.
const FLAG: &str = "--originals-weight";

/// Each training image's loss weight: `weight` for originals, 1 for the other images.
#[derive(Debug, Clone)]
pub struct SourceWeight {
    /// The weight of every dataset index (1 for images outside the training set).
    per_image: Vec<f32>,
    /// The weight of an original.
    weight: f32,
}

impl SourceWeight {
    /// The weights of the training images `train` (dataset indices) with originals weighing
    /// `weight` (positive and finite). Refused when the training images lack originals or
    /// other images (the weight would change nothing).
    pub fn new(dataset: &Dataset, train: &[usize], weight: f64) -> Result<SourceWeight, Error> {
        if !(weight > 0.0 && weight.is_finite()) {
            return Err(Error::Sampling {
                flag: FLAG,
                message: format!("the weight of originals must be positive, not {weight}"),
            });
        }
        let (originals, _) = originals_and_others(dataset, train, FLAG, "a weight")?;
        let weight = weight as f32;
        let mut per_image = vec![1.0; dataset.len()];
        for i in originals {
            per_image[i] = weight;
        }
        Ok(SourceWeight { per_image, weight })
    }

    /// The weight of an original.
    pub fn weight(&self) -> f32 {
        self.weight
    }

    /// The weights of a batch's images (dataset indices), `[B]` `f32` on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Tensor, Error> {
        let weights: Vec<f32> = indices.iter().map(|&i| self.per_image[i]).collect();
        Ok(Tensor::from_vec(weights, indices.len(), device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_datasets;

    /// 6 images: 2 originals (0, 1), 3 copies and 1 of unknown source.
    fn dataset() -> Dataset {
        use crate::ImageSource::{Original, SquareCopy};
        test_datasets::of_sources(&[
            Some(Original),
            Some(Original),
            Some(SquareCopy),
            Some(SquareCopy),
            Some(SquareCopy),
            None,
        ])
    }

    #[test]
    fn originals_weigh_the_weight_and_the_rest_one() {
        let d = dataset();
        let weights = SourceWeight::new(&d, &[0, 1, 2, 3, 4, 5], 2.5).unwrap();
        let batch = weights.batch(&[5, 0, 3, 1], &Device::Cpu).unwrap();
        assert_eq!(batch.to_vec1::<f32>().unwrap(), [1.0, 2.5, 1.0, 2.5]);
        assert_eq!(weights.weight(), 2.5);
    }

    #[test]
    fn a_weight_that_changes_nothing_or_is_not_positive_is_refused() {
        let d = dataset();
        for (train, weight, expected) in [
            (vec![2, 3, 5], 2.0, "0 originals"),
            (vec![0, 1], 2.0, "0 others"),
            (vec![0, 2], 0.0, "positive"),
            (vec![0, 2], f64::NAN, "positive"),
        ] {
            let err = SourceWeight::new(&d, &train, weight)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("--originals-weight: ") && err.contains(expected),
                "{err}"
            );
        }
    }
}
