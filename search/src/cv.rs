//! The `cv` subcommand: K-fold cross-validation by subject. Each fold's subjects are the test
//! part once; the network of each genotype is trained from scratch on the other folds'
//! subjects (with model selection on a validation part carved from them, never on the test
//! fold) and measured on the fold, with and without averaging over a horizontal flip. The
//! majority class (of the training subjects) is measured on the same folds.
//!
//! The run folder holds `config.json` (the settings), `folds.json` (the subjects of each
//! fold), `splits/fold-F.json` (the train / val / test split of fold F), one training run
//! folder per genotype and fold (`GENOTYPE/fold-F/`, resumable like `train`'s) with its
//! `test_predictions.csv` (every test image's probabilities, so that any figure can be
//! recomputed) and `fold.json` (its figures), and at the end `cv.json` and `cv.md` (the
//! table, mean ± standard deviation over the folds).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hands_models::card::{CrossValidation, MeanStd, SourceFigures};
use hands_models::lock::RunLock;
use hands_models::Genotype;
use serde::{Deserialize, Serialize};

use crate::args::cv::{slug, CvArgs};
use crate::args::train::TrainArgs;
use crate::device::open_device;
use crate::eval::{load_model, predict_probabilities, write_predictions, Evaluation};
use crate::kept_predictions::{slots, KeptPredictions};
use crate::resume::{self, changed_settings};
use crate::train::{check_selection, train};
use hands_data::{ChannelStats, Dataset, Folds, ImageCache, Loader, Split};
use hands_reports::outputs::{in_folder, Inputs};
use hands_reports::run_dir::{
    RunDir, CONFIG, CV_FILES, CV_REPORT, CV_TABLE, FOLDS, FOLD_RESULT, SPLITS, TEST_PREDICTIONS,
};

/// The figures of one fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldFigures {
    /// Fraction of test images classified correctly.
    pub accuracy: f64,
    /// Mean per-class accuracy.
    pub mean_class_accuracy: f64,
    /// Accuracy per label.
    pub per_class: BTreeMap<String, f64>,
    /// Accuracy per side of the hand (`dorsal`, `palmar`), where the data records aspects.
    pub per_side: BTreeMap<String, f64>,
    /// The same figures for the test images of each source (`originals`, `copies`), where
    /// the images' sources are known (empty in folds measured before sources were).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_source: BTreeMap<String, FoldFigures>,
}

impl FoldFigures {
    /// The figures of an evaluation.
    pub fn of(evaluation: &Evaluation) -> FoldFigures {
        FoldFigures {
            accuracy: evaluation.accuracy,
            mean_class_accuracy: evaluation.mean_class_accuracy,
            per_class: evaluation
                .per_class
                .iter()
                .map(|(label, g)| (label.clone(), g.accuracy))
                .collect(),
            per_side: evaluation
                .per_side()
                .into_iter()
                .map(|(side, g)| (side, g.accuracy))
                .collect(),
            per_source: evaluation
                .per_source
                .iter()
                .map(|(source, e)| (source.clone(), FoldFigures::of(e)))
                .collect(),
        }
    }
}

/// One fold of one genotype: `fold.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    /// The fold (0-based).
    pub fold: usize,
    /// Test images and subjects.
    pub test_images: usize,
    /// Test subjects.
    pub test_subjects: usize,
    /// The epoch whose weights were kept (0 for the majority class and an ensemble).
    pub selected_epoch: usize,
    /// Learnable parameters of the network (0 for the majority class; an ensemble's
    /// members' together).
    pub parameters: usize,
    /// Training seconds (an ensemble's members' together).
    pub train_seconds: f64,
    /// The plain forward pass.
    pub plain: FoldFigures,
    /// Averaged over the image and its mirror image.
    pub flip: FoldFigures,
}

/// Mean ± std of the figures of one genotype over the folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Accuracy.
    pub accuracy: MeanStd,
    /// Mean per-class accuracy.
    pub mean_class_accuracy: MeanStd,
    /// Per label.
    pub per_class: BTreeMap<String, MeanStd>,
    /// Per side of the hand.
    pub per_side: BTreeMap<String, MeanStd>,
    /// The same for each source of images, over the folds that have images of it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_source: BTreeMap<String, Summary>,
}

impl Summary {
    fn of<'a>(folds: impl Iterator<Item = &'a FoldFigures> + Clone) -> Summary {
        let spread = |f: &dyn Fn(&FoldFigures) -> Option<f64>| {
            MeanStd::of(&folds.clone().filter_map(f).collect::<Vec<f64>>())
        };
        let keys = |f: &dyn Fn(&FoldFigures) -> Vec<String>| -> BTreeSet<String> {
            folds.clone().flat_map(f).collect()
        };
        Summary {
            accuracy: spread(&|f| Some(f.accuracy)),
            mean_class_accuracy: spread(&|f| Some(f.mean_class_accuracy)),
            per_class: keys(&|f| f.per_class.keys().cloned().collect())
                .into_iter()
                .map(|k| {
                    let s = spread(&|f| f.per_class.get(&k).copied());
                    (k, s)
                })
                .collect(),
            per_side: keys(&|f| f.per_side.keys().cloned().collect())
                .into_iter()
                .map(|k| {
                    let s = spread(&|f| f.per_side.get(&k).copied());
                    (k, s)
                })
                .collect(),
            per_source: keys(&|f| f.per_source.keys().cloned().collect())
                .into_iter()
                .map(|k| {
                    let of_source: Vec<&FoldFigures> =
                        folds.clone().filter_map(|f| f.per_source.get(&k)).collect();
                    (k, Summary::of(of_source.iter().copied()))
                })
                .collect(),
        }
    }
}

/// One row of the table: a genotype (or the majority class) on every fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// What was measured: the genotype argument, or `majority class`.
    pub name: String,
    /// Learnable parameters of the network (0 for the majority class).
    pub parameters: usize,
    /// Each fold.
    pub folds: Vec<FoldResult>,
    /// The plain forward pass over the folds.
    pub plain: Summary,
    /// With flip averaging.
    pub flip: Summary,
}

impl Row {
    /// The row of `folds`, with its mean ± std over them.
    pub(crate) fn new(name: String, folds: Vec<FoldResult>) -> Row {
        Row {
            parameters: folds.first().map_or(0, |f| f.parameters),
            plain: Summary::of(folds.iter().map(|f| &f.plain)),
            flip: Summary::of(folds.iter().map(|f| &f.flip)),
            name,
            folds,
        }
    }
}

/// `cv.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvReport {
    /// How the figures were made, in words.
    pub protocol: String,
    /// Number of folds.
    pub folds: usize,
    /// The seed of the folds and splits (and of the training, without `train_seed`).
    pub seed: u64,
    /// The seed of the training, where it is not `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_seed: Option<u64>,
    /// The data.
    pub data: String,
    /// Images and subjects of the data.
    pub images: usize,
    /// Subjects of the data.
    pub subjects: usize,
    /// The majority class first, then each genotype.
    pub rows: Vec<Row>,
}

impl CvReport {
    /// The table in Markdown: one row per genotype, mean ± std over the folds.
    pub fn table(&self) -> String {
        let labels: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| r.plain.per_class.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let sides: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| r.plain.per_side.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let sources: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| r.plain.per_source.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .rev() // `originals` first: the figure for users' photos
            .collect();
        let mut out = String::new();
        let mut header = vec!["".to_string(), "parameters".into()];
        for source in &sources {
            header.push(format!("{source}: mean per-class"));
            header.extend(sides.iter().map(|side| format!("{source}: {side}")));
        }
        header.extend(["accuracy".into(), "mean per-class".into()]);
        header.extend(labels.iter().cloned());
        header.extend(sides.iter().cloned());
        header.push("mean per-class, flip TTA".into());
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
        for row in &self.rows {
            let get = |m: &BTreeMap<String, MeanStd>, k: &String| {
                m.get(k).map_or("-".to_string(), MeanStd::to_string)
            };
            let mut cells = vec![row.name.clone(), row.parameters.to_string()];
            for source in &sources {
                match row.plain.per_source.get(source) {
                    Some(figures) => {
                        cells.push(figures.mean_class_accuracy.to_string());
                        cells.extend(sides.iter().map(|side| get(&figures.per_side, side)));
                    }
                    None => cells.extend(std::iter::repeat_n("-".to_string(), 1 + sides.len())),
                }
            }
            cells.extend([
                row.plain.accuracy.to_string(),
                row.plain.mean_class_accuracy.to_string(),
            ]);
            cells.extend(labels.iter().map(|l| get(&row.plain.per_class, l)));
            cells.extend(sides.iter().map(|s| get(&row.plain.per_side, s)));
            cells.push(row.flip.mean_class_accuracy.to_string());
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }
}

impl CvReport {
    /// The row of `genotype` as a model card's cross-validation section (with the
    /// majority class's accuracy on the same folds).
    pub fn card_section(&self, genotype: &str) -> Option<CrossValidation> {
        let row = self.rows.iter().find(|r| r.name == genotype)?;
        let majority = self.rows.iter().find(|r| r.name == MAJORITY)?;
        Some(CrossValidation {
            folds: self.folds,
            protocol: self.protocol.clone(),
            images: self.images,
            subjects: self.subjects,
            accuracy: row.plain.accuracy,
            mean_class_accuracy: row.plain.mean_class_accuracy,
            per_class: row.plain.per_class.clone(),
            per_side: row.plain.per_side.clone(),
            majority_accuracy: majority.plain.accuracy,
            per_source: row
                .plain
                .per_source
                .iter()
                .map(|(source, s)| {
                    let figures = SourceFigures {
                        accuracy: s.accuracy,
                        mean_class_accuracy: s.mean_class_accuracy,
                        per_class: s.per_class.clone(),
                        per_side: s.per_side.clone(),
                    };
                    (source.clone(), figures)
                })
                .collect(),
        })
    }
}

/// The name of the majority-class row.
pub const MAJORITY: &str = "majority class";

/// What a cross-validation invocation produced.
#[derive(Debug)]
pub struct CvOutcome {
    /// The run folder.
    pub out: PathBuf,
    /// The report, when every fold of every genotype is done.
    pub report: Option<CvReport>,
}

/// `hands-search cv`.
pub fn run_cv(args: &CvArgs) -> Result<()> {
    let outcome = cross_validate(args)?;
    match &outcome.report {
        Some(report) => {
            print!("{}", report.table());
            eprintln!(
                "written: {}, {}",
                outcome.out.join(CV_REPORT).display(),
                outcome.out.join(CV_TABLE).display()
            );
        }
        None => eprintln!(
            "stopped with folds left to train (--stop-after-runs, --only-fold); continue with: \
             hands-search cv --resume --out {}",
            outcome.out.display()
        ),
    }
    Ok(())
}

/// Cross-validates as `hands-search cv` does and returns what it produced.
pub fn cross_validate(cli: &CvArgs) -> Result<CvOutcome> {
    let out = cli.out_dir();
    let run = RunDir::new(&out);
    let _lock = RunLock::folder(run.path())?;
    let args = open_config(cli, &run)?;
    let genotypes = checked_genotypes(&args)?;
    let dataset = Dataset::load(&args.train.data.path, &args.train.data.aspect)?;
    let (folds, splits) = prepare_folds(&args, &genotypes, &dataset, &run)?;

    let device = open_device(args.train.run.device)?;
    let mut cache: Option<ImageCache> = None;
    let mut trained = 0usize;
    let mut rows = vec![majority_row(&dataset, &splits)];
    let mut complete = true;
    for genotype in &genotypes {
        let mut results = Vec::with_capacity(folds.len());
        for (fold, split) in splits.iter().enumerate() {
            let fold_run = RunDir::new(out.join(slug(genotype))).fold_run(fold);
            if let Some(result) = FoldResult::read(&fold_run)? {
                check_fold_settings(&fold_run, &fold_args(&args, genotype, split, &fold_run))?;
                let test = split.0.test.indices(&dataset);
                results.push(result.with_sources(&dataset, &test, &fold_run)?);
                continue;
            }
            if !args.trains_fold(fold) {
                complete = false;
                continue;
            }
            if args.stop_after_runs.is_some_and(|n| trained >= n) {
                return Ok(CvOutcome { out, report: None });
            }
            eprintln!("== {genotype}, fold {fold} of {}", folds.len());
            let fold_data = FoldData {
                dataset: &dataset,
                split,
                fold,
            };
            let result = train_fold(&args, genotype, &fold_data, &fold_run, &mut cache, &device)?;
            results.push(result);
            trained += 1;
        }
        rows.push(Row::new(genotype.clone(), results));
    }
    if !complete {
        return Ok(CvOutcome { out, report: None });
    }

    let report = CvReport {
        protocol: protocol(&args, folds.len()),
        folds: folds.len(),
        seed: args.train.run.seed,
        train_seed: args.train_seed,
        data: args.train.data.path.display().to_string(),
        images: dataset.len(),
        subjects: dataset.subjects().len(),
        rows,
    };
    hands_models::output::write_atomic(
        &run.file(CV_REPORT),
        (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
    )?;
    hands_models::output::write_atomic(&run.file(CV_TABLE), report.table().as_bytes())?;
    Ok(CvOutcome {
        out,
        report: Some(report),
    })
}

/// How a cross-validation of `folds` folds under `args` measures, in words (cv.json).
fn protocol(args: &CvArgs, folds: usize) -> String {
    format!(
        "{folds}-fold cross-validation by subject (stratified by label, seed {}); each fold \
         trained from scratch on the other folds' subjects{}, {}{}, measured on the fold's \
         subjects only",
        args.train.run.seed,
        args.train_seed
            .map(|seed| format!(" (training seed {seed})"))
            .unwrap_or_default(),
        args.train.select.describe(args.val_share),
        if args.train.precise_bn {
            ", BatchNorm statistics recomputed on the training subjects"
        } else {
            ""
        },
    )
}

/// The cross-validation's settings: those stored in the run folder under `--resume` (any
/// other setting given differently is refused), else `cli`'s; checked.
fn open_config(cli: &CvArgs, run: &RunDir) -> Result<CvArgs> {
    let out = run.path();
    let config_path = run.config();
    let args = if cli.train.run.resume {
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("cannot resume: cannot read {}", config_path.display()))?;
        let stored: CvArgs = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a cross-validation config", config_path.display()))?;
        let changes = changed_settings(
            &stored,
            cli,
            cli.train.run.explicit.as_deref(),
            &resume::PER_INVOCATION,
        )?;
        let (added, changes) = added_baselines(&stored, cli, changes);
        if !changes.is_empty() {
            return Err(resume::refusal(
                out,
                &changes,
                "resume with the run's settings, or start a new cross-validation in another --out",
            ));
        }
        let mut args = stored;
        if !added.is_empty() {
            args.baselines.extend(added.iter().cloned());
            eprintln!("adding baseline(s) {} on the run's folds", added.join(", "));
            checked_genotypes(&args)?;
            hands_models::output::write_atomic(
                &config_path,
                (serde_json::to_string_pretty(&args)? + "\n").as_bytes(),
            )?;
        }
        args.train.run.resume = true;
        args.train.run.device = cli.train.run.device;
        args.stop_after_runs = cli.stop_after_runs;
        args.only_folds.clone_from(&cli.only_folds);
        eprintln!("resuming cross-validation {}", out.display());
        args
    } else {
        if config_path.exists() {
            bail!(
                "{} already holds a cross-validation: pass --resume to continue it, or choose \
                 another --out",
                out.display()
            );
        }
        cli.clone()
    };
    args.train.check()?;
    if args.train.split_file.is_some() {
        bail!("cv draws its own folds: --split-file cannot be given");
    }
    if args.train.run.stop_after.is_some() {
        bail!("cv runs whole trainings: use --stop-after-runs instead of --stop-after");
    }
    if args.train.cross_validation.is_some() {
        bail!("--cross-validation names the figures of a final training, not of cv");
    }
    check_selection(args.train.select, args.val_share > 0.0, "--val-share 0")?;
    if let Some(fold) = args.only_folds.iter().find(|&&f| f >= args.folds) {
        bail!(
            "--only-fold {fold}: the cross-validation has {} folds, 0 to {}",
            args.folds,
            args.folds - 1
        );
    }
    Ok(args)
}

/// The baselines a resumed cross-validation is asked to add: when the only difference in
/// `--baseline` is that `cli` lists the stored ones followed by more, those more are returned
/// and that change is dropped from `changes` (the folds and splits are the run's, so the new
/// rows are measured on the same folds); any other difference stays a change to refuse.
fn added_baselines(
    stored: &CvArgs,
    cli: &CvArgs,
    changes: Vec<resume::Change>,
) -> (Vec<String>, Vec<resume::Change>) {
    let extends = cli.baselines.len() > stored.baselines.len()
        && cli.baselines.starts_with(&stored.baselines);
    if !extends {
        return (Vec::new(), changes);
    }
    let added = cli.baselines[stored.baselines.len()..].to_vec();
    let changes = changes
        .into_iter()
        .filter(|change| change.name != "baselines")
        .collect();
    (added, changes)
}

/// The genotypes to cross-validate (the trained one, then the baselines), each resolvable
/// and with a fold folder of its own.
fn checked_genotypes(args: &CvArgs) -> Result<Vec<String>> {
    let genotypes = args.genotypes();
    let mut slugs = BTreeMap::new();
    for genotype in &genotypes {
        Genotype::resolve(genotype)
            .with_context(|| format!("--genotype / --baseline {genotype}"))?;
        if let Some(other) = slugs.insert(slug(genotype), genotype) {
            bail!(
                "{other} and {genotype} would share the folder {}",
                slug(genotype)
            );
        }
    }

    Ok(genotypes)
}

/// The folds (drawn once and saved with the settings, read back when resuming) and each
/// fold's split with the file it is saved in.
fn prepare_folds(
    args: &CvArgs,
    genotypes: &[String],
    dataset: &Dataset,
    run: &RunDir,
) -> Result<(Folds, Vec<(Split, PathBuf)>)> {
    let out = run.path();
    let config_path = run.config();
    let mut inputs = Inputs::of_data(&args.train.data.path, dataset);
    for genotype in genotypes {
        inputs.add(Path::new(genotype));
    }
    inputs.check(in_folder(out, &CV_FILES))?;
    inputs.check(genotypes.iter().map(|genotype| out.join(slug(genotype))))?;
    std::fs::create_dir_all(run.file(SPLITS))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let folds_path = run.file(FOLDS);
    let folds = if args.train.run.resume {
        Folds::load(&folds_path, dataset)?
    } else {
        let folds = Folds::new(dataset, args.folds, args.train.run.seed)?;
        folds.save(&folds_path)?;
        hands_models::output::write_atomic(
            &config_path,
            (serde_json::to_string_pretty(&args)? + "\n").as_bytes(),
        )?;
        folds
    };
    let mut splits = Vec::with_capacity(folds.len());
    for fold in 0..folds.len() {
        let path = run.fold_split(fold);
        let split = if path.exists() {
            let split = Split::load(&path)?;
            split.check(dataset, &path)?;
            split
        } else {
            let split = folds.split(dataset, fold, args.val_share, args.train.run.seed)?;
            split.save(&path)?;
            split
        };
        splits.push((split, path));
    }
    eprintln!(
        "{}: {} images of {} subjects in {} folds of {} subjects; {} genotype(s)",
        args.train.data.path.display(),
        dataset.len(),
        dataset.subjects().len(),
        folds.len(),
        folds
            .folds
            .iter()
            .map(|f| f.len().to_string())
            .collect::<Vec<_>>()
            .join("/"),
        genotypes.len()
    );

    Ok((folds, splits))
}

/// One fold of the data: the images, its split and its index.
struct FoldData<'a> {
    dataset: &'a Dataset,
    split: &'a (Split, PathBuf),
    fold: usize,
}

/// Trains `genotype` on a fold (resuming its checkpoint if a run was cut), measures it on
/// the fold's test subjects and saves the result in the fold's run folder.
fn train_fold(
    args: &CvArgs,
    genotype: &str,
    data: &FoldData<'_>,
    fold_run: &RunDir,
    cache: &mut Option<ImageCache>,
    device: &candle_core::Device,
) -> Result<FoldResult> {
    let dir = fold_run.path();
    let split = &data.split.0;
    let outcome = train(&fold_args(args, genotype, data.split, fold_run))?;
    let metrics = outcome
        .metrics
        .with_context(|| format!("{}: the training did not finish", dir.display()))?;
    let cache = match cache {
        Some(cache) => &*cache,
        None => cache.insert(ImageCache::build(data.dataset, args.train.data.size)?),
    };
    let result = measure_fold(
        data.dataset,
        cache,
        split,
        data.fold,
        dir,
        metrics.selected_epoch,
        metrics.train_seconds,
        args.train.optimiser.batch,
        device,
    )?;
    hands_models::output::write_atomic(
        &fold_run.file(FOLD_RESULT),
        (serde_json::to_string_pretty(&result)? + "\n").as_bytes(),
    )?;
    eprintln!(
        "fold {}: mean per-class accuracy {:.4} (flip TTA {:.4})",
        data.fold, result.plain.mean_class_accuracy, result.flip.mean_class_accuracy
    );
    Ok(result)
}

/// The settings fold `fold_run` of `genotype` trains with: the cross-validation's, on the
/// fold's split, resumed when the fold has a checkpoint.
fn fold_args(
    args: &CvArgs,
    genotype: &str,
    (_, split_path): &(Split, PathBuf),
    fold_run: &RunDir,
) -> TrainArgs {
    let mut fold_args = args.train.clone();
    fold_args.genotype = genotype.to_string();
    fold_args.split_file = Some(split_path.clone());
    fold_args.run.seed = args.training_seed();
    fold_args.run.out = Some(fold_run.path().to_path_buf());
    fold_args.run.resume = fold_run.checkpoint().is_file();
    fold_args.run.extend_epochs = false;
    fold_args.run.explicit = None;
    fold_args
}

/// Refuses a finished fold whose training ran under settings other than `given`: its
/// result is not this cross-validation's.
fn check_fold_settings(fold_run: &RunDir, given: &TrainArgs) -> Result<()> {
    let path = fold_run.config();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let stored: TrainArgs = serde_json::from_str(&text)
        .with_context(|| format!("{}: not the settings of a training run", path.display()))?;
    let changes = changed_settings(&stored, given, None, &resume::PER_INVOCATION)?;
    if !changes.is_empty() {
        bail!(
            "{} was trained under other settings than this cross-validation's ({}); its \
             result is not reused: remove the folder to train the fold again",
            fold_run.path().display(),
            changes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

impl FoldResult {
    /// The result saved in a fold's run folder, if the fold is done.
    pub(crate) fn read(fold_run: &RunDir) -> Result<Option<FoldResult>> {
        let path = fold_run.file(FOLD_RESULT);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let result = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a fold result", path.display()))?;
        Ok(Some(result))
    }
}

impl FoldResult {
    /// A fold measured before image sources were reported, measured again from its kept
    /// `test_predictions.csv` (`test`: the fold's test images) so that it has the
    /// per-source figures too; as it is when it has them or the images' sources are unknown.
    pub(crate) fn with_sources(
        self,
        dataset: &Dataset,
        test: &[usize],
        fold_run: &RunDir,
    ) -> Result<FoldResult> {
        let known = test
            .iter()
            .any(|&i| dataset.samples()[i].image_source.is_some());
        if !known || !self.plain.per_source.is_empty() {
            return Ok(self);
        }
        let path = fold_run.file(TEST_PREDICTIONS);
        let kept = KeptPredictions::read(&path, dataset.labels(), &slots(dataset, test))
            .with_context(|| format!("{}: measuring it per image source", path.display()))?;
        let figures = |probabilities: &[Vec<f32>]| {
            let rows: Vec<&[f32]> = probabilities.iter().map(Vec::as_slice).collect();
            FoldFigures::of(&Evaluation::from_probabilities(
                "test", dataset, test, &rows,
            ))
        };
        Ok(FoldResult {
            plain: figures(&kept.plain),
            flip: figures(&kept.flip),
            ..self
        })
    }
}

/// The cross-validated figures of a training's recipe: the row of `genotype` in the
/// finished cross-validation run `dir`, whose training settings must be those of `args`
/// (the genotype, run folder, split, seed, device and resume settings aside) on the same
/// data.
pub fn recipe_figures(
    dir: &Path,
    args: &TrainArgs,
    genotype: &Genotype,
) -> Result<CrossValidation> {
    let read = |name: &str| -> Result<String> {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "--cross-validation {}: cannot read {} (is it a finished `hands-search cv` run?)",
                dir.display(),
                path.display()
            )
        })
    };
    let config: CvArgs = serde_json::from_str(&read(CONFIG)?)
        .with_context(|| format!("{}: not a cross-validation config", dir.display()))?;
    let report: CvReport = serde_json::from_str(&read(CV_REPORT)?)
        .with_context(|| format!("{}: not a cross-validation report", dir.display()))?;
    let ignore: Vec<&str> = resume::PER_INVOCATION
        .into_iter()
        .chain([
            "genotype",
            "split_file",
            "test_share",
            "cross_validation",
            "seed",
        ])
        .collect();
    let changes = changed_settings(&config.train, args, None, &ignore)?;
    if !changes.is_empty() {
        let list: Vec<String> = changes.iter().map(ToString::to_string).collect();
        bail!(
            "--cross-validation {}: it measured other settings than this training's: {}",
            dir.display(),
            list.join("; ")
        );
    }
    let row = config
        .genotypes()
        .into_iter()
        .find(|name| Genotype::resolve(name).is_ok_and(|g| g == *genotype))
        .with_context(|| {
            format!(
                "--cross-validation {}: none of its genotypes ({}) is {}",
                dir.display(),
                config.genotypes().join(", "),
                args.genotype
            )
        })?;
    report
        .card_section(&row)
        .with_context(|| format!("{}: cv.json has no row {row}", dir.display()))
}

/// The majority class of each fold's training subjects, answered for every test image.
pub(crate) fn majority_row(dataset: &Dataset, splits: &[(Split, PathBuf)]) -> Row {
    let folds = splits
        .iter()
        .enumerate()
        .map(|(fold, (split, _))| {
            let majority = (0..split.train.label_images.len())
                .max_by_key(|&c| (split.train.label_images[c], std::cmp::Reverse(c)))
                .unwrap_or(0);
            let test = split.test.indices(dataset);
            let evaluation = Evaluation::from_predictions(
                "test",
                dataset,
                &test,
                &vec![majority; test.len()],
                &vec![0.0; test.len()],
            );
            let figures = FoldFigures::of(&evaluation);
            FoldResult {
                fold,
                test_images: evaluation.images,
                test_subjects: evaluation.subjects,
                selected_epoch: 0,
                parameters: 0,
                train_seconds: 0.0,
                plain: figures.clone(),
                flip: figures,
            }
        })
        .collect();
    Row::new(MAJORITY.to_string(), folds)
}

/// Measures the model a fold's training wrote on the fold's test subjects, writes
/// `test_predictions.csv` beside it and returns the fold's figures.
#[allow(clippy::too_many_arguments)]
fn measure_fold(
    dataset: &Dataset,
    cache: &ImageCache,
    split: &Split,
    fold: usize,
    dir: &Path,
    selected_epoch: usize,
    train_seconds: f64,
    batch: usize,
    device: &candle_core::Device,
) -> Result<FoldResult> {
    let fold_run = RunDir::new(dir);
    let model = load_model(&fold_run.model(), device)?;
    let stats = ChannelStats {
        mean: model.card.input.mean,
        std: model.card.input.std,
    };
    let loader = Loader::new(cache, stats, batch, device);
    let test = split.test.indices(dataset);
    let probabilities = predict_probabilities(
        &model.network,
        &loader,
        &test,
        "test",
        true,
        model.card.temperature(),
    )?;
    write_predictions(&fold_run.file(TEST_PREDICTIONS), dataset, &probabilities)?;
    let indices: Vec<usize> = probabilities.iter().map(|p| p.index).collect();
    let plain: Vec<&[f32]> = probabilities.iter().map(|p| p.plain.as_slice()).collect();
    let flip: Vec<&[f32]> = probabilities
        .iter()
        .filter_map(|p| p.flip_mean.as_deref())
        .collect();
    let plain = Evaluation::from_probabilities("test", dataset, &indices, &plain);
    let flip = Evaluation::from_probabilities("test", dataset, &indices, &flip);
    Ok(FoldResult {
        fold,
        test_images: plain.images,
        test_subjects: plain.subjects,
        selected_epoch,
        parameters: model.card.network.parameters,
        train_seconds,
        plain: FoldFigures::of(&plain),
        flip: FoldFigures::of(&flip),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_leaves_out_the_training_options_cv_refuses() {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: CvArgs,
        }
        let help = <Wrapper as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for hidden in ["--split-file <", "--stop-after <", "--cross-validation <"] {
            assert!(!help.contains(hidden), "{hidden} in\n{help}");
        }
        for shown in [
            "--genotype <",
            "--baseline <",
            "--folds <",
            "--stop-after-runs <",
        ] {
            assert!(help.contains(shown), "{shown} missing from\n{help}");
        }
    }

    #[test]
    fn slugs_name_genotypes() {
        assert_eq!(slug("DARTS_V2"), "DARTS_V2");
        assert_eq!(slug("random:3"), "random-3");
        assert_eq!(slug("runs/pcdarts-15"), "pcdarts-15");
        assert_eq!(slug("runs/pcdarts-15/genotype.json"), "pcdarts-15");
        assert_eq!(slug("models/pretrained/genotype.json"), "pretrained");
    }
}
