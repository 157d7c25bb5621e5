//! The measurement protocol for one built kernel: check against the reference, warm up, repeat
//! until a minimum total time, keep every repeat.

use autotune_codegen::{CpuProgram, HostRuntime, OperandBuffer};
use autotune_ir::{compare, reference, Task, Tolerance, TrialStatus};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How candidates are timed. One documented struct; no environment variables.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MeasureConfig {
    /// Untimed runs after the correctness run (which also warms caches and pages).
    pub warmup_runs: u32,
    /// Timed repeats continue until both this many repeats and `min_total_time_s` are reached…
    pub min_repeats: u32,
    pub min_total_time_s: f64,
    /// …or until either cap is hit (a slow candidate stops early with fewer repeats).
    pub max_repeats: u32,
    pub max_total_time_s: f64,
    /// Per-candidate wall-clock limit for one run (enforced by the worker-process runner).
    pub timeout_s: f64,
    /// Seed of the random inputs the check and timing use.
    pub input_seed: u64,
    /// Before every timed repeat, evict from the caches what a layer of a model does not find
    /// there: its constants (weights, biases, their prepacked copies: last touched an inference
    /// ago), its residual input and its output buffer (last touched layers ago). Its main input,
    /// just written by the layer before, stays warm. Model tuning sets it; a single operator is
    /// timed warm, as its baselines are.
    #[serde(default)]
    pub cold_operands: bool,
}

impl Default for MeasureConfig {
    fn default() -> Self {
        MeasureConfig {
            warmup_runs: 1,
            min_repeats: 5,
            min_total_time_s: 0.2,
            max_repeats: 200,
            max_total_time_s: 1.5,
            timeout_s: 10.0,
            input_seed: 0,
            cold_operands: false,
        }
    }
}

/// Seeded inputs and the reference outputs of one task, computed once and shared by every
/// candidate of the task.
#[derive(Debug, Clone)]
pub struct ReferenceData {
    pub task: Task,
    pub inputs: Vec<Vec<f32>>,
    pub expected: Vec<Vec<f32>>,
    pub tolerance: Tolerance,
}

impl ReferenceData {
    pub fn new(task: &Task, seed: u64) -> ReferenceData {
        let inputs = reference::random_inputs(task, seed);
        let expected = reference::run(task, &inputs);
        ReferenceData {
            task: task.clone(),
            inputs,
            expected,
            tolerance: Tolerance::fp32_reduction(task.reduction_len()),
        }
    }
}

/// The inputs a layer of a model finds cold: constants and the residual.
fn cold_inputs(task: &Task) -> Vec<usize> {
    let mut cold = task.constant_inputs();
    cold.extend(task.inputs().iter().position(|spec| spec.name == "residual"));
    cold
}

/// Checks `kernel` against the reference, then times it. Never panics on a bad kernel result;
/// a mismatch is `WrongResult` with the first differing element in the error text.
pub fn check_and_time(
    program: &CpuProgram,
    runtime: &HostRuntime,
    data: &ReferenceData,
    config: &MeasureConfig,
    build_time_s: f64,
) -> crate::MeasureOutcome {
    use crate::MeasureOutcome;
    let kernel = &program.kernel;
    // Constant inputs are packed once, untimed: in a model this happens at load.
    let mut inputs = match program.prepare_inputs(runtime, &data.inputs) {
        Ok(inputs) => inputs,
        Err(e) => {
            return MeasureOutcome::failed(TrialStatus::RunError, format!("prepacking: {e}"), build_time_s)
        }
    };
    let inputs_before = inputs.clone();
    let mut outputs: Vec<GuardedOutput> = data.expected.iter().map(|e| GuardedOutput::new(e.len())).collect();
    let run = |inputs: &mut Vec<OperandBuffer>, outputs: &mut Vec<GuardedOutput>| {
        let mut buffers: Vec<&mut [f32]> = inputs
            .iter_mut()
            .map(|b| &mut b[..])
            .chain(outputs.iter_mut().map(GuardedOutput::data_mut))
            .collect();
        kernel.run(runtime, &mut buffers)
    };
    let out_of_bounds = |outputs: &[GuardedOutput]| {
        let i = outputs.iter().position(|o| !o.guards_intact())?;
        let name = data.task.outputs().get(i).map(|o| o.name).unwrap_or("output");
        Some(MeasureOutcome::failed(
            TrialStatus::RunError,
            format!("kernel wrote outside {name} (its guard zone was changed)"),
            build_time_s,
        ))
    };
    if let Err(e) = run(&mut inputs, &mut outputs) {
        return MeasureOutcome::failed(TrialStatus::RunError, e.to_string(), build_time_s);
    }
    if let Some(failed) = out_of_bounds(&outputs) {
        return failed;
    }
    for (i, (actual, expected)) in outputs.iter().zip(&data.expected).enumerate() {
        if let Err(mismatch) = compare(actual.data(), expected, data.tolerance) {
            let name = data.task.outputs().get(i).map(|o| o.name).unwrap_or("output");
            return MeasureOutcome::failed(
                TrialStatus::WrongResult,
                format!("{name}: {mismatch} (tolerance {})", data.tolerance.name),
                build_time_s,
            );
        }
    }
    if inputs != inputs_before {
        return MeasureOutcome::failed(
            TrialStatus::WrongResult,
            "kernel wrote to an input buffer",
            build_time_s,
        );
    }
    for _ in 0..config.warmup_runs {
        if let Err(e) = run(&mut inputs, &mut outputs) {
            return MeasureOutcome::failed(TrialStatus::RunError, e.to_string(), build_time_s);
        }
    }
    let cold_inputs = if config.cold_operands { cold_inputs(&data.task) } else { Vec::new() };
    let mut repeat_times_s = Vec::new();
    let mut total = 0.0;
    loop {
        if config.cold_operands {
            for &i in &cold_inputs {
                if let Some(buffer) = inputs.get(i) {
                    crate::cache::evict(buffer);
                }
            }
            for buffer in &outputs {
                crate::cache::evict(buffer.data());
            }
        }
        let start = Instant::now();
        if let Err(e) = run(&mut inputs, &mut outputs) {
            return MeasureOutcome::failed(TrialStatus::RunError, e.to_string(), build_time_s);
        }
        let t = start.elapsed().as_secs_f64().max(1e-9);
        repeat_times_s.push(t);
        total += t;
        let n = repeat_times_s.len() as u32;
        let enough = n >= config.min_repeats && total >= config.min_total_time_s;
        if enough || n >= config.max_repeats || total >= config.max_total_time_s {
            break;
        }
    }
    // A kernel that scribbles only on some runs (a race between threads) is caught here.
    if let Some(failed) = out_of_bounds(&outputs) {
        return failed;
    }
    MeasureOutcome { status: TrialStatus::Ok, error: None, repeat_times_s, build_time_s }
}

/// An output buffer with a guard zone on each side, filled with a bit pattern no kernel computes,
/// so a store just outside the output (which corrupts the heap silently instead of faulting) is
/// caught. The data itself starts NaN-filled: an element the kernel forgets to write cannot
/// match the reference by accident.
struct GuardedOutput {
    buffer: OperandBuffer,
    len: usize,
}

impl GuardedOutput {
    /// Elements per guard zone: 4 KiB, a multiple of the operand alignment.
    const GUARD: usize = 1024;
    const GUARD_BITS: u32 = 0x7fc0_dead;

    fn new(len: usize) -> GuardedOutput {
        let mut buffer = OperandBuffer::filled(len + 2 * Self::GUARD, f32::from_bits(Self::GUARD_BITS));
        buffer[Self::GUARD..Self::GUARD + len].fill(f32::NAN);
        GuardedOutput { buffer, len }
    }

    fn data(&self) -> &[f32] {
        &self.buffer[Self::GUARD..Self::GUARD + self.len]
    }

    fn data_mut(&mut self) -> &mut [f32] {
        &mut self.buffer[Self::GUARD..Self::GUARD + self.len]
    }

    fn guards_intact(&self) -> bool {
        let (before, rest) = self.buffer.split_at(Self::GUARD);
        let after = &rest[self.len..];
        before.iter().chain(after).all(|v| v.to_bits() == Self::GUARD_BITS)
    }
}
