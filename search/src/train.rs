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
use clap::Args;
use hands_models::card::{
    CrossValidation, InputSpec, NetworkSpec, Provenance, ResizeRule, CARD_SCHEMA_VERSION,
};
use hands_models::genotype::GENOTYPE_FILE;
use hands_models::nn::model_file;
use hands_models::nn::network::{parameter_count, Network, NetworkConfig};
use hands_models::plan::{is_under, AUXILIARY};
use hands_models::{Genotype, ModelCard};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{load_varmap, varmap_tensors};
use crate::data::{
    AspectFilter, AugmentRecipe, ChannelStats, Dataset, Fractions, ImageCache, Part, Split,
};
use crate::device::DeviceChoice;
use crate::eval::{evaluate, Evaluation};
use crate::flags;
use crate::learner::{EpochData, Learner};
use crate::outputs::{in_folder, Inputs};
use crate::resume::{self, changed_settings, Epochs};
use crate::run_dir::{self, RunDir, FINISHED, TRAIN_FILES};
use crate::runlog::RunLog;
use crate::search::Finished;

/// The ChaCha stream of the training RNG (batch order, augmentation, drop path); the split
/// uses streams 0 and 1 of the same seed.
const TRAIN_STREAM: u64 = 2;

/// Arguments of `hands-search train`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, PartialEq)]
pub struct TrainArgs {
    /// Dataset folder: 11K Hands (HandInfo.csv + images) or one sub-folder per class.
    #[arg(long)]
    pub data: PathBuf,
    /// The genotype: a published name (DARTS_V1, DARTS_V2, PC_DARTS_cifar, PDARTS),
    /// `random:SEED` (drawn uniformly from the search space, the random baseline), a search run
    /// folder (its genotype.json, and its split.json unless --split-file), or a file in JSON or
    /// DARTS' Python notation.
    #[arg(long)]
    pub genotype: String,
    /// Channels of the first cell (C, 1 to 256).
    #[arg(long, default_value_t = 16, value_parser = flags::usize_in(flags::INIT_CHANNELS))]
    pub init_channels: usize,
    /// Number of cells (3 to 64).
    #[arg(long, default_value_t = 8, value_parser = flags::usize_in(flags::TRAIN_LAYERS))]
    pub layers: usize,
    /// Side of the square input images (8 to 512).
    #[arg(long, default_value_t = 64, value_parser = flags::u32_in(flags::SIZE))]
    pub size: u32,
    /// Training epochs.
    #[arg(long, default_value_t = 100, value_parser = flags::usize_in(flags::EPOCHS))]
    pub epochs: usize,
    /// Batch size (1 to 1024).
    #[arg(long, default_value_t = 32, value_parser = flags::usize_in(flags::BATCH))]
    pub batch: usize,
    /// Initial learning rate (cosine annealed per epoch).
    #[arg(long, default_value_t = 0.025, value_parser = flags::positive)]
    pub lr: f64,
    /// Final learning rate of the cosine schedule.
    #[arg(long, default_value_t = 0.0, value_parser = flags::non_negative)]
    pub lr_min: f64,
    /// SGD momentum, in [0, 1).
    #[arg(long, default_value_t = 0.9, value_parser = flags::fraction)]
    pub momentum: f64,
    /// Weight decay (L2, added to the gradient).
    #[arg(long, default_value_t = 3e-4, value_parser = flags::non_negative)]
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    #[arg(long, default_value_t = 5.0, value_parser = flags::positive)]
    pub grad_clip: f64,
    /// Weight of the auxiliary head's loss (0 builds no auxiliary head).
    #[arg(long, default_value_t = 0.4, value_parser = flags::non_negative)]
    pub auxiliary_weight: f64,
    /// Final drop-path probability, ramped linearly from 0 over the epochs; in [0, 1).
    #[arg(long, default_value_t = 0.2, value_parser = flags::fraction)]
    pub drop_path: f64,
    /// Cutout square side in pixels (0 = off; at most 512).
    #[arg(long, default_value_t = 16, value_parser = flags::u32_in(0..=512))]
    pub cutout: u32,
    /// Label smoothing of the cross-entropy loss, in [0, 1).
    #[arg(long, default_value_t = 0.0, value_parser = flags::fraction)]
    pub label_smoothing: f64,
    /// How the loss weighs the classes: `balanced` (each class by N / (K n_c) over the
    /// training images) or `none`.
    #[arg(long, value_enum, default_value_t = ClassWeight::Balanced)]
    #[serde(default = "unweighted")]
    pub class_weight: ClassWeight,
    /// Training augmentation: `photo` (random resized crop, rotation, flip, colour jitter) or
    /// `darts` (DARTS' padded crop and flip); --cutout is added to either.
    #[arg(long, value_enum, default_value_t = AugmentRecipe::Photo)]
    #[serde(default = "darts_augment")]
    pub augment: AugmentRecipe,
    /// Random seed (split when drawn here, initialisation, batches, augmentation, drop path).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run folder (default: `<search run>/train` for a run-folder genotype, else
    /// `runs/train-<genotype>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its checkpoint, with its settings (a setting given
    /// differently is refused).
    #[arg(long)]
    pub resume: bool,
    /// With --resume: train to this invocation's --epochs instead of the run's.
    #[arg(long, requires = "resume")]
    #[serde(default)]
    pub extend_epochs: bool,
    /// Train the genotype of a search run folder that has not finished (its genotype of the
    /// last epoch run); without it such a folder is refused.
    #[arg(long)]
    #[serde(default)]
    pub allow_unfinished: bool,
    /// Which hand aspects to use.
    #[arg(long, value_enum, default_value_t = AspectFilter::All)]
    pub aspect: AspectFilter,
    /// The subject split to use (default: the search run's split.json when --genotype is a
    /// run folder or a file in one, else a new split drawn with --seed).
    #[arg(long)]
    pub split_file: Option<PathBuf>,
    /// Share of the subjects (per label) held out as test subjects when the split is drawn
    /// here; the validation share is 0.15. 0 trains on every subject but the validation ones
    /// (a final model, measured by cross-validation instead).
    #[arg(long, default_value_t = 0.15, value_parser = flags::test_share)]
    #[serde(default = "default_test_share")]
    pub test_share: f64,
    /// A `hands-search cv` run folder that cross-validated this training's genotype with
    /// this training's settings: its figures go into the model card as the headline metrics
    /// (refused when the settings differ).
    #[arg(long)]
    #[serde(default)]
    pub cross_validation: Option<PathBuf>,
    /// Compute device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// End this invocation once this many epochs are complete; continue with --resume.
    #[arg(long)]
    #[serde(skip)]
    pub stop_after: Option<usize>,
    /// The settings given on the command line (field names; set by the binary), which a
    /// resumed run compares with the run's; `None` compares every setting.
    #[arg(skip)]
    #[serde(skip)]
    pub explicit: Option<Vec<String>>,
}

/// The class weighting of runs written before `--class-weight` existed.
fn unweighted() -> ClassWeight {
    ClassWeight::None
}

/// The test share of runs written before `--test-share` existed.
fn default_test_share() -> f64 {
    0.15
}

/// The augmentation of runs written before `--augment` existed.
fn darts_augment() -> AugmentRecipe {
    AugmentRecipe::Darts
}

impl TrainArgs {
    /// The settings with every default and the given data and genotype (for tests and
    /// programs that embed the trainer).
    pub fn new(data: impl Into<PathBuf>, genotype: &str) -> TrainArgs {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: TrainArgs,
        }
        let data = data.into();
        let mut args =
            <Wrapper as clap::Parser>::parse_from(["train", "--data", "_", "--genotype", genotype])
                .args;
        args.data = data;
        args
    }

    /// The run folder.
    pub fn out_dir(&self) -> PathBuf {
        if let Some(out) = &self.out {
            return out.clone();
        }
        let genotype = Path::new(&self.genotype);
        if genotype.is_dir() {
            return genotype.join("train");
        }
        let stem = genotype
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.genotype.clone());
        PathBuf::from("runs").join(format!("train-{stem}"))
    }

    /// The split file to reuse, if any: --split-file, else `split.json` of the search run
    /// folder the genotype comes from.
    fn split_source(&self) -> Option<PathBuf> {
        if let Some(path) = &self.split_file {
            return Some(path.clone());
        }
        let genotype = Path::new(&self.genotype);
        let folder = if genotype.is_dir() {
            Some(genotype)
        } else if genotype.is_file() {
            genotype.parent()
        } else {
            None
        };
        folder
            .map(|f| RunDir::new(f).split())
            .filter(|path| path.is_file())
    }

    /// The search run folder the genotype comes from: `--genotype` naming a folder with a
    /// `search.jsonl`, or that folder's `genotype.json`.
    fn search_run(&self) -> Option<RunDir> {
        let genotype = Path::new(&self.genotype);
        let folder = if genotype.is_dir() {
            genotype
        } else if genotype.file_name().is_some_and(|n| n == GENOTYPE_FILE) {
            genotype.parent().filter(|p| !p.as_os_str().is_empty())?
        } else {
            return None;
        };
        let run = RunDir::new(folder);
        run.search_log().is_file().then_some(run)
    }

    /// Checks every setting against its flag's range, for settings that did not come
    /// through the command-line parser (a library caller, a resumed run's stored settings).
    pub fn check(&self) -> Result<()> {
        flags::check_range("init-channels", self.init_channels, flags::INIT_CHANNELS)?;
        flags::check_range("layers", self.layers, flags::TRAIN_LAYERS)?;
        flags::check_range("size", self.size as usize, flags::SIZE)?;
        flags::check_range("epochs", self.epochs, flags::EPOCHS)?;
        flags::check_range("batch", self.batch, flags::BATCH)?;
        flags::check_range("cutout", self.cutout as usize, 0..=512)?;
        flags::check_value("lr", self.lr, flags::positive)?;
        flags::check_value("lr-min", self.lr_min, flags::non_negative)?;
        flags::check_value("momentum", self.momentum, flags::fraction)?;
        flags::check_value("weight-decay", self.weight_decay, flags::non_negative)?;
        flags::check_value("grad-clip", self.grad_clip, flags::positive)?;
        flags::check_value(
            "auxiliary-weight",
            self.auxiliary_weight,
            flags::non_negative,
        )?;
        flags::check_value("drop-path", self.drop_path, flags::fraction)?;
        flags::check_value("test-share", self.test_share, flags::test_share)?;
        flags::check_value("label-smoothing", self.label_smoothing, flags::fraction)
    }
}

/// The best epoch so far, chosen on validation mean per-class accuracy (ties: lower
/// validation loss), so that a model answering the majority class is never preferred.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// The epoch (0-based).
    pub epoch: usize,
    /// Its validation mean per-class accuracy.
    pub val_mean_class_accuracy: f64,
    /// Its validation loss.
    pub val_loss: f64,
}

impl Best {
    pub(crate) fn improved_by(&self, mean_class_accuracy: f64, loss: f64) -> bool {
        mean_class_accuracy > self.val_mean_class_accuracy
            || (mean_class_accuracy == self.val_mean_class_accuracy && loss < self.val_loss)
    }
}

/// The run state stored in the checkpoint's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TrainState {
    /// The run's settings.
    pub(crate) args: TrainArgs,
    /// Epochs completed.
    pub(crate) epoch: usize,
    /// The training RNG where the next epoch starts.
    pub(crate) rng: ChaCha8Rng,
    /// The best epoch so far.
    pub(crate) best: Option<Best>,
    /// Training seconds spent so far (all invocations).
    pub(crate) seconds: f64,
    /// Where the split came from.
    pub(crate) split_source: String,
}

/// One line of `train.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch (0-based).
    pub epoch: usize,
    /// Its learning rate.
    pub lr: f64,
    /// Its drop-path probability.
    pub drop_path: f64,
    /// Mean training loss of the main head (augmented images, drop path on).
    pub train_loss: f64,
    /// Training accuracy under the same conditions.
    pub train_acc: f64,
    /// Validation loss (evaluation mode), when there are validation subjects.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_acc: Option<f64>,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
    /// Training images divided by the epoch's seconds (validation included).
    #[serde(default)]
    pub images_per_s: f64,
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
            "stopped after {} epochs; continue with: --resume --out {}",
            outcome.epochs_done,
            outcome.out.display()
        ),
    }
    Ok(())
}

/// Trains as `hands-search train` does and returns what it produced.
pub fn train(cli: &TrainArgs) -> Result<TrainOutcome> {
    let run = RunDir::new(cli.out_dir());
    let device = cli.device.open()?;
    let (mut state, tensors) = open_state(cli, &run, &device)?;
    let args = state.args.clone();
    let genotype = Genotype::resolve(&args.genotype)?;
    if !args.resume {
        check_search_finished(&args, &genotype)?;
    }
    let cross_validation = args
        .cross_validation
        .as_ref()
        .map(|dir| crate::cv::recipe_figures(dir, &args, &genotype))
        .transpose()?;

    // Data: the split is drawn (or copied) once and read back from the run folder after.
    let dataset = Dataset::load(&args.data, &args.aspect)?;
    let split = prepare_split(&args, &mut state, &dataset, &run)?;
    let cache = ImageCache::build(&dataset, args.size)?;
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
    let mut log = RunLog::open(&run.train_log(), args.resume.then_some(state.epoch))?;
    while state.epoch < args.epochs {
        if args.stop_after.is_some_and(|n| state.epoch >= n) {
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
    if cli.resume {
        let (tensors, mut state): (_, TrainState) = resume::stored_state(run, device, "training")?;
        resume_settings(&mut state, cli, run.path())?;
        eprintln!(
            "resuming {} after epoch {} of {} (settings from the checkpoint)",
            run.path().display(),
            state.epoch,
            state.args.epochs
        );
        return Ok((state, Some(tensors)));
    }
    cli.check()?;
    resume::refuse_existing_checkpoint(run, "training")?;
    let mut rng = ChaCha8Rng::seed_from_u64(cli.seed);
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
/// settings. Refuses a run folder that holds one of the inputs.
fn prepare_split(
    args: &TrainArgs,
    state: &mut TrainState,
    dataset: &Dataset,
    run: &RunDir,
) -> Result<Split> {
    let mut inputs = Inputs::of_data(&args.data, dataset);
    inputs.add(Path::new(&args.genotype));
    if let Some(search) = args.search_run() {
        inputs.add(search.path());
    }
    if let (Some(split), false) = (args.split_source(), args.resume) {
        inputs.add(&split);
    }
    if let Some(cv) = &args.cross_validation {
        inputs.add(cv);
    }
    let out = run.path();
    inputs.check(in_folder(out, &TRAIN_FILES))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let split_path = run.split();
    if args.resume {
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
                    args.data.display()
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
                Split::new(dataset, fractions, args.seed)?,
                format!("drawn with seed {}", args.seed),
            )
        }
    };
    check_trainable(&args.data, dataset, &split, &source)?;
    split.save(&split_path)?;
    state.split_source = source;
    hands_models::output::write_atomic(
        &run.config(),
        (serde_json::to_string_pretty(args)? + "\n").as_bytes(),
    )?;
    Ok(split)
}

impl std::fmt::Display for EpochRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "epoch {}: lr {:.5} train loss {:.4} acc {:.4}",
            self.epoch, self.lr, self.train_loss, self.train_acc
        )?;
        if let (Some(loss), Some(acc)) = (self.val_loss, self.val_acc) {
            write!(f, " | val loss {loss:.4} acc {acc:.4}")?;
        }
        write!(
            f,
            " ({:.1} s, {:.1} training images/s)",
            self.seconds, self.images_per_s
        )
    }
}

/// Takes the per-invocation settings of `given` into a resumed run's stored settings and
/// refuses any other setting given differently, except `--epochs` with `--extend-epochs`.
fn resume_settings(state: &mut TrainState, given: &TrainArgs, out: &Path) -> Result<()> {
    let changes = changed_settings(
        &state.args,
        given,
        given.explicit.as_deref(),
        &resume::PER_INVOCATION,
    )?;
    let epochs = Epochs {
        stored: state.args.epochs,
        given: given.epochs,
        done: state.epoch,
    };
    state.args.epochs =
        resume::resumed_epochs(out, changes, given.extend_epochs, epochs, ("", "epochs"))?;
    state.args.resume = true;
    state.args.out = Some(out.to_path_buf());
    state.args.device = given.device;
    state.args.stop_after = given.stop_after;
    state.args.check()
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
        let finished: Finished = serde_json::from_str(&text).with_context(|| {
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
    let names = |part: &crate::data::Part, want: fn(usize, usize) -> bool| -> Vec<String> {
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

/// How the training loss weighs the classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Every image counts the same (the majority class dominates the loss).
    None,
    /// Each class weighted by `N / (K * n_c)` over the training images (scikit-learn's
    /// `balanced`), so every class contributes equally.
    Balanced,
}

impl ClassWeight {
    /// The per-class weights for training images with `counts[c]` images of class `c`
    /// (`None` for unweighted); a class without images gets weight 0.
    pub fn weights(self, counts: &[usize]) -> Option<Vec<f32>> {
        match self {
            ClassWeight::None => None,
            ClassWeight::Balanced => {
                let total: usize = counts.iter().sum();
                let classes = counts.iter().filter(|&&n| n > 0).count().max(1);
                Some(
                    counts
                        .iter()
                        .map(|&n| {
                            if n == 0 {
                                0.0
                            } else {
                                total as f32 / (classes as f32 * n as f32)
                            }
                        })
                        .collect(),
                )
            }
        }
    }
}

/// The tensors of the inference network (auxiliary head left out), named like its module
/// tree, with `prefix`.
pub fn inference_tensors(varmap: &VarMap, prefix: &str) -> Result<Vec<(String, Tensor)>> {
    Ok(varmap_tensors(varmap, prefix, |name| {
        !is_under(name, AUXILIARY)
    })?)
}

/// Writes a model file ([`model_file::serialize`]: the inference network's tensors, see
/// [`inference_tensors`], with `card` validated and in the metadata), atomically.
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
        init_channels: args.init_channels,
        layers: args.layers,
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
        epochs: args.epochs,
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
    let mut settings = serde_json::to_value(args)?;
    if let serde_json::Value::Object(map) = &mut settings {
        map.remove("resume");
        map.remove("out");
        map.insert("selected_epoch".into(), best.epoch.into());
        map.insert("split".into(), trained.state.split_source.clone().into());
        // Who the model has seen, so that `eval` can tell a split that tests on them.
        map.insert("train_subjects".into(), split.train.subjects.clone().into());
        map.insert("val_subjects".into(), split.val.subjects.clone().into());
    }
    Ok(ModelCard {
        schema_version: CARD_SCHEMA_VERSION,
        labels: dataset.labels().to_vec(),
        input: InputSpec {
            size: args.size,
            layout: "NCHW".into(),
            colour: "RGB".into(),
            resize: ResizeRule::StretchBilinear,
            mean: stats.mean,
            std: stats.std,
        },
        genotype: trained.genotype.clone(),
        network: NetworkSpec {
            init_channels: args.init_channels,
            layers: args.layers,
            auxiliary: false,
            parameters,
        },
        metrics: test.as_ref().map(Evaluation::card_metrics).transpose()?,
        cross_validation: trained.cross_validation.clone(),
        provenance: Provenance {
            data: args.data.display().to_string(),
            genotype_source: args.genotype.clone(),
            train: settings,
            seed: args.seed,
            tool_version: concat!("hands-search ", env!("CARGO_PKG_VERSION")).to_string(),
        },
    })
}
