//! The `train` subcommand: the discrete network of a genotype trained from scratch on the
//! training subjects, selected on the validation subjects, measured on the test subjects.
//!
//! A run folder holds `config.json` (the settings), `split.json` (the subjects of each
//! part), `train.jsonl` (one record per epoch), `checkpoint.safetensors` (written atomically
//! after every epoch: weights with BatchNorm statistics, the best weights so far, optimizer
//! state, RNG), and at the end `model.safetensors` (the selected epoch's inference weights
//! with the model card) and `metrics.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use hands_models::card::{
    ColourOrder, CrossValidation, InputSpec, NetworkSpec, Provenance, ResizeRule, TensorLayout,
    CARD_SCHEMA_VERSION,
};
use hands_models::lock::RunLock;
use hands_models::nn::model_file;
use hands_models::nn::network::{parameter_count, Network, NetworkConfig};
use hands_models::{Genotype, ModelCard};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::args::train::{SelectBy, TrainArgs};
use crate::checkpoint::load_varmap;
use crate::device::open_device;
use crate::eval::{evaluate, Evaluation};
use crate::learner::{EpochData, Learner, TrainState};
use crate::provenance::Selection;
use crate::resume::{self, changed_settings, Epochs};
use hands_data::{ChannelStats, Dataset, Fractions, ImageCache, Part, Split};
use hands_reports::outputs::{in_folder, Inputs};
use hands_reports::run_dir::{self, RunDir, FINISHED, TRAIN_FILES};
use hands_reports::runlog::RunLog;

/// The ChaCha stream of the training RNG (batch order, augmentation, drop path); the split
/// uses streams 0 and 1 of the same seed.
const TRAIN_STREAM: u64 = 2;

/// Refuses to select an epoch by the validation subjects where there are none
/// (`has_validation` false): every epoch would count as an improvement, so `accuracy` and
/// `loss` would silently keep the last one. `what` names what left none.
pub(crate) fn check_selection(
    select: SelectBy,
    has_validation: bool,
    what: impl std::fmt::Display,
) -> Result<()> {
    if !has_validation && select != SelectBy::Last {
        bail!(
            "{what} leaves no validation subjects to select an epoch by: add --select last \
             to keep the last epoch"
        );
    }
    Ok(())
}

/// `metrics.json`: the figures of the selected epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainMetrics {
    /// The epoch whose weights were kept.
    pub selected_epoch: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// Training seconds, all invocations.
    pub train_seconds: f64,
    /// Learnable parameters of the inference network.
    pub parameters: usize,
    /// The selected weights on the validation subjects (absent without any).
    pub val: Option<Evaluation>,
    /// The selected weights on the test subjects (absent with `--test-share 0`).
    pub test: Option<Evaluation>,
}

/// What a finished (or stopped) training run produced.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The run folder.
    pub out: PathBuf,
    /// Epochs completed.
    pub epochs_done: usize,
    /// The final figures, when all epochs are done.
    pub metrics: Option<TrainMetrics>,
}

/// `hands-search train`.
pub fn run_train(args: &TrainArgs) -> Result<()> {
    let outcome = train(args)?;
    match &outcome.metrics {
        Some(metrics) => {
            match &metrics.test {
                Some(test) => print!("{test}"),
                None => println!("no test subjects (--test-share 0)"),
            }
            eprintln!(
                "selected epoch {} of {}; written: {}, {}",
                metrics.selected_epoch,
                metrics.epochs,
                outcome.out.join(run_dir::MODEL).display(),
                outcome.out.join(run_dir::METRICS).display()
            );
        }
        None => eprintln!(
            "stopped after {} epochs; continue with: hands-search train --resume --out {}",
            outcome.epochs_done,
            outcome.out.display()
        ),
    }
    Ok(())
}

/// Trains as `hands-search train` does and returns what it produced.
pub fn train(cli: &TrainArgs) -> Result<TrainOutcome> {
    let run = RunDir::new(cli.out_dir());
    let _lock = RunLock::folder(run.path())?;
    let device = open_device(cli.run.device)?;
    let (mut state, tensors) = open_state(cli, &run, &device)?;
    let args = state.args.clone();
    let genotype = Genotype::resolve(&args.genotype)?;
    if !args.run.resume {
        check_search_finished(&args, &genotype)?;
    }
    let cross_validation = args
        .cross_validation
        .as_ref()
        .map(|dir| crate::cv_report::recipe_figures(dir, &args, &genotype))
        .transpose()?;

    // Data: the split is drawn (or copied) once and read back from the run folder after.
    let dataset = Dataset::load(&args.data.path, &args.data.aspect)?;
    let split = prepare_split(&args, &mut state, &dataset, &run)?;
    let cache = ImageCache::build(&dataset, args.data.size)?;
    let data = EpochData::new(
        &args,
        &dataset,
        (&split, &state.split_source),
        &cache,
        &device,
    )?;

    let mut learner = Learner::new(&args, &genotype, dataset.labels().len(), &device)?;
    if let Some(tensors) = &tensors {
        learner.restore(tensors, state.best.is_some(), &run.checkpoint())?;
    }
    let mut log = RunLog::open(&run.train_log(), args.run.resume.then_some(state.epoch))?;
    while state.epoch < args.optimiser.epochs {
        if args.run.stop_after.is_some_and(|n| state.epoch >= n) {
            return Ok(TrainOutcome {
                out: run.path().to_path_buf(),
                epochs_done: state.epoch,
                metrics: None,
            });
        }
        let record = learner.epoch(&args, &data, &dataset, &mut state)?;
        // Checkpoint first, then log: a kill between the two loses a log line that the
        // resumed run writes again, never a checkpoint.
        learner.save_checkpoint(&run.checkpoint(), &state)?;
        log.write(&record)?;
    }

    let trained = Trained {
        state: &state,
        genotype: &genotype,
        cross_validation,
        best_weights: learner.best_weights.context("no epoch was trained")?,
    };
    let metrics = finish(&args, trained, &dataset, &split, &data, &run, &device)?;
    Ok(TrainOutcome {
        out: run.path().to_path_buf(),
        epochs_done: state.epoch,
        metrics: Some(metrics),
    })
}

/// The state of the run, its settings included: the one stored in its checkpoint (with the
/// tensors to restore) under `--resume`, else a fresh state for `cli`'s settings.
fn open_state(
    cli: &TrainArgs,
    run: &RunDir,
    device: &Device,
) -> Result<(TrainState, Option<HashMap<String, Tensor>>)> {
    if cli.run.resume {
        let (tensors, mut state): (_, TrainState) = resume::stored_state(run, device, "training")?;
        resume_settings(&mut state, cli, run.path())?;
        eprintln!(
            "resuming {} after epoch {} of {} (settings from the checkpoint)",
            run.path().display(),
            state.epoch,
            state.args.optimiser.epochs
        );
        return Ok((state, Some(tensors)));
    }
    cli.check()?;
    resume::refuse_existing_checkpoint(run, "training")?;
    let mut rng = ChaCha8Rng::seed_from_u64(cli.run.seed);
    rng.set_stream(TRAIN_STREAM);
    let state = TrainState {
        args: cli.clone(),
        epoch: 0,
        rng,
        best: None,
        seconds: 0.0,
        split_source: String::new(),
    };
    Ok((state, None))
}

/// The run's subject split: read back from the run folder when resuming; else taken from
/// `--split-file` (or the search run's split) or drawn, checked, and saved with the run's
/// settings. Refuses a run folder that holds one of the inputs, and a split without
/// validation subjects unless the last epoch is kept (nothing to select by).
fn prepare_split(
    args: &TrainArgs,
    state: &mut TrainState,
    dataset: &Dataset,
    run: &RunDir,
) -> Result<Split> {
    let mut inputs = Inputs::of_data(&args.data.path, dataset);
    inputs.add(Path::new(&args.genotype));
    if let Some(search) = args.search_run() {
        inputs.add(search.path());
    }
    if let (Some(split), false) = (args.split_source(), args.run.resume) {
        inputs.add(&split);
    }
    if let Some(cv) = &args.cross_validation {
        inputs.add(cv);
    }
    let out = run.path();
    inputs.check(in_folder(out, &TRAIN_FILES))?;
    let split_path = run.split();
    if args.run.resume {
        let split = Split::load(&split_path)?;
        split.check(dataset, &split_path)?;
        return Ok(split);
    }
    let (split, source) = match args.split_source() {
        Some(path) => {
            let split = Split::load(&path)?;
            split.check(dataset, &path).with_context(|| {
                format!(
                    "the split {} does not fit --data {} (pass another --split-file)",
                    path.display(),
                    args.data.path.display()
                )
            })?;
            (split, path.display().to_string())
        }
        None => {
            let fractions = Fractions {
                train: 1.0 - Fractions::default().val - args.test_share,
                val: Fractions::default().val,
                test: args.test_share,
            };
            (
                Split::new(dataset, fractions, args.run.seed)?,
                format!("drawn with seed {}", args.run.seed),
            )
        }
    };
    check_trainable(&args.data.path, dataset, &split, &source)?;
    check_selection(
        args.select,
        !split.val.subjects.is_empty(),
        format!("the split ({source})"),
    )?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    split.save(&split_path)?;
    state.split_source = source;
    hands_models::output::write_atomic(
        &run.config(),
        (serde_json::to_string_pretty(args)? + "\n").as_bytes(),
    )?;
    Ok(split)
}

/// Takes the per-invocation settings of `given` into a resumed run's stored settings and
/// refuses any other setting given differently, except `--epochs` with `--extend-epochs`.
fn resume_settings(state: &mut TrainState, given: &TrainArgs, out: &Path) -> Result<()> {
    let changes = changed_settings(
        &state.args,
        given,
        given.run.explicit.as_deref(),
        &resume::PER_INVOCATION,
    )?;
    let epochs = Epochs {
        stored: state.args.optimiser.epochs,
        given: given.optimiser.epochs,
        done: state.epoch,
    };
    state.args.optimiser.epochs = resume::resumed_epochs(
        out,
        changes,
        given.run.extend_epochs,
        epochs,
        ("", "epochs"),
    )?;
    state.args.run.resume = true;
    state.args.run.out = Some(out.to_path_buf());
    state.args.run.device = given.run.device;
    state.args.run.stop_after = given.run.stop_after;
    state.args.check()
}

/// What training reads of a search run's `finished.json` (`hands_nas::search::Finished`
/// writes more).
#[derive(Deserialize)]
struct FinishedSearch {
    /// Epochs run, over all stages.
    epochs: usize,
    /// The final genotype (the one in `genotype.json`).
    genotype: Genotype,
}

/// A genotype from a search run folder must be the one the search finished with (its
/// `finished.json`), unless `--allow-unfinished`; says which genotype is trained.
fn check_search_finished(args: &TrainArgs, genotype: &Genotype) -> Result<()> {
    let Some(run) = args.search_run() else {
        return Ok(());
    };
    let finished_path = run.finished();
    if finished_path.is_file() {
        let text = std::fs::read_to_string(&finished_path)
            .with_context(|| format!("cannot read {}", finished_path.display()))?;
        let finished: FinishedSearch = serde_json::from_str(&text).with_context(|| {
            format!("{}: not a finished-search record", finished_path.display())
        })?;
        if finished.genotype != *genotype {
            bail!(
                "{}: its genotype is not the one the search finished with ({}): was it changed \
                 after the search?",
                args.genotype,
                finished_path.display()
            );
        }
        eprintln!(
            "genotype: the final one of search {} ({} epochs)",
            run.path().display(),
            finished.epochs
        );
        return Ok(());
    }
    let last = last_logged_epoch(&run.search_log());
    let at = last.map_or("no epoch logged".to_string(), |e| format!("epoch {e}"));
    if !args.allow_unfinished {
        bail!(
            "{} is a search that has not finished (no {FINISHED}; last logged: {at}): \
             finish it with `hands-search search --resume --out {}`, or pass \
             --allow-unfinished to train its current genotype",
            run.path().display(),
            run.path().display()
        );
    }
    eprintln!(
        "warning: {} has not finished; training its genotype of {at} (--allow-unfinished)",
        run.path().display()
    );
    Ok(())
}

/// The `epoch` of the last record of a JSON-lines log, if any.
fn last_logged_epoch(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|record| record.get("epoch")?.as_u64())
}

/// Refuses data and splits that cannot train before any epoch: fewer than two classes in
/// the training subjects, or test subjects without images of every class of the data (the
/// mean class accuracy would not be measured).
fn check_trainable(data: &Path, dataset: &Dataset, split: &Split, source: &str) -> Result<()> {
    let counts = dataset.label_counts();
    let names = |part: &hands_data::Part, want: fn(usize, usize) -> bool| -> Vec<String> {
        dataset
            .labels()
            .iter()
            .zip(&part.label_images)
            .zip(&counts)
            .filter(|((_, &n), &total)| want(n, total))
            .map(|((l, _), _)| l.clone())
            .collect()
    };
    let present = counts.iter().filter(|&&n| n > 0).count();
    if present < 2 {
        bail!(
            "{}: all {} images are of one class: training needs images of at least two classes",
            data.display(),
            dataset.len()
        );
    }
    let trained = names(&split.train, |n, _| n > 0);
    if trained.len() < 2 {
        bail!(
            "{}: the training subjects of the split ({source}) have images of {} only: training \
             needs at least two classes (more subjects are needed)",
            data.display(),
            if trained.is_empty() {
                "no class".to_string()
            } else {
                trained.join(", ")
            }
        );
    }
    let untested = names(&split.test, |n, total| n == 0 && total > 0);
    if !untested.is_empty() && !split.test.subjects.is_empty() {
        bail!(
            "{}: the test subjects of the split ({source}) have no images of {}: the result \
             could not be measured on every class (more subjects are needed)",
            data.display(),
            untested.join(", ")
        );
    }
    Ok(())
}

/// Writes a model file ([`model_file::serialize`]: the inference network's tensors, see
/// [`crate::checkpoint::inference_tensors`], with `card` validated and in the metadata), atomically.
pub fn write_model(path: &Path, tensors: &[(String, Tensor)], card: &ModelCard) -> Result<()> {
    let bytes = model_file::serialize(tensors, card)
        .with_context(|| format!("{}: cannot write the model file", path.display()))?;
    hands_models::output::write_atomic(path, &bytes)?;
    Ok(())
}

/// What the epochs leave for the model file: the run's state, its genotype, the recipe's
/// cross-validated figures and the selected epoch's weights.
struct Trained<'a> {
    state: &'a TrainState,
    genotype: &'a Genotype,
    cross_validation: Option<CrossValidation>,
    best_weights: Vec<(String, Tensor)>,
}

/// Loads the selected weights into an inference network, measures it on the validation
/// and test subjects, and writes `model.safetensors` and `metrics.json`.
fn finish(
    args: &TrainArgs,
    trained: Trained<'_>,
    dataset: &Dataset,
    split: &Split,
    data: &EpochData<'_>,
    run: &RunDir,
    device: &Device,
) -> Result<TrainMetrics> {
    let best = trained.state.best.context("no epoch was selected")?;
    let config = NetworkConfig {
        init_channels: args.network.init_channels,
        layers: args.network.layers,
        stem_stride: args.network.stem_stride,
        num_classes: dataset.labels().len(),
        auxiliary: false,
    };
    let varmap = VarMap::new();
    let network = Network::new(
        trained.genotype,
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, device),
    )?;
    let model_path = run.model();
    let best_map: HashMap<String, Tensor> = trained.best_weights.iter().cloned().collect();
    load_varmap(&varmap, &best_map, "", &model_path)?;
    let parameters = parameter_count(&varmap, false);

    let evaluate_part = |part: &Part, name: &str| -> Result<Option<Evaluation>> {
        let indices = part.indices(dataset);
        if indices.is_empty() {
            return Ok(None);
        }
        Ok(Some(evaluate(
            &network,
            &data.eval_loader,
            dataset,
            &indices,
            name,
        )?))
    };
    let val = evaluate_part(&split.val, "val")?;
    let test = evaluate_part(&split.test, "test")?;
    let card = model_card(
        args, &trained, dataset, split, data.stats, parameters, &test,
    )?;
    write_model(&model_path, &trained.best_weights, &card)?;

    let metrics = TrainMetrics {
        selected_epoch: best.epoch,
        epochs: args.optimiser.epochs,
        train_seconds: trained.state.seconds,
        parameters,
        val,
        test,
    };
    hands_models::output::write_atomic(
        &run.metrics(),
        (serde_json::to_string_pretty(&metrics)? + "\n").as_bytes(),
    )?;
    Ok(metrics)
}

/// The model card of the trained network: its input, genotype, size, test figures,
/// cross-validated figures and provenance (the settings, split and subjects it has seen).
fn model_card(
    args: &TrainArgs,
    trained: &Trained<'_>,
    dataset: &Dataset,
    split: &Split,
    stats: ChannelStats,
    parameters: usize,
    test: &Option<Evaluation>,
) -> Result<ModelCard> {
    let best = trained.state.best.context("no epoch was selected")?;
    // Who the model has seen, so that `eval` can tell a split that tests on them.
    let settings = Selection {
        selected_epoch: best.epoch,
        split: trained.state.split_source.clone(),
        train_subjects: split.train.subjects.iter().cloned().collect(),
        val_subjects: split.val.subjects.iter().cloned().collect(),
    }
    .record(args)?;
    let mut card = ModelCard {
        schema_version: CARD_SCHEMA_VERSION,
        labels: dataset.labels().to_vec(),
        input: InputSpec {
            size: args.data.size,
            layout: TensorLayout::Nchw,
            colour: ColourOrder::Rgb,
            resize: ResizeRule::StretchBilinear,
            mean: stats.mean,
            std: stats.std,
        },
        genotype: trained.genotype.clone(),
        network: NetworkSpec {
            init_channels: args.network.init_channels,
            layers: args.network.layers,
            stem_stride: args.network.stem_stride,
            auxiliary: false,
            parameters,
            multiply_adds: None, // counted from the card below
            latency: Vec::new(),
        },
        metrics: test.as_ref().map(Evaluation::card_metrics).transpose()?,
        cross_validation: trained.cross_validation.clone(),
        calibration: None,
        provenance: Provenance {
            data: args.data.path.display().to_string(),
            genotype_source: args.genotype.clone(),
            train: settings,
            seed: args.run.seed,
            tool_version: concat!("hands-search ", env!("CARGO_PKG_VERSION")).to_string(),
        },
    };
    card.network.multiply_adds = Some(card.counted_multiply_adds());
    Ok(card)
}
