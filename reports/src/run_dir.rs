//! A run folder (`runs/NAME`) and the files in it: the one place their names are written.
//!
//! A search writes its settings, split, checkpoint, log, genotype and cell pictures; a
//! training run its settings, split, checkpoint, log, model and metrics; a cross-validation
//! its settings, folds, per-fold splits and report, with one training run folder per fold.
//! The `*_FILES` lists are what each kind of run writes, so a run never takes a folder that
//! holds another run's files for its inputs.

use std::path::{Path, PathBuf};

use hands_models::genotype::GENOTYPE_FILE;

/// A run's settings.
pub const CONFIG: &str = "config.json";
/// Its subject split.
pub const SPLIT: &str = "split.json";
/// Its checkpoint (weights and state, to resume from).
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// A search's per-epoch log (JSON lines).
pub const SEARCH_LOG: &str = "search.jsonl";
/// A training run's per-epoch log (JSON lines).
pub const TRAIN_LOG: &str = "train.jsonl";
/// What a search writes when its last epoch is done: `{"epochs": N, "genotype": ...}`.
/// Training from a run folder without it trains an unfinished search's genotype.
pub const FINISHED: &str = "finished.json";
/// A trained model file.
pub const MODEL: &str = "model.safetensors";
/// A training run's test metrics.
pub const METRICS: &str = "metrics.json";
/// A search's latency lookup table (with `--cost latency`).
pub const LATENCY_TABLE: &str = "latency.json";
/// A cross-validation's folds (subjects per fold).
pub const FOLDS: &str = "folds.json";
/// A cross-validation's folder of per-fold splits.
pub const SPLITS: &str = "splits";
/// A cross-validation's report.
pub const CV_REPORT: &str = "cv.json";
/// A cross-validation's report as a table.
pub const CV_TABLE: &str = "cv.md";
/// A fold's result in its training run folder.
pub const FOLD_RESULT: &str = "fold.json";
/// A fold's predictions on its test subjects.
pub const TEST_PREDICTIONS: &str = "test_predictions.csv";

/// A search's pictures of its cells: whether the cell reduces, its Graphviz file, its SVG.
pub const CELL_PICTURES: [(bool, &str, &str); 2] = [
    (false, "normal.dot", "normal.svg"),
    (true, "reduce.dot", "reduce.svg"),
];

/// The files a search writes.
pub const SEARCH_FILES: [&str; 11] = [
    CONFIG,
    LATENCY_TABLE,
    SPLIT,
    CHECKPOINT,
    SEARCH_LOG,
    GENOTYPE_FILE,
    FINISHED,
    CELL_PICTURES[0].1,
    CELL_PICTURES[0].2,
    CELL_PICTURES[1].1,
    CELL_PICTURES[1].2,
];
/// The files a training run writes.
pub const TRAIN_FILES: [&str; 6] = [CONFIG, SPLIT, CHECKPOINT, TRAIN_LOG, MODEL, METRICS];
/// The files a cross-validation writes in its folder (besides the fold runs).
pub const CV_FILES: [&str; 5] = [CONFIG, FOLDS, SPLITS, CV_REPORT, CV_TABLE];

/// A run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The run folder at `path` (nothing is created).
    pub fn new(path: impl Into<PathBuf>) -> RunDir {
        RunDir { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The run's settings.
    pub fn config(&self) -> PathBuf {
        self.file(CONFIG)
    }

    /// The run's subject split.
    pub fn split(&self) -> PathBuf {
        self.file(SPLIT)
    }

    /// The run's checkpoint.
    pub fn checkpoint(&self) -> PathBuf {
        self.file(CHECKPOINT)
    }

    /// A search's log.
    pub fn search_log(&self) -> PathBuf {
        self.file(SEARCH_LOG)
    }

    /// A training run's log.
    pub fn train_log(&self) -> PathBuf {
        self.file(TRAIN_LOG)
    }

    /// A search's current (or final) genotype.
    pub fn genotype(&self) -> PathBuf {
        self.file(GENOTYPE_FILE)
    }

    /// A search's end marker.
    pub fn finished(&self) -> PathBuf {
        self.file(FINISHED)
    }

    /// A training run's model file.
    pub fn model(&self) -> PathBuf {
        self.file(MODEL)
    }

    /// The latency lookup table a search's budget uses.
    pub fn latency_table(&self) -> PathBuf {
        self.file(LATENCY_TABLE)
    }

    /// A training run's test metrics.
    pub fn metrics(&self) -> PathBuf {
        self.file(METRICS)
    }

    /// A cross-validation's split of fold `fold`.
    pub fn fold_split(&self, fold: usize) -> PathBuf {
        self.file(SPLITS).join(format!("fold-{fold}.json"))
    }

    /// The training run of fold `fold` in a cross-validation's genotype folder (this one).
    pub fn fold_run(&self, fold: usize) -> RunDir {
        RunDir::new(self.file(&format!("fold-{fold}")))
    }
}

impl AsRef<Path> for RunDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_lie_in_the_folder() {
        let run = RunDir::new("runs/x");
        assert_eq!(run.checkpoint(), Path::new("runs/x/checkpoint.safetensors"));
        assert_eq!(run.genotype(), Path::new("runs/x/genotype.json"));
        assert_eq!(run.file(CV_TABLE), Path::new("runs/x/cv.md"));
    }

    #[test]
    fn each_kind_of_run_names_its_files_once() {
        for files in [&SEARCH_FILES[..], &TRAIN_FILES, &CV_FILES] {
            let mut sorted = files.to_vec();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), files.len(), "{files:?}");
        }
    }
}
