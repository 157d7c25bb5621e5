//! Tuning a whole model: many tasks, one log, one runner, one time budget.
//!
//! Every task first gets its default schedule measured (what the model runs untuned, and the
//! baseline a report compares with), then batches go where the [`TaskScheduler`] expects the
//! largest drop of the model's weighted latency. Each task keeps one open session and one
//! strategy for the whole run; a task's strategy is made at its first batch, so it can warm-start
//! from what the tasks before it already put in the log.
//!
//! Stopping: a per-task trial cap (counted over the whole log, so a resumed run tops up to it
//! instead of starting over), a wall-clock deadline (batches shrink near it so the run ends on
//! time), cancellation between batches (the batch in flight is committed first), or every task's
//! space exhausted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use autotune_db::Database;
use autotune_ir::{Target, Task};
use autotune_measure::Runner;
use autotune_schedules::SpaceGenerator;

use crate::baseline::measure_default_schedule;
use crate::error::SearchError;
use crate::strategy::SearchStrategy;
use crate::task_scheduler::{TaskScheduler, TaskSchedulerConfig};
use crate::tune::{best_in_log, BestKernel, StopReason, TaskTuner, TuneConfig};

/// Assumed wall time of one trial before any has been measured in this run.
const FIRST_TRIAL_ESTIMATE_S: f64 = 1.0;

/// One task of the model.
pub struct ModelTask<'a> {
    pub task: Task,
    /// How often the model runs it.
    pub weight: f64,
    pub space: &'a dyn SpaceGenerator,
}

/// Under a deadline, the share of the time left at the start that is kept for confirming the
/// leaders at the end ([`crate::tune::TaskTuner::confirm_leaders`]): a run that spends it all on
/// trials hands over winners timed in one window, some of them lucky ones.
const CONFIRM_SHARE_OF_DEADLINE: f64 = 0.15;

/// Settings of [`tune_model`].
#[derive(Clone, Debug)]
pub struct ModelTuneConfig {
    /// Stop giving a task batches once the log holds this many of its measured schedules (every
    /// session, the default schedule included). `None`: no cap.
    pub trials_per_task: Option<usize>,
    /// Start no batch that is not expected to finish by then; with confirmation on, the trials
    /// end early enough to confirm the leaders by then too. `None`: no deadline.
    pub deadline: Option<Instant>,
    /// Seed, versions, batch size and command line of every session (`n_trials` is unused).
    pub tune: TuneConfig,
    /// Which task gets the next batch.
    pub scheduler: TaskSchedulerConfig,
}

/// Why [`tune_model`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelStopReason {
    /// Every task reached its trial cap.
    TrialsDone,
    /// The deadline left no time for another batch.
    Deadline,
    /// The cancel flag was set; the batch in flight was committed first.
    Cancelled,
    /// No task has an unmeasured schedule left.
    SpacesExhausted,
}

/// What happened, reported to the caller's callback.
#[derive(Debug)]
pub enum ModelEvent<'a> {
    /// Measuring the default schedule of `task_idx` (once per task and log).
    MeasuringDefault { task_idx: usize, task: &'a Task },
    /// A batch of `n` trials of `task_idx` starts.
    BatchStarted { task_idx: usize, task: &'a Task, n: usize },
    /// A batch was measured and committed.
    BatchDone(&'a ModelProgress),
    /// The run's trials are done: `task_idx`'s leaders are timed again where they were timed in
    /// fewer windows than confirmation wants.
    Confirming { task_idx: usize, task: &'a Task },
}

/// Where the run stands after a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelProgress {
    /// The task of the batch just committed.
    pub task_idx: usize,
    pub tasks: Vec<TaskProgress>,
    /// Trials measured by this run (default schedules included), all tasks.
    pub trials_this_run: usize,
    /// Trials of this run that failed (wrong result, crash, timeout, build error).
    pub errors_this_run: usize,
}

/// One task's state.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskProgress {
    pub weight: f64,
    /// Its measured schedules in the log (all sessions).
    pub trials_in_log: usize,
    pub trials_this_run: usize,
    /// The fastest valid kernel's median time (log and this run).
    pub best_latency_s: Option<f64>,
    /// The default schedule's median time, if it ran correctly.
    pub default_latency_s: Option<f64>,
    /// Its strategy has nothing left to propose.
    pub exhausted: bool,
}

impl ModelProgress {
    /// `Σ weight · best latency` over the tasks: the tuned kernels' share of the model's latency.
    /// `None` while a task has no valid kernel.
    pub fn tuned_latency_s(&self) -> Option<f64> {
        self.tasks.iter().map(|t| t.best_latency_s.map(|l| t.weight * l)).sum()
    }

    /// `Σ weight · default latency`: the same share with every task on its default schedule.
    pub fn untuned_latency_s(&self) -> Option<f64> {
        self.tasks.iter().map(|t| t.default_latency_s.map(|l| t.weight * l)).sum()
    }
}

/// What [`tune_model`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelTuneSummary {
    pub progress: ModelProgress,
    /// Per task, the fastest valid kernel in the log.
    pub best: Vec<Option<BestKernel>>,
    pub stopped: ModelStopReason,
    /// Wall time spent in strategies (proposing, training), all tasks.
    pub search_time_s: f64,
    /// Wall time spent in the runner, all tasks (default schedules excluded).
    pub measure_time_s: f64,
}

impl std::fmt::Debug for ModelTask<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelTask")
            .field("task", &self.task.description())
            .field("weight", &self.weight)
            .field("space", &self.space.version())
            .finish()
    }
}

/// A task's session and strategy, made at its first batch.
struct Active<'a> {
    strategy: Box<dyn SearchStrategy + 'a>,
    tuner: TaskTuner,
}

/// Tunes every task of `tasks` into `db` on `runner`'s target. `make_strategy(i, db)` makes
/// task `i`'s strategy when it first gets a batch (`db` then holds every trial so far, for warm
/// starts).
///
/// Resumes like [`tune`](crate::tune): traces in the log are never measured again, and trial caps
/// count the log. Every task's session is ended in the log whatever happens.
pub fn tune_model<'a>(
    tasks: &[ModelTask<'a>],
    make_strategy: &mut dyn FnMut(usize, &Database) -> Box<dyn SearchStrategy + 'a>,
    runner: &mut dyn Runner,
    db: &mut Database,
    config: &ModelTuneConfig,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(&ModelEvent),
) -> Result<ModelTuneSummary, SearchError> {
    if config.tune.batch_size == 0 {
        return Err(SearchError::InvalidConfig { reason: "the batch size must be at least 1".to_string() });
    }
    let target = runner.target().clone();
    let mut active: Vec<Option<Active<'a>>> = tasks.iter().map(|_| None).collect();
    // Under a deadline the trials stop early enough to leave time for confirming the leaders.
    let confirms = config.tune.confirm_rounds > 0 && config.tune.confirm_leaders > 0;
    let reserve = if confirms { CONFIRM_SHARE_OF_DEADLINE } else { 0.0 };
    let trials_config = ModelTuneConfig {
        deadline: config
            .deadline
            .map(|deadline| deadline - deadline.saturating_duration_since(Instant::now()).mul_f64(reserve)),
        ..config.clone()
    };
    let mut trial_time = TrialTime::default();
    let mut result = run(
        tasks,
        make_strategy,
        runner,
        db,
        &trials_config,
        cancel,
        on_event,
        &target,
        &mut active,
        &mut trial_time,
    );

    let mut best = Vec::with_capacity(tasks.len());
    let (mut search_time_s, mut measure_time_s) = (0.0, 0.0);
    // Confirm the winners unless the run was stopped (Ctrl-C) or failed: those of the tasks this
    // run tuned, and those a finished log still holds unconfirmed (a log of an older build, or of
    // a run stopped before its end). Under a deadline, only what fits before it.
    let confirm = matches!(&result, Ok((_, stop)) if *stop != ModelStopReason::Cancelled);
    let mut clock = config
        .deadline
        .map(|deadline| crate::tune::ConfirmClock { deadline, per_window_s: trial_time.slow_s() });
    for (task_idx, (model_task, slot)) in tasks.iter().zip(active).enumerate() {
        // After an error, only the sessions are ended.
        let confirm = confirm && result.is_ok();
        if confirm {
            on_event(&ModelEvent::Confirming { task_idx, task: &model_task.task });
        }
        match slot {
            Some(Active { mut tuner, .. }) => {
                let outcome = match &result {
                    Ok(_) if confirm => tuner.confirm_leaders(runner, db, clock.as_mut()).map(|()| None),
                    Ok(_) => Ok(None),
                    Err(_) => Ok(Some(StopReason::Cancelled)),
                };
                search_time_s += tuner.search_time_s();
                measure_time_s += tuner.measure_time_s();
                match tuner.finish(db, outcome) {
                    Ok(summary) => best.push(summary.best),
                    Err(error) => {
                        if result.is_ok() {
                            result = Err(error);
                        }
                        best.push(None);
                    }
                }
            }
            None => {
                if confirm {
                    let started = std::time::Instant::now();
                    let confirmed = crate::tune::confirm_leaders(
                        &model_task.task,
                        model_task.space.version(),
                        runner,
                        db,
                        &config.tune,
                        clock.as_mut(),
                    );
                    measure_time_s += started.elapsed().as_secs_f64();
                    if let Err(error) = confirmed {
                        result = Err(error);
                    }
                }
                let found = best_in_log(
                    db,
                    &model_task.task,
                    &target,
                    model_task.space.version(),
                    &config.tune.codegen_version,
                );
                match found {
                    Ok(found) => best.push(found),
                    Err(error) => {
                        if result.is_ok() {
                            result = Err(error);
                        }
                        best.push(None);
                    }
                }
            }
        }
    }
    let (mut progress, stopped) = result?;
    // The confirmation rounds may have re-ranked the leaders and the default: report the log as it
    // is now.
    for (model_task, state) in tasks.iter().zip(progress.tasks.iter_mut()) {
        let now = LogState::read(db, &model_task.task, model_task.space, &target, config)?;
        (state.best_latency_s, state.default_latency_s) = (now.best_latency_s, now.default_latency_s);
    }
    Ok(ModelTuneSummary { progress, best, stopped, search_time_s, measure_time_s })
}

#[allow(clippy::too_many_arguments)]
fn run<'a>(
    tasks: &[ModelTask<'a>],
    make_strategy: &mut dyn FnMut(usize, &Database) -> Box<dyn SearchStrategy + 'a>,
    runner: &mut dyn Runner,
    db: &mut Database,
    config: &ModelTuneConfig,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(&ModelEvent),
    target: &Target,
    active: &mut [Option<Active<'a>>],
    trial_time: &mut TrialTime,
) -> Result<(ModelProgress, ModelStopReason), SearchError> {
    let mut progress = ModelProgress {
        task_idx: 0,
        tasks: Vec::with_capacity(tasks.len()),
        trials_this_run: 0,
        errors_this_run: 0,
    };

    // The untuned model first: each task's default schedule, once per log.
    for (i, model_task) in tasks.iter().enumerate() {
        if cancel.load(Ordering::SeqCst) {
            fill_from_log(&mut progress, tasks, db, target, config, i)?;
            return Ok((progress, ModelStopReason::Cancelled));
        }
        if let Some(deadline) = config.deadline.filter(|_| trial_time.trials > 0) {
            let left_s = deadline.saturating_duration_since(Instant::now()).as_secs_f64();
            if trial_time.fitting(left_s, 1).is_none() {
                fill_from_log(&mut progress, tasks, db, target, config, i)?;
                return Ok((progress, ModelStopReason::Deadline));
            }
        }
        on_event(&ModelEvent::MeasuringDefault { task_idx: i, task: &model_task.task });
        let started = Instant::now();
        let measured =
            measure_default_schedule(&model_task.task, model_task.space, runner, db, &config.tune, cancel)?;
        if let Some(summary) = &measured {
            trial_time.add(summary.trials.len(), started.elapsed().as_secs_f64());
            progress.trials_this_run += summary.trials.len();
            progress.errors_this_run += summary.n_errors;
        }
        let state = LogState::read(db, &model_task.task, model_task.space, target, config)?;
        let trials_this_run = measured.as_ref().map_or(0, |s| s.trials.len());
        progress.tasks.push(state.progress(model_task.weight, trials_this_run));
    }

    let mut scheduler =
        TaskScheduler::new(tasks.iter().map(|t| t.weight).collect(), config.scheduler.clone());
    for (i, task) in progress.tasks.iter().enumerate() {
        scheduler.record(i, task.trials_in_log, task.best_latency_s);
    }

    loop {
        if cancel.load(Ordering::SeqCst) {
            return Ok((progress, ModelStopReason::Cancelled));
        }
        let eligible: Vec<bool> = progress
            .tasks
            .iter()
            .map(|t| !t.exhausted && config.trials_per_task.is_none_or(|cap| t.trials_in_log < cap))
            .collect();
        let Some(i) = scheduler.next_task_among(&eligible) else {
            let all_exhausted = progress.tasks.iter().all(|t| t.exhausted);
            let reason =
                if all_exhausted { ModelStopReason::SpacesExhausted } else { ModelStopReason::TrialsDone };
            return Ok((progress, reason));
        };
        let mut want = config.tune.batch_size;
        if let Some(cap) = config.trials_per_task {
            want = want.min(cap - progress.tasks[i].trials_in_log);
        }
        if let Some(deadline) = config.deadline {
            let left_s = deadline.saturating_duration_since(Instant::now()).as_secs_f64();
            match trial_time.fitting(left_s, want) {
                Some(n) => want = n,
                None => return Ok((progress, ModelStopReason::Deadline)),
            }
        }

        let model_task = &tasks[i];
        on_event(&ModelEvent::BatchStarted { task_idx: i, task: &model_task.task, n: want });
        let started = Instant::now();
        if active[i].is_none() {
            let mut strategy = make_strategy(i, db);
            let tuner = TaskTuner::start(
                &model_task.task,
                model_task.space,
                strategy.as_mut(),
                target,
                db,
                &config.tune,
            )?;
            active[i] = Some(Active { strategy, tuner });
        }
        let Some(Active { strategy, tuner }) = active[i].as_mut() else { unreachable!("made above") };
        let errors_before = tuner.n_errors();
        let n = tuner.run_batch(want, strategy.as_mut(), runner, db, &mut |_| {})?;
        trial_time.add(n, started.elapsed().as_secs_f64());

        let task = &mut progress.tasks[i];
        if n == 0 {
            task.exhausted = true;
        }
        task.trials_in_log = tuner.measured_in_log();
        task.trials_this_run += n;
        task.best_latency_s = tuner.best_latency_s();
        progress.trials_this_run += n;
        progress.errors_this_run += tuner.n_errors() - errors_before;
        progress.task_idx = i;
        scheduler.record(i, n, task.best_latency_s);
        if n > 0 {
            on_event(&ModelEvent::BatchDone(&progress));
        }
    }
}

/// Fills the progress of the tasks from `from` on from the log (a run cancelled before it
/// measured their default schedules).
fn fill_from_log(
    progress: &mut ModelProgress,
    tasks: &[ModelTask],
    db: &Database,
    target: &Target,
    config: &ModelTuneConfig,
    from: usize,
) -> Result<(), SearchError> {
    for model_task in &tasks[from..] {
        let state = LogState::read(db, &model_task.task, model_task.space, target, config)?;
        progress.tasks.push(state.progress(model_task.weight, 0));
    }
    Ok(())
}

/// What the log holds for one task, under this run's space and codegen versions.
struct LogState {
    n_measured: usize,
    best_latency_s: Option<f64>,
    default_latency_s: Option<f64>,
}

impl LogState {
    fn read(
        db: &Database,
        task: &Task,
        space: &dyn SpaceGenerator,
        target: &Target,
        config: &ModelTuneConfig,
    ) -> Result<LogState, SearchError> {
        let records =
            db.trials(&task.key().0, &target.key()).map_err(SearchError::db("read the task's trials"))?;
        let comparable: Vec<_> = records
            .iter()
            .filter(|r| r.is_comparable(space.version(), &config.tune.codegen_version))
            .collect();
        let default_key = space.default_trace().key();
        let n_measured =
            comparable.iter().map(|r| r.trace_key.as_str()).collect::<std::collections::HashSet<_>>().len();
        let best_latency_s =
            comparable.iter().filter(|r| r.status.is_ok()).filter_map(|r| r.median_s).reduce(f64::min);
        let default_latency_s = comparable
            .iter()
            .filter(|r| r.trace_key == default_key && r.status.is_ok())
            .filter_map(|r| r.median_s)
            .reduce(f64::min);
        Ok(LogState { n_measured, best_latency_s, default_latency_s })
    }

    fn progress(&self, weight: f64, trials_this_run: usize) -> TaskProgress {
        TaskProgress {
            weight,
            trials_in_log: self.n_measured,
            trials_this_run,
            best_latency_s: self.best_latency_s,
            default_latency_s: self.default_latency_s,
            exhausted: false,
        }
    }
}

/// Wall time per trial so far in this run (proposing, building, checking, timing, recording):
/// how many trials still fit before the deadline.
#[derive(Default)]
struct TrialTime {
    /// Per batch: wall seconds per trial.
    per_trial_s: Vec<f64>,
    trials: usize,
    seconds: f64,
}

impl TrialTime {
    fn add(&mut self, trials: usize, seconds: f64) {
        if trials > 0 {
            self.per_trial_s.push(seconds / trials as f64);
        }
        self.trials += trials;
        self.seconds += seconds;
    }

    fn mean_s(&self) -> f64 {
        if self.trials == 0 {
            FIRST_TRIAL_ESTIMATE_S
        } else {
            self.seconds / self.trials as f64
        }
    }

    /// A slow batch's time per trial: the slowest of the recent batches (the machine's load
    /// changes, so old batches say less).
    fn slow_s(&self) -> f64 {
        const RECENT_BATCHES: usize = 8;
        let recent = &self.per_trial_s[self.per_trial_s.len().saturating_sub(RECENT_BATCHES)..];
        recent.iter().copied().reduce(f64::max).unwrap_or(FIRST_TRIAL_ESTIMATE_S)
    }

    /// Trials (at most `want`) expected to finish within `left_s` when each is as slow as in
    /// the slowest recent batch: a machine that gets loaded mid-run (the mean lags behind) or a
    /// batch that runs a confirmation round still ends by the deadline; the run overshoots only
    /// when a batch is slower per trial than every recent one. `None` when not even one fits.
    fn fitting(&self, left_s: f64, want: usize) -> Option<usize> {
        let per_trial_s = self.slow_s().max(self.mean_s()).max(1e-3);
        let n = (left_s / per_trial_s).floor();
        if n < 1.0 {
            return None;
        }
        Some((n as usize).min(want.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{RandomSearch, RandomSearchConfig};
    use crate::testing::{FakeRunner, FakeSpace};
    use autotune_ir::Trace;
    use autotune_measure::MeasureOutcome;
    use std::collections::HashSet;
    use std::time::Duration;

    const CODEGEN: &str = "fake-codegen-1";

    fn model_tasks(space: &FakeSpace) -> Vec<ModelTask<'_>> {
        [(64, 1.0), (32, 3.0), (16, 2.0)]
            .into_iter()
            .map(|(n, weight)| ModelTask { task: Task::matmul(n, n, n), weight, space })
            .collect()
    }

    fn config(trials_per_task: Option<usize>, deadline: Option<Instant>) -> ModelTuneConfig {
        ModelTuneConfig {
            trials_per_task,
            deadline,
            tune: TuneConfig { batch_size: 4, confirm_rounds: 0, ..TuneConfig::new(0, 5, CODEGEN) },
            scheduler: TaskSchedulerConfig { min_trials_per_task: 4, ..TaskSchedulerConfig::default() },
        }
    }

    fn run_model(
        db: &mut Database,
        runner: &mut dyn Runner,
        config: &ModelTuneConfig,
        cancel_after_batches: Option<usize>,
    ) -> ModelTuneSummary {
        let space = FakeSpace::new();
        let tasks = model_tasks(&space);
        let cancel = AtomicBool::new(false);
        let mut batches = 0;
        let mut make = |i: usize, _db: &Database| -> Box<dyn SearchStrategy + '_> {
            Box::new(RandomSearch::new(&space, RandomSearchConfig::new(i as u64)))
        };
        tune_model(&tasks, &mut make, runner, db, config, &cancel, &mut |event| {
            if let ModelEvent::BatchDone(_) = event {
                batches += 1;
                if cancel_after_batches == Some(batches) {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
        })
        .expect("tune_model")
    }

    /// Distinct measured traces per task in the log, and whether any trace was measured twice.
    fn log_counts(db: &Database, runner: &FakeRunner) -> (Vec<usize>, bool) {
        let space = FakeSpace::new();
        let mut duplicate = false;
        let counts = model_tasks(&space)
            .iter()
            .map(|t| {
                let trials = db.trials(&t.task.key().0, &runner.target().key()).expect("trials");
                let keys: HashSet<_> = trials.iter().map(|r| r.trace_key.clone()).collect();
                duplicate |= keys.len() != trials.len();
                keys.len()
            })
            .collect();
        (counts, duplicate)
    }

    #[test]
    fn every_task_gets_its_default_then_exactly_its_cap_and_every_session_ends() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let summary = run_model(&mut db, &mut runner, &config(Some(10), None), None);
        assert_eq!(summary.stopped, ModelStopReason::TrialsDone);
        assert_eq!(log_counts(&db, &runner), (vec![10, 10, 10], false));
        assert_eq!(summary.progress.trials_this_run, 30);
        // The fake space's default schedule is its planted wrong kernel: no untuned latency, and
        // it never becomes a best.
        assert!(summary.progress.tasks.iter().all(|t| t.default_latency_s.is_none()));
        let default_key = FakeSpace::new().default_trace().key();
        for best in &summary.best {
            assert_ne!(best.as_ref().expect("a valid kernel").trace.key(), default_key);
        }
        assert!(summary.progress.tuned_latency_s().is_some());
        assert!(db.sessions().expect("sessions").iter().all(|s| s.ended_at.is_some()));
    }

    #[test]
    fn a_second_run_tops_up_to_the_new_cap_without_measuring_anything_twice() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        run_model(&mut db, &mut runner, &config(Some(6), None), None);
        let first = runner.measured.len();
        let summary = run_model(&mut db, &mut runner, &config(Some(12), None), None);
        assert_eq!(log_counts(&db, &runner), (vec![12, 12, 12], false));
        assert_eq!(runner.measured.len() - first, 18, "6 more per task, defaults not again");
        assert_eq!(summary.progress.trials_this_run, 18);
        let again = run_model(&mut db, &mut runner, &config(Some(12), None), None);
        assert_eq!((again.stopped, again.progress.trials_this_run), (ModelStopReason::TrialsDone, 0));
    }

    #[test]
    fn a_finished_log_of_unconfirmed_leaders_is_confirmed_by_the_next_run_once() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        // A log whose leaders were each timed in one window (a build that did not confirm).
        run_model(&mut db, &mut runner, &config(Some(8), None), None);
        let space = FakeSpace::new();
        let windows_of_leaders = |db: &Database| -> Vec<u32> {
            model_tasks(&space)
                .iter()
                .map(|t| db.best(&t.task.key().0, &runner.target().key(), 1).expect("best")[0].windows)
                .collect()
        };
        assert_eq!(windows_of_leaders(&db), vec![1, 1, 1]);

        let mut confirming = config(Some(8), None);
        confirming.tune.confirm_rounds = 2;
        let mut runner = FakeRunner::new();
        let summary = run_model(&mut db, &mut runner, &confirming, None);
        assert_eq!((summary.stopped, summary.progress.trials_this_run), (ModelStopReason::TrialsDone, 0));
        assert!(!runner.measured.is_empty(), "the leaders were timed again");
        assert_eq!(windows_of_leaders(&db), vec![3, 3, 3]);
        assert_eq!(log_counts(&db, &runner), (vec![8, 8, 8], false), "confirming adds no trial");

        let mut runner = FakeRunner::new();
        run_model(&mut db, &mut runner, &confirming, None);
        assert!(runner.measured.is_empty(), "a confirmed log is not timed again");
    }

    #[test]
    fn without_cap_or_deadline_it_runs_until_every_space_is_exhausted() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let summary = run_model(&mut db, &mut runner, &config(None, None), None);
        assert_eq!(summary.stopped, ModelStopReason::SpacesExhausted);
        let size = FakeSpace::new().size() as usize;
        assert_eq!(log_counts(&db, &runner), (vec![size; 3], false));
    }

    #[test]
    fn cancelling_commits_the_batch_in_flight_and_stops() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let summary = run_model(&mut db, &mut runner, &config(Some(20), None), Some(2));
        assert_eq!(summary.stopped, ModelStopReason::Cancelled);
        // 3 defaults + 2 batches of 4.
        assert_eq!(summary.progress.trials_this_run, 3 + 8);
        let (counts, _) = log_counts(&db, &runner);
        assert_eq!(counts.iter().sum::<usize>(), 11);
        assert!(db.sessions().expect("sessions").iter().all(|s| s.ended_at.is_some()));
    }

    /// Takes `per_trial` of wall time per measured trace.
    struct SlowRunner {
        inner: FakeRunner,
        per_trial: Duration,
    }

    impl Runner for SlowRunner {
        fn target(&self) -> &Target {
            self.inner.target()
        }
        fn measure_batch(&mut self, task: &Task, traces: &[Trace]) -> Vec<MeasureOutcome> {
            std::thread::sleep(self.per_trial * traces.len() as u32);
            self.inner.measure_batch(task, traces)
        }
    }

    #[test]
    fn under_a_deadline_the_leaders_are_confirmed_in_the_time_kept_for_it() {
        let mut db = Database::open_in_memory().expect("db");
        // 72 trials of 40 ms would take 2.9 s: the deadline stops them, and leaves 0.45 s (11
        // windows) for confirming.
        let mut runner = SlowRunner { inner: FakeRunner::new(), per_trial: Duration::from_millis(40) };
        let budget = Duration::from_millis(3000);
        let started = Instant::now();
        let mut confirming = config(None, Some(started + budget));
        confirming.tune.confirm_rounds = 2;
        let summary = run_model(&mut db, &mut runner, &confirming, None);
        let elapsed = started.elapsed();
        assert_eq!(summary.stopped, ModelStopReason::Deadline);
        assert!(elapsed <= budget + Duration::from_millis(60), "{elapsed:?}");
        let space = FakeSpace::new();
        let first = &model_tasks(&space)[0].task;
        let leaders = db.best(&first.key().0, &runner.target().key(), 4).expect("best");
        let windows: Vec<u32> = leaders.iter().map(|t| t.windows).collect();
        assert_eq!(windows, vec![3; 4], "the first task's leaders were timed in three windows");
    }

    #[test]
    fn the_deadline_is_kept_by_shrinking_the_last_batches() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = SlowRunner { inner: FakeRunner::new(), per_trial: Duration::from_millis(30) };
        let budget = Duration::from_millis(1000);
        let started = Instant::now();
        let summary = run_model(&mut db, &mut runner, &config(None, Some(started + budget)), None);
        let elapsed = started.elapsed();
        assert_eq!(summary.stopped, ModelStopReason::Deadline);
        // Half a trial of slack at most, plus scheduling noise.
        assert!(elapsed <= budget + Duration::from_millis(60), "{elapsed:?}");
        assert!(elapsed >= budget - Duration::from_millis(60), "stopped early: {elapsed:?}");
        assert!(runner.inner.batch_sizes.iter().any(|&n| n < 4), "{:?}", runner.inner.batch_sizes);
    }

    /// Trials take `per_trial` until `slow_from` after it was made, then `slow_trial`: another
    /// process started on the machine.
    struct LoadedRunner {
        inner: FakeRunner,
        made: Instant,
        slow_from: Duration,
        per_trial: Duration,
        slow_trial: Duration,
    }

    impl Runner for LoadedRunner {
        fn target(&self) -> &Target {
            self.inner.target()
        }
        fn measure_batch(&mut self, task: &Task, traces: &[Trace]) -> Vec<MeasureOutcome> {
            let each = if self.made.elapsed() < self.slow_from { self.per_trial } else { self.slow_trial };
            std::thread::sleep(each * traces.len() as u32);
            self.inner.measure_batch(task, traces)
        }
    }

    #[test]
    fn the_deadline_holds_when_the_machine_gets_loaded_near_the_end() {
        // Batches sized by the mean trial time (with one slow trial of slack) ran ~40 ms over:
        // after the slow-down the mean lagged behind the 70 ms trials.
        let mut db = Database::open_in_memory().expect("db");
        let budget = Duration::from_millis(1400);
        let mut runner = LoadedRunner {
            inner: FakeRunner::new(),
            made: Instant::now(),
            slow_from: Duration::from_millis(1000),
            per_trial: Duration::from_millis(20),
            slow_trial: Duration::from_millis(70),
        };
        let started = Instant::now();
        let summary = run_model(&mut db, &mut runner, &config(None, Some(started + budget)), None);
        let elapsed = started.elapsed();
        assert_eq!(summary.stopped, ModelStopReason::Deadline);
        assert!(elapsed <= budget + Duration::from_millis(30), "{elapsed:?}");
        assert!(elapsed >= budget - Duration::from_millis(150), "stopped early: {elapsed:?}");
    }

    #[test]
    fn a_deadline_shorter_than_the_defaults_stops_before_measuring_them_all() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = SlowRunner { inner: FakeRunner::new(), per_trial: Duration::from_millis(200) };
        let started = Instant::now();
        let summary =
            run_model(&mut db, &mut runner, &config(None, Some(started + Duration::from_millis(300))), None);
        assert_eq!(summary.stopped, ModelStopReason::Deadline);
        assert!(started.elapsed() <= Duration::from_millis(330), "{:?}", started.elapsed());
        assert_eq!(summary.progress.tasks.len(), 3, "every task has a progress row");
    }
}
