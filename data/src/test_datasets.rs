//! Tiny in-memory datasets for the crate's unit tests.

use std::path::PathBuf;

use crate::{Dataset, ImageSource, Sample, Source};

/// One image per entry of `sources` (image `i` is subject `s{i}`, label `i % 2` of two),
/// of that source (`None`: unknown).
pub(crate) fn of_sources(sources: &[Option<ImageSource>]) -> Dataset {
    let samples = sources
        .iter()
        .enumerate()
        .map(|(i, &image_source)| Sample {
            path: PathBuf::from(format!("{i}.jpg")),
            subject: format!("s{i}"),
            label: i % 2,
            aspect: None,
            image_source,
        })
        .collect();
    let source = Source::Folder {
        root: PathBuf::from("x"),
    };
    Dataset::from_samples(source, vec!["a".into(), "b".into()], samples).unwrap()
}
