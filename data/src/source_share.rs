//! Training epochs with a chosen share of original photos: the images of the other source
//! are drawn less often, so that the network is trained for the photos users have without
//! making the epoch longer.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{Dataset, Error, ImageSource};

/// The flag that sets the share, named in errors.
const FLAG: &str = "--originals-share";

/// Draws each epoch's training images so that originals make up `share` of them.
///
/// An epoch keeps the number of training images. Of the two groups (originals; copies and
/// images of unknown source), each image is drawn once in turn in a shuffled order before any
/// is drawn again, so a group drawn more often than it has images repeats every image as
/// evenly as possible, and one drawn less often leaves a random subset out of this epoch.
#[derive(Debug, Clone)]
pub struct SourceShare {
    originals: Vec<usize>,
    others: Vec<usize>,
    take_originals: usize,
}

impl SourceShare {
    /// The sampler of the training images `train` (dataset indices) with originals making up
    /// `share` of each epoch (in (0, 1); rounded to whole images). Refused when the training
    /// images lack originals or other images.
    pub fn new(dataset: &Dataset, train: &[usize], share: f64) -> Result<SourceShare, Error> {
        if !(share > 0.0 && share < 1.0) {
            return Err(Error::Sampling {
                flag: FLAG,
                message: format!("the share of originals must be in (0, 1), not {share}"),
            });
        }
        let (originals, others) = originals_and_others(dataset, train, FLAG, "a share")?;
        let take_originals =
            ((share * train.len() as f64).round() as usize).clamp(1, train.len() - 1);
        Ok(SourceShare {
            originals,
            others,
            take_originals,
        })
    }

    /// The training images of one epoch (dataset indices, grouped: the loader shuffles them).
    pub fn epoch(&self, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let total = self.originals.len() + self.others.len();
        let mut epoch = draw(&self.originals, self.take_originals, rng);
        epoch.extend(draw(&self.others, total - self.take_originals, rng));
        epoch
    }

    /// How many originals each epoch holds.
    pub fn originals_per_epoch(&self) -> usize {
        self.take_originals
    }
}

/// The training images `train` split into originals and the others (square copies and
/// images of unknown source); refused, naming `flag`, when either part is empty: `what` (e.g.
/// "a share") of originals would then change nothing.
pub(crate) fn originals_and_others(
    dataset: &Dataset,
    train: &[usize],
    flag: &'static str,
    what: &str,
) -> Result<(Vec<usize>, Vec<usize>), Error> {
    let (originals, others): (Vec<usize>, Vec<usize>) = train
        .iter()
        .partition(|&&i| dataset.samples()[i].image_source == Some(ImageSource::Original));
    if originals.is_empty() || others.is_empty() {
        return Err(Error::Sampling {
            flag,
            message: format!(
                "{what} of originals needs both originals (photos that are not square) and \
                 square copies among the training images; they hold {} originals and {} others",
                originals.len(),
                others.len()
            ),
        });
    }
    Ok((originals, others))
}

/// `count` items of `group`: whole shuffled passes over it, then a shuffled part of one.
fn draw(group: &[usize], count: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let mut pass = group.to_vec();
        pass.shuffle(rng);
        pass.truncate(count - out.len());
        out.extend(pass);
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::test_datasets;

    /// 10 images: 3 originals (0, 1, 2), 6 copies and 1 of unknown source.
    fn dataset() -> Dataset {
        use crate::ImageSource::{Original, SquareCopy};
        test_datasets::of_sources(&[
            Some(Original),
            Some(Original),
            Some(Original),
            Some(SquareCopy),
            Some(SquareCopy),
            Some(SquareCopy),
            Some(SquareCopy),
            Some(SquareCopy),
            Some(SquareCopy),
            None,
        ])
    }

    #[test]
    fn epochs_hold_the_share_of_originals_and_keep_their_length() {
        let d = dataset();
        let train: Vec<usize> = (0..10).collect();
        let sampler = SourceShare::new(&d, &train, 0.5).unwrap();
        assert_eq!(sampler.originals_per_epoch(), 5);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..20 {
            let epoch = sampler.epoch(&mut rng);
            assert_eq!(epoch.len(), 10);
            let originals: Vec<usize> = epoch.iter().copied().filter(|&i| i < 3).collect();
            assert_eq!(originals.len(), 5);
            // Drawn as evenly as possible: every original once, two of them twice.
            for i in 0..3 {
                let n = originals.iter().filter(|&&o| o == i).count();
                assert!((1..=2).contains(&n), "original {i} drawn {n} times");
            }
            // 5 of the 7 others, none twice (the unknown source counts among them).
            let mut others: Vec<usize> = epoch.iter().copied().filter(|&i| i >= 3).collect();
            others.sort_unstable();
            others.dedup();
            assert_eq!(others.len(), 5);
        }
    }

    #[test]
    fn epochs_repeat_under_a_seed_and_differ_between_seeds() {
        let d = dataset();
        let train: Vec<usize> = (0..10).collect();
        let sampler = SourceShare::new(&d, &train, 0.6).unwrap();
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..5).map(|_| sampler.epoch(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn a_share_without_both_sources_or_out_of_range_is_refused() {
        let d = dataset();
        let copies_only: Vec<usize> = (3..10).collect();
        let message = SourceShare::new(&d, &copies_only, 0.5)
            .unwrap_err()
            .to_string();
        assert!(message.contains("0 originals and 7 others"), "{message}");
        for share in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(SourceShare::new(&d, &[0, 5], share).is_err(), "{share}");
        }
    }
}
