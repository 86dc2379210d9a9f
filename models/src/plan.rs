//! The architecture plan of a DARTS network (`NetworkCIFAR`): where each cell sits, what
//! channels it reads and writes, whether it reduces, and the names its parameters live under.
//!
//! The discrete network ([`crate::nn::network`]), the search supernet and the ONNX lowering
//! all walk this plan, so the channel schedule (a `3C` stem, `C` doubled at each reduction
//! cell), the stem's stride, the reduction schedule (cells `layers/3` and `2 layers/3`) and
//! the module names are written once, here. An edge's stride is [`crate::genotype::edge_stride`]; an op's kernel,
//! padding and dilation are [`crate::Op::convolution`].

use crate::genotype::{edge_stride, Genotype};

/// Scope of the stem convolution (`stem.0.weight`).
pub const STEM_CONV: &str = "stem.0";
/// Scope of the stem's BatchNorm.
pub const STEM_BN: &str = "stem.1";
/// Scope of the final linear classifier (`classifier.weight`, `classifier.bias`).
pub const CLASSIFIER: &str = "classifier";
/// Scope of the auxiliary head (training only, never exported).
pub const AUXILIARY: &str = "auxiliary";
/// Scope, inside a cell, of the preprocessing of its first input (the cell before the
/// previous one).
pub const PREPROCESS0: &str = "preprocess0";
/// Scope, inside a cell, of the preprocessing of its second input (the previous cell).
pub const PREPROCESS1: &str = "preprocess1";

/// Scopes of the parameters the inference network has (the auxiliary head is not among
/// them): a tensor outside them belongs to something else.
pub const NETWORK_SCOPES: [&str; 3] = ["stem", "cells", CLASSIFIER];

/// Scope, inside a cell, of its `k`-th edge's operation (edges in genotype order).
pub fn edge_scope(k: usize) -> String {
    format!("ops.{k}")
}

/// Whether a parameter name lies under `scope` (`scope.` followed by more).
pub fn is_under(name: &str, scope: &str) -> bool {
    name.strip_prefix(scope)
        .is_some_and(|rest| rest.starts_with('.'))
}

/// Cell indices that are reduction cells for `layers` cells: `layers/3` and `2 layers/3`.
pub fn reduction_layers(layers: usize) -> [usize; 2] {
    [layers / 3, 2 * layers / 3]
}

/// One cell's place in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellPlan {
    /// Position in the network (0-based).
    pub index: usize,
    /// Channels of its first input (the cell before the previous one, or the stem).
    pub input0_channels: usize,
    /// Channels of its second input (the previous cell, or the stem).
    pub input1_channels: usize,
    /// Channels of each of its nodes (`C`, doubled at every reduction so far).
    pub channels: usize,
    /// Whether it halves the resolution (a reduction cell).
    pub reduction: bool,
    /// Whether the previous cell reduced: its first input then has twice the resolution of
    /// its second and is preprocessed by a factorized reduction.
    pub reduction_prev: bool,
    /// Channels of its output (its concatenated node states).
    pub output_channels: usize,
}

impl CellPlan {
    /// Scope of its parameters (`cells.3`).
    pub fn scope(&self) -> String {
        format!("cells.{}", self.index)
    }

    /// Stride of an edge that reads state `from` (0 and 1 are the cell's inputs).
    pub fn stride(&self, from: usize) -> usize {
        edge_stride(self.reduction, from)
    }
}

/// Strides the stem's convolution may take: 1 (DARTS' CIFAR stem, the cells see the whole
/// input resolution) or 2 (the cells see half of it: a 64x64 input costs the cells what a
/// 32x32 one does, while the stem reads every pixel).
pub const STEM_STRIDES: [usize; 2] = [1, 2];

/// The stem stride of DARTS' CIFAR network: that of [`NetworkPlan::new`], and of every card,
/// run and latency table written before the stride was recorded.
pub const DEFAULT_STEM_STRIDE: usize = STEM_STRIDES[0];

/// [`DEFAULT_STEM_STRIDE`], for serde's `default` of a stored stride.
pub fn default_stem_stride() -> usize {
    DEFAULT_STEM_STRIDE
}

/// The plan of a whole network: stem, cells, auxiliary head position and classifier width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    /// Channels of the stem's output (`3C`).
    pub stem_channels: usize,
    /// Stride of the stem's 3x3 convolution (one of [`STEM_STRIDES`]).
    pub stem_stride: usize,
    /// The cells, in order.
    pub cells: Vec<CellPlan>,
    /// Index of the cell after which the auxiliary head reads (the second reduction cell).
    pub auxiliary_after: usize,
    /// Channels the classifier reads (the last cell's output).
    pub classifier_channels: usize,
}

impl NetworkPlan {
    /// The plan for `layers` cells of initial width `init_channels`; `cell_outputs(reduction)`
    /// is how many node states a normal or reduction cell concatenates into its output (the
    /// genotype's concat length; every intermediate node in the supernet).
    pub fn new(
        init_channels: usize,
        layers: usize,
        cell_outputs: impl Fn(bool) -> usize,
    ) -> NetworkPlan {
        let stem_channels = 3 * init_channels;
        let reductions = reduction_layers(layers);
        let (mut input0, mut input1, mut channels) = (stem_channels, stem_channels, init_channels);
        let mut reduction_prev = false;
        let mut cells = Vec::with_capacity(layers);
        for index in 0..layers {
            let reduction = reductions.contains(&index);
            if reduction {
                channels *= 2;
            }
            let output_channels = cell_outputs(reduction) * channels;
            cells.push(CellPlan {
                index,
                input0_channels: input0,
                input1_channels: input1,
                channels,
                reduction,
                reduction_prev,
                output_channels,
            });
            reduction_prev = reduction;
            (input0, input1) = (input1, output_channels);
        }
        NetworkPlan {
            stem_channels,
            stem_stride: DEFAULT_STEM_STRIDE,
            cells,
            auxiliary_after: reductions[1],
            classifier_channels: input1,
        }
    }

    /// The plan of the discrete network of `genotype` (a cell concatenates its genotype's
    /// `concat` states) with its stem at `stem_stride`.
    pub fn of_genotype(
        genotype: &Genotype,
        init_channels: usize,
        layers: usize,
        stem_stride: usize,
    ) -> NetworkPlan {
        NetworkPlan::new(init_channels, layers, |reduction| {
            genotype.cell(reduction).1.len()
        })
        .with_stem_stride(stem_stride)
    }

    /// The side of the stem's output (the first cell's inputs) for `size` x `size` images.
    pub fn stem_output_side(&self, size: usize) -> usize {
        output_side(size, self.stem_stride)
    }

    /// The same plan with the stem's convolution at `stride` (one of [`STEM_STRIDES`]).
    pub fn with_stem_stride(self, stride: usize) -> NetworkPlan {
        NetworkPlan {
            stem_stride: stride,
            ..self
        }
    }

    /// Channels the auxiliary head reads, when the network has the cell it follows.
    pub fn auxiliary_channels(&self) -> Option<usize> {
        self.cells
            .get(self.auxiliary_after)
            .map(|cell| cell.output_channels)
    }
}

/// The side of a square input after a stride-`stride` op (padding keeps the side at stride
/// 1; stride 2 rounds up, as DARTS' 3x3 pools and padded convolutions do).
pub fn output_side(side: usize, stride: usize) -> usize {
    (side - 1) / stride + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_cells_reduce_at_two_and_five_and_double_their_width() {
        let plan = NetworkPlan::new(16, 8, |_| 4);
        assert_eq!(plan.stem_channels, 48);
        let reductions: Vec<usize> = plan
            .cells
            .iter()
            .filter(|c| c.reduction)
            .map(|c| c.index)
            .collect();
        assert_eq!(reductions, [2, 5]);
        let channels: Vec<usize> = plan.cells.iter().map(|c| c.channels).collect();
        assert_eq!(channels, [16, 16, 32, 32, 32, 64, 64, 64]);
        assert!(plan.cells[3].reduction_prev && plan.cells[6].reduction_prev);
        assert!(!plan.cells[2].reduction_prev);
        assert_eq!(plan.classifier_channels, 4 * 64);
        assert_eq!(plan.auxiliary_after, 5);
        assert_eq!(plan.auxiliary_channels(), Some(4 * 64));
    }

    #[test]
    fn a_cell_reads_the_two_outputs_before_it() {
        // Normal cells concatenate 3 states, reduction cells 2.
        let plan = NetworkPlan::new(8, 5, |reduction| if reduction { 2 } else { 3 });
        let c = &plan.cells;
        assert_eq!((c[0].input0_channels, c[0].input1_channels), (24, 24));
        assert_eq!((c[1].input0_channels, c[1].input1_channels), (24, 24));
        assert_eq!(c[1].output_channels, 2 * 16);
        assert_eq!((c[2].input0_channels, c[2].input1_channels), (24, 32));
        for pair in c.windows(3) {
            assert_eq!(pair[2].input0_channels, pair[0].output_channels);
            assert_eq!(pair[2].input1_channels, pair[1].output_channels);
        }
        assert_eq!(plan.classifier_channels, c[4].output_channels);
    }

    #[test]
    fn strides_follow_the_edge_rule() {
        let plan = NetworkPlan::new(4, 3, |_| 4);
        let (normal, reduce) = (plan.cells[0], plan.cells[1]);
        assert!(reduce.reduction && !normal.reduction);
        assert_eq!(
            [reduce.stride(0), reduce.stride(1), reduce.stride(2)],
            [2, 2, 1]
        );
        assert_eq!([normal.stride(0), normal.stride(1)], [1, 1]);
        assert_eq!(reduce.scope(), "cells.1");
    }

    #[test]
    fn a_strided_stem_halves_what_the_cells_see() {
        let plan = NetworkPlan::new(4, 3, |_| 4);
        assert_eq!((plan.stem_stride, plan.stem_output_side(32)), (1, 32));
        let strided = plan.clone().with_stem_stride(2);
        assert_eq!(strided.stem_output_side(64), 32);
        assert_eq!(strided.stem_output_side(33), 17);
        assert_eq!(strided.cells, plan.cells);
    }

    #[test]
    fn scopes_match_whole_names_only() {
        assert!(is_under("stem.0.weight", "stem"));
        assert!(is_under("auxiliary.conv.op.1.weight", AUXILIARY));
        assert!(!is_under("stems.0.weight", "stem"));
        assert!(!is_under("stem", "stem"));
        assert_eq!(edge_scope(7), "ops.7");
    }

    #[test]
    fn too_few_layers_have_no_auxiliary_cell() {
        // Two cells: reductions at 0 and 1; the auxiliary head follows cell 1.
        assert_eq!(
            NetworkPlan::new(4, 2, |_| 4).auxiliary_channels(),
            Some(4 * 16)
        );
        assert_eq!(NetworkPlan::new(4, 0, |_| 4).auxiliary_channels(), None);
    }
}
