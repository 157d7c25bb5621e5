//! End-to-end: `autotune MODEL.onnx` (tuning a whole model is the default command) writes
//! MODEL.tuning.db and MODEL.report.html beside the model, gives every task its trial cap, tops
//! up instead of starting over when run again, keeps a wall-clock budget, stops cleanly on
//! Ctrl-C (exit 130, batch committed, report written), and `autotune run` then uses every tuned
//! kernel. Bad input gets one line and exit 1.

use autotune_graph::proto;
use prost::Message;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[path = "support/cli.rs"]
mod cli;
use cli::{autotune, fails_with_one_line, float_info, ints, one_json};

/// One test at a time: the budget and Ctrl-C tests time a real tuning run, which a concurrent
/// run on the same two cores would slow down unpredictably.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Conv 3x3 (8 → 16 channels, bias) + Relu on [1, 8, 16, 16], MaxPool 2x2/2, GlobalAveragePool:
/// three tuning tasks.
fn write_model(path: &Path) {
    write_model_with(path, None);
}

/// How a planted unsupported node (Hardmax after the Relu) is described to the loader.
#[derive(Clone, Copy)]
enum Unsupported {
    /// Its output's shape is annotated in `value_info`, as `onnx.shape_inference` writes it.
    Annotated,
    NotAnnotated,
}

fn write_model_with(path: &Path, unsupported: Option<Unsupported>) {
    let tensor = |name: &str, dims: Vec<i64>| {
        let n: i64 = dims.iter().product();
        proto::TensorProto {
            name: Some(name.into()),
            dims,
            data_type: Some(1),
            float_data: (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 500.0).collect(),
            ..Default::default()
        }
    };
    let node = |op: &str, inputs: &[&str], output: &str, attribute| proto::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(format!("{}_{output}", op.to_lowercase())),
        op_type: Some(op.into()),
        attribute,
        ..Default::default()
    };
    let model = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        graph: Some(proto::GraphProto {
            name: Some("small_cnn".into()),
            node: vec![
                node("Conv", &["x", "w", "b"], "c", vec![ints("pads", vec![1, 1, 1, 1])]),
                node("Relu", &["c"], "r0", vec![]),
                match unsupported {
                    Some(_) => node("Hardmax", &["r0"], "r", vec![]),
                    None => node("Identity", &["r0"], "r", vec![]),
                },
                node(
                    "MaxPool",
                    &["r"],
                    "p",
                    vec![ints("kernel_shape", vec![2, 2]), ints("strides", vec![2, 2])],
                ),
                node("GlobalAveragePool", &["p"], "y", vec![]),
            ],
            initializer: vec![tensor("w", vec![16, 8, 3, 3]), tensor("b", vec![16])],
            input: vec![float_info("x", &[1, 8, 16, 16])],
            output: vec![float_info("y", &[1, 16, 1, 1])],
            value_info: match unsupported {
                Some(Unsupported::Annotated) => vec![float_info("r", &[1, 16, 16, 16])],
                _ => vec![],
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(path, model.encode_to_vec()).expect("write model");
}

fn trials_in_log(v: &Value) -> Vec<u64> {
    v["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["trials_in_log"].as_u64().expect("count"))
        .collect()
}

/// Every task holds `cap` trials, or fewer because its whole (small) space is measured.
fn assert_capped(v: &Value, cap: u64) {
    let tasks = v["tasks"].as_array().expect("tasks");
    for task in tasks {
        let n = task["trials_in_log"].as_u64().expect("count");
        assert!(n == cap || (n < cap && task["space_exhausted"] == true), "{task}");
    }
    // The conv's space is large: it always gets its cap.
    assert_eq!(tasks[0]["trials_in_log"], cap, "{v}");
}

#[test]
fn tuning_a_model_writes_its_log_and_report_beside_it_and_resumes_to_the_cap() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("small.onnx");
    write_model(&model);
    let tune = |cap: &str| {
        one_json(&autotune(&[utf8(&model), "--trials-per-task", cap, "--batch-size", "2", "--json"]))
    };

    let first = tune("4");
    assert_eq!(first["n_tasks"], 3);
    assert_eq!(first["stopped"], "trials_done");
    assert_capped(&first, 4);
    let first_total: u64 = trials_in_log(&first).iter().sum();
    assert_eq!(first["trials_this_run"].as_u64(), Some(first_total));
    assert!(dir.path().join("small.tuning.db").exists());
    // The report weighs each task by the model's calls per run of it.
    let page = std::fs::read_to_string(dir.path().join("small.report.html")).expect("the report");
    let calls: f64 =
        first["tasks"].as_array().expect("tasks").iter().map(|t| t["weight"].as_f64().expect("weight")).sum();
    assert!(
        page.contains("small.onnx: each task weighs its kernel calls per run"),
        "the model card names the model"
    );
    assert!(
        page.contains(&format!("data-figure=\"model-calls-per-run\" data-value=\"{calls}\"")),
        "{calls} calls"
    );
    // `autotune report` weighs the same way when given the model, and counts each task once without.
    let again = dir.path().join("again.html");
    let log = dir.path().join("small.tuning.db");
    let out = autotune(&["report", "--db", utf8(&log), "--model", utf8(&model), "-o", utf8(&again)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again_page = std::fs::read_to_string(&again).expect("the report");
    assert!(again_page.contains(&format!("data-figure=\"model-calls-per-run\" data-value=\"{calls}\"")));
    let out = autotune(&["report", "--db", utf8(&log), "-o", utf8(&again)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(&again).expect("the report").contains("No model given"));
    for task in first["tasks"].as_array().expect("tasks") {
        let (best, default) = (task["best_latency_s"].as_f64(), task["default_latency_s"].as_f64());
        let (best, default) = (best.expect("a valid kernel"), default.expect("the default ran"));
        assert!(best > 0.0 && best <= default, "{task}");
    }
    let untuned = first["kernels_latency_untuned_s"].as_f64().expect("untuned");
    let tuned = first["kernels_latency_tuned_s"].as_f64().expect("tuned");
    assert!(tuned <= untuned, "{tuned} > {untuned}");

    // The same command again has nothing left to do; a higher cap tops every task up.
    let again = tune("4");
    assert_eq!((again["trials_this_run"].as_u64(), trials_in_log(&again)), (Some(0), trials_in_log(&first)));
    let more = tune("6");
    assert_capped(&more, 6);
    let more_total: u64 = trials_in_log(&more).iter().sum();
    assert_eq!(more["trials_this_run"].as_u64(), Some(more_total - first_total));

    // `autotune run` finds the log beside the model and runs every task's tuned kernel.
    let run = one_json(&autotune(&["run", utf8(&model), "--repeat", "2", "--json"]));
    assert_eq!(run["n_kernels"], 3);
    assert_eq!(run["n_tuned"], 3);
    assert_eq!(run["n_default"], 0);
}

#[test]
fn a_budget_is_kept_within_two_percent() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("small.onnx");
    write_model(&model);
    // Long enough that 2% is more than one trial's wall time on a loaded 2-core machine.
    let budget_s = 30.0;
    let started = Instant::now();
    let v = one_json(&autotune(&[utf8(&model), "--budget", "30s", "--json"]));
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(v["stopped"], "budget", "{v}");
    assert!(elapsed <= budget_s * 1.02, "ran {elapsed:.2} s on a {budget_s} s budget");
    assert!(elapsed >= budget_s * 0.85, "stopped at {elapsed:.2} s of a {budget_s} s budget");
    assert!(v["trials_this_run"].as_u64().expect("trials") > 3);
}

#[test]
fn ctrl_c_commits_the_batch_in_flight_writes_the_report_and_exits_130() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("small.onnx");
    write_model(&model);
    let child = Command::new(env!("CARGO_BIN_EXE_autotune"))
        .args([utf8(&model), "--trials-per-task", "400", "--batch-size", "2", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start autotune");
    // Let it get past the default schedules into the search.
    std::thread::sleep(Duration::from_secs(6));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let v: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["stopped"], "cancelled");
    let done: u64 = trials_in_log(&v).iter().sum();
    assert!(done >= 3, "{v}");
    assert!(dir.path().join("small.report.html").exists());

    // Everything committed is still there: the next run resumes from it.
    let resumed = one_json(&autotune(&[utf8(&model), "--trials-per-task", "1", "--json"]));
    assert_eq!(resumed["trials_this_run"], 0);
    assert_eq!(trials_in_log(&resumed).iter().sum::<u64>(), done);
}

#[test]
fn bad_input_gets_one_line_and_exit_1() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("small.onnx");
    write_model(&model);
    let notes = dir.path().join("notes.onnx");
    std::fs::write(&notes, "not a model").expect("write");
    let missing = dir.path().join("missing.onnx");
    let unwritable_db = dir.path().join("no/such/dir/x.db");
    let no_folder_report = dir.path().join("no/such/dir/r.html");
    let int_input = dir.path().join("x_int.pb");
    let ints = autotune_graph::Tensor::from_f64(
        autotune_graph::ElemType::I32,
        vec![1, 8, 16, 16],
        (0..2048).map(f64::from),
    );
    autotune_graph::write_tensor_proto(&int_input, "x", &ints).expect("write the tensor");
    let cases: [(Vec<&str>, &str); 7] = [
        (vec![utf8(&missing)], "cannot read"),
        (vec![utf8(&notes)], "not an ONNX model"),
        (vec![utf8(&model), "--budget", "soon"], "is not a duration"),
        (vec![utf8(&model), "--device", "cuda:0"], "--device cuda:0: "),
        (vec![utf8(&model), "--db", utf8(&unwritable_db)], "x.db"),
        // Found before tuning, not after it.
        (vec![utf8(&model), "--report", utf8(&no_folder_report)], "does not exist: check --report"),
        (
            vec!["run", utf8(&model), "--input", utf8(&int_input)],
            "input `x` is i32 but the model declares f32",
        ),
    ];
    for (args, needle) in cases {
        fails_with_one_line(&autotune(&args), needle);
    }
    assert!(!dir.path().join("small.tuning.db").exists(), "nothing to tune, nothing written");
}

/// The ISA level just below the host's, to run a log's kernels where they cannot run.
fn narrower_level_than_the_host() -> autotune_ir::IsaLevel {
    let levels = autotune_codegen::host_isa_levels().expect("host levels");
    let own = levels[0];
    autotune_ir::IsaLevel::ALL.into_iter().rev().find(|&l| l < own).unwrap_or(autotune_ir::IsaLevel::Baseline)
}

#[test]
fn a_log_tuned_for_a_wider_isa_runs_default_schedules_at_a_narrower_one_and_says_why() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("small.onnx");
    write_model(&model);
    let tuned = one_json(&autotune(&[utf8(&model), "--trials-per-task", "3", "--batch-size", "3", "--json"]));
    assert_eq!(tuned["n_tasks"], 3);

    let (wide, narrow) = (dir.path().join("wide.pb"), dir.path().join("narrow.pb"));
    let at_host =
        one_json(&autotune(&["run", utf8(&model), "--repeat", "1", "--output", utf8(&wide), "--json"]));
    assert_eq!(at_host["n_tuned"], 3, "{at_host}");

    let level = narrower_level_than_the_host().name();
    let out = autotune(&[
        "run",
        utf8(&model),
        "--cpu-features",
        level,
        "--repeat",
        "1",
        "--output",
        utf8(&narrow),
        "--json",
    ]);
    let at_level = one_json(&out);
    assert_eq!(
        (at_level["n_tuned"].as_u64(), at_level["n_default"].as_u64()),
        (Some(0), Some(3)),
        "{at_level}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("this target lacks").count(), 3, "every task says why:\n{stderr}");

    // The default schedules at the narrower level compute what the tuned kernels computed.
    let read = |path: &Path| autotune_graph::read_tensor_proto(path).expect("output").1.to_f32();
    let (expected, actual) = (read(&wide), read(&narrow));
    assert_eq!(expected.len(), actual.len());
    for (e, a) in expected.iter().zip(&actual) {
        assert!((e - a).abs() <= 1e-5 + 1e-4 * e.abs(), "{e} vs {a}");
    }
}

#[test]
fn cpu_features_the_host_lacks_or_does_not_know_get_one_line() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("small.onnx");
    write_model(&model);
    fails_with_one_line(&autotune(&[utf8(&model), "--cpu-features", "neon"]), "unknown CPU feature `neon`");
    let own = autotune_codegen::host_isa_levels().expect("levels")[0];
    if let Some(wider) = autotune_ir::IsaLevel::ALL.into_iter().find(|&l| l > own) {
        let wider = wider.name();
        fails_with_one_line(&autotune(&["run", utf8(&model), "--cpu-features", wider]), "cannot run");
        fails_with_one_line(&autotune(&[utf8(&model), "--cpu-features", wider]), "cannot run");
    } else {
        eprintln!("skipped the wider-level case: this host runs every level");
    }
    assert!(!dir.path().join("small.tuning.db").exists(), "nothing tuned, nothing written");
}

/// Every trial of the log (any task, this host at 1 thread) as (task, trace, space) triples, and
/// the row count: after any kill the file must open for writing (its pages checked), hold each
/// trace once, and keep every row committed before.
fn committed_trials(db: &Path) -> (usize, std::collections::HashSet<(String, String, String)>) {
    let log = autotune_db::Database::open(db).expect("the log opens for writing after a kill");
    let target = autotune_codegen::host_cpu_target(1).expect("host").key();
    let mut rows = 0;
    let mut keys = std::collections::HashSet::new();
    for (_, workload) in log.workloads().expect("workloads") {
        for t in log.trials(&workload.task_key, &target).expect("trials") {
            rows += 1;
            keys.insert((workload.task_key.clone(), t.trace_key, t.space_version));
        }
    }
    (rows, keys)
}

#[test]
fn kill_9_at_any_moment_loses_no_committed_trial_and_the_run_resumes() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("small.onnx");
    write_model(&model);
    let db = dir.path().join("small.tuning.db");
    let args = [utf8(&model), "--trials-per-task", "10", "--batch-size", "2", "--json"];
    // Kill moments spread over defaults, search, the final confirmation rounds and the report
    // (a resumed run goes on where the last one stopped, so later kills land in later phases).
    let delays_ms = [700, 2500, 400, 4000, 1500, 6000, 900, 3000];
    let mut before: std::collections::HashSet<(String, String, String)> = Default::default();
    for (i, delay) in delays_ms.into_iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_autotune"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start autotune");
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL; the run may have finished already
        let _ = child.wait();
        if !db.exists() {
            continue;
        }
        let (rows, now) = committed_trials(&db);
        assert_eq!(rows, now.len(), "kill {i}: a trace recorded twice");
        assert!(now.is_superset(&before), "kill {i}: committed trials lost");
        before = now;
    }
    // A run left alone finishes every task at its cap, measuring only what is missing.
    let done = one_json(&autotune(&args));
    assert_capped(&done, 10);
    let (rows, after) = committed_trials(&db);
    assert!(after.is_superset(&before));
    assert_eq!(rows as u64, trials_in_log(&done).iter().sum::<u64>(), "{done}");
}

#[test]
fn a_disk_that_fills_up_during_a_run_gets_one_line_and_keeps_what_was_committed() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = dir.path().join("small_disk");
    std::fs::create_dir(&mount).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=192k", "tmpfs"])
        .arg(&mount)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root and mount permission)");
        return;
    }
    let db = mount.join("full.tuning.db");
    let out = autotune(&[
        "op",
        "matmul",
        "--shape",
        "24x24x24",
        "--trials",
        "2000",
        "--batch-size",
        "8",
        "--db",
        utf8(&db),
        "--json",
    ]);
    let committed = db.exists().then(|| {
        let log = autotune_db::Database::open_read_only(&db).expect("the full log still opens for reading");
        let target = autotune_codegen::host_cpu_target(1).expect("host").key();
        let task = autotune_ir::Task::matmul(24, 24, 24).key().0;
        log.trials(&task, &target).expect("its trials read back").len()
    });
    let _ = Command::new("umount").arg(&mount).status();
    fails_with_one_line(&out, "disk is full");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run the same command again to resume"), "{stderr}");
    assert!(committed.is_some(), "the log was created before the disk filled up");
}

#[test]
fn an_unsupported_node_is_listed_the_rest_is_tuned_and_run_names_it() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    for (unsupported, n_tasks, n_skipped) in
        [(Unsupported::Annotated, 3, 1), (Unsupported::NotAnnotated, 1, 3)]
    {
        let model = dir.path().join("hardmax.onnx");
        let db = dir.path().join("hardmax.tuning.db");
        let _ = std::fs::remove_file(&db);
        write_model_with(&model, Some(unsupported));
        let out = autotune(&[utf8(&model), "--trials-per-task", "2", "--json"]);
        let v = one_json(&out);
        assert_eq!(v["n_tasks"], n_tasks, "{v}");
        let skipped = v["skipped_nodes"].as_array().expect("skipped nodes");
        assert_eq!(skipped.len(), n_skipped, "{v}");
        assert_eq!(skipped[0]["op"], "Hardmax");
        assert_eq!(skipped[0]["node"], "hardmax_r");
        assert!(trials_in_log(&v).iter().all(|&n| n > 0), "every supported task was tuned: {v}");

        // Without --json the user reads which nodes were left out, one line each.
        let out = autotune(&[utf8(&model), "--trials-per-task", "2"]);
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let listed = stderr.lines().filter(|l| l.starts_with("autotune: not tuning")).count();
        assert_eq!(listed, n_skipped, "{stderr}");
        assert!(stderr.contains("unsupported operator `Hardmax`"), "{stderr}");

        // The model cannot run: `run` refuses in one line that names the node and the op.
        fails_with_one_line(
            &autotune(&["run", utf8(&model), "--db", utf8(&db)]),
            "node `hardmax_r` (Hardmax): unsupported operator `Hardmax`",
        );
    }
}

#[test]
fn a_log_tuned_for_a_narrower_isa_lends_its_winners_to_a_wider_cpu_with_a_note() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("small.onnx");
    write_model(&model);
    if narrower_level_than_the_host() == autotune_codegen::host_isa_levels().expect("levels")[0] {
        eprintln!("skipped: this host has no ISA level below its own to tune at");
        return;
    }
    let level = narrower_level_than_the_host().name();
    let tuned = one_json(&autotune(&[
        utf8(&model),
        "--cpu-features",
        level,
        "--trials-per-task",
        "3",
        "--batch-size",
        "3",
        "--json",
    ]));
    assert_eq!(tuned["n_tasks"], 3);

    let (exact, borrowed) = (dir.path().join("exact.pb"), dir.path().join("borrowed.pb"));
    let run = |extra: &[&str], output: &Path| {
        let mut args = vec!["run", utf8(&model), "--repeat", "1", "--output", utf8(output), "--json"];
        args.extend_from_slice(extra);
        autotune(&args)
    };
    let at_level = one_json(&run(&["--cpu-features", level], &exact));
    assert_eq!(
        (at_level["n_tuned"].as_u64(), at_level["n_tuned_for_another_target"].as_u64()),
        (Some(3), Some(0))
    );

    // The host has no trial of its own: it runs the narrower target's winners, not defaults.
    let out = run(&[], &borrowed);
    let at_host = one_json(&out);
    assert_eq!(
        (
            at_host["n_tuned"].as_u64(),
            at_host["n_tuned_for_another_target"].as_u64(),
            at_host["n_default"].as_u64()
        ),
        (Some(3), Some(3), Some(0)),
        "{at_host}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let notes: Vec<_> = stderr.lines().filter(|l| l.contains("run kernels tuned for")).collect();
    assert_eq!(notes.len(), 1, "one note line per lending target:\n{stderr}");
    assert!(notes[0].contains(level), "the note names the level: {}", notes[0]);

    // Compiled for the level they were tuned at, they compute what they computed there.
    let read = |path: &Path| autotune_graph::read_tensor_proto(path).expect("output").1.to_f32();
    assert_eq!(read(&exact), read(&borrowed));
}
