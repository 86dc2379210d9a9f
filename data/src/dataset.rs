//! A labelled list of image files with the subject each one shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{folder, hands, AspectFilter, Error, ImageSource};

/// One image of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The image file.
    pub path: PathBuf,
    /// The person the hand belongs to (11K Hands `id`, e.g. `"0000000"`); splits never put
    /// one subject in two parts.
    pub subject: String,
    /// Index into [`Dataset::labels`].
    pub label: usize,
    /// The hand aspect (`"dorsal right"`, ...) where the source records it.
    pub aspect: Option<String>,
    /// Whether the image is an original photo or a square copy, from its header (`None` when
    /// it could not be read).
    #[serde(default)]
    pub image_source: Option<ImageSource>,
}

/// Where a dataset was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The 11K Hands layout: `HandInfo.csv` and a folder of images.
    Hands {
        /// The metadata CSV.
        csv: PathBuf,
        /// The folder its `imageName`s are in.
        images: PathBuf,
        /// The aspect filter applied.
        filter: AspectFilter,
    },
    /// One sub-folder of images per class; every image is its own subject.
    Folder {
        /// The folder holding the class folders.
        root: PathBuf,
    },
}

/// A labelled list of images.
///
/// Invariants (checked by every constructor): at least one sample, every label index is in
/// range, and all images of one subject carry the same label.
#[derive(Debug, Clone)]
pub struct Dataset {
    source: Source,
    labels: Vec<String>,
    samples: Vec<Sample>,
}

impl Dataset {
    /// Loads `dir`, detecting its layout:
    ///
    /// - `dir/HandInfo.csv` (or `dir` naming a CSV file): the 11K Hands layout, images in
    ///   `images/` beside the CSV, or beside the CSV itself when there is no `images/`;
    ///   labels `["female", "male"]`; `filter` keeps some aspects.
    /// - otherwise one sub-folder per class (labels = the sorted folder names), whose image
    ///   files (searched recursively) are the samples; `filter` must be `All`.
    pub fn load(dir: &Path, filter: &AspectFilter) -> Result<Dataset, Error> {
        if dir.is_file() {
            return Dataset::from_hands_csv(dir, &hands::images_beside(dir), filter);
        }
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
            ));
        }
        let csv = dir.join(hands::CSV_NAME);
        if csv.is_file() {
            return Dataset::from_hands_csv(&csv, &hands::images_beside(&csv), filter);
        }
        if *filter != AspectFilter::All {
            return Err(Error::NoAspects {
                path: dir.to_path_buf(),
                filter: filter.to_string(),
            });
        }
        Dataset::from_class_folders(dir)
    }

    /// Loads an 11K Hands `HandInfo.csv` whose `imageName`s are files in `images`, keeping
    /// the aspects `filter` accepts.
    pub fn from_hands_csv(
        csv: &Path,
        images: &Path,
        filter: &AspectFilter,
    ) -> Result<Dataset, Error> {
        hands::load(csv, images, *filter)
    }

    /// Loads a folder with one sub-folder of images per class.
    pub fn from_class_folders(root: &Path) -> Result<Dataset, Error> {
        folder::load(root)
    }

    /// A dataset from samples built elsewhere, checked like the loaded ones.
    pub fn from_samples(
        source: Source,
        labels: Vec<String>,
        samples: Vec<Sample>,
    ) -> Result<Dataset, Error> {
        let origin = match &source {
            Source::Hands { csv, .. } => csv.clone(),
            Source::Folder { root } => root.clone(),
        };
        if samples.is_empty() {
            let detail = match &source {
                Source::Hands { filter, .. } if *filter != AspectFilter::All => {
                    format!(" with aspect filter `{filter}`")
                }
                _ => String::new(),
            };
            return Err(Error::NoImages {
                path: origin,
                detail,
            });
        }
        let mut subject_label: BTreeMap<&str, (usize, &Path)> = BTreeMap::new();
        for sample in &samples {
            if sample.label >= labels.len() {
                return Err(Error::InvalidSamples {
                    path: sample.path.clone(),
                    reason: format!(
                        "label index {} but only {} labels",
                        sample.label,
                        labels.len()
                    ),
                });
            }
            let (label, first) = *subject_label
                .entry(&sample.subject)
                .or_insert((sample.label, &sample.path));
            if label != sample.label {
                return Err(Error::InvalidSamples {
                    path: origin,
                    reason: format!(
                        "subject `{}` is `{}` in {} but `{}` in {}",
                        sample.subject,
                        labels[label],
                        first.display(),
                        labels[sample.label],
                        sample.path.display()
                    ),
                });
            }
        }
        Ok(Dataset {
            source,
            labels,
            samples,
        })
    }

    /// Where the data came from (for provenance in run folders and model cards).
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The class names; a sample's `label` indexes this.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// All samples, in source order (CSV order, or sorted paths for class folders).
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Always false: a dataset holds at least one image.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Number of images per label.
    pub fn label_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.labels.len()];
        for sample in &self.samples {
            counts[sample.label] += 1;
        }
        counts
    }

    /// The distinct subjects, sorted, with the label of each.
    pub fn subjects(&self) -> BTreeMap<String, usize> {
        self.samples
            .iter()
            .map(|s| (s.subject.clone(), s.label))
            .collect()
    }

    /// The indices of all samples, `0..len()`.
    pub fn all_indices(&self) -> Vec<usize> {
        (0..self.samples.len()).collect()
    }
}
