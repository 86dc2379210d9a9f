//! `hands_infer.Predictor`: a model opened once, predicting on files, encoded bytes and
//! pixel arrays with the GIL released.

use std::ffi::OsString;
use std::ops::ControlFlow;
use std::path::PathBuf;

use hands_infer::predictor::Input;
use hands_infer::{pipeline, DeviceChoice, Error, Options, Prediction, Predictor};
use image::DynamicImage;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyDict;

use crate::errors::{to_python, HandsError};
use crate::{arrays, ort_library, rows};

/// A hand-photo model opened once and ready to predict (see the package's documentation and
/// `_native.pyi` for the Python signatures).
#[pyclass(name = "Predictor", module = "hands_infer", frozen)]
pub struct PyPredictor {
    inner: Predictor,
    /// Images decoded and run through the network at a time.
    batch: usize,
    /// Threads for decoding (and for ONNX Runtime inside an operator).
    threads: usize,
    pool: rayon::ThreadPool,
}

/// Why a run over many items stopped before its end.
enum Stop {
    /// ONNX Runtime failed.
    Failed(Error),
    /// Python raised (Ctrl-C: `KeyboardInterrupt`) while the run went on.
    Interrupted(PyErr),
}

impl From<Error> for Stop {
    fn from(error: Error) -> Stop {
        Stop::Failed(error)
    }
}

impl From<Stop> for PyErr {
    fn from(stop: Stop) -> PyErr {
        match stop {
            Stop::Failed(error) => to_python(error),
            Stop::Interrupted(error) => error,
        }
    }
}

impl PyPredictor {
    /// Runs every item through `preprocess` and the network, `batch` at a time with
    /// preprocessing one batch ahead (see [`pipeline::predict_each`]); one result per item,
    /// in order. Python signals (Ctrl-C) are looked at after each batch.
    fn predict_all<T: Sync>(
        &self,
        items: &[T],
        preprocess: impl Fn(&T) -> Result<Input, Error> + Sync,
    ) -> Result<Vec<Result<Prediction, Error>>, Stop> {
        let mut out = Vec::with_capacity(items.len());
        let mut interrupted = None;
        let batch = self.batch;
        pipeline::predict_each(&self.inner, items, batch, &self.pool, preprocess, |i, r| {
            out.push(r);
            if (i + 1) % batch == 0 {
                if let Err(e) = Python::attach(|py| py.check_signals()) {
                    interrupted = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
        match interrupted {
            Some(error) => Err(Stop::Interrupted(error)),
            None => Ok(out),
        }
    }
}

#[pymethods]
impl PyPredictor {
    #[new]
    #[pyo3(signature = (
        model=None, device="cpu", threads=None, batch=64, min_confidence=None,
        target_accuracy=None, ort_library=None
    ))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, each with a default
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        device: &str,
        threads: Option<usize>,
        batch: usize,
        min_confidence: Option<f32>,
        target_accuracy: Option<f64>,
        ort_library: Option<PathBuf>,
    ) -> PyResult<PyPredictor> {
        let device = device
            .parse::<DeviceChoice>()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        if threads == Some(0) {
            return Err(PyValueError::new_err("threads must be at least 1"));
        }
        let threads =
            threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let options = Options {
            device,
            threads: Some(threads),
            ort_library: ort_library::choose(py, ort_library),
            min_confidence,
            target_accuracy,
        };
        let inner = py
            .detach(|| match &model {
                Some(path) => Predictor::open_with(path, &options),
                None => Predictor::default_model(&options),
            })
            .map_err(to_python)?;
        pipeline::check_batch(&inner, batch).map_err(to_python)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("hands-decode-{i}"))
            .build()
            .map_err(|e| HandsError::new_err(format!("cannot start decoding threads: {e}")))?;
        Ok(PyPredictor {
            inner,
            batch,
            threads,
            pool,
        })
    }

    /// The labels, in the order of the probabilities.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.inner.labels().to_vec()
    }

    /// The model card (labels, input, network, metrics, provenance) as a dict.
    #[getter]
    fn card<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = self.inner.card().to_json();
        py.import("json")?.call_method1("loads", (json,))
    }

    /// The model file, or `None` for the shipped model built into the package.
    #[getter]
    fn model(&self) -> Option<OsString> {
        self.inner.path().map(|p| p.as_os_str().to_os_string())
    }

    /// The CRC-32 of the model's ONNX bytes (8 hex digits), as `hands-infer` writes on its rows.
    #[getter]
    fn identity(&self) -> &str {
        self.inner.identity()
    }

    /// Side of the square network input, in pixels.
    #[getter]
    fn input_size(&self) -> u32 {
        self.inner.input_size()
    }

    /// Images per batch.
    #[getter]
    fn batch(&self) -> usize {
        self.batch
    }

    /// Threads for decoding and for ONNX Runtime.
    #[getter]
    fn threads(&self) -> usize {
        self.threads
    }

    /// The probability under which a prediction is `"uncertain"`, or `None`.
    #[getter]
    fn min_confidence(&self) -> Option<f32> {
        self.inner.min_confidence()
    }

    /// The ONNX Runtime execution provider the network runs on (`"CPUExecutionProvider"`, ...).
    #[getter]
    fn device(&self) -> String {
        self.inner.execution_provider().to_string()
    }

    /// The ONNX Runtime library in use.
    #[getter]
    fn ort_library(&self) -> OsString {
        self.inner.ort_library().as_os_str().to_os_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "Predictor(model={:?}, device={:?}, batch={}, threads={}, labels={:?})",
            self.inner.name().display().to_string(),
            self.device(),
            self.batch,
            self.threads,
            self.inner.labels()
        )
    }

    /// One row per file, in order: `{"path", "label", "probabilities", "error"}`.
    fn predict_files<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let files = paths
            .iter()
            .map(|p| p.extract::<PathBuf>())
            .collect::<PyResult<Vec<_>>>()?;
        let results = py.detach(|| self.predict_all(&files, |f| self.inner.preprocess_path(f)))?;
        let labels = self.inner.labels();
        paths
            .into_iter()
            .zip(results)
            .map(|(path, result)| rows::row(py, labels, Some(path), result))
            .collect()
    }

    /// One row per encoded image (JPEG, PNG, BMP, WebP bytes), in order; `names` (as many)
    /// name them in the rows' `path` and in errors.
    #[pyo3(signature = (blobs, names=None))]
    fn predict_bytes<'py>(
        &self,
        py: Python<'py>,
        blobs: Vec<PyBackedBytes>,
        names: Option<Vec<Bound<'py, PyAny>>>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        if let Some(names) = &names {
            if names.len() != blobs.len() {
                return Err(PyValueError::new_err(format!(
                    "{} names for {} images: give one name per image",
                    names.len(),
                    blobs.len()
                )));
            }
        }
        let items: Vec<(PathBuf, &[u8])> = blobs
            .iter()
            .enumerate()
            .map(|(i, blob)| {
                let name = match &names {
                    Some(names) => names[i].str().map(|s| PathBuf::from(s.to_string())),
                    None => Ok(PathBuf::from(format!("<bytes #{i}>"))),
                };
                name.map(|name| (name, blob.as_ref()))
            })
            .collect::<PyResult<_>>()?;
        let preprocess =
            |(name, bytes): &(PathBuf, &[u8])| self.inner.preprocess_bytes(bytes, name);
        let results = py.detach(|| self.predict_all(&items, preprocess))?;
        let labels = self.inner.labels();
        let mut names = names.map(Vec::into_iter);
        results
            .into_iter()
            .map(|result| {
                let name = names.as_mut().and_then(Iterator::next);
                rows::row(py, labels, name, result)
            })
            .collect()
    }

    /// The probabilities `(N, len(labels))` (float32) of RGB pixel arrays: a uint8 array of
    /// shape `(N, H, W, 3)` or a list of `(H, W, 3)` arrays.
    fn predict_array<'py>(
        &self,
        py: Python<'py>,
        x: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let images = arrays::images(&x)?;
        let preprocess = |image: &DynamicImage| self.inner.preprocess_image(image);
        let results = py.detach(|| self.predict_all(&images, preprocess))?;
        let labels = self.inner.labels().len();
        let mut flat = Vec::with_capacity(results.len() * labels);
        for (index, result) in results.into_iter().enumerate() {
            let prediction = result.map_err(|e| {
                let python = to_python(e);
                let message = format!("image {index}: {}", python.value(py));
                PyErr::from_type(python.get_type(py), message)
            })?;
            flat.extend(prediction.probabilities);
        }
        let rows = flat.len() / labels.max(1);
        let array = Array2::from_shape_vec((rows, labels), flat)
            .map_err(|e| HandsError::new_err(e.to_string()))?;
        Ok(array.into_pyarray(py))
    }

    /// The occlusion map of one image file: its row (`path`, `label`, `probabilities`) and
    /// `map`, a float32 array `(input_size, input_size)` of how much masking each region
    /// lowered the predicted label's probability.
    fn explain<'py>(
        &self,
        py: Python<'py>,
        path: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let file: PathBuf = path.extract()?;
        let explanation = py
            .detach(|| {
                let input = self.inner.preprocess_path(&file)?;
                self.inner.explain(&input)
            })
            .map_err(to_python)?;
        let side = explanation.size as usize;
        let labels = self.inner.labels();
        let row = rows::row(py, labels, Some(path), Ok(explanation.prediction))?;
        let map = Array2::from_shape_vec((side, side), explanation.map)
            .map_err(|e| HandsError::new_err(e.to_string()))?;
        row.set_item("map", map.into_pyarray(py))?;
        Ok(row)
    }
}
