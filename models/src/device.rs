//! The compute device a user names (`--device cpu|cuda[:N]|auto`), parsed and printed the same
//! way by the three programs: hands-search opens it in candle, hands-infer and hands-export
//! map it onto an ONNX Runtime execution provider.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The compute device asked for: `cpu`, `cuda` (device 0), `cuda:N` or `auto` (CUDA device 0
/// when the build and the machine have it, else the CPU), in any case. It is stored (in run
/// configurations) as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    /// The CPU, which every build has.
    #[default]
    Cpu,
    /// CUDA device N (a build with the `cuda` feature).
    Cuda(usize),
    /// CUDA device 0 when this build and the machine have it, the CPU otherwise.
    Auto,
}

/// A device name that is none of `cpu`, `cuda`, `cuda:N` and `auto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device `{0}`: use cpu, cuda, cuda:N or auto")]
pub struct UnknownDevice(pub String);

impl FromStr for DeviceChoice {
    type Err = UnknownDevice;

    fn from_str(name: &str) -> Result<DeviceChoice, UnknownDevice> {
        let unknown = || UnknownDevice(name.to_string());
        match name.to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "auto" => Ok(DeviceChoice::Auto),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            lower => {
                let ordinal = lower.strip_prefix("cuda:").ok_or_else(unknown)?;
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
    type Error = UnknownDevice;

    fn try_from(name: String) -> Result<DeviceChoice, UnknownDevice> {
        name.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(choice: DeviceChoice) -> String {
        choice.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_print_and_round_trip() {
        for (name, device) in [
            ("cpu", DeviceChoice::Cpu),
            ("CPU", DeviceChoice::Cpu),
            ("auto", DeviceChoice::Auto),
            ("cuda", DeviceChoice::Cuda(0)),
            ("CUDA:1", DeviceChoice::Cuda(1)),
            ("cuda:3", DeviceChoice::Cuda(3)),
        ] {
            assert_eq!(name.parse::<DeviceChoice>().unwrap(), device, "{name}");
            assert_eq!(device.to_string().parse::<DeviceChoice>().unwrap(), device);
        }
        for bad in ["tpu", "gpu", "cuda:", "cuda:x", "cuda3", ""] {
            let err = bad.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
        let stored = serde_json::to_string(&DeviceChoice::Cuda(1)).unwrap();
        assert_eq!(stored, "\"cuda:1\"");
        assert!(serde_json::from_str::<DeviceChoice>("\"gpu\"").is_err());
    }
}
