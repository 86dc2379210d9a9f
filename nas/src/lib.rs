//! hands-nas: differentiable architecture search (DARTS first and second order, P-DARTS,
//! PC-DARTS) for hand-gender networks in candle.
//!
//! - The search network: the supernet of mixed operations ([`supernet`]) and its
//!   architecture step ([`architect`], the second-order Hessian-vector product in
//!   [`hessian`]); the genotype read off it ([`derive`]); P-DARTS' stages and pruning
//!   ([`pdarts`]).
//! - The engine: [`search`] runs a search from its settings ([`args`]), stage by stage
//!   ([`stage_run`]), checkpointing what [`search_state`] records.
//! - Resource budgets: the expected-cost term ([`budget`]) over the network a budget is
//!   about ([`final_network`]), costs ([`cost`]) and measured latencies ([`latency`]).
//! - Memory: cells recomputed in the backward pass instead of kept ([`recompute`]); the
//!   allocator setting and peak memory the command and benchmarks use ([`memory`]).
//!
//! The found networks are trained and measured by `hands-train`. The settings are plain
//! serde structs built with their constructors (e.g. [`args::SearchArgs::new`]); their clap
//! derives exist only under the `cli` feature, which `hands-search` turns on (see
//! `examples/pipeline.rs` for the libraries used alone).

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
pub mod recompute;
pub mod search;
pub mod search_state;
pub mod stage_run;
pub mod supernet;
