//! The one error type of the crate.

use autotune_db::DbError;

/// Why [`tune`](crate::tune) could not go on. A bad candidate is never an error: it is recorded
/// as a trial with its status. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The tuning log failed; `operation` says what the loop was doing.
    #[error("cannot {operation}: {source}")]
    Db { operation: &'static str, source: DbError },

    /// The runner broke its contract of one outcome per candidate.
    #[error("the runner returned {got} outcomes for a batch of {expected} candidates; this is a bug in the runner")]
    RunnerContract { expected: usize, got: usize },

    /// A stored trace does not parse as a trace of this build.
    #[error("the tuning log holds trace {trace_key} that does not parse ({source}): the log is corrupt or was written by an incompatible autotune")]
    CorruptTrace { trace_key: String, source: serde_json::Error },

    /// The [`TuneConfig`](crate::TuneConfig) cannot be run.
    #[error("invalid tuning configuration: {reason}")]
    InvalidConfig { reason: String },
}

impl SearchError {
    pub(crate) fn db(operation: &'static str) -> impl FnOnce(DbError) -> SearchError {
        move |source| SearchError::Db { operation, source }
    }
}
