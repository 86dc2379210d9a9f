//! hands-reports: what a run leaves behind and how it is read back and shown. The run
//! folder's file names ([`run_dir`]), the per-epoch records of search and training
//! ([`records`]) and their JSON-lines logs with the progress bar ([`runlog`]), the error of
//! a run's own files ([`file_error`]), what the
//! architecture learned ([`learning`]: entropy, margins, the noise bound), SVG plots of the
//! logs ([`plot`]), cell drawings ([`dot`]) and the guard that keeps outputs off their inputs
//! ([`outputs`]). No clap and no network here: the engines write, these modules describe.

pub mod dot;
pub mod file_error;
pub mod learning;
pub mod outputs;
pub mod plot;
pub mod records;
pub mod run_dir;
pub mod runlog;
