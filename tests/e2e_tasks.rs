//! End-to-end: `autotune tasks MODEL.onnx` lists a model's tuning tasks (text and `--json`),
//! marks the tuned ones with `--db`, and rejects a missing or non-ONNX file with one line and
//! exit code 1. The light-model checks skip, saying why, when the onnx Python package is missing.

use autotune_graph::proto;
use prost::Message;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/cli.rs"]
mod cli;
use cli::{autotune, float_info, ints, one_json};

/// The onnx package's light ResNet-50, or why it is not there.
fn light_resnet50() -> Result<PathBuf, String> {
    let out = Command::new("python3")
        .args(["-c", "import onnx, os; print(os.path.dirname(onnx.__file__))"])
        .output()
        .map_err(|e| format!("cannot run python3 ({e})"))?;
    if !out.status.success() {
        return Err("the onnx Python package is not installed (pip install -r requirements-dev.txt)".into());
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        .join("backend/test/data/light/light_resnet50.onnx");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} is missing", path.display()))
    }
}

#[test]
fn resnet50_tasks_as_json() {
    let path = match light_resnet50() {
        Ok(p) => p,
        Err(why) => return println!("SKIPPED: {why}"),
    };
    let v = one_json(&autotune(&["tasks", path.to_str().expect("utf-8"), "--json"]));
    let tasks = v["tasks"].as_array().expect("tasks");
    assert_eq!(v["n_tasks"].as_u64(), Some(tasks.len() as u64));
    assert_eq!(tasks.len(), 27);
    let weights: u64 = tasks.iter().map(|t| t["weight"].as_u64().expect("weight")).sum();
    assert_eq!(weights, 56); // 53 convs, 2 poolings, 1 dense
    for t in tasks {
        for key in ["key", "description", "op", "weight", "flops"] {
            assert!(t.get(key).is_some(), "missing {key} in {t}");
        }
        assert!(t["tuned"].is_null());
        assert_eq!(t["key"].as_str().map(str::len), Some(64));
    }
    let dense: Vec<&Value> = tasks.iter().filter(|t| t["op"] == "batch_matmul").collect();
    assert_eq!(dense.len(), 1);
    assert!(dense[0]["description"]
        .as_str()
        .is_some_and(|d| d.contains("1x1000x2048") && d.contains("+bias")));
    let total = v["total_flops"].as_f64().expect("total_flops");
    assert!((8.0e9..8.4e9).contains(&total), "{total}");

    let text = autotune(&["tasks", path.to_str().expect("utf-8")]);
    assert!(text.status.success());
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("27 distinct tasks"), "{stdout}");
}

/// A two-kernel model: MaxPool 2x2/2 on [1, 8, 8, 8], then GlobalAveragePool.
fn write_small_model(path: &Path) {
    let node = |op: &str, input: &str, output: &str, attribute| proto::NodeProto {
        input: vec![input.into()],
        output: vec![output.into()],
        name: Some(op.to_lowercase()),
        op_type: Some(op.into()),
        attribute,
        ..Default::default()
    };
    let model = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        graph: Some(proto::GraphProto {
            name: Some("small".into()),
            node: vec![
                node(
                    "MaxPool",
                    "x",
                    "p",
                    vec![ints("kernel_shape", vec![2, 2]), ints("strides", vec![2, 2])],
                ),
                node("GlobalAveragePool", "p", "y", vec![]),
            ],
            input: vec![float_info("x", &[1, 8, 8, 8])],
            output: vec![float_info("y", &[1, 8, 1, 1])],
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(path, model.encode_to_vec()).expect("write model");
}

#[test]
fn db_marks_the_tasks_tuned_on_this_machine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("small.onnx");
    write_small_model(&model);
    let db = dir.path().join("small.tuning.db");
    let db_arg = db.to_str().expect("utf-8");
    let tune = autotune(&[
        "op",
        "pool",
        "--kind",
        "max",
        "--input",
        "1x8x8x8",
        "--kernel",
        "2",
        "--stride",
        "2",
        "--trials",
        "2",
        "--strategy",
        "random",
        "--db",
        db_arg,
        "--json",
    ]);
    assert!(tune.status.success(), "stderr: {}", String::from_utf8_lossy(&tune.stderr));
    let model_arg = model.to_str().expect("utf-8");
    let v = one_json(&autotune(&["tasks", model_arg, "--db", db_arg, "--json"]));
    let tuned: Vec<(String, bool)> = v["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| (t["op"].as_str().unwrap_or("").to_string(), t["tuned"].as_bool().expect("tuned")))
        .collect();
    assert_eq!(tuned, [("max_pool".to_string(), true), ("avg_pool".to_string(), false)]);
    // Kernels tuned for 1 thread are not kernels for 2.
    let v2 = one_json(&autotune(&["tasks", model_arg, "--db", db_arg, "--threads", "2", "--json"]));
    assert_eq!(v2["tasks"][0]["tuned"], false);
}

#[test]
fn missing_or_non_onnx_files_fail_with_one_line_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.onnx");
    let text = dir.path().join("notes.onnx");
    std::fs::write(&text, "these are notes, not a model\n").expect("write");
    for (path, needle) in [(&missing, "cannot read"), (&text, "not an ONNX model")] {
        let out = autotune(&["tasks", path.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("autotune: ") && stderr.contains(needle), "{stderr}");
    }
    let model = dir.path().join("small.onnx");
    write_small_model(&model);
    let out = autotune(&["tasks", model.to_str().expect("utf-8"), "--db", missing.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}
