//! The search's run configuration ([`search`]: the settings of `hands-search search`, built on
//! the groups `hands_train::args` shares with training), and under the `cli` feature the
//! completion of a `--resume` command line from a run's stored settings ([`stored`]).

pub mod search;
#[cfg(feature = "cli")]
pub mod stored;
