//! The discrete network built from a genotype (DARTS' `NetworkCIFAR`): stem, stacked normal
//! and reduction cells, optional auxiliary head at 2/3 depth, global pooling, classifier.
//!
//! Its shape (channels, reductions, strides, scopes) is [`crate::plan`]'s. Parameter names
//! read like the module tree: `stem.0.weight`, `cells.3.preprocess1.op.1.weight`,
//! `cells.3.ops.2.op.5.weight`, `auxiliary.conv.weight`, `classifier.weight`.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::Rng;

use super::functional::{global_avg_pool, relu};
use super::layers::{
    is_running_statistic, BatchNorm2d, FactorizedReduce, Norm, Operation, ReluConvBn,
};
use super::node_sum::node_sum;
use crate::genotype::{Genotype, EDGES_PER_NODE, NODES};
use crate::plan::{
    edge_scope, is_under, CellPlan, NetworkPlan, AUXILIARY, CLASSIFIER, PREPROCESS0, PREPROCESS1,
    STEM_BN, STEM_CONV, STEM_STRIDES,
};

/// Shape of a discrete network.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// Channels of the first cell (C).
    pub init_channels: usize,
    /// Number of cells.
    pub layers: usize,
    /// Stride of the stem's convolution ([`crate::plan::STEM_STRIDES`]).
    pub stem_stride: usize,
    /// Number of output classes.
    pub num_classes: usize,
    /// Whether to build the auxiliary head (training only).
    pub auxiliary: bool,
}

/// The preprocessing of a cell's first input: FactorizedReduce after a reduction cell (the
/// input has twice the resolution), else a 1x1 ReLU-conv-BN.
#[derive(Debug, Clone)]
enum Preprocess {
    Reduce(FactorizedReduce),
    Conv(ReluConvBn),
}

impl Preprocess {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Preprocess::Reduce(fr) => fr.forward_t(x, train),
            Preprocess::Conv(rcb) => rcb.forward_t(x, train),
        }
    }
}

/// A cell's two inputs brought to its `C` channels and resolution (`preprocess0`: the cell
/// before the previous one, see `Preprocess`; `preprocess1`: the previous cell, a 1x1
/// ReLU-conv-BN). The discrete cells and the search cells both start with it.
#[derive(Debug, Clone)]
pub struct CellInputs {
    preprocess0: Preprocess,
    preprocess1: ReluConvBn,
}

impl CellInputs {
    /// The preprocessing of the cell `plan` places, BatchNorms as `norm`.
    pub fn new(plan: &CellPlan, norm: Norm, vb: &VarBuilder) -> Result<Self> {
        let (c, vb0) = (plan.channels, vb.pp(PREPROCESS0));
        let preprocess0 = if plan.reduction_prev {
            Preprocess::Reduce(FactorizedReduce::new(plan.input0_channels, c, norm, vb0)?)
        } else {
            Preprocess::Conv(ReluConvBn::new(plan.input0_channels, c, norm, vb0)?)
        };
        let preprocess1 = ReluConvBn::new(plan.input1_channels, c, norm, vb.pp(PREPROCESS1))?;
        Ok(CellInputs {
            preprocess0,
            preprocess1,
        })
    }

    /// The two preprocessed inputs, states 0 and 1 of the cell.
    pub fn forward_t(&self, s0: &Tensor, s1: &Tensor, train: bool) -> Result<[Tensor; 2]> {
        Ok([
            self.preprocess0.forward_t(s0, train)?,
            self.preprocess1.forward_t(s1, train)?,
        ])
    }
}

/// The stem: a 3x3 convolution at the plan's stride from the image to its `3C` channels,
/// then BatchNorm (`stem.0.weight`, `stem.1.*`).
#[derive(Debug, Clone)]
pub struct Stem {
    conv: Tensor,
    stride: usize,
    bn: BatchNorm2d,
}

impl Stem {
    /// The stem of the network `plan` describes.
    pub fn new(plan: &NetworkPlan, vb: &VarBuilder) -> Result<Self> {
        let c = plan.stem_channels;
        let conv = vb.get_with_hints(
            (c, 3, 3, 3),
            &format!("{STEM_CONV}.weight"),
            Init::Const(0.0),
        )?;
        let bn = BatchNorm2d::new(c, Norm::Learned, vb.pp(STEM_BN))?;
        Ok(Stem {
            conv,
            stride: plan.stem_stride,
            bn,
        })
    }

    /// Applies it to `[B, 3, S, S]` images.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        self.bn
            .forward_t(&images.conv2d(&self.conv, 1, self.stride, 1, 1)?, train)
    }
}

/// The head: global average pooling, then a linear layer to the class logits
/// (`classifier.weight`, `classifier.bias`).
#[derive(Debug, Clone)]
pub struct Classifier {
    weight: Tensor,
    bias: Tensor,
}

impl Classifier {
    /// The classifier of the network `plan` describes, for `classes` classes.
    pub fn new(plan: &NetworkPlan, classes: usize, vb: &VarBuilder) -> Result<Self> {
        let vb = vb.pp(CLASSIFIER);
        let weight = vb.get_with_hints(
            (classes, plan.classifier_channels),
            "weight",
            Init::Const(0.0),
        )?;
        let bias = vb.get_with_hints(classes, "bias", Init::Const(0.0))?;
        Ok(Classifier { weight, bias })
    }

    /// Logits `[B, classes]` of the last cell's output.
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        global_avg_pool(features)?
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)
    }
}

/// Drop path settings for one training forward pass.
pub struct DropPath<'a, R: Rng> {
    /// Probability of dropping a non-identity edge for a sample.
    pub prob: f64,
    /// Source of the per-sample masks.
    pub rng: &'a mut R,
}

/// One cell of the discrete network.
#[derive(Debug, Clone)]
pub struct Cell {
    inputs: CellInputs,
    ops: Vec<(Operation, usize)>,
    concat: Vec<usize>,
}

impl Cell {
    /// Builds the cell `plan` places, from `genotype` (its reduce or normal half).
    pub fn new(genotype: &Genotype, plan: &CellPlan, vb: VarBuilder) -> Result<Self> {
        let norm = Norm::Learned;
        let c = plan.channels;
        let (edges, concat) = genotype.cell(plan.reduction);
        let ops = edges
            .iter()
            .enumerate()
            .map(|(k, &(op, from))| {
                let operation =
                    Operation::new(op, c, plan.stride(from), norm, vb.pp(edge_scope(k)))?;
                Ok((operation, from))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Cell {
            inputs: CellInputs::new(plan, norm, &vb)?,
            ops,
            concat: concat.to_vec(),
        })
    }

    /// Applies the cell to its two inputs.
    pub fn forward_t<R: Rng>(
        &self,
        s0: &Tensor,
        s1: &Tensor,
        train: bool,
        drop: &mut Option<DropPath<'_, R>>,
    ) -> Result<Tensor> {
        let mut states = Vec::from(self.inputs.forward_t(s0, s1, train)?);
        for node in 0..NODES {
            let mut edges = Vec::with_capacity(EDGES_PER_NODE);
            for (op, from) in &self.ops[node * EDGES_PER_NODE..(node + 1) * EDGES_PER_NODE] {
                let Some(h) = op.forward_t(&states[*from], train)? else {
                    continue;
                };
                let scales = match drop.as_mut().filter(|d| d.prob > 0.0 && train) {
                    Some(drop) if !op.is_identity() => Some(drop_path_scales(h.dim(0)?, drop)),
                    _ => None,
                };
                edges.push((h, scales));
            }
            if edges.is_empty() {
                candle_core::bail!("node {} of a cell has no input", node + 2);
            }
            states.push(node_sum(&edges)?);
        }
        let outputs: Vec<&Tensor> = self.concat.iter().map(|&i| &states[i]).collect();
        Tensor::cat(&outputs, 1)
    }
}

/// Drop path's per-sample factors: 0 with probability `prob`, else `1 / (1 - prob)`.
fn drop_path_scales<R: Rng>(samples: usize, drop: &mut DropPath<'_, R>) -> Vec<f64> {
    let keep = 1.0 - drop.prob;
    (0..samples)
        .map(|_| {
            if drop.rng.random_bool(keep) {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect()
}

/// The auxiliary classifier at 2/3 depth: ReLU, 1x1 conv to 128, BN, ReLU, global average
/// pool, linear. (DARTS' CIFAR head pools 5x5/3 and needs an 8x8 map; this one works at any
/// input size.)
#[derive(Debug, Clone)]
pub struct AuxiliaryHead {
    conv: ReluConvBn,
    weight: Tensor,
    bias: Tensor,
}

impl AuxiliaryHead {
    fn new(c: usize, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(AuxiliaryHead {
            conv: ReluConvBn::new(c, 128, Norm::Learned, vb.pp("conv"))?,
            weight: vb.get_with_hints((num_classes, 128), "linear.weight", Init::Const(0.0))?,
            bias: vb.get_with_hints(num_classes, "linear.bias", Init::Const(0.0))?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = global_avg_pool(&relu(&self.conv.forward_t(x, train)?)?)?;
        h.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }
}

/// The discrete network.
#[derive(Debug, Clone)]
pub struct Network {
    config: NetworkConfig,
    stem: Stem,
    cells: Vec<Cell>,
    auxiliary: Option<(usize, AuxiliaryHead)>,
    classifier: Classifier,
}

/// What a forward pass returns.
#[derive(Debug, Clone)]
pub struct Output {
    /// Class logits `[B, classes]`.
    pub logits: Tensor,
    /// Auxiliary head logits, in training with an auxiliary head.
    pub aux_logits: Option<Tensor>,
}

impl Network {
    /// Builds the network with parameters under `vb` (all created with constant
    /// placeholders: fill them with [`super::init::init_seeded`] or load trained weights).
    pub fn new(genotype: &Genotype, config: &NetworkConfig, vb: VarBuilder) -> Result<Self> {
        genotype
            .validate()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        if !STEM_STRIDES.contains(&config.stem_stride) {
            return Err(candle_core::Error::Msg(format!(
                "stem stride {} is not one of {STEM_STRIDES:?}",
                config.stem_stride
            )));
        }
        let plan = NetworkPlan::of_genotype(
            genotype,
            config.init_channels,
            config.layers,
            config.stem_stride,
        );
        let stem = Stem::new(&plan, &vb)?;
        let cells = plan
            .cells
            .iter()
            .map(|cell| Cell::new(genotype, cell, vb.pp(cell.scope())))
            .collect::<Result<Vec<_>>>()?;
        let auxiliary = match (config.auxiliary, plan.auxiliary_channels()) {
            (true, Some(aux_c)) => Some((
                plan.auxiliary_after,
                AuxiliaryHead::new(aux_c, config.num_classes, vb.pp(AUXILIARY))?,
            )),
            _ => None,
        };
        Ok(Network {
            config: config.clone(),
            stem,
            cells,
            auxiliary,
            classifier: Classifier::new(&plan, config.num_classes, &vb)?,
        })
    }

    /// A network with seeded random weights in a fresh `VarMap`.
    pub fn seeded(
        genotype: &Genotype,
        config: &NetworkConfig,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<(Network, VarMap)> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, dtype, device);
        let network = Network::new(genotype, config, vb)?;
        super::init::init_seeded(&varmap, seed)?;
        Ok((network, varmap))
    }

    /// The network's shape.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Forward pass on `[B, 3, S, S]` images. In training (`train`), BatchNorm uses batch
    /// statistics, drop path applies when given, and the auxiliary head runs if present.
    pub fn forward_t<R: Rng>(
        &self,
        images: &Tensor,
        train: bool,
        mut drop: Option<DropPath<'_, R>>,
    ) -> Result<Output> {
        let stem = self.stem.forward_t(images, train)?;
        let (mut s0, mut s1) = (stem.clone(), stem);
        let mut aux_logits = None;
        for (i, cell) in self.cells.iter().enumerate() {
            let s2 = cell.forward_t(&s0, &s1, train, &mut drop)?;
            s0 = s1;
            s1 = s2;
            if let Some((at, head)) = &self.auxiliary {
                if train && *at == i {
                    aux_logits = Some(head.forward_t(&s1, train)?);
                }
            }
        }
        let logits = self.classifier.forward(&s1)?;
        Ok(Output { logits, aux_logits })
    }

    /// Evaluation-mode logits.
    pub fn logits(&self, images: &Tensor) -> Result<Tensor> {
        Ok(self
            .forward_t::<rand_chacha::ChaCha8Rng>(images, false, None)?
            .logits)
    }
}

/// Number of learnable parameters in `varmap`, excluding BatchNorm running statistics and,
/// unless `with_auxiliary`, the auxiliary head.
pub fn parameter_count(varmap: &VarMap, with_auxiliary: bool) -> usize {
    let vars = varmap.data().lock().expect("varmap lock");
    vars.iter()
        .filter(|(name, _)| !is_running_statistic(name))
        .filter(|(name, _)| with_auxiliary || !is_under(name, AUXILIARY))
        .map(|(_, var)| var.elem_count())
        .sum()
}
