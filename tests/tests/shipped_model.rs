//! The shipped default model in `models/pretrained/`: its card carries the cross-validated
//! figures of its recipe (the shipped `cv.json`, which has the baselines on the same folds)
//! and its exported network's cost and latency, its files agree with each other, and
//! `hands-infer` uses it when no model is given.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{binary, have_onnx_runtime};
use hands_models::{Genotype, ModelCard};
use hands_tests::sample_dir;
use hands_train::cv_report::{CvReport, MAJORITY};

fn pretrained(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/pretrained")
        .join(file)
}

fn shipped_card() -> ModelCard {
    let json = std::fs::read_to_string(pretrained("hands.card.json")).unwrap();
    ModelCard::from_json(&json).unwrap()
}

/// The shipped cross-validation report, `cv.json`.
fn shipped_report() -> CvReport {
    serde_json::from_str(&std::fs::read_to_string(pretrained("cv.json")).unwrap()).unwrap()
}

#[test]
fn card_carries_the_cross_validated_figures_of_its_recipe() {
    let card = shipped_card();
    let cv = card
        .cross_validation
        .clone()
        .expect("the shipped card has cross-validated figures");
    // Trained on every subject: no held-out split of its own to report.
    assert!(card.metrics.is_none());
    let report = shipped_report();
    assert!(
        report
            .rows
            .iter()
            .any(|row| report.card_section(&row.name).as_ref() == Some(&cv)),
        "the card's figures are a row of the shipped cv.json"
    );
    assert_eq!((cv.folds, cv.subjects, cv.images), (5, 123, 1923));
    assert!(cv.accuracy.mean > cv.majority_accuracy.mean, "{cv:?}");
    assert!(cv.mean_class_accuracy.mean > 0.5, "{cv:?}");
    for side in ["dorsal", "palmar"] {
        assert!(cv.per_side.contains_key(side), "{cv:?}");
    }
    let table = std::fs::read_to_string(pretrained("cv.md")).unwrap();
    assert_eq!(table, report.table());
}

#[test]
fn shipped_cross_validation_measures_the_baselines_on_the_same_folds() {
    let report = shipped_report();
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.first(), Some(&MAJORITY), "{names:?}");
    assert!(names.contains(&"DARTS_V2"), "{names:?}");
    let random = names.iter().filter(|n| n.starts_with("random:")).count();
    assert!(random >= 3, "at least three random genotypes: {names:?}");
    for row in &report.rows[1..] {
        assert_eq!(row.folds.len(), report.folds, "{}", row.name);
    }
}

#[test]
fn card_records_the_exported_networks_cost_and_measured_latency() {
    let card = shipped_card();
    // Validated when read: the multiply-adds are those of the card's network.
    assert!(card.network.multiply_adds.is_some());
    let batches: Vec<usize> = card.network.latency.iter().map(|l| l.batch).collect();
    assert_eq!(batches, hands_infer::timing::LATENCY_BATCHES);
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
