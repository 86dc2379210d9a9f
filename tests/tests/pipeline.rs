//! The whole pipeline through the real binaries on the shared 11K Hands sample:
//! `hands-search search` (tiny) -> `hands-search train` (tiny) -> `hands-export` ->
//! `hands-infer`, checking every artefact, and that the exported model's predictions agree
//! with the candle network it was exported from.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use hands_models::preprocess::load_input;
use hands_models::Genotype;
use hands_train::eval::load_model;

use common::{have_onnx_runtime, run};
use hands_tests::sample_dir;

/// Largest difference allowed between ONNX Runtime's and candle's probabilities.
const TOLERANCE: f32 = 1e-4;

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn is_file(path: PathBuf) -> PathBuf {
    assert!(path.is_file(), "{} was not written", path.display());
    path
}

/// candle's per-label probabilities for `paths` under the model's own preprocessing.
fn candle_probabilities(model: &Path, paths: &[PathBuf]) -> Vec<Vec<f32>> {
    let loaded = load_model(model, &Device::Cpu).unwrap();
    let spec = &loaded.card.input;
    let size = spec.size as usize;
    let pixels: Vec<f32> = paths
        .iter()
        .flat_map(|p| load_input(p, spec).unwrap())
        .collect();
    let images = Tensor::from_vec(pixels, (paths.len(), 3, size, size), &Device::Cpu).unwrap();
    let logits = loaded.network.logits(&images).unwrap();
    candle_nn::ops::softmax(&logits, 1)
        .unwrap()
        .to_vec2()
        .unwrap()
}

#[test]
fn search_train_export_infer_on_the_sample() {
    let Some(sample) = sample_dir() else { return };
    if !have_onnx_runtime() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = sample.to_str().unwrap();
    let search = dir.path().join("search");
    let train = dir.path().join("train");
    let export = dir.path().join("export");
    let tiny = [
        "--size",
        "16",
        "--init-channels",
        "4",
        "--layers",
        "3",
        "--epochs",
        "1",
        "--batch",
        "32",
    ];

    // Search: a genotype, its log, its pictures and a checkpoint.
    let mut args = vec!["search", "--data", data, "--out", search.to_str().unwrap()];
    args.extend(tiny);
    run("hands-search", &args);
    let genotype = std::fs::read_to_string(is_file(search.join("genotype.json"))).unwrap();
    let genotype = Genotype::from_json(&genotype).unwrap();
    genotype.validate().unwrap();
    assert_eq!(jsonl(&is_file(search.join("search.jsonl"))).len(), 1);
    for file in ["normal.dot", "normal.svg", "reduce.dot", "reduce.svg"] {
        is_file(search.join(file));
    }
    is_file(search.join("checkpoint.safetensors"));
    let plots = run("hands-search", &["plot", "--run", search.to_str().unwrap()]);
    assert!(plots.lines().count() >= 2, "{plots}");
    for line in plots.lines() {
        is_file(PathBuf::from(line));
    }

    // Train the found genotype (the run folder names it) from scratch.
    let mut args = vec![
        "train",
        "--data",
        data,
        "--genotype",
        search.to_str().unwrap(),
        "--out",
        train.to_str().unwrap(),
    ];
    args.extend(tiny);
    run("hands-search", &args);
    let model = is_file(train.join("model.safetensors"));
    assert_eq!(jsonl(&is_file(train.join("train.jsonl"))).len(), 1);
    let card = load_model(&model, &Device::Cpu).unwrap().card;
    assert_eq!(card.genotype, genotype);
    assert_eq!(card.metrics.as_ref().unwrap().split, "test");

    // Export (its own parity check runs ONNX Runtime against candle).
    run(
        "hands-export",
        &[
            "--model",
            model.to_str().unwrap(),
            "--out",
            export.to_str().unwrap(),
            "--name",
            "tiny",
        ],
    );
    let onnx = is_file(export.join("tiny.onnx"));
    is_file(export.join("tiny.safetensors"));
    let exported_card = std::fs::read_to_string(is_file(export.join("tiny.card.json"))).unwrap();
    let exported_card = hands_models::ModelCard::from_json(&exported_card).unwrap();
    assert_eq!(exported_card.genotype, genotype);
    assert_eq!(exported_card.metrics, card.metrics);

    // Infer the whole image folder.
    let predictions = dir.path().join("predictions.jsonl");
    let images = sample.join("images");
    run(
        "hands-infer",
        &[
            "--model",
            onnx.to_str().unwrap(),
            "--format",
            "jsonl",
            "--output",
            predictions.to_str().unwrap(),
            images.to_str().unwrap(),
        ],
    );
    let rows = jsonl(&predictions);
    let image_count = std::fs::read_dir(&images).unwrap().count();
    assert_eq!(rows.len(), image_count);
    let by_name: BTreeMap<String, Vec<f32>> = rows
        .iter()
        .map(|row| {
            assert!(row.get("error").is_none(), "{row}");
            let label = row["label"].as_str().unwrap();
            assert!(card.labels.iter().any(|l| l == label), "{row}");
            let probabilities: Vec<f32> = card
                .labels
                .iter()
                .map(|l| row["probabilities"][l].as_f64().unwrap() as f32)
                .collect();
            let name = Path::new(row["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, probabilities)
        })
        .collect();

    // The exported model predicts what the candle network predicts.
    let checked: Vec<PathBuf> = by_name.keys().take(24).map(|n| images.join(n)).collect();
    let expected = candle_probabilities(&model, &checked);
    for (path, expected) in checked.iter().zip(expected) {
        let name = path.file_name().unwrap().to_string_lossy();
        let got = &by_name[name.as_ref()];
        for (g, e) in got.iter().zip(&expected) {
            assert!(
                (g - e).abs() <= TOLERANCE,
                "{name}: hands-infer {got:?} vs candle {expected:?}"
            );
        }
    }
}

/// `nas/examples/pipeline.rs`, the pipeline through the libraries alone (built by `cargo
/// test --workspace` with the examples), runs on the sample: it writes the search's genotype,
/// the trained model and the export, and prints a label for each of the first four images.
#[test]
fn the_library_example_searches_trains_exports_and_predicts() {
    let Some(sample) = sample_dir() else { return };
    if !have_onnx_runtime() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let stdout = run(
        "examples/pipeline",
        &[sample.as_os_str(), out.path().as_os_str()],
    );
    for file in [
        "search/genotype.json",
        "train/model.safetensors",
        "export/hands.onnx",
    ] {
        is_file(out.path().join(file));
    }
    let rows: Vec<(&str, &str)> = stdout
        .lines()
        .map(|line| line.split_once('\t').expect("path and label"))
        .collect();
    assert_eq!(rows.len(), 4, "{stdout}");
    for (path, label) in rows {
        assert!(Path::new(path).is_file(), "{path}");
        assert!(["female", "male"].contains(&label), "{label}");
    }
}
