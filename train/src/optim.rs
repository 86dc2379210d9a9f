//! Optimizers with PyTorch's update rules, and global gradient-norm clipping.
//!
//! candle-nn's `SGD` has no momentum and its `AdamW` decays weights decoupled from the
//! gradient; DARTS trains its weights with momentum SGD and its architecture parameters with
//! `torch.optim.Adam`, whose weight decay is an L2 term added to the gradient. [`Sgd`] and
//! [`Adam`] reproduce `torch.optim.SGD` (dampening 0, no Nesterov) and `torch.optim.Adam`
//! (no AMSGrad) step for step, and expose their state as named tensors for checkpoints.
//!
//! A variable without a gradient in the [`GradStore`] is skipped by a step, as PyTorch skips
//! parameters whose `.grad` is `None`.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{bail, DType, Result, Tensor, Var};
use candle_nn::VarMap;
use hands_models::nn::layers::is_running_statistic;

/// Settings of [`Sgd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0 disables the momentum buffers).
    pub momentum: f64,
    /// L2 penalty, added to the gradient as `weight_decay * param`.
    pub weight_decay: f64,
}

/// Stochastic gradient descent with momentum, as `torch.optim.SGD`:
///
/// ```text
/// d = grad + weight_decay * p
/// buf = d                       (first step)
/// buf = momentum * buf + d      (later steps)
/// p = p - lr * buf
/// ```
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<Var>,
    config: SgdConfig,
    buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    /// An optimizer over `vars`; their order fixes the indices of the state.
    pub fn new(vars: Vec<Var>, config: SgdConfig) -> Result<Self> {
        check_float(&vars)?;
        let buffers = vec![None; vars.len()];
        Ok(Sgd {
            vars,
            config,
            buffers,
        })
    }

    /// Applies one update from `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let SgdConfig {
            lr,
            momentum,
            weight_decay,
        } = self.config;
        for (var, buffer) in self.vars.iter().zip(self.buffers.iter_mut()) {
            let Some(grad) = grads.get(var) else {
                continue;
            };
            // Detached: the update must not extend the autograd graph across steps.
            let p = var.as_tensor().detach();
            let grad = grad.detach();
            let mut d = if weight_decay != 0.0 {
                (grad + (&p * weight_decay)?)?
            } else {
                grad
            };
            if momentum != 0.0 {
                let next = match buffer.take() {
                    None => d,
                    Some(buf) => ((buf * momentum)? + d)?,
                };
                d = next.clone();
                *buffer = Some(next);
            }
            var.set(&(p - (d * lr)?)?)?;
        }
        Ok(())
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Sets the learning rate, e.g. from a schedule.
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// The settings.
    pub fn config(&self) -> SgdConfig {
        self.config
    }

    /// The optimized variables, in index order.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The momentum buffer of variable `index`, `None` before its first update (or when
    /// momentum is 0). DARTS' second-order step reads it to form `w - xi * (momentum * buf
    /// + grad + wd * w)`.
    pub fn momentum_buffer(&self, index: usize) -> Option<&Tensor> {
        self.buffers.get(index).and_then(Option::as_ref)
    }

    /// The state as named tensors: `sgd.buf.<i>` for each variable that has a buffer.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.buffers
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.as_ref().map(|b| (format!("sgd.buf.{i}"), b.clone())))
            .collect()
    }

    /// Restores the state written by [`Sgd::state`]; names of other optimizers are ignored.
    /// Buffers absent from `tensors` are cleared.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let mut buffers = Vec::with_capacity(self.vars.len());
        for (i, var) in self.vars.iter().enumerate() {
            buffers.push(load_like(tensors, &format!("sgd.buf.{i}"), var)?);
        }
        check_no_extra(tensors, "sgd.buf.", self.vars.len())?;
        self.buffers = buffers;
        Ok(())
    }
}

/// Settings of [`Adam`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Term added to the denominator.
    pub eps: f64,
    /// L2 penalty, added to the gradient as `weight_decay * param` (not decoupled).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    /// PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Adam as `torch.optim.Adam` (weight decay added to the gradient, per-variable step counts):
///
/// ```text
/// g = grad + weight_decay * p
/// m = b1 * m + (1 - b1) * g
/// v = b2 * v + (1 - b2) * g^2
/// p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
/// ```
#[derive(Debug)]
pub struct Adam {
    vars: Vec<Var>,
    config: AdamConfig,
    m: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    steps: Vec<i64>,
}

impl Adam {
    /// An optimizer over `vars`; their order fixes the indices of the state.
    pub fn new(vars: Vec<Var>, config: AdamConfig) -> Result<Self> {
        check_float(&vars)?;
        let n = vars.len();
        Ok(Adam {
            vars,
            config,
            m: vec![None; n],
            v: vec![None; n],
            steps: vec![0; n],
        })
    }

    /// Applies one update from `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let AdamConfig {
            lr,
            betas: (b1, b2),
            eps,
            weight_decay,
        } = self.config;
        for (i, var) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(var) else {
                continue;
            };
            let p = var.as_tensor().detach();
            let grad = grad.detach();
            let g = if weight_decay != 0.0 {
                (grad + (&p * weight_decay)?)?
            } else {
                grad
            };
            let m = match self.m[i].take() {
                None => (&g * (1.0 - b1))?,
                Some(m) => ((m * b1)? + (&g * (1.0 - b1))?)?,
            };
            let v = match self.v[i].take() {
                None => (g.sqr()? * (1.0 - b2))?,
                Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
            };
            self.steps[i] += 1;
            let t = self.steps[i] as i32;
            let bias1 = 1.0 - b1.powi(t);
            let bias2 = 1.0 - b2.powi(t);
            let denom = ((v.sqrt()? / bias2.sqrt())? + eps)?;
            let update = ((&m / &denom)? * (lr / bias1))?;
            var.set(&(p - update)?)?;
            self.m[i] = Some(m);
            self.v[i] = Some(v);
        }
        Ok(())
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Sets the learning rate.
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// The settings.
    pub fn config(&self) -> AdamConfig {
        self.config
    }

    /// The optimized variables, in index order.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The state as named tensors: `adam.m.<i>`, `adam.v.<i>` for each variable updated at
    /// least once, and `adam.step` (i64, one count per variable).
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            if let (Some(m), Some(v)) = (m, v) {
                out.push((format!("adam.m.{i}"), m.clone()));
                out.push((format!("adam.v.{i}"), v.clone()));
            }
        }
        let device = self
            .vars
            .first()
            .map(|v| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let steps = Tensor::from_slice(&self.steps, self.steps.len(), &device)?;
        out.push(("adam.step".to_string(), steps));
        Ok(out)
    }

    /// Restores the state written by [`Adam::state`]; names of other optimizers are ignored.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let n = self.vars.len();
        let steps: Vec<i64> = match tensors.get("adam.step") {
            None => bail!("optimizer state has no `adam.step`"),
            Some(t) => t.to_dtype(DType::I64)?.flatten_all()?.to_vec1()?,
        };
        if steps.len() != n {
            bail!(
                "optimizer state `adam.step` has {} counts for {n} variables",
                steps.len()
            );
        }
        let (mut ms, mut vs) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (i, var) in self.vars.iter().enumerate() {
            let m = load_like(tensors, &format!("adam.m.{i}"), var)?;
            let v = load_like(tensors, &format!("adam.v.{i}"), var)?;
            if m.is_some() != v.is_some() || m.is_some() != (steps[i] > 0) {
                bail!("optimizer state for Adam variable {i} is incomplete");
            }
            ms.push(m);
            vs.push(v);
        }
        check_no_extra(tensors, "adam.m.", n)?;
        check_no_extra(tensors, "adam.v.", n)?;
        self.m = ms;
        self.v = vs;
        self.steps = steps;
        Ok(())
    }
}

/// Scales the gradients of `vars` in `grads` so that their global L2 norm is at most
/// `max_norm`, as `torch.nn.utils.clip_grad_norm_` (coefficient `max_norm / (norm + 1e-6)`,
/// applied only when below 1). Returns the norm before clipping.
///
/// Fails with "non-finite gradient" when the norm is NaN or infinite, leaving `grads`
/// unchanged, so that a diverged step never reaches the weights.
pub fn clip_grad_norm(vars: &[Var], grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    let mut squares = Vec::new();
    for var in vars {
        if let Some(g) = grads.get(var) {
            squares.push(g.to_dtype(DType::F64)?.sqr()?.sum_all()?);
        }
    }
    if squares.is_empty() {
        return Ok(0.0);
    }
    let norm = Tensor::stack(&squares, 0)?
        .sum_all()?
        .to_scalar::<f64>()?
        .sqrt();
    if !norm.is_finite() {
        bail!("non-finite gradient (global L2 norm {norm})");
    }
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for var in vars {
            if let Some(g) = grads.get(var) {
                let scaled = (g * coef)?;
                grads.insert(var.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

fn check_float(vars: &[Var]) -> Result<()> {
    if let Some((i, v)) = vars.iter().enumerate().find(|(_, v)| !v.dtype().is_float()) {
        bail!(
            "optimizer variable {i} has dtype {:?}; only float variables can be optimized",
            v.dtype()
        );
    }
    Ok(())
}

/// The tensor `name`, checked against the shape of `var` and converted to its dtype/device.
fn load_like(tensors: &HashMap<String, Tensor>, name: &str, var: &Var) -> Result<Option<Tensor>> {
    let Some(t) = tensors.get(name) else {
        return Ok(None);
    };
    if t.dims() != var.dims() {
        bail!(
            "optimizer state `{name}` has shape {:?}, its variable has {:?}",
            t.dims(),
            var.dims()
        );
    }
    Ok(Some(t.to_dtype(var.dtype())?.to_device(var.device())?))
}

/// Refuses state entries `<prefix><i>` with `i >= n`: a checkpoint of a different model.
fn check_no_extra(tensors: &HashMap<String, Tensor>, prefix: &str, n: usize) -> Result<()> {
    for name in tensors.keys() {
        if let Some(index) = name.strip_prefix(prefix) {
            match index.parse::<usize>() {
                Ok(i) if i < n => {}
                _ => bail!("optimizer state `{name}` does not match the {n} variables optimized"),
            }
        }
    }
    Ok(())
}
/// The learnable variables of `varmap` (BatchNorm running statistics excluded), sorted by
/// name: the fixed order of the optimizer state.
pub fn trainable_vars(varmap: &VarMap) -> Vec<Var> {
    let vars = varmap.data().lock().expect("varmap lock");
    let mut named: Vec<(&String, &Var)> = vars
        .iter()
        .filter(|(name, _)| !is_running_statistic(name))
        .collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}
