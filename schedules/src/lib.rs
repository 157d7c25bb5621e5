//! Schedule spaces: per operator family × target class, the sketches with their free decisions,
//! the default schedule, and lowering a Trace to a Program (a LoopNest plus one-time prepacks).
//!
//! Owns: what a decision means and which values it may take. Must not know how code is
//! generated, timed, or searched.

pub mod depthwise_space;
mod epilogue;
mod flat;
mod gemm;
pub mod gemm_space;
mod gpu_gemm;
pub mod gpu_gemm_space;
mod padded;
pub mod pool_space;
pub mod space;

pub use depthwise_space::DepthwiseSpace;
pub use gemm_space::GemmSpace;
pub use gpu_gemm_space::{GpuGemmSpace, GpuResources};
pub use pool_space::PoolSpace;
pub use space::{ScheduleError, SpaceGenerator};

use autotune_ir::{Op, Target, Task};

/// The space for `task` on `target`.
pub fn space_for(task: &Task, target: &Target) -> Result<Box<dyn SpaceGenerator>, ScheduleError> {
    match (&task.op, target) {
        (Op::Conv2d(c), Target::Cpu(cpu)) if DepthwiseSpace::applies_to(c) => {
            Ok(Box::new(DepthwiseSpace::new(task, cpu)?))
        }
        (Op::Matmul(_) | Op::BatchMatmul(_) | Op::Conv2d(_), Target::Cpu(cpu)) => {
            Ok(Box::new(GemmSpace::new(task, cpu)?))
        }
        (Op::Pool2d(_), Target::Cpu(cpu)) => Ok(Box::new(PoolSpace::new(task, cpu)?)),
        (Op::Matmul(_) | Op::BatchMatmul(_), Target::Cuda(gpu)) => {
            Ok(Box::new(GpuGemmSpace::new(task, gpu)?))
        }
        // Conv and pooling have no GPU space yet: a typed refusal, which model tuning reports.
        (Op::Conv2d(_) | Op::Pool2d(_), Target::Cuda(gpu)) => {
            Err(ScheduleError::Unsupported { task: task.description(), target: gpu.name.clone() })
        }
    }
}
