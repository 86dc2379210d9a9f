//! Hostile and careless input to `hands-infer`, round two (issue 45): one writer per output,
//! resumes of this model's rows only, outputs that never become inputs, replaced files that
//! keep their nature, signals that leave no temporary file, and no success that lost rows.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{fixture, hands_infer_command, have_ort, photo_png, photo_png_sized, text};
use hands_models::lock::RunLock;

/// How long a run may take before it counts as hung (a guard, not a measurement).
const HANG_GUARD: Duration = Duration::from_secs(120);

fn run(args: &[&Path]) -> Output {
    let mut command = hands_infer_command(args);
    command.stdin(Stdio::null());
    command.output().unwrap()
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// A copy of the fixture model with one card value changed: another model, still valid.
fn other_model(dir: &Path) -> PathBuf {
    let bytes = std::fs::read(fixture("tiny.onnx")).unwrap();
    let from = b"\"mean\": [0.485";
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    let mut bytes = bytes;
    bytes[at..at + from.len()].copy_from_slice(b"\"mean\": [0.484");
    let path = dir.join("other.onnx");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_second_writer_of_an_output_is_refused_with_the_holders_process_id() {
    if !have_ort("a_second_writer_of_an_output_is_refused_with_the_holders_process_id") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    photo_png(&photos, "a.png");
    let rows = dir.path().join("rows.csv");
    let model = fixture("tiny.onnx");
    let first = run(&[p("--model"), &model, p("-o"), &rows, &photos]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let before = std::fs::read(&rows).unwrap();

    // Another process holds the output (here: this test).
    let held = RunLock::file(&rows).unwrap();
    for flag in ["--resume", "-o"] {
        let second = run(&[p("--model"), &model, p(flag), &rows, &photos]);
        let stderr = text(&second.stderr);
        assert_eq!(second.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(&format!("in use by process {}", std::process::id())),
            "{flag}: {stderr}"
        );
        assert_eq!(std::fs::read(&rows).unwrap(), before, "{flag}");
    }
    drop(held);
    let again = run(&[p("--model"), &model, p("--resume"), &rows, &photos]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(std::fs::read(&rows).unwrap(), before);
    assert!(
        hands_tests::hidden_files(dir.path()).is_empty(),
        "{:?}",
        hands_tests::hidden_files(dir.path())
    );
}

#[test]
fn every_row_names_its_model_and_a_resume_takes_only_this_models_rows() {
    if !have_ort("every_row_names_its_model_and_a_resume_takes_only_this_models_rows") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photo = photo_png(dir.path(), "a.png");
    let model = fixture("tiny.onnx");
    let other = other_model(dir.path());
    for format in ["csv", "jsonl"] {
        let rows = dir.path().join(format!("rows.{format}"));
        let made = run(&[
            p("--model"),
            &other,
            p("--format"),
            p(format),
            p("-o"),
            &rows,
            &photo,
        ]);
        assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
        let written = std::fs::read(&rows).unwrap();
        let identity = format!("{:08x}", crc32fast::hash(&std::fs::read(&other).unwrap()));
        assert!(text(&written).contains(&identity), "{}", text(&written));

        let resumed = run(&[p("--model"), &model, p("--resume"), &rows, &photo]);
        let stderr = text(&resumed.stderr);
        assert_eq!(resumed.status.code(), Some(2), "{format}: {stderr}");
        assert!(
            stderr.contains(&format!("written by model {identity}")),
            "{stderr}"
        );
        assert_eq!(std::fs::read(&rows).unwrap(), written, "{format}");
    }

    // JSON lines that merely have a "path" are not an output of hands-infer.
    let foreign = dir.path().join("foreign.jsonl");
    std::fs::write(&foreign, "{\"path\":\"x\"}\n").unwrap();
    let resumed = run(&[p("--model"), &model, p("--resume"), &foreign, &photo]);
    assert_eq!(resumed.status.code(), Some(2));
    assert!(text(&resumed.stderr).contains("not an output of this model"));
    assert_eq!(std::fs::read(&foreign).unwrap(), b"{\"path\":\"x\"}\n");
}

#[test]
fn a_csv_cut_inside_a_quoted_name_loses_only_its_last_row() {
    if !have_ort("a_csv_cut_inside_a_quoted_name_loses_only_its_last_row") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    photo_png(&photos, "a.png");
    photo_png(&photos, "z\nname, with a comma.png");
    let model = fixture("tiny.onnx");
    let full = run(&[p("--model"), &model, &photos]);
    assert_eq!(full.status.code(), Some(0), "{}", text(&full.stderr));

    // Cut just after the newline inside the last row's quoted file name.
    let cut_at = full.stdout.windows(2).position(|w| w == b"z\n").unwrap() + 2;
    let rows = dir.path().join("rows.csv");
    std::fs::write(&rows, &full.stdout[..cut_at]).unwrap();
    let resumed = run(&[p("--model"), &model, p("--resume"), &rows, &photos]);
    let stderr = text(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("dropped a last row cut short"), "{stderr}");
    assert_eq!(text(&std::fs::read(&rows).unwrap()), text(&full.stdout));
}

#[test]
fn explanations_written_into_the_input_folder_are_not_read_back_as_photos() {
    if !have_ort("explanations_written_into_the_input_folder_are_not_read_back_as_photos") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    photo_png(dir.path(), "a.png");
    let model = fixture("tiny.onnx");
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let out = run(&[p("--model"), &model, p("--explain"), dir.path(), dir.path()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        outputs.push(out.stdout);
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(
        text(&outputs[1]).lines().count(),
        2,
        "{}",
        text(&outputs[1])
    );
    assert!(dir.path().join("a.png.explain.png").is_file());
}

#[test]
fn an_explanation_that_cannot_be_written_fails_its_image_only() {
    if !have_ort("an_explanation_that_cannot_be_written_fails_its_image_only") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    photo_png(&photos, "a.png");
    // 250 bytes: a file name of its own, but too long with `.explain.png` added.
    let long = format!("{}.png", "l".repeat(246));
    photo_png(&photos, &long);
    let explained = dir.path().join("explained");
    let model = fixture("tiny.onnx");
    let out = run(&[p("--model"), &model, p("--explain"), &explained, &photos]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    let long_row = rows.iter().find(|r| r.contains(&long)).unwrap();
    assert!(
        long_row.contains("cannot write the explanation"),
        "{long_row}"
    );
    assert!(explained.join("a.png.explain.png").is_file());
}

#[cfg(unix)]
#[test]
fn an_output_through_a_symlink_stays_a_symlink_and_keeps_its_mode() {
    if !have_ort("an_output_through_a_symlink_stays_a_symlink_and_keeps_its_mode") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let photo = photo_png(dir.path(), "a.png");
    let real = dir.path().join("private.csv");
    std::fs::write(&real, "old rows\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.path().join("rows.csv");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = run(&[p("--model"), &fixture("tiny.onnx"), p("-o"), &link, &photo]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(text(&std::fs::read(&real).unwrap()).starts_with("path,label"));
    let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[cfg(unix)]
#[test]
fn a_signal_removes_the_unfinished_output_and_exits_128_plus_its_number() {
    if !have_ort("a_signal_removes_the_unfinished_output_and_exits_128_plus_its_number") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    // Explained one at a time, these take seconds: time to be interrupted.
    for i in 0..40 {
        photo_png_sized(&photos, format!("{i:02}.png"), 400, 300);
    }
    let outputs = dir.path().join("outputs");
    std::fs::create_dir(&outputs).unwrap();
    let rows = outputs.join("rows.csv");
    std::fs::write(&rows, "earlier rows\n").unwrap();
    let explained = dir.path().join("explained");
    for (signal, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let mut command: Command = hands_infer_command(&[
            p("--model"),
            &fixture("tiny.onnx"),
            p("-j"),
            p("1"),
            p("--batch"),
            p("1"),
            p("--explain"),
            &explained,
            p("-o"),
            &rows,
            &photos,
        ]);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Interrupted while its output is being written (its temporary file exists).
        let start = Instant::now();
        while !hands_tests::hidden_files(&outputs)
            .iter()
            .any(|n| n.ends_with(".tmp"))
        {
            assert!(start.elapsed() < HANG_GUARD, "no temporary output appeared");
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: kill(2) with the id of a child this test started and has not reaped.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0);
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(128 + signal), "{name}: {stderr}");
        assert!(stderr.contains(&format!("stopped by {name}")), "{stderr}");
        assert_eq!(std::fs::read(&rows).unwrap(), b"earlier rows\n", "{name}");
        assert!(
            hands_tests::hidden_files(&outputs).is_empty(),
            "{name}: {:?}",
            hands_tests::hidden_files(&outputs)
        );
        assert!(hands_tests::hidden_files(&explained).is_empty(), "{name}");
    }
}

#[test]
fn a_closed_output_is_not_a_success() {
    if !have_ort("a_closed_output_is_not_a_success") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for i in 0..400 {
        photo_png(dir.path(), format!("{i:03}.png"));
    }
    for format in ["csv", "jsonl"] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // the reader is gone before the first row
        let mut command = hands_infer_command(&[
            p("--model"),
            &fixture("tiny.onnx"),
            p("--format"),
            p(format),
            dir.path(),
        ]);
        command
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped());
        let out = command.spawn().unwrap().wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{format}: {stderr}");
        assert!(
            stderr.contains("the output was closed"),
            "{format}: {stderr}"
        );
    }
}

#[test]
fn a_missing_input_named_on_the_command_line_is_not_a_success() {
    if !have_ort("a_missing_input_named_on_the_command_line_is_not_a_success") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photo = photo_png(dir.path(), "a.png");
    let missing = dir.path().join("no such folder");
    let out = run(&[p("--model"), &fixture("tiny.onnx"), &photo, &missing]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("no such folder"), "{stdout}");
}

#[test]
fn a_model_whose_card_was_edited_is_refused_and_an_unsealed_one_warned_about() {
    if !have_ort("a_model_whose_card_was_edited_is_refused_and_an_unsealed_one_warned_about") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photo = photo_png(dir.path(), "a.png");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/pretrained/hands.onnx");
    let sealed = run(&[p("--model"), &shipped, &photo]);
    assert_eq!(sealed.status.code(), Some(0), "{}", text(&sealed.stderr));
    assert!(
        !text(&sealed.stderr).contains("no seal"),
        "{}",
        text(&sealed.stderr)
    );

    // The label order reversed by hand: every answer would turn around.
    let mut bytes = std::fs::read(&shipped).unwrap();
    let from = b"\"labels\":[\"female\",\"male\"]";
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    bytes[at..at + from.len()].copy_from_slice(b"\"labels\":[\"male\",\"female\"]");
    let edited = dir.path().join("edited.onnx");
    std::fs::write(&edited, bytes).unwrap();
    let refused = run(&[p("--model"), &edited, &photo]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("changed after it was written"), "{stderr}");

    let unsealed = run(&[p("--model"), &fixture("tiny.onnx"), &photo]);
    assert_eq!(unsealed.status.code(), Some(0));
    assert!(
        text(&unsealed.stderr).contains("no seal"),
        "{}",
        text(&unsealed.stderr)
    );
}
