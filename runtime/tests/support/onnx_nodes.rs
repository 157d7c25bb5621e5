//! ONNX nodes and weights for models built in code by the runtime's tests (included with
//! `#[path]`).

#![allow(dead_code)]

use autotune_graph::proto;

pub fn ints(name: &str, v: &[i64]) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(proto::attribute_proto::AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub fn axis_1() -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some("axis".into()),
        r#type: Some(proto::attribute_proto::AttributeType::Int as i32),
        i: Some(1),
        ..Default::default()
    }
}

pub fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<proto::AttributeProto>,
) -> proto::NodeProto {
    proto::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(format!("{}_{output}", op.to_lowercase())),
        op_type: Some(op.into()),
        attribute,
        ..Default::default()
    }
}

pub fn weights(name: &str, dims: &[i64], seed: i64) -> proto::TensorProto {
    let n: i64 = dims.iter().product();
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        float_data: (0..n).map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) / 200.0).collect(),
        ..Default::default()
    }
}
