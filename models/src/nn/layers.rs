//! The building blocks of DARTS cells: batch normalisation and the candidate operations of
//! `hands_models::Op`, with parameter names that follow DARTS' PyTorch module tree
//! (`op.1.weight`, `op.3.running_mean`, ...), so a reader of the paper's code finds them.

use std::cell::OnceCell;

use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use super::affine_norm::{affine_batch_norm, affine_norm_fixed};
use super::functional::{
    avg_pool3x3, depthwise_conv2d, max_pool3x3, relu, relu_depthwise_conv2d, subsample2,
};
use super::mixture::{accumulate_batch_normalised, accumulate_scaled, batch_normalise};
use super::pointwise::pointwise_conv;
use crate::Op;

/// How a network normalises: the search supernet uses batch statistics only (DARTS'
/// `affine=False`), a discrete network learns scale and shift and tracks running statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// No learnable parameters, always batch statistics.
    BatchStats,
    /// Affine parameters and running statistics (used in evaluation).
    Learned,
}

/// Batch normalisation over `(N, H, W)` of a `[N, C, H, W]` tensor.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    affine: Option<(Tensor, Tensor)>,
    running: Option<(Var, Var)>,
}

/// PyTorch's BatchNorm epsilon.
pub const BN_EPS: f64 = 1e-5;
/// PyTorch's BatchNorm momentum for the running statistics.
pub const BN_MOMENTUM: f64 = 0.1;

/// Whether a parameter is a BatchNorm running statistic (state, not learned).
pub fn is_running_statistic(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

impl BatchNorm2d {
    /// A BatchNorm over `channels`; parameters `weight`, `bias`, `running_mean`, `running_var`
    /// under `vb` when `norm` is [`Norm::Learned`].
    pub fn new(channels: usize, norm: Norm, vb: VarBuilder) -> Result<Self> {
        match norm {
            Norm::BatchStats => Ok(BatchNorm2d {
                affine: None,
                running: None,
            }),
            Norm::Learned => {
                let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
                let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
                let mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
                let var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
                Ok(BatchNorm2d {
                    affine: Some((weight, bias)),
                    running: Some((Var::from_tensor(&mean)?, Var::from_tensor(&var)?)),
                })
            }
        }
    }

    /// Normalises with batch statistics when `train` (updating the running statistics) or
    /// when no running statistics exist, else with the running statistics; scales and shifts
    /// in the same fused op when the norm is learned.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (normed, batch_stats) = match (&self.affine, &self.running, train) {
            (Some((gamma, beta)), Some((mean, var)), false) => {
                return affine_norm_fixed(
                    x,
                    gamma,
                    beta,
                    mean.as_tensor(),
                    var.as_tensor(),
                    BN_EPS,
                );
            }
            (Some((gamma, beta)), _, _) => {
                let (y, mean, var) = affine_batch_norm(x, gamma, beta, BN_EPS)?;
                (y, (mean, var))
            }
            (None, _, _) => {
                let (y, mean, var) = batch_normalise(x, BN_EPS)?;
                (y, (mean, var))
            }
        };
        if let Some((run_mean, run_var)) = &self.running {
            let (mean, var) = batch_stats;
            let (n, _, h, w) = x.dims4()?;
            let count = (n * h * w) as f64;
            let unbiased = (var.detach() * (count / (count - 1.0).max(1.0)))?;
            let keep = 1.0 - BN_MOMENTUM;
            run_mean.set(&((run_mean.as_tensor() * keep)? + (mean.detach() * BN_MOMENTUM)?)?)?;
            run_var.set(&((run_var.as_tensor() * keep)? + (unbiased * BN_MOMENTUM)?)?)?;
        }
        Ok(normed)
    }

    /// `acc + weight * forward_t(x)`; for [`Norm::BatchStats`] as one fused op that never
    /// stores the normalised tensor (see [`super::mixture`]).
    pub fn accumulate_t(
        &self,
        acc: Option<&Tensor>,
        x: &Tensor,
        weight: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        if self.affine.is_none() && self.running.is_none() {
            return accumulate_batch_normalised(acc, x, weight, BN_EPS);
        }
        accumulate_scaled(acc, &self.forward_t(x, train)?, weight)
    }
}

/// An input with its ReLU computed at most once, shared by every operation that starts with
/// one: in a search cell, the convolutions and reductions of all the edges reading a state.
#[derive(Debug, Clone)]
pub struct Activated {
    input: Tensor,
    relu: OnceCell<Tensor>,
}

impl Activated {
    /// Wraps `input`; its ReLU is computed on first use.
    pub fn new(input: Tensor) -> Self {
        Activated {
            input,
            relu: OnceCell::new(),
        }
    }

    /// The input itself.
    pub fn input(&self) -> &Tensor {
        &self.input
    }

    /// `max(input, 0)`, computed once.
    pub fn relu(&self) -> Result<&Tensor> {
        if let Some(r) = self.relu.get() {
            return Ok(r);
        }
        let r = relu(&self.input)?;
        Ok(self.relu.get_or_init(|| r))
    }
}

/// A bias-free convolution weight `[c_out, c_in / groups, k, k]` named `weight`.
fn conv_weight(c_out: usize, c_in: usize, k: usize, vb: &VarBuilder) -> Result<Tensor> {
    // Values are drawn later by `init::init_seeded`, so that runs are reproducible.
    vb.get_with_hints((c_out, c_in, k, k), "weight", Init::Const(0.0))
}

/// What sits between the ReLU and the BatchNorm of a [`ReluBlock`].
pub trait Convolutions {
    /// Applies the convolutions to the ReLU'd input.
    fn convolve(&self, relu_x: &Tensor) -> Result<Tensor>;

    /// Applies the convolutions to `relu(x)`, the ReLU fused into the first convolution
    /// where it can be.
    fn convolve_rectified(&self, x: &Tensor) -> Result<Tensor> {
        self.convolve(&relu(x)?)
    }
}

/// DARTS' ReLU -> convolutions -> BatchNorm blocks, by their convolutions `C`.
#[derive(Debug, Clone)]
pub struct ReluBlock<C> {
    convs: C,
    bn: BatchNorm2d,
}

impl<C: Convolutions> ReluBlock<C> {
    /// Applies the block.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_t(&self.convs.convolve_rectified(x)?, train)
    }

    /// Applies the block to an input whose ReLU may be shared.
    pub fn forward_activated(&self, x: &Activated, train: bool) -> Result<Tensor> {
        self.bn.forward_t(&self.convs.convolve(x.relu()?)?, train)
    }

    /// `acc + weight * forward_t(x)`, fused into the BatchNorm.
    pub fn accumulate_t(
        &self,
        acc: Option<&Tensor>,
        x: &Activated,
        weight: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        self.bn
            .accumulate_t(acc, &self.convs.convolve(x.relu()?)?, weight, train)
    }
}

/// A 1x1 convolution.
#[derive(Debug, Clone)]
pub struct Pointwise {
    weight: Tensor,
}

impl Convolutions for Pointwise {
    fn convolve(&self, relu_x: &Tensor) -> Result<Tensor> {
        pointwise_conv(relu_x, &self.weight)
    }
}

/// ReLU, 1x1 convolution, BatchNorm (DARTS' `ReLUConvBN` with kernel 1): `op.1`, `op.2`.
pub type ReluConvBn = ReluBlock<Pointwise>;

impl ReluConvBn {
    /// A 1x1 ReLU-conv-BN from `c_in` to `c_out` channels.
    pub fn new(c_in: usize, c_out: usize, norm: Norm, vb: VarBuilder) -> Result<Self> {
        Ok(ReluBlock {
            convs: Pointwise {
                weight: conv_weight(c_out, c_in, 1, &vb.pp("op.1"))?,
            },
            bn: BatchNorm2d::new(c_out, norm, vb.pp("op.2"))?,
        })
    }
}

/// A depthwise kxk (dilated) convolution followed by a pointwise 1x1 one.
#[derive(Debug, Clone)]
pub struct DepthwisePointwise {
    depthwise: Tensor,
    pointwise: Tensor,
    stride: usize,
    pad: usize,
    dilation: usize,
}

impl Convolutions for DepthwisePointwise {
    fn convolve(&self, relu_x: &Tensor) -> Result<Tensor> {
        let (stride, pad, dilation) = (self.stride, self.pad, self.dilation);
        let y = depthwise_conv2d(relu_x, &self.depthwise, stride, pad, dilation)?;
        pointwise_conv(&y, &self.pointwise)
    }

    fn convolve_rectified(&self, x: &Tensor) -> Result<Tensor> {
        let (stride, pad, dilation) = (self.stride, self.pad, self.dilation);
        let y = relu_depthwise_conv2d(x, &self.depthwise, stride, pad, dilation)?;
        pointwise_conv(&y, &self.pointwise)
    }
}

/// ReLU, depthwise kxk (dilated), pointwise 1x1, BatchNorm: DARTS' `DilConv`, and one half
/// of `SepConv`.
pub type DilConv = ReluBlock<DepthwisePointwise>;

impl DilConv {
    /// The block with parameters at `vb.pp(first)`, `first + 1`, `first + 2` (DARTS' indices
    /// inside its `nn.Sequential`).
    #[allow(clippy::too_many_arguments)]
    fn with_indices(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        dilation: usize,
        norm: Norm,
        vb: &VarBuilder,
        first: usize,
    ) -> Result<Self> {
        Ok(ReluBlock {
            convs: DepthwisePointwise {
                depthwise: conv_weight(c_in, 1, k, &vb.pp(format!("op.{first}")))?,
                pointwise: conv_weight(c_out, c_in, 1, &vb.pp(format!("op.{}", first + 1)))?,
                stride,
                pad,
                dilation,
            },
            bn: BatchNorm2d::new(c_out, norm, vb.pp(format!("op.{}", first + 2)))?,
        })
    }
}

/// Two 1x1 stride-2 convolutions, the second on the input shifted by one pixel,
/// concatenated.
#[derive(Debug, Clone)]
pub struct ShiftedPointwisePair {
    conv_1: Tensor,
    conv_2: Tensor,
}

impl Convolutions for ShiftedPointwisePair {
    fn convolve(&self, relu_x: &Tensor) -> Result<Tensor> {
        let a = pointwise_conv(&subsample2(relu_x, 0)?, &self.conv_1)?;
        let b = pointwise_conv(&subsample2(relu_x, 1)?, &self.conv_2)?;
        Tensor::cat(&[&a, &b], 1)
    }
}

/// ReLU, two 1x1 stride-2 convolutions (the second on the input shifted by one pixel),
/// concatenated, BatchNorm: DARTS' `FactorizedReduce` (`conv_1`, `conv_2`, `bn`).
pub type FactorizedReduce = ReluBlock<ShiftedPointwisePair>;

impl FactorizedReduce {
    /// Halves the resolution, `c_in` to `c_out` (even) channels.
    pub fn new(c_in: usize, c_out: usize, norm: Norm, vb: VarBuilder) -> Result<Self> {
        if !c_out.is_multiple_of(2) {
            candle_core::bail!("FactorizedReduce needs an even channel count, got {c_out}");
        }
        Ok(ReluBlock {
            convs: ShiftedPointwisePair {
                conv_1: conv_weight(c_out / 2, c_in, 1, &vb.pp("conv_1"))?,
                conv_2: conv_weight(c_out / 2, c_in, 1, &vb.pp("conv_2"))?,
            },
            bn: BatchNorm2d::new(c_out, norm, vb.pp("bn"))?,
        })
    }
}

/// One candidate operation on an edge, built from an [`Op`].
#[derive(Debug, Clone)]
pub enum Operation {
    /// The zero op (contributes nothing; never evaluated).
    Zero,
    /// 3x3 max pooling.
    MaxPool {
        /// 1 or 2.
        stride: usize,
    },
    /// 3x3 average pooling, padding excluded.
    AvgPool {
        /// 1 or 2.
        stride: usize,
    },
    /// Identity at stride 1.
    Identity,
    /// `skip_connect` at stride 2.
    Reduce(FactorizedReduce),
    /// `sep_conv_kxk`: two DilConv blocks with dilation 1.
    SepConv(DilConv, DilConv),
    /// `dil_conv_kxk`.
    DilConv(DilConv),
}

impl Operation {
    /// Builds `op` on `channels` channels at `stride` with parameters under `vb`.
    pub fn new(op: Op, channels: usize, stride: usize, norm: Norm, vb: VarBuilder) -> Result<Self> {
        let c = channels;
        Ok(match op {
            Op::None => Operation::Zero,
            Op::MaxPool3x3 => Operation::MaxPool { stride },
            Op::AvgPool3x3 => Operation::AvgPool { stride },
            Op::SkipConnect if stride == 1 => Operation::Identity,
            Op::SkipConnect => Operation::Reduce(FactorizedReduce::new(c, c, norm, vb)?),
            Op::SepConv3x3 | Op::SepConv5x5 | Op::DilConv3x3 | Op::DilConv5x5 => {
                let conv = op.convolution().expect("a convolution op");
                let block = |stride: usize, first: usize| {
                    let (k, pad, dil) = (conv.kernel, conv.padding, conv.dilation);
                    DilConv::with_indices(c, c, k, stride, pad, dil, norm, &vb, first)
                };
                // DARTS' module indices: the blocks' parameters at op.1.., then op.5...
                if conv.blocks == 2 {
                    Operation::SepConv(block(stride, 1)?, block(1, 5)?)
                } else {
                    Operation::DilConv(block(stride, 1)?)
                }
            }
        })
    }

    /// Applies the operation; `Zero` returns `None`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Option<Tensor>> {
        Ok(Some(match self {
            Operation::Zero => return Ok(None),
            Operation::MaxPool { stride } => max_pool3x3(x, *stride)?,
            Operation::AvgPool { stride } => avg_pool3x3(x, *stride)?,
            Operation::Identity => x.clone(),
            Operation::Reduce(fr) => fr.forward_t(x, train)?,
            Operation::SepConv(a, b) => b.forward_t(&a.forward_t(x, train)?, train)?,
            Operation::DilConv(d) => d.forward_t(x, train)?,
        }))
    }

    /// `acc + weight * forward_t(x)`, with the weighting fused into the op's last BatchNorm
    /// where it has one and `x`'s ReLU shared. `Zero` returns `acc` as it is.
    pub fn accumulate_t(
        &self,
        acc: Option<&Tensor>,
        x: &Activated,
        weight: &Tensor,
        train: bool,
    ) -> Result<Option<Tensor>> {
        Ok(Some(match self {
            Operation::Zero => return Ok(acc.cloned()),
            Operation::Reduce(fr) => fr.accumulate_t(acc, x, weight, train)?,
            Operation::SepConv(a, b) => {
                let first = Activated::new(a.forward_activated(x, train)?);
                b.accumulate_t(acc, &first, weight, train)?
            }
            Operation::DilConv(d) => d.accumulate_t(acc, x, weight, train)?,
            Operation::MaxPool { .. } | Operation::AvgPool { .. } | Operation::Identity => {
                let y = self.forward_t(x.input(), train)?.expect("not the zero op");
                accumulate_scaled(acc, &y, weight)?
            }
        }))
    }

    /// Whether the op is the plain identity (exempt from drop path).
    pub fn is_identity(&self) -> bool {
        matches!(self, Operation::Identity)
    }
}
