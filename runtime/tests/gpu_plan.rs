//! GPU plans, run on the host device (`HostGpuDevice`: the GPU kernels' nests on the CPU JIT),
//! against CPU plans of the same models: what runs where, the copies at the boundaries between
//! device and host segments (counted exactly on a model built for it), weights uploaded once,
//! buffers reused across runs, and tuned GPU trials from the log.

#[path = "support/small_model.rs"]
mod small_model;
#[path = "support/trials.rs"]
mod trials;

use autotune_codegen::host_cpu_target;
use autotune_db::Database;
use autotune_graph::{load_bytes, proto, Graph, LoadConfig};
use autotune_ir::{CudaTarget, Target};
use autotune_runtime::{HostGpuDevice, KernelSource, Plan, PlanConfig, TransferStats};
use autotune_schedules::space_for;
use prost::Message;

fn gpu() -> Target {
    Target::Cuda(CudaTarget::h100())
}

fn gpu_plan(graph: Graph, log: Option<&Database>, config: PlanConfig) -> Plan {
    let device = Box::new(HostGpuDevice::new().expect("host device"));
    Plan::for_gpu(graph, log, &gpu(), device, 1, config).expect("GPU plan")
}

fn cpu_plan(graph: &Graph) -> Plan {
    Plan::new(graph, None, &host_cpu_target(1).expect("host"), PlanConfig::default()).expect("CPU plan")
}

fn assert_close(what: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (&a, &b)) in actual.iter().zip(expected).enumerate() {
        assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{what}[{i}]: {a} vs {b}");
    }
}

fn assert_same_outputs(gpu: &[(String, Vec<f32>)], cpu: &[(String, Vec<f32>)]) {
    assert_eq!(gpu.len(), cpu.len());
    for ((name, g), (cpu_name, c)) in gpu.iter().zip(cpu) {
        assert_eq!(name, cpu_name);
        assert_close(name, g, c);
    }
}

/// x [4, 8] → MatMul W1 → h → Softmax → p → MatMul W2 → y [4, 5]: two GPU kernels around a
/// host op, so every copy of a run is known: x up, h down, p up, y down.
fn gpu_host_gpu_model() -> Graph {
    let tensor = |name: &str, shape: &[i64], seed: u32| proto::TensorProto {
        name: Some(name.into()),
        dims: shape.to_vec(),
        data_type: Some(1),
        float_data: (0..shape.iter().product::<i64>())
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0)
            .collect(),
        ..Default::default()
    };
    let node = |op: &str, inputs: &[&str], output: &str, attribute| proto::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(output.into()),
        op_type: Some(op.into()),
        attribute,
        ..Default::default()
    };
    let axis = proto::AttributeProto {
        name: Some("axis".into()),
        r#type: Some(proto::attribute_proto::AttributeType::Int as i32),
        i: Some(1),
        ..Default::default()
    };
    let model = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        graph: Some(proto::GraphProto {
            name: Some("gpu_host_gpu".into()),
            node: vec![
                node("MatMul", &["x", "w1"], "h", vec![]),
                node("Softmax", &["h"], "p", vec![axis]),
                node("MatMul", &["p", "w2"], "y", vec![]),
            ],
            initializer: vec![tensor("w1", &[8, 16], 1), tensor("w2", &[16, 5], 2)],
            input: vec![proto::ValueInfoProto::float("x", Some(&[4, 8]))],
            output: vec![proto::ValueInfoProto::float("y", Some(&[4, 5]))],
            ..Default::default()
        }),
        ..Default::default()
    };
    load_bytes(&model.encode_to_vec(), "gpu_host_gpu", &LoadConfig::default()).expect("loads")
}

#[test]
fn copies_happen_only_where_gpu_kernels_and_host_nodes_meet_and_weights_go_up_once() {
    let graph = gpu_host_gpu_model();
    let mut cpu = cpu_plan(&graph);
    let mut plan = gpu_plan(graph, None, PlanConfig::default());
    assert!(plan.tasks().iter().all(|k| k.on_gpu), "both matmuls have GPU kernels");
    assert_eq!(plan.gpu_weight_bytes(), (8 * 16 + 16 * 5) * 4);
    let want = TransferStats {
        uploads: 2,
        downloads: 2,
        bytes_up: (4 * 8 + 4 * 16) * 4,
        bytes_down: (4 * 16 + 4 * 5) * 4,
    };
    for seed in 0..2 {
        let x: Vec<f32> = (0..32).map(|i| ((i * 7 + seed * 3) % 11) as f32 / 5.0 - 1.0).collect();
        let out = plan.run(&[("x", &x)]).expect("runs");
        assert_same_outputs(&out, &cpu.run(&[("x", &x)]).expect("CPU runs"));
        // The second run reuses the buffers and weights of the first: the same copies, no more.
        assert_eq!(plan.transfers(), Some(want), "run {seed}");
    }
    assert_eq!(cpu.transfers(), None, "a CPU plan copies nothing");
}

#[test]
fn the_small_model_runs_its_gpu_kernels_and_host_segments_and_matches_the_cpu_plan() {
    let graph = || load_bytes(&small_model::bytes(3), "small", &LoadConfig::default()).expect("loads");
    let mut cpu = cpu_plan(&graph());
    let input = small_model::input(5);
    let expected = cpu.run(&[(small_model::INPUT, &input)]).expect("CPU runs");
    for reuse_buffers in [true, false] {
        let mut plan = gpu_plan(graph(), None, PlanConfig { reuse_buffers, ..PlanConfig::default() });
        // A task runs on the GPU exactly when the GPU has a schedule space for it (dense at
        // least; conv and pooling once their GPU spaces exist); the plain ops between the kernels
        // run on the host either way, so values cross in both directions.
        for k in plan.tasks() {
            assert_eq!(k.on_gpu, space_for(&k.task, &gpu()).is_ok(), "{}", k.task.description());
        }
        assert!(plan.tasks().iter().any(|k| k.on_gpu));
        let first = plan.run(&[(small_model::INPUT, &input)]).expect("runs");
        let copies = plan.transfers().expect("a GPU plan");
        assert!(copies.uploads >= 1 && copies.downloads >= 1, "{copies:?}");
        assert_same_outputs(&first, &expected);
        let again = plan.run(&[(small_model::INPUT, &input)]).expect("runs again");
        assert_eq!(again, first, "same buffers, same results");
        assert_eq!(plan.transfers(), Some(copies));
        let (profiled, times) = plan.run_profiled(&[(small_model::INPUT, &input)]).expect("profiles");
        assert_eq!(profiled, first);
        assert_eq!(times.len(), graph().nodes.len());
    }
}

#[test]
fn a_gpu_plan_runs_the_logs_tuned_gpu_trials() {
    let graph = gpu_host_gpu_model();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(&dir.path().join("m.tuning.db")).expect("db");
    let traces = trials::write_trials(&mut db, &graph, &gpu(), false);
    assert_eq!(traces.len(), 2);
    let mut cpu = cpu_plan(&graph);
    let mut plan = gpu_plan(graph, Some(&db), PlanConfig::default());
    for ((task, trace), kernel) in traces.iter().zip(plan.tasks()) {
        assert_eq!(kernel.task.key(), task.key());
        match &kernel.source {
            KernelSource::Tuned { trace: used, .. } => assert_eq!(used, trace),
            other => panic!("{}: {other:?}", task.description()),
        }
    }
    let x: Vec<f32> = (0..32).map(|i| (i % 5) as f32 - 2.0).collect();
    assert_same_outputs(&plan.run(&[("x", &x)]).expect("runs"), &cpu.run(&[("x", &x)]).expect("runs"));
}

/// On a real GPU (bench/gpu/run_on_device.sh): the same plans on the device.
#[test]
fn on_a_real_gpu_the_plans_match_the_cpu_plans() {
    let target = match (autotune_codegen::cuda::cuda_target(0), autotune_codegen::cuda::nvrtc_available()) {
        (Ok(target), Ok(())) => target,
        (Err(e), _) | (_, Err(e)) => {
            println!("skipped: no GPU to run on ({e})");
            return;
        }
    };
    let Some(gpu) = target.as_cuda() else { panic!("cuda:0 is not a GPU target") };
    for graph in [
        gpu_host_gpu_model(),
        load_bytes(&small_model::bytes(3), "small", &LoadConfig::default()).expect("loads"),
    ] {
        let mut cpu = cpu_plan(&graph);
        let inputs = cpu.inputs();
        let values = autotune_runtime::random_inputs(&inputs, 4);
        let named: Vec<(&str, &[f32])> =
            inputs.iter().zip(&values).map(|(i, v)| (i.name.as_str(), v.as_slice())).collect();
        let expected = cpu.run(&named).expect("CPU runs");
        let device = Box::new(autotune_codegen::cuda::CudaDevice::new(gpu).expect("opens cuda:0"));
        let mut plan =
            Plan::for_gpu(graph, None, &target, device, 1, PlanConfig::default()).expect("GPU plan");
        assert_same_outputs(&plan.run(&named).expect("runs"), &expected);
        let copies = plan.transfers();
        assert_same_outputs(&plan.run(&named).expect("runs again"), &expected);
        assert_eq!(plan.transfers(), copies);
    }
}
