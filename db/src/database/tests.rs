use std::fs;

use rusqlite::Connection;
use tempfile::TempDir;

use super::*;
use crate::schema::FORMAT_NAME;

fn matmul() -> WorkloadSpec {
    WorkloadSpec {
        task_key: "task-matmul-1024".into(),
        op: "matmul".into(),
        description: "matmul 1024x1024x1024 f32".into(),
        task_json: r#"{"op":"matmul","m":1024,"n":1024,"k":1024}"#.into(),
        flops: 2.0 * 1024.0 * 1024.0 * 1024.0,
    }
}

fn cpu() -> TargetSpec {
    TargetSpec {
        target_key: "target-cpu".into(),
        kind: "cpu".into(),
        name: "AMD EPYC 9654".into(),
        features: "avx2,avx512f,fma".into(),
        threads: 16,
        target_json: r#"{"kind":"cpu"}"#.into(),
    }
}

fn session_spec(seed: u64) -> SessionSpec {
    SessionSpec {
        command: "autotune tune matmul".into(),
        seed,
        strategy: "evolutionary".into(),
        tool_version: "0.1.0".into(),
    }
}

/// Ids of one workload, target and session in a log.
#[derive(Clone, Copy)]
struct Context {
    workload: WorkloadId,
    target: TargetId,
    session: SessionId,
}

fn set_up(db: &mut Database, seed: u64) -> Context {
    Context {
        workload: db.upsert_workload(&matmul()).expect("workload"),
        target: db.upsert_target(&cpu()).expect("target"),
        session: db.begin_session(&session_spec(seed)).expect("session"),
    }
}

fn trial(context: Context, trace_key: &str, status: TrialStatus, repeat_times_s: &[f64]) -> NewTrial {
    NewTrial {
        workload: context.workload,
        target: context.target,
        session: context.session,
        trace_json: format!(r#"{{"trace":"{trace_key}"}}"#),
        trace_key: trace_key.into(),
        space_version: "space-1".into(),
        codegen_version: "codegen-1".into(),
        status,
        error: (!status.is_ok()).then(|| format!("{status} for {trace_key}")),
        repeat_times_s: repeat_times_s.to_vec(),
        build_time_s: 0.25,
        strategy: "random".into(),
    }
}

fn ok(context: Context, trace_key: &str, repeat_times_s: &[f64]) -> NewTrial {
    trial(context, trace_key, TrialStatus::Ok, repeat_times_s)
}

fn trace_keys(records: &[TrialRecord]) -> Vec<&str> {
    records.iter().map(|record| record.trace_key.as_str()).collect()
}

fn trial_count(db: &Database) -> i64 {
    db.conn.query_row("SELECT count(*) FROM trial", [], |row| row.get(0)).expect("count trials")
}

#[test]
fn workload_target_session_and_trials_round_trip() {
    let mut db = Database::open_in_memory().expect("open");
    assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
    let context = set_up(&mut db, u64::MAX);

    // Get-or-insert: the same key gives the same id, and the first spec is kept.
    let renamed = WorkloadSpec { description: "renamed".into(), ..matmul() };
    assert_eq!(db.upsert_workload(&renamed).expect("workload again"), context.workload);
    assert_eq!(db.upsert_target(&cpu()).expect("target again"), context.target);
    assert_eq!(db.workloads().expect("workloads"), vec![(context.workload, matmul())]);
    assert_eq!(db.targets().expect("targets"), vec![(context.target, cpu())]);

    let sessions = db.sessions().expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        (sessions[0].id, sessions[0].seed, sessions[0].ended_at.as_deref()),
        (context.session, u64::MAX, None)
    );
    db.end_session(context.session).expect("end session");
    let ended = &db.sessions().expect("sessions")[0];
    assert!(ended.ended_at.as_deref().is_some_and(|at| at >= ended.started_at.as_str()), "{ended:?}");
    assert_eq!(
        (&ended.command, &ended.strategy, &ended.tool_version),
        (&session_spec(0).command, &session_spec(0).strategy, &session_spec(0).tool_version)
    );

    let new_trials =
        vec![ok(context, "a", &[3.0, 1.0, 2.0]), trial(context, "b", TrialStatus::BuildError, &[])];
    let ids = db.record_batch(&new_trials).expect("record");
    assert!(ids.iter().all(Option::is_some), "{ids:?}");

    let stored = db.trials(&matmul().task_key, &cpu().target_key).expect("trials");
    assert_eq!(stored.len(), 2);
    for ((record, new), id) in stored.iter().zip(&new_trials).zip(&ids) {
        assert_eq!(Some(record.id), *id);
        assert_eq!((&record.workload_key, &record.target_key), (&matmul().task_key, &cpu().target_key));
        assert_eq!(record.session, new.session);
        assert_eq!((&record.trace_json, &record.trace_key), (&new.trace_json, &new.trace_key));
        assert_eq!(
            (&record.space_version, &record.codegen_version),
            (&new.space_version, &new.codegen_version)
        );
        assert_eq!((record.status, &record.error), (new.status, &new.error));
        assert_eq!(record.repeat_times_s, new.repeat_times_s);
        assert_eq!((record.build_time_s, &record.strategy), (new.build_time_s, &new.strategy));
        assert!(record.recorded_at.ends_with('Z'), "{}", record.recorded_at);
    }
    assert_eq!((stored[0].median_s, stored[0].min_s), (Some(2.0), Some(1.0)));
    assert_eq!((stored[1].median_s, stored[1].min_s), (None, None));
}

#[test]
fn best_ranks_only_ok_trials_by_median() {
    let mut db = Database::open_in_memory().expect("open");
    let context = set_up(&mut db, 7);
    db.record_batch(&[
        ok(context, "slow", &[3.0, 3.0, 3.0]),
        // Faster than every ok trial, but wrong or unfinished: never a winner.
        trial(context, "wrong", TrialStatus::WrongResult, &[0.001, 0.001]),
        trial(context, "hung", TrialStatus::Timeout, &[0.0005]),
        ok(context, "fast", &[1.0, 5.0, 0.5]),
        ok(context, "middle", &[2.0]),
        ok(context, "middle-tie", &[2.5, 1.5]),
    ])
    .expect("record");

    let best = db.best(&matmul().task_key, &cpu().target_key, 10).expect("best");
    assert_eq!(trace_keys(&best), ["fast", "middle", "middle-tie", "slow"]);
    assert!(best.iter().all(|record| record.status == TrialStatus::Ok));
    assert_eq!(trace_keys(&db.best(&matmul().task_key, &cpu().target_key, 1).expect("best 1")), ["fast"]);
    assert!(db.best(&matmul().task_key, &cpu().target_key, 0).expect("best 0").is_empty());
    assert!(db.best("no-such-task", &cpu().target_key, 5).expect("best of unknown").is_empty());

    // The failed trial keeps its repeat time as evidence but has no median or minimum.
    let wrong = db
        .trials(&matmul().task_key, &cpu().target_key)
        .expect("trials")
        .into_iter()
        .find(|record| record.trace_key == "wrong")
        .expect("wrong_result trial stored");
    assert_eq!((wrong.repeat_times_s, wrong.median_s, wrong.min_s), (vec![0.001, 0.001], None, None));
}

#[test]
fn the_file_itself_refuses_a_time_on_a_failed_trial() {
    let mut db = Database::open_in_memory().expect("open");
    let context = set_up(&mut db, 7);
    let insert = |status: &str, median: Option<f64>| {
        db.conn.execute(
            "INSERT INTO trial (workload_id, target_id, session_id, trace_json, trace_key, space_version,
                 codegen_version, status, repeat_times_s, median_s, min_s, build_time_s, strategy, recorded_at)
             VALUES (?1, ?2, ?3, '{}', ?4, 's', 'c', ?4, '[]', ?5, ?5, 0, 'raw', 'now')",
            params![context.workload.0, context.target.0, context.session.0, status, median],
        )
    };
    assert!(insert("wrong_result", Some(0.1)).is_err(), "failed trial with a time");
    assert!(insert("ok", None).is_err(), "ok trial without a time");
    assert!(insert("ok", Some(-1.0)).is_err(), "sentinel time");
    assert!(insert("fast", None).is_err(), "unknown status");
    assert!(insert("timeout", None).is_ok());
    assert!(insert("ok", Some(0.1)).is_ok());
}

#[test]
fn record_batch_skips_already_recorded_traces() {
    let mut db = Database::open_in_memory().expect("open");
    let context = set_up(&mut db, 7);
    let first = db.record_batch(&[ok(context, "a", &[1.0]), ok(context, "b", &[1.0])]).expect("first batch");
    assert!(first.iter().all(Option::is_some), "{first:?}");

    let second = db
        .record_batch(&[
            trial(context, "b", TrialStatus::RunError, &[]),
            ok(context, "c", &[1.0]),
            ok(context, "c", &[2.0]),
        ])
        .expect("second batch");
    assert_eq!(second[0], None, "b was recorded by the first batch");
    assert!(second[1].is_some());
    assert_eq!(second[2], None, "c was recorded earlier in the same batch");
    assert_eq!(trial_count(&db), 3);

    // The same trace under a new code generator is a new measurement.
    let rebuilt = NewTrial { codegen_version: "codegen-2".into(), ..ok(context, "a", &[1.0]) };
    assert!(db.record_batch(&[rebuilt]).expect("new codegen")[0].is_some());

    let measured = |codegen: &str| {
        db.measured_trace_keys(context.workload, context.target, "space-1", codegen).expect("measured")
    };
    assert_eq!(measured("codegen-1"), HashSet::from(["a".to_string(), "b".to_string(), "c".to_string()]));
    assert_eq!(measured("codegen-2"), HashSet::from(["a".to_string()]));
    assert!(measured("codegen-3").is_empty());
}

#[test]
fn an_invalid_trial_rejects_its_whole_batch() {
    let mut db = Database::open_in_memory().expect("open");
    let context = set_up(&mut db, 7);
    let batch = [ok(context, "good", &[1.0]), ok(context, "no-times", &[])];
    match db.record_batch(&batch) {
        Err(DbError::InvalidTrial { index: 1, trace_key, .. }) => assert_eq!(trace_key, "no-times"),
        other => panic!("expected InvalidTrial for trial 1, got {other:?}"),
    }
    assert_eq!(trial_count(&db), 0);

    // A failure inside the transaction (an unknown session) rolls back the rows before it too.
    let orphan = NewTrial { session: SessionId(999), ..ok(context, "orphan", &[1.0]) };
    let error = db.record_batch(&[ok(context, "good", &[1.0]), orphan]).expect_err("foreign key");
    assert!(matches!(error, DbError::Sqlite { operation: "record trials", .. }), "{error:?}");
    assert_eq!(trial_count(&db), 0);
    assert!(db.record_batch(&[]).expect("empty batch").is_empty());
}

#[test]
fn sessions_on_one_file_add_up_and_stay_separate() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("model.tuning.db");

    let first_session = {
        let mut db = Database::open(&path).expect("open first");
        let context = set_up(&mut db, 1);
        db.record_batch(&[ok(context, "a", &[1.0]), ok(context, "b", &[2.0])]).expect("first batch");
        db.end_session(context.session).expect("end");
        context.session
    };

    let mut db = Database::open(&path).expect("reopen");
    let context = set_up(&mut db, 2);
    assert_ne!(context.session, first_session);
    let ids = db.record_batch(&[ok(context, "a", &[0.5]), ok(context, "c", &[3.0])]).expect("second batch");
    assert_eq!(ids[0], None, "a was measured by the first session");

    assert_eq!(
        trace_keys(&db.trials(&matmul().task_key, &cpu().target_key).expect("trials")),
        ["a", "b", "c"]
    );
    assert_eq!(trace_keys(&db.session_trials(first_session).expect("first")), ["a", "b"]);
    assert_eq!(trace_keys(&db.session_trials(context.session).expect("second")), ["c"]);
    let seeds: Vec<u64> = db.sessions().expect("sessions").iter().map(|session| session.seed).collect();
    assert_eq!(seeds, [1, 2]);
}

#[test]
fn a_reader_sees_what_an_open_writer_committed() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("model.tuning.db");
    let mut writer = Database::open(&path).expect("open writer");
    let context = set_up(&mut writer, 1);
    writer.record_batch(&[ok(context, "a", &[1.0])]).expect("first batch");

    let reader = Database::open_read_only(&path).expect("open reader beside the writer");
    assert_eq!(reader.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(trace_keys(&reader.trials(&matmul().task_key, &cpu().target_key).expect("read")), ["a"]);

    writer.record_batch(&[ok(context, "b", &[0.5])]).expect("second batch");
    assert_eq!(trace_keys(&reader.best(&matmul().task_key, &cpu().target_key, 5).expect("best")), ["b", "a"]);

    let mut reader = reader;
    assert!(reader.begin_session(&session_spec(3)).is_err(), "a read-only log must refuse writes");
}

#[test]
fn a_reader_opens_a_closed_log_and_never_creates_one() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("model.tuning.db");
    let missing = Database::open_read_only(&path).expect_err("missing file");
    assert!(matches!(missing, DbError::NotFound { .. }), "{missing:?}");
    assert!(!path.exists(), "a read-only open must not create the file");

    {
        let mut db = Database::open(&path).expect("open");
        set_up(&mut db, 1);
    }
    let reader = Database::open_read_only(&path).expect("open closed log");
    assert_eq!(reader.workloads().expect("workloads").len(), 1);
}

#[test]
fn an_empty_file_is_migrated_to_the_current_schema() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("empty.tuning.db");
    fs::write(&path, b"").expect("create empty file");
    let empty_read_only = Database::open_read_only(&path).expect_err("nothing to read");
    assert!(matches!(empty_read_only, DbError::NotATuningLog { .. }), "{empty_read_only:?}");

    let db = Database::open(&path).expect("open");
    assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
    let meta: Vec<(String, String)> = db
        .conn
        .prepare("SELECT key, value FROM meta ORDER BY key")
        .expect("prepare")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        meta,
        [
            ("format".to_string(), FORMAT_NAME.to_string()),
            ("schema_version".to_string(), SCHEMA_VERSION.to_string())
        ]
    );
    let journal_mode: String =
        db.conn.pragma_query_value(None, "journal_mode", |row| row.get(0)).expect("journal mode");
    assert_eq!(journal_mode, "wal");
}

#[test]
fn a_log_from_a_newer_autotune_is_refused() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("future.tuning.db");
    drop(Database::open(&path).expect("create"));
    let future = SCHEMA_VERSION + 2;
    Connection::open(&path)
        .expect("raw open")
        .pragma_update(None, "user_version", future)
        .expect("bump version");

    for result in [Database::open(&path), Database::open_read_only(&path)] {
        let error = result.expect_err("newer schema");
        assert!(
            matches!(error, DbError::NewerSchema { found, supported, .. } if found == future && supported == SCHEMA_VERSION),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.ends_with("upgrade autotune"),
            "{message}"
        );
    }
}

#[test]
fn a_log_whose_meta_row_names_a_newer_schema_is_refused_and_left_untouched() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("meta99.tuning.db");
    drop(Database::open(&path).expect("create"));
    Connection::open(&path)
        .expect("raw open")
        .execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", [])
        .expect("bump the meta row only");
    let before = std::fs::read(&path).expect("read");
    for result in [Database::open(&path), Database::open_read_only(&path)] {
        let error = result.expect_err("newer schema");
        assert!(matches!(error, DbError::NewerSchema { found: 99, .. }), "{error:?}");
        assert!(error.to_string().contains("schema 99"), "{error}");
    }
    assert_eq!(std::fs::read(&path).expect("read"), before, "nothing written");
}

/// Bytes flipped inside the pages of a log that holds trials: the log is refused for writing with
/// one line that says so, and the file is left exactly as it was.
#[test]
fn a_log_with_damaged_pages_is_refused_for_writing_and_left_untouched() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("damaged.tuning.db");
    {
        let mut db = Database::open(&path).expect("create");
        let context = set_up(&mut db, 1);
        let batch: Vec<NewTrial> =
            (0..400).map(|i| ok(context, &format!("k{i:04}"), &[1e-3, 2e-3])).collect();
        db.record_batch(&batch).expect("record");
        // Checkpoint the WAL into the file, so the damage below hits committed pages.
        db.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE").expect("checkpoint");
    }
    let mut bytes = std::fs::read(&path).expect("read");
    let page = 4096;
    assert!(bytes.len() > 16 * page, "{} bytes", bytes.len());
    // The b-tree page headers of the trial pages only: the schema and meta pages (the first few)
    // stay readable, so only a check of every page finds the damage.
    for start in (12 * page..bytes.len()).step_by(page) {
        for b in &mut bytes[start..start + 8] {
            *b ^= 0xA5;
        }
    }
    std::fs::write(&path, &bytes).expect("write");
    let error = Database::open(&path).expect_err("damaged");
    assert!(matches!(error, DbError::Corrupt { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("corrupt") && message.contains("restore it from a copy"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    assert_eq!(std::fs::read(&path).expect("read"), bytes, "nothing written");
}

#[test]
fn a_foreign_sqlite_database_is_refused_and_left_untouched() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("photos.db");
    Connection::open(&path)
        .expect("raw open")
        .execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY, file TEXT)")
        .expect("create foreign table");
    let before = fs::read(&path).expect("read");

    for result in [Database::open(&path), Database::open_read_only(&path)] {
        let error = result.expect_err("foreign database");
        assert!(matches!(error, DbError::NotATuningLog { .. }), "{error:?}");
        assert!(error.to_string().contains("is not an autotune tuning log"), "{error}");
    }
    assert_eq!(fs::read(&path).expect("read"), before);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_untouched() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("notes.db");
    let text = "these are notes, not a database\n".repeat(64);
    fs::write(&path, &text).expect("write");

    for result in [Database::open(&path), Database::open_read_only(&path)] {
        let error = result.expect_err("not sqlite");
        assert!(matches!(error, DbError::NotATuningLog { .. }), "{error:?}");
        assert!(error.to_string().contains("not an SQLite database"), "{error}");
    }
    assert_eq!(fs::read_to_string(&path).expect("read"), text);
}

#[test]
fn opening_in_a_missing_directory_names_the_path() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("no-such-dir").join("model.tuning.db");
    let error = Database::open(&path).expect_err("missing directory");
    assert!(matches!(error, DbError::Open { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("no-such-dir does not exist"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn ending_an_unknown_session_is_an_error() {
    let mut db = Database::open_in_memory().expect("open");
    let error = db.end_session(SessionId(42)).expect_err("unknown session");
    assert!(matches!(error, DbError::UnknownSession { session: SessionId(42), .. }), "{error:?}");
}

#[test]
fn unreadable_stored_times_are_reported_as_corruption() {
    let mut db = Database::open_in_memory().expect("open");
    let context = set_up(&mut db, 1);
    db.record_batch(&[ok(context, "a", &[1.0])]).expect("record");
    db.conn.execute("UPDATE trial SET repeat_times_s = 'oops'", []).expect("corrupt");
    let error = db.trials(&matmul().task_key, &cpu().target_key).expect_err("corrupt times");
    assert!(matches!(error, DbError::Corrupt { .. }), "{error:?}");
}

fn measurement(kind: MachineMeasurementKind, value: f64) -> NewMachineMeasurement {
    NewMachineMeasurement { kind, value, method: format!("test probe for {}", kind.as_str()) }
}

#[test]
fn machine_measurements_round_trip_and_the_first_one_is_kept() {
    let mut db = Database::open_in_memory().expect("open");
    set_up(&mut db, 1);
    let key = cpu().target_key;
    assert!(db.machine_measurements(&key).expect("none yet").is_empty());

    let bandwidth = measurement(MachineMeasurementKind::BandwidthGbs, 21.5);
    let peak = measurement(MachineMeasurementKind::PeakGflops, 180.0);
    assert!(db.record_machine_measurement(&key, &bandwidth).expect("bandwidth"));
    assert!(db.record_machine_measurement(&key, &peak).expect("peak"));
    let again = measurement(MachineMeasurementKind::PeakGflops, 999.0);
    assert!(!db.record_machine_measurement(&key, &again).expect("peak again"), "the first one is kept");

    let stored = db.machine_measurements(&key).expect("read");
    let read: Vec<(MachineMeasurementKind, f64, &str)> =
        stored.iter().map(|m| (m.kind, m.value, m.method.as_str())).collect();
    assert_eq!(
        read,
        [
            (MachineMeasurementKind::PeakGflops, 180.0, peak.method.as_str()),
            (MachineMeasurementKind::BandwidthGbs, 21.5, bandwidth.method.as_str())
        ]
    );
    assert!(stored.iter().all(|m| m.target_key == key && m.measured_at.ends_with('Z')), "{stored:?}");
    assert!(db.machine_measurements("another-target").expect("unknown target").is_empty());
}

#[test]
fn a_machine_measurement_needs_a_known_target_and_a_physical_value() {
    let mut db = Database::open_in_memory().expect("open");
    set_up(&mut db, 1);
    let error = db
        .record_machine_measurement("no-such-target", &measurement(MachineMeasurementKind::PeakGflops, 1.0))
        .expect_err("unknown target");
    assert!(matches!(error, DbError::UnknownTarget { .. }), "{error:?}");
    for bad in [0.0, -3.0, f64::NAN, f64::INFINITY] {
        let error = db
            .record_machine_measurement(
                &cpu().target_key,
                &measurement(MachineMeasurementKind::BandwidthGbs, bad),
            )
            .expect_err("non-physical value");
        assert!(matches!(error, DbError::InvalidMeasurement { kind: "bandwidth_gbs", .. }), "{error:?}");
    }
    assert!(db.machine_measurements(&cpu().target_key).expect("read").is_empty());
}

#[test]
fn a_version_1_file_is_migrated_on_a_writing_open_and_refused_by_a_reader() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("old.tuning.db");
    {
        // A log as a schema-1 autotune wrote it, with one trial in it.
        let conn = Connection::open(&path).expect("raw open");
        conn.execute_batch(crate::schema::MIGRATIONS[0]).expect("schema v1");
        conn.pragma_update(None, "user_version", 1).expect("user_version");
        conn.execute_batch(
            "INSERT INTO meta (key, value) VALUES ('schema_version', '1');
             INSERT INTO workload (task_key, op, description, task_json, flops)
                 VALUES ('task-matmul-1024', 'matmul', 'matmul 1024x1024x1024 f32', '{}', 2147483648);
             INSERT INTO target (target_key, kind, name, features, threads, target_json)
                 VALUES ('target-cpu', 'cpu', 'AMD EPYC 9654', 'avx2', 16, '{}');
             INSERT INTO session (started_at, command, seed, strategy, tool_version)
                 VALUES ('2024-01-01T00:00:00Z', 'autotune', 1, 'random', '0.1.0');
             INSERT INTO trial (workload_id, target_id, session_id, trace_json, trace_key, space_version,
                 codegen_version, status, repeat_times_s, median_s, min_s, build_time_s, strategy, recorded_at)
                 VALUES (1, 1, 1, '{}', 'a', 's', 'c', 'ok', '[0.5]', 0.5, 0.5, 0.1, 'random',
                 '2024-01-01T00:00:01Z');",
        )
        .expect("v1 rows");
    }

    let reader = Database::open_read_only(&path).expect_err("a reader never migrates");
    assert!(matches!(reader, DbError::OutdatedSchema { found: 1, .. }), "{reader:?}");

    let mut db = Database::open(&path).expect("migrating open");
    assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(trace_keys(&db.trials("task-matmul-1024", "target-cpu").expect("trials")), ["a"]);
    assert!(db
        .record_machine_measurement("target-cpu", &measurement(MachineMeasurementKind::PeakGflops, 50.0))
        .expect("measurement on a migrated log"));
    drop(db);
    let reader = Database::open_read_only(&path).expect("reader after the migration");
    assert_eq!(reader.machine_measurements("target-cpu").expect("read").len(), 1);
}

#[test]
fn added_repeats_retime_a_lucky_trial_and_keep_its_first_window() {
    let mut db = Database::open_in_memory().expect("open");
    let context = set_up(&mut db, 7);
    let ids = db
        .record_batch(&[
            // Timed in one lucky window: the fastest on record.
            ok(context, "lucky", &[1.0, 1.0, 1.0]),
            ok(context, "steady", &[1.2, 1.2, 1.2]),
            trial(context, "broken", TrialStatus::RunError, &[]),
        ])
        .expect("record");
    let (lucky, broken) = (ids[0].expect("lucky id"), ids[2].expect("broken id"));
    let leader = |db: &Database| db.best(&matmul().task_key, &cpu().target_key, 1).expect("best")[0].clone();
    assert_eq!(leader(&db).trace_key, "lucky");

    db.add_repeats(lucky, &[1.5, 1.5, 1.4, 1.6, 1.5, 1.5]).expect("add");
    let retimed = leader(&db);
    assert_eq!(retimed.trace_key, "steady", "two slower windows outvote the lucky one");
    let lucky_now = db
        .trials(&matmul().task_key, &cpu().target_key)
        .expect("trials")
        .into_iter()
        .find(|record| record.trace_key == "lucky")
        .expect("lucky");
    assert_eq!(lucky_now.repeat_times_s.len(), 9);
    assert_eq!((lucky_now.median_s, lucky_now.min_s), (Some(1.5), Some(1.0)));
    assert_eq!((lucky_now.windows, retimed.windows), (2, 1), "a window counted per add, others untouched");

    assert!(matches!(db.add_repeats(broken, &[1.0]), Err(DbError::CannotRetime { .. })));
    assert!(matches!(db.add_repeats(lucky, &[f64::NAN]), Err(DbError::CannotRetime { .. })));
    assert!(matches!(db.add_repeats(TrialId(999), &[1.0]), Err(DbError::CannotRetime { .. })));
    assert_eq!(trial_count(&db), 3);
}
