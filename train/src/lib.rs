//! hands-train: training and evaluation of hands' networks, and the mathematics of training
//! that the architecture search shares.
//!
//! - The mathematics: the optimizers with PyTorch's update rules and their fixed variable
//!   order ([`optim`]), the (weighted) cross-entropy and one training step with drop path,
//!   the auxiliary head and gradient clipping ([`step`]), mixup ([`mixup`]), the per-epoch
//!   schedules ([`schedule`]).
//! - The run: its settings ([`args`], checked with the bounds of [`flags`]), the device
//!   ([`device`]), checkpoints ([`checkpoint`]) and resumption ([`resume`]).
//! - Training a found network from scratch ([`train`], one epoch at a time by [`learner`],
//!   what the kept weights were chosen on in [`provenance`]) and measuring it ([`eval`]).
//! - Cross-validation by subject ([`cv`], its figures in [`cv_report`]) and what reads its
//!   runs back: [`compare`] (paired fold by fold), [`ensemble`], [`calibrate`].
//!
//! The settings are plain serde structs; their clap derives (for `hands-search`) exist only
//! under the `cli` feature.

pub mod args;
pub mod calibrate;
pub mod checkpoint;
pub mod compare;
pub mod cv;
mod cv_genotype;
pub mod cv_report;
pub mod device;
pub mod ensemble;
pub mod eval;
pub mod flags;
mod kept_predictions;
pub mod learner;
pub mod mixup;
pub mod optim;
pub mod provenance;
pub mod resume;
pub mod schedule;
pub mod step;
pub mod train;
