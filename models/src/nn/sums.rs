//! Sums over one plane of a tensor, the reductions of BatchNorm's statistics and gradients.
//!
//! A plain `fold` adds one element after the other: every addition waits for the one before,
//! and the compiler may not reorder float additions to vectorise them. These keep
//! `SUM_LANES` partial sums (one AVX-512 register of `f32`) and add them up at the end,
//! which the compiler turns into vector additions; they are also compiled for AVX2 + FMA and
//! AVX-512, chosen at run time. The result differs from a sequential sum by rounding only.

use multiversion::multiversion;
use num_traits::Float;

/// Partial sums kept side by side.
const SUM_LANES: usize = 16;

/// `sum(x)`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn sum<T: Float>(x: &[T]) -> T {
    let mut acc = [T::zero(); SUM_LANES];
    let blocks = x.chunks_exact(SUM_LANES);
    let tail = blocks.remainder().iter().fold(T::zero(), |s, &v| s + v);
    for block in blocks {
        for i in 0..SUM_LANES {
            acc[i] = acc[i] + block[i];
        }
    }
    acc.iter().fold(tail, |s, &a| s + a)
}

/// `sum((x - mean)^2)`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn sum_squared_deviations<T: Float>(x: &[T], mean: T) -> T {
    let mut acc = [T::zero(); SUM_LANES];
    let blocks = x.chunks_exact(SUM_LANES);
    let tail = blocks
        .remainder()
        .iter()
        .fold(T::zero(), |s, &v| s + (v - mean) * (v - mean));
    for block in blocks {
        for i in 0..SUM_LANES {
            let d = block[i] - mean;
            acc[i] = acc[i] + d * d;
        }
    }
    acc.iter().fold(tail, |s, &a| s + a)
}

/// `(sum(g), sum(g * x))` over slices of one length.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn sum_and_dot<T: Float>(g: &[T], x: &[T]) -> (T, T) {
    assert_eq!(
        g.len(),
        x.len(),
        "sum_and_dot of slices of different lengths"
    );
    let (mut sum, mut dot) = ([T::zero(); SUM_LANES], [T::zero(); SUM_LANES]);
    let (g_blocks, x_blocks) = (g.chunks_exact(SUM_LANES), x.chunks_exact(SUM_LANES));
    let tail = g_blocks
        .remainder()
        .iter()
        .zip(x_blocks.remainder())
        .fold((T::zero(), T::zero()), |(s, d), (&g, &v)| {
            (s + g, d + g * v)
        });
    for (g, v) in g_blocks.zip(x_blocks) {
        for i in 0..SUM_LANES {
            sum[i] = sum[i] + g[i];
            dot[i] = dot[i] + g[i] * v[i];
        }
    }
    (
        sum.iter().fold(tail.0, |s, &a| s + a),
        dot.iter().fold(tail.1, |s, &a| s + a),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sums_agree_with_sequential_sums_at_every_length() {
        for len in [0, 1, 15, 16, 17, 100, 1024, 1031] {
            let x: Vec<f64> = (0..len)
                .map(|i| ((i * 7 % 13) as f64 - 6.0) / 3.0)
                .collect();
            let g: Vec<f64> = (0..len)
                .map(|i| ((i * 5 % 11) as f64 - 5.0) / 4.0)
                .collect();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + b.abs());
            let plain: f64 = x.iter().sum();
            assert!(close(sum(&x), plain), "sum, length {len}");
            let mean = 0.25;
            let squares: f64 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
            assert!(
                close(sum_squared_deviations(&x, mean), squares),
                "length {len}"
            );
            let (s, d) = sum_and_dot(&g, &x);
            let plain_g: f64 = g.iter().sum();
            let plain_dot: f64 = g.iter().zip(&x).map(|(g, v)| g * v).sum();
            assert!(close(s, plain_g) && close(d, plain_dot), "length {len}");
        }
    }
}
