//! Schedule spaces: per operator family × target class, the sketches with their free decisions,
//! the default schedule, and lowering a Trace to a LoopNest.
//!
//! Owns: what a decision means and which values it may take. Must not know how code is
//! generated, timed, or searched.

pub mod matmul_cpu;
pub mod space;

pub use matmul_cpu::MatmulCpuSpace;
pub use space::{ScheduleError, SpaceGenerator};

use autotune_ir::{Op, Target, Task};

/// The space for `task` on `target`.
pub fn space_for(task: &Task, target: &Target) -> Result<Box<dyn SpaceGenerator>, ScheduleError> {
    match (&task.op, target) {
        (Op::Matmul(_), Target::Cpu(cpu)) => {
            Ok(Box::new(MatmulCpuSpace::new(task, cpu.vector_lanes, cpu.threads)?))
        }
    }
}
