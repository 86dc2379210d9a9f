//! Data parallelism for the CPU kernels on candle's own thread pool.
//!
//! candle runs its element-wise CPU ops on a barrier pool whose workers spin for a while
//! after each op before they sleep. Kernels run on a second pool (rayon's) would compete with
//! those spinning workers for the same cores; run on candle's pool, they use the very threads
//! that are already awake.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Splits `out` into pieces of `chunk_len` (the last may be shorter) and calls
/// `f(state, index, piece)` for every piece, the pieces spread in contiguous runs over
/// candle's CPU threads; `init` makes one `state` (scratch space) per thread.
pub fn for_each_chunk_mut<T: Send, S>(
    out: &mut [T],
    chunk_len: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, &mut [T]) + Sync,
) {
    if out.is_empty() {
        return;
    }
    let chunk_len = chunk_len.max(1);
    let pool = candle_core::utils::barrier_pool();
    let threads = pool.n_workers() + 1;
    let chunks = out.len().div_ceil(chunk_len);
    let per_thread = chunks.div_ceil(threads);
    if threads == 1 || chunks == 1 {
        let mut state = init();
        for (i, piece) in out.chunks_mut(chunk_len).enumerate() {
            f(&mut state, i, piece);
        }
        return;
    }
    // One run of whole chunks per thread; each lock is taken once, by its own thread.
    let runs: Vec<Mutex<&mut [T]>> = out
        .chunks_mut(per_thread * chunk_len)
        .map(Mutex::new)
        .collect();
    pool.execute(|thread| {
        let Some(run) = runs.get(thread) else {
            return;
        };
        let mut run = run.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut state = init();
        for (i, piece) in run.chunks_mut(chunk_len).enumerate() {
            f(&mut state, thread * per_thread + i, piece);
        }
    });
}

/// A new vector of `len` elements made piece by piece as [`for_each_chunk_mut`] makes them:
/// each piece starts as `fill` and is then passed to `f(state, index, piece)`.
///
/// The same as `vec![fill; len]` followed by [`for_each_chunk_mut`], without zeroing
/// the whole vector up front on one thread (with freed memory kept in the heap, that memset
/// was 7% of a training step): each thread sets its own pieces just before it writes them,
/// while they are in its cache.
pub fn collect_chunks<T: Copy + Send + Sync, S>(
    len: usize,
    fill: T,
    chunk_len: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, &mut [T]) + Sync,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(len);
    let written = AtomicUsize::new(0);
    for_each_chunk_mut(
        &mut out.spare_capacity_mut()[..len],
        chunk_len,
        init,
        |state, i, piece| {
            for slot in piece.iter_mut() {
                slot.write(fill);
            }
            // SAFETY: every element of `piece` was initialised just above, and
            // `MaybeUninit<T>` has the layout of `T`.
            let piece = unsafe { &mut *(piece as *mut [MaybeUninit<T>] as *mut [T]) };
            written.fetch_add(piece.len(), Ordering::Relaxed);
            f(state, i, piece);
        },
    );
    assert_eq!(
        written.into_inner(),
        len,
        "for_each_chunk_mut visits every piece once"
    );
    // SAFETY: the pieces cover `0..len` without overlap (they are `chunks_mut` of it) and
    // each one was initialised, as the count just checked.
    unsafe { out.set_len(len) };
    out
}

/// `f(index)` for every index in `0..n`, in parallel as [`for_each_chunk_mut`], collected
/// in order.
pub fn map_indices<R: Send>(n: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let mut results: Vec<Option<R>> = (0..n).map(|_| None).collect();
    for_each_chunk_mut(&mut results, 1, || (), |_, i, slot| slot[0] = Some(f(i)));
    results
        .into_iter()
        .map(|r| r.expect("every index is visited"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_is_visited_once_with_its_index() {
        for (len, chunk) in [(0, 3), (1, 3), (10, 3), (64, 8), (1000, 7)] {
            let mut data = vec![usize::MAX; len];
            for_each_chunk_mut(
                &mut data,
                chunk,
                || 0usize,
                |calls, i, piece| {
                    *calls += 1;
                    assert!(piece.len() <= chunk);
                    piece.fill(i);
                },
            );
            let expected: Vec<usize> = (0..len).map(|j| j / chunk).collect();
            assert_eq!(data, expected, "len {len} chunk {chunk}");
        }
        assert_eq!(map_indices(5, |i| i * i), vec![0, 1, 4, 9, 16]);
    }

    #[test]
    fn collected_chunks_start_as_the_fill_value_and_keep_what_f_wrote() {
        for (len, chunk) in [(0, 3), (1, 3), (10, 3), (64, 8), (1000, 7)] {
            let data: Vec<usize> = collect_chunks(
                len,
                0,
                chunk,
                || (),
                |_, i, piece| {
                    assert!(
                        piece.iter().all(|&v| v == 0),
                        "a piece starts as the fill value"
                    );
                    if i % 2 == 0 {
                        piece.fill(i + 1);
                    }
                },
            );
            let expected: Vec<usize> = (0..len)
                .map(|j| {
                    if (j / chunk) % 2 == 0 {
                        j / chunk + 1
                    } else {
                        0
                    }
                })
                .collect();
            assert_eq!(data, expected, "len {len} chunk {chunk}");
        }
    }
}
