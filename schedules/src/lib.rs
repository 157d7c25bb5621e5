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
mod gpu_conv_space;
mod gpu_depthwise;
mod gpu_gemm;
mod gpu_gemm_space;
mod gpu_pool;
mod gpu_space;
mod padded;
pub mod pool_space;
pub mod space;

pub use depthwise_space::DepthwiseSpace;
pub use gemm_space::GemmSpace;
pub use gpu_conv_space::GpuConvSpace;
pub use gpu_depthwise::GpuDepthwiseSpace;
pub use gpu_gemm_space::GpuGemmSpace;
pub use gpu_pool::GpuPoolSpace;
pub use gpu_space::{GpuResources, GpuSpace, GpuSpaceGenerator};
pub use pool_space::PoolSpace;
pub use space::{ScheduleError, SpaceGenerator};

use autotune_ir::{CudaTarget, Op, Target, Task};

/// The space for `task` on `target`.
pub fn space_for(task: &Task, target: &Target) -> Result<Box<dyn SpaceGenerator>, ScheduleError> {
    match (&task.op, target) {
        (Op::Conv2d(c), Target::Cpu(cpu)) if DepthwiseSpace::applies_to(c) && task.layout.is_plain() => {
            Ok(Box::new(DepthwiseSpace::new(task, cpu)?))
        }
        (Op::Matmul(_) | Op::BatchMatmul(_) | Op::Conv2d(_), Target::Cpu(cpu)) => {
            Ok(Box::new(GemmSpace::new(task, cpu)?))
        }
        (Op::Pool2d(_), Target::Cpu(cpu)) => Ok(Box::new(PoolSpace::new(task, cpu)?)),
        (_, Target::Cuda(gpu)) => Ok(gpu_space_for(task, gpu)?),
    }
}

/// The space for `task` on a CUDA GPU, with the verifier's figures for its points.
pub fn gpu_space_for(task: &Task, gpu: &CudaTarget) -> Result<Box<dyn GpuSpaceGenerator>, ScheduleError> {
    if !task.layout.is_plain() {
        return Err(ScheduleError::Unsupported { task: task.description(), target: "cuda".into() });
    }
    match &task.op {
        Op::Matmul(_) | Op::BatchMatmul(_) => Ok(Box::new(GpuGemmSpace::new(task, gpu)?)),
        Op::Conv2d(c) if DepthwiseSpace::applies_to(c) => Ok(Box::new(GpuDepthwiseSpace::new(task, gpu)?)),
        Op::Conv2d(_) => Ok(Box::new(GpuConvSpace::new(task, gpu)?)),
        Op::Pool2d(_) => Ok(Box::new(GpuPoolSpace::new(task, gpu)?)),
    }
}
