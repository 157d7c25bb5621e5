//! The CUDA backend: LoopNest → CUDA C ([`emit_cuda`]) → PTX by NVRTC ([`compile_ptx`], batches
//! in parallel), checked offline by ptxas ([`ptxas_usage`]), and the devices of this machine
//! ([`cuda_devices`]). Everything CUDA is loaded at run time (cudarc's dynamic loading), so this
//! builds and runs where CUDA is absent and says so instead of panicking.

mod device;
mod emit;
mod nvrtc;
mod ptxas;
mod runtime;

pub use device::{cuda_target, driver_available};
pub use emit::{emit_cuda, CudaSource};
pub use nvrtc::{compile_ptx, compile_ptx_batch, nvrtc_available, CudaPtx};
pub use ptxas::{find_ptxas, ptxas_usage, PtxasUsage};
pub use runtime::CudaDevice;

/// Stored with every GPU trial: changes whenever the CUDA C emitted for a nest changes.
pub const CUDA_CODEGEN_VERSION: &str = "cuda-nvrtc12-v1";
