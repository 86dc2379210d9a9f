//! The ONNX Runtime CPU latency of a final network on this machine: measured for one genotype
//! ([`network_latency_ms`]), and predicted for any genotype by a lookup table fitted to
//! measured networks ([`LatencyModel`]), which a latency budget weighs with the
//! architecture weights.
//!
//! The table holds, for each kind of edge (a normal cell's; a reduction cell's from one of
//! its inputs, at stride 2; a reduction cell's from one of its nodes) and each operation,
//! the latency the operation adds on one such edge of every cell of that type, and the
//! latency of everything no edge changes (stem, preprocessing, node sums, concatenations,
//! head, one run's overhead). A genotype's latency is that constant plus its edges' entries.
//!
//! The entries are not single operations timed alone: measured here with a prototype that
//! was not kept (DARTS_V2, C 16, 8 cells, 32x32, 2 threads), such graphs summed to 2.3x the whole network's latency at
//! batch 1 and 1.6x at batch 64, since ONNX Runtime converts convolutions to its blocked
//! NCHWc layout and fuses activations, so that in a network the layout changes once and a
//! ReLU is shared, while a graph of one operation pays both at its borders. The entries are
//! instead fitted, by least squares, to the measured latencies of [`FIT_NETWORKS`] random
//! genotypes of the same final network, a quarter of them with no, a third, two thirds and
//! all operations parameter-free (their counts of each operation on each kind of edge, and
//! of the states read through a ReLU, against their latencies): measured in context, once per setting and cached. The cache lies in
//! `$XDG_CACHE_HOME/hands` (or `~/.cache/hands`), one file per network, batch and thread
//! count, and is measured again when it came from another CPU or ONNX Runtime library.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use hands_export::{lower, OnnxOptions};
use hands_infer::{DeviceChoice, GraphTimer, Options, TimingPlan};
use hands_models::card::{
    ColourOrder, InputSpec, NetworkSpec, Provenance, ResizeRule, TensorLayout, CARD_SCHEMA_VERSION,
};
use hands_models::genotype::{EDGES_PER_NODE, NODES};
use hands_models::nn::network::{Network, NetworkConfig};
use hands_models::output::write_atomic;
use hands_models::{Genotype, ModelCard, Op};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::final_network::FinalNetwork;
use hands_train::checkpoint::inference_tensors;

/// Random genotypes a latency table is fitted to.
pub const FIT_NETWORKS: usize = 48;

/// The seeds of those genotypes, away from the small seeds a user tries with `random:SEED`.
const FIT_SEEDS: std::ops::Range<u64> = 1_000_000..1_000_000 + FIT_NETWORKS as u64;

/// The genotype of fit seed `seed`: `random:SEED` with each operation turned into a pool or
/// the identity with a probability of 0, 1/3, 2/3 or 1 (by seed), so that the fit spans
/// cells from all convolutions to none, as budgeted searches find them.
fn fit_genotype(seed: u64) -> Genotype {
    use rand::seq::IndexedRandom;
    use rand::{Rng, SeedableRng};
    let mut genotype = Genotype::random(seed);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let share = (seed % 4) as f64 / 3.0;
    let free = [Op::MaxPool3x3, Op::AvgPool3x3, Op::SkipConnect];
    for (op, _) in genotype.normal.iter_mut().chain(genotype.reduce.iter_mut()) {
        if rng.random_bool(share) {
            *op = *free.choose(&mut rng).expect("three ops");
        }
    }
    genotype
}

/// How each network is timed while fitting: 3 untimed runs, then at least 15 runs and
/// 150 ms; the median.
pub const FIT_TIMING: TimingPlan = TimingPlan {
    warm_up: 3,
    min_runs: 15,
    min_time: Duration::from_millis(150),
};

/// What a measurement was made on; a table holds for this and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The CPU model (`/proc/cpuinfo`'s `model name`, or the architecture).
    pub cpu: String,
    /// ONNX Runtime's intra-op threads.
    pub threads: usize,
    /// The ONNX Runtime library.
    pub ort_library: PathBuf,
}

impl Machine {
    /// This machine with `threads` threads and the ONNX Runtime library `hands-infer`
    /// loads (`ort_lib` first).
    pub fn this(threads: usize, ort_lib: Option<&Path>) -> Result<Machine> {
        let runtime = hands_infer::runtime::runtime(ort_lib)?;
        Ok(Machine {
            cpu: hands_infer::timing::cpu_model(),
            threads,
            ort_library: runtime.library().to_path_buf(),
        })
    }

    /// The session options that time networks on it (CPU).
    fn options(&self) -> Options {
        Options {
            device: DeviceChoice::Cpu,
            threads: Some(self.threads),
            ort_library: Some(self.ort_library.clone()),
            min_confidence: None,
            target_accuracy: None,
        }
    }
}

/// The folder of the latency cache: `$XDG_CACHE_HOME/hands`, else `~/.cache/hands`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("hands"))
}

/// The ONNX graph of the network of `genotype` at the setting of `network`, with freshly
/// initialised weights, lowered as `hands-export` lowers a trained one.
pub fn network_graph(genotype: &Genotype, network: FinalNetwork) -> Result<Vec<u8>> {
    let card = untrained_card(genotype, network);
    card.validate().context(
        "the network is outside what a model file may hold, so its latency cannot be measured",
    )?;
    let tensors = fresh_weights(genotype, network)?;
    Ok(lower(&card, &tensors, &OnnxOptions::default())?
        .model
        .encode_to_vec())
}

/// The median milliseconds of one run of the graph `bytes` of a network on
/// `size` x `size` images at `batch` on `machine`, timed as `plan` says.
pub fn network_latency_ms(
    bytes: &[u8],
    size: usize,
    batch: usize,
    machine: &Machine,
    plan: TimingPlan,
) -> Result<f64> {
    let name = Path::new("<the genotype's network>");
    let shape = [batch, 3, size, size];
    let mut timer = GraphTimer::new(bytes, name, &shape, &machine.options())?;
    Ok(timer.median(plan)?.as_secs_f64() * 1e3)
}

/// The inference tensors of the network of `genotype`, freshly initialised as training
/// starts it.
fn fresh_weights(genotype: &Genotype, network: FinalNetwork) -> Result<HashMap<String, Tensor>> {
    let config = NetworkConfig {
        init_channels: network.init_channels,
        layers: network.layers,
        stem_stride: network.stem_stride,
        num_classes: network.classes,
        auxiliary: false,
    };
    let varmap = VarMap::new();
    Network::new(
        genotype,
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    Ok(inference_tensors(&varmap, "")?.into_iter().collect())
}

/// A card for the untrained network: what the lowering and ONNX Runtime need to know.
fn untrained_card(genotype: &Genotype, network: FinalNetwork) -> ModelCard {
    let cost = network.cost_of(genotype);
    ModelCard {
        schema_version: CARD_SCHEMA_VERSION,
        labels: (0..network.classes).map(|i| format!("class{i}")).collect(),
        input: InputSpec {
            size: network.size as u32,
            layout: TensorLayout::Nchw,
            colour: ColourOrder::Rgb,
            resize: ResizeRule::StretchBilinear,
            mean: [0.5; 3],
            std: [0.25; 3],
        },
        genotype: genotype.clone(),
        network: NetworkSpec {
            init_channels: network.init_channels,
            layers: network.layers,
            stem_stride: network.stem_stride,
            auxiliary: false,
            parameters: cost.parameters as usize,
            multiply_adds: Some(cost.multiply_adds),
            latency: Vec::new(),
        },
        metrics: None,
        cross_validation: None,
        calibration: None,
        provenance: Provenance {
            data: String::new(),
            genotype_source: genotype.to_string(),
            train: serde_json::json!({}),
            seed: 0,
            tool_version: concat!("hands-search ", env!("CARGO_PKG_VERSION")).to_string(),
        },
    }
}

/// The kind of a cell edge, which decides its operation's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// An edge of a normal cell.
    Normal,
    /// A reduction cell's edge from one of its inputs (stride 2).
    ReduceInput,
    /// A reduction cell's edge from one of its nodes (stride 1, at the reduced side).
    ReduceNode,
}

impl EdgeKind {
    /// All three, in the table's order.
    pub const ALL: [EdgeKind; 3] = [
        EdgeKind::Normal,
        EdgeKind::ReduceInput,
        EdgeKind::ReduceNode,
    ];

    /// The stride of its operations: 2 from a reduction cell's inputs, else 1.
    pub fn stride(self) -> usize {
        if self == EdgeKind::ReduceInput {
            2
        } else {
            1
        }
    }

    /// The kind of an edge from state `from` of a normal or (`reduction`) reduction cell.
    pub fn of(reduction: bool, from: usize) -> EdgeKind {
        match (reduction, from < 2) {
            (false, _) => EdgeKind::Normal,
            (true, true) => EdgeKind::ReduceInput,
            (true, false) => EdgeKind::ReduceNode,
        }
    }
}

/// The operations with an entry on an edge of `kind`: all but `none` (which derivation never
/// keeps) and the identity (`skip_connect` at stride 1, which adds nothing to what every
/// edge costs: the sum into its node is in the fixed part).
fn table_ops(kind: EdgeKind) -> impl Iterator<Item = Op> {
    Op::ALL.into_iter().filter(move |&op| {
        op != Op::None && (op != Op::SkipConnect || kind == EdgeKind::ReduceInput)
    })
}

/// Unknowns of the fit: the fixed part, each kind's operations (all but `none`, and but the
/// identity on the two stride-1 kinds: see [`table_ops`]), then each kind's ReLUs.
const UNKNOWNS: usize = 1 + (Op::ALL.len() - 2) + (Op::ALL.len() - 1) + (Op::ALL.len() - 2) + 3;

/// The first unknown of the ReLUs: the states of a kind that an operation reads through a
/// ReLU (a convolution or a factorized reduction), each computed once however many edges
/// read it.
const RELU_COLUMNS: usize = UNKNOWNS - 3;

/// Whether `op` begins with a ReLU of its input at `stride`.
fn reads_through_relu(op: Op, stride: usize) -> bool {
    op.convolution().is_some() || (op == Op::SkipConnect && stride == 2)
}

/// The unknown of `op` on an edge of `kind`; none for an operation without an entry.
fn column(kind: EdgeKind, op: Op) -> Option<usize> {
    let mut first = 1;
    for k in EdgeKind::ALL {
        if k == kind {
            return table_ops(k).position(|o| o == op).map(|p| first + p);
        }
        first += table_ops(k).count();
    }
    None
}

/// One genotype's features: 1, its count of each operation on each kind of edge, and of
/// the states each kind of edge reads through a ReLU.
fn features(genotype: &Genotype) -> [f64; UNKNOWNS] {
    let mut x = [0.0; UNKNOWNS];
    x[0] = 1.0;
    for reduction in [false, true] {
        let (edges, _) = genotype.cell(reduction);
        let mut relu_states = [false; NODES + 2];
        for &(op, from) in edges.iter().take(NODES * EDGES_PER_NODE) {
            let kind = EdgeKind::of(reduction, from);
            if let Some(column) = column(kind, op) {
                x[column] += 1.0;
            }
            if reads_through_relu(op, kind.stride()) && !relu_states[from] {
                relu_states[from] = true;
                x[RELU_COLUMNS + kind_index(kind)] += 1.0;
            }
        }
    }
    x
}

/// The position of `kind` in [`EdgeKind::ALL`].
fn kind_index(kind: EdgeKind) -> usize {
    EdgeKind::ALL
        .iter()
        .position(|&k| k == kind)
        .expect("every kind is listed")
}

/// A measured network of a fit, against what the fitted table says of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitPoint {
    /// The genotype.
    pub genotype: Genotype,
    /// Its measured median latency, milliseconds.
    pub measured_ms: f64,
    /// What the fitted table predicts.
    pub predicted_ms: f64,
}

/// A latency table of one final network at one batch size on one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyModel {
    /// Where it was measured.
    pub machine: Machine,
    /// Channels of the network's first cell.
    pub init_channels: usize,
    /// Its cells.
    pub layers: usize,
    /// Its stem's stride (tables written before it was recorded had 1).
    #[serde(default = "hands_models::plan::default_stem_stride")]
    pub stem_stride: usize,
    /// Its input side.
    pub size: usize,
    /// Its classes.
    pub classes: usize,
    /// Images per run.
    pub batch: usize,
    /// Milliseconds of everything no edge's operation changes.
    pub fixed_ms: f64,
    /// Milliseconds an operation adds on one edge of a kind, summed over the cells of its
    /// type (`none` and the identity add nothing and have no entry), its input's ReLU left
    /// out.
    pub edge_ms: BTreeMap<EdgeKind, BTreeMap<Op, f64>>,
    /// Milliseconds of the ReLU of one state that edges of a kind read through a ReLU,
    /// summed over the cells of its type.
    pub relu_ms: BTreeMap<EdgeKind, f64>,
    /// The networks it was fitted to.
    pub fit: Vec<FitPoint>,
}

impl LatencyModel {
    /// Fits the table of `network` at `batch` on `machine` to [`FIT_NETWORKS`] measured
    /// random genotypes.
    pub fn fit(machine: Machine, network: FinalNetwork, batch: usize) -> Result<LatencyModel> {
        let progress = hands_reports::runlog::progress_bar(FIT_NETWORKS as u64, "latency table");
        let mut rows = Vec::with_capacity(FIT_NETWORKS);
        for seed in FIT_SEEDS {
            let genotype = fit_genotype(seed);
            let bytes = network_graph(&genotype, network)?;
            let ms = network_latency_ms(&bytes, network.size, batch, &machine, FIT_TIMING)?;
            rows.push((genotype, ms));
            progress.inc(1);
        }
        progress.finish_and_clear();
        let x: Vec<[f64; UNKNOWNS]> = rows.iter().map(|r| features(&r.0)).collect();
        let y: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let beta = least_squares(&x, &y)?;
        let edge_ms = EdgeKind::ALL
            .into_iter()
            .map(|kind| {
                let ops = table_ops(kind).filter_map(|op| Some((op, beta[column(kind, op)?])));
                (kind, ops.collect())
            })
            .collect();
        let relu_ms = EdgeKind::ALL
            .into_iter()
            .map(|kind| (kind, beta[RELU_COLUMNS + kind_index(kind)]))
            .collect();
        let mut model = LatencyModel {
            machine,
            init_channels: network.init_channels,
            layers: network.layers,
            stem_stride: network.stem_stride,
            size: network.size,
            classes: network.classes,
            batch,
            fixed_ms: beta[0],
            edge_ms,
            relu_ms,
            fit: Vec::new(),
        };
        model.fit = rows
            .into_iter()
            .map(|(genotype, measured_ms)| FitPoint {
                predicted_ms: model.predict(&genotype),
                genotype,
                measured_ms,
            })
            .collect();
        Ok(model)
    }

    /// The final network it is of.
    pub fn network(&self) -> FinalNetwork {
        FinalNetwork {
            init_channels: self.init_channels,
            layers: self.layers,
            stem_stride: self.stem_stride,
            size: self.size,
            classes: self.classes,
        }
    }

    /// The milliseconds `op` adds on an edge of `kind` (0 for `none` and the identity).
    pub fn edge(&self, kind: EdgeKind, op: Op) -> f64 {
        self.edge_ms
            .get(&kind)
            .and_then(|ops| ops.get(&op))
            .copied()
            .unwrap_or(0.0)
    }

    /// The milliseconds of the ReLU of one state read through a ReLU by edges of `kind`.
    pub fn relu(&self, kind: EdgeKind) -> f64 {
        self.relu_ms.get(&kind).copied().unwrap_or(0.0)
    }

    /// The milliseconds of `op` on an edge of `kind` with its input's ReLU counted in full:
    /// what the search's expected cost weighs (an upper bound when several edges read one
    /// state through a ReLU, which a network computes once).
    pub fn edge_with_relu(&self, kind: EdgeKind, op: Op) -> f64 {
        let relu = if reads_through_relu(op, kind.stride()) {
            self.relu(kind)
        } else {
            0.0
        };
        self.edge(kind, op) + relu
    }

    /// The predicted milliseconds of one run of the network of `genotype`.
    pub fn predict(&self, genotype: &Genotype) -> f64 {
        let beta = self.coefficients();
        features(genotype)
            .iter()
            .zip(beta)
            .map(|(x, b)| x * b)
            .sum()
    }

    /// The table as the fit's unknowns.
    fn coefficients(&self) -> [f64; UNKNOWNS] {
        let mut beta = [0.0; UNKNOWNS];
        beta[0] = self.fixed_ms;
        for kind in EdgeKind::ALL {
            for op in table_ops(kind) {
                if let Some(column) = column(kind, op) {
                    beta[column] = self.edge(kind, op);
                }
            }
            beta[RELU_COLUMNS + kind_index(kind)] = self.relu(kind);
        }
        beta
    }

    /// The worst relative difference between predicted and measured over the fit.
    pub fn worst_fit_error(&self) -> f64 {
        self.fit
            .iter()
            .map(|p| (p.predicted_ms / p.measured_ms - 1.0).abs())
            .fold(0.0, f64::max)
    }

    /// The cache file of the table of `network` at `batch` on `machine`, in `dir`.
    pub fn cache_file(
        dir: &Path,
        machine: &Machine,
        network: FinalNetwork,
        batch: usize,
    ) -> PathBuf {
        dir.join(format!(
            "latency-c{}-l{}{}-s{}-n{}-batch{}-threads{}.json",
            network.init_channels,
            network.layers,
            match network.stem_stride {
                1 => String::new(),
                stride => format!("-stem{stride}"),
            },
            network.size,
            network.classes,
            batch,
            machine.threads
        ))
    }

    /// The table in `path`.
    pub fn load(path: &Path) -> Result<LatencyModel> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the latency table", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a latency table", path.display()))
    }

    /// Writes the table to `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
        }
        write_atomic(
            path,
            (serde_json::to_string_pretty(self)? + "\n").as_bytes(),
        )?;
        Ok(())
    }

    /// The table of `network` at `batch` on `machine` from the cache, fitted (and cached)
    /// when the cache has none for them.
    pub fn cached(machine: Machine, network: FinalNetwork, batch: usize) -> Result<LatencyModel> {
        let Some(dir) = default_cache_dir() else {
            return LatencyModel::fit(machine, network, batch);
        };
        let path = LatencyModel::cache_file(&dir, &machine, network, batch);
        if path.exists() {
            let model = LatencyModel::load(&path)?;
            if model.machine == machine && model.network() == network && model.batch == batch {
                return Ok(model);
            }
            eprintln!(
                "{}: measured on another machine or network; measuring again",
                path.display()
            );
        }
        eprintln!(
            "latency table: timing {FIT_NETWORKS} random networks at batch {batch} (once; cached \
             in {})",
            path.display()
        );
        let model = LatencyModel::fit(machine, network, batch)?;
        model.save(&path)?;
        eprintln!(
            "latency table: worst error over its {} networks {:.1}%",
            model.fit.len(),
            model.worst_fit_error() * 100.0
        );
        Ok(model)
    }
}

/// The least-squares solution of `x beta = y`, by the normal equations with a tiny ridge
/// (for unknowns the samples barely tell apart) and a Cholesky factorisation: 23 unknowns,
/// which needs no linear-algebra crate.
fn least_squares(x: &[[f64; UNKNOWNS]], y: &[f64]) -> Result<[f64; UNKNOWNS]> {
    let n = UNKNOWNS;
    let mut a = [[0.0; UNKNOWNS]; UNKNOWNS];
    let mut b = [0.0; UNKNOWNS];
    for (row, &target) in x.iter().zip(y) {
        for i in 0..n {
            b[i] += row[i] * target;
            for j in 0..n {
                a[i][j] += row[i] * row[j];
            }
        }
    }
    let ridge = 1e-10 * (0..n).map(|i| a[i][i]).sum::<f64>() / n as f64;
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += ridge;
    }
    // Cholesky: a = l l^T, then forward and back substitution.
    let mut l = [[0.0; UNKNOWNS]; UNKNOWNS];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - s;
                if d <= 0.0 {
                    bail!("the latency fit is singular (too few distinct networks)");
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    let mut z = [0.0; UNKNOWNS];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i][k] * z[k]).sum();
        z[i] = (b[i] - s) / l[i][i];
    }
    let mut beta = [0.0; UNKNOWNS];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k][i] * beta[k]).sum();
        beta[i] = (z[i] - s) / l[i][i];
    }
    Ok(beta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fit's unknowns follow the operation set: one per operation each kind of edge
    /// tables, besides the fixed part and one ReLU per kind.
    #[test]
    fn the_unknowns_are_counted_from_the_operations() {
        let tabled: usize = EdgeKind::ALL.iter().map(|&k| table_ops(k).count()).sum();
        assert_eq!(UNKNOWNS, 1 + tabled + EdgeKind::ALL.len());
        assert_eq!(RELU_COLUMNS, 1 + tabled);
    }

    #[test]
    fn least_squares_recovers_an_exact_linear_rule() {
        // y = 2 + 0.5 * (count of column 3) + 1.25 * (count of column 10), on random
        // genotypes' features.
        let x: Vec<[f64; UNKNOWNS]> = (0..60).map(|s| features(&Genotype::random(s))).collect();
        let y: Vec<f64> = x.iter().map(|r| 2.0 + 0.5 * r[3] + 1.25 * r[10]).collect();
        let beta = least_squares(&x, &y).unwrap();
        for (i, &b) in beta.iter().enumerate() {
            let expected = match i {
                0 => 2.0,
                3 => 0.5,
                10 => 1.25,
                _ => 0.0,
            };
            assert!((b - expected).abs() < 1e-4, "unknown {i}: {b}");
        }
    }

    #[test]
    fn features_count_each_op_on_each_kind_of_edge() {
        let genotype = Genotype::published("DARTS_V2").unwrap();
        let x = features(&genotype);
        assert_eq!(x[0], 1.0);
        // 16 edges, each counted once, but the normal cell's two identities and the
        // reduction cell's three (skip_connect from node 2).
        assert_eq!(x[1..RELU_COLUMNS].iter().sum::<f64>(), 11.0);
        // The reduction cell's max_pool from inputs 0 and 1 (stride 2) on five edges.
        assert_eq!(
            x[column(EdgeKind::ReduceInput, Op::MaxPool3x3).unwrap()],
            5.0
        );
        assert_eq!(column(EdgeKind::Normal, Op::None), None);
        assert_eq!(column(EdgeKind::Normal, Op::SkipConnect), None);
        assert!(column(EdgeKind::ReduceInput, Op::SkipConnect).is_some());
        assert_eq!(
            column(EdgeKind::ReduceNode, Op::DilConv5x5),
            Some(RELU_COLUMNS - 1)
        );
        // ReLUs: the normal cell's sep_convs read states 0 and 1 (its dil_conv state 2);
        // the reduction cell reads nothing through a ReLU.
        assert_eq!(x[RELU_COLUMNS..], [3.0, 0.0, 0.0]);
    }
}
