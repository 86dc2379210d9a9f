//! Choosing the compute device from `--device cpu|cuda[:N]|auto`.

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
