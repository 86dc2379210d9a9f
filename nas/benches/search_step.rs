//! Benchmark of one full search step (architecture step + weight step) on random data.
//!
//! Prints one JSON line with the median step time in milliseconds and the process's peak
//! resident memory, in the same form as `../shared/bench/darts_ref.py`, so the two can be
//! compared side by side (`scripts/bench-search` runs both and prints the ratios). One
//! configuration per process, so that the peak memory belongs to that configuration alone.
//!
//! ```text
//! cargo bench -p hands-nas --features cli --bench search_step -- --algo darts --size 32 --batch 64 \
//!     --init-channels 16 --layers 8 --threads 2
//! ```

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use hands_models::device::DeviceChoice;
use hands_models::Op;
use hands_nas::architect::LabelledBatch;
use hands_nas::args::{Algo, SearchArgs};
use hands_nas::stage_run::StageRun;
use hands_nas::supernet::{Memory, Supernet, SupernetConfig};
use hands_train::device::open_device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Parser)]
struct BenchArgs {
    /// darts, darts2, pcdarts or pdarts (P-DARTS' first stage: 5 cells, 8 ops, skip dropout).
    #[arg(long, value_enum, default_value_t = Algo::Darts)]
    algo: Algo,
    #[arg(long, default_value_t = 32)]
    size: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 16)]
    init_channels: usize,
    /// Cells (default 8; 5 for pdarts, its first stage: 17 is its last stage's depth).
    #[arg(long)]
    layers: Option<usize>,
    /// PC-DARTS channel factor (default 4 for pcdarts, 1 otherwise).
    #[arg(long)]
    partial_k: Option<usize>,
    /// CPU threads (rayon and candle's CPU kernels).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// cpu, cuda[:N] or auto (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// What a step keeps for its backward pass: fast (the whole graph) or lean (the cells
    /// recomputed).
    #[arg(long, value_enum, default_value_t = Memory::Fast)]
    memory: Memory,
    /// Measured steps (after two warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Ignored (cargo bench passes it).
    #[arg(long, hide = true)]
    bench: bool,
}

fn random_batch(
    rng: &mut ChaCha8Rng,
    b: usize,
    size: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let pixels: Vec<f32> = (0..b * 3 * size * size)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let labels: Vec<u32> = (0..b).map(|_| rng.random_range(0..2)).collect();
    Ok((
        Tensor::from_vec(pixels, (b, 3, size, size), device)?,
        Tensor::from_vec(labels, b, device)?,
    ))
}

fn main() -> Result<()> {
    let bench = BenchArgs::parse();
    // As `hands-search` does at start-up.
    let heap_reuse = hands_nas::memory::keep_freed_tensor_memory();
    hands_train::device::set_cpu_threads(bench.threads)?;
    let pdarts = bench.algo == Algo::Pdarts;
    let partial_k = bench
        .partial_k
        .unwrap_or(if bench.algo == Algo::Pcdarts { 4 } else { 1 });
    let layers = bench.layers.unwrap_or(if pdarts { 5 } else { 8 });
    let config = SupernetConfig {
        init_channels: bench.init_channels,
        layers,
        stem_stride: 1,
        num_classes: 2,
        partial_k,
        edge_norm: bench.algo == Algo::Pcdarts,
        normal_candidates: vec![Op::ALL.to_vec(); 14],
        reduce_candidates: vec![Op::ALL.to_vec(); 14],
    };
    let device = open_device(bench.device)?;
    let net = Supernet::new(&config, 0, DType::F32, &device)?.with_memory(bench.memory);
    let args = SearchArgs::new("", bench.algo);
    let mut run = StageRun::new(&net, &args, None)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (xt, yt) = random_batch(&mut rng, bench.batch, bench.size, &device)?;
    let (xv, yv) = random_batch(&mut rng, bench.batch, bench.size, &device)?;
    let train = LabelledBatch {
        images: &xt,
        labels: &yt,
    };
    let val = LabelledBatch {
        images: &xv,
        labels: &yv,
    };
    let skip_dropout = if pdarts { 0.1 } else { 0.0 };
    let mut times = Vec::with_capacity(bench.steps);
    for step in 0..bench.steps + 2 {
        let start = Instant::now();
        run.step(train, Some(val), 0.025, skip_dropout, 0.0, &mut rng)?;
        device.synchronize()?;
        if step >= 2 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let params: usize = net.weight_vars().iter().map(|(_, v)| v.elem_count()).sum();
    println!(
        "{}",
        serde_json::json!({
            "impl": "hands-search (candle)",
            "algo": bench.algo,
            "size": bench.size,
            "batch": bench.batch,
            "C": bench.init_channels,
            "layers": layers,
            "partial_k": partial_k,
            "threads": bench.threads,
            "heap_reuse": heap_reuse,
            "memory": bench.memory,
            "device": bench.device,
            "steps": bench.steps,
            "step_ms_median": (median * 10.0).round() / 10.0,
            "step_ms_min": (times[0] * 10.0).round() / 10.0,
            "peak_rss_mb": hands_nas::memory::peak_rss_mb().map(|m| m.round()),
            "params": params,
        })
    );
    Ok(())
}
