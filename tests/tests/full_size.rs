//! The full-size decode path: on untouched 1600x1200 11K Hands originals, `hands-infer`
//! (ONNX Runtime, DCT-scaled JPEG decoding) gives the shipped model's answer that
//! `hands-search eval` (candle, the training cache's decoding) gives: the same labels and
//! probabilities within 1e-3.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{have_onnx_runtime, run};
use hands_tests::shared_data;

/// Largest difference allowed between the two programs' probabilities.
const TOLERANCE: f64 = 1e-3;

fn pretrained(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/pretrained")
        .join(file)
}

/// File name -> (label, probability of each column named in `columns`) from a CSV file.
fn rows(path: &Path, columns: &[&str]) -> BTreeMap<String, (String, Vec<f64>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (path_at, label_at) = (at("path"), at("label"));
    let probability_at: Vec<usize> = columns.iter().map(|c| at(c)).collect();
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let name = Path::new(fields[path_at])
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let p = probability_at
                .iter()
                .map(|&i| fields[i].parse().unwrap())
                .collect();
            (name, (fields[label_at].to_string(), p))
        })
        .collect()
}

#[test]
fn hands_infer_on_full_size_photos_agrees_with_eval() {
    let Some(photos) = shared_data("HANDS_PHOTOS", "hands-11k-photos", "11K Hands photos") else {
        return;
    };
    if !have_onnx_runtime() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let evaluated = dir.path().join("eval.csv");
    let inferred = dir.path().join("infer.csv");
    run(
        "hands-search",
        &[
            "eval".as_ref(),
            "--model".as_ref(),
            pretrained("hands.safetensors").as_os_str(),
            "--data".as_ref(),
            photos.as_os_str(),
            "--split".as_ref(),
            "all".as_ref(),
            "--predictions".as_ref(),
            evaluated.as_os_str(),
        ],
    );
    run(
        "hands-infer",
        &[
            "--model".as_ref(),
            pretrained("hands.onnx").as_os_str(),
            "--output".as_ref(),
            inferred.as_os_str(),
            photos.join("images").as_os_str(),
        ],
    );
    let columns = ["p_female", "p_male"];
    let evaluated = rows(&evaluated, &columns);
    let inferred = rows(&inferred, &columns);
    assert_eq!(evaluated.len(), 64, "every photo evaluated");
    assert_eq!(
        evaluated.keys().collect::<Vec<_>>(),
        inferred.keys().collect::<Vec<_>>()
    );
    for (name, (truth, p_eval)) in &evaluated {
        let (label, p_infer) = &inferred[name];
        let predicted = if p_eval[0] >= p_eval[1] {
            "female"
        } else {
            "male"
        };
        assert!(
            ["female", "male"].contains(&truth.as_str()),
            "{name}: {truth}"
        );
        assert_eq!(label, predicted, "{name}: {p_eval:?} vs {p_infer:?}");
        for (a, b) in p_eval.iter().zip(p_infer) {
            assert!(
                (a - b).abs() <= TOLERANCE,
                "{name}: {p_eval:?} vs {p_infer:?}"
            );
        }
    }
}
