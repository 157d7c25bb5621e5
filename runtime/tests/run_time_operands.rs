//! Operands that arrive at run time, and broadcasting the frontend once refused: a Clip whose
//! bounds are graph inputs, a Conv whose weights and bias are graph inputs (packed per call), a
//! Reshape whose shape is a graph input (bound at load), and a MatMul whose batch dimensions
//! broadcast partly (`[3,1,3,4] × [1,2,4,2]`), each against a direct computation of the ONNX
//! semantics.

use autotune_codegen::host_cpu_target;
use autotune_graph::{load_bytes, proto, LoadConfig, Tensor};
use autotune_runtime::RuntimeError;
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

/// Direct 2-D convolution, stride 1, padding 1, NCHW / OIHW.
fn conv_pad1(x: &[f32], w: &[f32], b: &[f32], (c, h, wd): (usize, usize, usize), o: usize) -> Vec<f32> {
    let mut y = vec![0f32; o * h * wd];
    for oc in 0..o {
        for i in 0..h {
            for j in 0..wd {
                let mut acc = b[oc] as f64;
                for ic in 0..c {
                    for (di, dj) in (0..3).flat_map(|di| (0..3).map(move |dj| (di, dj))) {
                        let (r, s) = ((i + di).wrapping_sub(1), (j + dj).wrapping_sub(1));
                        if r < h && s < wd {
                            acc += (x[(ic * h + r) * wd + s] * w[((oc * c + ic) * 3 + di) * 3 + dj]) as f64;
                        }
                    }
                }
                y[(oc * h + i) * wd + j] = acc as f32;
            }
        }
    }
    y
}

#[test]
fn conv_with_weights_and_bias_given_at_run_time_packs_them_per_call() {
    let (c, h, w, o) = (3usize, 6usize, 5usize, 8usize);
    let mut conv = node("Conv", &["x", "w", "b"], "y");
    conv.attribute.push(proto::AttributeProto {
        name: Some("pads".into()),
        ints: vec![1; 4],
        r#type: Some(proto::attribute_proto::AttributeType::Ints as i32),
        ..Default::default()
    });
    let bytes = model(
        vec![conv],
        &[("x", &[1, c as i64, h as i64, w as i64]), ("w", &[o as i64, c as i64, 3, 3]), ("b", &[o as i64])],
        ("y", &[1, o as i64, h as i64, w as i64]),
        13,
    );
    let graph = load_bytes(&bytes, "m", &LoadConfig::default()).expect("loads");
    let mut plan =
        Plan::new(&graph, None, &host_cpu_target(1).expect("host"), PlanConfig::default()).expect("plan");
    let x = values(c * h * w, 4);
    // New weights on every call: each run must read the weights it is given.
    for seed in [5, 6] {
        let (wt, b) = (values(o * c * 9, seed), values(o, seed + 10));
        let y = plan.run(&[("x", &x), ("w", &wt), ("b", &b)]).expect("runs").remove(0).1;
        let expected = conv_pad1(&x, &wt, &b, (c, h, w), o);
        for (k, (got, want)) in y.iter().zip(&expected).enumerate() {
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "weights {seed}, y[{k}]: {got} vs {want}"
            );
        }
    }
}

#[test]
fn reshape_with_its_shape_given_at_run_time_is_bound_at_load() {
    let mut shape = proto::ValueInfoProto::float("shape", Some(&[2]));
    if let Some(proto::type_proto::Value::TensorType(t)) =
        shape.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = Some(proto::tensor_proto::DataType::Int64 as i32);
    }
    let mut m = proto::ModelProto::decode(
        &model(
            vec![node("Reshape", &["x", "shape"], "r"), node("Relu", &["r"], "y")],
            &[("x", &[2, 3, 4])],
            ("y", &[6, 4]),
            13,
        )[..],
    )
    .expect("decodes");
    m.graph.as_mut().expect("graph").input.push(shape);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reshape.onnx");
    std::fs::write(&path, m.encode_to_vec()).expect("write");

    let value = Tensor::i64(vec![2], vec![-1, 4]);
    let graph = autotune_graph::load_binding(&path, &LoadConfig::default(), &[("shape".into(), value)])
        .expect("the shape is bound");
    let mut plan =
        Plan::new(&graph, None, &host_cpu_target(1).expect("host"), PlanConfig::default()).expect("plan");
    assert_eq!(plan.bound_inputs().collect::<Vec<_>>(), ["shape"]);
    let x = values(24, 7);
    let expected: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(plan.run(&[("x", &x)]).expect("runs without it").remove(0).1, expected);
    assert_eq!(plan.run(&[("x", &x), ("shape", &[-1.0, 4.0])]).expect("and with it").remove(0).1, expected);
    let changed = plan.run(&[("x", &x), ("shape", &[4.0, -1.0])]).expect_err("another shape is refused");
    assert!(matches!(&changed, RuntimeError::BoundInputChanged { name } if name == "shape"), "{changed:?}");
    assert!(changed.to_string().contains("load the model again"), "{changed}");
}
