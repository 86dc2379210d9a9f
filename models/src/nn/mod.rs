//! Candle building blocks shared by the search supernet and the discrete network.

pub mod affine_norm;
pub mod functional;
pub mod init;
pub mod kernels;
pub mod layers;
pub mod mixture;
pub mod model_file;
pub mod network;
pub mod node_sum;
pub mod parallel;
pub mod pointwise;
pub mod precise_bn;
pub mod sums;
#[cfg(test)]
mod testing;
