//! Choosing the compute device from `--device cpu|cuda[:N]|auto`, and the CPU threads.

use anyhow::{bail, Result};
use candle_core::Device;

/// Parses a device name. `cuda` needs a build with the `cuda` feature and a usable GPU;
/// `auto` takes CUDA device 0 when both hold and the CPU otherwise.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(cuda(0).unwrap_or(Device::Cpu)),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => match rest.strip_prefix(':').map(str::parse::<usize>) {
                    Some(Ok(n)) => n,
                    _ => bail!("unknown device `{name}`: use cpu, cuda, cuda:N or auto"),
                },
                None => bail!("unknown device `{name}`: use cpu, cuda, cuda:N or auto"),
            };
            cuda(ordinal)
        }
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
    fn names_parse_and_bad_names_are_refused() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("auto").is_ok());
        assert!(parse_device("tpu").unwrap_err().to_string().contains("tpu"));
        assert!(parse_device("cuda:x").is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda:0")
            .unwrap_err()
            .to_string()
            .contains("--features cuda"));
    }
}
