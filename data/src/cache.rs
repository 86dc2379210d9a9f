//! Decoded, resized images held in memory as 8-bit RGB, and their channel statistics.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Dataset, Error};

/// Per-channel mean and standard deviation of pixels scaled to [0, 1] (RGB order): the
/// normalisation the network is trained with and that its model card records.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// Mean per channel.
    pub mean: [f32; 3],
    /// Standard deviation per channel (at least 1/255, so constant images do not divide by
    /// zero).
    pub std: [f32; 3],
}

/// Every image of a dataset, decoded once with
/// [`hands_models::preprocess::load_resized`] (the same code inference uses), resized to
/// `size` x `size` and kept as interleaved RGB bytes (HWC), together with its label.
#[derive(Debug, Clone)]
pub struct ImageCache {
    size: u32,
    pixels: Vec<u8>,
    labels: Vec<u32>,
}

impl ImageCache {
    /// Decodes and resizes every sample of `dataset` in parallel (rayon). An unreadable or
    /// undecodable file is an error naming it (the first in dataset order).
    pub fn build(dataset: &Dataset, size: u32) -> Result<ImageCache, Error> {
        ImageCache::build_with_progress(dataset, size, &|| {})
    }

    /// [`ImageCache::build`], calling `tick` once per decoded image (from worker threads),
    /// e.g. to advance a progress bar.
    pub fn build_with_progress(
        dataset: &Dataset,
        size: u32,
        tick: &(dyn Fn() + Sync),
    ) -> Result<ImageCache, Error> {
        if size == 0 {
            return Err(Error::Cache("image size must be positive".into()));
        }
        let stride = image_len(size);
        let mut pixels = vec![0u8; stride * dataset.len()];
        let results: Vec<Result<(), hands_models::Error>> = pixels
            .par_chunks_mut(stride)
            .zip(dataset.samples().par_iter())
            .map(|(out, sample)| {
                let image = hands_models::preprocess::load_resized(&sample.path, size)?;
                out.copy_from_slice(image.as_raw());
                tick();
                Ok(())
            })
            .collect();
        if let Some(error) = results.into_iter().find_map(Result::err) {
            return Err(error.into());
        }
        let labels = dataset.samples().iter().map(|s| s.label as u32).collect();
        Ok(ImageCache {
            size,
            pixels,
            labels,
        })
    }

    /// A cache from raw interleaved RGB bytes (`labels.len()` images of `size` x `size`),
    /// e.g. synthetic data for tests.
    pub fn from_raw(size: u32, pixels: Vec<u8>, labels: Vec<u32>) -> Result<ImageCache, Error> {
        if size == 0 || pixels.len() != image_len(size) * labels.len() {
            return Err(Error::Cache(format!(
                "{} bytes do not hold {} RGB images of {size}x{size}",
                pixels.len(),
                labels.len()
            )));
        }
        Ok(ImageCache {
            size,
            pixels,
            labels,
        })
    }

    /// Side length of the square images.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Number of images (the same as the dataset's samples, in the same order).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the cache holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `index` as `size * size * 3` interleaved RGB bytes.
    pub fn image(&self, index: usize) -> &[u8] {
        let stride = image_len(self.size);
        &self.pixels[index * stride..(index + 1) * stride]
    }

    /// The label of image `index`.
    pub fn label(&self, index: usize) -> u32 {
        self.labels[index]
    }

    /// The labels of all images.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Mean and standard deviation per channel over the images at `indices` (normally the
    /// training images only). Computed with exact integer sums, so it does not depend on
    /// the number of threads.
    pub fn stats(&self, indices: &[usize]) -> Result<ChannelStats, Error> {
        if indices.is_empty() {
            return Err(Error::Cache("channel statistics of no images".into()));
        }
        let (sum, sum_sq) = indices
            .par_iter()
            .map(|&i| {
                let mut sum = [0u64; 3];
                let mut sum_sq = [0u64; 3];
                for pixel in self.image(i).chunks_exact(3) {
                    for c in 0..3 {
                        let v = pixel[c] as u64;
                        sum[c] += v;
                        sum_sq[c] += v * v;
                    }
                }
                (sum, sum_sq)
            })
            .reduce(
                || ([0u64; 3], [0u64; 3]),
                |(a, b), (c, d)| {
                    (
                        [a[0] + c[0], a[1] + c[1], a[2] + c[2]],
                        [b[0] + d[0], b[1] + d[1], b[2] + d[2]],
                    )
                },
            );
        let n = (indices.len() * (self.size as usize).pow(2)) as f64;
        let mut stats = ChannelStats {
            mean: [0.0; 3],
            std: [0.0; 3],
        };
        for c in 0..3 {
            let mean = sum[c] as f64 / n / 255.0;
            let mean_sq = sum_sq[c] as f64 / n / (255.0 * 255.0);
            let std = (mean_sq - mean * mean).max(0.0).sqrt();
            stats.mean[c] = mean as f32;
            stats.std[c] = std.max(1.0 / 255.0) as f32;
        }
        Ok(stats)
    }
}

/// Bytes of one `size` x `size` RGB image.
pub(crate) fn image_len(size: u32) -> usize {
    3 * (size as usize) * (size as usize)
}
