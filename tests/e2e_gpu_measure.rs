//! End-to-end: GPU candidates measured in the real `autotune` measurement worker, on the host
//! device (`GpuBackend::HostEmulation`: the GPU nests on the CPU JIT, through the same protocol
//! and worker isolation a CUDA device gets). Planted faults in real GPU kernels: a store far out
//! of bounds kills the worker (a `run_error`, the worker restarted), an endless kernel is a
//! `timeout` (the worker killed and restarted), and the candidates around them are measured.
//! And the whole GPU path without a GPU: a model's dense layer tuned for a CUDA target through
//! the worker, its winner run by a GPU plan.

use autotune_db::Database;
use autotune_graph::{load_bytes, proto, LoadConfig};
use autotune_ir::{CudaTarget, Target, Task, Trace, TrialStatus};
use autotune_measure::planted::{PlantedFault, PLANT_FAULTS_ARG};
use autotune_measure::{GpuBackend, MeasureConfig, Runner, WorkerConfig, WorkerRunner};
use autotune_runtime::{HostGpuDevice, KernelSource, Plan, PlanConfig};
use autotune_schedules::space_for;
use autotune_search::{tune, RandomSearch, RandomSearchConfig, TuneConfig};
use prost::Message;
use rand::SeedableRng;
use std::sync::atomic::AtomicBool;

#[test]
fn gpu_candidates_that_crash_or_hang_in_the_worker_are_recorded_and_the_rest_measured() {
    let target = Target::Cuda(CudaTarget::h100());
    let task = Task::matmul(16, 24, 8);
    let space = space_for(&task, &target).expect("space");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let sampled: Vec<Trace> = (0..2).map(|_| space.sample(&mut rng)).collect();
    let traces = vec![
        space.default_trace(),
        PlantedFault::Segfault.plant_in(&sampled[0]),
        PlantedFault::Hang.plant_in(&sampled[1]),
        sampled[1].clone(),
    ];
    let config = WorkerConfig {
        program: env!("CARGO_BIN_EXE_autotune").into(),
        args: vec!["__measure-worker".into(), PLANT_FAULTS_ARG.into()],
        measure: MeasureConfig {
            min_repeats: 2,
            max_repeats: 3,
            min_total_time_s: 0.0,
            timeout_s: 1.0,
            max_total_time_s: 0.2,
            ..MeasureConfig::default()
        },
        build_timeout_s: 120.0,
        gpu_backend: GpuBackend::HostEmulation,
    };
    let mut runner = WorkerRunner::new(&target, config).expect("start the worker");
    let outcomes = runner.measure_batch(&task, &traces);
    let statuses: Vec<TrialStatus> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [TrialStatus::Ok, TrialStatus::RunError, TrialStatus::Timeout, TrialStatus::Ok],
        "{outcomes:?}"
    );
    assert!(outcomes[1].error.as_deref().unwrap_or("").contains("died"), "{outcomes:?}");
    assert!(outcomes[1..3].iter().all(|o| o.repeat_times_s.is_empty()), "no time for a failed kernel");
    assert_eq!(runner.n_restarts(), 2, "one fresh worker after the crash, one after the hang");
}

/// On a real GPU (bench/gpu/run_on_device.sh): a kernel storing far out of bounds faults the
/// CUDA context; its outcome is a `run_error`, its worker is replaced, and the candidates after
/// it are measured in the fresh one (not failed by the poisoned context, nor blamed for it).
#[test]
fn on_a_real_gpu_a_faulting_kernel_poisons_only_its_own_worker() {
    let target = match (autotune_codegen::cuda::cuda_target(0), autotune_codegen::cuda::nvrtc_available()) {
        (Ok(target), Ok(())) => target,
        (Err(e), _) | (_, Err(e)) => {
            println!("skipped: no GPU to run on ({e})");
            return;
        }
    };
    let task = Task::matmul(64, 64, 64);
    let space = space_for(&task, &target).expect("space");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let sampled: Vec<Trace> = (0..2).map(|_| space.sample(&mut rng)).collect();
    let traces = vec![
        sampled[0].clone(),
        PlantedFault::Segfault.plant_in(&sampled[1]),
        space.default_trace(),
        sampled[1].clone(),
    ];
    let config = WorkerConfig {
        program: env!("CARGO_BIN_EXE_autotune").into(),
        args: vec!["__measure-worker".into(), PLANT_FAULTS_ARG.into()],
        measure: MeasureConfig {
            min_repeats: 2,
            max_repeats: 3,
            min_total_time_s: 0.0,
            timeout_s: 5.0,
            ..MeasureConfig::default()
        },
        build_timeout_s: 120.0,
        gpu_backend: GpuBackend::Cuda,
    };
    let mut runner = WorkerRunner::new(&target, config).expect("start the worker");
    let outcomes = runner.measure_batch(&task, &traces);
    let statuses: Vec<TrialStatus> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [TrialStatus::Ok, TrialStatus::RunError, TrialStatus::Ok, TrialStatus::Ok],
        "{outcomes:?}"
    );
    assert_eq!(runner.n_restarts(), 1, "{outcomes:?}");
}

#[test]
fn a_gpu_task_tuned_through_the_worker_is_the_kernel_a_gpu_plan_runs() {
    // y = relu(x · W): one dense task (W constant), fused relu.
    let w: Vec<f32> = (0..24 * 40).map(|i| ((i * 37) % 19) as f32 / 9.0 - 1.0).collect();
    let model = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        graph: Some(proto::GraphProto {
            name: Some("dense".into()),
            node: ["MatMul", "Relu"]
                .iter()
                .zip([(vec!["x", "w"], "h"), (vec!["h"], "y")])
                .map(|(op, (inputs, output))| proto::NodeProto {
                    input: inputs.iter().map(|s| s.to_string()).collect(),
                    output: vec![output.into()],
                    name: Some(output.into()),
                    op_type: Some(op.to_string()),
                    ..Default::default()
                })
                .collect(),
            initializer: vec![proto::TensorProto {
                name: Some("w".into()),
                dims: vec![24, 40],
                data_type: Some(1),
                float_data: w,
                ..Default::default()
            }],
            input: vec![proto::ValueInfoProto::float("x", Some(&[6, 24]))],
            output: vec![proto::ValueInfoProto::float("y", Some(&[6, 40]))],
            ..Default::default()
        }),
        ..Default::default()
    };
    let graph = load_bytes(&model.encode_to_vec(), "dense", &LoadConfig::default()).expect("loads");
    let tasks = autotune_graph::extract_tasks(&graph);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let task = tasks[0].0.clone();

    let target = Target::Cuda(CudaTarget::h100());
    let space = space_for(&task, &target).expect("a GPU space");
    let config = WorkerConfig {
        program: env!("CARGO_BIN_EXE_autotune").into(),
        args: vec!["__measure-worker".into()],
        measure: MeasureConfig {
            min_repeats: 2,
            max_repeats: 3,
            min_total_time_s: 0.0,
            ..MeasureConfig::default()
        },
        build_timeout_s: 120.0,
        gpu_backend: GpuBackend::HostEmulation,
    };
    let mut runner = WorkerRunner::new(&target, config).expect("start the worker");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(&dir.path().join("dense.tuning.db")).expect("db");
    let mut strategy = RandomSearch::new(space.as_ref(), RandomSearchConfig::new(1));
    let tune_config = TuneConfig {
        batch_size: 4,
        confirm_rounds: 0,
        ..TuneConfig::new(8, 1, autotune_codegen::codegen_version(&target))
    };
    let summary = tune(
        &task,
        space.as_ref(),
        &mut strategy,
        &mut runner,
        &mut db,
        &tune_config,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .expect("tunes");
    let best = summary.best.expect("an ok trial");

    let cpu = autotune_codegen::host_cpu_target(1).expect("host");
    let mut cpu_plan = Plan::new(&graph, None, &cpu, PlanConfig::default()).expect("CPU plan");
    let device = Box::new(HostGpuDevice::new().expect("host device"));
    let mut plan =
        Plan::for_gpu(graph, Some(&db), &target, device, 1, PlanConfig::default()).expect("GPU plan");
    match &plan.tasks()[0].source {
        KernelSource::Tuned { trace, .. } => assert_eq!(*trace, best.trace),
        other => panic!("the GPU plan did not take the tuned kernel: {other:?}"),
    }
    assert!(plan.tasks()[0].on_gpu);
    let x: Vec<f32> = (0..6 * 24).map(|i| (i % 7) as f32 / 3.0 - 1.0).collect();
    let gpu_out = plan.run(&[("x", &x)]).expect("runs");
    let cpu_out = cpu_plan.run(&[("x", &x)]).expect("runs");
    for (g, c) in gpu_out[0].1.iter().zip(&cpu_out[0].1) {
        assert!((g - c).abs() <= 1e-5 + 1e-4 * c.abs(), "{g} vs {c}");
    }
}
