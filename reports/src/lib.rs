//! The morning-after report: a tuning log → one self-contained HTML file.
//!
//! Owns: reading a tuning log into the figures a performance engineer looks at after a night of
//! tuning ([`collect`] → [`Report`], plain data), and drawing them ([`render_html`]): a summary of
//! the machine and the sessions, the per-task table, convergence and roofline charts (plotters
//! SVG, inlined), failures, and each task's best schedule. The page needs nothing but itself: no
//! network, no external scripts or fonts; a few lines of inline script sort the table.
//!
//! Must not know: code generation or search (reports builds light: ir, db and schedules only).
//! It only reads the log, never writes it, so it works on a log a tuning run is still writing.
//!
//! Invariant: every figure in the report is computed from the tuning log (plus this build's
//! schedule spaces, to name the default schedule and to read a trace as loops); what the log does
//! not hold is said to be missing, never estimated. The one exception is a [`ModelProfile`], which
//! `autotune run --report` measures and hands in ([`Report::model_profile`]); the page says so.

mod charts;
mod error;
mod format;
mod html;
mod model;
mod queries;
mod schedule_text;
#[cfg(test)]
mod test_log;
mod timeline;

pub use error::ReportError;
pub use html::render_html;
pub use model::{
    BestTrial, DefaultBaseline, EndToEndLatency, FirstError, LatencyComparison, Measured, ModelProfile,
    ModelWeights, ProfiledWork, Report, SessionSummary, TargetSummary, TaskSummary, Totals, TrialPoint,
};
pub use queries::{collect, OP_TASK_WEIGHT};
pub use schedule_text::ScheduleText;

use std::collections::HashMap;

use autotune_db::Database;

/// The report of the tuning log `db` as one HTML page; `source` is how the page names the log
/// (its file name). With a `model` (its name, and its calls per run of each task key), the tasks
/// weigh those calls ([`Report::weigh_by_model`]); with a `profile`, the page opens with it.
pub fn render(
    db: &Database,
    source: &str,
    model: Option<(&str, &HashMap<String, f64>)>,
    profile: Option<ModelProfile>,
) -> Result<String, ReportError> {
    let mut report = collect(db, source)?;
    if let Some((name, calls_per_run)) = model {
        report.weigh_by_model(name, calls_per_run);
    }
    report.model_profile = profile;
    render_html(&report)
}
