//! What a person running hands-infer on their own photos expects beyond a label: abstaining
//! when unsure (--min-confidence), seeing why (--explain), going on after a stop (--resume),
//! rows in input order, and a default model that is there once installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixture, hands_infer, hands_infer_command, have_ort, text, write_zoo};
use hands_infer::{DeviceChoice, Occlusion, Options, Predictor, UNCERTAIN};

fn options(min_confidence: Option<f32>) -> Options {
    Options {
        device: DeviceChoice::Cpu,
        threads: Some(2),
        min_confidence,
        ..Options::default()
    }
}

fn good_files(dir: &Path) -> Vec<PathBuf> {
    let zoo = write_zoo(dir);
    zoo.good.iter().map(|name| dir.join(name)).collect()
}

/// CSV rows as (path, label, p_female, p_male, error), in output order.
fn csv_rows(bytes: &[u8]) -> Vec<(String, String, String, String, String)> {
    csv::Reader::from_reader(bytes)
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[0].to_string(),
                r[1].to_string(),
                r[2].to_string(),
                r[3].to_string(),
                r[4].to_string(),
            )
        })
        .collect()
}

#[test]
fn below_the_minimum_confidence_the_answer_is_uncertain() {
    if !have_ort("below_the_minimum_confidence_the_answer_is_uncertain") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = good_files(dir.path());
    let plain = Predictor::open_with(fixture("tiny.onnx"), &options(None)).unwrap();
    let answers: Vec<_> = plain
        .predict_paths(&files)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(answers.iter().all(|p| p.confident));
    let mut tops: Vec<f32> = answers.iter().map(|p| p.probabilities[p.index]).collect();
    tops.sort_by(f32::total_cmp);
    let threshold = (tops[tops.len() / 2 - 1] + tops[tops.len() / 2]) / 2.0;
    assert!(tops[0] < threshold && threshold < tops[tops.len() - 1]);

    let unsure = Predictor::open_with(fixture("tiny.onnx"), &options(Some(threshold))).unwrap();
    assert_eq!(unsure.min_confidence(), Some(threshold));
    let mut uncertain = 0;
    for (answer, path) in answers.iter().zip(&files) {
        let abstained = unsure.predict_path(path).unwrap();
        let top = answer.probabilities[answer.index];
        assert_eq!(abstained.probabilities, answer.probabilities);
        assert_eq!(abstained.index, answer.index);
        assert_eq!(abstained.confident, top >= threshold, "{}", path.display());
        let expected = if top >= threshold {
            answer.label.as_str()
        } else {
            UNCERTAIN
        };
        assert_eq!(abstained.label, expected);
        uncertain += usize::from(top < threshold);
    }
    assert_eq!(uncertain, files.len() / 2);

    // The command: the same rows, both probabilities kept, and the count in the summary.
    let threshold_arg = PathBuf::from(threshold.to_string());
    let mut args = vec![
        Path::new("--model"),
        &fixture("tiny.onnx"),
        Path::new("--min-confidence"),
        &threshold_arg,
    ]
    .into_iter()
    .map(Path::to_path_buf)
    .collect::<Vec<_>>();
    args.extend(files.iter().cloned());
    let run = hands_infer(&args.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{uncertain} uncertain (below {threshold})")),
        "{stderr}"
    );
    let rows = csv_rows(&run.stdout);
    assert_eq!(rows.len(), files.len());
    for ((_, label, female, male, _), answer) in rows.iter().zip(&answers) {
        let top = answer.probabilities[answer.index];
        assert_eq!(label == UNCERTAIN, top < threshold, "{label} at {top}");
        assert!(!female.is_empty() && !male.is_empty());
    }

    for bad in ["1.5", "-0.1", "nan", "half"] {
        let flag = PathBuf::from(format!("--min-confidence={bad}"));
        let run = hands_infer(&[&flag, &files[0]]);
        assert_eq!(run.status.code(), Some(2), "{bad}");
        assert!(text(&run.stderr).contains("not a probability"), "{bad}");
    }
    let nan = Predictor::open_with(fixture("tiny.onnx"), &options(Some(f32::NAN)));
    assert!(matches!(nan, Err(hands_infer::Error::Usage(_))));

    // --target-accuracy with the shipped model: the threshold and what the card expects in
    // the summary; out of range, beside --min-confidence or on a card without a curve, the
    // run does not start (exit 2) and says why.
    let run = hands_infer(&[Path::new("--target-accuracy"), Path::new("0.95"), &files[0]]);
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("the model card expects") && stderr.contains("photos kept at accuracy"),
        "{stderr}"
    );
    for (args, says) in [
        (
            vec!["--target-accuracy", "1.2"],
            "not an accuracy in (0.5, 1)",
        ),
        (
            vec!["--target-accuracy", "0.95", "--min-confidence", "0.8"],
            "cannot be used with",
        ),
        (vec!["--target-accuracy", "0.9999"], "best reachable"),
    ] {
        let mut args: Vec<&Path> = args.iter().map(Path::new).collect();
        args.push(&files[0]);
        let run = hands_infer(&args);
        assert_eq!(run.status.code(), Some(2), "{args:?}");
        assert!(
            text(&run.stderr).contains(says),
            "{args:?}: {}",
            text(&run.stderr)
        );
    }
    let tiny = fixture("tiny.onnx");
    let run = hands_infer(&[
        Path::new("--model"),
        &tiny,
        Path::new("--target-accuracy"),
        Path::new("0.9"),
        &files[0],
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(text(&run.stderr).contains("no accuracy-coverage curve"));
}

#[test]
fn the_occlusion_map_follows_the_prediction() {
    if !have_ort("the_occlusion_map_follows_the_prediction") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = good_files(dir.path());
    let predictor = Predictor::open_with(fixture("tiny.onnx"), &options(None)).unwrap();
    let size = predictor.input_size();
    let mut sums = Vec::new();
    for path in &files {
        let input = predictor.preprocess_path(path).unwrap();
        let explanation = predictor.explain(&input).unwrap();
        assert_eq!(explanation.size, size);
        assert_eq!(explanation.map.len(), (size * size) as usize);
        assert!(explanation
            .map
            .iter()
            .all(|v| v.is_finite() && v.abs() <= 1.0));
        let plain = predictor.predict_inputs(&[&input]).unwrap().remove(0);
        assert_eq!(explanation.prediction.probabilities, plain.probabilities);
        assert_eq!(explanation.prediction.label, plain.label);
        // One mask over the whole input: every pixel has the same value.
        let whole = predictor
            .explain_with(
                &input,
                Occlusion {
                    patch: size,
                    stride: size,
                },
            )
            .unwrap();
        assert!(whole.map.iter().all(|&v| v == whole.map[0]));
        sums.push((
            explanation.prediction.probabilities[0],
            explanation.map.iter().sum::<f32>(),
        ));
    }
    // Different answers, different maps.
    for (i, a) in sums.iter().enumerate() {
        for b in &sums[i + 1..] {
            if (a.0 - b.0).abs() > 1e-3 {
                assert_ne!(a.1, b.1, "{sums:?}");
            }
        }
    }
}

#[test]
fn explain_writes_one_picture_per_predicted_image_and_never_over_an_input() {
    if !have_ort("explain_writes_one_picture_per_predicted_image_and_never_over_an_input") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let zoo = write_zoo(&images);
    let out = dir.path().join("why");
    let run = hands_infer(&[
        Path::new("--model"),
        &fixture("tiny.onnx"),
        Path::new("--explain"),
        &out,
        &images,
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    for name in &zoo.good {
        let picture = out.join(format!("{name}.explain.png"));
        let painted = image::open(&picture).unwrap();
        let photo = hands_models::preprocess::decode_oriented(
            &std::fs::read(images.join(name)).unwrap(),
            u32::MAX,
            Path::new(name),
        )
        .unwrap();
        assert_eq!(
            (painted.width(), painted.height()),
            photo.dimensions(),
            "{name}"
        );
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), zoo.good.len());

    // An input named like an explanation (given by name, so a photo) is not overwritten:
    // the image whose explanation it would be fails, the others go on.
    let victim = images.join("photo.jpg.explain.png");
    std::fs::copy(images.join("gray.png"), &victim).unwrap();
    let before = std::fs::read(&victim).unwrap();
    let run = hands_infer(&[
        Path::new("--model"),
        &fixture("tiny.onnx"),
        Path::new("--explain"),
        &images,
        &images.join("photo.jpg"),
        &victim,
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    let photo_row = stdout.lines().nth(1).unwrap();
    assert!(photo_row.contains("it is the input"), "{stdout}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert_eq!(std::fs::read(&victim).unwrap(), before);
}

#[test]
fn resume_skips_exactly_the_rows_already_written() {
    if !have_ort("resume_skips_exactly_the_rows_already_written") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let zoo = write_zoo(&images);
    let model = fixture("tiny.onnx");
    for format in ["csv", "jsonl"] {
        let full = hands_infer(&[
            Path::new("--model"),
            &model,
            Path::new("--format"),
            Path::new(format),
            &images,
        ]);
        assert_eq!(full.status.code(), Some(1));
        let lines: Vec<&[u8]> = full.stdout.split_inclusive(|&b| b == b'\n').collect();
        let header = usize::from(format == "csv");
        let kept = 5;
        // An earlier run that stopped after `kept` rows, in the middle of the next one.
        let mut earlier: Vec<u8> = lines[..header + kept].concat();
        earlier.extend_from_slice(&lines[header + kept][..10]);
        let file = dir.path().join(format!("rows.{format}"));
        std::fs::write(&file, &earlier).unwrap();
        let resumed = hands_infer(&[
            Path::new("--model"),
            &model,
            Path::new("--resume"),
            &file,
            &images,
        ]);
        let stderr = text(&resumed.stderr);
        assert_eq!(resumed.status.code(), Some(1), "{stderr}");
        assert!(resumed.stdout.is_empty());
        let total = zoo.good.len() + zoo.bad.len();
        assert!(
            stderr.contains(&format!(
                "{} images, {} failures",
                total - kept,
                zoo.bad.len() - count_errors(&lines[header..header + kept], format)
            )),
            "{stderr}"
        );
        assert!(stderr.contains(&format!(
            "{kept} images already in the resumed output skipped"
        )));
        assert!(stderr.contains("dropped a last row cut short"), "{stderr}");
        assert_eq!(std::fs::read(&file).unwrap(), full.stdout, "{format}");
    }

    // Files hands-infer did not write for this model are refused and left as they were:
    // another model's labels, and a file without one complete row.
    let other = dir.path().join("other.csv");
    let notes = dir.path().join("notes.txt");
    for (path, contents, says) in [
        (
            &other,
            "path,label,p_cat,p_dog,error\nx.jpg,cat,0.9,0.1,\n",
            "p_cat",
        ),
        (&notes, "my notes, no newline", "without one complete row"),
    ] {
        std::fs::write(path, contents).unwrap();
        let run = hands_infer(&[
            Path::new("--model"),
            &model,
            Path::new("--resume"),
            path,
            &images,
        ]);
        assert_eq!(run.status.code(), Some(2));
        assert!(text(&run.stderr).contains(says), "{}", text(&run.stderr));
        assert_eq!(std::fs::read_to_string(path).unwrap(), contents);
    }
    // --resume appends to its file: --output beside it is refused.
    let both = hands_infer(&[
        Path::new("--resume"),
        &other,
        Path::new("--output"),
        &dir.path().join("new.csv"),
        &images,
    ]);
    assert_eq!(both.status.code(), Some(2));
}

/// Rows among `lines` that carry an error (CSV: a last field; JSON lines: an "error" key).
fn count_errors(lines: &[&[u8]], format: &str) -> usize {
    lines
        .iter()
        .filter(|l| match format {
            // The error is the field before the model's identity.
            "csv" => csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(**l)
                .records()
                .next()
                .is_some_and(|r| !r.unwrap()[4].is_empty()),
            _ => text(l).contains("\"error\""),
        })
        .count()
}

#[test]
fn rows_come_out_in_the_order_of_the_arguments() {
    if !have_ort("rows_come_out_in_the_order_of_the_arguments") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = good_files(dir.path());
    files.reverse();
    files.swap(0, 3);
    let model = fixture("tiny.onnx");
    let mut args: Vec<&Path> = vec![
        Path::new("--model"),
        &model,
        Path::new("--batch"),
        Path::new("3"),
    ];
    args.extend(files.iter().map(PathBuf::as_path));
    let run = hands_infer(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let paths: Vec<String> = csv_rows(&run.stdout).into_iter().map(|r| r.0).collect();
    let expected: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(paths, expected);
}

#[test]
fn the_default_model_is_built_in() {
    if !have_ort("the_default_model_is_built_in") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = good_files(dir.path());
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/pretrained/hands.onnx");
    let from_file = Predictor::open_with(&shipped, &options(None)).unwrap();
    let built_in = Predictor::default_model(&options(None)).unwrap();
    assert_eq!(built_in.path(), None);
    assert_eq!(built_in.name(), Path::new(hands_infer::DEFAULT_MODEL_NAME));
    assert_eq!(built_in.card(), from_file.card());
    for path in &files {
        let a = from_file.predict_path(path).unwrap();
        let b = built_in.predict_path(path).unwrap();
        assert_eq!(a.probabilities, b.probabilities, "{}", path.display());
    }

    // The command, copied away from the repository and run elsewhere, needs no model file.
    let library = hands_infer::runtime::runtime(None)
        .unwrap()
        .library()
        .to_path_buf();
    let installed = dir.path().join("bin");
    std::fs::create_dir(&installed).unwrap();
    let exe = installed.join("hands-infer");
    std::fs::copy(env!("CARGO_BIN_EXE_hands-infer"), &exe).unwrap();
    let run = Command::new(&exe)
        .arg(&files[0])
        .current_dir(&installed)
        .env_remove("HANDS_MODEL")
        .env("ORT_DYLIB_PATH", &library)
        .output()
        .unwrap();
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("embedded default model"), "{stderr}");
    let rows = csv_rows(&run.stdout);
    let expected = from_file.predict_path(&files[0]).unwrap();
    assert_eq!(rows[0].1, expected.label);
}

#[test]
fn a_named_library_is_loaded_without_asking_python() {
    if !have_ort("a_named_library_is_loaded_without_asking_python") {
        return;
    }
    // A `python3` and a `python` first on PATH that leave a mark when started: looking for
    // ONNX Runtime in Python's packages costs a process start, which a library named with
    // --ort-lib must not pay.
    let dir = tempfile::tempdir().unwrap();
    let files = good_files(dir.path());
    let fake = dir.path().join("fake-bin");
    std::fs::create_dir(&fake).unwrap();
    let mark = dir.path().join("python-was-asked");
    for name in ["python3", "python"] {
        let script = fake.join(name);
        std::fs::write(
            &script,
            format!("#!/bin/sh\ntouch '{}'\nexit 1\n", mark.display()),
        )
        .unwrap();
        let mut permissions = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&script, permissions).unwrap();
    }
    let path = std::env::join_paths(std::iter::once(fake.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let library = hands_infer::runtime::runtime(None)
        .unwrap()
        .library()
        .to_path_buf();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = hands_infer_command(args)
            .arg(&files[0])
            .env("PATH", &path)
            .env_remove("ORT_DYLIB_PATH")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    run(&["--ort-lib".as_ref(), library.as_os_str()]);
    assert!(
        !mark.exists(),
        "python was started although --ort-lib named the library"
    );
    // Without a named library, Python's packages are looked at (the mark shows the fake
    // python is the one found), and the search goes on to the library it finds next.
    run(&[]);
    assert!(mark.exists(), "the search did not ask python");
}

#[test]
fn groups_combine_their_photos_and_bad_group_files_are_refused() {
    if !have_ort("groups_combine_their_photos_and_bad_group_files_are_refused") {
        return;
    }
    // Two people as folders: `ann` with three photos, `bob` with one photo and one broken
    // file, `cy` with only a broken file.
    let dir = tempfile::tempdir().unwrap();
    let zoo = dir.path().join("zoo");
    std::fs::create_dir(&zoo).unwrap();
    let files = good_files(&zoo);
    let people = dir.path().join("people");
    for (person, photos, broken) in [
        ("ann", 0..3, false),
        ("bob", 3..4, true),
        ("cy", 0..0, true),
    ] {
        let folder = people.join(person);
        std::fs::create_dir_all(&folder).unwrap();
        for file in &files[photos] {
            std::fs::copy(file, folder.join(file.file_name().unwrap())).unwrap();
        }
        if broken {
            std::fs::write(folder.join("broken.jpg"), b"not a photo").unwrap();
        }
    }
    let groups = dir.path().join("groups.csv");
    let group_temperature = Predictor::default_model(&options(None))
        .unwrap()
        .card()
        .group_temperature();
    assert!(
        group_temperature != 1.0,
        "the shipped card has a per-person temperature"
    );
    let run = hands_infer(&[
        Path::new("--recursive"),
        Path::new("--group-by"),
        Path::new("folder"),
        Path::new("--groups"),
        &groups,
        &people,
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr)); // the broken files
    let photos = csv_rows(&run.stdout);
    let mut reader = csv::Reader::from_path(&groups).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["group", "images", "failed", "label", "p_female", "p_male", "error"]
    );
    assert_eq!(rows.len(), 3);
    for row in &rows {
        let members: Vec<&(String, String, String, String, String)> = photos
            .iter()
            .filter(|p| Path::new(&p.0).parent() == Some(Path::new(&row[0])))
            .collect();
        let predicted: Vec<(f64, f64)> = members
            .iter()
            .filter(|p| p.4.is_empty())
            .map(|p| (p.2.parse().unwrap(), p.3.parse().unwrap()))
            .collect();
        assert_eq!(row[1].parse::<usize>().unwrap(), predicted.len(), "{row:?}");
        assert_eq!(
            row[2].parse::<usize>().unwrap(),
            members.len() - predicted.len()
        );
        if predicted.is_empty() {
            assert!(row[3].is_empty() && row[6].contains("no photo"), "{row:?}");
            continue;
        }
        // softmax(mean log-probability / the card's group temperature).
        let n = predicted.len() as f64;
        let female: f64 = predicted.iter().map(|p| p.0.ln() / n).sum();
        let male: f64 = predicted.iter().map(|p| p.1.ln() / n).sum();
        let expected = 1.0 / (1.0 + ((male - female) / group_temperature).exp());
        let p_female: f64 = row[4].parse().unwrap();
        assert!((p_female - expected).abs() < 1e-4, "{row:?}: {expected}");
        let label = if p_female >= 0.5 { "female" } else { "male" };
        assert_eq!(&row[3], label);
    }

    // A group file naming an image twice, an unknown image, an empty group, or leaving an
    // image out: refused before anything runs, the groups file kept as it was.
    let kept = std::fs::read(&groups).unwrap();
    let listed: Vec<PathBuf> = photos.iter().map(|p| PathBuf::from(&p.0)).collect();
    let body = |rows: &[(String, &str)]| {
        let mut text = String::from("path,group\n");
        for (path, group) in rows {
            text.push_str(&format!("{path},{group}\n"));
        }
        text
    };
    let all: Vec<(String, &str)> = listed
        .iter()
        .map(|p| (p.display().to_string(), "x"))
        .collect();
    let mut twice = all.clone();
    twice.push(all[0].clone());
    let mut unknown = all.clone();
    unknown.push((zoo.join("photo.jpg").display().to_string(), "x"));
    let mut empty = all.clone();
    empty[0].1 = "";
    for (rows, says) in [
        (twice, "is listed again"),
        (unknown, "is not among the images given"),
        (empty, "has an empty group"),
        (all[1..].to_vec(), "no group for"),
    ] {
        let csv = dir.path().join("by.csv");
        std::fs::write(&csv, body(&rows)).unwrap();
        let by = PathBuf::from(format!("csv:{}", csv.display()));
        let run = hands_infer(&[
            Path::new("--recursive"),
            Path::new("--group-by"),
            &by,
            Path::new("--groups"),
            &groups,
            &people,
        ]);
        assert_eq!(run.status.code(), Some(2), "{says}");
        assert!(
            text(&run.stderr).contains(says),
            "{says}: {}",
            text(&run.stderr)
        );
        assert_eq!(std::fs::read(&groups).unwrap(), kept, "{says}");
    }
    // The same groups from a CSV give the same rows.
    let csv = dir.path().join("by.csv");
    let named: Vec<(String, String)> = listed
        .iter()
        .map(|p| {
            (
                p.display().to_string(),
                p.parent().unwrap().display().to_string(),
            )
        })
        .collect();
    let mut text_csv = String::from("path,group\n");
    for (path, group) in &named {
        text_csv.push_str(&format!("{path},{group}\n"));
    }
    std::fs::write(&csv, text_csv).unwrap();
    let again = dir.path().join("again.csv");
    let by = PathBuf::from(format!("csv:{}", csv.display()));
    hands_infer(&[
        Path::new("--recursive"),
        Path::new("--group-by"),
        &by,
        Path::new("--groups"),
        &again,
        &people,
    ]);
    assert_eq!(std::fs::read(&again).unwrap(), kept);
    // --groups needs --group-by.
    let run = hands_infer(&[Path::new("--groups"), &again, &people]);
    assert_eq!(run.status.code(), Some(2));
}
