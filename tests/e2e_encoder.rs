//! A BERT-like transformer encoder (tests/encoder_model.py: embeddings, masked multi-head
//! attention, LayerNormalization and its decomposed form, Gelu in erf and tanh forms) with
//! symbolic `batch` and `seq` dims, against onnxruntime at three sizes:
//! - loaded at each size, the decomposed normalizations and Gelus are fused into one op each;
//! - tuned (`--dim batch=1 --dim seq=16`, a few trials per task) and run with `autotune run` at
//!   1×16 (tuned: every kernel from the log), 2×24 and 1×40 (never tuned: the nearest tuned
//!   shapes' schedules, or the default), every output within 1e-4 + 1e-3·|expected| of
//!   onnxruntime's.
//!
//! Prints `SKIPPED: why` and passes when Python, onnx or onnxruntime is missing.

use autotune_graph::{load, read_tensor_proto, LoadConfig, NodeKind, PlainOp, UnaryOp};
use std::path::Path;
use std::process::Command;

#[path = "support/cli.rs"]
mod cli;
use cli::{autotune, one_json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/onnx_model_data.py");
const SIZES: [(usize, usize); 3] = [(1, 16), (2, 24), (1, 40)];

/// The encoder and onnxruntime's outputs at [`SIZES`] in `dir`, or why not.
fn make_encoder(dir: &Path) -> Result<(), String> {
    let sizes: Vec<String> = SIZES.iter().map(|(b, s)| format!("{b}x{s}")).collect();
    let out = Command::new("python3")
        .args([SCRIPT, "encoder", dir.to_str().expect("utf-8"), "--hidden", "64", "--heads", "2"])
        .args(["--sizes", &sizes.join(",")])
        .output()
        .map_err(|e| format!("cannot run python3 ({e})"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named") {
        return Err(format!("{} (pip install -r requirements-dev.txt)", stderr.lines().last().unwrap_or("")));
    }
    panic!("{SCRIPT} encoder failed: {stderr}");
}

fn assert_close(actual: &Path, expected: &Path) {
    let (a, e) =
        (read_tensor_proto(actual).expect("our output").1, read_tensor_proto(expected).expect("ORT's").1);
    assert_eq!(a.shape, e.shape, "{}", actual.display());
    let (a, e) = (a.to_f32(), e.to_f32());
    let worst = a
        .iter()
        .zip(&e)
        .map(|(&x, &y)| f64::from((x - y).abs()) / (1e-4 + 1e-3 * f64::from(y.abs())))
        .fold(0.0, f64::max);
    assert!(worst <= 1.0, "{}: off by {worst:.2}× the tolerance", actual.display());
}

#[test]
fn encoder_fuses_its_chains_and_matches_onnxruntime_at_three_sizes_one_tuned() {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Err(why) = make_encoder(dir.path()) {
        return println!("SKIPPED: {why}");
    }
    let model = dir.path().join("encoder.onnx");
    let model_arg = model.to_str().expect("utf-8");

    for (batch, seq) in SIZES {
        let dims = [("batch".to_string(), batch), ("seq".to_string(), seq)].into_iter().collect();
        let graph = load(&model, &LoadConfig { dims, ..LoadConfig::default() }).expect("load");
        assert_eq!(graph.symbolic_dims.get("seq"), Some(&seq));
        let count = |f: &dyn Fn(&PlainOp) -> bool| {
            graph.nodes.iter().filter(|n| matches!(&n.kind, NodeKind::Plain(op) if f(op))).count()
        };
        // One embedding norm + two per layer; one Gelu per layer; nothing of the chains left.
        assert_eq!(count(&|op| matches!(op, PlainOp::LayerNorm { .. })), 5);
        assert_eq!(count(&|op| matches!(op, PlainOp::Unary(UnaryOp::Gelu { .. }))), 2);
        assert_eq!(
            count(&|op| matches!(op, PlainOp::Reduce { .. } | PlainOp::Unary(UnaryOp::Erf | UnaryOp::Tanh))),
            0
        );
    }

    let tuned =
        autotune(&[model_arg, "--dim", "batch=1", "--dim", "seq=16", "--trials-per-task", "3", "--json"]);
    let tuned = one_json(&tuned);
    assert!(tuned["trials_this_run"].as_u64().unwrap_or(0) > 0, "{tuned}");

    for (batch, seq) in SIZES {
        let case = dir.path().join(format!("b{batch}_s{seq}"));
        let ours = case.join("ours.pb");
        let out = autotune(&[
            "run",
            model_arg,
            "--input",
            case.join("input_0.pb").to_str().expect("utf-8"),
            "--input",
            case.join("input_1.pb").to_str().expect("utf-8"),
            "--output",
            ours.to_str().expect("utf-8"),
            "--json",
        ]);
        let v = one_json(&out);
        assert_close(&ours, &case.join("output_0.pb"));
        let (n_tuned, n_kernels) = (v["n_tuned"].as_u64(), v["n_kernels"].as_u64());
        if (batch, seq) == (1, 16) {
            assert_eq!(n_tuned, n_kernels, "the tuned size runs only tuned kernels: {v}");
            assert_eq!(v["n_nearest_shape"], 0);
        } else {
            assert!(v["n_nearest_shape"].as_u64().unwrap_or(0) > 0, "an untuned size borrows schedules: {v}");
        }
    }
}
