//! Which kernel each task runs, and compiling them: the fastest `ok` trial of the tuning log that
//! still replays (same target, schedule space version and codegen version), else the space's
//! default schedule. Distinct tasks compile in parallel (rayon), each once.

use crate::RuntimeError;
use autotune_codegen::{
    codegen_version, CodegenError, CpuBuilder, CpuProgram, GpuDevice, GpuKernel, KernelHandle,
};
use autotune_db::{Database, TrialId};
use autotune_ir::{Program, Target, Task, Trace};
use autotune_schedules::{space_for, ScheduleError, SpaceGenerator};
use rayon::prelude::*;
use std::fmt;
use std::time::Instant;

/// Where the kernel of a task comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelSource {
    /// The fastest replayable `ok` trial of the tuning log.
    Tuned {
        trial: TrialId,
        /// Its median time when it was measured.
        median_s: f64,
        trace: Trace,
        /// When the log held no trial of the task for this exact target: the compatible target
        /// it was tuned for (its features a subset of this one's, same threads), for people.
        borrowed_from: Option<String>,
        /// When the log held no trial of this task's shape (a dynamic dimension at a size nobody
        /// tuned): the nearest tuned shape of the same kind ([`Task::shape_distance`]) whose
        /// schedule this task's space replays, described.
        nearest_shape: Option<String>,
        /// When the log held no trial of this task but of the same conv without its zero
        /// borders ([`Task::without_halo`], a log tuned before borders): that one's schedule.
        from_borderless: bool,
    },
    /// The schedule space's default schedule.
    Default(DefaultReason),
}

/// Why a task runs its default schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultReason {
    /// No tuning log was given.
    NoLog,
    /// The log holds no `ok` trial of this task for this target (CPU, features, threads).
    NotTuned,
    /// The log's `ok` trials were made by another schedule space or code generator version, so
    /// their traces no longer mean the same kernel.
    Stale { space_version: String, codegen_version: String },
    /// The log's `ok` trials of this task are for a CPU target whose code this one cannot run
    /// (tuned with AVX-512, run at `--cpu-features avx2`, or on a CPU without it): never run.
    CannotRun { tuned_for: String, missing: Vec<String> },
    /// The tuned schedule failed to compile here.
    BuildFailed(String),
}

impl fmt::Display for DefaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultReason::NoLog => f.write_str("no tuning log"),
            DefaultReason::NotTuned => f.write_str("not tuned for this target"),
            DefaultReason::Stale { space_version, codegen_version } => {
                write!(f, "tuned by an older autotune ({space_version}, {codegen_version}); tune again")
            }
            DefaultReason::CannotRun { tuned_for, missing } => {
                const SHOWN: usize = 4;
                let mut needs = missing.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(",");
                if missing.len() > SHOWN {
                    needs.push_str(&format!(" and {} more", missing.len() - SHOWN));
                }
                write!(f, "tuned for {tuned_for}, whose kernels need {needs} that this target lacks")
            }
            DefaultReason::BuildFailed(e) => write!(f, "the tuned kernel does not compile: {e}"),
        }
    }
}

/// One distinct task of the model and the kernel it runs.
#[derive(Debug, Clone)]
pub struct TaskKernel {
    pub task: Task,
    /// How many nodes of the model run it.
    pub n_nodes: usize,
    pub source: KernelSource,
    /// The schedule space version of its schedule.
    pub space_version: &'static str,
    /// Seconds spent lowering and compiling it.
    pub build_time_s: f64,
    /// It runs on the plan's GPU; `false` on a CPU plan, and for a task of a GPU plan that has
    /// no GPU schedule space (it runs on the host, between copies).
    pub on_gpu: bool,
}

impl TaskKernel {
    pub fn is_tuned(&self) -> bool {
        matches!(self.source, KernelSource::Tuned { .. })
    }

    /// The key of the log's task whose trial it runs: its own, or its borderless twin's.
    pub fn log_key(&self) -> String {
        match self.source {
            KernelSource::Tuned { from_borderless: true, .. } => self.task.without_halo().key().0,
            _ => self.task.key().0,
        }
    }
}

/// The key under which a log whose task keys are `logged` holds `task`'s trials: its own when
/// logged; else, for a task with zero borders, its borderless twin's when that one is (a log
/// tuned before borders, whose schedules a plan replays on it); else its own.
pub fn logged_key(task: &Task, logged: &std::collections::HashSet<String>) -> String {
    let own = task.key().0;
    if task.halo.is_none() || logged.contains(&own) {
        return own;
    }
    let twin = task.without_halo().key().0;
    if logged.contains(&twin) {
        twin
    } else {
        own
    }
}

/// How many of a task's fastest trials are considered before giving up on the log.
const TRIALS_CONSIDERED: usize = 64;

/// What `choose` decided for a task: its schedule, where it comes from, and, for a kernel
/// borrowed from a narrower target, the target to compile it for (this CPU narrowed to that
/// target's ISA level, so the schedule means the same kernel it meant there).
struct Choice {
    trace: Trace,
    source: KernelSource,
    /// The lending target's key, this CPU narrowed to its level, and the space there.
    build_for: Option<(String, Target, Box<dyn SpaceGenerator>)>,
}

/// The schedule of `task`: the log's best replayable trial for this exact target; else for the
/// closest compatible target in the log ([`compatible_targets`]); else the default.
fn choose(
    task: &Task,
    space: &dyn SpaceGenerator,
    target: &Target,
    log: Option<&Database>,
    compatible: &[(String, String, Target)],
    shapes: &[(String, Task, String)],
) -> Result<Choice, RuntimeError> {
    let default = |reason| Choice {
        trace: space.default_trace(),
        source: KernelSource::Default(reason),
        build_for: None,
    };
    let Some(db) = log else { return Ok(default(DefaultReason::NoLog)) };
    let trials = db.best(&task.key().0, &target.key(), TRIALS_CONSIDERED)?;
    if let Some((trace, trial, median_s)) = first_replayable(&trials, space, codegen_version(target)) {
        let source = KernelSource::Tuned {
            trial,
            median_s,
            trace: trace.clone(),
            borrowed_from: None,
            nearest_shape: None,
            from_borderless: false,
        };
        return Ok(Choice { trace, source, build_for: None });
    }
    if let Some(t) = trials.first() {
        return Ok(default(DefaultReason::Stale {
            space_version: t.space_version.clone(),
            codegen_version: t.codegen_version.clone(),
        }));
    }
    for (key, name, narrowed) in compatible {
        let theirs = db.best(&task.key().0, key, TRIALS_CONSIDERED)?;
        if theirs.is_empty() {
            continue;
        }
        let Ok(narrowed_space) = space_for(task, narrowed) else { continue };
        if let Some((trace, trial, median_s)) =
            first_replayable(&theirs, narrowed_space.as_ref(), codegen_version(narrowed))
        {
            let source = KernelSource::Tuned {
                trial,
                median_s,
                trace: trace.clone(),
                borrowed_from: Some(name.clone()),
                nearest_shape: None,
                from_borderless: false,
            };
            return Ok(Choice {
                trace,
                source,
                build_for: Some((key.clone(), narrowed.clone(), narrowed_space)),
            });
        }
    }
    if let Some(reason) = tuned_for_a_wider_cpu(db, task, target)? {
        return Ok(default(reason));
    }
    if let Some((trace, trial, median_s, shape)) = nearest_tuned_shape(db, task, space, target, shapes)? {
        let source = KernelSource::Tuned {
            trial,
            median_s,
            trace: trace.clone(),
            borrowed_from: None,
            nearest_shape: Some(shape),
            from_borderless: false,
        };
        return Ok(Choice { trace, source, build_for: None });
    }
    Ok(default(DefaultReason::NotTuned))
}

/// The schedule of `task`: [`choose`]'s, and for a task with zero borders that the log never
/// tuned, the choice for the same conv without them, whose schedules its space replays (the
/// same knobs over the same shape; only where the kernel reads and writes differs) — so a log
/// tuned before borders existed keeps its winners.
fn choose_with_borders(
    task: &Task,
    space: &dyn SpaceGenerator,
    target: &Target,
    log: Option<&Database>,
    compatible: &[(String, String, Target)],
    shapes: &[(String, Task, String)],
) -> Result<Choice, RuntimeError> {
    let choice = choose(task, space, target, log, compatible, shapes)?;
    if task.halo.is_none() || choice.source != KernelSource::Default(DefaultReason::NotTuned) {
        return Ok(choice);
    }
    let twin = choose(&task.without_halo(), space, target, log, compatible, shapes)?;
    match twin.source {
        KernelSource::Tuned { trial, median_s, trace, borrowed_from, nearest_shape, .. }
            if twin.build_for.is_none() && space.lower(&trace).is_ok() =>
        {
            let source = KernelSource::Tuned {
                trial,
                median_s,
                trace: trace.clone(),
                borrowed_from,
                nearest_shape,
                from_borderless: true,
            };
            Ok(Choice { trace, source, build_for: None })
        }
        _ => Ok(choice),
    }
}

/// Whether `db` was tuned with channel-blocked activations: `Some(true)` when it holds trials of
/// a channel-blocked task for `target` (or, when it holds none for `target`, for any target: a
/// log tuned at a narrower ISA level lends its winners), `Some(false)` when those trials are of
/// NCHW tasks only, `None` when it holds none. The one rule for which layout a model runs and
/// resumes tuning in when the user does not say: a log keeps the layout it was tuned in.
pub fn log_uses_channel_blocks(db: &Database, target: &Target) -> Result<Option<bool>, RuntimeError> {
    let tasks = logged_tasks(db)?;
    let targets: Vec<String> = db.targets()?.into_iter().map(|(_, spec)| spec.target_key).collect();
    let this = [target.key()];
    for keys in [&this[..], &targets[..]] {
        let mut tuned = false;
        for (key, task, _) in &tasks {
            for target_key in keys {
                if db.best(key, target_key, 1)?.is_empty() {
                    continue;
                }
                if !task.layout.is_plain() {
                    return Ok(Some(true));
                }
                tuned = true;
            }
        }
        if tuned {
            return Ok(Some(false));
        }
    }
    Ok(None)
}

/// The log's tasks (key, task, description), parsed once per plan: the candidates for
/// [`nearest_tuned_shape`].
fn logged_tasks(db: &Database) -> Result<Vec<(String, Task, String)>, RuntimeError> {
    Ok(db
        .workloads()?
        .into_iter()
        .filter_map(|(_, w)| {
            Some((w.task_key, serde_json::from_str::<Task>(&w.task_json).ok()?, w.description))
        })
        .collect())
}

/// For a task whose shape the log never tuned on this target: the schedule of the nearest
/// tuned shape of the same kind that this task's space replays (its fastest replayable trial),
/// nearest first, with that shape's description.
fn nearest_tuned_shape(
    db: &Database,
    task: &Task,
    space: &dyn SpaceGenerator,
    target: &Target,
    shapes: &[(String, Task, String)],
) -> Result<Option<(Trace, TrialId, f64, String)>, RuntimeError> {
    let mut near: Vec<(f64, &String, &String)> = shapes
        .iter()
        .filter_map(|(key, other, description)| Some((task.shape_distance(other)?, key, description)))
        .filter(|(distance, _, _)| *distance > 0.0)
        .collect();
    near.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    for (_, key, description) in near {
        let trials = db.best(key, &target.key(), TRIALS_CONSIDERED)?;
        if let Some((trace, trial, median_s)) = first_replayable(&trials, space, codegen_version(target)) {
            return Ok(Some((trace, trial, median_s, description.clone())));
        }
    }
    Ok(None)
}

/// The fastest of `trials` (best first) that this build's `space` still replays.
fn first_replayable(
    trials: &[autotune_db::TrialRecord],
    space: &dyn SpaceGenerator,
    codegen: &str,
) -> Option<(Trace, TrialId, f64)> {
    trials.iter().find_map(|t| {
        if !t.is_comparable(space.version(), codegen) {
            return None;
        }
        let (Ok(trace), Some(median_s)) = (Trace::from_json(&t.trace_json), t.median_s) else { return None };
        space.lower(&trace).is_ok().then_some((trace, t.id, median_s))
    })
}

/// The log's other CPU targets whose kernels this one can run — same thread count, every feature
/// they use present here — closest first: the same ISA level as this target, then wider levels
/// before narrower, then the most features in common. Each comes with this target narrowed to
/// its level, which is what its kernels are compiled for here.
fn compatible_targets(db: &Database, target: &Target) -> Result<Vec<(String, String, Target)>, RuntimeError> {
    // Borrowing between targets is a CPU notion (ISA levels); a GPU target borrows nothing.
    let Some(ours) = target.as_cpu() else { return Ok(Vec::new()) };
    let our_level = ours.restricted_to.unwrap_or_else(|| ours.isa_level());
    let mut found = Vec::new();
    for (_, spec) in db.targets()? {
        let Ok(Target::Cpu(theirs)) = serde_json::from_str::<Target>(&spec.target_json) else { continue };
        if spec.target_key == target.key() || theirs.threads != ours.threads || !theirs.runs_on(ours) {
            continue;
        }
        let level = theirs.restricted_to.unwrap_or_else(|| theirs.isa_level());
        let Ok(narrowed) = ours.restricted(level.min(our_level)) else { continue };
        let shared = theirs.features.iter().filter(|f| ours.features.contains(f)).count();
        let rank = (level != our_level, std::cmp::Reverse(level), std::cmp::Reverse(shared));
        let name = format!("{} ({level}, {} thread(s))", theirs.model_name, theirs.threads);
        found.push((rank, spec.target_key, name, Target::Cpu(narrowed)));
    }
    found.sort_by_key(|a| a.0);
    Ok(found.into_iter().map(|(_, key, name, narrowed)| (key, name, narrowed)).collect())
}

/// When the log holds `ok` trials of `task` only for CPU targets (with the same thread count)
/// whose features `target` lacks: which, and what it lacks.
fn tuned_for_a_wider_cpu(
    db: &Database,
    task: &Task,
    target: &Target,
) -> Result<Option<DefaultReason>, RuntimeError> {
    let Some(ours) = target.as_cpu() else { return Ok(None) };
    for (_, spec) in db.targets()? {
        let Ok(Target::Cpu(theirs)) = serde_json::from_str::<Target>(&spec.target_json) else { continue };
        if spec.target_key == target.key() || theirs.threads != ours.threads {
            continue;
        }
        let missing = theirs.missing_on(ours);
        if missing.is_empty() || db.best(&task.key().0, &spec.target_key, 1)?.is_empty() {
            continue;
        }
        let level = theirs.restricted_to.unwrap_or_else(|| theirs.isa_level());
        return Ok(Some(DefaultReason::CannotRun {
            tuned_for: format!("{} ({level})", theirs.model_name),
            missing,
        }));
    }
    Ok(None)
}

/// Why a schedule did not become a kernel.
enum Failure {
    Schedule(ScheduleError),
    Codegen(CodegenError),
}

impl Failure {
    fn into_error(self, task: &Task) -> RuntimeError {
        match self {
            Failure::Schedule(source) => RuntimeError::Schedule { task: task.description(), source },
            Failure::Codegen(source) => RuntimeError::Build { task: task.description(), source },
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Schedule(e) => e.fmt(f),
            Failure::Codegen(e) => e.fmt(f),
        }
    }
}

fn lower_and_build(
    builder: &CpuBuilder,
    space: &dyn SpaceGenerator,
    trace: &Trace,
) -> Result<CpuProgram, Failure> {
    let program = space.lower(trace).map_err(Failure::Schedule)?;
    builder.build_program(&program).map_err(Failure::Codegen)
}

/// A task, its node count, its schedule, its space on this target, the kernel's source, and for
/// a borrowed kernel the index of the narrowed target's builder and its space there.
type Chosen<'a> =
    (&'a Task, usize, Trace, Box<dyn SpaceGenerator>, KernelSource, Option<(usize, Box<dyn SpaceGenerator>)>);

/// Chooses and compiles the kernel of every task (`(task, n_nodes)`, distinct), in order.
pub(crate) fn build(
    tasks: &[(Task, usize)],
    log: Option<&Database>,
    target: &Target,
    parallel: bool,
) -> Result<Vec<(TaskKernel, CpuProgram)>, RuntimeError> {
    let builder = CpuBuilder::new(target)
        .map_err(|source| RuntimeError::Build { task: "every task".into(), source })?;
    // The log is read on this thread (a SQLite connection is not shared across threads).
    let (compatible, shapes) = match log {
        Some(db) => (compatible_targets(db, target)?, logged_tasks(db)?),
        None => (Vec::new(), Vec::new()),
    };
    // One builder per lending target, made when a task first borrows from it.
    let mut narrowed_builders: Vec<(String, CpuBuilder)> = Vec::new();
    let mut chosen: Vec<Chosen> = Vec::with_capacity(tasks.len());
    for (task, n_nodes) in tasks {
        let space = space_for(task, target)
            .map_err(|source| RuntimeError::Schedule { task: task.description(), source })?;
        let choice = choose_with_borders(task, space.as_ref(), target, log, &compatible, &shapes)?;
        let borrowed = match choice.build_for {
            Some((key, narrowed, narrowed_space)) => {
                let index = match narrowed_builders.iter().position(|(k, _)| *k == key) {
                    Some(index) => Ok(index),
                    None => CpuBuilder::new(&narrowed).map(|b| {
                        narrowed_builders.push((key, b));
                        narrowed_builders.len() - 1
                    }),
                };
                match index {
                    Ok(index) => Some((index, narrowed_space)),
                    Err(e) => {
                        let source = KernelSource::Default(DefaultReason::BuildFailed(e.to_string()));
                        chosen.push((task, *n_nodes, space.default_trace(), space, source, None));
                        continue;
                    }
                }
            }
            None => None,
        };
        chosen.push((task, *n_nodes, choice.trace, space, choice.source, borrowed));
    }
    let compile = |(task, n_nodes, trace, space, source, borrowed): Chosen| -> Result<(TaskKernel, CpuProgram), RuntimeError> {
            let start = Instant::now();
            let (tuned_builder, tuned_space) = match &borrowed {
                Some((index, s)) => (&narrowed_builders[*index].1, s.as_ref()),
                None => (&builder, space.as_ref()),
            };
            let (program, source) = match lower_and_build(tuned_builder, tuned_space, &trace) {
                Ok(p) => (p, source),
                Err(e) if matches!(source, KernelSource::Tuned { .. }) => {
                    // A tuned kernel that no longer compiles is not fatal: run the default one.
                    let p = lower_and_build(&builder, space.as_ref(), &space.default_trace())
                        .map_err(|f| f.into_error(task))?;
                    (p, KernelSource::Default(DefaultReason::BuildFailed(e.to_string())))
                }
                Err(e) => return Err(e.into_error(task)),
            };
            let space_version = match source {
                KernelSource::Tuned { .. } => tuned_space.version(),
                KernelSource::Default(_) => space.version(),
            };
            let kernel = TaskKernel {
                task: task.clone(),
                n_nodes,
                source,
                space_version,
                build_time_s: start.elapsed().as_secs_f64(),
                on_gpu: false,
            };
            Ok((kernel, program))
        };
    if parallel {
        chosen.into_par_iter().map(compile).collect()
    } else {
        chosen.into_iter().map(compile).collect()
    }
}

/// The code a task of a plan runs.
pub(crate) enum TaskCode {
    Cpu(CpuProgram),
    /// Loaded on the plan's GPU device.
    Gpu(KernelHandle),
}

impl TaskCode {
    /// The length of kernel input `k` packed, when the kernel reads it packed (GPU programs
    /// read every input as it is).
    pub(crate) fn packed_len(&self, k: usize) -> Option<usize> {
        match self {
            TaskCode::Cpu(p) => p.packed_len(k),
            TaskCode::Gpu(_) => None,
        }
    }
}

impl fmt::Debug for TaskCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskCode::Cpu(_) => f.write_str("Cpu"),
            TaskCode::Gpu(h) => write!(f, "Gpu({h:?})"),
        }
    }
}

/// A GPU kernel of a lowered program; GPU programs pack nothing (no space makes prepacks yet,
/// and the runtime would have to run them on the device).
fn gpu_kernel(program: Program) -> Result<GpuKernel, Failure> {
    if !program.prepacks.is_empty() {
        return Err(Failure::Codegen(CodegenError::Unsupported(
            "a GPU program with prepacks (the GPU runtime runs none)".into(),
        )));
    }
    GpuKernel::new(program.kernel).map_err(Failure::Codegen)
}

/// Chooses and loads the kernel of every task on `device` (the log's best replayable trial for
/// `gpu`, else the default schedule; a tuned kernel that fails to build or load falls back to
/// the default). A task with no GPU schedule space runs on the host instead: compiled for `host`
/// by [`build`].
pub(crate) fn build_gpu(
    tasks: &[(Task, usize)],
    log: Option<&Database>,
    gpu: &Target,
    host: &Target,
    device: &mut dyn GpuDevice,
    parallel: bool,
) -> Result<Vec<(TaskKernel, TaskCode)>, RuntimeError> {
    let shapes = match log {
        Some(db) => logged_tasks(db)?,
        None => Vec::new(),
    };
    struct Pending<'a> {
        index: usize,
        task: &'a Task,
        n_nodes: usize,
        space: Box<dyn SpaceGenerator>,
        source: KernelSource,
        kernel: GpuKernel,
    }
    let start = Instant::now();
    let mut pending = Vec::new();
    let mut on_host = Vec::new();
    for (index, (task, n_nodes)) in tasks.iter().enumerate() {
        let Ok(space) = space_for(task, gpu) else {
            on_host.push(index);
            continue;
        };
        let choice = choose(task, space.as_ref(), gpu, log, &[], &shapes)?;
        let (kernel, source) =
            match space.lower(&choice.trace).map_err(Failure::Schedule).and_then(gpu_kernel) {
                Ok(k) => (k, choice.source),
                Err(e) if matches!(choice.source, KernelSource::Tuned { .. }) => {
                    let k = space
                        .lower(&space.default_trace())
                        .map_err(Failure::Schedule)
                        .and_then(gpu_kernel)
                        .map_err(|f| f.into_error(task))?;
                    (k, KernelSource::Default(DefaultReason::BuildFailed(e.to_string())))
                }
                Err(e) => return Err(e.into_error(task)),
            };
        pending.push(Pending { index, task, n_nodes: *n_nodes, space, source, kernel });
    }
    let kernels: Vec<GpuKernel> = pending.iter().map(|p| p.kernel.clone()).collect();
    let loaded = device.load_kernels(&kernels);
    let each_s = start.elapsed().as_secs_f64() / pending.len().max(1) as f64;
    let mut out: Vec<Option<(TaskKernel, TaskCode)>> = (0..tasks.len()).map(|_| None).collect();
    for (p, handle) in pending.into_iter().zip(loaded) {
        let (handle, source) = match handle {
            Ok(h) => (h, p.source),
            Err(e) if matches!(p.source, KernelSource::Tuned { .. }) => {
                let default = p
                    .space
                    .lower(&p.space.default_trace())
                    .map_err(Failure::Schedule)
                    .and_then(gpu_kernel)
                    .map_err(|f| f.into_error(p.task))?;
                let h = device
                    .load_kernels(&[default])
                    .remove(0)
                    .map_err(|source| RuntimeError::Build { task: p.task.description(), source })?;
                (h, KernelSource::Default(DefaultReason::BuildFailed(e.to_string())))
            }
            Err(source) => return Err(RuntimeError::Build { task: p.task.description(), source }),
        };
        let kernel = TaskKernel {
            task: p.task.clone(),
            n_nodes: p.n_nodes,
            source,
            space_version: p.space.version(),
            build_time_s: each_s,
            on_gpu: true,
        };
        out[p.index] = Some((kernel, TaskCode::Gpu(handle)));
    }
    let host_tasks: Vec<(Task, usize)> = on_host.iter().map(|&i| tasks[i].clone()).collect();
    for (&i, (kernel, program)) in on_host.iter().zip(build(&host_tasks, log, host, parallel)?) {
        out[i] = Some((kernel, TaskCode::Cpu(program)));
    }
    out.into_iter()
        .zip(tasks)
        .map(|(built, (task, _))| {
            built.ok_or_else(|| RuntimeError::InvalidGraph {
                node: task.description(),
                reason: "no kernel was built for the task".into(),
            })
        })
        .collect()
}
