//! End-to-end: GPU candidates measured in the real `autotune` measurement worker, on the host
//! device (`GpuBackend::HostEmulation`: the GPU nests on the CPU JIT, through the same protocol
//! and worker isolation a CUDA device gets). Planted faults in real GPU kernels: a store far out
//! of bounds kills the worker (a `run_error`, the worker restarted), an endless kernel is a
//! `timeout` (the worker killed and restarted), and the candidates around them are measured.

use autotune_ir::{CudaTarget, Target, Task, Trace, TrialStatus};
use autotune_measure::planted::{PlantedFault, PLANT_FAULTS_ARG};
use autotune_measure::{GpuBackend, MeasureConfig, Runner, WorkerConfig, WorkerRunner};
use autotune_schedules::space_for;
use rand::SeedableRng;

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
