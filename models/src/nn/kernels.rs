//! CPU kernels for the per-channel operations that candle runs slowly or cannot
//! differentiate: depthwise convolution (candle runs a grouped convolution as one convolution
//! per group) and 3x3 pooling with padding and stride 1 (candle has no backward for pooling
//! windows that overlap). Each kernel works on one contiguous `H x W` plane; the callers in
//! [`super::functional`] spread planes over threads with [`super::parallel`].
//!
//! All of them are sliding-window loops over a [`PaddedPlane`], a padded copy of the plane
//! whose columns are split by stride phase: every tap then reads whole contiguous runs, eight
//! outputs at a time (no bounds arithmetic per row, no scalar tails), and the loops are also
//! compiled for AVX2 + FMA, chosen at run time.

use multiversion::multiversion;
use multiversion::target::selected_target;
use num_traits::Float;

/// Geometry of a square sliding window over a plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub pad: usize,
    /// Dilation between kernel taps.
    pub dilation: usize,
}

impl Window {
    /// Output height.
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.dilation * (self.k - 1) - 1) / self.stride + 1
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.dilation * (self.k - 1) - 1) / self.stride + 1
    }
}

/// Output positions computed together in the correlation loops: one AVX register of `f32`.
const LANES: usize = 8;

/// A correlation of `k x k` taps at `dilation` and `stride` producing an `out_h x out_w`
/// plane from a [`PaddedPlane`]:
/// `out[oy][ox] = sum_{ty, tx} taps[ty * k + tx] * padded[oy * stride + ty * dilation][ox * stride + tx * dilation]`.
///
/// A depthwise convolution is one (over the zero-padded input); the gradient of its input is
/// another (stride 1, flipped taps, over the zero-padded, stride-spread output gradient).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Correlation {
    /// Kernel side.
    pub k: usize,
    /// Dilation between taps.
    pub dilation: usize,
    /// Stride between output positions.
    pub stride: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
}

impl Correlation {
    /// Rows of the padded plane that the correlation reads.
    fn rows(&self) -> usize {
        (self.out_h - 1) * self.stride + (self.k - 1) * self.dilation + 1
    }

    /// Entries per row of each column phase: whole lane blocks of outputs for every tap.
    fn phase_width(&self) -> usize {
        self.out_w.next_multiple_of(LANES) + (self.k - 1) * self.dilation / self.stride
    }

    /// Per tap, the index in [`PaddedPlane::data`] of what output `(0, 0)` reads.
    fn tap_offsets(&self) -> Vec<usize> {
        let (rows, width) = (self.rows(), self.phase_width());
        let mut offsets = Vec::with_capacity(self.k * self.k);
        for ty in 0..self.k {
            for tx in 0..self.k {
                let column = tx * self.dilation;
                let phase = column % self.stride;
                offsets.push((phase * rows + ty * self.dilation) * width + column / self.stride);
            }
        }
        offsets
    }
}

/// What a kernel reads of its input plane: the values themselves, or their ReLU (fused into
/// the copy into the padded plane, so that `max(x, 0)` is never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// The input as it is.
    Identity,
    /// `max(x, 0)`; NaN stays NaN, as in [`super::functional::relu`].
    Relu,
}

impl Activation {
    #[inline(always)]
    fn apply<T: Float>(self, v: T) -> T {
        match self {
            Activation::Identity => v,
            Activation::Relu if v < T::zero() => T::zero(),
            Activation::Relu => v,
        }
    }

    /// Turns `grad`, the gradient with respect to the activated plane, into the gradient with
    /// respect to its input plane `input`: for ReLU it passes where `input > 0` only.
    pub fn backward<T: Float>(self, input: &[T], grad: &mut [T]) {
        if self == Activation::Relu {
            for (g, &x) in grad.iter_mut().zip(input) {
                *g = if x > T::zero() { *g } else { T::zero() };
            }
        }
    }
}

/// A zero-padded plane laid out for a [`Correlation`], so that every tap reads whole
/// contiguous runs: column `j` is entry `j / stride` of column phase `j % stride`, and each
/// phase row is long enough for whole lane blocks. Reused from plane to plane.
#[derive(Debug, Clone)]
pub struct PaddedPlane<T> {
    data: Vec<T>,
}

impl<T> Default for PaddedPlane<T> {
    fn default() -> Self {
        PaddedPlane { data: Vec::new() }
    }
}

impl<T: Float> PaddedPlane<T> {
    /// Lays out `activation` of `src` (`h x w`) for `corr`: `src[y][x]` at padded position
    /// `(offset + y * spread, offset + x * spread)`, `background` everywhere else; positions
    /// the correlation never reads are left out.
    pub fn fill(
        &mut self,
        src: &[T],
        (h, w): (usize, usize),
        (offset, spread): (usize, usize),
        background: T,
        activation: Activation,
        corr: &Correlation,
    ) {
        let (rows, width, stride) = (corr.rows(), corr.phase_width(), corr.stride);
        self.data.clear();
        self.data.resize(stride * rows * width, background);
        for (y, src_row) in src.chunks_exact(w).take(h).enumerate() {
            let row = offset + y * spread;
            if row >= rows {
                break;
            }
            if stride == 1 && spread == 1 {
                let n = w.min(width.saturating_sub(offset));
                let start = row * width + offset;
                let dst = &mut self.data[start..start + n];
                match activation {
                    Activation::Identity => dst.copy_from_slice(&src_row[..n]),
                    Activation::Relu => {
                        for (d, &v) in dst.iter_mut().zip(src_row) {
                            *d = activation.apply(v);
                        }
                    }
                }
                continue;
            }
            for (x, &v) in src_row.iter().enumerate() {
                let column = offset + x * spread;
                let (phase, pos) = (column % stride, column / stride);
                if pos >= width {
                    break;
                }
                self.data[(phase * rows + row) * width + pos] = activation.apply(v);
            }
        }
    }
}

/// `a * b + c`, fused into one rounding where the CPU has FMA (chosen at compile time).
#[inline(always)]
fn madd<T: Float, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Writes the correlation `corr` of `padded` (filled for `corr`) with `taps` (`k * k`) into
/// `out` (`out_h * out_w`). Compiled for AVX2 + FMA too, chosen at run time.
#[multiversion(targets("x86_64+avx2+fma"))]
pub fn correlate<T: Float>(padded: &PaddedPlane<T>, taps: &[T], corr: &Correlation, out: &mut [T]) {
    const FMA: bool = selected_target!().supports_feature_str("fma");
    let (ow, row_step) = (corr.out_w, corr.stride * corr.phase_width());
    let offsets = corr.tap_offsets();
    for (oy, out_row) in out.chunks_exact_mut(ow).take(corr.out_h).enumerate() {
        let base = oy * row_step;
        for x0 in (0..ow).step_by(LANES) {
            let mut acc = [T::zero(); LANES];
            for (&tap, &offset) in taps.iter().zip(&offsets) {
                let src = &padded.data[base + offset + x0..][..LANES];
                for i in 0..LANES {
                    acc[i] = madd::<T, FMA>(tap, src[i], acc[i]);
                }
            }
            let n = LANES.min(ow - x0);
            out_row[x0..x0 + n].copy_from_slice(&acc[..n]);
        }
    }
}

/// Adds to `grad_taps` the gradient of [`correlate`] with respect to its taps, given the
/// output gradient `grad_out` (`out_h * out_w`):
/// `grad_taps[t] += sum_{oy, ox} grad_out[oy][ox] * padded[...]` at tap `t`'s position.
#[multiversion(targets("x86_64+avx2+fma"))]
pub fn correlate_taps_grad<T: Float>(
    padded: &PaddedPlane<T>,
    grad_out: &[T],
    corr: &Correlation,
    grad_taps: &mut [T],
) {
    const FMA: bool = selected_target!().supports_feature_str("fma");
    let (ow, row_step) = (corr.out_w, corr.stride * corr.phase_width());
    for (grad_tap, offset) in grad_taps.iter_mut().zip(corr.tap_offsets()) {
        let mut acc = [T::zero(); LANES];
        let mut tail = T::zero();
        for (oy, g_row) in grad_out.chunks_exact(ow).take(corr.out_h).enumerate() {
            let src = &padded.data[oy * row_step + offset..][..ow];
            let (g_blocks, src_blocks) = (g_row.chunks_exact(LANES), src.chunks_exact(LANES));
            for (&g, &v) in g_blocks.remainder().iter().zip(src_blocks.remainder()) {
                tail = madd::<T, FMA>(g, v, tail);
            }
            for (g, v) in g_blocks.zip(src_blocks) {
                for i in 0..LANES {
                    acc[i] = madd::<T, FMA>(g[i], v[i], acc[i]);
                }
            }
        }
        *grad_tap = acc.iter().fold(*grad_tap + tail, |sum, &a| sum + a);
    }
}

impl Window {
    /// The correlation that is this window's depthwise convolution, over the input padded by
    /// [`Window::pad`].
    fn forward_correlation(&self) -> Correlation {
        Correlation {
            k: self.k,
            dilation: self.dilation,
            stride: self.stride,
            out_h: self.out_h(),
            out_w: self.out_w(),
        }
    }

    /// Lays `activation` of `input` out in `padded` for [`Window::forward_correlation`], with
    /// `background` in the padding, and returns that correlation.
    fn pad_input<T: Float>(
        &self,
        input: &[T],
        background: T,
        activation: Activation,
        padded: &mut PaddedPlane<T>,
    ) -> Correlation {
        let corr = self.forward_correlation();
        let (spread, dims) = ((self.pad, 1), (self.h, self.w));
        padded.fill(input, dims, spread, background, activation, &corr);
        corr
    }

    /// The correlation that gives the input gradient: stride 1 over the output gradient
    /// spread `stride` apart and padded by `(k - 1) * dilation - pad`, with flipped taps.
    fn input_grad_correlation(&self) -> Correlation {
        Correlation {
            k: self.k,
            dilation: self.dilation,
            stride: 1,
            out_h: self.h,
            out_w: self.w,
        }
    }
}

/// Depthwise convolution of `activation` of one plane with one `k x k` kernel, written into
/// `out`.
pub fn depthwise_forward<T: Float>(
    input: &[T],
    activation: Activation,
    kernel: &[T],
    win: &Window,
    padded: &mut PaddedPlane<T>,
    out: &mut [T],
) {
    let corr = win.pad_input(input, T::zero(), activation, padded);
    correlate(padded, kernel, &corr, out);
}

/// Gradient of [`depthwise_forward`] with respect to its (activated) input plane, written
/// into `grad_in`. The padding must not exceed the kernel's reach, `(k - 1) * dilation`.
pub fn depthwise_backward_input<T: Float>(
    grad_out: &[T],
    kernel: &[T],
    win: &Window,
    padded: &mut PaddedPlane<T>,
    grad_in: &mut [T],
) {
    let reach = (win.k - 1) * win.dilation;
    assert!(
        win.pad <= reach,
        "padding {} beyond the kernel's reach {reach}",
        win.pad
    );
    let corr = win.input_grad_correlation();
    let flipped: Vec<T> = kernel.iter().rev().copied().collect();
    let spread = (reach - win.pad, win.stride);
    padded.fill(
        grad_out,
        (win.out_h(), win.out_w()),
        spread,
        T::zero(),
        Activation::Identity,
        &corr,
    );
    correlate(padded, &flipped, &corr, grad_in);
}

/// Adds to `grad_kernel` (one value per tap) the gradient of [`depthwise_forward`] of
/// `activation` of `input` with respect to the kernel.
pub fn depthwise_backward_kernel<T: Float>(
    grad_out: &[T],
    input: &[T],
    activation: Activation,
    win: &Window,
    padded: &mut PaddedPlane<T>,
    grad_kernel: &mut [T],
) {
    let corr = win.pad_input(input, T::zero(), activation, padded);
    correlate_taps_grad(padded, grad_out, &corr, grad_kernel);
}

/// The pooling reductions of DARTS' candidate operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Maximum over the window; padding never wins.
    Max,
    /// Mean over the window's positions inside the input (`count_include_pad = False`).
    Avg,
}

/// Per output position, the maximum of its window in `padded` (filled with -inf around the
/// input, which never wins), written into `out`, and the index (in window order) of the first
/// tap holding it into `argmax` ([`NO_TAP`] for a window without a value above -inf).
#[multiversion(targets("x86_64+avx2+fma"))]
fn window_max<T: Float>(
    padded: &PaddedPlane<T>,
    corr: &Correlation,
    out: &mut [T],
    argmax: &mut [u8],
) {
    let (ow, row_step) = (corr.out_w, corr.stride * corr.phase_width());
    let offsets = corr.tap_offsets();
    let rows = out.chunks_exact_mut(ow).zip(argmax.chunks_exact_mut(ow));
    for (oy, (out_row, arg_row)) in rows.take(corr.out_h).enumerate() {
        for x0 in (0..ow).step_by(LANES) {
            let mut best = [T::neg_infinity(); LANES];
            // u32 lanes select together with the f32 comparison masks.
            let mut arg = [u32::from(NO_TAP); LANES];
            for (tap, &offset) in offsets.iter().enumerate() {
                let src = &padded.data[oy * row_step + offset + x0..][..LANES];
                for i in 0..LANES {
                    let take = src[i] > best[i];
                    best[i] = if take { src[i] } else { best[i] };
                    arg[i] = if take { tap as u32 } else { arg[i] };
                }
            }
            let n = LANES.min(ow - x0);
            out_row[x0..x0 + n].copy_from_slice(&best[..n]);
            for (a, &t) in arg_row[x0..x0 + n].iter_mut().zip(&arg) {
                *a = t as u8;
            }
        }
    }
}

/// No tap chosen (a window of padding only).
const NO_TAP: u8 = u8::MAX;

/// Adds each output's gradient to the input position of its window's maximum, as recorded in
/// `argmax` by [`window_max`].
fn argmax_scatter<T: Float>(argmax: &[u8], grad_out: &[T], win: &Window, grad_in: &mut [T]) {
    // Each tap's input position relative to its window's top-left corner.
    let tap_offset: Vec<isize> = (0..win.k * win.k)
        .map(|t| ((t / win.k) * win.w + t % win.k) as isize)
        .collect();
    let ow = win.out_w();
    let rows = argmax.chunks_exact(ow).zip(grad_out.chunks_exact(ow));
    for (oy, (arg_row, g_row)) in rows.enumerate() {
        let row_corner = (oy * win.stride) as isize - win.pad as isize;
        for (ox, (&tap, &g)) in arg_row.iter().zip(g_row).enumerate() {
            if tap != NO_TAP {
                let corner =
                    row_corner * win.w as isize + (ox * win.stride) as isize - win.pad as isize;
                let i = (corner + tap_offset[tap as usize]) as usize;
                grad_in[i] = grad_in[i] + g;
            }
        }
    }
}

/// Per-output-position reciprocal window counts along one axis (padding excluded).
fn inverse_counts<T: Float>(win: &Window, len: usize, out: usize) -> Vec<T> {
    (0..out)
        .map(|o| {
            let start = (o * win.stride) as isize - win.pad as isize;
            let lo = start.max(0);
            let hi = (start + win.k as isize).min(len as isize);
            let count = (hi - lo).max(1) as usize;
            T::from(count).expect("count fits the float type").recip()
        })
        .collect()
}

/// `values[oy][ox] *= inv_y[oy] * inv_x[ox]`: average pooling's division by the number of
/// in-bounds window positions.
fn scale_by_counts<T: Float>(values: &mut [T], win: &Window) {
    let (inv_y, inv_x) = (
        inverse_counts::<T>(win, win.h, win.out_h()),
        inverse_counts::<T>(win, win.w, win.out_w()),
    );
    for (row, &iy) in values.chunks_exact_mut(inv_x.len()).zip(&inv_y) {
        for (v, &ix) in row.iter_mut().zip(&inv_x) {
            *v = *v * (iy * ix);
        }
    }
}

/// Pools one plane into `out` (dilation must be 1). Max pooling also records each window's
/// maximal tap in `argmax` (one per output, for [`pool_backward`]); average pooling leaves it.
pub fn pool_forward<T: Float>(
    pool: Pool,
    input: &[T],
    win: &Window,
    padded: &mut PaddedPlane<T>,
    out: &mut [T],
    argmax: &mut [u8],
) {
    match pool {
        Pool::Max => {
            let corr = win.pad_input(input, T::neg_infinity(), Activation::Identity, padded);
            window_max(padded, &corr, out, argmax);
        }
        Pool::Avg => {
            let ones = vec![T::one(); win.k * win.k];
            depthwise_forward(input, Activation::Identity, &ones, win, padded, out);
            scale_by_counts(out, win);
        }
    }
}

/// Gradient of [`pool_forward`] with respect to its input plane, written into `grad_in`.
/// For max pooling the gradient goes to the first maximal position of each window (the
/// forward pass's `argmax`), like PyTorch.
pub fn pool_backward<T: Float>(
    pool: Pool,
    argmax: &[u8],
    grad_out: &[T],
    win: &Window,
    padded: &mut PaddedPlane<T>,
    grad_in: &mut [T],
) {
    match pool {
        Pool::Max => {
            grad_in.fill(T::zero());
            argmax_scatter(argmax, grad_out, win, grad_in);
        }
        Pool::Avg => {
            let mut scaled = grad_out.to_vec();
            scale_by_counts(&mut scaled, win);
            let ones = vec![T::one(); win.k * win.k];
            depthwise_backward_input(&scaled, &ones, win, padded, grad_in);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct evaluation of the depthwise convolution definition.
    fn naive_depthwise(input: &[f64], kernel: &[f64], win: &Window) -> Vec<f64> {
        let (oh, ow) = (win.out_h(), win.out_w());
        let mut out = vec![0.0; oh * ow];
        for oy in 0..oh {
            for ox in 0..ow {
                for ty in 0..win.k {
                    for tx in 0..win.k {
                        let iy = (oy * win.stride + ty * win.dilation) as isize - win.pad as isize;
                        let ix = (ox * win.stride + tx * win.dilation) as isize - win.pad as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < win.h && (ix as usize) < win.w {
                            out[oy * ow + ox] +=
                                kernel[ty * win.k + tx] * input[iy as usize * win.w + ix as usize];
                        }
                    }
                }
            }
        }
        out
    }

    fn windows() -> Vec<Window> {
        let mut all = Vec::new();
        for (k, pad, dilation) in [(3, 1, 1), (5, 2, 1), (3, 2, 2), (5, 4, 2)] {
            for stride in [1, 2] {
                for (h, w) in [(8, 8), (7, 5), (12, 19)] {
                    all.push(Window {
                        h,
                        w,
                        k,
                        stride,
                        pad,
                        dilation,
                    });
                }
            }
        }
        all
    }

    fn data(n: usize, seed: u64) -> Vec<f64> {
        (0..n)
            .map(|i| (((i as u64 + 1) * (seed * 2 + 7919)) % 97) as f64 / 48.5 - 1.0)
            .collect()
    }

    #[test]
    fn depthwise_matches_definition_and_its_adjoints() {
        for win in windows() {
            let input = data(win.h * win.w, 1);
            let kernel = data(win.k * win.k, 2);
            let n_out = win.out_h() * win.out_w();
            let mut padded = PaddedPlane::default();
            let mut out = vec![f64::NAN; n_out];
            depthwise_forward(
                &input,
                Activation::Identity,
                &kernel,
                &win,
                &mut padded,
                &mut out,
            );
            let expected = naive_depthwise(&input, &kernel, &win);
            for (a, b) in out.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-12, "{win:?}");
            }
            // <g, conv(x, k)> is bilinear: its gradients are the adjoints.
            let g = data(n_out, 3);
            let mut gi = vec![f64::NAN; input.len()];
            depthwise_backward_input(&g, &kernel, &win, &mut padded, &mut gi);
            let mut gk = vec![0.0; kernel.len()];
            depthwise_backward_kernel(&g, &input, Activation::Identity, &win, &mut padded, &mut gk);
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
            let lhs = dot(&g, &out);
            assert!((lhs - dot(&gi, &input)).abs() < 1e-9, "{win:?}");
            assert!((lhs - dot(&gk, &kernel)).abs() < 1e-9, "{win:?}");
        }
    }

    /// Pooling by the definition: per output, the first maximal (or the mean of the in-bounds)
    /// window positions, and the gradient routed back to them.
    fn naive_pool(pool: Pool, input: &[f64], g: &[f64], win: &Window) -> (Vec<f64>, Vec<f64>) {
        let (oh, ow) = (win.out_h(), win.out_w());
        let (mut out, mut grad) = (vec![0.0; oh * ow], vec![0.0; input.len()]);
        for oy in 0..oh {
            for ox in 0..ow {
                let mut taps = Vec::new();
                for ty in 0..win.k {
                    for tx in 0..win.k {
                        let iy = (oy * win.stride + ty) as isize - win.pad as isize;
                        let ix = (ox * win.stride + tx) as isize - win.pad as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < win.h && (ix as usize) < win.w {
                            taps.push(iy as usize * win.w + ix as usize);
                        }
                    }
                }
                let o = oy * ow + ox;
                match pool {
                    Pool::Max => {
                        let first_max = taps.iter().copied().fold(taps[0], |best, i| {
                            if input[i] > input[best] {
                                i
                            } else {
                                best
                            }
                        });
                        out[o] = input[first_max];
                        grad[first_max] += g[o];
                    }
                    Pool::Avg => {
                        let n = taps.len() as f64;
                        out[o] = taps.iter().map(|&i| input[i]).sum::<f64>() / n;
                        for &i in &taps {
                            grad[i] += g[o] / n;
                        }
                    }
                }
            }
        }
        (out, grad)
    }

    #[test]
    fn pools_match_definition_with_ties() {
        for stride in [1, 2] {
            for (h, w) in [(8, 8), (7, 5), (12, 19)] {
                let win = Window {
                    h,
                    w,
                    k: 3,
                    stride,
                    pad: 1,
                    dilation: 1,
                };
                // Few distinct values, so that windows hold ties.
                let input: Vec<f64> = data(h * w, 4).iter().map(|v| (v * 3.0).round()).collect();
                let g = data(win.out_h() * win.out_w(), 5);
                for pool in [Pool::Max, Pool::Avg] {
                    let (expected_out, expected_grad) = naive_pool(pool, &input, &g, &win);
                    let mut padded = PaddedPlane::default();
                    let mut out = vec![f64::NAN; g.len()];
                    let mut argmax = vec![0; g.len()];
                    pool_forward(pool, &input, &win, &mut padded, &mut out, &mut argmax);
                    let mut grad = vec![f64::NAN; input.len()];
                    pool_backward(pool, &argmax, &g, &win, &mut padded, &mut grad);
                    for (a, b) in out.iter().zip(&expected_out) {
                        assert!((a - b).abs() < 1e-12, "{pool:?} {win:?}");
                    }
                    for (a, b) in grad.iter().zip(&expected_grad) {
                        assert!((a - b).abs() < 1e-12, "{pool:?} {win:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn pools_exclude_padding() {
        let win = Window {
            h: 2,
            w: 2,
            k: 3,
            stride: 1,
            pad: 1,
            dilation: 1,
        };
        // All negative: a zero (or any) padding value must never take part.
        let input = [-1.0, -2.0, -3.0, -4.0];
        let mut padded = PaddedPlane::default();
        let mut out = [0.0; 4];
        let mut argmax = [0; 4];
        pool_forward(Pool::Avg, &input, &win, &mut padded, &mut out, &mut argmax);
        assert_eq!(out, [-2.5; 4]);
        pool_forward(Pool::Max, &input, &win, &mut padded, &mut out, &mut argmax);
        assert_eq!(out, [-1.0; 4]);
        let mut grad = [f64::NAN; 4];
        pool_backward(Pool::Max, &argmax, &[1.0; 4], &win, &mut padded, &mut grad);
        assert_eq!(grad, [4.0, 0.0, 0.0, 0.0]);
        let mut grad = [f64::NAN; 4];
        pool_backward(Pool::Avg, &argmax, &[1.0; 4], &win, &mut padded, &mut grad);
        assert_eq!(grad, [1.0; 4]);
    }
}
