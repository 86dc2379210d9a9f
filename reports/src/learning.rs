//! What the architecture weights learned during a search, and whether it is more than noise.
//!
//! Per cell, [`CellLearning`]: the mean entropy of each edge's softmaxed architecture
//! weights (uniform: ln of its number of candidates, ln 8 for the full set) and the mean
//! margin of each edge's choice, the log-ratio of its best to its second-best weight (`none`
//! left out, as the genotype leaves it out), which is the difference of their logits.
//!
//! **The noise rule** ([`noise_margin`]). Adam normalises its steps, so a logit moves by
//! about the learning rate `lr` per step whatever the size of its gradient: a gradient of
//! consistent sign moves it by `lr * S` in `S` steps, and a gradient that is noise around
//! zero makes a random walk whose displacement has a standard deviation of about
//! `lr * sqrt(S)` (Adam's momentum sums each gradient once; its second moment divides by the
//! noise's size). The logits start at `1e-3 * N(0, 1)`. Under noise alone, the difference of
//! two logits therefore has a standard deviation of `sqrt(2 * (1e-6 + lr^2 * S))`, and an
//! edge's margin, the gap between its two largest logits, is rarely above twice that. A
//! search whose mean margin is below this bound has not shown that its choice is more than
//! its own noise would give, and its genotype is reported as noise; the cure is more
//! architecture steps or a larger architecture learning rate (a margin grows as `S` with a
//! consistent gradient but as `sqrt(S)` with noise).

use hands_models::Op;
use serde::{Deserialize, Serialize};

/// Standard deviation of the architecture logits at initialisation (see
/// `hands_nas::supernet::Supernet::new`).
pub const INITIAL_LOGIT_STD: f64 = 1e-3;

/// How far one cell's architecture weights have moved from uniform.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CellLearning {
    /// Mean over edges of the entropy of the softmaxed weights, in nats.
    pub entropy: f64,
    /// The same for uniform weights over each edge's candidates (ln 8 for all of them).
    pub uniform_entropy: f64,
    /// Mean over edges of ln(best weight / second-best weight), `none` left out.
    pub margin: f64,
}

impl CellLearning {
    /// The figures of a cell's softmaxed weights `weights` (per edge, per candidate) over
    /// `candidates` (per edge).
    pub fn of(weights: &[Vec<f64>], candidates: &[Vec<Op>]) -> CellLearning {
        let edges = weights.len().max(1) as f64;
        let mut learning = CellLearning {
            entropy: 0.0,
            uniform_entropy: 0.0,
            margin: 0.0,
        };
        for (edge, ops) in weights.iter().zip(candidates) {
            learning.entropy += edge
                .iter()
                .filter(|&&p| p > 0.0)
                .map(|&p| -p * p.ln())
                .sum::<f64>();
            learning.uniform_entropy += (edge.len() as f64).ln();
            learning.margin += margin(edge, ops);
        }
        learning.entropy /= edges;
        learning.uniform_entropy /= edges;
        learning.margin /= edges;
        learning
    }
}

/// ln(best / second-best) of one edge's weights, `none` left out (0 with fewer than two
/// other candidates).
fn margin(weights: &[f64], ops: &[Op]) -> f64 {
    let mut kept: Vec<f64> = weights
        .iter()
        .zip(ops)
        .filter(|(_, op)| **op != Op::None)
        .map(|(&p, _)| p)
        .collect();
    if kept.len() < 2 {
        return 0.0;
    }
    kept.sort_by(|a, b| b.total_cmp(a));
    (kept[0] / kept[1]).ln()
}

/// The largest mean margin that `steps` Adam steps at learning rate `lr` reach by noise alone
/// from the initial logits (the module's noise rule): `2 * sqrt(2 * (1e-6 + lr^2 * steps))`.
pub fn noise_margin(steps: usize, lr: f64) -> f64 {
    2.0 * (2.0 * (INITIAL_LOGIT_STD.powi(2) + lr.powi(2) * steps as f64)).sqrt()
}

/// What the architecture learned over the steps behind its current weights: one line of
/// `search.jsonl` and `finished.json` hold it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ArchitectureLearning {
    /// Architecture steps behind the current weights (the stage's: P-DARTS starts each
    /// stage from fresh weights).
    pub arch_steps: usize,
    /// Their learning rate.
    pub arch_lr: f64,
    /// The normal cell.
    pub normal: CellLearning,
    /// The reduction cell.
    pub reduce: CellLearning,
    /// [`noise_margin`] of these steps.
    pub noise_margin: f64,
    /// Whether both cells' mean margins are within [`Self::noise_margin`]: the genotype
    /// is not evidence of anything the search learned.
    pub noise: bool,
}

impl ArchitectureLearning {
    /// The figures of both cells after `arch_steps` steps at `arch_lr`.
    pub fn new(
        arch_steps: usize,
        arch_lr: f64,
        normal: CellLearning,
        reduce: CellLearning,
    ) -> ArchitectureLearning {
        let noise_margin = noise_margin(arch_steps, arch_lr);
        ArchitectureLearning {
            arch_steps,
            arch_lr,
            normal,
            reduce,
            noise_margin,
            noise: normal.margin.max(reduce.margin) <= noise_margin,
        }
    }

    /// What a user should be told when the genotype is noise, or `None`.
    pub fn warning(&self) -> Option<String> {
        self.noise.then(|| {
            format!(
                "the architecture weights did not move beyond noise: after {} architecture \
                 steps at learning rate {}, the mean margin between each edge's two best \
                 operations is {:.4} (normal) and {:.4} (reduction) in logits, within the \
                 {:.4} that noise alone reaches, and the mean entropy {:.3} of {:.3} for \
                 uniform weights; the genotype is not evidence of a better cell. Give the \
                 search more architecture steps (more epochs, fewer warm-up epochs, a smaller \
                 batch, more data) or a larger --arch-lr",
                self.arch_steps,
                self.arch_lr,
                self.normal.margin,
                self.reduce.margin,
                self.noise_margin,
                self.normal.entropy,
                self.normal.uniform_entropy,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_weights_have_the_uniform_entropy_and_no_margin() {
        let ops = vec![Op::ALL.to_vec(); 3];
        let uniform = vec![vec![1.0 / 8.0; 8]; 3];
        let learning = CellLearning::of(&uniform, &ops);
        assert!((learning.entropy - 8f64.ln()).abs() < 1e-12);
        assert!((learning.uniform_entropy - 8f64.ln()).abs() < 1e-12);
        assert_eq!(learning.margin, 0.0);
    }

    #[test]
    fn the_margin_is_the_log_ratio_of_the_two_best_without_none() {
        let ops = Op::ALL.to_vec();
        let none = ops.iter().position(|op| *op == Op::None).unwrap();
        let mut weights = vec![0.1; 8];
        weights[none] = 0.5; // the largest, but `none` never wins an edge
        let best = (none + 1) % 8;
        weights[best] = 0.2;
        let learning = CellLearning::of(&[weights], &[ops]);
        assert!((learning.margin - 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn the_noise_bound_grows_with_the_root_of_the_steps() {
        assert!((noise_margin(0, 0.1) - 2.0 * (2e-6f64).sqrt()).abs() < 1e-15);
        let at_100 = noise_margin(100, 1e-2);
        let at_400 = noise_margin(400, 1e-2);
        assert!((at_400 / at_100 - 2.0).abs() < 0.01, "{at_100} {at_400}");
    }
}
