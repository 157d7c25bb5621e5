//! The one error type of the crate: every variant names the tuning log it is about.

use std::path::PathBuf;

use crate::records::SessionId;

/// What went wrong with a tuning log. Each message is one lower-case line that says what is wrong
/// and, where there is something to do about it, what to do.
///
/// Messages already include the underlying SQLite reason, so print a `DbError` with `{}`; the
/// wrapped [`rusqlite::Error`] is still reachable through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file could not be opened or created (missing directory, no permission, ...).
    #[error("cannot open tuning log {}: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },

    /// [`Database::open`](crate::Database::open) found a file it may read but not write.
    #[error("tuning log {} is read-only: fix its permissions, or use a command that only reads the log", path.display())]
    ReadOnlyFile { path: PathBuf },

    /// [`Database::open_read_only`](crate::Database::open_read_only) never creates a log.
    #[error("tuning log {} does not exist: check the path", path.display())]
    NotFound { path: PathBuf },

    /// The file is not SQLite, or is an SQLite database of some other application. It is left
    /// untouched.
    #[error("{} is not an autotune tuning log ({reason}): point autotune at a *.tuning.db it wrote", path.display())]
    NotATuningLog { path: PathBuf, reason: String },

    /// The log was written by a newer autotune whose schema this build does not know.
    #[error(
        "tuning log {} was written by a newer autotune (schema {found}, this build reads up to {supported}): upgrade autotune",
        path.display()
    )]
    NewerSchema { path: PathBuf, found: u32, supported: u32 },

    /// A read-only open found an older schema; migrating would need to write.
    #[error(
        "tuning log {} has schema {found} but this build reads schema {current}: open it once with a command that writes the log to migrate it",
        path.display()
    )]
    OutdatedSchema { path: PathBuf, found: u32, current: u32 },

    /// A forward migration failed; the transaction was rolled back and the file is unchanged.
    #[error("cannot migrate tuning log {} from schema {from} to {to}: {source}", path.display())]
    Migration { path: PathBuf, from: u32, to: u32, source: rusqlite::Error },

    /// A [`NewTrial`](crate::NewTrial) breaks the log's invariants; its whole batch was rejected.
    #[error("trial {index} of the batch (trace {trace_key}) is invalid, so nothing of the batch was recorded: {reason}")]
    InvalidTrial { index: usize, trace_key: String, reason: String },

    /// [`Database::add_repeats`](crate::Database::add_repeats) was given a trial that has no time
    /// to add to (unknown, or not `ok`) or times that are not finite positive numbers.
    #[error("cannot add repeat times to trial {trial}: {reason}")]
    CannotRetime { trial: i64, reason: String },

    /// [`Database::end_session`](crate::Database::end_session) was given an id the log does not hold.
    #[error("tuning log {} has no session {}", path.display(), session.0)]
    UnknownSession { path: PathBuf, session: SessionId },

    /// A machine measurement names a target the log does not hold (the target is stored with the
    /// first trial, or by [`Database::upsert_target`](crate::Database::upsert_target)).
    #[error("tuning log {} has no target {target_key}", path.display())]
    UnknownTarget { path: PathBuf, target_key: String },

    /// A [`NewMachineMeasurement`](crate::NewMachineMeasurement) is not a physical value; nothing was
    /// stored.
    #[error("machine measurement {kind} is invalid: {reason}")]
    InvalidMeasurement { kind: &'static str, reason: String },

    /// A stored value cannot be read back (edited by hand, or written by a buggy tool).
    #[error("tuning log {} is corrupt: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },

    /// A JSONL export (`autotune db export`) that cannot be imported; nothing of it was.
    #[error("line {line} of the JSONL log: {reason}")]
    Jsonl { line: usize, reason: String },

    /// Reading or writing a JSONL export failed.
    #[error("cannot read or write the JSONL log: {source}")]
    JsonlIo { source: std::io::Error },

    /// Any other SQLite failure, with the operation that hit it.
    #[error("tuning log {}: cannot {operation}: {source}", path.display())]
    Sqlite { path: PathBuf, operation: &'static str, source: rusqlite::Error },
}
