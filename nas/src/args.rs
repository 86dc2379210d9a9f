//! The settings of `hands-search search`: the algorithm, the shared groups, the
//! architecture step and P-DARTS' stages, with each algorithm's paper defaults.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hands_models::Op;
use serde::{Deserialize, Serialize};

use hands_train::args::{DataArgs, NetworkArgs, OptimiserArgs, RunArgs};
use hands_train::flags;

use crate::supernet::Memory;

/// The search algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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

/// Arguments of `hands-search search`. The defaults shown for --epochs, --batch, --lr-min
/// and --seed are DARTS' (`--algo darts`); [`SearchArgs::apply_paper_defaults`] sets the
/// chosen algorithm's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(
    mut_arg("epochs", |a| a.default_value("50")),
    mut_arg("batch", |a| a.default_value("64")),
    mut_arg("lr_min", |a| a.default_value("0.001")),
    mut_arg("seed", |a| a.default_value("2"))
))]
pub struct SearchArgs {
    /// Search algorithm. Each brings its paper's settings for --batch, --epochs, --lr,
    /// --lr-min, --arch-lr, --arch-warmup-epochs, --partial-k and --arch-grad-clip, each
    /// overridden by its flag: darts and darts2 batch 64, 50 epochs,
    /// lr 0.025 to 0.001, arch lr 3e-4; pcdarts batch 256, 50 epochs, lr 0.1 to 0, arch lr
    /// 6e-4, 15 warm-up epochs, K 4; pdarts batch 96, 25 epochs per stage, lr 0.025 to 0,
    /// arch lr 6e-4, architecture gradients clipped at 5.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = Algo::Darts))]
    pub algo: Algo,
    /// Also mirror the images top-bottom half the time, besides DARTS' padded crop and
    /// left-right flip (as `train --vertical-flip`: hands pointing up and down).
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub vertical_flip: bool,
    /// What a search step keeps for its backward pass: `lean` only each cell's output, the
    /// cells recomputed one at a time in the backward pass (about a quarter of the memory of
    /// `fast` for about 1.4 times its time: one more forward pass through the cells; the same
    /// gradients up to the order of floating-point sums); `fast` every activation of the
    /// batch. Steps with P-DARTS' skip-connect dropout run as `fast`. May change when
    /// resuming (runs written before the option resume as `fast`).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = Memory::Lean))]
    #[serde(default)]
    pub memory: Memory,
    /// The images.
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub data: DataArgs,
    /// The supernet's width and depth.
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub network: NetworkArgs,
    /// The weight step.
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub optimiser: OptimiserArgs,
    /// The architecture step.
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub architecture: ArchitectureArgs,
    /// P-DARTS' stages.
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub pdarts: PdartsArgs,
    /// The resource budget of the final network.
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub budget: BudgetArgs,
    /// Seed, folder, device, resumption.
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub run: RunArgs,
}

/// The seed of a search when none is given.
pub const SEARCH_SEED: u64 = 2;

/// The architecture step: Adam on the architecture logits, its warm-up, PC-DARTS' channel
/// sampling and the counter-measures and diagnostics of collapse.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(next_help_heading = "Architecture"))]
pub struct ArchitectureArgs {
    /// Architecture learning rate (default 3e-4, 6e-4 for pcdarts and pdarts); 0 keeps the
    /// architecture weights where they start (a baseline for what noise gives).
    #[cfg_attr(feature = "cli", arg(long, value_parser = flags::non_negative))]
    pub arch_lr: Option<f64>,
    /// Architecture weight decay.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ArchitectureArgs::DEFAULT.arch_weight_decay,
          value_parser = flags::non_negative))]
    pub arch_weight_decay: f64,
    /// Gradient-norm clip of the architecture parameters (default: none; 5 for pdarts, as
    /// P-DARTS clips them with its weights' clip).
    #[cfg_attr(feature = "cli", arg(long, value_parser = flags::positive))]
    #[serde(default)]
    pub arch_grad_clip: Option<f64>,
    /// PC-DARTS channel sampling factor K, 1 to 64 (default 4 for pcdarts, 1 otherwise).
    #[cfg_attr(feature = "cli", arg(long, value_parser = flags::usize_in(flags::PARTIAL_K)))]
    pub partial_k: Option<usize>,
    /// Architecture steps to take (per stage for pdarts), instead of --epochs: the epochs
    /// become the warm-up plus as many as these steps need, at the data's architecture
    /// batches per epoch (the smaller half of the training subjects' images / --batch). The
    /// papers' searches take thousands (DARTS on CIFAR-10: 50 epochs of 391 steps); a small
    /// data set at their epochs takes far fewer, which `finished.json` may report as noise.
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "epochs", value_parser = flags::usize_in(1..=10_000_000)))]
    #[serde(default)]
    pub arch_steps: Option<usize>,
    /// Epochs with frozen architecture at the start, fewer than --epochs (default 15 for
    /// pcdarts, else 0; P-DARTS uses --stage-warmup).
    #[cfg_attr(feature = "cli", arg(long, value_parser = flags::usize_in(0..=*flags::EPOCHS.end())))]
    pub arch_warmup_epochs: Option<usize>,
    /// β-DARTS' Beta-Decay regularisation of the architecture logits against collapse
    /// (`hands_nas::architect::add_beta_decay`): its weight at the last epoch, reached
    /// linearly from 0 at the first architecture epoch of each stage; 0 turns it off.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ArchitectureArgs::DEFAULT.beta_decay,
          value_parser = flags::non_negative))]
    #[serde(default)]
    pub beta_decay: f64,
    /// R-DARTS' sharpness diagnostic: the largest eigenvalue of the Hessian of the
    /// validation loss w.r.t. the architecture parameters, by at most this many power
    /// iterations (fewer once it changes by less than 1e-4 relative; a second run when a
    /// negative eigenvalue dominates), taken after every epoch on one fixed batch of the
    /// architecture half and logged as `hessian_eigenvalue` (0 = off, at most 100; each
    /// iteration costs two forward-backward passes).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ArchitectureArgs::DEFAULT.hessian_iterations,
          value_parser = flags::usize_in(0..=100)))]
    #[serde(default)]
    pub hessian_iterations: usize,
    /// R-DARTS' early stop (DARTS-ES): end the search once the eigenvalue averaged over the
    /// last --early-stop-window epochs exceeds this factor times its average over the window
    /// before, keeping the genotype of the last epoch before the rise (R-DARTS: 1.33, i.e.
    /// 1 / 0.75). Needs --hessian-iterations; not with pdarts.
    #[cfg_attr(feature = "cli", arg(long, value_parser = flags::positive))]
    #[serde(default)]
    pub early_stop_factor: Option<f64>,
    /// The early stop's window, in epochs (1 to 100; R-DARTS: 5).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ArchitectureArgs::DEFAULT.early_stop_window,
          value_parser = flags::usize_in(1..=100)))]
    #[serde(default = "default_early_stop_window")]
    pub early_stop_window: usize,
    /// The early stop's first epoch: it never goes back to an epoch before this one
    /// (R-DARTS' `es_start_epoch`: 10), and it compares only epochs with architecture steps
    /// (after --arch-warmup-epochs).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ArchitectureArgs::DEFAULT.early_stop_start,
          value_parser = flags::usize_in(0..=*flags::EPOCHS.end())))]
    #[serde(default = "default_early_stop_start")]
    pub early_stop_start: usize,
}

impl ArchitectureArgs {
    /// The defaults: the algorithm's paper settings, weight decay 1e-3, no regulariser, no
    /// diagnostic.
    pub const DEFAULT: ArchitectureArgs = ArchitectureArgs {
        arch_lr: None,
        arch_weight_decay: 1e-3,
        arch_grad_clip: None,
        partial_k: None,
        arch_steps: None,
        arch_warmup_epochs: None,
        beta_decay: 0.0,
        hessian_iterations: 0,
        early_stop_factor: None,
        early_stop_window: 5,
        early_stop_start: 10,
    };
}

/// P-DARTS' stages: the depth, candidate operations and skip-connect dropout of each (the
/// three lists run in parallel, one entry per stage), its warm-up and the final cell's skip
/// limit. Read only with `--algo pdarts`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(next_help_heading = "P-DARTS"))]
pub struct PdartsArgs {
    /// Cells per stage.
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ',', default_value = "5,11,17",
          value_parser = flags::usize_in(flags::SEARCH_LAYERS)))]
    pub stages: Vec<usize>,
    /// Candidate operations per edge in each stage (1 to the number of operations, 8;
    /// default: all of them, then 5, then 3).
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ',', default_values_t = PdartsArgs::default().stage_ops,
          value_parser = flags::usize_in(1..=Op::ALL.len() as u64)))]
    pub stage_ops: Vec<usize>,
    /// Skip-connect dropout rate per stage, in [0, 1).
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ',', default_value = "0.1,0.4,0.7",
          value_parser = flags::fraction))]
    pub skip_dropout: Vec<f64>,
    /// Weight-only warm-up epochs of each stage, fewer than --epochs.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = Algo::Pdarts.paper_defaults().arch_warmup,
          value_parser = flags::usize_in(0..=*flags::EPOCHS.end())))]
    pub stage_warmup: usize,
    /// Most skip connections in the final normal cell (0 to 8).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 2, value_parser = flags::usize_in(0..=8)))]
    pub max_skip: usize,
}

impl Default for PdartsArgs {
    /// P-DARTS' published stages: 5, 11 and 17 cells with every operation (8), then 5 and
    /// 3 candidates and skip dropout 0.1, 0.4 and 0.7; 10 warm-up epochs; at most 2 skips.
    fn default() -> PdartsArgs {
        PdartsArgs {
            stages: vec![5, 11, 17],
            stage_ops: vec![Op::ALL.len(), 5, 3],
            skip_dropout: vec![0.1, 0.4, 0.7],
            stage_warmup: Algo::Pdarts.paper_defaults().arch_warmup,
            max_skip: 2,
        }
    }
}

impl PdartsArgs {
    /// Checks each stage's entries against their flags' ranges, and that the three lists
    /// have one entry per stage and the candidate sets never grow.
    pub fn check(&self) -> Result<()> {
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
        if self.stage_ops.windows(2).any(|w| w[1] > w[0]) {
            bail!("--stage-ops must not grow from one stage to the next");
        }
        Ok(())
    }
}

/// A resource budget on the final network ([`crate::budget`]): off unless --cost and
/// --cost-target are given.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(next_help_heading = "Resource budget"))]
pub struct BudgetArgs {
    /// What the budget counts in the final network: `mflops` (millions of multiply-adds of
    /// one image), `params` (millions of parameters) or `latency` (milliseconds of one ONNX
    /// Runtime CPU run at batch 1 with the search's threads, from a latency lookup table
    /// measured on this machine and cached).
    #[cfg_attr(feature = "cli", arg(long, value_enum, requires = "cost_target"))]
    #[serde(default)]
    pub cost: Option<CostMeasure>,
    /// The target in --cost's unit: an expected cost above it is penalised.
    #[cfg_attr(feature = "cli", arg(long, value_parser = flags::positive, requires = "cost"))]
    #[serde(default)]
    pub cost_target: Option<f64>,
    /// Weight of the penalty `max(0, E[cost] / target - 1)` in the architecture loss.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = BudgetArgs::DEFAULT.cost_weight,
          value_parser = flags::non_negative))]
    #[serde(default = "default_cost_weight")]
    pub cost_weight: f64,
    /// Channels of the final network's first cell, which the costs are of.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = BudgetArgs::DEFAULT.cost_init_channels,
          value_parser = flags::usize_in(flags::INIT_CHANNELS)))]
    #[serde(default = "default_cost_init_channels")]
    pub cost_init_channels: usize,
    /// Cells of the final network, which the costs are of (3 to 64).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = BudgetArgs::DEFAULT.cost_layers,
          value_parser = flags::usize_in(flags::TRAIN_LAYERS)))]
    #[serde(default = "default_cost_layers")]
    pub cost_layers: usize,
    /// Derive only genotypes within the target: when the argmax genotype is over it, trade
    /// the weakest choices for cheaper ones until it fits (`derive::fit_to_budget`).
    #[cfg_attr(feature = "cli", arg(long, requires = "cost"))]
    #[serde(default)]
    pub cost_strict: bool,
}

impl BudgetArgs {
    /// No budget; a final network of `train`'s default size.
    pub const DEFAULT: BudgetArgs = BudgetArgs {
        cost: None,
        cost_target: None,
        cost_weight: 1.0,
        cost_init_channels: NetworkArgs::DEFAULT.init_channels,
        cost_layers: NetworkArgs::DEFAULT.layers,
        cost_strict: false,
    };

    /// Checks the settings with the parsers their flags use, and that --cost and
    /// --cost-target come together.
    pub fn check(&self) -> Result<()> {
        flags::check_value("cost-weight", self.cost_weight, flags::non_negative)?;
        flags::check_range(
            "cost-init-channels",
            self.cost_init_channels,
            flags::INIT_CHANNELS,
        )?;
        flags::check_range("cost-layers", self.cost_layers, flags::TRAIN_LAYERS)?;
        if self.cost_strict && self.cost.is_none() {
            bail!("--cost-strict needs --cost and --cost-target");
        }
        match (self.cost, self.cost_target) {
            (Some(_), Some(target)) => flags::check_value("cost-target", target, flags::positive),
            (None, None) => Ok(()),
            _ => bail!("--cost and --cost-target go together"),
        }
    }
}

fn default_cost_weight() -> f64 {
    BudgetArgs::DEFAULT.cost_weight
}

fn default_cost_init_channels() -> usize {
    BudgetArgs::DEFAULT.cost_init_channels
}

fn default_cost_layers() -> usize {
    BudgetArgs::DEFAULT.cost_layers
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
        let explicit = self.run.explicit.clone().unwrap_or_default();
        let given = |name: &str| explicit.iter().any(|n| n == name);
        if !given("batch") {
            self.optimiser.batch = paper.batch;
        }
        if !given("epochs") {
            self.optimiser.epochs = paper.epochs;
        }
        if !given("lr") {
            self.optimiser.lr = paper.lr;
        }
        if !given("lr_min") {
            self.optimiser.lr_min = paper.lr_min;
        }
    }

    pub(crate) fn arch_lr(&self) -> f64 {
        self.architecture
            .arch_lr
            .unwrap_or(self.algo.paper_defaults().arch_lr)
    }

    pub(crate) fn arch_grad_clip(&self) -> Option<f64> {
        self.architecture
            .arch_grad_clip
            .or(self.algo.paper_defaults().arch_grad_clip)
    }

    pub(crate) fn partial_k(&self) -> usize {
        self.architecture
            .partial_k
            .unwrap_or(self.algo.paper_defaults().partial_k)
    }

    pub(crate) fn arch_warmup(&self) -> usize {
        match (self.architecture.arch_warmup_epochs, self.algo) {
            (None, Algo::Pcdarts) => self
                .requested_warmup()
                .min(self.optimiser.epochs.saturating_sub(1)),
            _ => self.requested_warmup(),
        }
    }

    /// The warm-up asked for or the algorithm's, before PC-DARTS' bound by the epochs.
    fn requested_warmup(&self) -> usize {
        self.architecture
            .arch_warmup_epochs
            .unwrap_or(match self.algo {
                Algo::Pdarts => self.pdarts.stage_warmup,
                _ => self.algo.paper_defaults().arch_warmup,
            })
    }

    /// With --arch-steps, sets the epochs (per stage) to the warm-up plus the epochs of
    /// `steps_per_epoch` architecture steps that reach them; returns the epochs set, or
    /// `None` without --arch-steps.
    pub fn set_epochs_for_arch_steps(&mut self, steps_per_epoch: usize) -> Result<Option<usize>> {
        let Some(steps) = self.architecture.arch_steps else {
            return Ok(None);
        };
        if steps_per_epoch == 0 {
            bail!("--arch-steps: the data gives no architecture batch per epoch");
        }
        self.optimiser.epochs = self.requested_warmup() + steps.div_ceil(steps_per_epoch);
        self.check()
            .context("--arch-steps: the epochs it needs are out of range")?;
        Ok(Some(self.optimiser.epochs))
    }

    /// The stages of the run: one for DARTS and PC-DARTS.
    pub fn plan(&self) -> Result<Vec<StagePlan>> {
        if self.algo != Algo::Pdarts {
            return Ok(vec![StagePlan {
                layers: self.network.layers,
                ops: Op::ALL.len(),
                skip_dropout: 0.0,
                epochs: self.optimiser.epochs,
                warmup: self.arch_warmup(),
            }]);
        }
        self.pdarts.check()?;
        let n = self.pdarts.stages.len();
        Ok((0..n)
            .map(|s| StagePlan {
                layers: self.pdarts.stages[s],
                ops: self.pdarts.stage_ops[s],
                skip_dropout: self.pdarts.skip_dropout[s],
                epochs: self.optimiser.epochs,
                warmup: self.arch_warmup(),
            })
            .collect())
    }

    /// Checks every setting against its flag's range and the settings against each other,
    /// for settings that did not come through the command-line parser (a library caller,
    /// a resumed run's stored settings).
    pub fn check(&self) -> Result<()> {
        self.data.check()?;
        self.network.check(flags::SEARCH_LAYERS)?;
        self.optimiser.check()?;
        flags::check_range("partial-k", self.partial_k(), flags::PARTIAL_K)?;
        self.pdarts.check()?;
        self.budget.check()?;
        flags::check_value(
            "beta-decay",
            self.architecture.beta_decay,
            flags::non_negative,
        )?;
        if let Some(clip) = self.architecture.arch_grad_clip {
            flags::check_value("arch-grad-clip", clip, flags::positive)?;
        }
        flags::check_value("arch-lr", self.arch_lr(), flags::non_negative)?;
        flags::check_value(
            "arch-weight-decay",
            self.architecture.arch_weight_decay,
            flags::non_negative,
        )?;
        if !self.network.init_channels.is_multiple_of(self.partial_k()) {
            bail!(
                "--init-channels {} is not a multiple of --partial-k {}: the partial channels \
                 would not cover the cells",
                self.network.init_channels,
                self.partial_k()
            );
        }
        flags::check_range(
            "hessian-iterations",
            self.architecture.hessian_iterations,
            0..=100,
        )?;
        flags::check_range(
            "early-stop-window",
            self.architecture.early_stop_window,
            1..=100,
        )?;
        if let Some(factor) = self.architecture.early_stop_factor {
            flags::check_value("early-stop-factor", factor, flags::positive)?;
            if self.architecture.hessian_iterations == 0 {
                bail!("--early-stop-factor watches the Hessian eigenvalue: give --hessian-iterations too");
            }
            if self.algo == Algo::Pdarts {
                bail!("--early-stop-factor stops a single-stage search: not with --algo pdarts");
            }
        }
        if self.arch_warmup() >= self.optimiser.epochs {
            bail!(
                "the architecture warm-up ({} epochs; --arch-warmup-epochs, --stage-warmup for \
                 pdarts) leaves no architecture step in {} epochs: the genotype would come from \
                 untrained architecture weights",
                self.arch_warmup(),
                self.optimiser.epochs
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
        let mut args = SearchArgs {
            algo,
            vertical_flip: false,
            memory: Memory::Lean,
            data: DataArgs::new(data),
            network: NetworkArgs::DEFAULT,
            optimiser: OptimiserArgs::TRAINING,
            architecture: ArchitectureArgs::DEFAULT,
            pdarts: PdartsArgs::default(),
            budget: BudgetArgs::DEFAULT,
            run: RunArgs {
                seed: SEARCH_SEED,
                ..RunArgs::default()
            },
        };
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

/// The early-stop window of runs written before it existed.
fn default_early_stop_window() -> usize {
    ArchitectureArgs::DEFAULT.early_stop_window
}

/// The early stop's first epoch for runs written before it existed.
fn default_early_stop_start() -> usize {
    ArchitectureArgs::DEFAULT.early_stop_start
}

/// One stage of a search (DARTS and PC-DARTS have a single one).
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    /// Cells of the supernet.
    pub layers: usize,
    /// Candidate operations per edge.
    pub ops: usize,
    /// Skip-connect dropout rate before decay.
    pub skip_dropout: f64,
    /// Epochs of the stage.
    pub epochs: usize,
    /// Weight-only epochs at the start of the stage.
    pub warmup: usize,
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum CostMeasure {
    /// Millions of multiply-adds of one image.
    Mflops,
    /// Millions of parameters.
    Params,
    /// Milliseconds of one ONNX Runtime CPU run at batch 1 on this machine, from a latency
    /// lookup table ([`crate::latency`]).
    Latency,
}

#[cfg(all(test, feature = "cli"))]
mod tests {
    use super::*;

    /// P-DARTS' first stage searches every operation, however many the enum has.
    #[test]
    fn pdarts_starts_from_every_operation() {
        assert_eq!(PdartsArgs::default().stage_ops[0], Op::ALL.len());
        let parsed = parse_from(["search", "--data", "d", "--algo", "pdarts"]);
        assert_eq!(parsed.pdarts.stage_ops, PdartsArgs::default().stage_ops);
    }

    /// Parses [`SearchArgs`] alone, as the `search` subcommand would.
    fn parse_from<const N: usize>(argv: [&str; N]) -> SearchArgs {
        #[derive(clap::Parser)]
        struct SearchOnly {
            #[command(flatten)]
            args: SearchArgs,
        }
        <SearchOnly as clap::Parser>::parse_from(argv).args
    }

    #[test]
    fn a_run_written_before_the_groups_reads_back_flat() {
        // A search run's config.json as it was written before the settings were grouped.
        let stored = r#"{"data": "../shared/data/hands-11k", "algo": "pcdarts", "size": 32,
            "batch": 32, "epochs": 15, "init_channels": 8, "layers": 5, "seed": 2,
            "out": "runs/study-beta", "resume": false, "extend_epochs": false, "aspect": "all",
            "lr": 0.025, "lr_min": 0.001, "momentum": 0.9, "weight_decay": 0.0003,
            "grad_clip": 5.0, "arch_lr": null, "arch_weight_decay": 0.001,
            "arch_grad_clip": null, "partial_k": null, "arch_warmup_epochs": 5,
            "stages": [5, 11, 17], "stage_ops": [8, 5, 3], "skip_dropout": [0.1, 0.4, 0.7],
            "stage_warmup": 10, "max_skip": 2, "beta_decay": 50.0, "hessian_iterations": 5,
            "early_stop_factor": null, "early_stop_window": 5, "device": "cpu"}"#;
        let args: SearchArgs = serde_json::from_str(stored).unwrap();
        assert_eq!(args.algo, Algo::Pcdarts);
        assert_eq!(args.data.path, PathBuf::from("../shared/data/hands-11k"));
        assert_eq!((args.network.init_channels, args.network.layers), (8, 5));
        assert_eq!((args.optimiser.batch, args.optimiser.epochs), (32, 15));
        assert_eq!(args.architecture.beta_decay, 50.0);
        assert_eq!(args.run.out, Some(PathBuf::from("runs/study-beta")));
        // Written back, every stored setting keeps its value (later settings are added).
        let rewritten = serde_json::to_value(&args).unwrap();
        let stored: serde_json::Value = serde_json::from_str(stored).unwrap();
        for (name, value) in stored.as_object().unwrap() {
            assert_eq!(&rewritten[name], value, "{name}");
        }
        assert_eq!(args.budget, BudgetArgs::DEFAULT);
    }

    #[test]
    fn the_command_line_defaults_are_the_constructors() {
        assert_eq!(
            parse_from(["search", "--data", "data"]),
            SearchArgs::new("data", Algo::Darts)
        );
    }

    #[test]
    fn each_algorithm_brings_its_papers_settings() {
        let pcdarts = SearchArgs::new("data", Algo::Pcdarts);
        assert_eq!(
            (
                pcdarts.optimiser.batch,
                pcdarts.optimiser.epochs,
                pcdarts.optimiser.lr,
                pcdarts.optimiser.lr_min
            ),
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
            (
                pdarts.optimiser.batch,
                pdarts.optimiser.epochs,
                pdarts.optimiser.lr,
                pdarts.optimiser.lr_min
            ),
            (96, 25, 0.025, 0.0)
        );
        assert_eq!((pdarts.arch_lr(), pdarts.arch_warmup()), (6e-4, 10));
        assert_eq!(pdarts.arch_grad_clip(), Some(5.0));
        assert_eq!(pcdarts.arch_grad_clip(), None);
        assert_eq!(SearchArgs::new("data", Algo::Darts).arch_grad_clip(), None);
        for algo in [Algo::Darts, Algo::Darts2] {
            let darts = SearchArgs::new("data", algo);
            assert_eq!(
                (
                    darts.optimiser.batch,
                    darts.optimiser.epochs,
                    darts.optimiser.lr,
                    darts.optimiser.lr_min
                ),
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
        let mut args = parse_from([
            "search", "--data", ".", "--algo", "pcdarts", "--batch", "32", "--lr-min", "0.001",
        ]);
        args.run.explicit = Some(vec!["algo".into(), "batch".into(), "lr_min".into()]);
        args.apply_paper_defaults();
        assert_eq!(
            (
                args.optimiser.batch,
                args.optimiser.lr,
                args.optimiser.lr_min
            ),
            (32, 0.1, 0.001)
        );
    }
}
