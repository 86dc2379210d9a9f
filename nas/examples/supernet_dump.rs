//! Writes one supernet's exact numbers for `scripts/check-against-pytorch`: its weights and
//! architecture parameters, an input batch, the logits and loss of a forward pass in training
//! mode, the gradients of every weight and architecture parameter, the loss and architecture
//! gradients under P-DARTS' skip dropout with the masks drawn, Beta-Decay's gradient, the
//! weights and momentum buffers after three SGD steps (momentum, weight decay, the gradient
//! clip), and the unrolled second-order architecture gradient at those weights with those
//! buffers; all in f64, as one safetensors file.
//!
//! ```text
//! cargo run -p hands-nas --features cli --example supernet_dump -- --algo darts|pcdarts --out FILE
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use hands_nas::architect::{
    add_beta_decay, evaluate, loss_and_grads, second_order, LabelledBatch, Unrolling,
};
use hands_nas::supernet::{Memory, SkipDropout, Supernet, SupernetConfig};
use hands_train::optim::{clip_grad_norm, Sgd, SgdConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Parser)]
struct Args {
    /// darts (K = 1) or pcdarts (K = 4, edge normalisation).
    #[arg(long, default_value = "darts")]
    algo: String,
    /// Overrides the algorithm's channel sampling factor K.
    #[arg(long)]
    partial_k: Option<usize>,
    /// Overrides the algorithm's edge normalisation.
    #[arg(long)]
    edge_norm: Option<bool>,
    /// Channels of the first cell.
    #[arg(long, default_value_t = 8)]
    init_channels: usize,
    /// Cells.
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// Side of the input images.
    #[arg(long, default_value_t = 8)]
    size: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Seed of the weights, the architecture parameters and the batches.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// What the steps keep for their backward passes (the gradients must agree either way).
    #[arg(long, value_enum, default_value_t = Memory::Fast)]
    memory: Memory,
    /// The safetensors file to write.
    #[arg(long)]
    out: PathBuf,
}

/// Virtual step size, momentum and weight decay of the second-order gradient.
/// P-DARTS' skip-connect dropout rate for the dropout rows (its first stage's).
const SKIP_DROPOUT: f64 = 0.3;

/// Weight steps taken before the unrolled step, to fill the momentum buffers.
const WEIGHT_STEPS: usize = 3;
/// The weight step's gradient clip (DARTS: 5).
const GRAD_CLIP: f64 = 5.0;

const UNROLLING: Unrolling = Unrolling {
    xi: 0.025,
    momentum: 0.9,
    weight_decay: 3e-4,
    r_scale: 0.01,
};

fn batch(rng: &mut ChaCha8Rng, args: &Args) -> Result<(Tensor, Tensor)> {
    let n = args.batch * 3 * args.size * args.size;
    let x: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let y: Vec<u32> = (0..args.batch).map(|i| (i % 2) as u32).collect();
    let d = Device::Cpu;
    Ok((
        Tensor::from_vec(x, (args.batch, 3, args.size, args.size), &d)?,
        Tensor::from_vec(y, args.batch, &d)?,
    ))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let pcdarts = match args.algo.as_str() {
        "darts" => false,
        "pcdarts" => true,
        other => anyhow::bail!("--algo {other}: darts or pcdarts"),
    };
    let config = SupernetConfig {
        init_channels: args.init_channels,
        layers: args.layers,
        stem_stride: 1,
        num_classes: 2,
        partial_k: args.partial_k.unwrap_or(if pcdarts { 4 } else { 1 }),
        edge_norm: args.edge_norm.unwrap_or(pcdarts),
        normal_candidates: SupernetConfig::full_candidates(),
        reduce_candidates: SupernetConfig::full_candidates(),
    };
    let net = Supernet::new(&config, args.seed, DType::F64, &Device::Cpu)?.with_memory(args.memory);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed + 1);
    // Architecture parameters away from the near-uniform initialisation, so that a wrong
    // weighting shows.
    for (_, a) in net.arch_vars() {
        let values: Vec<f64> = (0..a.elem_count())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        a.set(&Tensor::from_vec(values, a.dims(), &Device::Cpu)?)?;
    }
    let (x_train, y_train) = batch(&mut rng, &args)?;
    let (x_val, y_val) = batch(&mut rng, &args)?;
    let train = LabelledBatch {
        images: &x_train,
        labels: &y_train,
    };
    let val = LabelledBatch {
        images: &x_val,
        labels: &y_val,
    };

    let mut out: Vec<(String, Tensor)> = Vec::new();
    let weights = net.weight_vars();
    for (name, var) in &weights {
        out.push((format!("weight/{name}"), var.as_tensor().copy()?));
    }
    for (name, var) in net.arch_vars() {
        out.push((format!("arch/{name}"), var.as_tensor().copy()?));
    }
    out.push(("input/train".into(), x_train.clone()));
    out.push(("input/train_labels".into(), y_train.to_dtype(DType::F64)?));
    out.push(("input/val".into(), x_val.clone()));
    out.push(("input/val_labels".into(), y_val.to_dtype(DType::F64)?));

    // Forward and backward on the training batch.
    let logits = net.forward(&x_train, None)?;
    out.push(("output/logits".into(), logits));
    let graded = loss_and_grads(&net, train, None, "training batch")?;
    out.push((
        "output/loss".into(),
        Tensor::new(&[graded.loss], &Device::Cpu)?,
    ));
    let grads = &graded.grads;
    for (name, var) in weights.iter().chain(&net.arch_vars()) {
        let grad = grads
            .get(var.as_tensor())
            .with_context(|| format!("no gradient for {name}"))?;
        out.push((format!("grad/{name}"), grad.clone()));
    }

    // P-DARTS' skip dropout (DARTS' supernet only): the loss and architecture gradients of
    // a forward pass that drops the identity candidates' outputs, with the masks it drew.
    if !pcdarts {
        let mut masks = Vec::new();
        let mut drop_rng = ChaCha8Rng::seed_from_u64(args.seed + 2);
        let dropout = SkipDropout {
            prob: SKIP_DROPOUT,
            rng: &mut drop_rng,
            record: Some(&mut masks),
        };
        let dropped = evaluate(&net, train, Some(dropout))?;
        out.push(("dropout/loss".into(), dropped.loss.reshape(1)?));
        let grads = dropped.loss.backward()?;
        for (name, var) in net.arch_vars() {
            let grad = grads
                .get(var.as_tensor())
                .with_context(|| format!("no gradient for {name} under skip dropout"))?;
            out.push((format!("dropout/grad/{name}"), grad.clone()));
        }
        for (i, mask) in masks.into_iter().enumerate() {
            out.push((format!("dropout/mask/{i:03}"), mask));
        }
    }

    // Beta-Decay's gradient alone (weight 1): the gradient of the mean smooth maximum of each
    // edge's logits, summed over the two cells.
    let mut beta_grads = loss_and_grads(&net, train, None, "training batch")?.grads;
    for (_, var) in net.arch_vars() {
        beta_grads.remove(var.as_tensor());
    }
    add_beta_decay(&net, 1.0, &mut beta_grads)?;
    for (name, var) in net
        .arch_vars()
        .iter()
        .filter(|(n, _)| n.starts_with("alphas"))
    {
        let grad = beta_grads
            .get(var.as_tensor())
            .with_context(|| format!("no Beta-Decay gradient for {name}"))?;
        out.push((format!("beta_decay/{name}"), grad.clone()));
    }

    // Real weight steps on the training batch (SGD with momentum and weight decay, the
    // gradient clipped at norm 5, as a search's weight step), so that the momentum buffers
    // the unrolled step reads are filled; the weights and buffers after them.
    let weight_vars: Vec<_> = weights.iter().map(|(_, v)| v.clone()).collect();
    let mut sgd = Sgd::new(
        weight_vars.clone(),
        SgdConfig {
            lr: UNROLLING.xi,
            momentum: UNROLLING.momentum,
            weight_decay: UNROLLING.weight_decay,
        },
    )?;
    for _ in 0..WEIGHT_STEPS {
        let mut grads = loss_and_grads(&net, train, None, "weight step")?.grads;
        clip_grad_norm(&weight_vars, &mut grads, GRAD_CLIP)?;
        sgd.step(&grads)?;
    }
    let buffers: Vec<Option<Tensor>> = (0..weight_vars.len())
        .map(|i| sgd.momentum_buffer(i).cloned())
        .collect();
    for ((name, var), buffer) in weights.iter().zip(&buffers) {
        out.push((format!("stepped/{name}"), var.as_tensor().copy()?));
        let buffer = buffer
            .as_ref()
            .context("a momentum buffer after the steps")?;
        out.push((format!("momentum/{name}"), buffer.clone()));
    }

    // The unrolled second-order architecture gradient at the stepped weights, with their
    // momentum buffers.
    let unrolled = second_order(&net, &weight_vars, &buffers, train, val, UNROLLING)?;
    for (name, var) in net.arch_vars() {
        let grad = unrolled
            .grads
            .get(var.as_tensor())
            .with_context(|| format!("no second-order gradient for {name}"))?;
        out.push((format!("second_order/{name}"), grad.clone()));
    }

    candle_core::safetensors::save(
        &out.into_iter().collect::<std::collections::HashMap<_, _>>(),
        &args.out,
    )
    .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "{}: {} weights, {} architecture parameters",
        args.out.display(),
        weights.len(),
        net.arch_vars().len()
    );
    Ok(())
}
