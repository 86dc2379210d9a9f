//! The whole pipeline through the libraries alone, no command line: a PC-DARTS search on a
//! data folder, the found cell trained from scratch, exported to ONNX, and the exported model
//! predicting the folder's first images (tiny settings: a demonstration, not a recipe).
//!
//! `cargo run --release -p hands-nas --example pipeline -- DATA OUT` (it needs none of the
//! command line: it builds with `--no-default-features` too, without clap)
//! (DATA: an 11K Hands folder such as `../shared/data/hands-11k-sample`)

use std::path::PathBuf;

use anyhow::Context;
use hands_export::{export, ExportOptions, OnnxOptions, Parity};
use hands_infer::{Options, Predictor};
use hands_nas::args::{Algo, SearchArgs};
use hands_nas::search::run_search;
use hands_train::args::train::TrainArgs;
use hands_train::train::train;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(data), Some(out)) = (args.next(), args.next().map(PathBuf::from)) else {
        anyhow::bail!("usage: pipeline DATA OUT");
    };
    let mut search = SearchArgs::new(&data, Algo::Pcdarts);
    (
        search.data.size,
        search.optimiser.epochs,
        search.optimiser.batch,
    ) = (16, 1, 32);
    (search.network.init_channels, search.network.layers) = (4, 3);
    search.run.out = Some(out.join("search"));
    run_search(&search)?;

    let genotype = out.join("search").join("genotype.json");
    let mut training = TrainArgs::new(&data, genotype.to_str().context("a UTF-8 path")?);
    training.data.size = search.data.size;
    (training.optimiser.epochs, training.optimiser.batch) = (1, 32);
    (training.network.init_channels, training.network.layers) = (4, 3);
    training.run.out = Some(out.join("train"));
    let trained = train(&training)?;

    let options = ExportOptions {
        name: "hands".into(),
        onnx: OnnxOptions::default(),
        parity: Parity::Check {
            ort_lib: None,
            images: Vec::new(),
        },
        latency_threads: None,
    };
    let exported = export(
        &trained.out.join("model.safetensors"),
        &out.join("export"),
        &options,
    )?;

    let predictor = Predictor::open_with(&exported.onnx, &Options::default())?;
    let mut images: Vec<PathBuf> = std::fs::read_dir(PathBuf::from(&data).join("images"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    images.sort();
    images.truncate(4);
    for (path, prediction) in images.iter().zip(predictor.predict_paths(&images)?) {
        println!("{}\t{}", path.display(), prediction?.label);
    }
    Ok(())
}
