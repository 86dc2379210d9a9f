//! Errors of the inference library.

use std::path::PathBuf;

/// What can go wrong when loading ONNX Runtime, opening a model or predicting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No ONNX Runtime shared library could be found or loaded.
    #[error("{0}")]
    Runtime(String),
    /// The model file is missing, unreadable or not what its card says.
    #[error("{path}: {reason}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The requested execution provider cannot be used.
    #[error("{0}")]
    Device(String),
    /// An image could not be read or decoded (the message names the file).
    #[error(transparent)]
    Image(#[from] hands_models::Error),
    /// The model's output for an image is not a probability distribution (NaN, infinite,
    /// outside [0, 1] or not summing to 1): not an answer.
    #[error("{0}")]
    Output(String),
    /// ONNX Runtime failed while running the model.
    #[error("ONNX Runtime: {0}")]
    Inference(String),
    /// The caller passed something the API cannot use.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub(crate) fn model(path: &std::path::Path, reason: impl Into<String>) -> Error {
        Error::Model {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
