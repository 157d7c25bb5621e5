//! Moving trials between logs: the JSONL line-per-record form (`autotune db export` / `import`),
//! merging logs, pruning, and the per-task summary `autotune db ls` prints.
//!
//! Import and merge follow one rule set, so a merged log is the same whichever way it was made:
//! workloads and targets are matched by key (the first spec stored is kept), a session already in
//! the log (same start, command, seed, strategy and tool version; alike ones matched in order)
//! is reused, a trial already in
//! the log (same workload, target, trace key, space and codegen version) is kept as it was, and
//! of each machine measurement kind per target the first one is kept.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{seed_to_sql, sql_error, Database};
use crate::busy::retry_while_busy;
use crate::error::DbError;
use crate::schema::{FORMAT_NAME, SCHEMA_VERSION};

/// One line of the JSONL form. JSON columns (`task`, `target`, `trace`, `repeat_times_s`) are
/// embedded verbatim, so export → import → export is byte-identical.
#[derive(Debug)]
pub enum LogRecord {
    Header(HeaderLine),
    Workload(WorkloadLine),
    Target(TargetLine),
    Session(SessionLine),
    MachineMeasurement(MachineMeasurementLine),
    Trial(TrialLine),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HeaderLine {
    pub record: String,
    pub format: String,
    pub schema_version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WorkloadLine {
    pub record: String,
    pub task_key: String,
    pub op: String,
    pub description: String,
    pub task: Box<RawValue>,
    pub flops: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TargetLine {
    pub record: String,
    pub target_key: String,
    pub kind: String,
    pub name: String,
    pub features: String,
    pub threads: u32,
    pub target: Box<RawValue>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SessionLine {
    pub record: String,
    /// The session's id in the exported log; trial lines refer to it.
    pub session: i64,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub command: String,
    pub seed: u64,
    pub strategy: String,
    pub tool_version: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MachineMeasurementLine {
    pub record: String,
    pub target_key: String,
    pub kind: String,
    pub value: f64,
    pub method: String,
    pub measured_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TrialLine {
    pub record: String,
    pub task_key: String,
    pub target_key: String,
    pub session: i64,
    pub trace: Box<RawValue>,
    pub trace_key: String,
    pub space_version: String,
    pub codegen_version: String,
    pub status: String,
    pub error: Option<String>,
    pub repeat_times_s: Box<RawValue>,
    pub median_s: Option<f64>,
    pub min_s: Option<f64>,
    pub build_time_s: f64,
    pub strategy: String,
    pub recorded_at: String,
    /// Timing windows of the repeats; absent in exports of schema 2 and older, whose trials count
    /// as timed once.
    #[serde(default = "one_window")]
    pub windows: u32,
}

fn one_window() -> u32 {
    1
}

/// What an import or a merge changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportStats {
    pub trials_added: usize,
    /// Trials the log already held (same workload, target, trace, space and codegen version).
    pub trials_already_present: usize,
    pub sessions_added: usize,
    pub workloads_added: usize,
    pub targets_added: usize,
}

impl std::ops::AddAssign for ImportStats {
    fn add_assign(&mut self, other: ImportStats) {
        self.trials_added += other.trials_added;
        self.trials_already_present += other.trials_already_present;
        self.sessions_added += other.sessions_added;
        self.workloads_added += other.workloads_added;
        self.targets_added += other.targets_added;
    }
}

/// What `prune_keep_best` removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PruneStats {
    pub trials_deleted: usize,
    pub trials_kept: usize,
}

/// One task on one target, as `autotune db ls` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSummary {
    pub task_key: String,
    pub description: String,
    pub flops: f64,
    pub target_key: String,
    pub n_trials: usize,
    pub n_ok: usize,
    /// The fastest `ok` trial's median, over every space and codegen version.
    pub best_median_s: Option<f64>,
    pub best_trace_key: Option<String>,
}

fn json_error(line: usize, error: serde_json::Error) -> DbError {
    DbError::Jsonl { line, reason: error.to_string() }
}

fn raw(line: usize, text: String) -> Result<Box<RawValue>, DbError> {
    RawValue::from_string(text)
        .map_err(|e| DbError::Jsonl { line, reason: format!("a stored JSON column: {e}") })
}

impl LogRecord {
    fn to_json(&self) -> serde_json::Result<String> {
        match self {
            LogRecord::Header(r) => serde_json::to_string(r),
            LogRecord::Workload(r) => serde_json::to_string(r),
            LogRecord::Target(r) => serde_json::to_string(r),
            LogRecord::Session(r) => serde_json::to_string(r),
            LogRecord::MachineMeasurement(r) => serde_json::to_string(r),
            LogRecord::Trial(r) => serde_json::to_string(r),
        }
    }

    /// Parses one line (`line` is its 1-based number, for errors).
    pub fn from_json(text: &str, line: usize) -> Result<LogRecord, DbError> {
        #[derive(Deserialize)]
        struct Kind {
            record: String,
        }
        let kind: Kind = serde_json::from_str(text).map_err(|e| json_error(line, e))?;
        let parsed = match kind.record.as_str() {
            "header" => serde_json::from_str(text).map(LogRecord::Header),
            "workload" => serde_json::from_str(text).map(LogRecord::Workload),
            "target" => serde_json::from_str(text).map(LogRecord::Target),
            "session" => serde_json::from_str(text).map(LogRecord::Session),
            "machine_measurement" => serde_json::from_str(text).map(LogRecord::MachineMeasurement),
            "trial" => serde_json::from_str(text).map(LogRecord::Trial),
            other => return Err(DbError::Jsonl { line, reason: format!("unknown record kind `{other}`") }),
        };
        parsed.map_err(|e| json_error(line, e))
    }
}

/// Writes `records`, one JSON object per line.
pub fn write_jsonl(records: &[LogRecord], out: &mut dyn Write) -> Result<(), DbError> {
    for record in records {
        let line = record.to_json().map_err(|e| json_error(0, e))?;
        writeln!(out, "{line}").map_err(|e| DbError::JsonlIo { source: e })?;
    }
    out.flush().map_err(|e| DbError::JsonlIo { source: e })
}

/// Reads a JSONL log: a header line of this format and a schema this build reads, then records.
/// Blank lines are ignored.
pub fn read_jsonl(input: &mut dyn BufRead) -> Result<Vec<LogRecord>, DbError> {
    let mut records = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line_no = index + 1;
        let text = line.map_err(|e| DbError::JsonlIo { source: e })?;
        if text.trim().is_empty() {
            continue;
        }
        let record = LogRecord::from_json(&text, line_no)?;
        match (&record, records.is_empty()) {
            (LogRecord::Header(h), true) => check_header(h, line_no)?,
            (LogRecord::Header(_), false) => {
                return Err(DbError::Jsonl { line: line_no, reason: "a second header line".into() })
            }
            (_, true) => {
                return Err(DbError::Jsonl {
                    line: line_no,
                    reason: format!("the first line must be the header of an {FORMAT_NAME} export"),
                })
            }
            _ => {}
        }
        records.push(record);
    }
    if records.is_empty() {
        return Err(DbError::Jsonl {
            line: 0,
            reason: "it is empty: export a log with `autotune db export`".into(),
        });
    }
    Ok(records)
}

fn check_header(header: &HeaderLine, line: usize) -> Result<(), DbError> {
    if header.format != FORMAT_NAME {
        return Err(DbError::Jsonl {
            line,
            reason: format!("format `{}` is not {FORMAT_NAME}", header.format),
        });
    }
    if header.schema_version > SCHEMA_VERSION {
        return Err(DbError::Jsonl {
            line,
            reason: format!(
                "written by a newer autotune (schema {}, this build reads up to {SCHEMA_VERSION}): upgrade autotune",
                header.schema_version
            ),
        });
    }
    Ok(())
}

impl Database {
    /// Every record of the log, in the JSONL order: header, workloads, targets, sessions,
    /// machine measurements, then trials in the order they were recorded.
    pub fn export_records(&self) -> Result<Vec<LogRecord>, DbError> {
        let error = self.sql_error("export the log");
        let mut records = vec![LogRecord::Header(HeaderLine {
            record: "header".into(),
            format: FORMAT_NAME.into(),
            schema_version: SCHEMA_VERSION,
        })];
        for (_, w) in self.workloads()? {
            records.push(LogRecord::Workload(WorkloadLine {
                record: "workload".into(),
                task: raw(0, w.task_json)?,
                task_key: w.task_key,
                op: w.op,
                description: w.description,
                flops: w.flops,
            }));
        }
        for (_, t) in self.targets()? {
            records.push(LogRecord::Target(TargetLine {
                record: "target".into(),
                target: raw(0, t.target_json)?,
                target_key: t.target_key,
                kind: t.kind,
                name: t.name,
                features: t.features,
                threads: t.threads,
            }));
        }
        for s in self.sessions()? {
            records.push(LogRecord::Session(SessionLine {
                record: "session".into(),
                session: s.id.0,
                started_at: s.started_at,
                ended_at: s.ended_at,
                command: s.command,
                seed: s.seed,
                strategy: s.strategy,
                tool_version: s.tool_version,
            }));
        }
        let mut statement = self
            .conn
            .prepare(
                "SELECT g.target_key, m.kind, m.value, m.method, m.measured_at FROM machine_measurement m
                 JOIN target g ON g.id = m.target_id ORDER BY m.id",
            )
            .map_err(&error)?;
        let rows = statement
            .query_map([], |row| {
                Ok(MachineMeasurementLine {
                    record: "machine_measurement".into(),
                    target_key: row.get(0)?,
                    kind: row.get(1)?,
                    value: row.get(2)?,
                    method: row.get(3)?,
                    measured_at: row.get(4)?,
                })
            })
            .map_err(&error)?;
        for row in rows {
            records.push(LogRecord::MachineMeasurement(row.map_err(&error)?));
        }
        let mut statement = self
            .conn
            .prepare(
                "SELECT w.task_key, g.target_key, t.session_id, t.trace_json, t.trace_key, t.space_version,
                     t.codegen_version, t.status, t.error, t.repeat_times_s, t.median_s, t.min_s, t.build_time_s,
                     t.strategy, t.recorded_at, t.windows
                 FROM trial t JOIN workload w ON w.id = t.workload_id JOIN target g ON g.id = t.target_id
                 ORDER BY t.id",
            )
            .map_err(&error)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    (row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?),
                    (row.get::<_, String>(3)?, row.get::<_, String>(4)?),
                    (row.get::<_, String>(5)?, row.get::<_, String>(6)?),
                    (row.get::<_, String>(7)?, row.get::<_, Option<String>>(8)?, row.get::<_, String>(9)?),
                    (row.get::<_, Option<f64>>(10)?, row.get::<_, Option<f64>>(11)?, row.get::<_, f64>(12)?),
                    (row.get::<_, String>(13)?, row.get::<_, String>(14)?, row.get::<_, u32>(15)?),
                ))
            })
            .map_err(&error)?;
        for row in rows {
            let (
                (task_key, target_key, session),
                (trace_json, trace_key),
                (space_version, codegen_version),
                (status, trial_error, repeat_times_json),
                (median_s, min_s, build_time_s),
                (strategy, recorded_at, windows),
            ) = row.map_err(&error)?;
            records.push(LogRecord::Trial(TrialLine {
                record: "trial".into(),
                task_key,
                target_key,
                session,
                trace: raw(0, trace_json)?,
                trace_key,
                space_version,
                codegen_version,
                status,
                error: trial_error,
                repeat_times_s: raw(0, repeat_times_json)?,
                median_s,
                min_s,
                build_time_s,
                strategy,
                recorded_at,
                windows,
            }));
        }
        Ok(records)
    }

    /// Adds `records` (an export of any log, header first) to this log in one transaction,
    /// following the rules in this module's doc. Nothing is added when a record is invalid.
    pub fn import_records(&mut self, records: &[LogRecord]) -> Result<ImportStats, DbError> {
        retry_while_busy(|| self.import_records_once(records))
    }

    fn import_records_once(&mut self, records: &[LogRecord]) -> Result<ImportStats, DbError> {
        let location = self.location.clone();
        let error = sql_error(&location, "import trials");
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&error)?;
        let mut stats = ImportStats::default();
        let mut sessions: HashMap<i64, i64> = HashMap::new();
        let mut workloads: HashMap<String, i64> = HashMap::new();
        let mut targets: HashMap<String, i64> = HashMap::new();
        let mut alike: HashMap<(String, String, u64, String, String), usize> = HashMap::new();
        let lookup = |table: &str, column: &str, key: &str| -> rusqlite::Result<Option<i64>> {
            tx.query_row(&format!("SELECT id FROM {table} WHERE {column} = ?1"), [key], |row| row.get(0))
                .optional()
        };
        for (index, record) in records.iter().enumerate() {
            let line = index + 1;
            let unknown = |what: &str, key: &str| DbError::Jsonl {
                line,
                reason: format!("names {what} `{key}` that no earlier line declares"),
            };
            match record {
                LogRecord::Header(h) => check_header(h, line)?,
                LogRecord::Workload(w) => {
                    let added = tx
                        .execute(
                            "INSERT INTO workload (task_key, op, description, task_json, flops) VALUES (?1, ?2, ?3, ?4, ?5)
                             ON CONFLICT (task_key) DO NOTHING",
                            params![w.task_key, w.op, w.description, w.task.get(), w.flops],
                        )
                        .map_err(&error)?;
                    stats.workloads_added += added;
                    let id = lookup("workload", "task_key", &w.task_key).map_err(&error)?;
                    workloads.insert(w.task_key.clone(), id.ok_or_else(|| unknown("task", &w.task_key))?);
                }
                LogRecord::Target(t) => {
                    let added = tx
                        .execute(
                            "INSERT INTO target (target_key, kind, name, features, threads, target_json)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (target_key) DO NOTHING",
                            params![t.target_key, t.kind, t.name, t.features, t.threads, t.target.get()],
                        )
                        .map_err(&error)?;
                    stats.targets_added += added;
                    let id = lookup("target", "target_key", &t.target_key).map_err(&error)?;
                    targets.insert(t.target_key.clone(), id.ok_or_else(|| unknown("target", &t.target_key))?);
                }
                LogRecord::Session(s) => {
                    // Sessions that look alike (one command started twice in a second) are
                    // matched in order: the n-th such session of the import is the n-th of the
                    // log, so merging a log again reuses every session and adds none.
                    let identity = (
                        s.started_at.clone(),
                        s.command.clone(),
                        s.seed,
                        s.strategy.clone(),
                        s.tool_version.clone(),
                    );
                    let nth = alike.entry(identity).or_insert(0);
                    let existing: Option<i64> = tx
                        .query_row(
                            "SELECT id FROM session WHERE started_at = ?1 AND command = ?2 AND seed = ?3
                             AND strategy = ?4 AND tool_version = ?5 ORDER BY id LIMIT 1 OFFSET ?6",
                            params![
                                s.started_at,
                                s.command,
                                seed_to_sql(s.seed),
                                s.strategy,
                                s.tool_version,
                                *nth as i64
                            ],
                            |row| row.get(0),
                        )
                        .optional()
                        .map_err(&error)?;
                    *nth += 1;
                    let id = match existing {
                        Some(id) => id,
                        None => {
                            tx.execute(
                                "INSERT INTO session (started_at, ended_at, command, seed, strategy, tool_version)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                params![
                                    s.started_at,
                                    s.ended_at,
                                    s.command,
                                    seed_to_sql(s.seed),
                                    s.strategy,
                                    s.tool_version
                                ],
                            )
                            .map_err(&error)?;
                            stats.sessions_added += 1;
                            tx.last_insert_rowid()
                        }
                    };
                    sessions.insert(s.session, id);
                }
                LogRecord::MachineMeasurement(m) => {
                    let target =
                        *targets.get(&m.target_key).ok_or_else(|| unknown("target", &m.target_key))?;
                    tx.execute(
                        "INSERT INTO machine_measurement (target_id, kind, value, method, measured_at)
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (target_id, kind) DO NOTHING",
                        params![target, m.kind, m.value, m.method, m.measured_at],
                    )
                    .map_err(&error)?;
                }
                LogRecord::Trial(t) => {
                    let workload = *workloads.get(&t.task_key).ok_or_else(|| unknown("task", &t.task_key))?;
                    let target =
                        *targets.get(&t.target_key).ok_or_else(|| unknown("target", &t.target_key))?;
                    let session = *sessions
                        .get(&t.session)
                        .ok_or_else(|| unknown("session", &t.session.to_string()))?;
                    let added = tx
                        .execute(
                            "INSERT INTO trial (workload_id, target_id, session_id, trace_json, trace_key, space_version,
                                 codegen_version, status, error, repeat_times_s, median_s, min_s, build_time_s, strategy,
                                 recorded_at, windows)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                             ON CONFLICT (workload_id, target_id, trace_key, space_version, codegen_version) DO NOTHING",
                            params![
                                workload,
                                target,
                                session,
                                t.trace.get(),
                                t.trace_key,
                                t.space_version,
                                t.codegen_version,
                                t.status,
                                t.error,
                                t.repeat_times_s.get(),
                                t.median_s,
                                t.min_s,
                                t.build_time_s,
                                t.strategy,
                                t.recorded_at,
                                t.windows
                            ],
                        )
                        // A CHECK the log enforces (an ok trial without a time, an unknown status)
                        // names the line, not only SQLite's constraint text.
                        .map_err(|e| DbError::Jsonl { line, reason: format!("trial {}: {e}", t.trace_key) })?;
                    if added == 1 {
                        stats.trials_added += 1;
                    } else {
                        stats.trials_already_present += 1;
                    }
                }
            }
        }
        tx.commit().map_err(&error)?;
        Ok(stats)
    }

    /// Adds every record of `other` to this log (see the module doc for the rules).
    pub fn merge_from(&mut self, other: &Database) -> Result<ImportStats, DbError> {
        let records = other.export_records()?;
        self.import_records(&records)
    }

    /// Keeps the `k` fastest `ok` trials of each workload, target, space version and codegen
    /// version and deletes every other trial (failures too: a later tuning run may measure
    /// those schedules again), then compacts the file. Sessions and measurements stay.
    pub fn prune_keep_best(&mut self, k: usize) -> Result<PruneStats, DbError> {
        let limit = i64::try_from(k).unwrap_or(i64::MAX);
        let deleted = retry_while_busy(|| {
            let location = self.location.clone();
            let error = sql_error(&location, "prune trials");
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&error)?;
            let deleted = tx
                .execute(
                    "DELETE FROM trial WHERE id NOT IN (
                         SELECT id FROM (
                             SELECT id, row_number() OVER (
                                 PARTITION BY workload_id, target_id, space_version, codegen_version
                                 ORDER BY median_s, id) AS rank
                             FROM trial WHERE status = 'ok')
                         WHERE rank <= ?1)",
                    params![limit],
                )
                .map_err(&error)?;
            tx.commit().map_err(&error)?;
            Ok(deleted)
        })?;
        retry_while_busy(|| self.conn.execute_batch("VACUUM").map_err(self.sql_error("compact the log")))?;
        let kept: i64 = self
            .conn
            .query_row("SELECT count(*) FROM trial", [], |row| row.get(0))
            .map_err(self.sql_error("count trials"))?;
        Ok(PruneStats { trials_deleted: deleted, trials_kept: usize::try_from(kept).unwrap_or(0) })
    }

    /// Per task and target: trial counts and the fastest `ok` trial, in the order the tasks were
    /// first stored.
    pub fn task_summaries(&self) -> Result<Vec<TaskSummary>, DbError> {
        let error = self.sql_error("summarize the log");
        let mut statement = self
            .conn
            .prepare(
                "SELECT w.task_key, w.description, w.flops, g.target_key, count(*),
                     sum(t.status = 'ok'), min(t.median_s),
                     (SELECT b.trace_key FROM trial b WHERE b.workload_id = t.workload_id
                         AND b.target_id = t.target_id AND b.status = 'ok' ORDER BY b.median_s, b.id LIMIT 1)
                 FROM trial t JOIN workload w ON w.id = t.workload_id JOIN target g ON g.id = t.target_id
                 GROUP BY t.workload_id, t.target_id ORDER BY t.workload_id, t.target_id",
            )
            .map_err(&error)?;
        let rows = statement
            .query_map([], |row| {
                Ok(TaskSummary {
                    task_key: row.get(0)?,
                    description: row.get(1)?,
                    flops: row.get(2)?,
                    target_key: row.get(3)?,
                    n_trials: row.get::<_, i64>(4)? as usize,
                    n_ok: row.get::<_, i64>(5)? as usize,
                    best_median_s: row.get(6)?,
                    best_trace_key: row.get(7)?,
                })
            })
            .map_err(&error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&error)?;
        Ok(rows)
    }

    /// Trials recorded per session id.
    pub fn trials_per_session(&self) -> Result<HashMap<i64, usize>, DbError> {
        let error = self.sql_error("count trials per session");
        let mut statement = self
            .conn
            .prepare("SELECT session_id, count(*) FROM trial GROUP BY session_id")
            .map_err(&error)?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)? as usize)))
            .map_err(&error)?
            .collect::<Result<HashMap<_, _>, _>>()
            .map_err(&error)?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests;
