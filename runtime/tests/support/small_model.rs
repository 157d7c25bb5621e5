//! A small ONNX model built in code, with seeded random weights, for tests that must not depend
//! on Python: five kernel tasks (conv + bias + relu, max pool, conv + batch-norm + residual add +
//! relu, global average pool, dense + bias) and plain ops around them (Concat, LRN, Flatten,
//! Softmax, Transpose, Mul, Split). Two outputs: the probabilities `y` and the pooled feature map
//! `pooled`, which later nodes read too.
//!
//! Shared by `runtime/tests/plan.rs` and `tests/e2e_models.rs` (included with `#[path]`).

#![allow(dead_code)]

use autotune_graph::proto;
use prost::Message;

/// Input `x`: [1, 3, 8, 8].
pub const INPUT: &str = "x";
pub const INPUT_SHAPE: [usize; 4] = [1, 3, 8, 8];

struct Rng(u64);

impl Rng {
    /// Uniform in [-scale, scale).
    fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(proto::attribute_proto::AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(proto::attribute_proto::AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(proto::attribute_proto::AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

fn info(name: &str, shape: &[usize]) -> proto::ValueInfoProto {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    proto::ValueInfoProto::float(name, Some(&dims))
}

fn tensor(name: &str, shape: &[usize], values: Vec<f32>) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(1),
        float_data: values,
        ..Default::default()
    }
}

fn node(
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<proto::AttributeProto>,
) -> proto::NodeProto {
    proto::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(format!("{}_{}", op.to_lowercase(), outputs[0])),
        op_type: Some(op.into()),
        attribute,
        ..Default::default()
    }
}

/// The model's bytes; `seed` picks the weights.
pub fn bytes(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_add(0x1234_5678));
    let mut inits = Vec::new();
    let mut init = |name: &str, shape: &[usize], scale: f32, offset: f32| {
        let n = shape.iter().product();
        let v = rng.values(n, scale).into_iter().map(|x| x + offset).collect();
        inits.push(tensor(name, shape, v));
    };
    init("w1", &[8, 3, 3, 3], 0.5, 0.0);
    init("b1", &[8], 0.1, 0.0);
    init("w2", &[8, 8, 3, 3], 0.3, 0.0);
    init("bn_scale", &[8], 0.5, 1.0);
    init("bn_bias", &[8], 0.1, 0.0);
    init("bn_mean", &[8], 0.1, 0.0);
    init("bn_var", &[8], 0.5, 1.0);
    init("w3", &[10, 16], 0.5, 0.0);
    init("b3", &[10], 0.1, 0.0);
    init("gain", &[1, 16, 1, 1], 0.5, 1.0);
    inits.push(proto::TensorProto {
        name: Some("split_sizes".into()),
        dims: vec![2],
        data_type: Some(7),
        int64_data: vec![6, 10],
        ..Default::default()
    });
    let pads = attr_ints("pads", &[1, 1, 1, 1]);
    let nodes = vec![
        node("Conv", &["x", "w1", "b1"], &["c1"], vec![attr_ints("kernel_shape", &[3, 3]), pads.clone()]),
        node("Relu", &["c1"], &["r1"], vec![]),
        node(
            "MaxPool",
            &["r1"],
            &["pooled"],
            vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])],
        ),
        node("Conv", &["pooled", "w2"], &["c2"], vec![attr_ints("kernel_shape", &[3, 3]), pads]),
        node("BatchNormalization", &["c2", "bn_scale", "bn_bias", "bn_mean", "bn_var"], &["bn"], vec![]),
        node("Add", &["bn", "pooled"], &["res"], vec![]),
        node("Relu", &["res"], &["r2"], vec![]),
        node("Concat", &["r2", "pooled"], &["cat"], vec![attr_int("axis", 1)]),
        node("Mul", &["cat", "gain"], &["scaled"], vec![]),
        node(
            "LRN",
            &["scaled"],
            &["lrn"],
            vec![attr_int("size", 3), attr_float("alpha", 0.5), attr_float("beta", 0.75)],
        ),
        node("Transpose", &["lrn"], &["t"], vec![attr_ints("perm", &[0, 1, 3, 2])]),
        node("Split", &["t", "split_sizes"], &["s1", "s2"], vec![attr_int("axis", 1)]),
        node("Concat", &["s2", "s1"], &["cat2"], vec![attr_int("axis", 1)]),
        node("GlobalAveragePool", &["cat2"], &["gap"], vec![]),
        node("Flatten", &["gap"], &["flat"], vec![attr_int("axis", 1)]),
        node("Gemm", &["flat", "w3", "b3"], &["logits"], vec![attr_int("transB", 1)]),
        node("Softmax", &["logits"], &["y"], vec![attr_int("axis", 1)]),
    ];
    let model = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        graph: Some(proto::GraphProto {
            name: Some("small".into()),
            node: nodes,
            initializer: inits,
            input: vec![info(INPUT, &INPUT_SHAPE)],
            output: vec![info("y", &[1, 10]), info("pooled", &[1, 8, 4, 4])],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// Seeded input values for `x`.
pub fn input(seed: u64) -> Vec<f32> {
    Rng(seed).values(INPUT_SHAPE.iter().product(), 1.0)
}
