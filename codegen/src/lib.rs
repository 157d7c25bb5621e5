//! Code generation: LoopNest → LLVM IR (inkwell) → machine code JIT-compiled for the host CPU.
//!
//! Owns: lowering of every [`autotune_ir::LoopKind`] (serial, unrolled, vectorized across SIMD
//! lanes, parallel on the host's thread pool), the JIT ([`CpuBuilder`] → [`CpuKernel`]), the host
//! runtime JIT'd code calls back into ([`HostRuntime`]: thread pool, scratch allocation), and the
//! [`CODEGEN_VERSION`] stored with every trial, and the cache-line aligned operand storage kernels are
//! handed ([`OperandBuffer`]).
//!
//! Must not know: search, the tuning log, how kernels are timed. Invariant: every function the
//! JIT compiles carries the host's `target-cpu`/`target-features` (MCJIT otherwise emits generic
//! SSE2 code); this crate is the only one with `unsafe` (JIT entry points, FFI callbacks).

mod buffer;
pub mod cuda;
mod gpu_device;
mod gpu_host;
mod jit;
mod lower;
mod runtime;

pub use buffer::OperandBuffer;
pub use gpu_device::{
    DeviceBuffer, DeviceError, DeviceEvent, DeviceSlice, GpuDevice, GpuKernel, HostGpuDevice, KernelHandle,
};
pub use gpu_host::gpu_nest_for_host;
pub use jit::{
    cpu_target_at, detect_host_caches, host_cpu_target, host_isa_levels, slow_isa_warning, CpuBuilder,
    CpuKernel, CpuProgram, CODEGEN_VERSION,
};
pub use runtime::HostRuntime;

/// The codegen version a trial of `target` is stored with: a trace replays only under it.
pub fn codegen_version(target: &autotune_ir::Target) -> &'static str {
    match target {
        autotune_ir::Target::Cpu(_) => CODEGEN_VERSION,
        autotune_ir::Target::Cuda(_) => cuda::CUDA_CODEGEN_VERSION,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodegenError {
    #[error("the loop nest cannot be compiled: {0}")]
    Unsupported(String),
    #[error("LLVM failed: {0}")]
    Llvm(String),
    /// CUDA (driver or NVRTC) is missing here; the text says what to install.
    #[error("{0}")]
    NoCuda(String),
    #[error("NVRTC failed to compile {0}")]
    Nvrtc(String),
    #[error("ptxas failed: {0}")]
    Ptxas(String),
    #[error("{0} is not a CPU: its kernels are built by the CUDA backend, not the LLVM JIT")]
    NotCpu(String),
    #[error("kernel called with buffers of lengths {got:?}, it expects {expected:?}")]
    BufferMismatch { expected: Vec<usize>, got: Vec<usize> },
}

#[cfg(test)]
mod tests;
