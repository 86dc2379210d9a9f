//! The `cost` subcommand: what the discrete network of a genotype costs for one image, its
//! parameters, multiply-adds and peak activation memory counted analytically
//! ([`hands_models::cost`]), and its latency measured in ONNX Runtime on the CPU: the network
//! with freshly initialised weights, lowered to ONNX as `hands-export` lowers a trained one,
//! run on this machine at batch 1 and 64 (median of `--runs`); with `--predict`, beside what
//! this machine's latency table of the network predicts ([`crate::latency`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use hands_infer::timing::latency_batches;
use hands_infer::TimingPlan;
use hands_models::cost::{network_cost, NetworkCost};
use hands_models::output::write_atomic;
use hands_models::Genotype;
use serde::Serialize;

use crate::final_network::FinalNetwork;
use crate::latency::{network_graph, network_latency_ms, LatencyModel, Machine};
use hands_train::args::NetworkArgs;
use hands_train::flags;

/// Arguments of `hands-search cost`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(mut_arg("layers", |a| a.value_parser(flags::usize_in(flags::TRAIN_LAYERS)))))]
pub struct CostArgs {
    /// The genotype: a published name, `random:SEED`, a search run folder or a file.
    #[cfg_attr(feature = "cli", arg(long))]
    pub genotype: String,
    /// The network's width and depth.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub network: NetworkArgs,
    /// Side of the square input images (8 to 512).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = hands_train::args::DataArgs::SIZE, value_parser = flags::u32_in(flags::SIZE)))]
    pub size: u32,
    /// Classes of the classifier (2 to 1000).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 2, value_parser = flags::usize_in(2..=1000)))]
    pub classes: usize,
    /// Timed ONNX Runtime runs per batch size, at least (more until 250 ms are timed; 0
    /// skips the latency, and ONNX Runtime).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 20, value_parser = flags::usize_in(0..=10_000)))]
    pub runs: usize,
    /// The ONNX Runtime shared library (libonnxruntime.so) [default: $ORT_DYLIB_PATH, then
    /// search].
    #[cfg_attr(feature = "cli", arg(long, value_name = "PATH"))]
    pub ort_lib: Option<PathBuf>,
    /// Also predict the latencies with this machine's latency table of the network (what
    /// `--cost latency` weighs), fitted to measured random networks on first use and cached
    /// in $XDG_CACHE_HOME/hands or ~/.cache/hands.
    #[cfg_attr(feature = "cli", arg(long))]
    pub predict: bool,
    /// Also write the figures to FILE as JSON.
    #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
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
    /// Stride of the stem's convolution.
    pub stem_stride: usize,
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
    /// What this machine's latency table of the network predicts (with `--predict`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_ms: Option<f64>,
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
        "{} at C {}, {} cells, {}x{}{}, {} classes:",
        args.genotype,
        report.init_channels,
        report.layers,
        report.size,
        report.size,
        match report.stem_stride {
            1 => String::new(),
            stride => format!(" (stem stride {stride})"),
        },
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
        print!(
            "  latency batch {:<4}  {:.3} ms (median of {} runs, {} threads, ONNX Runtime CPU)",
            latency.batch, latency.median_ms, latency.runs, latency.threads
        );
        match latency.predicted_ms {
            Some(predicted) => println!(
                "; latency table {predicted:.3} ms ({:+.1}%)",
                (predicted / latency.median_ms - 1.0) * 100.0
            ),
            None => println!(),
        }
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
    let stride = args.network.stem_stride;
    let cost = network_cost(
        &genotype,
        c,
        layers,
        stride,
        args.size as usize,
        args.classes,
    );
    let latency = if args.runs == 0 {
        Vec::new()
    } else {
        measure_latency(args, &genotype)?
    };
    Ok(CostReport {
        genotype,
        init_channels: c,
        layers,
        stem_stride: stride,
        size: args.size,
        classes: args.classes,
        cost,
        latency,
    })
}

/// The median ONNX Runtime CPU latency at each of [`hands_infer::timing::LATENCY_BATCHES`]
/// (capped at the largest batch `hands-infer` would run, [`latency_batches`]) of the network of
/// `genotype` with fresh weights, with `--predict` beside what this machine's latency table
/// of the network says.
fn measure_latency(args: &CostArgs, genotype: &Genotype) -> Result<Vec<Latency>> {
    let network = FinalNetwork {
        init_channels: args.network.init_channels,
        layers: args.network.layers,
        stem_stride: args.network.stem_stride,
        size: args.size as usize,
        classes: args.classes,
    };
    let bytes = network_graph(genotype, network).context("--runs 0 gives the counted figures")?;
    let machine = Machine::this(rayon::current_num_threads(), args.ort_lib.as_deref())?;
    let plan = TimingPlan {
        min_runs: args.runs,
        ..TimingPlan::LATENCY
    };
    let batches = latency_batches(args.size, network.init_channels);
    let mut latencies = Vec::with_capacity(batches.len());
    for batch in batches {
        let median_ms = network_latency_ms(&bytes, network.size, batch, &machine, plan)?;
        let predicted_ms = if args.predict {
            Some(LatencyModel::cached(machine.clone(), network, batch)?.predict(genotype))
        } else {
            None
        };
        latencies.push(Latency {
            batch,
            median_ms,
            predicted_ms,
            runs: args.runs,
            threads: machine.threads,
        });
    }
    Ok(latencies)
}
