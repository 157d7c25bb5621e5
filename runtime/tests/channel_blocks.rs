//! Channel-blocked activations chosen for the graph (`Graph::block_channels`): convs, poolings
//! and a channel Concat pass NCHW{b}c on (a residual too), while plain ops and the model's
//! outputs see NCHW; the blocked plan computes what the NCHW plan computes, with its Concat
//! written in place or copied.

#[path = "support/onnx_nodes.rs"]
mod onnx_nodes;
#[path = "support/trials.rs"]
mod trials;

use autotune_codegen::host_cpu_target;
use autotune_db::Database;
use autotune_graph::{load_bytes, proto, Graph, LoadConfig};
use autotune_ir::ChannelBlocks;
use autotune_runtime::{log_uses_channel_blocks, Plan, PlanConfig};
use onnx_nodes::{axis_1, ints, node, weights};
use prost::Message;

/// x [1,16,10,10] → a = relu(conv 3×3, 32 ch) → r = relu(conv 1×1 of a + a) → mp = max pool 3×3
/// of r → z = conv 1×1 of mp (16 ch) → cat = Concat(z, mp) → g = global average pool (an output);
/// y = conv 1×1 of r (16 ch, an output); q = conv 1×1 of x → relu → p → max pool → m (an output).
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
        node(
            "MaxPool",
            &["r"],
            "mp",
            vec![ints("kernel_shape", &[3, 3]), ints("strides", &[1, 1]), ints("pads", &[1, 1, 1, 1])],
        ),
        node("Conv", &["mp", "wz"], "z", vec![ints("kernel_shape", &[1, 1])]),
        node("Concat", &["z", "mp"], "cat", vec![axis_1()]),
        node("GlobalAveragePool", &["cat"], "g", vec![]),
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
                weights("wz", &[16, 32, 1, 1], 7),
                weights("wy", &[16, 32, 1, 1], 4),
                weights("by", &[16], 5),
                weights("wq", &[16, 16, 1, 1], 6),
            ],
            input: vec![proto::ValueInfoProto::float("x", Some(&[1, 16, 10, 10]))],
            output: vec![
                proto::ValueInfoProto::float("y", Some(&[1, 16, 10, 10])),
                proto::ValueInfoProto::float("m", Some(&[1, 16, 5, 5])),
                proto::ValueInfoProto::float("g", Some(&[1, 48, 1, 1])),
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
    let block = ChannelBlocks::cpu_block();
    let mut blocked = plain.clone();
    assert_eq!(
        blocked.block_channels(block),
        5,
        "a, r, mp, z and cat: only convs, pools and a Concat read them"
    );
    let (nchw, b) = (ChannelBlocks::PLAIN, |input, output| ChannelBlocks { input, output });
    let expected = [
        ("conv_a0", b(1, block)),
        ("conv_r0", b(block, block)),
        ("maxpool_mp", b(block, block)),
        ("conv_z", b(block, block)),
        // One position per channel: the same bytes blocked or not, read as NCHW.
        ("globalaveragepool_g", b(block, block)),
        ("conv_y", b(block, 1)),
        ("conv_q", nchw),
        ("maxpool_m", nchw),
    ];
    let got = layouts(&blocked);
    for (name, layout) in expected {
        assert_eq!(got.iter().find(|(n, _)| n == name).map(|(_, l)| *l), Some(layout), "{name}: {got:?}");
    }
    assert!(layouts(&plain).iter().all(|(_, l)| l.is_plain()));
    let mut again = blocked.clone();
    assert_eq!(again.block_channels(block), 0, "blocking twice changes nothing more");
    assert_eq!(layouts(&again), got);

    let x: Vec<f32> = (0..1600).map(|i| ((i * 29 % 97) as f32 - 48.0) / 48.0).collect();
    let mut want = Plan::new(&plain, None, &target, PlanConfig::default()).expect("plan");
    let want = want.run(&[("x", &x)]).expect("runs");
    for concat_in_place in [true, false] {
        let config = PlanConfig { concat_in_place, ..PlanConfig::default() };
        let mut have = Plan::new(&blocked, None, &target, config).expect("blocked plan");
        let have = have.run(&[("x", &x)]).expect("runs");
        assert_eq!(have.len(), 3);
        for ((name, got), (_, want)) in have.iter().zip(&want) {
            for (i, (a, b)) in got.iter().zip(want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
                    "{name}[{i}] (in place: {concat_in_place}): {a} vs {b}"
                );
            }
        }
    }
}

/// A log keeps the layout it was tuned in: trials of blocked tasks for this target say blocks,
/// trials of NCHW tasks only say NCHW, none for this target say nothing.
#[test]
fn a_log_says_which_layout_it_was_tuned_in() {
    let plain = load_bytes(&model(), "blocks", &LoadConfig::default()).expect("loads");
    let target = host_cpu_target(1).expect("host");
    let mut blocked = plain.clone();
    blocked.block_channels(ChannelBlocks::cpu_block());
    let dir = tempfile::tempdir().expect("tempdir");

    let mut nchw_log = Database::open(&dir.path().join("nchw.tuning.db")).expect("db");
    assert_eq!(log_uses_channel_blocks(&nchw_log, &target).expect("query"), None, "an empty log");
    trials::write_trials(&mut nchw_log, &plain, &target, false);
    assert_eq!(log_uses_channel_blocks(&nchw_log, &target).expect("query"), Some(false));
    let other_threads = host_cpu_target(2).expect("host");
    assert_eq!(
        log_uses_channel_blocks(&nchw_log, &other_threads).expect("query"),
        Some(false),
        "no trials for this target: the log's other targets say"
    );

    let mut blocked_log = Database::open(&dir.path().join("blocked.tuning.db")).expect("db");
    trials::write_trials(&mut blocked_log, &blocked, &target, false);
    assert_eq!(log_uses_channel_blocks(&blocked_log, &target).expect("query"), Some(true));
    // Its tuned kernels run: every blocked task has its trial.
    let plan = Plan::new(&blocked, Some(&blocked_log), &target, PlanConfig::default()).expect("plan");
    assert_eq!(plan.n_default(), 0);
}
