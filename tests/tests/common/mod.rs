//! Helpers shared by the end-to-end tests: the shared data, ONNX Runtime, the binaries.
// Each test binary uses its own subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

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
