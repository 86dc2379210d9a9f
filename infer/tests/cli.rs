//! The `hands-infer` command: rows, formats, exit codes, and agreement with the library.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{fixture, hands_infer, hands_infer_command, have_ort, sample_images, text, write_zoo};
use hands_infer::{DeviceChoice, Options, Predictor};

/// CSV rows keyed by file name: (label, probabilities, error).
type Rows = BTreeMap<String, (String, Vec<f32>, String)>;

fn parse_csv(stdout: &[u8]) -> Rows {
    let mut reader = csv::Reader::from_reader(stdout);
    let header = reader.headers().unwrap().clone();
    assert_eq!(
        header.iter().collect::<Vec<_>>(),
        ["path", "label", "p_female", "p_male", "error", "model"]
    );
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let name = Path::new(&r[0])
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let probabilities = if r[2].is_empty() {
                Vec::new()
            } else {
                vec![r[2].parse().unwrap(), r[3].parse().unwrap()]
            };
            (name, (r[1].to_string(), probabilities, r[4].to_string()))
        })
        .collect()
}

fn parse_jsonl(stdout: &[u8]) -> Rows {
    text(stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let name = Path::new(v["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            match v.get("error") {
                Some(e) => (
                    name,
                    (String::new(), Vec::new(), e.as_str().unwrap().into()),
                ),
                None => {
                    let p = &v["probabilities"];
                    let probabilities = vec![
                        p["female"].as_f64().unwrap() as f32,
                        p["male"].as_f64().unwrap() as f32,
                    ];
                    (
                        name,
                        (
                            v["label"].as_str().unwrap().into(),
                            probabilities,
                            String::new(),
                        ),
                    )
                }
            }
        })
        .collect()
}

#[test]
fn a_folder_with_bad_files_gets_one_row_each_and_exit_code_1() {
    if !have_ort("a_folder_with_bad_files_gets_one_row_each_and_exit_code_1") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let zoo = write_zoo(dir.path());
    std::fs::write(
        dir.path().join("readme.txt"),
        "skipped: not an image extension",
    )
    .unwrap();
    let model = fixture("tiny.onnx");
    let folder = dir.path().to_str().unwrap();
    let csv = hands_infer(&["--model", model.to_str().unwrap(), "--batch", "3", folder]);
    assert_eq!(csv.status.code(), Some(1), "{}", text(&csv.stderr));
    let stderr = text(&csv.stderr);
    assert!(stderr.contains("13 images, 5 failures"), "{stderr}");
    assert!(
        stderr.contains("1 non-image files in the folders skipped"),
        "{stderr}"
    );
    let rows = parse_csv(&csv.stdout);
    assert_eq!(rows.len(), zoo.good.len() + zoo.bad.len());
    for name in &zoo.good {
        let (label, probabilities, error) = &rows[*name];
        assert!(error.is_empty(), "{name}: {error}");
        assert!(label == "female" || label == "male");
        assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    for (name, reason) in &zoo.bad {
        let (label, _, error) = &rows[*name];
        assert!(
            label.is_empty() && error.contains(reason),
            "{name}: {error}"
        );
    }

    let jsonl = hands_infer(&[
        "--model",
        model.to_str().unwrap(),
        "--format",
        "jsonl",
        folder,
    ]);
    assert_eq!(jsonl.status.code(), Some(1));
    let json_rows = parse_jsonl(&jsonl.stdout);
    assert_eq!(json_rows.len(), rows.len());
    for (name, (label, probabilities, error)) in &json_rows {
        let (csv_label, csv_probabilities, csv_error) = &rows[name];
        assert_eq!((label, error), (csv_label, csv_error));
        for (a, b) in probabilities.iter().zip(csv_probabilities) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}

#[test]
fn cli_and_library_agree_on_the_sample() {
    if !have_ort("cli_and_library_agree_on_the_sample") {
        return;
    }
    let Some(images) = sample_images("cli_and_library_agree_on_the_sample") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rows.csv");
    let model = fixture("tiny.onnx");
    let run = hands_infer(&[
        "--model",
        model.to_str().unwrap(),
        "--threads",
        "2",
        "--output",
        out.to_str().unwrap(),
        images.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert!(run.stdout.is_empty());
    let rows = parse_csv(&std::fs::read(&out).unwrap());
    let paths = common::first_images(&images, usize::MAX);
    assert_eq!(rows.len(), paths.len());
    let predictor = Predictor::open_with(
        &model,
        &Options {
            device: DeviceChoice::Cpu,
            ..Options::default()
        },
    )
    .unwrap();
    for (path, result) in paths.iter().zip(predictor.predict_paths(&paths).unwrap()) {
        let prediction = result.unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        let (label, probabilities, _) = &rows[&*name];
        assert_eq!(*label, prediction.label, "{name}");
        for (a, b) in probabilities.iter().zip(&prediction.probabilities) {
            assert!((a - b).abs() < 2e-6, "{name}: {a} vs {b}");
        }
    }
}

/// The stderr of a measuring run (`--decode-only`, `--network-only`) over the zoo, which
/// writes no rows.
fn measuring_run(dir: &Path, mode: &[&str]) -> String {
    let tiny = fixture("tiny.onnx");
    let mut args = vec!["--model", tiny.to_str().unwrap()];
    args.extend_from_slice(mode);
    args.push(dir.to_str().unwrap());
    let run = hands_infer(&args);
    assert!(run.stdout.is_empty());
    text(&run.stderr)
}

#[test]
fn decode_only_and_network_only_report_their_rates() {
    if !have_ort("decode_only_and_network_only_report_their_rates") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_zoo(dir.path());
    let decode = measuring_run(dir.path(), &["--decode-only"]);
    assert!(
        decode.contains("decoded 13 images (5 failures)"),
        "{decode}"
    );
    assert!(decode.contains("images/s (decode only"), "{decode}");
    let network = measuring_run(dir.path(), &["--network-only", "--batch", "4"]);
    assert!(
        network.contains("ran the network on 8 images (5 failures)"),
        "{network}"
    );
    assert!(network.contains("images/s (network only") && network.contains("batch 4"));
    let both = hands_infer(&[
        "--network-only",
        "--decode-only",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(both.status.code(), Some(2), "{}", text(&both.stderr));
}

#[test]
fn a_reader_that_closes_the_output_early_gets_no_rate_claimed() {
    if !have_ort("a_reader_that_closes_the_output_early_gets_no_rate_claimed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_zoo(dir.path());
    let tiny = fixture("tiny.onnx");
    let mut child = hands_infer_command(&[Path::new("--model"), &tiny, dir.path()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before any row is read, as `head -0` would.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("the output was closed before the last of 13 rows"),
        "{stderr}"
    );
    assert!(!stderr.contains("images/s"), "{stderr}");
    // Rows were lost: the run did not deliver, whatever the rows before said.
    assert_eq!(output.status.code(), Some(2), "{stderr}");
}

#[test]
fn refused_model_missing_model_and_missing_runtime_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    write_zoo(dir.path());
    let folder = dir.path().to_str().unwrap();

    let missing = hands_infer(&["--model", "/nowhere/model.onnx", folder]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("model file not found"));

    let no_ort = hands_infer(&[
        "--model",
        fixture("tiny.onnx").to_str().unwrap(),
        "--ort-lib",
        "/nowhere/libonnxruntime.so",
        folder,
    ]);
    assert_eq!(no_ort.status.code(), Some(2));
    let stderr = text(&no_ort.stderr);
    assert!(stderr.contains("scripts/setup-ort"), "{stderr}");
    assert!(
        stderr.contains("pip install onnxruntime==1.31.1"),
        "{stderr}"
    );

    if !have_ort("refused_model_missing_model_and_missing_runtime_exit_2") {
        return;
    }
    let refused = hands_infer(&[
        "--model",
        fixture("card-mismatch.onnx").to_str().unwrap(),
        folder,
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("as the card says"));
}
