//! Hostile and careless input to `hands-infer` (issue 20): nothing destroyed, nothing
//! unbounded, no false success. One test per finding; every fixture is small and generated
//! here (a sparse file stands in for a 2 GB one, patched headers for huge images).

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{fixture, hands_infer_command, have_ort, photo_png, text};

/// How long a run may take before it counts as hung (a guard, not a measurement).
const HANG_GUARD: Duration = Duration::from_secs(120);

fn command(args: &[&Path]) -> Command {
    let mut command = hands_infer_command(args);
    command.stdin(Stdio::null());
    command
}

/// Runs the command to the end, failing the test if it hangs.
fn finish(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = drain(&mut child, true);
    let stderr = drain(&mut child, false);
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if waited > HANG_GUARD {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("hands-infer did not finish (hung)");
        }
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn drain(child: &mut Child, stdout: bool) -> std::thread::JoinHandle<Vec<u8>> {
    let mut source: Box<dyn Read + Send> = if stdout {
        Box::new(child.stdout.take().unwrap())
    } else {
        Box::new(child.stderr.take().unwrap())
    };
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        source.read_to_end(&mut bytes).unwrap();
        bytes
    })
}

fn run(args: &[&Path]) -> Output {
    finish(command(args))
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// CSV rows as (path, label, error), paths as written.
fn csv_rows(stdout: &[u8]) -> Vec<(String, String, String)> {
    csv::Reader::from_reader(stdout)
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string(), r[4].to_string())
        })
        .collect()
}

#[test]
fn an_output_that_is_an_input_is_refused_and_left_intact() {
    if !have_ort("an_output_that_is_an_input_is_refused_and_left_intact") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photo = photo_png(dir.path(), "photo.png");
    let photo_bytes = std::fs::read(&photo).unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::copy(fixture("tiny.onnx"), &model).unwrap();
    let model_bytes = std::fs::read(&model).unwrap();
    let link = dir.path().join("rows.csv");
    std::os::unix::fs::symlink(&photo, &link).unwrap();
    let spelled = dir.path().join("sub/../photo.png");
    std::fs::create_dir(dir.path().join("sub")).unwrap();

    for output in [&photo, &model, &link, &spelled] {
        let out = run(&[p("--model"), &model, dir.path(), p("-o"), output]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", output.display());
        assert!(stderr.contains("refusing to write"), "{stderr}");
    }
    assert_eq!(std::fs::read(&photo).unwrap(), photo_bytes);
    assert_eq!(std::fs::read(&model).unwrap(), model_bytes);

    // A real output is written whole, and nothing else is left beside it.
    let rows = dir.path().join("sub/rows.csv");
    let out = run(&[p("--model"), &model, &photo, p("-o"), &rows]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(csv_rows(&std::fs::read(&rows).unwrap()).len(), 1);
    assert_eq!(
        std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
        1
    );
}

#[test]
fn a_batch_beyond_the_memory_budget_is_refused_and_no_flag_value_panics() {
    if !have_ort("a_batch_beyond_the_memory_budget_is_refused_and_no_flag_value_panics") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photo = photo_png(dir.path(), "photo.png");
    let model = fixture("tiny.onnx");
    let out = run(&[p("--model"), &model, p("--batch"), p("4096"), &photo]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("batch size 4096 is outside 1..=") && stderr.contains("2 GiB"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    for batch in ["0", "-1", "99999999999999999999", "x"] {
        let flag = format!("--batch={batch}");
        let out = run(&[p("--model"), &model, p(&flag), &photo]);
        assert_eq!(out.status.code(), Some(2), "--batch {batch}");
        assert!(text(&out.stderr).contains("--batch"), "--batch {batch}");
    }
    let help = text(&run(&[p("--help")]).stdout);
    assert!(help.contains("2 GiB"), "{help}");
}

#[test]
fn a_symlink_loop_ends_and_each_image_is_reported_once() {
    if !have_ort("a_symlink_loop_ends_and_each_image_is_reported_once") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    std::fs::create_dir_all(root.join("a")).unwrap();
    photo_png(&root.join("a"), "x.png");
    photo_png(&root, "top.png");
    // A loop back to the root, a second way into `a`, a second name for x.png.
    std::os::unix::fs::symlink(&root, root.join("a/loop")).unwrap();
    std::os::unix::fs::symlink(root.join("a"), root.join("b")).unwrap();
    std::os::unix::fs::symlink(root.join("a/x.png"), root.join("a/y.png")).unwrap();
    let out = run(&[p("--model"), &fixture("tiny.onnx"), p("-r"), &root]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let paths: Vec<String> = csv_rows(&out.stdout).into_iter().map(|r| r.0).collect();
    let expected = [root.join("a/x.png"), root.join("top.png")];
    assert_eq!(
        paths,
        expected.map(|p| p.to_str().unwrap().to_string()),
        "each real file once"
    );
}

/// A PNG whose header claims `width` x `height` (the pixel data is a small image's).
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::new(8, 8)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    // Signature (8), IHDR length (4), "IHDR" (4), then width and height; CRC after 13 bytes.
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real progressive JPEG of `width` x `height` (flat grey, so it stays small).
fn progressive_jpeg(width: usize, height: usize) -> Vec<u8> {
    let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    compress.set_size(width, height);
    compress.set_progressive_mode();
    compress.set_quality(50.0);
    let mut started = compress.start_compress(Vec::new()).unwrap();
    let row = vec![128u8; width * 3];
    for _ in 0..height {
        started.write_scanlines(&row).unwrap();
    }
    started.finish().unwrap()
}

#[test]
fn an_image_beyond_the_pixel_budget_is_an_error_row_naming_its_size() {
    if !have_ort("an_image_beyond_the_pixel_budget_is_an_error_row_naming_its_size") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("huge.png"), png_claiming(20000, 20000)).unwrap();
    std::fs::write(
        dir.path().join("progressive.jpg"),
        progressive_jpeg(8000, 6000),
    )
    .unwrap();
    std::fs::write(dir.path().join("small.jpg"), progressive_jpeg(400, 300)).unwrap();
    let out = run(&[p("--model"), &fixture("tiny.onnx"), dir.path()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let rows = csv_rows(&out.stdout);
    let error = |name: &str| {
        rows.iter()
            .find(|r| r.0.ends_with(name))
            .map(|r| r.2.clone())
            .unwrap()
    };
    let huge = error("huge.png");
    assert!(
        huge.contains("20000 x 20000") && huge.contains("megapixel budget"),
        "{huge}"
    );
    let progressive = error("progressive.jpg");
    assert!(progressive.contains("8000 x 6000"), "{progressive}");
    assert_eq!(
        error("small.jpg"),
        "",
        "a progressive JPEG within the budget"
    );
}

#[test]
fn only_regular_files_of_a_bounded_size_are_read() {
    if !have_ort("only_regular_files_of_a_bounded_size_are_read") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("a.jpg");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.jpg")).unwrap();
    // Sparse: 2 GB that take no disk.
    let big = std::fs::File::create(dir.path().join("big.jpg")).unwrap();
    big.set_len(2 << 30).unwrap();
    photo_png(dir.path(), "photo.png");
    let out = run(&[p("--model"), &fixture("tiny.onnx"), dir.path()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let rows = csv_rows(&out.stdout);
    let error = |name: &str| rows.iter().find(|r| r.0.ends_with(name)).unwrap().2.clone();
    assert!(error("a.jpg").contains("not a regular file (a FIFO)"));
    assert!(error("zero.jpg").contains("not a regular file (a device)"));
    let big = error("big.jpg");
    assert!(
        big.contains("2147483648 bytes") && big.contains("maximum image file size"),
        "{big}"
    );
    assert_eq!(error("photo.png"), "");
}

/// Builds a copy of the fixture model with `edit` applied to its bytes (same length).
fn edited_model(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(fixture("tiny.onnx")).unwrap();
    edit(&mut bytes);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn replace_once(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let at: Vec<usize> = (0..=bytes.len() - from.len())
        .filter(|&i| &bytes[i..i + from.len()] == from)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "{:?} must occur once",
        String::from_utf8_lossy(from)
    );
    bytes[at[0]..at[0] + to.len()].copy_from_slice(to);
}

/// The raw bytes of one initializer of the fixture (read with a minimal ONNX schema).
fn initializer_bytes(name: &str) -> Vec<u8> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Model {
        #[prost(message, optional, tag = "7")]
        graph: Option<Graph>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Graph {
        #[prost(message, repeated, tag = "5")]
        initializer: Vec<Tensor>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Tensor {
        #[prost(string, optional, tag = "8")]
        name: Option<String>,
        #[prost(bytes = "vec", optional, tag = "9")]
        raw_data: Option<Vec<u8>>,
    }
    let bytes = std::fs::read(fixture("tiny.onnx")).unwrap();
    let model = <Model as prost::Message>::decode(bytes.as_slice()).unwrap();
    model
        .graph
        .unwrap()
        .initializer
        .into_iter()
        .find(|t| t.name.as_deref() == Some(name))
        .and_then(|t| t.raw_data)
        .unwrap()
}

#[test]
fn outputs_that_are_not_probabilities_are_not_answers() {
    if !have_ort("outputs_that_are_not_probabilities_are_not_answers") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photo = photo_png(dir.path(), "photo.png");
    // NaN classifier weights: every output is NaN.
    let weights = initializer_bytes("classifier.weight");
    let nan: Vec<u8> = weights
        .chunks(4)
        .flat_map(|_| f32::NAN.to_le_bytes())
        .collect();
    let nan_model = edited_model(dir.path(), "nan.onnx", |b| replace_once(b, &weights, &nan));
    let out = run(&[p("--model"), &nan_model, &photo]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let rows = csv_rows(&out.stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "", "no label for a NaN output");
    assert!(rows[0].2.contains("not finite"), "{}", rows[0].2);

    // An output that is not a Softmax's (same length op name): refused at open.
    let hardmax = edited_model(dir.path(), "hardmax.onnx", |b| {
        replace_once(b, b"\x22\x07Softmax", b"\x22\x07Hardmax")
    });
    let out = run(&[p("--model"), &hardmax, &photo]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("computed by Hardmax"), "{stderr}");
    assert!(out.stdout.is_empty());

    // A model path that is not a regular file is refused without reading it.
    let out = run(&[p("--model"), p("/dev/zero"), &photo]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a regular file"));
}

#[test]
fn card_values_are_bounded_at_open() {
    if !have_ort("card_values_are_bounded_at_open") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photo = photo_png(dir.path(), "photo.png");
    let huge_input = edited_model(dir.path(), "size.onnx", |b| {
        replace_once(b, b"\"size\": 32, \"layout\"", b"\"size\":4096,\"layout\"");
    });
    let twin_labels = edited_model(dir.path(), "labels.onnx", |b| {
        replace_once(b, b"[\"female\", \"male\"]", b"[\"male\",   \"male\"]")
    });
    for (model, reason) in [
        (huge_input, "input size 4096 is outside"),
        (twin_labels, "label \"male\" is given twice"),
    ] {
        let out = run(&[p("--model"), &model, &photo]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
    }
}

#[test]
fn an_unreadable_folder_is_an_error_row_and_the_run_goes_on() {
    if !have_ort("an_unreadable_folder_is_an_error_row_and_the_run_goes_on") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in ["a", "locked", "z"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    photo_png(&dir.path().join("a"), "1.png");
    photo_png(&dir.path().join("locked"), "2.png");
    photo_png(&dir.path().join("z"), "3.png");
    std::fs::set_permissions(
        dir.path().join("locked"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let mut command = command(&[p("--model"), &fixture("tiny.onnx"), p("-r"), dir.path()]);
    if std::fs::metadata(dir.path()).unwrap().uid() == 0 {
        // Root reads any folder: run as `nobody`, for whom `locked` is closed.
        std::os::unix::process::CommandExt::uid(&mut command, 65534);
        std::os::unix::process::CommandExt::gid(&mut command, 65534);
    }
    let out = finish(command);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let rows = csv_rows(&out.stdout);
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let locked = dir.path().join("locked");
    assert_eq!(rows.len(), 3, "{names:?}");
    let row = rows.iter().find(|r| Path::new(&r.0) == locked).unwrap();
    assert!(row.2.contains("cannot read the folder"), "{}", row.2);
    assert!(names.iter().any(|n| n.ends_with("a/1.png")));
    assert!(names.iter().any(|n| n.ends_with("z/3.png")));
}

#[test]
fn a_closed_pipe_ends_csv_and_jsonl_alike() {
    if !have_ort("a_closed_pipe_ends_csv_and_jsonl_alike") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Enough rows to overflow the output buffer while the run is still going.
    for i in 0..400 {
        std::fs::write(dir.path().join(format!("bad{i:03}.jpg")), b"not an image").unwrap();
    }
    let mut codes = Vec::new();
    for format in ["csv", "jsonl"] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // the reader is gone before the first row
        let mut command = command(&[
            p("--model"),
            &fixture("tiny.onnx"),
            p("--format"),
            p(format),
            dir.path(),
        ]);
        command.stdout(writer).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = drain(&mut child, false);
        let status = child.wait().unwrap();
        let stderr = text(&stderr.join().unwrap());
        assert!(
            stderr.contains("the output was closed"),
            "{format}: {stderr}"
        );
        codes.push(status.code());
    }
    // Rows were lost: not a success (round two; the first round exited quietly).
    assert_eq!(codes, [Some(2), Some(2)], "csv and jsonl");
}

#[test]
fn non_utf8_names_are_written_losslessly() {
    if !have_ort("non_utf8_names_are_written_losslessly") {
        return;
    }
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    for name in [&b"a\xff.png"[..], b"a\xfe.png", b"a\\xFF.png"] {
        photo_png(dir.path(), OsStr::from_bytes(name));
    }
    let root = dir.path().to_str().unwrap();
    let expected: BTreeSet<String> = ["a\\xFF.png", "a\\xFE.png", "a\\\\xFF.png"]
        .iter()
        .map(|n| format!("{root}/{n}"))
        .collect();
    let model = fixture("tiny.onnx");
    let csv = run(&[p("--model"), &model, dir.path()]);
    assert_eq!(csv.status.code(), Some(0), "{}", text(&csv.stderr));
    let csv_paths: BTreeSet<String> = csv_rows(&csv.stdout).into_iter().map(|r| r.0).collect();
    assert_eq!(csv_paths, expected);
    let jsonl = run(&[p("--model"), &model, p("--format"), p("jsonl"), dir.path()]);
    let json_paths: BTreeSet<String> = text(&jsonl.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["path"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(json_paths, expected);
}
