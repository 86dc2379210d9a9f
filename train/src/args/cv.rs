//! The settings of `hands-search cv`: every fold's training settings, the baselines and
//! the folds.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::args::train::TrainArgs;

/// Arguments of `hands-search cv`. The training options that cv refuses (it draws its own
/// splits, runs whole trainings and is itself the source of cross-validated figures) are
/// hidden from its help.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(
    mut_arg("split_file", |a| a.hide(true)),
    mut_arg("stop_after", |a| a.hide(true)),
    mut_arg("cross_validation", |a| a.hide(true))
))]
pub struct CvArgs {
    /// The training settings of every fold (`--genotype` is the genotype under test).
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub train: TrainArgs,
    /// A genotype to measure on the same folds with the same settings (repeatable): a
    /// published name such as DARTS_V2, `random:SEED`, a search run folder or a file.
    #[cfg_attr(feature = "cli", arg(long = "baseline"))]
    pub baselines: Vec<String>,
    /// Number of folds (2 to 20).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 5, value_parser = crate::flags::usize_in(2..=20)))]
    pub folds: usize,
    /// Share of each fold's training subjects held out (per label) for model selection; 0
    /// trains on all of them and needs `--select last`.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.15, value_parser = crate::flags::fraction))]
    pub val_share: f64,
    /// Seed of the trainings (initialisation, batches, augmentation), where it differs from
    /// --seed, which then draws only the folds and splits: a recipe trained again with
    /// another seed on the same folds.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_seed: Option<u64>,
    /// End this invocation after this many fold trainings have finished; continue with
    /// --resume.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(skip)]
    pub stop_after_runs: Option<usize>,
    /// Train only this fold (0-based, repeatable) in this invocation; the others are left
    /// for a later --resume. A probe on a few folds reads against a finished run with
    /// `hands-search compare`.
    #[cfg_attr(feature = "cli", arg(long = "only-fold", value_name = "FOLD"))]
    #[serde(skip)]
    pub only_folds: Vec<usize>,
}

impl CvArgs {
    /// The run folder: --out, else `runs/cv-<genotype>`.
    pub fn out_dir(&self) -> PathBuf {
        self.train.run.out.clone().unwrap_or_else(|| {
            PathBuf::from("runs").join(format!("cv-{}", slug(&self.train.genotype)))
        })
    }

    /// The seed of every fold's training: --train-seed, else --seed.
    pub fn training_seed(&self) -> u64 {
        self.train_seed.unwrap_or(self.train.run.seed)
    }

    /// Whether this invocation trains fold `fold` (every fold without --only-fold).
    pub fn trains_fold(&self, fold: usize) -> bool {
        self.only_folds.is_empty() || self.only_folds.contains(&fold)
    }

    /// The genotypes measured: the one under test, then the baselines.
    pub fn genotypes(&self) -> Vec<String> {
        std::iter::once(self.train.genotype.clone())
            .chain(self.baselines.iter().cloned())
            .collect()
    }
}

/// A folder name for a genotype argument: a published name or `random-SEED` as it is, a
/// path by its last component.
pub(crate) fn slug(genotype: &str) -> String {
    let name = Path::new(genotype).file_stem().map_or_else(
        || genotype.to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let name = if name == "genotype" {
        Path::new(genotype)
            .parent()
            .and_then(Path::file_name)
            .map_or(name.clone(), |p| p.to_string_lossy().into_owned())
    } else {
        name
    };
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
