//! Results as Python rows: the `hands-infer` command's rows as dictionaries.

use hands_infer::{Error, Prediction};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The row of one image: `path` (what the caller passed, or `None`), `label`,
/// `probabilities` (`{label: p}`) and `error` (`None`); or, when it could not be predicted,
/// `label` and `probabilities` `None` and `error` the message that names the image.
pub fn row<'py>(
    py: Python<'py>,
    labels: &[String],
    path: Option<Bound<'py, PyAny>>,
    result: Result<Prediction, Error>,
) -> PyResult<Bound<'py, PyDict>> {
    let row = PyDict::new(py);
    row.set_item("path", path)?;
    match result {
        Ok(prediction) => {
            row.set_item("label", &prediction.label)?;
            row.set_item("probabilities", probabilities(py, labels, &prediction)?)?;
            row.set_item("error", py.None())?;
        }
        Err(error) => {
            row.set_item("label", py.None())?;
            row.set_item("probabilities", py.None())?;
            row.set_item("error", error.to_string())?;
        }
    }
    Ok(row)
}

/// `{label: probability}` of a prediction, in the order of the model's labels.
fn probabilities<'py>(
    py: Python<'py>,
    labels: &[String],
    prediction: &Prediction,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (label, p) in labels.iter().zip(&prediction.probabilities) {
        out.set_item(label, p)?;
    }
    Ok(out)
}
