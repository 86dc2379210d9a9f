//! The candidate operations of a DARTS cell edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// One candidate operation on a cell edge, in the order of DARTS' `PRIMITIVES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// The zero operation (no connection).
    None,
    /// 3x3 max pooling, padding 1.
    #[serde(rename = "max_pool_3x3")]
    MaxPool3x3,
    /// 3x3 average pooling, padding 1, padding excluded from the mean.
    #[serde(rename = "avg_pool_3x3")]
    AvgPool3x3,
    /// Identity, or FactorizedReduce on a strided edge.
    SkipConnect,
    /// Two stacked (ReLU, depthwise 3x3, pointwise, BN) blocks.
    #[serde(rename = "sep_conv_3x3")]
    SepConv3x3,
    /// Two stacked (ReLU, depthwise 5x5, pointwise, BN) blocks.
    #[serde(rename = "sep_conv_5x5")]
    SepConv5x5,
    /// ReLU, depthwise 3x3 with dilation 2, pointwise, BN.
    #[serde(rename = "dil_conv_3x3")]
    DilConv3x3,
    /// ReLU, depthwise 5x5 with dilation 2, pointwise, BN.
    #[serde(rename = "dil_conv_5x5")]
    DilConv5x5,
}

impl Op {
    /// All eight primitives in DARTS' order; the index is the column of the alpha matrix.
    pub const ALL: [Op; 8] = [
        Op::None,
        Op::MaxPool3x3,
        Op::AvgPool3x3,
        Op::SkipConnect,
        Op::SepConv3x3,
        Op::SepConv5x5,
        Op::DilConv3x3,
        Op::DilConv5x5,
    ];

    /// The name used by DARTS' code and by genotype files.
    pub fn name(self) -> &'static str {
        match self {
            Op::None => "none",
            Op::MaxPool3x3 => "max_pool_3x3",
            Op::AvgPool3x3 => "avg_pool_3x3",
            Op::SkipConnect => "skip_connect",
            Op::SepConv3x3 => "sep_conv_3x3",
            Op::SepConv5x5 => "sep_conv_5x5",
            Op::DilConv3x3 => "dil_conv_3x3",
            Op::DilConv5x5 => "dil_conv_5x5",
        }
    }

    /// The position of this op in [`Op::ALL`].
    pub fn index(self) -> usize {
        Op::ALL
            .iter()
            .position(|&op| op == self)
            .expect("op is in ALL")
    }

    /// Whether the op has learnable weights.
    pub fn is_parametric(self) -> bool {
        self.convolution().is_some()
    }

    /// The geometry of a convolution op (`None` for the parameter-free ones), the one
    /// definition that the discrete network, the search supernet and the ONNX lowering build
    /// from: `sep_conv_kxk` is two ReLU-depthwise-pointwise-BN blocks at dilation 1 with
    /// padding `k / 2`, `dil_conv_kxk` one block at dilation 2 with padding `k - 1` (the
    /// output keeps the input's size at stride 1, as in DARTS).
    pub fn convolution(self) -> Option<Convolution> {
        let (kernel, dilation, blocks) = match self {
            Op::SepConv3x3 => (3, 1, 2),
            Op::SepConv5x5 => (5, 1, 2),
            Op::DilConv3x3 => (3, 2, 1),
            Op::DilConv5x5 => (5, 2, 1),
            _ => return None,
        };
        Some(Convolution {
            kernel,
            padding: dilation * (kernel - 1) / 2,
            dilation,
            blocks,
        })
    }
}

/// The depthwise geometry of a convolution op, see [`Op::convolution`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Convolution {
    /// Side of the square depthwise kernel.
    pub kernel: usize,
    /// Zero padding on each side.
    pub padding: usize,
    /// Dilation of the depthwise kernel.
    pub dilation: usize,
    /// ReLU-depthwise-pointwise-BN blocks in a row (the first takes the edge's stride).
    pub blocks: usize,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Op::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| Error::UnknownOp {
                name: s.to_string(),
                known: Op::ALL.map(Op::name).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convolution_ops_keep_the_size_at_stride_one_and_others_have_none() {
        for op in Op::ALL {
            match op.convolution() {
                Some(c) => {
                    assert_eq!(2 * c.padding, c.dilation * (c.kernel - 1), "{op}");
                    assert!(op.name().contains(&format!("{0}x{0}", c.kernel)), "{op}");
                    let separable = op.name().starts_with("sep_conv");
                    assert_eq!(
                        (c.blocks, c.dilation),
                        if separable { (2, 1) } else { (1, 2) }
                    );
                }
                None => assert!(!op.is_parametric(), "{op}"),
            }
        }
    }

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for op in Op::ALL {
            assert_eq!(op.name().parse::<Op>().unwrap(), op);
            assert_eq!(Op::ALL[op.index()], op);
        }
        let err = "conv_7x1_1x7".parse::<Op>().unwrap_err().to_string();
        assert!(err.contains("conv_7x1_1x7"));
        // The message lists the operations from the enum itself, every one of them.
        for op in Op::ALL {
            assert!(err.contains(op.name()), "{err} lacks {op}");
        }
    }

    #[test]
    fn serde_uses_darts_names() {
        assert_eq!(
            serde_json::to_string(&Op::SepConv3x3).unwrap(),
            "\"sep_conv_3x3\""
        );
        let op: Op = serde_json::from_str("\"dil_conv_5x5\"").unwrap();
        assert_eq!(op, Op::DilConv5x5);
    }
}
