//! Reading a tuning log into a [`Report`]: every figure of the report is computed here, from the
//! log alone (plus this build's schedule spaces, to name the default schedule and to read a
//! trace as loops).

use std::collections::{BTreeSet, HashMap};

use autotune_db::{
    Database, MachineMeasurementKind, SessionId, SessionRecord, TargetSpec, TrialRecord, TrialStatus,
    WorkloadSpec,
};
use autotune_ir::{Target, Task};
use autotune_schedules::space_for;

use crate::error::ReportError;
use crate::model::{
    BestTrial, DefaultBaseline, EndToEndLatency, FirstError, LatencyComparison, Measured, ModelWeights,
    Report, SessionSummary, TargetSummary, TaskSummary, Totals, TrialPoint,
};
use crate::schedule_text;
use crate::timeline::{parse_rfc3339_utc, TuningClock};

/// The weight of a task when no model weighs it: `autotune op` tunes one operator instance, run
/// once. A model's tasks weigh their calls per run ([`Report::weigh_by_model`]).
pub const OP_TASK_WEIGHT: f64 = 1.0;

/// Reads everything a report shows from `db`, which may be a log a tuning run is still writing
/// (open it with [`Database::open_read_only`]). `source` is how the report names the log.
pub fn collect(db: &Database, source: &str) -> Result<Report, ReportError> {
    let workloads = db.workloads()?;
    let targets = db.targets()?;
    let sessions = db.sessions()?;

    let mut pairs = Vec::new();
    for (_, workload) in &workloads {
        for (target_index, (_, target)) in targets.iter().enumerate() {
            let trials = db.trials(&workload.task_key, &target.target_key)?;
            if !trials.is_empty() {
                pairs.push(TaskTrials { workload, target, target_number: target_index + 1, trials });
            }
        }
    }
    let all_trials: Vec<&TrialRecord> = pairs.iter().flat_map(|pair| &pair.trials).collect();

    let mut last_trial_at: HashMap<SessionId, f64> = HashMap::new();
    for trial in &all_trials {
        if let Some(at) = parse_rfc3339_utc(&trial.recorded_at) {
            let last = last_trial_at.entry(trial.session).or_insert(at);
            *last = last.max(at);
        }
    }
    let clock = TuningClock::new(&sessions, &last_trial_at);

    let mut target_summaries = Vec::with_capacity(targets.len());
    for (index, (_, spec)) in targets.iter().enumerate() {
        target_summaries.push(target_summary(db, index + 1, spec)?);
    }
    let mut tasks: Vec<TaskSummary> = pairs
        .iter()
        .enumerate()
        .map(|(index, pair)| task_summary(index + 1, pair, &target_summaries[pair.target_number - 1], &clock))
        .collect();
    for target in &mut target_summaries {
        target.latency = apportion_latency(target.number, &mut tasks);
    }
    sort_by_share(&mut tasks);

    let strategies: BTreeSet<String> = all_trials.iter().map(|trial| trial.strategy.clone()).collect();
    let totals = Totals {
        n_workloads: workloads.len(),
        n_sessions: sessions.len(),
        n_open_sessions: sessions.iter().filter(|session| session.ended_at.is_none()).count(),
        n_trials: all_trials.len(),
        n_errors: all_trials.iter().filter(|trial| !trial.status.is_ok()).count(),
    };
    Ok(Report {
        source: source.to_string(),
        schema_version: db.schema_version()?,
        totals,
        sessions: sessions
            .iter()
            .map(|session| session_summary(session, &all_trials, &last_trial_at))
            .collect(),
        targets: target_summaries,
        workloads: workloads.iter().map(|(_, workload)| workload.description.clone()).collect(),
        tasks,
        strategies: strategies.into_iter().collect(),
        model_profile: None,
        model: None,
    })
}

impl Report {
    /// Weighs each task by how many times `model` runs it per inference (`calls_per_run`: task
    /// key → calls; a task of the log the model does not run weighs 0), and recomputes what the
    /// weights decide: each target's end-to-end latency, the tasks' shares and their order.
    pub fn weigh_by_model(&mut self, model: &str, calls_per_run: &HashMap<String, f64>) {
        let in_log: BTreeSet<&str> = self.tasks.iter().map(|task| task.task_key.as_str()).collect();
        let n_model_tasks_not_in_log =
            calls_per_run.keys().filter(|key| !in_log.contains(key.as_str())).count();
        // A task tuned for several targets has a row per target: count it once.
        let n_log_tasks_not_in_model = in_log.iter().filter(|key| !calls_per_run.contains_key(**key)).count();
        for task in &mut self.tasks {
            task.weight = calls_per_run.get(&task.task_key).copied().unwrap_or(0.0);
        }
        for target in &mut self.targets {
            target.latency = apportion_latency(target.number, &mut self.tasks);
        }
        sort_by_share(&mut self.tasks);
        self.model = Some(ModelWeights {
            model: model.to_string(),
            calls_per_run: calls_per_run.values().sum(),
            n_model_tasks_not_in_log,
            n_log_tasks_not_in_model,
        });
    }
}

/// Largest share of its target's total first, then by number.
fn sort_by_share(tasks: &mut [TaskSummary]) {
    tasks.sort_by(|a, b| {
        let share = |task: &TaskSummary| task.share_of_total.unwrap_or(-1.0);
        share(b).total_cmp(&share(a)).then(a.number.cmp(&b.number))
    });
}

/// The trials of one workload on one target.
struct TaskTrials<'a> {
    workload: &'a WorkloadSpec,
    target: &'a TargetSpec,
    target_number: usize,
    /// In the order recorded.
    trials: Vec<TrialRecord>,
}

fn target_summary(db: &Database, number: usize, spec: &TargetSpec) -> Result<TargetSummary, ReportError> {
    let parsed: Option<Target> = serde_json::from_str(&spec.target_json).ok();
    let cpu = parsed.as_ref().and_then(Target::as_cpu);
    let features = match cpu {
        Some(cpu) => {
            cpu.features.iter().filter_map(|feature| feature.strip_prefix('+')).map(String::from).collect()
        }
        None => spec.features.split(',').filter(|feature| !feature.is_empty()).map(String::from).collect(),
    };
    let measurements = db.machine_measurements(&spec.target_key)?;
    let measured = |kind: MachineMeasurementKind| {
        measurements.iter().find(|m| m.kind == kind).map(|m| Measured {
            value: m.value,
            method: m.method.clone(),
            measured_at: m.measured_at.clone(),
        })
    };
    Ok(TargetSummary {
        number,
        target_key: spec.target_key.clone(),
        kind: spec.kind.clone(),
        name: spec.name.clone(),
        llvm_cpu: cpu.map(|cpu| cpu.llvm_cpu.clone()),
        features,
        vector_lanes: cpu.map(|cpu| cpu.vector_lanes),
        threads: spec.threads,
        peak_gflops: measured(MachineMeasurementKind::PeakGflops),
        bandwidth_gbs: measured(MachineMeasurementKind::BandwidthGbs),
        latency: EndToEndLatency { n_tasks: 0, n_tuned: 0, tuned_s: None, comparison: None },
    })
}

fn task_summary(
    number: usize,
    pair: &TaskTrials,
    target: &TargetSummary,
    clock: &TuningClock,
) -> TaskSummary {
    let workload = pair.workload;
    let task: Option<Task> = serde_json::from_str(&workload.task_json).ok();
    let target_ir: Option<Target> = serde_json::from_str(&pair.target.target_json).ok();
    let flops = workload.flops;
    let gflops_at = |median_s: f64| flops / median_s / 1e9;
    let intensity_flop_per_byte =
        task.as_ref().map(Task::min_bytes).filter(|bytes| *bytes > 0.0).map(|bytes| flops / bytes);

    let status_counts: Vec<(TrialStatus, usize)> = TrialStatus::ALL
        .into_iter()
        .map(|status| (status, pair.trials.iter().filter(|trial| trial.status == status).count()))
        .collect();
    let first_errors = TrialStatus::ALL
        .into_iter()
        .filter(|status| !status.is_ok())
        .filter_map(|status| {
            pair.trials.iter().find(|trial| trial.status == status).map(|trial| FirstError {
                status,
                trial_id: trial.id.0,
                text: trial.error.clone().unwrap_or_default(),
            })
        })
        .collect();

    // The fastest ok trial by median; the earliest on a tie, as `Database::best` orders them.
    let best_record = pair
        .trials
        .iter()
        .filter_map(|trial| trial.median_s.filter(|_| trial.status.is_ok()).map(|median_s| (trial, median_s)))
        .reduce(|best, next| if next.1 < best.1 { next } else { best });
    let best = best_record.map(|(trial, median_s)| BestTrial {
        trial_id: trial.id.0,
        median_s,
        gflops: gflops_at(median_s),
        strategy: trial.strategy.clone(),
        space_version: trial.space_version.clone(),
        schedule: schedule_text::describe(
            &trial.trace_json,
            &trial.space_version,
            task.as_ref(),
            target_ir.as_ref(),
        ),
    });
    let default = default_baseline(
        task.as_ref(),
        target_ir.as_ref(),
        &pair.trials,
        best_record.map(|(trial, _)| trial.codegen_version.as_str()),
        gflops_at,
    );

    let peak = target.peak_gflops.as_ref().map(|m| m.value);
    let bandwidth = target.bandwidth_gbs.as_ref().map(|m| m.value);
    let roofline_bound_gflops = match (peak, bandwidth, intensity_flop_per_byte) {
        (Some(peak), Some(bandwidth), Some(intensity)) => Some(peak.min(intensity * bandwidth)),
        _ => None,
    };
    let best_gflops = best.as_ref().map(|best| best.gflops);
    let pct_of_peak = best_gflops.zip(peak).map(|(gflops, peak)| 100.0 * gflops / peak);
    let pct_of_roofline =
        best_gflops.zip(roofline_bound_gflops).map(|(gflops, bound)| 100.0 * gflops / bound);
    let speedup_over_default = match (&default, &best) {
        (DefaultBaseline::Measured { median_s, .. }, Some(best)) => Some(median_s / best.median_s),
        _ => None,
    };

    TaskSummary {
        number,
        task_key: workload.task_key.clone(),
        target_key: pair.target.target_key.clone(),
        target_number: pair.target_number,
        op: workload.op.clone(),
        shape: workload
            .description
            .strip_prefix(&workload.op)
            .unwrap_or(&workload.description)
            .trim()
            .to_string(),
        description: workload.description.clone(),
        weight: OP_TASK_WEIGHT,
        flops,
        intensity_flop_per_byte,
        n_trials: pair.trials.len(),
        status_counts,
        first_errors,
        best,
        default,
        pct_of_peak,
        roofline_bound_gflops,
        pct_of_roofline,
        speedup_over_default,
        share_of_total: None,
        convergence: convergence(&pair.trials, clock, gflops_at),
    }
}

/// The log's trial of this build's default schedule for the task, if any: the one measured with
/// the best trial's codegen version when there are several, else the latest.
fn default_baseline(
    task: Option<&Task>,
    target: Option<&Target>,
    trials: &[TrialRecord],
    best_codegen_version: Option<&str>,
    gflops_at: impl Fn(f64) -> f64,
) -> DefaultBaseline {
    let (Some(task), Some(target)) = (task, target) else {
        return DefaultBaseline::Unknown { reason: "this build cannot read the task or target".into() };
    };
    let space = match space_for(task, target) {
        Ok(space) => space,
        Err(error) => return DefaultBaseline::Unknown { reason: error.to_string() },
    };
    let default_key = space.default_trace().key();
    let candidates: Vec<&TrialRecord> = trials
        .iter()
        .filter(|trial| trial.trace_key == default_key && trial.space_version == space.version())
        .collect();
    let chosen = candidates
        .iter()
        .rev()
        .find(|trial| Some(trial.codegen_version.as_str()) == best_codegen_version)
        .or_else(|| candidates.last());
    match chosen {
        None => DefaultBaseline::NotMeasured,
        Some(trial) => match trial.median_s.filter(|_| trial.status.is_ok()) {
            Some(median_s) => DefaultBaseline::Measured { median_s, gflops: gflops_at(median_s) },
            None => DefaultBaseline::Failed { status: trial.status },
        },
    }
}

fn convergence(
    trials: &[TrialRecord],
    clock: &TuningClock,
    gflops_at: impl Fn(f64) -> f64,
) -> Vec<TrialPoint> {
    let mut best: Option<f64> = None;
    trials
        .iter()
        .enumerate()
        .map(|(index, trial)| {
            let gflops = trial.median_s.filter(|_| trial.status.is_ok()).map(&gflops_at);
            let improved = gflops.is_some_and(|gflops| best.is_none_or(|best| gflops > best));
            if improved {
                best = gflops;
            }
            TrialPoint {
                trial_number: index + 1,
                tuning_time_s: clock.at(trial.session, &trial.recorded_at),
                gflops,
                best_gflops: best,
                improved,
                strategy: trial.strategy.clone(),
            }
        })
        .collect()
}

/// Fills in the tasks' shares of their target's tuned total and returns the target's end-to-end
/// latency: Σ weight × latency over its tasks.
fn apportion_latency(target_number: usize, tasks: &mut [TaskSummary]) -> EndToEndLatency {
    let mut of_target: Vec<&mut TaskSummary> =
        tasks.iter_mut().filter(|task| task.target_number == target_number).collect();
    let tuned: Vec<f64> = of_target
        .iter()
        .filter_map(|task| task.best.as_ref().map(|best| task.weight * best.median_s))
        .collect();
    let tuned_s = (!tuned.is_empty()).then(|| tuned.iter().sum::<f64>());
    let compared: Vec<(f64, f64)> = of_target
        .iter()
        .filter_map(|task| match (&task.default, &task.best) {
            (DefaultBaseline::Measured { median_s, .. }, Some(best)) => {
                Some((task.weight * median_s, task.weight * best.median_s))
            }
            _ => None,
        })
        .collect();
    let comparison = (!compared.is_empty()).then(|| LatencyComparison {
        n_tasks: compared.len(),
        untuned_s: compared.iter().map(|(untuned, _)| untuned).sum(),
        tuned_s: compared.iter().map(|(_, tuned)| tuned).sum(),
    });
    if let Some(total) = tuned_s.filter(|total| *total > 0.0) {
        for task in &mut of_target {
            let weight = task.weight;
            task.share_of_total = task.best.as_ref().map(|best| weight * best.median_s / total);
        }
    }
    EndToEndLatency { n_tasks: of_target.len(), n_tuned: tuned.len(), tuned_s, comparison }
}

fn session_summary(
    session: &SessionRecord,
    all_trials: &[&TrialRecord],
    last_trial_at: &HashMap<SessionId, f64>,
) -> SessionSummary {
    let of_session: Vec<&&TrialRecord> =
        all_trials.iter().filter(|trial| trial.session == session.id).collect();
    let start = parse_rfc3339_utc(&session.started_at);
    let stop = session
        .ended_at
        .as_deref()
        .and_then(parse_rfc3339_utc)
        .or_else(|| last_trial_at.get(&session.id).copied());
    SessionSummary {
        id: session.id.0,
        started_at: session.started_at.clone(),
        ended_at: session.ended_at.clone(),
        duration_s: start.zip(stop).map(|(start, stop)| (stop - start).max(0.0)),
        command: session.command.clone(),
        strategy: session.strategy.clone(),
        seed: session.seed,
        tool_version: session.tool_version.clone(),
        n_trials: of_session.len(),
        n_errors: of_session.iter().filter(|trial| !trial.status.is_ok()).count(),
    }
}

#[cfg(test)]
mod tests;
