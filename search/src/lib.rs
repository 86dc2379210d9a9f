//! (crate filled in by its issue)
pub mod data;
pub mod dot;
pub mod plot;
