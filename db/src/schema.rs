//! The on-disk format: DDL, forward migrations, and recognising a tuning log.
//!
//! A tuning log ships next to models, so its schema is a public API. Never edit a script in
//! [`MIGRATIONS`] once released: append a new one that migrates version N to N+1, which bumps
//! [`SCHEMA_VERSION`]. The schema version lives in `PRAGMA user_version` and, for people and
//! tools reading the file with plain SQL, in the `meta` table.

use rusqlite::{params, Connection, OptionalExtension};

/// `meta.format` of every tuning log. Part of the format forever: it is how a file is recognised.
pub const FORMAT_NAME: &str = "autotune-tuning-log";

/// Forward migrations: `MIGRATIONS[i]` turns a schema-`i` log into a schema-`i + 1` log. Version 0
/// is an empty database. A script only changes tables; the version bookkeeping is done by the
/// code that runs it.
pub const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, SCHEMA_V3];

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Version 1. Comments inside the `CREATE` statements are kept by SQLite, so `.schema` in the
/// `sqlite3` shell documents the format too.
const SCHEMA_V1: &str = r#"
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('format', 'autotune-tuning-log');

CREATE TABLE workload (
    id INTEGER PRIMARY KEY,
    task_key TEXT NOT NULL UNIQUE, -- stable hash of the canonical task
    op TEXT NOT NULL,
    description TEXT NOT NULL, -- human readable, e.g. 'matmul 1024x1024x1024 f32'
    task_json TEXT NOT NULL,
    flops REAL NOT NULL
);

CREATE TABLE target (
    id INTEGER PRIMARY KEY,
    target_key TEXT NOT NULL UNIQUE, -- stable hash of the canonical target
    kind TEXT NOT NULL, -- 'cpu' or 'cuda'
    name TEXT NOT NULL, -- CPU model string or GPU name
    features TEXT NOT NULL, -- comma-separated ISA features, or the compute capability
    threads INTEGER NOT NULL,
    target_json TEXT NOT NULL
);

CREATE TABLE session (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL, -- RFC 3339 UTC
    ended_at TEXT, -- RFC 3339 UTC; NULL while running, or when the run was killed
    command TEXT NOT NULL,
    seed INTEGER NOT NULL, -- a u64, stored as the i64 with the same bits
    strategy TEXT NOT NULL,
    tool_version TEXT NOT NULL
);

CREATE TABLE trial (
    id INTEGER PRIMARY KEY,
    workload_id INTEGER NOT NULL REFERENCES workload(id),
    target_id INTEGER NOT NULL REFERENCES target(id),
    session_id INTEGER NOT NULL REFERENCES session(id),
    trace_json TEXT NOT NULL,
    trace_key TEXT NOT NULL, -- stable hash of the canonical trace
    space_version TEXT NOT NULL,
    codegen_version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'build_error', 'run_error', 'wrong_result', 'timeout')),
    error TEXT,
    repeat_times_s TEXT NOT NULL, -- JSON array of seconds, one per timed repeat
    median_s REAL,
    min_s REAL,
    build_time_s REAL NOT NULL,
    strategy TEXT NOT NULL, -- the search technique that proposed the trace
    recorded_at TEXT NOT NULL, -- RFC 3339 UTC
    -- Only a trial that matched the reference has a time, so only it can be a winner; and a
    -- time is always a real measurement, never a sentinel.
    CHECK ((status = 'ok') = (median_s IS NOT NULL AND min_s IS NOT NULL)),
    CHECK (median_s > 0 AND min_s > 0 AND min_s <= median_s),
    -- A trace is measured once per workload, target, schedule space and code generator.
    UNIQUE (workload_id, target_id, trace_key, space_version, codegen_version)
);
CREATE INDEX trial_by_rank ON trial (workload_id, target_id, status, median_s);
CREATE INDEX trial_by_session ON trial (session_id);
"#;

/// Version 2: what the machine can do at best, measured once per target by the tuning run, so a
/// report can place every kernel against the machine's roofline.
const SCHEMA_V2: &str = r#"
CREATE TABLE machine_measurement (
    id INTEGER PRIMARY KEY,
    target_id INTEGER NOT NULL REFERENCES target(id),
    kind TEXT NOT NULL CHECK (kind IN ('peak_gflops', 'bandwidth_gbs')), -- fp32 FMA peak in GFLOP/s, or memory bandwidth in GB/s
    value REAL NOT NULL CHECK (value > 0),
    method TEXT NOT NULL, -- how it was measured, for people: probe, threads, repeats
    measured_at TEXT NOT NULL, -- RFC 3339 UTC
    -- One measurement of each kind per target: the first one is kept.
    UNIQUE (target_id, kind)
);
"#;

/// Version 3: how many timing windows a trial's repeats come from. On a shared machine one window
/// now and then runs ~15 % fast, so a trial timed once is unconfirmed: the tuner times the leaders
/// again until the ones it hands over were timed in several windows, and a later run can tell which
/// leaders still need it.
const SCHEMA_V3: &str = r#"
ALTER TABLE trial ADD COLUMN windows INTEGER NOT NULL DEFAULT 1 CHECK (windows >= 1); -- timing windows the repeats come from: 1 when recorded, one more per later window added
"#;

/// What an opened SQLite database turned out to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Contents {
    /// No tables and version 0: a new file, ready to be migrated from version 0.
    Blank,
    /// A tuning log at this schema version.
    TuningLog { version: u32 },
    /// Something else; the reason says what, in a few words.
    Foreign { reason: String },
}

/// Looks at `conn` without changing it.
pub(crate) fn inspect(conn: &Connection) -> rusqlite::Result<Contents> {
    let user_version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let object_count: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))?;
    if user_version == 0 && object_count == 0 {
        return Ok(Contents::Blank);
    }
    let meta_columns: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('meta') WHERE name IN ('key', 'value')",
        [],
        |row| row.get(0),
    )?;
    if meta_columns != 2 {
        return Ok(Contents::Foreign { reason: "it holds tables but no autotune meta table".into() });
    }
    let format: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key = 'format'", [], |row| row.get(0)).optional()?;
    match format.as_deref() {
        Some(FORMAT_NAME) => {}
        Some(other) => {
            return Ok(Contents::Foreign { reason: format!("its meta table names format `{other}`") })
        }
        None => return Ok(Contents::Foreign { reason: "its meta table names no format".into() }),
    }
    let Ok(version) = u32::try_from(user_version) else {
        return Ok(Contents::Foreign { reason: format!("its schema version {user_version} is negative") });
    };
    // The pragma is the version migrations go by; the meta row is what people (and other tools)
    // read and write. A log whose meta row names a newer schema was written by a newer autotune
    // even if its pragma says otherwise (a tool copied rows, an older build was pointed at it):
    // the newer of the two counts, so such a log is never written as if it were ours.
    let meta_version: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |row| row.get(0))
        .optional()?;
    let meta_version = meta_version.and_then(|v| v.trim().parse::<u32>().ok()).unwrap_or(0);
    Ok(Contents::TuningLog { version: version.max(meta_version) })
}

/// Applies `MIGRATIONS[from..]` and the matching version bookkeeping. The caller owns the
/// transaction, so a failure leaves the file as it was. Returns the failing target version with
/// the error.
pub(crate) fn migrate(conn: &Connection, from: u32) -> Result<(), (u32, rusqlite::Error)> {
    for (version, script) in (from..SCHEMA_VERSION).zip(MIGRATIONS.iter().skip(from as usize)) {
        let to = version + 1;
        conn.execute_batch(script)
            .and_then(|()| conn.pragma_update(None, "user_version", to))
            .and_then(|()| {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![to.to_string()],
                )
            })
            .map_err(|error| (to, error))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use autotune_ir::TrialStatus;

    use super::*;
    use crate::records::MachineMeasurementKind;

    fn migrated() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory sqlite");
        migrate(&conn, 0).expect("migrate from blank");
        conn
    }

    #[test]
    fn blank_database_migrates_to_current_version() {
        let conn = Connection::open_in_memory().expect("in-memory sqlite");
        assert_eq!(inspect(&conn).expect("inspect"), Contents::Blank);
        migrate(&conn, 0).expect("migrate from blank");
        assert_eq!(inspect(&conn).expect("inspect"), Contents::TuningLog { version: SCHEMA_VERSION });
        let meta_version: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |row| row.get(0))
            .expect("meta schema_version");
        assert_eq!(meta_version, SCHEMA_VERSION.to_string());
    }

    #[test]
    fn foreign_databases_are_recognised() {
        let conn = Connection::open_in_memory().expect("in-memory sqlite");
        conn.execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY)").expect("create");
        assert!(matches!(inspect(&conn).expect("inspect"), Contents::Foreign { .. }));

        let conn = Connection::open_in_memory().expect("in-memory sqlite");
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT, value TEXT); INSERT INTO meta VALUES ('format', 'x')",
        )
        .expect("create");
        let contents = inspect(&conn).expect("inspect");
        assert_eq!(contents, Contents::Foreign { reason: "its meta table names format `x`".into() });
    }

    #[test]
    fn status_check_lists_exactly_the_known_statuses() {
        // A new TrialStatus needs a migration that widens the CHECK; this test is the reminder.
        let quoted: Vec<String> = TrialStatus::ALL.iter().map(|status| format!("'{status}'")).collect();
        let expected = format!("CHECK (status IN ({}))", quoted.join(", "));
        assert!(SCHEMA_V1.contains(&expected), "schema lacks `{expected}`");
    }

    #[test]
    fn measurement_kind_check_lists_exactly_the_known_kinds() {
        // A new MachineMeasurementKind needs a migration that widens the CHECK; this is the reminder.
        let quoted: Vec<String> =
            MachineMeasurementKind::ALL.iter().map(|kind| format!("'{}'", kind.as_str())).collect();
        let expected = format!("CHECK (kind IN ({}))", quoted.join(", "));
        assert!(SCHEMA_V2.contains(&expected), "schema lacks `{expected}`");
    }

    /// A log exactly as schema version 1 left it: the V1 script and its version bookkeeping.
    fn version_1_log() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory sqlite");
        conn.execute_batch(SCHEMA_V1).expect("schema v1");
        conn.pragma_update(None, "user_version", 1).expect("user_version");
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')", []).expect("meta");
        conn
    }

    #[test]
    fn a_version_1_log_migrates_to_the_current_version_and_keeps_its_rows() {
        let conn = version_1_log();
        assert_eq!(inspect(&conn).expect("inspect"), Contents::TuningLog { version: 1 });
        conn.execute_batch(
            "INSERT INTO target (target_key, kind, name, features, threads, target_json)
                 VALUES ('t', 'cpu', 'cpu', 'avx2', 1, '{}');
             INSERT INTO workload (task_key, op, description, task_json, flops)
                 VALUES ('w', 'matmul', 'matmul 2x2x2 f32', '{}', 16);",
        )
        .expect("v1 rows");

        migrate(&conn, 1).expect("migrate from v1");
        assert_eq!(inspect(&conn).expect("inspect"), Contents::TuningLog { version: SCHEMA_VERSION });
        let meta_version: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |row| row.get(0))
            .expect("meta schema_version");
        assert_eq!(meta_version, SCHEMA_VERSION.to_string());
        let kept: (i64, i64) = conn
            .query_row("SELECT (SELECT count(*) FROM target), (SELECT count(*) FROM workload)", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .expect("count rows");
        assert_eq!(kept, (1, 1));

        // The new table takes measurements of the old target, and refuses non-physical values.
        let insert = |kind: &str, value: f64| {
            conn.execute(
                "INSERT INTO machine_measurement (target_id, kind, value, method, measured_at)
                 VALUES ((SELECT id FROM target), ?1, ?2, 'test', 'now')",
                params![kind, value],
            )
        };
        assert!(insert("peak_gflops", 100.0).is_ok());
        assert!(insert("peak_gflops", 120.0).is_err(), "one measurement per kind and target");
        assert!(insert("bandwidth_gbs", 0.0).is_err(), "a zero bandwidth is not a measurement");
        assert!(insert("latency_ns", 1.0).is_err(), "unknown kind");
        assert!(insert("bandwidth_gbs", 12.5).is_ok());
    }

    #[test]
    fn a_version_2_trial_counts_as_timed_in_one_window() {
        // A log exactly as schema version 2 left it, holding a trial.
        let conn = version_1_log();
        conn.execute_batch(SCHEMA_V2).expect("schema v2");
        conn.pragma_update(None, "user_version", 2).expect("user_version");
        conn.execute_batch(
            "UPDATE meta SET value = '2' WHERE key = 'schema_version';
             INSERT INTO target (target_key, kind, name, features, threads, target_json)
                 VALUES ('t', 'cpu', 'cpu', 'avx2', 1, '{}');
             INSERT INTO workload (task_key, op, description, task_json, flops)
                 VALUES ('w', 'matmul', 'matmul 2x2x2 f32', '{}', 16);
             INSERT INTO session (started_at, command, seed, strategy, tool_version)
                 VALUES ('now', 'autotune', 0, 'random', '0');
             INSERT INTO trial (workload_id, target_id, session_id, trace_json, trace_key, space_version,
                 codegen_version, status, repeat_times_s, median_s, min_s, build_time_s, strategy, recorded_at)
                 VALUES (1, 1, 1, '{}', 'old', 's', 'c', 'ok', '[0.002,0.001]', 0.0015, 0.001, 0.1, 'random', 'now');",
        )
        .expect("v2 rows");
        assert_eq!(inspect(&conn).expect("inspect"), Contents::TuningLog { version: 2 });

        migrate(&conn, 2).expect("migrate from v2");
        assert_eq!(inspect(&conn).expect("inspect"), Contents::TuningLog { version: 3 });
        let windows: i64 = conn
            .query_row("SELECT windows FROM trial WHERE trace_key = 'old'", [], |row| row.get(0))
            .expect("windows");
        assert_eq!(windows, 1, "a trial recorded before windows were counted was timed once");
        let zero = conn.execute("UPDATE trial SET windows = 0 WHERE trace_key = 'old'", []);
        assert!(zero.is_err(), "a time comes from at least one window");
    }

    #[test]
    fn schema_text_is_frozen() {
        let conn = migrated();
        let mut statement = conn
            .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .expect("prepare");
        let schema: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let expected = [
            "CREATE TABLE machine_measurement (
    id INTEGER PRIMARY KEY,
    target_id INTEGER NOT NULL REFERENCES target(id),
    kind TEXT NOT NULL CHECK (kind IN ('peak_gflops', 'bandwidth_gbs')), -- fp32 FMA peak in GFLOP/s, or memory bandwidth in GB/s
    value REAL NOT NULL CHECK (value > 0),
    method TEXT NOT NULL, -- how it was measured, for people: probe, threads, repeats
    measured_at TEXT NOT NULL, -- RFC 3339 UTC
    -- One measurement of each kind per target: the first one is kept.
    UNIQUE (target_id, kind)
)",
            "CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)",
            "CREATE TABLE session (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL, -- RFC 3339 UTC
    ended_at TEXT, -- RFC 3339 UTC; NULL while running, or when the run was killed
    command TEXT NOT NULL,
    seed INTEGER NOT NULL, -- a u64, stored as the i64 with the same bits
    strategy TEXT NOT NULL,
    tool_version TEXT NOT NULL
)",
            "CREATE TABLE target (
    id INTEGER PRIMARY KEY,
    target_key TEXT NOT NULL UNIQUE, -- stable hash of the canonical target
    kind TEXT NOT NULL, -- 'cpu' or 'cuda'
    name TEXT NOT NULL, -- CPU model string or GPU name
    features TEXT NOT NULL, -- comma-separated ISA features, or the compute capability
    threads INTEGER NOT NULL,
    target_json TEXT NOT NULL
)",
            "CREATE TABLE trial (
    id INTEGER PRIMARY KEY,
    workload_id INTEGER NOT NULL REFERENCES workload(id),
    target_id INTEGER NOT NULL REFERENCES target(id),
    session_id INTEGER NOT NULL REFERENCES session(id),
    trace_json TEXT NOT NULL,
    trace_key TEXT NOT NULL, -- stable hash of the canonical trace
    space_version TEXT NOT NULL,
    codegen_version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'build_error', 'run_error', 'wrong_result', 'timeout')),
    error TEXT,
    repeat_times_s TEXT NOT NULL, -- JSON array of seconds, one per timed repeat
    median_s REAL,
    min_s REAL,
    build_time_s REAL NOT NULL,
    strategy TEXT NOT NULL, -- the search technique that proposed the trace
    recorded_at TEXT NOT NULL, windows INTEGER NOT NULL DEFAULT 1 CHECK (windows >= 1), -- RFC 3339 UTC
    -- Only a trial that matched the reference has a time, so only it can be a winner; and a
    -- time is always a real measurement, never a sentinel.
    CHECK ((status = 'ok') = (median_s IS NOT NULL AND min_s IS NOT NULL)),
    CHECK (median_s > 0 AND min_s > 0 AND min_s <= median_s),
    -- A trace is measured once per workload, target, schedule space and code generator.
    UNIQUE (workload_id, target_id, trace_key, space_version, codegen_version)
)",
            "CREATE INDEX trial_by_rank ON trial (workload_id, target_id, status, median_s)",
            "CREATE INDEX trial_by_session ON trial (session_id)",
            "CREATE TABLE workload (
    id INTEGER PRIMARY KEY,
    task_key TEXT NOT NULL UNIQUE, -- stable hash of the canonical task
    op TEXT NOT NULL,
    description TEXT NOT NULL, -- human readable, e.g. 'matmul 1024x1024x1024 f32'
    task_json TEXT NOT NULL,
    flops REAL NOT NULL
)",
        ];
        assert_eq!(schema, expected);
    }
}
