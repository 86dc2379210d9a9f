//! The predictor: one ONNX Runtime session, the model card, and preprocessing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hands_models::calibration::{threshold_for, CoveragePoint};
use hands_models::card::{ModelCard, CARD_METADATA_KEY};
use hands_models::graph::{argmax, INPUT_NAME, LOGITS_NAME, PROBABILITIES_NAME};
use hands_models::preprocess;
use hands_models::seal::{self, Seal, SealCheck, SEAL_METADATA_KEY};
use image::DynamicImage;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorRef, ValueType};
use rayon::prelude::*;

use crate::device::{self, ExecutionProvider};
use crate::runtime;
use crate::DeviceChoice;
use crate::Error;

/// The shipped default model (`models/pretrained/hands.onnx`), embedded in the library so
/// that an installed `hands-infer` and an app need no model file.
const DEFAULT_MODEL: &[u8] = include_bytes!("../../models/pretrained/hands.onnx");

/// How the embedded default model is named in messages and by [`Predictor::name`].
pub const DEFAULT_MODEL_NAME: &str = "<embedded default model: models/pretrained/hands.onnx>";

/// The label of a prediction whose most probable label is less likely than
/// [`Options::min_confidence`].
pub const UNCERTAIN: &str = "uncertain";

/// How far the probabilities of one image may sum from 1 before the row is refused.
pub const PROBABILITY_SUM_TOLERANCE: f32 = 1e-3;

/// The memory a batch of images may take, in bytes (2 GiB): [`Predictor::max_batch`] divides
/// it by [`Predictor::bytes_per_image`].
pub const BATCH_MEMORY_BUDGET: u64 = 2 << 30;
/// Float planes of the network's input size that one image of a batch takes inside ONNX
/// Runtime, per channel of the first cell (`init_channels` of the card). Measured with the
/// shipped model (init_channels 12, input 32): peak memory grew by 1.0 to 1.3 MB per image
/// between batches 8, 256 and 787, 20 to 26 planes per channel; ONNX Runtime's arena grows
/// in powers of two, so twice that is allowed.
const ACTIVATION_PLANES_PER_CHANNEL: u64 = 48;

/// How [`Predictor::open_with`] sets up the session.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to run the network (default: `auto`).
    pub device: DeviceChoice,
    /// Threads ONNX Runtime uses inside an operator; `None` lets it choose (all cores).
    pub threads: Option<usize>,
    /// The ONNX Runtime library to load before searching, see [`crate::runtime`].
    pub ort_library: Option<PathBuf>,
    /// Abstain below this probability: a prediction whose most probable label is less
    /// likely is labelled [`UNCERTAIN`] (its probabilities are kept). `None`: always answer.
    /// Must lie in [0, 1].
    pub min_confidence: Option<f32>,
    /// Abstain so as to reach this accuracy: the threshold is the lowest confidence at which
    /// the model card's cross-validated accuracy-coverage curve reaches it (a calibrated
    /// card has one, see `hands-search calibrate`). In (0.5, 1); one of this and
    /// `min_confidence`.
    pub target_accuracy: Option<f64>,
}

impl Default for Options {
    /// CUDA when the build and the machine have it (else the CPU), ONNX Runtime's threads,
    /// the library found on its own, no abstention.
    fn default() -> Options {
        Options {
            device: DeviceChoice::Auto,
            threads: None,
            ort_library: None,
            min_confidence: None,
            target_accuracy: None,
        }
    }
}

/// Where the time for one prediction went.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timing {
    /// Reading, decoding, resizing and normalising this image.
    pub preprocess: Duration,
    /// Running the network on the whole batch this image was part of.
    pub inference: Duration,
    /// Images in that batch.
    pub batch: usize,
}

/// The network's answer for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The most probable label, or [`UNCERTAIN`] when its probability is below
    /// [`Options::min_confidence`].
    pub label: String,
    /// The index of the most probable label in [`Predictor::labels`] (also when uncertain).
    pub index: usize,
    /// Whether the most probable label reaches [`Options::min_confidence`] (always true
    /// without one).
    pub confident: bool,
    /// Probability of each label, in the order of [`Predictor::labels`].
    pub probabilities: Vec<f32>,
    /// Where the time went.
    pub timing: Timing,
}

/// An image ready for the network: normalised CHW floats of the model's input size.
#[derive(Debug, Clone)]
pub struct Input {
    data: Vec<f32>,
    preprocess: Duration,
}

impl Input {
    /// An input preprocessed elsewhere: `data` normalised as the model card says,
    /// channel-major (`3 * size * size` values; the predictor checks the length).
    pub fn from_data(data: Vec<f32>) -> Input {
        Input {
            data,
            preprocess: Duration::ZERO,
        }
    }

    /// The normalised pixels, channel-major (`3 * size * size` values).
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Time spent producing it.
    pub fn preprocess_time(&self) -> Duration {
        self.preprocess
    }

    /// A copy whose `patch` x `patch` square at column `x`, row `y` of each `side` x `side`
    /// plane is 0, the training mean colour (see [`crate::explain`]).
    pub(crate) fn masked(&self, side: usize, x: usize, y: usize, patch: usize) -> Input {
        let mut data = self.data.clone();
        for plane in data.chunks_exact_mut(side * side) {
            for row in plane.chunks_exact_mut(side).skip(y).take(patch) {
                row[x..x + patch].fill(0.0);
            }
        }
        Input {
            data,
            preprocess: self.preprocess,
        }
    }
}

/// The graph's outputs for one input, as ONNX Runtime returns them.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// The classifier's logits, when the graph has a `logits` output (hands-export writes
    /// one).
    pub logits: Option<Vec<f32>>,
    /// The probabilities per label.
    pub probabilities: Vec<f32>,
}

/// A loaded model, ready to predict. `Send + Sync`: share one behind an `Arc` or a reference;
/// runs of the single ONNX Runtime session are serialised, each using the session's threads.
#[derive(Debug)]
pub struct Predictor {
    session: Mutex<Session>,
    card: ModelCard,
    /// The model file; `None` for a model opened from memory.
    file: Option<PathBuf>,
    /// The model file, or what stands for it in messages.
    name: PathBuf,
    provider: ExecutionProvider,
    fixed_batch: Option<usize>,
    library: PathBuf,
    min_confidence: Option<f32>,
    /// The point of the card's accuracy-coverage curve `target_accuracy` chose.
    coverage: Option<CoveragePoint>,
    /// The CRC-32 of the model's bytes (8 hex digits).
    identity: String,
}

/// Refuses a minimum confidence outside [0, 1], a target accuracy outside (0.5, 1), and both
/// at once (they set the same threshold).
fn check_thresholds(options: &Options) -> Result<(), Error> {
    if let Some(p) = options.min_confidence {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Usage(format!(
                "minimum confidence {p} is not a probability in [0, 1]"
            )));
        }
    }
    if let Some(target) = options.target_accuracy {
        if options.min_confidence.is_some() {
            return Err(Error::Usage(
                "a minimum confidence and a target accuracy set the same threshold: give one"
                    .into(),
            ));
        }
        if !(target > 0.5 && target < 1.0) {
            return Err(Error::Usage(format!(
                "target accuracy {target} is not in (0.5, 1)"
            )));
        }
    }
    Ok(())
}

/// The point of `card`'s accuracy-coverage curve with the lowest threshold whose accuracy is
/// at least `target`; refused, in words, without a curve or above its best accuracy.
fn coverage_for(card: &ModelCard, target: f64) -> Result<CoveragePoint, String> {
    let curve = card
        .calibration
        .as_ref()
        .map(|c| c.coverage.as_slice())
        .filter(|curve| !curve.is_empty())
        .ok_or_else(|| {
            "its card has no accuracy-coverage curve, which a target accuracy needs (calibrate \
             the model with `hands-search calibrate`, or give a minimum confidence instead)"
                .to_string()
        })?;
    threshold_for(curve, target).cloned().map_err(|best| {
        format!(
            "no confidence threshold reaches accuracy {target} on its card's curve; the best \
             reachable is {best:.4}"
        )
    })
}

/// Converts any `ort` error (including the builder's recoverable ones) into ours.
pub(crate) fn ort_error<R>(e: ort::Error<R>) -> Error {
    Error::Inference(e.to_string())
}

/// An ONNX Runtime session of the graph `bytes` (named `name` in errors) as `options` ask:
/// the library loaded, full graph optimisation, no spinning, the threads and the execution
/// provider; with the provider registered and the runtime it runs in.
pub(crate) fn open_session(
    bytes: &[u8],
    name: &Path,
    options: &Options,
) -> Result<(Session, ExecutionProvider, &'static runtime::Runtime), Error> {
    let runtime = runtime::runtime(options.ort_library.as_deref())?;
    let mut builder = Session::builder(&runtime.environment)
        .map_err(ort_error)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(ort_error)?
        // Spinning workers would take the cores the image decoders need.
        .with_intra_op_spinning(false)
        .map_err(ort_error)?;
    if let Some(threads) = options.threads {
        builder = builder.with_intra_threads(threads).map_err(ort_error)?;
    }
    let provider = device::register(options.device, &mut builder)?;
    let session = builder
        .commit_from_memory(bytes)
        .map_err(|e| Error::model(name, format!("ONNX Runtime cannot load it: {e}")))?;
    Ok((session, provider, runtime))
}

/// An estimate of the memory one image of a batch takes, in bytes, for a network of
/// `init_channels` on `size` x `size` inputs: its input floats three times (the decoded
/// batch waiting, the batch being decoded, the session's input tensor) and the network's
/// activations inside ONNX Runtime, which grow with `init_channels`
/// (`ACTIVATION_PLANES_PER_CHANNEL` planes per channel).
pub fn bytes_per_image(size: u32, init_channels: usize) -> u64 {
    let plane = 4 * u64::from(size).pow(2);
    plane * (3 * 3 + ACTIVATION_PLANES_PER_CHANNEL * init_channels as u64)
}

/// The largest batch of such a network whose images fit in [`BATCH_MEMORY_BUDGET`] (at
/// least 1).
pub fn max_batch(size: u32, init_channels: usize) -> usize {
    (BATCH_MEMORY_BUDGET / bytes_per_image(size, init_channels)).max(1) as usize
}

impl Predictor {
    /// Opens `model` with default [`Options`] (device `auto`, all cores).
    pub fn open(model: impl AsRef<Path>) -> Result<Predictor, Error> {
        Predictor::open_with(model, &Options::default())
    }

    /// Opens the shipped default model embedded in the library (see [`DEFAULT_MODEL_NAME`]).
    pub fn default_model(options: &Options) -> Result<Predictor, Error> {
        Predictor::from_bytes(DEFAULT_MODEL, Path::new(DEFAULT_MODEL_NAME), options)
    }

    /// Opens `model`: loads ONNX Runtime if needed, reads the model card from the ONNX
    /// metadata, registers the execution provider and checks that the graph's input and
    /// output match the card. A mismatch is refused here rather than at the first
    /// prediction.
    pub fn open_with(model: impl AsRef<Path>, options: &Options) -> Result<Predictor, Error> {
        let path = model.as_ref();
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(Error::model(path, "not a regular file, not a model")),
            Err(_) => return Err(Error::model(path, "model file not found")),
        }
        let bytes =
            std::fs::read(path).map_err(|e| Error::model(path, format!("cannot read it: {e}")))?;
        let mut predictor = Predictor::from_bytes(&bytes, path, options)?;
        predictor.file = Some(path.to_path_buf());
        Ok(predictor)
    }

    /// Opens a model held in memory, as [`Predictor::open_with`] opens a file; `name` stands
    /// for it in errors and in [`Predictor::name`].
    pub fn from_bytes(bytes: &[u8], name: &Path, options: &Options) -> Result<Predictor, Error> {
        check_thresholds(options)?;
        let (session, provider, runtime) = open_session(bytes, name, options)?;
        let card_json = session
            .metadata()
            .map_err(ort_error)?
            .custom(CARD_METADATA_KEY)
            .ok_or_else(|| {
                Error::model(
                    name,
                    format!("no model card (metadata_props key `{CARD_METADATA_KEY}`)"),
                )
            })?;
        let card =
            ModelCard::from_json(&card_json).map_err(|e| Error::model(name, e.to_string()))?;
        let stored_seal = session
            .metadata()
            .map_err(ort_error)?
            .custom(SEAL_METADATA_KEY);
        let computed = Seal::of_card(&card_json).finish();
        let checked =
            seal::check(stored_seal.as_deref(), computed).map_err(|r| Error::model(name, r))?;
        if checked == SealCheck::Unsealed {
            tracing::warn!("{}", seal::unsealed_warning(name));
        }
        let abstains = options.min_confidence.is_some() || options.target_accuracy.is_some();
        if abstains && card.labels.iter().any(|l| l == UNCERTAIN) {
            return Err(Error::model(
                name,
                format!("a label is named `{UNCERTAIN}`, which --min-confidence uses to abstain"),
            ));
        }
        let coverage = options
            .target_accuracy
            .map(|target| coverage_for(&card, target).map_err(|r| Error::model(name, r)))
            .transpose()?;
        let min_confidence = match &coverage {
            Some(point) => Some(point.threshold as f32),
            None => options.min_confidence,
        };
        let fixed_batch = check_signature(&session, &card).map_err(|r| Error::model(name, r))?;
        crate::graph::check_softmax_output(bytes, PROBABILITIES_NAME)
            .map_err(|r| Error::model(name, r))?;
        tracing::info!(
            model = %name.display(),
            provider = %provider,
            library = %runtime.library().display(),
            "opened model"
        );
        Ok(Predictor {
            session: Mutex::new(session),
            card,
            file: None,
            name: name.to_path_buf(),
            provider,
            fixed_batch,
            library: runtime.library().to_path_buf(),
            min_confidence,
            coverage,
            identity: format!("{:08x}", crc32fast::hash(bytes)),
        })
    }

    /// What tells this model's outputs from another's: the CRC-32 of the ONNX file's bytes,
    /// as 8 hex digits (`hands-infer` writes it on every row).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The model card read from the file.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Output labels, in the order of [`Prediction::probabilities`].
    pub fn labels(&self) -> &[String] {
        &self.card.labels
    }

    /// Side of the square input image in pixels.
    pub fn input_size(&self) -> u32 {
        self.card.input.size
    }

    /// The model file; `None` for a model opened from memory (the embedded default one).
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The model file, or what stands for a model opened from memory, for messages.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// The probability below which a prediction is [`UNCERTAIN`], if any.
    pub fn min_confidence(&self) -> Option<f32> {
        self.min_confidence
    }

    /// The point of the card's accuracy-coverage curve that [`Options::target_accuracy`]
    /// chose: its threshold, the share of images the cross-validation kept at it and their
    /// accuracy.
    pub fn coverage(&self) -> Option<&CoveragePoint> {
        self.coverage.as_ref()
    }

    /// The execution provider the session runs on.
    pub fn execution_provider(&self) -> ExecutionProvider {
        self.provider
    }

    /// The ONNX Runtime library in use.
    pub fn ort_library(&self) -> &Path {
        &self.library
    }

    /// An estimate of the memory one image of a batch takes, in bytes
    /// ([`bytes_per_image`] of the card's input size and `init_channels`).
    pub fn bytes_per_image(&self) -> u64 {
        bytes_per_image(self.card.input.size, self.card.network.init_channels)
    }

    /// The largest batch whose images fit in [`BATCH_MEMORY_BUDGET`] (at least 1).
    pub fn max_batch(&self) -> usize {
        max_batch(self.card.input.size, self.card.network.init_channels)
    }

    /// Preprocesses an encoded image (JPEG, PNG, BMP, WebP) exactly as training does.
    /// `name` only labels errors.
    pub fn preprocess_bytes(&self, bytes: &[u8], name: &Path) -> Result<Input, Error> {
        let start = Instant::now();
        let mut data = vec![0.0; self.input_len()];
        preprocess::decode_input_into(bytes, &self.card.input, name, &mut data)?;
        Ok(Input {
            data,
            preprocess: start.elapsed(),
        })
    }

    /// Reads (regular files of a bounded size only, see
    /// [`preprocess::read_image_file`]) and preprocesses an image file.
    pub fn preprocess_path(&self, path: &Path) -> Result<Input, Error> {
        let start = Instant::now();
        let bytes = preprocess::read_image_file(path)?;
        let mut input = self.preprocess_bytes(&bytes, path)?;
        input.preprocess = start.elapsed();
        Ok(input)
    }

    /// Preprocesses an already decoded image (its orientation is taken as it is).
    pub fn preprocess_image(&self, image: &DynamicImage) -> Result<Input, Error> {
        let start = Instant::now();
        let resized = preprocess::resize_image(image, self.card.input.size).map_err(|reason| {
            hands_models::Error::Image {
                path: PathBuf::from("<image>"),
                reason,
            }
        })?;
        let mut data = vec![0.0; self.input_len()];
        preprocess::normalise_into(
            &resized,
            self.card.input.mean,
            self.card.input.std,
            &mut data,
        );
        Ok(Input {
            data,
            preprocess: start.elapsed(),
        })
    }

    /// Predicts on one decoded image.
    pub fn predict_image(&self, image: &DynamicImage) -> Result<Prediction, Error> {
        let input = self.preprocess_image(image)?;
        Ok(self.predict_inputs(&[&input])?.remove(0))
    }

    /// Predicts on decoded images, as one batch.
    pub fn predict_images(&self, images: &[DynamicImage]) -> Result<Vec<Prediction>, Error> {
        let inputs = images
            .par_iter()
            .map(|image| self.preprocess_image(image))
            .collect::<Result<Vec<_>, _>>()?;
        self.predict_inputs(&inputs.iter().collect::<Vec<_>>())
    }

    /// Predicts on one encoded image held in memory.
    pub fn predict_bytes(&self, bytes: &[u8]) -> Result<Prediction, Error> {
        let input = self.preprocess_bytes(bytes, Path::new("<bytes>"))?;
        Ok(self.predict_inputs(&[&input])?.remove(0))
    }

    /// Predicts on one image file.
    pub fn predict_path(&self, path: impl AsRef<Path>) -> Result<Prediction, Error> {
        let input = self.preprocess_path(path.as_ref())?;
        Ok(self.predict_inputs(&[&input])?.remove(0))
    }

    /// Predicts on many image files: decoded in parallel (on the current rayon pool) and run
    /// in batches of 64. One result per path, in order; a file that cannot be read or
    /// decoded gets its error and the others are still predicted.
    pub fn predict_paths<P: AsRef<Path> + Sync>(
        &self,
        paths: &[P],
    ) -> Result<Vec<Result<Prediction, Error>>, Error> {
        let mut out = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(64) {
            let inputs: Vec<Result<Input, Error>> = chunk
                .par_iter()
                .map(|p| self.preprocess_path(p.as_ref()))
                .collect();
            out.extend(self.predict_results(inputs)?);
        }
        Ok(out)
    }

    /// Runs the network on decoded inputs that may contain failures, keeping their order:
    /// failed inputs pass through, the rest are predicted as one batch; an image whose
    /// output is not a probability distribution gets an [`Error::Output`].
    pub fn predict_results(
        &self,
        inputs: Vec<Result<Input, Error>>,
    ) -> Result<Vec<Result<Prediction, Error>>, Error> {
        let ok: Vec<&Input> = inputs.iter().filter_map(|r| r.as_ref().ok()).collect();
        let mut predictions = if ok.is_empty() {
            Vec::new()
        } else {
            self.predict_rows(&ok)?
        }
        .into_iter();
        Ok(inputs
            .into_iter()
            .map(|input| input.and_then(|_| predictions.next().expect("one prediction per input")))
            .collect())
    }

    /// Runs the network on preprocessed inputs, as one batch (or several when the model
    /// has a fixed batch size). An output that is not a probability distribution (not
    /// finite, outside [0, 1], not summing to 1) is an [`Error::Output`] for the whole call.
    pub fn predict_inputs(&self, inputs: &[&Input]) -> Result<Vec<Prediction>, Error> {
        self.predict_rows(inputs)?.into_iter().collect()
    }

    /// One result per input: a prediction, or why its output cannot be trusted.
    fn predict_rows(&self, inputs: &[&Input]) -> Result<Vec<Result<Prediction, Error>>, Error> {
        let step = self.fixed_batch.unwrap_or(inputs.len().max(1));
        let mut out = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(step) {
            let start = Instant::now();
            let outputs = self.run(chunk)?;
            let inference = start.elapsed();
            let probabilities = outputs.into_iter().map(|o| o.probabilities);
            for (input, probs) in chunk.iter().zip(probabilities) {
                out.push(check_probabilities(&probs).map(|()| {
                    let index = argmax(&probs);
                    let confident = self.min_confidence.is_none_or(|p| probs[index] >= p);
                    Prediction {
                        label: if confident {
                            self.card.labels[index].clone()
                        } else {
                            UNCERTAIN.to_string()
                        },
                        index,
                        confident,
                        probabilities: probs,
                        timing: Timing {
                            preprocess: input.preprocess,
                            inference,
                            batch: chunk.len(),
                        },
                    }
                }));
            }
        }
        Ok(out)
    }

    fn input_len(&self) -> usize {
        let size = self.card.input.size as usize;
        3 * size * size
    }

    /// The graph's raw outputs on preprocessed inputs (one batch, or several when the model
    /// has a fixed batch size), unchecked: for comparing the graph with another
    /// implementation of the network, as hands-export's parity check does.
    pub fn outputs(&self, inputs: &[&Input]) -> Result<Vec<Outputs>, Error> {
        let step = self.fixed_batch.unwrap_or(inputs.len().max(1));
        let mut out = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(step) {
            out.extend(self.run(chunk)?);
        }
        Ok(out)
    }

    /// One session run; returns the outputs per input.
    fn run(&self, inputs: &[&Input]) -> Result<Vec<Outputs>, Error> {
        let per_image = self.input_len();
        let rows = self.fixed_batch.unwrap_or(inputs.len());
        let mut batch = vec![0f32; rows * per_image];
        for (slot, input) in batch.chunks_exact_mut(per_image).zip(inputs) {
            if input.data.len() != per_image {
                return Err(Error::Usage(format!(
                    "input has {} values, the model takes {per_image}",
                    input.data.len()
                )));
            }
            slot.copy_from_slice(&input.data);
        }
        let size = self.card.input.size as usize;
        let tensor =
            TensorRef::from_array_view(([rows, 3, size, size], &batch[..])).map_err(ort_error)?;
        let labels = self.card.labels.len();
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session
            .run(ort::inputs![INPUT_NAME => tensor])
            .map_err(ort_error)?;
        // Rows of `[rows, labels]` output `name`, one per input.
        let rows_of = |name: &str| -> Result<Option<Vec<Vec<f32>>>, Error> {
            let Some(output) = outputs.get(name) else {
                return Ok(None);
            };
            let (shape, values) = output.try_extract_tensor::<f32>().map_err(ort_error)?;
            if shape.len() != 2 || shape[0] as usize != rows || shape[1] as usize != labels {
                return Err(Error::Inference(format!(
                    "`{name}` has shape {shape:?}, expected [{rows}, {labels}]"
                )));
            }
            Ok(Some(
                values
                    .chunks_exact(labels)
                    .take(inputs.len())
                    .map(<[f32]>::to_vec)
                    .collect(),
            ))
        };
        let probabilities = rows_of(PROBABILITIES_NAME)?.ok_or_else(|| {
            Error::Inference(format!(
                "the model returned no `{PROBABILITIES_NAME}` output"
            ))
        })?;
        let mut logits = rows_of(LOGITS_NAME)?.map(Vec::into_iter);
        Ok(probabilities
            .into_iter()
            .map(|probabilities| Outputs {
                logits: logits.as_mut().and_then(Iterator::next),
                probabilities,
            })
            .collect())
    }
}

/// Refuses an output row that is not a probability distribution: every value finite and in
/// [0, 1], the sum within [`PROBABILITY_SUM_TOLERANCE`] of 1.
fn check_probabilities(values: &[f32]) -> Result<(), Error> {
    let fail = |what: &str| {
        Err(Error::Output(format!(
            "the model's output {values:?} {what}, so it is not a probability distribution"
        )))
    };
    if values.iter().any(|v| !v.is_finite()) {
        return fail("is not finite");
    }
    if values.iter().any(|v| !(0.0..=1.0).contains(v)) {
        return fail("has values outside [0, 1]");
    }
    let sum: f32 = values.iter().sum();
    if (sum - 1.0).abs() > PROBABILITY_SUM_TOLERANCE {
        return fail(&format!("sums to {sum}"));
    }
    Ok(())
}

/// Checks the graph against the card: one float input `image` of shape
/// `[batch, 3, size, size]` (batch dynamic or fixed) and a float output `probabilities` of
/// shape `[batch, labels]`. Returns the fixed batch size, if any.
fn check_signature(session: &Session, card: &ModelCard) -> Result<Option<usize>, String> {
    let size = card.input.size as i64;
    let [input] = session.inputs() else {
        return Err(format!(
            "the model has {} inputs, expected one named `{INPUT_NAME}`",
            session.inputs().len()
        ));
    };
    if input.name() != INPUT_NAME {
        return Err(format!(
            "the model input is named `{}`, expected `{INPUT_NAME}`",
            input.name()
        ));
    }
    let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
        return Err(format!("input `{INPUT_NAME}` is not a tensor"));
    };
    if *ty != ort::value::TensorElementType::Float32 {
        return Err(format!(
            "input `{INPUT_NAME}` holds {ty:?}, expected float32"
        ));
    }
    let dims: Vec<i64> = shape.iter().copied().collect();
    let expected = format!("[batch, 3, {size}, {size}] as the card says");
    if dims.len() != 4 || dims[1] != 3 || dims[2] != size || dims[3] != size || dims[0] == 0 {
        return Err(format!(
            "input `{INPUT_NAME}` has shape {dims:?}, expected {expected}"
        ));
    }
    let fixed_batch = (dims[0] > 0).then_some(dims[0] as usize);
    let labels = card.labels.len() as i64;
    let output = session
        .outputs()
        .iter()
        .find(|o| o.name() == PROBABILITIES_NAME)
        .ok_or_else(|| format!("the model has no output named `{PROBABILITIES_NAME}`"))?;
    match output.dtype() {
        ValueType::Tensor { ty, shape, .. }
            if *ty == ort::value::TensorElementType::Float32
                && shape.len() == 2
                && (shape[1] == labels || shape[1] < 0) => {}
        other => {
            return Err(format!(
                "output `{PROBABILITIES_NAME}` is {other:?}, expected float32 [batch, {labels}] for the card's labels"
            ))
        }
    }
    Ok(fixed_batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_probability_distributions_are_answers() {
        check_probabilities(&[0.25, 0.75]).unwrap();
        check_probabilities(&[1.0, 0.0]).unwrap();
        check_probabilities(&[0.5, 0.5004]).unwrap();
        for (row, why) in [
            (vec![f32::NAN, f32::NAN], "not finite"),
            (vec![f32::INFINITY, 0.0], "not finite"),
            (vec![2.5, -1.5], "outside [0, 1]"),
            (vec![0.5, 0.6], "sums to"),
        ] {
            let err = check_probabilities(&row).unwrap_err().to_string();
            assert!(err.contains(why), "{row:?}: {err}");
        }
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn predictor_is_send_and_sync() {
        assert_send_sync::<Predictor>();
    }
}
