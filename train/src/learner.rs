//! The network being trained from scratch: its optimizer, the data every epoch reads, one
//! epoch of training steps with validation and best-epoch selection, and its checkpoint
//! (weights, optimizer state, best weights) to resume from.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarMap;
use hands_models::nn::network::{parameter_count, Network, NetworkConfig};
use hands_models::nn::precise_bn::recompute_batch_norm;
use hands_models::Genotype;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::args::train::{SelectBy, TrainArgs};
use crate::checkpoint::{self, inference_tensors, load_varmap, varmap_tensors};
use crate::eval::{evaluate, Evaluation};
use crate::schedule::{cosine_lr, linear_ramp};

use crate::optim::{trainable_vars, Sgd, SgdConfig};
use crate::step::{train_step, StepConfig};
use hands_data::{ChannelStats, Dataset, ImageCache, Loader, SourceShare, SourceWeight, Split};
use hands_reports::records::TrainEpoch;
use hands_reports::runlog::progress_bar;

/// Checkpoint tensor prefix of the current weights.
const MODEL_PREFIX: &str = "model.";
/// Checkpoint tensor prefix of the best weights so far.
const BEST_PREFIX: &str = "best.";

/// The best epoch so far by the run's [`SelectBy`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// The epoch (0-based).
    pub epoch: usize,
    /// Its validation mean per-class accuracy.
    pub val_mean_class_accuracy: f64,
    /// Its validation loss.
    pub val_loss: f64,
}

impl Best {
    /// Whether an epoch with these validation figures replaces this one under `select`.
    pub(crate) fn improved_by(
        &self,
        select: SelectBy,
        mean_class_accuracy: f64,
        loss: f64,
    ) -> bool {
        match select {
            SelectBy::Accuracy => {
                mean_class_accuracy > self.val_mean_class_accuracy
                    || (mean_class_accuracy == self.val_mean_class_accuracy && loss < self.val_loss)
            }
            SelectBy::Loss => loss < self.val_loss,
            SelectBy::Last => true,
        }
    }
}

/// The run state stored in the checkpoint's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TrainState {
    /// The run's settings.
    pub(crate) args: TrainArgs,
    /// Epochs completed.
    pub(crate) epoch: usize,
    /// The training RNG where the next epoch starts.
    pub(crate) rng: ChaCha8Rng,
    /// The best epoch so far.
    pub(crate) best: Option<Best>,
    /// Training seconds spent so far (all invocations).
    pub(crate) seconds: f64,
    /// Where the split came from.
    pub(crate) split_source: String,
}

/// What every epoch reads: the images of each part, their loaders, the class weights.
pub(crate) struct EpochData<'a> {
    /// The training images (dataset indices).
    pub(crate) train: Vec<usize>,
    /// The validation images.
    pub(crate) val: Vec<usize>,
    /// Normalisation statistics of the training images.
    pub(crate) stats: ChannelStats,
    /// Augmented, shuffled training batches.
    pub(crate) train_loader: Loader<'a>,
    /// Plain batches for evaluation.
    pub(crate) eval_loader: Loader<'a>,
    /// Per-class loss weights (`--class-weight`).
    pub(crate) class_weights: Option<Tensor>,
    /// Each epoch's training images when `--originals-share` sets their sources' shares
    /// (else every training image once).
    pub(crate) source_share: Option<SourceShare>,
    /// Each training image's loss weight when `--originals-weight` weighs the originals.
    pub(crate) source_weight: Option<SourceWeight>,
}

impl<'a> EpochData<'a> {
    pub(crate) fn new(
        args: &TrainArgs,
        dataset: &Dataset,
        (split, split_source): (&Split, &str),
        cache: &'a ImageCache,
        device: &Device,
    ) -> Result<Self> {
        let train = split.train.indices(dataset);
        let val = split.val.indices(dataset);
        eprintln!(
            "{}: {} images of {} subjects; train {} / val {} / test {} subjects ({} / {} / {} \
             images; split {split_source})",
            args.data.path.display(),
            dataset.len(),
            dataset.subjects().len(),
            split.train.subjects.len(),
            split.val.subjects.len(),
            split.test.subjects.len(),
            train.len(),
            val.len(),
            split.test.indices(dataset).len(),
        );
        let stats = cache.stats(&train)?;
        let train_loader = Loader::new(cache, stats, args.optimiser.batch, device)
            .augment(args.regularisation.augmentation(args.data.size))
            .shuffle(true)
            .drop_last(train.len() >= args.optimiser.batch);
        let eval_loader = Loader::new(cache, stats, args.optimiser.batch, device);
        let class_weights = args
            .regularisation
            .class_weight
            .weights(&split.train.label_images)
            .map(|w| Tensor::new(w.as_slice(), device))
            .transpose()?;
        let source_share = args
            .regularisation
            .originals_share
            .map(|share| SourceShare::new(dataset, &train, share))
            .transpose()?;
        if let Some(sampler) = &source_share {
            eprintln!(
                "each epoch: {} originals of {} training images (--originals-share)",
                sampler.originals_per_epoch(),
                train.len()
            );
        }
        let source_weight = args
            .regularisation
            .originals_weight
            .map(|weight| SourceWeight::new(dataset, &train, weight))
            .transpose()?;
        if let Some(weights) = &source_weight {
            eprintln!(
                "loss weights: originals {}, square copies 1 (--originals-weight)",
                weights.weight()
            );
        }
        Ok(EpochData {
            source_share,
            source_weight,
            train,
            val,
            stats,
            train_loader,
            eval_loader,
            class_weights,
        })
    }
}

/// The network being trained, its optimizer, and the weights of the best epoch so far.
pub(crate) struct Learner {
    network: Network,
    varmap: VarMap,
    sgd: Sgd,
    /// The inference tensors of the best epoch so far.
    pub(crate) best_weights: Option<Vec<(String, Tensor)>>,
}

impl Learner {
    /// A seeded network (for `classes` classes) and its optimizer.
    pub(crate) fn new(
        args: &TrainArgs,
        genotype: &Genotype,
        classes: usize,
        device: &Device,
    ) -> Result<Self> {
        let config = NetworkConfig {
            init_channels: args.network.init_channels,
            layers: args.network.layers,
            stem_stride: args.network.stem_stride,
            num_classes: classes,
            auxiliary: args.regularisation.auxiliary_weight > 0.0,
        };
        let (network, varmap) =
            Network::seeded(genotype, &config, args.run.seed, DType::F32, device)?;
        let sgd_config = SgdConfig {
            lr: args.optimiser.lr,
            momentum: args.optimiser.momentum,
            weight_decay: args.optimiser.weight_decay,
        };
        let sgd = Sgd::new(trainable_vars(&varmap), sgd_config)?;
        let parameters = parameter_count(&varmap, false);
        eprintln!(
            "network: {} cells, C = {}, {} parameters (+{} in the auxiliary head)",
            args.network.layers,
            args.network.init_channels,
            parameters,
            parameter_count(&varmap, true) - parameters
        );
        Ok(Learner {
            network,
            varmap,
            sgd,
            best_weights: None,
        })
    }

    /// Restores the weights, the optimizer state and (when the run has a best epoch) the best
    /// weights from the checkpoint `path`'s `tensors`.
    pub(crate) fn restore(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        has_best: bool,
        path: &Path,
    ) -> Result<()> {
        load_varmap(&self.varmap, tensors, MODEL_PREFIX, path)?;
        self.sgd
            .load_state(tensors)
            .with_context(|| format!("{}: optimizer state", path.display()))?;
        if has_best {
            self.best_weights = Some(unprefixed(tensors, BEST_PREFIX));
        }
        Ok(())
    }

    /// Precise BatchNorm: the statistics recomputed on the training batches, augmented as
    /// in training (the weights learned to expect the statistics of augmented images), drawn
    /// with a generator of their own so that the training sees the same batches with or
    /// without it.
    fn recompute_batch_norm(
        &self,
        args: &TrainArgs,
        data: &EpochData<'_>,
        epoch: usize,
    ) -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(args.run.seed ^ (epoch as u64).rotate_left(32));
        let batches = data.train_loader.epoch(&data.train, &mut rng).map(|batch| {
            batch
                .map(|b| b.images)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))
        });
        recompute_batch_norm(&self.network, &self.varmap, batches)
            .with_context(|| format!("epoch {epoch}: recomputing BatchNorm statistics"))?;
        Ok(())
    }

    /// Keeps the weights of `epoch` as the best so far when its validation figures `val`
    /// improve on `state`'s best by `--select` (always without validation subjects).
    fn keep_if_best(
        &mut self,
        args: &TrainArgs,
        state: &mut TrainState,
        val: Option<&Evaluation>,
        epoch: usize,
    ) -> Result<()> {
        let improved = match (val, &state.best) {
            (None, _) | (Some(_), None) => true,
            (Some(v), Some(best)) => best.improved_by(args.select, v.mean_class_accuracy, v.loss),
        };
        if improved {
            state.best = Some(Best {
                epoch,
                val_mean_class_accuracy: val.map_or(0.0, |v| v.mean_class_accuracy),
                val_loss: val.map_or(0.0, |v| v.loss),
            });
            self.best_weights = Some(inference_tensors(&self.varmap, "")?);
        }
        Ok(())
    }

    /// Trains epoch `state.epoch`, validates, keeps the weights when they are the best so
    /// far, and advances `state`; returns the epoch's log record.
    pub(crate) fn epoch(
        &mut self,
        args: &TrainArgs,
        data: &EpochData<'_>,
        dataset: &Dataset,
        state: &mut TrainState,
    ) -> Result<TrainEpoch> {
        let epoch = state.epoch;
        let started = Instant::now();
        let lr = cosine_lr(
            epoch,
            args.optimiser.epochs,
            args.optimiser.lr,
            args.optimiser.lr_min,
        );
        let drop_prob = linear_ramp(epoch, args.optimiser.epochs, args.regularisation.drop_path);
        self.sgd.set_lr(lr);
        let config = StepConfig {
            class_weights: data.class_weights.clone(),
            auxiliary_weight: args.regularisation.auxiliary_weight,
            label_smoothing: args.regularisation.label_smoothing,
            grad_clip: args.optimiser.grad_clip,
            drop_prob,
            mixup: args.regularisation.mixup,
        };
        let (network, loader) = (&self.network, &data.train_loader);
        let drawn = data
            .source_share
            .as_ref()
            .map(|sampler| sampler.epoch(&mut state.rng));
        let trained = train_epoch(
            network,
            &mut self.sgd,
            loader,
            (
                drawn.as_deref().unwrap_or(&data.train),
                data.source_weight.as_ref(),
            ),
            &config,
            epoch,
            &mut state.rng,
        )?;
        check_finite(self.sgd.vars(), epoch)?;
        if args.precise_bn {
            self.recompute_batch_norm(args, data, epoch)?;
        }
        let val = if data.val.is_empty() {
            None
        } else {
            Some(evaluate(
                network,
                &data.eval_loader,
                dataset,
                &data.val,
                "val",
            )?)
        };
        self.keep_if_best(args, state, val.as_ref(), epoch)?;
        let seconds = started.elapsed().as_secs_f64();
        state.seconds += seconds;
        state.epoch += 1;
        let record = TrainEpoch {
            epoch,
            lr,
            drop_path: drop_prob,
            train_loss: trained.loss,
            train_acc: trained.accuracy,
            val_loss: val.as_ref().map(|v| v.loss),
            val_acc: val.as_ref().map(|v| v.accuracy),
            seconds,
            images_per_s: trained.images as f64 / seconds,
        };
        eprintln!("{record}");
        Ok(record)
    }

    /// Saves the weights, the optimizer state, the best weights and `state` atomically.
    pub(crate) fn save_checkpoint(&self, path: &Path, state: &TrainState) -> Result<()> {
        let mut tensors = varmap_tensors(&self.varmap, MODEL_PREFIX, |_| true)?;
        tensors.extend(self.sgd.state());
        if let Some(best) = &self.best_weights {
            tensors.extend(
                best.iter()
                    .map(|(name, t)| (format!("{BEST_PREFIX}{name}"), t.clone())),
            );
        }
        Ok(checkpoint::save(path, &tensors, state)?)
    }
}

/// What one training epoch measured.
struct EpochTraining {
    /// Mean main-head loss.
    loss: f64,
    /// Accuracy on the (augmented) training batches.
    accuracy: f64,
    /// Training images seen.
    images: usize,
}

/// One training epoch of [`train_step`]s over `indices`, each image's loss weighed by
/// `source_weight` when given.
fn train_epoch(
    network: &Network,
    sgd: &mut Sgd,
    loader: &Loader<'_>,
    (indices, source_weight): (&[usize], Option<&SourceWeight>),
    config: &StepConfig,
    epoch: usize,
    rng: &mut ChaCha8Rng,
) -> Result<EpochTraining> {
    let batches = loader.epoch(indices, rng);
    let bar = progress_bar(batches.num_batches() as u64, &format!("epoch {epoch}"));
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
    for (step, batch) in batches.enumerate() {
        let batch = batch?;
        let image_weights = source_weight
            .map(|weights| weights.batch(&batch.indices, batch.images.device()))
            .transpose()?;
        let outcome = train_step(
            network,
            sgd,
            &batch.images,
            &batch.labels,
            image_weights.as_ref(),
            config,
            rng,
        )
        .with_context(|| {
            format!("epoch {epoch} step {step}: training stopped; the last checkpoint is intact")
        })?;
        let n = batch.indices.len();
        loss_sum += outcome.main_loss * n as f64;
        correct += outcome
            .logits
            .argmax(D::Minus1)?
            .eq(&batch.labels)?
            .to_dtype(DType::U32)?
            .sum_all()?
            .to_scalar::<u32>()? as usize;
        seen += n;
        bar.inc(1);
        bar.set_message(format!("loss {:.4}", loss_sum / seen as f64));
    }
    bar.finish_and_clear();
    if seen == 0 {
        bail!("epoch {epoch} has no training batch (fewer images than --batch?)");
    }
    Ok(EpochTraining {
        loss: loss_sum / seen as f64,
        accuracy: correct as f64 / seen as f64,
        images: seen,
    })
}

/// Fails when a learnable variable holds NaN or infinity (a diverged update).
fn check_finite(vars: &[Var], epoch: usize) -> Result<()> {
    let mut sums = Vec::with_capacity(vars.len());
    for var in vars {
        sums.push(var.as_tensor().to_dtype(DType::F64)?.abs()?.sum_all()?);
    }
    let total = Tensor::stack(&sums, 0)?.sum_all()?.to_scalar::<f64>()?;
    if !total.is_finite() {
        bail!(
            "the weights became non-finite during epoch {epoch}: training stopped; the last \
             checkpoint is intact (try a lower --lr)"
        );
    }
    Ok(())
}

fn unprefixed(tensors: &HashMap<String, Tensor>, prefix: &str) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = tensors
        .iter()
        .filter_map(|(k, t)| k.strip_prefix(prefix).map(|n| (n.to_string(), t.clone())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
