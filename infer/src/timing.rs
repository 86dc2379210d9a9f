//! Timing runs of any single-input ONNX graph in the session a [`crate::Predictor`] would
//! open (same library, optimisation level, threads and execution provider): what a latency
//! lookup table (`hands-search cost`) measures the pieces of a network with.

use std::path::Path;
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::value::TensorRef;

use crate::predictor::{open_session, ort_error};
use crate::{Error, Options};

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
