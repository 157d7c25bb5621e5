//! The tuning-log reader on arbitrary files: opening a log (for reading, then for writing, which
//! checks, migrates and may repair the journal) and every query the reading commands make must
//! answer with a value or a `DbError`, never a panic or a hang.
#![no_main]

use autotune_db::Database;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fuzzed.tuning.db");
    std::fs::write(&path, bytes).expect("write the fuzzed log");
    if let Ok(db) = Database::open_read_only(&path) {
        read_everything(&db);
    }
    if let Ok(db) = Database::open(&path) {
        read_everything(&db);
    }
});

fn read_everything(db: &Database) {
    let _ = db.schema_version();
    let workloads = db.workloads().unwrap_or_default();
    let targets = db.targets().unwrap_or_default();
    for (_, workload) in workloads.iter().take(4) {
        for (_, target) in targets.iter().take(4) {
            let _ = db.best(&workload.task_key, &target.target_key, 3);
            let _ = db.trials(&workload.task_key, &target.target_key);
        }
    }
    for target in targets.iter().take(4) {
        let _ = db.machine_measurements(&target.1.target_key);
    }
    for session in db.sessions().unwrap_or_default().iter().take(4) {
        let _ = db.session_trials(session.id);
    }
}
