//! Cross-validation by subject: the folds, the recipe's class weighting and augmentation,
//! flip averaging, a tiny `cv` run that is stopped and resumed, and what `ensemble` and
//! `compare` read from such runs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::tiny_cv;
use hands_data::{
    AspectFilter, Augment, ChannelStats, Dataset, Folds, ImageCache, ImageSource, Loader, PartName,
    Sample, Source, Split,
};
use hands_models::card::MeanStd;
use hands_models::graph::argmax;
use hands_tests::datasets::{class_folders, class_folders_of_two_sources};
use hands_train::args::cv::CvArgs;
use hands_train::args::train::{ClassWeight, SelectBy};
use hands_train::calibrate::{run_calibrate, CalibrateArgs};
use hands_train::compare::compare;
use hands_train::cv::cross_validate;
use hands_train::cv_report::{CvReport, FoldResult};
use hands_train::ensemble::ensemble;
use hands_train::eval::mirror;
use hands_train::eval::{eval_model, load_model, EvalArgs, EvalSplit};
use hands_train::step::{cross_entropy, weighted_cross_entropy};
use hands_train::train::train;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A dataset of `females` and `males` subjects with three images each (no files behind it).
fn subjects_dataset(females: usize, males: usize) -> Dataset {
    let mut samples = Vec::new();
    for (label, count) in [(0, females), (1, males)] {
        for s in 0..count {
            for image in 0..3 {
                samples.push(Sample {
                    path: PathBuf::from(format!("/nowhere/{label}-{s}-{image}.jpg")),
                    subject: format!("{label}{s:03}"),
                    label,
                    aspect: Some(
                        if image % 2 == 0 {
                            "dorsal left"
                        } else {
                            "palmar right"
                        }
                        .into(),
                    ),
                    image_source: None,
                });
            }
        }
    }
    Dataset::from_samples(
        Source::Folder {
            root: PathBuf::from("/nowhere"),
        },
        vec!["female".into(), "male".into()],
        samples,
    )
    .unwrap()
}

#[test]
fn folds_are_subject_disjoint_stratified_and_deterministic() {
    let dataset = subjects_dataset(41, 22);
    let folds = Folds::new(&dataset, 5, 3).unwrap();
    assert_eq!(folds.len(), 5);
    let subjects = dataset.subjects();
    let mut seen = BTreeSet::new();
    for fold in &folds.folds {
        for subject in fold {
            assert!(seen.insert(subject.clone()), "{subject} in two folds");
        }
        // Stratified: 41 / 5 and 22 / 5 subjects per label, rounded either way.
        let females = fold.iter().filter(|s| subjects[*s] == 0).count();
        let males = fold.len() - females;
        assert!((8..=9).contains(&females), "{females} female subjects");
        assert!((4..=5).contains(&males), "{males} male subjects");
    }
    assert_eq!(seen.len(), subjects.len());
    let sizes: Vec<usize> = folds.folds.iter().map(Vec::len).collect();
    assert!(
        sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
        "{sizes:?}"
    );
    assert_eq!(folds, Folds::new(&dataset, 5, 3).unwrap());
    assert_ne!(folds, Folds::new(&dataset, 5, 4).unwrap());
}

#[test]
fn each_fold_tests_on_its_subjects_and_selects_on_others() {
    let dataset = subjects_dataset(41, 22);
    let folds = Folds::new(&dataset, 5, 0).unwrap();
    let mut tested = BTreeSet::new();
    for fold in 0..folds.len() {
        let split = folds.split(&dataset, fold, 0.15, 0).unwrap();
        assert_eq!(split.test.subjects, folds.folds[fold]);
        let mut seen = BTreeSet::new();
        for part in [PartName::Train, PartName::Val, PartName::Test] {
            for subject in &split.part(part).subjects {
                assert!(seen.insert(subject.clone()), "{subject} in two parts");
            }
        }
        assert_eq!(seen.len(), 63);
        // Both labels in the validation part (15% of 33 and of 18 subjects).
        assert!(
            split.val.label_images.iter().all(|&n| n > 0),
            "{:?}",
            split.val
        );
        split.check(&dataset, Path::new("fold.json")).unwrap();
        tested.extend(split.test.subjects.iter().cloned());
    }
    assert_eq!(tested.len(), 63, "every subject is tested exactly once");
}

#[test]
fn folds_need_enough_subjects_of_each_label() {
    let dataset = subjects_dataset(10, 3);
    let err = Folds::new(&dataset, 5, 0).unwrap_err().to_string();
    assert!(err.contains("male has 3"), "{err}");
}

#[test]
fn balanced_class_weights_equalise_the_classes() {
    let weights = ClassWeight::Balanced.weights(&[30, 10]).unwrap();
    assert!((weights[0] - 40.0 / 60.0).abs() < 1e-6 && (weights[1] - 2.0).abs() < 1e-6);
    // Each class's total weight is the same.
    assert!((30.0 * weights[0] - 10.0 * weights[1]).abs() < 1e-4);
    assert_eq!(ClassWeight::None.weights(&[30, 10]), None);
    assert_eq!(ClassWeight::Balanced.weights(&[5, 0]).unwrap()[1], 0.0);
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn weighted_cross_entropy_is_torchs_weighted_mean() {
    let device = Device::Cpu;
    let rows = [[2.0f64, -1.0], [0.5, 0.3], [-1.0, 1.5], [0.0, 0.2]];
    let labels = [0u32, 1, 1, 0];
    let weights = [0.5f64, 2.0];
    let logits = Tensor::new(&rows, &device).unwrap();
    let label_t = Tensor::new(&labels, &device).unwrap();
    let weight_t = Tensor::new(&weights, &device).unwrap();
    for eps in [0.0, 0.1] {
        // (sum_i (1 - eps) w_y nll_i + eps mean_k(w_k * -log p_ik)) / sum_i w_y, as PyTorch.
        let (mut sum, mut norm) = (0.0, 0.0);
        for (row, &y) in rows.iter().zip(&labels) {
            let lse = (row[0].exp() + row[1].exp()).ln();
            let nll = |k: usize| lse - row[k];
            let w = weights[y as usize];
            sum += (1.0 - eps) * w * nll(y as usize)
                + eps * (weights[0] * nll(0) + weights[1] * nll(1)) / 2.0;
            norm += w;
        }
        let got = scalar(&cross_entropy(&logits, &label_t, eps, Some(&weight_t)).unwrap());
        assert!(
            (got - sum / norm).abs() < 1e-9,
            "eps {eps}: {got} vs {}",
            sum / norm
        );
        // Equal weights are the plain mean.
        let ones = Tensor::new(&[1.0f64, 1.0], &device).unwrap();
        let plain = scalar(&cross_entropy(&logits, &label_t, eps, None).unwrap());
        let equal = scalar(&cross_entropy(&logits, &label_t, eps, Some(&ones)).unwrap());
        assert!((plain - equal).abs() < 1e-9);
    }
}

#[test]
fn an_image_weight_of_two_counts_the_image_twice() {
    let device = Device::Cpu;
    let rows = [[2.0f64, -1.0], [0.5, 0.3], [-1.0, 1.5]];
    let labels = [0u32, 1, 1];
    // Image 1 weighs 2: the same loss as a batch holding it twice.
    let twice_rows = [rows[0], rows[1], rows[1], rows[2]];
    let twice_labels = [0u32, 1, 1, 1];
    let class_weights = Tensor::new(&[0.5f64, 2.0], &device).unwrap();
    let image_weights = Tensor::new(&[1.0f64, 2.0, 1.0], &device).unwrap();
    for eps in [0.0, 0.1] {
        for class in [None, Some(&class_weights)] {
            let weighted = scalar(
                &weighted_cross_entropy(
                    &Tensor::new(&rows, &device).unwrap(),
                    &Tensor::new(&labels, &device).unwrap(),
                    eps,
                    class,
                    Some(&image_weights),
                )
                .unwrap(),
            );
            let repeated = scalar(
                &cross_entropy(
                    &Tensor::new(&twice_rows, &device).unwrap(),
                    &Tensor::new(&twice_labels, &device).unwrap(),
                    eps,
                    class,
                )
                .unwrap(),
            );
            assert!(
                (weighted - repeated).abs() < 1e-12,
                "eps {eps}, class weights {}: {weighted} vs {repeated}",
                class.is_some()
            );
        }
    }
}

#[test]
fn photo_augmentation_keeps_labels_and_repeats_per_seed() {
    let size = 12u32;
    let n = 10;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let pixels: Vec<u8> = (0..n * 3 * (size * size) as usize)
        .map(|_| rand::Rng::random_range(&mut rng, 0..=255))
        .collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    let cache = ImageCache::from_raw(size, pixels, labels.clone()).unwrap();
    let stats = ChannelStats {
        mean: [0.5; 3],
        std: [0.25; 3],
    };
    let device = Device::Cpu;
    let loader = Loader::new(&cache, stats, 4, &device)
        .augment(Augment::photo().with_cutout(4))
        .shuffle(true);
    let epoch = |seed: u64| -> Vec<(Vec<usize>, Vec<u32>, Vec<f32>)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        loader
            .epoch(&(0..n).collect::<Vec<_>>(), &mut rng)
            .map(|b| {
                let b = b.unwrap();
                let images = b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (b.indices, b.labels.to_vec1::<u32>().unwrap(), images)
            })
            .collect()
    };
    let first = epoch(1);
    for (indices, batch_labels, images) in &first {
        let expected: Vec<u32> = indices.iter().map(|&i| labels[i]).collect();
        assert_eq!(batch_labels, &expected, "labels follow their images");
        assert!(images.iter().all(|v| v.is_finite()));
    }
    assert_eq!(first, epoch(1));
    assert_ne!(first, epoch(2));
}

#[test]
fn mirror_reverses_columns() {
    let x = Tensor::arange(0f32, 24.0, &Device::Cpu)
        .unwrap()
        .reshape((1, 2, 3, 4))
        .unwrap();
    let m = mirror(&x)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    assert_eq!(m[0][0], [3.0, 2.0, 1.0, 0.0]);
    assert_eq!(m[1][2], [23.0, 22.0, 21.0, 20.0]);
    assert_eq!(argmax(&[0.2, 0.7, 0.7]), 1);
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn tiny_cross_validation_stops_resumes_and_keeps_its_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 8);
    let out = dir.path().join("cv");

    let mut args = tiny_cv(&data, &out);
    args.stop_after_runs = Some(1);
    let stopped = cross_validate(&args).unwrap();
    assert!(stopped.report.is_none());
    let first: FoldResult = read_json(&out.join("DARTS_V2/fold-0/fold.json"));
    assert!(!out.join("DARTS_V2/fold-1/fold.json").exists());
    // A second start without --resume is refused; --resume continues.
    let err = format!("{:#}", cross_validate(&tiny_cv(&data, &out)).unwrap_err());
    assert!(err.contains("--resume"), "{err}");
    let mut resume = tiny_cv(&data, &out);
    resume.train.run.resume = true;
    let report = cross_validate(&resume).unwrap().report.expect("finished");
    assert_eq!(report, read_json::<CvReport>(&out.join("cv.json")));
    assert!(std::fs::read_to_string(out.join("cv.md"))
        .unwrap()
        .contains("| majority class |"));

    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["majority class", "DARTS_V2", "random:1"]);
    assert_eq!(
        report.rows[1].folds[0], first,
        "the finished fold was not trained again"
    );
    let majority = &report.rows[0];
    for fold in &majority.folds {
        assert_eq!(
            fold.plain.mean_class_accuracy, 0.5,
            "one class always right"
        );
    }
    // Every image is tested once over the folds, and the kept predictions give the figures.
    let folds: Folds = read_json(&out.join("folds.json"));
    let dataset = Dataset::load(&data, &hands_data::AspectFilter::All).unwrap();
    for row in &report.rows[1..] {
        assert_eq!(
            row.folds.iter().map(|f| f.test_images).sum::<usize>(),
            dataset.len()
        );
        for fold in &row.folds {
            let slug = if row.name == "random:1" {
                "random-1"
            } else {
                "DARTS_V2"
            };
            let csv = out.join(format!("{slug}/fold-{}/test_predictions.csv", fold.fold));
            let mut reader = csv::Reader::from_path(&csv).unwrap();
            let mut per_label: BTreeMap<String, (usize, usize)> = BTreeMap::new();
            for record in reader.records() {
                let record = record.unwrap();
                let p = [
                    record[4].parse::<f32>().unwrap(),
                    record[5].parse::<f32>().unwrap(),
                ];
                assert!((p[0] + p[1] - 1.0).abs() < 1e-4);
                let predicted = ["female", "male"][argmax(&p)];
                let entry = per_label.entry(record[2].to_string()).or_default();
                entry.0 += 1;
                entry.1 += usize::from(predicted == &record[2]);
            }
            assert_eq!(
                per_label.values().map(|v| v.0).sum::<usize>(),
                fold.test_images
            );
            let mean = per_label
                .values()
                .map(|(n, c)| *c as f64 / *n as f64)
                .sum::<f64>()
                / per_label.len() as f64;
            assert!((mean - fold.plain.mean_class_accuracy).abs() < 1e-9);
            assert_eq!(fold.test_subjects, folds.folds[fold.fold].len());
        }
    }

    // A final training on every subject with the same recipe carries the figures in its
    // card; one with other settings is refused.
    let mut last = tiny_cv(&data, &out).train;
    last.run.out = Some(dir.path().join("final"));
    last.test_share = 0.0;
    last.cross_validation = Some(out.clone());
    let mut other = last.clone();
    other.optimiser.epochs = 3;
    other.run.out = Some(dir.path().join("other"));
    let err = format!("{:#}", train(&other).unwrap_err());
    assert!(err.contains("--epochs: stored 2, given 3"), "{err}");
    let metrics = train(&last).unwrap().metrics.expect("finished");
    assert!(metrics.test.is_none(), "no test subjects");
    let card = load_model(&dir.path().join("final/model.safetensors"), &Device::Cpu)
        .unwrap()
        .card;
    assert!(card.metrics.is_none());
    let section = card.cross_validation.expect("cross-validated figures");
    assert_eq!(Some(section.clone()), report.card_section("DARTS_V2"));
    assert_eq!(
        section.mean_class_accuracy,
        report.rows[1].plain.mean_class_accuracy
    );
    assert_eq!(section.majority_accuracy, report.rows[0].plain.accuracy);
    let split: Split = read_json(&dir.path().join("final/split.json"));
    assert!(split.test.subjects.is_empty() && !split.val.subjects.is_empty());
}

#[test]
fn resume_adds_baselines_on_the_same_folds_and_refuses_other_changes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 8);
    let out = dir.path().join("cv");
    let resumed = |baselines: &[&str]| {
        let mut args = tiny_cv(&data, &out);
        args.baselines = baselines.iter().map(|b| b.to_string()).collect();
        args.train.run.resume = true;
        args
    };
    let mut args = tiny_cv(&data, &out);
    args.baselines.clear();
    let before = cross_validate(&args).unwrap().report.expect("finished");
    let folds = std::fs::read(out.join("folds.json")).unwrap();

    // The stored baselines (none) and one more: only the new one is measured.
    let after = cross_validate(&resumed(&["random:2"]))
        .unwrap()
        .report
        .expect("finished");
    let names: Vec<&str> = after.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["majority class", "DARTS_V2", "random:2"]);
    assert_eq!(
        after.rows[..2],
        before.rows[..2],
        "the earlier rows are kept"
    );
    assert_eq!(std::fs::read(out.join("folds.json")).unwrap(), folds);
    let config: CvArgs = read_json(&out.join("config.json"));
    assert_eq!(config.baselines, ["random:2"]);
    assert_eq!(after, read_json::<CvReport>(&out.join("cv.json")));

    // A baseline in place of a stored one, or another setting beside an added one, is
    // refused by name and nothing is trained.
    let err = format!("{:#}", cross_validate(&resumed(&["random:3"])).unwrap_err());
    assert!(err.contains("--baselines: stored"), "{err}");
    let mut longer = resumed(&["random:2", "random:3"]);
    longer.train.optimiser.epochs = 3;
    let err = format!("{:#}", cross_validate(&longer).unwrap_err());
    assert!(err.contains("--epochs: stored 2, given 3"), "{err}");
    assert!(!out.join("random-3").exists());
    let config: CvArgs = read_json(&out.join("config.json"));
    assert_eq!(config.baselines, ["random:2"]);
}

#[test]
fn no_validation_share_needs_the_last_epoch_rule() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 8);
    let out = dir.path().join("cv");
    let mut args = tiny_cv(&data, &out);
    args.baselines.clear();
    args.val_share = 0.0;
    let err = format!("{:#}", cross_validate(&args).unwrap_err());
    assert!(err.contains("--select last"), "{err}");
    assert!(!out.exists(), "nothing written for a refused run");

    args.train.select = SelectBy::Last;
    let report = cross_validate(&args).unwrap().report.expect("finished");
    assert_eq!(report.rows[1].folds.len(), 2);
    for fold in 0..2 {
        let split: Split = read_json(&out.join(format!("splits/fold-{fold}.json")));
        assert!(
            split.val.subjects.is_empty(),
            "fold {fold}: {:?}",
            split.val
        );
    }
}

#[test]
fn a_training_seed_retrains_on_the_same_folds_and_splits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 8);
    let run = |name: &str, train_seed: Option<u64>| {
        let out = dir.path().join(name);
        let mut args = tiny_cv(&data, &out);
        args.baselines.clear();
        args.train_seed = train_seed;
        let report = cross_validate(&args).unwrap().report.expect("finished");
        (out, report)
    };
    let (first, first_report) = run("first", None);
    let (again, again_report) = run("again", Some(8));
    assert_eq!((again_report.seed, again_report.train_seed), (7, Some(8)));
    assert!(again_report.protocol.contains("training seed 8"));
    assert_eq!(first_report.train_seed, None);
    let read = |out: &Path, file: &str| std::fs::read(out.join(file)).unwrap();
    for file in ["folds.json", "splits/fold-0.json", "splits/fold-1.json"] {
        assert_eq!(read(&first, file), read(&again, file), "{file}");
    }
    for fold in 0..2 {
        let config = |out: &Path| -> serde_json::Value {
            read_json(&out.join(format!("DARTS_V2/fold-{fold}/config.json")))
        };
        assert_eq!(config(&first)["seed"], 7);
        assert_eq!(config(&again)["seed"], 8);
        // The first epoch's training loss: another seed, other batches and weights.
        let first_loss = |out: &Path| -> f64 {
            let log =
                std::fs::read_to_string(out.join(format!("DARTS_V2/fold-{fold}/train.jsonl")))
                    .unwrap();
            let epoch: serde_json::Value =
                serde_json::from_str(log.lines().next().unwrap()).unwrap();
            epoch["train_loss"].as_f64().unwrap()
        };
        assert_ne!(
            first_loss(&first),
            first_loss(&again),
            "fold {fold} trained anew"
        );
    }
    let config: CvArgs = read_json(&again.join("config.json"));
    assert_eq!(config.training_seed(), 8);
}

/// Rewrites a fold's kept predictions: every image right with probability 0.9, except the
/// images in `wrong` (by path), whose female probability is given.
fn set_predictions(csv: &Path, wrong: &[(&str, f32)]) {
    let mut reader = csv::Reader::from_path(csv).unwrap();
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(reader.headers().unwrap()).unwrap();
    for record in reader.records() {
        let record = record.unwrap();
        let female = wrong
            .iter()
            .find(|(path, _)| *path == &record[0])
            .map_or(if &record[2] == "female" { 0.9 } else { 0.1 }, |w| w.1);
        let p = [female.to_string(), (1.0 - female).to_string()];
        let cells: Vec<&str> = record.iter().take(4).collect();
        writer
            .write_record(
                cells
                    .iter()
                    .copied()
                    .chain([&*p[0], &*p[1], &*p[0], &*p[1]]),
            )
            .unwrap();
    }
    std::fs::write(csv, writer.into_inner().unwrap()).unwrap();
}

/// The first test image of `label` in a fold's kept predictions.
fn first_of(csv: &Path, label: &str) -> String {
    let mut reader = csv::Reader::from_path(csv).unwrap();
    let record = reader
        .records()
        .map(Result::unwrap)
        .find(|r| &r[2] == label)
        .unwrap();
    record[0].to_string()
}

/// A finished tiny cross-validation (DARTS_V2 and random:1 on two folds) in a temporary
/// folder.
struct TinyCv {
    dir: tempfile::TempDir,
    data: PathBuf,
    out: PathBuf,
    report: CvReport,
}

impl TinyCv {
    fn finished() -> TinyCv {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        class_folders(&data, 8);
        let out = dir.path().join("cv");
        let report = cross_validate(&tiny_cv(&data, &out))
            .unwrap()
            .report
            .expect("finished");
        TinyCv {
            dir,
            data,
            out,
            report,
        }
    }

    /// The genotype folders of DARTS_V2 and random:1.
    fn genotypes(&self) -> (PathBuf, PathBuf) {
        (self.out.join("DARTS_V2"), self.out.join("random-1"))
    }

    /// The DARTS_V2 folder of a run on the same data whose seed draws other folds (stopped
    /// before any training).
    fn other_folds(&self) -> PathBuf {
        let other = self.dir.path().join("other");
        let mut args = tiny_cv(&self.data, &other);
        args.train.run.seed = 8;
        args.stop_after_runs = Some(0);
        cross_validate(&args).unwrap();
        other.join("DARTS_V2")
    }
}

#[test]
fn ensemble_of_one_reproduces_its_row_and_averaging_rights_what_each_gets_wrong() {
    let tiny = TinyCv::finished();
    let report = tiny.report.clone();
    let (a, b) = tiny.genotypes();

    // One member: its run's row, recomputed from the kept predictions.
    let alone = ensemble(std::slice::from_ref(&a)).unwrap();
    assert_eq!(alone.rows[0], report.rows[0], "the majority class");
    assert_eq!(alone.rows[1].folds, report.rows[1].folds);
    let recomputed = &alone.rows[2];
    assert_eq!(recomputed.name, "ensemble of 1");
    for (fold, theirs) in recomputed.folds.iter().zip(&report.rows[1].folds) {
        assert_eq!(fold.plain, theirs.plain, "fold {}", fold.fold);
        assert_eq!(fold.flip, theirs.flip, "fold {}", fold.fold);
    }

    // Each member gets one image wrong per fold, not the same one: the mean gets both right.
    for fold in 0..2 {
        let csv = |m: &Path| m.join(format!("fold-{fold}/test_predictions.csv"));
        let (woman, man) = (first_of(&csv(&a), "female"), first_of(&csv(&a), "male"));
        set_predictions(&csv(&a), &[(&woman, 0.4)]);
        set_predictions(&csv(&b), &[(&man, 0.7)]);
    }
    let both = ensemble(&[a.clone(), b.clone()]).unwrap();
    let mean = both.rows.last().unwrap();
    assert_eq!(mean.name, "ensemble of 2");
    assert_eq!(
        both.rows.len(),
        4,
        "majority, the two members, the ensemble"
    );
    for fold in &mean.folds {
        assert_eq!(fold.plain.mean_class_accuracy, 1.0, "fold {}", fold.fold);
        assert_eq!(fold.flip.mean_class_accuracy, 1.0, "fold {}", fold.fold);
        assert_eq!(
            fold.parameters,
            report.rows[1].parameters + report.rows[2].parameters
        );
    }
    assert_eq!(mean.plain.mean_class_accuracy.mean, 1.0);
    for (member, label) in [(&a, "female"), (&b, "male")] {
        let alone = ensemble(std::slice::from_ref(member)).unwrap();
        for (fold, (split, _)) in alone.rows[2].folds.iter().zip(fold_splits(&tiny.out)) {
            let images = split.test.label_images[usize::from(label == "male")] as f64;
            let expected = ((images - 1.0) / images + 1.0) / 2.0;
            assert!(
                (fold.plain.mean_class_accuracy - expected).abs() < 1e-12,
                "{}: fold {}",
                member.display(),
                fold.fold
            );
        }
    }
}

fn fold_splits(out: &Path) -> Vec<(Split, PathBuf)> {
    (0..2)
        .map(|fold| {
            let path = out.join(format!("splits/fold-{fold}.json"));
            (read_json(&path), path)
        })
        .collect()
}

#[test]
fn ensemble_refuses_members_on_other_folds_or_with_other_test_images() {
    let tiny = TinyCv::finished();
    let (a, b) = tiny.genotypes();

    // Another seed draws other folds: refused before any prediction is read.
    let other = tiny.other_folds();
    let err = format!("{:#}", ensemble(&[a.clone(), other.clone()]).unwrap_err());
    let named = other.display().to_string();
    assert!(err.contains("other folds") && err.contains(&named), "{err}");

    // A run folder instead of a genotype folder.
    let err = format!(
        "{:#}",
        ensemble(std::slice::from_ref(&tiny.out)).unwrap_err()
    );
    assert!(err.contains("genotype folder"), "{err}");

    // A kept prediction of another fold's image.
    let csv = |fold: usize| b.join(format!("fold-{fold}/test_predictions.csv"));
    let stranger = first_of(&csv(1), "female");
    let text = std::fs::read_to_string(csv(0)).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let moved = lines[1].split_once(',').unwrap().1.to_string();
    lines[1] = format!("{stranger},{moved}");
    std::fs::write(csv(0), lines.join("\n") + "\n").unwrap();
    let err = format!("{:#}", ensemble(&[a, b]).unwrap_err());
    assert!(
        err.contains("fold-0/test_predictions.csv")
            && err.contains("line 2")
            && err.contains("not a test image of this fold"),
        "{err}"
    );
}

#[test]
fn only_fold_trains_that_fold_alone_as_the_full_run_does_and_resume_finishes_the_rest() {
    let tiny = TinyCv::finished();
    let out = tiny.dir.path().join("fold-1-first");
    let mut args = tiny_cv(&tiny.data, &out);
    args.only_folds = vec![1];
    assert!(cross_validate(&args).unwrap().report.is_none());
    for genotype in ["DARTS_V2", "random-1"] {
        assert!(out.join(genotype).join("fold-1/fold.json").is_file());
        assert!(!out.join(genotype).join("fold-0").exists(), "{genotype}");
    }
    let alone: FoldResult = read_json(&out.join("DARTS_V2/fold-1/fold.json"));
    let full = &tiny.report.rows[1].folds[1];
    assert_eq!((&alone.plain, &alone.flip), (&full.plain, &full.flip));

    let mut resume = tiny_cv(&tiny.data, &out);
    resume.train.run.resume = true;
    resume.only_folds = vec![2];
    let err = cross_validate(&resume).unwrap_err().to_string();
    assert!(
        err.contains("--only-fold 2: the cross-validation has 2 folds, 0 to 1"),
        "{err}"
    );
    resume.only_folds.clear();
    let report = cross_validate(&resume).unwrap().report.expect("finished");
    assert_eq!(
        report.rows[1].folds[1], alone,
        "fold 1 was not trained again"
    );
    for (row, full) in report.rows.iter().zip(&tiny.report.rows) {
        for (fold, theirs) in row.folds.iter().zip(&full.folds) {
            assert_eq!(fold.plain, theirs.plain, "{} fold {}", row.name, fold.fold);
        }
    }
}

#[test]
fn compare_pairs_the_folds_both_finished_and_refuses_other_folds() {
    let tiny = TinyCv::finished();
    let (a, b) = tiny.genotypes();

    // Against itself: every difference zero, neither ahead.
    let same = compare(&a, &a, None).unwrap();
    assert_eq!(same.paired.len(), 2);
    assert!(same.unpaired.is_empty());
    assert_eq!(
        same.difference,
        Some(MeanStd {
            mean: 0.0,
            std: 0.0
        })
    );
    assert_eq!((same.candidate_ahead, same.base_ahead), (0, 0));

    // Known figures: the candidate 0.25 above the base on fold 0, 0.125 below on fold 1,
    // on the mean per-class accuracy and on each side of the hand.
    let fold_json = |genotype: &Path, fold: usize| genotype.join(format!("fold-{fold}/fold.json"));
    for (fold, shift) in [(0, 0.25), (1, -0.125)] {
        let mut base: FoldResult = read_json(&fold_json(&a, fold));
        let mut candidate: FoldResult = read_json(&fold_json(&b, fold));
        base.plain.mean_class_accuracy = 0.5;
        base.plain.per_side = BTreeMap::from([("dorsal".into(), 0.5), ("palmar".into(), 0.625)]);
        candidate.plain.mean_class_accuracy = 0.5 + shift;
        candidate.plain.per_side = base
            .plain
            .per_side
            .iter()
            .map(|(side, v)| (side.clone(), v + shift))
            .collect();
        for (genotype, result) in [(&a, &base), (&b, &candidate)] {
            let text = serde_json::to_string(result).unwrap();
            std::fs::write(fold_json(genotype, fold), text).unwrap();
        }
    }
    let both = compare(&a, &b, None).unwrap();
    let differences: Vec<f64> = both.paired.iter().map(|p| p.difference).collect();
    assert_eq!(differences, [0.25, -0.125]);
    for (paired, shift) in both.paired.iter().zip([0.25, -0.125]) {
        let sides: Vec<(&str, f64)> = paired
            .side_differences
            .iter()
            .map(|(side, d)| (side.as_str(), *d))
            .collect();
        assert_eq!(sides, [("dorsal", shift), ("palmar", shift)]);
    }
    let difference = both.difference.unwrap();
    assert_eq!(difference.mean, 0.0625);
    assert!((difference.std - 0.375 / 2f64.sqrt()).abs() < 1e-12);
    assert_eq!((both.candidate_ahead, both.base_ahead), (1, 1));
    let table = both.table();
    assert!(
        table.contains("| 0 | 0.500 | 0.750 | +0.250 | +0.250 | +0.250 |")
            && table.contains("| 1 | 0.500 | 0.375 | -0.125 | -0.125 | -0.125 |")
            && table.contains("candidate ahead on 1, base on 1"),
        "{table}"
    );

    // A fold the candidate has not finished is left out of the pairing and named.
    std::fs::remove_file(fold_json(&b, 1)).unwrap();
    let part = compare(&a, &b, None).unwrap();
    assert_eq!(part.paired.iter().map(|p| p.fold).collect::<Vec<_>>(), [0]);
    assert_eq!(part.unpaired, [1]);
    assert_eq!(
        part.difference,
        Some(MeanStd {
            mean: 0.25,
            std: 0.0
        })
    );
    assert!(part.table().contains("not finished by both: fold 1"));

    // Another seed draws other folds: refused, naming the folder.
    let other = tiny.other_folds();
    let err = format!("{:#}", compare(&a, &other, None).unwrap_err());
    let named = other.display().to_string();
    assert!(
        err.contains("other folds") && err.contains("a comparison") && err.contains(&named),
        "{err}"
    );
}

#[test]
fn cv_reports_each_image_source_and_measures_older_folds_from_their_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders_of_two_sources(&data, 8);
    let out = dir.path().join("cv");
    let mut args = tiny_cv(&data, &out);
    args.baselines.clear();
    let report = cross_validate(&args).unwrap().report.expect("finished");
    let dataset = Dataset::load(&data, &AspectFilter::All).unwrap();

    // Each fold's figures per source are those of its kept predictions of that source's
    // images alone, and the two sources together are the fold's test images.
    let row = &report.rows[1];
    for fold in &row.folds {
        let per_source = &fold.plain.per_source;
        assert_eq!(
            per_source.keys().collect::<Vec<_>>(),
            ["copies", "originals"],
            "fold {}",
            fold.fold
        );
        let csv = out.join(format!("DARTS_V2/fold-{}/test_predictions.csv", fold.fold));
        let mut reader = csv::Reader::from_path(&csv).unwrap();
        let mut right: BTreeMap<(bool, String), (usize, usize)> = BTreeMap::new();
        for record in reader.records() {
            let record = record.unwrap();
            let path = Path::new(&record[0]);
            let sample = dataset.samples().iter().find(|s| s.path == path).unwrap();
            let original = sample.image_source == Some(ImageSource::Original);
            let p_female: f32 = record[4].parse().unwrap();
            let predicted = if p_female >= 0.5 { "female" } else { "male" };
            let entry = right.entry((original, record[2].to_string())).or_default();
            entry.0 += 1;
            entry.1 += usize::from(predicted == &record[2]);
        }
        for (source, original) in [("originals", true), ("copies", false)] {
            let recall = |label: &str| {
                let (n, r) = right[&(original, label.to_string())];
                r as f64 / n as f64
            };
            let expected = (recall("female") + recall("male")) / 2.0;
            let measured = per_source[source].mean_class_accuracy;
            assert!(
                (measured - expected).abs() < 1e-12,
                "fold {} {source}: {measured} against {expected}",
                fold.fold
            );
        }
    }
    let originals = &row.plain.per_source["originals"];
    let folds: Vec<f64> = row
        .folds
        .iter()
        .map(|f| f.plain.per_source["originals"].mean_class_accuracy)
        .collect();
    assert_eq!(originals.mean_class_accuracy, MeanStd::of(&folds));
    let table = report.table();
    assert!(
        table.contains("| originals: mean per-class |")
            && table.contains(&originals.mean_class_accuracy.to_string()),
        "{table}"
    );
    let card = report.card_section("DARTS_V2").unwrap();
    assert_eq!(
        card.per_source["originals"].mean_class_accuracy,
        originals.mean_class_accuracy
    );

    // A run measured before sources were reported: its folds are measured again from
    // their kept predictions, to the same figures.
    for fold in 0..2 {
        let path = out.join(format!("DARTS_V2/fold-{fold}/fold.json"));
        let mut older: serde_json::Value = read_json(&path);
        for pass in ["plain", "flip"] {
            older[pass].as_object_mut().unwrap().remove("per_source");
        }
        std::fs::write(&path, older.to_string()).unwrap();
    }
    args.train.run.resume = true;
    let again = cross_validate(&args).unwrap().report.expect("finished");
    assert_eq!(again.rows, report.rows);

    // compare pairs one source's figures on request, and names the sources it has.
    let genotype = out.join("DARTS_V2");
    let same = compare(&genotype, &genotype, Some("originals")).unwrap();
    assert_eq!(
        same.paired[0].base,
        row.folds[0].plain.per_source["originals"]
    );
    assert!(same.table().contains("test images: originals only"));
    let err = format!(
        "{:#}",
        compare(&genotype, &genotype, Some("scans")).unwrap_err()
    );
    assert!(
        err.contains("no test images of source `scans`") && err.contains("copies, originals"),
        "{err}"
    );
}

#[test]
fn calibrate_fits_the_out_of_fold_predictions_and_writes_the_model_calibrated() {
    let tiny = TinyCv::finished();
    let (darts, random) = tiny.genotypes();
    let model = darts.join("fold-0/model.safetensors");
    let out = tiny.dir.path().join("calibrated.safetensors");
    let diagram = tiny.dir.path().join("reliability.svg");
    let args = CalibrateArgs {
        cv: darts.clone(),
        model: Some(model.clone()),
        out: Some(out.clone()),
        diagram: Some(diagram.clone()),
        json: false,
        batch: 8,
    };
    run_calibrate(&args).unwrap();

    // The same weights, the card with the fit on every image of the cross-validation.
    let original = load_model(&model, &Device::Cpu).unwrap();
    let calibrated = load_model(&out, &Device::Cpu).unwrap();
    let calibration = calibrated.card.calibration.clone().expect("calibrated");
    assert_eq!((calibration.images, calibration.bins), (16, 15));
    // Each image of class folders is its own subject: one person per photo.
    let person = calibration.per_person.clone().unwrap();
    assert_eq!(person.people, 16);
    assert!((0.0..=1.0).contains(&person.accuracy));
    assert!(person.temperature > 0.0 && person.ece_after <= 1.0);
    assert_eq!(calibration.coverage.len(), 50);
    assert!(calibration.fitted_on.contains("out-of-fold"));
    assert_eq!(calibrated.card.temperature(), calibration.temperature);
    let weights = |m: &hands_train::eval::LoadedModel| {
        let mut named: Vec<(String, Vec<f32>)> = m
            .varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(n, v)| (n.clone(), v.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    };
    assert_eq!(weights(&original), weights(&calibrated));
    let svg = std::fs::read_to_string(&diagram).unwrap();
    roxmltree::Document::parse(&svg).unwrap();
    assert!(svg.contains("reliability"), "{svg}");

    // eval gives the calibrated probabilities: softmax(logits / T), the same argmax.
    let predictions = |model: &Path, name: &str| {
        let csv = tiny.dir.path().join(name);
        eval_model(&EvalArgs {
            model: model.to_path_buf(),
            data: tiny.data.clone(),
            split: EvalSplit::All,
            split_file: None,
            aspect: None,
            json: None,
            predictions: Some(csv.clone()),
            batch: 8,
            device: Default::default(),
        })
        .unwrap();
        let mut reader = csv::Reader::from_path(&csv).unwrap();
        reader
            .records()
            .map(|r| r.unwrap()[5].parse::<f64>().unwrap())
            .collect::<Vec<f64>>()
    };
    let t = calibration.temperature;
    for (plain, scaled) in predictions(&model, "plain.csv")
        .into_iter()
        .zip(predictions(&out, "scaled.csv"))
    {
        let logit = (plain / (1.0 - plain)).ln();
        let expected = 1.0 / (1.0 + (-logit / t).exp());
        assert!(
            (scaled - expected).abs() < 1e-4,
            "{plain} -> {scaled}, not {expected}"
        );
        assert_eq!(plain >= 0.5, scaled >= 0.5);
    }

    // Refused: a model of another recipe, writing over an input, an unfinished run.
    let mut other = args.clone();
    other.model = Some(random.join("fold-0/model.safetensors"));
    other.out = Some(tiny.dir.path().join("other.safetensors"));
    let err = format!("{:#}", run_calibrate(&other).unwrap_err());
    assert!(err.contains("not a model of the recipe"), "{err}");
    let mut over = args.clone();
    over.out = Some(model.clone());
    assert!(run_calibrate(&over).is_err());
    std::fs::remove_file(darts.join("fold-1/fold.json")).unwrap();
    let err = format!("{:#}", run_calibrate(&args).unwrap_err());
    assert!(err.contains("fold 1 is not finished"), "{err}");
}
