//! Measurement: turns candidates (Traces) into verified timings on the real device.
//!
//! Owns the timing protocol (warm-up, repeats until a minimum total time, every repeat kept;
//! median and min), the correctness check against `autotune_ir::reference` on seeded inputs with
//! a named tolerance, per-candidate timeouts, and worker-process isolation. Builds run in parallel
//! (rayon); measurements run one at a time. CUDA targets' candidates are measured the same way
//! on a [`autotune_codegen::GpuDevice`] ([`gpu`]: events for timing, an optional L2 flush), in
//! the same worker process. Also probes the machine's ceilings (fp32 FMA peak, memory bandwidth)
//! that reports compare kernels with ([`machine`]).
//!
//! Must not know: search strategies, the tuning log. Invariant: a candidate whose output differs
//! from the reference is `wrong_result` and carries no time, so it can never become a winner.

mod cache;
pub mod gpu;
pub mod local;
pub mod machine;
pub mod outcome;
pub mod planted;
pub mod protocol;
pub mod worker;

pub use gpu::{open_gpu_device, GpuBackend, GpuLocalRunner, GpuOutcome};
pub use local::LocalRunner;
pub use machine::{probe_bandwidth_gbs, probe_peak_gflops, MachineProbeConfig, ProbeResult};
pub use outcome::{MeasureOutcome, Runner};
pub use protocol::{check_and_time, MeasureConfig, ReferenceData};
pub use worker::{serve_stdio, WorkerConfig, WorkerRunner};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeasureError {
    #[error("cannot set up measurement: {0}")]
    Setup(String),
    #[error("measurement worker failed: {0}")]
    Worker(String),
}

#[cfg(test)]
mod gpu_semantics_tests;
#[cfg(test)]
mod gpu_tests;
#[cfg(test)]
mod tests;
