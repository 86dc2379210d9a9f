//! Choosing where the network runs: the device a caller names ([`DeviceChoice`], shared with
//! hands-search) mapped onto ONNX Runtime's CPU or CUDA execution provider.

use std::fmt;

use hands_models::device::DeviceChoice;
use ort::session::builder::SessionBuilder;

use crate::Error;

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
    device: DeviceChoice,
    builder: &mut SessionBuilder,
) -> Result<ExecutionProvider, Error> {
    match device {
        DeviceChoice::Cpu => Ok(ExecutionProvider::Cpu),
        DeviceChoice::Cuda(ordinal) => {
            register_cuda(builder, ordinal).map(|()| ExecutionProvider::Cuda)
        }
        DeviceChoice::Auto => {
            if !cfg!(feature = "cuda") {
                return Ok(ExecutionProvider::Cpu);
            }
            match register_cuda(builder, 0) {
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
fn register_cuda(builder: &mut SessionBuilder, ordinal: usize) -> Result<(), Error> {
    use ort::ep::ExecutionProvider as _;
    let device_id = i32::try_from(ordinal)
        .map_err(|_| Error::Device(format!("CUDA device {ordinal} is out of range")))?;
    let cuda = ort::ep::CUDA::default().with_device_id(device_id);
    if !ort::ep::CUDA::is_available().unwrap_or(false) {
        return Err(Error::Device(
            "the loaded ONNX Runtime has no CUDA execution provider (install onnxruntime-gpu and point --ort-lib at its libonnxruntime.so)".into(),
        ));
    }
    cuda.register(builder).map_err(|e| {
        Error::Device(format!(
            "cannot register the CUDA execution provider on device {ordinal}: {e} (CUDA 13 and cuDNN 9 libraries must be on the library path)"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn register_cuda(_builder: &mut SessionBuilder, _ordinal: usize) -> Result<(), Error> {
    Err(Error::Device(
        "this build has no CUDA support: rebuild with `cargo build --release -p hands-infer --features cuda`".into(),
    ))
}
