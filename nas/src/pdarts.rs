//! P-DARTS' stage machinery: the stage plan, candidate pruning between stages, the
//! skip-connect dropout schedule and the final limit on skip connections.

use hands_models::genotype::{Genotype, EDGES_PER_NODE};
use hands_models::Op;

use crate::args::StagePlan;
use crate::derive::derive_genotype;
use crate::supernet::node_edges;

/// P-DARTS' skip-connect dropout schedule (`train_search.py` of chenxin061/pdarts): during
/// the weight-only warm-up it falls linearly, `rate * (E - e - 1) / E` for epoch `e` of `E`,
/// then decays as `rate * exp(-0.2 * (e - warmup))`.
pub fn skip_dropout_rate(stage: &StagePlan, epoch: usize) -> f64 {
    if epoch < stage.warmup {
        let epochs = stage.epochs as f64;
        stage.skip_dropout * (epochs - epoch as f64 - 1.0) / epochs
    } else {
        stage.skip_dropout * (-0.2 * (epoch - stage.warmup) as f64).exp()
    }
}

/// Keeps `keep` candidates per edge, the strongest by weight, between P-DARTS stages:
/// `none` ranks like any other operation there (P-DARTS' `get_min_k`; it is excluded only
/// from the final choice, which [`derive_genotype`] makes). So that every edge can still be
/// derived, the strongest operation other than `none` is always among those kept. The kept
/// ops stay in primitive order.
pub fn prune_candidates(weights: &[Vec<f64>], candidates: &[Vec<Op>], keep: usize) -> Vec<Vec<Op>> {
    weights
        .iter()
        .zip(candidates)
        .map(|(w, ops)| {
            if ops.len() <= keep {
                return ops.clone();
            }
            let mut ranked: Vec<(f64, Op)> = w.iter().copied().zip(ops.iter().copied()).collect();
            // Strongest first; ties keep primitive order (the sort is stable).
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut kept: Vec<Op> = ranked.iter().take(keep).map(|&(_, op)| op).collect();
            if kept.iter().all(|&op| op == Op::None) {
                let strongest = ranked.iter().find(|(_, op)| *op != Op::None);
                if let Some(&(_, op)) = strongest {
                    *kept.last_mut().expect("keep is at least 1") = op;
                }
            }
            kept.sort();
            kept
        })
        .collect()
}

/// The candidates of each normal edge in the stage before the last, other than `none` and
/// `skip_connect`, strongest first: what [`limit_skips`] may give an edge whose last-stage
/// candidates are all skips (`--stage-ops ...,1`).
pub fn skip_fallback(weights: &[Vec<f64>], candidates: &[Vec<Op>]) -> Vec<Vec<Op>> {
    weights
        .iter()
        .zip(candidates)
        .map(|(w, ops)| {
            let mut ranked: Vec<(f64, Op)> = w
                .iter()
                .copied()
                .zip(ops.iter().copied())
                .filter(|&(_, op)| op != Op::None && op != Op::SkipConnect)
                .collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
            ranked.into_iter().map(|(_, op)| op).collect()
        })
        .collect()
}

/// Derives the genotype, then while the normal cell has more than `max_skip` skip
/// connections, takes `skip_connect` away from the weakest chosen skip edge and derives
/// again, so that edge takes its next best operation or the node another input (P-DARTS'
/// `delete_min_sk_prob` loop). An edge with no other candidate gets its best `fallback`
/// operation (from the stage before) at weight 0; without one it may lose its skip only if
/// its node keeps two other inputs. Each round takes one skip away for good, so the loop
/// ends; when no chosen skip can go, the limit cannot be met and is refused, naming why.
pub fn limit_skips(
    normal: &[Vec<f64>],
    normal_candidates: &[Vec<Op>],
    reduce: &[Vec<f64>],
    reduce_candidates: &[Vec<Op>],
    max_skip: usize,
    fallback: &[Vec<Op>],
) -> anyhow::Result<Genotype> {
    let mut weights = normal.to_vec();
    let mut candidates = normal_candidates.to_vec();
    loop {
        let genotype = derive_genotype(&weights, &candidates, reduce, reduce_candidates);
        // The chosen skips as (weight, edge, node).
        let chosen: Vec<(f64, usize, usize)> = genotype
            .normal
            .iter()
            .enumerate()
            .filter(|(_, (op, _))| *op == Op::SkipConnect)
            .map(|(k, &(_, from))| {
                let node = k / EDGES_PER_NODE;
                let edge = node_edges(node).start + from;
                let weight = weight_of(&weights[edge], &candidates[edge], Op::SkipConnect);
                (weight, edge, node)
            })
            .collect();
        if chosen.len() <= max_skip {
            return Ok(genotype);
        }
        let mut weakest_first = chosen;
        weakest_first.sort_by(|a, b| a.0.total_cmp(&b.0));
        let removable = weakest_first
            .iter()
            .find(|&&(_, edge, node)| can_lose_skip(edge, node, &candidates, fallback))
            .map(|&(_, edge, _)| edge);
        let Some(edge) = removable else {
            anyhow::bail!(
                "the skip limit --max-skip {max_skip} cannot be met: the normal cell's edges \
                 {} have no candidate but skip_connect left in the last stage and their nodes \
                 no other inputs to take; keep more candidates in the last stage (the last \
                 --stage-ops) or allow more skips",
                weakest_first
                    .iter()
                    .map(|(_, e, _)| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let col = candidates[edge]
            .iter()
            .position(|&op| op == Op::SkipConnect)
            .expect("a chosen op is a candidate");
        candidates[edge].remove(col);
        weights[edge].remove(col);
        if !has_choice(&candidates[edge]) {
            if let Some(&op) = fallback.get(edge).and_then(|ops| ops.first()) {
                candidates[edge].push(op);
                weights[edge].push(0.0);
            }
        }
    }
}

/// The weight of `op` among an edge's candidates (0 when it is not one).
fn weight_of(weights: &[f64], candidates: &[Op], op: Op) -> f64 {
    candidates
        .iter()
        .position(|&c| c == op)
        .map_or(0.0, |i| weights[i])
}

/// Whether an edge's candidates hold an operation other than `none` and `skip_connect`.
fn has_choice(candidates: &[Op]) -> bool {
    candidates
        .iter()
        .any(|&op| op != Op::None && op != Op::SkipConnect)
}

/// Whether `edge` (an input of `node`) can lose its skip and its node still be derived: the
/// edge keeps another operation (its own or a fallback), or the node has two other inputs
/// with one.
fn can_lose_skip(edge: usize, node: usize, candidates: &[Vec<Op>], fallback: &[Vec<Op>]) -> bool {
    if has_choice(&candidates[edge]) || fallback.get(edge).is_some_and(|ops| !ops.is_empty()) {
        return true;
    }
    let others = node_edges(node)
        .filter(|&e| e != edge)
        .filter(|&e| candidates[e].iter().any(|&op| op != Op::None))
        .count();
    others >= EDGES_PER_NODE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supernet::EDGES;

    #[test]
    fn pruning_keeps_the_top_k_by_weight_with_none_ranked_like_any_op() {
        let candidates = vec![Op::ALL.to_vec(); EDGES];
        // Op::ALL order: none, max_pool, avg_pool, skip, sep3, sep5, dil3, dil5.
        let mut weights = vec![vec![0.30, 0.05, 0.10, 0.20, 0.15, 0.02, 0.08, 0.10]; EDGES];
        weights[3] = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.6, 0.3];
        let pruned = prune_candidates(&weights, &candidates, 3);
        // `none` is the strongest on edge 0 and stays a candidate (P-DARTS' get_min_k).
        assert_eq!(pruned[0], vec![Op::None, Op::SkipConnect, Op::SepConv3x3]);
        assert_eq!(
            pruned[3],
            vec![Op::SepConv5x5, Op::DilConv3x3, Op::DilConv5x5]
        );
        // Pruning again to fewer keeps a subset; `none` goes when it is among the weakest.
        let w2: Vec<Vec<f64>> = vec![vec![0.2, 0.5, 0.3]; EDGES];
        let again = prune_candidates(&w2, &pruned, 2);
        assert_eq!(again[0], vec![Op::SkipConnect, Op::SepConv3x3]);
        // Keeping one: never `none` alone, the strongest other op instead.
        let w3: Vec<Vec<f64>> = vec![vec![0.6, 0.3, 0.1]; EDGES];
        assert_eq!(prune_candidates(&w3, &pruned, 1)[0], vec![Op::SkipConnect]);
        let w4: Vec<Vec<f64>> = vec![vec![0.6, 0.1, 0.3]; EDGES];
        assert_eq!(
            prune_candidates(&w4, &pruned, 2)[0],
            vec![Op::None, Op::SepConv3x3]
        );
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
        let limited = limit_skips(&normal, &candidates, &normal, &candidates, 2, &[]).unwrap();
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

    /// With one candidate per edge (`--stage-ops ...,1`) and skips everywhere, the limit
    /// used to zero the same skip forever. Now it takes each skip away once: with the stage
    /// before's candidates to fall back on it meets any limit; without, the edges of nodes
    /// with spare inputs give theirs up, and a limit the first node's two skips cannot meet
    /// is refused, naming the edges.
    #[test]
    fn the_skip_limit_always_ends() {
        let skips_only = vec![vec![Op::SkipConnect]; EDGES];
        let normal: Vec<Vec<f64>> = (0..EDGES).map(|e| vec![0.5 + 0.01 * e as f64]).collect();
        let count = |g: &Genotype| {
            g.normal
                .iter()
                .filter(|(op, _)| *op == Op::SkipConnect)
                .count()
        };
        let fallback = vec![vec![Op::SepConv3x3, Op::MaxPool3x3]; EDGES];
        let limited =
            limit_skips(&normal, &skips_only, &normal, &skips_only, 0, &fallback).unwrap();
        assert_eq!(count(&limited), 0);
        assert!(limited.normal.iter().all(|(op, _)| *op == Op::SepConv3x3));
        limited.validate().unwrap();

        let err = limit_skips(&normal, &skips_only, &normal, &skips_only, 0, &[]).unwrap_err();
        assert!(
            err.to_string().contains("--max-skip 0 cannot be met"),
            "{err}"
        );
        // `8,4,2 --max-skip 1`: `none` and a skip on every edge, nothing to fall back on.
        let with_none = vec![vec![Op::None, Op::SkipConnect]; EDGES];
        let two: Vec<Vec<f64>> = (0..EDGES)
            .map(|e| vec![0.1, 0.5 + 0.01 * e as f64])
            .collect();
        let err = limit_skips(&two, &with_none, &two, &with_none, 1, &[]).unwrap_err();
        assert!(err.to_string().contains("cannot be met"), "{err}");
        // Every node keeps two skip edges: eight, the most a cell has, is met at once.
        let all = limit_skips(&two, &with_none, &two, &with_none, 8, &[]).unwrap();
        assert_eq!(count(&all), 8);
    }

    #[test]
    fn the_fallback_ranks_the_stage_befores_other_operations() {
        let candidates = vec![vec![
            Op::None,
            Op::SkipConnect,
            Op::SepConv3x3,
            Op::DilConv5x5,
        ]];
        let weights = vec![vec![0.4, 0.3, 0.1, 0.2]];
        assert_eq!(
            skip_fallback(&weights, &candidates),
            vec![vec![Op::DilConv5x5, Op::SepConv3x3]]
        );
    }

    #[test]
    fn dropout_falls_linearly_in_the_warm_up_then_decays() {
        let stage = StagePlan {
            layers: 5,
            ops: 8,
            skip_dropout: 0.4,
            epochs: 25,
            warmup: 10,
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(skip_dropout_rate(&stage, 0), 0.4 * 24.0 / 25.0));
        assert!(close(skip_dropout_rate(&stage, 3), 0.4 * 21.0 / 25.0));
        assert!(close(skip_dropout_rate(&stage, 9), 0.4 * 15.0 / 25.0));
        assert_eq!(skip_dropout_rate(&stage, 10), 0.4);
        assert!(close(skip_dropout_rate(&stage, 15), 0.4 * (-1.0f64).exp()));
    }
}
