//! Channel-blocked activations chosen for the graph (`Graph::block_channels`): a conv chain
//! passes NCHW{b}c from one conv to the next (a residual too), while plain ops, poolings and the
//! model's outputs see NCHW; the blocked plan computes what the NCHW plan computes.

use autotune_codegen::host_cpu_target;
use autotune_graph::{load_bytes, proto, Graph, LoadConfig};
use autotune_ir::ChannelBlocks;
use autotune_runtime::{Plan, PlanConfig};
use prost::Message;

fn ints(name: &str, v: &[i64]) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(proto::attribute_proto::AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<proto::AttributeProto>) -> proto::NodeProto {
    proto::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(format!("{}_{output}", op.to_lowercase())),
        op_type: Some(op.into()),
        attribute,
        ..Default::default()
    }
}

fn weights(name: &str, dims: &[i64], seed: i64) -> proto::TensorProto {
    let n: i64 = dims.iter().product();
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        float_data: (0..n).map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) / 200.0).collect(),
        ..Default::default()
    }
}

/// x [1,16,10,10] → a = relu(conv 3×3, 32 ch) → r = relu(conv 1×1 of a, 32 ch + a) → y = conv
/// 1×1 of r (16 ch, a model output); q = conv 1×1 of x (16 ch) → relu → p → max pool → m.
fn model() -> Vec<u8> {
    let nodes = vec![
        node(
            "Conv",
            &["x", "wa", "ba"],
            "a0",
            vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])],
        ),
        node("Relu", &["a0"], "a", vec![]),
        node("Conv", &["a", "wr"], "r0", vec![ints("kernel_shape", &[1, 1])]),
        node("Add", &["r0", "a"], "r1", vec![]),
        node("Relu", &["r1"], "r", vec![]),
        node("Conv", &["r", "wy", "by"], "y", vec![ints("kernel_shape", &[1, 1])]),
        node("Conv", &["x", "wq"], "q", vec![ints("kernel_shape", &[1, 1])]),
        node("Relu", &["q"], "p", vec![]),
        node("MaxPool", &["p"], "m", vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])]),
    ];
    let model = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        graph: Some(proto::GraphProto {
            name: Some("blocks".into()),
            node: nodes,
            initializer: vec![
                weights("wa", &[32, 16, 3, 3], 1),
                weights("ba", &[32], 2),
                weights("wr", &[32, 32, 1, 1], 3),
                weights("wy", &[16, 32, 1, 1], 4),
                weights("by", &[16], 5),
                weights("wq", &[16, 16, 1, 1], 6),
            ],
            input: vec![proto::ValueInfoProto::float("x", Some(&[1, 16, 10, 10]))],
            output: vec![
                proto::ValueInfoProto::float("y", Some(&[1, 16, 10, 10])),
                proto::ValueInfoProto::float("m", Some(&[1, 16, 5, 5])),
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

fn layouts(graph: &Graph) -> Vec<(String, ChannelBlocks)> {
    graph.kernels().map(|(_, node, task)| (node.name.clone(), task.layout)).collect()
}

#[test]
fn a_conv_chain_passes_channel_blocks_and_computes_what_nchw_computes() {
    let plain = load_bytes(&model(), "blocks", &LoadConfig::default()).expect("loads");
    let target = host_cpu_target(1).expect("host");
    let block = target.as_cpu().expect("cpu").vector_lanes as usize;
    let mut blocked = plain.clone();
    assert_eq!(blocked.block_channels(block), 2, "a and r: only convs read them");
    let nchw = ChannelBlocks::PLAIN;
    let expected = [
        ChannelBlocks { input: 1, output: block },
        ChannelBlocks { input: block, output: block },
        ChannelBlocks { input: block, output: 1 },
        nchw,
        nchw,
    ];
    let got = layouts(&blocked);
    assert_eq!(got.iter().map(|(_, l)| *l).collect::<Vec<_>>(), expected, "{got:?}");
    assert!(layouts(&plain).iter().all(|(_, l)| l.is_plain()));
    let mut again = blocked.clone();
    assert_eq!(again.block_channels(block), 0, "blocking twice changes nothing more");
    assert_eq!(layouts(&again), got);

    let x: Vec<f32> = (0..1600).map(|i| ((i * 29 % 97) as f32 - 48.0) / 48.0).collect();
    let mut want = Plan::new(&plain, None, &target, PlanConfig::default()).expect("plan");
    let mut have = Plan::new(&blocked, None, &target, PlanConfig::default()).expect("blocked plan");
    let (want, have) = (want.run(&[("x", &x)]).expect("runs"), have.run(&[("x", &x)]).expect("runs"));
    for ((name, got), (_, want)) in have.iter().zip(&want) {
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{name}[{i}]: {a} vs {b}");
        }
    }
}
