//! No output on an input: the files and folders a subcommand reads, gathered so that every
//! path it will write can be checked against them (file identity, through
//! [`hands_models::output::ensure_not_input`]) before the run starts.

use std::path::{Path, PathBuf};

use anyhow::Result;

use hands_data::{Dataset, Source};

/// The inputs of one run.
#[derive(Debug, Default)]
pub struct Inputs {
    paths: Vec<PathBuf>,
}

impl Inputs {
    /// The data a run reads: the `--data` path, the dataset's CSV or class-folder root, its
    /// image folder and every image.
    pub fn of_data(data: &Path, dataset: &Dataset) -> Inputs {
        let mut inputs = Inputs::default();
        inputs.add(data);
        match dataset.source() {
            Source::Hands { csv, images, .. } => {
                inputs.add(csv);
                inputs.add(images);
            }
            Source::Folder { root } => inputs.add(root),
        }
        for sample in dataset.samples() {
            inputs.add(&sample.path);
        }
        inputs
    }

    /// Adds one input file or folder.
    pub fn add(&mut self, path: &Path) {
        self.paths.push(path.to_path_buf());
    }

    /// Fails, naming both, when one of `outputs` is one of the inputs. Outputs that do not
    /// exist yet cannot be, and cost nothing to check.
    pub fn check<P: AsRef<Path>>(&self, outputs: impl IntoIterator<Item = P>) -> Result<()> {
        for output in outputs {
            hands_models::output::ensure_not_input(output.as_ref(), &self.paths)?;
        }
        Ok(())
    }
}

/// `folder` and each of `names` in it: the outputs of a run folder.
pub fn in_folder(folder: &Path, names: &[&str]) -> Vec<PathBuf> {
    std::iter::once(folder.to_path_buf())
        .chain(names.iter().map(|name| folder.join(name)))
        .collect()
}
