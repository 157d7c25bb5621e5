//! End-to-end: the `autotune` binary tunes a matmul into a tuning log, resumes it, and rejects
//! bad input with one line and exit code 1.

use autotune_db::Database;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

fn autotune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autotune")).args(args).output().expect("run autotune")
}

fn tune_json(db: &Path, trials: &str, seed: &str) -> Value {
    let out = autotune(&[
        "op",
        "matmul",
        "--shape",
        "48x40x33",
        "--device",
        "cpu",
        "--threads",
        "2",
        "--trials",
        trials,
        "--db",
        db.to_str().expect("utf-8 path"),
        "--seed",
        seed,
        "--json",
    ]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    // Exactly one JSON object and nothing else on stdout.
    let mut stream = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
    let value = stream.next().expect("one object").expect("valid JSON");
    assert!(stream.next().is_none(), "more than one JSON value on stdout: {stdout}");
    value
}

#[test]
fn json_mode_prints_one_object_with_every_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = tune_json(&dir.path().join("t.db"), "10", "1");
    for key in [
        "task",
        "device",
        "threads",
        "best_gflops",
        "best_latency_s",
        "best_trace",
        "n_trials",
        "n_errors",
        "trials",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["task"], "matmul 48x40x33 f32");
    assert_eq!(v["n_trials"], 10);
    let trials = v["trials"].as_array().expect("trials array");
    assert_eq!(trials.len(), 10);
    for (i, t) in trials.iter().enumerate() {
        assert_eq!(t["index"], i);
        let ok = t["status"] == "ok";
        assert_eq!(ok, t["gflops"].is_f64(), "gflops must be null unless ok: {t}");
    }
    let n_errors = trials.iter().filter(|t| t["status"] != "ok").count();
    assert_eq!(v["n_errors"], n_errors);
    assert!(v["best_gflops"].as_f64().expect("a best kernel") > 0.0);
}

#[test]
fn a_second_session_resumes_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_path = dir.path().join("resume.db");
    let first = tune_json(&db_path, "8", "7");
    // Same seed on purpose: the resumed search must still not re-measure a schedule.
    let second = tune_json(&db_path, "8", "7");
    assert_eq!((first["n_trials"].clone(), second["n_trials"].clone()), (8.into(), 8.into()));

    let db = Database::open_read_only(&db_path).expect("open log");
    let sessions = db.sessions().expect("sessions");
    // The first run also measured the default schedule, in a one-trial session of its own.
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.iter().filter(|s| s.strategy == "default").count(), 1);
    let all: Vec<_> = sessions.iter().flat_map(|s| db.session_trials(s.id).expect("trials")).collect();
    assert_eq!(all.len(), 1 + 16, "trials add up");
    let keys: HashSet<&str> = all.iter().map(|t| t.trace_key.as_str()).collect();
    assert_eq!(keys.len(), 1 + 16, "no schedule measured twice");

    let flops = 2.0 * 48.0 * 40.0 * 33.0;
    let best_of_both = all.iter().filter_map(|t| t.median_s).map(|m| flops / m / 1e9).fold(0.0, f64::max);
    let reported = second["best_gflops"].as_f64().expect("best");
    assert!((reported - best_of_both).abs() <= 1e-9 * best_of_both, "{reported} vs {best_of_both}");
}

#[test]
fn bad_input_is_one_line_and_exit_code_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("x.db");
    let db = db.to_str().expect("utf-8");
    let unwritable = dir.path().join("missing-dir").join("x.db");
    let cases: Vec<Vec<&str>> = vec![
        vec!["op", "matmul", "--shape", "12x3", "--db", db],
        vec!["op", "matmul", "--shape", "2x2x2", "--device", "tpu", "--db", db],
        vec!["op", "convolution", "--shape", "2x2x2", "--db", db],
        vec!["op", "matmul", "--shape", "2x2x2", "--trials", "0", "--db", db],
        vec![
            "op",
            "matmul",
            "--shape",
            "2x2x2",
            "--trials",
            "1",
            "--db",
            unwritable.to_str().expect("utf-8"),
        ],
        vec!["best", "--op", "matmul", "--shape", "2x2x2", "--db", db],
    ];
    for args in cases {
        let out = autotune(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn human_mode_summarizes_and_best_remeasures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.db");
    let db = db.to_str().expect("utf-8");
    let out = autotune(&["op", "matmul", "--shape", "32x32x32", "--trials", "4", "--db", db]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("this session: 4 trials") && stdout.contains("GFLOP/s"), "{stdout}");
    let out = autotune(&[
        "best",
        "--op",
        "matmul",
        "--shape",
        "32x32x32",
        "--db",
        db,
        "--min-time-s",
        "0.05",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["gflops"].as_f64().expect("gflops") > 0.0 && v["n_repeats"].as_u64().expect("n") >= 10);
}

#[test]
fn best_remeasures_chosen_trials_by_trace_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("k.db");
    let db = path.to_str().expect("utf-8");
    let out = autotune(&["op", "matmul", "--shape", "24x24x24", "--trials", "4", "--db", db]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = Database::open_read_only(&path).expect("log");
    let (_, workload) = log.workloads().expect("workloads").into_iter().next().expect("one workload");
    let target_key = log.targets().expect("targets").into_iter().next().expect("one target").1.target_key;
    let ok: Vec<String> = log
        .trials(&workload.task_key, &target_key)
        .expect("trials")
        .into_iter()
        .filter(|t| t.median_s.is_some())
        .map(|t| t.trace_key)
        .collect();
    assert!(ok.len() >= 2, "{ok:?}");
    let keys = [ok[1].as_str(), ok[0].as_str()];
    let mut args = vec!["best", "--db", db, "--min-time-s", "0.05", "--json"];
    for key in keys {
        args.extend(["--trace-key", key]);
    }
    let out = autotune(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let kernels = v["kernels"].as_array().expect("a list of kernels");
    let measured: Vec<&str> = kernels.iter().map(|k| k["trace_key"].as_str().expect("key")).collect();
    assert_eq!(measured, keys, "one kernel per key, in the order asked");
    assert!(kernels.iter().all(|k| k["gflops"].as_f64().expect("gflops") > 0.0));

    // The default schedule: the one the tuning run measured first as its untuned baseline.
    let out = autotune(&["best", "--db", db, "--default-schedule", "--min-time-s", "0.05", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let trials = log.trials(&workload.task_key, &target_key).expect("trials");
    let default = trials.iter().find(|t| t.strategy == "default").expect("the baseline trial");
    assert_eq!(v["trace_key"].as_str(), Some(default.trace_key.as_str()));
    assert!(v["gflops"].as_f64().expect("gflops") > 0.0);

    let out = autotune(&["best", "--db", db, "--trace-key", "no-such-key"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no-such-key"), "{stderr}");
}
