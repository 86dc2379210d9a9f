//! One training step of the discrete network: forward pass with drop path and the auxiliary
//! head, cross-entropy, backward pass, global gradient-norm clipping and an SGD update.
//!
//! `train` runs it for every batch and the `train_step` benchmark times it, so the two measure
//! the same mathematics.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};
use hands_models::nn::network::{DropPath, Network};
use rand::Rng;

use crate::mixup::Mixup;
use crate::optim::{clip_grad_norm, Sgd};

/// Loss settings of a training step.
#[derive(Debug, Clone)]
pub struct StepConfig {
    /// Per-class loss weights `[K]` (`hands_train::train::ClassWeight`); `None` weighs every
    /// image the same.
    pub class_weights: Option<Tensor>,
    /// Weight of the auxiliary head's loss (ignored when the network has none).
    pub auxiliary_weight: f64,
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f64,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// Drop path probability (0 disables it).
    pub drop_prob: f64,
    /// Mixup's `alpha` (see [`crate::mixup`]; 0 disables it).
    pub mixup: f64,
}

/// What one step measured.
#[derive(Debug)]
pub struct StepOutcome {
    /// The main head's logits on the batch (before the update), detached from the graph.
    pub logits: Tensor,
    /// The main head's loss.
    pub main_loss: f64,
    /// The loss that was minimised (main plus weighted auxiliary).
    pub total_loss: f64,
    /// The gradient norm before clipping.
    pub grad_norm: f64,
}

/// Runs one step on `images` `[B, 3, S, S]` with `labels` `[B]` and, when given, each image's
/// loss weight `image_weights` `[B]` (see [`weighted_cross_entropy`]); the images are blended
/// by mixup first when it is on (the returned logits are those of the blended images). A
/// non-finite loss is an error before any weight changes.
pub fn train_step<R: Rng>(
    network: &Network,
    sgd: &mut Sgd,
    images: &Tensor,
    labels: &Tensor,
    image_weights: Option<&Tensor>,
    config: &StepConfig,
    rng: &mut R,
) -> Result<StepOutcome> {
    let mixup = if config.mixup > 0.0 {
        let batch = images.dim(0)?;
        Some(Mixup::draw(config.mixup, batch, images.device(), rng)?)
    } else {
        None
    };
    let images = match &mixup {
        Some(mixup) => mixup.blend(images)?,
        None => images.clone(),
    };
    let drop_path = (config.drop_prob > 0.0).then_some(DropPath {
        prob: config.drop_prob,
        rng,
    });
    let output = network.forward_t(&images, true, drop_path)?;
    let weights = config.class_weights.as_ref();
    let loss_of = |logits: &Tensor| {
        let against = |labels: &Tensor| {
            weighted_cross_entropy(
                logits,
                labels,
                config.label_smoothing,
                weights,
                image_weights,
            )
        };
        match &mixup {
            Some(mixup) => mixup.loss(labels, against),
            None => against(labels),
        }
    };
    let main = loss_of(&output.logits)?;
    let loss = match &output.aux_logits {
        Some(aux) => {
            let aux = loss_of(aux)?;
            (&main + (aux * config.auxiliary_weight)?)?
        }
        None => main.clone(),
    };
    let total_loss = scalar(&loss)?;
    if !total_loss.is_finite() {
        bail!("non-finite loss ({total_loss}); try a lower --lr");
    }
    let main_loss = scalar(&main)?;
    let logits = output.logits.detach();
    let mut grads = loss.backward()?;
    // The graph (every activation) goes before the update allocates its new tensors.
    drop((loss, main, output));
    let grad_norm = clip_grad_norm(sgd.vars(), &mut grads, config.grad_clip)?;
    sgd.step(&grads)?;
    Ok(StepOutcome {
        logits,
        main_loss,
        total_loss,
        grad_norm,
    })
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Cross-entropy of `logits` `[B, K]` against `labels` `[B]` with label smoothing `eps` and
/// optional per-class `weights` `[K]`, as `torch.nn.CrossEntropyLoss(weight, label_smoothing=eps)`:
/// per image `(1 - eps) * w_y * nll + eps * mean_k(w_k * -log p_k)`, summed and divided by the
/// sum of `w_y` over the batch (the plain batch mean without weights).
pub fn cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    eps: f64,
    weights: Option<&Tensor>,
) -> Result<Tensor> {
    weighted_cross_entropy(logits, labels, eps, weights, None)
}

/// [`cross_entropy`] with each image's term, and its share of the divisor, also multiplied by
/// its entry of `image_weights` `[B]` (e.g. `--originals-weight` by image source): per image
/// `s_i * ((1 - eps) * w_y * nll + eps * mean_k(w_k * -log p_k))`, divided by the sum of
/// `s_i * w_y`.
pub fn weighted_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    eps: f64,
    class_weights: Option<&Tensor>,
    image_weights: Option<&Tensor>,
) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let labels = labels.to_dtype(DType::U32)?;
    let nll = log_p.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    if class_weights.is_none() && image_weights.is_none() {
        let nll = nll.mean_all()?;
        if eps == 0.0 {
            return Ok(nll);
        }
        let uniform = log_p.mean(D::Minus1)?.neg()?.mean_all()?;
        return Ok(((nll * (1.0 - eps))? + (uniform * eps)?)?);
    }
    let classes = log_p.dim(1)?;
    let class_weights = match class_weights {
        Some(weights) => weights.to_dtype(log_p.dtype())?,
        None => Tensor::ones(classes, log_p.dtype(), log_p.device())?,
    };
    let mut label_weights = class_weights.index_select(&labels, 0)?;
    let mut per_image = (nll * &label_weights)?;
    if eps != 0.0 {
        let smooth = log_p
            .broadcast_mul(&class_weights.unsqueeze(0)?)?
            .mean(D::Minus1)?
            .neg()?;
        per_image = ((per_image * (1.0 - eps))? + (smooth * eps)?)?;
    }
    if let Some(image_weights) = image_weights {
        let image_weights = image_weights.to_dtype(log_p.dtype())?;
        per_image = (per_image * &image_weights)?;
        label_weights = (label_weights * image_weights)?;
    }
    Ok(per_image
        .sum_all()?
        .broadcast_div(&label_weights.sum_all()?)?)
}
