//! P-DARTS' stage machinery: the stage plan, candidate pruning between stages, the
//! skip-connect dropout schedule and the final limit on skip connections.

use hands_models::genotype::Genotype;
use hands_models::Op;

use crate::derive::derive_genotype;

/// One stage of a search (DARTS and PC-DARTS have a single one).
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    /// Cells of the supernet.
    pub layers: usize,
    /// Candidate operations per edge.
    pub ops: usize,
    /// Skip-connect dropout rate before decay.
    pub skip_dropout: f64,
    /// Epochs of the stage.
    pub epochs: usize,
    /// Weight-only epochs at the start of the stage.
    pub warmup: usize,
}

/// P-DARTS' decayed skip-connect dropout: the stage's rate during the warm-up, then
/// `rate * exp(-0.2 * (epoch - warmup))`.
pub fn skip_dropout_rate(stage: &StagePlan, epoch: usize) -> f64 {
    if epoch < stage.warmup {
        stage.skip_dropout
    } else {
        stage.skip_dropout * (-0.2 * (epoch - stage.warmup) as f64).exp()
    }
}

/// Keeps `keep` candidates per edge: `none` goes first (as P-DARTS' `get_min_k_no_zero`
/// drops it before anything else), then the weakest by weight. The kept ops stay in
/// primitive order.
pub fn prune_candidates(weights: &[Vec<f64>], candidates: &[Vec<Op>], keep: usize) -> Vec<Vec<Op>> {
    weights
        .iter()
        .zip(candidates)
        .map(|(w, ops)| {
            if ops.len() <= keep {
                return ops.clone();
            }
            let mut ranked: Vec<(f64, Op)> = w.iter().copied().zip(ops.iter().copied()).collect();
            // `none` ranks below everything; ties keep primitive order.
            ranked.sort_by(|a, b| {
                let key = |(w, op): (f64, Op)| if op == Op::None { f64::NEG_INFINITY } else { w };
                key(*b).total_cmp(&key(*a))
            });
            let mut kept: Vec<Op> = ranked.into_iter().take(keep).map(|(_, op)| op).collect();
            kept.sort();
            kept
        })
        .collect()
}

/// Derives the genotype, then while the normal cell has more than `max_skip`
/// skip connections, zeroes the skip weight of the weakest chosen skip edge and derives
/// again, so that edge takes its next best operation or input (P-DARTS'
/// `delete_min_sk_prob` loop, restricted to edges the genotype uses).
pub fn limit_skips(
    normal: &[Vec<f64>],
    normal_candidates: &[Vec<Op>],
    reduce: &[Vec<f64>],
    reduce_candidates: &[Vec<Op>],
    max_skip: usize,
) -> Genotype {
    let mut normal = normal.to_vec();
    loop {
        let genotype = derive_genotype(&normal, normal_candidates, reduce, reduce_candidates);
        let skips = genotype
            .normal
            .iter()
            .filter(|(op, _)| *op == Op::SkipConnect)
            .count();
        if skips <= max_skip {
            return genotype;
        }
        // The chosen skip edges, by their edge index in the 14-edge cell.
        let weakest = genotype
            .normal
            .iter()
            .enumerate()
            .filter(|(_, (op, _))| *op == Op::SkipConnect)
            .map(|(k, &(_, from))| {
                let edge = crate::supernet::node_edges(k / 2).start + from;
                let col = normal_candidates[edge]
                    .iter()
                    .position(|&op| op == Op::SkipConnect)
                    .expect("a chosen op is a candidate");
                (normal[edge][col], edge, col)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .expect("more skips than the limit means at least one");
        normal[weakest.1][weakest.2] = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supernet::EDGES;

    #[test]
    fn pruning_keeps_the_top_k_by_weight_and_drops_none_first() {
        let candidates = vec![Op::ALL.to_vec(); EDGES];
        let mut weights = vec![vec![0.30, 0.05, 0.10, 0.20, 0.15, 0.02, 0.08, 0.10]; EDGES];
        weights[3] = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.6, 0.3];
        let pruned = prune_candidates(&weights, &candidates, 3);
        assert_eq!(
            pruned[0],
            vec![Op::AvgPool3x3, Op::SkipConnect, Op::SepConv3x3]
        );
        assert_eq!(
            pruned[3],
            vec![Op::SepConv5x5, Op::DilConv3x3, Op::DilConv5x5]
        );
        // Pruning again to fewer keeps a subset.
        let w2: Vec<Vec<f64>> = vec![vec![0.2, 0.5, 0.3]; EDGES];
        let again = prune_candidates(&w2, &pruned, 2);
        assert_eq!(again[0], vec![Op::SkipConnect, Op::SepConv3x3]);
    }

    #[test]
    fn skip_limit_replaces_the_weakest_skip_edges() {
        let candidates = vec![vec![Op::SkipConnect, Op::SepConv3x3]; EDGES];
        // Skip wins everywhere; its strength grows with the edge index.
        let normal: Vec<Vec<f64>> = (0..EDGES)
            .map(|e| vec![0.6 + 0.01 * e as f64, 0.3])
            .collect();
        let unlimited = derive_genotype(&normal, &candidates, &normal, &candidates);
        assert_eq!(
            unlimited
                .normal
                .iter()
                .filter(|(op, _)| *op == Op::SkipConnect)
                .count(),
            8
        );
        let limited = limit_skips(&normal, &candidates, &normal, &candidates, 2);
        let skips: Vec<usize> = limited
            .normal
            .iter()
            .enumerate()
            .filter(|(_, (op, _))| *op == Op::SkipConnect)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(skips.len(), 2);
        // The strongest skips (the last node's edges) survive.
        assert_eq!(skips, vec![6, 7]);
        assert_eq!(limited.reduce, unlimited.reduce);
        limited.validate().unwrap();
    }

    #[test]
    fn dropout_decays_after_warmup() {
        let stage = StagePlan {
            layers: 5,
            ops: 8,
            skip_dropout: 0.4,
            epochs: 25,
            warmup: 10,
        };
        assert_eq!(skip_dropout_rate(&stage, 3), 0.4);
        assert_eq!(skip_dropout_rate(&stage, 10), 0.4);
        assert!((skip_dropout_rate(&stage, 15) - 0.4 * (-1.0f64).exp()).abs() < 1e-12);
    }
}
