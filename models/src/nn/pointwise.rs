//! The 1x1 convolution as one op: a matrix product per image, on candle's thread pool.
//!
//! Written with candle's ops (reshape, broadcast weight, batched matmul, reshape), a 1x1
//! convolution leaves four nodes in the autograd graph, each of whose gradients candle
//! accumulates into a fresh zero tensor, reduces the broadcast weight's gradient with its
//! generic strided sum, and runs its matrix products on rayon's pool while candle's own pool
//! spins on the same cores. Here the forward pass is one `W X_b` product per image, the
//! backward pass `W^T G_b` per image and `sum_b G_b X_b^T`, the images spread over candle's
//! pool, each product single-threaded.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use gemm::Parallelism;

use super::functional::{storage_slice, with_slice};
use super::parallel::{collect_chunks, map_indices};

/// Row-major matrix `(rows, columns)` views for [`product`].
#[derive(Debug, Clone, Copy)]
struct Strides {
    /// Distance between consecutive rows.
    row: isize,
    /// Distance between consecutive columns.
    column: isize,
}

const ROW_MAJOR: fn(usize) -> Strides = |columns| Strides {
    row: columns as isize,
    column: 1,
};

/// The transpose of a row-major matrix of `columns` columns.
const TRANSPOSED: fn(usize) -> Strides = |columns| Strides {
    row: 1,
    column: columns as isize,
};

/// `dst (m x n, row-major) = lhs (m x k) * rhs (k x n)` for the given strides, single-threaded.
#[allow(clippy::too_many_arguments)]
fn product<T: 'static + Copy + num_traits::Zero + num_traits::One>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    lhs: &[T],
    lhs_strides: Strides,
    rhs: &[T],
    rhs_strides: Strides,
) {
    let extent = |rows: usize, columns: usize, s: Strides| {
        (rows.saturating_sub(1)) * s.row as usize
            + (columns.saturating_sub(1)) * s.column as usize
            + 1
    };
    assert!(dst.len() >= m * n, "product: destination too short");
    assert!(
        lhs.len() >= extent(m, k, lhs_strides),
        "product: lhs too short"
    );
    assert!(
        rhs.len() >= extent(k, n, rhs_strides),
        "product: rhs too short"
    );
    // SAFETY: the asserts above keep every element gemm reads or writes inside the slices
    // (row-major `dst` of m x n; `lhs` and `rhs` with their strides); `dst` is borrowed
    // mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            lhs_strides.column,
            lhs_strides.row,
            rhs.as_ptr(),
            rhs_strides.column,
            rhs_strides.row,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// `y[b] = W x[b]` for `x` `[B, Cin, H, W]` and `W` `[Cout, Cin, 1, 1]`.
#[derive(Debug, Clone, Copy)]
struct Pointwise;

/// Element types the op runs on.
trait Element:
    'static + candle_core::WithDType + num_traits::Float + std::ops::AddAssign + Send + Sync
{
}
impl Element for f32 {}
impl Element for f64 {}

impl Pointwise {
    fn forward<T: Element>(
        x: &[T],
        weight: &[T],
        (b, c_in, plane): (usize, usize, usize),
    ) -> Vec<T> {
        let c_out = weight.len() / c_in;
        collect_chunks(
            b * c_out * plane,
            T::zero(),
            c_out * plane,
            || (),
            |_, i, y_b| {
                let x_b = &x[i * c_in * plane..][..c_in * plane];
                product(
                    (c_out, plane, c_in),
                    y_b,
                    weight,
                    ROW_MAJOR(c_in),
                    x_b,
                    ROW_MAJOR(plane),
                );
            },
        )
    }

    /// Gradients of `x` and of the weight from the output gradient `grad`.
    fn backward<T: Element>(
        x: &Tensor,
        weight: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (b, c_in, h, w) = x.dims4()?;
        let c_out = weight.dim(0)?;
        let plane = h * w;
        let (grad_x, grad_w) = with_slice::<T, _>(x, |xv| {
            with_slice::<T, _>(weight, |wv| {
                with_slice::<T, _>(grad, |gv| {
                    let grad_x = collect_chunks(
                        xv.len(),
                        T::zero(),
                        c_in * plane,
                        || (),
                        |_, i, gx_b| {
                            let g_b = &gv[i * c_out * plane..][..c_out * plane];
                            product(
                                (c_in, plane, c_out),
                                gx_b,
                                wv,
                                TRANSPOSED(c_in),
                                g_b,
                                ROW_MAJOR(plane),
                            );
                        },
                    );
                    let per_image = map_indices(b, |i| {
                        let g_b = &gv[i * c_out * plane..][..c_out * plane];
                        let x_b = &xv[i * c_in * plane..][..c_in * plane];
                        let mut gw = vec![T::zero(); c_out * c_in];
                        product(
                            (c_out, c_in, plane),
                            &mut gw,
                            g_b,
                            ROW_MAJOR(plane),
                            x_b,
                            TRANSPOSED(plane),
                        );
                        gw
                    });
                    let mut grad_w = vec![T::zero(); c_out * c_in];
                    for gw in per_image {
                        for (a, v) in grad_w.iter_mut().zip(gw) {
                            *a += v;
                        }
                    }
                    (grad_x, grad_w)
                })
            })
        })???;
        Ok((
            Tensor::from_vec(grad_x, x.shape(), x.device())?,
            Tensor::from_vec(grad_w, weight.shape(), weight.device())?,
        ))
    }
}

impl CustomOp2 for Pointwise {
    fn name(&self) -> &'static str {
        "pointwise-conv"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c_in, h, wd) = lx.shape().dims4()?;
        let (c_out, ..) = lw.shape().dims4()?;
        let dims = (b, c_in, h * wd);
        let storage = match x {
            CpuStorage::F32(_) => CpuStorage::F32(Self::forward::<f32>(
                storage_slice(x, lx, "pointwise conv")?,
                storage_slice(w, lw, "pointwise conv")?,
                dims,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(Self::forward::<f64>(
                storage_slice(x, lx, "pointwise conv")?,
                storage_slice(w, lw, "pointwise conv")?,
                dims,
            )),
            _ => candle_core::bail!("pointwise conv supports f32 and f64 only"),
        };
        Ok((storage, Shape::from((b, c_out, h, wd))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = match x.dtype() {
            DType::F32 => Self::backward::<f32>(x, weight, grad)?,
            DType::F64 => Self::backward::<f64>(x, weight, grad)?,
            dtype => candle_core::bail!("pointwise conv backward: unsupported {dtype:?}"),
        };
        Ok((Some(gx), Some(gw)))
    }
}

/// A 1x1 convolution (`weight` `[Cout, Cin, 1, 1]`, no bias) of `x` `[B, Cin, H, W]`: one fused
/// op on the CPU, a batched matrix product elsewhere.
pub fn pointwise_conv(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (c_out, c_in, kh, kw) = weight.dims4()?;
    if c_in != c || (kh, kw) != (1, 1) {
        candle_core::bail!(
            "pointwise conv expects a [_, {c}, 1, 1] weight, got {:?}",
            weight.shape()
        );
    }
    if x.device().is_cpu() {
        return x.contiguous()?.apply_op2(&weight.contiguous()?, Pointwise);
    }
    weight
        .reshape((c_out, c_in))?
        .broadcast_matmul(&x.reshape((b, c, h * w))?)?
        .reshape((b, c_out, h, w))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_diff, ramp, readout_grads};
    use super::*;
    use candle_core::Var;

    /// The fused op against candle's batched matrix product: output and both gradients.
    #[test]
    fn fused_pointwise_agrees_with_candle_matmul_both_ways() {
        let x = Var::from_tensor(&ramp((3, 5, 4, 6), 1.0, 2)).unwrap();
        let w = Var::from_tensor(&ramp((7, 5, 1, 1), 0.5, 3)).unwrap();
        let readout = ramp((3, 7, 4, 6), 1.0, 4);
        let theirs = w
            .reshape((7, 5))
            .unwrap()
            .broadcast_matmul(&x.reshape((3, 5, 24)).unwrap())
            .unwrap()
            .reshape((3, 7, 4, 6))
            .unwrap();
        let ours = pointwise_conv(&x, &w).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-12);
        let grads = |y: &Tensor| readout_grads(y, &readout, [&x, &w]).map(Option::unwrap);
        for (i, (a, b)) in grads(&ours).iter().zip(&grads(&theirs)).enumerate() {
            assert!(max_diff(a, b) < 1e-10, "gradient {i}");
        }
        let conv = x.conv2d(&w, 0, 1, 1, 1).unwrap();
        assert!(max_diff(&ours, &conv) < 1e-12);
        let wrong = ramp((7, 4, 1, 1), 0.5, 3);
        assert!(pointwise_conv(&x, &wrong).is_err());
    }
}
