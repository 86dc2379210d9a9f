//! `hands-infer`: predicts the gender of hands on image files and folders, one row per image.

mod groups;
mod output;
mod resume;

use std::io::{BufWriter, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use hands_infer::pipeline::Outcome;
use hands_infer::{explain, files, pipeline, DeviceChoice, Options, Prediction, Predictor};
use hands_models::lock::RunLock;
use hands_models::output::{ensure_not_input, write_atomic, InputSet, OutputFile};
use hands_models::preprocess;
use indicatif::{ProgressBar, ProgressStyle};

use groups::{GroupBy, Groups};
use output::{Format, RowWriter};

/// Predicts male / female from hand photographs with an ONNX model exported by hands-export.
///
/// Writes one row per image (path, label, probability of each label, or the error that kept
/// it from being predicted) and a summary on stderr. Exit status: 0 when every image was
/// predicted, 1 when some could not be, 2 when the run could not start or stopped (a reader
/// that closes the output early, e.g. `| head`, stops it), 128 + N when signal N stopped it
/// (SIGINT, SIGTERM, SIGHUP; an unfinished --output is removed, nothing else is touched).
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
    /// The ONNX model [default: $HANDS_MODEL, else the shipped model built into hands-infer].
    #[arg(long, short, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Abstain below probability P: an image whose most probable label is less likely gets
    /// the label `uncertain` (its probabilities are still written); the summary counts them.
    #[arg(long, value_name = "P", value_parser = parse_probability)]
    min_confidence: Option<f32>,
    /// Abstain so as to reach accuracy A on the answers given: the threshold is the lowest
    /// confidence at which the model card's cross-validated accuracy-coverage curve reaches A
    /// (a calibrated model's card has one); images below it get `uncertain` and the summary
    /// says the share kept and the accuracy expected. In (0.5, 1).
    #[arg(long, value_name = "A", conflicts_with = "min_confidence",
          value_parser = parse_target_accuracy)]
    target_accuracy: Option<f64>,
    /// Put the images into groups, e.g. one per person: `folder` (the folder holding an
    /// image is its group) or `csv:FILE` (a CSV with columns `path,group` naming every image
    /// given once). Needs --groups.
    #[arg(long, value_name = "folder|csv:FILE", requires = "groups")]
    group_by: Option<GroupBy>,
    /// Write one CSV row per group to FILE: `group,images,failed,label,p_LABEL...,error`,
    /// the group's photos combined by their mean log-probability (the label `uncertain` by
    /// the same threshold as a photo's). Needs --group-by.
    #[arg(
        long,
        value_name = "FILE",
        requires = "group_by",
        conflicts_with = "resume"
    )]
    groups: Option<PathBuf>,
    /// Also write, for each predicted image, DIR/NAME.explain.png: the photo at its own size
    /// with an occlusion-sensitivity map over it (red: regions the answer relied on, blue:
    /// regions that argued against it; 49 extra network passes per image). DIR is created.
    #[arg(long, value_name = "DIR")]
    explain: Option<PathBuf>,
    /// Go on with FILE, the output of an earlier run that stopped: images that have a row in
    /// FILE (as the earlier run named them: give the same paths) are skipped and the rows of
    /// the others are appended to FILE, in its format. A last row cut short is dropped first.
    #[arg(long, value_name = "FILE", conflicts_with = "output")]
    resume: Option<PathBuf>,
    /// Images per inference batch: 1 to 4096, and at most what fits in 2 GiB for the model
    /// (an image takes 4 bytes x input size^2 x (9 + 48 x init_channels); 896 for the
    /// shipped model). A larger batch is refused before the run.
    #[arg(long, short, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
    /// Threads for decoding and for ONNX Runtime [default: all cores].
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Where the network runs: cpu, cuda, cuda:N, or auto (CUDA device 0 when built with the
    /// `cuda` feature and usable, else the CPU).
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
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
    /// Only run the network, in batches of --batch, on the images decoded beforehand (not
    /// timed; all held in memory), to measure the network rate (no rows).
    #[arg(long, conflicts_with = "decode_only")]
    network_only: bool,
    /// No progress bar and no informational messages; the summary and errors still go to stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_probability(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a probability in [0, 1]")),
    }
}

fn parse_target_accuracy(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(a) if a > 0.5 && a < 1.0 => Ok(a),
        _ => Err(format!("`{s}` is not an accuracy in (0.5, 1)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet);
    if let Err(e) = hands_models::interrupt::exit_on_signals(
        "hands-infer",
        "an --output file keeps what it held, a --resume file the rows written so far",
    ) {
        eprintln!("hands-infer: error: cannot handle signals: {e}");
        return ExitCode::from(2);
    }
    match run(&cli) {
        Ok(Delivered::All { failures: 0 }) => ExitCode::SUCCESS,
        Ok(Delivered::All { .. }) => ExitCode::from(1),
        Ok(Delivered::Cut) => ExitCode::from(2),
        Err(e) => {
            eprintln!("hands-infer: error: {e:#}");
            if std::env::var("HANDS_LOG").is_ok_and(|level| level == "debug") {
                eprintln!("{e:?}"); // the cause chain, and the backtrace when one was captured
            }
            ExitCode::from(2)
        }
    }
}

/// What a run delivered.
enum Delivered {
    /// A row for every image; `failures` of them errors.
    All { failures: usize },
    /// The output was closed before the last row (the summary says so).
    Cut,
}

fn init_logging(quiet: bool) {
    hands_models::logging::init(if quiet { "warn" } else { "hands_infer=info" });
}

/// Runs the command; returns what it delivered.
fn run(cli: &Cli) -> anyhow::Result<Delivered> {
    let threads = cli.threads.map(|t| t as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let model = resolve_model(cli.model.as_deref());
    let mut collected = collect_images(cli)?;
    let options = Options {
        device: cli.device,
        threads: Some(threads),
        ort_library: cli.ort_lib.clone(),
        min_confidence: cli.min_confidence,
        target_accuracy: cli.target_accuracy,
    };
    let predictor = match &model {
        Some(path) => Predictor::open_with(path, &options)?,
        None => Predictor::default_model(&options)?,
    };
    pipeline::check_batch(&predictor, cli.batch as usize)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("decode-{i}"))
        .build()
        .context("cannot start decoding threads")?;
    let start = Instant::now();
    if cli.decode_only {
        return Ok(decode_only(&predictor, &collected, &pool, threads));
    }
    if cli.network_only {
        return network_only(cli, &predictor, &collected, &pool, threads);
    }
    let explainer = match &cli.explain {
        Some(dir) => Some(explainer(cli, dir, &mut collected)?),
        None => None,
    };
    let mut groups = match (&cli.group_by, &cli.groups) {
        (Some(by), Some(path)) => Some(groups(cli, by, path, &collected, &predictor)?),
        _ => None,
    };
    let (counts, resumed) = predict_to_output(
        cli,
        &predictor,
        &mut collected,
        &pool,
        &explainer,
        &mut groups,
    )?;
    if let (Some(groups), Some(path)) = (&groups, &cli.groups) {
        let csv = groups.csv(
            predictor.labels(),
            predictor.min_confidence(),
            predictor.card().group_temperature(),
        )?;
        write_atomic(path, &csv)?;
    }
    eprintln!(
        "{}",
        summary(cli, &predictor, &collected, counts, resumed, start, threads)
    );
    Ok(if counts.output_closed {
        Delivered::Cut
    } else {
        Delivered::All {
            failures: counts.failures,
        }
    })
}

/// `--decode-only`: decodes and preprocesses every image and says how fast.
fn decode_only(
    predictor: &Predictor,
    collected: &files::Collected,
    pool: &rayon::ThreadPool,
    threads: usize,
) -> Delivered {
    let start = Instant::now();
    let images = collected.files.len();
    let failures = pipeline::decode_files(predictor, &collected.files, pool);
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "hands-infer: decoded {images} images ({failures} failures) in {seconds:.2} s: {:.1} images/s (decode only, {threads} threads, input {size}x{size})",
        images as f64 / seconds,
        size = predictor.input_size()
    );
    Delivered::All { failures }
}

/// `--network-only`: runs the network on the images decoded beforehand and says how fast.
fn network_only(
    cli: &Cli,
    predictor: &Predictor,
    collected: &files::Collected,
    pool: &rayon::ThreadPool,
    threads: usize,
) -> anyhow::Result<Delivered> {
    let batch = cli.batch as usize;
    let run = pipeline::network_only(predictor, &collected.files, pool, batch)?;
    eprintln!(
        "hands-infer: ran the network on {} images ({} failures) in {:.2} s: {:.1} images/s (network only, {threads} threads, batch {batch})",
        run.images,
        run.failures,
        run.seconds,
        run.images as f64 / run.seconds
    );
    Ok(Delivered::All {
        failures: run.failures,
    })
}

/// `--explain DIR`: the explainer, with the explanations an earlier run left in DIR taken
/// out of the images (files named on the command line are the user's photos, whatever
/// their names).
fn explainer(cli: &Cli, dir: &Path, collected: &mut files::Collected) -> anyhow::Result<Explainer> {
    let before = collected.files.len();
    collected
        .files
        .retain(|f| cli.paths.contains(f) || !is_explanation_in(f, dir));
    let earlier = before - collected.files.len();
    if earlier > 0 {
        tracing::info!(
            "left out {earlier} explanations in {} (outputs of an earlier run, not photos)",
            dir.display()
        );
    }
    Explainer::new(dir, &cli.paths, &collected.files)
}

/// `--group-by BY --groups PATH`: the groups of the images, once PATH is known not to be an
/// input or the --output.
fn groups(
    cli: &Cli,
    by: &GroupBy,
    path: &Path,
    collected: &files::Collected,
    predictor: &Predictor,
) -> anyhow::Result<Groups> {
    refuse_inputs(path, &cli.paths, &collected.files, predictor)?;
    if let GroupBy::Csv(csv) = by {
        ensure_not_input(path, &[csv.as_path()])?;
    }
    if cli.output.as_deref() == Some(path) {
        bail!(
            "--groups and --output name the same file {}",
            path.display()
        );
    }
    Groups::new(by, &collected.files)
}

/// The image files the arguments name; refused when there is none (and no folder failed).
fn collect_images(cli: &Cli) -> anyhow::Result<files::Collected> {
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
    Ok(collected)
}

/// Predicts every collected image into the output --output, --resume or stdout names (with
/// --resume, the images already in the output are dropped from `collected` first); returns
/// what the rows said and how many images the resumed output already held.
fn predict_to_output(
    cli: &Cli,
    predictor: &Predictor,
    collected: &mut files::Collected,
    pool: &rayon::ThreadPool,
    explainer: &Option<Explainer>,
    groups: &mut Option<Groups>,
) -> anyhow::Result<(Counts, usize)> {
    let mut resumed = 0;
    let model = predictor.identity();
    let counts = match (&cli.output, &cli.resume) {
        (Some(path), _) => {
            refuse_inputs(path, &cli.paths, &collected.files, predictor)?;
            let _lock = lock_output(path)?;
            let file = OutputFile::create(path)?;
            let rows = RowWriter::new(cli.format, file, predictor.labels(), model, false)?;
            let (counts, file) =
                write_rows(cli, predictor, collected, pool, rows, explainer, groups)?;
            if let Some(file) = file {
                file.commit()?;
            }
            counts
        }
        (None, Some(path)) => {
            refuse_inputs(path, &cli.paths, &collected.files, predictor)?;
            let _lock = lock_output(path)?;
            let earlier = resume::open(path, cli.format, predictor.labels(), model)?;
            let before = collected.files.len();
            collected.files.retain(|f| !earlier.done.contains(f));
            resumed = before - collected.files.len();
            let out = BufWriter::new(earlier.file);
            let rows = RowWriter::new(
                earlier.format,
                out,
                predictor.labels(),
                model,
                earlier.continued,
            )?;
            let (counts, out) =
                write_rows(cli, predictor, collected, pool, rows, explainer, groups)?;
            if let Some(out) = out {
                out.into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            counts
        }
        (None, None) => {
            let stdout = BufWriter::new(std::io::stdout().lock());
            let rows = RowWriter::new(cli.format, stdout, predictor.labels(), model, false)?;
            write_rows(cli, predictor, collected, pool, rows, explainer, groups)?.0
        }
    };
    Ok((counts, resumed))
}

/// Holds the lock of the output file `path` for the run (a second hands-infer writing it is
/// refused, naming this one); a pipe or device needs none.
fn lock_output(path: &Path) -> anyhow::Result<Option<RunLock>> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Ok(None);
    }
    Ok(Some(RunLock::file(path)?))
}

/// The closing line: images, failures, abstentions, rate, provider and what was skipped.
fn summary(
    cli: &Cli,
    predictor: &Predictor,
    collected: &files::Collected,
    counts: Counts,
    resumed: usize,
    start: Instant,
    threads: usize,
) -> String {
    let images = collected.files.len();
    let seconds = start.elapsed().as_secs_f64();
    if counts.output_closed {
        // Rows past the closing were neither predicted nor written: no rate to report.
        return format!(
            "hands-infer: error: the output was closed before the last of {images} rows: the run stopped after {seconds:.2} s, incomplete"
        );
    }
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
    if resumed > 0 {
        skipped += &format!(", {resumed} images already in the resumed output skipped");
    }
    let uncertain = match (predictor.coverage(), predictor.min_confidence()) {
        (Some(point), _) => format!(
            ", {} uncertain (below {:.2}: the model card expects {:.1}% of photos kept at \
             accuracy {:.3})",
            counts.uncertain,
            point.threshold,
            100.0 * point.kept,
            point.accuracy
        ),
        (None, Some(p)) => format!(", {} uncertain (below {p})", counts.uncertain),
        (None, None) => String::new(),
    };
    format!(
        "hands-infer: {images} images, {} failures{uncertain} in {seconds:.2} s: {:.1} images/s ({}, batch {}, {threads} threads{skipped})",
        counts.failures,
        images as f64 / seconds,
        predictor.execution_provider(),
        cli.batch,
    )
}

/// What the rows said.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Images that could not be predicted (and unreadable folders).
    failures: usize,
    /// Predictions below --min-confidence.
    uncertain: usize,
    /// The reader closed the output (e.g. `head`) before the last row.
    output_closed: bool,
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
    let fixed = predictor
        .path()
        .into_iter()
        .chain([predictor.ort_library()]);
    let inputs: Vec<&Path> = fixed
        .chain(paths.iter().chain(images).map(PathBuf::as_path))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() || m.is_dir()))
        .collect();
    ensure_not_input(output, &inputs)?;
    Ok(())
}

/// Writes one row per unreadable folder and per image with `writer` (and an explanation per
/// predicted image with `explainer`). Returns the counts and the writer's output, or no
/// output when the reader closed the pipe early.
fn write_rows<W: Write>(
    cli: &Cli,
    predictor: &Predictor,
    collected: &files::Collected,
    pool: &rayon::ThreadPool,
    mut writer: RowWriter<W>,
    explainer: &Option<Explainer>,
    groups: &mut Option<Groups>,
) -> anyhow::Result<(Counts, Option<W>)> {
    let progress = progress_bar(collected.files.len() as u64, cli.quiet);
    let mut counts = Counts::default();
    let mut write_error = None;
    let mut sink = |mut outcome: Outcome| {
        if let (Some(explainer), Ok(prediction)) = (explainer, &outcome.result) {
            // An explanation that cannot be written fails its image, not the run.
            if let Err(e) = explainer.explain(predictor, &outcome.path, prediction) {
                outcome.result = Err(e);
            }
        }
        if let Some(groups) = groups.as_mut() {
            groups.add(&outcome);
        }
        match &outcome.result {
            Err(e) => {
                counts.failures += 1;
                progress.suspend(|| tracing::warn!("{}", describe_error(&outcome.path, e)));
            }
            Ok(prediction) => counts.uncertain += usize::from(!prediction.confident),
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
        Ok(out) => Ok((counts, out)),
        // The reader (e.g. `head`) has seen enough.
        Err(e) if is_broken_pipe(&e) => {
            counts.output_closed = true;
            Ok((counts, None))
        }
        Err(e) => Err(e.context("cannot write the output")),
    }
}

/// The end of an explanation's file name.
const EXPLANATION_SUFFIX: &str = ".explain.png";

/// Whether `path` is an explanation that `--explain DIR` writes (an earlier run's, among
/// the images listed, is an output of hands-infer, not a photo).
fn is_explanation_in(path: &Path, dir: &Path) -> bool {
    let named = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(EXPLANATION_SUFFIX));
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    named
        && matches!(
            (std::fs::canonicalize(parent), std::fs::canonicalize(dir)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// `--explain DIR`: one PNG per predicted image, never over one of the run's inputs.
struct Explainer {
    dir: PathBuf,
    inputs: InputSet,
    /// File names given out so far, so two images of the same name get two files.
    names: std::cell::RefCell<std::collections::HashSet<std::ffi::OsString>>,
}

impl Explainer {
    fn new(dir: &Path, paths: &[PathBuf], images: &[PathBuf]) -> anyhow::Result<Explainer> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--explain {}: cannot create the folder", dir.display()))?;
        let inputs: Vec<&PathBuf> = paths.iter().chain(images).collect();
        Ok(Explainer {
            dir: dir.to_path_buf(),
            inputs: InputSet::new(&inputs),
            names: Default::default(),
        })
    }

    /// Writes the explanation of `prediction` for the image at `path`; an error names the
    /// explanation file and what kept it from being written.
    fn explain(
        &self,
        predictor: &Predictor,
        path: &Path,
        prediction: &Prediction,
    ) -> Result<(), hands_infer::Error> {
        let bytes = preprocess::read_image_file(path)?;
        let input = predictor.preprocess_bytes(&bytes, path)?;
        let explanation = predictor.explain(&input)?;
        debug_assert_eq!(explanation.prediction.index, prediction.index);
        let photo = preprocess::decode_oriented(&bytes, u32::MAX, path)?;
        let painted = explain::overlay(&photo, &explanation);
        let target = self.dir.join(self.file_name(path));
        let failed = |reason: String| {
            hands_infer::Error::Image(hands_models::Error::Image {
                path: target.clone(),
                reason: format!(
                    "cannot write the explanation of {}: {reason}",
                    path.display()
                ),
            })
        };
        self.inputs
            .ensure_not_input(&target)
            .map_err(|e| failed(e.to_string()))?;
        let mut png = Vec::new();
        painted
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| failed(e.to_string()))?;
        write_atomic(&target, &png).map_err(|e| match e {
            hands_models::Error::Io { error, .. } => failed(error.to_string()),
            other => failed(other.to_string()),
        })
    }

    /// `NAME.explain.png` for an image named NAME, `NAME.K.explain.png` for the K-th image
    /// of that name in this run.
    fn file_name(&self, path: &Path) -> std::ffi::OsString {
        let name = path.file_name().unwrap_or(path.as_os_str());
        let mut names = self.names.borrow_mut();
        let mut k = 1;
        loop {
            let mut candidate = name.to_os_string();
            if k > 1 {
                candidate.push(format!(".{k}"));
            }
            candidate.push(EXPLANATION_SUFFIX);
            if names.insert(candidate.clone()) {
                return candidate;
            }
            k += 1;
        }
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

/// `--model`, else `$HANDS_MODEL`; `None`: the shipped model built in.
fn resolve_model(given: Option<&Path>) -> Option<PathBuf> {
    given.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("HANDS_MODEL")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
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
