//! One training step of the discrete network against a reference written only with candle's
//! own tensor ops (grouped and dilated `conv2d`, reductions, `relu`, `maximum`, `cat`), so
//! that the custom CPU kernels and their hand-written backward passes cannot change the
//! mathematics unnoticed: the loss, the gradient of every trainable variable, the updated
//! BatchNorm running statistics, the evaluation logits and two SGD steps of `train_step`.
//!
//! The reference reads the network's own variables by name from the `VarMap`, in f64, with
//! drop path off.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use hands_models::nn::network::{DropPath, Network, NetworkConfig};
use hands_models::{Genotype, Op};
use hands_train::optim::trainable_vars;
use hands_train::optim::{Sgd, SgdConfig};
use hands_train::step::{train_step, StepConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Result<T> = candle_core::Result<T>;

/// PyTorch's BatchNorm epsilon and running-statistics momentum.
const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;
/// DARTS' weight of the auxiliary loss.
const AUX_WEIGHT: f64 = 0.4;
/// Largest difference allowed, relative to the reference's own largest magnitude. The two
/// sides only sum in different orders: measured at most 1.1e-14 for the gradients.
const TOL: f64 = 1e-10;

const BATCH: usize = 4;
const SIZE: usize = 16;
const LABELS: [u32; BATCH] = [0, 1, 1, 0];

fn config() -> NetworkConfig {
    NetworkConfig {
        init_channels: 4,
        layers: 3,
        stem_stride: 1,
        num_classes: 2,
        auxiliary: true,
    }
}

/// Every op at stride 1 in the normal cell, every op at stride 2 in the reduction cell (all
/// its edges read the cell's inputs, so `skip_connect` is a FactorizedReduce there).
fn genotype_every_op_both_strides() -> Genotype {
    use Op::*;
    Genotype {
        normal: vec![
            (SepConv3x3, 0),
            (SepConv5x5, 1),
            (DilConv3x3, 0),
            (DilConv5x5, 2),
            (MaxPool3x3, 1),
            (AvgPool3x3, 3),
            (SkipConnect, 2),
            (SepConv3x3, 4),
        ],
        normal_concat: vec![2, 3, 4, 5],
        reduce: vec![
            (SepConv3x3, 0),
            (SepConv5x5, 1),
            (DilConv3x3, 0),
            (DilConv5x5, 1),
            (MaxPool3x3, 0),
            (AvgPool3x3, 1),
            (SkipConnect, 0),
            (SkipConnect, 1),
        ],
        reduce_concat: vec![2, 3, 4, 5],
    }
}

/// Stride-1 ops (identity included) inside a reduction cell, edges into nodes from earlier
/// nodes, and concatenations of three nodes.
fn genotype_mixed_strides_partial_concat() -> Genotype {
    use Op::*;
    Genotype {
        normal: vec![
            (SkipConnect, 0),
            (AvgPool3x3, 1),
            (MaxPool3x3, 2),
            (DilConv5x5, 0),
            (SepConv5x5, 3),
            (SkipConnect, 1),
            (DilConv3x3, 4),
            (SepConv3x3, 2),
        ],
        normal_concat: vec![3, 4, 5],
        reduce: vec![
            (SepConv5x5, 1),
            (MaxPool3x3, 0),
            (SkipConnect, 2),
            (DilConv3x3, 1),
            (AvgPool3x3, 3),
            (SepConv3x3, 2),
            (MaxPool3x3, 4),
            (DilConv5x5, 0),
        ],
        reduce_concat: vec![5, 3, 4],
    }
}

// ---------------------------------------------------------------------------------------
// The reference network.
// ---------------------------------------------------------------------------------------

/// BatchNorm statistics of one training forward pass: batch mean, biased variance, count.
type BatchStats = BTreeMap<String, (Tensor, Tensor, usize)>;

/// The network's forward pass from candle ops over the variables of a `VarMap`.
struct Reference<'a> {
    genotype: &'a Genotype,
    config: NetworkConfig,
    params: BTreeMap<String, Tensor>,
    /// Running statistics (mean, var) by BatchNorm name: evaluation mode when set.
    running: Option<BTreeMap<String, (Tensor, Tensor)>>,
    /// Batch statistics recorded in training mode.
    batch_stats: RefCell<BatchStats>,
    /// Names of the variables read.
    used: RefCell<BTreeSet<String>>,
}

/// What a reference forward pass returns.
struct RefOutput {
    logits: Tensor,
    aux_logits: Option<Tensor>,
}

impl<'a> Reference<'a> {
    fn new(
        genotype: &'a Genotype,
        config: &NetworkConfig,
        varmap: &VarMap,
        running: Option<BTreeMap<String, (Tensor, Tensor)>>,
    ) -> Self {
        Reference {
            genotype,
            config: config.clone(),
            params: hands_tests::named_tensors(varmap),
            running,
            batch_stats: RefCell::new(BTreeMap::new()),
            used: RefCell::new(BTreeSet::new()),
        }
    }

    fn p(&self, name: &str) -> Tensor {
        self.used.borrow_mut().insert(name.to_string());
        match self.params.get(name) {
            Some(t) => t.clone(),
            None => panic!("the network has no variable {name}"),
        }
    }

    /// BatchNorm: batch statistics (biased variance) in training, running ones in evaluation.
    fn bn(&self, x: &Tensor, prefix: &str) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (gamma, beta) = (
            self.p(&format!("{prefix}.weight")),
            self.p(&format!("{prefix}.bias")),
        );
        self.p(&format!("{prefix}.running_mean"));
        self.p(&format!("{prefix}.running_var"));
        let (mean, var) = match &self.running {
            Some(running) => running[prefix].clone(),
            None => {
                let flat = x.transpose(0, 1)?.reshape((c, n * h * w))?;
                let mean = flat.mean(1)?;
                let var = flat.broadcast_sub(&mean.unsqueeze(1)?)?.sqr()?.mean(1)?;
                let previous = self
                    .batch_stats
                    .borrow_mut()
                    .insert(prefix.to_string(), (mean.detach(), var.detach(), n * h * w));
                assert!(previous.is_none(), "BatchNorm {prefix} applied twice");
                (mean, var)
            }
        };
        let shape = (1, c, 1, 1);
        x.broadcast_sub(&mean.reshape(shape)?)?
            .broadcast_div(&(var + BN_EPS)?.sqrt()?.reshape(shape)?)?
            .broadcast_mul(&gamma.reshape(shape)?)?
            .broadcast_add(&beta.reshape(shape)?)
    }

    /// ReLU, 1x1 convolution, BatchNorm.
    fn relu_conv_bn(&self, x: &Tensor, prefix: &str) -> Result<Tensor> {
        let y = x
            .relu()?
            .conv2d(&self.p(&format!("{prefix}.op.1.weight")), 0, 1, 1, 1)?;
        self.bn(&y, &format!("{prefix}.op.2"))
    }

    /// ReLU, two 1x1 stride-2 convolutions (the second on `x[:, :, 1:, 1:]`), concatenated,
    /// BatchNorm.
    fn factorized_reduce(&self, x: &Tensor, prefix: &str) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let r = x.relu()?;
        let a = r.conv2d(&self.p(&format!("{prefix}.conv_1.weight")), 0, 2, 1, 1)?;
        let shifted = r.narrow(2, 1, h - 1)?.narrow(3, 1, w - 1)?;
        let b = shifted.conv2d(&self.p(&format!("{prefix}.conv_2.weight")), 0, 2, 1, 1)?;
        self.bn(&Tensor::cat(&[&a, &b], 1)?, &format!("{prefix}.bn"))
    }

    /// ReLU, depthwise kxk convolution (grouped `conv2d`), 1x1 convolution, BatchNorm, with
    /// parameters at `op.{first}`, `op.{first + 1}`, `op.{first + 2}`.
    fn dil_block(
        &self,
        x: &Tensor,
        prefix: &str,
        first: usize,
        (stride, pad, dilation): (usize, usize, usize),
    ) -> Result<Tensor> {
        let c = x.dim(1)?;
        let depthwise = self.p(&format!("{prefix}.op.{first}.weight"));
        let pointwise = self.p(&format!("{prefix}.op.{}.weight", first + 1));
        let y = x
            .relu()?
            .conv2d(&depthwise, pad, stride, dilation, c)?
            .conv2d(&pointwise, 0, 1, 1, 1)?;
        self.bn(&y, &format!("{prefix}.op.{}", first + 2))
    }

    fn op(&self, op: Op, x: &Tensor, stride: usize, prefix: &str) -> Result<Tensor> {
        match op {
            Op::None => panic!("`none` is not a genotype op"),
            Op::MaxPool3x3 => max_pool3x3(x, stride),
            Op::AvgPool3x3 => avg_pool3x3(x, stride),
            Op::SkipConnect if stride == 1 => Ok(x.clone()),
            Op::SkipConnect => self.factorized_reduce(x, prefix),
            Op::SepConv3x3 | Op::SepConv5x5 => {
                let k = if op == Op::SepConv3x3 { 3 } else { 5 };
                let h = self.dil_block(x, prefix, 1, (stride, k / 2, 1))?;
                self.dil_block(&h, prefix, 5, (1, k / 2, 1))
            }
            Op::DilConv3x3 | Op::DilConv5x5 => {
                let k = if op == Op::DilConv3x3 { 3 } else { 5 };
                self.dil_block(x, prefix, 1, (stride, k - 1, 2))
            }
        }
    }

    fn cell(
        &self,
        i: usize,
        s0: &Tensor,
        s1: &Tensor,
        reduction: bool,
        reduction_prev: bool,
    ) -> Result<Tensor> {
        let prefix = format!("cells.{i}");
        let s0 = if reduction_prev {
            self.factorized_reduce(s0, &format!("{prefix}.preprocess0"))?
        } else {
            self.relu_conv_bn(s0, &format!("{prefix}.preprocess0"))?
        };
        let s1 = self.relu_conv_bn(s1, &format!("{prefix}.preprocess1"))?;
        let (edges, concat) = if reduction {
            (&self.genotype.reduce, &self.genotype.reduce_concat)
        } else {
            (&self.genotype.normal, &self.genotype.normal_concat)
        };
        let mut states = vec![s0, s1];
        for node in 0..4 {
            let mut sum: Option<Tensor> = None;
            for k in [2 * node, 2 * node + 1] {
                let (op, from) = edges[k];
                let stride = if reduction && from < 2 { 2 } else { 1 };
                let h = self.op(op, &states[from], stride, &format!("{prefix}.ops.{k}"))?;
                sum = Some(match sum {
                    None => h,
                    Some(s) => (s + h)?,
                });
            }
            states.push(sum.unwrap());
        }
        let outputs: Vec<&Tensor> = concat.iter().map(|&s| &states[s]).collect();
        Tensor::cat(&outputs, 1)
    }

    /// The auxiliary head: ReLU, 1x1 conv to 128, BN, ReLU, global average pool, linear.
    fn auxiliary(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.relu_conv_bn(x, "auxiliary.conv")?.relu()?;
        self.linear(&global_avg_pool(&h)?, "auxiliary.linear")
    }

    fn linear(&self, x: &Tensor, prefix: &str) -> Result<Tensor> {
        x.matmul(&self.p(&format!("{prefix}.weight")).t()?)?
            .broadcast_add(&self.p(&format!("{prefix}.bias")))
    }

    fn forward(&self, images: &Tensor) -> Result<RefOutput> {
        let layers = self.config.layers;
        let reductions = [layers / 3, 2 * layers / 3];
        let stem = images.conv2d(&self.p("stem.0.weight"), 1, 1, 1, 1)?;
        let stem = self.bn(&stem, "stem.1")?;
        let (mut s0, mut s1) = (stem.clone(), stem);
        let mut aux_logits = None;
        for i in 0..layers {
            let reduction = reductions.contains(&i);
            let reduction_prev = i > 0 && reductions.contains(&(i - 1));
            let s2 = self.cell(i, &s0, &s1, reduction, reduction_prev)?;
            s0 = s1;
            s1 = s2;
            if self.config.auxiliary && self.running.is_none() && i == reductions[1] {
                aux_logits = Some(self.auxiliary(&s1)?);
            }
        }
        let logits = self.linear(&global_avg_pool(&s1)?, "classifier")?;
        Ok(RefOutput { logits, aux_logits })
    }
}

/// 3x3 max pooling, padding 1 with -inf (as PyTorch), from nine shifted views.
fn max_pool3x3(x: &Tensor, stride: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let rows = Tensor::full(f64::NEG_INFINITY, (b, c, 1, w), x.device())?;
    let padded = Tensor::cat(&[&rows, x, &rows], 2)?;
    let cols = Tensor::full(f64::NEG_INFINITY, (b, c, h + 2, 1), x.device())?;
    let padded = Tensor::cat(&[&cols, &padded, &cols], 3)?;
    let mut out = padded.narrow(2, 0, h)?.narrow(3, 0, w)?;
    for dy in 0..3 {
        for dx in 0..3 {
            out = out.maximum(&padded.narrow(2, dy, h)?.narrow(3, dx, w)?)?;
        }
    }
    if stride == 1 {
        return Ok(out);
    }
    // A stride-2 window is centred on every second position.
    let rows = Tensor::from_vec(
        (0..h as u32).step_by(2).collect::<Vec<_>>(),
        h.div_ceil(2),
        x.device(),
    )?;
    let cols = Tensor::from_vec(
        (0..w as u32).step_by(2).collect::<Vec<_>>(),
        w.div_ceil(2),
        x.device(),
    )?;
    out.index_select(&rows, 2)?.index_select(&cols, 3)
}

/// 3x3 average pooling, padding 1 excluded from the count (`count_include_pad=False`): a
/// grouped convolution with a ones kernel divided by the number of in-bounds positions.
fn avg_pool3x3(x: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let ones = Tensor::ones((c, 1, 3, 3), x.dtype(), x.device())?;
    let sums = x.conv2d(&ones, 1, stride, 1, c)?;
    let counts = Tensor::ones((1, 1, h, w), x.dtype(), x.device())?.conv2d(
        &Tensor::ones((1, 1, 3, 3), x.dtype(), x.device())?,
        1,
        stride,
        1,
        1,
    )?;
    sums.broadcast_div(&counts)
}

fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    x.reshape((b, c, h * w))?.mean(2)
}

/// Mean cross-entropy of `logits` `[B, K]` against `labels`, from a stable log-sum-exp and a
/// one-hot mask.
fn reference_cross_entropy(logits: &Tensor, labels: &[u32]) -> Result<Tensor> {
    let (b, k) = logits.dims2()?;
    let max = logits.max_keepdim(1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_p = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(1)?.log()?)?;
    let one_hot: Vec<f64> = labels
        .iter()
        .flat_map(|&l| (0..k).map(move |j| if j == l as usize { 1.0 } else { 0.0 }))
        .collect();
    let one_hot = Tensor::from_vec(one_hot, (b, k), logits.device())?;
    (log_p * one_hot)?.sum_all()?.neg()? / b as f64
}

/// The reference step's loss parts, gradients and BatchNorm batch statistics at the
/// varmap's current values.
struct RefStep {
    main_loss: f64,
    total_loss: f64,
    logits: Tensor,
    grads: GradStore,
    batch_stats: BatchStats,
}

fn reference_step(genotype: &Genotype, varmap: &VarMap, images: &Tensor) -> RefStep {
    let reference = Reference::new(genotype, &config(), varmap, None);
    let out = reference.forward(images).unwrap();
    let main = reference_cross_entropy(&out.logits, &LABELS).unwrap();
    let aux = reference_cross_entropy(&out.aux_logits.expect("auxiliary head"), &LABELS).unwrap();
    let loss = (&main + (aux * AUX_WEIGHT).unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    let unused: Vec<String> = varmap
        .data()
        .lock()
        .unwrap()
        .keys()
        .filter(|name| !reference.used.borrow().contains(*name))
        .cloned()
        .collect();
    assert!(
        unused.is_empty(),
        "the network has variables the reference never reads: {unused:?}"
    );
    RefStep {
        main_loss: main.to_scalar().unwrap(),
        total_loss: loss.to_scalar().unwrap(),
        logits: out.logits.detach(),
        grads,
        batch_stats: reference.batch_stats.into_inner(),
    }
}

// ---------------------------------------------------------------------------------------
// Set-up and comparisons.
// ---------------------------------------------------------------------------------------

fn is_running_stat(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// The named variables, sorted by name.
fn variables(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap();
    let mut vars: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// The seeded network, with every BatchNorm affine parameter, bias and running statistic
/// moved off its constant initial value (so that a forward pass that ignored one would
/// show), and a batch of images.
fn setup(genotype: &Genotype, seed: u64) -> (Network, VarMap, Tensor) {
    let (network, varmap) =
        Network::seeded(genotype, &config(), seed, DType::F64, &Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    for (name, var) in variables(&varmap) {
        if var.rank() != 1 {
            continue;
        }
        let n = var.elem_count();
        let values: Vec<f64> = (0..n)
            .map(|_| {
                if name.ends_with(".weight") || name.ends_with(".running_var") {
                    rng.random_range(0.5..1.5)
                } else {
                    rng.random_range(-0.5..0.5)
                }
            })
            .collect();
        var.set(&Tensor::from_vec(values, n, &Device::Cpu).unwrap())
            .unwrap();
    }
    let values: Vec<f64> = (0..BATCH * 3 * SIZE * SIZE)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let images = Tensor::from_vec(values, (BATCH, 3, SIZE, SIZE), &Device::Cpu).unwrap();
    (network, varmap, images)
}

fn labels() -> Tensor {
    Tensor::new(&LABELS, &Device::Cpu).unwrap()
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Asserts `got` equals `want` within [`TOL`] relative to `max |want|` (every tensor
/// compared here has entries far from zero).
fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes differ");
    let diff = max_abs(&(got - want).unwrap());
    let scale = max_abs(want);
    assert!(
        diff <= TOL * scale,
        "{what}: max |difference| {diff:e} exceeds {TOL:e} x max |reference| {scale:e}"
    );
}

fn assert_close_scalar(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= TOL * want.abs(),
        "{what}: got {got}, reference {want}"
    );
}

/// Copies of the running statistics (the network updates them in place), by BatchNorm name.
fn running_stats(varmap: &VarMap) -> BTreeMap<String, (Tensor, Tensor)> {
    let data = varmap.data().lock().unwrap();
    data.keys()
        .filter_map(|name| name.strip_suffix(".running_mean"))
        .map(|bn| {
            let copy = |stat: &str| data[&format!("{bn}.{stat}")].as_tensor().copy().unwrap();
            (bn.to_string(), (copy("running_mean"), copy("running_var")))
        })
        .collect()
}

/// Every op kind except `none` appears in the genotypes tested.
#[test]
fn genotypes_cover_every_op() {
    let used: BTreeSet<Op> = [
        genotype_every_op_both_strides(),
        genotype_mixed_strides_partial_concat(),
    ]
    .iter()
    .flat_map(|g| {
        g.normal
            .iter()
            .chain(&g.reduce)
            .map(|&(op, _)| op)
            .collect::<Vec<_>>()
    })
    .collect();
    let want: BTreeSet<Op> = Op::ALL.into_iter().filter(|&op| op != Op::None).collect();
    assert_eq!(used, want);
}

/// The channel schedule the reference assumes: C doubles at the reductions (cells 1 and 2),
/// a cell outputs `concat.len() * C`, preprocess0 reads the cell before the previous one.
fn check_channel_schedule(genotype: &Genotype, varmap: &VarMap) {
    let data = varmap.data().lock().unwrap();
    let dims = |name: &str| data[name].dims().to_vec();
    let c = config().init_channels;
    assert_eq!(dims("stem.0.weight"), [3 * c, 3, 3, 3]);
    let (mut c_pp, mut c_p, mut c_cur) = (3 * c, 3 * c, c);
    for (i, reduction) in [(0, false), (1, true), (2, true)] {
        if reduction {
            c_cur *= 2;
        }
        let pre0 = if i == 2 {
            "preprocess0.conv_1.weight"
        } else {
            "preprocess0.op.1.weight"
        };
        let half = if i == 2 { c_cur / 2 } else { c_cur };
        assert_eq!(
            dims(&format!("cells.{i}.{pre0}")),
            [half, c_pp, 1, 1],
            "cell {i}"
        );
        assert_eq!(
            dims(&format!("cells.{i}.preprocess1.op.1.weight")),
            [c_cur, c_p, 1, 1]
        );
        let concat = if reduction {
            &genotype.reduce_concat
        } else {
            &genotype.normal_concat
        };
        (c_pp, c_p) = (c_p, concat.len() * c_cur);
    }
    assert_eq!(dims("auxiliary.conv.op.1.weight"), [128, c_p, 1, 1]);
    assert_eq!(dims("auxiliary.linear.weight"), [2, 128]);
    assert_eq!(dims("classifier.weight"), [2, c_p]);
}

/// Loss, gradients, running statistics and evaluation logits of one training forward pass.
fn check_training_forward(genotype: &Genotype, seed: u64) {
    let (network, varmap, images) = setup(genotype, seed);
    check_channel_schedule(genotype, &varmap);
    let initial_running = running_stats(&varmap);

    let out = network
        .forward_t(&images, true, None::<DropPath<'_, ChaCha8Rng>>)
        .unwrap();
    let main = hands_train::step::cross_entropy(&out.logits, &labels(), 0.0, None).unwrap();
    let aux =
        hands_train::step::cross_entropy(&out.aux_logits.unwrap(), &labels(), 0.0, None).unwrap();
    let loss = (&main + (aux * AUX_WEIGHT).unwrap()).unwrap();
    let grads = loss.backward().unwrap();

    let reference = reference_step(genotype, &varmap, &images);
    assert_close_scalar(main.to_scalar().unwrap(), reference.main_loss, "main loss");
    assert_close_scalar(
        loss.to_scalar().unwrap(),
        reference.total_loss,
        "total loss",
    );
    assert_close(&out.logits, &reference.logits, "training logits");

    let mut compared = 0;
    for (name, var) in variables(&varmap) {
        if is_running_stat(&name) {
            continue;
        }
        let want = reference
            .grads
            .get(&var)
            .unwrap_or_else(|| panic!("{name}: no reference gradient"));
        let got = grads
            .get(&var)
            .unwrap_or_else(|| panic!("{name}: the network gives it no gradient"));
        assert_close(got, want, &format!("gradient of {name}"));
        compared += 1;
    }
    assert_eq!(compared, trainable_vars(&varmap).len());

    // Running statistics: momentum 0.1 towards the batch mean and the unbiased variance.
    let updated = running_stats(&varmap);
    assert_eq!(
        updated.keys().collect::<Vec<_>>(),
        reference.batch_stats.keys().collect::<Vec<_>>(),
        "BatchNorms of the network and of the reference"
    );
    let mut expected = BTreeMap::new();
    for (bn, (mean, var, count)) in &reference.batch_stats {
        let (mean0, var0) = &initial_running[bn];
        let unbiased = (var * (*count as f64 / (*count as f64 - 1.0))).unwrap();
        let want_mean =
            ((mean0 * (1.0 - BN_MOMENTUM)).unwrap() + (mean * BN_MOMENTUM).unwrap()).unwrap();
        let want_var =
            ((var0 * (1.0 - BN_MOMENTUM)).unwrap() + (unbiased * BN_MOMENTUM).unwrap()).unwrap();
        assert_close(&updated[bn].0, &want_mean, &format!("{bn}.running_mean"));
        assert_close(&updated[bn].1, &want_var, &format!("{bn}.running_var"));
        expected.insert(bn.clone(), (want_mean, want_var));
    }

    // Evaluation: running statistics, no auxiliary head, and the statistics stay as they are.
    let eval = Reference::new(genotype, &config(), &varmap, Some(expected));
    let want = eval.forward(&images).unwrap();
    assert!(want.aux_logits.is_none());
    let eval_out = network
        .forward_t(&images, false, None::<DropPath<'_, ChaCha8Rng>>)
        .unwrap();
    assert!(
        eval_out.aux_logits.is_none(),
        "auxiliary logits in evaluation"
    );
    assert_close(&eval_out.logits, &want.logits, "evaluation logits");
    assert_close(
        &network.logits(&images).unwrap(),
        &want.logits,
        "Network::logits",
    );
    for (bn, (mean, var)) in running_stats(&varmap) {
        assert_close(
            &mean,
            &updated[&bn].0,
            &format!("{bn}.running_mean after evaluation"),
        );
        assert_close(
            &var,
            &updated[&bn].1,
            &format!("{bn}.running_var after evaluation"),
        );
    }
}

#[test]
fn training_forward_matches_reference_every_op_at_both_strides() {
    check_training_forward(&genotype_every_op_both_strides(), 7);
}

#[test]
fn training_forward_matches_reference_mixed_strides_partial_concat() {
    check_training_forward(&genotype_mixed_strides_partial_concat(), 11);
}

/// Two `train_step`s (the first with a binding gradient clip, the second without) against
/// `torch.optim.SGD` and `clip_grad_norm_` applied to the reference gradients.
#[test]
fn train_steps_match_reference_sgd() {
    let genotype = genotype_every_op_both_strides();
    let (network, varmap, images) = setup(&genotype, 3);
    let sgd_config = SgdConfig {
        lr: 0.025,
        momentum: 0.9,
        weight_decay: 3e-4,
    };
    let mut sgd = Sgd::new(trainable_vars(&varmap), sgd_config).unwrap();
    let trainable: Vec<(String, Var)> = variables(&varmap)
        .into_iter()
        .filter(|(name, _)| !is_running_stat(name))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut buffers: Vec<Option<Tensor>> = vec![None; trainable.len()];
    for (step, clip_fraction) in [(1, 0.5), (2, 1e6)] {
        let reference = reference_step(&genotype, &varmap, &images);
        let norm = trainable
            .iter()
            .map(|(_, var)| {
                let g = reference.grads.get(var).unwrap();
                g.sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            })
            .sum::<f64>()
            .sqrt();
        let grad_clip = clip_fraction * norm;
        let coef = (grad_clip / (norm + 1e-6)).min(1.0);
        assert_eq!(
            coef < 1.0,
            step == 1,
            "the clip binds in the first step only"
        );
        let before: Vec<Tensor> = trainable
            .iter()
            .map(|(_, var)| var.as_tensor().copy().unwrap())
            .collect();

        let config = StepConfig {
            class_weights: None,
            auxiliary_weight: AUX_WEIGHT,
            label_smoothing: 0.0,
            grad_clip,
            drop_prob: 0.0,
            mixup: 0.0,
        };
        let outcome = train_step(
            &network,
            &mut sgd,
            &images,
            &labels(),
            None,
            &config,
            &mut rng,
        )
        .unwrap();
        assert_close_scalar(
            outcome.main_loss,
            reference.main_loss,
            &format!("step {step} main loss"),
        );
        assert_close_scalar(
            outcome.total_loss,
            reference.total_loss,
            &format!("step {step} total loss"),
        );
        assert_close_scalar(
            outcome.grad_norm,
            norm,
            &format!("step {step} gradient norm"),
        );
        assert_close(
            &outcome.logits,
            &reference.logits,
            &format!("step {step} logits"),
        );

        for (((name, var), p), buffer) in trainable.iter().zip(&before).zip(buffers.iter_mut()) {
            let g = (reference.grads.get(var).unwrap() * coef).unwrap();
            let d = (g + (p * sgd_config.weight_decay).unwrap()).unwrap();
            let next = match buffer.take() {
                None => d,
                Some(b) => ((b * sgd_config.momentum).unwrap() + d).unwrap(),
            };
            // The update itself, which is small beside the weights.
            let want = (&next * -sgd_config.lr).unwrap();
            *buffer = Some(next);
            let got = (var.as_tensor() - p).unwrap();
            assert_close(&got, &want, &format!("step {step}: update of {name}"));
        }
    }
}
