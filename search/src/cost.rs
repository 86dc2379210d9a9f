//! The `cost` subcommand: what the discrete network of a genotype costs for one image, its
//! parameters, multiply-adds and peak activation memory counted analytically
//! ([`hands_models::cost`]), and its latency measured in ONNX Runtime on the CPU: the network
//! with freshly initialised weights, lowered to ONNX as `hands-export` lowers a trained one,
//! run on this machine at batch 1 and 64 (median of `--runs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Args;
use hands_export::{lower, OnnxOptions};
use hands_infer::{DeviceChoice, Input, Options, Predictor};
use hands_models::card::{
    ColourOrder, InputSpec, NetworkSpec, Provenance, ResizeRule, TensorLayout, CARD_SCHEMA_VERSION,
};
use hands_models::cost::{network_cost, NetworkCost};
use hands_models::nn::network::{Network, NetworkConfig};
use hands_models::output::write_atomic;
use hands_models::{Genotype, ModelCard};
use prost::Message;
use serde::Serialize;

use crate::args::{DataArgs, NetworkArgs};
use crate::flags;
use crate::train::inference_tensors;

/// The batch sizes whose latency is measured.
pub const LATENCY_BATCHES: [usize; 2] = [1, 64];

/// Untimed runs before the timed ones, for ONNX Runtime's allocations and caches.
const WARM_UP_RUNS: usize = 2;

/// Arguments of `hands-search cost`.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("layers", |a| a.value_parser(flags::usize_in(flags::TRAIN_LAYERS))))]
pub struct CostArgs {
    /// The genotype: a published name, `random:SEED`, a search run folder or a file.
    #[arg(long)]
    pub genotype: String,
    /// The network's width and depth.
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Side of the square input images (8 to 512).
    #[arg(long, default_value_t = DataArgs::SIZE, value_parser = flags::u32_in(flags::SIZE))]
    pub size: u32,
    /// Classes of the classifier (2 to 1000).
    #[arg(long, default_value_t = 2, value_parser = flags::usize_in(2..=1000))]
    pub classes: usize,
    /// Timed ONNX Runtime runs per batch size (0 skips the latency, and ONNX Runtime).
    #[arg(long, default_value_t = 20, value_parser = flags::usize_in(0..=10_000))]
    pub runs: usize,
    /// The ONNX Runtime shared library (libonnxruntime.so) [default: $ORT_DYLIB_PATH, then
    /// search].
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
    /// Also write the figures to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The figures `cost` prints and writes.
#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    /// The genotype measured.
    pub genotype: Genotype,
    /// Channels of the first cell.
    pub init_channels: usize,
    /// Cells.
    pub layers: usize,
    /// Input side.
    pub size: u32,
    /// Classes.
    pub classes: usize,
    /// Parameters, multiply-adds and peak activation memory.
    #[serde(flatten)]
    pub cost: NetworkCost,
    /// The measured latencies (none with `--runs 0`).
    pub latency: Vec<Latency>,
}

/// The measured ONNX Runtime CPU latency of one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Images per run.
    pub batch: usize,
    /// Median milliseconds of a run.
    pub median_ms: f64,
    /// Timed runs.
    pub runs: usize,
    /// ONNX Runtime's intra-op threads.
    pub threads: usize,
}

/// Runs `hands-search cost`: prints the figures, and writes them to `--json`.
pub fn run_cost(args: &CostArgs) -> Result<()> {
    let report = measure_cost(args)?;
    let cost = &report.cost;
    println!(
        "{} at C {}, {} cells, {}x{}, {} classes:",
        args.genotype,
        report.init_channels,
        report.layers,
        report.size,
        report.size,
        report.classes
    );
    println!("  parameters          {}", cost.total.parameters);
    println!(
        "  multiply-adds       {} ({:.1} M)",
        cost.total.multiply_adds,
        cost.total.multiply_adds as f64 / 1e6
    );
    println!(
        "  peak activations    {:.2} MiB per image",
        cost.peak_activation_bytes as f64 / (1 << 20) as f64
    );
    for latency in &report.latency {
        println!(
            "  latency batch {:<4}  {:.3} ms (median of {} runs, {} threads, ONNX Runtime CPU)",
            latency.batch, latency.median_ms, latency.runs, latency.threads
        );
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)? + "\n";
        write_atomic(path, json.as_bytes())?;
        eprintln!("written: {}", path.display());
    }
    Ok(())
}

/// The figures of [`run_cost`], without printing.
pub fn measure_cost(args: &CostArgs) -> Result<CostReport> {
    args.network.check(flags::TRAIN_LAYERS)?;
    let genotype = Genotype::resolve(&args.genotype)
        .with_context(|| format!("--genotype {}", args.genotype))?;
    let (c, layers) = (args.network.init_channels, args.network.layers);
    let cost = network_cost(&genotype, c, layers, args.size as usize, args.classes);
    let latency = if args.runs == 0 {
        Vec::new()
    } else {
        measure_latency(args, &genotype, cost)?
    };
    Ok(CostReport {
        genotype,
        init_channels: c,
        layers,
        size: args.size,
        classes: args.classes,
        cost,
        latency,
    })
}

/// The median ONNX Runtime CPU latency at each of [`LATENCY_BATCHES`] (capped at the largest
/// batch the predictor accepts) of the network of `genotype` with fresh weights.
fn measure_latency(
    args: &CostArgs,
    genotype: &Genotype,
    cost: NetworkCost,
) -> Result<Vec<Latency>> {
    let card = latency_card(args, genotype, cost);
    card.validate().with_context(|| {
        "the network is outside what a model file may hold, so its latency cannot be measured \
         (--runs 0 gives the analytic figures)"
    })?;
    let tensors = fresh_weights(genotype, &args.network, args.classes)?;
    let lowered = lower(&card, &tensors, &OnnxOptions::default())?;
    let threads = rayon::current_num_threads();
    let options = Options {
        device: DeviceChoice::Cpu,
        threads: Some(threads),
        ort_library: args.ort_lib.clone(),
        min_confidence: None,
    };
    let predictor = Predictor::from_bytes(
        &lowered.model.encode_to_vec(),
        Path::new("<the genotype's network>"),
        &options,
    )?;
    let side = args.size as usize;
    let largest = LATENCY_BATCHES[LATENCY_BATCHES.len() - 1].min(predictor.max_batch());
    let inputs: Vec<Input> = (0..largest)
        .map(|i| Input::from_data(vec![(i % 7) as f32 * 0.1; 3 * side * side]))
        .collect();
    let inputs: Vec<&Input> = inputs.iter().collect();
    let mut latencies = Vec::new();
    for batch in LATENCY_BATCHES.map(|b| b.min(largest)) {
        if latencies.iter().any(|l: &Latency| l.batch == batch) {
            continue;
        }
        let mut times = Vec::with_capacity(args.runs);
        for run in 0..WARM_UP_RUNS + args.runs {
            let start = Instant::now();
            predictor.outputs(&inputs[..batch])?;
            if run >= WARM_UP_RUNS {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        latencies.push(Latency {
            batch,
            median_ms: times[times.len() / 2],
            runs: args.runs,
            threads,
        });
    }
    if latencies.is_empty() {
        bail!("no batch size to measure");
    }
    Ok(latencies)
}

/// The inference tensors of the network of `genotype`, freshly initialised as training
/// starts it.
fn fresh_weights(
    genotype: &Genotype,
    network: &NetworkArgs,
    classes: usize,
) -> Result<HashMap<String, Tensor>> {
    let config = NetworkConfig {
        init_channels: network.init_channels,
        layers: network.layers,
        num_classes: classes,
        auxiliary: false,
    };
    let varmap = VarMap::new();
    Network::new(
        genotype,
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    Ok(inference_tensors(&varmap, "")?.into_iter().collect())
}

/// A card for the untrained network: what the lowering and ONNX Runtime need to know.
fn latency_card(args: &CostArgs, genotype: &Genotype, cost: NetworkCost) -> ModelCard {
    ModelCard {
        schema_version: CARD_SCHEMA_VERSION,
        labels: (0..args.classes).map(|i| format!("class{i}")).collect(),
        input: InputSpec {
            size: args.size,
            layout: TensorLayout::Nchw,
            colour: ColourOrder::Rgb,
            resize: ResizeRule::StretchBilinear,
            mean: [0.5; 3],
            std: [0.25; 3],
        },
        genotype: genotype.clone(),
        network: NetworkSpec {
            init_channels: args.network.init_channels,
            layers: args.network.layers,
            auxiliary: false,
            parameters: cost.total.parameters as usize,
            multiply_adds: Some(cost.total.multiply_adds),
        },
        metrics: None,
        cross_validation: None,
        provenance: Provenance {
            data: String::new(),
            genotype_source: args.genotype.clone(),
            train: serde_json::json!({}),
            seed: 0,
            tool_version: concat!("hands-search ", env!("CARGO_PKG_VERSION")).to_string(),
        },
    }
}
