//! End-to-end tests of the three programs live in `tests/`; they run the binaries that
//! `cargo test --workspace` builds next to the test executables.
