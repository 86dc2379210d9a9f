//! One stage of a differentiable architecture search: the supernet with its weight and
//! architecture optimisers, running the bilevel steps (first order or unrolled second
//! order) of an epoch and reading back the architecture (softmaxed alphas and betas, the
//! derived genotype, the operation weights P-DARTS prunes by).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use hands_models::Genotype;
use hands_models::Op;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::architect::{self, LabelledBatch, Unrolling};
use crate::args::StagePlan;
use crate::args::{Algo, SearchArgs};
use crate::budget::{Budget, CostSource};
use crate::derive::{derive_genotype, fit_to_budget};
use crate::hessian;
use crate::pdarts::{limit_skips, skip_dropout_rate};
use crate::search_state::SearchState;
use crate::supernet::{SkipDropout, Supernet, EDGES};
use hands_data::{Batch, Loader};
use hands_reports::records::EpochStats;
use hands_reports::runlog::progress_bar;
use hands_train::optim::{clip_grad_norm, Adam, AdamConfig, Sgd, SgdConfig};
use hands_train::schedule::{beta_decay_weight, cosine_lr};

/// The ChaCha stream of the Hessian power iteration's start vectors.
const HESSIAN_STREAM: u64 = 7;

/// Per edge (rows), per candidate op (columns) of one cell type: a weight.
pub(crate) type PerEdge = Vec<Vec<f64>>;

/// Softmaxed architecture parameters of both cell types, for the log.
pub(crate) struct ArchValues {
    pub(crate) alphas_normal: PerEdge,
    pub(crate) alphas_reduce: PerEdge,
    pub(crate) betas_normal: Option<Vec<f64>>,
    pub(crate) betas_reduce: Option<Vec<f64>>,
}

/// What one search step measured: the architecture step's validation loss and correct
/// count (when it ran), and the weight step's training loss and correct count.
#[derive(Debug, Clone, Copy)]
pub struct StepOutcome {
    /// `(val_loss, val_correct)` of the architecture step.
    pub arch: Option<(f64, usize)>,
    /// `(train_loss, train_correct)` of the weight step.
    pub weights: (f64, usize),
}

/// An epoch's running sums of one kind of step (weight or architecture).
#[derive(Debug, Default)]
struct StepSums {
    steps: usize,
    loss_sum: f64,
    correct: usize,
    seen: usize,
}

impl StepSums {
    /// Adds one step's mean loss and correct answers over `images`.
    fn add(&mut self, (loss, correct): (f64, usize), images: usize) {
        self.steps += 1;
        self.loss_sum += loss * images as f64;
        self.correct += correct;
        self.seen += images;
    }

    fn mean_loss(&self) -> Option<f64> {
        (self.seen > 0).then(|| self.loss_sum / self.seen as f64)
    }

    fn accuracy(&self) -> Option<f64> {
        (self.seen > 0).then(|| self.correct as f64 / self.seen as f64)
    }
}

/// The sums of an epoch's weight steps and architecture steps.
#[derive(Debug, Default)]
struct Tally {
    weights: StepSums,
    arch: StepSums,
}

/// The supernet of one stage with its optimisers: runs search steps.
pub struct StageRun<'a> {
    net: &'a Supernet,
    weight_vars: Vec<candle_core::Var>,
    arch_vars: Vec<candle_core::Var>,
    sgd: Sgd,
    adam: Adam,
    second_order: bool,
    grad_clip: f64,
    arch_grad_clip: Option<f64>,
    /// The resource budget, whose penalty joins the architecture gradient.
    budget: Option<Budget>,
}

impl<'a> StageRun<'a> {
    /// Optimisers for `net` with the settings of `args`.
    pub fn new(
        net: &'a Supernet,
        args: &SearchArgs,
        cost_source: Option<&CostSource>,
    ) -> Result<Self> {
        let weight_vars: Vec<_> = net.weight_vars().into_iter().map(|(_, v)| v).collect();
        let arch_vars: Vec<_> = net.arch_vars().into_iter().map(|(_, v)| v).collect();
        let sgd = Sgd::new(
            weight_vars.clone(),
            SgdConfig {
                lr: args.optimiser.lr,
                momentum: args.optimiser.momentum,
                weight_decay: args.optimiser.weight_decay,
            },
        )?;
        let adam = Adam::new(
            arch_vars.clone(),
            AdamConfig {
                lr: args.arch_lr(),
                betas: (0.5, 0.999),
                eps: 1e-8,
                weight_decay: args.architecture.arch_weight_decay,
            },
        )?;
        Ok(StageRun {
            net,
            weight_vars,
            arch_vars,
            sgd,
            adam,
            second_order: args.second_order(),
            grad_clip: args.optimiser.grad_clip,
            arch_grad_clip: args.arch_grad_clip(),
            budget: Budget::of_search(args, cost_source, net.config().num_classes, |reduction| {
                net.config().candidates(reduction)
            }),
        })
    }

    /// Everything a checkpoint must hold to continue this stage exactly.
    pub(crate) fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut tensors: Vec<(String, Tensor)> = self
            .net
            .all_weight_vars()
            .into_iter()
            .chain(self.net.arch_vars())
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        tensors.extend(self.sgd.state());
        tensors.extend(self.adam.state()?);
        Ok(tensors)
    }

    /// Restores the weights, architecture parameters and optimiser states from a
    /// checkpoint's `tensors` ([`StageRun::tensors`]).
    pub(crate) fn restore(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self
            .net
            .all_weight_vars()
            .into_iter()
            .chain(self.net.arch_vars())
        {
            let t = tensors
                .get(&name)
                .with_context(|| format!("missing tensor `{name}`"))?;
            if t.dims() != var.dims() {
                bail!(
                    "tensor `{name}` has shape {:?}, expected {:?}",
                    t.dims(),
                    var.dims()
                );
            }
            var.set(t)?;
        }
        self.sgd.load_state(tensors)?;
        self.adam.load_state(tensors)?;
        Ok(())
    }

    /// One epoch of search steps over the two halves (`w_idx` for the weights, `a_idx` for
    /// the architecture) at the stage's schedule, batches and augmentation drawn from
    /// `state`'s RNG; returns the epoch's statistics.
    pub(crate) fn epoch(
        &mut self,
        loader: &Loader<'_>,
        w_idx: &[usize],
        a_idx: &[usize],
        stage: &StagePlan,
        state: &mut SearchState,
    ) -> Result<EpochStats> {
        let start = Instant::now();
        let lr = cosine_lr(
            state.epoch,
            stage.epochs,
            state.args.optimiser.lr,
            state.args.optimiser.lr_min,
        );
        let arch_active = state.epoch >= stage.warmup;
        let drop_rate = skip_dropout_rate(stage, state.epoch);
        let beta_decay = beta_decay_weight(
            state.args.architecture.beta_decay,
            state.epoch,
            stage.epochs,
            stage.warmup,
        );
        let w_epoch = loader.epoch(w_idx, &mut state.rng);
        let a_epoch = loader.epoch(a_idx, &mut state.rng);
        let steps = w_epoch.num_batches().min(a_epoch.num_batches());
        let bar = progress_bar(
            steps as u64,
            &format!("stage {} epoch {}", state.stage, state.epoch),
        );
        let mut tally = Tally::default();
        for step in 0..steps {
            let w_batch = w_epoch.batch(step)?;
            let train = LabelledBatch {
                images: &w_batch.images,
                labels: &w_batch.labels,
            };
            let a_batch = if arch_active {
                Some(a_epoch.batch(step)?)
            } else {
                None
            };
            let val = a_batch.as_ref().map(|b| LabelledBatch {
                images: &b.images,
                labels: &b.labels,
            });
            let outcome = self
                .step(train, val, lr, drop_rate, beta_decay, &mut state.rng)
                .with_context(|| {
                    format!("step {step} of stage {} epoch {}", state.stage, state.epoch)
                })?;
            if let (Some(arch), Some(b)) = (outcome.arch, &a_batch) {
                tally.arch.add(arch, b.indices.len());
            }
            tally.weights.add(outcome.weights, w_batch.indices.len());
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.3}",
                tally.weights.loss_sum / tally.weights.seen as f64
            ));
        }
        bar.finish_and_clear();
        Ok(EpochStats {
            lr,
            arch_active,
            arch_steps: tally.arch.steps,
            skip_dropout: drop_rate,
            beta_decay,
            hessian_eigenvalue: None,
            expected_cost: self.expected_cost()?,
            train_loss: tally.weights.mean_loss().unwrap_or(f64::NAN),
            train_acc: tally.weights.accuracy().unwrap_or(f64::NAN),
            val_loss: tally.arch.mean_loss(),
            val_acc: tally.arch.accuracy(),
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// The largest eigenvalue of the Hessian of the validation loss on `batch` with respect
    /// to the architecture parameters ([`hessian::architecture_eigenvalue`]), from a start
    /// vector drawn from `seed`.
    pub(crate) fn hessian_eigenvalue(
        &self,
        batch: &Batch,
        iterations: usize,
        seed: u64,
    ) -> Result<f64> {
        let batch = LabelledBatch {
            images: &batch.images,
            labels: &batch.labels,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(HESSIAN_STREAM);
        let power = hessian::PowerIteration::new(iterations);
        Ok(hessian::architecture_eigenvalue(self.net, batch, power, &mut rng)?.value)
    }

    /// One search step: an architecture step on `val` (when given), then a weight step on
    /// `train` at learning rate `lr`, both with skip-connect dropout at rate `skip_dropout`
    /// (P-DARTS; 0 for the other algorithms, and the unrolled second-order step, which
    /// P-DARTS does not use, takes none). The architecture gradient gets β-DARTS'
    /// Beta-Decay term of weight `beta_decay` when it is positive.
    pub fn step(
        &mut self,
        train: LabelledBatch<'_>,
        val: Option<LabelledBatch<'_>>,
        lr: f64,
        skip_dropout: f64,
        beta_decay: f64,
        rng: &mut ChaCha8Rng,
    ) -> Result<StepOutcome> {
        self.sgd.set_lr(lr);
        let arch = match val {
            Some(val) => {
                let mut arch = if self.second_order {
                    let buffers: Vec<Option<Tensor>> = (0..self.weight_vars.len())
                        .map(|i| self.sgd.momentum_buffer(i).cloned())
                        .collect();
                    let config = self.sgd.config();
                    let unrolling = Unrolling {
                        xi: lr,
                        momentum: config.momentum,
                        weight_decay: config.weight_decay,
                        r_scale: 0.01,
                    };
                    architect::second_order(
                        self.net,
                        &self.weight_vars,
                        &buffers,
                        train,
                        val,
                        unrolling,
                    )?
                } else {
                    let dropout = SkipDropout {
                        prob: skip_dropout,
                        rng: &mut *rng,
                        record: None,
                    };
                    architect::first_order(self.net, val, Some(dropout))?
                };
                if let Some(budget) = &self.budget {
                    budget.add_gradient(self.net, &mut arch.grads)?;
                }
                if let Some(clip) = self.arch_grad_clip {
                    clip_grad_norm(&self.arch_vars, &mut arch.grads, clip)?;
                }
                // After the clip: the regulariser's weight is its schedule's, not scaled
                // down with the validation loss's gradient.
                if beta_decay > 0.0 {
                    architect::add_beta_decay(self.net, beta_decay, &mut arch.grads)?;
                }
                self.adam.step(&arch.grads)?;
                Some((arch.val_loss, arch.val_correct))
            }
            None => None,
        };
        let dropout = SkipDropout {
            prob: skip_dropout,
            rng,
            record: None,
        };
        let mut weights = architect::loss_and_grads(self.net, train, Some(dropout), "weight step")?;
        clip_grad_norm(&self.weight_vars, &mut weights.grads, self.grad_clip)?;
        self.sgd.step(&weights.grads)?;
        Ok(StepOutcome {
            arch,
            weights: (weights.loss, weights.correct),
        })
    }

    /// The expected cost of the final network under the current architecture weights, with
    /// a budget.
    fn expected_cost(&self) -> Result<Option<f64>> {
        self.budget
            .as_ref()
            .map(|budget| Ok(budget.table.expected(self.net)?.to_scalar::<f64>()?))
            .transpose()
    }

    /// Per-edge candidate weights used for deriving and pruning: softmax(alpha), times the
    /// edge's softmaxed beta with edge normalisation.
    pub(crate) fn op_weights(&self) -> Result<(PerEdge, PerEdge)> {
        let cell = |arch: &crate::supernet::CellArch| -> Result<PerEdge> {
            let mut w = arch.op_weights()?;
            if let Some(b) = arch.edge_weights()? {
                w = w.broadcast_mul(&b.reshape((EDGES, 1))?)?;
            }
            Ok(w.to_dtype(DType::F64)?.to_vec2::<f64>()?)
        };
        Ok((cell(&self.net.normal)?, cell(&self.net.reduce)?))
    }

    /// The softmaxed alphas (and betas) of both cell types, for the log.
    pub(crate) fn arch_values(&self) -> Result<ArchValues> {
        let soft = |arch: &crate::supernet::CellArch| -> Result<PerEdge> {
            Ok(arch.op_weights()?.to_dtype(DType::F64)?.to_vec2()?)
        };
        let betas = |arch: &crate::supernet::CellArch| -> Result<Option<Vec<f64>>> {
            Ok(match arch.edge_weights()? {
                Some(b) => Some(b.to_dtype(DType::F64)?.to_vec1()?),
                None => None,
            })
        };
        Ok(ArchValues {
            alphas_normal: soft(&self.net.normal)?,
            alphas_reduce: soft(&self.net.reduce)?,
            betas_normal: betas(&self.net.normal)?,
            betas_reduce: betas(&self.net.reduce)?,
        })
    }

    /// The genotype the architecture parameters derive now (with P-DARTS' skip limit at the
    /// final stage, which may give an edge left with skips only its `skip_fallback`).
    pub(crate) fn genotype(
        &self,
        args: &SearchArgs,
        final_stage: bool,
        skip_fallback: &[Vec<Op>],
    ) -> Result<Genotype> {
        let (normal, reduce) = self.op_weights()?;
        let config = self.net.config();
        let max_skip = (args.algo == Algo::Pdarts && final_stage).then_some(args.pdarts.max_skip);
        let genotype = if let Some(max_skip) = max_skip {
            limit_skips(
                &normal,
                &config.normal_candidates,
                &reduce,
                &config.reduce_candidates,
                max_skip,
                skip_fallback,
            )?
        } else {
            derive_genotype(
                &normal,
                &config.normal_candidates,
                &reduce,
                &config.reduce_candidates,
            )
        };
        let genotype = match &self.budget {
            Some(budget) if args.budget.cost_strict => fit_to_budget(
                genotype,
                (&normal, &config.normal_candidates),
                (&reduce, &config.reduce_candidates),
                |g| budget.cost_of(g),
                budget.target,
                max_skip,
            )?,
            _ => genotype,
        };
        genotype.validate()?;
        Ok(genotype)
    }
}
