//! The settings of `hands-search train` (and of every fold of `cv`): the genotype and its
//! split, the shared groups and the regularisation of the training.

use std::path::{Path, PathBuf};

use anyhow::Result;
use hands_models::genotype::GENOTYPE_FILE;
use serde::{Deserialize, Serialize};

use crate::args::{DataArgs, NetworkArgs, OptimiserArgs, RunArgs};
use crate::flags;
use hands_data::{Augment, AugmentRecipe};
use hands_reports::run_dir::RunDir;

/// Arguments of `hands-search train`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(mut_arg("layers", |a| a.value_parser(flags::usize_in(flags::TRAIN_LAYERS)))))]
pub struct TrainArgs {
    /// The genotype: a published name (DARTS_V1, DARTS_V2, PC_DARTS_cifar, PDARTS),
    /// `random:SEED` (drawn uniformly from the search space, the random baseline), a search run
    /// folder (its genotype.json, and its split.json unless --split-file), or a file in JSON or
    /// DARTS' Python notation.
    #[cfg_attr(feature = "cli", arg(long))]
    pub genotype: String,
    /// Train the genotype of a search run folder that has not finished (its genotype of the
    /// last epoch run); without it such a folder is refused.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub allow_unfinished: bool,
    /// The subject split to use (default: the search run's split.json when --genotype is a
    /// run folder or a file in one, else a new split drawn with --seed).
    #[cfg_attr(feature = "cli", arg(long))]
    pub split_file: Option<PathBuf>,
    /// Share of the subjects (per label) held out as test subjects when the split is drawn
    /// here; the validation share is 0.15. 0 trains on every subject but the validation ones
    /// (a final model, measured by cross-validation instead).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = TrainArgs::TEST_SHARE, value_parser = flags::test_share))]
    #[serde(default = "default_test_share")]
    pub test_share: f64,
    /// A `hands-search cv` run folder that cross-validated this training's genotype with
    /// this training's settings: its figures go into the model card as the headline metrics
    /// (refused when the settings differ).
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub cross_validation: Option<PathBuf>,
    /// Which epoch's weights are kept: `accuracy`, the best validation mean per-class
    /// accuracy (ties: the lower validation loss); `loss`, the lowest validation loss;
    /// `last`, the last epoch (the validation share is then only watched; the only rule a
    /// split without validation subjects allows).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = SelectBy::Accuracy))]
    #[serde(default)]
    pub select: SelectBy,
    /// Before each validation, and so in the weights kept, replace the BatchNorm running
    /// statistics (a moving average over the last few batches, taken while the weights
    /// moved) by the average batch statistics of the current weights over one more pass of
    /// the training images, augmented and batched as in training ("precise BN").
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub precise_bn: bool,
    /// The images.
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub data: DataArgs,
    /// The network's width and depth.
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub network: NetworkArgs,
    /// The weights' optimiser.
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub optimiser: OptimiserArgs,
    /// Auxiliary head, drop path, augmentation, loss.
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub regularisation: RegularisationArgs,
    /// Seed, folder, device, resumption.
    #[cfg_attr(feature = "cli", command(flatten))]
    #[serde(flatten)]
    pub run: RunArgs,
}

/// What keeps the trained network from fitting its few subjects by heart: the auxiliary
/// head, drop path, augmentation, label smoothing and the class weighting of the loss.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(next_help_heading = "Regularisation"))]
pub struct RegularisationArgs {
    /// Weight of the auxiliary head's loss (0 builds no auxiliary head).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RegularisationArgs::DEFAULT.auxiliary_weight,
          value_parser = flags::non_negative))]
    pub auxiliary_weight: f64,
    /// Final drop-path probability, ramped linearly from 0 over the epochs; in [0, 1).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RegularisationArgs::DEFAULT.drop_path,
          value_parser = flags::fraction))]
    pub drop_path: f64,
    /// Cutout square side in pixels (0 = off; at most 512).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RegularisationArgs::DEFAULT.cutout,
          value_parser = flags::u32_in(0..=512)))]
    pub cutout: u32,
    /// Label smoothing of the cross-entropy loss, in [0, 1).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RegularisationArgs::DEFAULT.label_smoothing,
          value_parser = flags::fraction))]
    pub label_smoothing: f64,
    /// How the loss weighs the classes: `balanced` (each class by N / (K n_c) over the
    /// training images) or `none`.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = RegularisationArgs::DEFAULT.class_weight))]
    #[serde(default = "unweighted")]
    pub class_weight: ClassWeight,
    /// Training augmentation: `photo` (random resized crop, rotation, flip, colour jitter) or
    /// `darts` (DARTS' padded crop and flip); --cutout, --vertical-flip and --colour-jitter
    /// adjust either.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RegularisationArgs::DEFAULT.augment,
          value_parser = flags::choice::<AugmentRecipe>()))]
    #[serde(default = "darts_augment")]
    pub augment: AugmentRecipe,
    /// Also mirror training images top-bottom half the time, so that a hand pointing down
    /// reads as one pointing up (11K Hands' originals point down, its older square copies
    /// up).
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub vertical_flip: bool,
    /// Brightness, contrast and saturation jitter of the training images, each factor drawn
    /// from [1 - J, 1 + J], in place of the recipe's own (`photo` 0.2, `darts` 0); in [0, 1).
    #[cfg_attr(feature = "cli", arg(long, value_name = "J", value_parser = flags::fraction))]
    #[serde(default)]
    pub colour_jitter: Option<f64>,
    /// Probability of turning a training image grey (its luma in all three channels, as
    /// torchvision's `RandomGrayscale`); in [0, 1).
    #[cfg_attr(feature = "cli", arg(long, value_name = "P", default_value_t = RegularisationArgs::DEFAULT.greyscale,
          value_parser = flags::fraction))]
    #[serde(default)]
    pub greyscale: f64,
    /// Mixup's alpha (Zhang et al. 2018): each training batch is blended with a shuffled
    /// copy of itself by a weight drawn from Beta(alpha, alpha), the loss likewise (0 = off).
    #[cfg_attr(feature = "cli", arg(long, value_name = "ALPHA", default_value_t = RegularisationArgs::DEFAULT.mixup,
          value_parser = flags::non_negative))]
    #[serde(default)]
    pub mixup: f64,
    /// Share of original photos (images that are not square: 11K Hands' 4:3 originals, like
    /// a user's own) in each training epoch, in (0, 1): originals drawn more often and the
    /// square copies less (or the reverse), the epoch's length kept. Default: the training
    /// images' own share.
    #[cfg_attr(feature = "cli", arg(long, value_name = "S", value_parser = flags::open_fraction))]
    #[serde(default)]
    pub originals_share: Option<f64>,
    /// Loss weight of original photos (images that are not square) against 1 for the square
    /// copies, every image still drawn once an epoch; positive. Default: no weighting.
    #[cfg_attr(feature = "cli", arg(long, value_name = "W", value_parser = flags::positive))]
    #[serde(default)]
    pub originals_weight: Option<f64>,
}

impl RegularisationArgs {
    /// The defaults: DARTS' evaluation regularisation (auxiliary weight 0.4, drop path 0.2,
    /// cutout 16) with the photo augmentation and the balanced loss.
    pub const DEFAULT: RegularisationArgs = RegularisationArgs {
        auxiliary_weight: 0.4,
        drop_path: 0.2,
        cutout: 16,
        label_smoothing: 0.0,
        class_weight: ClassWeight::Balanced,
        augment: AugmentRecipe::Photo,
        vertical_flip: false,
        colour_jitter: None,
        greyscale: 0.0,
        mixup: 0.0,
        originals_share: None,
        originals_weight: None,
    };

    /// The training augmentation at input side `size`: the recipe with the cutout, vertical
    /// flip, colour jitter and greyscale set here.
    pub fn augmentation(&self, size: u32) -> Augment {
        let recipe = Augment::recipe(self.augment, size)
            .with_cutout(self.cutout)
            .with_vertical_flip(self.vertical_flip)
            .with_greyscale(self.greyscale as f32);
        match self.colour_jitter {
            Some(jitter) => recipe.with_colour_jitter(jitter as f32),
            None => recipe,
        }
    }

    /// Checks the settings with the parsers their flags use.
    pub fn check(&self) -> Result<()> {
        flags::check_range("cutout", self.cutout as usize, 0..=512)?;
        flags::check_value(
            "auxiliary-weight",
            self.auxiliary_weight,
            flags::non_negative,
        )?;
        flags::check_value("drop-path", self.drop_path, flags::fraction)?;
        flags::check_value("greyscale", self.greyscale, flags::fraction)?;
        flags::check_value("mixup", self.mixup, flags::non_negative)?;
        if let Some(jitter) = self.colour_jitter {
            flags::check_value("colour-jitter", jitter, flags::fraction)?;
        }
        if let Some(share) = self.originals_share {
            flags::check_value("originals-share", share, flags::open_fraction)?;
        }
        if let Some(weight) = self.originals_weight {
            flags::check_value("originals-weight", weight, flags::positive)?;
        }
        flags::check_value("label-smoothing", self.label_smoothing, flags::fraction)
    }
}

/// The class weighting of runs written before `--class-weight` existed.
fn unweighted() -> ClassWeight {
    ClassWeight::None
}

/// The augmentation of runs written before `--augment` existed.
fn darts_augment() -> AugmentRecipe {
    AugmentRecipe::Darts
}

/// The test share of runs written before `--test-share` existed.
fn default_test_share() -> f64 {
    TrainArgs::TEST_SHARE
}

impl TrainArgs {
    /// The default share of test subjects.
    pub const TEST_SHARE: f64 = 0.15;

    /// The settings with every default and the given data and genotype (for tests and
    /// programs that embed the trainer).
    pub fn new(data: impl Into<PathBuf>, genotype: &str) -> TrainArgs {
        TrainArgs {
            genotype: genotype.to_string(),
            allow_unfinished: false,
            split_file: None,
            test_share: TrainArgs::TEST_SHARE,
            cross_validation: None,
            select: SelectBy::Accuracy,
            precise_bn: false,
            data: DataArgs::new(data),
            network: NetworkArgs::DEFAULT,
            optimiser: OptimiserArgs::TRAINING,
            regularisation: RegularisationArgs::DEFAULT,
            run: RunArgs::default(),
        }
    }

    /// The run folder.
    pub fn out_dir(&self) -> PathBuf {
        if let Some(out) = &self.run.out {
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
    pub(crate) fn split_source(&self) -> Option<PathBuf> {
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
    pub(crate) fn search_run(&self) -> Option<RunDir> {
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
        self.data.check()?;
        self.network.check(flags::TRAIN_LAYERS)?;
        self.optimiser.check()?;
        self.regularisation.check()?;
        flags::check_value("test-share", self.test_share, flags::test_share)
    }
}

/// How the epoch whose weights are kept is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum SelectBy {
    /// The best validation mean per-class accuracy (ties: the lower validation loss), so
    /// that a model answering the majority class is never preferred.
    #[default]
    Accuracy,
    /// The lowest validation loss.
    Loss,
    /// The last epoch: no selection (the validation share is only watched).
    Last,
}

impl SelectBy {
    /// How the kept epoch was chosen with a validation share of `val_share` of the training
    /// subjects, in words (for reports).
    pub fn describe(self, val_share: f64) -> String {
        let share = format!("a validation share of {val_share} of those subjects");
        match self {
            SelectBy::Accuracy => {
                format!("the epoch selected on {share} by mean per-class accuracy")
            }
            SelectBy::Loss => format!("the epoch selected on {share} by loss"),
            SelectBy::Last => format!("the last epoch kept ({share} only watched)"),
        }
    }
}

/// How the training loss weighs the classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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

#[cfg(all(test, feature = "cli"))]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_defaults_are_the_constructors() {
        #[derive(clap::Parser)]
        struct TrainOnly {
            #[command(flatten)]
            args: TrainArgs,
        }
        let parsed = <TrainOnly as clap::Parser>::parse_from([
            "train",
            "--data",
            "data",
            "--genotype",
            "DARTS_V2",
        ])
        .args;
        assert_eq!(parsed, TrainArgs::new("data", "DARTS_V2"));
    }

    #[test]
    fn colour_jitter_and_greyscale_are_set_and_checked() {
        #[derive(clap::Parser)]
        struct Regularisation {
            #[command(flatten)]
            args: RegularisationArgs,
        }
        let parse = |flags: &[&str]| {
            let argv = std::iter::once("train").chain(flags.iter().copied());
            <Regularisation as clap::Parser>::try_parse_from(argv).map(|r| r.args)
        };
        let photo = parse(&[]).unwrap();
        assert_eq!(photo.augmentation(32).colour_jitter, 0.2);
        let darts = parse(&["--augment", "darts"]).unwrap();
        assert_eq!(darts.augmentation(32).colour_jitter, 0.0);
        let jittered = parse(&["--augment", "darts", "--colour-jitter", "0.3"]).unwrap();
        assert_eq!(
            jittered.augmentation(32),
            darts.augmentation(32).with_colour_jitter(0.3)
        );
        assert!(parse(&["--colour-jitter", "1.5"]).is_err());
        let mut bad = darts;
        bad.colour_jitter = Some(-0.1);
        assert!(bad.check().is_err());
        // Greyscale: off unless asked, a probability below one.
        assert_eq!(darts.augmentation(32).greyscale, 0.0);
        let greyed = parse(&["--augment", "darts", "--greyscale", "0.25"]).unwrap();
        assert_eq!(
            greyed.augmentation(32),
            darts.augmentation(32).with_greyscale(0.25)
        );
        assert!(parse(&["--greyscale", "1"]).is_err());
        let mut bad = darts;
        bad.greyscale = 2.0;
        assert!(bad.check().is_err());
    }
}
