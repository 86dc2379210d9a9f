//! Helpers shared by the end-to-end tests: the shared data, ONNX Runtime, the binaries.
// Each test binary uses its own subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The shared sample, or `None` with a notice; under `CI=true` its absence fails.
pub fn sample_dir() -> Option<PathBuf> {
    shared_data("HANDS_SAMPLE", "hands-11k-sample", "11K Hands sample")
}

/// A folder of `../shared/data` (or `$env`) holding a `HandInfo.csv`, or `None` with a
/// notice naming `what`; under `CI=true` its absence fails.
pub fn shared_data(env: &str, folder: &str, what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data")
            .join(folder)
    });
    if dir.join("HandInfo.csv").is_file() {
        return Some(dir);
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "{what} not found at {} (CI=true)",
        dir.display()
    );
    eprintln!("SKIPPED: {what} not found at {}", dir.display());
    None
}

/// Whether ONNX Runtime can be found; under `CI=true` its absence fails.
pub fn have_onnx_runtime() -> bool {
    match hands_infer::runtime::runtime(None) {
        Ok(_) => true,
        Err(e) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "ONNX Runtime is required under CI=true: {e}"
            );
            eprintln!("SKIPPED: {e}");
            false
        }
    }
}

/// A workspace binary, built by `cargo test --workspace` in this profile's folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo test --workspace` (or `cargo build --bins`) first",
        path.display()
    );
    path
}

/// Runs a workspace binary (without `$HANDS_MODEL`) and returns its stdout, failing with its
/// stderr when it fails.
pub fn run<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(name: &str, args: &[S]) -> String {
    let output = std::process::Command::new(binary(name))
        .args(args)
        .env_remove("HANDS_MODEL")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{name} {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
