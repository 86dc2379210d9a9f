//! Careless and hostile input to `search`, `train`, `eval` and `plot` (issue 20): no output
//! lands on an input, no flag value panics, a run that cannot train fails before its first
//! epoch, an unfinished search is not trained silently, one-class data is refused or
//! reported as such, and resumed or reused state is checked.

mod common;

use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};
use common::{tiny_train, trained_model};
use hands_data::{AspectFilter, Dataset, Fractions, Split};
use hands_models::device::DeviceChoice;
use hands_nas::args::{Algo, SearchArgs};
use hands_nas::search::run_search;
use hands_reports::plot::plot_run;
use hands_reports::run_dir::FINISHED;
use hands_tests::datasets::hands_info;
use hands_train::args::train::TrainArgs;
use hands_train::checkpoint;
use hands_train::eval::{eval_model, run_eval, EvalArgs, EvalSplit};
use hands_train::train::train;

fn tiny_search(data: &Path, out: &Path) -> SearchArgs {
    let mut args = SearchArgs::new(data, Algo::Darts);
    args.run.out = Some(out.to_path_buf());
    args.data.size = 16;
    args.optimiser.batch = 4;
    args.optimiser.epochs = 1;
    args.network.init_channels = 4;
    args.network.layers = 2;
    args.run.seed = 3;
    args
}

fn eval_args(model: &Path, data: &Path) -> EvalArgs {
    EvalArgs {
        model: model.to_path_buf(),
        data: data.to_path_buf(),
        split: EvalSplit::Test,
        split_file: None,
        aspect: None,
        json: None,
        predictions: None,
        batch: 8,
        device: DeviceChoice::Cpu,
    }
}

/// Runs the `hands-search` binary; returns its exit code and stderr.
fn hands_search(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hands-search"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Finding 2: `eval --json MODEL` overwrote the model; no output of search, train, eval or
/// plot may be one of its inputs.
#[test]
fn outputs_onto_inputs_are_refused_and_leave_them_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = trained_model(dir.path());
    let model_bytes = std::fs::read(&model).unwrap();
    let csv = data.join("HandInfo.csv");
    let csv_bytes = std::fs::read(&csv).unwrap();

    for json in [model.clone(), csv.clone(), data.join("images/male0_0.png")] {
        let mut args = eval_args(&model, &data);
        args.json = Some(json.clone());
        let err = run_eval(&args).unwrap_err().to_string();
        assert!(err.contains("refusing to write"), "{json:?}: {err}");
    }
    // A symlink to the model is the model too.
    #[cfg(unix)]
    {
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&model, &link).unwrap();
        let mut args = eval_args(&model, &data);
        args.json = Some(link);
        assert!(run_eval(&args).is_err());
    }
    assert_eq!(std::fs::read(&model).unwrap(), model_bytes);
    assert_eq!(std::fs::read(&csv).unwrap(), csv_bytes);

    // A search or training run folder on the data, or training into its search run folder.
    let err = run_search(&tiny_search(&data, &data))
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing to write"), "{err}");
    let err = run_search(&tiny_search(&data, &data.join("images")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing to write"), "{err}");
    let search = dir.path().join("search");
    run_search(&tiny_search(&data, &search)).unwrap();
    let config = std::fs::read(search.join("config.json")).unwrap();
    std::fs::remove_file(search.join("checkpoint.safetensors")).unwrap();
    let err = train(&tiny_train(&data, search.to_str().unwrap(), &search))
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing to write"), "{err}");
    assert_eq!(std::fs::read(search.join("config.json")).unwrap(), config);
    let err = train(&tiny_train(&data, "DARTS_V2", &data.join("images")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing to write"), "{err}");
    assert_eq!(std::fs::read(&csv).unwrap(), csv_bytes);

    // plot: an SVG that is a link to the log it is drawn from.
    #[cfg(unix)]
    {
        let plots = dir.path().join("plots");
        std::fs::create_dir(&plots).unwrap();
        std::os::unix::fs::symlink(search.join("search.jsonl"), plots.join("alphas.svg")).unwrap();
        let log = std::fs::read(search.join("search.jsonl")).unwrap();
        let err = plot_run(&search, &plots).unwrap_err().to_string();
        assert!(err.contains("refusing to write"), "{err}");
        assert_eq!(std::fs::read(search.join("search.jsonl")).unwrap(), log);
    }
}

/// Finding 7: out-of-range flags exited 0 or panicked (101); data that leaves no
/// architecture half searched untrained weights and exited 0.
#[test]
fn flag_values_out_of_range_and_untrainable_data_fail_before_any_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    hands_info(&data, 1, true); // two subjects: one per class
    let data_arg = data.to_str().unwrap();
    let out = dir.path().join("never");
    let out_arg = out.to_str().unwrap();
    let base = ["--data", data_arg, "--out", out_arg];
    let bad: [(&str, &[&str]); 14] = [
        ("search", &["--batch", "0"]),
        ("search", &["--init-channels", "0"]),
        ("search", &["--layers", "0"]),
        ("search", &["--epochs", "0"]),
        ("search", &["--size", "0"]),
        ("search", &["--size", "100000"]),
        ("search", &["--batch", "100000"]),
        ("search", &["--lr", "nan"]),
        ("search", &["--momentum", "1.5"]),
        ("search", &["--stages", "5,0,17", "--algo", "pdarts"]),
        ("train", &["--genotype", "DARTS_V2", "--layers", "0"]),
        ("train", &["--genotype", "DARTS_V2", "--drop-path", "-1"]),
        ("train", &["--genotype", "DARTS_V2", "--grad-clip", "inf"]),
        ("search", &["--partial-k", "0"]),
    ];
    for (command, flags) in bad {
        let mut args = vec![command];
        args.extend(base);
        args.extend(flags);
        let (code, stderr) = hands_search(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--"), "{args:?}: {stderr}");
    }
    let (code, stderr) =
        hands_search(&["eval", "--model", "m", "--data", data_arg, "--batch", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stderr) = hands_search(&["--threads", "0", "plot", "--run", out_arg]);
    assert_eq!(code, Some(2), "{stderr}");

    // Settings that parse but cannot search: refused before the run folder is written.
    let mut args = tiny_search(&data, &out);
    args.architecture.partial_k = Some(3);
    let err = run_search(&args).unwrap_err().to_string();
    assert!(err.contains("--partial-k"), "{err}");
    let mut args = tiny_search(&data, &out);
    args.architecture.arch_warmup_epochs = Some(1);
    let err = run_search(&args).unwrap_err().to_string();
    assert!(err.contains("warm-up"), "{err}");
    let mut args = tiny_search(&data, &out);
    args.network.layers = 0;
    assert!(run_search(&args).is_err());

    // Two subjects: the architecture half would be empty.
    let err = run_search(&tiny_search(&data, &out))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("architecture half") && err.contains("subjects"),
        "{err}"
    );
    let (code, stderr) = hands_search(&[
        "search",
        "--data",
        data_arg,
        "--out",
        out_arg,
        "--size",
        "16",
        "--batch",
        "4",
        "--epochs",
        "1",
        "--init-channels",
        "4",
        "--layers",
        "2",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!out.join("genotype.json").exists());
    assert!(!out.join("checkpoint.safetensors").exists());
}

/// Finding 8: `train --genotype RUN` on an unfinished search trained its intermediate
/// genotype silently.
#[test]
fn an_unfinished_search_is_trained_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    hands_info(&data, 4, true);
    let search = dir.path().join("search");
    let mut args = tiny_search(&data, &search);
    args.optimiser.epochs = 2;
    args.run.stop_after = Some(1);
    run_search(&args).unwrap();
    assert!(search.join("genotype.json").is_file());
    assert!(!search.join(FINISHED).exists());

    let out = dir.path().join("train");
    for genotype in [search.clone(), search.join("genotype.json")] {
        let mut train_args = tiny_train(&data, genotype.to_str().unwrap(), &out);
        train_args.run.stop_after = Some(0);
        let err = train(&train_args).unwrap_err().to_string();
        assert!(
            err.contains("not finished") && err.contains("--allow-unfinished"),
            "{err}"
        );
        assert!(!out.exists());
    }
    let mut train_args = tiny_train(&data, search.to_str().unwrap(), &out);
    train_args.run.stop_after = Some(0);
    train_args.allow_unfinished = true;
    train(&train_args).unwrap();
    std::fs::remove_dir_all(&out).unwrap();

    // Finished: trained without the flag.
    args.run.stop_after = None;
    args.run.resume = true;
    run_search(&args).unwrap();
    assert!(search.join(FINISHED).is_file());
    let mut train_args = tiny_train(&data, search.to_str().unwrap(), &out);
    train_args.run.stop_after = Some(0);
    train(&train_args).unwrap();
}

/// Finding 9: one-class data searched and trained (only failing after every epoch), and
/// eval on male-only data reported "mean class accuracy 1.0000".
#[test]
fn one_class_data_is_refused_or_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let male_only = dir.path().join("male");
    hands_info(&male_only, 6, false);

    let search = dir.path().join("search");
    let err = run_search(&tiny_search(&male_only, &search))
        .unwrap_err()
        .to_string();
    assert!(err.contains("one class"), "{err}");
    assert!(!search.join("search.jsonl").exists());

    let out = dir.path().join("train-male");
    let err = train(&tiny_train(&male_only, "DARTS_V2", &out))
        .unwrap_err()
        .to_string();
    assert!(err.contains("one class"), "{err}");
    assert!(!out.join("checkpoint.safetensors").exists());

    let (_, model) = trained_model(dir.path());
    let mut args = eval_args(&model, &male_only);
    args.split = EvalSplit::All;
    let evaluation = eval_model(&args).unwrap();
    assert_eq!(evaluation.absent_classes, ["female"]);
    assert!(!evaluation.per_class.contains_key("female"));
    assert_eq!(evaluation.per_class["male"].images, 12);
    let table = evaluation.to_string();
    assert!(
        table.contains("over the classes present only (no images of female)"),
        "{table}"
    );
    assert!(evaluation.card_metrics().is_err());
}

/// Finding 11: resume ignored changed settings, `eval --split-file` of another split tested
/// on training subjects, and a checkpoint with overwritten tensor bytes resumed silently.
#[test]
fn resumed_and_reused_state_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = trained_model(dir.path());

    // Resume with other settings: refused, each one listed; --extend-epochs applies one.
    let run = dir.path().join("resumed");
    let mut args = tiny_train(&data, "DARTS_V2", &run);
    args.optimiser.epochs = 2;
    args.run.stop_after = Some(1);
    train(&args).unwrap();
    args.run.stop_after = None;
    args.run.resume = true;
    let mut changed = args.clone();
    changed.optimiser.epochs = 3;
    changed.optimiser.lr = 0.5;
    changed.data.path = dir.path().join("elsewhere");
    let err = train(&changed).unwrap_err().to_string();
    for line in [
        "--epochs: stored 2, given 3",
        "--lr: stored 0.025, given 0.5",
        "--data: stored",
    ] {
        assert!(err.contains(line), "{err}");
    }
    changed.optimiser.lr = args.optimiser.lr;
    changed.data = args.data.clone();
    changed.run.extend_epochs = true;
    let outcome = train(&changed).unwrap();
    assert_eq!(outcome.epochs_done, 3);
    // Only the settings given on the command line count.
    let mut defaults = TrainArgs::new(&data, "DARTS_V2");
    defaults.run.out = Some(run.clone());
    defaults.run.resume = true;
    defaults.run.explicit = Some(vec!["data".into(), "genotype".into(), "out".into()]);
    defaults.data.path = dir.path().join("data/../data");
    assert_eq!(train(&defaults).unwrap().epochs_done, 3);

    // A split whose test subjects the model was trained on.
    let dataset = Dataset::load(&data, &AspectFilter::All).unwrap();
    let own = Split::load(&model.with_file_name("split.json")).unwrap();
    let other = (1..100)
        .map(|seed| Split::new(&dataset, Fractions::default(), seed).unwrap())
        .find(|s| {
            s.test
                .subjects
                .iter()
                .any(|t| own.train.subjects.contains(t))
        })
        .unwrap();
    let other_path = dir.path().join("other-split.json");
    other.save(&other_path).unwrap();
    let mut eval = eval_args(&model, &data);
    eval.split_file = Some(other_path);
    let err = eval_model(&eval).unwrap_err().to_string();
    assert!(err.contains("were used to train or select"), "{err}");
    eval.split_file = None;
    assert_eq!(eval_model(&eval).unwrap().trained_subjects, Some(0));
    eval.split = EvalSplit::All;
    let all = eval_model(&eval).unwrap();
    assert_eq!(
        all.trained_subjects,
        Some(own.train.subjects.len() + own.val.subjects.len())
    );
    assert!(all.to_string().contains("WARNING"), "{all}");

    // A checkpoint with some tensor bytes overwritten.
    let path = dir.path().join("checkpoint.safetensors");
    let tensors = vec![(
        "w".to_string(),
        Tensor::arange(0f32, 64.0, &Device::Cpu).unwrap(),
    )];
    checkpoint::save(&path, &tensors, &serde_json::json!({"epoch": 1})).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 20..n - 12].copy_from_slice(&[0x7f; 8]);
    std::fs::write(&path, &bytes).unwrap();
    let err = checkpoint::load(&path, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checkpoint.safetensors") && err.contains("checksum"),
        "{err}"
    );
}

/// `hands-search train --resume --out DIR` alone continues a stopped run: `--data` and
/// `--genotype` come from the run's config.json, and the stop message says exactly that
/// command. Leaving them out without `--out`, or with a folder that is not a run, is refused
/// by name; without `--resume` they stay required.
#[test]
fn resume_needs_only_the_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    hands_info(&data, 6, true);
    let run = dir.path().join("run");
    let run_arg = run.to_str().unwrap();
    let (code, stderr) = hands_search(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--genotype",
        "DARTS_V2",
        "--out",
        run_arg,
        "--size",
        "16",
        "--batch",
        "4",
        "--epochs",
        "2",
        "--init-channels",
        "4",
        "--layers",
        "3",
        "--cutout",
        "0",
        "--stop-after",
        "1",
        "--threads",
        "1",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let hint = format!("continue with: hands-search train --resume --out {run_arg}");
    assert!(stderr.contains(&hint), "{stderr}");
    assert!(!run.join("model.safetensors").exists());

    let (code, stderr) = hands_search(&["train", "--resume", "--out", run_arg, "--threads", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    let log = std::fs::read_to_string(run.join("train.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(run.join("model.safetensors").is_file());
    // A setting given differently is still refused.
    let (code, stderr) = hands_search(&["train", "--resume", "--out", run_arg, "--lr", "0.5"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--lr: stored 0.025, given 0.5"), "{stderr}");

    let (code, stderr) = hands_search(&["train", "--resume"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--resume without --genotype and --data needs --out DIR"),
        "{stderr}"
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for subcommand in ["train", "search", "cv"] {
        let (code, stderr) =
            hands_search(&[subcommand, "--resume", "--out", empty.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{subcommand}");
        assert!(stderr.contains("cannot read"), "{subcommand}: {stderr}");
        assert!(stderr.contains("config.json"), "{subcommand}: {stderr}");
    }
    let (code, stderr) = hands_search(&["train", "--out", run_arg]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--genotype <GENOTYPE>"), "{stderr}");
}
