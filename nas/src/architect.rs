//! Architecture gradients: first order (the gradient of the validation loss at the current
//! weights) and DARTS' unrolled second order with a finite-difference Hessian-vector product.

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};
use candle_nn::loss::cross_entropy;

use crate::recompute;
use crate::supernet::{Memory, SkipDropout, Supernet};

/// A labelled batch.
#[derive(Debug, Clone, Copy)]
pub struct LabelledBatch<'a> {
    /// `[B, 3, S, S]` images.
    pub images: &'a Tensor,
    /// `[B]` u32 labels.
    pub labels: &'a Tensor,
}

/// Loss and number of correct predictions of one forward pass.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// Mean cross-entropy, as a differentiable scalar.
    pub loss: Tensor,
    /// Correctly classified samples of the batch.
    pub correct: usize,
}

/// Forward pass of `net` on `batch` with the mean cross-entropy loss.
pub fn evaluate(
    net: &Supernet,
    batch: LabelledBatch<'_>,
    drop_skip: Option<SkipDropout<'_>>,
) -> Result<Evaluated> {
    score(&net.forward(batch.images, drop_skip)?, batch.labels)
}

/// The mean cross-entropy of `logits` against `labels` and the number of correct ones.
pub(crate) fn score(logits: &Tensor, labels: &Tensor) -> Result<Evaluated> {
    let loss = cross_entropy(logits, labels)?;
    let correct = logits
        .argmax(1)?
        .eq(labels)?
        .to_dtype(DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()? as usize;
    Ok(Evaluated { loss, correct })
}

/// A batch's loss, its correct predictions and the gradients of every variable.
#[derive(Debug)]
pub struct Graded {
    /// Mean cross-entropy (finite).
    pub loss: f64,
    /// Correctly classified samples of the batch.
    pub correct: usize,
    /// Gradients of the loss.
    pub grads: GradStore,
}

/// The forward and backward pass of `net` on `batch`, refusing a non-finite loss (`what` names
/// the step in the error). Under [`Memory::Lean`] the cells are recomputed one at a time
/// ([`recompute`]).
pub fn loss_and_grads(
    net: &Supernet,
    batch: LabelledBatch<'_>,
    drop_skip: Option<SkipDropout<'_>>,
    what: &str,
) -> Result<Graded> {
    if net.memory() == Memory::Lean {
        let head = |logits: &Tensor| {
            let eval = score(logits, batch.labels)?;
            let loss = finite_loss(&eval.loss, what)?;
            Ok((eval.loss, (loss, eval.correct)))
        };
        let ((loss, correct), grads) =
            recompute::loss_and_grads(net, batch.images, drop_skip, head)?;
        return Ok(Graded {
            loss,
            correct,
            grads,
        });
    }
    let eval = evaluate(net, batch, drop_skip)?;
    let loss = finite_loss(&eval.loss, what)?;
    // Detached, the gradients let the batch's graph go with `eval` (see
    // [`recompute::detached`]): the second-order step keeps them through two more passes.
    Ok(Graded {
        loss,
        correct: eval.correct,
        grads: recompute::detached(eval.loss.backward()?),
    })
}

/// The scalar value of a loss, refusing NaN and infinity.
pub fn finite_loss(loss: &Tensor, what: &str) -> Result<f64> {
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if !value.is_finite() {
        candle_core::bail!("non-finite loss ({value}) in the {what}");
    }
    Ok(value)
}

/// β-DARTS' Beta-Decay regularisation (Ye et al., "β-DARTS: Beta-Decay Regularization for
/// Differentiable Architecture Search", CVPR 2022), added to the architecture gradient in
/// `grads`: the loss term is `weight * L_beta`, with `L_beta` the mean over a cell's 14 edges
/// of the smooth maximum `log sum_o exp(alpha_o)` of the edge's operation logits, summed over
/// the normal and the reduction cell. Its gradient, `weight * softmax(alpha) / 14`, pulls each
/// logit down in proportion to its own weight, so that no operation's weight (skip's, in a
/// collapse) runs away from the rest; it does not depend on the network weights, so it is
/// the same for first and second order. Betas (PC-DARTS) are left alone.
pub fn add_beta_decay(net: &Supernet, weight: f64, grads: &mut GradStore) -> Result<()> {
    for cell in [&net.normal, &net.reduce] {
        let alphas = cell.alphas.as_tensor();
        let edges = alphas.dim(0)? as f64;
        let term = (candle_nn::ops::softmax(alphas, candle_core::D::Minus1)? * (weight / edges))?;
        let total = match grads.get(alphas) {
            Some(g) => (g + term)?,
            None => term,
        };
        grads.insert(alphas, total);
    }
    Ok(())
}

/// Settings of the unrolled (second-order) architecture step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unrolling {
    /// Virtual step size xi (DARTS uses the current weight learning rate).
    pub xi: f64,
    /// Momentum of the weight optimiser.
    pub momentum: f64,
    /// Weight decay of the weight optimiser.
    pub weight_decay: f64,
    /// Finite-difference radius factor: R = r_scale / ||grad_w' L_val(w')|| (DARTS: 0.01).
    pub r_scale: f64,
}

/// Result of an architecture gradient computation.
#[derive(Debug)]
pub struct ArchGradient {
    /// Gradients of the architecture variables (in [`Supernet::arch_vars`] order).
    pub grads: GradStore,
    /// Validation loss at the weights the gradient was taken at.
    pub val_loss: f64,
    /// Correct validation predictions.
    pub val_correct: usize,
}

/// First-order DARTS: grad_alpha L_val(w, alpha), with P-DARTS' skip-connect dropout when
/// `drop_skip` is given (in P-DARTS the whole search step runs in training mode, so the
/// dropout that weakens skip's weight gradient weakens its alpha gradient too).
pub fn first_order(
    net: &Supernet,
    val: LabelledBatch<'_>,
    drop_skip: Option<SkipDropout<'_>>,
) -> Result<ArchGradient> {
    let graded = loss_and_grads(net, val, drop_skip, "architecture step")?;
    Ok(ArchGradient {
        grads: graded.grads,
        val_loss: graded.loss,
        val_correct: graded.correct,
    })
}

/// Unrolled second-order DARTS:
///
/// ```text
/// w'  = w - xi (momentum * buf + grad_w L_train(w) + wd w)
/// d   = grad_alpha L_val(w') - xi [grad_alpha L_train(w+) - grad_alpha L_train(w-)] / 2R
/// w+- = w +- R grad_w' L_val(w'),   R = r_scale / ||grad_w' L_val(w')||
/// ```
///
/// `buffers[i]` is the momentum buffer of `weights[i]` (None before the first step). The
/// weights are restored before returning.
pub fn second_order(
    net: &Supernet,
    weights: &[Var],
    buffers: &[Option<Tensor>],
    train: LabelledBatch<'_>,
    val: LabelledBatch<'_>,
    unrolling: Unrolling,
) -> Result<ArchGradient> {
    let original: Vec<Tensor> = weights
        .iter()
        .map(|w| w.as_tensor().copy())
        .collect::<Result<_>>()?;
    let result = unrolled_gradient(net, weights, &original, buffers, train, val, unrolling);
    // Restore the weights whatever happened.
    for (w, o) in weights.iter().zip(&original) {
        w.set(o)?;
    }
    result
}

fn set_all(weights: &[Var], values: impl Iterator<Item = Result<Tensor>>) -> Result<()> {
    for (w, v) in weights.iter().zip(values) {
        w.set(&v?)?;
    }
    Ok(())
}

fn unrolled_gradient(
    net: &Supernet,
    weights: &[Var],
    original: &[Tensor],
    buffers: &[Option<Tensor>],
    train: LabelledBatch<'_>,
    val: LabelledBatch<'_>,
    u: Unrolling,
) -> Result<ArchGradient> {
    // Each forward pass's graph is dropped as soon as its gradients are taken, so that at
    // most one graph of the batch is alive at a time (the loss tensors hold them).
    virtual_step(net, weights, original, buffers, train, &u)?;

    // grad_alpha and grad_w' of L_val(w')
    let Graded {
        loss: val_loss,
        correct: val_correct,
        grads: mut val_grads,
    } = loss_and_grads(net, val, None, "architecture step")?;
    let dw: Vec<Option<Tensor>> = weights
        .iter()
        .map(|w| val_grads.get(w.as_tensor()).cloned())
        .collect();
    let norm = finite_norm(&dw)?;
    let arch = net.arch_vars();
    if norm == 0.0 {
        return Ok(ArchGradient {
            grads: val_grads,
            val_loss,
            val_correct,
        });
    }
    let r = u.r_scale / norm;

    // grad_alpha L_train(w +- R dw)
    let plus = arch_grad_at(net, (weights, &arch), (original, &dw), train, r)?;
    let minus = arch_grad_at(net, (weights, &arch), (original, &dw), train, -r)?;
    for ((_, a), (p, m)) in arch.iter().zip(plus.into_iter().zip(minus)) {
        let (Some(p), Some(m)) = (p, m) else { continue };
        let implicit = ((p - m)? * (u.xi / (2.0 * r)))?;
        let total = match val_grads.get(a.as_tensor()) {
            Some(g) => (g - implicit)?,
            None => implicit.neg()?,
        };
        val_grads.insert(a.as_tensor(), total);
    }
    Ok(ArchGradient {
        grads: val_grads,
        val_loss,
        val_correct,
    })
}

/// Moves `weights` to `w' = w - xi (momentum * buf + grad + wd * w)`, one SGD step on the
/// training batch from `original` (the unrolled model of DARTS' second-order step).
fn virtual_step(
    net: &Supernet,
    weights: &[Var],
    original: &[Tensor],
    buffers: &[Option<Tensor>],
    train: LabelledBatch<'_>,
    u: &Unrolling,
) -> Result<()> {
    let grads = loss_and_grads(net, train, None, "unrolled step")?.grads;
    set_all(
        weights,
        weights
            .iter()
            .zip(original)
            .zip(buffers)
            .map(|((w, o), buf)| {
                let mut d = match grads.get(w.as_tensor()) {
                    Some(g) => (g + (o * u.weight_decay)?)?,
                    None => (o * u.weight_decay)?,
                };
                if let Some(buf) = buf {
                    d = (d + (buf * u.momentum)?)?;
                }
                o - (d * u.xi)?
            }),
    )
}

/// The global L2 norm of the gradients `dw`; an error when it is not finite.
fn finite_norm(dw: &[Option<Tensor>]) -> Result<f64> {
    let norm_sq: f64 = dw
        .iter()
        .flatten()
        .map(|g| g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>())
        .sum::<Result<f64>>()?;
    let norm = norm_sq.sqrt();
    if !norm.is_finite() {
        candle_core::bail!("non-finite validation gradient in the architecture step");
    }
    Ok(norm)
}

/// `grad_alpha L_train(w + step dw)` with the weights set to `original + step * dw` (one
/// side of the finite-difference Hessian-vector product), per variable of `arch`.
fn arch_grad_at(
    net: &Supernet,
    (weights, arch): (&[Var], &[(String, Var)]),
    (original, dw): (&[Tensor], &[Option<Tensor>]),
    train: LabelledBatch<'_>,
    step: f64,
) -> Result<Vec<Option<Tensor>>> {
    set_all(
        weights,
        original.iter().zip(dw).map(|(o, g)| match g {
            Some(g) => o + (g * step)?,
            None => Ok(o.clone()),
        }),
    )?;
    let g = loss_and_grads(net, train, None, "Hessian-vector product")?.grads;
    Ok(arch
        .iter()
        .map(|(_, a)| g.get(a.as_tensor()).cloned())
        .collect())
}
