//! Operands that arrive at run time, and broadcasting the frontend once refused: a Clip whose
//! bounds are graph inputs, and a MatMul whose batch dimensions broadcast partly
//! (`[3,1,3,4] × [1,2,4,2]`), each against a direct computation of the ONNX semantics.

use autotune_codegen::host_cpu_target;
use autotune_graph::{load_bytes, proto, LoadConfig};
use autotune_runtime::{Plan, PlanConfig};
use prost::Message;

fn model(
    nodes: Vec<proto::NodeProto>,
    inputs: &[(&str, &[i64])],
    output: (&str, &[i64]),
    opset: i64,
) -> Vec<u8> {
    proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        graph: Some(proto::GraphProto {
            name: Some("m".into()),
            node: nodes,
            input: inputs.iter().map(|(n, s)| proto::ValueInfoProto::float(n, Some(s))).collect(),
            output: vec![proto::ValueInfoProto::float(output.0, Some(output.1))],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn node(op: &str, inputs: &[&str], output: &str) -> proto::NodeProto {
    proto::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(format!("{}_{output}", op.to_lowercase())),
        op_type: Some(op.into()),
        ..Default::default()
    }
}

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 37 + seed * 13) % 23) as f32 - 11.0) / 7.0).collect()
}

fn run(bytes: &[u8], inputs: &[(&str, &[f32])]) -> Vec<f32> {
    let graph = load_bytes(bytes, "m", &LoadConfig::default()).expect("loads");
    let mut plan =
        Plan::new(&graph, None, &host_cpu_target(1).expect("host"), PlanConfig::default()).expect("plan");
    plan.run(inputs).expect("runs").remove(0).1
}

#[test]
fn clip_with_bounds_given_at_run_time() {
    let bytes = model(
        vec![node("Clip", &["x", "lo", "hi"], "y")],
        &[("x", &[2, 5]), ("lo", &[]), ("hi", &[])],
        ("y", &[2, 5]),
        13,
    );
    let x = values(10, 1);
    for (lo, hi) in [(-0.5f32, 0.75f32), (0.2, 0.2), (1.0, -1.0)] {
        let y = run(&bytes, &[("x", &x), ("lo", &[lo]), ("hi", &[hi])]);
        // ONNX: min(max(x, lo), hi), so lo > hi gives hi everywhere.
        let expected: Vec<f32> = x.iter().map(|v| v.max(lo).min(hi)).collect();
        assert_eq!(y, expected, "clip to [{lo}, {hi}]");
    }
    // Only one bound, the other omitted.
    let only_max =
        model(vec![node("Clip", &["x", "", "hi"], "y")], &[("x", &[2, 5]), ("hi", &[])], ("y", &[2, 5]), 13);
    let y = run(&only_max, &[("x", &x), ("hi", &[0.1])]);
    assert_eq!(y, x.iter().map(|v| v.min(0.1)).collect::<Vec<_>>());
}

#[test]
fn matmul_with_partly_broadcast_batch_dimensions() {
    let (a_shape, b_shape, out_shape) = ([3i64, 1, 3, 4], [1i64, 2, 4, 2], [3i64, 2, 3, 2]);
    let bytes = model(
        vec![node("MatMul", &["a", "b"], "y")],
        &[("a", &a_shape), ("b", &b_shape)],
        ("y", &out_shape),
        13,
    );
    let (a, b) = (values(36, 2), values(16, 3));
    let y = run(&bytes, &[("a", &a), ("b", &b)]);
    let mut expected = Vec::new();
    for i in 0..3 {
        for j in 0..2 {
            for r in 0..3 {
                for c in 0..2 {
                    let dot: f32 = (0..4).map(|k| a[i * 12 + r * 4 + k] * b[j * 8 + k * 2 + c]).sum();
                    expected.push(dot);
                }
            }
        }
    }
    assert_eq!(y.len(), expected.len());
    for (got, want) in y.iter().zip(&expected) {
        assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{got} vs {want}");
    }
}
