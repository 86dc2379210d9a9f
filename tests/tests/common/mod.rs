//! Helpers shared by the end-to-end tests: the shared sample, ONNX Runtime, the binaries.

use std::path::{Path, PathBuf};

/// The shared sample, or `None` with a notice; under `CI=true` its absence fails.
pub fn sample_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HANDS_SAMPLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/hands-11k-sample")
        });
    if dir.join("HandInfo.csv").is_file() {
        return Some(dir);
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "11K Hands sample not found at {} (CI=true)",
        dir.display()
    );
    eprintln!("SKIPPED: 11K Hands sample not found at {}", dir.display());
    None
}

/// Whether ONNX Runtime can be found; under `CI=true` its absence fails.
pub fn have_onnx_runtime() -> bool {
    match hands_export::runtime::locate_library(None) {
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
