//! Errors of the data layer: every variant names the file, folder or step at fault.

use std::path::{Path, PathBuf};

/// What can go wrong while loading, splitting, caching or batching a dataset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder that cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A CSV file that cannot be parsed.
    #[error("{path}: {source}")]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// The parser's error (it carries the line).
        source: csv::Error,
    },
    /// A CSV record that cannot be parsed (wrong number of fields, bad UTF-8, ...).
    #[error("{path} line {line}: {reason}")]
    CsvRecord {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line of the record.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A required column is absent from a CSV header.
    #[error("{path}: missing column `{column}` (the header has: {header})")]
    MissingColumn {
        /// The CSV file.
        path: PathBuf,
        /// The column that is missing.
        column: String,
        /// The columns the header does have, comma-separated.
        header: String,
    },
    /// A CSV cell with a value outside its vocabulary.
    #[error("{path} line {line}: {column} `{value}` is unknown (expected {expected})")]
    BadValue {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line of the record.
        line: u64,
        /// The column.
        column: String,
        /// The value found.
        value: String,
        /// What the column accepts.
        expected: String,
    },
    /// A CSV record that contradicts another one.
    #[error("{path} line {line}: {reason}")]
    Inconsistent {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line of the record.
        line: u64,
        /// What contradicts what.
        reason: String,
    },
    /// An image listed in the CSV that does not exist.
    #[error("{path}: image listed in {csv} line {line} does not exist")]
    MissingImage {
        /// The image file that was expected.
        path: PathBuf,
        /// The CSV that lists it.
        csv: PathBuf,
        /// 1-based line of the record.
        line: u64,
    },
    /// A file inside a class folder that is not an image.
    #[error("{path}: not an image file (expected one of: {extensions})")]
    NotAnImage {
        /// The file.
        path: PathBuf,
        /// The accepted file extensions.
        extensions: String,
    },
    /// A class folder without a single image.
    #[error("{path}: class folder holds no images")]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },
    /// A folder that is neither an 11K Hands layout nor a folder of class folders.
    #[error("{path}: not a dataset (expected HandInfo.csv with an images/ folder, or one sub-folder of images per class)")]
    NotADataset {
        /// The folder.
        path: PathBuf,
    },
    /// A dataset that has no image left (after the aspect filter).
    #[error("{path}: no images{detail}")]
    NoImages {
        /// The dataset folder or CSV.
        path: PathBuf,
        /// Extra context, e.g. the filter that removed everything.
        detail: String,
    },
    /// An aspect filter applied to data that has no aspects.
    #[error("{path}: the aspect filter `{filter}` needs the 11K Hands layout (HandInfo.csv); class folders have no hand aspects")]
    NoAspects {
        /// The dataset folder.
        path: PathBuf,
        /// The filter that was asked for.
        filter: String,
    },
    /// Samples that break a dataset invariant (label out of range, one subject with two
    /// labels).
    #[error("{path}: {reason}")]
    InvalidSamples {
        /// The dataset's CSV or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An image that cannot be decoded, or an output that cannot be written safely.
    #[error(transparent)]
    Image(#[from] hands_models::Error),
    /// An invalid split request (fractions, too few subjects).
    #[error("split: {0}")]
    Split(String),
    /// A recorded split that does not fit the data it is applied to.
    #[error("{path}: split does not match the data: {reason}")]
    SplitMismatch {
        /// The split file, or `<split>` when it was not read from a file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// A JSON file that cannot be parsed or written.
    #[error("{path}: {source}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A malformed in-memory image buffer.
    #[error("image cache: {0}")]
    Cache(String),
    /// A weighting or sampling by image source (`flag`) that the training images cannot take.
    #[error("{flag}: {message}")]
    Sampling {
        /// The command-line flag that asked for it.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A tensor could not be built.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn csv(path: &Path, source: csv::Error) -> Error {
        Error::Csv {
            path: path.to_path_buf(),
            source,
        }
    }
}
