//! The tuning loop: propose → measure → record → observe, with resume and cancellation.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use autotune_db::{
    Database, NewTrial, SessionId, SessionSpec, TargetId, TargetSpec, TrialId, TrialRecord, WorkloadId,
    WorkloadSpec,
};
use autotune_ir::{Target, Task, Trace, TrialStatus};
use autotune_measure::{MeasureOutcome, Runner};
use autotune_schedules::SpaceGenerator;

use crate::error::SearchError;
use crate::strategy::SearchStrategy;

/// Candidates measured per batch (and committed per transaction) unless configured otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 8;

/// Proposals in a row that contain only already-measured traces before the loop treats the space
/// as exhausted (guards against a strategy that keeps re-proposing what it has seen).
const MAX_FRUITLESS_PROPOSALS: usize = 8;

/// Rounds in which the leaders are timed again at the end of a session: with the first window, three
/// windows per leader, so one lucky window (on a shared VM one now and then runs ~15 % fast) is
/// outvoted by the median.
pub const DEFAULT_CONFIRM_ROUNDS: usize = 2;
/// Leaders confirmed at the end of a session.
pub const DEFAULT_CONFIRM_LEADERS: usize = 4;
/// Confirmation stops after this many passes even if new leaders keep appearing (a space of many
/// equally fast schedules): it bounds the cost of a session's end.
const MAX_CONFIRM_PASSES: usize = 4;

/// Settings of one [`tune`] session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TuneConfig {
    /// Trials to measure in this session (earlier sessions of the same log do not count).
    pub n_trials: usize,
    /// Candidates per batch: measured together, recorded in one transaction. At least 1.
    pub batch_size: usize,
    /// The seed the caller gave the strategy; stored with the session for provenance.
    pub seed: u64,
    /// Version of the code generator, stored with every trial: a trace measured under another
    /// codegen version is not treated as measured.
    pub codegen_version: String,
    /// The command line that started the session, for the session row.
    pub command: String,
    /// Version of the autotune build.
    pub tool_version: String,
    /// After the last batch, the fastest trials of the log (and the default schedule) are timed
    /// again until each was timed in 1 + this many windows, each window adding its repeats to
    /// the trial (and a new best is timed in this many more windows when it is found): see
    /// `confirm_leaders` in this module. 0 turns both off.
    pub confirm_rounds: usize,
    /// How many of the fastest trials are confirmed.
    pub confirm_leaders: usize,
}

impl TuneConfig {
    /// `n_trials` trials in batches of [`DEFAULT_BATCH_SIZE`]; command empty, tool version this
    /// crate's.
    pub fn new(n_trials: usize, seed: u64, codegen_version: impl Into<String>) -> Self {
        TuneConfig {
            n_trials,
            batch_size: DEFAULT_BATCH_SIZE,
            seed,
            codegen_version: codegen_version.into(),
            command: String::new(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            confirm_rounds: DEFAULT_CONFIRM_ROUNDS,
            confirm_leaders: DEFAULT_CONFIRM_LEADERS,
        }
    }
}

/// One trial of this session.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialReport {
    /// 0-based position in this session, in measurement order.
    pub index: usize,
    pub trace: Trace,
    pub outcome: MeasureOutcome,
    /// `flops / median / 1e9`; `None` unless the trial is `Ok`.
    pub gflops: Option<f64>,
}

/// The fastest valid kernel known for a task on a target.
#[derive(Clone, Debug, PartialEq)]
pub struct BestKernel {
    pub trace: Trace,
    pub median_s: f64,
    pub gflops: f64,
}

/// Why a session ended before measuring `n_trials` trials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The cancel flag was set; the batch in flight was finished and committed first.
    Cancelled,
    /// The strategy had nothing left to propose that was not measured already.
    SpaceExhausted,
}

/// What one [`tune`] session did.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneSummary {
    pub session: SessionId,
    /// This session's trials, in measurement order.
    pub trials: Vec<TrialReport>,
    /// The best `Ok` trial in the whole log (all sessions) for this task, target, space version
    /// and codegen version.
    pub best: Option<BestKernel>,
    /// This session's trials whose status is not `Ok`.
    pub n_errors: usize,
    /// `None` when all `n_trials` trials were measured.
    pub stopped_early: Option<StopReason>,
    /// Wall time spent in the strategy (proposing, and learning from results: model training,
    /// evolution): the search's own overhead.
    pub search_time_s: f64,
    /// Wall time spent in the runner (building, checking and timing candidates).
    pub measure_time_s: f64,
}

/// Handed to the caller after every committed batch (progress bars, logs).
#[derive(Debug)]
pub struct Progress<'a> {
    /// Trials of this session so far.
    pub trials_done: usize,
    pub n_trials: usize,
    /// Best GFLOP/s over the log and this session so far; `Ok` trials only.
    pub best_gflops: Option<f64>,
    /// Non-`Ok` trials of this session so far.
    pub n_errors: usize,
    /// The batch just committed.
    pub last_batch: &'a [TrialReport],
}

/// Tunes `task` on the runner's target for `config.n_trials` trials, recording every trial
/// (failures too) in `db`, one transaction per batch.
///
/// Resumes: a trace already measured in `db` for this task, target, space version and codegen
/// version (by any session) is never measured again, and the strategy is told about the earlier
/// results before the first proposal. Cancellation (`cancel` set, e.g. from a Ctrl-C handler) is
/// checked between batches: the batch in flight is finished and committed, then the session ends
/// with [`StopReason::Cancelled`]. The session is ended in the log in every case, errors included.
///
/// Invariant: only an `Ok` trial is ever reported as best.
#[allow(clippy::too_many_arguments)]
pub fn tune(
    task: &Task,
    space: &dyn SpaceGenerator,
    strategy: &mut dyn SearchStrategy,
    runner: &mut dyn Runner,
    db: &mut Database,
    config: &TuneConfig,
    cancel: &AtomicBool,
    on_batch: &mut dyn FnMut(&Progress),
) -> Result<TuneSummary, SearchError> {
    let mut tuner = TaskTuner::start(task, space, strategy, runner.target(), db, config)?;
    let result = (|| {
        while tuner.session_trials() < config.n_trials {
            if cancel.load(Ordering::SeqCst) {
                return Ok(Some(StopReason::Cancelled));
            }
            let want = config.batch_size.min(config.n_trials - tuner.session_trials());
            if tuner.run_batch(want, strategy, runner, db, on_batch)? == 0 {
                return Ok(Some(StopReason::SpaceExhausted));
            }
        }
        Ok(None)
    })();
    let result = match result {
        Ok(stop) if stop != Some(StopReason::Cancelled) => {
            tuner.confirm_leaders(runner, db, None).map(|()| stop)
        }
        other => other,
    };
    tuner.finish(db, result)
}

#[derive(Clone, Copy, Debug)]
struct Ids {
    workload: WorkloadId,
    target: TargetId,
    session: SessionId,
}

/// One task's tuning session, advanced a batch at a time: what [`tune`] loops over, and what a
/// model-level loop interleaves between tasks (one open session per task, one shared log and
/// runner).
#[derive(Debug)]
pub struct TaskTuner {
    task: Task,
    target: Target,
    space_version: &'static str,
    ids: Ids,
    config: TuneConfig,
    /// Keys of every trace measured for this task (log and this session).
    measured: HashSet<String>,
    /// This session's trials, in measurement order.
    trials: Vec<TrialReport>,
    best_gflops: Option<f64>,
    n_errors: usize,
    search_time_s: f64,
    measure_time_s: f64,
}

impl TaskTuner {
    /// Opens a session for `task` on `target` in `db` and tells `strategy` about the comparable
    /// trials of earlier sessions. `config.n_trials` is not used here: the caller decides how many
    /// batches to run.
    pub fn start(
        task: &Task,
        space: &dyn SpaceGenerator,
        strategy: &mut dyn SearchStrategy,
        target: &Target,
        db: &mut Database,
        config: &TuneConfig,
    ) -> Result<TaskTuner, SearchError> {
        if config.batch_size == 0 {
            return Err(SearchError::InvalidConfig {
                reason: "the batch size must be at least 1".to_string(),
            });
        }
        let workload =
            db.upsert_workload(&workload_spec(task)).map_err(SearchError::db("record the workload"))?;
        let target_id =
            db.upsert_target(&TargetSpec::of(target)).map_err(SearchError::db("record the target"))?;
        let session_spec = SessionSpec {
            command: config.command.clone(),
            seed: config.seed,
            strategy: strategy.name().to_string(),
            tool_version: config.tool_version.clone(),
        };
        let session = db.begin_session(&session_spec).map_err(SearchError::db("begin the session"))?;
        let mut tuner = TaskTuner {
            task: task.clone(),
            target: target.clone(),
            space_version: space.version(),
            ids: Ids { workload, target: target_id, session },
            config: config.clone(),
            measured: HashSet::new(),
            trials: Vec::new(),
            best_gflops: None,
            n_errors: 0,
            search_time_s: 0.0,
            measure_time_s: 0.0,
        };
        if let Err(error) = tuner.load_history(strategy, db) {
            let _ = db.end_session(session);
            return Err(error);
        }
        Ok(tuner)
    }

    fn load_history(&mut self, strategy: &mut dyn SearchStrategy, db: &Database) -> Result<(), SearchError> {
        self.measured = db
            .measured_trace_keys(
                self.ids.workload,
                self.ids.target,
                self.space_version,
                &self.config.codegen_version,
            )
            .map_err(SearchError::db("load the traces measured before"))?;
        let history = self.earlier_results(db)?;
        self.best_gflops = history
            .iter()
            .filter_map(|(_, outcome)| outcome.median_s())
            .map(|median_s| gflops(&self.task, median_s))
            .reduce(f64::max);
        if !history.is_empty() {
            let started = Instant::now();
            strategy.observe(&history);
            self.search_time_s += started.elapsed().as_secs_f64();
        }
        Ok(())
    }

    pub fn task(&self) -> &Task {
        &self.task
    }

    /// Trials measured by this session so far.
    pub fn session_trials(&self) -> usize {
        self.trials.len()
    }

    /// Distinct traces of this task measured in the log, this session included.
    pub fn measured_in_log(&self) -> usize {
        self.measured.len()
    }

    /// Best GFLOP/s over the log and this session; `Ok` trials only.
    pub fn best_gflops(&self) -> Option<f64> {
        self.best_gflops
    }

    /// Best median time over the log and this session; `Ok` trials only.
    pub fn best_latency_s(&self) -> Option<f64> {
        self.best_gflops.map(|g| self.task.flops() / (g * 1e9))
    }

    /// Trials of this session that were not `Ok`.
    pub fn n_errors(&self) -> usize {
        self.n_errors
    }

    /// Wall time this session spent in the runner.
    pub fn measure_time_s(&self) -> f64 {
        self.measure_time_s
    }

    /// Wall time this session spent in the strategy.
    pub fn search_time_s(&self) -> f64 {
        self.search_time_s
    }

    /// Proposes up to `want` new traces, measures them, records them in one transaction and tells
    /// the strategy. Returns how many were measured: 0 means the strategy has nothing new left.
    pub fn run_batch(
        &mut self,
        want: usize,
        strategy: &mut dyn SearchStrategy,
        runner: &mut dyn Runner,
        db: &mut Database,
        on_batch: &mut dyn FnMut(&Progress),
    ) -> Result<usize, SearchError> {
        let want = want.max(1);
        let mut batch = Vec::new();
        for _ in 0..MAX_FRUITLESS_PROPOSALS {
            let started = Instant::now();
            let proposed = strategy.propose(want, &self.measured);
            self.search_time_s += started.elapsed().as_secs_f64();
            if proposed.is_empty() {
                return Ok(0);
            }
            batch = fresh_traces(proposed, &self.measured, want);
            if !batch.is_empty() {
                break;
            }
        }
        if batch.is_empty() {
            return Ok(0);
        }

        let mut outcomes = self.measure(runner, &batch)?;
        let rows: Vec<NewTrial> = batch
            .iter()
            .zip(&outcomes)
            .map(|(trace, outcome)| self.new_trial(trace, outcome, strategy))
            .collect();
        let ids = db.record_batch(&rows).map_err(SearchError::db("record a batch of trials"))?;
        self.confirm_improvement(&batch, &mut outcomes, &ids, runner, db)?;

        let first_index = self.trials.len();
        for (offset, (trace, outcome)) in batch.iter().zip(&outcomes).enumerate() {
            self.measured.insert(trace.key());
            let gflops = outcome.median_s().map(|median_s| gflops(&self.task, median_s));
            if let Some(gflops) = gflops {
                self.best_gflops = Some(self.best_gflops.map_or(gflops, |best: f64| best.max(gflops)));
            }
            if !outcome.status.is_ok() {
                self.n_errors += 1;
            }
            self.trials.push(TrialReport {
                index: first_index + offset,
                trace: trace.clone(),
                outcome: outcome.clone(),
                gflops,
            });
        }
        let n = batch.len();
        let results: Vec<(Trace, MeasureOutcome)> = batch.into_iter().zip(outcomes).collect();
        let started = Instant::now();
        strategy.observe(&results);
        self.search_time_s += started.elapsed().as_secs_f64();
        on_batch(&Progress {
            trials_done: self.trials.len(),
            n_trials: self.config.n_trials,
            best_gflops: self.best_gflops,
            n_errors: self.n_errors,
            last_batch: &self.trials[first_index..],
        });
        Ok(n)
    }

    /// If the batch's fastest trial beats the best time known before it, times it again in
    /// `config.confirm_rounds` more windows and folds those repeats into its outcome and its row,
    /// before the strategy hears of it. Without this a trial timed in one lucky window (on a
    /// shared VM one now and then runs ~15 % fast) becomes the incumbent: the bandit credits the
    /// technique that proposed it, the surrogate learns a score the kernel does not have, and
    /// real improvements that fall short of the lucky time go uncredited for the rest of the run.
    /// Only improvements are confirmed, so the cost is a few windows per run, not one per trial.
    fn confirm_improvement(
        &mut self,
        batch: &[Trace],
        outcomes: &mut [MeasureOutcome],
        ids: &[Option<TrialId>],
        runner: &mut dyn Runner,
        db: &mut Database,
    ) -> Result<(), SearchError> {
        if self.config.confirm_rounds == 0 {
            return Ok(());
        }
        let fastest = outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, outcome)| outcome.median_s().map(|median_s| (i, median_s)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((index, median_s)) = fastest else { return Ok(()) };
        let Some(Some(id)) = ids.get(index) else { return Ok(()) };
        if self.best_latency_s().is_some_and(|best_s| median_s >= best_s) {
            return Ok(());
        }
        let copies = vec![(*id, batch[index].clone()); self.config.confirm_rounds];
        for times_s in self.retime(runner, db, &copies)?.into_iter().flatten() {
            outcomes[index].repeat_times_s.extend(times_s);
        }
        Ok(())
    }

    /// Measures `traces` (one sanitized outcome each, in order), counting the time as measuring.
    fn measure(
        &mut self,
        runner: &mut dyn Runner,
        traces: &[Trace],
    ) -> Result<Vec<MeasureOutcome>, SearchError> {
        let started = Instant::now();
        let outcomes = measure_sanitized(&self.task, runner, traces);
        self.measure_time_s += started.elapsed().as_secs_f64();
        outcomes
    }

    /// [`retime`], counting the time as measuring.
    fn retime(
        &mut self,
        runner: &mut dyn Runner,
        db: &mut Database,
        trials: &[(TrialId, Trace)],
    ) -> Result<Vec<Option<Vec<f64>>>, SearchError> {
        let started = Instant::now();
        let added = retime(&self.task, runner, db, trials);
        self.measure_time_s += started.elapsed().as_secs_f64();
        added
    }

    /// Confirms the log's leaders ([`confirm_leaders`]), counting the time as measuring.
    pub(crate) fn confirm_leaders(
        &mut self,
        runner: &mut dyn Runner,
        db: &mut Database,
        clock: Option<&mut ConfirmClock>,
    ) -> Result<(), SearchError> {
        let started = Instant::now();
        let confirmed = confirm_leaders(&self.task, self.space_version, runner, db, &self.config, clock);
        self.measure_time_s += started.elapsed().as_secs_f64();
        confirmed?;
        self.best_gflops = self.best_in_log(db)?.map(|best| best.gflops).or(self.best_gflops);
        Ok(())
    }

    /// Ends the session in the log (also when `outcome` is an error, which is then returned) and
    /// sums it up; `outcome` says why the loop stopped early, if it did.
    pub fn finish(
        self,
        db: &mut Database,
        outcome: Result<Option<StopReason>, SearchError>,
    ) -> Result<TuneSummary, SearchError> {
        let ended = db.end_session(self.ids.session).map_err(SearchError::db("end the session"));
        let stopped_early = outcome?;
        ended?;
        Ok(TuneSummary {
            session: self.ids.session,
            best: self.best_in_log(db)?,
            trials: self.trials,
            n_errors: self.n_errors,
            stopped_early,
            search_time_s: self.search_time_s,
            measure_time_s: self.measure_time_s,
        })
    }

    fn new_trial(&self, trace: &Trace, outcome: &MeasureOutcome, strategy: &dyn SearchStrategy) -> NewTrial {
        NewTrial {
            workload: self.ids.workload,
            target: self.ids.target,
            session: self.ids.session,
            trace_json: trace.canonical_json(),
            trace_key: trace.key(),
            space_version: self.space_version.to_string(),
            codegen_version: self.config.codegen_version.clone(),
            status: outcome.status,
            error: outcome.error.clone(),
            repeat_times_s: outcome.repeat_times_s.clone(),
            build_time_s: outcome.build_time_s,
            strategy: strategy.name().to_string(),
        }
    }

    /// Whether a stored trial was measured under this session's space and codegen versions.
    fn is_comparable(&self, record: &TrialRecord) -> bool {
        record.is_comparable(self.space_version, &self.config.codegen_version)
    }

    /// The fastest comparable `Ok` trial in the log, all sessions.
    fn best_in_log(&self, db: &Database) -> Result<Option<BestKernel>, SearchError> {
        best_in_log(db, &self.task, &self.target, self.space_version, &self.config.codegen_version)
    }

    /// Comparable trials of earlier sessions, as the strategy observes them.
    fn earlier_results(&self, db: &Database) -> Result<Vec<(Trace, MeasureOutcome)>, SearchError> {
        let task_key = self.task.key();
        let records =
            db.trials(&task_key.0, &self.target.key()).map_err(SearchError::db("read the earlier trials"))?;
        records
            .iter()
            .filter(|record| self.is_comparable(record))
            .map(|record| {
                let outcome = MeasureOutcome {
                    status: record.status,
                    error: record.error.clone(),
                    repeat_times_s: record.repeat_times_s.clone(),
                    build_time_s: record.build_time_s,
                };
                Ok((parse_trace(record)?, outcome))
            })
            .collect()
    }
}

/// Measures `traces` (one sanitized outcome each, in order).
fn measure_sanitized(
    task: &Task,
    runner: &mut dyn Runner,
    traces: &[Trace],
) -> Result<Vec<MeasureOutcome>, SearchError> {
    let outcomes = runner.measure_batch(task, traces);
    if outcomes.len() != traces.len() {
        return Err(SearchError::RunnerContract { expected: traces.len(), got: outcomes.len() });
    }
    Ok(outcomes.into_iter().map(sanitize).collect())
}

/// Times recorded trials again, in one batch, and adds each new window's repeats to its trial
/// ([`Database::add_repeats`]). Returns the repeats added per entry; `None` where the kernel
/// failed this time, which leaves its trial as it was (its first measurement checked it).
fn retime(
    task: &Task,
    runner: &mut dyn Runner,
    db: &mut Database,
    trials: &[(TrialId, Trace)],
) -> Result<Vec<Option<Vec<f64>>>, SearchError> {
    let traces: Vec<Trace> = trials.iter().map(|(_, trace)| trace.clone()).collect();
    let outcomes = measure_sanitized(task, runner, &traces)?;
    let mut added = Vec::with_capacity(trials.len());
    for ((id, _), outcome) in trials.iter().zip(outcomes) {
        if outcome.status.is_ok() && !outcome.repeat_times_s.is_empty() {
            db.add_repeats(*id, &outcome.repeat_times_s)
                .map_err(SearchError::db("add the confirming repeats"))?;
            added.push(Some(outcome.repeat_times_s));
        } else {
            added.push(None);
        }
    }
    Ok(added)
}

/// Times the log's leaders of `task` on the runner's target again until every one of them (the
/// `config.confirm_leaders` fastest comparable trials, and the default schedule) was timed in
/// `1 + config.confirm_rounds` windows, and adds each window's repeats to its trial
/// ([`Database::add_repeats`]). A pass gives the leaders still short of windows theirs, a round
/// after the other in a different order each round; then the leaders are read again.
///
/// One pass is not enough: on a shared machine a window now and then runs ~15 % fast, while the
/// best few dozen schedules of a task are often within a few percent of one another, so once the
/// first leaders are timed again the next trial timed in a lucky window takes the lead. Hence
/// the passes, until the leaders hold still or [`MAX_CONFIRM_PASSES`] have run. The winner a
/// session hands over is then the fastest over several windows of the machine, not the luckiest
/// window, and never a kernel that only looked faster than the untuned default. A leader whose
/// kernel fails when timed again is not retried. Leaders confirmed by an earlier run count, so a
/// finished log costs one read.
///
/// With a `clock`, no batch starts that is not expected to end by its deadline.
pub(crate) fn confirm_leaders(
    task: &Task,
    space_version: &str,
    runner: &mut dyn Runner,
    db: &mut Database,
    config: &TuneConfig,
    mut clock: Option<&mut ConfirmClock>,
) -> Result<(), SearchError> {
    if config.confirm_rounds == 0 || config.confirm_leaders == 0 {
        return Ok(());
    }
    let target = runner.target().clone();
    let wanted_windows = u32::try_from(config.confirm_rounds + 1).unwrap_or(u32::MAX);
    let mut failed: HashSet<TrialId> = HashSet::new();
    for _ in 0..MAX_CONFIRM_PASSES {
        let mut short = unconfirmed_leaders(db, task, &target, space_version, config, wanted_windows)?;
        short.retain(|leader| !failed.contains(&leader.id));
        if short.is_empty() {
            break;
        }
        // The pass's rounds go to the runner as one batch, so each distinct kernel is built once;
        // round after round, rotated each round so no leader is always timed right after the same
        // neighbour.
        let mut batch: Vec<(TrialId, Trace)> = Vec::new();
        for round in 0..config.confirm_rounds {
            let behind = |l: &&Leader| {
                l.windows.saturating_add(u32::try_from(round).unwrap_or(u32::MAX)) < wanted_windows
            };
            let mut due: Vec<&Leader> = short.iter().filter(behind).collect();
            if due.is_empty() {
                break;
            }
            let len = due.len();
            due.rotate_left(round % len);
            batch.extend(due.into_iter().map(|l| (l.id, l.trace.clone())));
        }
        if let Some(clock) = clock.as_deref() {
            let expected_s = clock.per_window_s * batch.len() as f64;
            if Instant::now() + std::time::Duration::from_secs_f64(expected_s.max(0.0)) > clock.deadline {
                break;
            }
        }
        let started = Instant::now();
        let added = retime(task, runner, db, &batch)?;
        if let Some(clock) = clock.as_deref_mut() {
            clock.per_window_s = started.elapsed().as_secs_f64() / batch.len().max(1) as f64;
        }
        for ((id, _), added) in batch.iter().zip(added) {
            if added.is_none() {
                failed.insert(*id);
            }
        }
    }
    Ok(())
}

/// The time confirmation must end by (a tuning budget's), and what a timing window has taken.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConfirmClock {
    pub deadline: Instant,
    /// Wall seconds per window of the last confirming batch (before the first: a trial's).
    pub per_window_s: f64,
}

/// A leader of a task's log, as confirmation needs it.
struct Leader {
    id: TrialId,
    trace: Trace,
    windows: u32,
}

/// The leaders of `task` (the `config.confirm_leaders` fastest comparable `Ok` trials and the
/// default schedule's) timed in fewer than `wanted_windows` windows; none when the log has fewer
/// than two comparable timed trials (nothing to rank).
fn unconfirmed_leaders(
    db: &Database,
    task: &Task,
    target: &Target,
    space_version: &str,
    config: &TuneConfig,
    wanted_windows: u32,
) -> Result<Vec<Leader>, SearchError> {
    let trials = db.trials(&task.key().0, &target.key()).map_err(SearchError::db("read the leaders"))?;
    let mut timed: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.median_s.is_some() && t.is_comparable(space_version, &config.codegen_version))
        .collect();
    if timed.len() < 2 {
        return Ok(Vec::new());
    }
    // `trials` is in id order, so a stable sort breaks ties by id, as `Database::best` does.
    timed.sort_by(|a, b| a.median_s.partial_cmp(&b.median_s).unwrap_or(std::cmp::Ordering::Equal));
    let mut leaders: Vec<&TrialRecord> = timed.iter().take(config.confirm_leaders).copied().collect();
    let default = timed.iter().find(|t| t.strategy == crate::baseline::DEFAULT_SCHEDULE_STRATEGY);
    if let Some(&default) = default {
        if leaders.iter().all(|t| t.id != default.id) {
            leaders.push(default);
        }
    }
    leaders
        .into_iter()
        .filter(|t| t.windows < wanted_windows)
        .map(|t| Ok(Leader { id: t.id, trace: parse_trace(t)?, windows: t.windows }))
        .collect()
}

/// The fastest `Ok` trial of `task` on `target` in the log (all sessions) measured under these
/// schedule space and codegen versions.
pub(crate) fn best_in_log(
    db: &Database,
    task: &Task,
    target: &Target,
    space_version: &str,
    codegen_version: &str,
) -> Result<Option<BestKernel>, SearchError> {
    let comparable = |record: &TrialRecord| record.is_comparable(space_version, codegen_version);
    let (task_key, target_key) = (task.key(), target.key());
    let read_best = |k| db.best(&task_key.0, &target_key, k).map_err(SearchError::db("read the best trial"));
    // Usually the fastest trial is comparable; only a log with other versions needs the full list.
    let mut records = read_best(1)?;
    if !records.iter().all(comparable) {
        records = read_best(usize::MAX)?;
    }
    let Some(record) = records.iter().find(|record| record.status.is_ok() && comparable(record)) else {
        return Ok(None);
    };
    let Some(median_s) = record.median_s else { return Ok(None) };
    let trace = parse_trace(record)?;
    Ok(Some(BestKernel { trace, median_s, gflops: gflops(task, median_s) }))
}

/// The proposed traces that are new: not measured, not repeated within the batch; at most `want`.
fn fresh_traces(proposed: Vec<Trace>, measured: &HashSet<String>, want: usize) -> Vec<Trace> {
    let mut keys = HashSet::new();
    proposed
        .into_iter()
        .filter(|trace| {
            let key = trace.key();
            !measured.contains(&key) && keys.insert(key)
        })
        .take(want)
        .collect()
}

/// Turns an outcome the log would refuse into a recorded failure, so one bad report from the
/// runner cannot reject the whole batch: an `Ok` needs at least one finite positive time.
fn sanitize(mut outcome: MeasureOutcome) -> MeasureOutcome {
    if !(outcome.build_time_s.is_finite() && outcome.build_time_s >= 0.0) {
        outcome.build_time_s = 0.0;
    }
    let bad_time = outcome.repeat_times_s.iter().copied().find(|time| !(time.is_finite() && *time > 0.0));
    match bad_time {
        Some(bad) => {
            outcome.repeat_times_s.clear();
            if outcome.status.is_ok() {
                outcome.status = TrialStatus::RunError;
                outcome.error = Some(format!("the runner reported ok with an invalid repeat time ({bad} s)"));
            }
        }
        None if outcome.status.is_ok() && outcome.repeat_times_s.is_empty() => {
            outcome.status = TrialStatus::RunError;
            outcome.error = Some("the runner reported ok without any repeat time".to_string());
        }
        None => {}
    }
    outcome
}

fn gflops(task: &Task, median_s: f64) -> f64 {
    task.flops() / median_s / 1e9
}

fn parse_trace(record: &TrialRecord) -> Result<Trace, SearchError> {
    Trace::from_json(&record.trace_json)
        .map_err(|source| SearchError::CorruptTrace { trace_key: record.trace_key.clone(), source })
}

fn workload_spec(task: &Task) -> WorkloadSpec {
    WorkloadSpec {
        task_key: task.key().0,
        op: task.op_name().to_string(),
        description: task.description(),
        task_json: task.canonical_json(),
        flops: task.flops(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{RandomSearch, RandomSearchConfig};
    use crate::testing::{fails_to_build, fake_time_s, planted_wrong, FakeRunner, FakeSpace};

    const CODEGEN: &str = "fake-codegen-1";

    /// Without the confirmation rounds: these tests count what the search loop measures.
    fn config(n_trials: usize, batch_size: usize) -> TuneConfig {
        TuneConfig {
            batch_size,
            command: "autotune tune --test".to_string(),
            confirm_rounds: 0,
            ..TuneConfig::new(n_trials, 7, CODEGEN)
        }
    }

    fn run_random(
        db: &mut Database,
        runner: &mut dyn Runner,
        seed: u64,
        config: &TuneConfig,
    ) -> Result<TuneSummary, SearchError> {
        let space = FakeSpace::new();
        let mut strategy = RandomSearch::new(&space, RandomSearchConfig::new(seed));
        run_fake(db, runner, &mut strategy, config)
    }

    /// One uncancelled session over the fake space.
    fn run_fake(
        db: &mut Database,
        runner: &mut dyn Runner,
        strategy: &mut dyn SearchStrategy,
        config: &TuneConfig,
    ) -> Result<TuneSummary, SearchError> {
        let space = FakeSpace::new();
        tune(space.task(), &space, strategy, runner, db, config, &AtomicBool::new(false), &mut |_| {})
    }

    /// The best time over the `ok` trials of `reports`.
    fn best_median_s<'a>(reports: impl IntoIterator<Item = &'a TrialReport>) -> Option<f64> {
        reports.into_iter().filter_map(|report| report.outcome.median_s()).reduce(f64::min)
    }

    fn db_trials(db: &Database) -> Vec<TrialRecord> {
        let space = FakeSpace::new();
        let target = FakeRunner::new().target().clone();
        db.trials(&space.task().key().0, &target.key()).expect("read trials")
    }

    #[test]
    fn planted_wrong_result_is_recorded_and_never_best() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let n_points = FakeSpace::new().size() as usize;
        let summary = run_random(&mut db, &mut runner, 3, &config(n_points, 8)).expect("tune");

        assert_eq!(summary.trials.len(), n_points);
        assert_eq!(summary.stopped_early, None);
        let planted_key = planted_wrong().key();
        let stored = db_trials(&db);
        let planted_row =
            stored.iter().find(|row| row.trace_key == planted_key).expect("planted trace recorded");
        assert_eq!(planted_row.status, TrialStatus::WrongResult);
        assert_eq!(planted_row.median_s, None);

        let best = summary.best.expect("a best kernel");
        assert_ne!(best.trace, planted_wrong());
        assert!(fake_time_s(&planted_wrong()) < best.median_s, "the planted trace is the fastest");
        assert_eq!(Some(best.median_s), best_median_s(&summary.trials));
        let n_build_errors = summary.trials.iter().filter(|report| fails_to_build(&report.trace)).count();
        assert_eq!(summary.n_errors, 1 + n_build_errors);
        for report in &summary.trials {
            assert_eq!(report.gflops.is_some(), report.outcome.status.is_ok(), "{}", report.trace.display());
        }
        let flops = FakeSpace::new().task().flops();
        assert!((best.gflops - flops / best.median_s / 1e9).abs() < 1e-9);
    }

    #[test]
    fn exhausting_the_space_stops_early() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let n_points = FakeSpace::new().size() as usize;
        let summary = run_random(&mut db, &mut runner, 5, &config(n_points + 10, 8)).expect("tune");
        assert_eq!(summary.trials.len(), n_points);
        assert_eq!(summary.stopped_early, Some(StopReason::SpaceExhausted));
        assert_eq!(db_trials(&db).len(), n_points);
    }

    #[test]
    fn resumed_session_adds_trials_without_measuring_a_trace_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.tuning.db");
        let mut runner = FakeRunner::new();
        let first = {
            let mut db = Database::open(&path).expect("open");
            run_random(&mut db, &mut runner, 11, &config(10, 4)).expect("first session")
        };
        // Same seed: the strategy would propose the same traces again if the log did not stop it.
        let mut db = Database::open(&path).expect("reopen");
        let second = run_random(&mut db, &mut runner, 11, &config(10, 4)).expect("second session");

        assert_ne!(first.session, second.session);
        assert_eq!((first.trials.len(), second.trials.len()), (10, 10));
        let stored = db_trials(&db);
        assert_eq!(stored.len(), 20);
        let keys: HashSet<&str> = stored.iter().map(|row| row.trace_key.as_str()).collect();
        assert_eq!(keys.len(), 20, "a trace was recorded twice");
        let measured: HashSet<String> = runner.measured.iter().map(Trace::key).collect();
        assert_eq!(measured.len(), runner.measured.len(), "a trace was measured twice");
        assert_eq!(db.session_trials(first.session).expect("first").len(), 10);
        assert_eq!(db.session_trials(second.session).expect("second").len(), 10);

        let best_of_both = best_median_s(first.trials.iter().chain(&second.trials));
        assert_eq!(second.best.as_ref().map(|best| best.median_s), best_of_both);
        let best_row = db.best(&FakeSpace::new().task().key().0, &runner.target().key(), 1).expect("best");
        assert_eq!(
            best_row.first().map(|row| row.trace_key.clone()),
            second.best.map(|best| best.trace.key())
        );
        for session in db.sessions().expect("sessions") {
            assert!(session.ended_at.is_some(), "session {:?} was not ended", session.id);
        }
    }

    #[test]
    fn trials_of_another_codegen_version_neither_count_as_measured_nor_win() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let n_points = FakeSpace::new().size() as usize;
        let old = TuneConfig { codegen_version: "old-codegen".to_string(), ..config(n_points, 8) };
        let old_summary = run_random(&mut db, &mut runner, 1, &old).expect("old session");
        let new = run_random(&mut db, &mut runner, 1, &config(5, 8)).expect("new session");
        assert_eq!(new.trials.len(), 5, "the old codegen's trials do not exhaust the space");
        let best = new.best.expect("best");
        assert_eq!(Some(best.median_s), best_median_s(&new.trials));
        assert!(old_summary.best.expect("old best").median_s <= best.median_s);
    }

    /// Wraps a strategy and remembers what it was told.
    struct Recording<S> {
        inner: S,
        observed: Vec<Vec<(Trace, MeasureOutcome)>>,
    }

    impl<S: SearchStrategy> SearchStrategy for Recording<S> {
        fn name(&self) -> &'static str {
            self.inner.name()
        }
        fn propose(&mut self, n: usize, already_measured: &HashSet<String>) -> Vec<Trace> {
            self.inner.propose(n, already_measured)
        }
        fn observe(&mut self, results: &[(Trace, MeasureOutcome)]) {
            self.observed.push(results.to_vec());
            self.inner.observe(results);
        }
    }

    #[test]
    fn resumed_strategy_first_observes_the_earlier_results() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let first = run_random(&mut db, &mut runner, 1, &config(6, 3)).expect("first session");

        let space = FakeSpace::new();
        let mut strategy =
            Recording { inner: RandomSearch::new(&space, RandomSearchConfig::new(2)), observed: Vec::new() };
        let cancel = AtomicBool::new(false);
        let second = tune(
            space.task(),
            &space,
            &mut strategy,
            &mut runner,
            &mut db,
            &config(3, 3),
            &cancel,
            &mut |_| {},
        )
        .expect("second session");
        assert_eq!(strategy.observed.len(), 2, "history, then one batch");
        let history: Vec<Trace> = strategy.observed[0].iter().map(|(trace, _)| trace.clone()).collect();
        let first_traces: Vec<Trace> = first.trials.iter().map(|report| report.trace.clone()).collect();
        assert_eq!(history, first_traces);
        for ((_, outcome), report) in strategy.observed[0].iter().zip(&first.trials) {
            assert_eq!(outcome.status, report.outcome.status);
            assert_eq!(outcome.median_s(), report.outcome.median_s());
        }
        assert_eq!(strategy.observed[1].len(), second.trials.len());
    }

    #[test]
    fn cancelling_in_on_batch_stops_after_that_committed_batch() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let space = FakeSpace::new();
        let mut strategy = RandomSearch::new(&space, RandomSearchConfig::new(9));
        let cancel = AtomicBool::new(false);
        let mut n_calls = 0;
        let mut on_batch = |progress: &Progress| {
            n_calls += 1;
            assert_eq!(progress.trials_done, 4);
            cancel.store(true, Ordering::SeqCst);
        };
        let summary = tune(
            space.task(),
            &space,
            &mut strategy,
            &mut runner,
            &mut db,
            &config(20, 4),
            &cancel,
            &mut on_batch,
        )
        .expect("tune");
        assert_eq!(n_calls, 1);
        assert_eq!(summary.stopped_early, Some(StopReason::Cancelled));
        assert_eq!(summary.trials.len(), 4);
        assert_eq!(runner.batch_sizes, vec![4]);
        assert_eq!(db.session_trials(summary.session).expect("trials").len(), 4, "the batch was committed");
        let sessions = db.sessions().expect("sessions");
        assert!(sessions.iter().all(|session| session.ended_at.is_some()));
    }

    #[test]
    fn cancelled_before_the_first_batch_measures_nothing() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let space = FakeSpace::new();
        let mut strategy = RandomSearch::new(&space, RandomSearchConfig::new(9));
        let cancel = AtomicBool::new(true);
        let summary = tune(
            space.task(),
            &space,
            &mut strategy,
            &mut runner,
            &mut db,
            &config(20, 4),
            &cancel,
            &mut |_| {},
        )
        .expect("tune");
        assert_eq!(summary.stopped_early, Some(StopReason::Cancelled));
        assert!(summary.trials.is_empty() && runner.measured.is_empty());
        assert_eq!(summary.best, None);
    }

    #[test]
    fn n_trials_not_a_multiple_of_the_batch_size_gives_exactly_n_trials() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let space = FakeSpace::new();
        let mut strategy = RandomSearch::new(&space, RandomSearchConfig::new(4));
        let cancel = AtomicBool::new(false);
        let mut progress_seen = Vec::new();
        let mut on_batch = |progress: &Progress| {
            let indices: Vec<usize> = progress.last_batch.iter().map(|report| report.index).collect();
            progress_seen.push((progress.trials_done, progress.n_trials, indices, progress.best_gflops));
        };
        let summary = tune(
            space.task(),
            &space,
            &mut strategy,
            &mut runner,
            &mut db,
            &config(10, 4),
            &cancel,
            &mut on_batch,
        )
        .expect("tune");
        assert_eq!(summary.trials.len(), 10);
        assert_eq!(summary.stopped_early, None);
        assert_eq!(runner.batch_sizes, vec![4, 4, 2]);
        assert_eq!(db.session_trials(summary.session).expect("trials").len(), 10);
        let indices: Vec<usize> = summary.trials.iter().map(|report| report.index).collect();
        assert_eq!(indices, (0..10).collect::<Vec<_>>());
        let done: Vec<(usize, usize, Vec<usize>)> =
            progress_seen.iter().map(|(done, n, indices, _)| (*done, *n, indices.clone())).collect();
        assert_eq!(done, vec![(4, 10, vec![0, 1, 2, 3]), (8, 10, vec![4, 5, 6, 7]), (10, 10, vec![8, 9])]);
        let best_gflops: Vec<f64> = progress_seen.iter().filter_map(|(.., best)| *best).collect();
        assert!(best_gflops.windows(2).all(|pair| pair[0] <= pair[1]), "best only improves: {best_gflops:?}");
        assert_eq!(best_gflops.last().copied(), summary.best.map(|best| best.gflops));
    }

    /// Proposes the default trace over and over, the way a buggy strategy might.
    struct Stubborn;

    impl SearchStrategy for Stubborn {
        fn name(&self) -> &'static str {
            "stubborn"
        }
        fn propose(&mut self, n: usize, _already_measured: &HashSet<String>) -> Vec<Trace> {
            vec![FakeSpace::new().default_trace(); n + 1]
        }
        fn observe(&mut self, _results: &[(Trace, MeasureOutcome)]) {}
    }

    #[test]
    fn a_strategy_repeating_itself_never_causes_a_duplicate_measurement() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let space = FakeSpace::new();
        let cancel = AtomicBool::new(false);
        let summary = tune(
            space.task(),
            &space,
            &mut Stubborn,
            &mut runner,
            &mut db,
            &config(10, 4),
            &cancel,
            &mut |_| {},
        )
        .expect("tune");
        assert_eq!(runner.measured, vec![space.default_trace()]);
        assert_eq!(summary.trials.len(), 1);
        assert_eq!(summary.stopped_early, Some(StopReason::SpaceExhausted));
        assert_eq!(db_trials(&db).len(), 1);
    }

    /// Times each trace of `lucky` that many times too fast the first time it is measured (a
    /// lucky window), truly after.
    struct LuckyFirstWindows {
        inner: FakeRunner,
        lucky: Vec<(Trace, f64)>,
        seen: HashSet<String>,
    }

    impl LuckyFirstWindows {
        fn new(lucky: Vec<(Trace, f64)>) -> Self {
            LuckyFirstWindows { inner: FakeRunner::new(), lucky, seen: HashSet::new() }
        }
    }

    impl Runner for LuckyFirstWindows {
        fn target(&self) -> &Target {
            self.inner.target()
        }
        fn measure_batch(&mut self, task: &Task, traces: &[Trace]) -> Vec<MeasureOutcome> {
            let mut outcomes = self.inner.measure_batch(task, traces);
            for (trace, outcome) in traces.iter().zip(&mut outcomes) {
                if let Some((_, speedup)) = self.lucky.iter().find(|(t, _)| t == trace) {
                    if self.seen.insert(trace.key()) {
                        outcome.repeat_times_s.iter_mut().for_each(|t| *t /= speedup);
                    }
                }
            }
            outcomes
        }
    }

    #[test]
    fn confirmation_rounds_demote_a_trial_timed_in_a_lucky_window() {
        let n_points = FakeSpace::new().size() as usize;
        // (0, 0, 0) is the planted wrong result: (1, 0, 0) is the fastest valid point, 2 ms.
        let truly_fastest = FakeSpace::point(1, 0, 0);
        // 3 ms, timed at 1 ms once.
        let lucky = FakeSpace::point(2, 0, 0);
        let winner_with = |confirm_rounds: usize| {
            let mut db = Database::open_in_memory().expect("db");
            let mut runner = LuckyFirstWindows::new(vec![(lucky.clone(), 3.0)]);
            let config = TuneConfig { confirm_rounds, ..config(n_points, 8) };
            let summary = run_random(&mut db, &mut runner, 5, &config).expect("tune");
            let times_lucky_measured = runner.inner.measured.iter().filter(|t| **t == lucky).count();
            (summary.best.expect("a winner").trace, times_lucky_measured, db_trials(&db))
        };

        let (winner, measured, _) = winner_with(0);
        assert_eq!((winner, measured), (lucky.clone(), 1), "one window: the lucky time wins");

        let (winner, measured, trials) = winner_with(2);
        assert_eq!(winner, truly_fastest, "three windows: the median is the true time");
        assert!(measured >= 3, "timed in the session and in at least two more windows, got {measured}");
        let lucky_trial = trials.iter().find(|t| t.trace_key == lucky.key()).expect("lucky trial");
        assert_eq!(lucky_trial.repeat_times_s.len(), 3 * measured, "every window's repeats are kept");
        assert_eq!(trials.len(), n_points, "confirming adds repeats, not trials");
    }

    #[test]
    fn confirmation_goes_on_until_the_leader_was_timed_in_several_windows() {
        let space = FakeSpace::new();
        let n_points = space.size() as usize;
        // (0, 0, 0) is the planted wrong result: (1, 0, 0) is the fastest valid point, 2 ms.
        let truly_fastest = FakeSpace::point(1, 0, 0);
        // Two slow schedules (3 and 5 ms), each timed faster than anything in its first window.
        let lucky = vec![(FakeSpace::point(2, 0, 0), 6.0), (FakeSpace::point(0, 1, 0), 8.0)];
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = LuckyFirstWindows::new(lucky.clone());
        // Tuned without confirming: the log leads with the two lucky windows.
        run_random(&mut db, &mut runner, 5, &config(n_points, 8)).expect("tune");
        let leader = |db: &Database| {
            let trials = db_trials(db);
            let best = trials
                .iter()
                .filter(|t| t.median_s.is_some())
                .min_by(|a, b| a.median_s.partial_cmp(&b.median_s).expect("times"))
                .expect("a leader")
                .clone();
            (Trace::from_json(&best.trace_json).expect("trace"), best.windows)
        };
        assert_eq!(leader(&db), (lucky[0].0.clone(), 1));

        // One leader confirmed at a time: the first lucky one, then the second, then the fastest.
        let confirming = TuneConfig { confirm_rounds: 2, confirm_leaders: 1, ..config(n_points, 8) };
        confirm_leaders(space.task(), space.version(), &mut runner, &mut db, &confirming, None)
            .expect("confirm");
        assert_eq!(leader(&db), (truly_fastest.clone(), 3), "the winner was timed in three windows");
        for (trace, _) in &lucky {
            let row = db_trials(&db).into_iter().find(|t| t.trace_key == trace.key()).expect("row");
            assert_eq!(row.windows, 3, "{} was timed again until outvoted", trace.display());
        }

        // Confirmed leaders stay confirmed: confirming again measures nothing.
        let measured = runner.inner.measured.len();
        confirm_leaders(space.task(), space.version(), &mut runner, &mut db, &confirming, None)
            .expect("again");
        assert_eq!(runner.inner.measured.len(), measured);
        assert_eq!(leader(&db), (truly_fastest, 3));
    }

    /// Random search that remembers the median time it was told for each trace.
    struct Listening<'a> {
        inner: RandomSearch<'a>,
        told: Vec<(Trace, Option<f64>)>,
    }

    impl SearchStrategy for Listening<'_> {
        fn name(&self) -> &'static str {
            "listening"
        }
        fn propose(&mut self, n: usize, already_measured: &HashSet<String>) -> Vec<Trace> {
            self.inner.propose(n, already_measured)
        }
        fn observe(&mut self, results: &[(Trace, MeasureOutcome)]) {
            self.told.extend(results.iter().map(|(trace, outcome)| (trace.clone(), outcome.median_s())));
            self.inner.observe(results);
        }
    }

    #[test]
    fn a_new_best_is_timed_again_before_the_strategy_credits_it() {
        let n_points = FakeSpace::new().size() as usize;
        // About 3 ms, timed at a third of that the first time: faster than anything else then.
        let lucky = FakeSpace::point(2, 0, 0);
        // FakeRunner's repeats are the point's time × 1.1, 1, 1.05: the median is × 1.05.
        let true_s = fake_time_s(&lucky) * 1.05;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let told_with = |confirm_rounds: usize| {
            let space = FakeSpace::new();
            let mut db = Database::open_in_memory().expect("db");
            let mut runner = LuckyFirstWindows::new(vec![(lucky.clone(), 3.0)]);
            let mut strategy =
                Listening { inner: RandomSearch::new(&space, RandomSearchConfig::new(5)), told: vec![] };
            let config = TuneConfig { confirm_rounds, confirm_leaders: 0, ..config(n_points, 8) };
            let summary = run_fake(&mut db, &mut runner, &mut strategy, &config).expect("tune");
            let told = strategy.told.iter().find(|(t, _)| *t == lucky).and_then(|(_, m)| *m).expect("told");
            let report = summary.trials.iter().find(|r| r.trace == lucky).expect("reported").clone();
            let measured = runner.inner.measured.len();
            (told, report, measured, db_trials(&db))
        };

        let (told, report, measured, _) = told_with(0);
        assert_eq!(
            (told, report.outcome.repeat_times_s.len()),
            (true_s / 3.0, 3),
            "unconfirmed: the lucky window"
        );
        assert_eq!(measured, n_points);

        let (told, report, measured, trials) = told_with(2);
        // Nine repeats: the lucky three, then twice (1.1, 1, 1.05) × the true time; the median is 1 ×.
        assert!(close(told, fake_time_s(&lucky)), "confirmed: the median is a true window's, told {told}");
        assert_eq!(report.outcome.repeat_times_s.len(), 9);
        assert_eq!(
            report.gflops,
            report.outcome.median_s().map(|m| FakeSpace::new().task().flops() / m / 1e9)
        );
        let row = trials.iter().find(|t| t.trace_key == lucky.key()).expect("row");
        assert_eq!(row.repeat_times_s, report.outcome.repeat_times_s, "the log holds the same windows");
        assert!(measured > n_points, "new bests cost extra windows");
        assert!(measured <= 3 * n_points / 2, "only new bests are confirmed: {measured} for {n_points}");
    }

    /// Loses the last outcome of every batch.
    struct ShortRunner(FakeRunner);

    impl Runner for ShortRunner {
        fn target(&self) -> &Target {
            self.0.target()
        }
        fn measure_batch(&mut self, task: &Task, traces: &[Trace]) -> Vec<MeasureOutcome> {
            let mut outcomes = self.0.measure_batch(task, traces);
            outcomes.pop();
            outcomes
        }
    }

    #[test]
    fn a_runner_breaking_its_contract_is_an_error_and_the_session_still_ends() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = ShortRunner(FakeRunner::new());
        let space = FakeSpace::new();
        let mut strategy = RandomSearch::new(&space, RandomSearchConfig::new(4));
        let cancel = AtomicBool::new(false);
        let error = tune(
            space.task(),
            &space,
            &mut strategy,
            &mut runner,
            &mut db,
            &config(8, 4),
            &cancel,
            &mut |_| {},
        )
        .expect_err("short batch");
        assert!(matches!(error, SearchError::RunnerContract { expected: 4, got: 3 }), "{error}");
        assert!(!error.to_string().contains('\n'));
        let sessions = db.sessions().expect("sessions");
        assert_eq!(sessions.len(), 1);
        assert!(sessions[0].ended_at.is_some());
    }

    #[test]
    fn zero_batch_size_is_refused() {
        let mut db = Database::open_in_memory().expect("db");
        let error = run_random(&mut db, &mut FakeRunner::new(), 0, &config(8, 0)).expect_err("batch size 0");
        assert!(matches!(error, SearchError::InvalidConfig { .. }), "{error}");
        assert!(db.sessions().expect("sessions").is_empty());
    }

    #[test]
    fn an_ok_without_valid_times_is_recorded_as_a_run_error() {
        let no_times = sanitize(MeasureOutcome {
            status: TrialStatus::Ok,
            error: None,
            repeat_times_s: vec![],
            build_time_s: 0.1,
        });
        assert_eq!(no_times.status, TrialStatus::RunError);
        assert!(no_times.error.is_some());
        let nan = sanitize(MeasureOutcome {
            status: TrialStatus::Ok,
            error: None,
            repeat_times_s: vec![1e-3, f64::NAN],
            build_time_s: f64::INFINITY,
        });
        assert_eq!((nan.status, nan.repeat_times_s.len(), nan.build_time_s), (TrialStatus::RunError, 0, 0.0));
        let fine = MeasureOutcome {
            status: TrialStatus::Ok,
            error: None,
            repeat_times_s: vec![1e-3, 2e-3],
            build_time_s: 0.1,
        };
        assert_eq!(sanitize(fine.clone()), fine);
    }
}
