//! The `hands-export` command: its outputs, its messages and its exit status.

mod common;

use std::process::Command;

use common::*;
use hands_models::Genotype;

fn hands_export() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hands-export"))
}

#[test]
fn exports_and_reports_or_fails_naming_the_problem() {
    let with_ort = ort_available("cli");
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = model_file(dir.path(), &Genotype::published("PDARTS").unwrap(), 2);
    let out = dir.path().join("dist");

    let mut cmd = hands_export();
    cmd.arg("--model").arg(&model).arg("--out").arg(&out);
    cmd.args(["--name", "pdarts", "--batch", "dynamic", "--opset", "17"]);
    if !with_ort {
        cmd.arg("--skip-parity");
    }
    let run = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        files_in(&out),
        ["pdarts.card.json", "pdarts.onnx", "pdarts.safetensors"]
    );
    assert!(stdout.contains("BatchNorm layers folded"), "{stdout}");
    if with_ort {
        assert!(stdout.contains("batch 7: logits max |diff|"), "{stdout}");
    } else {
        assert!(stderr.contains("--skip-parity"), "{stderr}");
    }

    // A model file that is not one: the exit status says so and the message names the file.
    let run = hands_export()
        .arg("--model")
        .arg(out.join("pdarts.onnx"))
        .arg("--out")
        .arg(dir.path().join("other"))
        .arg("--skip-parity")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("pdarts.onnx") && stderr.contains("not a safetensors file"),
        "{stderr}"
    );
    assert!(!dir.path().join("other").join("model.onnx").exists());

    // A bad batch is refused before anything runs.
    let run = hands_export()
        .arg("--model")
        .arg(&model)
        .args(["--out", "x", "--batch", "0"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("positive integer"));
}
