//! The largest eigenvalue of the Hessian of the validation loss with respect to the
//! architecture parameters, and the early stop it drives (Zela et al., "Understanding and
//! Robustifying Differentiable Architecture Search", ICLR 2020: R-DARTS' DARTS-ES).
//!
//! A DARTS search that collapses into parameter-free operations does so while the validation
//! loss grows sharp in alpha: the largest eigenvalue rises. It is found by power iteration on
//! finite-difference Hessian-vector products, `H v ~ (g(a + eps v) - g(a - eps v)) / 2 eps`
//! with `g` the architecture gradient (the product the second-order step takes with respect
//! to the weights), on one validation batch at the end of each epoch. Power iteration finds
//! the eigenvalue of largest magnitude; when that one is negative, a second run on
//! `H - lambda I` finds the largest algebraic one, which R-DARTS reports. DARTS-ES stops the
//! search when the eigenvalue, averaged over a window of epochs, has grown by a factor since
//! the window before, and keeps the genotype of the epoch before that growth.

use candle_core::{DType, Result, Tensor, Var};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::architect::{loss_and_grads, LabelledBatch};
use crate::supernet::Supernet;

/// Finite-difference radius of the Hessian-vector products, along a unit vector.
pub const EPSILON: f64 = 1e-3;

/// Relative change of the eigenvalue estimate between two iterations below which the power
/// iteration has converged.
pub const TOLERANCE: f64 = 1e-4;

/// An eigenvalue estimate and how it was reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eigenvalue {
    /// The estimate.
    pub value: f64,
    /// Hessian-vector products taken (each costs two gradients).
    pub products: usize,
    /// Whether the last estimate moved by less than the tolerance.
    pub converged: bool,
}

/// How the power iteration runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerIteration {
    /// Iterations at most, per run (a negative dominant eigenvalue takes a second run).
    pub iterations: usize,
    /// Relative change that counts as converged.
    pub tolerance: f64,
    /// Finite-difference radius of the Hessian-vector products.
    pub epsilon: f64,
}

impl PowerIteration {
    /// `iterations` at most, [`TOLERANCE`], [`EPSILON`].
    pub fn new(iterations: usize) -> PowerIteration {
        PowerIteration {
            iterations,
            tolerance: TOLERANCE,
            epsilon: EPSILON,
        }
    }
}

/// The largest (algebraic) eigenvalue of the Hessian of `gradient` (the gradient of a loss
/// at the current values of `vars`, one tensor per variable), by power iteration from a
/// random unit vector drawn from `rng`: first on `H`; when the eigenvalue of largest
/// magnitude it finds is negative, again on `H - lambda I`, whose largest eigenvalue plus
/// `lambda` is `H`'s. The variables are restored before returning.
pub fn largest_eigenvalue(
    vars: &[Var],
    mut gradient: impl FnMut() -> Result<Vec<Tensor>>,
    power: PowerIteration,
    rng: &mut impl Rng,
) -> Result<Eigenvalue> {
    let start: Vec<Tensor> = vars
        .iter()
        .map(|v| v.as_tensor().copy())
        .collect::<Result<_>>()?;
    let first = run_power_iteration(vars, &start, &mut gradient, power, 0.0, rng);
    let result = match first {
        Ok(dominant) if dominant.value < 0.0 => {
            run_power_iteration(vars, &start, &mut gradient, power, dominant.value, rng).map(
                |shifted| Eigenvalue {
                    value: shifted.value,
                    products: dominant.products + shifted.products,
                    converged: shifted.converged,
                },
            )
        }
        other => other,
    };
    for (var, a) in vars.iter().zip(&start) {
        var.set(a)?;
    }
    result
}

/// Power iteration on `H - shift I` from a random unit vector; returns the Rayleigh
/// quotient plus `shift` (an eigenvalue of `H`).
fn run_power_iteration(
    vars: &[Var],
    start: &[Tensor],
    gradient: &mut impl FnMut() -> Result<Vec<Tensor>>,
    power: PowerIteration,
    shift: f64,
    rng: &mut impl Rng,
) -> Result<Eigenvalue> {
    let random = |t: &Tensor, rng: &mut dyn rand::RngCore| -> Result<Tensor> {
        let values: Vec<f32> = (0..t.elem_count())
            .map(|_| <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng) as f32)
            .collect();
        Tensor::from_vec(values, t.shape(), t.device())?.to_dtype(t.dtype())
    };
    let mut v = unit(
        start
            .iter()
            .map(|t| random(t, rng))
            .collect::<Result<_>>()?,
    )?;
    let mut estimate: Option<f64> = None;
    for products in 1..=power.iterations {
        let mut at = |sign: f64| -> Result<Vec<Tensor>> {
            for ((var, a), d) in vars.iter().zip(start).zip(&v) {
                var.set(&(a + (d * (sign * power.epsilon))?)?)?;
            }
            gradient()
        };
        let (plus, minus) = (at(1.0)?, at(-1.0)?);
        let hv: Vec<Tensor> = plus
            .iter()
            .zip(&minus)
            .zip(&v)
            .map(|((p, m), d)| ((p - m)? / (2.0 * power.epsilon))? - (d * shift)?)
            .collect::<Result<_>>()?;
        let value = dot(&v, &hv)?;
        let converged = estimate
            .is_some_and(|last| (value - last).abs() <= power.tolerance * value.abs().max(1e-12));
        estimate = Some(value);
        if converged || norm(&hv)? == 0.0 {
            return Ok(Eigenvalue {
                value: value + shift,
                products,
                converged: true,
            });
        }
        v = unit(hv)?;
    }
    Ok(Eigenvalue {
        value: estimate.unwrap_or(0.0) + shift,
        products: power.iterations,
        converged: false,
    })
}

/// The largest eigenvalue of the Hessian of `net`'s validation loss on `batch` with respect
/// to its architecture parameters (no skip dropout: the loss must be the same function at
/// every point it is taken).
pub fn architecture_eigenvalue(
    net: &Supernet,
    batch: LabelledBatch<'_>,
    power: PowerIteration,
    rng: &mut impl Rng,
) -> Result<Eigenvalue> {
    let vars: Vec<Var> = net.arch_vars().into_iter().map(|(_, v)| v).collect();
    let gradient = || architecture_gradient(net, batch, &vars);
    largest_eigenvalue(&vars, gradient, power, rng)
}

/// The gradient of `net`'s validation loss on `batch` with respect to `vars` (zeros for a
/// variable the loss does not reach), without skip dropout.
pub fn architecture_gradient(
    net: &Supernet,
    batch: LabelledBatch<'_>,
    vars: &[Var],
) -> Result<Vec<Tensor>> {
    let grads = loss_and_grads(net, batch, None, "architecture gradient")?.grads;
    vars.iter()
        .map(|v| match grads.get(v.as_tensor()) {
            Some(g) => Ok(g.clone()),
            None => v.as_tensor().zeros_like(),
        })
        .collect()
}

/// DARTS-ES: with `eigenvalues[i]` the eigenvalue after epoch `first_epoch + i` (only
/// epochs with architecture steps are recorded), the index of the epoch to go back to when
/// the mean over the last `window` epochs exceeds `factor` times the mean over the `window`
/// epochs before them (R-DARTS: window 5, factor 1 / 0.75); `None` while it does not, while
/// fewer than `2 window` epochs are known, or while the epoch to go back to is before
/// `start_epoch` (R-DARTS' `es_start_epoch`, 10: an earlier genotype is not trusted). The
/// epoch returned is the last one of the earlier window, whose genotype the search keeps.
pub fn early_stop_epoch(
    eigenvalues: &[f64],
    window: usize,
    factor: f64,
    first_epoch: usize,
    start_epoch: usize,
) -> Option<usize> {
    let n = eigenvalues.len();
    if window == 0 || n < 2 * window {
        return None;
    }
    let kept = n - window - 1;
    if first_epoch + kept < start_epoch {
        return None;
    }
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let now = mean(&eigenvalues[n - window..]);
    let before = mean(&eigenvalues[n - 2 * window..n - window]);
    (before > 0.0 && now > factor * before).then_some(kept)
}

fn dot(a: &[Tensor], b: &[Tensor]) -> Result<f64> {
    let mut sum = 0.0;
    for (x, y) in a.iter().zip(b) {
        sum += (x * y)?
            .to_dtype(DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    Ok(sum)
}

fn norm(a: &[Tensor]) -> Result<f64> {
    Ok(dot(a, a)?.sqrt())
}

/// `a` scaled to unit length (over all its tensors together).
fn unit(a: Vec<Tensor>) -> Result<Vec<Tensor>> {
    let n = norm(&a)?;
    a.iter().map(|t| t / n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    /// The gradient of the quadratic loss `0.5 a^T A a` over two variables (3 + 2 values):
    /// its Hessian is `A` everywhere.
    fn quadratic(a: [[f64; 5]; 5], x: &Var, y: &Var) -> impl FnMut() -> Result<Vec<Tensor>> {
        let matrix = Tensor::new(&a, &Device::Cpu).unwrap();
        let (x, y) = (x.clone(), y.clone());
        move || {
            let all = Tensor::cat(&[x.as_tensor(), y.as_tensor()], 0)?;
            let g = matrix.matmul(&all.unsqueeze(1)?)?.squeeze(1)?;
            Ok(vec![g.narrow(0, 0, 3)?, g.narrow(0, 3, 2)?])
        }
    }

    /// `A` with eigenvalues `top`, 3, 2, -1, 0.5.
    fn matrix_with(top: f64) -> [[f64; 5]; 5] {
        [
            [top, 0.0, 0.0, 0.0, 0.0],
            [0.0, 2.5, 0.5, 0.0, 0.0],
            [0.0, 0.5, 2.5, 0.0, 0.0],
            [0.0, 0.0, 0.0, -1.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.5],
        ]
    }

    #[test]
    fn power_iteration_finds_the_largest_eigenvalue_of_a_quadratic() {
        let x = Var::new(&[0.3f64, -0.2, 0.1], &Device::Cpu).unwrap();
        let y = Var::new(&[0.7f64, 0.4], &Device::Cpu).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let before = (
            x.as_tensor().to_vec1::<f64>().unwrap(),
            y.as_tensor().to_vec1::<f64>().unwrap(),
        );
        let power = PowerIteration {
            iterations: 200,
            tolerance: 1e-12,
            epsilon: EPSILON,
        };
        let vars = [x.clone(), y.clone()];
        let found = largest_eigenvalue(&vars, quadratic(matrix_with(6.0), &x, &y), power, &mut rng)
            .unwrap();
        assert!((found.value - 6.0).abs() < 1e-6, "{found:?}");
        assert!(found.converged && found.products < 200, "{found:?}");
        let after = (
            x.as_tensor().to_vec1::<f64>().unwrap(),
            y.as_tensor().to_vec1::<f64>().unwrap(),
        );
        assert_eq!(before, after, "the variables are restored");
    }

    /// A negative eigenvalue of larger magnitude (-8) does not hide the largest one (3),
    /// which plain power iteration would miss (it returned -8).
    #[test]
    fn a_dominant_negative_eigenvalue_does_not_hide_the_largest() {
        let x = Var::new(&[0.3f64, -0.2, 0.1], &Device::Cpu).unwrap();
        let y = Var::new(&[0.7f64, 0.4], &Device::Cpu).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let power = PowerIteration {
            iterations: 500,
            tolerance: 1e-12,
            epsilon: EPSILON,
        };
        let vars = [x.clone(), y.clone()];
        let found =
            largest_eigenvalue(&vars, quadratic(matrix_with(-8.0), &x, &y), power, &mut rng)
                .unwrap();
        assert!((found.value - 3.0).abs() < 1e-6, "{found:?}");
        // Too few iterations: an estimate, said not to have converged.
        let short = PowerIteration {
            iterations: 2,
            ..power
        };
        let rough =
            largest_eigenvalue(&vars, quadratic(matrix_with(-8.0), &x, &y), short, &mut rng)
                .unwrap();
        assert!(!rough.converged, "{rough:?}");
    }

    #[test]
    fn a_flat_loss_has_eigenvalue_zero() {
        let x = Var::new(&[1.0f64, 2.0], &Device::Cpu).unwrap();
        let gradient = || -> Result<Vec<Tensor>> { Ok(vec![x.as_tensor().zeros_like()?]) };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let found = largest_eigenvalue(
            std::slice::from_ref(&x),
            gradient,
            PowerIteration::new(5),
            &mut rng,
        )
        .unwrap();
        assert_eq!(found.value, 0.0);
    }

    #[test]
    fn darts_es_stops_when_the_windowed_eigenvalue_grows_by_the_factor() {
        let flat = [1.0, 1.1, 0.9, 1.0];
        assert_eq!(early_stop_epoch(&flat, 2, 1.3, 0, 0), None);
        // Windows [1.0, 1.1] -> [1.5, 1.6]: mean 1.05 -> 1.55, more than 1.3 times.
        let rising = [0.8, 1.0, 1.1, 1.5, 1.6];
        assert_eq!(early_stop_epoch(&rising, 2, 1.3, 0, 0), Some(2));
        assert_eq!(early_stop_epoch(&rising, 2, 1.5, 0, 0), None);
        // Too few epochs for two windows.
        assert_eq!(early_stop_epoch(&rising[..3], 2, 1.3, 0, 0), None);
        assert_eq!(early_stop_epoch(&rising, 0, 1.3, 0, 0), None);
    }

    /// R-DARTS stops only from its start epoch on: the same rise four epochs into the
    /// architecture steps keeps epoch 2 of them, which is epoch 17 after a 15-epoch
    /// warm-up (kept) but epoch 2 of a search without one (too early to trust).
    #[test]
    fn darts_es_keeps_no_genotype_from_before_its_start_epoch() {
        let rising = [0.8, 1.0, 1.1, 1.5, 1.6];
        assert_eq!(early_stop_epoch(&rising, 2, 1.3, 15, 10), Some(2));
        assert_eq!(early_stop_epoch(&rising, 2, 1.3, 0, 10), None);
        assert_eq!(early_stop_epoch(&rising, 2, 1.3, 8, 10), Some(2));
        assert_eq!(early_stop_epoch(&rising, 2, 1.3, 7, 10), None);
    }
}
