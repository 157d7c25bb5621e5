//! Plain data written to and read from the tuning log. No behaviour beyond construction.

use autotune_ir::TrialStatus;
use serde::{Deserialize, Serialize};

/// Row id of a workload in one tuning log (not meaningful across files; use `task_key` for that).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkloadId(pub i64);

/// Row id of a target in one tuning log (not meaningful across files; use `target_key` for that).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TargetId(pub i64);

/// Row id of a tuning session in one tuning log.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub i64);

/// Row id of a trial in one tuning log.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrialId(pub i64);

/// What is tuned: one operator instance. Identified by `task_key`; the first spec stored under a
/// key is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Stable identity of the task (the caller's hash of its canonical form).
    pub task_key: String,
    /// Operator name, e.g. `matmul`.
    pub op: String,
    /// Human-readable summary, e.g. `matmul 1024x1024x1024 f32`.
    pub description: String,
    /// The full task, as the caller serializes it; this crate does not interpret it.
    pub task_json: String,
    /// Floating-point operations of one run, for GFLOP/s reports.
    pub flops: f64,
}

/// Where trials run. Identified by `target_key`; the first spec stored under a key is kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TargetSpec {
    /// Stable identity of the machine configuration (the caller's hash of its canonical form).
    pub target_key: String,
    /// `cpu` or `cuda`.
    pub kind: String,
    /// CPU model string or GPU name.
    pub name: String,
    /// Comma-separated ISA features, or the compute capability.
    pub features: String,
    /// Worker threads the kernels were measured with.
    pub threads: u32,
    /// The full target, as the caller serializes it; this crate does not interpret it.
    pub target_json: String,
}

impl TargetSpec {
    /// The row that identifies `target` in a log.
    pub fn of(target: &autotune_ir::Target) -> TargetSpec {
        TargetSpec {
            target_key: target.key(),
            kind: target.kind().to_string(),
            name: target.name().to_string(),
            features: target.feature_summary(),
            threads: target.threads(),
            target_json: target.canonical_json(),
        }
    }
}

/// One invocation of a tuning command, as it starts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionSpec {
    /// The command line, for provenance.
    pub command: String,
    /// The search seed. Stored bit-for-bit as a signed 64-bit SQLite integer, so seeds above
    /// `i64::MAX` read as negative numbers in the `sqlite3` shell but round-trip exactly here.
    pub seed: u64,
    /// Search strategy of the session, e.g. `evolutionary`.
    pub strategy: String,
    /// Version of the autotune build that ran it.
    pub tool_version: String,
}

/// A stored session.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: SessionId,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC; `None` while running, or when the run was killed.
    pub ended_at: Option<String>,
    pub command: String,
    pub seed: u64,
    pub strategy: String,
    pub tool_version: String,
}

/// A measured (or failed) candidate, as the measurement side hands it over.
///
/// `median_s` and `min_s` are not fields: [`Database::record_batch`](crate::Database::record_batch)
/// computes them from `repeat_times_s` for an `Ok` trial and stores NULL for any other status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewTrial {
    pub workload: WorkloadId,
    pub target: TargetId,
    pub session: SessionId,
    /// The schedule trace, as the caller serializes it.
    pub trace_json: String,
    /// Stable hash of the canonical trace, computed by the caller; the dedup key.
    pub trace_key: String,
    /// Version of the schedule space that produced the trace.
    pub space_version: String,
    /// Version of the code generator that built it.
    pub codegen_version: String,
    pub status: TrialStatus,
    /// What failed, for a non-`Ok` status.
    pub error: Option<String>,
    /// Wall time of each timed repeat, in seconds. Must be non-empty for an `Ok` trial; every
    /// value must be finite and positive.
    pub repeat_times_s: Vec<f64>,
    /// Time spent generating and compiling the kernel, in seconds.
    pub build_time_s: f64,
    /// The search technique that proposed this candidate.
    pub strategy: String,
}

/// A stored trial, with its workload and target resolved to their stable keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub id: TrialId,
    pub workload_key: String,
    pub target_key: String,
    pub session: SessionId,
    pub trace_json: String,
    pub trace_key: String,
    pub space_version: String,
    pub codegen_version: String,
    pub status: TrialStatus,
    pub error: Option<String>,
    pub repeat_times_s: Vec<f64>,
    /// Present exactly when `status` is `Ok`.
    pub median_s: Option<f64>,
    /// Present exactly when `status` is `Ok`.
    pub min_s: Option<f64>,
    pub build_time_s: f64,
    pub strategy: String,
    /// RFC 3339 UTC time the trial's batch was recorded.
    pub recorded_at: String,
    /// Timing windows its repeats come from: 1 when recorded, one more per
    /// [`Database::add_repeats`](crate::Database::add_repeats).
    pub windows: u32,
}

impl TrialRecord {
    /// Whether this trial's time compares with others measured under `space_version` and
    /// `codegen_version`: the same schedule space and code generator built the same kernel from
    /// its trace. The one rule for ranking, resuming and confirming trials.
    pub fn is_comparable(&self, space_version: &str, codegen_version: &str) -> bool {
        self.space_version == space_version && self.codegen_version == codegen_version
    }
}

/// What a machine measurement measured. Stored as [`as_str`](Self::as_str).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineMeasurementKind {
    /// Attainable fp32 throughput with the target's thread count, in GFLOP/s (an FMA probe).
    PeakGflops,
    /// Attainable memory bandwidth with the target's thread count, in GB/s (a triad probe).
    BandwidthGbs,
}

impl MachineMeasurementKind {
    pub const ALL: [MachineMeasurementKind; 2] =
        [MachineMeasurementKind::PeakGflops, MachineMeasurementKind::BandwidthGbs];

    /// The stable spelling stored in the tuning log.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineMeasurementKind::PeakGflops => "peak_gflops",
            MachineMeasurementKind::BandwidthGbs => "bandwidth_gbs",
        }
    }

    /// The unit of the stored value.
    pub fn unit(self) -> &'static str {
        match self {
            MachineMeasurementKind::PeakGflops => "GFLOP/s",
            MachineMeasurementKind::BandwidthGbs => "GB/s",
        }
    }

    /// The kind stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<MachineMeasurementKind> {
        MachineMeasurementKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// A measured ceiling of a target, as the measuring side hands it over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewMachineMeasurement {
    pub kind: MachineMeasurementKind,
    /// In the kind's [unit](MachineMeasurementKind::unit); finite and positive.
    pub value: f64,
    /// How it was measured, for people (probe, threads, repeats).
    pub method: String,
}

/// A stored machine measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineMeasurementRecord {
    pub target_key: String,
    pub kind: MachineMeasurementKind,
    pub value: f64,
    pub method: String,
    /// RFC 3339 UTC.
    pub measured_at: String,
}
