//! hands-search: differentiable architecture search (DARTS, P-DARTS, PC-DARTS) for
//! hand-gender networks in candle, and training and evaluation of the networks it finds.
//!
//! The settings ([`args`]) are plain serde structs built with their constructors (e.g.
//! [`args::train::TrainArgs::new`]); the command line's clap derives on them exist only under
//! the default `cli` feature, which a program using the library alone turns off
//! (`default-features = false`; see `examples/pipeline.rs`).

pub mod architect;
pub mod args;
pub mod budget;
pub mod calibrate;
pub mod checkpoint;
pub mod compare;
pub mod cost;
pub mod cv;
mod cv_genotype;
pub mod cv_report;
pub mod derive;
pub mod device;
pub mod ensemble;
pub mod eval;
pub mod final_network;
pub mod flags;
pub mod hessian;
mod kept_predictions;
pub mod latency;
pub mod learner;
pub mod memory;
pub mod pdarts;
pub mod provenance;
pub mod resume;
pub mod schedule;
pub mod search;
pub mod search_state;
pub mod stage_run;
pub mod supernet;
pub mod train;
