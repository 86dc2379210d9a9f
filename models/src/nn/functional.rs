//! Differentiable tensor functions built on the CPU kernels of [`super::kernels`], with
//! portable candle formulations on other devices.

use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use num_traits::Float;

use super::kernels::{self, Activation, PaddedPlane, Pool, Window};
use super::parallel::{collect_chunks, for_each_chunk_mut};

/// Reads a contiguous tensor's storage slice.
fn slice<'a, T: candle_core::WithDType>(storage: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage[start..end]),
        None => candle_core::bail!("kernel input must be contiguous"),
    }
}

/// The values of a contiguous CPU storage under `layout` (the inputs of the fused ops'
/// forward passes); an error names `op` when the layout is not contiguous.
pub(super) fn storage_slice<'a, T: candle_core::WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<T>()?[start..end]),
        None => candle_core::bail!("{op}: inputs must be contiguous"),
    }
}

/// Passes the slice of a CPU tensor's values (made contiguous if needed) to `f`, without
/// copying them out.
pub(super) fn with_slice<T: candle_core::WithDType, R>(
    t: &Tensor,
    f: impl FnOnce(&[T]) -> R,
) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("CPU tensor expected");
    };
    let (start, end) = layout
        .contiguous_offsets()
        .expect("contiguous() gives a contiguous layout");
    Ok(f(&cpu.as_slice::<T>()?[start..end]))
}

fn dims4(shape: &Shape) -> Result<(usize, usize, usize, usize)> {
    shape.dims4()
}

/// Depthwise 2-D convolution of `activation` of `x` (`[B, C, H, W]`) with `kernel`
/// (`[C, 1, K, K]`).
#[derive(Debug, Clone, Copy)]
struct Depthwise {
    stride: usize,
    pad: usize,
    dilation: usize,
    activation: Activation,
}

impl Depthwise {
    fn window(&self, h: usize, w: usize, k: usize) -> Window {
        Window {
            h,
            w,
            k,
            stride: self.stride,
            pad: self.pad,
            dilation: self.dilation,
        }
    }

    fn forward<T: Float + candle_core::WithDType + Send + Sync>(
        &self,
        x: &[T],
        x_shape: &Shape,
        kernel: &[T],
        k: usize,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(x_shape)?;
        let win = self.window(h, w, k);
        let (oh, ow) = (win.out_h(), win.out_w());
        let out = collect_chunks(
            b * c * oh * ow,
            T::zero(),
            oh * ow,
            PaddedPlane::default,
            |padded, plane, out| {
                let taps = &kernel[(plane % c) * k * k..][..k * k];
                let x = &x[plane * h * w..][..h * w];
                kernels::depthwise_forward(x, self.activation, taps, &win, padded, out);
            },
        );
        Ok((T::to_cpu_storage_owned(out), Shape::from((b, c, oh, ow))))
    }

    fn backward<T: Float + candle_core::WithDType + Send + Sync>(
        &self,
        x: &Tensor,
        kernel: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (b, c, h, w) = x.dims4()?;
        let k = kernel.dim(3)?;
        let win = self.window(h, w, k);
        let plane_out = win.out_h() * win.out_w();
        let (grad_x, grad_k) = with_slice::<T, _>(x, |xv| {
            with_slice::<T, _>(kernel, |kv| {
                with_slice::<T, _>(grad, |gv| {
                    let grad_x = collect_chunks(
                        xv.len(),
                        T::zero(),
                        h * w,
                        PaddedPlane::default,
                        |padded, plane, gx| {
                            let taps = &kv[(plane % c) * k * k..][..k * k];
                            let g = &gv[plane * plane_out..][..plane_out];
                            kernels::depthwise_backward_input(g, taps, &win, padded, gx);
                            self.activation.backward(&xv[plane * h * w..][..h * w], gx);
                        },
                    );
                    let grad_k = collect_chunks(
                        kv.len(),
                        T::zero(),
                        k * k,
                        PaddedPlane::default,
                        |padded, ch, gk| {
                            for n in 0..b {
                                let plane = n * c + ch;
                                kernels::depthwise_backward_kernel(
                                    &gv[plane * plane_out..][..plane_out],
                                    &xv[plane * h * w..][..h * w],
                                    self.activation,
                                    &win,
                                    padded,
                                    gk,
                                );
                            }
                        },
                    );
                    (grad_x, grad_k)
                })
            })
        })???;
        Ok((
            Tensor::from_vec(grad_x, x.shape(), x.device())?,
            Tensor::from_vec(grad_k, kernel.shape(), kernel.device())?,
        ))
    }
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        match self.activation {
            Activation::Identity => "depthwise-conv2d",
            Activation::Relu => "relu-depthwise-conv2d",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let k = l2.shape().dims()[3];
        match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(kern)) => {
                self.forward(slice(x, l1)?, l1.shape(), slice(kern, l2)?, k)
            }
            (CpuStorage::F64(x), CpuStorage::F64(kern)) => {
                self.forward(slice(x, l1)?, l1.shape(), slice(kern, l2)?, k)
            }
            _ => candle_core::bail!("{} supports f32 and f64 only", self.name()),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        kernel: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gk) = match x.dtype() {
            DType::F32 => self.backward::<f32>(x, kernel, grad)?,
            DType::F64 => self.backward::<f64>(x, kernel, grad)?,
            dtype => candle_core::bail!("{} backward: unsupported {dtype:?}", self.name()),
        };
        Ok((Some(gx), Some(gk)))
    }
}

/// Depthwise convolution of `x` `[B, C, H, W]` with `kernel` `[C, 1, K, K]`.
///
/// On the CPU a dedicated kernel (forward and backward); elsewhere candle's grouped
/// convolution.
pub fn depthwise_conv2d(
    x: &Tensor,
    kernel: &Tensor,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Result<Tensor> {
    apply_depthwise(x, kernel, (stride, pad, dilation), Activation::Identity)
}

/// [`depthwise_conv2d`] of `relu(x)`: on the CPU one op that never stores the ReLU (it is
/// taken while the kernel pads each plane, and its mask applied to the input gradient).
pub fn relu_depthwise_conv2d(
    x: &Tensor,
    kernel: &Tensor,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Result<Tensor> {
    apply_depthwise(x, kernel, (stride, pad, dilation), Activation::Relu)
}

fn apply_depthwise(
    x: &Tensor,
    kernel: &Tensor,
    (stride, pad, dilation): (usize, usize, usize),
    activation: Activation,
) -> Result<Tensor> {
    let op = Depthwise {
        stride,
        pad,
        dilation,
        activation,
    };
    if x.device().is_cpu() {
        // The CPU backward pass computes the input gradient as a correlation padded by
        // `(k - 1) * dilation - pad`.
        let k = kernel.dim(3)?;
        if pad > (k - 1) * dilation {
            candle_core::bail!("{}: padding {pad} beyond the {k}x{k} kernel", op.name());
        }
        x.contiguous()?.apply_op2(&kernel.contiguous()?, op)
    } else {
        let x = match activation {
            Activation::Identity => x.clone(),
            Activation::Relu => relu(x)?,
        };
        let groups = x.dim(1)?;
        x.conv2d(kernel, pad, stride, dilation, groups)
    }
}

/// `k x k` pooling: 3x3 with padding 1 (DARTS' pooling candidates) or 2x2 max pooling at
/// stride 2 (PC-DARTS' bypass of reducing edges). Max pooling keeps the tap of each window's
/// maximum from the forward pass (one byte per output) for the backward pass, which sends
/// each window's gradient to that first maximum, as PyTorch does.
#[derive(Debug)]
struct Pooling {
    pool: Pool,
    k: usize,
    stride: usize,
    pad: usize,
    argmax: OnceLock<Vec<u8>>,
}

impl Pooling {
    fn window(&self, h: usize, w: usize) -> Window {
        Window {
            h,
            w,
            k: self.k,
            stride: self.stride,
            pad: self.pad,
            dilation: 1,
        }
    }

    fn forward<T: Float + candle_core::WithDType + Send + Sync>(
        &self,
        x: &[T],
        shape: &Shape,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(shape)?;
        let win = self.window(h, w);
        let (oh, ow) = (win.out_h(), win.out_w());
        let plane_out = oh * ow;
        let mut out = vec![T::zero(); b * c * plane_out];
        let mut argmax = vec![0u8; if self.pool == Pool::Max { out.len() } else { 0 }];
        let mut pieces: Vec<(&mut [T], &mut [u8])> = match self.pool {
            Pool::Max => out
                .chunks_mut(plane_out)
                .zip(argmax.chunks_mut(plane_out))
                .collect(),
            Pool::Avg => out
                .chunks_mut(plane_out)
                .map(|o| (o, &mut [][..]))
                .collect(),
        };
        for_each_chunk_mut(
            &mut pieces,
            1,
            PaddedPlane::default,
            |padded, plane, piece| {
                let x = &x[plane * h * w..][..h * w];
                let (out, argmax) = &mut piece[0];
                kernels::pool_forward(self.pool, x, &win, padded, out, argmax);
            },
        );
        drop(pieces);
        if self.pool == Pool::Max && self.argmax.set(argmax).is_err() {
            candle_core::bail!("{}: the op ran forward twice", self.name());
        }
        Ok((T::to_cpu_storage_owned(out), Shape::from((b, c, oh, ow))))
    }

    fn backward<T: Float + candle_core::WithDType + Send + Sync>(
        &self,
        x: &Tensor,
        grad: &Tensor,
    ) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let win = self.window(h, w);
        let plane_out = win.out_h() * win.out_w();
        let argmax: &[u8] = match self.pool {
            Pool::Max => self.argmax.get().map(Vec::as_slice).ok_or_else(|| {
                candle_core::Error::Msg(format!("{}: backward before forward", self.name()))
            })?,
            Pool::Avg => &[],
        };
        let grad_x = with_slice::<T, _>(grad, |gv| {
            let grad_x = collect_chunks(
                x.elem_count(),
                T::zero(),
                h * w,
                PaddedPlane::default,
                |padded, plane, gx| {
                    let g = &gv[plane * plane_out..][..plane_out];
                    let argmax = argmax.get(plane * plane_out..).unwrap_or(&[]);
                    kernels::pool_backward(self.pool, argmax, g, &win, padded, gx);
                },
            );
            grad_x
        })?;
        Tensor::from_vec(grad_x, x.shape(), x.device())
    }
}

impl CustomOp1 for Pooling {
    fn name(&self) -> &'static str {
        match (self.pool, self.k) {
            (Pool::Max, 2) => "max-pool-2x2",
            (Pool::Max, _) => "max-pool-3x3",
            (Pool::Avg, _) => "avg-pool-3x3",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        match storage {
            CpuStorage::F32(x) => self.forward(slice(x, layout)?, layout.shape()),
            CpuStorage::F64(x) => self.forward(slice(x, layout)?, layout.shape()),
            _ => candle_core::bail!("{} supports f32 and f64 only", self.name()),
        }
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let gx = match x.dtype() {
            DType::F32 => self.backward::<f32>(x, grad)?,
            DType::F64 => self.backward::<f64>(x, grad)?,
            dtype => candle_core::bail!("{} backward: unsupported {dtype:?}", self.name()),
        };
        Ok(Some(gx))
    }
}

/// 3x3 max pooling, padding 1, at `stride` 1 or 2.
pub fn max_pool3x3(x: &Tensor, stride: usize) -> Result<Tensor> {
    pool3x3(x, Pool::Max, stride)
}

/// 3x3 average pooling, padding 1 excluded from the mean, at `stride` 1 or 2.
pub fn avg_pool3x3(x: &Tensor, stride: usize) -> Result<Tensor> {
    pool3x3(x, Pool::Avg, stride)
}

/// 2x2 max pooling at stride 2 (a last odd row or column is dropped, as PyTorch's
/// `MaxPool2d(2, 2)` does). Its gradient goes to each window's first maximum; candle's own
/// `max_pool2d` multiplies it by the share of the window's positions that hold the maximum
/// instead (a quarter of it for a single maximum), so it is not used where gradients count.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        let op = Pooling {
            pool: Pool::Max,
            k: 2,
            stride: 2,
            pad: 0,
            argmax: OnceLock::new(),
        };
        return x.contiguous()?.apply_op1(op);
    }
    // Portable form: the maximum over each window's four positions, as a reduction.
    let (b, c, h, w) = x.dims4()?;
    let (oh, ow) = (h / 2, w / 2);
    x.narrow(2, 0, 2 * oh)?
        .narrow(3, 0, 2 * ow)?
        .contiguous()?
        .reshape((b, c, oh, 2, ow, 2))?
        .max(5)?
        .max(3)
}

fn pool3x3(x: &Tensor, pool: Pool, stride: usize) -> Result<Tensor> {
    if x.device().is_cpu() {
        let op = Pooling {
            pool,
            k: 3,
            stride,
            pad: 1,
            argmax: OnceLock::new(),
        };
        return x.contiguous()?.apply_op1(op);
    }
    // Portable form: reduce the nine shifted views of the padded input.
    let (_, _, h, w) = x.dims4()?;
    let fill = match pool {
        Pool::Max => f64::NEG_INFINITY,
        Pool::Avg => 0.0,
    };
    let padded = pad_constant(x, 1, fill)?;
    let mut acc: Option<Tensor> = None;
    for dy in 0..3 {
        for dx in 0..3 {
            let view = padded.narrow(2, dy, h)?.narrow(3, dx, w)?;
            acc = Some(match (acc, pool) {
                (None, _) => view,
                (Some(a), Pool::Max) => a.maximum(&view)?,
                (Some(a), Pool::Avg) => (a + view)?,
            });
        }
    }
    let mut out = acc.expect("nine views");
    if pool == Pool::Avg {
        let counts = window_counts(h, w, x)?;
        out = out.broadcast_div(&counts)?;
    }
    if stride == 2 {
        out = subsample2(&out, 0)?;
    }
    Ok(out)
}

/// The number of in-bounds positions of each 3x3 window, as a `[1, 1, H, W]` tensor.
fn window_counts(h: usize, w: usize, like: &Tensor) -> Result<Tensor> {
    let axis = |i: usize, len: usize| (i.min(1) + 1 + usize::from(i + 1 < len)) as f64;
    let counts: Vec<f64> = (0..h * w)
        .map(|i| axis(i / w, h) * axis(i % w, w))
        .collect();
    Tensor::from_vec(counts, (1, 1, h, w), like.device())?.to_dtype(like.dtype())
}

/// Pads the two spatial dimensions of `[B, C, H, W]` by `pad` on every side with `value`.
pub fn pad_constant(x: &Tensor, pad: usize, value: f64) -> Result<Tensor> {
    if value == 0.0 {
        return x.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad);
    }
    let (b, c, h, w) = x.dims4()?;
    let rows = Tensor::full(value, (b, c, pad, w), x.device())?.to_dtype(x.dtype())?;
    let x = Tensor::cat(&[&rows, x, &rows], 2)?;
    let cols = Tensor::full(value, (b, c, h + 2 * pad, pad), x.device())?.to_dtype(x.dtype())?;
    Tensor::cat(&[&cols, &x, &cols], 3)
}

/// Keeps every second row and column of `[B, C, H, W]`, starting at `offset` (0 or 1),
/// as a stride-2 1x1 convolution or pooling does. `H` and `W` must be even.
pub fn subsample2(x: &Tensor, offset: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if h % 2 != 0 || w % 2 != 0 {
        candle_core::bail!("stride-2 reduction needs an even feature map, got {h}x{w}");
    }
    x.reshape((b, c, h / 2, 2, w / 2, 2))?
        .narrow(3, offset, 1)?
        .narrow(5, offset, 1)?
        .reshape((b, c, h / 2, w / 2))
}

/// Elements per parallel work item of the element-wise ops.
const RUN: usize = 1 << 14;

/// `max(x, 0)` with the backward pass `grad * (y > 0)` in one sweep (candle's own ReLU
/// backward builds a zero tensor, a mask, its float copy and a product).
#[derive(Debug, Clone, Copy)]
struct Relu;

impl Relu {
    fn backward<T: Float + candle_core::WithDType + Send + Sync>(
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<Tensor> {
        let out = with_slice::<T, _>(y, |yv| {
            with_slice::<T, _>(grad, |gv| {
                let out = collect_chunks(
                    gv.len(),
                    T::zero(),
                    RUN,
                    || (),
                    |_, i, o| {
                        let (y, g) = (&yv[i * RUN..], &gv[i * RUN..]);
                        for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
                            *o = if y > T::zero() { g } else { T::zero() };
                        }
                    },
                );
                out
            })
        })??;
        Tensor::from_vec(out, y.shape(), y.device())
    }
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "relu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        fn forward<T: Float + candle_core::WithDType + Send + Sync>(x: &[T]) -> CpuStorage {
            let out = collect_chunks(
                x.len(),
                T::zero(),
                RUN,
                || (),
                |_, i, o| {
                    for (o, &v) in o.iter_mut().zip(&x[i * RUN..]) {
                        *o = if v < T::zero() { T::zero() } else { v }; // NaN stays NaN
                    }
                },
            );
            T::to_cpu_storage_owned(out)
        }
        let out = match storage {
            CpuStorage::F32(x) => forward(slice(x, layout)?),
            CpuStorage::F64(x) => forward(slice(x, layout)?),
            _ => candle_core::bail!("relu supports f32 and f64 only"),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(match y.dtype() {
            DType::F32 => Relu::backward::<f32>(y, grad)?,
            DType::F64 => Relu::backward::<f64>(y, grad)?,
            dtype => candle_core::bail!("relu backward: unsupported {dtype:?}"),
        }))
    }
}

/// `max(x, 0)`: one fused op with a one-sweep backward on the CPU, candle's elsewhere.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        return x.contiguous()?.apply_op1(Relu);
    }
    x.relu()
}

/// Global average pooling of `[B, C, H, W]` to `[B, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.mean(D::Minus1)?.mean(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::super::testing::ramp;
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn depthwise_agrees_with_candle_grouped_conv_both_ways() {
        for (k, pad, dil, stride) in [(3, 1, 1, 1), (5, 2, 1, 2), (3, 2, 2, 1), (5, 4, 2, 2)] {
            let x = Var::from_tensor(&ramp((2, 3, 8, 8), 1.0, 0)).unwrap();
            let kern = Var::from_tensor(&ramp((3, 1, k, k), 0.5, 0)).unwrap();
            let ours = depthwise_conv2d(&x, &kern, stride, pad, dil).unwrap();
            let theirs = x.conv2d(&kern, pad, stride, dil, 3).unwrap();
            let diff = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
            let weight = ramp(ours.dims4().unwrap(), 1.0, 0);
            let g1 = (&ours * &weight)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (&theirs * &weight)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in [&x, &kern] {
                let d = (g1.get(v).unwrap() - g2.get(v).unwrap())
                    .unwrap()
                    .abs()
                    .unwrap();
                let d = d.max_all().unwrap().to_scalar::<f64>().unwrap();
                assert!(d < 1e-10, "k{k} d{dil} s{stride}: {d}");
            }
        }
    }

    #[test]
    fn relu_depthwise_agrees_with_candle_relu_then_grouped_conv_both_ways() {
        use super::super::testing::{max_diff, readout_grads};
        for (k, pad, dil, stride) in [(3, 1, 1, 1), (5, 2, 1, 2), (3, 2, 2, 1), (5, 4, 2, 2)] {
            // Shifted off the ramp's exact zeros, where ReLU's derivative is a convention.
            let x = Var::from_tensor(&(ramp((2, 3, 8, 8), 1.0, 0) + 0.005).unwrap()).unwrap();
            let kern = Var::from_tensor(&ramp((3, 1, k, k), 0.5, 0)).unwrap();
            let ours = relu_depthwise_conv2d(&x, &kern, stride, pad, dil).unwrap();
            let theirs = x
                .relu()
                .unwrap()
                .conv2d(&kern, pad, stride, dil, 3)
                .unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-12, "k{k} d{dil} s{stride}");
            let readout = ramp(ours.dims4().unwrap(), 1.0, 0);
            let ours = readout_grads(&ours, &readout, [&x, &kern]);
            let theirs = readout_grads(&theirs, &readout, [&x, &kern]);
            for (o, t) in ours.iter().zip(&theirs) {
                let d = max_diff(o.as_ref().unwrap(), t.as_ref().unwrap());
                assert!(d < 1e-10, "k{k} d{dil} s{stride}: {d}");
            }
        }
    }

    #[test]
    fn depthwise_padding_beyond_the_kernel_is_an_error() {
        let x = ramp((1, 2, 6, 6), 1.0, 0);
        let kern = ramp((2, 1, 3, 3), 0.5, 0);
        let err = depthwise_conv2d(&x, &kern, 1, 3, 1).unwrap_err();
        assert!(err.to_string().contains("padding 3"), "{err}");
    }

    #[test]
    fn max_pool_2x2_sends_each_window_gradient_to_its_maximum() {
        for (h, w) in [(6, 6), (5, 7)] {
            let x = Var::from_tensor(&ramp((2, 3, h, w), 1.0, 0)).unwrap();
            let ours = max_pool2x2(&x).unwrap();
            let theirs = x.max_pool2d(2).unwrap();
            assert_eq!(ours.dims4().unwrap(), (2, 3, h / 2, w / 2));
            let diff = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f64>().unwrap(), 0.0);
            let weight = ramp(ours.dims4().unwrap(), 1.0, 3);
            let grad = (&ours * &weight)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let grad: Vec<f64> = grad
                .get(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            // By hand: the whole output gradient lands on the window's largest input.
            let xv: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
            let wv: Vec<f64> = weight.flatten_all().unwrap().to_vec1().unwrap();
            let mut expected = vec![0.0; xv.len()];
            let (oh, ow) = (h / 2, w / 2);
            for plane in 0..6 {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let at =
                            |dy: usize, dx: usize| plane * h * w + (2 * oy + dy) * w + 2 * ox + dx;
                        let best = [(0, 0), (0, 1), (1, 0), (1, 1)]
                            .into_iter()
                            .map(|(dy, dx)| at(dy, dx))
                            .fold(None, |b: Option<usize>, i| match b {
                                Some(b) if xv[b] >= xv[i] => Some(b),
                                _ => Some(i),
                            })
                            .unwrap();
                        expected[best] += wv[plane * oh * ow + oy * ow + ox];
                    }
                }
            }
            assert_eq!(grad, expected, "{h}x{w}");
        }
    }

    #[test]
    fn pooling_kernels_agree_with_portable_form() {
        let x = ramp((2, 3, 6, 6), 1.0, 0);
        for stride in [1, 2] {
            for pool in [Pool::Max, Pool::Avg] {
                let ours = pool3x3(&x, pool, stride).unwrap();
                let padded =
                    pad_constant(&x, 1, if pool == Pool::Max { -1e9 } else { 0.0 }).unwrap();
                let mut acc: Option<Tensor> = None;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let v = padded.narrow(2, dy, 6).unwrap().narrow(3, dx, 6).unwrap();
                        acc = Some(match acc {
                            None => v,
                            Some(a) if pool == Pool::Max => a.maximum(&v).unwrap(),
                            Some(a) => (a + v).unwrap(),
                        });
                    }
                }
                let mut reference = acc.unwrap();
                if pool == Pool::Avg {
                    let counts = window_counts(6, 6, &x).unwrap();
                    reference = reference.broadcast_div(&counts).unwrap();
                }
                if stride == 2 {
                    reference = subsample2(&reference, 0).unwrap();
                }
                let d = (ours - reference)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap();
                assert!(d.to_scalar::<f64>().unwrap() < 1e-12, "{pool:?} s{stride}");
            }
        }
    }

    #[test]
    fn fused_relu_agrees_with_candle_both_ways() {
        // Shifted off the ramp's exact zeros, where the two differ by convention.
        let x = Var::from_tensor(&(ramp((2, 3, 4, 5), 1.0, 0) + 0.005).unwrap()).unwrap();
        let readout = ramp((2, 3, 4, 5), 0.7, 0);
        let run = |y: Tensor| {
            let g = (&y * &readout)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            (y, g.get(&x).unwrap().clone())
        };
        let (ours, ours_g) = run(relu(&x).unwrap());
        let (theirs, theirs_g) = run(x.relu().unwrap());
        let d = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        assert_eq!(d(&ours, &theirs), 0.0);
        assert_eq!(d(&ours_g, &theirs_g), 0.0);
        // At exactly 0 no gradient passes, as in PyTorch (candle's own ReLU passes it).
        let zero = Var::new(&[0.0f64, 1.0], &Device::Cpu).unwrap();
        let g = relu(&zero).unwrap().sum_all().unwrap().backward().unwrap();
        let g = g.get(&zero).unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(g, [0.0, 1.0]);
    }
}
