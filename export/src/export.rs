//! The export itself: check that no output is an input, read and check the model file,
//! lower it to ONNX with BN folded, check the folded weights in candle and the ONNX bytes in
//! ONNX Runtime, time the ONNX graph there for the card, then write the three files.
//!
//! Nothing is written before every check passed. The files are then written to hidden
//! temporary files in the output folder (synced to disk) and renamed to `NAME.safetensors`,
//! `NAME.onnx` and `NAME.card.json` (see [`hands_models::output`]); if a rename fails, the
//! files already renamed are removed, so the folder holds all three new files or none.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use hands_infer::timing::{cpu_model, latency_batches};
use hands_infer::{DeviceChoice, GraphTimer, Options, TimingPlan};
use hands_models::card::{MeasuredLatency, CARD_METADATA_KEY};
use hands_models::nn::model_file::{self, build_network, ModelFile};
use hands_models::nn::network::Network;
use hands_models::output::{ensure_not_input, OutputFile};
use hands_models::seal::{Seal, SEAL_METADATA_KEY};
use hands_models::ModelCard;
use prost::Message;

use crate::onnx::ModelProto;

use crate::lower::{lower, BatchSize, OnnxOptions};
use crate::parity::{
    candle_outputs, compare, image_batch, max_abs_diff, open_predictor, synthetic_batch,
    BatchParity, PARITY_TOLERANCE,
};
use crate::{Error, Result};

/// Batch size of the parity check (besides batch 1) when the batch dimension is dynamic.
pub const PARITY_BATCH: usize = 7;
/// Seed of the synthetic parity inputs.
const PARITY_SEED: u64 = 0x68616e6473;
/// Memory the parity inputs and activations may take, in bytes (estimated from the card
/// before anything is allocated, from its input size and C).
pub const PARITY_MEMORY_BUDGET: u64 = 4 << 30;
/// Bytes of parity-check memory per image, input pixel and channel of C, rounded up from
/// `hands-export --batch N` on the shipped model (peak resident memory 2.1 GB at N = 1024,
/// 32x32, C = 12: 171 bytes; 189 at N = 256).
const PARITY_BYTES_PER_PIXEL_CHANNEL: u64 = 200;

/// Whether and how to run the ONNX Runtime parity check.
#[derive(Debug, Clone)]
pub enum Parity {
    /// Run it, with the ONNX Runtime library found from `ort_lib` (see
    /// [`hands_infer::runtime`]) on `images` (preprocessed as the card says) or,
    /// when empty, on seeded standard-normal inputs.
    Check {
        /// Explicit path of the ONNX Runtime library or its folder.
        ort_lib: Option<PathBuf>,
        /// Images to check on.
        images: Vec<PathBuf>,
    },
    /// Do not run ONNX Runtime (the folded candle network is still checked).
    Skip,
}

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Base name of the output files (`NAME.safetensors`, `NAME.onnx`).
    pub name: String,
    /// The ONNX graph settings.
    pub onnx: OnnxOptions,
    /// The parity check.
    pub parity: Parity,
    /// ONNX Runtime CPU threads to time the exported graph with, at batch 1 and 64 (or its
    /// fixed batch), for the card's `network.latency`; `None` records no latency. Timed only
    /// when the parity check runs, since both need ONNX Runtime.
    pub latency_threads: Option<usize>,
}

/// What an export wrote and measured.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The ONNX file.
    pub onnx: PathBuf,
    /// The inference safetensors file.
    pub safetensors: PathBuf,
    /// The card as pretty-printed JSON, for people (the two model files carry it too).
    pub card_json: PathBuf,
    /// The card stored in both files.
    pub card: ModelCard,
    /// Nodes of the ONNX graph.
    pub nodes: usize,
    /// Initializers of the ONNX graph.
    pub initializers: usize,
    /// BatchNorm layers folded into convolutions.
    pub folded_batch_norms: usize,
    /// Tensors of the input file left out (auxiliary head, optimizer state, ...).
    pub dropped: Vec<String>,
    /// Largest absolute logit difference between the candle network on the folded weights
    /// and on the original ones.
    pub folded_logits_max_abs: f32,
    /// ONNX Runtime against candle, per batch size; empty when skipped.
    pub parity: Vec<BatchParity>,
    /// The ONNX Runtime library used for the parity check.
    pub ort_library: Option<PathBuf>,
}

/// Exports the trained model at `model` into `out_dir`, see the module docs.
pub fn export(model: &Path, out_dir: &Path, options: &ExportOptions) -> Result<ExportReport> {
    validate_name(&options.name)?;
    let batch = options.onnx.batch.check().map_err(|reason| Error::Model {
        path: model.to_path_buf(),
        reason,
    })?;
    let outputs = Outputs::new(out_dir, &options.name);
    outputs.ensure_not_inputs(model, &options.parity)?;
    let file = ModelFile::read(model)?;
    let mut card = exported_card(&file.card);
    let lowered = lower(&card, &file.tensors, &options.onnx).map_err(|e| name_file(e, model))?;

    let batches = match batch {
        BatchSize::Dynamic => vec![1, PARITY_BATCH],
        BatchSize::Fixed(n) => vec![n],
    };
    let inputs = parity_inputs(model, &card, &batches, &options.parity)?;

    let original = file.network(&Device::Cpu)?;
    let folded_list: Vec<(String, Tensor)> = lowered.folded.clone().into_iter().collect();
    let folded_logits_max_abs = check_folding(&card, &folded_list, &original, &inputs)?;

    let onnx_bytes = lowered.model.encode_to_vec();
    let (parity, ort_library) = match &options.parity {
        Parity::Check { ort_lib, .. } => {
            let (parity, library) = check_runtime(
                &onnx_bytes,
                ort_lib.as_deref(),
                &card,
                &original,
                &inputs,
                &batches,
            )?;
            if let Some(threads) = options.latency_threads {
                card.network.latency =
                    measure_latency(&onnx_bytes, &library, &card, batch, threads)?;
            }
            (parity, Some(library))
        }
        _ => (Vec::new(), None),
    };

    // Serialise the files, with the card as measured.
    let mut model_proto = lowered.model;
    set_card(&mut model_proto, &card);
    let onnx_bytes = model_proto.encode_to_vec();
    let safetensors_bytes = model_file::serialize(&folded_list, &card)?;
    let graph = model_proto
        .graph
        .as_ref()
        .expect("lowered model has a graph");
    let (nodes, initializers) = (graph.node.len(), graph.initializer.len());
    let card_pretty = serde_json::to_string_pretty(&card).expect("card serialises") + "\n";

    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    outputs.write(&[
        safetensors_bytes.as_slice(),
        onnx_bytes.as_slice(),
        card_pretty.as_bytes(),
    ])?;
    Ok(ExportReport {
        onnx: outputs.onnx,
        safetensors: outputs.safetensors,
        card_json: outputs.card,
        card,
        nodes,
        initializers,
        folded_batch_norms: lowered.folded_batch_norms,
        dropped: file.dropped,
        folded_logits_max_abs,
        parity,
        ort_library,
    })
}

/// The card an export writes: that of `card`'s network without its auxiliary head, its
/// latency cleared (it was of another export's graph) and its multiply-adds counted when a
/// card written before they were recorded lacks them.
fn exported_card(card: &ModelCard) -> ModelCard {
    let mut card = card.clone();
    card.network.auxiliary = false;
    card.network.latency.clear();
    if card.network.multiply_adds.is_none() {
        card.network.multiply_adds = Some(card.counted_multiply_adds());
    }
    card
}

/// The images of the parity checks, as many as the largest of `batches`: the given photos,
/// or a seeded synthetic batch. Refused when checking them would not fit the memory budget.
fn parity_inputs(
    model: &Path,
    card: &ModelCard,
    batches: &[usize],
    parity: &Parity,
) -> Result<Tensor> {
    let size = card.input.size as usize;
    let largest = *batches.iter().max().expect("at least one batch");
    let needed = parity_memory(card, largest);
    if needed > PARITY_MEMORY_BUDGET {
        return Err(Error::Model {
            path: model.to_path_buf(),
            reason: format!(
                "checking a batch of {largest} at {size}x{size} with C = {} needs about {} MiB, \
                 more than the {} MiB budget; export with a smaller fixed --batch",
                card.network.init_channels,
                needed >> 20,
                PARITY_MEMORY_BUDGET >> 20
            ),
        });
    }
    match parity {
        Parity::Check { images, .. } if !images.is_empty() => {
            image_batch(images, largest, &card.input)
        }
        _ => synthetic_batch(largest, size, PARITY_SEED),
    }
}

/// Checks that the BatchNorm-folded weights compute what the original ones do (in candle);
/// returns the largest logit difference.
fn check_folding(
    card: &ModelCard,
    folded: &[(String, Tensor)],
    original: &Network,
    inputs: &Tensor,
) -> Result<f32> {
    let folded_tensors: HashMap<String, Tensor> = folded.iter().cloned().collect();
    let folded = build_network(card, folded_tensors, &Device::Cpu)?;
    let difference = max_abs_diff(
        &candle_outputs(&folded, inputs, 1.0)?.logits,
        &candle_outputs(original, inputs, 1.0)?.logits,
    );
    if difference > PARITY_TOLERANCE {
        return Err(Error::Parity(format!(
            "BN folding changed the candle logits by {difference:e} (tolerance {PARITY_TOLERANCE:e})"
        )));
    }
    Ok(difference)
}

/// Runs the ONNX bytes to be written through ONNX Runtime (the [`hands_infer::Predictor`]
/// users run) against the original candle network, for each of `batches`; returns the
/// comparisons and the library that ran them.
fn check_runtime(
    onnx_bytes: &[u8],
    ort_lib: Option<&Path>,
    card: &ModelCard,
    original: &Network,
    inputs: &Tensor,
    batches: &[usize],
) -> Result<(Vec<BatchParity>, PathBuf)> {
    let predictor = open_predictor(onnx_bytes, ort_lib)?;
    if predictor.card() != card {
        return Err(Error::Parity(
            "ONNX Runtime does not read the model card back from the ONNX file".into(),
        ));
    }
    let mut parity = Vec::new();
    for &n in batches {
        let images = inputs.narrow(0, 0, n)?;
        let result = compare(&predictor, original, &images, card.temperature())?;
        if !result.within(PARITY_TOLERANCE) {
            return Err(Error::Parity(format!(
                "batch {n}: ONNX Runtime differs from candle by {:e} on logits and {:e} on \
                 probabilities (tolerance {PARITY_TOLERANCE:e}); no file written",
                result.logits_max_abs, result.probabilities_max_abs
            )));
        }
        parity.push(result);
    }
    Ok((parity, predictor.ort_library().to_path_buf()))
}

/// The median latency of the exported graph `onnx_bytes` (checked, with `card`) in ONNX
/// Runtime on the CPU with `threads` threads, at each batch of
/// [`hands_infer::timing::latency_batches`] when the batch is dynamic, else at its own; timed
/// as `hands-search cost` times a network ([`TimingPlan::LATENCY`]).
fn measure_latency(
    onnx_bytes: &[u8],
    ort_library: &Path,
    card: &ModelCard,
    batch: BatchSize,
    threads: usize,
) -> Result<Vec<MeasuredLatency>> {
    let size = card.input.size;
    let batches = match batch {
        BatchSize::Dynamic => latency_batches(size, card.network.init_channels),
        BatchSize::Fixed(n) => vec![n],
    };
    let options = Options {
        device: DeviceChoice::Cpu,
        threads: Some(threads),
        ort_library: Some(ort_library.to_path_buf()),
        ..Options::default()
    };
    let cpu = cpu_model();
    let runtime = |e: hands_infer::Error| Error::Runtime(format!("timing the ONNX graph: {e}"));
    batches
        .into_iter()
        .map(|batch| {
            let shape = [batch, 3, size as usize, size as usize];
            let name = Path::new("<exported ONNX graph>");
            let mut timer = GraphTimer::new(onnx_bytes, name, &shape, &options).map_err(runtime)?;
            let median = timer.median(TimingPlan::LATENCY).map_err(runtime)?;
            Ok(MeasuredLatency {
                cpu: cpu.clone(),
                threads,
                batch,
                median_ms: median.as_secs_f64() * 1e3,
            })
        })
        .collect()
}

/// Stores `card` as the card of `model`, with its seal, in place of those the lowering stored.
fn set_card(model: &mut ModelProto, card: &ModelCard) {
    let card_json = card.to_json();
    let seal = Seal::of_card(&card_json).finish();
    for (key, value) in [(CARD_METADATA_KEY, card_json), (SEAL_METADATA_KEY, seal)] {
        let entry = model
            .metadata_props
            .iter_mut()
            .find(|entry| entry.key.as_deref() == Some(key))
            .expect("the lowering stores a card and its seal");
        entry.value = Some(value);
    }
}

/// Longest output base name, in bytes: `.NAME.card.json.XXXXXX.tmp` must fit the 255 bytes
/// of a file name.
const MAX_NAME_BYTES: usize = 200;

/// Output base names are plain file names.
fn validate_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || name.starts_with('.');
    if bad {
        return Err(Error::Model {
            path: PathBuf::from(name),
            reason: format!(
                "the output name must be a plain file name (no folder, not hidden, at most \
                 {MAX_NAME_BYTES} bytes)"
            ),
        });
    }
    Ok(())
}

/// Puts the model file's path into errors raised without one.
fn name_file(e: Error, model: &Path) -> Error {
    match e {
        Error::Model { path, reason } if path.as_os_str().is_empty() => Error::Model {
            path: model.to_path_buf(),
            reason,
        },
        Error::Models(hands_models::Error::MissingTensor {
            path,
            name,
            expected,
        }) if path.as_os_str().is_empty() => Error::Models(hands_models::Error::MissingTensor {
            path: model.to_path_buf(),
            name,
            expected,
        }),
        other => other,
    }
}

/// Estimated peak memory of the parity check on `batch` images of `card`'s input size and
/// network width (candle's activations dominate: they grow with pixels times C).
fn parity_memory(card: &ModelCard, batch: usize) -> u64 {
    let pixels = u64::from(card.input.size).pow(2);
    (batch as u64)
        .saturating_mul(pixels)
        .saturating_mul(card.network.init_channels as u64)
        .saturating_mul(PARITY_BYTES_PER_PIXEL_CHANNEL)
}

/// The three output files of an export, in the order they are written.
struct Outputs {
    dir: PathBuf,
    safetensors: PathBuf,
    onnx: PathBuf,
    card: PathBuf,
}

impl Outputs {
    fn new(dir: &Path, name: &str) -> Outputs {
        Outputs {
            dir: dir.to_path_buf(),
            safetensors: dir.join(format!("{name}.safetensors")),
            onnx: dir.join(format!("{name}.onnx")),
            card: dir.join(format!("{name}.card.json")),
        }
    }

    fn files(&self) -> [&Path; 3] {
        [&self.safetensors, &self.onnx, &self.card]
    }

    /// Refuses an output folder or file that is one of the inputs: the model file, the
    /// parity images and their folders, the ONNX Runtime library (as given, then as loaded:
    /// loading it here also stops an export without one before anything is computed).
    fn ensure_not_inputs(&self, model: &Path, parity: &Parity) -> Result<()> {
        let mut inputs = vec![model.to_path_buf()];
        if let Parity::Check { ort_lib, images } = parity {
            for image in images {
                inputs.push(image.clone());
                inputs.extend(image.parent().map(Path::to_path_buf));
            }
            inputs.extend(ort_lib.clone());
        }
        self.ensure_none_of(&inputs)?;
        if let Parity::Check { ort_lib, .. } = parity {
            let runtime = hands_infer::runtime::runtime(ort_lib.as_deref())
                .map_err(|e| Error::Runtime(e.to_string()))?;
            self.ensure_none_of(&[runtime.library().to_path_buf()])?;
        }
        Ok(())
    }

    fn ensure_none_of(&self, inputs: &[PathBuf]) -> Result<()> {
        for output in std::iter::once(self.dir.as_path()).chain(self.files()) {
            ensure_not_input(output, inputs)?;
        }
        Ok(())
    }

    /// Writes `contents` (in the order of [`Outputs::files`]) to temporary files, then
    /// renames them into place; when a rename fails, the files renamed before it are removed.
    fn write(&self, contents: &[&[u8]; 3]) -> Result<()> {
        let mut staged = Vec::with_capacity(3);
        for (path, bytes) in self.files().into_iter().zip(contents) {
            let mut file = OutputFile::create(path)?;
            file.write_all(bytes).map_err(|e| Error::io(path, e))?;
            staged.push(file);
        }
        let mut committed: Vec<&Path> = Vec::with_capacity(3);
        for (file, path) in staged.into_iter().zip(self.files()) {
            if let Err(e) = file.commit() {
                for done in committed {
                    let _ = std::fs::remove_file(done);
                }
                return Err(e.into());
            }
            committed.push(path);
        }
        Ok(())
    }
}
