//! Test helpers shared by the tensor-function tests.

use candle_core::{Device, Tensor, Var};

/// A deterministic `[N, C, H, W]` tensor of values in `[-scale, scale]`, varied by `seed`.
pub fn ramp(shape: (usize, usize, usize, usize), scale: f64, seed: usize) -> Tensor {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f64> = (0..n)
        .map(|i| (((i + seed) * 37 % 101) as f64 / 50.0 - 1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The largest absolute difference between two `f64` tensors of one shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// The gradients of `sum(y * readout)` with respect to `vars`, `None` where none flows.
pub fn readout_grads<const N: usize>(
    y: &Tensor,
    readout: &Tensor,
    vars: [&Var; N],
) -> [Option<Tensor>; N] {
    let grads = (y * readout)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    vars.map(|v| grads.get(v.as_tensor()).cloned())
}
