//! The data layer on the real 11K Hands sample and on broken copies of it.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device};
use hands_data::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const SIZE: u32 = 32;

/// The sample loaded and cached once per test binary.
fn loaded() -> Option<&'static (Dataset, ImageCache)> {
    static LOADED: OnceLock<Option<(Dataset, ImageCache)>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let dir = hands_tests::sample_dir()?;
            let dataset = Dataset::load(&dir, &AspectFilter::All).unwrap();
            let cache = ImageCache::build(&dataset, SIZE).unwrap();
            Some((dataset, cache))
        })
        .as_ref()
}

fn subjects_of(part: &Part) -> BTreeSet<String> {
    part.subjects.iter().cloned().collect()
}

#[test]
fn loads_the_sample() {
    let Some((dataset, _)) = loaded() else { return };
    assert_eq!(dataset.len(), 787);
    assert_eq!(dataset.subjects().len(), 123);
    assert_eq!(dataset.labels(), ["female", "male"]);
    assert_eq!(dataset.label_counts(), [517, 270]);
    let first = &dataset.samples()[0];
    assert_eq!(first.subject, "0000000");
    assert_eq!(first.label, 1);
    assert_eq!(first.aspect.as_deref(), Some("dorsal right"));
    assert!(first.path.ends_with("images/Hand_0000005.jpg"));
    assert!(dataset.samples().iter().all(|s| s.subject.len() == 7));
    assert!(matches!(dataset.source(), Source::Hands { .. }));
}

#[test]
fn aspect_filters_match_the_csv() {
    let Some(dir) = hands_tests::sample_dir() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("HandInfo.csv")).unwrap();
    let mut per_aspect: HashMap<&str, usize> = HashMap::new();
    for line in text.lines().skip(1) {
        for aspect in ASPECTS {
            if line.contains(&format!("\"{aspect}\"")) {
                *per_aspect.entry(aspect).or_default() += 1;
            }
        }
    }
    let count = |a: &str| per_aspect.get(a).copied().unwrap_or(0);
    let cases = [
        (AspectFilter::All, 787),
        (
            AspectFilter::Dorsal,
            count("dorsal left") + count("dorsal right"),
        ),
        (
            AspectFilter::Palmar,
            count("palmar left") + count("palmar right"),
        ),
        (AspectFilter::DorsalLeft, count("dorsal left")),
        (AspectFilter::DorsalRight, count("dorsal right")),
        (AspectFilter::PalmarLeft, count("palmar left")),
        (AspectFilter::PalmarRight, count("palmar right")),
    ];
    for (filter, expected) in cases {
        let dataset = Dataset::load(&dir, &filter).unwrap();
        assert_eq!(dataset.len(), expected, "{filter}");
        assert!(dataset
            .samples()
            .iter()
            .all(|s| filter.accepts(s.aspect.as_deref().unwrap())));
    }
}

#[test]
fn splits_are_subject_disjoint_stratified_and_seeded() {
    let Some((dataset, _)) = loaded() else { return };
    let split = Split::new(dataset, Fractions::default(), 7).unwrap();
    let (train, val, test) = (
        subjects_of(&split.train),
        subjects_of(&split.val),
        subjects_of(&split.test),
    );
    assert!(train.is_disjoint(&val) && train.is_disjoint(&test) && val.is_disjoint(&test));
    let all: BTreeSet<String> = dataset.subjects().into_keys().collect();
    let union: BTreeSet<String> = train.union(&val).chain(test.iter()).cloned().collect();
    assert_eq!(union, all);
    assert_eq!(
        split.train.images + split.val.images + split.test.images,
        787
    );
    // About 70 / 15 / 15 of the subjects.
    assert!((80..=92).contains(&train.len()), "{} train", train.len());
    assert!((14..=23).contains(&val.len()), "{} val", val.len());
    for part in [&split.train, &split.val, &split.test] {
        assert!(part.label_images.iter().all(|&n| n > 0), "{part:?}");
        assert_eq!(part.indices(dataset).len(), part.images);
    }
    // Stratified: each label's subjects are divided in the same proportions.
    let labels = dataset.subjects();
    let males = |p: &Part| p.subjects.iter().filter(|s| labels[*s] == 1).count();
    let all_males = males(&split.train) + males(&split.val) + males(&split.test);
    let share = males(&split.train) as f64 / all_males as f64;
    assert!((share - 0.7).abs() < 0.05, "male train share {share}");

    assert_eq!(Split::new(dataset, Fractions::default(), 7).unwrap(), split);
    assert_ne!(
        Split::new(dataset, Fractions::default(), 8).unwrap().train,
        split.train
    );
    split.check(dataset, Path::new("<split>")).unwrap();
}

#[test]
fn bad_fractions_are_refused() {
    let Some((dataset, _)) = loaded() else { return };
    let bad = Fractions {
        train: 0.8,
        val: 0.3,
        test: 0.1,
    };
    let err = Split::new(dataset, bad, 0).unwrap_err().to_string();
    assert!(err.contains("sum to 1"), "{err}");
}

#[test]
fn halves_are_disjoint_and_cover_train() {
    let Some((dataset, _)) = loaded() else { return };
    let split = Split::new(dataset, Fractions::default(), 0).unwrap();
    let (a, b) = split.train.halves(dataset, 0).unwrap();
    let (sa, sb) = (subjects_of(&a), subjects_of(&b));
    assert!(sa.is_disjoint(&sb));
    let union: BTreeSet<String> = sa.union(&sb).cloned().collect();
    assert_eq!(union, subjects_of(&split.train));
    assert!(sa.len().abs_diff(sb.len()) <= 2);
    assert!(a.label_images.iter().chain(&b.label_images).all(|&n| n > 0));
    assert_eq!(a.images + b.images, split.train.images);
    assert_eq!(split.train.halves(dataset, 0).unwrap(), (a.clone(), b));
    assert_ne!(split.train.halves(dataset, 1).unwrap().0, a);
}

#[test]
fn split_json_round_trips_and_is_checked() {
    let Some((dataset, _)) = loaded() else { return };
    let split = Split::new(dataset, Fractions::default(), 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("split.json");
    split.save(&path).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["train"]["subjects"][0].as_str().unwrap().len(), 7);
    assert_eq!(json["test"]["images"], split.test.images);
    let back = Split::load(&path).unwrap();
    assert_eq!(back, split);
    back.check(dataset, &path).unwrap();

    // A split of other data is refused, naming the split file.
    let dorsal = Dataset::load(&hands_tests::sample_dir().unwrap(), &AspectFilter::Dorsal).unwrap();
    let err = back.check(&dorsal, &path).unwrap_err().to_string();
    assert!(err.contains("split.json"), "{err}");

    // A hand-edited split with a subject in two parts is refused.
    let mut leaky = split.clone();
    leaky.test.subjects.push(split.train.subjects[0].clone());
    leaky.save(&path).unwrap();
    let err = Split::load(&path).unwrap_err().to_string();
    assert!(err.contains("split.json") && err.contains("both"), "{err}");
}

#[test]
fn cache_holds_every_image_with_plausible_statistics() {
    let Some((dataset, cache)) = loaded() else {
        return;
    };
    assert_eq!(cache.len(), 787);
    assert_eq!(cache.size(), SIZE);
    assert_eq!(cache.image(786).len(), (3 * SIZE * SIZE) as usize);
    assert_eq!(cache.label(0), 1);
    // Same pixels as the shared preprocessing gives.
    let direct = hands_models::preprocess::load_resized(&dataset.samples()[5].path, SIZE).unwrap();
    assert_eq!(cache.image(5), direct.as_raw().as_slice());
    let split = Split::new(dataset, Fractions::default(), 0).unwrap();
    let stats = cache.stats(&split.train.indices(dataset)).unwrap();
    // Hands on a bright background: means high but below white, a real spread.
    for c in 0..3 {
        assert!((0.5..0.99).contains(&stats.mean[c]), "{stats:?}");
        assert!((0.05..0.45).contains(&stats.std[c]), "{stats:?}");
    }
    // Skin tones: more red than blue.
    assert!(stats.mean[0] > stats.mean[2], "{stats:?}");
}

#[test]
fn augmentation_keeps_shape_and_repeats_per_seed() {
    let Some((_, cache)) = loaded() else { return };
    let stats = cache.stats(&[0, 1, 2]).unwrap();
    let aug = Augment::standard(SIZE).with_cutout(8);
    assert_eq!(aug.pad, 4);
    let run = |seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = vec![f32::NAN; (3 * SIZE * SIZE) as usize];
        aug.apply(cache.image(0), SIZE, &stats, &mut rng, &mut out);
        out
    };
    let a = run(1);
    assert!(a.iter().all(|v| v.is_finite()));
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
    let mut plain = vec![0.0; a.len()];
    normalise(cache.image(0), SIZE, &stats, &mut plain);
    assert_ne!(a, plain);
}

#[test]
fn batches_cover_every_index_once_per_epoch() {
    let Some((dataset, cache)) = loaded() else {
        return;
    };
    let split = Split::new(dataset, Fractions::default(), 0).unwrap();
    let stats = cache.stats(&split.train.indices(dataset)).unwrap();
    let indices = split.val.indices(dataset);
    let device = Device::Cpu;
    let loader = Loader::new(cache, stats, 16, &device)
        .augment(Augment::standard(SIZE))
        .shuffle(true);
    let mut rng = ChaCha8Rng::seed_from_u64(0);

    let epoch = loader.epoch(&indices, &mut rng);
    assert_eq!(epoch.len(), indices.len().div_ceil(16));
    let mut seen: Vec<usize> = Vec::new();
    let mut first_order: Vec<usize> = Vec::new();
    for batch in epoch {
        let batch = batch.unwrap();
        let n = batch.indices.len();
        assert!(n == 16 || seen.len() + n == indices.len());
        assert_eq!(batch.images.dims(), [n, 3, SIZE as usize, SIZE as usize]);
        assert_eq!(batch.images.dtype(), DType::F32);
        assert_eq!(batch.labels.dims(), [n]);
        let labels: Vec<u32> = batch.labels.to_vec1().unwrap();
        let expected: Vec<u32> = batch.indices.iter().map(|&i| cache.label(i)).collect();
        assert_eq!(labels, expected);
        seen.extend(&batch.indices);
        first_order.extend(batch.indices);
    }
    seen.sort();
    assert_eq!(seen, indices);
    assert_ne!(first_order, indices, "shuffled");

    // The next epoch has a new order; the same seed repeats both epochs exactly.
    let second = loader.epoch(&indices, &mut rng).order().to_vec();
    assert_ne!(second, first_order);
    let mut again = ChaCha8Rng::seed_from_u64(0);
    let replay = loader.epoch(&indices, &mut again);
    assert_eq!(replay.order(), first_order.as_slice());
    let b1 = replay.batch(1).unwrap().images.to_vec1_flat();
    let b1_again = loader
        .epoch(&indices, &mut ChaCha8Rng::seed_from_u64(0))
        .nth(1)
        .unwrap()
        .unwrap()
        .images
        .to_vec1_flat();
    assert_eq!(b1, b1_again);

    // Dropping the last partial batch; evaluation order and dtype.
    let dropping = loader.clone().drop_last(true);
    let epoch = dropping.epoch(&indices, &mut rng);
    assert_eq!(epoch.len(), indices.len() / 16);
    let eval = Loader::new(cache, stats, 16, &device).dtype(DType::F64);
    let mut untouched = ChaCha8Rng::seed_from_u64(5);
    let in_order: Vec<usize> = eval
        .epoch(&indices, &mut untouched)
        .flat_map(|b| {
            let b = b.unwrap();
            assert_eq!(b.images.dtype(), DType::F64);
            b.indices
        })
        .collect();
    assert_eq!(in_order, indices);
    assert_eq!(untouched, ChaCha8Rng::seed_from_u64(5), "rng left alone");
    let first = eval.in_order(&indices).next().unwrap().unwrap();
    let mut plain = vec![0.0; (3 * SIZE * SIZE) as usize];
    normalise(cache.image(indices[0]), SIZE, &stats, &mut plain);
    let row: Vec<f64> = first
        .images
        .get(0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(row.iter().zip(&plain).all(|(a, b)| *a == *b as f64));
}

trait Flat {
    fn to_vec1_flat(&self) -> Vec<f32>;
}

impl Flat for candle_core::Tensor {
    fn to_vec1_flat(&self) -> Vec<f32> {
        self.flatten_all().unwrap().to_vec1().unwrap()
    }
}

/// Copies the first `rows` records of the sample's CSV (optionally rewritten by `edit`) and
/// their images into a temporary folder.
fn broken_copy(rows: usize, edit: impl Fn(&str) -> String) -> Option<tempfile::TempDir> {
    let dir = hands_tests::sample_dir()?;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("images")).unwrap();
    let text = std::fs::read_to_string(dir.join("HandInfo.csv")).unwrap();
    let lines: Vec<&str> = text.split("\r\n").take(rows + 1).collect();
    for line in &lines[1..] {
        let name = line.split(',').nth(7).unwrap().trim_matches('"');
        std::fs::copy(
            dir.join("images").join(name),
            tmp.path().join("images").join(name),
        )
        .unwrap();
    }
    let csv = lines.join("\r\n") + "\r\n";
    std::fs::write(tmp.path().join("HandInfo.csv"), edit(&csv)).unwrap();
    Some(tmp)
}

fn load_err(dir: &Path) -> String {
    Dataset::load(dir, &AspectFilter::All)
        .map(|d| format!("loaded {} images", d.len()))
        .unwrap_err_or_ok()
}

trait ErrText {
    fn unwrap_err_or_ok(self) -> String;
}

impl ErrText for Result<String, Error> {
    fn unwrap_err_or_ok(self) -> String {
        match self {
            Ok(what) => panic!("expected an error, {what}"),
            Err(e) => e.to_string(),
        }
    }
}

#[test]
fn copy_of_the_sample_loads() {
    let Some(tmp) = broken_copy(5, str::to_string) else {
        return;
    };
    let dataset = Dataset::load(tmp.path(), &AspectFilter::All).unwrap();
    assert_eq!(dataset.len(), 5);
    // Pointing at the CSV itself works too.
    let again = Dataset::load(&tmp.path().join("HandInfo.csv"), &AspectFilter::All).unwrap();
    assert_eq!(again.samples(), dataset.samples());
}

#[test]
fn missing_column_names_the_csv_and_the_column() {
    let Some(tmp) = broken_copy(5, |csv| csv.replacen("gender", "sex", 1)) else {
        return;
    };
    let err = load_err(tmp.path());
    assert!(
        err.contains("HandInfo.csv") && err.contains("`gender`"),
        "{err}"
    );
}

#[test]
fn unknown_gender_names_the_line() {
    let Some(tmp) = broken_copy(5, |csv| {
        let mut lines: Vec<String> = csv.split("\r\n").map(str::to_string).collect();
        lines[3] = lines[3].replacen("\"male\"", "\"other\"", 1);
        lines.join("\r\n")
    }) else {
        return;
    };
    let err = load_err(tmp.path());
    assert!(
        err.contains("HandInfo.csv line 4") && err.contains("`other`"),
        "{err}"
    );
}

#[test]
fn listed_but_absent_image_is_named() {
    let Some(tmp) = broken_copy(5, str::to_string) else {
        return;
    };
    std::fs::remove_file(tmp.path().join("images/Hand_0000011.jpg")).unwrap();
    let err = load_err(tmp.path());
    assert!(
        err.contains("Hand_0000011.jpg") && err.contains("line 4"),
        "{err}"
    );
}

#[test]
fn non_image_file_is_named() {
    let Some(tmp) = broken_copy(5, str::to_string) else {
        return;
    };
    std::fs::write(tmp.path().join("images/Hand_0000006.jpg"), "not a jpeg").unwrap();
    let dataset = Dataset::load(tmp.path(), &AspectFilter::All).unwrap();
    let err = ImageCache::build(&dataset, SIZE).unwrap_err().to_string();
    assert!(err.contains("Hand_0000006.jpg"), "{err}");
}

#[test]
fn class_folders_load_and_empty_ones_are_named() {
    let Some(dir) = hands_tests::sample_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (class, names) in [
        ("male", ["Hand_0000005.jpg", "Hand_0000006.jpg"]),
        ("female", ["Hand_0000011.jpg", "Hand_0000033.jpg"]),
    ] {
        std::fs::create_dir(tmp.path().join(class)).unwrap();
        for name in names {
            std::fs::copy(
                dir.join("images").join(name),
                tmp.path().join(class).join(name),
            )
            .unwrap();
        }
    }
    let dataset = Dataset::load(tmp.path(), &AspectFilter::All).unwrap();
    assert_eq!(dataset.labels(), ["female", "male"]);
    assert_eq!(dataset.label_counts(), [2, 2]);
    assert_eq!(dataset.subjects().len(), 4, "each image its own subject");
    assert_eq!(dataset.samples()[0].aspect, None);
    assert_eq!(ImageCache::build(&dataset, 8).unwrap().len(), 4);

    let err = Dataset::load(tmp.path(), &AspectFilter::Dorsal)
        .map(|d| format!("loaded {}", d.len()))
        .unwrap_err_or_ok();
    assert!(err.contains("aspect filter"), "{err}");

    std::fs::write(tmp.path().join("male/notes.txt"), "hello").unwrap();
    let err = load_err(tmp.path());
    assert!(err.contains("notes.txt"), "{err}");
    std::fs::remove_file(tmp.path().join("male/notes.txt")).unwrap();

    std::fs::create_dir(tmp.path().join("unknown")).unwrap();
    let err = load_err(tmp.path());
    assert!(
        err.contains("unknown") && err.contains("no images"),
        "{err}"
    );
}

#[test]
fn folder_without_classes_is_not_a_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load_err(tmp.path());
    assert!(err.contains("not a dataset"), "{err}");
}
