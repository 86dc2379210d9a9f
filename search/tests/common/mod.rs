//! The small runs several of the search crate's test files start from.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use hands_tests::datasets::hands_info;
use hands_train::args::cv::CvArgs;
use hands_train::args::train::TrainArgs;
use hands_train::train::train;

/// A one-epoch training of `genotype` at 16 px, batch 4, C 4, 3 cells, no cutout, into `out`.
pub fn tiny_train(data: &Path, genotype: &str, out: &Path) -> TrainArgs {
    let mut args = TrainArgs::new(data, genotype);
    args.run.out = Some(out.to_path_buf());
    args.data.size = 16;
    args.optimiser.batch = 4;
    args.optimiser.epochs = 1;
    args.network.init_channels = 4;
    args.network.layers = 3;
    args.regularisation.cutout = 0;
    args
}

/// A 2-fold cross-validation of DARTS_V2 and one random genotype, 2 epochs a fold, into `out`.
pub fn tiny_cv(data: &Path, out: &Path) -> CvArgs {
    let mut train = TrainArgs::new(data, "DARTS_V2");
    train.run.out = Some(out.to_path_buf());
    train.network.init_channels = 4;
    train.network.layers = 3;
    train.data.size = 16;
    train.optimiser.epochs = 2;
    train.optimiser.batch = 4;
    train.regularisation.cutout = 4;
    train.run.seed = 7;
    CvArgs {
        train,
        baselines: vec!["random:1".into()],
        folds: 2,
        val_share: 0.25,
        train_seed: None,
        stop_after_runs: None,
        only_folds: Vec::new(),
    }
}

/// A model trained for one epoch on a synthetic dataset of 6 + 6 subjects in `dir`:
/// returns the data folder and the model file.
pub fn trained_model(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    hands_info(&data, 6, true);
    let run = dir.join("train");
    train(&tiny_train(&data, "DARTS_V2", &run)).unwrap();
    (data, run.join("model.safetensors"))
}
