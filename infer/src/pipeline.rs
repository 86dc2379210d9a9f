//! The batched pipeline: decode a batch of files in parallel while the network runs on the
//! previous one.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::mpsc;

use rayon::prelude::*;

use crate::predictor::{Input, Prediction, Predictor};
use crate::Error;

/// The result for one file.
#[derive(Debug)]
pub struct Outcome {
    /// The file.
    pub path: PathBuf,
    /// Its prediction, or why there is none.
    pub result: Result<Prediction, Error>,
}

/// Predicts every file in `paths`, in order, calling `sink` once per file until it breaks.
///
/// Files are decoded `batch` at a time on `pool` by a separate thread, one batch ahead of
/// the network, so decoding and inference overlap. A file that cannot be read or decoded
/// gets an error outcome and the run goes on; an error of ONNX Runtime itself stops it.
pub fn predict_files(
    predictor: &Predictor,
    paths: &[PathBuf],
    batch: usize,
    pool: &rayon::ThreadPool,
    mut sink: impl FnMut(Outcome) -> ControlFlow<()>,
) -> Result<(), Error> {
    check_batch(predictor, batch)?;
    std::thread::scope(|scope| {
        // Capacity 1: one decoded batch waits while the next is being decoded.
        let (sender, receiver) = mpsc::sync_channel::<Vec<Result<Input, Error>>>(1);
        scope.spawn(move || {
            for chunk in paths.chunks(batch) {
                let decoded = decode_all(predictor, chunk, pool);
                if sender.send(decoded).is_err() {
                    break; // the consumer stopped
                }
            }
        });
        for (chunk, decoded) in paths.chunks(batch).zip(receiver) {
            let results = predictor.predict_results(decoded)?;
            for (path, result) in chunk.iter().zip(results) {
                let outcome = Outcome {
                    path: path.clone(),
                    result,
                };
                if sink(outcome).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    })
}

/// Refuses a batch size below 1 or above [`Predictor::max_batch`] (what fits the batch
/// memory budget for this model).
pub fn check_batch(predictor: &Predictor, batch: usize) -> Result<(), Error> {
    let max = predictor.max_batch();
    if batch == 0 || batch > max {
        return Err(Error::Usage(format!(
            "batch size {batch} is outside 1..={max}: an image takes about {:.1} MB for this model (input {size}x{size}, {} channels), and a batch may take at most {} GiB",
            predictor.bytes_per_image() as f64 / 1e6,
            predictor.card().network.init_channels,
            crate::predictor::BATCH_MEMORY_BUDGET >> 30,
            size = predictor.input_size(),
        )));
    }
    Ok(())
}

/// Decodes and preprocesses every file without running the network (the decode ceiling of
/// the pipeline). Returns the number of files that failed.
pub fn decode_files(predictor: &Predictor, paths: &[PathBuf], pool: &rayon::ThreadPool) -> usize {
    pool.install(|| {
        paths
            .par_iter()
            .filter(|p| predictor.preprocess_path(p).is_err())
            .count()
    })
}

/// What [`network_only`] measured.
#[derive(Debug, Clone, Copy)]
pub struct NetworkRun {
    /// Images run through the network.
    pub images: usize,
    /// Files that did not decode (left out).
    pub failures: usize,
    /// Seconds the network took, decoding excluded.
    pub seconds: f64,
}

/// Decodes every file first (on `pool`, not timed, all held in memory), then runs the network
/// on the decoded images in batches of `batch`: the network's own rate, for the benchmark.
pub fn network_only(
    predictor: &Predictor,
    paths: &[PathBuf],
    pool: &rayon::ThreadPool,
    batch: usize,
) -> Result<NetworkRun, Error> {
    let decoded = decode_all(predictor, paths, pool);
    let failures = decoded.iter().filter(|d| d.is_err()).count();
    let inputs: Vec<Input> = decoded.into_iter().filter_map(Result::ok).collect();
    let start = std::time::Instant::now();
    for chunk in inputs.chunks(batch.max(1)) {
        let refs: Vec<&Input> = chunk.iter().collect();
        predictor.predict_inputs(&refs)?;
    }
    Ok(NetworkRun {
        images: inputs.len(),
        failures,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn decode_all(
    predictor: &Predictor,
    paths: &[PathBuf],
    pool: &rayon::ThreadPool,
) -> Vec<Result<Input, Error>> {
    pool.install(|| {
        paths
            .par_iter()
            .map(|p| predictor.preprocess_path(p))
            .collect()
    })
}
