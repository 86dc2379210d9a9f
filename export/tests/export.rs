//! Exports of seeded random networks (C = 8, 5 cells, 32x32 inputs, BN statistics drawn at
//! random so that folding matters) for every published genotype and one that uses every
//! operation at both strides, checked against candle in ONNX Runtime, plus the refusals.
//!
//! ONNX Runtime is found as `hands-export` finds it (ORT_DYLIB_PATH, `.tools/onnxruntime`
//! from `scripts/setup-ort`, python3's onnxruntime). Without it the ONNX Runtime parts are
//! skipped with a notice, except under `CI=true`, where they fail.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::*;
use hands_export::{export, BatchSize, Error, Parity};
use hands_models::cost::network_cost;
use hands_models::genotype::PUBLISHED;
use hands_models::Genotype;

fn check_export(genotype_name: &str, genotype: &Genotype, with_ort: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (model, written_card) = model_file(dir.path(), genotype, 11);
    let out = dir.path().join("dist");
    let report = export(&model, &out, &options(BatchSize::Dynamic, with_ort))
        .unwrap_or_else(|e| panic!("{genotype_name}: {e}"));

    // The card: the one written, without auxiliary head and with its multiply-adds, in both
    // files.
    let mut expected_card = written_card.clone();
    expected_card.network.auxiliary = false;
    let network = &expected_card.network;
    let counted = network_cost(
        genotype,
        network.init_channels,
        network.layers,
        network.stem_stride,
        expected_card.input.size as usize,
        expected_card.labels.len(),
    );
    expected_card.network.multiply_adds = Some(counted.total.multiply_adds);
    assert_eq!(report.card, expected_card);
    let onnx = read_onnx(&report.onnx);
    assert_eq!(
        onnx_card(&onnx),
        expected_card,
        "{genotype_name}: ONNX card"
    );
    let exported = hands_export::ModelFile::read(&report.safetensors).unwrap();
    assert_eq!(
        exported.card, expected_card,
        "{genotype_name}: safetensors card"
    );
    let card_json = std::fs::read_to_string(&report.card_json).unwrap();
    assert_eq!(
        hands_models::ModelCard::from_json(&card_json).unwrap(),
        expected_card,
        "{genotype_name}: card.json"
    );

    // Inference weights only, and they load into the candle network with the same output.
    assert!(exported.dropped.is_empty(), "{:?}", exported.dropped);
    assert!(report.dropped.iter().all(|n| n.starts_with("auxiliary.")));
    assert!(!report.dropped.is_empty());
    let original = hands_export::ModelFile::read(&model).unwrap();
    let x = hands_export::parity::synthetic_batch(3, SIZE as usize, 5).unwrap();
    let a = hands_export::parity::candle_outputs(
        &original.network(&candle_core::Device::Cpu).unwrap(),
        &x,
        1.0,
    )
    .unwrap();
    let b = hands_export::parity::candle_outputs(
        &exported.network(&candle_core::Device::Cpu).unwrap(),
        &x,
        1.0,
    )
    .unwrap();
    let d = hands_export::parity::max_abs_diff(&a.logits, &b.logits);
    assert!(
        d <= 1e-4,
        "{genotype_name}: folded safetensors logits differ by {d}"
    );
    assert!(report.folded_logits_max_abs <= 1e-4);

    // The graph: standard ops only, BN folded, unique names, dynamic batch.
    let graph = onnx.graph.as_ref().unwrap();
    let mut names = std::collections::HashSet::new();
    for node in &graph.node {
        let op = node.op_type.as_deref().unwrap();
        assert!(
            [
                "Conv",
                "Relu",
                "MaxPool",
                "AveragePool",
                "Add",
                "Concat",
                "Slice",
                "GlobalAveragePool",
                "Flatten",
                "Gemm",
                "Softmax"
            ]
            .contains(&op),
            "unexpected op {op}"
        );
        assert!(
            names.insert(node.name.clone().unwrap()),
            "duplicate node name"
        );
    }
    assert_eq!(
        report.folded_batch_norms,
        original
            .tensors
            .keys()
            .filter(|k| k.ends_with("running_mean"))
            .count()
    );
    assert!(graph
        .node
        .iter()
        .any(|n| n.name.as_deref() == Some("stem.0/Conv")));
    let outputs: Vec<&str> = graph
        .output
        .iter()
        .map(|o| o.name.as_deref().unwrap())
        .collect();
    assert_eq!(outputs, ["logits", "probabilities"]);
    assert_eq!(graph.input[0].name.as_deref(), Some("image"));

    assert_eq!(
        files_in(&out),
        ["hands.card.json", "hands.onnx", "hands.safetensors"]
    );
    if with_ort {
        let batches: Vec<usize> = report.parity.iter().map(|p| p.batch).collect();
        assert_eq!(batches, [1, 7]);
        for p in &report.parity {
            assert!(p.within(1e-4), "{genotype_name}: {p:?}");
        }
        eprintln!("{genotype_name}: {:?}", report.parity);
    }
}

#[test]
fn every_published_genotype_and_every_op_exports_and_matches_candle() {
    let with_ort = ort_available("every_published_genotype");
    for name in PUBLISHED {
        check_export(name, &Genotype::published(name).unwrap(), with_ort);
    }
    check_export("all_ops", &all_ops(), with_ort);
}

#[test]
fn a_strided_stem_exports_and_matches_candle() {
    // A 64x64 input behind a stride-2 stem: the graph's stem convolution takes stride 2, the
    // card keeps it, and ONNX Runtime gives candle's probabilities.
    let with_ort = ort_available("a_strided_stem_exports_and_matches_candle");
    let dir = tempfile::tempdir().unwrap();
    let genotype = Genotype::published("DARTS_V2").unwrap();
    let (tensors, parameters) = random_tensors_with_stem(&genotype, 3, 2);
    let mut written = card(&genotype, true, parameters);
    written.input.size = 64;
    written.network.stem_stride = 2;
    let model = dir.path().join("model.safetensors");
    write_model(&model, &tensors, Some(&written));
    let report = export(
        &model,
        &dir.path().join("dist"),
        &options(BatchSize::Dynamic, with_ort),
    )
    .unwrap();
    assert_eq!(report.card.network.stem_stride, 2);
    assert_eq!(report.card.input.size, 64);
    let strided = network_cost(&genotype, C, LAYERS, 2, 64, 2).total;
    assert_eq!(
        report.card.network.multiply_adds,
        Some(strided.multiply_adds)
    );
    let onnx = read_onnx(&report.onnx);
    let graph = onnx.graph.as_ref().unwrap();
    let stem = graph
        .node
        .iter()
        .find(|n| n.name.as_deref() == Some("stem.0/Conv"))
        .unwrap();
    let strides = stem
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("strides"))
        .unwrap();
    assert_eq!(strides.ints, [2, 2]);
    if with_ort {
        assert!(!report.parity.is_empty());
        for p in &report.parity {
            assert!(p.within(1e-4), "{p:?}");
        }
    }
}

/// The first images of the shared 11K Hands sample ([`hands_tests::sample_dir`]).
fn sample_images() -> Option<Vec<std::path::PathBuf>> {
    let root = hands_tests::sample_dir()?;
    let mut files: Vec<_> = std::fs::read_dir(root.join("images"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files.truncate(PARITY_IMAGES);
    (!files.is_empty()).then_some(files)
}

const PARITY_IMAGES: usize = 7;

#[test]
fn parity_holds_on_real_hand_photos() {
    let with_ort = ort_available("parity_holds_on_real_hand_photos");
    let Some(images) = sample_images() else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "the shared sample is required under CI=true"
        );
        eprintln!("parity_holds_on_real_hand_photos: SKIPPED: no shared sample (set HANDS_SAMPLE)");
        return;
    };
    if !with_ort {
        return;
    }
    assert_eq!(images.len(), PARITY_IMAGES);
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = model_file(
        dir.path(),
        &Genotype::published("PC_DARTS_cifar").unwrap(),
        9,
    );
    let mut opts = options(BatchSize::Dynamic, true);
    opts.parity = Parity::Check {
        ort_lib: None,
        images,
    };
    let report = export(&model, dir.path(), &opts).unwrap();
    let batches: Vec<usize> = report.parity.iter().map(|p| p.batch).collect();
    assert_eq!(batches, [1, 7]);
    for p in &report.parity {
        assert!(p.within(1e-4), "{p:?}");
    }
    eprintln!("real photos: {:?}", report.parity);
}

#[test]
fn fixed_batch_graph_has_that_batch() {
    let with_ort = ort_available("fixed_batch");
    let dir = tempfile::tempdir().unwrap();
    let genotype = Genotype::published("DARTS_V2").unwrap();
    let (model, _) = model_file(dir.path(), &genotype, 3);
    let mut opts = options(BatchSize::Fixed(3), with_ort);
    opts.latency_threads = Some(1);
    let report = export(&model, dir.path(), &opts).unwrap();
    let onnx = read_onnx(&report.onnx);
    let input = format!("{:?}", onnx.graph.unwrap().input[0]);
    assert!(input.contains("DimValue(3)"), "{input}");
    if with_ort {
        assert_eq!(report.parity.len(), 1);
        assert_eq!(report.parity[0].batch, 3);
        let batches: Vec<usize> = report
            .card
            .network
            .latency
            .iter()
            .map(|l| l.batch)
            .collect();
        assert_eq!(batches, [3], "a fixed batch is timed at that batch only");
    }
}

#[test]
fn the_card_records_the_exported_graphs_measured_latency() {
    if !ort_available("the_card_records_the_exported_graphs_measured_latency") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let genotype = Genotype::published("DARTS_V2").unwrap();
    let (model, _) = model_file(dir.path(), &genotype, 5);
    let mut opts = options(BatchSize::Dynamic, true);
    opts.latency_threads = Some(1);
    let report = export(&model, &dir.path().join("timed"), &opts).unwrap();

    let latency = &report.card.network.latency;
    let batches: Vec<usize> = latency.iter().map(|l| l.batch).collect();
    assert_eq!(batches, hands_infer::timing::LATENCY_BATCHES);
    let cpu = hands_infer::timing::cpu_model();
    for measured in latency {
        assert_eq!((measured.threads, measured.cpu.as_str()), (1, cpu.as_str()));
        assert!(measured.median_ms > 0.0 && measured.median_ms.is_finite());
    }
    // Every file carries the card with its latency.
    assert_eq!(onnx_card(&read_onnx(&report.onnx)), report.card);
    let exported = hands_export::ModelFile::read(&report.safetensors).unwrap();
    assert_eq!(exported.card, report.card);
    let card_json = std::fs::read_to_string(&report.card_json).unwrap();
    assert_eq!(
        hands_models::ModelCard::from_json(&card_json).unwrap(),
        report.card
    );

    // Exported again without timing, the card does not keep the old graph's latency.
    let untimed = export(
        &report.safetensors,
        &dir.path().join("untimed"),
        &options(BatchSize::Dynamic, true),
    )
    .unwrap();
    assert!(untimed.card.network.latency.is_empty());
}

#[test]
fn onnx_file_passes_the_onnx_checker() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-onnx");
    let python_ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !python_ok {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "python3 is required under CI=true"
        );
        eprintln!("onnx_file_passes_the_onnx_checker: SKIPPED: no python3");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, genotype) in [Genotype::published("PDARTS").unwrap(), all_ops()]
        .iter()
        .enumerate()
    {
        let sub = dir.path().join(i.to_string());
        std::fs::create_dir_all(&sub).unwrap();
        let (model, _) = model_file(&sub, genotype, 1);
        let mut opts = options(BatchSize::Dynamic, false);
        opts.onnx.opset = if i == 0 { 17 } else { 21 };
        files.push(export(&model, &sub, &opts).unwrap().onnx);
    }
    let out = std::process::Command::new(&script)
        .args(&files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() && text.contains("pip") && std::env::var("CI").as_deref() != Ok("true")
    {
        eprintln!("onnx_file_passes_the_onnx_checker: SKIPPED: cannot install onnx: {text}");
        return;
    }
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(": ok").count(), 2, "{text}");
    assert!(text.contains("image['batch', 3, 32, 32]"), "{text}");
    assert!(text.contains("probabilities['batch', 2]"), "{text}");
}

fn export_err(model: &Path, out: &Path) -> Error {
    export(model, out, &options(BatchSize::Dynamic, false)).unwrap_err()
}

#[test]
fn a_file_without_card_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (tensors, _) = random_tensors(&Genotype::published("DARTS_V1").unwrap(), 1);
    let model = dir.path().join("model.safetensors");
    write_model(&model, &tensors, None);
    let out = dir.path().join("dist");
    let msg = export_err(&model, &out).to_string();
    assert!(
        msg.contains("no model card") && msg.contains("model.safetensors"),
        "{msg}"
    );
    assert!(files_in(&out).is_empty());
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let genotype = Genotype::published("DARTS_V2").unwrap();
    let (mut tensors, params) = random_tensors(&genotype, 1);
    let card = card(&genotype, true, params);
    let model = dir.path().join("model.safetensors");
    let out = dir.path().join("dist");

    let name = "cells.2.ops.1.op.6.weight";
    let removed = tensors.remove(name).unwrap();
    write_model(&model, &tensors, Some(&card));
    let err = export_err(&model, &out);
    assert!(
        matches!(
            err,
            Error::Models(hands_models::Error::MissingTensor { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains(name), "{err}");

    tensors.insert(name.into(), removed.narrow(0, 0, 8).unwrap());
    write_model(&model, &tensors, Some(&card));
    let err = export_err(&model, &out);
    assert!(
        matches!(err, Error::Models(hands_models::Error::TensorShape { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains(name) && err.to_string().contains("[8, 16, 1, 1]"),
        "{err}"
    );
    assert!(files_in(&out).is_empty());
}

#[test]
fn weights_of_another_genotype_are_refused_naming_a_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (tensors, params) = random_tensors(&Genotype::published("DARTS_V2").unwrap(), 1);
    let card = card(&Genotype::published("PDARTS").unwrap(), true, params);
    let model = dir.path().join("model.safetensors");
    write_model(&model, &tensors, Some(&card));
    let msg = export_err(&model, &dir.path().join("dist")).to_string();
    assert!(msg.contains("`cells."), "{msg}");
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn extra_network_tensors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let genotype = Genotype::published("DARTS_V1").unwrap();
    let (mut tensors, params) = random_tensors(&genotype, 1);
    tensors.insert(
        "cells.1.ops.0.op.1.weight".into(),
        Tensor::zeros((8, 1, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let model = dir.path().join("model.safetensors");
    write_model(&model, &tensors, Some(&card(&genotype, true, params)));
    let msg = export_err(&model, &dir.path().join("dist")).to_string();
    assert!(
        msg.contains("cells.1.ops.0.op.1.weight") && msg.contains("different genotype"),
        "{msg}"
    );
}

#[test]
fn overwriting_the_input_and_bad_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = model_file(dir.path(), &Genotype::published("DARTS_V1").unwrap(), 1);
    let mut opts = options(BatchSize::Dynamic, false);
    opts.name = "model".into();
    let msg = export(&model, dir.path(), &opts).unwrap_err().to_string();
    assert!(msg.contains("is the input"), "{msg}");
    opts.name = "hands".into();
    opts.onnx.opset = 11;
    let msg = export(&model, dir.path(), &opts).unwrap_err().to_string();
    assert!(msg.contains("opset 11"), "{msg}");
    opts.onnx.opset = 17;
    opts.name = "../x".into();
    assert!(export(&model, dir.path(), &opts).is_err());
    assert_eq!(files_in(dir.path()), ["model.safetensors"]);
}

#[test]
fn a_calibrated_card_divides_the_logits_by_its_temperature_in_the_graph() {
    if !ort_available("a_calibrated_card_divides_the_logits_by_its_temperature_in_the_graph") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let genotype = Genotype::published("DARTS_V2").unwrap();
    let (tensors, params) = random_tensors(&genotype, 9);
    let mut card = card(&genotype, true, params);
    card.calibration = Some(hands_models::card::Calibration {
        method: "temperature scaling".into(),
        temperature: 2.5,
        fitted_on: "a test".into(),
        images: 10,
        bins: 15,
        ece_before: 0.1,
        ece_after: 0.05,
        coverage: Vec::new(),
        per_person: None,
    });
    let model = dir.path().join("model.safetensors");
    write_model(&model, &tensors, Some(&card));
    let mut opts = options(BatchSize::Dynamic, true);
    opts.latency_threads = None;
    let report = export(&model, &dir.path().join("out"), &opts).unwrap();
    assert_eq!(report.card.temperature(), 2.5);

    // ONNX Runtime's probabilities are candle's softmax(logits / 2.5), and not its plain
    // softmax; the logits output stays the raw logits.
    let predictor = hands_infer::Predictor::open(&report.onnx).unwrap();
    let exported = hands_export::ModelFile::read(&report.safetensors).unwrap();
    let network = exported.network(&Device::Cpu).unwrap();
    let x = hands_export::parity::synthetic_batch(4, SIZE as usize, 3).unwrap();
    let onnx = hands_export::parity::onnx_outputs(&predictor, &x).unwrap();
    let calibrated = hands_export::parity::candle_outputs(&network, &x, 2.5).unwrap();
    let plain = hands_export::parity::candle_outputs(&network, &x, 1.0).unwrap();
    let max_abs = hands_export::parity::max_abs_diff;
    assert!(max_abs(&onnx.probabilities, &calibrated.probabilities) <= 1e-6);
    assert!(max_abs(&onnx.logits, &calibrated.logits) <= 1e-4);
    assert!(max_abs(&onnx.probabilities, &plain.probabilities) > 1e-3);
    for (row, logits) in calibrated
        .probabilities
        .chunks(2)
        .zip(calibrated.logits.chunks(2))
    {
        let p_male = 1.0 / (1.0 + ((logits[0] - logits[1]) / 2.5).exp());
        assert!((row[1] - p_male).abs() <= 1e-6, "{row:?} {logits:?}");
    }
}
