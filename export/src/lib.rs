//! hands-export: freezes a trained hands network into an inference bundle — a safetensors
//! file with batch normalisation folded into the convolutions and an ONNX file — each
//! carrying the model card, and checks in ONNX Runtime that the ONNX file computes what the
//! candle network computes.
//!
//! ```no_run
//! use hands_export::{export, ExportOptions, OnnxOptions, Parity};
//! # fn main() -> hands_export::Result<()> {
//! let report = export(
//!     "runs/v2/model.safetensors".as_ref(),
//!     "dist".as_ref(),
//!     &ExportOptions {
//!         name: "hands".into(),
//!         onnx: OnnxOptions::default(),
//!         parity: Parity::Check { ort_lib: None, images: vec![] },
//!         latency_threads: Some(2),
//!     },
//! )?;
//! println!("{} ({} nodes)", report.onnx.display(), report.nodes);
//! # Ok(())
//! # }
//! ```

mod error;
mod export;
pub mod fold;
pub mod lower;
pub mod onnx;
pub mod parity;

pub use error::{Error, Result};
pub use export::{export, ExportOptions, ExportReport, Parity, PARITY_BATCH, PARITY_MEMORY_BUDGET};
pub use hands_models::nn::model_file::{ModelFile, MAX_MODEL_BYTES};
pub use lower::{lower, BatchSize, Lowered, OnnxOptions, DEFAULT_OPSET, MAX_BATCH};
pub use parity::PARITY_TOLERANCE;
