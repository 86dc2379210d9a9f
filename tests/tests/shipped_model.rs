//! The shipped default model in `models/pretrained/`: its card's test metrics are what
//! `hands-search eval` measures, its files agree with each other, and `hands-infer` uses it
//! when no model is given.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{binary, have_onnx_runtime, sample_dir};
use hands_models::{Genotype, ModelCard};
use hands_search::eval::{eval_model, EvalArgs, EvalSplit};

fn pretrained(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/pretrained")
        .join(file)
}

fn shipped_card() -> ModelCard {
    let json = std::fs::read_to_string(pretrained("hands.card.json")).unwrap();
    ModelCard::from_json(&json).unwrap()
}

#[test]
fn card_metrics_are_what_eval_measures_on_the_test_subjects() {
    let Some(sample) = sample_dir() else { return };
    let card = shipped_card();
    let metrics = card.metrics.as_ref().expect("the shipped card has metrics");
    assert_eq!(metrics.split, "test");

    let evaluation = eval_model(&EvalArgs {
        model: pretrained("hands.safetensors"),
        data: sample,
        split: EvalSplit::Test,
        split_file: None,
        aspect: None,
        json: None,
        predictions: None,
        batch: 64,
        device: "cpu".into(),
    })
    .unwrap();
    assert_eq!(evaluation.images, metrics.images);
    assert_eq!(evaluation.subjects, metrics.subjects);
    assert!((evaluation.accuracy - metrics.accuracy).abs() < 1e-9);
    assert!((evaluation.mean_class_accuracy - metrics.mean_class_accuracy).abs() < 1e-9);
    assert!(
        evaluation.accuracy > evaluation.majority_rate,
        "{evaluation:?}"
    );
    for (aspect, accuracy) in &metrics.per_aspect {
        assert!((evaluation.per_aspect[aspect].accuracy - accuracy).abs() < 1e-9);
    }
}

#[test]
fn card_and_genotype_files_agree_with_the_model_files() {
    let card = shipped_card();
    let genotype = std::fs::read_to_string(pretrained("genotype.json")).unwrap();
    assert_eq!(card.genotype, Genotype::from_json(&genotype).unwrap());
    let exported = hands_export::ModelFile::read(&pretrained("hands.safetensors")).unwrap();
    assert_eq!(exported.card, card);
    for picture in ["normal.svg", "reduce.svg", "normal.dot", "reduce.dot"] {
        assert!(pretrained(picture).is_file(), "{picture} is not shipped");
    }
}

#[test]
fn hands_infer_uses_the_shipped_model_by_default() {
    let Some(sample) = sample_dir() else { return };
    if !have_onnx_runtime() {
        return;
    }
    let images = sample.join("images");
    let mut first: Vec<PathBuf> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    first.sort();
    first.truncate(5);
    let output = Command::new(binary("hands-infer"))
        .args(["--format", "jsonl"])
        .args(&first)
        .env_remove("HANDS_MODEL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("models/pretrained/hands.onnx"), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 5);
    for row in rows {
        let label = row["label"].as_str().unwrap();
        assert!(["female", "male"].contains(&label), "{row}");
    }
}
