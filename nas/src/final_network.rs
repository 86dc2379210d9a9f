//! The final network a resource budget is about: the discrete network a genotype becomes,
//! at the settings its costs are counted or measured for.

use hands_models::cost::{network_cost, Cost};
use hands_models::plan::NetworkPlan;
use hands_models::Genotype;

use crate::args::SearchArgs;

/// The final network a budget is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalNetwork {
    /// Channels of its first cell.
    pub init_channels: usize,
    /// Its cells.
    pub layers: usize,
    /// Its stem's stride.
    pub stem_stride: usize,
    /// Its input side.
    pub size: usize,
    /// Its classes.
    pub classes: usize,
}

impl FinalNetwork {
    /// The cost of the discrete network of `genotype` at this setting.
    pub fn cost_of(&self, genotype: &Genotype) -> Cost {
        network_cost(
            genotype,
            self.init_channels,
            self.layers,
            self.stem_stride,
            self.size,
            self.classes,
        )
        .total
    }

    /// The plan of its cells (the derived cells concatenate their four intermediate nodes).
    pub fn plan(&self) -> NetworkPlan {
        NetworkPlan::new(self.init_channels, self.layers, |_| 4).with_stem_stride(self.stem_stride)
    }
}

impl FinalNetwork {
    /// The final network of a search's budget settings (`--cost-init-channels`,
    /// `--cost-layers`, the stem stride and input side), for `classes` classes.
    pub fn of_search(args: &SearchArgs, classes: usize) -> FinalNetwork {
        FinalNetwork {
            init_channels: args.budget.cost_init_channels,
            layers: args.budget.cost_layers,
            stem_stride: args.network.stem_stride,
            size: args.data.size as usize,
            classes,
        }
    }
}
