//! The parity check: the ONNX file in ONNX Runtime against the candle network in eval mode.

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::ops::softmax;
use hands_models::nn::network::Network;
use ort::session::Session;
use ort::value::Tensor as OrtTensor;

use crate::lower::{INPUT_NAME, LOGITS_NAME, PROBABILITIES_NAME};
use crate::{Error, Result};

/// Largest absolute difference allowed between ONNX Runtime and candle, on logits and on
/// probabilities alike.
pub const PARITY_TOLERANCE: f32 = 1e-4;

/// The comparison on one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchParity {
    /// Images in the batch.
    pub batch: usize,
    /// Largest absolute difference of the logits.
    pub logits_max_abs: f32,
    /// Largest absolute difference of the probabilities.
    pub probabilities_max_abs: f32,
}

impl BatchParity {
    /// Whether both differences are within `tolerance`.
    pub fn within(&self, tolerance: f32) -> bool {
        self.logits_max_abs <= tolerance && self.probabilities_max_abs <= tolerance
    }
}

/// An ONNX Runtime session on an exported file.
pub struct OnnxModel {
    session: Session,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel").finish_non_exhaustive()
    }
}

/// Logits and probabilities of one run.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// `[batch, labels]` logits, row-major.
    pub logits: Vec<f32>,
    /// `[batch, labels]` probabilities, row-major.
    pub probabilities: Vec<f32>,
}

impl OnnxModel {
    /// Opens the ONNX model `bytes` in ONNX Runtime on the CPU, with the library found by
    /// [`crate::runtime::environment`].
    pub fn from_bytes(bytes: &[u8], ort_lib: Option<&Path>) -> Result<OnnxModel> {
        let (env, _) = crate::runtime::environment(ort_lib)?;
        let fail = |e: &dyn std::fmt::Display| {
            Error::Runtime(format!("cannot load the exported ONNX graph: {e}"))
        };
        let session = Session::builder(&env)
            .map_err(|e| fail(&e))?
            .commit_from_memory(bytes)
            .map_err(|e| fail(&e))?;
        Ok(OnnxModel { session })
    }

    /// The value of a custom metadata key (`metadata_props`), as ONNX Runtime reads it.
    pub fn metadata(&self, key: &str) -> Result<Option<String>> {
        let meta = self
            .session
            .metadata()
            .map_err(|e| Error::Runtime(format!("cannot read metadata: {e}")))?;
        Ok(meta.custom(key))
    }

    /// Runs `images` (`[batch, 3, size, size]`, f32).
    pub fn run(&mut self, images: &Tensor) -> Result<Outputs> {
        let dims: Vec<i64> = images.dims().iter().map(|&d| d as i64).collect();
        let data = images.flatten_all()?.to_vec1::<f32>()?;
        let input = OrtTensor::from_array((dims, data))
            .map_err(|e| Error::Runtime(format!("cannot create the input tensor: {e}")))?;
        let outputs = self
            .session
            .run(ort::inputs![INPUT_NAME => input])
            .map_err(|e| Error::Runtime(format!("run failed: {e}")))?;
        let get = |name: &str| -> Result<Vec<f32>> {
            let value = outputs
                .get(name)
                .ok_or_else(|| Error::Runtime(format!("the model has no output `{name}`")))?;
            let (_, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| Error::Runtime(format!("output `{name}`: {e}")))?;
            Ok(data.to_vec())
        };
        Ok(Outputs {
            logits: get(LOGITS_NAME)?,
            probabilities: get(PROBABILITIES_NAME)?,
        })
    }
}

/// Candle's eval-mode logits and probabilities of `network` on `images`.
pub fn candle_outputs(network: &Network, images: &Tensor) -> Result<Outputs> {
    let logits = network.logits(images)?;
    let probabilities = softmax(&logits, 1)?;
    Ok(Outputs {
        logits: logits.flatten_all()?.to_vec1()?,
        probabilities: probabilities.flatten_all()?.to_vec1()?,
    })
}

/// Largest absolute difference between two equally long slices (infinite when the lengths
/// differ or a value is not finite).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs();
            if d.is_nan() {
                f32::INFINITY
            } else {
                d
            }
        })
        .fold(0.0, f32::max)
}

/// Compares ONNX Runtime's outputs on `images` with candle's.
pub fn compare(model: &mut OnnxModel, network: &Network, images: &Tensor) -> Result<BatchParity> {
    let ours = model.run(images)?;
    let reference = candle_outputs(network, images)?;
    Ok(BatchParity {
        batch: images.dim(0)?,
        logits_max_abs: max_abs_diff(&ours.logits, &reference.logits),
        probabilities_max_abs: max_abs_diff(&ours.probabilities, &reference.probabilities),
    })
}

/// A deterministic batch of `n` inputs for the parity check: standard normal values, the
/// distribution of normalised images, from a fixed seed.
pub fn synthetic_batch(n: usize, size: usize, seed: u64) -> Result<Tensor> {
    let len = n * 3 * size * size;
    // SplitMix64 then Box-Muller: reproducible without a random-number crate.
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let values: Vec<f32> = (0..len)
        .map(|_| {
            let (u, v) = (next(), next());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    Ok(Tensor::from_vec(values, (n, 3, size, size), &Device::Cpu)?)
}

/// A batch from image files, preprocessed as the card says (the first `n` of `paths`,
/// repeated when there are fewer).
pub fn image_batch(
    paths: &[std::path::PathBuf],
    n: usize,
    spec: &hands_models::card::InputSpec,
) -> Result<Tensor> {
    if paths.is_empty() {
        return Err(Error::Parity("no images to check parity on".into()));
    }
    let size = spec.size as usize;
    let mut data = Vec::with_capacity(n * 3 * size * size);
    for path in paths.iter().cycle().take(n) {
        data.extend(hands_models::preprocess::load_input(path, spec)?);
    }
    Ok(Tensor::from_vec(data, (n, 3, size, size), &Device::Cpu)?)
}
