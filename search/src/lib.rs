//! (crate filled in by its issue)
pub mod data;
