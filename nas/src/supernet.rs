//! The search supernet: every cell edge is a mixture of candidate operations weighted by
//! softmax(alpha) (DARTS), optionally over a sampled 1/K of the channels with edge
//! normalisation betas (PC-DARTS), and over per-edge pruned candidate sets (P-DARTS).

use candle_core::{DType, Device, Result, Tensor, Var, D};
use candle_nn::ops::softmax;
use candle_nn::{VarBuilder, VarMap};
use hands_models::nn::functional::max_pool2x2;
use hands_models::nn::layers::{is_running_statistic, Activated, BatchNorm2d, Norm, Operation};
use hands_models::nn::mixture::accumulate_scaled;
use hands_models::nn::network::{CellInputs, Classifier, Stem};
use hands_models::plan::{CellPlan, NetworkPlan};
use hands_models::Op;
use rand::Rng;

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a search step keeps what its backward pass needs ([`Supernet::with_memory`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Memory {
    /// The whole forward graph of a batch is kept for its backward pass.
    #[default]
    Fast,
    /// The cells are recomputed one at a time in the backward pass (one more forward pass
    /// through the cells, a fraction of the memory).
    Lean,
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Memory::Fast => "fast",
            Memory::Lean => "lean",
        })
    }
}

/// Intermediate nodes of a search cell (those of a derived cell).
pub use hands_models::genotype::NODES;
/// Edges of a search cell: node `i` (0..4) reads all `2 + i` earlier states (14).
pub const EDGES: usize = NODES * (NODES + 3) / 2;

/// The edges entering node `node`, as a range of edge indices: `[0:2]`, `[2:5]`, `[5:9]`,
/// `[9:14]`.
pub fn node_edges(node: usize) -> std::ops::Range<usize> {
    let start: usize = (0..node).map(|n| n + 2).sum();
    start..start + node + 2
}

/// Shape and variant of a supernet.
#[derive(Debug, Clone, PartialEq)]
pub struct SupernetConfig {
    /// Channels of the first cell (C).
    pub init_channels: usize,
    /// Number of cells.
    pub layers: usize,
    /// Stride of the stem's convolution.
    pub stem_stride: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// PC-DARTS partial channel factor K (1 = all channels, plain DARTS).
    pub partial_k: usize,
    /// PC-DARTS edge normalisation (betas).
    pub edge_norm: bool,
    /// Candidate operations of each edge of the normal cell (P-DARTS prunes them).
    pub normal_candidates: Vec<Vec<Op>>,
    /// Candidate operations of each edge of the reduction cell.
    pub reduce_candidates: Vec<Vec<Op>>,
}

impl SupernetConfig {
    /// All eight primitives on every edge.
    pub fn full_candidates() -> Vec<Vec<Op>> {
        vec![Op::ALL.to_vec(); EDGES]
    }

    /// Candidates of one cell type.
    pub fn candidates(&self, reduction: bool) -> &[Vec<Op>] {
        if reduction {
            &self.reduce_candidates
        } else {
            &self.normal_candidates
        }
    }
}

/// Mixture of candidate operations on one edge.
#[derive(Debug, Clone)]
struct MixedOp {
    ops: Vec<(Operation, Option<BatchNorm2d>)>,
    partial_k: usize,
    stride: usize,
}

impl MixedOp {
    fn new(
        candidates: &[Op],
        channels: usize,
        stride: usize,
        partial_k: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let c = channels / partial_k;
        let ops = candidates
            .iter()
            .enumerate()
            .map(|(i, &op)| {
                let vb = vb.pp(format!("ops.{i}"));
                let operation = Operation::new(op, c, stride, Norm::BatchStats, vb.clone())?;
                // DARTS follows pooling candidates with an affine-free BatchNorm.
                let bn = matches!(op, Op::MaxPool3x3 | Op::AvgPool3x3)
                    .then(|| BatchNorm2d::new(c, Norm::BatchStats, vb))
                    .transpose()?;
                Ok((operation, bn))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(MixedOp {
            ops,
            partial_k,
            stride,
        })
    }

    /// `acc + sum_i weights[i] * op_i(x)` on all of `x`'s channels, each weighting fused
    /// into its candidate's last op (so no product or partial sum stays in the graph);
    /// `None` when there is no `acc` and every candidate is `none`. `drop_skip` (P-DARTS)
    /// zeroes the identity candidate per sample.
    fn accumulate(
        &self,
        acc: Option<Tensor>,
        x: &Activated,
        weights: &[Tensor],
        drop_skip: &mut Option<SkipMasks<'_, '_>>,
    ) -> Result<Option<Tensor>> {
        let mut acc = acc;
        for ((op, bn), w) in self.ops.iter().zip(weights) {
            acc = match (bn, drop_skip.as_mut()) {
                (Some(bn), _) => match op.forward_t(x.input(), true)? {
                    Some(h) => Some(bn.accumulate_t(acc.as_ref(), &h, w, true)?),
                    None => acc,
                },
                (None, Some(dropout)) if op.is_identity() => Some(accumulate_scaled(
                    acc.as_ref(),
                    &dropout.apply(x.input())?,
                    w,
                )?),
                (None, _) => op.accumulate_t(acc.as_ref(), x, w, true)?,
            };
        }
        Ok(acc)
    }

    /// `sum_i weights[i] * op_i(x)`, over the first C/K channels with the rest bypassed and
    /// the channels shuffled when K > 1.
    fn forward(
        &self,
        x: &Tensor,
        weights: &[Tensor],
        drop_skip: &mut Option<SkipMasks<'_, '_>>,
    ) -> Result<Tensor> {
        let c = x.dim(1)?;
        let part = c / self.partial_k;
        let active = if self.partial_k > 1 {
            x.narrow(1, 0, part)?.contiguous()?
        } else {
            x.clone()
        };
        let mixed =
            match self.accumulate(None, &Activated::new(active.clone()), weights, drop_skip)? {
                Some(s) => s,
                // Only `none` on this edge: a zero output of the right shape.
                None => {
                    let (b, _, h, w) = active.dims4()?;
                    Tensor::zeros(
                        (b, part, h / self.stride, w / self.stride),
                        x.dtype(),
                        x.device(),
                    )?
                }
            };
        if self.partial_k == 1 {
            return Ok(mixed);
        }
        let rest = x.narrow(1, part, c - part)?;
        let rest = if self.stride == 2 {
            max_pool2x2(&rest)?
        } else {
            rest
        };
        channel_shuffle(&Tensor::cat(&[&mixed, &rest], 1)?, self.partial_k)
    }
}

/// Interleaves `groups` channel groups: `[B, g*n, H, W] -> view [B, g, n] -> [B, n, g]`.
pub fn channel_shuffle(x: &Tensor, groups: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    x.reshape((b, groups, c / groups, h, w))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, c, h, w))
}

/// Per-sample dropout of the skip-connect candidate (P-DARTS), with its own seeded rng.
pub struct SkipDropout<'a> {
    /// Drop probability.
    pub prob: f64,
    /// Mask source.
    pub rng: &'a mut rand_chacha::ChaCha8Rng,
    /// Where the masks drawn go, in the order drawn (edge by edge, cell by cell), when
    /// asked: the PyTorch cross-check applies the same ones.
    pub record: Option<&'a mut Vec<Tensor>>,
}

impl SkipDropout<'_> {
    /// `x` times a fresh mask, and the mask (none when nothing is dropped).
    fn apply(&mut self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        if self.prob <= 0.0 {
            return Ok((x.clone(), None));
        }
        let keep = 1.0 - self.prob;
        let (b, c, h, w) = x.dims4()?;
        let mask: Vec<f32> = (0..b * c * h * w)
            .map(|_| {
                if self.rng.random_bool(keep) {
                    (1.0 / keep) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (b, c, h, w), x.device())?.to_dtype(x.dtype())?;
        if let Some(record) = self.record.as_mut() {
            record.push(mask.clone());
        }
        Ok(((x * &mask)?, Some(mask)))
    }
}

/// Where a forward pass's skip-connect dropout masks come from.
pub(crate) enum SkipMasks<'s, 'a> {
    /// Drawn by the dropout, each one also kept in `drawn` when given.
    Draw {
        dropout: &'s mut SkipDropout<'a>,
        drawn: Option<&'s mut Vec<Tensor>>,
    },
    /// The masks an earlier pass over the same inputs drew, in the order it drew them.
    Replay(std::slice::Iter<'s, Tensor>),
}

impl SkipMasks<'_, '_> {
    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        match self {
            SkipMasks::Draw { dropout, drawn } => {
                let (dropped, mask) = dropout.apply(x)?;
                if let (Some(drawn), Some(mask)) = (drawn.as_mut(), mask) {
                    drawn.push(mask);
                }
                Ok(dropped)
            }
            SkipMasks::Replay(masks) => match masks.next() {
                Some(mask) => x * mask,
                None => candle_core::bail!(
                    "a replayed pass needs more skip-dropout masks than were drawn"
                ),
            },
        }
    }
}

/// One search cell.
#[derive(Debug, Clone)]
struct SearchCell {
    plan: CellPlan,
    inputs: CellInputs,
    edges: Vec<MixedOp>,
}

impl SearchCell {
    fn new(config: &SupernetConfig, plan: &CellPlan, vb: VarBuilder) -> Result<Self> {
        let norm = Norm::BatchStats;
        let c = plan.channels;
        let candidates = config.candidates(plan.reduction);
        let mut edges = Vec::with_capacity(EDGES);
        for node in 0..NODES {
            for (from, edge) in node_edges(node).enumerate() {
                edges.push(MixedOp::new(
                    &candidates[edge],
                    c,
                    plan.stride(from),
                    config.partial_k,
                    vb.pp(format!("edges.{edge}")),
                )?);
            }
        }
        Ok(SearchCell {
            plan: *plan,
            inputs: CellInputs::new(plan, norm, &vb)?,
            edges,
        })
    }

    /// `op_weights[e]` are the mixture weights of edge `e` (one scalar tensor per candidate);
    /// `edge_weights[e]`, with edge normalisation, scales edge `e`'s output.
    fn forward(
        &self,
        s0: &Tensor,
        s1: &Tensor,
        op_weights: &[Vec<Tensor>],
        edge_weights: Option<&[Tensor]>,
        drop_skip: &mut Option<SkipMasks<'_, '_>>,
    ) -> Result<Tensor> {
        // Each state's ReLU is computed once for all the edges that read it.
        let mut states: Vec<Activated> = self
            .inputs
            .forward_t(s0, s1, true)?
            .into_iter()
            .map(Activated::new)
            .collect();
        for node in 0..NODES {
            let mut sum: Option<Tensor> = None;
            for (from, edge) in node_edges(node).enumerate() {
                let (mixed_op, x, weights) = (&self.edges[edge], &states[from], &op_weights[edge]);
                sum = match edge_weights {
                    // DARTS: one running sum over every candidate of every incoming edge.
                    None if mixed_op.partial_k == 1 => {
                        mixed_op.accumulate(sum, x, weights, drop_skip)?
                    }
                    None => {
                        let h = mixed_op.forward(x.input(), weights, drop_skip)?;
                        Some(match sum {
                            Some(s) => (s + h)?,
                            None => h,
                        })
                    }
                    Some(betas) => {
                        let h = mixed_op.forward(x.input(), weights, drop_skip)?;
                        Some(accumulate_scaled(sum.as_ref(), &h, &betas[edge])?)
                    }
                };
            }
            let node_state = match sum {
                Some(s) => s,
                // Every incoming candidate is `none`: a zero state.
                None => self.zero_state(states[1].input())?,
            };
            states.push(Activated::new(node_state));
        }
        let nodes: Vec<&Tensor> = states[2..].iter().map(Activated::input).collect();
        Tensor::cat(&nodes, 1)
    }

    /// Zeros shaped like this cell's node states (`s1` is the preprocessed input).
    fn zero_state(&self, s1: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = s1.dims4()?;
        let stride = self.plan.stride(0);
        Tensor::zeros((b, c, h / stride, w / stride), s1.dtype(), s1.device())
    }
}

/// The architecture parameters of one cell type.
#[derive(Debug, Clone)]
pub struct CellArch {
    /// `[14, candidates]` operation logits.
    pub alphas: Var,
    /// `[14]` edge logits (PC-DARTS edge normalisation).
    pub betas: Option<Var>,
}

impl CellArch {
    /// Softmax over each edge's candidates, `[14, candidates]`.
    pub fn op_weights(&self) -> Result<Tensor> {
        softmax(self.alphas.as_tensor(), D::Minus1)
    }

    /// Softmax of the betas within each node's incoming edges, `[14]`.
    pub fn edge_weights(&self) -> Result<Option<Tensor>> {
        let Some(betas) = &self.betas else {
            return Ok(None);
        };
        let parts = (0..NODES)
            .map(|node| {
                let r = node_edges(node);
                softmax(&betas.as_tensor().narrow(0, r.start, r.len())?, 0)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Tensor::cat(&parts, 0)?))
    }
}

/// One cell type's mixing weights as scalars: per edge, per candidate op the op weight;
/// per edge the edge weight (PC-DARTS edge normalisation only).
type CellMix = (Vec<Vec<Tensor>>, Option<Vec<Tensor>>);

/// The supernet with its weights (in a `VarMap`) and architecture parameters.
#[derive(Clone)]
pub struct Supernet {
    config: SupernetConfig,
    stem: Stem,
    cells: Vec<SearchCell>,
    classifier: Classifier,
    /// Normal cell architecture.
    pub normal: CellArch,
    /// Reduction cell architecture.
    pub reduce: CellArch,
    weights: VarMap,
    memory: Memory,
}

impl std::fmt::Debug for Supernet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supernet")
            .field("config", &self.config)
            .field("cells", &self.cells.len())
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

impl Supernet {
    /// Builds a supernet with weights and alphas drawn from `seed` (alphas `1e-3 * N(0, 1)`,
    /// betas `1e-3 * N(0, 1)`, as in DARTS and PC-DARTS).
    pub fn new(config: &SupernetConfig, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        let weights = VarMap::new();
        let vb = VarBuilder::from_varmap(&weights, dtype, device);
        let plan = NetworkPlan::new(config.init_channels, config.layers, |_| NODES)
            .with_stem_stride(config.stem_stride);
        let stem = Stem::new(&plan, &vb)?;
        let cells = plan
            .cells
            .iter()
            .map(|cell| SearchCell::new(config, cell, vb.pp(cell.scope())))
            .collect::<Result<Vec<_>>>()?;
        let classifier = Classifier::new(&plan, config.num_classes, &vb)?;
        hands_models::nn::init::init_seeded(&weights, seed)?;

        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed ^ 0xa1fa);
        let mut arch = |reduction: bool| -> Result<CellArch> {
            let n = config.candidates(reduction)[0].len();
            let alphas = small_normal(&mut rng, EDGES * n, (EDGES, n), dtype, device)?;
            let betas = config
                .edge_norm
                .then(|| small_normal(&mut rng, EDGES, EDGES, dtype, device))
                .transpose()?;
            Ok(CellArch { alphas, betas })
        };
        let normal = arch(false)?;
        let reduce = arch(true)?;
        Ok(Supernet {
            config: config.clone(),
            stem,
            cells,
            classifier,
            normal,
            reduce,
            weights,
            memory: Memory::Fast,
        })
    }

    /// The same supernet with its search steps keeping their backward passes' activations as
    /// `memory` says (lean: [`crate::recompute`]).
    pub fn with_memory(self, memory: Memory) -> Supernet {
        Supernet { memory, ..self }
    }

    /// How its search steps keep their backward passes' activations.
    pub fn memory(&self) -> Memory {
        self.memory
    }

    /// The configuration.
    pub fn config(&self) -> &SupernetConfig {
        &self.config
    }

    /// The weights' store (names follow the module tree).
    pub fn weights(&self) -> &VarMap {
        &self.weights
    }

    /// Trainable weights in name order (a stable order for optimisers and checkpoints).
    pub fn weight_vars(&self) -> Vec<(String, Var)> {
        let data = self.weights.data().lock().expect("varmap lock");
        let mut vars: Vec<(String, Var)> = data
            .iter()
            .filter(|(name, _)| !is_running_statistic(name))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// All weights including BatchNorm running statistics, in name order.
    pub fn all_weight_vars(&self) -> Vec<(String, Var)> {
        let data = self.weights.data().lock().expect("varmap lock");
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Architecture parameters with stable names: `alphas.normal`, `alphas.reduce`, and
    /// `betas.*` with edge normalisation.
    pub fn arch_vars(&self) -> Vec<(String, Var)> {
        let mut vars = vec![
            ("alphas.normal".to_string(), self.normal.alphas.clone()),
            ("alphas.reduce".to_string(), self.reduce.alphas.clone()),
        ];
        if let (Some(bn), Some(br)) = (&self.normal.betas, &self.reduce.betas) {
            vars.push(("betas.normal".to_string(), bn.clone()));
            vars.push(("betas.reduce".to_string(), br.clone()));
        }
        vars
    }

    /// Class logits of a batch, in training mode.
    pub fn forward(&self, images: &Tensor, drop_skip: Option<SkipDropout<'_>>) -> Result<Tensor> {
        let mut dropout = drop_skip;
        let mut drop_skip = dropout.as_mut().map(|dropout| SkipMasks::Draw {
            dropout,
            drawn: None,
        });
        let mixes = self.mixes()?;
        let stem = self.stem(images)?;
        let (mut s0, mut s1) = (stem.clone(), stem);
        for cell in 0..self.cells.len() {
            let s2 = self.cell(cell, (&s0, &s1), &mixes, &mut drop_skip)?;
            s0 = s1;
            s1 = s2;
        }
        self.classify(&s1)
    }

    /// The mixture weights of both cell types (per edge, one scalar tensor per candidate,
    /// and the edge weights with edge normalisation), as functions of the architecture
    /// variables.
    pub(crate) fn mixes(&self) -> Result<CellMixes> {
        let split = |arch: &CellArch| -> Result<CellMix> {
            let w = arch.op_weights()?;
            let per_edge = (0..EDGES)
                .map(|e| {
                    let row = w.get(e)?;
                    (0..row.dim(0)?)
                        .map(|i| row.get(i))
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<_>>>()?;
            let betas = match arch.edge_weights()? {
                Some(b) => Some((0..EDGES).map(|e| b.get(e)).collect::<Result<Vec<_>>>()?),
                None => None,
            };
            Ok((per_edge, betas))
        };
        Ok(CellMixes {
            normal: split(&self.normal)?,
            reduce: split(&self.reduce)?,
        })
    }

    /// Number of cells.
    pub(crate) fn cell_count(&self) -> usize {
        self.cells.len()
    }

    /// The stem's output for `images`, in training mode (its BatchNorm's running statistics
    /// move).
    pub(crate) fn stem(&self, images: &Tensor) -> Result<Tensor> {
        self.stem.forward_t(images, true)
    }

    /// Cell `cell`'s output from its two inputs (the outputs of the two cells before it, the
    /// stem standing in for those before the first).
    pub(crate) fn cell(
        &self,
        cell: usize,
        (s0, s1): (&Tensor, &Tensor),
        mixes: &CellMixes,
        drop_skip: &mut Option<SkipMasks<'_, '_>>,
    ) -> Result<Tensor> {
        let cell = &self.cells[cell];
        let (ops, betas) = if cell.plan.reduction {
            &mixes.reduce
        } else {
            &mixes.normal
        };
        cell.forward(s0, s1, ops, betas.as_deref(), drop_skip)
    }

    /// Class logits from the last cell's output.
    pub(crate) fn classify(&self, last: &Tensor) -> Result<Tensor> {
        self.classifier.forward(last)
    }
}

/// The mixture weights of the normal and the reduction cell ([`Supernet::mixes`]).
pub(crate) struct CellMixes {
    normal: CellMix,
    reduce: CellMix,
}

fn small_normal(
    rng: &mut rand_chacha::ChaCha8Rng,
    n: usize,
    shape: impl Into<candle_core::Shape>,
    dtype: DType,
    device: &Device,
) -> Result<Var> {
    use rand_distr::{Distribution, StandardNormal};
    let values: Vec<f64> = (0..n)
        .map(|_| 1e-3 * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng))
        .collect();
    Var::from_tensor(&Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hands_tests::{max_abs_diff, SeededTensors};

    fn mixed_op(channels: usize, stride: usize, partial_k: usize) -> (MixedOp, VarMap) {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let op = MixedOp::new(&Op::ALL, channels, stride, partial_k, vb).unwrap();
        (op, map)
    }

    fn op_weights(random: &mut SeededTensors) -> Vec<Tensor> {
        let alphas = random.normal(0.0, 1.0, Op::ALL.len());
        let w = softmax(&alphas, 0).unwrap();
        (0..Op::ALL.len()).map(|i| w.get(i).unwrap()).collect()
    }

    /// DARTS' mixed edge, written out: `sum_i w_i op_i(x)` (pooling followed by its BN).
    fn darts_mixture(op: &MixedOp, x: &Tensor, weights: &[Tensor]) -> Tensor {
        let mut sum: Option<Tensor> = None;
        for ((operation, bn), w) in op.ops.iter().zip(weights) {
            let Some(mut h) = operation.forward_t(x, true).unwrap() else {
                continue;
            };
            if let Some(bn) = bn {
                h = bn.forward_t(&h, true).unwrap();
            }
            let h = h.broadcast_mul(w).unwrap();
            sum = Some(match sum {
                None => h,
                Some(s) => (s + h).unwrap(),
            });
        }
        sum.unwrap()
    }

    #[test]
    fn channel_shuffle_is_a_permutation_with_an_inverse() {
        let x = Tensor::arange(0f32, 2.0 * 12.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 12, 1, 1))
            .unwrap();
        let y = channel_shuffle(&x, 4).unwrap();
        assert_ne!(max_abs_diff(&x, &y), 0.0, "the shuffle moves channels");
        for b in 0..2 {
            let mut seen: Vec<f32> = y.get(b).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            seen.sort_by(f32::total_cmp);
            let expected: Vec<f32> = x.get(b).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(seen, expected, "each sample keeps its own channels");
        }
        // [B, g, n] -> [B, n, g] is undone by shuffling with n groups.
        let back = channel_shuffle(&y, 12 / 4).unwrap();
        assert_eq!(max_abs_diff(&x, &back), 0.0);
    }

    #[test]
    fn partial_k_one_is_the_darts_mixed_edge() {
        for stride in [1, 2] {
            let (op, _map) = mixed_op(8, stride, 1);
            let mut random = SeededTensors::new(stride as u64);
            let x = random.normal(0.0, 1.0, (2, 8, 8, 8));
            let w = op_weights(&mut random);
            let got = op.forward(&x, &w, &mut None).unwrap();
            let expected = darts_mixture(&op, &x, &w);
            assert!(max_abs_diff(&got, &expected) < 1e-6, "stride {stride}");
        }
    }

    /// PC-DARTS' edge before its channel shuffle, from candle's own ops: the DARTS mixture of
    /// the first C/K channels of `x` (`[2, 16, 8, 8]`, K = 4), then the other channels,
    /// max-pooled 2x2 when the edge reduces (as a reduction over each window: candle's
    /// max_pool2d scales its gradient).
    fn plain_partial_edge(op: &MixedOp, x: &Tensor, w: &[Tensor], stride: usize) -> Tensor {
        let mixed = darts_mixture(op, &x.narrow(1, 0, 4).unwrap(), w);
        let rest = x.narrow(1, 4, 12).unwrap();
        let rest = if stride == 2 {
            rest.contiguous()
                .unwrap()
                .reshape((2, 12, 4, 2, 4, 2))
                .unwrap()
                .max(5)
                .unwrap()
                .max(3)
                .unwrap()
        } else {
            rest
        };
        Tensor::cat(&[&mixed, &rest], 1).unwrap()
    }

    #[test]
    fn partial_channels_mix_a_quarter_and_bypass_the_rest() {
        let k = 4;
        for stride in [1, 2] {
            let (op, _map) = mixed_op(16, stride, k);
            let mut random = SeededTensors::new(stride as u64);
            let x = random.normal(0.0, 1.0, (2, 16, 8, 8));
            let w = op_weights(&mut random);
            let got = op.forward(&x, &w, &mut None).unwrap();
            // Undo the shuffle: the first C/K channels are the mixture, the rest the bypass.
            let unshuffled = channel_shuffle(&got, 16 / k).unwrap();
            let expected = plain_partial_edge(&op, &x, &w, stride);
            assert!(
                max_abs_diff(&unshuffled, &expected) < 1e-6,
                "stride {stride}"
            );
        }
    }

    #[test]
    fn partial_channel_gradients_match_the_plain_candle_graph() {
        let k = 4;
        for stride in [1, 2] {
            let (op, _map) = mixed_op(16, stride, k);
            let mut random = SeededTensors::new(stride as u64);
            let x = candle_core::Var::from_tensor(&random.normal(0.0, 1.0, (2, 16, 8, 8))).unwrap();
            let w = op_weights(&mut random);
            let input_grad = |out: Tensor, r: &Tensor| {
                (out * r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
                    .get(x.as_tensor())
                    .unwrap()
                    .clone()
            };
            let got = op.forward(x.as_tensor(), &w, &mut None).unwrap();
            let r = random.normal(0.0, 1.0, got.dims4().unwrap());
            let grad_got = input_grad(got, &r);
            let expected =
                channel_shuffle(&plain_partial_edge(&op, x.as_tensor(), &w, stride), k).unwrap();
            let grad_expected = input_grad(expected, &r);
            let diff = max_abs_diff(&grad_got, &grad_expected);
            assert!(
                diff < 1e-4,
                "stride {stride}: input gradients differ by {diff}"
            );
        }
    }

    #[test]
    fn uniform_betas_weight_each_incoming_edge_equally() {
        let config = |edge_norm| SupernetConfig {
            init_channels: 4,
            layers: 3,
            stem_stride: 1,
            num_classes: 2,
            partial_k: 1,
            edge_norm,
            normal_candidates: SupernetConfig::full_candidates(),
            reduce_candidates: SupernetConfig::full_candidates(),
        };
        let net = Supernet::new(&config(true), 5, DType::F32, &Device::Cpu).unwrap();
        for arch in [&net.normal, &net.reduce] {
            let betas = arch.betas.as_ref().unwrap();
            betas.set(&betas.zeros_like().unwrap()).unwrap();
            let w = arch
                .edge_weights()
                .unwrap()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for node in 0..NODES {
                for e in node_edges(node) {
                    assert!((w[e] - 1.0 / (node + 2) as f32).abs() < 1e-6);
                }
            }
        }
        assert!(Supernet::new(&config(false), 5, DType::F32, &Device::Cpu)
            .unwrap()
            .normal
            .edge_weights()
            .unwrap()
            .is_none());
    }
}
