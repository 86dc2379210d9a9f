//! A resource budget for the search: the expected cost of the final network under the
//! architecture weights, a differentiable term of the architecture loss that is zero within
//! the target and grows linearly above it.
//!
//! The cost is that of the *final* discrete network (the target C, cells and input size, not
//! the supernet's), from a per-op table ([`CostTable`]): for each edge of each cell type and
//! each candidate op, the cost the op would have on that edge summed over the cells of that
//! type: counted ([`hands_models::cost::op_cost`]) for multiply-adds and parameters, from a
//! latency table fitted to measured networks ([`crate::latency`]) for the latency. The
//! expected cost of an edge is its ops' costs
//! weighed by their softmaxed alphas without `none` (which derivation never keeps); each node
//! keeps two of its `n` incoming edges, taken as each edge with probability `2 / n`, or with
//! PC-DARTS' edge normalisation `2 softmax(beta)` over the node's edges. Stem, preprocessing
//! and classifier add a fixed part.
//!
//! The penalty is `weight * max(0, E[cost] / target - 1)`: above the target it is
//! ProxylessNAS' linear expected-latency term (Cai et al., "ProxylessNAS: Direct Neural
//! Architecture Search on Target Task and Hardware", ICLR 2019), measured relative to the
//! target; below it, unlike ProxylessNAS and FBNet, nothing pushes the network to shrink
//! further.

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use hands_models::cost::{edge_cost, fixed_cost, input_sides, Cost};
use hands_models::{Genotype, Op};

use crate::args::{CostMeasure, SearchArgs};
use crate::final_network::FinalNetwork;
use crate::latency::{EdgeKind, LatencyModel};
use crate::supernet::{node_edges, CellArch, Supernet, EDGES};

/// Where a budget's costs come from: counted from the network's layers, or measured.
#[derive(Debug, Clone, PartialEq)]
pub enum CostSource {
    /// Millions of multiply-adds, counted ([`hands_models::cost`]).
    MultiplyAdds,
    /// Millions of parameters, counted.
    Parameters,
    /// Milliseconds, from a latency table fitted to measured networks.
    Latency(LatencyModel),
}

impl CostSource {
    /// The counted source of `measure`; `None` for the latency, which needs a table.
    pub fn counted(measure: CostMeasure) -> Option<CostSource> {
        match measure {
            CostMeasure::Mflops => Some(CostSource::MultiplyAdds),
            CostMeasure::Params => Some(CostSource::Parameters),
            CostMeasure::Latency => None,
        }
    }

    /// A counted cost in this source's unit.
    fn of(&self, cost: Cost) -> f64 {
        match self {
            CostSource::MultiplyAdds => cost.multiply_adds as f64 / 1e6,
            CostSource::Parameters => cost.parameters as f64 / 1e6,
            CostSource::Latency(_) => unreachable!("a latency is not counted"),
        }
    }

    /// The cost of `op` on the edge from state `from` of every cell of one type
    /// (`reduction`) of `network`.
    fn edge(&self, network: FinalNetwork, reduction: bool, from: usize, op: Op) -> f64 {
        if let CostSource::Latency(model) = self {
            return model.edge_with_relu(EdgeKind::of(reduction, from), op);
        }
        let plan = network.plan();
        let cells = plan.cells.iter().zip(input_sides(&plan, network.size));
        cells
            .filter(|(cell, _)| cell.reduction == reduction)
            .map(|(cell, side)| self.of(edge_cost(op, cell, side, from)))
            .sum()
    }

    /// The cost of the parts of `network` that no edge's op changes.
    fn fixed(&self, network: FinalNetwork) -> f64 {
        match self {
            CostSource::Latency(model) => model.fixed_ms,
            counted => counted.of(fixed_cost(&network.plan(), network.size, network.classes)),
        }
    }

    /// The cost of the discrete network of `genotype` at the setting of `network`.
    pub fn genotype(&self, genotype: &Genotype, network: FinalNetwork) -> f64 {
        match self {
            CostSource::Latency(model) => model.predict(genotype),
            counted => counted.of(network.cost_of(genotype)),
        }
    }
}

/// Per cell type, per edge and candidate op, the op's cost summed over the final network's
/// cells of that type; and the part no architecture weight moves.
#[derive(Debug, Clone, PartialEq)]
pub struct CostTable {
    /// Stem, preprocessing and classifier.
    pub fixed: f64,
    /// `[14][candidates]` for the normal cells.
    pub normal: Vec<Vec<f64>>,
    /// `[14][candidates]` for the reduction cells.
    pub reduce: Vec<Vec<f64>>,
}

impl CostTable {
    /// The table of `network` from `source` for the candidates of each edge
    /// (`candidates(reduction)[edge]`).
    pub fn new<'a>(
        source: &CostSource,
        network: FinalNetwork,
        candidates: impl Fn(bool) -> &'a [Vec<Op>],
    ) -> CostTable {
        let [normal, reduce] = [false, true].map(|reduction| {
            let mut table: Vec<Vec<f64>> = vec![Vec::new(); EDGES];
            for node in 0..hands_models::genotype::NODES {
                for (from, edge) in node_edges(node).enumerate() {
                    table[edge] = candidates(reduction)[edge]
                        .iter()
                        .map(|&op| source.edge(network, reduction, from, op))
                        .collect();
                }
            }
            table
        });
        CostTable {
            fixed: source.fixed(network),
            normal,
            reduce,
        }
    }

    /// The expected cost of the final network under `net`'s architecture weights, a scalar
    /// tensor that gradients flow through to the alphas (and betas).
    pub fn expected(&self, net: &Supernet) -> Result<Tensor> {
        let normal = expected_cell(&net.normal, &self.normal, net.config().candidates(false))?;
        let reduce = expected_cell(&net.reduce, &self.reduce, net.config().candidates(true))?;
        Ok(((normal + reduce)? + self.fixed)?)
    }
}

/// The expected cost of one cell type: per edge, its ops' costs under softmax(alpha) without
/// `none`, times the probability that derivation keeps the edge.
fn expected_cell(arch: &CellArch, table: &[Vec<f64>], candidates: &[Vec<Op>]) -> Result<Tensor> {
    let weights = arch.op_weights()?.to_dtype(DType::F64)?;
    let device = weights.device().clone();
    let keep = match arch.edge_weights()? {
        Some(betas) => (betas.to_dtype(DType::F64)? * 2.0)?,
        None => uniform_keep(&device)?,
    };
    let mut total = Tensor::zeros((), DType::F64, &device)?;
    for edge in 0..EDGES {
        let ops = &candidates[edge];
        let p = weights.get(edge)?.narrow(0, 0, ops.len())?;
        let costs = Tensor::new(table[edge].as_slice(), &device)?;
        let kept = ops.iter().map(|&op| f64::from(u8::from(op != Op::None)));
        let kept = Tensor::new(kept.collect::<Vec<f64>>().as_slice(), &device)?;
        let p = (&p * &kept)?;
        let mass = (p.sum_all()? + 1e-12)?;
        let edge_cost = (p * costs)?.sum_all()?.broadcast_div(&mass)?;
        total = (total + (edge_cost * keep.get(edge)?)?)?;
    }
    Ok(total)
}

/// `2 / n` for each edge of a node with `n` incoming edges.
fn uniform_keep(device: &Device) -> Result<Tensor> {
    let keep: Vec<f64> = (0..hands_models::genotype::NODES)
        .flat_map(|node| {
            let edges = node_edges(node);
            let n = edges.len() as f64;
            edges.map(move |_| 2.0 / n)
        })
        .collect();
    Ok(Tensor::new(keep.as_slice(), device)?)
}

/// A budget on the final network's cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// Where the costs come from.
    pub source: CostSource,
    /// The final network they are of.
    pub network: FinalNetwork,
    /// The per-op costs.
    pub table: CostTable,
    /// The target, in the table's unit.
    pub target: f64,
    /// The weight of the penalty.
    pub weight: f64,
}

impl Budget {
    /// The budget of a search's settings (`--cost-target`, `--cost-weight` and the final
    /// network) on a stage whose candidates are `candidates(reduction)`, with costs from
    /// `source`; `None` when the search has no budget or no source.
    pub fn of_search<'a>(
        args: &SearchArgs,
        source: Option<&CostSource>,
        classes: usize,
        candidates: impl Fn(bool) -> &'a [Vec<Op>],
    ) -> Option<Budget> {
        let (Some(source), Some(target)) = (source, args.budget.cost_target) else {
            return None;
        };
        let network = FinalNetwork::of_search(args, classes);
        Some(Budget {
            table: CostTable::new(source, network, candidates),
            source: source.clone(),
            network,
            target,
            weight: args.budget.cost_weight,
        })
    }

    /// The cost of `genotype`'s final network, in the table's unit.
    pub fn cost_of(&self, genotype: &Genotype) -> f64 {
        self.source.genotype(genotype, self.network)
    }

    /// The penalty `weight * max(0, expected / target - 1)` for the expected cost tensor.
    pub fn penalty(&self, expected: &Tensor) -> Result<Tensor> {
        if self.target <= 0.0 {
            bail!("the cost target must be positive, not {}", self.target);
        }
        Ok(((((expected / self.target)? - 1.0)?.relu()?) * self.weight)?)
    }

    /// Adds the penalty's gradient to the architecture gradients in `grads`; returns the
    /// expected cost.
    pub fn add_gradient(&self, net: &Supernet, grads: &mut GradStore) -> Result<f64> {
        let expected = self.table.expected(net)?;
        let penalty_grads = self.penalty(&expected)?.backward()?;
        for arch in [&net.normal, &net.reduce] {
            let vars = std::iter::once(&arch.alphas).chain(arch.betas.as_ref());
            for var in vars {
                let Some(term) = penalty_grads.get(var.as_tensor()) else {
                    continue;
                };
                let term = term.to_dtype(var.dtype())?;
                let total = match grads.get(var.as_tensor()) {
                    Some(g) => (g + term)?,
                    None => term,
                };
                grads.insert(var.as_tensor(), total);
            }
        }
        Ok(expected.to_scalar::<f64>()?)
    }
}
