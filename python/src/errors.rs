//! The Python exceptions of `hands_infer`, one per kind of [`hands_infer::Error`], carrying
//! the messages the `hands-infer` command prints.

use hands_infer::Error;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::PyErr;

create_exception!(
    hands_infer,
    HandsError,
    PyException,
    "Base class of the errors raised by hands_infer."
);
create_exception!(
    hands_infer,
    ModelError,
    HandsError,
    "The model file is missing, unreadable, or not what its model card says."
);
create_exception!(
    hands_infer,
    RuntimeNotFoundError,
    HandsError,
    "No ONNX Runtime library could be found or loaded (the message says how to get one)."
);
create_exception!(
    hands_infer,
    DeviceError,
    HandsError,
    "The requested device (execution provider) cannot be used."
);
create_exception!(
    hands_infer,
    ImageError,
    HandsError,
    "An image could not be read, decoded or preprocessed (the message names it)."
);
create_exception!(
    hands_infer,
    InferenceError,
    HandsError,
    "ONNX Runtime failed, or the model's output was not a probability distribution."
);

/// The Python exception for `error`: a caller's mistake is a `ValueError`, the rest are
/// [`HandsError`]s by kind.
pub fn to_python(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Runtime(_) => RuntimeNotFoundError::new_err(message),
        Error::Model { .. } => ModelError::new_err(message),
        Error::Device(_) => DeviceError::new_err(message),
        Error::Image(_) => ImageError::new_err(message),
        Error::Output(_) | Error::Inference(_) => InferenceError::new_err(message),
        Error::Usage(_) => PyValueError::new_err(message),
    }
}
