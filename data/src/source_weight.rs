//! Loss weights by image source: the original photos (like a user's own) weighed more, or
//! less, than the square copies, every image still drawn once an epoch.

use candle_core::{Device, Tensor};

use super::{Dataset, Error, ImageSource};

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
        let is_original =
            |i: usize| dataset.samples()[i].image_source == Some(ImageSource::Original);
        let originals = train.iter().filter(|&&i| is_original(i)).count();
        if originals == 0 || originals == train.len() {
            return Err(Error::Sampling {
                flag: FLAG,
                message: format!(
                    "a weight of originals needs both originals (photos that are not square) \
                     and square copies among the training images; they hold {originals} \
                     originals and {} others",
                    train.len() - originals
                ),
            });
        }
        let weight = weight as f32;
        let per_image = (0..dataset.len())
            .map(|i| if is_original(i) { weight } else { 1.0 })
            .collect();
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
    use std::path::PathBuf;

    use super::*;
    use crate::{Sample, Source};

    /// 6 images: 2 originals (0, 1), 3 copies and 1 of unknown source.
    fn dataset() -> Dataset {
        let samples = (0..6)
            .map(|i| Sample {
                path: PathBuf::from(format!("{i}.jpg")),
                subject: format!("s{i}"),
                label: i % 2,
                aspect: None,
                image_source: match i {
                    0 | 1 => Some(ImageSource::Original),
                    5 => None,
                    _ => Some(ImageSource::SquareCopy),
                },
            })
            .collect();
        let source = Source::Folder {
            root: PathBuf::from("x"),
        };
        Dataset::from_samples(source, vec!["a".into(), "b".into()], samples).unwrap()
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
