//! Finding and loading ONNX Runtime (the shared library is loaded at run time through
//! `ort`'s `load-dynamic`, never linked).
//!
//! The library is looked for, in order: the path given by the caller (`--ort-lib`), the
//! `ORT_DYLIB_PATH` environment variable, `.tools/onnxruntime` in the workspace (filled by
//! `pip install --target .tools/onnxruntime onnxruntime==1.31.1`, see `scripts/setup-ort`),
//! searched from the current directory upwards and from this crate's workspace, and the
//! `onnxruntime` package of `python3`. In each place a directory is searched for
//! `onnxruntime/capi/libonnxruntime.so*` (or `.dylib` / `.dll`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use crate::{Error, Result};

/// Environment variable naming the ONNX Runtime shared library.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// Finds the ONNX Runtime shared library, see the module docs for the order.
pub fn locate_library(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return library_in(path).ok_or_else(|| {
            Error::Runtime(format!(
                "{}: no ONNX Runtime library there (expected a libonnxruntime.so* file or a \
                 folder holding onnxruntime/capi/libonnxruntime.so*)",
                path.display()
            ))
        });
    }
    if let Some(path) = std::env::var_os(ORT_DYLIB_ENV) {
        let path = PathBuf::from(path);
        return library_in(&path).ok_or_else(|| {
            Error::Runtime(format!(
                "{ORT_DYLIB_ENV}={} does not name an ONNX Runtime library",
                path.display()
            ))
        });
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    roots.extend(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(Path::to_path_buf),
    );
    for root in roots {
        if let Some(lib) = library_in(&root.join(".tools").join("onnxruntime")) {
            return Ok(lib);
        }
    }
    if let Some(lib) = python_package_library() {
        return Ok(lib);
    }
    Err(Error::Runtime(format!(
        "no ONNX Runtime library found: pass --ort-lib PATH, set {ORT_DYLIB_ENV}, run \
         scripts/setup-ort (installs the PyPI wheel onnxruntime==1.31.1 into .tools/onnxruntime) \
         or `pip install onnxruntime`"
    )))
}

/// The library at `path`: the file itself, or one found under the folder `path` (either
/// `capi/` of an `onnxruntime` package, or `onnxruntime/capi/` of a `pip --target` folder).
fn library_in(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    if !path.is_dir() {
        return None;
    }
    for dir in [
        path.to_path_buf(),
        path.join("capi"),
        path.join("onnxruntime").join("capi"),
        path.join("lib"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_library_name)
            })
            .collect();
        found.sort();
        if let Some(lib) = found.pop() {
            return Some(lib);
        }
    }
    None
}

fn is_library_name(name: &str) -> bool {
    name.starts_with("libonnxruntime.so")
        || name == "libonnxruntime.dylib"
        || (name.starts_with("libonnxruntime.") && name.ends_with(".dylib"))
        || name == "onnxruntime.dll"
}

fn python_package_library() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, onnxruntime; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?;
    library_in(Path::new(dir.trim()))
}

static ENVIRONMENT: OnceLock<(Environment, PathBuf)> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime and returns its environment and the library's path. ONNX Runtime
/// allows one library and one environment per process: the first successful load is kept and
/// later calls return it, whatever `explicit` they pass. A failed load is not remembered.
pub fn environment(explicit: Option<&Path>) -> Result<(Environment, PathBuf)> {
    if let Some(loaded) = ENVIRONMENT.get() {
        return Ok(loaded.clone());
    }
    let _loading = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(loaded) = ENVIRONMENT.get() {
        return Ok(loaded.clone());
    }
    let lib = locate_library(explicit)?;
    let builder = ort::init_from(&lib)
        .map_err(|e| Error::Runtime(format!("cannot load {}: {e}", lib.display())))?;
    let env = builder.with_name("hands-export").build().map_err(|e| {
        Error::Runtime(format!(
            "cannot create an environment from {}: {e}",
            lib.display()
        ))
    })?;
    Ok(ENVIRONMENT.get_or_init(|| (env, lib)).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_without_library_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate_library(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn pip_target_layout_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let capi = dir.path().join("onnxruntime").join("capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        std::fs::write(capi.join("libonnxruntime_providers_shared.so"), b"").unwrap();
        let lib = locate_library(Some(dir.path())).unwrap();
        assert_eq!(lib, capi.join("libonnxruntime.so.1.31.1"));
    }
}
