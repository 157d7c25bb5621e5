//! End-to-end: tuning logs that travel. `autotune MODEL.onnx --shard I/N` in N concurrent
//! processes tunes every task exactly once; `autotune db merge` joins the shard logs into one that
//! holds a single run's task set and that `autotune run` uses for every task; `autotune db export
//! | autotune db import` is lossless; `autotune db verify` re-checks the winners and flags one that
//! no longer holds; bad input gets one line and exit 1.

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "support/cli.rs"]
mod cli;
use cli::{autotune, fails_with_one_line, one_json};

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A copy of the onnx package's light SqueezeNet in a fresh folder (which the tempdir owns), or
/// why the package is not installed.
fn squeezenet() -> Result<(tempfile::TempDir, PathBuf), String> {
    let out = Command::new("python3")
        .args(["-c", "import onnx, os; print(os.path.dirname(onnx.__file__))"])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        return Err("the onnx Python package is not installed (pip install -r requirements-dev.txt)".into());
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let source = PathBuf::from(dir).join("backend/test/data/light/light_squeezenet.onnx");
    if !source.is_file() {
        return Err(format!("{} is missing", source.display()));
    }
    let folder = tempfile::tempdir().expect("tempdir");
    let model = folder.path().join("squeezenet.onnx");
    std::fs::copy(&source, &model).expect("copy the model");
    Ok((folder, model))
}

fn task_keys_of_model(model: &Path) -> BTreeSet<String> {
    let tasks = one_json(&autotune(&["tasks", utf8(model), "--json"]));
    tasks["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["key"].as_str().expect("key").to_string())
        .collect()
}

fn ls(db: &Path) -> Value {
    one_json(&autotune(&["db", "ls", utf8(db), "--json"]))
}

fn task_keys_of_log(db: &Path) -> BTreeSet<String> {
    ls(db)["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["task_key"].as_str().expect("key").to_string())
        .collect()
}

fn export(db: &Path) -> Vec<u8> {
    let out = autotune(&["db", "export", "--jsonl", utf8(db)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn import_from_stdin(jsonl: &[u8], db: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_autotune"))
        .args(["db", "import", "-", "-o", utf8(db)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start import");
    child.stdin.take().expect("stdin").write_all(jsonl).expect("pipe the export");
    child.wait_with_output().expect("import")
}

#[test]
fn shards_tuned_at_once_merge_into_a_complete_log_that_run_uses_and_that_exports_losslessly() {
    let (dir, model) = match squeezenet() {
        Ok(m) => m,
        Err(why) => return println!("SKIPPED: {why}"),
    };
    let expected = task_keys_of_model(&model);

    let n = 3;
    let shards: Vec<_> = (0..n)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_autotune"))
                .args([
                    utf8(&model),
                    "--shard",
                    &format!("{i}/{n}"),
                    "--trials-per-task",
                    "2",
                    "--batch-size",
                    "2",
                ])
                .arg("--json")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a shard")
        })
        .collect();
    let mut logs = Vec::new();
    let mut per_shard = Vec::new();
    for (i, shard) in shards.into_iter().enumerate() {
        let summary = one_json(&shard.wait_with_output().expect("shard"));
        assert_eq!(summary["shard"]["index"], i);
        let log = dir.path().join(format!("squeezenet.shard-{i}-of-{n}.tuning.db"));
        assert!(log.is_file(), "shard {i} wrote no log at the default path");
        per_shard.push(task_keys_of_log(&log));
        logs.push(log);
    }
    for (i, a) in per_shard.iter().enumerate() {
        assert!(!a.is_empty(), "shard {i} tuned nothing");
        for b in &per_shard[i + 1..] {
            assert!(a.is_disjoint(b), "a task was tuned by two shards");
        }
    }

    let merged = dir.path().join("merged.tuning.db");
    let mut args = vec!["db", "merge"];
    args.extend(logs.iter().map(|l| utf8(l)));
    args.extend(["-o", utf8(&merged)]);
    let out = autotune(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(task_keys_of_log(&merged), expected, "the merged log's tasks are not the model's");
    let shard_trials: u64 = logs.iter().map(|l| ls(l)["n_trials"].as_u64().expect("n")).sum();
    let shard_sessions: usize = logs.iter().map(|l| ls(l)["sessions"].as_array().expect("s").len()).sum();
    let summary = ls(&merged);
    assert_eq!(summary["n_trials"].as_u64(), Some(shard_trials), "trials lost or doubled by the merge");
    assert_eq!(summary["sessions"].as_array().expect("s").len(), shard_sessions, "sessions not kept");

    // Merging a shard again adds nothing.
    let again = autotune(&["db", "merge", utf8(&logs[0]), "-o", utf8(&merged)]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 trial(s) added"), "{again:?}");

    let run = one_json(&autotune(&["run", utf8(&model), "--db", utf8(&merged), "--repeat", "1", "--json"]));
    assert_eq!(run["n_default"], 0, "a task ran its default schedule: {}", run["untuned_tasks"]);
    assert_eq!(run["n_tuned_for_another_target"], 0);

    // export | import | export: the same bytes, and the same log.
    let first = export(&merged);
    let copy = dir.path().join("copy.tuning.db");
    let imported = import_from_stdin(&first, &copy);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    assert_eq!(export(&copy), first, "a re-export differs from the export it was imported from");
    let (a, b) = (ls(&merged), ls(&copy));
    assert_eq!((a["tasks"].clone(), a["sessions"].clone()), (b["tasks"].clone(), b["sessions"].clone()));
}

/// A log of the light SqueezeNet tuned with one trial per task (its default schedules).
#[test]
fn verify_passes_winners_that_hold_and_flags_one_whose_logged_time_this_machine_cannot_reach() {
    let (dir, model) = match squeezenet() {
        Ok(m) => m,
        Err(why) => return println!("SKIPPED: {why}"),
    };
    let tuned = one_json(&autotune(&[utf8(&model), "--trials-per-task", "1", "--json"]));
    let db = dir.path().join("squeezenet.tuning.db");
    // A wide tolerance: on a shared machine nothing honest is 11× slower than it was a minute ago.
    let verify = |db: &Path| {
        autotune(&["db", "verify", utf8(&model), "--db", utf8(db), "--tolerance", "10", "--json"])
    };
    let held = one_json(&verify(&db));
    assert_eq!(held["n_flagged"], 0, "{held}");
    assert_eq!(held["n_verified"], tuned["n_tasks"], "{held}");

    // The JSONL form is also how a tool edits a log: claim one kernel ran in a nanosecond.
    let jsonl = String::from_utf8(export(&db)).expect("utf-8");
    let mut lines: Vec<String> = jsonl.lines().map(str::to_string).collect();
    let trial = lines
        .iter()
        .position(|l| l.contains(r#""record":"trial""#) && l.contains(r#""status":"ok""#))
        .expect("a trial");
    let mut value: Value = serde_json::from_str(&lines[trial]).expect("json");
    let description = {
        let task_key = value["task_key"].as_str().expect("key").to_string();
        let workload = lines
            .iter()
            .find(|l| l.contains(r#""record":"workload""#) && l.contains(&task_key))
            .expect("its workload");
        serde_json::from_str::<Value>(workload).expect("json")["description"].as_str().expect("d").to_string()
    };
    value["median_s"] = 1e-9.into();
    value["min_s"] = 1e-9.into();
    lines[trial] = value.to_string();
    let tampered = dir.path().join("tampered.tuning.db");
    let out = import_from_stdin((lines.join("\n") + "\n").as_bytes(), &tampered);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(1), "a flagged winner must fail verify");
    let report: Value =
        serde_json::from_slice(&out.stdout).expect("the JSON report comes before the error line");
    assert_eq!(report["n_flagged"], 1, "{report}");
    let flagged: Vec<_> =
        report["kernels"].as_array().expect("k").iter().filter(|k| !k["problem"].is_null()).collect();
    assert_eq!(flagged[0]["task"].as_str(), Some(description.as_str()));
    assert!(flagged[0]["problem"].as_str().expect("p").contains("its logged time"), "{}", flagged[0]);
}

#[test]
fn bad_db_commands_get_one_line_and_exit_1_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.tuning.db");
    let out_db = dir.path().join("out.tuning.db");
    let notes = dir.path().join("notes.jsonl");
    std::fs::write(&notes, "hello\n").expect("write");
    let model = dir.path().join("m.onnx");
    std::fs::write(&model, "not a model").expect("write");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["db", "merge", utf8(&missing), "-o", utf8(&out_db)], "does not exist"),
        (vec!["db", "ls", utf8(&missing)], "does not exist"),
        (vec!["db", "export", utf8(&notes)], "not an SQLite database"),
        (vec!["db", "import", utf8(&notes), "-o", utf8(&out_db)], "line 1"),
        (vec!["db", "import", utf8(&missing), "-o", utf8(&out_db)], "cannot read"),
        (vec!["db", "prune", utf8(&missing), "--keep-best", "3"], "no tuning log"),
        (vec!["db", "prune", utf8(&missing), "--keep-best", "0"], "--keep-best"),
        (vec!["db", "verify", utf8(&model)], "no tuning log"),
        (vec![utf8(&model), "--shard", "3/3"], "must be below 3"),
        (vec![utf8(&model), "--shard", "half"], "is not a shard"),
    ];
    for (args, needle) in cases {
        fails_with_one_line(&autotune(&args), needle);
    }
    assert!(!out_db.exists(), "a refused merge or import created its output");
}
