//! What the `hands` programs share: the operation vocabulary, genotypes, the model card and
//! the exported graph's interface, image preprocessing and, behind the `candle` feature, the network building blocks.

pub mod calibration;
pub mod card;
pub mod cost;
pub mod device;
mod error;
pub mod genotype;
pub mod graph;
pub mod interrupt;
pub mod lock;
#[cfg(feature = "logging")]
pub mod logging;
#[cfg(feature = "candle")]
pub mod nn;
pub mod ops;
pub mod output;
pub mod plan;
pub mod preprocess;
pub mod seal;

pub use card::ModelCard;
pub use error::Error;
pub use genotype::Genotype;
pub use ops::Op;
