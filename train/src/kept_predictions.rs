//! The class probabilities a cross-validation fold kept for its test images
//! (`test_predictions.csv`: path, subject, label, aspect, `p_LABEL`..., `p_LABEL_flip`...),
//! read back so that any figure can be measured again without the network.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The slot of each of `test`'s images (dataset indices) by its path as
/// `test_predictions.csv` writes it.
pub(crate) fn slots(dataset: &hands_data::Dataset, test: &[usize]) -> HashMap<String, usize> {
    test.iter()
        .enumerate()
        .map(|(slot, &i)| (dataset.samples()[i].path.display().to_string(), slot))
        .collect()
}

/// The probabilities a fold's `test_predictions.csv` kept for the fold's test images, in the
/// fold's order.
pub(crate) struct KeptPredictions {
    /// The plain forward pass, one row of label probabilities per image.
    pub(crate) plain: Vec<Vec<f32>>,
    /// Averaged with the mirrored image.
    pub(crate) flip: Vec<Vec<f32>>,
}

impl KeptPredictions {
    /// Reads `test_predictions.csv` and puts each image's row in its slot (`slot_of`, by path);
    /// refused unless it holds exactly those images, each once, with every label's probability.
    pub(crate) fn read(
        path: &Path,
        labels: &[String],
        slot_of: &HashMap<String, usize>,
    ) -> Result<KeptPredictions> {
        let context = || format!("cannot read {}", path.display());
        let mut reader = csv::Reader::from_path(path).with_context(context)?;
        let header = reader.headers().with_context(context)?.clone();
        let column = |name: &str| {
            header.iter().position(|h| h == name).with_context(|| {
                format!(
                    "{}: no column {name} (header {:?}): not a test_predictions.csv of this data",
                    path.display(),
                    header.iter().collect::<Vec<_>>().join(",")
                )
            })
        };
        let path_column = column("path")?;
        let plain_columns = labels
            .iter()
            .map(|l| column(&format!("p_{l}")))
            .collect::<Result<Vec<_>>>()?;
        let flip_columns = labels
            .iter()
            .map(|l| column(&format!("p_{l}_flip")))
            .collect::<Result<Vec<_>>>()?;
        let mut plain = vec![Vec::new(); slot_of.len()];
        let mut flip = vec![Vec::new(); slot_of.len()];
        for (line, record) in reader.records().enumerate() {
            let record = record.with_context(context)?;
            let line = line + 2;
            let image = record.get(path_column).unwrap_or_default();
            let slot = slot_of.get(image).with_context(|| {
                format!(
                    "{}, line {line}: {image} is not a test image of this fold",
                    path.display()
                )
            })?;
            if !plain[*slot].is_empty() {
                bail!("{}, line {line}: {image} a second time", path.display());
            }
            let read = |columns: &[usize]| -> Result<Vec<f32>> {
                columns
                    .iter()
                    .map(|&c| {
                        let cell = record.get(c).unwrap_or_default();
                        cell.parse::<f32>()
                            .ok()
                            .filter(|p| (0.0..=1.0).contains(p))
                            .with_context(|| {
                                format!(
                                    "{}, line {line}: {} is {cell:?}, not a probability",
                                    path.display(),
                                    &header[c]
                                )
                            })
                    })
                    .collect()
            };
            plain[*slot] = read(&plain_columns)?;
            flip[*slot] = read(&flip_columns)?;
        }
        let missing = plain.iter().filter(|p| p.is_empty()).count();
        if missing > 0 {
            bail!(
                "{}: {missing} of the fold's {} test images have no row",
                path.display(),
                slot_of.len()
            );
        }
        Ok(KeptPredictions { plain, flip })
    }
}
