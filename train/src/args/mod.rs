//! Run configuration: the settings of training and cross-validation (and the groups the
//! architecture search shares with them) as plain serde structs, stored flat in a run's
//! `config.json` (serde `flatten`, so runs written before the groups existed resume
//! unchanged). Under the `cli` feature they are also clap argument groups (each under its
//! own `--help` heading) that `hands-search` flattens into its subcommands; `check`
//! validates settings that did not come through the parser (a library caller, a resumed
//! run's stored settings) with the bounds the parser uses.
//!
//! The groups the subcommands share live here; each subcommand's own groups live in its
//! submodule (the search's in `hands_nas::args`). A default that differs between
//! subcommands is the group's default here, changed for the other subcommand with clap's
//! `mut_arg` (and in its constructor).

pub mod cv;
pub mod train;

use std::ops::RangeInclusive;
use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::flags;
use hands_data::AspectFilter;
use hands_models::device::DeviceChoice;
use hands_models::plan::DEFAULT_STEM_STRIDE;

/// Where the images come from and how they are read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(next_help_heading = "Data"))]
pub struct DataArgs {
    /// Dataset folder: 11K Hands (HandInfo.csv + images) or one sub-folder per class.
    #[cfg_attr(feature = "cli", arg(long = "data", id = "data", value_name = "DATA"))]
    #[serde(rename = "data")]
    pub path: PathBuf,
    /// Side of the square input images (8 to 512).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DataArgs::SIZE, value_parser = flags::u32_in(flags::SIZE)))]
    pub size: u32,
    /// Which hand aspects to use.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = AspectFilter::All,
          value_parser = flags::choice::<AspectFilter>()))]
    pub aspect: AspectFilter,
}

impl DataArgs {
    /// The default input side.
    pub const SIZE: u32 = 64;

    /// The default settings for the dataset at `path`.
    pub fn new(path: impl Into<PathBuf>) -> DataArgs {
        DataArgs {
            path: path.into(),
            size: DataArgs::SIZE,
            aspect: AspectFilter::All,
        }
    }

    /// Checks the settings against their flags' ranges.
    pub fn check(&self) -> Result<()> {
        flags::check_range("size", self.size as usize, flags::SIZE)
    }
}

/// The width and depth of the network (the supernet of a search, the discrete network of
/// a training).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(next_help_heading = "Network"))]
pub struct NetworkArgs {
    /// Channels of the first cell (C, 1 to 256; for pcdarts a multiple of --partial-k).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = NetworkArgs::DEFAULT.init_channels,
          value_parser = flags::usize_in(flags::INIT_CHANNELS)))]
    pub init_channels: usize,
    /// Number of cells (search: 1 to 64, P-DARTS takes --stages instead; train: 3 to 64).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = NetworkArgs::DEFAULT.layers,
          value_parser = flags::usize_in(flags::SEARCH_LAYERS)))]
    pub layers: usize,
    /// Stride of the stem's 3x3 convolution, 1 or 2: at 2 the cells see half the input's
    /// side, so a 64x64 input costs the cells what a 32x32 one does while the stem reads
    /// every pixel.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = NetworkArgs::DEFAULT.stem_stride,
          value_parser = flags::usize_in(flags::STEM_STRIDE)))]
    #[serde(default = "hands_models::plan::default_stem_stride")]
    pub stem_stride: usize,
}

impl NetworkArgs {
    /// The default network: C 16, 8 cells, DARTS' stem at stride 1.
    pub const DEFAULT: NetworkArgs = NetworkArgs {
        init_channels: 16,
        layers: 8,
        stem_stride: DEFAULT_STEM_STRIDE,
    };

    /// Checks the settings against their flags' ranges, with `layers` the subcommand's range
    /// of cells.
    pub fn check(&self, layers: RangeInclusive<u64>) -> Result<()> {
        flags::check_range("init-channels", self.init_channels, flags::INIT_CHANNELS)?;
        flags::check_range("stem-stride", self.stem_stride, flags::STEM_STRIDE)?;
        flags::check_range("layers", self.layers, layers)
    }
}

/// The weights' optimiser: SGD with momentum and weight decay, a cosine learning-rate
/// schedule and gradient-norm clipping. The defaults are `train`'s; `search` takes its
/// algorithm's paper settings for --epochs, --batch, --lr and --lr-min.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(next_help_heading = "Optimiser"))]
pub struct OptimiserArgs {
    /// Epochs (per stage for P-DARTS).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = OptimiserArgs::TRAINING.epochs,
          value_parser = flags::usize_in(flags::EPOCHS)))]
    pub epochs: usize,
    /// Batch size (1 to 1024; a search uses it for the weight and the architecture steps).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = OptimiserArgs::TRAINING.batch,
          value_parser = flags::usize_in(flags::BATCH)))]
    pub batch: usize,
    /// Initial learning rate of the weights (cosine annealed per epoch).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = OptimiserArgs::TRAINING.lr, value_parser = flags::positive))]
    pub lr: f64,
    /// Final learning rate of the cosine schedule.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = OptimiserArgs::TRAINING.lr_min,
          value_parser = flags::non_negative))]
    pub lr_min: f64,
    /// SGD momentum, in [0, 1).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = OptimiserArgs::TRAINING.momentum,
          value_parser = flags::fraction))]
    pub momentum: f64,
    /// Weight decay (L2, added to the gradient).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = OptimiserArgs::TRAINING.weight_decay,
          value_parser = flags::non_negative))]
    pub weight_decay: f64,
    /// Global gradient-norm clip of the weights.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = OptimiserArgs::TRAINING.grad_clip,
          value_parser = flags::positive))]
    pub grad_clip: f64,
}

impl OptimiserArgs {
    /// The training defaults (DARTS' evaluation recipe: 0.025 cosine to 0, momentum 0.9,
    /// weight decay 3e-4, clip 5; 100 epochs of batch 32).
    pub const TRAINING: OptimiserArgs = OptimiserArgs {
        epochs: 100,
        batch: 32,
        lr: 0.025,
        lr_min: 0.0,
        momentum: 0.9,
        weight_decay: 3e-4,
        grad_clip: 5.0,
    };

    /// Checks the settings with the parsers their flags use.
    pub fn check(&self) -> Result<()> {
        flags::check_range("epochs", self.epochs, flags::EPOCHS)?;
        flags::check_range("batch", self.batch, flags::BATCH)?;
        flags::check_value("lr", self.lr, flags::positive)?;
        flags::check_value("lr-min", self.lr_min, flags::non_negative)?;
        flags::check_value("momentum", self.momentum, flags::fraction)?;
        flags::check_value("weight-decay", self.weight_decay, flags::non_negative)?;
        flags::check_value("grad-clip", self.grad_clip, flags::positive)
    }
}

/// The run: its seed, folder, device, and how this invocation starts and ends.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(next_help_heading = "Run"))]
pub struct RunArgs {
    /// Random seed (split when drawn here, initialisation, batches, augmentation, drop path).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0))]
    pub seed: u64,
    /// Run folder (search: `runs/search-<algo>`; train: `<search run>/train` for a
    /// run-folder genotype, else `runs/train-<genotype>`; cv: `runs/cv-<genotype>`).
    #[cfg_attr(feature = "cli", arg(long))]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its checkpoint, with its settings (a setting given
    /// differently is refused; --data and --genotype may be left out).
    #[cfg_attr(feature = "cli", arg(long))]
    pub resume: bool,
    /// With --resume: run to this invocation's --epochs (per stage) instead of the run's.
    #[cfg_attr(feature = "cli", arg(long, requires = "resume"))]
    #[serde(default)]
    pub extend_epochs: bool,
    /// Compute device: cpu, cuda, cuda:N or auto.
    #[cfg_attr(feature = "cli", arg(long, default_value = "cpu"))]
    pub device: DeviceChoice,
    /// End this invocation once this many epochs (over all stages) are complete; continue
    /// with --resume.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(skip)]
    pub stop_after: Option<usize>,
    /// The settings given on the command line (field names; set by the binary), which a
    /// resumed run compares with the run's; `None` compares every setting.
    #[cfg_attr(feature = "cli", arg(skip))]
    #[serde(skip)]
    pub explicit: Option<Vec<String>>,
}
