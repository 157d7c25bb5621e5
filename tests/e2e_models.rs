//! End-to-end model correctness, through the runtime library and the `autotune run` binary.
//!
//! - Every light model of the onnx package (`onnx/backend/test/data/light`) gives its reference
//!   output for the input the ONNX backend test runner feeds it (`Runner.generate_dummy_data`,
//!   seed 0, `random=False`, called through `tests/onnx_model_data.py`), within the rtol/atol its
//!   test data states (`data/real/test_<name>/data.json`). Those models' weights are constants,
//!   so the reference outputs are uniform and a wrong kernel could still match them: each model
//!   is therefore also run with seeded random weights of a sensible scale (He init; the same
//!   plan, its constants swapped with `Plan::load_constants`, so nothing is compiled twice) and
//!   compared with onnxruntime on the same random input.
//! - Every `pytorch-converted` / `pytorch-operator` backend case is listed in
//!   `tests/onnx_backend_manifest.txt`: `supported` ones must match their outputs, the others
//!   are reported as skipped with the manifest's reason. So is every backend node case, in
//!   `tests/onnx_node_manifest.txt` (generated from the onnx package's case generators by
//!   `tests/onnx_model_data.py node-cases`: its wheel ships no node data).
//! - A small model built in code (no Python) runs through `autotune run`: with no tuning log
//!   (default schedules, listed on stderr), with `MODEL.tuning.db` beside it or `--db`, with
//!   `--input` / `--output` files, and with a log written by `autotune op` itself; bad input
//!   gives one line and exit code 1; tuned and untuned outputs agree, and agree with
//!   onnxruntime.
//!
//! Every test prints `SKIPPED: why` and passes when Python, the onnx package or onnxruntime is
//! missing. Kernels use the default schedules (VGG-19 is 39 GFLOP: one run); each model's
//! kernels are compiled once.

#[path = "../runtime/tests/support/small_model.rs"]
mod small_model;
#[path = "../runtime/tests/support/trials.rs"]
mod trials;

use autotune_graph::{
    load, load_binding, load_bytes, read_tensor_proto, write_tensor_proto, Graph, GraphError, GraphOutput,
    LoadConfig, PlainOp, Tensor, TensorId,
};
use autotune_runtime::{host_cpu_target, Database, Plan, PlanConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

#[path = "support/cli.rs"]
mod cli;
use cli::{autotune, fails_with_one_line, one_json};

// ---------------------------------------------------------------------------------------------
// Python, the onnx package and onnxruntime.

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/onnx_model_data.py");

fn python(args: &[&str]) -> Result<String, String> {
    let out = Command::new("python3").args(args).output().map_err(|e| format!("cannot run python3 ({e})"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("failed").to_string())
    }
}

/// `onnx/backend/test/data` of the installed onnx package, or why it is not there.
fn onnx_data() -> Result<&'static Path, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = python(&["-c", "import onnx, os; print(os.path.dirname(onnx.__file__))"]).map_err(|e| {
            if e.starts_with("cannot run python3") {
                e
            } else {
                "the onnx Python package is not installed (pip install -r requirements-dev.txt)".to_string()
            }
        })?;
        let data = PathBuf::from(dir.trim()).join("backend/test/data");
        if data.join("light").is_dir() {
            Ok(data)
        } else {
            Err(format!("{} has no light models", data.display()))
        }
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(Clone::clone)
}

/// Whether onnxruntime can be imported, or why not.
fn onnxruntime() -> Result<(), String> {
    static ORT: OnceLock<Result<(), String>> = OnceLock::new();
    ORT.get_or_init(|| {
        python(&["-c", "import onnxruntime"])
            .map(|_| ())
            .map_err(|_| "onnxruntime is not installed (pip install -r requirements-dev.txt)".to_string())
    })
    .clone()
}

fn script(args: &[&str]) -> Result<String, String> {
    let mut all = vec![SCRIPT];
    all.extend_from_slice(args);
    python(&all).map_err(|e| format!("{SCRIPT} {}: {e}", args.join(" ")))
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ---------------------------------------------------------------------------------------------
// Tensors and comparison.

/// `dir/{prefix}_0.pb`, `_1.pb`, … in order.
fn read_numbered(dir: &Path, prefix: &str) -> Vec<(String, Tensor)> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.pb")))
        .take_while(|p| p.exists())
        .map(|p| read_tensor_proto(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// Runs `plan` on `inputs`: a tensor named after a model input feeds it, the others feed the
/// remaining inputs in order.
fn run_plan(plan: &mut Plan, inputs: &[(String, Tensor)]) -> Vec<(String, Vec<f32>)> {
    let names: Vec<String> = plan.inputs().into_iter().map(|i| i.name).collect();
    let bound: Vec<&str> = plan.bound_inputs().collect();
    let mut free: Vec<&String> = names.iter().filter(|n| !inputs.iter().any(|(m, _)| m == *n)).collect();
    free.reverse();
    let values: Vec<(String, Vec<f32>)> = inputs
        .iter()
        .map(|(name, t)| {
            let name = if names.contains(name) || bound.contains(&name.as_str()) {
                name.clone()
            } else {
                free.pop().expect("an input").clone()
            };
            (name, t.to_f32())
        })
        .collect();
    let named: Vec<(&str, &[f32])> = values.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    plan.run(&named).unwrap_or_else(|e| panic!("run: {e}"))
}

#[derive(Debug, Clone, Copy)]
struct Tolerance {
    rtol: f64,
    atol: f64,
}

/// The worst element of a comparison.
#[derive(Debug, Default, Clone, Copy)]
struct Diff {
    max_abs: f64,
    /// max |a − b| / (atol + rtol·|b|): ≤ 1 passes.
    worst_ratio: f64,
    max_expected: f64,
}

/// numpy's `assert_allclose(actual, expected, rtol, atol)`: |a − b| ≤ atol + rtol·|b|.
fn compare(actual: &[f32], expected: &Tensor, tol: Tolerance) -> Result<Diff, String> {
    let expected = expected.to_f64();
    if actual.len() != expected.len() {
        return Err(format!("{} values, {} expected", actual.len(), expected.len()));
    }
    let mut d = Diff::default();
    let mut first_bad = None;
    for (i, (&a, &b)) in actual.iter().zip(&expected).enumerate() {
        let a = f64::from(a);
        // As numpy: NaN equals NaN, an infinity equals itself.
        let same = (a.is_nan() && b.is_nan()) || (a.is_infinite() && a == b);
        let err = if same { 0.0 } else { (a - b).abs() };
        let allowed = tol.atol + tol.rtol * b.abs();
        let ratio = if err.is_nan() { f64::INFINITY } else { err / allowed };
        d.max_abs = d.max_abs.max(err);
        d.max_expected = d.max_expected.max(b.abs());
        if ratio > d.worst_ratio {
            d.worst_ratio = ratio;
        }
        if ratio > 1.0 && first_bad.is_none() {
            first_bad = Some(format!("[{i}] {a} vs {b}"));
        }
    }
    match first_bad {
        Some(bad) => Err(format!(
            "{bad} (max |err| {:.3e}, {:.1}× the tolerance rtol {} atol {})",
            d.max_abs, d.worst_ratio, tol.rtol, tol.atol
        )),
        None => Ok(d),
    }
}

/// Every output of `plan`'s last run (`outputs`) against `expected`: shape, element type and
/// values, each output with the tolerance `tol` gives for its expected values. Returns each
/// output's name and comparison.
fn compare_outputs(
    what: &str,
    plan: &Plan,
    outputs: &[(String, Vec<f32>)],
    expected: &[(String, Tensor)],
    tol: &dyn Fn(&Tensor) -> Tolerance,
) -> Result<Vec<(String, Diff)>, String> {
    if outputs.len() != expected.len() {
        return Err(format!("{what}: {} outputs, {} expected", outputs.len(), expected.len()));
    }
    let mut diffs = Vec::new();
    for (((name, got), (_, want)), info) in outputs.iter().zip(expected).zip(plan.outputs()) {
        if info.shape != want.shape || info.dtype != want.dtype {
            return Err(format!(
                "{what}: output {name} is {:?} {:?}, {:?} {:?} expected",
                info.dtype, info.shape, want.dtype, want.shape
            ));
        }
        let d = compare(got, want, tol(want)).map_err(|e| format!("{what}: output {name}: {e}"))?;
        diffs.push((name.clone(), d));
    }
    Ok(diffs)
}

fn fixed(tol: Tolerance) -> impl Fn(&Tensor) -> Tolerance {
    move |_| tol
}

fn describe(diffs: &[(String, Diff)]) -> String {
    diffs
        .iter()
        .map(|(name, d)| format!("{name} max |err| {:.2e} (max |value| {:.3})", d.max_abs, d.max_expected))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Light models.

/// Random weights against onnxruntime: float32 sums in another order through up to a hundred
/// layers. Relative 1e-3, as the light models' own tests; the absolute floor scales with the
/// output (1e-4 of its largest value), so that values near 0 of large logits are not held to a
/// tighter bound than the float32 sums that made them.
fn random_weights_tolerance(expected: &Tensor) -> Tolerance {
    let max = expected.to_f64().iter().fold(0f64, |m, v| m.max(v.abs()));
    Tolerance { rtol: 1e-3, atol: (1e-4 * max).max(1e-7) }
}

/// The rtol / atol the model's backend test data states (`data/real/test_<name>/data.json`).
fn light_tolerance(data: &Path, name: &str) -> Tolerance {
    let path = data.join(format!("real/test_{name}/data.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tolerance { rtol: v["rtol"].as_f64().unwrap_or(1e-3), atol: v["atol"].as_f64().unwrap_or(1e-7) }
}

/// Adds the input of every Softmax whose output is a model output as one more output, as
/// `onnx_model_data.py randomize` does in the ONNX model.
fn expose_logits(graph: &mut Graph) {
    let outputs: Vec<TensorId> = graph.outputs.iter().map(|o| o.tensor).collect();
    for node in &graph.nodes {
        let softmax = matches!(node.plain(), Some(PlainOp::Softmax { log: false, .. }));
        if softmax && outputs.contains(&node.outputs[0]) && !outputs.contains(&node.inputs[0]) {
            let tensor = node.inputs[0];
            graph.outputs.push(GraphOutput { name: graph.tensors[tensor.0].name.clone(), tensor });
        }
    }
}

fn light_model(name: &str, threads: u32) {
    let data = match onnx_data() {
        Ok(d) => d,
        Err(why) => return println!("SKIPPED: {why}"),
    };
    let start = Instant::now();
    let model = data.join(format!("light/light_{name}.onnx"));
    let tol = light_tolerance(data, name);
    let tmp = tempfile::tempdir().expect("tempdir");

    // The runner's deterministic input and the reference output.
    let input_dir = tmp.path().join("dummy");
    script(&["dummy-input", utf8(&model), utf8(&input_dir)]).unwrap_or_else(|e| panic!("{e}"));
    let inputs = read_numbered(&input_dir, "input");
    assert!(!inputs.is_empty(), "{name}: no inputs generated");
    let expected =
        read_numbered(&data.join("light"), &format!("light_{name}_output")).into_iter().collect::<Vec<_>>();
    let expected = if expected.is_empty() {
        vec![read_tensor_proto(&data.join(format!("light/light_{name}_output_0.pb")))
            .expect("reference output")]
    } else {
        expected
    };

    let mut graph = load(&model, &LoadConfig::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    // The randomized model has its logits as an output too (see `onnx_model_data.py`): the same
    // here, so that one plan serves both.
    expose_logits(&mut graph);
    let target = host_cpu_target(threads).expect("host target");
    let mut plan =
        Plan::new(&graph, None, &target, PlanConfig::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    drop(graph);
    let compiled_s = start.elapsed().as_secs_f64();
    let run_start = Instant::now();
    let outputs = run_plan(&mut plan, &inputs);
    println!("{name}: reference run {:.2} s", run_start.elapsed().as_secs_f64());
    let reference = compare_outputs(name, &plan, &outputs[..expected.len()], &expected, &fixed(tol))
        .unwrap_or_else(|e| panic!("{e}"));

    // Random weights, against onnxruntime.
    let random = match onnxruntime() {
        Err(why) => {
            println!("SKIPPED (random weights vs onnxruntime): {why}");
            None
        }
        Ok(()) => {
            let dir = tmp.path().join("random");
            let t0 = Instant::now();
            let made = script(&["randomize", utf8(&model), utf8(&dir), "--seed", "1"])
                .unwrap_or_else(|e| panic!("{e}"));
            let t1 = Instant::now();
            let graph = load(&dir.join("model.onnx"), &LoadConfig::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            plan.load_constants(&graph).unwrap_or_else(|e| panic!("{name}: {e}"));
            drop(graph);
            let t2 = Instant::now();
            let outputs = run_plan(&mut plan, &read_numbered(&dir, "input"));
            println!(
                "{name}: {} (python {:.1} s, load and pack {:.1} s, run {:.1} s)",
                made.trim(),
                (t1 - t0).as_secs_f64(),
                (t2 - t1).as_secs_f64(),
                t2.elapsed().as_secs_f64()
            );
            let ort = read_numbered(&dir, "output");
            let what = format!("{name} with random weights vs onnxruntime");
            let diffs = compare_outputs(&what, &plan, &outputs, &ort, &random_weights_tolerance)
                .unwrap_or_else(|e| panic!("{e}"));
            Some(diffs)
        }
    };
    let random_text = random.map_or("skipped".to_string(), |d| describe(&d));
    println!(
        "REPORT light_{name}: PASS; {} kernel calls in {} tasks, {} thread(s), compiled in {compiled_s:.1} s; \
         reference (rtol {}, atol {}): {}; random weights vs onnxruntime: {random_text}; {:.1} s in all",
        plan.n_kernels(),
        plan.tasks().len(),
        threads,
        tol.rtol,
        tol.atol,
        describe(&reference),
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn light_bvlc_alexnet() {
    light_model("bvlc_alexnet", 1);
}

#[test]
fn light_densenet121() {
    light_model("densenet121", 2);
}

#[test]
fn light_inception_v1() {
    light_model("inception_v1", 1);
}

#[test]
fn light_inception_v2() {
    light_model("inception_v2", 2);
}

#[test]
fn light_resnet50() {
    light_model("resnet50", 1);
}

#[test]
fn light_shufflenet() {
    light_model("shufflenet", 2);
}

#[test]
fn light_squeezenet() {
    light_model("squeezenet", 1);
}

#[test]
fn light_vgg19() {
    light_model("vgg19", 1);
}

#[test]
fn light_zfnet512() {
    light_model("zfnet512", 1);
}

// ---------------------------------------------------------------------------------------------
// The ONNX backend's pytorch cases, by manifest.

const MANIFEST: &str = include_str!("onnx_backend_manifest.txt");

/// The ONNX backend's node cases (generated by `tests/onnx_model_data.py node-cases`: the wheel
/// ships their generators, not their data), by manifest.
const NODE_MANIFEST: &str = include_str!("onnx_node_manifest.txt");

/// `kind/case` → `None` (supported) or `Some(reason)` (skipped).
fn manifest() -> Vec<(String, Option<String>)> {
    parse_manifest(MANIFEST)
}

fn parse_manifest(text: &str) -> Vec<(String, Option<String>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (case, status) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let status = status.trim();
            let reason = match status {
                "supported" => None,
                s => Some(
                    s.strip_prefix("skip:")
                        .unwrap_or_else(|| panic!("manifest line `{l}`: want `supported` or `skip: reason`"))
                        .trim()
                        .to_string(),
                ),
            };
            (case.to_string(), reason)
        })
        .collect()
}

/// Runs one backend case: every `test_data_set_*` against its outputs.
fn backend_case(dir: &Path) -> Result<usize, String> {
    let mut rtol_atol = Tolerance { rtol: 1e-3, atol: 1e-7 };
    if let Ok(text) = std::fs::read_to_string(dir.join("data.json")) {
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        rtol_atol = Tolerance {
            rtol: v["rtol"].as_f64().unwrap_or(rtol_atol.rtol),
            atol: v["atol"].as_f64().unwrap_or(rtol_atol.atol),
        };
    }
    let target = host_cpu_target(1).map_err(|e| e.to_string())?;
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("test_data_set_")))
        .collect();
    sets.sort();
    let model = dir.join("model.onnx");
    // Inputs the model needs at load (a Reshape's shape, reduction axes) are bound to the first
    // set's values; a set with other values gets a plan of its own.
    let graph = match load(&model, &LoadConfig::default()) {
        Err(GraphError::NeedsInputValue { .. }) => {
            let first = sets.first().map(|s| read_numbered(s, "input")).unwrap_or_default();
            load_binding(&model, &LoadConfig::default(), &first)
        }
        other => other,
    }
    .map_err(|e| e.to_string())?;
    let mut plan = Plan::new(&graph, None, &target, PlanConfig::default()).map_err(|e| e.to_string())?;
    for set in &sets {
        let inputs = read_numbered(set, "input");
        let rebound = graph
            .bound_inputs
            .iter()
            .any(|(name, value)| inputs.iter().any(|(n, t)| n == name && t.to_f32() != value.to_f32()));
        if rebound {
            let graph = load_binding(&model, &LoadConfig::default(), &inputs).map_err(|e| e.to_string())?;
            plan = Plan::new(&graph, None, &target, PlanConfig::default()).map_err(|e| e.to_string())?;
        }
        let outputs = run_plan(&mut plan, &inputs);
        compare_outputs(
            &set.display().to_string(),
            &plan,
            &outputs,
            &read_numbered(set, "output"),
            &fixed(rtol_atol),
        )?;
    }
    Ok(sets.len())
}

fn backend_kind(kind: &str) {
    let data = match onnx_data() {
        Ok(d) => d,
        Err(why) => return println!("SKIPPED: {why}"),
    };
    backend_kind_at(data, kind, &manifest(), "tests/onnx_backend_manifest.txt");
}

fn backend_kind_at(data: &Path, kind: &str, listed: &[(String, Option<String>)], manifest_name: &str) {
    let start = Instant::now();
    let mut cases: Vec<String> = std::fs::read_dir(data.join(kind))
        .expect("backend test data")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").exists())
        .map(|e| format!("{kind}/{}", e.file_name().to_string_lossy()))
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    let (mut passed, mut skipped) = (0, 0);
    for case in &cases {
        match listed.iter().find(|(c, _)| c == case) {
            None => {
                failures.push(format!("{case}: not in {manifest_name} (add it: supported or skip: reason)"))
            }
            Some((_, Some(reason))) => {
                skipped += 1;
                println!("SKIPPED {case}: {reason}");
            }
            Some((_, None)) => match backend_case(&data.join(case)) {
                Ok(n) => {
                    passed += 1;
                    println!("ok {case} ({n} data set(s))");
                }
                Err(e) => failures.push(format!("{case}: {e}")),
            },
        }
    }
    for (case, _) in listed.iter().filter(|(c, _)| c.starts_with(&format!("{kind}/")) && !cases.contains(c)) {
        println!("note: {case} is in the manifest but not in this onnx package's test data");
    }
    println!(
        "REPORT {kind}: {passed} passed, {skipped} skipped, {} failed, of {} cases; {:.1} s",
        failures.len(),
        cases.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn pytorch_converted_cases() {
    backend_kind("pytorch-converted");
}

#[test]
fn pytorch_operator_cases() {
    backend_kind("pytorch-operator");
}

/// Every ONNX backend node case: `supported` ones (`tests/onnx_node_manifest.txt`) must match.
/// With `AUTOTUNE_WRITE_NODE_MANIFEST=PATH` it instead runs every case and writes the manifest
/// this build earns: `supported` for a case that matches, else `skip:` and the one-line reason.
#[test]
fn onnx_node_cases() {
    if let Err(why) = onnx_data() {
        return println!("SKIPPED: {why}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let written = script(&["node-cases", utf8(dir.path())]).unwrap_or_else(|e| panic!("{e}"));
    println!("generated {} node cases", written.trim());
    if let Ok(out) = std::env::var("AUTOTUNE_WRITE_NODE_MANIFEST") {
        return write_node_manifest(dir.path(), Path::new(&out));
    }
    backend_kind_at(dir.path(), "node", &parse_manifest(NODE_MANIFEST), "tests/onnx_node_manifest.txt");
}

fn write_node_manifest(data: &Path, out: &Path) {
    let mut cases: Vec<String> = std::fs::read_dir(data.join("node"))
        .expect("node cases")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    cases.sort();
    let mut text = String::from(
        "# The ONNX backend node cases (generated by `tests/onnx_model_data.py node-cases`), run by\n\
         # tests/e2e_models.rs: `supported` ones must match every test_data_set_* output (the data's\n\
         # rtol/atol, else 1e-3/1e-7); `skip: reason` ones are reported. Regenerate with\n\
         # AUTOTUNE_WRITE_NODE_MANIFEST=$PWD/tests/onnx_node_manifest.txt cargo test --release --test e2e_models onnx_node_cases\n\n",
    );
    let (mut supported, mut skipped) = (0, 0);
    for case in &cases {
        let dir = data.join("node").join(case);
        let result = std::panic::catch_unwind(|| backend_case(&dir))
            .unwrap_or_else(|p| Err(format!("BUG: autotune panicked: {}", panic_text(&p))));
        match result {
            Ok(_) => {
                supported += 1;
                text.push_str(&format!("node/{case} supported\n"));
            }
            Err(e) => {
                skipped += 1;
                // Reasons name the case's model by its path in the throwaway data folder.
                let e = e.replace(&format!("{}/", dir.display()), "");
                let mut reason: String = e.replace('\n', " ").chars().take(200).collect();
                if reason.is_empty() {
                    reason = "no reason given".into();
                }
                text.push_str(&format!("node/{case} skip: {reason}\n"));
            }
        }
    }
    std::fs::write(out, text).expect("write the manifest");
    println!("wrote {}: {supported} supported, {skipped} skipped", out.display());
}

fn panic_text(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

#[test]
fn autotune_run_binds_a_shape_given_as_an_input_file() {
    use prost::Message;
    let mut shape = cli::float_info("shape", &[2]);
    if let Some(autotune_graph::proto::type_proto::Value::TensorType(t)) =
        shape.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = Some(autotune_graph::proto::tensor_proto::DataType::Int64 as i32);
    }
    let node = |op: &str, inputs: &[&str], output: &str| autotune_graph::proto::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        op_type: Some(op.into()),
        ..Default::default()
    };
    let model = autotune_graph::proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![autotune_graph::proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(autotune_graph::proto::GraphProto {
            name: Some("reshape".into()),
            node: vec![node("Reshape", &["x", "shape"], "r"), node("Relu", &["r"], "y")],
            input: vec![cli::float_info("x", &[2, 3, 4]), shape],
            output: vec![cli::float_info("y", &[4, 6])],
            ..Default::default()
        }),
        ..Default::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reshape.onnx");
    std::fs::write(&path, model.encode_to_vec()).expect("write model");
    let x: Vec<f32> = (0..24).map(|i| i as f32 - 11.5).collect();
    let (x_pb, shape_pb, y_pb) =
        (dir.path().join("x.pb"), dir.path().join("shape.pb"), dir.path().join("y.pb"));
    write_tensor_proto(&x_pb, "x", &Tensor::f32(vec![2, 3, 4], x.clone())).expect("write x");
    write_tensor_proto(&shape_pb, "shape", &Tensor::i64(vec![2], vec![4, -1])).expect("write shape");

    let m = utf8(&path);
    let out =
        autotune(&["run", m, "--input", utf8(&x_pb), "--input", utf8(&shape_pb), "--output", utf8(&y_pb)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, y) = read_tensor_proto(&y_pb).expect("y");
    assert_eq!(y.shape, [4, 6]);
    assert_eq!(y.to_f32(), x.iter().map(|v| v.max(0.0)).collect::<Vec<_>>());

    // Without the shape's value the model cannot be planned: one line that says which input.
    fails_with_one_line(&autotune(&["run", m, "--input", utf8(&x_pb)]), "model input `shape`");
}

// ---------------------------------------------------------------------------------------------
// `autotune run` on a small model.

/// A fresh folder holding the small model as `small.onnx`.
fn small_model_in_tempdir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("small.onnx");
    std::fs::write(&model, small_model::bytes(1)).expect("write model");
    (dir, model)
}

#[test]
fn autotune_run_uses_the_log_beside_the_model_and_writes_outputs() {
    let (dir, model) = small_model_in_tempdir();
    let m = utf8(&model);

    // No tuning log: every task runs its default schedule, which is not an error.
    let out = autotune(&["run", m, "--json", "--repeat", "3"]);
    let v = one_json(&out);
    assert_eq!(
        (v["n_kernels"].as_u64(), v["n_tuned"].as_u64(), v["n_default"].as_u64()),
        (Some(5), Some(0), Some(5))
    );
    assert_eq!(v["outputs"], serde_json::json!(["y", "pooled"]));
    assert_eq!(v["n_repeats"].as_u64(), Some(3));
    let (median, min) =
        (v["latency_s_median"].as_f64().expect("median"), v["latency_s_min"].as_f64().expect("min"));
    assert!(min > 0.0 && min <= median, "{v}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("every task runs its default schedule") && stderr.contains("max_pool"),
        "{stderr}"
    );

    // Inputs and outputs as TensorProto files; untuned outputs for later.
    let x = small_model::input(4);
    let x_pb = dir.path().join("x.pb");
    write_tensor_proto(&x_pb, "x", &Tensor::f32(small_model::INPUT_SHAPE.to_vec(), x.clone()))
        .expect("write input");
    let (y0, p0) = (dir.path().join("y0.pb"), dir.path().join("p0.pb"));
    let out = autotune(&[
        "run",
        m,
        "--input",
        utf8(&x_pb),
        "--output",
        utf8(&y0),
        "--output",
        utf8(&p0),
        "--repeat",
        "1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, untuned_y) = read_tensor_proto(&y0).expect("y0");
    let (name, pooled) = read_tensor_proto(&p0).expect("p0");
    assert_eq!((name.as_str(), pooled.shape.as_slice()), ("pooled", &[1, 8, 4, 4][..]));

    // The same through the library: same kernels, same values.
    let graph = load_bytes(&small_model::bytes(1), "small", &LoadConfig::default()).expect("load");
    let target = host_cpu_target(1).expect("target");
    let mut plan = Plan::new(&graph, None, &target, PlanConfig::default()).expect("plan");
    let lib = plan.run(&[("x", x.as_slice())]).expect("run");
    assert_eq!(lib[0].1, untuned_y.to_f32());
    assert_eq!(lib[1].1, pooled.to_f32());

    // A tuning log beside the model is used without --db.
    let mut db = Database::open(&dir.path().join("small.tuning.db")).expect("db");
    trials::write_trials(&mut db, &graph, &target, false);
    drop(db);
    let y1 = dir.path().join("y1.pb");
    let out = autotune(&["run", m, "--input", utf8(&x_pb), "--output", utf8(&y1), "--json", "--repeat", "1"]);
    let v = one_json(&out);
    assert_eq!((v["n_tuned"].as_u64(), v["n_default"].as_u64()), (Some(5), Some(0)), "{v}");
    assert!(v["db"].as_str().is_some_and(|d| d.ends_with("small.tuning.db")), "{v}");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, tuned_y) = read_tensor_proto(&y1).expect("y1");
    let d = compare(&tuned_y.to_f32(), &untuned_y, Tolerance { rtol: 1e-4, atol: 1e-6 })
        .unwrap_or_else(|e| panic!("tuned vs untuned: {e}"));
    println!("small model: tuned vs untuned max |err| {:.2e}", d.max_abs);

    // With 2 threads the 1-thread kernels are not this target's: listed on stderr.
    let out = autotune(&["run", m, "--threads", "2", "--repeat", "1"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("5 of 5 tasks have no tuned kernel") && stderr.contains("not tuned for this target"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("5 kernel calls (0 tuned, 5 default schedule)") && stdout.contains("latency"),
        "{stdout}"
    );

    // And against onnxruntime, where it is installed.
    match onnxruntime() {
        Err(why) => println!("SKIPPED (small model vs onnxruntime): {why}"),
        Ok(()) => {
            let ort_dir = dir.path().join("ort");
            std::fs::create_dir_all(&ort_dir).expect("mkdir");
            std::fs::copy(&x_pb, ort_dir.join("input_0.pb")).expect("copy");
            script(&["onnxruntime", m, utf8(&ort_dir)]).unwrap_or_else(|e| panic!("{e}"));
            let ort = read_numbered(&ort_dir, "output");
            let tol = fixed(Tolerance { rtol: 1e-4, atol: 1e-6 });
            let d = compare_outputs("small model vs onnxruntime", &plan, &lib, &ort, &tol)
                .unwrap_or_else(|e| panic!("{e}"));
            println!("small model vs onnxruntime: {}", describe(&d));
        }
    }
}

#[test]
fn autotune_run_rejects_bad_input_with_one_line() {
    let (dir, model) = small_model_in_tempdir();
    let m = utf8(&model);
    let missing = dir.path().join("nope.onnx");
    fails_with_one_line(&autotune(&["run", utf8(&missing)]), "cannot read");
    fails_with_one_line(
        &autotune(&["run", m, "--db", utf8(&dir.path().join("none.db"))]),
        "no tuning log at",
    );
    let not_a_log = dir.path().join("notes.db");
    std::fs::write(&not_a_log, "not sqlite").expect("write");
    fails_with_one_line(&autotune(&["run", m, "--db", utf8(&not_a_log)]), "--db");
    // A rank-3 input where the model needs rank 4, and one input too many.
    let bad = dir.path().join("bad.pb");
    write_tensor_proto(&bad, "x", &Tensor::f32(vec![3, 8, 8], vec![0.0; 192])).expect("write");
    fails_with_one_line(&autotune(&["run", m, "--input", utf8(&bad)]), "autotune: ");
    let good = dir.path().join("good.pb");
    write_tensor_proto(&good, "x", &Tensor::f32(small_model::INPUT_SHAPE.to_vec(), small_model::input(1)))
        .expect("write");
    fails_with_one_line(
        &autotune(&["run", m, "--input", utf8(&good), "--input", utf8(&good)]),
        "2 --input files",
    );
    let out = dir.path().join("o.pb");
    let three = [utf8(&out); 3];
    fails_with_one_line(
        &autotune(&["run", m, "--output", three[0], "--output", three[1], "--output", three[2]]),
        "3 --output paths",
    );
    // An input of another shape than the model's (whose output shapes are fixed).
    let wide = dir.path().join("wide.pb");
    write_tensor_proto(&wide, "x", &Tensor::f32(vec![1, 3, 8, 16], small_model::input(2).repeat(2)))
        .expect("write");
    fails_with_one_line(&autotune(&["run", m, "--input", utf8(&wide)]), "has shape [1, 3, 8, 16]");
}

#[test]
fn autotune_run_uses_kernels_tuned_by_autotune_op() {
    // The small model's global average pool over [1, 16, 4, 4], tuned for real (3 trials).
    let (dir, model) = small_model_in_tempdir();
    let db = dir.path().join("pool.tuning.db");
    let args = [
        "op",
        "pool",
        "--kind",
        "global-avg",
        "--input",
        "1x16x4x4",
        "--trials",
        "3",
        "--strategy",
        "random",
    ];
    let tune = autotune(&[&args[..], &["--db", utf8(&db), "--json"]].concat());
    assert!(tune.status.success(), "{}", String::from_utf8_lossy(&tune.stderr));
    let out = autotune(&["run", utf8(&model), "--db", utf8(&db), "--json", "--repeat", "1"]);
    let v = one_json(&out);
    assert_eq!((v["n_tuned"].as_u64(), v["n_default"].as_u64()), (Some(1), Some(4)), "{v}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("4 of 5 tasks have no tuned kernel") && !stderr.contains("avg_pool"), "{stderr}");
}

#[test]
fn autotune_run_profile_times_every_kernel_call_and_writes_it_into_a_report() {
    let (dir, model) = small_model_in_tempdir();
    let m = utf8(&model);
    let report = dir.path().join("profile.html");

    // --report profiles too.
    let out = autotune(&["run", m, "--repeat", "3", "--report", utf8(&report), "--json"]);
    let v = one_json(&out);
    let rows = v["profile"].as_array().expect("profile rows");
    let kernel_calls: u64 = rows
        .iter()
        .filter(|r| !r["what"].as_str().expect("what").starts_with("(plain)"))
        .map(|r| r["calls"].as_u64().expect("calls"))
        .sum();
    assert_eq!(Some(kernel_calls), v["n_kernels"].as_u64(), "every kernel call is timed once per run: {v}");
    assert!(rows.iter().all(|r| r["seconds"].as_f64().is_some_and(|s| s > 0.0)), "{v}");
    assert!(
        rows.iter().all(|r| r["measured_alone_s"].is_null()),
        "nothing was tuned, so nothing was timed alone"
    );

    let page = std::fs::read_to_string(&report).expect("the report was written");
    assert!(page.contains("<section id=\"profile\">") && page.contains("small.onnx"));
    for row in rows {
        assert!(page.contains(row["what"].as_str().expect("what")), "{row} is in the report");
    }
    assert!(page.contains("<section id=\"tasks\">"), "the rest of the log's report follows");
    assert!(
        page.contains("small.onnx: each task weighs its kernel calls per run")
            && page.contains(&format!("data-figure=\"model-calls-per-run\" data-value=\"{kernel_calls}\"")),
        "the plan's calls per run weigh the tasks"
    );

    // A report that cannot be written is found out before the model runs.
    let nowhere = dir.path().join("missing").join("profile.html");
    fails_with_one_line(&autotune(&["run", m, "--profile", "--report", utf8(&nowhere)]), "does not exist");
}
