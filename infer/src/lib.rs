//! Gender prediction on hand photographs with ONNX Runtime: the library behind the
//! `hands-infer` command, for apps that embed the model.
//!
//! A [`Predictor`] opens an ONNX model written by `hands-export`, reads its model card (labels,
//! input size, normalisation) from the file's metadata, refuses a model whose input does not
//! match the card, and predicts on decoded images, image files or encoded bytes, one or many.
//! Preprocessing is the shared implementation in `hands-models`, so the pixels are exactly
//! those the network was trained on. The crate does not depend on candle or any training code.
//!
//! [`Predictor::default_model`] opens the shipped model, which is embedded in the library, so
//! an app needs no model file. [`Options::min_confidence`] makes the predictor abstain
//! ([`UNCERTAIN`]) when it is not sure enough, and [`Predictor::explain`] returns an occlusion
//! map of what the answer depended on ([`explain`]).
//!
//! ONNX Runtime is loaded at run time (see [`runtime`] for where it is looked for);
//! `scripts/setup-ort` installs a copy into the repository.
//!
//! ```no_run
//! use hands_infer::{DeviceChoice, Options, Predictor};
//!
//! # fn main() -> Result<(), hands_infer::Error> {
//! let options = Options { device: DeviceChoice::Auto, threads: Some(4), ..Options::default() };
//! let predictor = Predictor::open_with("models/pretrained/hands.onnx", &options)?;
//! println!("running on {}", predictor.execution_provider());
//!
//! let prediction = predictor.predict_path("hand.jpg")?;
//! for (label, p) in predictor.labels().iter().zip(&prediction.probabilities) {
//!     println!("{label}: {p:.3}");
//! }
//! println!("-> {} in {:?}", prediction.label, prediction.timing.inference);
//!
//! // Many files: decoded in parallel, predicted in batches; bad files get their own error.
//! for result in predictor.predict_paths(&["a.jpg", "b.png"])? {
//!     match result {
//!         Ok(p) => println!("{}", p.label),
//!         Err(e) => eprintln!("{e}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! `cargo run --release -p hands-infer --example predict -- MODEL IMAGE...` runs the same
//! steps.

pub mod device;
mod error;
pub mod explain;
pub mod files;
mod graph;
pub mod group;
pub mod pipeline;
pub mod predictor;
pub mod runtime;
pub mod timing;

pub use device::ExecutionProvider;
pub use error::Error;
pub use explain::{Explanation, Occlusion};
pub use group::GroupPrediction;
pub use hands_models::device::DeviceChoice;
pub use hands_models::ModelCard;
pub use predictor::{
    Input, Options, Outputs, Prediction, Predictor, Timing, DEFAULT_MODEL_NAME, UNCERTAIN,
};
pub use timing::{GraphTimer, TimingPlan};
