//! Whole searches on a tiny synthetic dataset: every algorithm writes its run folder, and a
//! search stopped part-way and resumed ends exactly like one run straight through.

use std::path::{Path, PathBuf};

use hands_models::Genotype;
use hands_nas::args::{Algo, SearchArgs};
use hands_nas::hessian::early_stop_epoch;
use hands_nas::search::{run_search, Finished};
use hands_nas::supernet::Memory;
use hands_reports::run_dir::FINISHED;
use hands_tests::datasets::class_folders;

fn tiny(data: &Path, out: PathBuf, algo: Algo) -> SearchArgs {
    let mut args = SearchArgs::new(data, algo);
    args.run.out = Some(out);
    args.data.size = 16;
    args.optimiser.batch = 4;
    args.optimiser.epochs = 2;
    args.network.init_channels = 4;
    args.network.layers = 3;
    args.run.seed = 3;
    args.architecture.arch_warmup_epochs = Some(0);
    args
}

/// `search.jsonl` without the wall-clock field.
fn log_without_seconds(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("search.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

fn genotype(run: &Path) -> Genotype {
    let json = std::fs::read_to_string(run.join("genotype.json")).unwrap();
    let genotype = Genotype::from_json(&json).unwrap();
    genotype.validate().unwrap();
    genotype
}

/// Runs `args` straight through, and again stopped after `stop` epochs and resumed; both
/// must log the same epochs and end with the same genotype.
fn straight_and_resumed(dir: &Path, args: SearchArgs, stop: usize) -> PathBuf {
    let straight = dir.join("straight");
    let mut straight_args = args.clone();
    straight_args.run.out = Some(straight.clone());
    run_search(&straight_args).unwrap();

    let resumed = dir.join("resumed");
    let mut partial = args;
    partial.run.out = Some(resumed.clone());
    partial.run.stop_after = Some(stop);
    run_search(&partial).unwrap();
    assert_eq!(log_without_seconds(&resumed).len(), stop);
    // Starting afresh over a run is refused; --resume continues it.
    partial.run.stop_after = None;
    let err = run_search(&partial).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
    partial.run.resume = true;
    run_search(&partial).unwrap();

    assert_eq!(
        log_without_seconds(&straight),
        log_without_seconds(&resumed)
    );
    assert_eq!(genotype(&straight), genotype(&resumed));
    straight
}

#[test]
fn darts_writes_its_run_folder_and_resumes_to_the_same_genotype() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let args = tiny(&data, PathBuf::new(), Algo::Darts);
    let run = straight_and_resumed(dir.path(), args, 1);
    for file in [
        "config.json",
        "split.json",
        "checkpoint.safetensors",
        "normal.dot",
        "normal.svg",
        "reduce.dot",
        "reduce.svg",
    ] {
        assert!(run.join(file).is_file(), "{file}");
    }
    let log = log_without_seconds(&run);
    assert_eq!(log.len(), 2);
    let last = &log[1];
    assert_eq!(last["alphas_normal"].as_array().unwrap().len(), 14);
    for row in last["alphas_normal"].as_array().unwrap() {
        let sum: f64 = row
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-5, "softmaxed alphas sum to one");
    }
    assert!(last["val_acc"].as_f64().is_some() && last["train_loss"].as_f64().is_some());
    assert_eq!(
        Genotype::from_json(&last["genotype"].to_string()).unwrap(),
        genotype(&run)
    );
    // Every epoch logs the collapse count of its derived normal cell.
    for record in &log {
        let derived = Genotype::from_json(&record["genotype"].to_string()).unwrap();
        assert_eq!(
            record["parameter_free_normal"].as_u64(),
            Some(derived.parameter_free_normal_ops() as u64)
        );
    }
}

#[test]
fn second_order_darts_resumes_to_the_same_genotype() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    straight_and_resumed(dir.path(), tiny(&data, PathBuf::new(), Algo::Darts2), 1);
}

#[test]
fn pcdarts_logs_betas_and_resumes_to_the_same_genotype() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let mut args = tiny(&data, PathBuf::new(), Algo::Pcdarts);
    args.architecture.partial_k = Some(2);
    args.architecture.arch_warmup_epochs = Some(1);
    let run = straight_and_resumed(dir.path(), args, 1);
    let log = log_without_seconds(&run);
    // The architecture is frozen during the warm-up epoch.
    assert_eq!(log[0]["arch_active"], false);
    assert_eq!(log[1]["arch_active"], true);
    assert_eq!(log[0]["betas_normal"].as_array().unwrap().len(), 14);
}

/// `--stage-ops 8,5,1 --max-skip 0`: the last stage has one candidate per edge, so an edge
/// whose one candidate is a skip takes its best other operation of the stage before; the
/// search ends (it used to loop forever) with no skip in the normal cell.
#[test]
fn pdarts_with_one_op_in_the_last_stage_meets_the_skip_limit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let run = dir.path().join("run");
    let mut args = tiny(&data, run.clone(), Algo::Pdarts);
    args.pdarts.stages = vec![3, 3, 3];
    args.pdarts.stage_ops = vec![8, 5, 1];
    args.pdarts.skip_dropout = vec![0.0, 0.0, 0.0];
    args.pdarts.stage_warmup = 0;
    args.pdarts.max_skip = 0;
    run_search(&args).unwrap();
    let found = genotype(&run);
    assert!(
        found
            .normal
            .iter()
            .all(|(op, _)| *op != hands_models::Op::SkipConnect),
        "{found:?}"
    );
    found.validate().unwrap();
}

#[test]
fn pdarts_prunes_between_stages_and_resumes_mid_stage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let mut args = tiny(&data, PathBuf::new(), Algo::Pdarts);
    args.pdarts.stages = vec![3, 4];
    args.pdarts.stage_ops = vec![8, 4];
    args.pdarts.skip_dropout = vec![0.1, 0.3];
    args.pdarts.stage_warmup = 1;
    args.pdarts.max_skip = 1;
    // Stopped in the middle of the second stage.
    let run = straight_and_resumed(dir.path(), args, 3);
    let log = log_without_seconds(&run);
    assert_eq!(log.len(), 4);
    let stages: Vec<u64> = log.iter().map(|l| l["stage"].as_u64().unwrap()).collect();
    assert_eq!(stages, [0, 0, 1, 1]);
    assert_eq!(log[2]["layers"], 4);
    for edge in log[2]["candidates_normal"].as_array().unwrap() {
        assert_eq!(
            edge.as_array().unwrap().len(),
            4,
            "pruned to 4 ops per edge"
        );
    }
    let skips = genotype(&run)
        .normal
        .iter()
        .filter(|(op, _)| *op == hands_models::Op::SkipConnect)
        .count();
    assert!(skips <= 1, "{skips} skip connections over --max-skip 1");
}

#[test]
fn a_diverging_search_stops_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let mut args = tiny(&data, dir.path().join("run"), Algo::Darts);
    args.optimiser.lr = 1e30;
    args.optimiser.grad_clip = 1e30;
    let err = format!("{:#}", run_search(&args).unwrap_err());
    assert!(err.contains("non-finite"), "{err}");
    assert!(err.contains("step"), "{err}");
}

/// The logs of the tiny DARTS search run as it is and with `vary` applied to its settings.
fn plain_and_varied(
    vary: impl FnOnce(&mut SearchArgs),
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let plain = dir.path().join("plain");
    run_search(&tiny(&data, plain.clone(), Algo::Darts)).unwrap();
    let varied = dir.path().join("varied");
    let mut args = tiny(&data, varied.clone(), Algo::Darts);
    vary(&mut args);
    run_search(&args).unwrap();
    (log_without_seconds(&plain), log_without_seconds(&varied))
}

#[test]
fn beta_decay_changes_the_architecture_and_is_logged() {
    let (plain, regularised) = plain_and_varied(|args| args.architecture.beta_decay = 50.0);
    assert_eq!(plain[1]["beta_decay"].as_f64(), Some(0.0));
    // From 0 at the first architecture epoch, as its help says.
    assert_eq!(regularised[0]["beta_decay"].as_f64(), Some(0.0));
    assert_eq!(regularised[1]["beta_decay"].as_f64(), Some(50.0));
    // The same run but for the regulariser: the architecture it ends with differs.
    assert_ne!(plain[1]["alphas_normal"], regularised[1]["alphas_normal"]);
}

#[test]
fn the_vertical_flip_changes_the_batches_the_search_sees() {
    let (plain, flipped) = plain_and_varied(|args| args.vertical_flip = true);
    assert_ne!(plain[0]["train_loss"], flipped[0]["train_loss"]);
}

/// The largest difference between two logged matrices of architecture weights.
fn max_difference(a: &serde_json::Value, b: &serde_json::Value) -> f64 {
    let flat = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
            .collect()
    };
    flat(a)
        .iter()
        .zip(flat(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Beta-Decay is added after the architecture gradient's clip (P-DARTS clips it): a clip
/// that all but stops the validation loss's steps leaves the regulariser's at full weight.
#[test]
fn beta_decay_is_not_clipped_with_the_architecture_gradient() {
    let clip = |args: &mut SearchArgs| args.architecture.arch_grad_clip = Some(1e-12);
    let (_, clipped) = plain_and_varied(clip);
    let (_, regularised) = plain_and_varied(|args| {
        clip(args);
        args.architecture.beta_decay = 50.0;
    });
    // Clipped with it, the regulariser's gradient was scaled to 1e-12 as well and the two
    // runs logged the same weights (0 apart); now 8e-5.
    let apart = max_difference(
        &clipped[1]["alphas_normal"],
        &regularised[1]["alphas_normal"],
    );
    assert!(apart > 1e-5, "{apart}");
}

#[test]
fn clipping_the_architecture_gradient_changes_the_architecture() {
    let (plain, clipped) = plain_and_varied(|args| args.architecture.arch_grad_clip = Some(1e-12));
    assert_ne!(plain[1]["alphas_normal"], clipped[1]["alphas_normal"]);
}

#[test]
fn the_hessian_eigenvalue_is_logged_every_epoch_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let mut args = tiny(&data, PathBuf::new(), Algo::Darts);
    args.architecture.hessian_iterations = 3;
    let run = straight_and_resumed(dir.path(), args, 1);
    for record in log_without_seconds(&run) {
        let eigenvalue = record["hessian_eigenvalue"].as_f64().expect("logged");
        assert!(eigenvalue.is_finite() && eigenvalue != 0.0, "{eigenvalue}");
    }
    // Off by default: no field.
    let plain = dir.path().join("plain");
    run_search(&tiny(&data, plain.clone(), Algo::Darts)).unwrap();
    assert!(log_without_seconds(&plain)[0]
        .get("hessian_eigenvalue")
        .is_none());
}

/// The early stop follows DARTS-ES on the eigenvalues the search logged: it ends the search
/// at the first epoch where the rule fires, with the genotype of the epoch it names.
#[test]
fn the_early_stop_ends_the_search_where_the_eigenvalue_rule_fires() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let run = dir.path().join("run");
    let mut args = tiny(&data, run.clone(), Algo::Darts);
    args.optimiser.epochs = 5;
    args.architecture.hessian_iterations = 3;
    args.architecture.early_stop_window = 1;
    args.architecture.early_stop_factor = Some(1e-6);
    args.architecture.early_stop_start = 0;
    run_search(&args).unwrap();
    let log = log_without_seconds(&run);
    let eigenvalues: Vec<f64> = log
        .iter()
        .map(|r| r["hessian_eigenvalue"].as_f64().unwrap())
        .collect();
    let fired = (1..=eigenvalues.len())
        .find_map(|n| early_stop_epoch(&eigenvalues[..n], 1, 1e-6, 0, 0).map(|kept| (n - 1, kept)));
    let finished: Finished =
        serde_json::from_str(&std::fs::read_to_string(run.join(FINISHED)).unwrap()).unwrap();
    let (stopped_after, kept) = fired.expect("the rule fires on these eigenvalues (all positive)");
    assert_eq!(log.len(), stopped_after + 1, "no epoch after the stop");
    let stop = finished.early_stop.expect("recorded");
    assert_eq!((stop.stopped_after, stop.kept_epoch), (stopped_after, kept));
    let kept_genotype: Genotype = serde_json::from_value(log[kept]["genotype"].clone()).unwrap();
    assert_eq!(finished.genotype, kept_genotype);
    assert_eq!(genotype(&run), kept_genotype);
}

/// Warm-up epochs (no architecture step) are not compared, and no genotype from before the
/// start epoch is kept: with a 2-epoch warm-up and the start at epoch 3, the rule that fired
/// at once above can first keep epoch 3, and stops after epoch 4.
#[test]
fn the_early_stop_skips_the_warm_up_and_starts_at_its_start_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let run = dir.path().join("run");
    let mut args = tiny(&data, run.clone(), Algo::Darts);
    args.optimiser.epochs = 6;
    args.architecture.arch_warmup_epochs = Some(2);
    args.architecture.hessian_iterations = 2;
    args.architecture.early_stop_window = 1;
    args.architecture.early_stop_factor = Some(1e-6);
    args.architecture.early_stop_start = 3;
    run_search(&args).unwrap();
    let finished: Finished =
        serde_json::from_str(&std::fs::read_to_string(run.join(FINISHED)).unwrap()).unwrap();
    let stop = finished
        .early_stop
        .expect("the rule fires (all eigenvalues positive)");
    assert_eq!((stop.kept_epoch, stop.stopped_after), (3, 4));
    let log = log_without_seconds(&run);
    assert_eq!(log.len(), 5);
    let kept: Genotype = serde_json::from_value(log[3]["genotype"].clone()).unwrap();
    assert_eq!(finished.genotype, kept);
}

#[test]
fn the_early_stop_needs_the_eigenvalue_and_a_single_stage() {
    let mut args = SearchArgs::new("data", Algo::Darts);
    args.architecture.early_stop_factor = Some(1.33);
    let err = run_search(&args).unwrap_err().to_string();
    assert!(err.contains("--hessian-iterations"), "{err}");
    let mut args = SearchArgs::new("data", Algo::Pdarts);
    args.architecture.early_stop_factor = Some(1.33);
    args.architecture.hessian_iterations = 2;
    let err = run_search(&args).unwrap_err().to_string();
    assert!(err.contains("pdarts"), "{err}");
}

/// `finished.json` of a run folder.
fn finished(run: &Path) -> Finished {
    serde_json::from_str(&std::fs::read_to_string(run.join(FINISHED)).unwrap()).unwrap()
}

#[test]
fn a_search_whose_architecture_cannot_move_is_reported_as_noise() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let run = dir.path().join("run");
    let mut args = tiny(&data, run.clone(), Algo::Darts);
    args.architecture.arch_lr = Some(0.0);
    run_search(&args).unwrap();

    let learning = finished(&run)
        .learning
        .expect("finished.json says what was learned");
    assert!(learning.noise, "{learning:?}");
    assert!(
        learning.arch_steps > 0 && learning.arch_lr == 0.0,
        "{learning:?}"
    );
    assert!(learning
        .warning()
        .unwrap()
        .contains("did not move beyond noise"));
    let log = log_without_seconds(&run);
    let steps: Vec<u64> = log
        .iter()
        .map(|line| line["learning"]["arch_steps"].as_u64().unwrap())
        .collect();
    assert_eq!(steps.len(), 2);
    assert!(steps[0] > 0 && steps[1] == 2 * steps[0], "{steps:?}");
    assert_eq!(steps[1] as usize, learning.arch_steps);
    for line in &log {
        let normal = &line["learning"]["normal"];
        let (entropy, uniform) = (normal["entropy"].as_f64().unwrap(), 8f64.ln());
        assert!((entropy - uniform).abs() < 1e-5, "{normal}");
    }
}

#[test]
fn arch_steps_sets_the_epochs_that_take_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let run = dir.path().join("run");
    let mut args = tiny(&data, run.clone(), Algo::Darts);
    args.architecture.arch_warmup_epochs = Some(1);
    args.architecture.arch_steps = Some(7);
    run_search(&args).unwrap();

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let epochs = config["epochs"].as_u64().unwrap() as usize;
    let learning = finished(&run).learning.unwrap();
    let per_epoch = learning.arch_steps / (epochs - 1);
    assert!(
        per_epoch > 0 && learning.arch_steps.is_multiple_of(epochs - 1),
        "{learning:?}"
    );
    // The fewest epochs after the warm-up whose steps reach 7.
    assert!(
        learning.arch_steps >= 7 && learning.arch_steps - per_epoch < 7,
        "{learning:?}"
    );
    assert_eq!(finished(&run).epochs, epochs);
}

#[test]
fn memory_may_change_on_resume_and_both_paths_learn_the_same_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let mut fast = tiny(&data, dir.path().join("fast"), Algo::Darts);
    fast.memory = Memory::Fast;
    run_search(&fast).unwrap();
    let mut lean = tiny(&data, dir.path().join("lean"), Algo::Darts);
    lean.memory = Memory::Lean;
    run_search(&lean).unwrap();
    // The same gradients up to the order of floating-point sums (f32 here).
    let (fast_log, lean_log) = (
        log_without_seconds(&dir.path().join("fast")),
        log_without_seconds(&dir.path().join("lean")),
    );
    let difference = max_difference(&fast_log[1]["alphas_normal"], &lean_log[1]["alphas_normal"]);
    assert!(difference < 1e-5, "alphas differ by {difference}");

    // A fast run stopped after one epoch resumes lean when asked, and says so in its config.
    let mut partial = tiny(&data, dir.path().join("switched"), Algo::Darts);
    partial.memory = Memory::Fast;
    partial.run.stop_after = Some(1);
    run_search(&partial).unwrap();
    partial.run.stop_after = None;
    partial.run.resume = true;
    partial.memory = Memory::Lean;
    run_search(&partial).unwrap();
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("switched").join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["memory"], "lean");
    let switched = log_without_seconds(&dir.path().join("switched"));
    let difference = max_difference(&fast_log[1]["alphas_normal"], &switched[1]["alphas_normal"]);
    assert!(difference < 1e-5, "alphas differ by {difference}");
}
