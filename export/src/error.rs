//! Errors of the exporter.

use std::path::PathBuf;

/// What can go wrong while exporting a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model file (its card, genotype or tensors) does not describe a usable network.
    #[error("{path}: {reason}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong, naming the tensor where one is at fault.
        reason: String,
    },
    /// An error of the shared model crate (card, genotype, network, model file: its missing
    /// and misshapen tensors are `hands_models::Error::MissingTensor` and `TensorShape`).
    #[error(transparent)]
    Models(#[from] hands_models::Error),
    /// A tensor computation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (shown in the message, so not a `source`).
        error: std::io::Error,
    },
    /// ONNX Runtime could not be found, loaded or run.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// The ONNX file and the candle network disagree beyond the tolerance.
    #[error("parity check failed: {0}")]
    Parity(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}

/// Result alias of the exporter.
pub type Result<T, E = Error> = std::result::Result<T, E>;
