//! The schedule-space interface every operator family × target class implements.

use autotune_ir::{LoopNest, Task, Trace};
use rand::RngCore;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("no schedule space for {task} on {target}")]
    Unsupported { task: String, target: String },
    #[error("trace {trace} does not belong to sketch family {space}: {reason}")]
    InvalidTrace { trace: String, space: String, reason: String },
}

/// A schedule space: sketches with free decisions. Implementations are immutable; randomness is
/// passed in, so the same seed gives the same sequence.
pub trait SpaceGenerator: Send + Sync {
    /// Changes whenever the meaning of a Trace changes; stored with every trial so that a log
    /// written by an older space is not replayed as if it meant the same kernel.
    fn version(&self) -> &'static str;
    fn task(&self) -> &Task;
    /// A uniformly random valid point.
    fn sample(&self, rng: &mut dyn RngCore) -> Trace;
    /// A valid neighbour: one decision changed.
    fn mutate(&self, trace: &Trace, rng: &mut dyn RngCore) -> Trace;
    /// The schedule a user gets without tuning.
    fn default_trace(&self) -> Trace;
    /// Lowers a point to the loop nest codegen compiles. Fails only on a trace that is not a
    /// point of this space.
    fn lower(&self, trace: &Trace) -> Result<LoopNest, ScheduleError>;
    /// Number of distinct points (saturating), for "space exhausted" decisions.
    fn size(&self) -> u64;

    /// The loop nest of the default schedule (what runs when nothing was tuned).
    fn lower_default(&self) -> LoopNest {
        // The default trace is a point of the space by construction.
        self.lower(&self.default_trace()).unwrap_or_else(|e| panic!("default schedule must lower: {e}"))
    }
}
