//! Concat in place: producers write straight into their slice of a Concat's output. An
//! Inception-like Concat of three branches copies nothing; a DenseNet-like Concat of that output
//! with a layer that reads it keeps the first in place and copies only the layer's output (it
//! would otherwise write the buffer it reads); a Concat of one value twice copies. Every plan
//! computes exactly what the copying plan computes.

#[path = "support/onnx_nodes.rs"]
mod onnx_nodes;

use autotune_codegen::host_cpu_target;
use autotune_graph::{load_bytes, proto, LoadConfig};
use autotune_runtime::{Plan, PlanConfig};
use onnx_nodes::{axis_1, ints, node, weights};
use prost::Message;

/// x [1,4,8,8] → a (conv 1×1, 6 ch), b (conv 3×3, 2 ch), c (max pool) → cat1 [1,12,8,8];
/// d = conv 1×1 of cat1 (4 ch) → cat2 = Concat(cat1, d); e = conv 1×1 of cat2 → twice = Concat(e, e).
fn model() -> Vec<u8> {
    let nodes = vec![
        node("Conv", &["x", "wa", "ba"], "a", vec![ints("kernel_shape", &[1, 1])]),
        node("Conv", &["x", "wb"], "b", vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])]),
        node(
            "MaxPool",
            &["x"],
            "c",
            vec![ints("kernel_shape", &[3, 3]), ints("strides", &[1, 1]), ints("pads", &[1, 1, 1, 1])],
        ),
        node("Concat", &["a", "b", "c"], "cat1", vec![axis_1()]),
        node("Conv", &["cat1", "wd"], "d", vec![ints("kernel_shape", &[1, 1])]),
        node("Concat", &["cat1", "d"], "cat2", vec![axis_1()]),
        node("Conv", &["cat2", "we"], "e", vec![ints("kernel_shape", &[1, 1])]),
        node("Concat", &["e", "e"], "twice", vec![axis_1()]),
    ];
    let model = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        graph: Some(proto::GraphProto {
            name: Some("concats".into()),
            node: nodes,
            initializer: vec![
                weights("wa", &[6, 4, 1, 1], 1),
                weights("ba", &[6], 2),
                weights("wb", &[2, 4, 3, 3], 3),
                weights("wd", &[4, 12, 1, 1], 4),
                weights("we", &[3, 16, 1, 1], 5),
            ],
            input: vec![proto::ValueInfoProto::float("x", Some(&[1, 4, 8, 8]))],
            output: vec![
                proto::ValueInfoProto::float("cat2", Some(&[1, 16, 8, 8])),
                proto::ValueInfoProto::float("twice", Some(&[1, 6, 8, 8])),
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

#[test]
fn producers_write_into_their_concat_slice_and_the_results_do_not_change() {
    let graph = load_bytes(&model(), "concats", &LoadConfig::default()).expect("loads");
    let target = host_cpu_target(1).expect("host");
    let copying = PlanConfig { concat_in_place: false, ..PlanConfig::default() };
    let mut in_place = Plan::new(&graph, None, &target, PlanConfig::default()).expect("plan");
    let mut copied = Plan::new(&graph, None, &target, copying).expect("plan");
    let x: Vec<f32> = (0..256).map(|i| ((i * 29 % 97) as f32 - 48.0) / 48.0).collect();
    let (outputs, times) = in_place.run_profiled(&[("x", &x)]).expect("runs");
    let expected = copied.run(&[("x", &x)]).expect("runs");
    assert_eq!(outputs, expected, "writing in place changed a result");

    let op_of = |node: &str| times.iter().find(|t| t.node == node).map(|t| t.op).expect("node");
    assert_eq!(op_of("concat_cat1"), "concat (in place)");
    assert_eq!(op_of("concat_cat2"), "concat (partly in place)", "d reads cat1, so d is copied");
    assert_eq!(op_of("concat_twice"), "concat");
    assert!(
        in_place.memory().activation_bytes_without_reuse < copied.memory().activation_bytes_without_reuse,
        "values written in place need no buffer of their own"
    );

    // Run again: a second run over buffers holding the first run's values gives the same.
    let again = in_place.run(&[("x", &x)]).expect("runs");
    assert_eq!(again, expected);
}
