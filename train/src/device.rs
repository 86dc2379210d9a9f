//! Opening the compute device named by `--device` ([`DeviceChoice`]) in candle, and the CPU
//! threads.

use anyhow::{bail, Result};
use candle_core::Device;
use hands_models::device::DeviceChoice;

/// Opens the device `choice` names in candle. `cuda` needs a build with the `cuda` feature
/// and a usable GPU; `auto` falls back to the CPU.
pub fn open_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(cuda(0).unwrap_or(Device::Cpu)),
        DeviceChoice::Cuda(ordinal) => cuda(ordinal),
    }
}

/// Uses `threads` CPU threads for candle's element-wise ops and the project's kernels (both
/// on candle's thread pool) and for matrix products and image decoding (rayon's global pool).
/// Call at start-up, before any tensor work.
pub fn set_cpu_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    // candle sizes its pool from this variable when the pool first starts; its matrix
    // products ask RAYON_NUM_THREADS on every call, and without it count the physical cores
    // by reading /proc/cpuinfo each time (6% of a small network's training step).
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    Ok(())
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal)
        .map_err(|e| anyhow::anyhow!("CUDA device {ordinal} is not usable: {e}"))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize) -> Result<Device> {
    bail!("this hands-search was built without CUDA: rebuild with `--features cuda`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_opens_and_cuda_needs_its_feature() {
        assert!(open_device(DeviceChoice::Cpu).unwrap().is_cpu());
        assert!(open_device(DeviceChoice::Auto).is_ok());
        #[cfg(not(feature = "cuda"))]
        assert!(open_device(DeviceChoice::Cuda(0))
            .unwrap_err()
            .to_string()
            .contains("--features cuda"));
    }
}
