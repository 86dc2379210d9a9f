//! A cell node of the discrete network: the sum of its edges' outputs, each optionally
//! scaled per sample (drop path), as one op.
//!
//! Written with candle's ops, drop path is a broadcast product with a `[N, 1, 1, 1]` mask whose
//! backward pass also computes the (unused) full-size gradient of the mask, and the sum is one
//! more node: per edge a product, a gradient product, a zero tensor and an addition that serve
//! nothing. Here the node is one op whose backward pass scales the output gradient per sample
//! for each edge.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use num_traits::Float;

use super::functional::{storage_slice, with_slice};
use super::parallel::collect_chunks;

/// Per-sample factors of one edge (`None`: the edge is added as it is).
pub type SampleScales = Option<Vec<f64>>;

/// `sum_e scales_e[n] * x_e[n]` over one or two edges.
#[derive(Debug, Clone)]
struct NodeSum {
    scales: Vec<SampleScales>,
}

/// The factor of sample `n` for an edge.
fn factor<T: Float>(scales: &SampleScales, n: usize) -> T {
    let f = scales.as_ref().map_or(1.0, |s| s[n]);
    T::from(f).expect("factor fits the float type")
}

impl NodeSum {
    fn forward<T: Float + candle_core::WithDType + Send + Sync>(&self, xs: &[&[T]]) -> Vec<T> {
        let len = xs[0].len();
        let sample = len / self.samples();
        let out = collect_chunks(
            len,
            T::zero(),
            sample,
            || (),
            |_, n, out| {
                for (e, x) in xs.iter().enumerate() {
                    let f: T = factor(&self.scales[e], n);
                    let x = &x[n * sample..][..out.len()];
                    if e == 0 {
                        for (o, &v) in out.iter_mut().zip(x) {
                            *o = v * f;
                        }
                    } else {
                        for (o, &v) in out.iter_mut().zip(x) {
                            *o += v * f;
                        }
                    }
                }
            },
        );
        out
    }

    fn samples(&self) -> usize {
        self.scales
            .iter()
            .flatten()
            .map(Vec::len)
            .next()
            .unwrap_or(1)
    }

    /// The gradient of edge `e`'s input: the output gradient scaled per sample.
    fn edge_grad<T: Float + candle_core::WithDType + Send + Sync>(
        &self,
        e: usize,
        grad: &Tensor,
    ) -> Result<Tensor> {
        let Some(scales) = &self.scales[e] else {
            return Ok(grad.clone());
        };
        let sample = grad.elem_count() / scales.len();
        let out = with_slice::<T, _>(grad, |gv| {
            let out = collect_chunks(
                gv.len(),
                T::zero(),
                sample,
                || (),
                |_, n, out| {
                    let f: T = factor(&self.scales[e], n);
                    for (o, &g) in out.iter_mut().zip(&gv[n * sample..]) {
                        *o = g * f;
                    }
                },
            );
            out
        })?;
        Tensor::from_vec(out, grad.shape(), grad.device())
    }

    fn grad(&self, e: usize, grad: &Tensor) -> Result<Tensor> {
        match grad.dtype() {
            DType::F32 => self.edge_grad::<f32>(e, grad),
            DType::F64 => self.edge_grad::<f64>(e, grad),
            dtype => candle_core::bail!("node sum backward: unsupported {dtype:?}"),
        }
    }

    fn cpu_forward(&self, inputs: &[(&CpuStorage, &Layout)]) -> Result<(CpuStorage, Shape)> {
        let shape = inputs[0].1.shape();
        if inputs.iter().any(|(_, l)| l.shape() != shape) {
            candle_core::bail!("node sum: the edges' outputs differ in shape");
        }
        if shape.dims().first() != Some(&self.samples()) && self.scales.iter().any(Option::is_some)
        {
            candle_core::bail!("node sum: one factor per sample expected");
        }
        let storage = match inputs[0].0 {
            CpuStorage::F32(_) => {
                let xs = inputs
                    .iter()
                    .map(|(s, l)| storage_slice::<f32>(s, l, "node sum"))
                    .collect::<Result<Vec<_>>>()?;
                CpuStorage::F32(self.forward(&xs))
            }
            CpuStorage::F64(_) => {
                let xs = inputs
                    .iter()
                    .map(|(s, l)| storage_slice::<f64>(s, l, "node sum"))
                    .collect::<Result<Vec<_>>>()?;
                CpuStorage::F64(self.forward(&xs))
            }
            _ => candle_core::bail!("node sum supports f32 and f64 only"),
        };
        Ok((storage, shape.clone()))
    }
}

impl CustomOp1 for NodeSum {
    fn name(&self) -> &'static str {
        "node-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.cpu_forward(&[(s, l)])
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.grad(0, grad)?))
    }
}

impl CustomOp2 for NodeSum {
    fn name(&self) -> &'static str {
        "node-sum"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu_forward(&[(s1, l1), (s2, l2)])
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(self.grad(0, grad)?), Some(self.grad(1, grad)?)))
    }
}

/// `sum_e scales_e[n] * x_e[n]` of one or two edge outputs `[N, ...]` (per-sample factors, or
/// `None` to add an edge as it is): one op on the CPU, candle's ops elsewhere.
pub fn node_sum(edges: &[(Tensor, SampleScales)]) -> Result<Tensor> {
    let device = match edges.first() {
        Some((x, _)) => x.device().clone(),
        None => candle_core::bail!("node sum of no edge"),
    };
    if !device.is_cpu() || edges.len() > 2 {
        let mut sum: Option<Tensor> = None;
        for (x, scales) in edges {
            let term = match scales {
                Some(s) => {
                    let mask = Tensor::new(s.as_slice(), &device)?
                        .to_dtype(x.dtype())?
                        .reshape((s.len(), 1, 1, 1))?;
                    x.broadcast_mul(&mask)?
                }
                None => x.clone(),
            };
            sum = Some(match sum {
                None => term,
                Some(acc) => (acc + term)?,
            });
        }
        return Ok(sum.expect("at least one edge"));
    }
    let op = NodeSum {
        scales: edges.iter().map(|(_, s)| s.clone()).collect(),
    };
    match edges {
        [(x, None)] => Ok(x.clone()),
        [(x, _)] => x.contiguous()?.apply_op1(op),
        [(a, _), (b, _)] => a.contiguous()?.apply_op2(&b.contiguous()?, op),
        _ => unreachable!("one or two edges"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_diff, ramp, readout_grads};
    use super::*;
    use candle_core::{Device, Var};

    /// The fused node against the same sum written with candle's broadcast products, output
    /// and the gradients of both edges, with and without per-sample factors.
    #[test]
    fn fused_node_sum_agrees_with_candle_ops_both_ways() {
        let a = Var::from_tensor(&ramp((3, 2, 4, 5), 1.0, 1)).unwrap();
        let b = Var::from_tensor(&ramp((3, 2, 4, 5), 2.0, 2)).unwrap();
        let readout = ramp((3, 2, 4, 5), 1.0, 3);
        let mask = vec![1.25, 0.0, 1.25];
        let cases: Vec<Vec<(Tensor, SampleScales)>> = vec![
            vec![
                (a.as_tensor().clone(), Some(mask.clone())),
                (b.as_tensor().clone(), None),
            ],
            vec![
                (a.as_tensor().clone(), Some(mask.clone())),
                (b.as_tensor().clone(), Some(vec![0.0, 2.0, 2.0])),
            ],
            vec![(a.as_tensor().clone(), Some(mask.clone()))],
        ];
        for edges in cases {
            let ours = node_sum(&edges).unwrap();
            let mut theirs: Option<Tensor> = None;
            for (x, s) in &edges {
                let t = match s {
                    Some(s) => x
                        .broadcast_mul(
                            &Tensor::from_vec(s.clone(), (3, 1, 1, 1), &Device::Cpu).unwrap(),
                        )
                        .unwrap(),
                    None => x.clone(),
                };
                theirs = Some(match theirs {
                    None => t,
                    Some(acc) => (acc + t).unwrap(),
                });
            }
            let theirs = theirs.unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-12);
            let grads = |y: &Tensor| readout_grads(y, &readout, [&a, &b]);
            for (x, y) in grads(&ours).iter().zip(&grads(&theirs)) {
                match (x, y) {
                    (Some(x), Some(y)) => assert!(max_diff(x, y) < 1e-12),
                    (None, None) => {}
                    _ => panic!("one side has a gradient the other lacks"),
                }
            }
        }
        let short = [(a.as_tensor().clone(), Some(vec![1.0, 1.0]))];
        assert!(node_sum(&short).is_err());
    }
}
