//! End-to-end: several `autotune` processes on one tuning log at once all finish, and the log
//! holds every trial of each exactly once (two runs at once used to fail with "database is
//! locked" while opening a new log).

use autotune_db::Database;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn start(shape: &str, db: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_autotune"))
        .args(["op", "matmul", "--shape", shape, "--trials", "6", "--batch-size", "2", "--json", "--db"])
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start autotune")
}

fn finished(child: std::process::Child) -> Output {
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    out
}

/// (rows, distinct (task, trace) pairs) of the log.
fn rows(db: &Path) -> (usize, usize) {
    let db = Database::open_read_only(db).expect("the log opens");
    let target = autotune_codegen::host_cpu_target(1).expect("host").key();
    let (mut n, mut distinct) = (0, HashSet::new());
    for (_, workload) in db.workloads().expect("workloads") {
        for trial in db.trials(&workload.task_key, &target).expect("trials") {
            n += 1;
            distinct.insert((workload.task_key.clone(), trial.trace_key, trial.space_version));
        }
    }
    (n, distinct.len())
}

#[test]
fn two_tuning_runs_on_one_new_log_both_finish_and_lose_nothing() {
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("shared.tuning.db");
        // Different tasks: each run's 6 trials and its default schedule, all of them kept.
        let (a, b) = (start("32x32x32", &db), start("48x32x16", &db));
        finished(a);
        finished(b);
        assert_eq!(rows(&db), (14, 14), "round {round}");
        // The same task again from two processes: each trace at most once, nothing lost.
        let (a, b) = (start("32x32x32", &db), start("32x32x32", &db));
        finished(a);
        finished(b);
        let (n, distinct) = rows(&db);
        assert_eq!(n, distinct, "round {round}: a trace recorded twice");
        assert!(n >= 14 + 6, "round {round}: {n} rows");
    }
}
