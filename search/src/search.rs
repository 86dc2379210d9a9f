//! The `search` subcommand: bilevel architecture search (DARTS first and second order,
//! PC-DARTS, P-DARTS) on a hand dataset, with per-epoch genotypes, JSON-lines metrics and
//! atomic, resumable checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use hands_models::{Genotype, Op};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::data::{
    AspectFilter, Augment, Batch, ChannelStats, Dataset, Fractions, ImageCache, Loader, Part, Split,
};
use crate::device::DeviceChoice;
use crate::flags;
use crate::hessian;
use crate::outputs::{in_folder, Inputs};
use crate::pdarts::{prune_candidates, StagePlan};
use crate::resume::{self, changed_settings, Epochs};
use crate::run_dir::{RunDir, SEARCH_FILES};
use crate::runlog::RunLog;
use crate::stage_run::{ArchValues, StageRun};
use crate::supernet::{Supernet, SupernetConfig, EDGES};

/// The search algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    /// DARTS, first order: one weight step per architecture step.
    Darts,
    /// DARTS, unrolled second order with a finite-difference Hessian-vector product.
    Darts2,
    /// PC-DARTS: partial channels, edge normalisation, architecture warm-up.
    Pcdarts,
    /// P-DARTS: stages of growing depth with candidate pruning and skip-connect control.
    Pdarts,
}

/// Arguments of `hands-search search`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct SearchArgs {
    /// Dataset folder: 11K Hands (HandInfo.csv + images) or one sub-folder per class.
    #[arg(long)]
    pub data: PathBuf,
    /// Search algorithm. Each brings its paper's settings for --batch, --epochs, --lr,
    /// --lr-min, --arch-lr, --arch-warmup-epochs, --partial-k and --arch-grad-clip (see
    /// [`PaperDefaults`]),
    /// each overridden by its flag: darts and darts2 batch 64, 50 epochs, lr 0.025 to 0.001,
    /// arch lr 3e-4; pcdarts batch 256, 50 epochs, lr 0.1 to 0, arch lr 6e-4, 15 warm-up
    /// epochs, K 4; pdarts batch 96, 25 epochs per stage, lr 0.025 to 0, arch lr 6e-4,
    /// architecture gradients clipped at 5.
    #[arg(long, value_enum, default_value_t = Algo::Darts)]
    pub algo: Algo,
    /// Side of the square search images (8 to 512).
    #[arg(long, default_value_t = 64, value_parser = flags::u32_in(flags::SIZE))]
    pub size: u32,
    /// Batch size of both the weight and the architecture steps (1 to 1024) [pcdarts: 256,
    /// pdarts: 96].
    #[arg(long, default_value_t = Algo::Darts.paper_defaults().batch,
          value_parser = flags::usize_in(flags::BATCH))]
    pub batch: usize,
    /// Epochs (per stage for P-DARTS) [pdarts: 25].
    #[arg(long, default_value_t = Algo::Darts.paper_defaults().epochs,
          value_parser = flags::usize_in(flags::EPOCHS))]
    pub epochs: usize,
    /// Channels of the first cell (1 to 256; a multiple of --partial-k).
    #[arg(long, default_value_t = 16, value_parser = flags::usize_in(flags::INIT_CHANNELS))]
    pub init_channels: usize,
    /// Cells of the supernet (1 to 64; P-DARTS: see --stages).
    #[arg(long, default_value_t = 8, value_parser = flags::usize_in(flags::SEARCH_LAYERS))]
    pub layers: usize,
    /// Random seed (split, initialisation, batches, augmentation).
    #[arg(long, default_value_t = 2)]
    pub seed: u64,
    /// Run folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its checkpoint, with its settings (a setting given
    /// differently is refused).
    #[arg(long)]
    pub resume: bool,
    /// With --resume: run to this invocation's --epochs (per stage) instead of the run's.
    #[arg(long, requires = "resume")]
    #[serde(default)]
    pub extend_epochs: bool,
    /// Which hand aspects to use.
    #[arg(long, value_enum, default_value_t = AspectFilter::All)]
    pub aspect: AspectFilter,
    /// Weight learning rate (cosine annealed) [pcdarts: 0.1].
    #[arg(long, default_value_t = Algo::Darts.paper_defaults().lr, value_parser = flags::positive)]
    pub lr: f64,
    /// Final weight learning rate [pcdarts, pdarts: 0].
    #[arg(long, default_value_t = Algo::Darts.paper_defaults().lr_min,
          value_parser = flags::non_negative)]
    pub lr_min: f64,
    /// Weight momentum, in [0, 1).
    #[arg(long, default_value_t = 0.9, value_parser = flags::fraction)]
    pub momentum: f64,
    /// Weight decay of the weights.
    #[arg(long, default_value_t = 3e-4, value_parser = flags::non_negative)]
    pub weight_decay: f64,
    /// Gradient-norm clip of the weights.
    #[arg(long, default_value_t = 5.0, value_parser = flags::positive)]
    pub grad_clip: f64,
    /// Architecture learning rate (default 3e-4, 6e-4 for pcdarts and pdarts).
    #[arg(long, value_parser = flags::positive)]
    pub arch_lr: Option<f64>,
    /// Architecture weight decay.
    #[arg(long, default_value_t = 1e-3, value_parser = flags::non_negative)]
    pub arch_weight_decay: f64,
    /// Gradient-norm clip of the architecture parameters (default: none; 5 for pdarts, as
    /// P-DARTS clips them with its weights' clip).
    #[arg(long, value_parser = flags::positive)]
    #[serde(default)]
    pub arch_grad_clip: Option<f64>,
    /// PC-DARTS channel sampling factor K, 1 to 64 (default 4 for pcdarts, 1 otherwise).
    #[arg(long, value_parser = flags::usize_in(flags::PARTIAL_K))]
    pub partial_k: Option<usize>,
    /// Epochs with frozen architecture at the start, fewer than --epochs (default 15 for
    /// pcdarts, else 0; P-DARTS uses --stage-warmup).
    #[arg(long, value_parser = flags::usize_in(0..=*flags::EPOCHS.end()))]
    pub arch_warmup_epochs: Option<usize>,
    /// P-DARTS: cells per stage.
    #[arg(long, value_delimiter = ',', default_value = "5,11,17",
          value_parser = flags::usize_in(flags::SEARCH_LAYERS))]
    pub stages: Vec<usize>,
    /// P-DARTS: candidate operations per edge in each stage (1 to 8).
    #[arg(long, value_delimiter = ',', default_value = "8,5,3",
          value_parser = flags::usize_in(1..=Op::ALL.len() as u64))]
    pub stage_ops: Vec<usize>,
    /// P-DARTS: skip-connect dropout rate per stage, in [0, 1).
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.4,0.7",
          value_parser = flags::fraction)]
    pub skip_dropout: Vec<f64>,
    /// P-DARTS: weight-only warm-up epochs of each stage, fewer than --epochs.
    #[arg(long, default_value_t = Algo::Pdarts.paper_defaults().arch_warmup,
          value_parser = flags::usize_in(0..=*flags::EPOCHS.end()))]
    pub stage_warmup: usize,
    /// P-DARTS: most skip connections in the final normal cell (0 to 8).
    #[arg(long, default_value_t = 2, value_parser = flags::usize_in(0..=8))]
    pub max_skip: usize,
    /// β-DARTS' Beta-Decay regularisation of the architecture logits against collapse
    /// (`hands_search::architect::add_beta_decay`): its weight at the last epoch, reached
    /// linearly from 0 at the first architecture epoch of each stage; 0 turns it off.
    #[arg(long, default_value_t = 0.0, value_parser = flags::non_negative)]
    #[serde(default)]
    pub beta_decay: f64,
    /// R-DARTS' sharpness diagnostic: power iterations for the dominant eigenvalue of the
    /// Hessian of the validation loss w.r.t. the architecture parameters, taken after every
    /// epoch on one fixed batch of the architecture half and logged as `hessian_eigenvalue`
    /// (0 = off, at most 100; each iteration costs two forward-backward passes).
    #[arg(long, default_value_t = 0, value_parser = flags::usize_in(0..=100))]
    #[serde(default)]
    pub hessian_iterations: usize,
    /// R-DARTS' early stop (DARTS-ES): end the search once the eigenvalue averaged over the
    /// last --early-stop-window epochs exceeds this factor times its average over the window
    /// before, keeping the genotype of the last epoch before the rise (R-DARTS: 1.33, i.e.
    /// 1 / 0.75). Needs --hessian-iterations; not with pdarts.
    #[arg(long, value_parser = flags::positive)]
    #[serde(default)]
    pub early_stop_factor: Option<f64>,
    /// The early stop's window, in epochs (1 to 100; R-DARTS: 5).
    #[arg(long, default_value_t = 5, value_parser = flags::usize_in(1..=100))]
    #[serde(default = "default_early_stop_window")]
    pub early_stop_window: usize,
    /// Compute device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// End this invocation once this many epochs (over all stages) are complete; continue
    /// with --resume.
    #[arg(long)]
    #[serde(skip)]
    pub stop_after: Option<usize>,
    /// The settings given on the command line (field names; set by the binary), which a
    /// resumed run compares with the run's; `None` compares every setting.
    #[arg(skip)]
    #[serde(skip)]
    pub explicit: Option<Vec<String>>,
}

/// The settings an algorithm's paper and public code search with, which `--algo` brings
/// (quark0/darts `train_search.py`, yuhuixu1993/PC-DARTS `train_search.py`,
/// chenxin061/pdarts `train_search.py`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperDefaults {
    /// Batch size.
    pub batch: usize,
    /// Epochs (per stage for P-DARTS).
    pub epochs: usize,
    /// Initial weight learning rate.
    pub lr: f64,
    /// Final weight learning rate of the cosine schedule.
    pub lr_min: f64,
    /// Architecture learning rate (Adam).
    pub arch_lr: f64,
    /// Weight-only epochs before the first architecture step (P-DARTS: per stage).
    pub arch_warmup: usize,
    /// Channel sampling factor K.
    pub partial_k: usize,
    /// Gradient-norm clip of the architecture parameters, if any.
    pub arch_grad_clip: Option<f64>,
}

impl Algo {
    /// This algorithm's published search settings.
    pub fn paper_defaults(self) -> PaperDefaults {
        let darts = PaperDefaults {
            batch: 64,
            epochs: 50,
            lr: 0.025,
            lr_min: 0.001,
            arch_lr: 3e-4,
            arch_warmup: 0,
            partial_k: 1,
            arch_grad_clip: None,
        };
        match self {
            Algo::Darts | Algo::Darts2 => darts,
            Algo::Pcdarts => PaperDefaults {
                batch: 256,
                lr: 0.1,
                lr_min: 0.0,
                arch_lr: 6e-4,
                arch_warmup: 15,
                partial_k: 4,
                ..darts
            },
            Algo::Pdarts => PaperDefaults {
                batch: 96,
                epochs: 25,
                lr_min: 0.0,
                arch_lr: 6e-4,
                arch_warmup: 10,
                arch_grad_clip: Some(5.0),
                ..darts
            },
        }
    }
}

impl SearchArgs {
    /// Sets the settings of [`PaperDefaults`] that were not given on the command line
    /// (`explicit`; every one when it is `None`) to `algo`'s published values.
    pub fn apply_paper_defaults(&mut self) {
        let paper = self.algo.paper_defaults();
        let explicit = self.explicit.clone().unwrap_or_default();
        let given = |name: &str| explicit.iter().any(|n| n == name);
        if !given("batch") {
            self.batch = paper.batch;
        }
        if !given("epochs") {
            self.epochs = paper.epochs;
        }
        if !given("lr") {
            self.lr = paper.lr;
        }
        if !given("lr_min") {
            self.lr_min = paper.lr_min;
        }
    }

    pub(crate) fn arch_lr(&self) -> f64 {
        self.arch_lr.unwrap_or(self.algo.paper_defaults().arch_lr)
    }

    pub(crate) fn arch_grad_clip(&self) -> Option<f64> {
        self.arch_grad_clip
            .or(self.algo.paper_defaults().arch_grad_clip)
    }

    fn partial_k(&self) -> usize {
        self.partial_k
            .unwrap_or(self.algo.paper_defaults().partial_k)
    }

    fn arch_warmup(&self) -> usize {
        self.arch_warmup_epochs.unwrap_or(match self.algo {
            Algo::Pcdarts => {
                (self.algo.paper_defaults().arch_warmup).min(self.epochs.saturating_sub(1))
            }
            Algo::Pdarts => self.stage_warmup,
            _ => self.algo.paper_defaults().arch_warmup,
        })
    }

    /// The stages of the run: one for DARTS and PC-DARTS.
    pub fn plan(&self) -> Result<Vec<StagePlan>> {
        if self.algo != Algo::Pdarts {
            return Ok(vec![StagePlan {
                layers: self.layers,
                ops: Op::ALL.len(),
                skip_dropout: 0.0,
                epochs: self.epochs,
                warmup: self.arch_warmup(),
            }]);
        }
        let n = self.stages.len();
        if n == 0 || self.stage_ops.len() != n || self.skip_dropout.len() != n {
            bail!(
                "--stages, --stage-ops and --skip-dropout need the same number of entries \
                 (got {}, {}, {})",
                n,
                self.stage_ops.len(),
                self.skip_dropout.len()
            );
        }
        if self.stage_ops[0] > Op::ALL.len() || self.stage_ops.windows(2).any(|w| w[1] > w[0]) {
            bail!("--stage-ops must not grow and start at most at 8");
        }
        Ok((0..n)
            .map(|s| StagePlan {
                layers: self.stages[s],
                ops: self.stage_ops[s],
                skip_dropout: self.skip_dropout[s],
                epochs: self.epochs,
                warmup: self.arch_warmup(),
            })
            .collect())
    }

    /// Checks every setting against its flag's range and the settings against each other,
    /// for settings that did not come through the command-line parser (a library caller,
    /// a resumed run's stored settings).
    pub fn check(&self) -> Result<()> {
        flags::check_range("size", self.size as usize, flags::SIZE)?;
        flags::check_range("batch", self.batch, flags::BATCH)?;
        flags::check_range("epochs", self.epochs, flags::EPOCHS)?;
        flags::check_range("init-channels", self.init_channels, flags::INIT_CHANNELS)?;
        flags::check_range("layers", self.layers, flags::SEARCH_LAYERS)?;
        flags::check_range("partial-k", self.partial_k(), flags::PARTIAL_K)?;
        flags::check_range("max-skip", self.max_skip, 0..=8)?;
        for stage in &self.stages {
            flags::check_range("stages", *stage, flags::SEARCH_LAYERS)?;
        }
        for ops in &self.stage_ops {
            flags::check_range("stage-ops", *ops, 1..=Op::ALL.len() as u64)?;
        }
        for rate in &self.skip_dropout {
            flags::check_value("skip-dropout", *rate, flags::fraction)?;
        }
        flags::check_value("lr", self.lr, flags::positive)?;
        flags::check_value("lr-min", self.lr_min, flags::non_negative)?;
        flags::check_value("momentum", self.momentum, flags::fraction)?;
        flags::check_value("weight-decay", self.weight_decay, flags::non_negative)?;
        flags::check_value("grad-clip", self.grad_clip, flags::positive)?;
        flags::check_value("beta-decay", self.beta_decay, flags::non_negative)?;
        if let Some(clip) = self.arch_grad_clip {
            flags::check_value("arch-grad-clip", clip, flags::positive)?;
        }
        flags::check_value("arch-lr", self.arch_lr(), flags::positive)?;
        flags::check_value(
            "arch-weight-decay",
            self.arch_weight_decay,
            flags::non_negative,
        )?;
        if !self.init_channels.is_multiple_of(self.partial_k()) {
            bail!(
                "--init-channels {} is not a multiple of --partial-k {}: the partial channels \
                 would not cover the cells",
                self.init_channels,
                self.partial_k()
            );
        }
        flags::check_range("hessian-iterations", self.hessian_iterations, 0..=100)?;
        flags::check_range("early-stop-window", self.early_stop_window, 1..=100)?;
        if let Some(factor) = self.early_stop_factor {
            flags::check_value("early-stop-factor", factor, flags::positive)?;
            if self.hessian_iterations == 0 {
                bail!("--early-stop-factor watches the Hessian eigenvalue: give --hessian-iterations too");
            }
            if self.algo == Algo::Pdarts {
                bail!("--early-stop-factor stops a single-stage search: not with --algo pdarts");
            }
        }
        if self.arch_warmup() >= self.epochs {
            bail!(
                "the architecture warm-up ({} epochs; --arch-warmup-epochs, --stage-warmup for \
                 pdarts) leaves no architecture step in {} epochs: the genotype would come from \
                 untrained architecture weights",
                self.arch_warmup(),
                self.epochs
            );
        }
        self.plan().map(|_| ())
    }

    pub(crate) fn second_order(&self) -> bool {
        self.algo == Algo::Darts2
    }

    /// The settings with every default for `algo` and the given data (for tests, the step
    /// benchmark and programs that embed the search).
    pub fn new(data: impl Into<PathBuf>, algo: Algo) -> SearchArgs {
        let mut args = SearchArgs::parse_from(["search", "--data", ".", "--algo", algo.as_arg()]);
        args.data = data.into();
        args.apply_paper_defaults();
        args
    }
}

impl Algo {
    /// The command-line spelling.
    pub fn as_arg(self) -> &'static str {
        match self {
            Algo::Darts => "darts",
            Algo::Darts2 => "darts2",
            Algo::Pcdarts => "pcdarts",
            Algo::Pdarts => "pdarts",
        }
    }
}

/// Parses [`SearchArgs`] alone, as the `search` subcommand would.
#[derive(Debug, clap::Parser)]
struct SearchOnly {
    #[command(flatten)]
    args: SearchArgs,
}

impl SearchArgs {
    fn parse_from<I: IntoIterator<Item = &'static str>>(argv: I) -> SearchArgs {
        <SearchOnly as clap::Parser>::parse_from(argv).args
    }
}

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SearchState {
    pub(crate) args: SearchArgs,
    /// Stage being run.
    pub(crate) stage: usize,
    /// Next epoch of that stage to run.
    pub(crate) epoch: usize,
    /// Epochs finished over all stages (the `epoch` field of the log).
    pub(crate) global_epoch: usize,
    /// Candidate operations of each edge in the current stage.
    pub(crate) normal_candidates: Vec<Vec<Op>>,
    pub(crate) reduce_candidates: Vec<Vec<Op>>,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) genotype: Option<Genotype>,
    /// The Hessian eigenvalue after each epoch of the current stage (--hessian-iterations).
    #[serde(default)]
    pub(crate) eigenvalues: Vec<f64>,
    /// The genotype after each epoch of the current stage (--early-stop-factor), for the
    /// early stop to go back to.
    #[serde(default)]
    pub(crate) genotypes: Vec<Genotype>,
    /// Where the early stop ended the search, if it did.
    #[serde(default)]
    pub(crate) early_stop: Option<EarlyStop>,
}

/// Where R-DARTS' early stop ended a search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStop {
    /// The epoch after which the rise was seen (0-based, over all stages).
    pub stopped_after: usize,
    /// The epoch whose genotype the search kept.
    pub kept_epoch: usize,
}

/// The early-stop window of runs written before it existed.
fn default_early_stop_window() -> usize {
    5
}

/// Metrics of one search epoch.
#[derive(Debug, Serialize)]
pub(crate) struct EpochStats {
    pub(crate) lr: f64,
    pub(crate) arch_active: bool,
    pub(crate) skip_dropout: f64,
    /// The Beta-Decay weight of the epoch's architecture steps.
    pub(crate) beta_decay: f64,
    /// The dominant eigenvalue of the architecture Hessian after the epoch
    /// (--hessian-iterations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hessian_eigenvalue: Option<f64>,
    pub(crate) train_loss: f64,
    pub(crate) train_acc: f64,
    pub(crate) val_loss: Option<f64>,
    pub(crate) val_acc: Option<f64>,
    pub(crate) seconds: f64,
}

/// One line of `search.jsonl`.
#[derive(Debug, Serialize)]
struct EpochRecord<'a> {
    epoch: usize,
    stage: usize,
    stage_epoch: usize,
    layers: usize,
    #[serde(flatten)]
    stats: EpochStats,
    alphas_normal: Vec<Vec<f64>>,
    alphas_reduce: Vec<Vec<f64>>,
    betas_normal: Option<Vec<f64>>,
    betas_reduce: Option<Vec<f64>>,
    candidates_normal: &'a [Vec<Op>],
    candidates_reduce: &'a [Vec<Op>],
    genotype: &'a Genotype,
    /// Pools and skips in the derived normal cell ([`Genotype::parameter_free_normal_ops`]).
    parameter_free_normal: usize,
}

/// What `finished.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    /// Epochs run, over all stages.
    pub epochs: usize,
    /// The final genotype (the one in `genotype.json`).
    pub genotype: Genotype,
    /// Where R-DARTS' early stop ended the search, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<EarlyStop>,
}

/// Runs `hands-search search`.
pub fn run_search(args: &SearchArgs) -> Result<()> {
    let run = RunDir::new(
        args.out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("runs/search-{}", args.algo.as_arg()))),
    );
    let device = args.device.open()?;
    let (mut state, mut tensors) = open_state(args, &run, &device)?;
    let args = state.args.clone();
    let plan = args.plan()?;

    let dataset = Dataset::load(&args.data, &args.aspect)?;
    let (split, w_idx, a_idx) = prepare_halves(&args, &dataset, &run)?;
    let cache = ImageCache::build(&dataset, args.size)?;
    let stats = cache.stats(&split.train.indices(&dataset))?;
    let loader = Loader::new(&cache, stats, args.batch, &device)
        .augment(Augment::standard(args.size))
        .shuffle(true)
        .drop_last(w_idx.len().min(a_idx.len()) >= args.batch);
    hands_models::output::write_atomic(
        &run.config(),
        (serde_json::to_string_pretty(&args)? + "\n").as_bytes(),
    )?;
    let hessian_batch = (args.hessian_iterations > 0)
        .then(|| hessian_batch(&cache, stats, &a_idx, args.batch, &device))
        .transpose()?;
    let search = Search {
        args: &args,
        plan: &plan,
        run: &run,
        loader,
        w_idx,
        a_idx,
        hessian_batch,
        num_classes: dataset.labels().len(),
        device: &device,
    };

    let mut log = RunLog::open(&run.search_log(), args.resume.then_some(state.global_epoch))?;
    while state.stage < plan.len() {
        if !search.stage(&mut state, tensors.take(), &mut log)? {
            eprintln!(
                "stopped after {} epochs; continue with --resume",
                state.global_epoch
            );
            return Ok(());
        }
        if state.stage + 1 >= plan.len() && state.epoch >= plan[state.stage].epochs {
            break;
        }
    }
    let genotype = state.genotype.context("the search ran no epoch")?;
    let finished = Finished {
        epochs: state.global_epoch,
        genotype: genotype.clone(),
        early_stop: state.early_stop,
    };
    hands_models::output::write_atomic(
        &run.finished(),
        (serde_json::to_string_pretty(&finished)? + "\n").as_bytes(),
    )?;
    eprintln!("genotype: {genotype}");
    eprintln!("written: {}", run.genotype().display());
    Ok(())
}

/// The state of the search, its settings included: the one stored in its checkpoint (with
/// the tensors to restore) under `--resume`, else a fresh state for `args`.
fn open_state(
    args: &SearchArgs,
    run: &RunDir,
    device: &Device,
) -> Result<(SearchState, Option<HashMap<String, Tensor>>)> {
    if args.resume {
        let (tensors, mut state): (_, SearchState) = resume::stored_state(run, device, "search")?;
        let checkpoint_path = run.checkpoint();
        state
            .check()
            .with_context(|| format!("{}: bad search state", checkpoint_path.display()))?;
        resume_settings(&mut state, args, run.path())?;
        eprintln!(
            "resuming {} at stage {} epoch {} (settings from the checkpoint)",
            run.path().display(),
            state.stage,
            state.epoch
        );
        return Ok((state, Some(tensors)));
    }
    args.check()?;
    resume::refuse_existing_checkpoint(run, "search")?;
    let state = SearchState {
        args: args.clone(),
        stage: 0,
        epoch: 0,
        global_epoch: 0,
        normal_candidates: SupernetConfig::full_candidates(),
        reduce_candidates: SupernetConfig::full_candidates(),
        rng: ChaCha8Rng::seed_from_u64(args.seed),
        genotype: None,
        eigenvalues: Vec::new(),
        genotypes: Vec::new(),
        early_stop: None,
    };
    Ok((state, None))
}

/// The subject split and the images of its training subjects' two halves (weights,
/// architecture), checked to be searchable; the split is saved in the run folder (created),
/// which must hold none of the inputs. A finished search that goes on is unfinished again.
fn prepare_halves(
    args: &SearchArgs,
    dataset: &Dataset,
    run: &RunDir,
) -> Result<(Split, Vec<usize>, Vec<usize>)> {
    let out = run.path();
    Inputs::of_data(&args.data, dataset).check(in_folder(out, &SEARCH_FILES))?;
    let split = Split::new(dataset, Fractions::default(), args.seed)?;
    let (w_half, alpha_half) = split.train.halves(dataset, args.seed)?;
    check_searchable(&args.data, dataset, &split, &w_half, &alpha_half)?;
    let (w_idx, a_idx) = (w_half.indices(dataset), alpha_half.indices(dataset));
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let finished_path = run.finished();
    if finished_path.exists() {
        // The run goes on (more epochs): it is not finished until it ends again.
        std::fs::remove_file(&finished_path)
            .with_context(|| format!("cannot remove {}", finished_path.display()))?;
    }
    split.save(&run.split())?;
    eprintln!(
        "{}: {} images of {} subjects; searching on {} training subjects ({} / {} images for \
         weights / architecture)",
        args.data.display(),
        dataset.len(),
        dataset.subjects().len(),
        split.train.subjects.len(),
        w_idx.len(),
        a_idx.len()
    );
    Ok((split, w_idx, a_idx))
}

/// The first `batch` images of the architecture half, plain (no augmentation): the fixed
/// batch the Hessian eigenvalue is taken on, so that its values compare across epochs.
fn hessian_batch(
    cache: &ImageCache,
    stats: ChannelStats,
    a_idx: &[usize],
    batch: usize,
    device: &Device,
) -> Result<Batch> {
    let first = &a_idx[..batch.min(a_idx.len())];
    let loader = Loader::new(cache, stats, first.len(), device);
    let mut unused = ChaCha8Rng::seed_from_u64(0);
    Ok(loader.epoch(first, &mut unused).batch(0)?)
}

/// What every stage of a search reads: its settings and stage plan, the run folder, the
/// batches and the images of the two halves.
struct Search<'a> {
    args: &'a SearchArgs,
    plan: &'a [StagePlan],
    run: &'a RunDir,
    loader: Loader<'a>,
    w_idx: Vec<usize>,
    a_idx: Vec<usize>,
    /// The batch the Hessian eigenvalue is taken on (--hessian-iterations).
    hessian_batch: Option<Batch>,
    num_classes: usize,
    device: &'a Device,
}

impl Search<'_> {
    /// Runs the epochs left in stage `state.stage` (restoring the stage's weights from
    /// `tensors` when it is part-way), logging and checkpointing each; at the stage's end,
    /// prunes the candidates for the next one. `false` when `--stop-after` stopped it.
    fn stage(
        &self,
        state: &mut SearchState,
        tensors: Option<HashMap<String, Tensor>>,
        log: &mut RunLog,
    ) -> Result<bool> {
        let args = self.args;
        let stage = &self.plan[state.stage];
        let config = SupernetConfig {
            init_channels: args.init_channels,
            layers: stage.layers,
            num_classes: self.num_classes,
            partial_k: args.partial_k(),
            edge_norm: args.algo == Algo::Pcdarts,
            normal_candidates: state.normal_candidates.clone(),
            reduce_candidates: state.reduce_candidates.clone(),
        };
        let seed = args.seed + state.stage as u64;
        let net = Supernet::new(&config, seed, DType::F32, self.device)?;
        let mut stage_run = StageRun::new(&net, args)?;
        let checkpoint_path = self.run.checkpoint();
        if let Some(t) = tensors.filter(|_| state.epoch > 0) {
            stage_run.restore(&t).with_context(|| {
                format!("{}: does not fit this search", checkpoint_path.display())
            })?;
        }
        while state.epoch < stage.epochs {
            if args.stop_after.is_some_and(|n| state.global_epoch >= n) {
                return Ok(false);
            }
            let mut stats =
                stage_run.epoch(&self.loader, &self.w_idx, &self.a_idx, stage, state)?;
            if let Some(batch) = &self.hessian_batch {
                let eigenvalue = stage_run.hessian_eigenvalue(
                    batch,
                    args.hessian_iterations,
                    args.seed ^ state.global_epoch as u64,
                )?;
                stats.hessian_eigenvalue = Some(eigenvalue);
                state.eigenvalues.push(eigenvalue);
            }
            let genotype = self.record_epoch(&stage_run, stage, state, stats, log)?;
            if args.early_stop_factor.is_some() {
                state.genotypes.push(genotype.clone());
            }
            state.epoch += 1;
            state.global_epoch += 1;
            state.genotype = Some(genotype);
            if self.early_stop(state)? {
                state.epoch = stage.epochs;
                checkpoint::save(&checkpoint_path, &stage_run.tensors()?, state)?;
                break;
            }
            if state.epoch == stage.epochs && state.stage + 1 < self.plan.len() {
                // Prune for the next stage, which starts from fresh weights.
                let next_ops = self.plan[state.stage + 1].ops;
                let (normal, reduce) = stage_run.op_weights()?;
                state.normal_candidates =
                    prune_candidates(&normal, &state.normal_candidates, next_ops);
                state.reduce_candidates =
                    prune_candidates(&reduce, &state.reduce_candidates, next_ops);
                state.stage += 1;
                state.epoch = 0;
                state.eigenvalues.clear();
                state.genotypes.clear();
                checkpoint::save(&checkpoint_path, &[], state)?;
                break;
            }
            checkpoint::save(&checkpoint_path, &stage_run.tensors()?, state)?;
        }
        Ok(true)
    }

    /// R-DARTS' early stop after the epoch just done: when the eigenvalue has risen by
    /// --early-stop-factor, the genotype of the last epoch before the rise becomes the
    /// search's (written with its pictures) and `true` ends the search.
    fn early_stop(&self, state: &mut SearchState) -> Result<bool> {
        let Some(factor) = self.args.early_stop_factor else {
            return Ok(false);
        };
        let window = self.args.early_stop_window;
        let Some(kept) = hessian::early_stop_epoch(&state.eigenvalues, window, factor) else {
            return Ok(false);
        };
        let genotype = state.genotypes[kept].clone();
        self.write_genotype(&genotype)?;
        let stage_start = state.global_epoch - state.epoch;
        let stop = EarlyStop {
            stopped_after: state.global_epoch - 1,
            kept_epoch: stage_start + kept,
        };
        eprintln!(
            "early stop (DARTS-ES): the Hessian eigenvalue rose more than {factor} times over \
             {window} epochs by epoch {}; keeping the genotype of epoch {}",
            stop.stopped_after, stop.kept_epoch
        );
        state.early_stop = Some(stop);
        state.genotype = Some(genotype);
        Ok(true)
    }

    /// Writes `genotype.json` and the cell pictures.
    fn write_genotype(&self, genotype: &Genotype) -> Result<()> {
        hands_models::output::write_atomic(
            &self.run.genotype(),
            (genotype.to_json() + "\n").as_bytes(),
        )?;
        crate::dot::write_cell_pictures(genotype, self.run.path())
    }

    /// Writes the epoch's genotype and its cell pictures and logs the epoch; returns the
    /// genotype.
    fn record_epoch(
        &self,
        stage_run: &StageRun<'_>,
        stage: &StagePlan,
        state: &SearchState,
        stats: EpochStats,
        log: &mut RunLog,
    ) -> Result<Genotype> {
        let genotype = stage_run.genotype(self.args, state.stage + 1 == self.plan.len())?;
        self.write_genotype(&genotype)?;
        let ArchValues {
            alphas_normal,
            alphas_reduce,
            betas_normal,
            betas_reduce,
        } = stage_run.arch_values()?;
        log.write(&EpochRecord {
            epoch: state.global_epoch,
            stage: state.stage,
            stage_epoch: state.epoch,
            layers: stage.layers,
            genotype: &genotype,
            alphas_normal,
            alphas_reduce,
            betas_normal,
            betas_reduce,
            candidates_normal: &state.normal_candidates,
            candidates_reduce: &state.reduce_candidates,
            parameter_free_normal: genotype.parameter_free_normal_ops(),
            stats,
        })?;
        Ok(genotype)
    }
}

/// Takes the per-invocation settings of `given` into a resumed run's stored settings and
/// refuses any other setting given differently, except `--epochs` with `--extend-epochs`.
fn resume_settings(state: &mut SearchState, given: &SearchArgs, out: &Path) -> Result<()> {
    let ignore = ["resume", "out", "device", "extend_epochs"];
    let changes = changed_settings(&state.args, given, given.explicit.as_deref(), &ignore)?;
    let epochs = Epochs {
        stored: state.args.epochs,
        given: given.epochs,
        done: state.epoch,
    };
    let in_stage = format!(" in stage {}", state.stage);
    state.args.epochs = resume::resumed_epochs(
        out,
        changes,
        given.extend_epochs,
        epochs,
        (&in_stage, "epochs per stage"),
    )?;
    state.args.resume = true;
    state.args.out = Some(out.to_path_buf());
    state.args.device = given.device;
    state.args.stop_after = given.stop_after;
    state.args.check()
}

/// Refuses data on which a search cannot run before any epoch: images of a single class,
/// or a split that leaves the weight or the architecture half without images of every
/// class (too few subjects).
fn check_searchable(
    data: &Path,
    dataset: &Dataset,
    split: &Split,
    w_half: &Part,
    alpha_half: &Part,
) -> Result<()> {
    let labels = dataset.labels();
    let counts = dataset.label_counts();
    let present: Vec<&str> = labels
        .iter()
        .zip(&counts)
        .filter(|(_, &n)| n > 0)
        .map(|(l, _)| l.as_str())
        .collect();
    if present.len() < 2 {
        bail!(
            "{}: all {} images are of one class ({}): a search needs images of at least two \
             classes",
            data.display(),
            dataset.len(),
            present.join(", ")
        );
    }
    for (half, part) in [("weight", w_half), ("architecture", alpha_half)] {
        let missing: Vec<&str> = labels
            .iter()
            .zip(&part.label_images)
            .zip(&counts)
            .filter(|((_, &n), &total)| n == 0 && total > 0)
            .map(|((l, _), _)| l.as_str())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{}: the {half} half of the {} training subjects (of {} subjects) has no images \
                 of {}: a search needs at least 2 training subjects of each class, about 3 \
                 subjects of each class in the data",
                data.display(),
                split.train.subjects.len(),
                dataset.subjects().len(),
                missing.join(", ")
            );
        }
    }
    Ok(())
}

impl SearchState {
    /// Bounds what a checkpoint's state holds before it sizes a network: the settings'
    /// ranges, and one list of distinct known operations per edge.
    fn check(&self) -> Result<()> {
        self.args.check()?;
        for candidates in [&self.normal_candidates, &self.reduce_candidates] {
            if candidates.len() != EDGES {
                bail!("{} edges of candidates, expected {EDGES}", candidates.len());
            }
            for ops in candidates {
                let distinct: std::collections::BTreeSet<&str> =
                    ops.iter().map(|op| op.name()).collect();
                if ops.is_empty() || distinct.len() != ops.len() {
                    bail!("an edge's candidates are empty or repeated: {ops:?}");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_algorithm_brings_its_papers_settings() {
        let pcdarts = SearchArgs::new("data", Algo::Pcdarts);
        assert_eq!(
            (pcdarts.batch, pcdarts.epochs, pcdarts.lr, pcdarts.lr_min),
            (256, 50, 0.1, 0.0)
        );
        assert_eq!(
            (
                pcdarts.arch_lr(),
                pcdarts.arch_warmup(),
                pcdarts.partial_k()
            ),
            (6e-4, 15, 4)
        );
        let pdarts = SearchArgs::new("data", Algo::Pdarts);
        assert_eq!(
            (pdarts.batch, pdarts.epochs, pdarts.lr, pdarts.lr_min),
            (96, 25, 0.025, 0.0)
        );
        assert_eq!((pdarts.arch_lr(), pdarts.arch_warmup()), (6e-4, 10));
        assert_eq!(pdarts.arch_grad_clip(), Some(5.0));
        assert_eq!(pcdarts.arch_grad_clip(), None);
        assert_eq!(SearchArgs::new("data", Algo::Darts).arch_grad_clip(), None);
        for algo in [Algo::Darts, Algo::Darts2] {
            let darts = SearchArgs::new("data", algo);
            assert_eq!(
                (darts.batch, darts.epochs, darts.lr, darts.lr_min),
                (64, 50, 0.025, 0.001)
            );
            assert_eq!(
                (darts.arch_lr(), darts.arch_warmup(), darts.partial_k()),
                (3e-4, 0, 1)
            );
        }
    }

    #[test]
    fn a_setting_given_on_the_command_line_beats_the_papers() {
        let mut args = SearchArgs::parse_from([
            "search", "--data", ".", "--algo", "pcdarts", "--batch", "32", "--lr-min", "0.001",
        ]);
        args.explicit = Some(vec!["algo".into(), "batch".into(), "lr_min".into()]);
        args.apply_paper_defaults();
        assert_eq!((args.batch, args.lr, args.lr_min), (32, 0.1, 0.001));
    }
}
