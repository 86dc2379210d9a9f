//! Benchmark of one training step of the discrete network of a genotype (forward with drop
//! path and the auxiliary head, cross-entropy, backward, gradient clipping, SGD with momentum
//! and weight decay) on random data, through the same `hands_train::step::train_step` that
//! `hands-search train` runs.
//!
//! Prints one JSON line with the median step time, images per second, peak resident memory
//! and parameter count, in the form of `../shared/bench/train_ref.py`, so that the two can be
//! compared side by side (`scripts/bench-train` runs both and prints the ratios). One
//! configuration per process, so that the peak memory belongs to that configuration alone.
//!
//! ```text
//! cargo bench -p hands-nas --features cli --bench train_step -- --genotype DARTS_V2 --size 32 --batch 32 \
//!     --init-channels 12 --layers 6 --threads 2
//! ```

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use clap::Parser;
use hands_models::device::DeviceChoice;
use hands_models::nn::network::{parameter_count, Network, NetworkConfig};
use hands_models::Genotype;
use hands_train::device::open_device;
use hands_train::optim::trainable_vars;
use hands_train::optim::{Sgd, SgdConfig};
use hands_train::step::{train_step, StepConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Parser)]
struct BenchArgs {
    /// A published genotype name (DARTS_V2, ...) or a genotype JSON file.
    #[arg(long, default_value = "DARTS_V2")]
    genotype: String,
    #[arg(long, default_value_t = 32)]
    size: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 12)]
    init_channels: usize,
    #[arg(long, default_value_t = 6)]
    layers: usize,
    /// Weight of the auxiliary head's loss (0: no auxiliary head).
    #[arg(long, default_value_t = 0.4)]
    auxiliary_weight: f64,
    #[arg(long, default_value_t = 0.2)]
    drop_path: f64,
    /// CPU threads of the kernels and matrix products.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// cpu, cuda[:N] or auto (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// Measured steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Warm-up steps before the measured ones.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Ignored (cargo bench passes it).
    #[arg(long, hide = true)]
    bench: bool,
}

fn genotype(name: &str) -> Result<Genotype> {
    if Path::new(name).is_file() {
        return Genotype::read(Path::new(name)).with_context(|| format!("reading {name}"));
    }
    Genotype::published(name).with_context(|| format!("genotype {name}"))
}

fn main() -> Result<()> {
    let bench = BenchArgs::parse();
    // As `hands-search` does at start-up.
    hands_nas::memory::keep_freed_tensor_memory();
    hands_train::device::set_cpu_threads(bench.threads)?;
    let device = open_device(bench.device)?;
    let config = NetworkConfig {
        init_channels: bench.init_channels,
        layers: bench.layers,
        stem_stride: 1,
        num_classes: 2,
        auxiliary: bench.auxiliary_weight > 0.0,
    };
    let (network, varmap) =
        Network::seeded(&genotype(&bench.genotype)?, &config, 0, DType::F32, &device)?;
    let sgd_config = SgdConfig {
        lr: 0.025,
        momentum: 0.9,
        weight_decay: 3e-4,
    };
    let mut sgd = Sgd::new(trainable_vars(&varmap), sgd_config)?;
    let step_config = StepConfig {
        class_weights: None,
        auxiliary_weight: bench.auxiliary_weight,
        label_smoothing: 0.0,
        grad_clip: 5.0,
        drop_prob: bench.drop_path,
        mixup: 0.0,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (b, s) = (bench.batch, bench.size);
    let pixels: Vec<f32> = (0..b * 3 * s * s)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let labels: Vec<u32> = (0..b).map(|_| rng.random_range(0..2)).collect();
    let images = Tensor::from_vec(pixels, (b, 3, s, s), &device)?;
    let labels = Tensor::from_vec(labels, b, &device)?;

    let mut times = Vec::with_capacity(bench.steps);
    for step in 0..bench.warmup + bench.steps {
        let start = Instant::now();
        train_step(
            &network,
            &mut sgd,
            &images,
            &labels,
            None,
            &step_config,
            &mut rng,
        )?;
        device.synchronize()?;
        if step >= bench.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "impl": "hands-search (candle)",
            "genotype": bench.genotype,
            "size": s,
            "batch": b,
            "C": bench.init_channels,
            "layers": bench.layers,
            "threads": bench.threads,
            "device": bench.device,
            "steps": bench.steps,
            "step_ms_median": (median * 1e5).round() / 100.0,
            "step_ms_min": (times[0] * 1e5).round() / 100.0,
            "images_per_s": (b as f64 / median * 10.0).round() / 10.0,
            "peak_rss_mb": hands_nas::memory::peak_rss_mb().map(|m| (m * 10.0).round() / 10.0),
            "params": parameter_count(&varmap, false),
        })
    );
    Ok(())
}
