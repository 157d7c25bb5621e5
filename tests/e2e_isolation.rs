//! End-to-end: a real JIT'd kernel that kills its process becomes a recorded `run_error`, in the
//! real `autotune` measurement worker, and the worker is restarted for the next candidate.
//!
//! The planted kernels are ordinary ones built for a CPU this host is not: AVX-512 code on a host
//! without AVX-512 dies of an illegal instruction (SIGILL), the fault a log copied between
//! machines would cause if anything ever ran it. The others are host kernels with a fault planted
//! through the test-only decision of `autotune_measure::planted`: a segfault, a store just past
//! the output, an endless loop.

use autotune_ir::{CpuTarget, IsaLevel, Target, Task, Trace, TrialStatus};
use autotune_measure::planted::{PlantedFault, PLANT_FAULTS_ARG};
use autotune_measure::{MeasureConfig, Runner, WorkerConfig, WorkerRunner};
use autotune_schedules::space_for;
use rand::SeedableRng;

fn worker(target: &Target) -> WorkerRunner {
    worker_with(target, &[])
}

fn worker_with(target: &Target, extra_args: &[&str]) -> WorkerRunner {
    let mut args = vec!["__measure-worker".to_string()];
    args.extend(extra_args.iter().map(|a| a.to_string()));
    let config = WorkerConfig {
        program: env!("CARGO_BIN_EXE_autotune").into(),
        args,
        measure: MeasureConfig {
            min_repeats: 1,
            max_repeats: 2,
            min_total_time_s: 0.0,
            timeout_s: 1.0,
            ..MeasureConfig::default()
        },
        build_timeout_s: 120.0,
        gpu_backend: Default::default(),
    };
    WorkerRunner::new(target, config).expect("start the worker")
}

#[test]
fn a_kernel_that_dies_of_an_illegal_instruction_is_a_run_error_and_the_worker_restarts() {
    let levels = autotune_codegen::host_isa_levels().expect("levels");
    if levels[0] >= IsaLevel::Avx512 {
        eprintln!("skipped: this host runs AVX-512, so AVX-512 kernels cannot fault here");
        return;
    }
    let task = Task::matmul(64, 64, 64);
    let foreign = Target::Cpu(CpuTarget::generic(IsaLevel::Avx512, 1));
    let space = space_for(&task, &foreign).expect("space");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let traces: Vec<Trace> = (0..3).map(|_| space.sample(&mut rng)).collect();
    let mut runner = worker(&foreign);
    let outcomes = runner.measure_batch(&task, &traces);
    assert_eq!(outcomes.len(), 3);
    for outcome in &outcomes {
        assert_eq!(outcome.status, TrialStatus::RunError, "{outcomes:?}");
        assert!(outcome.repeat_times_s.is_empty(), "no time for a failed kernel");
    }
    assert!(runner.n_restarts() >= 3, "one restart per dead worker, got {}", runner.n_restarts());

    // The host's own kernels of the same task still run, in a fresh worker.
    let host = autotune_codegen::host_cpu_target(1).expect("host");
    let host_space = space_for(&task, &host).expect("space");
    let mut runner = worker(&host);
    let outcomes = runner.measure_batch(&task, &[host_space.default_trace()]);
    assert_eq!(outcomes[0].status, TrialStatus::Ok, "{outcomes:?}");
}

#[test]
fn planted_segfault_scribble_and_hang_are_recorded_and_only_their_candidates_are_lost() {
    let task = Task::matmul(48, 40, 32);
    let host = autotune_codegen::host_cpu_target(1).expect("host");
    let space = space_for(&task, &host).expect("space");
    let good = space.default_trace();
    let batch = vec![
        good.clone(),
        PlantedFault::Segfault.plant_in(&good),
        good.clone(),
        PlantedFault::OutOfBoundsWrite.plant_in(&good),
        PlantedFault::Hang.plant_in(&good),
        good.clone(),
    ];
    let mut runner = worker_with(&host, &[PLANT_FAULTS_ARG]);
    let outcomes = runner.measure_batch(&task, &batch);
    let statuses: Vec<TrialStatus> = outcomes.iter().map(|o| o.status).collect();
    use TrialStatus::{Ok, RunError, Timeout};
    assert_eq!(statuses, [Ok, RunError, Ok, RunError, Timeout, Ok], "{outcomes:#?}");
    let error = |i: usize| outcomes[i].error.clone().unwrap_or_default();
    assert!(error(1).contains("worker process died"), "{}", error(1));
    assert!(error(3).contains("wrote outside"), "{}", error(3));
    for i in [1, 3, 4] {
        assert!(outcomes[i].repeat_times_s.is_empty(), "no time for a failed kernel: {:?}", outcomes[i]);
    }
    assert_eq!(
        runner.n_restarts(),
        2,
        "a restart after the segfault and after the hang, none for the scribble"
    );

    // Without the flag the decision is ignored: the same batch is six good kernels.
    let mut plain = worker(&host);
    let outcomes = plain.measure_batch(&task, &batch);
    assert!(outcomes.iter().all(|o| o.status == Ok), "{outcomes:#?}");
}
