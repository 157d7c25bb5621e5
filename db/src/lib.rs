//! The tuning log: the SQLite file (`model.tuning.db`) that records every measured candidate and
//! ships next to models.
//!
//! Owns: the tuning-log format — its [schema](SCHEMA_VERSION), forward [migrations](MIGRATIONS),
//! recognising files that are not tuning logs — and the queries the rest of autotune needs:
//! storing workloads, targets, sessions and batches of trials, the trace keys already measured,
//! the best trials, and the machine's measured ceilings (peak FLOP/s, memory bandwidth) per
//! target. Because the file outlives the build that wrote it, the schema is a public, versioned
//! API: a log from a newer autotune is refused with [`DbError::NewerSchema`], never misread.
//!
//! Must not know: code generation, search, or how kernels are built or timed. Traces, tasks and
//! targets arrive as JSON text plus a stable key computed by the caller; this crate stores them
//! and never interprets them.
//!
//! Invariant: only a trial that matched the reference (status `ok`) has a time, so only it can be
//! a winner; a failed trial stores no median or minimum, and no time is ever a sentinel value.
//! [`Database::record_batch`] enforces this, and so do `CHECK` constraints in the file itself.

mod busy;
mod database;
mod error;
mod records;
mod schema;
mod time;
mod timing;

pub use autotune_ir::TrialStatus;
pub use database::{read_jsonl, write_jsonl, Database, ImportStats, LogRecord, PruneStats, TaskSummary};
pub use error::DbError;
pub use records::{
    MachineMeasurementKind, MachineMeasurementRecord, NewMachineMeasurement, NewTrial, SessionId,
    SessionRecord, SessionSpec, TargetId, TargetSpec, TrialId, TrialRecord, WorkloadId, WorkloadSpec,
};
pub use schema::{FORMAT_NAME, MIGRATIONS, SCHEMA_VERSION};
