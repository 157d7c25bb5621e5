use std::collections::BTreeSet;

use autotune_ir::TrialStatus;

use super::*;
use crate::records::{
    MachineMeasurementKind, NewMachineMeasurement, NewTrial, SessionSpec, TargetSpec, WorkloadSpec,
};

fn workload(n: u32) -> WorkloadSpec {
    WorkloadSpec {
        task_key: format!("task-{n}"),
        op: "matmul".into(),
        description: format!("matmul {n}x{n}x{n} f32"),
        // Keys out of alphabetical order and odd spacing: a verbatim copy keeps them.
        task_json: format!(r#"{{"op":"matmul", "m":{n},"k":{n},"n":{n}}}"#),
        flops: 2.0 * f64::from(n).powi(3) + 0.1,
    }
}

fn target(threads: u32) -> TargetSpec {
    TargetSpec {
        target_key: format!("target-{threads}"),
        kind: "cpu".into(),
        name: "AMD EPYC 7551".into(),
        features: "avx2,fma".into(),
        threads,
        target_json: format!(r#"{{"kind":"cpu","threads":{threads}}}"#),
    }
}

/// A log of `trials` matmul trials on two workloads and one target, from one session with `seed`;
/// every fourth trial failed; times have full f64 precision.
fn log_with(seed: u64, trace_prefix: &str, trials: usize, end_session: bool) -> Database {
    let mut db = Database::open_in_memory().expect("db");
    let t = db.upsert_target(&target(2)).expect("target");
    let workloads =
        [db.upsert_workload(&workload(16)).expect("w"), db.upsert_workload(&workload(32)).expect("w")];
    let session = db
        .begin_session(&SessionSpec {
            command: "autotune model.onnx".into(),
            seed,
            strategy: "auto".into(),
            tool_version: "0.1.0".into(),
        })
        .expect("session");
    let batch: Vec<NewTrial> = (0..trials)
        .map(|i| {
            let status = if i % 4 == 3 { TrialStatus::WrongResult } else { TrialStatus::Ok };
            let time = 1e-3 / 3.0 * (1.0 + (i as f64).sqrt() / 7.0);
            NewTrial {
                workload: workloads[i % 2],
                target: t,
                session,
                trace_json: format!(r#"{{"decisions":[{i},{}]}}"#, i * 7 % 5),
                trace_key: format!("{trace_prefix}{i}"),
                space_version: "space-1".into(),
                codegen_version: "codegen-1".into(),
                status,
                error: (!status.is_ok()).then(|| format!("max error {} at [0, {i}]", 1.0 / 3.0)),
                repeat_times_s: if status.is_ok() { vec![time, time * 1.01, time / 1.003] } else { vec![] },
                build_time_s: 0.123_456_789_012_345_67 * (i + 1) as f64,
                strategy: "evolutionary".into(),
            }
        })
        .collect();
    let ids = db.record_batch(&batch).expect("batch");
    // The first trial confirmed in two more windows.
    if let Some(Some(first)) = ids.first() {
        db.add_repeats(*first, &[4e-4, 3e-4]).expect("retime");
        db.add_repeats(*first, &[3.5e-4]).expect("retime");
    }
    db.record_machine_measurement(
        "target-2",
        &NewMachineMeasurement {
            kind: MachineMeasurementKind::PeakGflops,
            value: 77.234_567_8,
            method: "fma probe".into(),
        },
    )
    .expect("measurement");
    if end_session {
        db.end_session(session).expect("end");
    }
    db
}

fn jsonl(db: &Database) -> String {
    let mut out = Vec::new();
    write_jsonl(&db.export_records().expect("export"), &mut out).expect("write");
    String::from_utf8(out).expect("utf-8")
}

fn import(text: &str) -> Result<(Database, ImportStats), DbError> {
    let records = read_jsonl(&mut text.as_bytes())?;
    let mut db = Database::open_in_memory()?;
    let stats = db.import_records(&records)?;
    Ok((db, stats))
}

fn all_trials(db: &Database) -> Vec<crate::TrialRecord> {
    let mut all = Vec::new();
    for (_, w) in db.workloads().expect("workloads") {
        for (_, t) in db.targets().expect("targets") {
            all.extend(db.trials(&w.task_key, &t.target_key).expect("trials"));
        }
    }
    all
}

#[test]
fn export_then_import_then_export_is_byte_identical_and_keeps_every_value() {
    // A seed above i64::MAX, and a session that never ended (a killed run).
    let original = log_with(u64::MAX - 5, "k", 12, false);
    let first = jsonl(&original);
    let (imported, stats) = import(&first).expect("import");
    assert_eq!((stats.trials_added, stats.sessions_added, stats.workloads_added), (12, 1, 2));
    assert_eq!(jsonl(&imported), first, "a second export differs from the first");
    assert_eq!(all_trials(&imported), all_trials(&original));
    assert_eq!(imported.sessions().expect("s"), original.sessions().expect("s"));
    assert_eq!(
        imported.machine_measurements("target-2").expect("m"),
        original.machine_measurements("target-2").expect("m")
    );
    assert!(first.lines().next().expect("header").contains(r#""schema_version":3"#));
    assert!(all_trials(&imported).iter().any(|t| t.windows == 3), "the windows of a confirmed trial travel");

    // An export of schema 2 has no window counts: its trials count as timed once.
    let schema_2 = first.replace(r#","windows":3"#, "").replace(r#","windows":1"#, "");
    assert!(!schema_2.contains("windows"));
    let (old, _) = import(&schema_2).expect("import an export without windows");
    assert!(all_trials(&old).iter().all(|t| t.windows == 1));
}

#[test]
fn the_export_has_a_field_for_every_column_of_every_table() {
    let db = log_with(7, "k", 4, true);
    let records = db.export_records().expect("export");
    let keys_of = |kind: &str| -> BTreeSet<String> {
        let line = records
            .iter()
            .map(|r| r.to_json().expect("json"))
            .find(|l| l.contains(&format!(r#""record":"{kind}""#)))
            .unwrap_or_else(|| panic!("no {kind} line"));
        let value: serde_json::Value = serde_json::from_str(&line).expect("parse");
        value.as_object().expect("object").keys().cloned().collect()
    };
    fn renamed(column: &str) -> Option<&str> {
        Some(match column {
            "id" => return None,
            "workload_id" | "task_json" => "task",
            "target_id" | "target_json" => "target",
            "session_id" => "session",
            "trace_json" => "trace",
            other => other,
        })
    }
    for (table, kind) in [
        ("workload", "workload"),
        ("target", "target"),
        ("session", "session"),
        ("machine_measurement", "machine_measurement"),
        ("trial", "trial"),
    ] {
        let keys = keys_of(kind);
        let mut statement =
            db.conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')")).expect("pragma");
        let columns: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("names");
        for column in &columns {
            let Some(key) = renamed(column) else { continue };
            // A trial names its workload and target by key.
            let key = match (table, key) {
                ("trial" | "machine_measurement", "task") => "task_key",
                ("trial" | "machine_measurement", "target") => "target_key",
                _ => key,
            };
            assert!(keys.contains(key), "column {table}.{column} is not exported (no `{key}` in {keys:?})");
        }
    }
}

#[test]
fn merging_keeps_every_trial_once_and_every_session_and_is_idempotent() {
    let a = log_with(1, "a", 8, true);
    // `b` measured three of `a`'s traces again (same keys) and five of its own.
    let b = log_with(2, "a", 3, true);
    let c = log_with(3, "c", 5, true);
    let mut out = Database::open_in_memory().expect("out");
    let sa = out.merge_from(&a).expect("a");
    let sb = out.merge_from(&b).expect("b");
    let sc = out.merge_from(&c).expect("c");
    assert_eq!((sa.trials_added, sb.trials_added, sb.trials_already_present, sc.trials_added), (8, 0, 3, 5));
    assert_eq!(out.sessions().expect("sessions").len(), 3);
    let trials = all_trials(&out);
    assert_eq!(trials.len(), 13);
    let keys: BTreeSet<_> = trials.iter().map(|t| &t.trace_key).collect();
    assert_eq!(keys.len(), 13, "a trial twice");
    // The first log's copy of a shared trial is the one kept.
    let kept = trials.iter().find(|t| t.trace_key == "a1").expect("a1");
    let a_session = out.sessions().expect("s")[0].id;
    assert_eq!(kept.session, a_session);

    let again = out.merge_from(&c).expect("c again");
    assert_eq!((again.trials_added, again.sessions_added, again.trials_already_present), (0, 0, 5));
}

#[test]
fn pruning_keeps_the_k_fastest_ok_trials_per_task_and_target() {
    let mut db = log_with(1, "k", 16, true);
    let before: Vec<_> = db.task_summaries().expect("summary");
    let stats = db.prune_keep_best(2).expect("prune");
    assert_eq!((stats.trials_deleted, stats.trials_kept), (12, 4));
    let after = db.task_summaries().expect("summary");
    assert_eq!(after.len(), 2);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((a.n_trials, a.n_ok), (2, 2));
        assert_eq!((a.best_median_s, &a.best_trace_key), (b.best_median_s, &b.best_trace_key));
    }
    assert_eq!(db.sessions().expect("sessions").len(), 1);
}

#[test]
fn a_bad_export_is_refused_with_its_line_and_nothing_is_imported() {
    let text = jsonl(&log_with(1, "k", 4, true));
    let newer = text.replacen(r#""schema_version":3"#, r#""schema_version":99"#, 1);
    let no_header: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let dangling = text.replace(r#""session":1,"trace""#, r#""session":9,"trace""#);
    let not_json = format!("{text}{{oops\n");
    let cases = [
        (newer, "line 1", "newer autotune (schema 99"),
        (no_header, "line 1", "must be the header"),
        (not_json.clone(), &*format!("line {}", text.lines().count() + 1), "key must be a string"),
    ];
    for (bad, line, needle) in &cases {
        let message = import(bad).map(|_| ()).expect_err("refused").to_string();
        assert!(message.contains(line) && message.contains(needle), "{message}");
    }
    // A trial naming a session no line declares: the whole import is rolled back.
    let records = read_jsonl(&mut dangling.as_bytes()).expect("parses");
    let mut db = Database::open_in_memory().expect("db");
    let message = db.import_records(&records).expect_err("refused").to_string();
    assert!(message.contains("session `9`"), "{message}");
    assert!(db.workloads().expect("w").is_empty(), "a refused import left rows behind");
}

#[test]
fn summaries_count_trials_and_name_the_fastest() {
    let db = log_with(1, "k", 8, true);
    let summary = db.task_summaries().expect("summary");
    assert_eq!(summary.len(), 2);
    assert_eq!((summary[0].n_trials, summary[0].n_ok, summary[1].n_trials, summary[1].n_ok), (4, 4, 4, 2));
    assert_eq!(summary[0].best_trace_key.as_deref(), Some("k0"));
    assert_eq!(db.trials_per_session().expect("per session").values().sum::<usize>(), 8);
}

#[test]
fn sessions_that_look_alike_are_all_kept_and_a_second_merge_adds_none() {
    let mut a = log_with(1, "a", 2, true);
    let spec = SessionSpec {
        command: "autotune model.onnx".into(),
        seed: 1,
        strategy: "auto".into(),
        tool_version: "0.1.0".into(),
    };
    // Started in the same second as the first one, with the same command line.
    let alike = [a.begin_session(&spec).expect("s"), a.begin_session(&spec).expect("s")];
    a.conn
        .execute("UPDATE session SET started_at = (SELECT started_at FROM session WHERE id = 1)", [])
        .expect("same start");
    assert!(alike[1].0 > alike[0].0);
    let mut out = Database::open_in_memory().expect("out");
    assert_eq!(out.merge_from(&a).expect("merge").sessions_added, 3);
    assert_eq!(out.merge_from(&a).expect("again").sessions_added, 0);
    assert_eq!(out.sessions().expect("sessions").len(), 3);
}
