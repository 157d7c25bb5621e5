//! [`Database`]: a connection to one tuning log, and every query the rest of autotune runs on it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use autotune_ir::TrialStatus;
use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Params, Row, TransactionBehavior, MAIN_DB,
};

use crate::busy::retry_while_busy;
use crate::error::DbError;
use crate::records::{
    MachineMeasurementKind, MachineMeasurementRecord, NewMachineMeasurement, NewTrial, SessionId,
    SessionRecord, SessionSpec, TargetId, TargetSpec, TrialId, TrialRecord, WorkloadId, WorkloadSpec,
};
use crate::schema::{self, Contents, SCHEMA_VERSION};
use crate::time::now_rfc3339;
use crate::timing::{check_repeat_times, median_and_min, summarize};

/// How long a statement waits for another process's write lock before failing. Tuning runs
/// commit small batches, so a wait this long means something is stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The location errors name for a database that has no file.
const IN_MEMORY: &str = ":memory:";

/// Columns of a [`TrialRecord`], in the order [`read_trial_row`] reads them.
const TRIAL_SELECT: &str = "SELECT t.id, w.task_key, g.target_key, t.session_id, t.trace_json, t.trace_key, \
     t.space_version, t.codegen_version, t.status, t.error, t.repeat_times_s, t.median_s, t.min_s, \
     t.build_time_s, t.strategy, t.recorded_at, t.windows \
     FROM trial t JOIN workload w ON w.id = t.workload_id JOIN target g ON g.id = t.target_id";

/// An open tuning log.
///
/// Writers use [`Database::open`]; several processes may write one file (each write is a short
/// transaction). Readers that must not change the file use [`Database::open_read_only`].
#[derive(Debug)]
pub struct Database {
    conn: Connection,
    /// The file, or `:memory:`, for error messages.
    location: PathBuf,
}

impl Database {
    /// Opens the tuning log at `path` for reading and writing, creating it if missing and
    /// migrating it to [`SCHEMA_VERSION`] if older.
    pub fn open(path: &Path) -> Result<Database, DbError> {
        retry_while_busy(|| Self::open_once(path))
    }

    fn open_once(path: &Path) -> Result<Database, DbError> {
        // No SQLITE_OPEN_URI: a file named `file:...` is a file, not a URI.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| open_error(path, source))?;
        Self::set_up_for_writing(conn, path.to_path_buf())
    }

    /// Opens an existing tuning log without ever writing to it: no creation, no migration.
    /// Works while another process has the log open for writing.
    pub fn open_read_only(path: &Path) -> Result<Database, DbError> {
        retry_while_busy(|| Self::open_read_only_once(path))
    }

    fn open_read_only_once(path: &Path) -> Result<Database, DbError> {
        if !path.exists() {
            return Err(DbError::NotFound { path: path.to_path_buf() });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| open_error(path, source))?;
        set_busy_timeout(&conn).map_err(|source| open_error(path, source))?;
        match inspect(&conn, path)? {
            Contents::Blank => {
                Err(DbError::NotATuningLog { path: path.to_path_buf(), reason: "it is empty".into() })
            }
            Contents::Foreign { reason } => Err(DbError::NotATuningLog { path: path.to_path_buf(), reason }),
            Contents::TuningLog { version } if version > SCHEMA_VERSION => Err(newer_schema(path, version)),
            Contents::TuningLog { version } if version < SCHEMA_VERSION => Err(DbError::OutdatedSchema {
                path: path.to_path_buf(),
                found: version,
                current: SCHEMA_VERSION,
            }),
            Contents::TuningLog { .. } => Ok(Database { conn, location: path.to_path_buf() }),
        }
    }

    /// A fresh tuning log that lives and dies with this value; for tests and dry runs.
    pub fn open_in_memory() -> Result<Database, DbError> {
        let location = PathBuf::from(IN_MEMORY);
        let conn = Connection::open_in_memory().map_err(|source| open_error(&location, source))?;
        Self::set_up_for_writing(conn, location)
    }

    fn set_up_for_writing(conn: Connection, location: PathBuf) -> Result<Database, DbError> {
        let path = location.as_path();
        set_busy_timeout(&conn).map_err(|source| open_error(path, source))?;
        // SQLite silently falls back to read-only for a file it cannot write; say so now rather
        // than failing on the first recorded batch.
        if conn.is_readonly(MAIN_DB).map_err(|source| open_error(path, source))? {
            return Err(DbError::ReadOnlyFile { path: location });
        }
        // Recognise the file before changing anything in it: a foreign database is left untouched.
        let version_seen = check_writable_contents(inspect(&conn, path)?, path)?;
        if version_seen > 0 {
            check_pages(&conn, path)?;
        }
        // WAL lets reports and other tuning processes read while a run records trials. An
        // in-memory database answers `memory`, which is fine.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(|source| open_error(path, source))?;
        conn.pragma_update(None, "foreign_keys", true).map_err(|source| open_error(path, source))?;
        let mut database = Database { conn, location };
        if version_seen < SCHEMA_VERSION {
            database.migrate_to_current()?;
        }
        Ok(database)
    }

    /// Runs the missing migrations in one transaction. Only called when the schema looked old
    /// without a lock, so opening an up-to-date log never waits for writers.
    fn migrate_to_current(&mut self) -> Result<(), DbError> {
        let path = self.location.as_path();
        let transaction = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_error(path, "start the schema migration"))?;
        // Another process may have migrated the file while this one waited for the write lock.
        let found = check_writable_contents(inspect(&transaction, path)?, path)?;
        schema::migrate(&transaction, found).map_err(|(to, source)| DbError::Migration {
            path: path.to_path_buf(),
            from: found,
            to,
            source,
        })?;
        transaction.commit().map_err(|source| DbError::Migration {
            path: path.to_path_buf(),
            from: found,
            to: SCHEMA_VERSION,
            source,
        })
    }

    /// The schema version of the open log (always [`SCHEMA_VERSION`] once opened).
    pub fn schema_version(&self) -> Result<u32, DbError> {
        let version: u32 = self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(self.sql_error("read the schema version"))?;
        Ok(version)
    }

    /// The id of the workload with `w.task_key`, inserting `w` if the key is new. An existing
    /// workload keeps the fields it was first stored with.
    pub fn upsert_workload(&mut self, w: &WorkloadSpec) -> Result<WorkloadId, DbError> {
        retry_while_busy(|| self.upsert_workload_once(w))
    }

    fn upsert_workload_once(&mut self, w: &WorkloadSpec) -> Result<WorkloadId, DbError> {
        let error = self.sql_error("store the workload");
        self.conn
            .execute(
                "INSERT INTO workload (task_key, op, description, task_json, flops) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (task_key) DO NOTHING",
                params![w.task_key, w.op, w.description, w.task_json, w.flops],
            )
            .map_err(&error)?;
        self.conn
            .query_row("SELECT id FROM workload WHERE task_key = ?1", [&w.task_key], |row| row.get(0))
            .map(WorkloadId)
            .map_err(&error)
    }

    /// The id of the target with `t.target_key`, inserting `t` if the key is new. An existing
    /// target keeps the fields it was first stored with.
    pub fn upsert_target(&mut self, t: &TargetSpec) -> Result<TargetId, DbError> {
        retry_while_busy(|| self.upsert_target_once(t))
    }

    fn upsert_target_once(&mut self, t: &TargetSpec) -> Result<TargetId, DbError> {
        let error = self.sql_error("store the target");
        self.conn
            .execute(
                "INSERT INTO target (target_key, kind, name, features, threads, target_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (target_key) DO NOTHING",
                params![t.target_key, t.kind, t.name, t.features, t.threads, t.target_json],
            )
            .map_err(&error)?;
        self.conn
            .query_row("SELECT id FROM target WHERE target_key = ?1", [&t.target_key], |row| row.get(0))
            .map(TargetId)
            .map_err(&error)
    }

    /// Records the start of a tuning session, now.
    pub fn begin_session(&mut self, s: &SessionSpec) -> Result<SessionId, DbError> {
        retry_while_busy(|| self.begin_session_once(s))
    }

    fn begin_session_once(&mut self, s: &SessionSpec) -> Result<SessionId, DbError> {
        self.conn
            .execute(
                "INSERT INTO session (started_at, command, seed, strategy, tool_version) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now_rfc3339(), s.command, seed_to_sql(s.seed), s.strategy, s.tool_version],
            )
            .map_err(self.sql_error("start a session"))?;
        Ok(SessionId(self.conn.last_insert_rowid()))
    }

    /// Records the end of session `id`, now.
    pub fn end_session(&mut self, id: SessionId) -> Result<(), DbError> {
        retry_while_busy(|| self.end_session_once(id))
    }

    fn end_session_once(&mut self, id: SessionId) -> Result<(), DbError> {
        let updated = self
            .conn
            .execute("UPDATE session SET ended_at = ?1 WHERE id = ?2", params![now_rfc3339(), id.0])
            .map_err(self.sql_error("end the session"))?;
        if updated == 0 {
            return Err(DbError::UnknownSession { path: self.location.clone(), session: id });
        }
        Ok(())
    }

    /// Records `trials` in one transaction, so a killed run loses at most this batch.
    ///
    /// A trial whose (workload, target, trace_key, space_version, codegen_version) is already
    /// recorded, in the log or earlier in the batch, is skipped. Returns, per input, the new id,
    /// or `None` for a skipped duplicate. If any trial is invalid (see [`NewTrial`]) or cannot be
    /// stored, nothing of the batch is.
    pub fn record_batch(&mut self, trials: &[NewTrial]) -> Result<Vec<Option<TrialId>>, DbError> {
        retry_while_busy(|| self.record_batch_once(trials))
    }

    fn record_batch_once(&mut self, trials: &[NewTrial]) -> Result<Vec<Option<TrialId>>, DbError> {
        // Validate everything before writing anything.
        let mut columns = Vec::with_capacity(trials.len());
        for (index, trial) in trials.iter().enumerate() {
            let invalid =
                |reason: String| DbError::InvalidTrial { index, trace_key: trial.trace_key.clone(), reason };
            let summary = summarize(trial).map_err(invalid)?;
            let repeat_times_json =
                serde_json::to_string(&trial.repeat_times_s).map_err(|error| invalid(error.to_string()))?;
            columns.push((summary, repeat_times_json));
        }

        let recorded_at = now_rfc3339();
        let error = sql_error(&self.location, "record trials");
        let transaction =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&error)?;
        let mut ids = Vec::with_capacity(trials.len());
        {
            // ON CONFLICT names the dedup key so that only a duplicate is skipped; INSERT OR IGNORE
            // would also silently skip rows that break a CHECK or NOT NULL constraint.
            let mut insert = transaction
                .prepare(
                    "INSERT INTO trial (workload_id, target_id, session_id, trace_json, trace_key, space_version,
                         codegen_version, status, error, repeat_times_s, median_s, min_s, build_time_s, strategy,
                         recorded_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                     ON CONFLICT (workload_id, target_id, trace_key, space_version, codegen_version) DO NOTHING",
                )
                .map_err(&error)?;
            for (trial, (summary, repeat_times_json)) in trials.iter().zip(&columns) {
                let inserted = insert
                    .execute(params![
                        trial.workload.0,
                        trial.target.0,
                        trial.session.0,
                        trial.trace_json,
                        trial.trace_key,
                        trial.space_version,
                        trial.codegen_version,
                        trial.status.as_str(),
                        trial.error,
                        repeat_times_json,
                        summary.median_s,
                        summary.min_s,
                        trial.build_time_s,
                        trial.strategy,
                        recorded_at,
                    ])
                    .map_err(&error)?;
                ids.push((inserted == 1).then(|| TrialId(transaction.last_insert_rowid())));
            }
        }
        transaction.commit().map_err(&error)?;
        Ok(ids)
    }

    /// Adds the repeats of a later timing window to an `ok` trial and recomputes its median and
    /// minimum over all its repeats: a time taken in one short window of a drifting machine can be
    /// a lucky moment, and a winner confirmed in more windows is what a tuning run should hand over.
    /// The trial's first repeats are kept and its window count goes up by one; nothing else of the
    /// row changes.
    pub fn add_repeats(&mut self, id: TrialId, times_s: &[f64]) -> Result<(), DbError> {
        retry_while_busy(|| self.add_repeats_once(id, times_s))
    }

    fn add_repeats_once(&mut self, id: TrialId, times_s: &[f64]) -> Result<(), DbError> {
        let refuse = |reason: String| DbError::CannotRetime { trial: id.0, reason };
        check_repeat_times(times_s).map_err(refuse)?;
        let error = sql_error(&self.location, "add repeat times");
        let transaction =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&error)?;
        let row: Option<(String, String)> = transaction
            .query_row("SELECT status, repeat_times_s FROM trial WHERE id = ?1", params![id.0], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
            .map_err(&error)?;
        let (status, stored) = row.ok_or_else(|| refuse("the log holds no such trial".to_string()))?;
        if status != TrialStatus::Ok.as_str() {
            return Err(refuse(format!("its status is {status}, and only an ok trial has a time")));
        }
        let mut all: Vec<f64> = serde_json::from_str(&stored).map_err(|e| DbError::Corrupt {
            path: self.location.clone(),
            what: format!("repeat times of trial {}: {e}", id.0),
        })?;
        all.extend_from_slice(times_s);
        let (median_s, min_s) = median_and_min(&all).map_err(refuse)?;
        let json = serde_json::to_string(&all).map_err(|e| refuse(e.to_string()))?;
        transaction
            .execute(
                "UPDATE trial SET repeat_times_s = ?1, median_s = ?2, min_s = ?3, windows = windows + 1 WHERE id = ?4",
                params![json, median_s, min_s, id.0],
            )
            .map_err(&error)?;
        transaction.commit().map_err(&error)
    }

    /// The trace keys already recorded (any status) for this workload, target, schedule-space
    /// version and codegen version, so a search never measures a trace twice across sessions.
    pub fn measured_trace_keys(
        &self,
        workload: WorkloadId,
        target: TargetId,
        space_version: &str,
        codegen_version: &str,
    ) -> Result<HashSet<String>, DbError> {
        let error = self.sql_error("read the measured traces");
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT trace_key FROM trial
                 WHERE workload_id = ?1 AND target_id = ?2 AND space_version = ?3 AND codegen_version = ?4",
            )
            .map_err(&error)?;
        let keys = statement
            .query_map(params![workload.0, target.0, space_version, codegen_version], |row| row.get(0))
            .map_err(&error)?
            .collect::<Result<HashSet<String>, _>>()
            .map_err(&error)?;
        Ok(keys)
    }

    /// The `k` fastest `ok` trials of a workload on a target by median time (ties by id), from any
    /// session and any space or codegen version: the caller keeps the ones it can replay.
    pub fn best(&self, task_key: &str, target_key: &str, k: usize) -> Result<Vec<TrialRecord>, DbError> {
        let limit = i64::try_from(k).unwrap_or(i64::MAX);
        self.query_trials(
            "read the best trials",
            &format!(
                "{TRIAL_SELECT} WHERE w.task_key = ?1 AND g.target_key = ?2 AND t.status = 'ok' \
                 ORDER BY t.median_s, t.id LIMIT ?3"
            ),
            params![task_key, target_key, limit],
        )
    }

    /// Every trial of a workload on a target, in the order they were recorded.
    pub fn trials(&self, task_key: &str, target_key: &str) -> Result<Vec<TrialRecord>, DbError> {
        self.query_trials(
            "read the trials",
            &format!("{TRIAL_SELECT} WHERE w.task_key = ?1 AND g.target_key = ?2 ORDER BY t.id"),
            params![task_key, target_key],
        )
    }

    /// Every trial recorded by one session, in the order they were recorded.
    pub fn session_trials(&self, session: SessionId) -> Result<Vec<TrialRecord>, DbError> {
        self.query_trials(
            "read the session's trials",
            &format!("{TRIAL_SELECT} WHERE t.session_id = ?1 ORDER BY t.id"),
            params![session.0],
        )
    }

    /// Every session, oldest first.
    pub fn sessions(&self) -> Result<Vec<SessionRecord>, DbError> {
        let error = self.sql_error("read the sessions");
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT id, started_at, ended_at, command, seed, strategy, tool_version FROM session ORDER BY id",
            )
            .map_err(&error)?;
        let sessions = statement
            .query_map([], |row| {
                Ok(SessionRecord {
                    id: SessionId(row.get(0)?),
                    started_at: row.get(1)?,
                    ended_at: row.get(2)?,
                    command: row.get(3)?,
                    seed: seed_from_sql(row.get(4)?),
                    strategy: row.get(5)?,
                    tool_version: row.get(6)?,
                })
            })
            .map_err(&error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&error)?;
        Ok(sessions)
    }

    /// Every workload, in the order first stored.
    pub fn workloads(&self) -> Result<Vec<(WorkloadId, WorkloadSpec)>, DbError> {
        let error = self.sql_error("read the workloads");
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT id, task_key, op, description, task_json, flops FROM workload ORDER BY id",
            )
            .map_err(&error)?;
        let workloads = statement
            .query_map([], |row| {
                let spec = WorkloadSpec {
                    task_key: row.get(1)?,
                    op: row.get(2)?,
                    description: row.get(3)?,
                    task_json: row.get(4)?,
                    flops: row.get(5)?,
                };
                Ok((WorkloadId(row.get(0)?), spec))
            })
            .map_err(&error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&error)?;
        Ok(workloads)
    }

    /// Every target, in the order first stored.
    pub fn targets(&self) -> Result<Vec<(TargetId, TargetSpec)>, DbError> {
        let error = self.sql_error("read the targets");
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT id, target_key, kind, name, features, threads, target_json FROM target ORDER BY id",
            )
            .map_err(&error)?;
        let targets = statement
            .query_map([], |row| {
                let spec = TargetSpec {
                    target_key: row.get(1)?,
                    kind: row.get(2)?,
                    name: row.get(3)?,
                    features: row.get(4)?,
                    threads: row.get(5)?,
                    target_json: row.get(6)?,
                };
                Ok((TargetId(row.get(0)?), spec))
            })
            .map_err(&error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&error)?;
        Ok(targets)
    }

    /// Records a measured ceiling of the target with `target_key`, unless one of the same kind is
    /// stored already (the first measurement is kept). Returns whether it was stored.
    pub fn record_machine_measurement(
        &mut self,
        target_key: &str,
        measurement: &NewMachineMeasurement,
    ) -> Result<bool, DbError> {
        retry_while_busy(|| self.record_machine_measurement_once(target_key, measurement))
    }

    fn record_machine_measurement_once(
        &mut self,
        target_key: &str,
        measurement: &NewMachineMeasurement,
    ) -> Result<bool, DbError> {
        if !(measurement.value.is_finite() && measurement.value > 0.0) {
            return Err(DbError::InvalidMeasurement {
                kind: measurement.kind.as_str(),
                reason: format!(
                    "{} {} is not a finite positive number",
                    measurement.value,
                    measurement.kind.unit()
                ),
            });
        }
        let error = self.sql_error("record a machine measurement");
        let target: Option<i64> = self
            .conn
            .query_row("SELECT id FROM target WHERE target_key = ?1", [target_key], |row| row.get(0))
            .optional()
            .map_err(&error)?;
        let Some(target) = target else {
            return Err(DbError::UnknownTarget {
                path: self.location.clone(),
                target_key: target_key.to_string(),
            });
        };
        let inserted = self
            .conn
            .execute(
                "INSERT INTO machine_measurement (target_id, kind, value, method, measured_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (target_id, kind) DO NOTHING",
                params![
                    target,
                    measurement.kind.as_str(),
                    measurement.value,
                    measurement.method,
                    now_rfc3339()
                ],
            )
            .map_err(&error)?;
        Ok(inserted == 1)
    }

    /// The measured ceilings of the target with `target_key` (none for an unknown target), in the
    /// order of [`MachineMeasurementKind::ALL`].
    pub fn machine_measurements(&self, target_key: &str) -> Result<Vec<MachineMeasurementRecord>, DbError> {
        let error = self.sql_error("read the machine measurements");
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT m.kind, m.value, m.method, m.measured_at FROM machine_measurement m
                 JOIN target g ON g.id = m.target_id WHERE g.target_key = ?1",
            )
            .map_err(&error)?;
        let rows = statement
            .query_map([target_key], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, f64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })
            .map_err(&error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&error)?;
        let mut measurements = rows
            .into_iter()
            .map(|(kind, value, method, measured_at)| {
                let kind = MachineMeasurementKind::parse(&kind).ok_or_else(|| DbError::Corrupt {
                    path: self.location.clone(),
                    what: format!("a machine measurement has unknown kind `{kind}`"),
                })?;
                Ok(MachineMeasurementRecord {
                    target_key: target_key.to_string(),
                    kind,
                    value,
                    method,
                    measured_at,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        measurements.sort_by_key(|measurement| measurement.kind);
        Ok(measurements)
    }

    /// Runs a [`TRIAL_SELECT`] query and decodes its rows.
    fn query_trials<P: Params>(
        &self,
        operation: &'static str,
        sql: &str,
        params: P,
    ) -> Result<Vec<TrialRecord>, DbError> {
        let error = self.sql_error(operation);
        let mut statement = self.conn.prepare_cached(sql).map_err(&error)?;
        let rows = statement
            .query_map(params, read_trial_row)
            .map_err(&error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&error)?;
        rows.into_iter().map(|row| row.decode(&self.location)).collect()
    }

    fn sql_error(&self, operation: &'static str) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        sql_error(&self.location, operation)
    }
}

/// A trial row as SQLite returns it, before the columns that hold text encodings are parsed.
struct TrialRow {
    record: TrialRecord,
    status: String,
    repeat_times_json: String,
}

fn read_trial_row(row: &Row<'_>) -> rusqlite::Result<TrialRow> {
    let record = TrialRecord {
        id: TrialId(row.get(0)?),
        workload_key: row.get(1)?,
        target_key: row.get(2)?,
        session: SessionId(row.get(3)?),
        trace_json: row.get(4)?,
        trace_key: row.get(5)?,
        space_version: row.get(6)?,
        codegen_version: row.get(7)?,
        // Filled in by `TrialRow::decode`.
        status: TrialStatus::Ok,
        error: row.get(9)?,
        repeat_times_s: Vec::new(),
        median_s: row.get(11)?,
        min_s: row.get(12)?,
        build_time_s: row.get(13)?,
        strategy: row.get(14)?,
        recorded_at: row.get(15)?,
        windows: row.get(16)?,
    };
    Ok(TrialRow { record, status: row.get(8)?, repeat_times_json: row.get(10)? })
}

impl TrialRow {
    fn decode(self, location: &Path) -> Result<TrialRecord, DbError> {
        let TrialRow { mut record, status, repeat_times_json } = self;
        let corrupt = |what: String| DbError::Corrupt { path: location.to_path_buf(), what };
        record.status = status
            .parse()
            .map_err(|_| corrupt(format!("trial {} has unknown status `{status}`", record.id.0)))?;
        record.repeat_times_s = serde_json::from_str(&repeat_times_json).map_err(|parse_error| {
            corrupt(format!(
                "trial {} has unreadable repeat times `{repeat_times_json}`: {parse_error}",
                record.id.0
            ))
        })?;
        Ok(record)
    }
}

/// Inspects `conn`, reporting a file that is not SQLite at all as not a tuning log.
fn inspect(conn: &Connection, path: &Path) -> Result<Contents, DbError> {
    schema::inspect(conn).map_err(|source| inspect_error(path, source))
}

/// An error while first reading a file: not SQLite, damaged, or an open failure.
fn inspect_error(path: &Path, source: rusqlite::Error) -> DbError {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            DbError::NotATuningLog { path: path.to_path_buf(), reason: "it is not an SQLite database".into() }
        }
        Some(ErrorCode::DatabaseCorrupt) => {
            DbError::Corrupt { path: path.to_path_buf(), what: format!("{source}; {CORRUPT_ADVICE}") }
        }
        _ => open_error(path, source),
    }
}

/// Refuses a log whose pages are damaged (bytes flipped on disk, a torn copy) before anything is
/// written into it: SQLite would otherwise write on until a query hits the damage, and a write
/// into a damaged b-tree can lose committed rows. `quick_check` reads every page once (a 24-hour
/// log of ~100 MB takes well under a second) but skips the slower index-content checks.
fn check_pages(conn: &Connection, path: &Path) -> Result<(), DbError> {
    let verdict: String = conn
        .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
        .map_err(|source| inspect_error(path, source))?;
    if verdict == "ok" {
        return Ok(());
    }
    // SQLite's verdict spans lines ("*** in database main ***" then one line per problem).
    let problems: Vec<&str> = verdict.lines().map(str::trim).filter(|l| !l.starts_with("***")).collect();
    Err(DbError::Corrupt {
        path: path.to_path_buf(),
        what: format!("{}; {CORRUPT_ADVICE}", problems.join("; ")),
    })
}

const CORRUPT_ADVICE: &str = "restore it from a copy, or tune into a new log (this one is left as it is)";

/// The schema version to migrate from, or why `contents` must not be opened for writing.
fn check_writable_contents(contents: Contents, path: &Path) -> Result<u32, DbError> {
    match contents {
        Contents::Blank => Ok(0),
        Contents::Foreign { reason } => Err(DbError::NotATuningLog { path: path.to_path_buf(), reason }),
        Contents::TuningLog { version } if version > SCHEMA_VERSION => Err(newer_schema(path, version)),
        Contents::TuningLog { version } => Ok(version),
    }
}

/// Sets [`BUSY_TIMEOUT`] with the pragma rather than `Connection::busy_timeout`: rusqlite's method
/// also calls `sqlite3_set_clientdata`, which needs SQLite 3.44, and autotune links the system
/// SQLite (3.40 on Debian 12).
fn set_busy_timeout(conn: &Connection) -> rusqlite::Result<()> {
    let millis = i64::try_from(BUSY_TIMEOUT.as_millis()).unwrap_or(i64::MAX);
    conn.pragma_update(None, "busy_timeout", millis)
}

fn newer_schema(path: &Path, found: u32) -> DbError {
    DbError::NewerSchema { path: path.to_path_buf(), found, supported: SCHEMA_VERSION }
}

fn open_error(path: &Path, source: rusqlite::Error) -> DbError {
    // SQLite says only "unable to open database file: <path>"; name the usual causes instead.
    let cause = if source.sqlite_error_code() != Some(ErrorCode::CannotOpen) {
        None
    } else if path.is_dir() {
        Some("it is a directory".to_string())
    } else {
        path.parent()
            .filter(|parent| !parent.as_os_str().is_empty() && !parent.is_dir())
            .map(|parent| format!("directory {} does not exist: create it first", parent.display()))
    };
    let source = match cause {
        Some(cause) => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(cause),
        ),
        None => source,
    };
    DbError::Open { path: path.to_path_buf(), source }
}

fn sql_error<'a>(path: &'a Path, operation: &'static str) -> impl Fn(rusqlite::Error) -> DbError + 'a {
    move |source| DbError::Sqlite { path: path.to_path_buf(), operation, source }
}

/// SQLite integers are signed 64-bit; a seed keeps its bits, so every `u64` round-trips.
fn seed_to_sql(seed: u64) -> i64 {
    seed as i64
}

fn seed_from_sql(stored: i64) -> u64 {
    stored as u64
}

mod transfer;
pub use transfer::{read_jsonl, write_jsonl, ImportStats, LogRecord, PruneStats, TaskSummary};

#[cfg(test)]
mod tests;
