//! The export itself: read and check the model file, lower it to ONNX with BN folded, check
//! the folded weights in candle and the ONNX file in ONNX Runtime, then move both files into
//! place.
//!
//! Both files are first written to hidden temporary files in the output folder (synced to
//! disk); the parity check runs on the temporary ONNX file; only when everything passed are
//! they renamed to `NAME.safetensors` and `NAME.onnx`. On any failure the temporary files are
//! deleted, so no partial or unchecked file is left behind.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use hands_models::card::CARD_METADATA_KEY;
use hands_models::ModelCard;
use prost::Message;
use tempfile::NamedTempFile;

use crate::lower::{lower, BatchSize, OnnxOptions};
use crate::model_file::{build_network, ModelFile};
use crate::parity::{
    candle_outputs, compare, image_batch, max_abs_diff, synthetic_batch, BatchParity, OnnxModel,
    PARITY_TOLERANCE,
};
use crate::{Error, Result};

/// Batch size of the parity check (besides batch 1) when the batch dimension is dynamic.
pub const PARITY_BATCH: usize = 7;
/// Seed of the synthetic parity inputs.
const PARITY_SEED: u64 = 0x68616e6473;

/// Whether and how to run the ONNX Runtime parity check.
#[derive(Debug, Clone)]
pub enum Parity {
    /// Run it, with the ONNX Runtime library found from `ort_lib` (see
    /// [`crate::runtime::locate_library`]) on `images` (preprocessed as the card says) or,
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
    let file = ModelFile::read(model)?;
    let mut card = file.card.clone();
    card.network.auxiliary = false;
    let lowered = lower(&card, &file.tensors, &options.onnx).map_err(|e| name_file(e, model))?;

    // Parity inputs.
    let size = card.input.size as usize;
    let batches = match options.onnx.batch {
        BatchSize::Dynamic => vec![1, PARITY_BATCH],
        BatchSize::Fixed(n) => vec![n],
    };
    let largest = *batches.iter().max().expect("at least one batch");
    let inputs = match &options.parity {
        Parity::Check { images, .. } if !images.is_empty() => {
            image_batch(images, largest, &card.input)?
        }
        _ => synthetic_batch(largest, size, PARITY_SEED)?,
    };

    // The folded weights must compute what the original ones do.
    let original = file.network()?;
    let folded_tensors: HashMap<String, Tensor> = lowered
        .folded
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let folded = build_network(&card, folded_tensors)?;
    let folded_logits_max_abs = max_abs_diff(
        &candle_outputs(&folded, &inputs)?.logits,
        &candle_outputs(&original, &inputs)?.logits,
    );
    if folded_logits_max_abs > PARITY_TOLERANCE {
        return Err(Error::Parity(format!(
            "BN folding changed the candle logits by {folded_logits_max_abs:e} (tolerance {PARITY_TOLERANCE:e})"
        )));
    }

    // Serialise both files.
    let card_json = card.to_json();
    let metadata = HashMap::from([(CARD_METADATA_KEY.to_string(), card_json)]);
    let safetensors_bytes =
        safetensors::serialize(lowered.folded.iter(), Some(metadata)).map_err(|e| {
            Error::Model {
                path: model.to_path_buf(),
                reason: format!("cannot serialise the folded tensors: {e}"),
            }
        })?;
    let graph = lowered
        .model
        .graph
        .as_ref()
        .expect("lowered model has a graph");
    let (nodes, initializers) = (graph.node.len(), graph.initializer.len());
    let onnx_bytes = lowered.model.encode_to_vec();

    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let st_path = out_dir.join(format!("{}.safetensors", options.name));
    let onnx_path = out_dir.join(format!("{}.onnx", options.name));
    let card_path = out_dir.join(format!("{}.card.json", options.name));
    if same_file(&st_path, model) {
        return Err(Error::Model {
            path: model.to_path_buf(),
            reason: format!(
                "the export would overwrite its input {}; choose another --out or --name",
                st_path.display()
            ),
        });
    }
    let st_tmp = write_temp(out_dir, &options.name, "safetensors", &safetensors_bytes)?;
    let onnx_tmp = write_temp(out_dir, &options.name, "onnx", &onnx_bytes)?;
    let card_pretty = serde_json::to_string_pretty(&card).expect("card serialises") + "\n";
    let card_tmp = write_temp(out_dir, &options.name, "card.json", card_pretty.as_bytes())?;

    // ONNX Runtime against candle, on the file as written.
    let mut parity = Vec::new();
    let mut ort_library = None;
    if let Parity::Check { ort_lib, .. } = &options.parity {
        let mut session = OnnxModel::open(onnx_tmp.path(), ort_lib.as_deref())?;
        ort_library = Some(crate::runtime::environment(ort_lib.as_deref())?.1);
        let read_back = session.metadata(CARD_METADATA_KEY)?;
        if read_back.as_deref() != Some(card.to_json().as_str()) {
            return Err(Error::Parity(
                "ONNX Runtime does not read the model card back from the ONNX file".into(),
            ));
        }
        for &n in &batches {
            let images = inputs.narrow(0, 0, n)?;
            let result = compare(&mut session, &original, &images)?;
            let ok = result.within(PARITY_TOLERANCE);
            parity.push(result);
            if !ok {
                let r = parity.last().expect("just pushed");
                return Err(Error::Parity(format!(
                    "batch {n}: ONNX Runtime differs from candle by {:e} on logits and {:e} on \
                     probabilities (tolerance {PARITY_TOLERANCE:e}); no file written",
                    r.logits_max_abs, r.probabilities_max_abs
                )));
            }
        }
    }

    st_tmp
        .persist(&st_path)
        .map_err(|e| Error::io(&st_path, e.error))?;
    if let Err(e) = onnx_tmp.persist(&onnx_path) {
        let _ = std::fs::remove_file(&st_path);
        return Err(Error::io(&onnx_path, e.error));
    }
    card_tmp
        .persist(&card_path)
        .map_err(|e| Error::io(&card_path, e.error))?;
    Ok(ExportReport {
        onnx: onnx_path,
        safetensors: st_path,
        card_json: card_path,
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

/// Output base names are plain file names.
fn validate_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.starts_with('.');
    if bad {
        return Err(Error::Model {
            path: PathBuf::from(name),
            reason: "the output name must be a plain file name (no folder, not hidden)".into(),
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
        Error::MissingTensor {
            path,
            name,
            expected,
        } if path.as_os_str().is_empty() => Error::MissingTensor {
            path: model.to_path_buf(),
            name,
            expected,
        },
        other => other,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Writes `bytes` to a hidden temporary file in `dir` and syncs it; the file is deleted when
/// the handle is dropped without being persisted.
fn write_temp(dir: &Path, name: &str, ext: &str, bytes: &[u8]) -> Result<NamedTempFile> {
    let (prefix, suffix) = (format!(".{name}."), format!(".{ext}.tmp"));
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(&suffix);
    // Temporary files are private (0600) by default; the outputs are ordinary files.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(tmp.path(), e))?;
    Ok(tmp)
}
