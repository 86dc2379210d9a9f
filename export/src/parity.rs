//! The parity check: the ONNX file, run by the `hands_infer::Predictor` that users run,
//! against the candle network in eval mode.

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::ops::softmax;
use hands_infer::{Input, Options, Predictor};
use hands_models::graph::LOGITS_NAME;
use hands_models::nn::network::Network;

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

/// Logits and probabilities of one run.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// `[batch, labels]` logits, row-major.
    pub logits: Vec<f32>,
    /// `[batch, labels]` probabilities, row-major.
    pub probabilities: Vec<f32>,
}

/// Opens the ONNX model `bytes` as users run it: a [`Predictor`] on the CPU, with ONNX
/// Runtime found as `hands-infer` finds it (`ort_lib` first, see [`hands_infer::runtime`]).
pub fn open_predictor(bytes: &[u8], ort_lib: Option<&Path>) -> Result<Predictor> {
    let options = Options {
        device: hands_infer::DeviceChoice::Cpu,
        ort_library: ort_lib.map(Path::to_path_buf),
        ..Options::default()
    };
    Predictor::from_bytes(bytes, Path::new("<exported ONNX graph>"), &options)
        .map_err(|e| Error::Runtime(e.to_string()))
}

/// The predictor's logits and probabilities on `images` (`[batch, 3, size, size]`, f32).
pub fn onnx_outputs(predictor: &Predictor, images: &Tensor) -> Result<Outputs> {
    let inputs = (0..images.dim(0)?)
        .map(|i| Ok(Input::from_data(images.get(i)?.flatten_all()?.to_vec1()?)))
        .collect::<Result<Vec<_>>>()?;
    let rows = predictor
        .outputs(&inputs.iter().collect::<Vec<_>>())
        .map_err(|e| Error::Runtime(format!("run failed: {e}")))?;
    let mut outputs = Outputs {
        logits: Vec::new(),
        probabilities: Vec::new(),
    };
    for row in rows {
        let logits = row.logits.ok_or_else(|| {
            Error::Runtime(format!("the exported graph has no `{LOGITS_NAME}` output"))
        })?;
        outputs.logits.extend(logits);
        outputs.probabilities.extend(row.probabilities);
    }
    Ok(outputs)
}

/// Candle's eval-mode logits of `network` on `images` and its probabilities at
/// `temperature` (`softmax(logits / temperature)`; 1 for an uncalibrated model).
pub fn candle_outputs(network: &Network, images: &Tensor, temperature: f64) -> Result<Outputs> {
    let logits = network.logits(images)?;
    let probabilities = softmax(&(&logits / temperature)?, 1)?;
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

/// Compares the predictor's outputs on `images` with candle's at `temperature` (the card's).
pub fn compare(
    predictor: &Predictor,
    network: &Network,
    images: &Tensor,
    temperature: f64,
) -> Result<BatchParity> {
    let ours = onnx_outputs(predictor, images)?;
    let reference = candle_outputs(network, images, temperature)?;
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
