//! The schedule-space interface every operator family × target class implements.

use autotune_ir::{Program, Task, Trace};
use rand::{Rng, RngCore};

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
    /// A child of two parents for evolutionary search: each decision taken from `a` or `b`
    /// (uniformly), then made valid. Crossing a trace with itself adapts it to this space (transfer
    /// uses that for the best traces of other shapes).
    ///
    /// The default crosses decisions by name when both parents have the same sketch, and returns a
    /// mutation of `a` when the child is not a point of the space. Spaces whose domains depend on
    /// earlier decisions should override it: decision-wise crossover, then their own repair.
    fn crossover(&self, a: &Trace, b: &Trace, rng: &mut dyn RngCore) -> Trace {
        let mut child = a.clone();
        if a.sketch == b.sketch {
            for decision in &mut child.decisions {
                if let Some(value) = b.get(&decision.name).filter(|_| rng.gen_bool(0.5)) {
                    decision.value = value;
                }
            }
        }
        if self.lower(&child).is_ok() {
            child
        } else {
            self.mutate(a, rng)
        }
    }
    /// The schedule a user gets without tuning.
    fn default_trace(&self) -> Trace;
    /// Lowers a point to the loop nest codegen compiles. Fails only on a trace that is not a
    /// point of this space.
    fn lower(&self, trace: &Trace) -> Result<Program, ScheduleError>;
    /// Number of distinct points (saturating), for "space exhausted" decisions.
    fn size(&self) -> u64;

    /// The program of the default schedule (what runs when nothing was tuned).
    fn lower_default(&self) -> Program {
        // The default trace is a point of the space by construction.
        self.lower(&self.default_trace()).unwrap_or_else(|e| panic!("default schedule must lower: {e}"))
    }
}
