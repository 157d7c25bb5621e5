//! Logs of every earlier schema version, checked in as files (`tests/fixtures/schema_vN.tuning.db`:
//! a 6-trial matmul 16×16×16 log, the schema-1 one as schema 1 left it: no `machine_measurement`
//! table; in the schema-3 one the fastest trial was timed in 3 windows), open for writing, migrate to the current schema and give the same winners they held.

use autotune_db::{Database, SCHEMA_VERSION};
use rusqlite::Connection;
use std::path::PathBuf;

fn fixture(version: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/schema_v{version}.tuning.db"))
}

/// (task key, target key, trace keys of the ok trials fastest first) as plain SQL reads them.
fn winners_by_sql(path: &std::path::Path) -> (String, String, Vec<String>) {
    let conn = Connection::open(path).expect("sqlite");
    let (task, target): (String, String) = conn
        .query_row(
            "SELECT w.task_key, g.target_key FROM trial t JOIN workload w ON w.id = t.workload_id
             JOIN target g ON g.id = t.target_id LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("a trial");
    let mut statement =
        conn.prepare("SELECT trace_key FROM trial WHERE status = 'ok' ORDER BY median_s, id").expect("query");
    let keys = statement.query_map([], |row| row.get(0)).expect("rows").collect::<Result<Vec<String>, _>>();
    (task, target, keys.expect("keys"))
}

#[test]
fn every_earlier_schema_migrates_and_keeps_its_winners() {
    assert_eq!(SCHEMA_VERSION, 3, "a new schema version needs its fixture log here");
    for version in 1..=SCHEMA_VERSION {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.tuning.db");
        std::fs::copy(fixture(version), &path).expect("copy the fixture");
        let (task, target, expected) = winners_by_sql(&path);
        assert!(expected.len() >= 3, "schema {version}: {expected:?}");

        let db = Database::open(&path).expect("opens and migrates");
        assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
        let best: Vec<String> =
            db.best(&task, &target, expected.len()).expect("best").into_iter().map(|t| t.trace_key).collect();
        assert_eq!(best, expected, "schema {version}");
        drop(db);
        // Read-only commands read the migrated log too.
        let reader = Database::open_read_only(&path).expect("read-only");
        let trials = reader.trials(&task, &target).expect("trials");
        assert_eq!(trials.len(), 6, "schema {version}");
        // Before schema 3 windows were not counted: every trial counts as timed once.
        let confirmed = trials.iter().filter(|t| t.windows > 1).count();
        assert_eq!(confirmed, if version >= 3 { 1 } else { 0 }, "schema {version}");
    }
}
