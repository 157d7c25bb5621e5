//! The one error type of the crate.

use autotune_db::DbError;

/// Why a report could not be made. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the tuning log failed.
    #[error(transparent)]
    Db(#[from] DbError),

    /// plotters could not draw a chart (it only writes to a string, so this is a bug).
    #[error("cannot draw the {chart} chart: {reason}")]
    Chart { chart: String, reason: String },
}
