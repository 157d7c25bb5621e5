//! The report's content as plain data: every figure already computed from the tuning log, and
//! nothing about how it is drawn. [`crate::queries`] fills it; [`crate::html`] and
//! [`crate::charts`] only format it.

use autotune_ir::TrialStatus;

use crate::schedule_text::ScheduleText;

/// Everything a report shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// How the report names the tuning log (its file name).
    pub source: String,
    pub schema_version: u32,
    pub totals: Totals,
    /// Every target of the log, in the order first stored.
    pub targets: Vec<TargetSummary>,
    /// Every session, oldest first.
    pub sessions: Vec<SessionSummary>,
    /// Every workload, in the order first stored (a model's tasks, or the `autotune op` runs).
    pub workloads: Vec<String>,
    /// One per (workload, target) pair with at least one trial, by descending share of its
    /// target's total time, then by [`TaskSummary::number`].
    pub tasks: Vec<TaskSummary>,
    /// Every strategy a trial names, sorted: the order of the charts' colours.
    pub strategies: Vec<String>,
    /// Where a model's time went when `autotune run --profile` ran it with this log's kernels:
    /// not in the log, so only a page that run wrote has it.
    pub model_profile: Option<ModelProfile>,
    /// The model whose calls per run weigh the tasks ([`Report::weigh_by_model`]); `None`: every
    /// task counts once, as `autotune op` tunes them.
    pub model: Option<ModelWeights>,
}

/// What weighing a report by a model's tasks found.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelWeights {
    /// The model file, as the caller named it.
    pub model: String,
    /// Kernel calls per run of the model, all its tasks together.
    pub calls_per_run: f64,
    /// The model's tasks the log holds no trial of (weighed, but with no time to add).
    pub n_model_tasks_not_in_log: usize,
    /// The log's tasks the model does not run: weight 0.
    pub n_log_tasks_not_in_model: usize,
}

/// A model run with a timer around every node: per task (or kind of plain op) its time per run,
/// next to the run's measured latency.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelProfile {
    /// The model file, as the run named it.
    pub model: String,
    pub threads: u32,
    /// Timed runs of the latency, and profiled runs of the rows (as many again).
    pub runs: u64,
    /// Median latency of the untimed-node runs.
    pub latency_s: f64,
    /// Busiest first.
    pub rows: Vec<ProfiledWork>,
}

/// One task's kernel calls, or one kind of plain op, in a [`ModelProfile`].
#[derive(Clone, Debug, PartialEq)]
pub struct ProfiledWork {
    /// The task's description, or `(plain) OP`.
    pub what: String,
    /// Calls per run.
    pub calls: usize,
    /// Median over the profiled runs of the summed time of its calls.
    pub seconds: f64,
    /// Calls × its kernel's median time measured alone when tuned; `None` for a default schedule
    /// or a plain op.
    pub measured_alone_s: Option<f64>,
}

impl ModelProfile {
    /// Seconds per run in nodes, all rows together.
    pub fn in_nodes_s(&self) -> f64 {
        self.rows.iter().map(|r| r.seconds).sum()
    }
}

/// Counts over the whole log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    pub n_workloads: usize,
    pub n_sessions: usize,
    /// Sessions without an end time: still running, or killed.
    pub n_open_sessions: usize,
    pub n_trials: usize,
    /// Trials whose status is not `ok`.
    pub n_errors: usize,
}

/// A machine configuration trials ran on, with its measured ceilings.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetSummary {
    /// 1-based, in the order the log first stored the targets.
    pub number: usize,
    pub target_key: String,
    /// `cpu` (or `cuda`, later).
    pub kind: String,
    /// CPU model string or GPU name.
    pub name: String,
    /// LLVM's name for the CPU, when the target is a CPU this build can read.
    pub llvm_cpu: Option<String>,
    /// Enabled ISA features (without LLVM's `+`), or the compute capability.
    pub features: Vec<String>,
    /// fp32 lanes of the widest vector register.
    pub vector_lanes: Option<u32>,
    pub threads: u32,
    pub peak_gflops: Option<Measured>,
    pub bandwidth_gbs: Option<Measured>,
    pub latency: EndToEndLatency,
}

/// A ceiling measured by the tuning run.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub value: f64,
    pub method: String,
    pub measured_at: String,
}

/// The estimated end-to-end latency of a target's tasks: the sum over tasks of
/// weight × latency.
#[derive(Clone, Debug, PartialEq)]
pub struct EndToEndLatency {
    /// Tasks of this target in the log.
    pub n_tasks: usize,
    /// Tasks with a valid (`ok`) kernel.
    pub n_tuned: usize,
    /// Σ weight × best latency over the tuned tasks.
    pub tuned_s: Option<f64>,
    /// Untuned → tuned over the tasks that have both a measured default schedule and a best
    /// kernel; `None` when no task has both.
    pub comparison: Option<LatencyComparison>,
}

/// Untuned and tuned latency over the same tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyComparison {
    pub n_tasks: usize,
    /// Σ weight × default-schedule latency.
    pub untuned_s: f64,
    /// Σ weight × best latency.
    pub tuned_s: f64,
}

impl LatencyComparison {
    pub fn speedup(&self) -> f64 {
        self.untuned_s / self.tuned_s
    }
}

/// One session of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionSummary {
    pub id: i64,
    pub started_at: String,
    /// `None` while running, or when the run was killed.
    pub ended_at: Option<String>,
    /// From start to end (or, without an end, to its last recorded trial).
    pub duration_s: Option<f64>,
    pub command: String,
    pub strategy: String,
    pub seed: u64,
    pub tool_version: String,
    pub n_trials: usize,
    pub n_errors: usize,
}

/// One task on one target: its trials, its best kernel, and how good that kernel is.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSummary {
    /// 1-based, in log order (workload, then target); charts label points with it.
    pub number: usize,
    pub task_key: String,
    pub target_key: String,
    /// [`TargetSummary::number`] of the target.
    pub target_number: usize,
    pub op: String,
    /// The description without the op name, e.g. `1024x1024x1024 f32`.
    pub shape: String,
    pub description: String,
    /// How many times a run of the model executes the task (1 for `autotune op` tasks).
    pub weight: f64,
    pub flops: f64,
    /// FLOPs per byte that must cross the memory interface at least once; `None` when this build
    /// cannot read the task.
    pub intensity_flop_per_byte: Option<f64>,
    pub n_trials: usize,
    /// Trials of each status, every status of [`TrialStatus::ALL`] in that order (zeros kept).
    pub status_counts: Vec<(TrialStatus, usize)>,
    /// The first recorded error of each failing status that occurred, in [`TrialStatus::ALL`] order.
    pub first_errors: Vec<FirstError>,
    pub best: Option<BestTrial>,
    pub default: DefaultBaseline,
    /// Best GFLOP/s as a percentage of the measured peak.
    pub pct_of_peak: Option<f64>,
    /// min(peak, intensity × bandwidth): the most this task can reach on this machine.
    pub roofline_bound_gflops: Option<f64>,
    /// Best GFLOP/s as a percentage of the roofline bound.
    pub pct_of_roofline: Option<f64>,
    /// Default-schedule latency / best latency.
    pub speedup_over_default: Option<f64>,
    /// weight × best latency as a fraction (0–1) of its target's tuned total.
    pub share_of_total: Option<f64>,
    /// One point per trial, in the order recorded.
    pub convergence: Vec<TrialPoint>,
}

impl TaskSummary {
    pub fn count(&self, status: TrialStatus) -> usize {
        self.status_counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n)
    }
}

/// The first error text of one failing status.
#[derive(Clone, Debug, PartialEq)]
pub struct FirstError {
    pub status: TrialStatus,
    pub trial_id: i64,
    /// Empty when the trial stored no text.
    pub text: String,
}

/// The fastest `ok` trial of a task (ties: the earliest).
#[derive(Clone, Debug, PartialEq)]
pub struct BestTrial {
    pub trial_id: i64,
    pub median_s: f64,
    pub gflops: f64,
    pub strategy: String,
    pub space_version: String,
    pub schedule: ScheduleText,
}

/// What the log says about the default schedule (what runs without tuning).
#[derive(Clone, Debug, PartialEq)]
pub enum DefaultBaseline {
    Measured {
        median_s: f64,
        gflops: f64,
    },
    /// Measured, but it did not produce a valid kernel.
    Failed {
        status: TrialStatus,
    },
    NotMeasured,
    /// This build cannot name the default schedule (unknown task, target or space).
    Unknown {
        reason: String,
    },
}

/// One trial on the convergence charts.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialPoint {
    /// 1-based among the task's trials.
    pub trial_number: usize,
    /// Seconds on the tuning clock: sessions laid end to end, gaps between them left out.
    /// `None` when a timestamp does not parse.
    pub tuning_time_s: Option<f64>,
    /// This trial's GFLOP/s; `ok` trials only.
    pub gflops: Option<f64>,
    /// Best GFLOP/s of the task up to and including this trial.
    pub best_gflops: Option<f64>,
    /// This trial set a new best.
    pub improved: bool,
    pub strategy: String,
}
