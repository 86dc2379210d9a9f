//! Errors of the shared model crate.

use std::path::{Path, PathBuf};

/// What can go wrong with genotypes, cards, images and networks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operation name that is not one of the eight primitives.
    #[error("unknown operation `{name}` (known: {known})")]
    UnknownOp {
        /// The name given.
        name: String,
        /// The names there are, from the operation enum.
        known: String,
    },
    /// A malformed genotype.
    #[error("invalid genotype: {0}")]
    InvalidGenotype(String),
    /// A missing or malformed model card.
    #[error("invalid model card: {0}")]
    InvalidCard(String),
    /// An image that cannot be decoded.
    #[error("{path}: {reason}")]
    Image {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file that cannot be read or written. (The cause is part of the message, not a
    /// `source`, so that a report of the whole chain names it once.)
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// An output path that is one of the run's inputs.
    #[error("refusing to write {output}: it is the input {input}; choose another output path")]
    OutputIsInput {
        /// The output that was asked for.
        output: PathBuf,
        /// The input it would have overwritten.
        input: PathBuf,
    },
    /// A model file whose tensors do not fit the network.
    #[error("{0}")]
    Weights(String),
    /// A run folder or output that another process is writing.
    #[error("{path} is in use by {}; wait for it to end or stop it (its lock file is {lock})",
            holder.map_or("another process".to_string(), |pid| format!("process {pid}")))]
    Locked {
        /// The run folder or output.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The holder's process id, as it wrote it in the lock file.
        holder: Option<u32>,
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
    /// A tensor of the model file has another shape than the network expects.
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
    /// A model file that cannot be used otherwise: not a file of a bounded size, not
    /// safetensors, a foreign or non-finite tensor.
    #[error("{path}: {reason}")]
    ModelFile {
        /// The model file.
        path: PathBuf,
        /// What is wrong, naming the tensor where one is at fault.
        reason: String,
    },
    /// A tensor computation failed.
    #[cfg(feature = "candle")]
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }
}
