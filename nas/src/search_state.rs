//! The state a search checkpoint records besides its tensors: the settings, the stage and
//! epoch, the candidates of every edge, the random generator, and what the architecture
//! learned and the early stop saw so far.

use anyhow::{bail, Result};
use hands_models::{Genotype, Op};
use hands_reports::learning::ArchitectureLearning;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::args::SearchArgs;
use crate::supernet::EDGES;

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
    /// Architecture steps in the current stage (behind the current architecture weights;
    /// 0 in checkpoints written before they were counted).
    #[serde(default)]
    pub(crate) stage_arch_steps: usize,
    /// What the architecture learned, after the last epoch.
    #[serde(default)]
    pub(crate) learning: Option<ArchitectureLearning>,
    /// Per normal edge, the previous stage's candidates other than `none` and skips,
    /// strongest first: what the skip limit may give an edge left with skips only.
    #[serde(default)]
    pub(crate) skip_fallback: Vec<Vec<Op>>,
}

/// Where R-DARTS' early stop ended a search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStop {
    /// The epoch after which the rise was seen (0-based, over all stages).
    pub stopped_after: usize,
    /// The epoch whose genotype the search kept.
    pub kept_epoch: usize,
}

impl SearchState {
    /// Bounds what a checkpoint's state holds before it sizes a network: the settings'
    /// ranges, and one list of distinct known operations per edge.
    pub(crate) fn check(&self) -> Result<()> {
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
