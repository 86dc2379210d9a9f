//! CPU kernels for the per-channel operations that candle runs slowly or cannot
//! differentiate: depthwise convolution (candle runs a grouped convolution as one convolution
//! per group) and 3x3 pooling with padding and stride 1 (candle has no backward for pooling
//! windows that overlap). Each kernel works on one contiguous `H x W` plane; the callers in
//! [`super::functional`] parallelise over planes with rayon.

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

    /// For kernel tap `t`, the range of output positions along an axis of input length `len`
    /// and output length `out` whose input position `o * stride - pad + t * dilation` lies
    /// inside the input.
    fn valid(&self, t: usize, len: usize, out: usize) -> std::ops::Range<usize> {
        let offset = t * self.dilation;
        // o * stride + offset >= pad  and  o * stride + offset < pad + len
        let lo = if offset >= self.pad {
            0
        } else {
            (self.pad - offset).div_ceil(self.stride)
        };
        let hi = if self.pad + len > offset {
            (self.pad + len - offset).div_ceil(self.stride).min(out)
        } else {
            0
        };
        lo..hi.max(lo)
    }

    /// Input index of output position `o` at tap `t` (valid only inside [`Window::valid`]).
    fn input(&self, o: usize, t: usize) -> usize {
        o * self.stride + t * self.dilation - self.pad
    }

    /// Calls `f(tap_y, tap_x, input_row, output_row, input_x_of(first), output_x_range)`
    /// for every pair of rows that a tap connects.
    fn for_each_tap<F: FnMut(usize, usize, usize, usize, std::ops::Range<usize>)>(&self, mut f: F) {
        let (oh, ow) = (self.out_h(), self.out_w());
        for ty in 0..self.k {
            for tx in 0..self.k {
                let xs = self.valid(tx, self.w, ow);
                if xs.is_empty() {
                    continue;
                }
                for oy in self.valid(ty, self.h, oh) {
                    f(ty * self.k + tx, self.input(oy, ty), oy, tx, xs.clone());
                }
            }
        }
    }
}

/// Depthwise convolution of one plane: `out += sum_taps kernel[tap] * input[shifted]`.
pub fn depthwise_forward<T: Float>(input: &[T], kernel: &[T], win: &Window, out: &mut [T]) {
    let ow = win.out_w();
    win.for_each_tap(|tap, iy, oy, tx, xs| {
        let kv = kernel[tap];
        let in_row = &input[iy * win.w..(iy + 1) * win.w];
        let out_row = &mut out[oy * ow..(oy + 1) * ow];
        if win.stride == 1 {
            let start = win.input(xs.start, tx);
            let src = &in_row[start..start + xs.len()];
            for (o, &i) in out_row[xs].iter_mut().zip(src) {
                *o = *o + kv * i;
            }
        } else {
            for ox in xs {
                out_row[ox] = out_row[ox] + kv * in_row[win.input(ox, tx)];
            }
        }
    });
}

/// Gradient of [`depthwise_forward`] with respect to its input plane (accumulated).
pub fn depthwise_backward_input<T: Float>(
    grad_out: &[T],
    kernel: &[T],
    win: &Window,
    grad_in: &mut [T],
) {
    let ow = win.out_w();
    win.for_each_tap(|tap, iy, oy, tx, xs| {
        let kv = kernel[tap];
        let go_row = &grad_out[oy * ow..(oy + 1) * ow];
        let gi_row = &mut grad_in[iy * win.w..(iy + 1) * win.w];
        if win.stride == 1 {
            let start = win.input(xs.start, tx);
            let dst = &mut gi_row[start..start + xs.len()];
            for (g, &o) in dst.iter_mut().zip(&go_row[xs]) {
                *g = *g + kv * o;
            }
        } else {
            for ox in xs {
                let ix = win.input(ox, tx);
                gi_row[ix] = gi_row[ix] + kv * go_row[ox];
            }
        }
    });
}

/// Gradient of [`depthwise_forward`] with respect to the kernel (accumulated into
/// `grad_kernel`, one value per tap).
pub fn depthwise_backward_kernel<T: Float>(
    grad_out: &[T],
    input: &[T],
    win: &Window,
    grad_kernel: &mut [T],
) {
    let ow = win.out_w();
    win.for_each_tap(|tap, iy, oy, tx, xs| {
        let go_row = &grad_out[oy * ow..(oy + 1) * ow];
        let in_row = &input[iy * win.w..(iy + 1) * win.w];
        let mut acc = T::zero();
        if win.stride == 1 {
            let start = win.input(xs.start, tx);
            for (&o, &i) in go_row[xs.clone()]
                .iter()
                .zip(&in_row[start..start + xs.len()])
            {
                acc = acc + o * i;
            }
        } else {
            for ox in xs {
                acc = acc + go_row[ox] * in_row[win.input(ox, tx)];
            }
        }
        grad_kernel[tap] = grad_kernel[tap] + acc;
    });
}

/// The pooling reductions of DARTS' candidate operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Maximum over the window; padding never wins.
    Max,
    /// Mean over the window's positions inside the input (`count_include_pad = False`).
    Avg,
}

/// Number of window positions inside the input for output `(oy, ox)`.
fn window_count(win: &Window, oy: usize, ox: usize) -> usize {
    let axis = |o: usize, len: usize| {
        let start = (o * win.stride) as isize - win.pad as isize;
        let lo = start.max(0);
        let hi = (start + win.k as isize).min(len as isize);
        (hi - lo).max(0) as usize
    };
    axis(oy, win.h) * axis(ox, win.w)
}

/// Pools one plane (dilation must be 1).
pub fn pool_forward<T: Float>(pool: Pool, input: &[T], win: &Window, out: &mut [T]) {
    let ow = win.out_w();
    match pool {
        Pool::Max => {
            out.fill(T::neg_infinity());
            win.for_each_tap(|_, iy, oy, tx, xs| {
                let in_row = &input[iy * win.w..(iy + 1) * win.w];
                let out_row = &mut out[oy * ow..(oy + 1) * ow];
                for ox in xs {
                    out_row[ox] = out_row[ox].max(in_row[win.input(ox, tx)]);
                }
            });
        }
        Pool::Avg => {
            out.fill(T::zero());
            win.for_each_tap(|_, iy, oy, tx, xs| {
                let in_row = &input[iy * win.w..(iy + 1) * win.w];
                let out_row = &mut out[oy * ow..(oy + 1) * ow];
                for ox in xs {
                    out_row[ox] = out_row[ox] + in_row[win.input(ox, tx)];
                }
            });
            for (i, o) in out.iter_mut().enumerate() {
                let count = window_count(win, i / ow, i % ow);
                *o = *o / T::from(count).expect("count fits the float type");
            }
        }
    }
}

/// Gradient of [`pool_forward`] with respect to its input plane (accumulated). For max
/// pooling the gradient goes to the first maximal position of each window, like PyTorch.
pub fn pool_backward<T: Float>(
    pool: Pool,
    input: &[T],
    grad_out: &[T],
    win: &Window,
    grad_in: &mut [T],
) {
    let (oh, ow) = (win.out_h(), win.out_w());
    match pool {
        Pool::Max => {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = None::<(usize, T)>;
                    for ty in 0..win.k {
                        let iy = (oy * win.stride + ty) as isize - win.pad as isize;
                        if iy < 0 || iy as usize >= win.h {
                            continue;
                        }
                        for tx in 0..win.k {
                            let ix = (ox * win.stride + tx) as isize - win.pad as isize;
                            if ix < 0 || ix as usize >= win.w {
                                continue;
                            }
                            let idx = iy as usize * win.w + ix as usize;
                            if best.is_none_or(|(_, v)| input[idx] > v) {
                                best = Some((idx, input[idx]));
                            }
                        }
                    }
                    if let Some((idx, _)) = best {
                        grad_in[idx] = grad_in[idx] + grad_out[oy * ow + ox];
                    }
                }
            }
        }
        Pool::Avg => {
            let scaled: Vec<T> = grad_out
                .iter()
                .enumerate()
                .map(|(i, &g)| g / T::from(window_count(win, i / ow, i % ow)).expect("count fits"))
                .collect();
            win.for_each_tap(|_, iy, oy, tx, xs| {
                let go_row = &scaled[oy * ow..(oy + 1) * ow];
                let gi_row = &mut grad_in[iy * win.w..(iy + 1) * win.w];
                for ox in xs {
                    let ix = win.input(ox, tx);
                    gi_row[ix] = gi_row[ix] + go_row[ox];
                }
            });
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
                for (h, w) in [(8, 8), (7, 5)] {
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
            let mut out = vec![0.0; n_out];
            depthwise_forward(&input, &kernel, &win, &mut out);
            let expected = naive_depthwise(&input, &kernel, &win);
            for (a, b) in out.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-12, "{win:?}");
            }
            // <g, conv(x, k)> is bilinear: its gradients are the adjoints.
            let g = data(n_out, 3);
            let mut gi = vec![0.0; input.len()];
            depthwise_backward_input(&g, &kernel, &win, &mut gi);
            let mut gk = vec![0.0; kernel.len()];
            depthwise_backward_kernel(&g, &input, &win, &mut gk);
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
            let lhs = dot(&g, &out);
            assert!((lhs - dot(&gi, &input)).abs() < 1e-9, "{win:?}");
            assert!((lhs - dot(&gk, &kernel)).abs() < 1e-9, "{win:?}");
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
        let input = [1.0, -2.0, -3.0, -4.0];
        let mut out = [0.0; 4];
        pool_forward(Pool::Avg, &input, &win, &mut out);
        assert_eq!(out, [-2.0; 4]);
        pool_forward(Pool::Max, &input, &win, &mut out);
        assert_eq!(out, [1.0; 4]);
        let mut grad = [0.0; 4];
        pool_backward(Pool::Max, &input, &[1.0; 4], &win, &mut grad);
        assert_eq!(grad, [4.0, 0.0, 0.0, 0.0]);
        let mut grad = [0.0; 4];
        pool_backward(Pool::Avg, &input, &[1.0; 4], &win, &mut grad);
        assert_eq!(grad, [1.0; 4]);
    }
}
