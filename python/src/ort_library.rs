//! Where the Python package finds ONNX Runtime: the `onnxruntime` (or `onnxruntime-gpu`)
//! package installed in the running interpreter, which the package depends on.
//!
//! The command looks for the package of the `python3` on `PATH`, which need not be the
//! interpreter that imported `hands_infer` (a virtual environment that is not activated,
//! say); here the running interpreter is asked, without importing `onnxruntime`.

use std::path::PathBuf;

use hands_infer::runtime::ORT_DYLIB_ENV;
use pyo3::prelude::*;

/// The library to load: `given` (the `ort_library` argument) when there is one; else,
/// unless `ORT_DYLIB_PATH` names one, the folder of the interpreter's `onnxruntime` package
/// (which `hands_infer::runtime` searches for its `capi/libonnxruntime.so*`); else `None`,
/// and the command's search applies.
pub fn choose(py: Python<'_>, given: Option<PathBuf>) -> Option<PathBuf> {
    if given.is_some() {
        return given;
    }
    if std::env::var_os(ORT_DYLIB_ENV).is_some_and(|v| !v.is_empty()) {
        return None;
    }
    installed_package(py)
}

/// The folder of the `onnxruntime` package the running interpreter would import, when it
/// has one with a `capi` folder.
fn installed_package(py: Python<'_>) -> Option<PathBuf> {
    let spec = py
        .import("importlib.util")
        .and_then(|util| util.call_method1("find_spec", ("onnxruntime",)))
        .ok()?;
    if spec.is_none() {
        return None;
    }
    let folder: PathBuf = spec
        .getattr("submodule_search_locations")
        .and_then(|locations| locations.get_item(0))
        .and_then(|first| first.extract())
        .ok()?;
    folder.join("capi").is_dir().then_some(folder)
}
