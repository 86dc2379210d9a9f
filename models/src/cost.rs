//! The cost of a discrete network, counted as NAS papers count it: its parameters (the
//! inference network's: the auxiliary head, which only trains, is left out), its
//! multiply-adds (convolutions and the classifier; BatchNorm, ReLU, pooling and additions are
//! not counted) and the peak activation memory of one image. [`op_cost`] is the cost of one
//! candidate operation at one cell position: the table that a resource-constrained search
//! weighs with its architecture weights.

use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul};

use serde::{Deserialize, Serialize};

use crate::genotype::Genotype;
use crate::ops::Op;
pub use crate::plan::output_side;
use crate::plan::{CellPlan, NetworkPlan};

/// Bytes of one activation element (f32).
const ELEMENT_BYTES: u64 = 4;

/// Parameters and multiply-adds of a part of a network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Trainable parameters (BatchNorm's scale and shift included, its running statistics
    /// not).
    pub parameters: u64,
    /// Multiply-adds of one image's forward pass.
    pub multiply_adds: u64,
}

impl Add for Cost {
    type Output = Cost;

    fn add(self, other: Cost) -> Cost {
        Cost {
            parameters: self.parameters + other.parameters,
            multiply_adds: self.multiply_adds + other.multiply_adds,
        }
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        *self = *self + other;
    }
}

impl Mul<u64> for Cost {
    type Output = Cost;

    fn mul(self, times: u64) -> Cost {
        Cost {
            parameters: self.parameters * times,
            multiply_adds: self.multiply_adds * times,
        }
    }
}

impl Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(costs: I) -> Cost {
        costs.fold(Cost::default(), Add::add)
    }
}

/// A BatchNorm's scale and shift over `channels`.
fn batch_norm(channels: usize) -> Cost {
    Cost {
        parameters: 2 * channels as u64,
        multiply_adds: 0,
    }
}

/// A bias-free convolution of `groups` groups from `c_in` to `c_out` channels with a square
/// `kernel`, producing `side` x `side` outputs.
fn convolution(c_in: usize, c_out: usize, kernel: usize, groups: usize, side: usize) -> Cost {
    let weights = (c_in / groups * c_out * kernel * kernel) as u64;
    Cost {
        parameters: weights,
        multiply_adds: weights * (side * side) as u64,
    }
}

/// DARTS' `ReLUConvBN` 1x1 from `c_in` to `c_out` channels at `side` x `side` (a cell's
/// preprocessing).
fn pointwise_cost(c_in: usize, c_out: usize, side: usize) -> Cost {
    convolution(c_in, c_out, 1, 1, side) + batch_norm(c_out)
}

/// DARTS' `FactorizedReduce` from `c_in` to `c_out` channels, producing `side` x `side`
/// (two 1x1 stride-2 convolutions of `c_out / 2` channels each, then a BatchNorm).
fn factorized_reduce_cost(c_in: usize, c_out: usize, side: usize) -> Cost {
    convolution(c_in, c_out / 2, 1, 1, side) * 2 + batch_norm(c_out)
}

/// The cost of `op` on an edge of a cell with `channels` channels per node, reading an
/// input of `side` x `side` at `stride`: a convolution op is its ReLU-depthwise-pointwise-BN
/// blocks ([`Op::convolution`]; the first takes the stride), `skip_connect` at stride 2 a
/// factorized reduction, the pools, the identity and `none` nothing.
pub fn op_cost(op: Op, channels: usize, side: usize, stride: usize) -> Cost {
    let out = output_side(side, stride);
    match op.convolution() {
        Some(geometry) => {
            let block = convolution(channels, channels, geometry.kernel, channels, out)
                + convolution(channels, channels, 1, 1, out)
                + batch_norm(channels);
            block * geometry.blocks as u64
        }
        None if op == Op::SkipConnect && stride == 2 => {
            factorized_reduce_cost(channels, channels, out)
        }
        None => Cost::default(),
    }
}

/// The side of each cell's second input (the previous cell's output; the stem's for the
/// first) for `size` x `size` images; a cell's first input is at the side before it.
pub fn input_sides(plan: &NetworkPlan, size: usize) -> Vec<usize> {
    let mut side = plan.stem_output_side(size);
    plan.cells
        .iter()
        .map(|cell| {
            let input = side;
            side = cell_output_side(cell, side);
            input
        })
        .collect()
}

/// The side of `cell`'s node states and output for inputs of `side` x `side`.
pub fn cell_output_side(cell: &CellPlan, side: usize) -> usize {
    output_side(side, if cell.reduction { 2 } else { 1 })
}

/// The cost of `op` on the edge of `cell` that reads state `from`, for a cell whose inputs
/// are `side` x `side`: the cell's inputs at the edge's stride, its nodes at stride 1.
pub fn edge_cost(op: Op, cell: &CellPlan, side: usize, from: usize) -> Cost {
    let (input, stride) = edge_input(cell, side, from);
    op_cost(op, cell.channels, input, stride)
}

/// The side and stride of the input of `cell`'s edge from state `from`.
fn edge_input(cell: &CellPlan, side: usize, from: usize) -> (usize, usize) {
    if from < 2 {
        (side, cell.stride(from))
    } else {
        (cell_output_side(cell, side), 1)
    }
}

/// The part of the network's cost that no edge's operation changes: the stem, every cell's
/// preprocessing of its two inputs, and the classifier into `classes`.
pub fn fixed_cost(plan: &NetworkPlan, size: usize, classes: usize) -> Cost {
    let stem = convolution(3, plan.stem_channels, 3, 1, plan.stem_output_side(size))
        + batch_norm(plan.stem_channels);
    let preprocessing: Cost = plan
        .cells
        .iter()
        .zip(input_sides(plan, size))
        .map(|(cell, side)| {
            let c = cell.channels;
            let input0 = if cell.reduction_prev {
                factorized_reduce_cost(cell.input0_channels, c, side)
            } else {
                pointwise_cost(cell.input0_channels, c, side)
            };
            input0 + pointwise_cost(cell.input1_channels, c, side)
        })
        .sum();
    let classifier = Cost {
        parameters: (plan.classifier_channels * classes + classes) as u64,
        multiply_adds: (plan.classifier_channels * classes) as u64,
    };
    stem + preprocessing + classifier
}

/// The cost of the discrete network of a genotype, for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkCost {
    /// Parameters and multiply-adds of the whole network (auxiliary head left out).
    #[serde(flatten)]
    pub total: Cost,
    /// The largest working set of the forward pass of one image, in bytes (f32): the stem's
    /// input and output, or a cell's two inputs, two preprocessed inputs, node states and
    /// concatenated output, plus the output of its largest op twice (an op's intermediate
    /// and its output in flight).
    pub peak_activation_bytes: u64,
}

/// The cost of the discrete network of `genotype` with `init_channels`, `layers` cells and
/// its stem at `stem_stride`, on `size` x `size` images, classifying into `classes`.
pub fn network_cost(
    genotype: &Genotype,
    init_channels: usize,
    layers: usize,
    stem_stride: usize,
    size: usize,
    classes: usize,
) -> NetworkCost {
    let plan = NetworkPlan::of_genotype(genotype, init_channels, layers, stem_stride);
    let elements = |channels: usize, side: usize| (channels * side * side) as u64;
    let mut total = fixed_cost(&plan, size, classes);
    let stem_side = plan.stem_output_side(size);
    let mut peak = elements(3, size) + elements(plan.stem_channels, stem_side);
    let sides = input_sides(&plan, size);
    for (index, (cell, &side1)) in plan.cells.iter().zip(&sides).enumerate() {
        // The first input is the output of the cell before the previous one (or the stem).
        let side0 = index
            .checked_sub(1)
            .map_or(stem_side, |previous| sides[previous]);
        let (edges, concat) = genotype.cell(cell.reduction);
        let c = cell.channels;
        let out = cell_output_side(cell, side1);
        let mut largest_op = 0;
        for &(op, from) in edges {
            total += edge_cost(op, cell, side1, from);
            let (input, stride) = edge_input(cell, side1, from);
            largest_op = largest_op.max(elements(c, output_side(input, stride)));
        }
        let nodes = edges.len() as u64 / 2;
        let working = elements(cell.input0_channels, side0)
            + elements(cell.input1_channels, side1)
            + 2 * elements(c, side1)
            + nodes * elements(c, out)
            + elements(concat.len() * c, out)
            + 2 * largest_op;
        peak = peak.max(working);
    }
    NetworkCost {
        total,
        peak_activation_bytes: peak * ELEMENT_BYTES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_op_costs_what_its_layers_do() {
        // C 16 at 32x32, stride 1: a depthwise k x k (16 k^2 weights) and a pointwise
        // (256 weights) per block, BatchNorm 32 parameters per block.
        let at = |op| op_cost(op, 16, 32, 1);
        let block = |k: u64| (16 * k * k + 256, (16 * k * k + 256) * 1024);
        for (op, k, blocks) in [
            (Op::SepConv3x3, 3, 2),
            (Op::SepConv5x5, 5, 2),
            (Op::DilConv3x3, 3, 1),
            (Op::DilConv5x5, 5, 1),
        ] {
            let (weights, macs) = block(k);
            assert_eq!(
                at(op),
                Cost {
                    parameters: blocks * (weights + 32),
                    multiply_adds: blocks * macs
                },
                "{op}"
            );
        }
        for op in [Op::None, Op::MaxPool3x3, Op::AvgPool3x3, Op::SkipConnect] {
            assert_eq!(at(op), Cost::default(), "{op}");
        }
        // At stride 2 the outputs are 16x16; skip_connect becomes two 16 -> 8 pointwise
        // convolutions and a BatchNorm.
        assert_eq!(
            op_cost(Op::SkipConnect, 16, 32, 2),
            Cost {
                parameters: 2 * 128 + 32,
                multiply_adds: 2 * 128 * 256
            }
        );
        assert_eq!(
            op_cost(Op::DilConv3x3, 16, 32, 2).multiply_adds,
            (16 * 9 + 256) * 256
        );
        assert_eq!(output_side(33, 2), 17);
    }

    #[test]
    fn darts_v2_on_cifar_costs_what_was_published() {
        // DARTS (Liu et al. 2019) and the papers after it: 3.3 M parameters, 528 M
        // multiply-adds for C 36, 20 cells, 32x32, 10 classes.
        let genotype = Genotype::published("DARTS_V2").unwrap();
        let cost = network_cost(&genotype, 36, 20, 1, 32, 10);
        assert_eq!(cost.total.parameters, 3_349_342);
        assert_eq!(cost.total.multiply_adds / 1_000_000, 528);
        assert!(cost.peak_activation_bytes > 0);
    }

    #[test]
    fn a_strided_stem_on_twice_the_side_costs_the_cells_the_same() {
        // The stem's convolution reads 4x the pixels at stride 2 and writes the same 32x32
        // maps, so the cells and the classifier cost what they do at 32x32 and stride 1;
        // only the input's share of the working set grows.
        let genotype = Genotype::published("DARTS_V2").unwrap();
        let plain = network_cost(&genotype, 12, 6, 1, 32, 2);
        let strided = network_cost(&genotype, 12, 6, 2, 64, 2);
        assert_eq!(strided.total, plain.total);
        assert_eq!(
            strided.peak_activation_bytes,
            plain
                .peak_activation_bytes
                .max((3 * 64 * 64 + 36 * 32 * 32) * ELEMENT_BYTES)
        );
        let full = network_cost(&genotype, 12, 6, 1, 64, 2);
        assert!(full.total.multiply_adds > 3 * plain.total.multiply_adds);
    }
}
