//! Mini-batches of cached images as candle tensors, epoch by epoch.

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::augment::normalise;
use super::{Augment, ChannelStats, Error, ImageCache};

/// One mini-batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Normalised images, `[B, 3, S, S]`, in the loader's dtype, on its device.
    pub images: Tensor,
    /// Label indices, `[B]`, `u32`.
    pub labels: Tensor,
    /// The sample index (into the dataset and cache) of each row.
    pub indices: Vec<usize>,
}

/// Turns lists of sample indices into batches: shuffling, augmentation and the tensors'
/// dtype and device are fixed here, the indices and the randomness per epoch.
///
/// Nothing here uses candle's random number generator: the order and every augmentation
/// come from the `ChaCha8Rng` handed to [`Loader::epoch`], so runs repeat from their seed.
#[derive(Debug, Clone)]
pub struct Loader<'a> {
    cache: &'a ImageCache,
    stats: ChannelStats,
    batch_size: usize,
    device: Device,
    dtype: DType,
    augment: Option<Augment>,
    shuffle: bool,
    drop_last: bool,
}

impl<'a> Loader<'a> {
    /// A loader of `batch_size` images normalised with `stats`, as `f32` on `device`, in
    /// order, without augmentation, keeping a last partial batch.
    ///
    /// # Panics
    /// When `batch_size` is 0.
    pub fn new(
        cache: &'a ImageCache,
        stats: ChannelStats,
        batch_size: usize,
        device: &Device,
    ) -> Loader<'a> {
        assert!(batch_size > 0, "batch size must be positive");
        Loader {
            cache,
            stats,
            batch_size,
            device: device.clone(),
            dtype: DType::F32,
            augment: None,
            shuffle: false,
            drop_last: false,
        }
    }

    /// Augments every image with `augment` (training).
    pub fn augment(mut self, augment: Augment) -> Loader<'a> {
        self.augment = Some(augment);
        self
    }

    /// Visits the indices in a new random order every epoch.
    pub fn shuffle(mut self, shuffle: bool) -> Loader<'a> {
        self.shuffle = shuffle;
        self
    }

    /// Leaves out a last batch smaller than the batch size (training with batch norm).
    pub fn drop_last(mut self, drop_last: bool) -> Loader<'a> {
        self.drop_last = drop_last;
        self
    }

    /// The images' dtype (`F32` by default; `F64` for gradient checks).
    pub fn dtype(mut self, dtype: DType) -> Loader<'a> {
        self.dtype = dtype;
        self
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The normalisation applied.
    pub fn stats(&self) -> &ChannelStats {
        &self.stats
    }

    /// One pass over `indices`. With shuffling, the order is `indices` shuffled with `rng`;
    /// with augmentation, a 32-byte epoch seed is then drawn from `rng`, and the image at
    /// position `p` of the epoch is augmented with `ChaCha8Rng::from_seed(epoch_seed)` on
    /// stream `p`, so batches are independent of each other and of the thread count. A
    /// loader with neither leaves `rng` untouched.
    pub fn epoch(&self, indices: &[usize], rng: &mut ChaCha8Rng) -> Epoch<'_> {
        let mut order = indices.to_vec();
        if self.shuffle {
            order.shuffle(rng);
        }
        let seed = self.augment.map(|_| rng.random::<[u8; 32]>());
        self.make_epoch(order, seed)
    }

    /// One pass over `indices` in the given order, without augmentation, whatever the
    /// loader's settings (evaluation); `drop_last` still applies.
    pub fn in_order(&self, indices: &[usize]) -> Epoch<'_> {
        self.make_epoch(indices.to_vec(), None)
    }

    /// The batches an epoch over `images` images has (the last, short one dropped with
    /// [`Loader::drop_last`]).
    pub fn batches_in(&self, images: usize) -> usize {
        if self.drop_last {
            images / self.batch_size
        } else {
            images.div_ceil(self.batch_size)
        }
    }

    fn make_epoch(&self, order: Vec<usize>, seed: Option<[u8; 32]>) -> Epoch<'_> {
        let batches = self.batches_in(order.len());
        Epoch {
            loader: self,
            order,
            seed,
            batches,
            next: 0,
        }
    }

    /// Builds the batch of the samples at epoch positions `positions` of `order`.
    fn build(
        &self,
        order: &[usize],
        positions: std::ops::Range<usize>,
        seed: Option<[u8; 32]>,
    ) -> Result<Batch, Error> {
        let size = self.cache.size();
        let plane = 3 * (size as usize).pow(2);
        let indices: Vec<usize> = order[positions.clone()].to_vec();
        let mut data = vec![0f32; plane * indices.len()];
        data.par_chunks_mut(plane)
            .zip(positions.into_par_iter())
            .for_each(|(out, position)| {
                let image = self.cache.image(order[position]);
                match (self.augment, seed) {
                    (Some(augment), Some(seed)) => {
                        let mut rng = ChaCha8Rng::from_seed(seed);
                        rng.set_stream(position as u64);
                        augment.apply(image, size, &self.stats, &mut rng, out);
                    }
                    _ => normalise(image, size, &self.stats, out),
                }
            });
        let labels: Vec<u32> = indices.iter().map(|&i| self.cache.label(i)).collect();
        let n = indices.len();
        let s = size as usize;
        let mut images = Tensor::from_vec(data, (n, 3, s, s), &self.device)?;
        if self.dtype != DType::F32 {
            images = images.to_dtype(self.dtype)?;
        }
        let labels = Tensor::from_vec(labels, n, &self.device)?;
        Ok(Batch {
            images,
            labels,
            indices,
        })
    }
}

/// The batches of one epoch, built on demand; also addressable by number, so a run that
/// resumes mid-epoch can skip straight to the batch it stopped at.
#[derive(Debug)]
pub struct Epoch<'a> {
    loader: &'a Loader<'a>,
    order: Vec<usize>,
    seed: Option<[u8; 32]>,
    batches: usize,
    next: usize,
}

impl Epoch<'_> {
    /// The sample indices in this epoch's order (including any dropped tail).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Number of batches in the epoch.
    pub fn num_batches(&self) -> usize {
        self.batches
    }

    /// Batch number `b` (0-based) of the epoch, the same whether or not earlier batches
    /// were built.
    ///
    /// # Panics
    /// When `b >= num_batches()`.
    pub fn batch(&self, b: usize) -> Result<Batch, Error> {
        assert!(b < self.batches, "batch {b} of {}", self.batches);
        let size = self.loader.batch_size;
        let end = ((b + 1) * size).min(self.order.len());
        self.loader.build(&self.order, b * size..end, self.seed)
    }
}

impl Iterator for Epoch<'_> {
    type Item = Result<Batch, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.batches {
            return None;
        }
        let batch = self.batch(self.next);
        self.next += 1;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batches - self.next;
        (left, Some(left))
    }

    fn nth(&mut self, n: usize) -> Option<Self::Item> {
        self.next = self.next.saturating_add(n).min(self.batches);
        self.next()
    }
}

impl ExactSizeIterator for Epoch<'_> {}
