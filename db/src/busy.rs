//! Waiting out other processes: several `autotune` runs may share one log, and SQLite answers
//! "database is locked" in places where its busy timeout does not wait (switching a new file to
//! WAL, a WAL being recovered, a write lock taken while another process migrates). Every open and
//! every write is retried with backoff until [`LOCK_PATIENCE`] runs out, so the user never sees it.

use std::time::{Duration, Instant};

use rusqlite::ErrorCode;

use crate::error::DbError;

/// How long an open or a write keeps retrying while other processes hold the log's locks.
/// Transactions are one batch of trials long, so a wait this long means something is stuck.
pub(crate) const LOCK_PATIENCE: Duration = Duration::from_secs(60);

const FIRST_WAIT: Duration = Duration::from_millis(5);
const LONGEST_WAIT: Duration = Duration::from_millis(250);

impl DbError {
    /// Whether another connection held a lock this operation needed: trying again may work.
    pub fn is_busy(&self) -> bool {
        let source = match self {
            DbError::Open { source, .. }
            | DbError::Migration { source, .. }
            | DbError::Sqlite { source, .. } => source,
            _ => return false,
        };
        matches!(source.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
    }

    /// Whether the disk (or the file system's quota) is full: what was committed before stays,
    /// and the same command resumes once there is room.
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::Open { source, .. }
            | DbError::Migration { source, .. }
            | DbError::Sqlite { source, .. } => source.sqlite_error_code() == Some(ErrorCode::DiskFull),
            _ => false,
        }
    }
}

/// Runs `op` until it succeeds, fails for another reason than a lock, or [`LOCK_PATIENCE`] is
/// spent. Each operation must leave nothing behind when it fails (a rolled-back transaction).
pub(crate) fn retry_while_busy<T>(mut op: impl FnMut() -> Result<T, DbError>) -> Result<T, DbError> {
    let started = Instant::now();
    let mut wait = FIRST_WAIT;
    // Processes started together would otherwise retry in lockstep.
    let jitter = Duration::from_micros(u64::from(std::process::id() % 16) * 300);
    loop {
        match op() {
            Err(error) if error.is_busy() && started.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(wait + jitter);
                wait = (wait * 2).min(LONGEST_WAIT);
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn busy() -> DbError {
        DbError::Open {
            path: PathBuf::from("x.db"),
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                None,
            ),
        }
    }

    #[test]
    fn busy_errors_are_retried_and_others_are_not() {
        let mut calls = 0;
        let result = retry_while_busy(|| {
            calls += 1;
            if calls < 4 {
                Err(busy())
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result.expect("fourth try"), 4);
        let mut calls = 0;
        let result: Result<(), DbError> = retry_while_busy(|| {
            calls += 1;
            Err(DbError::NotFound { path: PathBuf::from("x.db") })
        });
        assert!(result.is_err() && calls == 1);
    }
}
