//! Worker-process isolation: candidates are built and run in a child process, so a segfault or a
//! hang becomes a recorded `run_error`/`timeout` and the child is restarted; the tuning run goes on.
//!
//! Protocol (JSON lines): the parent writes one [`Request`] per batch; the child answers one
//! `Reply::Built` when the batch is compiled, then one `Reply::Outcome` per candidate, in order.
//!
//! CUDA targets are served by [`GpuLocalRunner`] on the request's [`GpuBackend`] and device
//! ordinal (the target's ordinal is not serialized: it is not part of what the target is). An
//! outcome marked `poisoned` (a CUDA fault: the context is unusable) is the worker's last: it
//! exits, and the parent starts a fresh worker for the candidates after it.

use crate::gpu::{lower_batch, GpuBackend, GpuLocalRunner};
use crate::local::LocalRunner;
use crate::protocol::MeasureConfig;
use crate::{MeasureError, MeasureOutcome, Runner};
use autotune_ir::{Target, Task, Trace, TrialStatus};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

#[derive(Serialize, Deserialize, Debug)]
struct Request {
    task: Task,
    target: Target,
    config: MeasureConfig,
    traces: Vec<Trace>,
    #[serde(default)]
    gpu_backend: GpuBackend,
    #[serde(default)]
    device_ordinal: u32,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "reply", rename_all = "snake_case")]
enum Reply {
    Built,
    Outcome {
        outcome: MeasureOutcome,
        /// The device failed: this worker stops after this reply.
        #[serde(default)]
        poisoned: bool,
    },
    Fatal {
        error: String,
    },
}

/// The child side: serves requests from stdin until it closes. Called by the `autotune` binary's
/// hidden worker entry point.
///
/// With `plant_faults` (tests only, see [`crate::planted`]) a trace's planted-fault decision is
/// applied to its kernel; otherwise that decision is dropped before lowering.
pub fn serve_stdio(plant_faults: bool) -> Result<(), MeasureError> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut cpu: Option<LocalRunner> = None;
    let mut gpu: Option<GpuLocalRunner> = None;
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| MeasureError::Worker(format!("reading a request: {e}")))?;
        let mut request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                send(&mut stdout, &Reply::Fatal { error: format!("bad request: {e}") })?;
                continue;
            }
        };
        let programs = lower_batch(&request.task, &request.target, &request.traces, plant_faults);
        if let Target::Cuda(target) = &mut request.target {
            target.ordinal = request.device_ordinal;
            let stale = gpu.as_ref().is_none_or(|r| {
                r.target() != &request.target
                    || r.backend() != Some(request.gpu_backend)
                    || matches!(r.target(), Target::Cuda(t) if t.ordinal != request.device_ordinal)
            });
            let stale = stale || gpu.as_ref().is_some_and(|r| r.config() != &request.config);
            if stale {
                gpu = None; // the old device is released before the new one opens
                match GpuLocalRunner::new(&request.target, request.gpu_backend, request.config.clone()) {
                    Ok(r) => gpu = Some(r),
                    Err(e) => {
                        send(&mut stdout, &Reply::Fatal { error: e.to_string() })?;
                        continue;
                    }
                }
            }
            let Some(runner) = gpu.as_mut() else { continue };
            let mut poisoned = false;
            runner.measure_programs_streaming(&request.task, programs, &mut |event| {
                let reply = match event {
                    Streamed::Built => Reply::Built,
                    Streamed::Outcome(outcome) => Reply::Outcome { outcome, poisoned: false },
                    Streamed::Poisoned(outcome) => {
                        poisoned = true;
                        Reply::Outcome { outcome, poisoned: true }
                    }
                };
                send(&mut stdout, &reply)
            })?;
            if poisoned {
                return Ok(());
            }
            continue;
        }
        if cpu.as_ref().is_none_or(|r| r.target() != &request.target) {
            cpu = Some(LocalRunner::new(&request.target, request.config.clone())?);
        }
        let Some(runner) = cpu.as_mut() else { continue };
        // Building happens inside measure_nests before the first timing; report outcomes as
        // they come so the parent can time out exactly the candidate that hangs.
        runner.measure_nests_streaming(&request.task, programs, &mut |event| match event {
            Streamed::Built => send(&mut stdout, &Reply::Built),
            Streamed::Outcome(outcome) | Streamed::Poisoned(outcome) => {
                send(&mut stdout, &Reply::Outcome { outcome, poisoned: false })
            }
        })?;
    }
    Ok(())
}

pub(crate) enum Streamed {
    Built,
    Outcome(MeasureOutcome),
    /// This outcome's candidate left the GPU unusable: nothing more runs in this process.
    Poisoned(MeasureOutcome),
}

fn send(out: &mut impl Write, reply: &Reply) -> Result<(), MeasureError> {
    let text = serde_json::to_string(reply).map_err(|e| MeasureError::Worker(e.to_string()))?;
    writeln!(out, "{text}")
        .and_then(|_| out.flush())
        .map_err(|e| MeasureError::Worker(format!("writing a reply: {e}")))
}

/// How to start the worker process.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The program to run (normally the `autotune` binary itself) and its arguments.
    pub program: PathBuf,
    pub args: Vec<String>,
    pub measure: MeasureConfig,
    /// Limit for compiling one batch (LLVM at O3, in parallel).
    pub build_timeout_s: f64,
    /// What runs a CUDA target's candidates (ignored for a CPU target).
    pub gpu_backend: GpuBackend,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<String>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs candidates in a child process; see the module doc.
#[derive(Debug)]
pub struct WorkerRunner {
    target: Target,
    config: WorkerConfig,
    worker: Option<WorkerHandle>,
    n_restarts: usize,
}

/// `Worker` without a Debug impl of its own: the pid is what matters.
struct WorkerHandle(Worker);

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "worker pid {}", self.0.child.id())
    }
}

enum BatchEnd {
    Done,
    /// The candidate at this index hung or crashed; the ones after it still need measuring.
    Failed {
        index: usize,
        status: TrialStatus,
        error: String,
    },
    /// The worker died or hung while compiling the batch.
    BuildFailed(String),
    /// The last outcome received poisoned the worker's GPU: it has exited, the rest need a
    /// fresh one.
    Poisoned,
}

impl WorkerRunner {
    pub fn new(target: &Target, config: WorkerConfig) -> Result<WorkerRunner, MeasureError> {
        let mut runner = WorkerRunner { target: target.clone(), config, worker: None, n_restarts: 0 };
        runner.worker = Some(WorkerHandle(runner.spawn()?));
        Ok(runner)
    }

    /// How many times a crashed or hung worker was replaced.
    pub fn n_restarts(&self) -> usize {
        self.n_restarts
    }

    fn spawn(&self) -> Result<Worker, MeasureError> {
        let mut child = Command::new(&self.config.program)
            .args(&self.config.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| MeasureError::Worker(format!("starting {}: {e}", self.config.program.display())))?;
        let stdin = child.stdin.take().ok_or_else(|| MeasureError::Worker("no worker stdin".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| MeasureError::Worker("no worker stdout".into()))?;
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Worker { child, stdin, replies })
    }

    fn restart(&mut self) -> Result<(), MeasureError> {
        self.worker = None; // kills the old one
        self.n_restarts += 1;
        self.worker = Some(WorkerHandle(self.spawn()?));
        Ok(())
    }

    fn run_in_worker(&mut self, task: &Task, traces: &[Trace], out: &mut Vec<MeasureOutcome>) -> BatchEnd {
        let Some(WorkerHandle(worker)) = self.worker.as_mut() else {
            return BatchEnd::BuildFailed("no worker".into());
        };
        let request = Request {
            task: task.clone(),
            target: self.target.clone(),
            config: self.config.measure.clone(),
            traces: traces.to_vec(),
            gpu_backend: self.config.gpu_backend,
            device_ordinal: match &self.target {
                Target::Cuda(gpu) => gpu.ordinal,
                Target::Cpu(_) => 0,
            },
        };
        let sent = serde_json::to_string(&request).map_err(|e| e.to_string()).and_then(|text| {
            writeln!(worker.stdin, "{text}").and_then(|_| worker.stdin.flush()).map_err(|e| e.to_string())
        });
        if let Err(e) = sent {
            return BatchEnd::BuildFailed(format!("sending the batch to the worker: {e}"));
        }
        let build_timeout = Duration::from_secs_f64(self.config.build_timeout_s);
        // A candidate may use its timeout for the check run and again for the timed repeats.
        let run_timeout = Duration::from_secs_f64(
            self.config.measure.timeout_s * 2.0 + self.config.measure.max_total_time_s + 1.0,
        );
        let mut built = false;
        let start_len = out.len();
        while out.len() - start_len < traces.len() {
            let index = out.len() - start_len;
            let limit = if built { run_timeout } else { build_timeout };
            let reply = match worker.replies.recv_timeout(limit) {
                Ok(line) => serde_json::from_str::<Reply>(&line)
                    .unwrap_or(Reply::Fatal { error: format!("unreadable worker reply: {line}") }),
                Err(RecvTimeoutError::Timeout) if built => {
                    return BatchEnd::Failed {
                        index,
                        status: TrialStatus::Timeout,
                        error: format!("no result within {:.1} s", limit.as_secs_f64()),
                    };
                }
                Err(RecvTimeoutError::Timeout) => {
                    return BatchEnd::BuildFailed(format!(
                        "compiling the batch took over {:.0} s",
                        limit.as_secs_f64()
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = worker.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    let error = format!("worker process died ({status})");
                    return if built {
                        BatchEnd::Failed { index, status: TrialStatus::RunError, error }
                    } else {
                        BatchEnd::BuildFailed(error)
                    };
                }
            };
            match reply {
                Reply::Built => built = true,
                Reply::Outcome { outcome, poisoned } => {
                    out.push(outcome);
                    if poisoned {
                        return BatchEnd::Poisoned;
                    }
                }
                Reply::Fatal { error } => return BatchEnd::BuildFailed(error),
            }
        }
        BatchEnd::Done
    }
}

impl Runner for WorkerRunner {
    fn target(&self) -> &Target {
        &self.target
    }

    fn measure_batch(&mut self, task: &Task, traces: &[Trace]) -> Vec<MeasureOutcome> {
        let mut out = Vec::with_capacity(traces.len());
        // After a compile-phase failure, isolate candidates one per batch to find the culprit.
        let mut one_at_a_time = false;
        while out.len() < traces.len() {
            let rest = &traces[out.len()..];
            let chunk = if one_at_a_time { &rest[..1] } else { rest };
            let end = self.run_in_worker(task, chunk, &mut out);
            let failed = match end {
                BatchEnd::Done => None,
                BatchEnd::Poisoned => Some(()),
                BatchEnd::Failed { index, status, error } => {
                    debug_assert_eq!(out.len() - (traces.len() - rest.len()), index);
                    out.push(MeasureOutcome::failed(status, error, 0.0));
                    Some(())
                }
                BatchEnd::BuildFailed(error) if one_at_a_time => {
                    out.push(MeasureOutcome::failed(TrialStatus::BuildError, error, 0.0));
                    Some(())
                }
                BatchEnd::BuildFailed(_) => {
                    one_at_a_time = true;
                    Some(())
                }
            };
            if failed.is_some() {
                if let Err(e) = self.restart() {
                    let text = e.to_string();
                    while out.len() < traces.len() {
                        out.push(MeasureOutcome::failed(TrialStatus::RunError, text.clone(), 0.0));
                    }
                }
            }
        }
        out
    }
}
