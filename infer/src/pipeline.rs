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
    let preprocess = |path: &PathBuf| predictor.preprocess_path(path);
    predict_each(
        predictor,
        paths,
        batch,
        pool,
        preprocess,
        |index, result| {
            sink(Outcome {
                path: paths[index].clone(),
                result,
            })
        },
    )
}

/// Predicts every item of `items` (files, encoded images, pixel arrays: whatever
/// `preprocess` turns into an [`Input`]), in order, calling `sink` with each item's index and
/// result until it breaks.
///
/// Items are preprocessed `batch` at a time on `pool` by a separate thread, one batch ahead
/// of the network, so preprocessing and inference overlap. An item that cannot be
/// preprocessed gets its error and the run goes on; an error of ONNX Runtime itself stops it.
pub fn predict_each<T: Sync>(
    predictor: &Predictor,
    items: &[T],
    batch: usize,
    pool: &rayon::ThreadPool,
    preprocess: impl Fn(&T) -> Result<Input, Error> + Sync,
    mut sink: impl FnMut(usize, Result<Prediction, Error>) -> ControlFlow<()>,
) -> Result<(), Error> {
    check_batch(predictor, batch)?;
    let preprocess = &preprocess;
    std::thread::scope(|scope| {
        // Capacity 1: one preprocessed batch waits while the next is being preprocessed.
        let (sender, receiver) = mpsc::sync_channel::<Vec<Result<Input, Error>>>(1);
        scope.spawn(move || {
            for chunk in items.chunks(batch) {
                if sender
                    .send(preprocess_all(chunk, pool, preprocess))
                    .is_err()
                {
                    break; // the consumer stopped
                }
            }
        });
        let mut index = 0;
        for ready in receiver {
            for result in predictor.predict_results(ready)? {
                if sink(index, result).is_break() {
                    return Ok(());
                }
                index += 1;
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
    let decoded = preprocess_all(paths, pool, |p| predictor.preprocess_path(p));
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

/// `preprocess` of every item, in parallel on `pool`, in order.
fn preprocess_all<T: Sync>(
    items: &[T],
    pool: &rayon::ThreadPool,
    preprocess: impl Fn(&T) -> Result<Input, Error> + Sync,
) -> Vec<Result<Input, Error>> {
    pool.install(|| items.par_iter().map(&preprocess).collect())
}
