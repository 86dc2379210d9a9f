//! Lowering the discrete network of a model card to an ONNX graph, folding every BatchNorm
//! into the convolution before it on the way.
//!
//! The walk follows the network's [`hands_models::plan`] as `hands_models::nn::network` does (stem, cells with their preprocessing and
//! edge operations, global pooling, classifier) and reads the parameters by their module-tree
//! names, so the same walk yields the ONNX graph and the folded tensors of the inference
//! safetensors. Node names are `{module path}/{OpType}` (e.g. `cells.3.ops.1.op.2/Conv`),
//! initializers keep the parameter names (a folded convolution gains `{module}.bias`).
//!
//! Constant folding: each BN disappears into a convolution's weight and bias; identities
//! become no node; `none` edges are dropped; a ReLU of a value read by several edges is
//! computed once. The auxiliary head is not lowered.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Tensor};
use hands_models::genotype::{Genotype, EDGES_PER_NODE, NODES};
use hands_models::graph::{BATCH_DIM, INPUT_NAME, LOGITS_NAME, PROBABILITIES_NAME};
use hands_models::nn::layers::BN_EPS;
use hands_models::plan::{
    edge_scope, CellPlan, NetworkPlan, CLASSIFIER, PREPROCESS0, PREPROCESS1, STEM_BN, STEM_CONV,
};
use hands_models::seal::{Seal, SEAL_METADATA_KEY};
use hands_models::{ModelCard, Op};

use crate::fold::{fold_concat, fold_conv, BnAffine, FoldedConv};
use crate::onnx::{Attr, Dim, GraphBuilder, ModelProto};
use crate::{Error, Result};

/// Largest fixed batch of an exported graph. The parity check runs the network on one
/// batch of that size in candle (twice) and in ONNX Runtime, so memory grows with it: with
/// the shipped model (32x32 input, C = 12) a batch of 1024 peaks at 2.1 GB (0.9 GB with
/// `--skip-parity`), about 2 MB per image. Larger inputs or networks are further held to
/// [`crate::PARITY_MEMORY_BUDGET`], estimated from the card. For larger batches, export the
/// dynamic graph.
pub const MAX_BATCH: usize = 1024;

/// The batch dimension of the exported graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// Symbolic (`batch`): any batch size.
    Dynamic,
    /// A fixed batch size, 1 to [`MAX_BATCH`].
    Fixed(usize),
}

impl BatchSize {
    /// Refuses a fixed batch outside 1..=[`MAX_BATCH`].
    pub fn check(self) -> Result<BatchSize, String> {
        match self {
            BatchSize::Fixed(n) if !(1..=MAX_BATCH).contains(&n) => Err(format!(
                "batch must be `dynamic` or a positive integer up to {MAX_BATCH} (the parity \
                 check holds a whole batch in memory), got {n}"
            )),
            ok => Ok(ok),
        }
    }
}

impl std::str::FromStr for BatchSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "dynamic" {
            return Ok(BatchSize::Dynamic);
        }
        match s.parse::<usize>() {
            Ok(n) => BatchSize::Fixed(n).check(),
            Err(_) => Err(format!(
                "batch must be `dynamic` or a positive integer up to {MAX_BATCH}, got `{s}`"
            )),
        }
    }
}

/// Settings of the ONNX graph.
#[derive(Debug, Clone)]
pub struct OnnxOptions {
    /// Default-domain operator set version (17 or later).
    pub opset: i64,
    /// Batch dimension of input and outputs.
    pub batch: BatchSize,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        OnnxOptions {
            opset: DEFAULT_OPSET,
            batch: BatchSize::Dynamic,
        }
    }
}

/// The default operator set version.
pub const DEFAULT_OPSET: i64 = 17;
/// The operator set versions the exporter writes: every op it uses has kept its meaning
/// from 17 through 23.
pub const OPSETS: std::ops::RangeInclusive<i64> = 17..=23;

/// The result of lowering: the ONNX model and the folded inference tensors.
#[derive(Debug)]
pub struct Lowered {
    /// The ONNX model, with the card in its metadata.
    pub model: ModelProto,
    /// The inference network's tensors after folding: convolutions scaled by their BN, each
    /// BN turned into the identity plus the folded shift (`weight = 1`, `running_mean = 0`,
    /// `running_var = 1 - eps`, `bias = shift`), so the candle network loads them unchanged.
    pub folded: BTreeMap<String, Tensor>,
    /// Number of BatchNorm layers folded.
    pub folded_batch_norms: usize,
}

/// Lowers the network of `card` with parameters `tensors` (checked to fit, see
/// [`hands_models::nn::model_file::ModelFile`]) to ONNX; the card is stored under the card metadata key.
pub fn lower(
    card: &ModelCard,
    tensors: &HashMap<String, Tensor>,
    options: &OnnxOptions,
) -> Result<Lowered> {
    check_opset(options.opset)?;
    let mut l = Lowering {
        g: GraphBuilder::new("hands"),
        tensors,
        folded: tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        relu_of: HashMap::new(),
        shift: None,
        folded_batch_norms: 0,
    };
    let batch = match options.batch {
        BatchSize::Dynamic => Dim::Named(BATCH_DIM.to_string()),
        BatchSize::Fixed(n) => Dim::Fixed(n),
    };
    let size = card.input.size as usize;
    let image = l.g.input(
        INPUT_NAME,
        &[
            batch.clone(),
            Dim::Fixed(3),
            Dim::Fixed(size),
            Dim::Fixed(size),
        ],
    );

    // Stem: conv 3x3 at the plan's stride + BN.
    let genotype = &card.genotype;
    let network = &card.network;
    let plan = NetworkPlan::of_genotype(
        genotype,
        network.init_channels,
        network.layers,
        network.stem_stride,
    );
    let stem = l.conv_bn(STEM_CONV, STEM_BN, &image, plan.stem_stride, 1, 1, 1)?;

    // Cells (channel counts come from the tensors' shapes; the plan gives the rest).
    let (mut s0, mut s1) = (stem.clone(), stem);
    for cell in &plan.cells {
        let s2 = l.cell(genotype, cell, &s0, &s1)?;
        s0 = s1;
        s1 = s2;
    }

    l.head(card, &s1, batch)?;

    l.check_all_folded()?;
    let card_json = card.to_json();
    let seal = Seal::of_card(&card_json).finish();
    let model = crate::onnx::model(
        l.g.build(),
        options.opset,
        &[
            (hands_models::card::CARD_METADATA_KEY, card_json.as_str()),
            (SEAL_METADATA_KEY, seal.as_str()),
        ],
    );
    Ok(Lowered {
        model,
        folded: l.folded,
        folded_batch_norms: l.folded_batch_norms,
    })
}

/// Refuses an opset outside [`OPSETS`].
fn check_opset(opset: i64) -> Result<()> {
    if !OPSETS.contains(&opset) {
        return Err(Error::Model {
            path: Default::default(),
            reason: format!(
                "opset {} is not supported (supported: {}..={})",
                opset,
                OPSETS.start(),
                OPSETS.end()
            ),
        });
    }
    Ok(())
}

struct Lowering<'a> {
    g: GraphBuilder,
    tensors: &'a HashMap<String, Tensor>,
    folded: BTreeMap<String, Tensor>,
    /// ReLU output of each value that has one, so a ReLU is computed once.
    relu_of: HashMap<String, String>,
    /// The Slice constants of FactorizedReduce's one-pixel shift, created on first use.
    shift: Option<[String; 3]>,
    folded_batch_norms: usize,
}

impl Lowering<'_> {
    /// The head on the last cell's output `features`: global average pool, flatten,
    /// linear (the logits output), the calibration's temperature when there is one and
    /// softmax (the probabilities output), both `[batch, labels]`.
    fn head(&mut self, card: &ModelCard, features: &str, batch: Dim) -> Result<()> {
        let pooled = self
            .g
            .node("global_pooling", "GlobalAveragePool", &[features], &[]);
        let flat = self.g.node(
            "global_pooling",
            "Flatten",
            &[&pooled],
            &[("axis", Attr::Int(1))],
        );
        let w = self.init(&format!("{CLASSIFIER}.weight"))?;
        let b = self.init(&format!("{CLASSIFIER}.bias"))?;
        let logits = self.g.node_with_output(
            CLASSIFIER,
            "Gemm",
            &[&flat, &w, &b],
            &[("transB", Attr::Int(1))],
            Some(LOGITS_NAME),
        );
        // A calibrated model's probabilities are softmax(logits / T); its logits stay raw.
        let temperature = card.temperature();
        let scaled = if temperature == 1.0 {
            logits.clone()
        } else {
            let t = self
                .g
                .initializer_f32("calibration.temperature", &[], &[temperature as f32]);
            self.g.node("calibration", "Div", &[&logits, &t], &[])
        };
        let probs = self.g.node_with_output(
            PROBABILITIES_NAME,
            "Softmax",
            &[&scaled],
            &[("axis", Attr::Int(1))],
            Some(PROBABILITIES_NAME),
        );
        let out_dims = [batch, Dim::Fixed(card.labels.len())];
        self.g.output(&logits, &out_dims);
        self.g.output(&probs, &out_dims);
        Ok(())
    }

    /// Refuses a lowering that folded another number of BatchNorm layers than the network's
    /// tensors hold.
    fn check_all_folded(&self) -> Result<()> {
        let bn_count = self
            .tensors
            .keys()
            .filter(|k| k.ends_with(".running_mean"))
            .count();
        if self.folded_batch_norms != bn_count {
            return Err(Error::Model {
                path: Default::default(),
                reason: format!(
                    "folded {} BatchNorm layers but the network has {bn_count}",
                    self.folded_batch_norms
                ),
            });
        }
        Ok(())
    }

    fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| {
            Error::Models(hands_models::Error::MissingTensor {
                path: Default::default(),
                name: name.to_string(),
                expected: Vec::new(),
            })
        })
    }

    /// Adds a parameter, unchanged, as an initializer of the same name.
    fn init(&mut self, name: &str) -> Result<String> {
        let t = self.tensor(name)?.clone();
        self.init_tensor(name, &t)
    }

    fn init_tensor(&mut self, name: &str, t: &Tensor) -> Result<String> {
        let data = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(self.g.initializer_f32(name, t.dims(), &data))
    }

    fn relu(&mut self, scope: &str, x: &str) -> String {
        if let Some(r) = self.relu_of.get(x) {
            return r.clone();
        }
        let r = self.g.node(scope, "Relu", &[x], &[]);
        self.relu_of.insert(x.to_string(), r.clone());
        r
    }

    fn bn(&self, scope: &str) -> Result<BnAffine> {
        Ok(BnAffine {
            weight: Some(self.tensor(&format!("{scope}.weight"))?.clone()),
            bias: Some(self.tensor(&format!("{scope}.bias"))?.clone()),
            running_mean: self.tensor(&format!("{scope}.running_mean"))?.clone(),
            running_var: self.tensor(&format!("{scope}.running_var"))?.clone(),
            eps: BN_EPS,
        })
    }

    /// Records a folded BN as identity plus `shift` in the inference tensors.
    fn neutralise_bn(&mut self, scope: &str, shift: Tensor) -> Result<()> {
        let c = shift.dim(0)?;
        let dev = shift.device().clone();
        self.folded.insert(
            format!("{scope}.weight"),
            Tensor::ones(c, DType::F32, &dev)?,
        );
        self.folded.insert(format!("{scope}.bias"), shift);
        self.folded.insert(
            format!("{scope}.running_mean"),
            Tensor::zeros(c, DType::F32, &dev)?,
        );
        self.folded.insert(
            format!("{scope}.running_var"),
            Tensor::full((1.0 - BN_EPS) as f32, c, &dev)?,
        );
        self.folded_batch_norms += 1;
        Ok(())
    }

    /// A Conv node `{scope}/Conv` with initializers `{scope}.weight` (and `{scope}.bias`).
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        scope: &str,
        x: &str,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        pad: usize,
        dilation: usize,
        groups: usize,
    ) -> Result<String> {
        let (_, _, kh, kw) = weight.dims4()?;
        let w = self.init_tensor(&format!("{scope}.weight"), weight)?;
        let b = match bias {
            Some(b) => Some(self.init_tensor(&format!("{scope}.bias"), b)?),
            None => None,
        };
        let mut inputs = vec![x, w.as_str()];
        if let Some(b) = &b {
            inputs.push(b);
        }
        let (s, p, d) = (stride as i64, pad as i64, dilation as i64);
        Ok(self.g.node(
            scope,
            "Conv",
            &inputs,
            &[
                ("kernel_shape", Attr::Ints(vec![kh as i64, kw as i64])),
                ("strides", Attr::Ints(vec![s, s])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
                ("dilations", Attr::Ints(vec![d, d])),
                ("group", Attr::Int(groups as i64)),
            ],
        ))
    }

    /// A convolution at `conv` (weight `{conv}.weight`) followed by the BN at `bn`, folded.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &mut self,
        conv: &str,
        bn: &str,
        x: &str,
        stride: usize,
        pad: usize,
        dilation: usize,
        groups: usize,
    ) -> Result<String> {
        let weight_name = format!("{conv}.weight");
        let weight = self.tensor(&weight_name)?.clone();
        let FoldedConv { weight, bias } = fold_conv(&weight, None, &self.bn(bn)?)?;
        self.folded.insert(weight_name, weight.clone());
        self.neutralise_bn(bn, bias.clone())?;
        self.conv(conv, x, &weight, Some(&bias), stride, pad, dilation, groups)
    }

    /// A depthwise convolution (no bias) with weight `{scope}.weight` `[C, 1, k, k]`.
    fn depthwise(
        &mut self,
        scope: &str,
        x: &str,
        stride: usize,
        pad: usize,
        dilation: usize,
    ) -> Result<String> {
        let weight = self.tensor(&format!("{scope}.weight"))?.clone();
        let groups = weight.dim(0)?;
        self.conv(scope, x, &weight, None, stride, pad, dilation, groups)
    }

    /// ReLU, 1x1 conv, BN (`op.0`, `op.1`, `op.2`).
    fn relu_conv_bn(&mut self, scope: &str, x: &str) -> Result<String> {
        let r = self.relu(&format!("{scope}.op.0"), x);
        self.conv_bn(
            &format!("{scope}.op.1"),
            &format!("{scope}.op.2"),
            &r,
            1,
            0,
            1,
            1,
        )
    }

    /// ReLU, two 1x1 stride-2 convs (the second on the input shifted by one pixel),
    /// concat, BN — folded per channel into the two convs.
    fn factorized_reduce(&mut self, scope: &str, x: &str) -> Result<String> {
        let r = self.relu(scope, x);
        let (n1, n2) = (format!("{scope}.conv_1"), format!("{scope}.conv_2"));
        let w1 = self.tensor(&format!("{n1}.weight"))?.clone();
        let w2 = self.tensor(&format!("{n2}.weight"))?.clone();
        let bn_scope = format!("{scope}.bn");
        let parts = fold_concat(&[(&w1, None), (&w2, None)], &self.bn(&bn_scope)?)?;
        let shift = Tensor::cat(&[&parts[0].bias, &parts[1].bias], 0)?;
        self.folded
            .insert(format!("{n1}.weight"), parts[0].weight.clone());
        self.folded
            .insert(format!("{n2}.weight"), parts[1].weight.clone());
        self.neutralise_bn(&bn_scope, shift)?;

        let a = self.conv(&n1, &r, &parts[0].weight, Some(&parts[0].bias), 2, 0, 1, 1)?;
        let [starts, ends, axes] = self.shift_constants();
        let shifted = self
            .g
            .node(scope, "Slice", &[&r, &starts, &ends, &axes], &[]);
        let b = self.conv(
            &n2,
            &shifted,
            &parts[1].weight,
            Some(&parts[1].bias),
            2,
            0,
            1,
            1,
        )?;
        Ok(self
            .g
            .node(scope, "Concat", &[&a, &b], &[("axis", Attr::Int(1))]))
    }

    fn shift_constants(&mut self) -> [String; 3] {
        if let Some(s) = &self.shift {
            return s.clone();
        }
        let s = [
            self.g.initializer_i64("shift.starts", &[2], &[1, 1]),
            self.g
                .initializer_i64("shift.ends", &[2], &[i64::MAX, i64::MAX]),
            self.g.initializer_i64("shift.axes", &[2], &[2, 3]),
        ];
        self.shift = Some(s.clone());
        s
    }

    fn pool(&mut self, scope: &str, op_type: &str, x: &str, stride: usize) -> String {
        let s = stride as i64;
        let mut attrs = vec![
            ("kernel_shape", Attr::Ints(vec![3, 3])),
            ("strides", Attr::Ints(vec![s, s])),
            ("pads", Attr::Ints(vec![1, 1, 1, 1])),
        ];
        if op_type == "AveragePool" {
            attrs.push(("count_include_pad", Attr::Int(0)));
        }
        self.g.node(scope, op_type, &[x], &attrs)
    }

    /// One edge operation; `None` for the zero op.
    fn operation(&mut self, scope: &str, op: Op, x: &str, stride: usize) -> Result<Option<String>> {
        Ok(Some(match op {
            Op::None => return Ok(None),
            Op::MaxPool3x3 => self.pool(scope, "MaxPool", x, stride),
            Op::AvgPool3x3 => self.pool(scope, "AveragePool", x, stride),
            Op::SkipConnect if stride == 1 => x.to_string(),
            Op::SkipConnect => self.factorized_reduce(scope, x)?,
            Op::SepConv3x3 | Op::SepConv5x5 | Op::DilConv3x3 | Op::DilConv5x5 => {
                let conv = op.convolution().expect("a convolution op");
                let (pad, dil) = (conv.padding, conv.dilation);
                // DARTS' module indices: ReLU, depthwise, pointwise, BN per block.
                let mut h = x.to_string();
                for block in 0..conv.blocks {
                    let (first, stride) = (4 * block, if block == 0 { stride } else { 1 });
                    let r = self.relu(&format!("{scope}.op.{first}"), &h);
                    let name = format!("{scope}.op.{}", first + 1);
                    let d = self.depthwise(&name, &r, stride, pad, dil)?;
                    h = self.conv_bn(
                        &format!("{scope}.op.{}", first + 2),
                        &format!("{scope}.op.{}", first + 3),
                        &d,
                        1,
                        0,
                        1,
                        1,
                    )?;
                }
                h
            }
        }))
    }

    fn cell(&mut self, genotype: &Genotype, plan: &CellPlan, s0: &str, s1: &str) -> Result<String> {
        let scope = plan.scope();
        let p0 = if plan.reduction_prev {
            self.factorized_reduce(&format!("{scope}.{PREPROCESS0}"), s0)?
        } else {
            self.relu_conv_bn(&format!("{scope}.{PREPROCESS0}"), s0)?
        };
        let p1 = self.relu_conv_bn(&format!("{scope}.{PREPROCESS1}"), s1)?;
        let mut states = vec![p0, p1];
        let (edges, concat) = genotype.cell(plan.reduction);
        for (node, node_edges) in edges.chunks(EDGES_PER_NODE).enumerate().take(NODES) {
            let mut inputs = Vec::with_capacity(EDGES_PER_NODE);
            for (j, &(op, from)) in node_edges.iter().enumerate() {
                let k = node * EDGES_PER_NODE + j;
                let x = states[from].clone();
                let op_scope = format!("{scope}.{}", edge_scope(k));
                if let Some(h) = self.operation(&op_scope, op, &x, plan.stride(from))? {
                    inputs.push(h);
                }
            }
            let state_scope = format!("{scope}.states.{}", node + 2);
            let sum = match inputs.as_slice() {
                [] => {
                    return Err(Error::Model {
                        path: Default::default(),
                        reason: format!("{scope}: node {} has no input", node + 2),
                    })
                }
                [one] => one.clone(),
                [first, rest @ ..] => {
                    let mut acc = first.clone();
                    for h in rest {
                        acc = self.g.node(&state_scope, "Add", &[&acc, h], &[]);
                    }
                    acc
                }
            };
            states.push(sum);
        }
        let outs: Vec<&str> = concat.iter().map(|&s| states[s].as_str()).collect();
        Ok(if outs.len() == 1 {
            outs[0].to_string()
        } else {
            self.g
                .node(&scope, "Concat", &outs, &[("axis", Attr::Int(1))])
        })
    }
}
