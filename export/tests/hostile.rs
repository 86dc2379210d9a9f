//! Hostile and careless input (issue 20): every size is bounded before anything is
//! allocated from it, no output lands on an input, a failed export keeps the files of the
//! one before, and no flag value makes the program panic.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use hands_export::{export, BatchSize, Parity, MAX_BATCH, MAX_MODEL_BYTES};
use hands_models::Genotype;

fn hands_export(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hands-export"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(run: &Output) -> String {
    String::from_utf8_lossy(&run.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `--batch 100000` grew to 24 GB: the batch is bounded when the flags are parsed, before
/// the model is even opened (the model here does not exist), and by the library too.
#[test]
fn an_oversized_batch_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dist");
    for batch in ["100000", "1025", "18446744073709551615"] {
        let run = hands_export(&[
            "--model",
            "missing.safetensors",
            "--out",
            path(&out),
            "--batch",
            batch,
        ]);
        assert_eq!(run.status.code(), Some(2), "{batch}: {}", stderr(&run));
        assert!(stderr(&run).contains("up to 1024"), "{}", stderr(&run));
    }
    let (model, _) = model_file(dir.path(), &Genotype::published("DARTS_V2").unwrap(), 1);
    for n in [0, MAX_BATCH + 1, usize::MAX] {
        let err = export(&model, &out, &options(BatchSize::Fixed(n), false)).unwrap_err();
        assert!(err.to_string().contains("up to 1024"), "{err}");
    }
    assert!(!out.exists());
}

/// A card may ask for 1024x1024 inputs; the parity batch is held to a memory budget
/// estimated from the card before any input is made.
#[test]
fn a_parity_check_beyond_the_memory_budget_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let genotype = Genotype::published("DARTS_V2").unwrap();
    let (tensors, params) = random_tensors(&genotype, 1);
    let mut card = card(&genotype, true, params);
    card.input.size = 1024;
    let model = dir.path().join("model.safetensors");
    write_model(&model, &tensors, Some(&card));
    let out = dir.path().join("dist");
    let err = export(&model, &out, &options(BatchSize::Fixed(512), false)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("budget") && msg.contains("1024x1024") && msg.contains("model.safetensors"),
        "{msg}"
    );
    assert!(!out.exists());
}

/// A model file is read only when it is a regular file of bounded size: a FIFO would hang
/// the export, /dev/zero would be read until memory runs out.
#[cfg(unix)]
#[test]
fn a_model_that_is_not_a_bounded_regular_file_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dist");
    let opts = options(BatchSize::Dynamic, false);
    let fifo = dir.path().join("fifo.safetensors");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let zero = dir.path().join("zero.safetensors");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    for model in [&fifo, &zero] {
        let msg = export(model, &out, &opts).unwrap_err().to_string();
        assert!(
            msg.contains("not a regular file") && msg.contains(path(model)),
            "{msg}"
        );
    }
    // A sparse file: no disk space, but larger than any model.
    let huge = dir.path().join("huge.safetensors");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(MAX_MODEL_BYTES + 1)
        .unwrap();
    let msg = export(&huge, &out, &opts).unwrap_err().to_string();
    assert!(
        msg.contains("more than the") && msg.contains("huge.safetensors"),
        "{msg}"
    );
    assert!(!out.exists());
}

/// No output may be an input: not the model through a link, not the parity images' folder,
/// not the ONNX Runtime library's folder. Each is refused before anything is written.
#[cfg(unix)]
#[test]
fn outputs_that_are_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = model_file(dir.path(), &Genotype::published("DARTS_V1").unwrap(), 1);
    let model_bytes = std::fs::read(&model).unwrap();

    // The ONNX output is a hard link to the model, under another name.
    let out = dir.path().join("dist");
    std::fs::create_dir(&out).unwrap();
    std::fs::hard_link(&model, out.join("hands.onnx")).unwrap();
    let msg = export(&model, &out, &options(BatchSize::Dynamic, false))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("refusing to write") && msg.contains("hands.onnx"),
        "{msg}"
    );
    assert_eq!(files_in(&out), ["hands.onnx"]);
    assert_eq!(std::fs::read(&model).unwrap(), model_bytes);

    // The output folder is the folder of the parity images.
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::write(images.join("a.jpg"), b"not looked at").unwrap();
    let mut opts = options(BatchSize::Dynamic, false);
    opts.parity = Parity::Check {
        ort_lib: None,
        images: vec![images.join("a.jpg")],
    };
    let msg = export(&model, &images, &opts).unwrap_err().to_string();
    assert!(
        msg.contains("refusing to write") && msg.contains("images"),
        "{msg}"
    );
    assert_eq!(files_in(&images), ["a.jpg"]);

    // The output folder is the ONNX Runtime library's folder (a stand-in library: it is
    // found, never loaded).
    let lib = dir.path().join("ort");
    std::fs::create_dir(&lib).unwrap();
    std::fs::write(lib.join("libonnxruntime.so.1.31.1"), b"").unwrap();
    opts.parity = Parity::Check {
        ort_lib: Some(lib.clone()),
        images: Vec::new(),
    };
    let msg = export(&model, &lib, &opts).unwrap_err().to_string();
    assert!(
        msg.contains("refusing to write") && msg.contains("ort"),
        "{msg}"
    );
    assert_eq!(files_in(&lib), ["libonnxruntime.so.1.31.1"]);
}

/// An export that fails while writing keeps the three files of the export before it: all
/// three new files or none.
#[test]
fn a_failed_export_keeps_the_previous_files() {
    let dir = tempfile::tempdir().unwrap();
    let genotype = Genotype::published("DARTS_V2").unwrap();
    let (model, _) = model_file(dir.path(), &genotype, 1);
    let out = dir.path().join("dist");
    let opts = options(BatchSize::Dynamic, false);
    export(&model, &out, &opts).unwrap();
    let before: Vec<Vec<u8>> = ["hands.safetensors", "hands.onnx"]
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();

    // Other weights; the card's place is taken by a folder, so its file cannot be written.
    let other = tempfile::tempdir().unwrap();
    let (model, _) = model_file(other.path(), &genotype, 2);
    std::fs::remove_file(out.join("hands.card.json")).unwrap();
    std::fs::create_dir(out.join("hands.card.json")).unwrap();
    let msg = export(&model, &out, &opts).unwrap_err().to_string();
    assert!(msg.contains("hands.card.json"), "{msg}");
    let after: Vec<Vec<u8>> = ["hands.safetensors", "hands.onnx"]
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    assert!(before == after, "the earlier export's files were replaced");
    assert_eq!(
        files_in(&out),
        ["hands.card.json", "hands.onnx", "hands.safetensors"]
    );
}

/// A FIFO named like an image in --parity-images is refused, not opened (which would wait
/// for a writer forever).
#[cfg(unix)]
#[test]
fn a_parity_image_that_is_not_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = model_file(dir.path(), &Genotype::published("DARTS_V1").unwrap(), 1);
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    assert!(Command::new("mkfifo")
        .arg(images.join("a.jpg"))
        .status()
        .unwrap()
        .success());
    let out = dir.path().join("dist");
    let run = hands_export(&[
        "--model",
        path(&model),
        "--out",
        path(&out),
        "--parity-images",
        path(&images),
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("a.jpg: not a regular file"),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists());
}

/// Flag values a careless user types: each is refused with a message (usage errors exit 2,
/// other errors 1), never a panic (exit 101).
#[test]
fn no_flag_value_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = model_file(dir.path(), &Genotype::published("DARTS_V1").unwrap(), 1);
    let out = dir.path().join("dist");
    let long_name = "n".repeat(300);
    let cases: [(&[&str], i32, &str); 11] = [
        (&["--batch=-1"], 2, "--batch"),
        (&["--batch", ""], 2, "--batch"),
        (&["--batch", "1e3"], 2, "--batch"),
        (&["--opset", "5"], 2, "17..=23"),
        (&["--opset=-9223372036854775808"], 2, "17..=23"),
        (&["--opset", "99999999999999999999"], 2, "--opset"),
        (&["--name", ""], 1, "plain file name"),
        (&["--name", ".."], 1, "plain file name"),
        (&["--name", "a/b"], 1, "plain file name"),
        (&["--name", &long_name], 1, "plain file name"),
        (&["--parity-images", "/nonexistent"], 1, "/nonexistent"),
    ];
    for (flags, code, needle) in cases {
        let mut args = vec!["--model", path(&model), "--out", path(&out)];
        args.extend_from_slice(flags);
        let run = hands_export(&args);
        let err = stderr(&run);
        assert_eq!(run.status.code(), Some(code), "{flags:?}: {err}");
        assert!(err.contains(needle), "{flags:?}: {needle:?} not in {err}");
        assert!(!err.contains("panicked"), "{flags:?}: {err}");
    }
    assert!(files_in(&out).is_empty(), "{:?}", files_in(&out));
}
