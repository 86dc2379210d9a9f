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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hands_models::lock::RunLock;
use hands_models::Genotype;

use crate::args::cv::{slug, CvArgs};
use crate::args::train::TrainArgs;
use crate::cv_report::{majority_row, CvReport, FoldFigures, FoldResult, Row};
use crate::device::open_device;
use crate::eval::{load_model, predict_probabilities, write_predictions, Evaluation};
use crate::resume::{self, changed_settings};
use crate::train::{check_selection, train};
use hands_data::{ChannelStats, Dataset, Folds, ImageCache, Loader, Split};
use hands_reports::outputs::{in_folder, Inputs};
use hands_reports::run_dir::{
    RunDir, CV_FILES, CV_REPORT, CV_TABLE, FOLDS, FOLD_RESULT, SPLITS, TEST_PREDICTIONS,
};

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

    #[cfg(feature = "cli")]
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
