//! The data layer: datasets (11K Hands CSV or class folders), subject-disjoint splits, the
//! in-memory image cache, augmentation and mini-batches.
//!
//! ```no_run
//! # fn main() -> Result<(), hands_data::Error> {
//! use hands_data::*;
//! use rand::SeedableRng;
//!
//! let dataset = Dataset::load("hands".as_ref(), &AspectFilter::All)?;
//! let split = Split::new(&dataset, Fractions::default(), 0)?;
//! let (w_half, alpha_half) = split.train.halves(&dataset, 0)?;
//! let cache = ImageCache::build(&dataset, 32)?;
//! let stats = cache.stats(&split.train.indices(&dataset))?;
//! let device = candle_core::Device::Cpu;
//! let loader = Loader::new(&cache, stats, 64, &device)
//!     .augment(Augment::standard(32))
//!     .shuffle(true)
//!     .drop_last(true);
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! for batch in loader.epoch(&w_half.indices(&dataset), &mut rng) {
//!     let batch = batch?; // batch.images [64, 3, 32, 32], batch.labels [64]
//! }
//! # let _ = alpha_half;
//! # Ok(()) }
//! ```

mod aspect;
mod augment;
mod batch;
mod cache;
mod dataset;
mod error;
mod folder;
mod hands;
mod image_source;
mod names;
mod source_share;
mod source_weight;
mod split;
#[cfg(test)]
mod test_datasets;

pub use aspect::{AspectFilter, ASPECTS};
pub use augment::{normalise, Augment, AugmentRecipe, ResizedCrop};
pub use batch::{Batch, Epoch, Loader};
pub use cache::{ChannelStats, ImageCache};
pub use dataset::{Dataset, Sample, Source};
pub use error::Error;
pub use folder::{is_image_path, IMAGE_EXTENSIONS};
pub use hands::{CSV_NAME, HANDS_LABELS};
pub use image_source::ImageSource;
pub use names::Choice;
pub use source_share::SourceShare;
pub use source_weight::SourceWeight;
pub use split::{Folds, Fractions, Part, PartName, Split};
