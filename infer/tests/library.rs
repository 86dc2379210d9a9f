//! The library API on the fixture model: card, preprocessing parity with training, batching,
//! threads, bad inputs and refused models.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{first_images, fixture, have_ort, sample_images, write_zoo};
use hands_infer::{DeviceChoice, Error, Options, Predictor};
use hands_models::preprocess;

fn open() -> Predictor {
    Predictor::open_with(
        fixture("tiny.onnx"),
        &Options {
            device: DeviceChoice::Cpu,
            threads: Some(2),
            ..Options::default()
        },
    )
    .unwrap()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
}

#[test]
fn opens_the_fixture_and_reads_its_card() {
    if !have_ort("opens_the_fixture_and_reads_its_card") {
        return;
    }
    let predictor = open();
    assert_eq!(predictor.labels(), ["female", "male"]);
    assert_eq!(predictor.input_size(), 32);
    assert_eq!(
        predictor.execution_provider(),
        hands_infer::ExecutionProvider::Cpu
    );
    assert!(predictor.ort_library().exists());
}

#[test]
fn inference_sees_the_pixels_training_sees() {
    if !have_ort("inference_sees_the_pixels_training_sees") {
        return;
    }
    let Some(images) = sample_images("inference_sees_the_pixels_training_sees") else {
        return;
    };
    let predictor = open();
    for path in common::first_images(&images, 5) {
        // Training's data cache calls load_resized / load_input; inference must agree exactly.
        let training = preprocess::load_input(&path, &predictor.card().input).unwrap();
        let inference = predictor.preprocess_path(&path).unwrap();
        assert_eq!(inference.data(), &training[..], "{}", path.display());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            predictor.preprocess_bytes(&bytes, &path).unwrap().data(),
            &training[..]
        );
    }
}

#[test]
fn every_entry_point_gives_the_same_prediction() {
    if !have_ort("every_entry_point_gives_the_same_prediction") {
        return;
    }
    let Some(images) = sample_images("every_entry_point_gives_the_same_prediction") else {
        return;
    };
    let predictor = open();
    let paths = common::first_images(&images, 70);
    let batched = predictor.predict_paths(&paths).unwrap();
    assert_eq!(batched.len(), paths.len());
    for (path, batched) in paths.iter().zip(&batched).take(6) {
        let batched = batched.as_ref().unwrap();
        let single = predictor.predict_path(path).unwrap();
        let bytes = predictor
            .predict_bytes(&std::fs::read(path).unwrap())
            .unwrap();
        let decoded = image::DynamicImage::ImageRgb8(
            preprocess::load_resized(path, predictor.input_size()).unwrap(),
        );
        let from_image = predictor.predict_image(&decoded).unwrap();
        for other in [&single, &bytes, &from_image] {
            assert_eq!(other.label, batched.label);
            assert!(close(&other.probabilities, &batched.probabilities));
        }
        let sum: f32 = batched.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4);
        assert_eq!(batched.label, predictor.labels()[batched.index]);
    }
    let last = batched.last().unwrap().as_ref().unwrap();
    assert_eq!(last.timing.batch, 70 - 64);
}

#[test]
fn one_predictor_serves_many_threads() {
    if !have_ort("one_predictor_serves_many_threads") {
        return;
    }
    let Some(images) = sample_images("one_predictor_serves_many_threads") else {
        return;
    };
    let predictor = Arc::new(open());
    let paths = common::first_images(&images, 8);
    let expected: Vec<Vec<f32>> = paths
        .iter()
        .map(|p| predictor.predict_path(p).unwrap().probabilities)
        .collect();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let predictor = Arc::clone(&predictor);
            let paths = paths.clone();
            std::thread::spawn(move || {
                paths
                    .iter()
                    .map(|p| predictor.predict_path(p).unwrap().probabilities)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for handle in handles {
        let got = handle.join().unwrap();
        assert!(got.iter().zip(&expected).all(|(a, b)| close(a, b)));
    }
}

#[test]
fn bad_files_get_their_error_and_the_rest_is_predicted() {
    if !have_ort("bad_files_get_their_error_and_the_rest_is_predicted") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let zoo = write_zoo(dir.path());
    let predictor = open();
    let names: Vec<&str> = zoo
        .good
        .iter()
        .copied()
        .chain(zoo.bad.iter().map(|(n, _)| *n))
        .collect();
    let paths: Vec<_> = names.iter().map(|n| dir.path().join(n)).collect();
    let results = predictor.predict_paths(&paths).unwrap();
    for (name, result) in names.iter().zip(&results) {
        match zoo.bad.iter().find(|(n, _)| n == name) {
            Some((_, reason)) => {
                let message = result.as_ref().unwrap_err().to_string();
                assert!(message.contains(name), "{message} names the file");
                assert!(message.contains(reason), "{name}: {message}");
            }
            None => {
                assert!(result.is_ok(), "{name}: {:?}", result.as_ref().err());
            }
        }
    }
}

#[test]
fn models_that_do_not_match_their_card_are_refused() {
    if !have_ort("models_that_do_not_match_their_card_are_refused") {
        return;
    }
    let refuse = |path: &Path, expected: &str| {
        let err = Predictor::open(path).unwrap_err();
        assert!(matches!(err, Error::Model { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains(&*path.to_string_lossy()), "{message}");
    };
    refuse(&fixture("card-mismatch.onnx"), "[batch, 3, 64, 64]");
    refuse(&fixture("wrong-input-name.onnx"), "named `input`");
    refuse(&fixture("no-card.onnx"), "no model card");
    refuse(&fixture("missing.onnx"), "not found");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"not a protobuf").unwrap();
    refuse(&junk, "ONNX Runtime cannot load it");
}

#[test]
fn cuda_is_refused_or_used_never_silently_replaced() {
    if !have_ort("cuda_is_refused_or_used_never_silently_replaced") {
        return;
    }
    let options = Options {
        device: DeviceChoice::Cuda(0),
        ..Options::default()
    };
    match Predictor::open_with(fixture("tiny.onnx"), &options) {
        Ok(p) => assert_eq!(p.execution_provider(), hands_infer::ExecutionProvider::Cuda),
        Err(e) => assert!(matches!(e, Error::Device(_)), "{e:?}"),
    }
    let auto = Predictor::open_with(fixture("tiny.onnx"), &Options::default()).unwrap();
    if !cfg!(feature = "cuda") {
        assert_eq!(
            auto.execution_provider(),
            hands_infer::ExecutionProvider::Cpu
        );
    }
}

#[test]
fn raw_outputs_hold_the_logits_whose_softmax_the_predictions_are() {
    if !have_ort("raw_outputs_hold_the_logits_whose_softmax_the_predictions_are") {
        return;
    }
    let predictor = Predictor::default_model(&Options {
        device: DeviceChoice::Cpu,
        threads: Some(2),
        ..Options::default()
    })
    .unwrap();
    let size = predictor.input_size() as usize;
    let inputs: Vec<hands_infer::Input> = (0..3)
        .map(|i| {
            let data = (0..3 * size * size)
                .map(|j| ((i * 7919 + j) * 37 % 101) as f32 / 50.0 - 1.0)
                .collect();
            hands_infer::Input::from_data(data)
        })
        .collect();
    let refs: Vec<&hands_infer::Input> = inputs.iter().collect();
    assert!(
        predictor.card().calibration.is_some(),
        "the shipped model is calibrated"
    );
    let outputs = predictor.outputs(&refs).unwrap();
    let predictions = predictor.predict_inputs(&refs).unwrap();
    assert_eq!(outputs.len(), 3);
    for (output, prediction) in outputs.iter().zip(&predictions) {
        let logits = output
            .logits
            .as_ref()
            .expect("hands-export writes the logits");
        // A calibrated card's probabilities are softmax(logits / T).
        let t = predictor.card().temperature() as f32;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| ((l - max) / t).exp()).collect();
        let softmax: Vec<f32> = exp.iter().map(|e| e / exp.iter().sum::<f32>()).collect();
        assert!(
            close(&softmax, &output.probabilities),
            "{softmax:?} {output:?}"
        );
        assert_eq!(output.probabilities, prediction.probabilities);
    }
    // An input of the wrong length is refused, not run.
    let short = hands_infer::Input::from_data(vec![0.0; 5]);
    assert!(predictor.outputs(&[&short]).is_err());
}

#[test]
fn a_target_accuracy_picks_the_threshold_from_the_cards_curve() {
    if !have_ort("a_target_accuracy_picks_the_threshold_from_the_cards_curve") {
        return;
    }
    let with = |min_confidence: Option<f32>, target_accuracy: Option<f64>| Options {
        device: DeviceChoice::Cpu,
        threads: Some(1),
        min_confidence,
        target_accuracy,
        ..Options::default()
    };
    // The shipped, calibrated model: the lowest threshold of its curve that reaches 0.95.
    let predictor = Predictor::default_model(&with(None, Some(0.95))).unwrap();
    let curve = &predictor.card().calibration.as_ref().unwrap().coverage;
    let point = predictor.coverage().unwrap().clone();
    assert!(point.accuracy >= 0.95);
    assert!(curve
        .iter()
        .filter(|p| p.threshold < point.threshold)
        .all(|p| p.accuracy < 0.95));
    assert_eq!(predictor.min_confidence(), Some(point.threshold as f32));
    // Answers below it are uncertain, with their probabilities kept.
    if let Some(images) =
        sample_images("a_target_accuracy_picks_the_threshold_from_the_cards_curve")
    {
        for path in first_images(&images, 40) {
            let prediction = predictor.predict_path(&path).unwrap();
            let top = prediction
                .probabilities
                .iter()
                .copied()
                .fold(0f32, f32::max);
            assert_eq!(prediction.confident, top >= point.threshold as f32);
            assert_eq!(prediction.label == "uncertain", !prediction.confident);
        }
    }

    // Refused: above the curve (naming the best reachable), outside (0.5, 1), with a
    // minimum confidence too, and on a card without a curve.
    let best = curve.iter().map(|p| p.accuracy).fold(0.0, f64::max);
    let err = Predictor::default_model(&with(None, Some(0.999)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no confidence threshold reaches accuracy 0.999")
            && err.contains(&format!("{best:.4}")),
        "{err}"
    );
    for target in [0.5, 1.0, 0.3, f64::NAN] {
        let err = Predictor::default_model(&with(None, Some(target))).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{target}: {err}");
    }
    let err = Predictor::default_model(&with(Some(0.8), Some(0.95))).unwrap_err();
    assert!(err.to_string().contains("give one"), "{err}");
    let err = Predictor::open_with(fixture("tiny.onnx"), &with(None, Some(0.95)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no accuracy-coverage curve"), "{err}");
    // An uncalibrated card still opens and answers without a target.
    assert!(Predictor::open_with(fixture("tiny.onnx"), &with(None, None)).is_ok());
}

#[test]
fn predict_group_combines_the_photos_it_can_read() {
    if !have_ort("predict_group_combines_the_photos_it_can_read") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let zoo = write_zoo(dir.path());
    let good: Vec<std::path::PathBuf> = zoo
        .good
        .iter()
        .take(3)
        .map(|n| dir.path().join(n))
        .collect();
    let bad = dir.path().join(zoo.bad[0].0);
    let predictor = open();
    let alone: Vec<Vec<f32>> = good
        .iter()
        .map(|p| predictor.predict_path(p).unwrap().probabilities)
        .collect();
    let mut paths = good.clone();
    paths.push(bad.clone());
    let group = predictor.predict_group(&paths).unwrap();
    assert_eq!((group.images, group.failed), (3, 1));
    let mean_log = |k: usize| alone.iter().map(|p| f64::from(p[k]).ln()).sum::<f64>() / 3.0;
    let (a, b) = (mean_log(0).exp(), mean_log(1).exp());
    assert!((f64::from(group.probabilities[0]) - a / (a + b)).abs() < 1e-5);
    assert_eq!(group.label, predictor.labels()[group.index]);
    // Nothing readable: an error, not an answer.
    let err = predictor.predict_group(&[bad]).unwrap_err().to_string();
    assert!(err.contains("no photo of the group"), "{err}");
}
