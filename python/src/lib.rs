//! The native module of the `hands_infer` Python package (`hands_infer._native`): the
//! inference library of the `hands-infer` crate, bound with PyO3 against the stable ABI
//! (abi3, Python 3.9 and newer).
//!
//! The Python side (`python/hands_infer/`) re-exports what is here and adds the Ray Data job;
//! `python/hands_infer/_native.pyi` holds the type stubs. The GIL is released while images
//! are decoded and the network runs, so one `predictor::PyPredictor` serves several Python
//! threads at once.

use pyo3::prelude::*;

mod arrays;
mod errors;
mod ort_library;
mod predictor;
mod rows;

/// The module `hands_infer._native`.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add("UNCERTAIN", hands_infer::UNCERTAIN)?;
    module.add_class::<predictor::PyPredictor>()?;
    module.add("HandsError", py.get_type::<errors::HandsError>())?;
    module.add("ModelError", py.get_type::<errors::ModelError>())?;
    module.add(
        "RuntimeNotFoundError",
        py.get_type::<errors::RuntimeNotFoundError>(),
    )?;
    module.add("DeviceError", py.get_type::<errors::DeviceError>())?;
    module.add("ImageError", py.get_type::<errors::ImageError>())?;
    module.add("InferenceError", py.get_type::<errors::InferenceError>())?;
    Ok(())
}
