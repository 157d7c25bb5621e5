//! The ask/tell interface between the tune loop and a search strategy.

use std::collections::HashSet;

use autotune_ir::Trace;
use autotune_measure::MeasureOutcome;

/// Decides which points of a schedule space to measure next.
///
/// The tune loop asks for a batch with [`propose`](Self::propose), measures it, and tells the
/// strategy what happened with [`observe`](Self::observe). A strategy owns its randomness (seeded
/// through its config) and the schedule space it searches; it never measures anything itself.
pub trait SearchStrategy {
    /// Short stable name stored with every trial and session, e.g. `random`.
    fn name(&self) -> &'static str;

    /// Up to `n` traces, none of whose [`Trace::key`] is in `already_measured`, none proposed
    /// before by this strategy, and no two equal. Fewer than `n` (possibly none) means the strategy
    /// believes the space is exhausted.
    ///
    /// The tune loop drops any trace that breaks these rules rather than measuring it twice.
    fn propose(&mut self, n: usize, already_measured: &HashSet<String>) -> Vec<Trace>;

    /// Results of measured traces: every status, failures included (a failed candidate is
    /// information too). Only an `Ok` outcome carries a valid time.
    ///
    /// Called once per measured batch, and once at the start of a resumed session with the
    /// results of the earlier sessions.
    fn observe(&mut self, results: &[(Trace, MeasureOutcome)]);
}
