//! `hands-infer`: predicts the gender of hands on image files and folders, one row per image.

mod output;

use std::io::{BufWriter, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use hands_infer::pipeline::Outcome;
use hands_infer::{files, pipeline, Device, Options, Predictor};
use hands_models::output::{ensure_not_input, OutputFile};
use indicatif::{ProgressBar, ProgressStyle};

use output::{Format, RowWriter};

/// The shipped default model, relative to the repository root.
const DEFAULT_MODEL: &str = "models/pretrained/hands.onnx";

/// Predicts male / female from hand photographs with an ONNX model exported by hands-export.
///
/// Writes one row per image (path, label, probability of each label, or the error that kept
/// it from being predicted) and a summary on stderr. Exit status: 0 when every image was
/// predicted, 1 when some could not be, 2 when the run could not start or stopped. A reader
/// that closes the pipe early (e.g. `| head`) ends the run quietly with the status so far.
///
/// Paths are written losslessly in both formats: a byte that is not valid UTF-8 is written
/// as `\xNN` (two hex digits) and a backslash as `\\`; every other character as it is.
///
/// Only regular files (after following symlinks) of at most 161 MB and 40 megapixels are
/// read; anything else is an error row. With --recursive every real folder is walked and
/// every real file listed once (symlink loops end); an unreadable folder is an error row.
#[derive(Debug, Parser)]
#[command(name = "hands-infer", version)]
struct Cli {
    /// Image files and folders (a folder's JPEG, PNG, BMP and WebP files are taken).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The ONNX model [default: $HANDS_MODEL, else the repository's models/pretrained/hands.onnx].
    #[arg(long, short, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Images per inference batch: 1 to 4096, and at most what fits in 2 GiB for the model
    /// (an image takes 4 bytes x input size^2 x (9 + 48 x init_channels); 896 for the
    /// shipped model). A larger batch is refused before the run.
    #[arg(long, short, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
    /// Threads for decoding and for ONNX Runtime [default: all cores].
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Where the network runs: cpu, cuda, or auto (CUDA when built with the `cuda` feature and usable).
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: Device,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Csv)]
    format: Format,
    /// Write rows to FILE instead of stdout (written beside it and renamed at the end, so a
    /// failed run leaves FILE as it was; refused if FILE is an input, the model or the ONNX
    /// Runtime library).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Descend into sub-folders.
    #[arg(long, short)]
    recursive: bool,
    /// The ONNX Runtime shared library (libonnxruntime.so) [default: $ORT_DYLIB_PATH, then search].
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// Only decode and preprocess the images (no network, no rows), to measure the decode rate.
    #[arg(long)]
    decode_only: bool,
    /// No progress bar and no informational messages; the summary and errors still go to stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_device(s: &str) -> Result<Device, String> {
    s.parse().map_err(|e: hands_infer::Error| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet);
    match run(&cli) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("hands-infer: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "hands_infer=info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
}

/// Runs the command; returns the number of images that failed.
fn run(cli: &Cli) -> anyhow::Result<usize> {
    let threads = cli.threads.map(|t| t as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let model = resolve_model(cli.model.as_deref())?;
    let collected = files::collect(&cli.paths, cli.recursive);
    if collected.files.is_empty() && collected.unreadable.is_empty() {
        bail!(
            "no images found in {} (JPEG, PNG, BMP or WebP{})",
            cli.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if cli.recursive {
                ""
            } else {
                "; --recursive descends into sub-folders"
            }
        );
    }
    let options = Options {
        device: cli.device,
        threads: Some(threads),
        ort_library: cli.ort_lib.clone(),
    };
    let predictor = Predictor::open_with(&model, &options)?;
    pipeline::check_batch(&predictor, cli.batch as usize)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("decode-{i}"))
        .build()
        .context("cannot start decoding threads")?;
    let images = collected.files.len();
    let start = Instant::now();

    if cli.decode_only {
        let failures = pipeline::decode_files(&predictor, &collected.files, &pool);
        let seconds = start.elapsed().as_secs_f64();
        eprintln!(
            "hands-infer: decoded {images} images ({failures} failures) in {seconds:.2} s: {:.1} images/s (decode only, {threads} threads, input {size}x{size})",
            images as f64 / seconds,
            size = predictor.input_size()
        );
        return Ok(failures);
    }

    let failures = match &cli.output {
        Some(path) => {
            refuse_inputs(path, &cli.paths, &collected.files, &predictor)?;
            let file = OutputFile::create(path)?;
            let (failures, file) = write_rows(cli, &predictor, &collected, &pool, file)?;
            if let Some(file) = file {
                file.commit()?;
            }
            failures
        }
        None => {
            let stdout = BufWriter::new(std::io::stdout().lock());
            write_rows(cli, &predictor, &collected, &pool, stdout)?.0
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let mut skipped = String::new();
    if collected.skipped > 0 {
        skipped += &format!(
            ", {} non-image files in the folders skipped",
            collected.skipped
        );
    }
    if !collected.unreadable.is_empty() {
        skipped += &format!(", {} folders unreadable", collected.unreadable.len());
    }
    eprintln!(
        "hands-infer: {images} images, {failures} failures in {seconds:.2} s: {:.1} images/s ({}, batch {}, {threads} threads{skipped})",
        images as f64 / seconds,
        predictor.execution_provider(),
        cli.batch,
    );
    Ok(failures)
}

/// Refuses an output that is one of the run's inputs: an image, a folder given, the model
/// or the ONNX Runtime library. Only regular files and folders are compared: the others
/// are never read (and opening a FIFO to compare it would block).
fn refuse_inputs(
    output: &Path,
    paths: &[PathBuf],
    images: &[PathBuf],
    predictor: &Predictor,
) -> anyhow::Result<()> {
    if std::fs::metadata(output).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        return Ok(()); // a pipe or a device: written directly, and never an input
    }
    let fixed = [predictor.path(), predictor.ort_library()];
    let inputs: Vec<&Path> = fixed
        .into_iter()
        .chain(paths.iter().chain(images).map(PathBuf::as_path))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() || m.is_dir()))
        .collect();
    ensure_not_input(output, &inputs)?;
    Ok(())
}

/// Writes one row per unreadable folder and per image into `out`. Returns the number of
/// failed rows and the writer, or no writer when the reader closed the pipe early.
fn write_rows<W: Write>(
    cli: &Cli,
    predictor: &Predictor,
    collected: &files::Collected,
    pool: &rayon::ThreadPool,
    out: W,
) -> anyhow::Result<(usize, Option<W>)> {
    let mut writer = RowWriter::new(cli.format, out, predictor.labels())?;
    let progress = progress_bar(collected.files.len() as u64, cli.quiet);
    let mut failures = 0;
    let mut write_error = None;
    let mut sink = |outcome: Outcome| {
        if let Err(e) = &outcome.result {
            failures += 1;
            progress.suspend(|| tracing::warn!("{}", describe_error(&outcome.path, e)));
        }
        progress.inc(1);
        match writer.write(&outcome) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_error = Some(e);
                ControlFlow::Break(())
            }
        }
    };
    let folder_rows = collected.unreadable.iter().map(|(dir, e)| Outcome {
        path: dir.clone(),
        result: Err(hands_infer::Error::Image(hands_models::Error::Image {
            path: dir.clone(),
            reason: format!("cannot read the folder: {e}"),
        })),
    });
    if folder_rows.map(&mut sink).all(|flow| flow.is_continue()) {
        pipeline::predict_files(
            predictor,
            &collected.files,
            cli.batch as usize,
            pool,
            &mut sink,
        )?;
    }
    progress.finish_and_clear();
    let result = match write_error {
        Some(e) => Err(e),
        None => writer.finish().map(Some),
    };
    match result {
        Ok(out) => Ok((failures, out)),
        // The reader (e.g. `head`) has seen enough.
        Err(e) if is_broken_pipe(&e) => Ok((failures, None)),
        Err(e) => Err(e.context("cannot write the output")),
    }
}

/// An error for the log: image errors name their file already, others get the path.
fn describe_error(path: &Path, e: &hands_infer::Error) -> String {
    match e {
        hands_infer::Error::Image(_) => e.to_string(),
        _ => format!("{}: {e}", path.display()),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<csv::Error>()
                .is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe))
    })
}

/// `--model`, else `$HANDS_MODEL`, else the shipped default model of this repository.
fn resolve_model(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("HANDS_MODEL").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/hands-infer -> the repository root is three levels up.
        candidates.extend(
            exe.ancestors()
                .skip(1)
                .take(3)
                .map(|d| d.join(DEFAULT_MODEL)),
        );
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(DEFAULT_MODEL),
    );
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    bail!(
        "no model given and the default model {DEFAULT_MODEL} is not there (looked at {}); pass --model FILE or set HANDS_MODEL",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn progress_bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  eta {eta}")
            .expect("valid template"),
    );
    bar
}
