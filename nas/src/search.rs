//! The `search` subcommand: bilevel architecture search (DARTS first and second order,
//! PC-DARTS, P-DARTS) on a hand dataset, with per-epoch genotypes, JSON-lines metrics and
//! atomic, resumable checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use hands_models::lock::RunLock;
use hands_models::Genotype;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::args::StagePlan;
use crate::args::{Algo, SearchArgs};
use crate::budget::CostSource;
use crate::final_network::FinalNetwork;
use crate::hessian;
use crate::latency::{LatencyModel, Machine};
use crate::pdarts::{prune_candidates, skip_fallback};
use crate::search_state::{EarlyStop, SearchState};
use crate::stage_run::{ArchValues, StageRun};
use crate::supernet::{Supernet, SupernetConfig};
use hands_data::{
    Augment, Batch, ChannelStats, Dataset, Fractions, ImageCache, Loader, Part, Split,
};
use hands_reports::learning::{ArchitectureLearning, CellLearning};
use hands_reports::outputs::{in_folder, Inputs};
use hands_reports::records::{EpochStats, SearchEpoch};
use hands_reports::run_dir::{RunDir, SEARCH_FILES};
use hands_reports::runlog::RunLog;
use hands_train::checkpoint;
use hands_train::device::open_device;
use hands_train::resume::{self, changed_settings, Epochs};

/// What `finished.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    /// Epochs run, over all stages.
    pub epochs: usize,
    /// The final genotype (the one in `genotype.json`).
    pub genotype: Genotype,
    /// Where R-DARTS' early stop ended the search, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<EarlyStop>,
    /// With a budget: the final genotype's cost against the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetOutcome>,
    /// What the architecture weights learned by the end, and whether the genotype is noise
    /// ([`hands_reports::learning`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<ArchitectureLearning>,
}

/// The final genotype's cost against the budget's target, in the budget's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetOutcome {
    /// The cost of the final genotype's final network.
    pub cost: f64,
    /// The target.
    pub target: f64,
}

/// Runs `hands-search search`.
pub fn run_search(args: &SearchArgs) -> Result<()> {
    let run = RunDir::new(
        args.run
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("runs/search-{}", args.algo.as_arg()))),
    );
    let _lock = RunLock::folder(run.path())?;
    let device = open_device(args.run.device)?;
    let (mut state, mut tensors) = open_state(args, &run, &device)?;
    let settings = &state.args;
    let dataset = Dataset::load(&settings.data.path, &settings.data.aspect)?;
    let (split, w_idx, a_idx) = prepare_halves(settings, &dataset, &run)?;
    let cache = ImageCache::build(&dataset, settings.data.size)?;
    let stats = cache.stats(&split.train.indices(&dataset))?;
    let loader = Loader::new(&cache, stats, settings.optimiser.batch, &device)
        .augment(Augment::standard(settings.data.size).with_vertical_flip(settings.vertical_flip))
        .shuffle(true)
        .drop_last(w_idx.len().min(a_idx.len()) >= settings.optimiser.batch);
    if !settings.run.resume {
        let steps_per_epoch = loader.batches_in(w_idx.len().min(a_idx.len()));
        if let Some(epochs) = state.args.set_epochs_for_arch_steps(steps_per_epoch)? {
            eprintln!(
                "--arch-steps: {epochs} epochs ({} warm-up, {steps_per_epoch} architecture steps \
                 an epoch)",
                state.args.arch_warmup()
            );
        }
    }
    let args = state.args.clone();
    let plan = args.plan()?;
    hands_models::output::write_atomic(
        &run.config(),
        (serde_json::to_string_pretty(&args)? + "\n").as_bytes(),
    )?;
    let hessian_batch = (args.architecture.hessian_iterations > 0)
        .then(|| hessian_batch(&cache, stats, &a_idx, args.optimiser.batch, &device))
        .transpose()?;
    let search = Search {
        args: &args,
        plan: &plan,
        run: &run,
        loader,
        w_idx,
        a_idx,
        hessian_batch,
        num_classes: dataset.labels().len(),
        cost_source: cost_source(&args, &run, dataset.labels().len())?,
        device: &device,
    };

    let mut log = RunLog::open(
        &run.search_log(),
        args.run.resume.then_some(state.global_epoch),
    )?;
    while state.stage < plan.len() {
        if !search.stage(&mut state, tensors.take(), &mut log)? {
            eprintln!(
                "stopped after {} epochs; continue with: hands-search search --resume --out {}",
                state.global_epoch,
                run.path().display()
            );
            return Ok(());
        }
        if state.stage + 1 >= plan.len() && state.epoch >= plan[state.stage].epochs {
            break;
        }
    }
    let genotype = state.genotype.context("the search ran no epoch")?;
    let finished = Finished {
        epochs: state.global_epoch,
        budget: search.budget_outcome(&genotype),
        genotype,
        early_stop: state.early_stop,
        learning: state.learning,
    };
    finish(&run, &finished)
}

/// Writes `finished.json` and says what the search found (and its cost against the budget).
fn finish(run: &RunDir, finished: &Finished) -> Result<()> {
    hands_models::output::write_atomic(
        &run.finished(),
        (serde_json::to_string_pretty(finished)? + "\n").as_bytes(),
    )?;
    eprintln!("genotype: {}", finished.genotype);
    if let Some(warning) = finished.learning.as_ref().and_then(|l| l.warning()) {
        eprintln!("warning: {warning}");
    }
    if let Some(BudgetOutcome { cost, target }) = finished.budget {
        let over = 100.0 * (cost / target - 1.0);
        if over > 0.0 {
            eprintln!("warning: the genotype costs {cost:.3}, {over:.1}% over the target {target}");
        } else {
            eprintln!("the genotype costs {cost:.3}, within the target {target}");
        }
    }
    eprintln!("written: {}", run.genotype().display());
    Ok(())
}

/// The state of the search, its settings included: the one stored in its checkpoint (with
/// the tensors to restore) under `--resume`, else a fresh state for `args`.
fn open_state(
    args: &SearchArgs,
    run: &RunDir,
    device: &Device,
) -> Result<(SearchState, Option<HashMap<String, Tensor>>)> {
    if args.run.resume {
        let (tensors, mut state): (_, SearchState) = resume::stored_state(run, device, "search")?;
        let checkpoint_path = run.checkpoint();
        state
            .check()
            .with_context(|| format!("{}: bad search state", checkpoint_path.display()))?;
        resume_settings(&mut state, args, run.path())?;
        eprintln!(
            "resuming {} at stage {} epoch {} (settings from the checkpoint)",
            run.path().display(),
            state.stage,
            state.epoch
        );
        return Ok((state, Some(tensors)));
    }
    args.check()?;
    resume::refuse_existing_checkpoint(run, "search")?;
    let state = SearchState {
        args: args.clone(),
        stage: 0,
        epoch: 0,
        global_epoch: 0,
        normal_candidates: SupernetConfig::full_candidates(),
        reduce_candidates: SupernetConfig::full_candidates(),
        rng: ChaCha8Rng::seed_from_u64(args.run.seed),
        genotype: None,
        eigenvalues: Vec::new(),
        genotypes: Vec::new(),
        early_stop: None,
        skip_fallback: Vec::new(),
        stage_arch_steps: 0,
        learning: None,
    };
    Ok((state, None))
}

/// The subject split and the images of its training subjects' two halves (weights,
/// architecture), checked to be searchable; the split is saved in the run folder (created),
/// which must hold none of the inputs. A finished search that goes on is unfinished again.
fn prepare_halves(
    args: &SearchArgs,
    dataset: &Dataset,
    run: &RunDir,
) -> Result<(Split, Vec<usize>, Vec<usize>)> {
    let out = run.path();
    Inputs::of_data(&args.data.path, dataset).check(in_folder(out, &SEARCH_FILES))?;
    let split = Split::new(dataset, Fractions::default(), args.run.seed)?;
    let (w_half, alpha_half) = split.train.halves(dataset, args.run.seed)?;
    check_searchable(&args.data.path, dataset, &split, &w_half, &alpha_half)?;
    let (w_idx, a_idx) = (w_half.indices(dataset), alpha_half.indices(dataset));
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let finished_path = run.finished();
    if finished_path.exists() {
        // The run goes on (more epochs): it is not finished until it ends again.
        std::fs::remove_file(&finished_path)
            .with_context(|| format!("cannot remove {}", finished_path.display()))?;
    }
    split.save(&run.split())?;
    eprintln!(
        "{}: {} images of {} subjects; searching on {} training subjects ({} / {} images for \
         weights / architecture)",
        args.data.path.display(),
        dataset.len(),
        dataset.subjects().len(),
        split.train.subjects.len(),
        w_idx.len(),
        a_idx.len()
    );
    Ok((split, w_idx, a_idx))
}

/// The first `batch` images of the architecture half, plain (no augmentation): the fixed
/// batch the Hessian eigenvalue is taken on, so that its values compare across epochs.
fn hessian_batch(
    cache: &ImageCache,
    stats: ChannelStats,
    a_idx: &[usize],
    batch: usize,
    device: &Device,
) -> Result<Batch> {
    let first = &a_idx[..batch.min(a_idx.len())];
    let loader = Loader::new(cache, stats, first.len(), device);
    let mut unused = ChaCha8Rng::seed_from_u64(0);
    Ok(loader.epoch(first, &mut unused).batch(0)?)
}

/// What every stage of a search reads: its settings and stage plan, the run folder, the
/// batches and the images of the two halves.
struct Search<'a> {
    args: &'a SearchArgs,
    plan: &'a [StagePlan],
    run: &'a RunDir,
    loader: Loader<'a>,
    w_idx: Vec<usize>,
    a_idx: Vec<usize>,
    /// The batch the Hessian eigenvalue is taken on (--hessian-iterations).
    hessian_batch: Option<Batch>,
    num_classes: usize,
    /// Where the budget's costs come from, with a budget.
    cost_source: Option<CostSource>,
    device: &'a Device,
}

/// The budget's cost source: the counted measure, or for `--cost latency` the latency table
/// of the run folder (a resumed search keeps the one it began with), else this machine's
/// table of the final network at batch 1 (cached, see [`crate::latency`]), copied into the
/// run folder.
fn cost_source(args: &SearchArgs, run: &RunDir, classes: usize) -> Result<Option<CostSource>> {
    let Some(measure) = args.budget.cost else {
        return Ok(None);
    };
    if let Some(counted) = CostSource::counted(measure) {
        return Ok(Some(counted));
    }
    let in_run = run.latency_table();
    if in_run.exists() {
        return Ok(Some(CostSource::Latency(LatencyModel::load(&in_run)?)));
    }
    let machine = Machine::this(rayon::current_num_threads(), None)?;
    let model = LatencyModel::cached(machine, FinalNetwork::of_search(args, classes), 1)?;
    model.save(&in_run)?;
    Ok(Some(CostSource::Latency(model)))
}

impl Search<'_> {
    /// `genotype`'s cost against the target, with a budget.
    fn budget_outcome(&self, genotype: &Genotype) -> Option<BudgetOutcome> {
        Some(BudgetOutcome {
            cost: self.genotype_cost(genotype)?,
            target: self.args.budget.cost_target?,
        })
    }

    /// The cost of `genotype`'s final network in the budget's unit, with a budget.
    fn genotype_cost(&self, genotype: &Genotype) -> Option<f64> {
        let source = self.cost_source.as_ref()?;
        let network = FinalNetwork::of_search(self.args, self.num_classes);
        Some(source.genotype(genotype, network))
    }

    /// Runs the epochs left in stage `state.stage` (restoring the stage's weights from
    /// `tensors` when it is part-way), logging and checkpointing each; at the stage's end,
    /// prunes the candidates for the next one. `false` when `--stop-after` stopped it.
    fn stage(
        &self,
        state: &mut SearchState,
        tensors: Option<HashMap<String, Tensor>>,
        log: &mut RunLog,
    ) -> Result<bool> {
        let args = self.args;
        let stage = &self.plan[state.stage];
        let config = SupernetConfig {
            init_channels: args.network.init_channels,
            layers: stage.layers,
            stem_stride: args.network.stem_stride,
            num_classes: self.num_classes,
            partial_k: args.partial_k(),
            edge_norm: args.algo == Algo::Pcdarts,
            normal_candidates: state.normal_candidates.clone(),
            reduce_candidates: state.reduce_candidates.clone(),
        };
        let seed = args.run.seed + state.stage as u64;
        let net = Supernet::new(&config, seed, DType::F32, self.device)?.with_memory(args.memory);
        let mut stage_run = StageRun::new(&net, args, self.cost_source.as_ref())?;
        let checkpoint_path = self.run.checkpoint();
        if let Some(t) = tensors.filter(|_| state.epoch > 0) {
            stage_run.restore(&t).with_context(|| {
                format!("{}: does not fit this search", checkpoint_path.display())
            })?;
        }
        while state.epoch < stage.epochs {
            if args.run.stop_after.is_some_and(|n| state.global_epoch >= n) {
                return Ok(false);
            }
            let mut stats =
                stage_run.epoch(&self.loader, &self.w_idx, &self.a_idx, stage, state)?;
            if let Some(batch) = &self.hessian_batch {
                stats.hessian_eigenvalue = Some(stage_run.hessian_eigenvalue(
                    batch,
                    args.architecture.hessian_iterations,
                    args.run.seed ^ state.global_epoch as u64,
                )?);
            }
            let eigenvalue = stats.hessian_eigenvalue;
            state.stage_arch_steps += stats.arch_steps;
            let (genotype, learning) = self.record_epoch(&stage_run, stage, state, stats, log)?;
            state.learning = Some(learning);
            // The early stop compares only epochs with architecture steps: a warm-up epoch's
            // eigenvalue and genotype come from untrained architecture weights.
            if let Some(eigenvalue) = eigenvalue.filter(|_| state.epoch >= stage.warmup) {
                state.eigenvalues.push(eigenvalue);
                if args.architecture.early_stop_factor.is_some() {
                    state.genotypes.push(genotype.clone());
                }
            }
            state.epoch += 1;
            state.global_epoch += 1;
            state.genotype = Some(genotype);
            if self.early_stop(state)? {
                state.epoch = stage.epochs;
                checkpoint::save(&checkpoint_path, &stage_run.tensors()?, state)?;
                break;
            }
            if state.epoch == stage.epochs && state.stage + 1 < self.plan.len() {
                self.next_stage(&stage_run, state)?;
                checkpoint::save(&checkpoint_path, &[], state)?;
                break;
            }
            checkpoint::save(&checkpoint_path, &stage_run.tensors()?, state)?;
        }
        Ok(true)
    }

    /// Moves `state` to the next P-DARTS stage, which starts from fresh weights: each edge's
    /// candidates pruned to the next stage's count by the weights of `stage_run`.
    fn next_stage(&self, stage_run: &StageRun<'_>, state: &mut SearchState) -> Result<()> {
        let next_ops = self.plan[state.stage + 1].ops;
        let (normal, reduce) = stage_run.op_weights()?;
        state.skip_fallback = skip_fallback(&normal, &state.normal_candidates);
        state.normal_candidates = prune_candidates(&normal, &state.normal_candidates, next_ops);
        state.reduce_candidates = prune_candidates(&reduce, &state.reduce_candidates, next_ops);
        state.stage += 1;
        state.epoch = 0;
        state.stage_arch_steps = 0;
        state.eigenvalues.clear();
        state.genotypes.clear();
        Ok(())
    }

    /// R-DARTS' early stop after the epoch just done: when the eigenvalue has risen by
    /// --early-stop-factor, the genotype of the last epoch before the rise becomes the
    /// search's (written with its pictures) and `true` ends the search.
    fn early_stop(&self, state: &mut SearchState) -> Result<bool> {
        let Some(factor) = self.args.architecture.early_stop_factor else {
            return Ok(false);
        };
        let architecture = &self.args.architecture;
        let warmup = self.plan[state.stage].warmup;
        let Some(kept) = hessian::early_stop_epoch(
            &state.eigenvalues,
            architecture.early_stop_window,
            factor,
            warmup,
            architecture.early_stop_start,
        ) else {
            return Ok(false);
        };
        let window = architecture.early_stop_window;
        let genotype = state.genotypes[kept].clone();
        self.write_genotype(&genotype)?;
        let stage_start = state.global_epoch - state.epoch;
        let stop = EarlyStop {
            stopped_after: state.global_epoch - 1,
            kept_epoch: stage_start + warmup + kept,
        };
        eprintln!(
            "early stop (DARTS-ES): the Hessian eigenvalue rose more than {factor} times over \
             {window} epochs by epoch {}; keeping the genotype of epoch {}",
            stop.stopped_after, stop.kept_epoch
        );
        state.early_stop = Some(stop);
        state.genotype = Some(genotype);
        Ok(true)
    }

    /// Writes `genotype.json` and the cell pictures.
    fn write_genotype(&self, genotype: &Genotype) -> Result<()> {
        hands_models::output::write_atomic(
            &self.run.genotype(),
            (genotype.to_json() + "\n").as_bytes(),
        )?;
        hands_reports::dot::write_cell_pictures(genotype, self.run.path())
    }

    /// Writes the epoch's genotype and its cell pictures and logs the epoch; returns the
    /// genotype and what the architecture has learned.
    fn record_epoch(
        &self,
        stage_run: &StageRun<'_>,
        stage: &StagePlan,
        state: &SearchState,
        stats: EpochStats,
        log: &mut RunLog,
    ) -> Result<(Genotype, ArchitectureLearning)> {
        let final_stage = state.stage + 1 == self.plan.len();
        let genotype = stage_run.genotype(self.args, final_stage, &state.skip_fallback)?;
        self.write_genotype(&genotype)?;
        let ArchValues {
            alphas_normal,
            alphas_reduce,
            betas_normal,
            betas_reduce,
        } = stage_run.arch_values()?;
        let learning = ArchitectureLearning::new(
            state.stage_arch_steps,
            self.args.arch_lr(),
            CellLearning::of(&alphas_normal, &state.normal_candidates),
            CellLearning::of(&alphas_reduce, &state.reduce_candidates),
        );
        log.write(&SearchEpoch {
            epoch: state.global_epoch,
            stage: state.stage,
            stage_epoch: state.epoch,
            layers: stage.layers,
            genotype: Some(genotype.clone()),
            alphas_normal,
            alphas_reduce,
            betas_normal,
            betas_reduce,
            candidates_normal: state.normal_candidates.clone(),
            candidates_reduce: state.reduce_candidates.clone(),
            parameter_free_normal: Some(genotype.parameter_free_normal_ops()),
            genotype_cost: self.genotype_cost(&genotype),
            learning: Some(learning),
            stats,
        })?;
        Ok((genotype, learning))
    }
}

/// Takes the per-invocation settings of `given` into a resumed run's stored settings (the
/// device, where to stop, and `--memory` when given) and refuses any other setting given
/// differently, except `--epochs` with `--extend-epochs`.
fn resume_settings(state: &mut SearchState, given: &SearchArgs, out: &Path) -> Result<()> {
    let ignore = ["resume", "out", "device", "extend_epochs", "memory"];
    let changes = changed_settings(&state.args, given, given.run.explicit.as_deref(), &ignore)?;
    let epochs = Epochs {
        stored: state.args.optimiser.epochs,
        given: given.optimiser.epochs,
        done: state.epoch,
    };
    let in_stage = format!(" in stage {}", state.stage);
    state.args.optimiser.epochs = resume::resumed_epochs(
        out,
        changes,
        given.run.extend_epochs,
        epochs,
        (&in_stage, "epochs per stage"),
    )?;
    state.args.run.resume = true;
    state.args.run.out = Some(out.to_path_buf());
    state.args.run.device = given.run.device;
    state.args.run.stop_after = given.run.stop_after;
    // The run's own unless given (the command line's default is not a request).
    let memory_given =
        (given.run.explicit.as_ref()).is_none_or(|names| names.iter().any(|name| name == "memory"));
    if memory_given {
        state.args.memory = given.memory;
    }
    state.args.check()
}

/// Refuses data on which a search cannot run before any epoch: images of a single class,
/// or a split that leaves the weight or the architecture half without images of every
/// class (too few subjects).
fn check_searchable(
    data: &Path,
    dataset: &Dataset,
    split: &Split,
    w_half: &Part,
    alpha_half: &Part,
) -> Result<()> {
    let labels = dataset.labels();
    let counts = dataset.label_counts();
    let present: Vec<&str> = labels
        .iter()
        .zip(&counts)
        .filter(|(_, &n)| n > 0)
        .map(|(l, _)| l.as_str())
        .collect();
    if present.len() < 2 {
        bail!(
            "{}: all {} images are of one class ({}): a search needs images of at least two \
             classes",
            data.display(),
            dataset.len(),
            present.join(", ")
        );
    }
    for (half, part) in [("weight", w_half), ("architecture", alpha_half)] {
        let missing: Vec<&str> = labels
            .iter()
            .zip(&part.label_images)
            .zip(&counts)
            .filter(|((_, &n), &total)| n == 0 && total > 0)
            .map(|((l, _), _)| l.as_str())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{}: the {half} half of the {} training subjects (of {} subjects) has no images \
                 of {}: a search needs at least 2 training subjects of each class, about 3 \
                 subjects of each class in the data",
                data.display(),
                split.train.subjects.len(),
                dataset.subjects().len(),
                missing.join(", ")
            );
        }
    }
    Ok(())
}
