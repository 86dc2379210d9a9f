//! Reproducible parameter initialisation.
//!
//! candle draws random initial values from an unseeded generator; every network of this
//! project is created with constant placeholders and then filled here from a seed, so that a
//! run is reproducible from its seed alone.

use candle_core::{Result, Tensor};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Fills every weight of rank 2 or more (convolutions, linear layers) with PyTorch's default
/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, visiting the parameters in name order; biases and
/// BatchNorm parameters keep their constant initial values.
pub fn init_seeded(varmap: &VarMap, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let vars = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let dims = var.dims();
        if dims.len() < 2 {
            continue;
        }
        let fan_in: usize = dims[1..].iter().product();
        let bound = 1.0 / (fan_in as f64).sqrt();
        let values: Vec<f64> = (0..var.elem_count())
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let t = Tensor::from_vec(values, dims, var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}
