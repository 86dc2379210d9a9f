//! The JSON-lines records of a run, one type per log: [`SearchEpoch`] for each line of
//! `search.jsonl`, [`TrainEpoch`] for each line of `train.jsonl`. The engines write them and
//! `plot` reads them back, so a field is declared once. Fields added after the first logs
//! were written default when absent, so that older logs still plot.

use std::fmt;

use hands_models::{Genotype, Op};
use serde::{Deserialize, Serialize};

use crate::learning::ArchitectureLearning;

/// One line of `search.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchEpoch {
    /// The epoch, counted over all stages (0-based).
    pub epoch: usize,
    /// The P-DARTS stage (0 for single-stage searches).
    #[serde(default)]
    pub stage: usize,
    /// The epoch within the stage.
    #[serde(default)]
    pub stage_epoch: usize,
    /// Cells of the stage's supernet.
    #[serde(default)]
    pub layers: usize,
    /// The epoch's losses, accuracies and schedule.
    #[serde(flatten)]
    pub stats: EpochStats,
    /// Softmax of the normal cell's architecture logits, per edge and candidate.
    pub alphas_normal: Vec<Vec<f64>>,
    /// The same for the reduction cell.
    pub alphas_reduce: Vec<Vec<f64>>,
    /// PC-DARTS' edge weights of the normal cell, per node's incoming edge.
    #[serde(default)]
    pub betas_normal: Option<Vec<f64>>,
    /// The same for the reduction cell.
    #[serde(default)]
    pub betas_reduce: Option<Vec<f64>>,
    /// The candidate operations of each normal edge (all of them, or P-DARTS' pruned sets).
    pub candidates_normal: Vec<Vec<Op>>,
    /// The same for the reduction cell.
    pub candidates_reduce: Vec<Vec<Op>>,
    /// The genotype derived after the epoch.
    #[serde(default)]
    pub genotype: Option<Genotype>,
    /// The cost of the derived genotype's final network, in the budget's unit (--cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genotype_cost: Option<f64>,
    /// Pools and skips in the derived normal cell ([`Genotype::parameter_free_normal_ops`]);
    /// absent from logs written before it was recorded.
    #[serde(default)]
    pub parameter_free_normal: Option<usize>,
    /// What the architecture weights learned so far (steps, entropy, margins, whether it is
    /// noise); absent from logs written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<ArchitectureLearning>,
}

impl SearchEpoch {
    /// The weights and candidates of the reduction cell or the normal cell.
    pub fn cell(&self, reduction: bool) -> (&[Vec<f64>], &[Vec<Op>]) {
        if reduction {
            (&self.alphas_reduce, &self.candidates_reduce)
        } else {
            (&self.alphas_normal, &self.candidates_normal)
        }
    }
}

/// The figures of one search epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochStats {
    /// The weights' learning rate.
    pub lr: f64,
    /// Whether the architecture was updated (false during the warm-up).
    #[serde(default)]
    pub arch_active: bool,
    /// Architecture steps taken in the epoch.
    #[serde(default)]
    pub arch_steps: usize,
    /// P-DARTS' skip-connect dropout rate.
    #[serde(default)]
    pub skip_dropout: f64,
    /// The Beta-Decay weight of the epoch's architecture steps.
    #[serde(default)]
    pub beta_decay: f64,
    /// The dominant eigenvalue of the architecture Hessian after the epoch
    /// (--hessian-iterations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hessian_eigenvalue: Option<f64>,
    /// The expected cost of the final network under the architecture weights after the
    /// epoch, in the budget's unit (--cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_cost: Option<f64>,
    /// Mean training loss of the weight steps.
    pub train_loss: f64,
    /// Training accuracy of the weight steps.
    pub train_acc: f64,
    /// Loss on the architecture half, when the architecture was updated.
    pub val_loss: Option<f64>,
    /// Accuracy on the architecture half.
    pub val_acc: Option<f64>,
    /// Wall-clock seconds of the epoch.
    #[serde(default)]
    pub seconds: f64,
}

/// One line of `train.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainEpoch {
    /// The epoch (0-based).
    pub epoch: usize,
    /// Its learning rate.
    pub lr: f64,
    /// Its drop-path probability.
    pub drop_path: f64,
    /// Mean training loss of the main head (augmented images, drop path on).
    pub train_loss: f64,
    /// Training accuracy under the same conditions.
    pub train_acc: f64,
    /// Validation loss (evaluation mode), when there are validation subjects.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_acc: Option<f64>,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
    /// Training images divided by the epoch's seconds (validation included).
    #[serde(default)]
    pub images_per_s: f64,
}

impl fmt::Display for TrainEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "epoch {}: lr {:.5} train loss {:.4} acc {:.4}",
            self.epoch, self.lr, self.train_loss, self.train_acc
        )?;
        if let (Some(loss), Some(acc)) = (self.val_loss, self.val_acc) {
            write!(f, " | val loss {loss:.4} acc {acc:.4}")?;
        }
        write!(
            f,
            " ({:.1} s, {:.1} training images/s)",
            self.seconds, self.images_per_s
        )
    }
}
