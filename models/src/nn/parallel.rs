//! Data parallelism for the CPU kernels on candle's own thread pool.
//!
//! candle runs its element-wise CPU ops on a barrier pool whose workers spin for a while
//! after each op before they sleep. Kernels run on a second pool (rayon's) would compete with
//! those spinning workers for the same cores; run on candle's pool, they use the very threads
//! that are already awake.

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
}
