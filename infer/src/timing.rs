//! Timing runs of any single-input ONNX graph in the session a [`crate::Predictor`] would
//! open (same library, optimisation level, threads and execution provider): how
//! `hands-search cost` and its latency table measure a network, and how `hands-export`
//! measures the latency its card records.

use std::path::Path;
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::value::TensorRef;

use crate::predictor::{open_session, ort_error};
use crate::{Error, Options};

/// The batch sizes a network's latency is measured at (capped by [`latency_batches`]).
pub const LATENCY_BATCHES: [usize; 2] = [1, 64];

/// [`LATENCY_BATCHES`], each capped at the largest batch a [`crate::Predictor`] would run of
/// a network of `init_channels` on `size` x `size` images ([`crate::predictor::max_batch`]),
/// without repeats.
pub fn latency_batches(size: u32, init_channels: usize) -> Vec<usize> {
    let largest = crate::predictor::max_batch(size, init_channels);
    let mut batches: Vec<usize> = LATENCY_BATCHES.map(|b| b.min(largest)).to_vec();
    batches.dedup();
    batches
}

/// How many runs, and for how long, [`GraphTimer::median`] times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimingPlan {
    /// Untimed runs first, for ONNX Runtime's allocations and the caches.
    pub warm_up: usize,
    /// At least this many timed runs.
    pub min_runs: usize,
    /// And at least this much timed time.
    pub min_time: Duration,
}

impl TimingPlan {
    /// A network's latency as `hands-search cost` and `hands-export` report it: 2 untimed
    /// runs, then at least 20 runs and 250 ms (one run of a millisecond is at the mercy of
    /// the scheduler); the median.
    pub const LATENCY: TimingPlan = TimingPlan {
        warm_up: 2,
        min_runs: 20,
        min_time: Duration::from_millis(250),
    };
}

/// The CPU model name (`/proc/cpuinfo`'s `model name`), or the architecture where it cannot
/// be read: what a measured latency holds for.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// One graph, loaded and ready to be timed on a fixed input.
pub struct GraphTimer {
    session: Session,
    input_name: String,
    shape: Vec<usize>,
    input: Vec<f32>,
}

impl std::fmt::Debug for GraphTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphTimer")
            .field("input_name", &self.input_name)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl GraphTimer {
    /// Loads the graph `bytes` (named `name` in errors), whose one input takes an f32
    /// tensor of `shape`; the input is filled with a fixed pattern.
    pub fn new(
        bytes: &[u8],
        name: &Path,
        shape: &[usize],
        options: &Options,
    ) -> Result<GraphTimer, Error> {
        let (session, _, _) = open_session(bytes, name, options)?;
        let input_name = match session.inputs() {
            [input] => input.name().to_string(),
            inputs => {
                return Err(Error::model(
                    name,
                    format!("a timed graph takes one input, this one {}", inputs.len()),
                ))
            }
        };
        let len = shape.iter().product();
        let input = (0..len).map(|i| (i % 17) as f32 / 17.0 - 0.4).collect();
        Ok(GraphTimer {
            session,
            input_name,
            shape: shape.to_vec(),
            input,
        })
    }

    /// One run's wall time.
    pub fn run(&mut self) -> Result<Duration, Error> {
        let tensor =
            TensorRef::from_array_view((self.shape.clone(), &self.input[..])).map_err(ort_error)?;
        let start = Instant::now();
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(ort_error)?;
        let elapsed = start.elapsed();
        drop(outputs);
        Ok(elapsed)
    }

    /// The median wall time of a run, as `plan` says.
    pub fn median(&mut self, plan: TimingPlan) -> Result<Duration, Error> {
        for _ in 0..plan.warm_up {
            self.run()?;
        }
        let mut times = Vec::with_capacity(plan.min_runs);
        let mut total = Duration::ZERO;
        while times.len() < plan.min_runs.max(1) || total < plan.min_time {
            let time = self.run()?;
            total += time;
            times.push(time);
        }
        times.sort();
        Ok(times[times.len() / 2])
    }
}
