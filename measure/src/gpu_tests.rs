//! The GPU measurement protocol, run on the host device (`HostGpuDevice`): real GPU kernels of
//! the GPU GEMM space, checked against the reference and timed through the device trait; a
//! wrapper device counts what the protocol issues and injects device faults.

use crate::gpu::{GpuBackend, GpuLocalRunner};
use crate::{MeasureConfig, Runner, WorkerConfig, WorkerRunner};
use autotune_codegen::{
    CodegenError, DeviceBuffer, DeviceError, DeviceEvent, DeviceSlice, GpuDevice, GpuKernel, HostGpuDevice,
    KernelHandle,
};
use autotune_ir::{BatchMatmulSpec, CudaTarget, Expr, Op, Program, Stmt, Target, Task, Trace, TrialStatus};
use autotune_schedules::space_for;
use rand::SeedableRng;
use std::sync::{Arc, Mutex};

fn quick() -> MeasureConfig {
    MeasureConfig { min_repeats: 3, max_repeats: 5, min_total_time_s: 0.0, ..MeasureConfig::default() }
}

fn gpu(l2_bytes: u64) -> Target {
    Target::Cuda(CudaTarget { l2_bytes, ..CudaTarget::h100() })
}

#[derive(Default, Debug)]
struct Counts {
    launches: usize,
    zeros: usize,
    largest_alloc: usize,
}

/// The host device, counting launches, zero-fills and allocations, failing the `fault_at`-th
/// launch (from 1) as a faulting CUDA kernel does.
struct Counting {
    inner: HostGpuDevice,
    counts: Arc<Mutex<Counts>>,
    fault_at: Option<usize>,
}

impl GpuDevice for Counting {
    fn describe(&self) -> String {
        "counting host device".into()
    }
    fn load_kernels(&mut self, kernels: &[GpuKernel]) -> Vec<Result<KernelHandle, CodegenError>> {
        self.inner.load_kernels(kernels)
    }
    fn unload_kernel(&mut self, kernel: KernelHandle) {
        self.inner.unload_kernel(kernel)
    }
    fn alloc(&mut self, len: usize) -> Result<DeviceBuffer, DeviceError> {
        let mut c = self.counts.lock().expect("counts");
        c.largest_alloc = c.largest_alloc.max(len);
        self.inner.alloc(len)
    }
    fn free(&mut self, buffer: DeviceBuffer) {
        self.inner.free(buffer)
    }
    fn upload(&mut self, dst: DeviceSlice, data: &[f32]) -> Result<(), DeviceError> {
        self.inner.upload(dst, data)
    }
    fn download(&mut self, src: DeviceSlice, out: &mut [f32]) -> Result<(), DeviceError> {
        self.inner.download(src, out)
    }
    fn zero(&mut self, buffer: DeviceBuffer) -> Result<(), DeviceError> {
        self.counts.lock().expect("counts").zeros += 1;
        self.inner.zero(buffer)
    }
    fn launch(&mut self, kernel: KernelHandle, args: &[DeviceSlice]) -> Result<(), DeviceError> {
        let n = {
            let mut c = self.counts.lock().expect("counts");
            c.launches += 1;
            c.launches
        };
        if self.fault_at == Some(n) {
            return Err(DeviceError::Fault("CUDA_ERROR_ILLEGAL_ADDRESS (injected)".into()));
        }
        self.inner.launch(kernel, args)
    }
    fn new_event(&mut self) -> Result<DeviceEvent, DeviceError> {
        self.inner.new_event()
    }
    fn record(&mut self, event: DeviceEvent) -> Result<(), DeviceError> {
        self.inner.record(event)
    }
    fn elapsed_s(&mut self, start: DeviceEvent, end: DeviceEvent) -> Result<f64, DeviceError> {
        self.inner.elapsed_s(start, end)
    }
    fn synchronize(&mut self) -> Result<(), DeviceError> {
        self.inner.synchronize()
    }
}

fn counting(
    target: &Target,
    config: MeasureConfig,
    fault_at: Option<usize>,
) -> (GpuLocalRunner, Arc<Mutex<Counts>>) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let device =
        Counting { inner: HostGpuDevice::new().expect("host device"), counts: counts.clone(), fault_at };
    (GpuLocalRunner::with_device(target, Box::new(device), config).expect("runner"), counts)
}

fn default_program(task: &Task, target: &Target) -> Program {
    let space = space_for(task, target).expect("space");
    space.lower(&space.default_trace()).expect("lowers")
}

#[test]
fn sampled_gpu_points_are_checked_and_timed_through_the_device() {
    let target = gpu(50 << 20);
    let task = Task::matmul(17, 33, 20);
    let space = space_for(&task, &target).expect("space");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut traces: Vec<Trace> = (0..3).map(|_| space.sample(&mut rng)).collect();
    traces.push(space.default_trace());
    let mut runner = GpuLocalRunner::new(&target, GpuBackend::HostEmulation, quick()).expect("runner");
    let outcomes = runner.measure_batch(&task, &traces);
    assert_eq!(outcomes.len(), traces.len());
    for o in &outcomes {
        assert_eq!(o.status, TrialStatus::Ok, "{o:?}");
        assert!((3..=5).contains(&o.repeat_times_s.len()) && o.median_s().is_some_and(|t| t > 0.0), "{o:?}");
    }
}

#[test]
fn wrong_results_input_writes_and_stray_stores_are_caught_and_the_next_candidate_is_clean() {
    let target = gpu(50 << 20);
    let task = Task::matmul(4, 5, 3);
    let right = default_program(&task, &target);
    // The same buffer lengths, another meaning: B read transposed.
    let spec = BatchMatmulSpec {
        batch: 1,
        m: 4,
        n: 5,
        k: 3,
        trans_a: false,
        trans_b: true,
        a_broadcast: false,
        b_broadcast: false,
        b_constant: false,
    };
    let transposed = default_program(&Task::new(Op::BatchMatmul(spec), vec![]), &target);
    let mut writes_input = right.clone();
    let a = writes_input.kernel.params[0];
    writes_input.kernel.body.push(Stmt::store(a, Expr::int(0), Expr::float(42.0)));
    let mut stray = right.clone();
    crate::planted::plant(&mut stray, crate::planted::PlantedFault::OutOfBoundsWrite);

    let (mut runner, counts) = counting(&target, quick(), None);
    let programs =
        vec![Ok(transposed), Ok(writes_input), Ok(stray), Ok(right), Err("no lowering".to_string())];
    let mut outcomes = Vec::new();
    runner
        .measure_programs_streaming(&task, programs, &mut |event| {
            if let crate::worker::Streamed::Outcome(o) = event {
                outcomes.push(o);
            }
            Ok(())
        })
        .expect("streams");
    let statuses: Vec<TrialStatus> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [
            TrialStatus::WrongResult,
            TrialStatus::WrongResult,
            TrialStatus::RunError,
            TrialStatus::Ok,
            TrialStatus::BuildError
        ],
        "{outcomes:?}"
    );
    let text = |i: usize| outcomes[i].error.clone().unwrap_or_default();
    assert!(text(0).contains("differ"), "{}", text(0));
    assert!(text(1).contains("wrote to an input"), "{}", text(1));
    assert!(text(2).contains("guard zone"), "{}", text(2));
    assert!(outcomes[..3].iter().all(|o| o.repeat_times_s.is_empty()), "no time for a failed kernel");
    // Three failed after their one check launch; the right one ran 1 + warm-up + repeats.
    let c = counts.lock().expect("counts");
    assert_eq!(c.launches, 3 + 1 + 1 + outcomes[3].repeat_times_s.len(), "{c:?}");
    assert_eq!(c.zeros, 0, "warm operands: no L2 flush");
}

#[test]
fn cold_operands_flush_the_l2_before_every_timed_repeat() {
    let target = gpu(64 << 10);
    let task = Task::matmul(8, 8, 8);
    let config = MeasureConfig { cold_operands: true, warmup_runs: 2, ..quick() };
    let (mut runner, counts) = counting(&target, config, None);
    let outcomes = runner.measure_batch(&task, &[space_for(&task, &target).expect("space").default_trace()]);
    assert_eq!(outcomes[0].status, TrialStatus::Ok, "{outcomes:?}");
    let repeats = outcomes[0].repeat_times_s.len();
    let c = counts.lock().expect("counts");
    assert_eq!(c.zeros, repeats, "{c:?}");
    assert_eq!(c.launches, 1 + 2 + repeats, "{c:?}");
    assert_eq!(c.largest_alloc, 2 * (64 << 10) / 4, "scratch twice the L2, in f32s");
}

#[test]
fn a_device_fault_is_a_run_error_and_nothing_runs_after_it_on_that_device() {
    let target = gpu(50 << 20);
    let task = Task::matmul(8, 8, 8);
    let space = space_for(&task, &target).expect("space");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let traces: Vec<Trace> = (0..3).map(|_| space.sample(&mut rng)).collect();
    // quick(): 1 check + 1 warm-up + 3..5 repeats for the first; the second faults on its check.
    let first_launches = 1 + 1 + 3;
    let (mut runner, counts) = counting(&target, quick(), Some(first_launches + 1));
    let outcomes = runner.measure_batch(&task, &traces);
    let statuses: Vec<TrialStatus> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [TrialStatus::Ok, TrialStatus::RunError, TrialStatus::RunError], "{outcomes:?}");
    assert!(outcomes[1].error.as_deref().unwrap_or("").contains("ILLEGAL_ADDRESS"), "{outcomes:?}");
    assert!(outcomes[2].error.as_deref().unwrap_or("").contains("not run"), "{outcomes:?}");
    assert_eq!(
        counts.lock().expect("counts").launches,
        first_launches + 1,
        "nothing launched after the fault"
    );
}

/// The parent's side of a poisoned GPU: a worker that reports a poisoning fault on the first
/// candidate and exits. Each candidate gets the worker's own error (not "worker died", which
/// would blame the next candidate for the first one's fault) and a fresh worker.
#[test]
fn a_poisoned_worker_is_replaced_and_the_fault_is_not_blamed_on_the_next_candidate() {
    let poisoned = r#"{"reply":"outcome","outcome":{"status":"run_error","error":"CUDA_ERROR_ILLEGAL_ADDRESS","repeat_times_s":[],"build_time_s":0.1},"poisoned":true}"#;
    let config = WorkerConfig {
        program: "sh".into(),
        args: vec![
            "-c".into(),
            format!(r#"read line; echo '{{"reply":"built"}}'; echo '{poisoned}'; exit 0"#),
        ],
        measure: MeasureConfig { timeout_s: 2.0, max_total_time_s: 0.1, ..quick() },
        build_timeout_s: 5.0,
        gpu_backend: GpuBackend::HostEmulation,
    };
    let target = gpu(50 << 20);
    let mut runner = WorkerRunner::new(&target, config).expect("runner");
    let traces = vec![Trace::new("a", vec![]), Trace::new("b", vec![]), Trace::new("c", vec![])];
    let outcomes = runner.measure_batch(&Task::matmul(2, 2, 2), &traces);
    assert_eq!(outcomes.len(), 3);
    for o in &outcomes {
        assert_eq!(o.status, TrialStatus::RunError, "{outcomes:?}");
        assert_eq!(o.error.as_deref(), Some("CUDA_ERROR_ILLEGAL_ADDRESS"), "{outcomes:?}");
    }
    assert_eq!(runner.n_restarts(), 3);
}

/// cuda:0 and NVRTC, or why the test is skipped.
fn real_gpu() -> Option<Target> {
    match (autotune_codegen::cuda::cuda_target(0), autotune_codegen::cuda::nvrtc_available()) {
        (Ok(target), Ok(())) => Some(target),
        (Err(e), _) | (_, Err(e)) => {
            println!("skipped: no GPU to run on ({e})");
            None
        }
    }
}

/// On a real GPU (bench/gpu/run_on_device.sh): sampled points and the default are checked and
/// timed by the driver's events, warm and with the L2 flushed, and a wrong kernel is caught.
#[test]
fn on_a_real_gpu_sampled_points_are_checked_and_timed() {
    let Some(target) = real_gpu() else { return };
    let task = Task::matmul(256, 192, 130);
    let space = space_for(&task, &target).expect("space");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let mut traces: Vec<Trace> = (0..6).map(|_| space.sample(&mut rng)).collect();
    traces.push(space.default_trace());
    for cold_operands in [false, true] {
        let config = MeasureConfig { cold_operands, ..quick() };
        let mut runner = GpuLocalRunner::new(&target, GpuBackend::Cuda, config).expect("runner");
        for (trace, o) in traces.iter().zip(runner.measure_batch(&task, &traces)) {
            assert_eq!(o.status, TrialStatus::Ok, "{}: {o:?}", trace.display());
            assert!(o.median_s().is_some_and(|t| t > 0.0 && t < 0.1), "{o:?}");
        }
    }
    let spec = BatchMatmulSpec {
        batch: 1,
        m: 256,
        n: 192,
        k: 130,
        trans_a: false,
        trans_b: false,
        a_broadcast: false,
        b_broadcast: false,
        b_constant: false,
    };
    let wrong = default_program(
        &Task::new(Op::BatchMatmul(BatchMatmulSpec { trans_a: true, ..spec }), vec![]),
        &target,
    );
    let mut runner = GpuLocalRunner::new(&target, GpuBackend::Cuda, quick()).expect("runner");
    let mut outcomes = Vec::new();
    runner
        .measure_programs_streaming(&task, vec![Ok(wrong)], &mut |event| {
            if let crate::worker::Streamed::Outcome(o) = event {
                outcomes.push(o);
            }
            Ok(())
        })
        .expect("streams");
    assert_eq!(outcomes[0].status, TrialStatus::WrongResult, "{outcomes:?}");
}
