//! GPU measurement: the protocol of [`crate::check_and_time`] on a [`GpuDevice`].
//!
//! Per task, the seeded inputs are uploaded once and the outputs get device buffers with guard
//! zones on each side (as on the CPU: a store just outside an output is a `run_error`). Per
//! candidate: outputs reset to NaN inside their guards, one launch, the output downloaded and
//! compared with `ir::reference` under the same tolerance as the CPU, the inputs downloaded to
//! catch a kernel that writes them; then warm-up launches and repeats, each timed by a pair of
//! events around the launch, until the CPU's stopping rule says enough. With
//! `MeasureConfig::cold_operands` (model tuning) a scratch buffer twice the target's L2 is
//! written before every timed repeat, so no operand is found in L2: a GPU cache cannot be
//! emptied selectively, and in a model the layer before has streamed its own data through it.
//!
//! A device error is the candidate's `run_error`. When the device may be poisoned (a CUDA fault:
//! every later call of that context fails), the outcome says so ([`GpuOutcome::poisoned`]) and
//! nothing more runs on this device; the worker process then exits and the parent starts a fresh
//! one for the rest of the batch. Timeouts are the parent's: a hung kernel blocks the worker in
//! its event wait until the parent kills it.

use crate::protocol::{MeasureConfig, ReferenceData};
use crate::worker::Streamed;
use crate::{MeasureError, MeasureOutcome, Runner};
use autotune_codegen::cuda::CudaDevice;
use autotune_codegen::{
    DeviceBuffer, DeviceError, DeviceEvent, DeviceSlice, GpuDevice, GpuKernel, HostGpuDevice, KernelHandle,
};
use autotune_ir::{compare, CudaTarget, Program, Target, Task, Trace, TrialStatus};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Which device runs a CUDA target's candidates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum GpuBackend {
    /// The target's own GPU (`cuda:N`), through the driver.
    #[default]
    Cuda,
    /// [`HostGpuDevice`]: the kernels' nests on the CPU, with the same protocol. For tests and
    /// for checking a CUDA target's kernels on a machine without one; its times are the host's.
    HostEmulation,
}

/// Opens the device that runs `target`'s kernels.
pub fn open_gpu_device(backend: GpuBackend, target: &CudaTarget) -> Result<Box<dyn GpuDevice>, MeasureError> {
    let setup = |e: autotune_codegen::CodegenError| MeasureError::Setup(e.to_string());
    Ok(match backend {
        GpuBackend::Cuda => Box::new(CudaDevice::new(target).map_err(setup)?),
        GpuBackend::HostEmulation => Box::new(HostGpuDevice::new().map_err(setup)?),
    })
}

/// One candidate's outcome, and whether its device can still be used.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuOutcome {
    pub outcome: MeasureOutcome,
    /// The device reported a fault: nothing more may run in this process.
    pub poisoned: bool,
}

/// Elements per guard zone: 4 KiB, as on the CPU.
const GUARD: usize = 1024;
const GUARD_BITS: u32 = 0x7fc0_dead;

/// A task's data on the device: inputs uploaded once, outputs with guard zones.
struct TaskData {
    reference: ReferenceData,
    inputs: Vec<DeviceBuffer>,
    outputs: Vec<DeviceBuffer>,
}

impl TaskData {
    fn output_slice(&self, i: usize) -> DeviceSlice {
        DeviceSlice { buffer: self.outputs[i], offset: GUARD, len: self.reference.expected[i].len() }
    }

    fn args(&self) -> Vec<DeviceSlice> {
        let inputs =
            self.inputs.iter().zip(&self.reference.inputs).map(|(&b, v)| DeviceSlice::head(b, v.len()));
        inputs.chain((0..self.outputs.len()).map(|i| self.output_slice(i))).collect()
    }
}

/// Measures GPU candidates in this process on one device; the worker process wraps it (see the
/// module docs). In-process, a candidate that poisons the device fails the ones after it.
pub struct GpuLocalRunner {
    target: Target,
    /// `None`: a device the caller opened ([`GpuLocalRunner::with_device`]).
    backend: Option<GpuBackend>,
    device: Box<dyn GpuDevice>,
    config: MeasureConfig,
    data: Option<TaskData>,
    /// Written before each timed repeat when operands are timed cold.
    l2_scratch: Option<DeviceBuffer>,
    events: (DeviceEvent, DeviceEvent),
    poisoned: Option<String>,
}

impl std::fmt::Debug for GpuLocalRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuLocalRunner({} on {})", self.target.name(), self.device.describe())
    }
}

fn setup_error(e: DeviceError) -> MeasureError {
    MeasureError::Setup(format!("GPU: {e}"))
}

impl GpuLocalRunner {
    pub fn new(
        target: &Target,
        backend: GpuBackend,
        config: MeasureConfig,
    ) -> Result<GpuLocalRunner, MeasureError> {
        let Target::Cuda(gpu) = target else {
            return Err(MeasureError::Setup(format!("{} is not a GPU", target.name())));
        };
        let mut runner = GpuLocalRunner::with_device(target, open_gpu_device(backend, gpu)?, config)?;
        runner.backend = Some(backend);
        Ok(runner)
    }

    /// Measures `target`'s candidates on `device` (which the caller opened for it).
    pub fn with_device(
        target: &Target,
        mut device: Box<dyn GpuDevice>,
        config: MeasureConfig,
    ) -> Result<GpuLocalRunner, MeasureError> {
        let Target::Cuda(gpu) = target else {
            return Err(MeasureError::Setup(format!("{} is not a GPU", target.name())));
        };
        let l2_scratch = if config.cold_operands {
            let len = (2 * gpu.l2_bytes as usize / 4).max(1);
            Some(device.alloc(len).map_err(setup_error)?)
        } else {
            None
        };
        let events = (device.new_event().map_err(setup_error)?, device.new_event().map_err(setup_error)?);
        Ok(GpuLocalRunner {
            target: target.clone(),
            backend: None,
            device,
            config,
            data: None,
            l2_scratch,
            events,
            poisoned: None,
        })
    }

    pub fn backend(&self) -> Option<GpuBackend> {
        self.backend
    }

    pub fn config(&self) -> &MeasureConfig {
        &self.config
    }

    /// Uploads `task`'s seeded inputs (once per task) and allocates its guarded outputs.
    fn prepare(&mut self, task: &Task) -> Result<(), DeviceError> {
        if self.data.as_ref().is_some_and(|d| d.reference.task == *task) {
            return Ok(());
        }
        if let Some(old) = self.data.take() {
            old.inputs.iter().chain(&old.outputs).for_each(|&b| self.device.free(b));
        }
        let reference = ReferenceData::new(task, self.config.input_seed);
        let mut inputs = Vec::with_capacity(reference.inputs.len());
        for values in &reference.inputs {
            let b = self.device.alloc(values.len())?;
            self.device.upload(DeviceSlice::head(b, values.len()), values)?;
            inputs.push(b);
        }
        let outputs = reference
            .expected
            .iter()
            .map(|e| self.device.alloc(e.len() + 2 * GUARD))
            .collect::<Result<_, _>>()?;
        self.data = Some(TaskData { reference, inputs, outputs });
        Ok(())
    }

    /// Lowered candidates in, one outcome each (in order) out through `on_outcome`: all are
    /// compiled first (NVRTC in parallel) and `on_built` is called, then each is checked and
    /// timed. Stops after an outcome that poisons the device (the rest are not run).
    pub(crate) fn measure_programs_streaming(
        &mut self,
        task: &Task,
        programs: Vec<Result<Program, String>>,
        on_event: &mut dyn FnMut(Streamed) -> Result<(), MeasureError>,
    ) -> Result<(), MeasureError> {
        let start = Instant::now();
        let kernels: Vec<Result<GpuKernel, String>> = programs
            .into_iter()
            .map(|p| {
                let p = p?;
                if !p.prepacks.is_empty() {
                    return Err("a GPU program with prepacks: the GPU measurement runs no prepack".into());
                }
                GpuKernel::new(p.kernel).map_err(|e| e.to_string())
            })
            .collect();
        let ok: Vec<GpuKernel> = kernels.iter().filter_map(|k| k.as_ref().ok().cloned()).collect();
        let mut loaded = self.device.load_kernels(&ok).into_iter();
        let build_s = start.elapsed().as_secs_f64() / kernels.len().max(1) as f64;
        let built: Vec<Result<KernelHandle, String>> = kernels
            .into_iter()
            .map(|k| {
                k.and_then(|_| {
                    loaded
                        .next()
                        .unwrap_or(Err(autotune_codegen::CodegenError::Unsupported("not loaded".into())))
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        // The reference (about a minute for a 4096³ GEMM in f64 on one core) is computed in the
        // build phase, under the build timeout, not in the first candidate's run timeout. A
        // device error here is each candidate's, when its check calls `prepare` again.
        let _ = self.prepare(task);
        on_event(Streamed::Built)?;
        for b in built {
            let outcome = match b {
                Err(text) => GpuOutcome {
                    outcome: MeasureOutcome::failed(TrialStatus::BuildError, text, build_s),
                    poisoned: false,
                },
                Ok(kernel) => {
                    let outcome = self.check_and_time(task, kernel, build_s);
                    self.device.unload_kernel(kernel);
                    outcome
                }
            };
            if outcome.poisoned {
                return on_event(Streamed::Poisoned(outcome.outcome));
            }
            on_event(Streamed::Outcome(outcome.outcome))?;
        }
        Ok(())
    }

    fn check_and_time(&mut self, task: &Task, kernel: KernelHandle, build_s: f64) -> GpuOutcome {
        if let Some(why) = &self.poisoned {
            let text = format!("not run: the GPU failed on an earlier candidate ({why})");
            return GpuOutcome {
                outcome: MeasureOutcome::failed(TrialStatus::RunError, text, build_s),
                poisoned: true,
            };
        }
        match self.try_check_and_time(task, kernel, build_s) {
            Ok(outcome) => GpuOutcome { outcome, poisoned: false },
            Err(e) => {
                let poisoned = e.poisons_device();
                if poisoned {
                    self.poisoned = Some(e.to_string());
                }
                GpuOutcome {
                    outcome: MeasureOutcome::failed(TrialStatus::RunError, e.to_string(), build_s),
                    poisoned,
                }
            }
        }
    }

    /// The protocol; a device error is returned (it is the caller's `run_error`), a bad result
    /// is an outcome.
    fn try_check_and_time(
        &mut self,
        task: &Task,
        kernel: KernelHandle,
        build_s: f64,
    ) -> Result<MeasureOutcome, DeviceError> {
        self.prepare(task)?;
        let Some(data) = self.data.as_ref() else {
            return Err(DeviceError::Usage("no task data".into()));
        };
        let device = &mut self.device;
        let failed = |status, text: String| Ok(MeasureOutcome::failed(status, text, build_s));
        // Outputs: guard pattern around NaN (an element the kernel forgets cannot match).
        for (i, expected) in data.reference.expected.iter().enumerate() {
            let mut fill = vec![f32::from_bits(GUARD_BITS); expected.len() + 2 * GUARD];
            fill[GUARD..GUARD + expected.len()].fill(f32::NAN);
            device.upload(DeviceSlice::head(data.outputs[i], fill.len()), &fill)?;
        }
        let args = data.args();
        device.launch(kernel, &args)?;
        device.synchronize()?;
        let outputs = download_guarded(device.as_mut(), data)?;
        let name = |i: usize| task.outputs().get(i).map(|o| o.name).unwrap_or("output");
        if let Some(i) = outputs.iter().position(|o| !guards_intact(o)) {
            return failed(
                TrialStatus::RunError,
                format!("kernel wrote outside {} (its guard zone was changed)", name(i)),
            );
        }
        for (i, (actual, expected)) in outputs.iter().zip(&data.reference.expected).enumerate() {
            if let Err(mismatch) =
                compare(&actual[GUARD..GUARD + expected.len()], expected, data.reference.tolerance)
            {
                return failed(
                    TrialStatus::WrongResult,
                    format!("{}: {mismatch} (tolerance {})", name(i), data.reference.tolerance.name),
                );
            }
        }
        for (&b, values) in data.inputs.iter().zip(&data.reference.inputs) {
            let mut now = vec![0.0; values.len()];
            device.download(DeviceSlice::head(b, values.len()), &mut now)?;
            if now != *values {
                // The next candidate needs the task's inputs as they were.
                device.upload(DeviceSlice::head(b, values.len()), values)?;
                return failed(TrialStatus::WrongResult, "kernel wrote to an input buffer".into());
            }
        }
        for _ in 0..self.config.warmup_runs {
            device.launch(kernel, &args)?;
        }
        let (start, end) = self.events;
        let mut repeat_times_s = Vec::new();
        let mut total = 0.0;
        loop {
            if let Some(scratch) = self.l2_scratch {
                device.zero(scratch)?;
            }
            device.record(start)?;
            device.launch(kernel, &args)?;
            device.record(end)?;
            let t = device.elapsed_s(start, end)?.max(1e-9);
            repeat_times_s.push(t);
            total += t;
            let n = repeat_times_s.len() as u32;
            let enough = n >= self.config.min_repeats && total >= self.config.min_total_time_s;
            if enough || n >= self.config.max_repeats || total >= self.config.max_total_time_s {
                break;
            }
        }
        // A kernel whose stray stores depend on timing (a race) is caught here.
        let outputs = download_guarded(device.as_mut(), data)?;
        if let Some(i) = outputs.iter().position(|o| !guards_intact(o)) {
            return failed(
                TrialStatus::RunError,
                format!("kernel wrote outside {} (its guard zone was changed)", name(i)),
            );
        }
        Ok(MeasureOutcome { status: TrialStatus::Ok, error: None, repeat_times_s, build_time_s: build_s })
    }
}

fn download_guarded(device: &mut dyn GpuDevice, data: &TaskData) -> Result<Vec<Vec<f32>>, DeviceError> {
    data.outputs
        .iter()
        .zip(&data.reference.expected)
        .map(|(&b, e)| {
            let mut out = vec![0.0; e.len() + 2 * GUARD];
            device.download(DeviceSlice::head(b, out.len()), &mut out)?;
            Ok(out)
        })
        .collect()
}

fn guards_intact(buffer: &[f32]) -> bool {
    let n = buffer.len();
    buffer[..GUARD].iter().chain(&buffer[n - GUARD..]).all(|v| v.to_bits() == GUARD_BITS)
}

impl Runner for GpuLocalRunner {
    fn target(&self) -> &Target {
        &self.target
    }

    fn measure_batch(&mut self, task: &Task, traces: &[Trace]) -> Vec<MeasureOutcome> {
        let programs = lower_batch(task, &self.target, traces, false);
        let mut outcomes = Vec::with_capacity(traces.len());
        let _ = self.measure_programs_streaming(task, programs, &mut |event| {
            match event {
                Streamed::Built => {}
                Streamed::Outcome(o) | Streamed::Poisoned(o) => outcomes.push(o),
            }
            Ok(())
        });
        // After a poisoning fault the rest were not run; in-process there is no fresh device.
        while outcomes.len() < traces.len() {
            let why = self.poisoned.clone().unwrap_or_default();
            outcomes.push(MeasureOutcome::failed(
                TrialStatus::RunError,
                format!("not run: the GPU failed on an earlier candidate ({why})"),
                0.0,
            ));
        }
        outcomes
    }
}

/// Lowers a batch through `task`'s space for `target`; with `plant_faults` (a test worker) a
/// trace's planted fault is planted into its kernel, otherwise dropped.
pub(crate) fn lower_batch(
    task: &Task,
    target: &Target,
    traces: &[Trace],
    plant_faults: bool,
) -> Vec<Result<Program, String>> {
    match autotune_schedules::space_for(task, target) {
        Ok(space) => traces
            .iter()
            .map(|t| {
                let (trace, fault) = crate::planted::take_planted_fault(t);
                let mut program = space.lower(&trace).map_err(|e| e.to_string())?;
                if let Some(fault) = fault.filter(|_| plant_faults) {
                    crate::planted::plant(&mut program, fault);
                }
                Ok(program)
            })
            .collect(),
        Err(e) => traces.iter().map(|_| Err(e.to_string())).collect(),
    }
}
