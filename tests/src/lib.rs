//! Test support shared by every crate's tests: where the shared data is, and what a test does
//! when it is absent (skip with a notice, or fail under `CI=true`); synthetic datasets
//! ([`datasets`]) and encoded test images ([`images`]); with the `tensors` feature, tensor
//! comparison, seeded random tensors and a VarMap's tensors by name. The end-to-end tests of the three programs live in `tests/`; they run the
//! binaries that `cargo test --workspace` builds next to the test executables.

pub mod datasets;
pub mod images;

use std::path::{Path, PathBuf};

#[cfg(feature = "tensors")]
use std::collections::BTreeMap;

#[cfg(feature = "tensors")]
use candle_core::{DType, Device, Shape, Tensor};
#[cfg(feature = "tensors")]
use candle_nn::VarMap;
#[cfg(feature = "tensors")]
use rand::{Rng, SeedableRng};
#[cfg(feature = "tensors")]
use rand_chacha::ChaCha8Rng;
#[cfg(feature = "tensors")]
use rand_distr::{Distribution, Normal};

/// The names of the files in `dir` that start with a dot: the hidden temporary and lock
/// files a program must not leave behind.
pub fn hidden_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// Whether this is CI's run (`CI=true`), where missing shared data fails a test instead of
/// skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A folder of `../shared/data` beside the workspace (or the folder `$env` names) that holds
/// a `HandInfo.csv`, or `None` with a notice naming `what`; under `CI=true` its absence fails.
pub fn shared_data(env: &str, folder: &str, what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data")
            .join(folder)
    });
    if dir.join("HandInfo.csv").is_file() {
        return Some(dir);
    }
    assert!(!in_ci(), "{what} not found at {} (CI=true)", dir.display());
    eprintln!("SKIPPED: {what} not found at {} (set {env})", dir.display());
    None
}

/// Whether what `probe` tried is there (ONNX Runtime, say, named by `what`): when it is not,
/// prints a notice naming `test` and returns false (the caller skips), except under
/// `CI=true`, where the test fails.
pub fn available<T, E: std::fmt::Display>(test: &str, what: &str, probe: Result<T, E>) -> bool {
    match probe {
        Ok(_) => true,
        Err(e) if in_ci() => panic!("{test}: {what} is required under CI=true: {e}"),
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            false
        }
    }
}

/// The shared 11K Hands sample (`$HANDS_SAMPLE` or `../shared/data/hands-11k-sample`), as
/// [`shared_data`] finds it.
pub fn sample_dir() -> Option<PathBuf> {
    shared_data("HANDS_SAMPLE", "hands-11k-sample", "11K Hands sample")
}

/// The largest absolute difference between two tensors of one shape (either float type),
/// taken in f64.
#[cfg(feature = "tensors")]
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let f64_of = |t: &Tensor| t.to_dtype(DType::F64).expect("a float tensor");
    (f64_of(a) - f64_of(b))
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>())
        .expect("two tensors of one shape")
}

/// The tensors of `varmap` by name, in name order (the VarMap's own order is a HashMap's).
/// They are the variables' own tensors, so gradients taken through them reach the variables;
/// `hands_train::checkpoint::varmap_tensors` gives detached copies instead, for saving.
#[cfg(feature = "tensors")]
pub fn named_tensors(varmap: &VarMap) -> BTreeMap<String, Tensor> {
    varmap
        .data()
        .lock()
        .expect("an unpoisoned VarMap")
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect()
}

/// Random f32 CPU tensors drawn from one seeded stream, so that a test compared against a
/// tolerance sees the same inputs on every run (candle's CPU `randn` cannot be seeded).
#[cfg(feature = "tensors")]
pub struct SeededTensors(ChaCha8Rng);

#[cfg(feature = "tensors")]
impl SeededTensors {
    /// A stream that starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Values from N(`mean`, `std`^2).
    pub fn normal(&mut self, mean: f32, std: f32, shape: impl Into<Shape>) -> Tensor {
        let normal = Normal::new(mean, std).expect("a finite, non-negative std");
        self.tensor(shape, |rng| normal.sample(rng))
    }

    /// Values uniform in [`low`, `high`).
    pub fn uniform(&mut self, low: f32, high: f32, shape: impl Into<Shape>) -> Tensor {
        self.tensor(shape, |rng| rng.random_range(low..high))
    }

    fn tensor(&mut self, shape: impl Into<Shape>, draw: impl Fn(&mut ChaCha8Rng) -> f32) -> Tensor {
        let shape = shape.into();
        let values: Vec<f32> = (0..shape.elem_count()).map(|_| draw(&mut self.0)).collect();
        Tensor::from_vec(values, shape, &Device::Cpu).expect("as many values as the shape holds")
    }
}
