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
    /// A tensor the network needs is absent from the model file.
    #[error("{path}: missing tensor `{name}` (expected shape {expected:?}); the file does not hold this network")]
    MissingTensor {
        /// The model file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The shape the network expects.
        expected: Vec<usize>,
    },
    /// A tensor has another shape than the network expects.
    #[error("{path}: tensor `{name}` has shape {found:?}, the network expects {expected:?} (a different genotype or network size?)")]
    TensorShape {
        /// The model file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The shape in the file.
        found: Vec<usize>,
        /// The shape the network expects.
        expected: Vec<usize>,
    },
    /// An error of the shared model crate (card, genotype, network, model file).
    #[error(transparent)]
    Models(hands_models::Error),
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

impl From<hands_models::Error> for Error {
    /// The model file's missing and misshapen tensors keep their own kinds.
    fn from(e: hands_models::Error) -> Error {
        match e {
            hands_models::Error::MissingTensor {
                path,
                name,
                expected,
            } => Error::MissingTensor {
                path,
                name,
                expected,
            },
            hands_models::Error::TensorShape {
                path,
                name,
                found,
                expected,
            } => Error::TensorShape {
                path,
                name,
                found,
                expected,
            },
            other => Error::Models(other),
        }
    }
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
