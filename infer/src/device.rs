//! Choosing where the network runs: ONNX Runtime's CPU or CUDA execution provider.

use std::fmt;
use std::str::FromStr;

use ort::session::builder::SessionBuilder;

use crate::Error;

/// The device a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    Cpu,
    /// The CUDA execution provider; opening fails when it cannot be registered.
    Cuda,
    /// CUDA when this build has the `cuda` feature and the provider registers, otherwise the
    /// CPU (with a warning when CUDA was possible but failed).
    #[default]
    Auto,
}

impl FromStr for Device {
    type Err = Error;

    fn from_str(s: &str) -> Result<Device, Error> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            other => Err(Error::Usage(format!(
                "unknown device `{other}` (expected cpu, cuda or auto)"
            ))),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        })
    }
}

/// The execution provider a session actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionProvider {
    /// `CPUExecutionProvider`.
    Cpu,
    /// `CUDAExecutionProvider`.
    Cuda,
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecutionProvider::Cpu => "CPUExecutionProvider",
            ExecutionProvider::Cuda => "CUDAExecutionProvider",
        })
    }
}

/// Registers the provider for `device` on `builder` and says which one the session will use.
pub(crate) fn register(
    device: Device,
    builder: &mut SessionBuilder,
) -> Result<ExecutionProvider, Error> {
    match device {
        Device::Cpu => Ok(ExecutionProvider::Cpu),
        Device::Cuda => register_cuda(builder).map(|()| ExecutionProvider::Cuda),
        Device::Auto => {
            if !cfg!(feature = "cuda") {
                return Ok(ExecutionProvider::Cpu);
            }
            match register_cuda(builder) {
                Ok(()) => Ok(ExecutionProvider::Cuda),
                Err(e) => {
                    tracing::warn!("{e}; running on the CPU");
                    Ok(ExecutionProvider::Cpu)
                }
            }
        }
    }
}

#[cfg(feature = "cuda")]
fn register_cuda(builder: &mut SessionBuilder) -> Result<(), Error> {
    use ort::ep::ExecutionProvider as _;
    let cuda = ort::ep::CUDA::default();
    if !ort::ep::CUDA::is_available().unwrap_or(false) {
        return Err(Error::Device(
            "the loaded ONNX Runtime has no CUDA execution provider (install onnxruntime-gpu and point --ort-lib at its libonnxruntime.so)".into(),
        ));
    }
    cuda.register(builder).map_err(|e| {
        Error::Device(format!(
            "cannot register the CUDA execution provider: {e} (CUDA 13 and cuDNN 9 libraries must be on the library path)"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn register_cuda(_builder: &mut SessionBuilder) -> Result<(), Error> {
    Err(Error::Device(
        "this build has no CUDA support: rebuild with `cargo build --release -p hands-infer --features cuda`".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("CPU".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda);
        assert_eq!("auto".parse::<Device>().unwrap(), Device::Auto);
        assert!("tpu"
            .parse::<Device>()
            .unwrap_err()
            .to_string()
            .contains("tpu"));
    }
}
