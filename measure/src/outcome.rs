//! What measuring one candidate produces, and the runner interface the search loop drives.

use autotune_ir::{Target, Task, Trace, TrialStatus};
use serde::{Deserialize, Serialize};

/// The result of building, checking and timing one candidate. A bad candidate is data, not an
/// error: it comes back as a non-`Ok` status with the error text.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MeasureOutcome {
    pub status: TrialStatus,
    pub error: Option<String>,
    /// Every timed repeat, in seconds, in the order they ran. Empty unless `status` is `Ok`.
    pub repeat_times_s: Vec<f64>,
    pub build_time_s: f64,
}

impl MeasureOutcome {
    pub fn failed(status: TrialStatus, error: impl Into<String>, build_time_s: f64) -> Self {
        MeasureOutcome { status, error: Some(error.into()), repeat_times_s: Vec::new(), build_time_s }
    }

    /// Median of the repeat times (mean of the middle two for an even count); `None` unless ok.
    pub fn median_s(&self) -> Option<f64> {
        if !self.status.is_ok() {
            return None;
        }
        autotune_ir::stats::median(&self.repeat_times_s)
    }

    pub fn min_s(&self) -> Option<f64> {
        if !self.status.is_ok() {
            return None;
        }
        self.repeat_times_s.iter().copied().min_by(f64::total_cmp)
    }
}

/// Builds, checks and times batches of candidates on one target. Every input gets exactly one
/// outcome, in order; a crash or hang of one candidate never takes the batch (or the caller) down.
pub trait Runner {
    fn target(&self) -> &Target;
    fn measure_batch(&mut self, task: &Task, traces: &[Trace]) -> Vec<MeasureOutcome>;
}
