//! The default schedule as the baseline: measured once per workload and target, so that a report
//! can say how much faster tuning made a kernel than what a user gets without it.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;

use autotune_db::Database;
use autotune_ir::{Task, Trace};
use autotune_measure::{MeasureOutcome, Runner};
use autotune_schedules::SpaceGenerator;

use crate::error::SearchError;
use crate::strategy::SearchStrategy;
use crate::tune::{tune, TuneConfig, TuneSummary};

/// The strategy name stored with the default schedule's trial and its session.
pub const DEFAULT_SCHEDULE_STRATEGY: &str = "default";

/// Measures `space.default_trace()` in a one-trial session of its own (strategy
/// [`DEFAULT_SCHEDULE_STRATEGY`]), unless the log already holds it for this task, target, space
/// version and `config.codegen_version`. Returns that session's summary, or `None` when there was
/// nothing to measure. `config.n_trials` and `config.batch_size` are ignored; the rest (command,
/// seed, versions) is stored as for any session.
///
/// A session of its own rather than a trial slipped into the search's first batch: every trial is
/// stored with the strategy that proposed it, and the search did not propose this one.
pub fn measure_default_schedule(
    task: &Task,
    space: &dyn SpaceGenerator,
    runner: &mut dyn Runner,
    db: &mut Database,
    config: &TuneConfig,
    cancel: &AtomicBool,
) -> Result<Option<TuneSummary>, SearchError> {
    let default_trace = space.default_trace();
    let default_key = default_trace.key();
    let target_key = runner.target().key();
    let measured = db
        .trials(&task.key().0, &target_key)
        .map_err(SearchError::db("look for the default schedule in the log"))?
        .iter()
        .any(|trial| {
            trial.trace_key == default_key && trial.is_comparable(space.version(), &config.codegen_version)
        });
    if measured {
        return Ok(None);
    }
    // One trial, measured once: the confirmation rounds belong to the tuning session after it.
    let config = TuneConfig { n_trials: 1, batch_size: 1, confirm_rounds: 0, ..config.clone() };
    let mut strategy = DefaultSchedule { trace: Some(default_trace) };
    tune(task, space, &mut strategy, runner, db, &config, cancel, &mut |_| {}).map(Some)
}

/// Proposes the default schedule once.
struct DefaultSchedule {
    /// `None` once proposed.
    trace: Option<Trace>,
}

impl SearchStrategy for DefaultSchedule {
    fn name(&self) -> &'static str {
        DEFAULT_SCHEDULE_STRATEGY
    }

    fn propose(&mut self, n: usize, already_measured: &HashSet<String>) -> Vec<Trace> {
        match self.trace.take() {
            Some(trace) if n > 0 && !already_measured.contains(&trace.key()) => vec![trace],
            _ => Vec::new(),
        }
    }

    fn observe(&mut self, _results: &[(Trace, MeasureOutcome)]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{RandomSearch, RandomSearchConfig};
    use crate::testing::{FakeRunner, FakeSpace};

    fn config() -> TuneConfig {
        TuneConfig { command: "autotune op --test".to_string(), ..TuneConfig::new(8, 3, "fake-codegen-1") }
    }

    #[test]
    fn the_default_is_measured_once_in_its_own_session_and_never_again() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let space = FakeSpace::new();
        let cancel = AtomicBool::new(false);

        let first = measure_default_schedule(space.task(), &space, &mut runner, &mut db, &config(), &cancel)
            .expect("baseline")
            .expect("the default was not measured yet");
        assert_eq!(first.trials.len(), 1);
        assert_eq!(first.trials[0].trace, space.default_trace());
        assert_eq!(runner.measured, vec![space.default_trace()]);

        let stored = db.session_trials(first.session).expect("trials");
        assert_eq!(stored.len(), 1);
        assert_eq!(
            (stored[0].strategy.as_str(), &stored[0].trace_key),
            ("default", &space.default_trace().key())
        );
        let sessions = db.sessions().expect("sessions");
        assert_eq!((sessions.len(), sessions[0].strategy.as_str()), (1, "default"));
        assert!(sessions[0].ended_at.is_some());

        let again = measure_default_schedule(space.task(), &space, &mut runner, &mut db, &config(), &cancel)
            .expect("baseline again");
        assert!(again.is_none(), "measured already");
        assert_eq!(db.sessions().expect("sessions").len(), 1, "no empty session");

        // The search that follows never measures it again.
        let mut strategy = RandomSearch::new(&space, RandomSearchConfig::new(3));
        let n_points = space.size() as usize;
        let search = TuneConfig { n_trials: n_points, ..config() };
        let summary =
            tune(space.task(), &space, &mut strategy, &mut runner, &mut db, &search, &cancel, &mut |_| {})
                .expect("tune");
        assert_eq!(summary.trials.len(), n_points - 1);
        assert!(summary.trials.iter().all(|report| report.trace != space.default_trace()));
    }

    #[test]
    fn another_codegen_version_measures_the_default_again() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let space = FakeSpace::new();
        let cancel = AtomicBool::new(false);
        measure_default_schedule(space.task(), &space, &mut runner, &mut db, &config(), &cancel)
            .expect("first");
        let newer = TuneConfig { codegen_version: "fake-codegen-2".to_string(), ..config() };
        let second = measure_default_schedule(space.task(), &space, &mut runner, &mut db, &newer, &cancel)
            .expect("second");
        assert!(second.is_some_and(|summary| summary.trials.len() == 1));
    }
}
