//! The error of a run's own files (its JSON-lines logs, its checkpoints): every variant
//! names the file.

use std::path::{Path, PathBuf};

/// A run file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RunFileError {
    /// The file could not be read, written, synced or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file's contents are not what they must be, or the data cannot be stored.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file could not be written safely (see [`hands_models::output`]).
    #[error(transparent)]
    Output(#[from] hands_models::Error),
}

impl RunFileError {
    /// An I/O failure on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> RunFileError {
        RunFileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// `path` holds, or would hold, something wrong: `reason`.
    pub fn format(path: &Path, reason: impl ToString) -> RunFileError {
        RunFileError::Format {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}
