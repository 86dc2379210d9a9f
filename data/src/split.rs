//! Subject-disjoint, label-stratified, seeded splits into train / val / test, and the two
//! halves of the search (weights on one, architecture on the other).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Dataset, Error};

/// The ChaCha stream a train/val/test split draws from.
const SPLIT_STREAM: u64 = 0;
/// The ChaCha stream [`Part::halves`] draws from, so that it does not repeat the split's
/// shuffle when given the same seed.
const HALVES_STREAM: u64 = 1;
/// The ChaCha stream [`Folds::new`] deals subjects from (stream 2 is the trainer's).
const FOLDS_STREAM: u64 = 3;
/// The ChaCha stream [`Folds::split`] carves validation subjects from.
const FOLD_VAL_STREAM: u64 = 4;

/// The share of subjects (per label) that goes to each part.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fractions {
    /// Training subjects.
    pub train: f64,
    /// Validation subjects (model selection).
    pub val: f64,
    /// Test subjects (final figures only).
    pub test: f64,
}

impl Default for Fractions {
    /// 70 / 15 / 15.
    fn default() -> Self {
        Fractions {
            train: 0.7,
            val: 0.15,
            test: 0.15,
        }
    }
}

/// Names one part of a [`Split`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartName {
    /// Training subjects.
    Train,
    /// Validation subjects.
    Val,
    /// Test subjects.
    Test,
}

/// A set of subjects and the images they have in the dataset the split was made on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The subject ids, sorted.
    pub subjects: Vec<String>,
    /// Number of images of these subjects.
    pub images: usize,
    /// Number of images per label.
    pub label_images: Vec<usize>,
}

impl Part {
    fn from_subjects(dataset: &Dataset, mut subjects: Vec<String>) -> Part {
        subjects.sort();
        let set: BTreeSet<&str> = subjects.iter().map(String::as_str).collect();
        let mut label_images = vec![0; dataset.labels().len()];
        for sample in dataset.samples() {
            if set.contains(sample.subject.as_str()) {
                label_images[sample.label] += 1;
            }
        }
        Part {
            images: label_images.iter().sum(),
            label_images,
            subjects,
        }
    }

    /// The indices (into `dataset.samples()`, ascending) of this part's images.
    pub fn indices(&self, dataset: &Dataset) -> Vec<usize> {
        let set: BTreeSet<&str> = self.subjects.iter().map(String::as_str).collect();
        dataset
            .samples()
            .iter()
            .enumerate()
            .filter(|(_, s)| set.contains(s.subject.as_str()))
            .map(|(i, _)| i)
            .collect()
    }

    /// Splits this part's subjects into two subject-disjoint halves, stratified by label and
    /// seeded (DARTS' w-train / alpha-val halves of the training data).
    pub fn halves(&self, dataset: &Dataset, seed: u64) -> Result<(Part, Part), Error> {
        let mut parts =
            stratified(dataset, &self.subjects, &[0.5, 0.5], seed, HALVES_STREAM)?.into_iter();
        let first = parts.next().expect("two parts");
        let second = parts.next().expect("two parts");
        Ok((
            Part::from_subjects(dataset, first),
            Part::from_subjects(dataset, second),
        ))
    }
}

/// A subject-disjoint train / val / test split, as recorded in a run's `split.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// The seed it was drawn with.
    pub seed: u64,
    /// The fractions it was drawn with.
    pub fractions: Fractions,
    /// The dataset's labels (`label_images` counts are in this order).
    pub labels: Vec<String>,
    /// Training subjects.
    pub train: Part,
    /// Validation subjects.
    pub val: Part,
    /// Test subjects.
    pub test: Part,
}

impl Split {
    /// Splits the subjects of `dataset`: for each label, its subjects (sorted) are shuffled
    /// with `ChaCha8Rng::seed_from_u64(seed)` and cut by `fractions` (largest remainders;
    /// every part with a non-zero fraction gets at least one subject of each label that has
    /// enough subjects).
    pub fn new(dataset: &Dataset, fractions: Fractions, seed: u64) -> Result<Split, Error> {
        let shares = [fractions.train, fractions.val, fractions.test];
        if shares.iter().any(|f| !f.is_finite() || *f < 0.0)
            || (shares.iter().sum::<f64>() - 1.0).abs() > 1e-6
        {
            return Err(Error::Split(format!(
                "fractions must be non-negative and sum to 1, got train {} / val {} / test {}",
                fractions.train, fractions.val, fractions.test
            )));
        }
        let subjects: Vec<String> = dataset.subjects().into_keys().collect();
        let mut parts = stratified(dataset, &subjects, &shares, seed, SPLIT_STREAM)?.into_iter();
        let mut next = || Part::from_subjects(dataset, parts.next().expect("three parts"));
        Ok(Split {
            seed,
            fractions,
            labels: dataset.labels().to_vec(),
            train: next(),
            val: next(),
            test: next(),
        })
    }

    /// The part named `name`.
    pub fn part(&self, name: PartName) -> &Part {
        match name {
            PartName::Train => &self.train,
            PartName::Val => &self.val,
            PartName::Test => &self.test,
        }
    }

    /// Writes the split as pretty JSON, atomically (see [`hands_models::output`]).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        write_json(path, self)
    }

    /// Reads a split written by [`Split::save`] and checks that its parts are disjoint.
    pub fn load(path: &Path) -> Result<Split, Error> {
        let split: Split = read_json(path)?;
        let mut seen = BTreeMap::new();
        for name in [PartName::Train, PartName::Val, PartName::Test] {
            for subject in &split.part(name).subjects {
                if let Some(other) = seen.insert(subject.as_str(), name) {
                    return Err(Error::SplitMismatch {
                        path: path.to_path_buf(),
                        reason: format!("subject {subject} is in both {other:?} and {name:?}"),
                    });
                }
            }
        }
        Ok(split)
    }

    /// Checks that this split was made on `dataset`: same labels, the same subjects, and the
    /// same image counts per part. `path` names the split in errors.
    pub fn check(&self, dataset: &Dataset, path: &Path) -> Result<(), Error> {
        let mismatch = |reason: String| Error::SplitMismatch {
            path: path.to_path_buf(),
            reason,
        };
        if self.labels != dataset.labels() {
            return Err(mismatch(format!(
                "labels {:?} but the data has {:?}",
                self.labels,
                dataset.labels()
            )));
        }
        let data_subjects = dataset.subjects();
        let mut split_subjects = 0;
        for name in [PartName::Train, PartName::Val, PartName::Test] {
            let part = self.part(name);
            for subject in &part.subjects {
                if !data_subjects.contains_key(subject) {
                    return Err(mismatch(format!(
                        "{name:?} subject {subject} is not in the data"
                    )));
                }
            }
            split_subjects += part.subjects.len();
            let actual = Part::from_subjects(dataset, part.subjects.clone());
            if actual.label_images != part.label_images {
                return Err(mismatch(format!(
                    "{name:?} has {:?} images per label, the data {:?}",
                    part.label_images, actual.label_images
                )));
            }
        }
        if split_subjects != data_subjects.len() {
            return Err(mismatch(format!(
                "it covers {split_subjects} subjects, the data has {}",
                data_subjects.len()
            )));
        }
        Ok(())
    }
}

/// K subject-disjoint folds for cross-validation, stratified by label and seeded, as
/// recorded in a cross-validation run's `folds.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Folds {
    /// The seed they were dealt with.
    pub seed: u64,
    /// The dataset's labels.
    pub labels: Vec<String>,
    /// The subjects of each fold, sorted.
    pub folds: Vec<Vec<String>>,
}

impl Folds {
    /// Deals the subjects of `dataset` into `k` folds: per label, the subjects (sorted) are
    /// shuffled with ChaCha8 (`seed`) and dealt round-robin, each label continuing where the
    /// previous one stopped, so that fold sizes differ by at most one subject and every fold
    /// has `n_label / k` (rounded) subjects of each label. Refused when a label has fewer
    /// than `k` subjects (a fold would test without that class).
    pub fn new(dataset: &Dataset, k: usize, seed: u64) -> Result<Folds, Error> {
        if k < 2 {
            return Err(Error::Split(format!(
                "cross-validation needs at least 2 folds, got {k}"
            )));
        }
        let mut by_label: Vec<Vec<String>> = vec![Vec::new(); dataset.labels().len()];
        for (subject, label) in dataset.subjects() {
            by_label[label].push(subject);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(FOLDS_STREAM);
        let mut folds: Vec<Vec<String>> = vec![Vec::new(); k];
        let mut next = 0;
        for (label, mut group) in by_label.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            if group.len() < k {
                return Err(Error::Split(format!(
                    "{k} folds need at least {k} subjects of each label; {} has {}",
                    dataset.labels()[label],
                    group.len()
                )));
            }
            group.sort();
            group.shuffle(&mut rng);
            for subject in group {
                folds[next % k].push(subject);
                next += 1;
            }
        }
        for fold in &mut folds {
            fold.sort();
        }
        Ok(Folds {
            seed,
            labels: dataset.labels().to_vec(),
            folds,
        })
    }

    /// The number of folds.
    pub fn len(&self) -> usize {
        self.folds.len()
    }

    /// Whether there are no folds (never, for folds from [`Folds::new`]).
    pub fn is_empty(&self) -> bool {
        self.folds.is_empty()
    }

    /// The split of fold `fold`: its subjects are the test part; of the other folds'
    /// subjects a share `val` (per label, seeded with `seed` and the fold) is the validation
    /// part for model selection, the rest the training part.
    pub fn split(
        &self,
        dataset: &Dataset,
        fold: usize,
        val: f64,
        seed: u64,
    ) -> Result<Split, Error> {
        let test = self
            .folds
            .get(fold)
            .ok_or_else(|| Error::Split(format!("fold {fold} of {}", self.folds.len())))?;
        if !(0.0..1.0).contains(&val) {
            return Err(Error::Split(format!(
                "validation share {val} is not in [0, 1)"
            )));
        }
        let rest: Vec<String> = self
            .folds
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != fold)
            .flat_map(|(_, subjects)| subjects.iter().cloned())
            .collect();
        let mut parts = stratified(
            dataset,
            &rest,
            &[1.0 - val, val],
            seed.wrapping_add(fold as u64),
            FOLD_VAL_STREAM,
        )?
        .into_iter();
        let kept = 1.0 - 1.0 / self.folds.len() as f64;
        Ok(Split {
            seed,
            fractions: Fractions {
                train: kept * (1.0 - val),
                val: kept * val,
                test: 1.0 - kept,
            },
            labels: dataset.labels().to_vec(),
            train: Part::from_subjects(dataset, parts.next().expect("two parts")),
            val: Part::from_subjects(dataset, parts.next().expect("two parts")),
            test: Part::from_subjects(dataset, test.clone()),
        })
    }

    /// Writes the folds as pretty JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        write_json(path, self)
    }

    /// Reads folds written by [`Folds::save`] and checks them against `dataset`: the same
    /// labels, every subject of the data in exactly one fold.
    pub fn load(path: &Path, dataset: &Dataset) -> Result<Folds, Error> {
        let folds: Folds = read_json(path)?;
        let mismatch = |reason: String| Error::SplitMismatch {
            path: path.to_path_buf(),
            reason,
        };
        if folds.labels != dataset.labels() {
            return Err(mismatch(format!(
                "labels {:?} but the data has {:?}",
                folds.labels,
                dataset.labels()
            )));
        }
        let mut seen = BTreeSet::new();
        let subjects = dataset.subjects();
        for subject in folds.folds.iter().flatten() {
            if !subjects.contains_key(subject) {
                return Err(mismatch(format!("subject {subject} is not in the data")));
            }
            if !seen.insert(subject.as_str()) {
                return Err(mismatch(format!("subject {subject} is in two folds")));
            }
        }
        if seen.len() != subjects.len() {
            return Err(mismatch(format!(
                "the folds hold {} subjects, the data {}",
                seen.len(),
                subjects.len()
            )));
        }
        Ok(folds)
    }
}

/// Writes `value` as pretty JSON with a final newline, atomically.
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), Error> {
    let json = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    hands_models::output::write_atomic(path, (json + "\n").as_bytes())?;
    Ok(())
}

/// Reads a JSON file, naming it in errors.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Cuts `n` items by `shares` with the largest-remainder method, then moves one item into
/// every empty part with a non-zero share (from the largest part) while `n` allows.
fn allocate(n: usize, shares: &[f64]) -> Vec<usize> {
    let total: f64 = shares.iter().sum();
    let quotas: Vec<f64> = shares.iter().map(|f| n as f64 * f / total).collect();
    let mut counts: Vec<usize> = quotas.iter().map(|q| q.floor() as usize).collect();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = quotas[a] - counts[a] as f64;
        let rb = quotas[b] - counts[b] as f64;
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let mut left = n - counts.iter().sum::<usize>();
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    let wanted = shares.iter().filter(|f| **f > 0.0).count();
    if n >= wanted {
        for i in 0..shares.len() {
            if shares[i] > 0.0 && counts[i] == 0 {
                let largest = (0..counts.len())
                    .max_by(|&a, &b| counts[a].cmp(&counts[b]).then(b.cmp(&a)))
                    .expect("non-empty");
                counts[largest] -= 1;
                counts[i] += 1;
            }
        }
    }
    counts
}

/// Splits `subjects` into `shares.len()` lists, per label: sorted, shuffled with ChaCha8
/// (`seed`, `stream`), cut by [`allocate`].
fn stratified(
    dataset: &Dataset,
    subjects: &[String],
    shares: &[f64],
    seed: u64,
    stream: u64,
) -> Result<Vec<Vec<String>>, Error> {
    let labels = dataset.subjects();
    let mut by_label: Vec<Vec<&String>> = vec![Vec::new(); dataset.labels().len()];
    for subject in subjects {
        let label = labels
            .get(subject)
            .ok_or_else(|| Error::Split(format!("subject {subject} is not in the dataset")))?;
        by_label[*label].push(subject);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut parts: Vec<Vec<String>> = vec![Vec::new(); shares.len()];
    for mut group in by_label {
        group.sort();
        group.dedup();
        group.shuffle(&mut rng);
        let counts = allocate(group.len(), shares);
        let mut rest = group.as_slice();
        for (part, count) in parts.iter_mut().zip(counts) {
            let (taken, remaining) = rest.split_at(count);
            part.extend(taken.iter().map(|s| s.to_string()));
            rest = remaining;
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::allocate;

    #[test]
    fn allocation_sums_and_fills_parts() {
        assert_eq!(allocate(100, &[0.7, 0.15, 0.15]), [70, 15, 15]);
        assert_eq!(allocate(10, &[0.7, 0.15, 0.15]), [7, 2, 1]);
        assert_eq!(allocate(3, &[0.7, 0.15, 0.15]), [1, 1, 1]);
        assert_eq!(allocate(2, &[0.7, 0.15, 0.15]), [2, 0, 0]);
        assert_eq!(allocate(0, &[0.7, 0.15, 0.15]), [0, 0, 0]);
        assert_eq!(allocate(5, &[1.0, 0.0, 0.0]), [5, 0, 0]);
        assert_eq!(allocate(7, &[0.5, 0.5]), [4, 3]);
        for n in 0..50 {
            assert_eq!(allocate(n, &[0.7, 0.15, 0.15]).iter().sum::<usize>(), n);
        }
    }
}
