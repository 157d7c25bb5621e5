//! Zero borders (`Graph::add_halos`): a conv writes its output inside the border its padded
//! reader needs, which reads it in place. The bordered plan computes what the NCHW plan and the
//! borderless blocked plan compute, run after run (the border is rewritten each call, whatever
//! the buffer held before), and a log tuned without borders lends its schedules.

#[path = "support/onnx_nodes.rs"]
mod onnx_nodes;
#[path = "support/trials.rs"]
mod trials;

use autotune_codegen::host_cpu_target;
use autotune_db::Database;
use autotune_graph::{load_bytes, proto, Graph, LoadConfig};
use autotune_ir::{ChannelBlocks, Halo};
use autotune_runtime::{logged_key, Plan, PlanConfig};
use onnx_nodes::{ints, node, weights};
use prost::Message;
use std::collections::HashSet;

/// x [1,16,12,12] → a = relu(conv 1×1, 32 ch) → b = relu(conv 3×3 pad 1) → y = conv 3×3 stride 2
/// pad 1 (an output, [1,32,6,6]), and z = conv 1×1 of b (an output, [1,16,12,12]): b's border is
/// y's padding, and z reads the plane inside it.
fn model() -> Vec<u8> {
    let k3 = |strides: i64| {
        vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1]), ints("strides", &[strides, strides])]
    };
    let nodes = vec![
        node("Conv", &["x", "wa", "ba"], "a0", vec![ints("kernel_shape", &[1, 1])]),
        node("Relu", &["a0"], "a", vec![]),
        node("Conv", &["a", "wb", "bb"], "b0", k3(1)),
        node("Relu", &["b0"], "b", vec![]),
        node("Conv", &["b", "wy"], "y", k3(2)),
        node("Conv", &["b", "wz"], "z", vec![ints("kernel_shape", &[1, 1])]),
    ];
    let model = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        graph: Some(proto::GraphProto {
            name: Some("borders".into()),
            node: nodes,
            initializer: vec![
                weights("wa", &[32, 16, 1, 1], 1),
                weights("ba", &[32], 2),
                weights("wb", &[32, 32, 3, 3], 3),
                weights("bb", &[32], 4),
                weights("wy", &[32, 32, 3, 3], 5),
                weights("wz", &[16, 32, 1, 1], 6),
            ],
            input: vec![proto::ValueInfoProto::float("x", Some(&[1, 16, 12, 12]))],
            output: vec![
                proto::ValueInfoProto::float("y", Some(&[1, 32, 6, 6])),
                proto::ValueInfoProto::float("z", Some(&[1, 16, 12, 12])),
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

fn halos(graph: &Graph) -> Vec<Halo> {
    graph.kernels().map(|(_, _, task)| task.halo).collect()
}

fn input(seed: usize) -> Vec<f32> {
    (0..16 * 144).map(|i| (((i * 29 + seed * 13) % 97) as f32 - 48.0) / 48.0).collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{what}[{i}]: {a} vs {b}");
    }
}

#[test]
fn a_bordered_plan_computes_what_the_nchw_and_borderless_plans_compute() {
    let plain = load_bytes(&model(), "borders", &LoadConfig::default()).expect("loads");
    let target = host_cpu_target(1).expect("host");
    let block = ChannelBlocks::cpu_block();
    let mut borderless = plain.clone();
    assert_eq!(borderless.block_channels(block), 2, "a and b");
    let mut bordered = borderless.clone();
    assert_eq!(bordered.add_halos(), 2, "a's and b's readers are padded convs");
    let one = [1; 4];
    assert_eq!(
        halos(&bordered),
        [
            Halo { input: [0; 4], output: one },
            Halo { input: one, output: one },
            Halo { input: one, output: [0; 4] },
            Halo { input: one, output: [0; 4] }
        ]
    );
    let plan = |g: &Graph| Plan::new(g, None, &target, PlanConfig::default()).expect("plan");
    let (mut nchw, mut blocks, mut borders) = (plan(&plain), plan(&borderless), plan(&bordered));
    // Runs with different inputs: the second finds the first one's values in every buffer.
    for seed in 0..3 {
        let x = input(seed);
        let want = nchw.run(&[("x", &x)]).expect("runs");
        let blocked_got = blocks.run(&[("x", &x)]).expect("runs");
        let bordered_got = borders.run(&[("x", &x)]).expect("runs");
        assert_eq!(want.len(), 2);
        for (i, (name, want)) in want.iter().enumerate() {
            assert!(want.iter().any(|v| *v != 0.0));
            assert_close(&blocked_got[i].1, want, &format!("{name} borderless"));
            assert_close(&bordered_got[i].1, want, &format!("{name} bordered"));
        }
    }
}

#[test]
fn a_log_tuned_without_borders_lends_its_schedules() {
    let plain = load_bytes(&model(), "borders", &LoadConfig::default()).expect("loads");
    let target = host_cpu_target(1).expect("host");
    let mut borderless = plain.clone();
    borderless.block_channels(ChannelBlocks::cpu_block());
    let mut bordered = borderless.clone();
    bordered.add_halos();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Database::open(&dir.path().join("borderless.tuning.db")).expect("db");
    let tuned = trials::write_trials(&mut log, &borderless, &target, false);
    assert_eq!(tuned.len(), 4);

    let mut with_borders = Plan::new(&bordered, Some(&log), &target, PlanConfig::default()).expect("plan");
    assert_eq!(with_borders.n_default(), 0, "every bordered task runs its twin's schedule");
    assert_eq!(with_borders.borderless_tasks().count(), 4);
    for kernel in with_borders.tasks() {
        let autotune_runtime::KernelSource::Tuned { trace, .. } = &kernel.source else { unreachable!() };
        let (_, twin_trace) =
            tuned.iter().find(|(t, _)| *t == kernel.task.without_halo()).expect("the twin was tuned");
        assert_eq!(trace, twin_trace, "{}", kernel.task.description());
        // Reports weigh the log's task whose trial runs: the twin.
        let twin_key = kernel.task.without_halo().key().0;
        assert_eq!(kernel.log_key(), twin_key);
        let logged: HashSet<String> = tuned.iter().map(|(t, _)| t.key().0).collect();
        assert_eq!(logged_key(&kernel.task, &logged), twin_key);
        assert_eq!(logged_key(&kernel.task, &HashSet::new()), kernel.task.key().0, "nothing logged");
    }
    let mut without = Plan::new(&borderless, Some(&log), &target, PlanConfig::default()).expect("plan");
    assert_eq!(without.borderless_tasks().count(), 0, "its own tasks were tuned");
    let x = input(0);
    let want = without.run(&[("x", &x)]).expect("runs");
    let got = with_borders.run(&[("x", &x)]).expect("runs");
    for ((name, got), (_, want)) in got.iter().zip(&want) {
        assert_close(got, want, &format!("{name} on twin schedules"));
    }

    // Once the bordered tasks have their own trials, those win.
    let own = trials::write_trials(&mut log, &bordered, &target, false);
    assert_eq!(own.len(), 4);
    let retuned = Plan::new(&bordered, Some(&log), &target, PlanConfig::default()).expect("plan");
    assert_eq!((retuned.n_default(), retuned.borderless_tasks().count()), (0, 0));
    let logged: HashSet<String> = tuned.iter().chain(&own).map(|(t, _)| t.key().0).collect();
    for kernel in retuned.tasks() {
        assert_eq!(kernel.log_key(), kernel.task.key().0);
        assert_eq!(logged_key(&kernel.task, &logged), kernel.task.key().0);
    }
}
