//! hands-search: differentiable architecture search (DARTS, P-DARTS, PC-DARTS) for
//! hand-gender networks in candle; the found networks are trained and measured by
//! `hands-train`, and the `hands-search` command runs both.
//!
//! The settings ([`args`]) are plain serde structs built with their constructors (e.g.
//! [`args::search::SearchArgs::new`]); the command line's clap derives on them exist only
//! under the default `cli` feature, which a program using the library alone turns off
//! (`default-features = false`; see `examples/pipeline.rs`).

pub mod architect;
pub mod args;
pub mod budget;
pub mod cost;
pub mod derive;
pub mod final_network;
pub mod hessian;
pub mod latency;
pub mod memory;
pub mod pdarts;
pub mod search;
pub mod search_state;
pub mod stage_run;
pub mod supernet;
