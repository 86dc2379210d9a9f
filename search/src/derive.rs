//! Deriving the discrete genotype from architecture weights: per node keep the two incoming
//! edges with the strongest non-`none` operation, and on each the best non-`none` operation.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supernet::EDGES;

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
