//! Choosing the compute device from `--device cpu|cuda[:N]|auto`, and the CPU threads.

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};

/// The compute device asked for: `cpu`, `cuda`, `cuda:N` or `auto`. It parses (and is
/// stored in run configurations) as that name; [`DeviceChoice::open`] makes the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    /// The CPU.
    #[default]
    Cpu,
    /// CUDA device N (a build with the `cuda` feature).
    Cuda(usize),
    /// CUDA device 0 when this build and the machine have it, the CPU otherwise.
    Auto,
}

impl DeviceChoice {
    /// Opens the device. `cuda` needs a build with the `cuda` feature and a usable GPU.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(cuda(0).unwrap_or(Device::Cpu)),
            DeviceChoice::Cuda(ordinal) => cuda(ordinal),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> Result<Self> {
        let unknown = || anyhow!("unknown device `{name}`: use cpu, cuda, cuda:N or auto");
        match name {
            "cpu" => Ok(DeviceChoice::Cpu),
            "auto" => Ok(DeviceChoice::Auto),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => {
                let ordinal = name.strip_prefix("cuda:").ok_or_else(unknown)?;
                Ok(DeviceChoice::Cuda(ordinal.parse().map_err(|_| unknown())?))
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = anyhow::Error;

    fn try_from(name: String) -> Result<Self> {
        name.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(choice: DeviceChoice) -> String {
        choice.to_string()
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
        let parse = |name: &str| name.parse::<DeviceChoice>();
        assert_eq!(parse("cpu").unwrap(), DeviceChoice::Cpu);
        assert_eq!(parse("cuda").unwrap(), DeviceChoice::Cuda(0));
        assert_eq!(parse("cuda:3").unwrap(), DeviceChoice::Cuda(3));
        assert_eq!(parse("auto").unwrap(), DeviceChoice::Auto);
        assert!(parse("tpu").unwrap_err().to_string().contains("tpu"));
        assert!(parse("cuda:x").is_err());
        assert!(parse("cuda3").is_err());
        assert!(DeviceChoice::Cpu.open().unwrap().is_cpu());
        assert!(DeviceChoice::Auto.open().is_ok());
        #[cfg(not(feature = "cuda"))]
        assert!(DeviceChoice::Cuda(0)
            .open()
            .unwrap_err()
            .to_string()
            .contains("--features cuda"));
    }

    #[test]
    fn a_choice_is_stored_as_its_name() {
        for choice in [DeviceChoice::Cpu, DeviceChoice::Cuda(1), DeviceChoice::Auto] {
            let json = serde_json::to_string(&choice).unwrap();
            assert_eq!(json, format!("\"{choice}\""));
            assert_eq!(serde_json::from_str::<DeviceChoice>(&json).unwrap(), choice);
        }
        assert!(serde_json::from_str::<DeviceChoice>("\"gpu\"").is_err());
    }
}
