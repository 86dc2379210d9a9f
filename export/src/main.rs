//! `hands-export`: freezes a trained model into `NAME.safetensors` (BN folded) and
//! `NAME.onnx`, both carrying the model card, after checking the ONNX file in ONNX Runtime.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use hands_export::{export, BatchSize, ExportOptions, OnnxOptions, Parity, PARITY_TOLERANCE};

/// Export a trained hands model to safetensors (BN folded) and ONNX, checked in ONNX Runtime.
#[derive(Debug, Parser)]
#[command(name = "hands-export", version)]
struct Args {
    /// The trained model: a safetensors file with the model card (runs/NAME/model.safetensors).
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Base name of the output files: DIR/NAME.safetensors and DIR/NAME.onnx.
    #[arg(long, default_value = "model")]
    name: String,
    /// ONNX operator set version (17 to 23).
    #[arg(long, default_value_t = hands_export::DEFAULT_OPSET,
          value_parser = clap::value_parser!(i64).range(hands_export::lower::OPSETS))]
    opset: i64,
    /// Batch dimension of the ONNX graph: `dynamic` or a fixed size up to 1024 (the parity
    /// check holds one batch in memory).
    #[arg(long, default_value = "dynamic", value_name = "dynamic|N")]
    batch: BatchSize,
    /// Do not check the ONNX file in ONNX Runtime (for machines without it).
    #[arg(long)]
    skip_parity: bool,
    /// ONNX Runtime shared library (default: ORT_DYLIB_PATH, python3's onnxruntime package,
    /// .tools/onnxruntime, then the system library path; as hands-infer looks).
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// Check parity on the images in this folder (default: seeded random inputs).
    #[arg(long, value_name = "DIR")]
    parity_images: Option<PathBuf>,
    /// ONNX Runtime CPU threads to time the exported graph with for the card (batch 1 and
    /// 64, median of at least 20 runs and 250 ms) [default: all cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    latency_threads: Option<u16>,
    /// Do not time the exported graph (the card then records no latency).
    #[arg(long, conflicts_with = "latency_threads")]
    skip_latency: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    hands_models::logging::init("warn");
    if let Err(e) = hands_models::interrupt::exit_on_signals(
        "hands-export",
        "the files of an earlier export are kept as they were",
    ) {
        eprintln!("hands-export: error: cannot handle signals: {e}");
        return ExitCode::FAILURE;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hands-export: error: {e:#}");
            if std::env::var("HANDS_LOG").is_ok_and(|level| level == "debug") {
                eprintln!("{e:?}"); // the cause chain, and the backtrace when one was captured
            }
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let parity = if args.skip_parity {
        eprintln!(
            "hands-export: warning: --skip-parity: the ONNX file is NOT checked in ONNX Runtime; \
             run the export again where ONNX Runtime is installed before shipping it"
        );
        Parity::Skip
    } else {
        let images = match &args.parity_images {
            Some(dir) => image_files(dir)?,
            None => Vec::new(),
        };
        Parity::Check {
            ort_lib: args.ort_lib.clone(),
            images,
        }
    };
    let options = ExportOptions {
        name: args.name.clone(),
        onnx: OnnxOptions {
            opset: args.opset,
            batch: args.batch,
        },
        latency_threads: latency_threads(&args),
        parity,
    };
    // Every error of the export names the file it concerns.
    let report = export(&args.model, &args.out, &options).map_err(|e| match e {
        hands_export::Error::Runtime(_) => anyhow::anyhow!(
            "{e}\n(where ONNX Runtime cannot be had, --skip-parity exports without this check)"
        ),
        e => e.into(),
    })?;

    println!("wrote {}", report.safetensors.display());
    println!("wrote {}", report.card_json.display());
    println!(
        "wrote {} ({} nodes, {} initializers, opset {}, {} BatchNorm layers folded)",
        report.onnx.display(),
        report.nodes,
        report.initializers,
        args.opset,
        report.folded_batch_norms
    );
    if !report.dropped.is_empty() {
        println!(
            "left out {} tensors not used for inference (e.g. {})",
            report.dropped.len(),
            report.dropped[0]
        );
    }
    println!(
        "BN folding: candle logits max |diff| {:.2e}",
        report.folded_logits_max_abs
    );
    if let Some(lib) = &report.ort_library {
        println!("parity with ONNX Runtime ({}):", lib.display());
    }
    for p in &report.parity {
        println!(
            "  batch {}: logits max |diff| {:.2e}, probabilities max |diff| {:.2e} (tolerance {:.0e})",
            p.batch, p.logits_max_abs, p.probabilities_max_abs, PARITY_TOLERANCE
        );
    }
    for latency in &report.card.network.latency {
        println!(
            "latency batch {}: {:.3} ms (median, {} threads, ONNX Runtime CPU, {})",
            latency.batch, latency.median_ms, latency.threads, latency.cpu
        );
    }
    Ok(())
}

/// The threads to time the exported graph with, or `None` when it is not timed (also when
/// the parity check, which loads ONNX Runtime, is skipped).
fn latency_threads(args: &Args) -> Option<usize> {
    if args.skip_latency || args.skip_parity {
        return None;
    }
    let all_cores = || std::thread::available_parallelism().map_or(1, usize::from);
    Some(args.latency_threads.map_or_else(all_cores, usize::from))
}

/// The image files directly in `dir`, sorted by name; one that is not a regular file (a
/// FIFO, a device, a folder named like an image) is refused rather than read.
fn image_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "jpg" | "jpeg" | "png" | "bmp" | "webp"
                )
            })
        })
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "{}: no image files", dir.display());
    for file in &files {
        let meta =
            std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
        anyhow::ensure!(meta.is_file(), "{}: not a regular file", file.display());
    }
    Ok(files)
}
