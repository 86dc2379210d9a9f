//! Careless and hostile input to `hands-search`, round two (issue 45): one writer per run
//! folder, nothing in a run folder reused from other settings, model files sealed against
//! edits of their card, and signals that leave the last checkpoint and no temporary file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{tiny_cv, tiny_train, trained_model};
use hands_models::lock::RunLock;
use hands_models::nn::model_file::ModelFile;
use hands_nas::args::{Algo, SearchArgs};
use hands_nas::search::run_search;
use hands_tests::datasets::{class_folders, hands_info};
use hands_train::cv::cross_validate;
use hands_train::train::train;

/// How long a run may take before it counts as hung (a guard, not a measurement).
const HANG_GUARD: Duration = Duration::from_secs(300);

#[test]
fn a_second_run_in_a_run_folder_is_refused_with_the_holders_process_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    hands_info(&data, 6, true);
    let holder = format!("in use by process {}", std::process::id());

    let out = dir.path().join("train");
    let held = RunLock::folder(&out).unwrap();
    let err = format!(
        "{:#}",
        train(&tiny_train(&data, "DARTS_V2", &out)).unwrap_err()
    );
    assert!(err.contains(&holder), "{err}");
    let mut search = SearchArgs::new(&data, Algo::Darts);
    search.run.out = Some(out.clone());
    let err = format!("{:#}", run_search(&search).unwrap_err());
    assert!(err.contains(&holder), "{err}");
    let err = format!("{:#}", cross_validate(&tiny_cv(&data, &out)).unwrap_err());
    assert!(err.contains(&holder), "{err}");
    // Nothing was written beside the holder's lock.
    let names: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(names.len(), 1, "{names:?}");
    drop(held);

    train(&tiny_train(&data, "DARTS_V2", &out)).unwrap();
    assert!(
        hands_tests::hidden_files(&out).is_empty(),
        "{:?}",
        hands_tests::hidden_files(&out)
    );
}

#[test]
fn a_finished_fold_trained_under_other_settings_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 8);
    let out = dir.path().join("cv");
    let mut args = tiny_cv(&data, &out);
    args.stop_after_runs = Some(1);
    cross_validate(&args).unwrap();

    // The finished fold's settings are not the cross-validation's any more.
    let config = out.join("DARTS_V2/fold-0/config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let mut settings: serde_json::Value = serde_json::from_str(&text).unwrap();
    settings["lr"] = serde_json::json!(0.5);
    std::fs::write(&config, settings.to_string()).unwrap();

    let mut resume = tiny_cv(&data, &out);
    resume.train.run.resume = true;
    let err = format!("{:#}", cross_validate(&resume).unwrap_err());
    assert!(
        err.contains("fold-0") && err.contains("other settings"),
        "{err}"
    );
    assert!(err.contains("--lr"), "{err}");
    assert!(!out.join("cv.json").exists());
}

/// Replaces the one occurrence of `from` in the file at `path` by `to` (same length).
fn edit_once(path: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(path).unwrap();
    let at: Vec<usize> = (0..=bytes.len() - from.len())
        .filter(|&i| &bytes[i..i + from.len()] == from)
        .collect();
    assert_eq!(at.len(), 1, "{:?}", String::from_utf8_lossy(from));
    bytes[at[0]..at[0] + to.len()].copy_from_slice(to);
    std::fs::write(path, bytes).unwrap();
}

/// The model file at `path` written again without its seal, as before seals existed.
fn unsealed_copy(path: &Path, to: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap();
    assert!(metadata
        .remove(hands_models::seal::SEAL_METADATA_KEY)
        .is_some());
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors = file.tensors();
    let bytes = safetensors::serialize(tensors, Some(metadata)).unwrap();
    std::fs::write(to, bytes).unwrap();
}

#[test]
fn a_model_file_whose_card_or_weights_were_edited_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = trained_model(dir.path());
    ModelFile::read(&model).unwrap();

    let unsealed = dir.path().join("unsealed.safetensors");
    unsealed_copy(&model, &unsealed);
    ModelFile::read(&unsealed).expect("an older file without a seal still loads");

    // The label order reversed by hand (the card is JSON inside the header's JSON).
    let reversed = dir.path().join("reversed.safetensors");
    std::fs::copy(&model, &reversed).unwrap();
    edit_once(
        &reversed,
        br#"[\"female\",\"male\"]"#,
        br#"[\"male\",\"female\"]"#,
    );
    // One weight byte changed (the last byte of the file is a tensor's).
    let damaged = dir.path().join("damaged.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    std::fs::write(&damaged, bytes).unwrap();
    for path in [&reversed, &damaged] {
        let err = ModelFile::read(path).unwrap_err().to_string();
        assert!(err.contains("changed after it was written"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
    // Through the programs: eval and export refuse it alike, with one line.
    // Through the program: one line saying so, whatever RUST_BACKTRACE says; the cause
    // chain only with HANDS_LOG=debug.
    let eval = |debug: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hands-search"));
        command
            .args(["eval", "--model", reversed.to_str().unwrap()])
            .args(["--data", data.to_str().unwrap()])
            .env("RUST_BACKTRACE", "1")
            .env_remove("HANDS_LOG");
        if debug {
            command.env("HANDS_LOG", "debug");
        }
        command.output().unwrap()
    };
    let out = eval(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("changed after it was written"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let debug = eval(true);
    let stderr = String::from_utf8_lossy(&debug.stderr);
    assert!(stderr.trim_end().lines().count() > 1, "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_signal_keeps_the_last_checkpoint_and_removes_the_lock_and_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    hands_info(&data, 6, true);
    let out = dir.path().join("train");
    let arg = |p: &PathBuf| p.to_str().unwrap().to_string();
    let common = [
        "--size",
        "16",
        "--batch",
        "4",
        "--init-channels",
        "4",
        "--layers",
        "3",
        "--cutout",
        "0",
        "--threads",
        "1",
    ];
    let mut command = Command::new(env!("CARGO_BIN_EXE_hands-search"));
    command
        .args(["train", "--data", &arg(&data), "--genotype", "DARTS_V2"])
        .args(["--out", &arg(&out), "--epochs", "1000"])
        .args(common)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    let checkpoint = out.join("checkpoint.safetensors");
    let start = Instant::now();
    while !checkpoint.exists() {
        assert!(start.elapsed() < HANG_GUARD, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) with the id of a child this test started and has not reaped.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    assert!(
        hands_tests::hidden_files(&out).is_empty(),
        "{:?}",
        hands_tests::hidden_files(&out)
    );

    // The last checkpoint is whole: a resume would go on from it.
    hands_train::checkpoint::load(&checkpoint, &candle_core::Device::Cpu).unwrap();
}
