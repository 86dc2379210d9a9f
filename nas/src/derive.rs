//! Deriving the discrete genotype from architecture weights: per node keep the two incoming
//! edges with the strongest non-`none` operation, and on each the best non-`none` operation;
//! with a strict budget, then trade the weakest choices for cheaper ones until it fits.

use hands_models::genotype::{Edge, Genotype, EDGES_PER_NODE};
use hands_models::Op;

use crate::supernet::{node_edges, NODES};

/// The discrete edges of one cell from its per-edge operation weights.
///
/// `weights[e][i]` is the (softmaxed, and for PC-DARTS beta-scaled) weight of candidate
/// `candidates[e][i]` on edge `e`.
pub fn derive_cell(weights: &[Vec<f64>], candidates: &[Vec<Op>]) -> Vec<Edge> {
    let mut edges = Vec::with_capacity(EDGES_PER_NODE * NODES);
    for node in 0..NODES {
        let mut scored: Vec<(f64, Op, usize)> = node_edges(node)
            .enumerate()
            .filter_map(|(from, e)| {
                best_op(&weights[e], &candidates[e]).map(|(w, op)| (w, op, from))
            })
            .collect();
        // Strongest first; ties keep the earlier input, as Python's stable sort does.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        edges.extend(scored.iter().take(2).map(|&(_, op, from)| (op, from)));
    }
    edges
}

/// The strongest non-`none` candidate of an edge, if it has one.
fn best_op(weights: &[f64], candidates: &[Op]) -> Option<(f64, Op)> {
    weights
        .iter()
        .zip(candidates)
        .filter(|(_, &op)| op != Op::None)
        .fold(None, |best: Option<(f64, Op)>, (&w, &op)| match best {
            Some((bw, _)) if bw >= w => best,
            _ => Some((w, op)),
        })
}

/// A genotype from the weights of both cell types.
pub fn derive_genotype(
    normal: &[Vec<f64>],
    normal_candidates: &[Vec<Op>],
    reduce: &[Vec<f64>],
    reduce_candidates: &[Vec<Op>],
) -> Genotype {
    Genotype {
        normal: derive_cell(normal, normal_candidates),
        normal_concat: (2..2 + NODES).collect(),
        reduce: derive_cell(reduce, reduce_candidates),
        reduce_concat: (2..2 + NODES).collect(),
    }
}

/// `genotype` (derived from the weights, see [`derive_genotype`]) brought within `target` of
/// `cost` (the final network's cost in the budget's unit). While it is over, the node whose
/// replacement pair of edges (any two of its inputs, each with any non-`none` candidate)
/// saves the most cost per derivation weight given up is replaced: a greedy knapsack
/// heuristic, which keeps the argmax genotype when it is within the target. With
/// `max_skip` (P-DARTS' skip limit), no replacement brings the normal cell's skips past it.
/// Refused when no replacement saves anything and the genotype is still over.
pub fn fit_to_budget(
    genotype: Genotype,
    normal: CellWeights<'_>,
    reduce: CellWeights<'_>,
    cost: impl Fn(&Genotype) -> f64,
    target: f64,
    max_skip: Option<usize>,
) -> anyhow::Result<Genotype> {
    let skips = |g: &Genotype| {
        g.normal
            .iter()
            .filter(|(op, _)| *op == Op::SkipConnect)
            .count()
    };
    let mut genotype = genotype;
    let mut current = cost(&genotype);
    while current > target {
        let mut best: Option<(f64, Genotype, f64)> = None;
        for (reduction, cell) in [(false, normal), (true, reduce)] {
            for node in 0..NODES {
                let held = node_score(&genotype, reduction, node, cell);
                for pair in node_pairs(node, cell.1) {
                    let mut trial = genotype.clone();
                    let edges = if reduction {
                        &mut trial.reduce
                    } else {
                        &mut trial.normal
                    };
                    edges[EDGES_PER_NODE * node..EDGES_PER_NODE * (node + 1)]
                        .copy_from_slice(&pair);
                    if max_skip.is_some_and(|max| skips(&trial) > max.max(skips(&genotype))) {
                        continue;
                    }
                    let saved = current - cost(&trial);
                    if saved <= 0.0 {
                        continue;
                    }
                    let lost = held - node_score(&trial, reduction, node, cell);
                    let ratio = saved / lost.max(1e-12);
                    if best.as_ref().is_none_or(|(r, _, _)| ratio > *r) {
                        best = Some((ratio, trial, saved));
                    }
                }
            }
        }
        let Some((_, trial, saved)) = best else {
            anyhow::bail!(
                "--cost-strict: no genotype of these candidates costs at most {target} (the \
                 cheapest reached costs {current:.3})"
            );
        };
        genotype = trial;
        current -= saved;
    }
    Ok(genotype)
}

/// One cell type's derivation weights and the candidates they are of.
pub type CellWeights<'a> = (&'a [Vec<f64>], &'a [Vec<Op>]);

/// The derivation weight of the genotype's two edges of `node`.
fn node_score(genotype: &Genotype, reduction: bool, node: usize, cell: CellWeights<'_>) -> f64 {
    let (edges, _) = genotype.cell(reduction);
    edges[EDGES_PER_NODE * node..EDGES_PER_NODE * (node + 1)]
        .iter()
        .map(|&(op, from)| {
            let e = node_edges(node).start + from;
            cell.1[e]
                .iter()
                .position(|&c| c == op)
                .map_or(0.0, |i| cell.0[e][i])
        })
        .sum()
}

/// Every pair of `node`'s inputs, each with each of its non-`none` candidates.
fn node_pairs(node: usize, candidates: &[Vec<Op>]) -> Vec<[Edge; EDGES_PER_NODE]> {
    let inputs = node_edges(node);
    let ops = |from: usize| {
        candidates[inputs.start + from]
            .iter()
            .copied()
            .filter(|&op| op != Op::None)
    };
    let mut pairs = Vec::new();
    for a in 0..inputs.len() {
        for b in a + 1..inputs.len() {
            for op_a in ops(a) {
                pairs.extend(ops(b).map(|op_b| [(op_a, a), (op_b, b)]));
            }
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supernet::EDGES;

    /// The convolutions of both cells: the cost the budget tests count.
    fn convs(g: &Genotype) -> f64 {
        g.normal
            .iter()
            .chain(&g.reduce)
            .filter(|(op, _)| op.convolution().is_some())
            .count() as f64
    }

    #[test]
    fn a_strict_budget_trades_the_weakest_choices_for_cheaper_ones() {
        let candidates = vec![Op::ALL.to_vec(); EDGES];
        // Every edge prefers sep_conv_5x5, then max_pool_3x3; the edges of node 3 least.
        let mut weights = vec![vec![0.0, 0.3, 0.0, 0.0, 0.0, 0.7, 0.0, 0.0]; EDGES];
        for e in node_edges(3) {
            weights[e] = vec![0.0, 0.45, 0.0, 0.0, 0.0, 0.55, 0.0, 0.0];
        }
        let argmax = derive_genotype(&weights, &candidates, &weights, &candidates);
        assert_eq!(convs(&argmax), 16.0);
        let cell = (weights.as_slice(), candidates.as_slice());
        // Within the target: the argmax genotype as it is.
        let same = fit_to_budget(argmax.clone(), cell, cell, convs, 16.0, None).unwrap();
        assert_eq!(same, argmax);
        // Two convolutions too many: node 3 of one cell, the weakest, gives up both.
        let fitted = fit_to_budget(argmax.clone(), cell, cell, convs, 14.0, None).unwrap();
        assert_eq!(convs(&fitted), 14.0);
        fitted.validate().unwrap();
        let changed: Vec<usize> = (0..EDGES_PER_NODE * NODES)
            .filter(|&i| {
                fitted.normal[i] != argmax.normal[i] || fitted.reduce[i] != argmax.reduce[i]
            })
            .map(|i| i / EDGES_PER_NODE)
            .collect();
        assert!(changed.iter().all(|&node| node == 3), "{changed:?}");
        // Nothing cheaper than pools and skips: a target below zero convolutions is refused.
        let err = fit_to_budget(argmax, cell, cell, |g| convs(g) + 1.0, 0.5, None).unwrap_err();
        assert!(err.to_string().contains("--cost-strict"), "{err}");
    }

    /// Under P-DARTS' skip limit the budget's replacements add no skip past it: the cheapest
    /// trade (a free skip for a convolution) is taken without the limit, not with it.
    #[test]
    fn a_strict_budget_keeps_the_skip_limit() {
        let candidates = vec![Op::ALL.to_vec(); EDGES];
        // Every edge prefers sep_conv_5x5, then skip_connect, then max_pool_3x3.
        let weights = vec![vec![0.0, 0.1, 0.0, 0.3, 0.0, 0.6, 0.0, 0.0]; EDGES];
        let argmax = derive_genotype(&weights, &candidates, &weights, &candidates);
        let skips = |g: &Genotype| {
            g.normal
                .iter()
                .filter(|(op, _)| *op == Op::SkipConnect)
                .count()
        };
        let cell = (weights.as_slice(), candidates.as_slice());
        let free = fit_to_budget(argmax.clone(), cell, cell, convs, 12.0, None).unwrap();
        assert!(skips(&free) > 0, "{free:?}");
        let limited = fit_to_budget(argmax, cell, cell, convs, 12.0, Some(0)).unwrap();
        assert_eq!(skips(&limited), 0, "{limited:?}");
        assert!(convs(&limited) <= 12.0);
    }

    #[test]
    fn hand_made_weights_give_the_expected_cell() {
        let candidates = vec![Op::ALL.to_vec(); EDGES];
        // Every edge prefers `none` (ignored) with a weak sep_conv_3x3 ...
        let mut weights = vec![vec![0.9, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0]; EDGES];
        // ... node 0: edge 1 (from state 1) strongest with dil_conv_5x5;
        weights[1] = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        // node 1: edges 2..5 from states 0, 1, 2; state 2 gets skip, state 0 max_pool.
        weights[4] = vec![0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0];
        weights[2] = vec![0.6, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        // node 3: edge 13 (from state 4) avg_pool.
        weights[13] = vec![0.0, 0.0, 0.8, 0.0, 0.2, 0.0, 0.0, 0.0];
        let cell = derive_cell(&weights, &candidates);
        assert_eq!(cell.len(), 8);
        assert_eq!(cell[0], (Op::DilConv5x5, 1));
        assert_eq!(cell[1], (Op::SepConv3x3, 0));
        assert_eq!(cell[2], (Op::SkipConnect, 2));
        assert_eq!(cell[3], (Op::MaxPool3x3, 0));
        assert_eq!(cell[6], (Op::AvgPool3x3, 4));
        assert_eq!(cell[7], (Op::SepConv3x3, 0));
    }

    #[test]
    fn pruned_candidate_sets_map_columns_to_their_ops() {
        let candidates = vec![vec![Op::None, Op::SkipConnect, Op::DilConv3x3]; EDGES];
        let weights = vec![vec![0.1, 0.2, 0.7]; EDGES];
        let g = derive_genotype(&weights, &candidates, &weights, &candidates);
        assert!(g.normal.iter().all(|&(op, _)| op == Op::DilConv3x3));
        g.validate().unwrap();
    }
}
