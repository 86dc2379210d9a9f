//! Training and evaluation of the discrete network: shapes and sizes of the published
//! genotypes, drop path, model files, subject-disjoint splits, and a tiny training run that
//! is interrupted and resumed.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use hands_data::{AspectFilter, Dataset, Folds, PartName, Split};
use hands_models::card::{
    ColourOrder, InputSpec, NetworkSpec, Provenance, ResizeRule, TensorLayout, CARD_SCHEMA_VERSION,
};
use hands_models::device::DeviceChoice;
use hands_models::genotype::PUBLISHED;
use hands_models::nn::network::{parameter_count, DropPath, Network, NetworkConfig};
use hands_models::{Genotype, ModelCard};
use hands_tests::datasets::{class_folders, class_folders_of_two_sources};
use hands_tests::max_abs_diff;
use hands_train::args::train::SelectBy;
use hands_train::args::train::TrainArgs;
use hands_train::checkpoint;
use hands_train::checkpoint::inference_tensors;
use hands_train::eval::{eval_model, load_model, EvalArgs, EvalSplit};
use hands_train::train::{train, write_model};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn config(auxiliary: bool) -> NetworkConfig {
    NetworkConfig {
        init_channels: 8,
        layers: 5,
        stem_stride: 1,
        num_classes: 2,
        auxiliary,
    }
}

fn images(n: usize, size: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..n * 3 * size * size)
        .map(|_| rand::Rng::random_range(&mut rng, -1.0..1.0))
        .collect();
    Tensor::from_vec(values, (n, 3, size, size), &Device::Cpu).unwrap()
}

#[test]
fn published_genotypes_have_expected_shapes_and_pinned_sizes() {
    // Parameters (auxiliary head excluded) at C = 8, 5 cells, 2 classes; computed once with
    // this code and pinned, so that a change of the network's structure shows.
    let expected: HashMap<&str, usize> = HashMap::from([
        ("DARTS_V1", 34_026),
        ("DARTS_V2", 35_986),
        ("PC_DARTS_cifar", 65_738),
        ("PDARTS", 52_458),
    ]);
    let mut counts = HashMap::new();
    for name in PUBLISHED {
        let genotype = Genotype::published(name).unwrap();
        let (net, varmap) =
            Network::seeded(&genotype, &config(true), 0, DType::F32, &Device::Cpu).unwrap();
        let x = images(2, 16, 1);
        let logits = net.logits(&x).unwrap();
        assert_eq!(logits.dims(), [2, 2], "{name}");
        let out = net.forward_t::<ChaCha8Rng>(&x, true, None).unwrap();
        assert_eq!(out.logits.dims(), [2, 2], "{name}");
        assert_eq!(out.aux_logits.expect("auxiliary head").dims(), [2, 2]);
        let count = parameter_count(&varmap, false);
        assert!(parameter_count(&varmap, true) > count);
        counts.insert(name, count);
    }
    assert_eq!(counts, expected);
}

#[test]
fn darts_v2_at_the_papers_setting_has_the_papers_size() {
    // DARTS' train.py logs `param size = 3.349342MB` for DARTS_V2 at C = 36, 20 cells, 10
    // classes (auxiliary head excluded).
    let genotype = Genotype::published("DARTS_V2").unwrap();
    let config = NetworkConfig {
        init_channels: 36,
        layers: 20,
        stem_stride: 1,
        num_classes: 10,
        auxiliary: true,
    };
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    Network::new(&genotype, &config, vb).unwrap();
    assert_eq!(parameter_count(&varmap, false), 3_349_342);
}

#[test]
fn drop_path_is_inactive_in_eval() {
    let genotype = Genotype::published("PDARTS").unwrap();
    let (net, _) = Network::seeded(&genotype, &config(true), 3, DType::F32, &Device::Cpu).unwrap();
    let x = images(4, 16, 2);
    let plain = net.logits(&x).unwrap();
    for seed in 0..3 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let out = net
            .forward_t(
                &x,
                false,
                Some(DropPath {
                    prob: 0.9,
                    rng: &mut rng,
                }),
            )
            .unwrap();
        assert_eq!(max_abs_diff(&out.logits, &plain), 0.0);
        assert!(out.aux_logits.is_none(), "no auxiliary output in eval");
    }
    // In training the same probability changes the output (the masks depend on the RNG).
    let train = |seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        net.forward_t(
            &x,
            true,
            Some(DropPath {
                prob: 0.9,
                rng: &mut rng,
            }),
        )
        .unwrap()
        .logits
    };
    assert!(max_abs_diff(&train(0), &train(1)) > 0.0);
}

fn card(genotype: &Genotype, parameters: usize) -> ModelCard {
    ModelCard {
        schema_version: CARD_SCHEMA_VERSION,
        labels: vec!["female".into(), "male".into()],
        input: InputSpec {
            size: 16,
            layout: TensorLayout::Nchw,
            colour: ColourOrder::Rgb,
            resize: ResizeRule::StretchBilinear,
            mean: [0.5; 3],
            std: [0.25; 3],
        },
        genotype: genotype.clone(),
        network: NetworkSpec {
            multiply_adds: None,
            latency: Vec::new(),
            init_channels: 8,
            layers: 5,
            stem_stride: 1,
            auxiliary: false,
            parameters,
        },
        metrics: None,
        cross_validation: None,
        calibration: None,
        provenance: Provenance {
            data: "test".into(),
            genotype_source: "DARTS_V2".into(),
            train: serde_json::json!({}),
            seed: 0,
            tool_version: "test".into(),
        },
    }
}

#[test]
fn save_then_load_gives_identical_logits() {
    let genotype = Genotype::published("DARTS_V2").unwrap();
    let (net, varmap) =
        Network::seeded(&genotype, &config(true), 5, DType::F32, &Device::Cpu).unwrap();
    // Training-mode passes move the BatchNorm running statistics away from their initial
    // values, so the file must carry them for the logits to match.
    for seed in 0..3 {
        net.forward_t::<ChaCha8Rng>(&images(4, 16, seed), true, None)
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let tensors = inference_tensors(&varmap, "").unwrap();
    assert!(tensors.iter().any(|(n, _)| n.ends_with("running_var")));
    assert!(tensors.iter().all(|(n, _)| !n.starts_with("auxiliary.")));
    write_model(
        &path,
        &tensors,
        &card(&genotype, parameter_count(&varmap, false)),
    )
    .unwrap();

    let loaded = load_model(&path, &Device::Cpu).unwrap();
    let x = images(3, 16, 9);
    assert_eq!(
        max_abs_diff(
            &net.logits(&x).unwrap(),
            &loaded.network.logits(&x).unwrap()
        ),
        0.0
    );
    assert_eq!(loaded.card.genotype, genotype);

    // A card that does not describe the tensors is refused, naming the file.
    let mut wrong = card(&genotype, parameter_count(&varmap, false));
    wrong.network.init_channels = 4;
    let other = dir.path().join("other.safetensors");
    write_model(&other, &tensors, &wrong).unwrap();
    let err = format!("{:#}", load_model(&other, &Device::Cpu).unwrap_err());
    assert!(err.contains("other.safetensors"), "{err}");
}

fn tiny_args(data: &Path, out: &Path) -> TrainArgs {
    let mut args = TrainArgs::new(data, "DARTS_V2");
    args.run.out = Some(out.to_path_buf());
    args.network.init_channels = 4;
    args.network.layers = 3;
    args.data.size = 16;
    args.optimiser.epochs = 3;
    args.optimiser.batch = 4;
    args.regularisation.cutout = 4;
    args.run.seed = 7;
    args
}

fn model_tensors(path: &Path) -> HashMap<String, Tensor> {
    checkpoint::read_safetensors(path, &Device::Cpu).unwrap().0
}

/// The log's records without their timings (seconds, images per second).
fn jsonl_without_seconds(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            let record = v.as_object_mut().unwrap();
            assert!(record
                .remove("images_per_s")
                .is_some_and(|r| r.as_f64().unwrap() > 0.0));
            record.remove("seconds");
            v
        })
        .collect()
}

#[test]
fn tiny_training_completes_and_resumes_to_identical_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 10);

    let straight = dir.path().join("straight");
    let outcome = train(&tiny_args(&data, &straight)).unwrap();
    let metrics = outcome.metrics.expect("finished");
    assert_eq!(outcome.epochs_done, 3);
    assert!(metrics.selected_epoch < 3);
    let test = metrics.test.as_ref().expect("test subjects");
    assert_eq!(test.split, "test");
    for file in [
        "config.json",
        "split.json",
        "train.jsonl",
        "model.safetensors",
        "metrics.json",
    ] {
        assert!(straight.join(file).is_file(), "{file}");
    }
    assert_eq!(
        jsonl_without_seconds(&straight.join("train.jsonl")).len(),
        3
    );

    // The same run, stopped after one epoch (as if killed) and resumed.
    let resumed = dir.path().join("resumed");
    let mut args = tiny_args(&data, &resumed);
    args.run.stop_after = Some(1);
    let stopped = train(&args).unwrap();
    assert_eq!((stopped.epochs_done, stopped.metrics.is_none()), (1, true));
    assert!(!resumed.join("model.safetensors").exists());
    // A fresh start over an existing run is refused.
    args.run.stop_after = None;
    let err = train(&args).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
    args.run.resume = true;
    let outcome = train(&args).unwrap();
    assert_eq!(outcome.epochs_done, 3);

    let a = model_tensors(&straight.join("model.safetensors"));
    let b = model_tensors(&resumed.join("model.safetensors"));
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        assert_eq!(max_abs_diff(t, &b[name]), 0.0, "{name}");
    }
    let a = model_tensors(&straight.join("checkpoint.safetensors"));
    let b = model_tensors(&resumed.join("checkpoint.safetensors"));
    for (name, t) in a.iter().filter(|(n, _)| n.starts_with("model.")) {
        assert_eq!(max_abs_diff(t, &b[name]), 0.0, "{name}");
    }
    assert_eq!(
        jsonl_without_seconds(&straight.join("train.jsonl")),
        jsonl_without_seconds(&resumed.join("train.jsonl"))
    );
    assert_eq!(
        std::fs::read_to_string(straight.join("metrics.json"))
            .unwrap()
            .lines()
            .filter(|l| !l.contains("seconds"))
            .collect::<Vec<_>>(),
        std::fs::read_to_string(resumed.join("metrics.json"))
            .unwrap()
            .lines()
            .filter(|l| !l.contains("seconds"))
            .collect::<Vec<_>>()
    );

    // The split is subject-disjoint and the test figures come from the test subjects.
    let split = Split::load(&straight.join("split.json")).unwrap();
    assert_disjoint(&split);
    assert_eq!(test.images, split.test.images);

    // `eval` reads the model and its split back and reproduces the test figures.
    let eval = eval_model(&EvalArgs {
        model: straight.join("model.safetensors"),
        data: data.clone(),
        split: EvalSplit::Test,
        split_file: None,
        aspect: None,
        json: None,
        predictions: None,
        batch: 3,
        device: DeviceChoice::Cpu,
    })
    .unwrap();
    assert_eq!(eval.confusion, test.confusion);
    assert_eq!(eval.accuracy, test.accuracy);
    let card = load_model(&straight.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .card;
    let card_metrics = card.metrics.expect("card metrics");
    assert_eq!(card_metrics.split, "test");
    assert_eq!(card_metrics.accuracy, test.accuracy);
    assert_eq!(card.input.size, 16);
    assert_eq!(card.network.parameters, metrics.parameters);
}

#[test]
fn diverging_training_stops_naming_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 10);
    let out = dir.path().join("run");
    let mut args = tiny_args(&data, &out);
    args.optimiser.lr = 1e38;
    args.optimiser.epochs = 2;
    let err = format!("{:#}", train(&args).unwrap_err());
    assert!(err.contains("non-finite") && err.contains("epoch"), "{err}");
    assert!(!out.join("model.safetensors").exists());
    // Whatever checkpoint exists holds finite weights only.
    if out.join("checkpoint.safetensors").exists() {
        for (name, t) in model_tensors(&out.join("checkpoint.safetensors")) {
            let v = t.to_dtype(DType::F64).unwrap().sum_all().unwrap();
            assert!(v.to_scalar::<f64>().unwrap().is_finite(), "{name}");
        }
    }
}

fn assert_disjoint(split: &Split) {
    let mut seen = BTreeSet::new();
    for name in [PartName::Train, PartName::Val, PartName::Test] {
        for subject in &split.part(name).subjects {
            assert!(seen.insert(subject.clone()), "{subject} in two parts");
        }
    }
    assert!(!split.train.subjects.is_empty() && !split.test.subjects.is_empty());
}

#[test]
fn one_epoch_on_the_sample_keeps_test_subjects_unseen() {
    let Some(data) = hands_tests::sample_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = tiny_args(&data, &out);
    args.optimiser.epochs = 1;
    args.optimiser.batch = 32;
    let metrics = train(&args).unwrap().metrics.unwrap();

    let dataset = Dataset::load(&data, &AspectFilter::All).unwrap();
    let split = Split::load(&out.join("split.json")).unwrap();
    split.check(&dataset, &out.join("split.json")).unwrap();
    assert_disjoint(&split);
    let subjects =
        split.train.subjects.len() + split.val.subjects.len() + split.test.subjects.len();
    assert_eq!(subjects, 123);
    let test = metrics.test.expect("test subjects");
    assert_eq!(test.subjects, split.test.subjects.len());
    assert_eq!(test.images, split.test.indices(&dataset).len());
    // The hand aspects of the 11K layout are reported.
    assert!(!test.per_aspect.is_empty());
    assert!(test
        .per_aspect
        .keys()
        .all(|a| hands_data::ASPECTS.contains(&a.as_str())));
}

#[test]
fn select_keeps_the_last_epoch_or_the_lowest_validation_loss() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 10);
    let run = |select: SelectBy, name: &str| {
        let mut args = tiny_args(&data, &dir.path().join(name));
        args.select = select;
        let metrics = train(&args).unwrap().metrics.expect("finished");
        let log = jsonl_without_seconds(&dir.path().join(name).join("train.jsonl"));
        (metrics.selected_epoch, log)
    };
    let (last, _) = run(SelectBy::Last, "last");
    assert_eq!(last, 2, "the last of 3 epochs");
    let (by_loss, log) = run(SelectBy::Loss, "loss");
    let losses: Vec<f64> = log
        .iter()
        .map(|r| r["val_loss"].as_f64().expect("a validation loss"))
        .collect();
    let lowest = (0..losses.len())
        .min_by(|&a, &b| losses[a].total_cmp(&losses[b]))
        .unwrap();
    assert_eq!(by_loss, lowest, "validation losses {losses:?}");
    let card = load_model(&dir.path().join("loss/model.safetensors"), &Device::Cpu)
        .unwrap()
        .card;
    assert_eq!(card.provenance.train["select"], "loss");
}

/// The twin of cv's `--val-share 0` refusal: a split file whose validation part is empty
/// leaves nothing to select an epoch by, so only `--select last` may train on it.
#[test]
fn a_split_without_validation_subjects_needs_the_last_epoch_rule() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 8);
    let dataset = Dataset::load(&data, &AspectFilter::All).unwrap();
    let split = Folds::new(&dataset, 2, 0)
        .unwrap()
        .split(&dataset, 0, 0.0, 0)
        .unwrap();
    assert!(split.val.subjects.is_empty());
    let split_file = dir.path().join("no-val.json");
    split.save(&split_file).unwrap();

    let out = dir.path().join("run");
    let mut args = tiny_args(&data, &out);
    args.split_file = Some(split_file.clone());
    for select in [SelectBy::Accuracy, SelectBy::Loss] {
        args.select = select;
        let err = format!("{:#}", train(&args).unwrap_err());
        assert!(
            err.contains("no validation subjects") && err.contains("--select last"),
            "{err}"
        );
        assert!(!out.exists(), "nothing written for a refused run");
    }
    args.select = SelectBy::Last;
    let metrics = train(&args).unwrap().metrics.expect("finished");
    assert_eq!(metrics.selected_epoch, 2, "the last of 3 epochs");
}

#[test]
fn precise_bn_changes_the_running_statistics_and_nothing_the_training_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 10);
    let run = |precise_bn: bool, name: &str| {
        let mut args = tiny_args(&data, &dir.path().join(name));
        args.select = SelectBy::Last;
        args.precise_bn = precise_bn;
        train(&args).unwrap();
        let log = jsonl_without_seconds(&dir.path().join(name).join("train.jsonl"));
        let model = model_tensors(&dir.path().join(name).join("model.safetensors"));
        (log, model)
    };
    let (moving_log, moving) = run(false, "moving");
    let (precise_log, precise) = run(true, "precise");
    // The same batches, augmentations and weights: the training losses agree exactly.
    let train_losses = |log: &[serde_json::Value]| -> Vec<f64> {
        log.iter()
            .map(|r| r["train_loss"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(train_losses(&moving_log), train_losses(&precise_log));
    assert_eq!(moving.len(), precise.len());
    let mut statistics_moved = 0;
    for (name, tensor) in &moving {
        let d = max_abs_diff(tensor, &precise[name]);
        if name.ends_with("running_mean") || name.ends_with("running_var") {
            statistics_moved += usize::from(d > 1e-6);
        } else {
            assert_eq!(d, 0.0, "{name}: a learned weight changed");
        }
    }
    assert!(statistics_moved > 0, "no running statistic was recomputed");
    let card = load_model(&dir.path().join("precise/model.safetensors"), &Device::Cpu)
        .unwrap()
        .card;
    assert_eq!(card.provenance.train["precise_bn"], true);
}

#[test]
fn a_strided_stem_trains_and_its_card_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 10);
    let mut args = tiny_args(&data, &dir.path().join("run"));
    args.data.size = 32;
    args.network.stem_stride = 2;
    args.optimiser.epochs = 1;
    train(&args).unwrap();
    let model = load_model(&dir.path().join("run/model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(model.card.network.stem_stride, 2);
    assert_eq!(model.card.input.size, 32);
    // The cells see 16x16 maps: the same cost as the stride-1 network on 16x16 images.
    let genotype = Genotype::published("DARTS_V2").unwrap();
    let at_16 = hands_models::cost::network_cost(&genotype, 4, 3, 1, 16, 2);
    assert_eq!(
        model.card.network.multiply_adds,
        Some(at_16.total.multiply_adds)
    );
    let logits = model.network.logits(&images(2, 32, 1)).unwrap();
    assert_eq!(logits.dims(), [2, 2]);
}

/// Trains `tiny_args` on `data` into `dir/name` with `set` applied, straight through or, with
/// `stop_after`, stopped after that many epochs and resumed; returns the model's tensors.
fn trained_tensors(
    data: &Path,
    dir: &Path,
    name: &str,
    stop_after: Option<usize>,
    set: impl Fn(&mut TrainArgs),
) -> HashMap<String, Tensor> {
    let mut args = tiny_args(data, &dir.join(name));
    set(&mut args);
    args.run.stop_after = stop_after;
    if stop_after.is_some() {
        train(&args).unwrap();
        args.run.stop_after = None;
        args.run.resume = true;
    }
    train(&args).unwrap();
    model_tensors(&dir.join(name).join("model.safetensors"))
}

/// Whether two models' tensors differ anywhere.
fn differs(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> bool {
    a.iter().any(|(name, t)| max_abs_diff(t, &b[name]) > 0.0)
}

#[test]
fn mixup_changes_the_training_reproducibly_and_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 10);
    let run = |mixup: f64, stop_after: Option<usize>, name: &str| {
        trained_tensors(&data, dir.path(), name, stop_after, |args| {
            args.regularisation.mixup = mixup
        })
    };
    let plain = run(0.0, None, "plain");
    let mixed = run(0.4, None, "mixed");
    let again = run(0.4, None, "again");
    let resumed = run(0.4, Some(1), "resumed");
    assert!(differs(&plain, &mixed), "mixup changed nothing");
    assert!(!differs(&mixed, &again), "mixup is not reproducible");
    assert!(!differs(&mixed, &resumed), "a resumed mixup run differs");
    let card = load_model(&dir.path().join("mixed/model.safetensors"), &Device::Cpu)
        .unwrap()
        .card;
    assert_eq!(card.provenance.train["mixup"], 0.4);
}

#[test]
fn originals_weight_changes_the_training_reproducibly_resumes_and_needs_both_sources() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders_of_two_sources(&data, 10);
    let run = |weight: Option<f64>, stop_after: Option<usize>, name: &str| {
        trained_tensors(&data, dir.path(), name, stop_after, |args| {
            args.regularisation.originals_weight = weight
        })
    };
    let plain = run(None, None, "plain");
    let weighted = run(Some(3.0), None, "weighted");
    let again = run(Some(3.0), None, "again");
    let resumed = run(Some(3.0), Some(1), "resumed");
    let unit = run(Some(1.0), None, "unit");
    assert!(differs(&plain, &weighted), "the weight changed nothing");
    assert!(
        !differs(&weighted, &again),
        "the weight is not reproducible"
    );
    assert!(!differs(&weighted, &resumed), "a resumed run differs");
    assert!(
        !differs(&plain, &unit),
        "a weight of 1 changed the training"
    );
    let card = load_model(&dir.path().join("weighted/model.safetensors"), &Device::Cpu)
        .unwrap()
        .card;
    assert_eq!(card.provenance.train["originals_weight"], 3.0);
    assert_eq!(card.labels, ["female", "male"]);

    // Square images only: nothing to weigh, said before training.
    let squares = dir.path().join("squares");
    class_folders(&squares, 10);
    let mut args = tiny_args(&squares, &dir.path().join("refused"));
    args.regularisation.originals_weight = Some(2.0);
    let err = format!("{:#}", train(&args).unwrap_err());
    assert!(
        err.contains("--originals-weight") && err.contains("0 originals"),
        "{err}"
    );
}

#[test]
fn originals_share_changes_the_training_reproducibly_resumes_and_needs_both_sources() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders_of_two_sources(&data, 10);
    let run = |share: Option<f64>, stop_after: Option<usize>, name: &str| {
        trained_tensors(&data, dir.path(), name, stop_after, |args| {
            args.regularisation.originals_share = share
        })
    };
    let plain = run(None, None, "plain");
    let shared = run(Some(0.75), None, "shared");
    let again = run(Some(0.75), None, "again");
    let resumed = run(Some(0.75), Some(1), "resumed");
    assert!(differs(&plain, &shared), "the share changed nothing");
    assert!(!differs(&shared, &again), "the share is not reproducible");
    assert!(!differs(&shared, &resumed), "a resumed run differs");
    let card = load_model(&dir.path().join("shared/model.safetensors"), &Device::Cpu)
        .unwrap()
        .card;
    assert_eq!(card.provenance.train["originals_share"], 0.75);

    // Square images only: nothing to raise the share of, said before training.
    let squares = dir.path().join("squares");
    class_folders(&squares, 10);
    let mut args = tiny_args(&squares, &dir.path().join("refused"));
    args.regularisation.originals_share = Some(0.5);
    let err = format!("{:#}", train(&args).unwrap_err());
    assert!(
        err.contains("--originals-share") && err.contains("0 originals"),
        "{err}"
    );
}
