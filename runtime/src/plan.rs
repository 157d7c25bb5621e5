//! [`Plan`]: a loaded model with its kernels compiled, its weights packed and its buffers
//! allocated, ready to run many times.

use crate::kernels::{self, TaskCode, TaskKernel};
use crate::memory::{self, Lifetime, MemoryStats};
use crate::plain::{self, Operand, OutBuf, Par, VectorLevel};
use crate::RuntimeError;
use autotune_codegen::{DeviceBuffer, DeviceError, DeviceSlice, GpuDevice, HostRuntime, OperandBuffer};
use autotune_db::Database;
use autotune_graph::{ElemType, Graph, NodeKind, PlainOp, Tensor, TensorData, TensorId, TensorInfo};
use autotune_ir::{Target, TaskKey};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// How a [`Plan`] is made. The thread count is the target's ([`Target::threads`]): a kernel is
/// tuned for a thread count, so the target says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanConfig {
    /// Reuse a buffer once the last reader of its value has run (memory planning). `false`
    /// gives every value a buffer of its own: more memory, same results; for debugging.
    pub reuse_buffers: bool,
    /// Compile the distinct tasks in parallel (rayon's global pool).
    pub parallel_build: bool,
    /// Let producers write straight into their slice of a Concat's output instead of the Concat
    /// copying them (`false`: every Concat copies; for comparisons).
    pub concat_in_place: bool,
}

impl Default for PlanConfig {
    fn default() -> PlanConfig {
        PlanConfig { reuse_buffers: true, parallel_build: true, concat_in_place: true }
    }
}

/// Name, shape and element type of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueInfo {
    pub name: String,
    pub shape: Vec<usize>,
    /// Values cross the API as f32 whatever this says (integers are exact up to 2^24).
    pub dtype: ElemType,
}

/// The outputs of a run: every model output's name and values, in the model's order.
pub type Outputs = Vec<(String, Vec<f32>)>;

/// The wall time of one node in [`Plan::run_profiled`].
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    /// The node's name in the graph.
    pub node: String,
    /// The task's op name for a kernel (`conv2d`, …), the plain op's name otherwise.
    pub op: &'static str,
    /// For a kernel, its task's index in [`Plan::tasks`].
    pub task: Option<usize>,
    pub seconds: f64,
}

/// Where the values of a tensor live while the plan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    /// A buffer of the pool (model inputs, node outputs; a reshape shares its input's).
    Buffer(usize),
    /// A constant read by a plain op or named as a model output.
    Constant(usize),
    /// Nothing reads it at run time (kernel weights live in their packed form instead).
    None,
}

#[derive(Debug, Clone)]
struct TensorMeta {
    name: String,
    shape: Vec<usize>,
    dtype: ElemType,
    len: usize,
    constant: bool,
    storage: Storage,
    /// Where its values start in its buffer, in elements: not 0 for a value written straight
    /// into its slice of a Concat's output.
    offset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelArg {
    /// A run-time value.
    Value(TensorId),
    /// A prepared constant (`Plan::weights` index).
    Weight(usize),
    /// A run-time value the kernel reads packed (weights given as a model input): packed per
    /// call into `Plan::weights[weight]`, then passed as that.
    PackedPerCall { value: TensorId, input: usize, weight: usize },
}

#[derive(Debug)]
enum StepKind {
    Kernel {
        program: usize,
        args: Vec<KernelArg>,
    },
    Plain(PlainOp),
    /// A reshape whose output shares its input's buffer: nothing to do.
    Alias,
    /// A Concat whose inputs were (some of them) written by their producers straight into their
    /// slice of its output: only the others are copied, each to its offset (in elements) within
    /// the output. With nothing to copy the step does nothing.
    ConcatInto {
        copies: Vec<(TensorId, usize)>,
    },
}

#[derive(Debug)]
struct Step {
    node: String,
    kind: StepKind,
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
}

/// A model ready to run: each kernel node's kernel compiled once (the tuning log's winner for
/// this target, or the default schedule), constant inputs packed once, and one pool of buffers,
/// reused by liveness, for every run-time value.
///
/// Not `Sync`: runs take `&mut self` (they write the plan's buffers). Build one plan per thread
/// that runs the model concurrently.
#[derive(Debug)]
pub struct Plan {
    target: Target,
    /// Runs the kernels' parallel loops, and the plain ops' rows (one pool: two would fight
    /// over the same cores between nodes).
    runtime: HostRuntime,
    /// What the plain ops' hot loops are compiled for: the target's vector level.
    vector_level: VectorLevel,
    tensors: Vec<TensorMeta>,
    inputs: Vec<TensorId>,
    outputs: Vec<(String, TensorId)>,
    steps: Vec<Step>,
    kernels: Vec<TaskKernel>,
    programs: Vec<TaskCode>,
    /// Prepared (packed) constant inputs of kernels.
    weights: Vec<OperandBuffer>,
    /// Constants read by plain ops or named as outputs.
    constants: Vec<Vec<f32>>,
    /// Model inputs loaded as constants of a given value, with that value: a run may pass
    /// them, with the same value.
    bound_inputs: Vec<(String, Vec<f32>)>,
    buffers: Vec<OperandBuffer>,
    memory: MemoryStats,
    build_time_s: f64,
    /// The device of a GPU plan: its kernels, the device copies of buffers and weights.
    gpu: Option<GpuState>,
}

/// Where the current values of a pool buffer are, in a GPU plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Residency {
    Host,
    Device,
    Both,
}

/// The host↔device copies of one run of a GPU plan: model inputs going up, outputs coming down,
/// and the values crossing between a GPU kernel and a node that runs on the host. Weights are
/// uploaded once, when the plan is made ([`Plan::gpu_weight_bytes`]), never per run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferStats {
    pub uploads: usize,
    pub downloads: usize,
    pub bytes_up: usize,
    pub bytes_down: usize,
}

/// The GPU half of a GPU plan.
struct GpuState {
    device: Box<dyn GpuDevice>,
    /// The device copy of each pool buffer a GPU kernel reads or writes (allocated once).
    buffers: Vec<Option<DeviceBuffer>>,
    residency: Vec<Residency>,
    /// The device copy (and length) of each weight a GPU kernel reads (`Plan::weights` index).
    weights: Vec<Option<(DeviceBuffer, usize)>>,
    weight_bytes: usize,
    last_run: TransferStats,
}

impl std::fmt::Debug for GpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuState({}, {} device buffers)",
            self.device.describe(),
            self.buffers.iter().flatten().count()
        )
    }
}

/// How a plan's kernels run.
enum Backend {
    Cpu,
    /// On `device`; tasks with no GPU schedule, and the plain ops, on `host`.
    Gpu {
        device: Box<dyn GpuDevice>,
        host: Target,
    },
}

impl Plan {
    /// Plans `graph` for `target`: picks each task's kernel (the fastest replayable `ok` trial of
    /// `log` for this target, else the default schedule), compiles every distinct task once,
    /// packs the weights, and allocates the buffers. The plan keeps no reference to `graph`.
    pub fn new(
        graph: &Graph,
        log: Option<&Database>,
        target: &Target,
        config: PlanConfig,
    ) -> Result<Plan, RuntimeError> {
        let mut plan = Plan::compile(graph, log, target, config, Backend::Cpu)?;
        plan.prepare_constants(graph.tensors.clone())?;
        Ok(plan)
    }

    /// [`Plan::new`] for a graph the caller no longer needs: each constant is freed as soon as it
    /// is packed, so the model's weights are not held twice (lower peak memory).
    pub fn from_graph(
        graph: Graph,
        log: Option<&Database>,
        target: &Target,
        config: PlanConfig,
    ) -> Result<Plan, RuntimeError> {
        let mut plan = Plan::compile(&graph, log, target, config, Backend::Cpu)?;
        plan.prepare_constants(graph.tensors)?;
        Ok(plan)
    }

    /// Plans `graph` for the GPU `gpu` (a CUDA target) on `device`: each task runs the log's
    /// best replayable GPU trial, else its GPU space's default schedule, loaded once; weights
    /// are uploaded once and every buffer a kernel touches has a device copy, allocated once.
    /// A task with no GPU schedule space, and every plain op, runs on the host (this CPU with
    /// `host_threads` threads): values cross between host and device where a GPU kernel and a
    /// host node meet, and only there ([`Plan::transfers`] counts them). `graph` is consumed
    /// as in [`Plan::from_graph`]. Concats copy (no in-place placement: a value written on the
    /// device into a slice of a buffer the host writes too would need copies per slice).
    pub fn for_gpu(
        graph: Graph,
        log: Option<&Database>,
        gpu: &Target,
        device: Box<dyn GpuDevice>,
        host_threads: u32,
        config: PlanConfig,
    ) -> Result<Plan, RuntimeError> {
        if gpu.as_cuda().is_none() {
            return Err(RuntimeError::Unsupported {
                tensor: String::new(),
                reason: format!("{} is not a GPU target", gpu.name()),
            });
        }
        let host = autotune_codegen::host_cpu_target(host_threads)
            .map_err(|source| RuntimeError::Build { task: "the host's kernels".into(), source })?;
        let config = PlanConfig { concat_in_place: false, ..config };
        let mut plan = Plan::compile(&graph, log, gpu, config, Backend::Gpu { device, host })?;
        plan.prepare_constants(graph.tensors)?;
        Ok(plan)
    }

    /// Everything but the constants: kernels compiled, steps and buffers laid out.
    fn compile(
        graph: &Graph,
        log: Option<&Database>,
        target: &Target,
        config: PlanConfig,
        backend: Backend,
    ) -> Result<Plan, RuntimeError> {
        let host_threads = match &backend {
            Backend::Cpu => target.threads(),
            Backend::Gpu { host, .. } => host.threads(),
        };
        let threads = (host_threads as usize).max(1);
        let thread_error = |e: std::io::Error| RuntimeError::Threads { threads, reason: e.to_string() };
        let runtime = HostRuntime::new(threads).map_err(thread_error)?;

        // Run-time values are held as f32 (integers exactly up to 2^24); float64 would silently
        // lose precision, so it is refused.
        if let Some(t) = graph.tensors.iter().find(|t| !t.is_constant() && t.dtype == ElemType::F64) {
            return Err(RuntimeError::Unsupported {
                tensor: t.name.clone(),
                reason: "float64 values at run time are not supported (the runtime computes in float32)"
                    .into(),
            });
        }

        // Distinct tasks, in order of first use.
        let mut task_index: HashMap<TaskKey, usize> = HashMap::new();
        let mut tasks = Vec::new();
        let mut program_of_node = vec![usize::MAX; graph.nodes.len()];
        for (i, _, task) in graph.kernels() {
            let next = tasks.len();
            let k = *task_index.entry(task.key()).or_insert(next);
            if k == next {
                tasks.push((task.clone(), 0));
            }
            tasks[k].1 += 1;
            program_of_node[i] = k;
        }
        let mut tensors: Vec<TensorMeta> = graph
            .tensors
            .iter()
            .map(|t| TensorMeta {
                name: t.name.clone(),
                shape: t.shape.clone(),
                dtype: t.dtype,
                len: t.len(),
                constant: t.is_constant(),
                storage: Storage::None,
                offset: 0,
            })
            .collect();

        // Which tensors are run-time values, and which share a value (a reshape of a value).
        let mut root: Vec<usize> = (0..tensors.len()).collect();
        let mut steps = Vec::with_capacity(graph.nodes.len());
        for (i, node) in graph.nodes.iter().enumerate() {
            let invalid = |reason: String| RuntimeError::InvalidGraph { node: node.name.clone(), reason };
            let kind = match &node.kind {
                NodeKind::Kernel(task) => {
                    let specs = task.inputs();
                    if specs.len() != node.inputs.len() || node.outputs.len() != 1 {
                        return Err(invalid(format!(
                            "a {} kernel takes {} inputs and one output, the node has {} and {}",
                            task.op_name(),
                            specs.len(),
                            node.inputs.len(),
                            node.outputs.len()
                        )));
                    }
                    for (spec, t) in
                        specs.iter().chain(&task.outputs()).zip(node.inputs.iter().chain(&node.outputs))
                    {
                        if spec.len() != tensors[t.0].len {
                            return Err(invalid(format!(
                                "{} of {} has {} elements, `{}` has {}",
                                spec.name,
                                task.description(),
                                spec.len(),
                                tensors[t.0].name,
                                tensors[t.0].len
                            )));
                        }
                    }
                    // Weights are filled in by `prepare_constants`; run-time ones it packs per
                    // call.
                    let args = node.inputs.iter().map(|&t| KernelArg::Value(t)).collect();
                    StepKind::Kernel { program: program_of_node[i], args }
                }
                NodeKind::Plain(PlainOp::Reshape)
                    if node.inputs.len() == 1
                        && node.outputs.len() == 1
                        && !tensors[node.inputs[0].0].constant =>
                {
                    root[node.outputs[0].0] = root[node.inputs[0].0];
                    StepKind::Alias
                }
                NodeKind::Plain(op) => StepKind::Plain(op.clone()),
            };
            steps.push(Step {
                node: node.name.clone(),
                kind,
                inputs: node.inputs.clone(),
                outputs: node.outputs.clone(),
            });
        }

        let mut offset = vec![0usize; tensors.len()];
        if config.concat_in_place {
            plan_concats_in_place(graph, &tensors, &mut steps, &mut root, &mut offset);
        }

        // The graph is sound: compile (the expensive part).
        let start = Instant::now();
        let (mut device, built) = match backend {
            Backend::Cpu => {
                let built = kernels::build(&tasks, log, target, config.parallel_build)?;
                (None, built.into_iter().map(|(k, p)| (k, TaskCode::Cpu(p))).collect::<Vec<_>>())
            }
            Backend::Gpu { mut device, host } => {
                let built =
                    kernels::build_gpu(&tasks, log, target, &host, device.as_mut(), config.parallel_build)?;
                (Some(device), built)
            }
        };
        let (kernels, programs): (Vec<_>, Vec<_>) = built.into_iter().unzip();
        let build_time_s = start.elapsed().as_secs_f64();

        // Lifetimes of the run-time values (by root tensor): written at 0 (inputs) or i + 1
        // (node i), read last at the last reader's position, or after the end (outputs).
        let end = graph.nodes.len() + 1;
        let mut first: HashMap<usize, usize> = HashMap::new();
        let mut last: HashMap<usize, usize> = HashMap::new();
        for &t in &graph.inputs {
            first.insert(root[t.0], 0);
        }
        for (i, step) in steps.iter().enumerate() {
            if !matches!(step.kind, StepKind::Alias) {
                // A Concat's output is written first by the first producer that writes its slice.
                for t in &step.outputs {
                    first.entry(root[t.0]).or_insert(i + 1);
                }
            }
            for t in &step.inputs {
                if !tensors[t.0].constant {
                    let l = last.entry(root[t.0]).or_insert(0);
                    *l = (*l).max(i + 1);
                }
            }
        }
        for o in &graph.outputs {
            if !tensors[o.tensor.0].constant {
                last.insert(root[o.tensor.0], end);
            }
        }
        // Values nobody reads need no buffer unless a node writes them.
        let mut values: Vec<usize> =
            first.keys().copied().filter(|r| last.contains_key(r) || first[r] > 0).collect();
        values.sort_unstable();
        let lifetimes: Vec<Lifetime> = values
            .iter()
            .map(|r| {
                let f = first[r];
                Lifetime { len: tensors[*r].len, first: f, last: last.get(r).copied().unwrap_or(f).max(f) }
            })
            .collect();
        let assignment = memory::assign(&lifetimes, config.reuse_buffers);
        let buffer_of_root: HashMap<usize, usize> =
            values.iter().zip(&assignment.buffer_of).map(|(&r, &b)| (r, b)).collect();
        for (t, meta) in tensors.iter_mut().enumerate() {
            if let Some(&b) = buffer_of_root.get(&root[t]) {
                meta.storage = Storage::Buffer(b);
                meta.offset = offset[t];
            }
        }
        let buffers: Vec<OperandBuffer> =
            assignment.buffer_len.iter().map(|&n| OperandBuffer::filled(n, 0.0)).collect();
        // A device copy of every buffer a GPU kernel reads or writes, allocated once.
        let gpu = match device.take() {
            None => None,
            Some(mut device) => {
                let mut on_device = vec![false; buffers.len()];
                for step in &steps {
                    let StepKind::Kernel { program, .. } = step.kind else { continue };
                    if !matches!(programs[program], TaskCode::Gpu(_)) {
                        continue;
                    }
                    for t in step.inputs.iter().chain(&step.outputs) {
                        if let Storage::Buffer(b) = tensors[t.0].storage {
                            on_device[b] = true;
                        }
                    }
                }
                let mut device_buffers = Vec::with_capacity(buffers.len());
                for (b, &needed) in on_device.iter().enumerate() {
                    device_buffers.push(if needed {
                        Some(device.alloc(buffers[b].len()).map_err(|e| gpu_error("allocating buffers", e))?)
                    } else {
                        None
                    });
                }
                Some(GpuState {
                    device,
                    buffers: device_buffers,
                    residency: vec![Residency::Host; buffers.len()],
                    weights: Vec::new(),
                    weight_bytes: 0,
                    last_run: TransferStats::default(),
                })
            }
        };
        let memory = MemoryStats {
            n_buffers: buffers.len(),
            activation_bytes: assignment.buffer_len.iter().sum::<usize>() * 4,
            activation_bytes_without_reuse: lifetimes.iter().map(|l| l.len).sum::<usize>() * 4,
            peak_live_bytes: memory::peak_live(&lifetimes) * 4,
            constant_bytes: 0,
        };

        Ok(Plan {
            target: target.clone(),
            runtime,
            vector_level: VectorLevel::of_target(target),
            tensors,
            inputs: graph.inputs.clone(),
            outputs: graph.outputs.iter().map(|o| (o.name.clone(), o.tensor)).collect(),
            steps,
            kernels,
            programs,
            weights: Vec::new(),
            constants: Vec::new(),
            bound_inputs: graph
                .bound_inputs
                .iter()
                .map(|(name, value)| (name.clone(), value.to_f32()))
                .collect(),
            buffers,
            memory,
            build_time_s,
            gpu,
        })
    }

    /// Takes the constants (weights, biases, plain ops' constant inputs) from `graph` and packs
    /// them, keeping the compiled kernels: for a model with the same structure and other weights
    /// (fine-tuned, randomized), without compiling anything again.
    pub fn load_constants(&mut self, graph: &Graph) -> Result<(), RuntimeError> {
        let mismatch = |reason: String| RuntimeError::StructureMismatch { reason };
        if graph.tensors.len() != self.tensors.len() || graph.nodes.len() != self.steps.len() {
            return Err(mismatch(format!(
                "{} tensors and {} nodes, the plan has {} and {}",
                graph.tensors.len(),
                graph.nodes.len(),
                self.tensors.len(),
                self.steps.len()
            )));
        }
        let outputs: Vec<(String, TensorId)> =
            graph.outputs.iter().map(|o| (o.name.clone(), o.tensor)).collect();
        if outputs != self.outputs || graph.inputs != self.inputs {
            return Err(mismatch("the model inputs or outputs differ".into()));
        }
        for (t, meta) in graph.tensors.iter().zip(&self.tensors) {
            if t.shape != meta.shape || t.dtype != meta.dtype || t.is_constant() != meta.constant {
                return Err(mismatch(format!("tensor `{}` differs in shape, type or constness", t.name)));
            }
        }
        for (node, step) in graph.nodes.iter().zip(&self.steps) {
            let same_kind = match (&node.kind, &step.kind) {
                (NodeKind::Kernel(task), StepKind::Kernel { program, .. }) => {
                    self.kernels[*program].task.key() == task.key()
                }
                (NodeKind::Plain(op), StepKind::Plain(mine)) => op == mine,
                (NodeKind::Plain(PlainOp::Reshape), StepKind::Alias) => true,
                (NodeKind::Plain(PlainOp::Concat { .. }), StepKind::ConcatInto { .. }) => true,
                _ => false,
            };
            if !same_kind || node.inputs != step.inputs || node.outputs != step.outputs {
                return Err(mismatch(format!("node `{}` differs", node.name)));
            }
        }
        self.prepare_constants(graph.tensors.clone())
    }

    /// Packs every kernel's constant inputs (once per distinct program and set of constants) and
    /// copies the constants plain ops read, from `tensors` (the graph's). Each constant is
    /// released from `tensors` after its last use, and taken without a copy when nothing else
    /// holds it (so [`Plan::from_graph`] never holds a model's weights twice).
    fn prepare_constants(&mut self, mut tensors: Vec<TensorInfo>) -> Result<(), RuntimeError> {
        let is_constant = |t: TensorId| self.tensors[t.0].constant;
        let mut last_use: HashMap<TensorId, usize> = HashMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            for &t in step.inputs.iter().filter(|t| is_constant(**t)) {
                last_use.insert(t, i);
            }
        }
        for (_, t) in &self.outputs {
            last_use.insert(*t, usize::MAX);
        }
        // The values of constant `t`, taken out of `tensors` when this is its last read.
        let values = |tensors: &mut [TensorInfo], t: TensorId, last_read: bool| -> Vec<f32> {
            let value = if last_read { tensors[t.0].value.take() } else { tensors[t.0].value.clone() };
            match value.map(Arc::try_unwrap) {
                Some(Ok(Tensor { data: TensorData::F32(v), .. })) => v,
                Some(Ok(other)) => other.to_f32(),
                Some(Err(shared)) => shared.to_f32(),
                None => Vec::new(),
            }
        };
        let mut weights: Vec<OperandBuffer> = Vec::new();
        let mut constants: Vec<Vec<f32>> = Vec::new();
        let mut prepared: HashMap<(usize, Vec<TensorId>), Vec<usize>> = HashMap::new();
        let mut constant_of: HashMap<TensorId, usize> = HashMap::new();
        for (i, step) in self.steps.iter_mut().enumerate() {
            match &mut step.kind {
                StepKind::Kernel { program, args } => {
                    let constant_ids: Vec<TensorId> =
                        step.inputs.iter().copied().filter(|t| self.tensors[t.0].constant).collect();
                    let key = (*program, constant_ids);
                    let indices = match prepared.get(&key) {
                        Some(indices) => indices.clone(),
                        None => {
                            // Each constant input, packed where the kernel reads it packed (a GPU
                            // program reads its constants as they are: no prepacks); run-time ones
                            // are packed per call (`KernelArg::PackedPerCall`).
                            let program = match &self.programs[*program] {
                                TaskCode::Cpu(p) => Some(p),
                                TaskCode::Gpu(_) => None,
                            };
                            let mut indices = Vec::new();
                            for (k, &t) in step.inputs.iter().enumerate() {
                                if !self.tensors[t.0].constant {
                                    continue;
                                }
                                let last = last_use.get(&t) == Some(&i) && !step.inputs[k + 1..].contains(&t);
                                let raw = values(&mut tensors, t, last);
                                let buffer = match program.and_then(|p| Some((p, p.packed_len(k)?))) {
                                    Some((program, len)) => {
                                        let mut source = OperandBuffer::from_slice(&raw);
                                        let mut packed = OperandBuffer::filled(len, 0.0);
                                        program
                                            .pack_input(&self.runtime, k, &mut source, &mut packed)
                                            .map_err(|source| RuntimeError::Kernel {
                                                node: step.node.clone(),
                                                source,
                                            })?;
                                        packed
                                    }
                                    None => OperandBuffer::from_slice(&raw),
                                };
                                indices.push(weights.len());
                                weights.push(buffer);
                            }
                            prepared.insert(key, indices.clone());
                            indices
                        }
                    };
                    let mut next = indices.into_iter();
                    for (k, (arg, &t)) in args.iter_mut().zip(&step.inputs).enumerate() {
                        *arg = if self.tensors[t.0].constant {
                            next.next().map_or(KernelArg::Value(t), KernelArg::Weight)
                        } else if let Some(len) = self.programs[*program].packed_len(k) {
                            weights.push(OperandBuffer::filled(len, 0.0));
                            KernelArg::PackedPerCall { value: t, input: k, weight: weights.len() - 1 }
                        } else {
                            KernelArg::Value(t)
                        };
                    }
                }
                StepKind::Plain(_) | StepKind::Alias | StepKind::ConcatInto { .. } => {
                    for &t in &step.inputs {
                        if self.tensors[t.0].constant && !constant_of.contains_key(&t) {
                            constant_of.insert(t, constants.len());
                            constants.push(values(&mut tensors, t, last_use.get(&t) == Some(&i)));
                        }
                    }
                }
            }
            // Constants whose last reader is this step are not needed any more.
            for &t in &step.inputs {
                if last_use.get(&t) == Some(&i) {
                    tensors[t.0].value = None;
                }
            }
        }
        for (_, t) in &self.outputs {
            if self.tensors[t.0].constant && !constant_of.contains_key(t) {
                constant_of.insert(*t, constants.len());
                constants.push(values(&mut tensors, *t, false));
            }
        }
        for (t, &c) in &constant_of {
            self.tensors[t.0].storage = Storage::Constant(c);
        }
        self.memory.constant_bytes = (weights.iter().map(|w| w.len()).sum::<usize>()
            + constants.iter().map(Vec::len).sum::<usize>())
            * 4;
        self.weights = weights;
        self.constants = constants;
        self.upload_gpu_weights()
    }

    /// Uploads every weight a GPU kernel reads (once) and frees its host copy.
    fn upload_gpu_weights(&mut self) -> Result<(), RuntimeError> {
        let Some(gpu) = self.gpu.as_mut() else { return Ok(()) };
        for (b, _) in gpu.weights.drain(..).flatten() {
            gpu.device.free(b);
        }
        gpu.weights = vec![None; self.weights.len()];
        gpu.weight_bytes = 0;
        for step in &self.steps {
            let StepKind::Kernel { program, args } = &step.kind else { continue };
            if !matches!(self.programs[*program], TaskCode::Gpu(_)) {
                continue;
            }
            for arg in args {
                let KernelArg::Weight(w) = *arg else { continue };
                if gpu.weights[w].is_some() {
                    continue;
                }
                let values = std::mem::take(&mut self.weights[w]);
                let buffer =
                    gpu.device.alloc(values.len()).map_err(|e| gpu_error("allocating weights", e))?;
                gpu.device
                    .upload(DeviceSlice::head(buffer, values.len()), &values)
                    .map_err(|e| gpu_error("uploading weights", e))?;
                gpu.weight_bytes += values.len() * 4;
                gpu.weights[w] = Some((buffer, values.len()));
            }
        }
        Ok(())
    }

    /// Runs the model on `inputs` (by model input name; an input nothing reads may be left out)
    /// and returns every model output, by name, in the model's order.
    pub fn run(&mut self, inputs: &[(&str, &[f32])]) -> Result<Outputs, RuntimeError> {
        self.set_inputs(inputs)?;
        for i in 0..self.steps.len() {
            self.run_step(i)?;
        }
        self.outputs_to_host()?;
        Ok(self.outputs.iter().map(|(name, t)| (name.clone(), self.value(*t).to_vec())).collect())
    }

    /// [`Plan::run`], timing every node: the outputs, and each node's wall time in order.
    pub fn run_profiled(
        &mut self,
        inputs: &[(&str, &[f32])],
    ) -> Result<(Outputs, Vec<NodeTime>), RuntimeError> {
        self.set_inputs(inputs)?;
        let mut times = Vec::with_capacity(self.steps.len());
        for i in 0..self.steps.len() {
            let start = Instant::now();
            self.run_step(i)?;
            if let Some(gpu) = self.gpu.as_mut() {
                // Launches are asynchronous: a node's time is until its work is done.
                gpu.device.synchronize().map_err(|e| gpu_error(&self.steps[i].node, e))?;
            }
            let step = &self.steps[i];
            let (op, task) = match &step.kind {
                StepKind::Kernel { program, .. } => (self.kernels[*program].task.op_name(), Some(*program)),
                StepKind::Plain(op) => (op.name(), None),
                StepKind::Alias => ("reshape (shared buffer)", None),
                StepKind::ConcatInto { copies } if copies.is_empty() => ("concat (in place)", None),
                StepKind::ConcatInto { .. } => ("concat (partly in place)", None),
            };
            times.push(NodeTime {
                node: step.node.clone(),
                op,
                task,
                seconds: start.elapsed().as_secs_f64(),
            });
        }
        self.outputs_to_host()?;
        let outputs = self.outputs.iter().map(|(name, t)| (name.clone(), self.value(*t).to_vec())).collect();
        Ok((outputs, times))
    }

    fn input_names(&self) -> String {
        self.inputs.iter().map(|t| format!("`{}`", self.tensors[t.0].name)).collect::<Vec<_>>().join(", ")
    }

    fn set_inputs(&mut self, inputs: &[(&str, &[f32])]) -> Result<(), RuntimeError> {
        if let Some(gpu) = self.gpu.as_mut() {
            gpu.last_run = TransferStats::default();
        }
        let mut given = vec![false; self.inputs.len()];
        for (name, data) in inputs {
            if let Some((_, value)) = self.bound_inputs.iter().find(|(bound, _)| bound == name) {
                if value.as_slice() != *data {
                    return Err(RuntimeError::BoundInputChanged { name: name.to_string() });
                }
                continue;
            }
            let slot = self
                .inputs
                .iter()
                .position(|t| self.tensors[t.0].name == *name)
                .filter(|&i| !given[i])
                .ok_or_else(|| RuntimeError::UnknownInput {
                    name: name.to_string(),
                    expected: self.input_names(),
                })?;
            given[slot] = true;
            let meta = &self.tensors[self.inputs[slot].0];
            if data.len() != meta.len {
                return Err(RuntimeError::InputLength {
                    name: name.to_string(),
                    shape: meta.shape.clone(),
                    expected: meta.len,
                    got: data.len(),
                });
            }
            if let Storage::Buffer(b) = meta.storage {
                self.buffers[b][meta.offset..meta.offset + meta.len].copy_from_slice(data);
                if let Some(gpu) = self.gpu.as_mut() {
                    gpu.residency[b] = Residency::Host;
                }
            }
        }
        for (i, t) in self.inputs.iter().enumerate() {
            let meta = &self.tensors[t.0];
            if !given[i] && meta.storage != Storage::None {
                return Err(RuntimeError::MissingInput {
                    name: meta.name.clone(),
                    expected: self.input_names(),
                });
            }
        }
        Ok(())
    }

    /// The current values of a tensor that has a buffer or is a kept constant.
    fn value(&self, t: TensorId) -> &[f32] {
        let meta = &self.tensors[t.0];
        match meta.storage {
            Storage::Buffer(b) => &self.buffers[b][meta.offset..meta.offset + meta.len],
            Storage::Constant(c) => &self.constants[c],
            Storage::None => &[],
        }
    }

    fn run_step(&mut self, i: usize) -> Result<(), RuntimeError> {
        let step = &self.steps[i];
        match &step.kind {
            StepKind::Alias => Ok(()),
            StepKind::ConcatInto { copies } if copies.is_empty() => Ok(()),
            StepKind::ConcatInto { .. } => self.on_host(i, Plan::run_concat_into),
            StepKind::Kernel { program, args } => {
                let (program, args) = (*program, args.clone());
                match self.programs[program] {
                    TaskCode::Gpu(kernel) => self.run_gpu_kernel(i, kernel, &args),
                    TaskCode::Cpu(_) => self.on_host(i, |plan, i| plan.run_kernel(i, program, &args)),
                }
            }
            StepKind::Plain(_) => self.on_host(i, Plan::run_plain),
        }
    }

    /// Runs step `i` on the host: in a GPU plan, its inputs that only the device holds are
    /// downloaded first, and its outputs are then the host's.
    fn on_host(
        &mut self,
        i: usize,
        run: impl FnOnce(&mut Plan, usize) -> Result<(), RuntimeError>,
    ) -> Result<(), RuntimeError> {
        if self.gpu.is_some() {
            let inputs = self.steps[i].inputs.clone();
            for t in inputs {
                self.download_if_device_only(t, &self.steps[i].node.clone())?;
            }
        }
        run(self, i)?;
        if let Some(gpu) = self.gpu.as_mut() {
            for t in &self.steps[i].outputs {
                if let Storage::Buffer(b) = self.tensors[t.0].storage {
                    gpu.residency[b] = Residency::Host;
                }
            }
        }
        Ok(())
    }

    /// Downloads `t`'s values when only the device has them.
    fn download_if_device_only(&mut self, t: TensorId, node: &str) -> Result<(), RuntimeError> {
        let Some(gpu) = self.gpu.as_mut() else { return Ok(()) };
        let meta = &self.tensors[t.0];
        let Storage::Buffer(b) = meta.storage else { return Ok(()) };
        if gpu.residency[b] != Residency::Device {
            return Ok(());
        }
        let Some(on_device) = gpu.buffers[b] else { return Ok(()) };
        let slice = DeviceSlice { buffer: on_device, offset: meta.offset, len: meta.len };
        gpu.device
            .download(slice, &mut self.buffers[b][meta.offset..meta.offset + meta.len])
            .map_err(|e| gpu_error(node, e))?;
        gpu.residency[b] = Residency::Both;
        gpu.last_run.downloads += 1;
        gpu.last_run.bytes_down += meta.len * 4;
        Ok(())
    }

    fn outputs_to_host(&mut self) -> Result<(), RuntimeError> {
        let outputs: Vec<TensorId> = self.outputs.iter().map(|(_, t)| *t).collect();
        for t in outputs {
            self.download_if_device_only(t, "the model outputs")?;
        }
        Ok(())
    }

    /// Launches GPU kernel `kernel` for step `i`: its run-time inputs that only the host holds
    /// are uploaded first; its output is then the device's.
    fn run_gpu_kernel(
        &mut self,
        i: usize,
        kernel: autotune_codegen::KernelHandle,
        args: &[KernelArg],
    ) -> Result<(), RuntimeError> {
        let node = &self.steps[i].node;
        let out = self.steps[i].outputs[0];
        let Some(gpu) = self.gpu.as_mut() else {
            return Err(RuntimeError::InvalidGraph {
                node: node.clone(),
                reason: "a GPU kernel in a CPU plan".into(),
            });
        };
        let mut slices = Vec::with_capacity(args.len() + 1);
        for arg in args.iter().chain(std::iter::once(&KernelArg::Value(out))) {
            match *arg {
                KernelArg::PackedPerCall { .. } => {
                    return Err(RuntimeError::InvalidGraph {
                        node: node.clone(),
                        reason: "a GPU kernel packs no input".into(),
                    });
                }
                KernelArg::Weight(w) => {
                    let Some(Some((buffer, len))) = gpu.weights.get(w).copied() else {
                        return Err(RuntimeError::InvalidGraph {
                            node: node.clone(),
                            reason: "a weight that is not on the device".into(),
                        });
                    };
                    slices.push(DeviceSlice::head(buffer, len));
                }
                KernelArg::Value(t) => {
                    let meta = &self.tensors[t.0];
                    let (Storage::Buffer(b), Some(Some(buffer))) =
                        (meta.storage, gpu.buffers.get(meta_buffer(meta)).copied())
                    else {
                        return Err(RuntimeError::InvalidGraph {
                            node: node.clone(),
                            reason: format!("`{}` has no device buffer", meta.name),
                        });
                    };
                    let slice = DeviceSlice { buffer, offset: meta.offset, len: meta.len };
                    if t != out && gpu.residency[b] == Residency::Host {
                        let values = &self.buffers[b][meta.offset..meta.offset + meta.len];
                        gpu.device.upload(slice, values).map_err(|e| gpu_error(node, e))?;
                        gpu.residency[b] = Residency::Both;
                        gpu.last_run.uploads += 1;
                        gpu.last_run.bytes_up += meta.len * 4;
                    }
                    slices.push(slice);
                }
            }
        }
        gpu.device.launch(kernel, &slices).map_err(|e| gpu_error(node, e))?;
        if let Storage::Buffer(b) = self.tensors[out.0].storage {
            gpu.residency[b] = Residency::Device;
        }
        Ok(())
    }

    fn run_kernel(&mut self, i: usize, program: usize, args: &[KernelArg]) -> Result<(), RuntimeError> {
        enum Home {
            Buffer(usize),
            Weight(usize),
            /// A copy: the same buffer is passed twice (x·x, a residual of the input itself).
            Scratch,
        }
        for arg in args {
            if let KernelArg::PackedPerCall { value, input, weight } = *arg {
                self.pack_per_call(i, program, value, input, weight)?;
            }
        }
        let out = self.steps[i].outputs[0];
        // (where it goes back, the buffer, offset and length of the argument in it)
        let mut held: Vec<(Home, OperandBuffer, usize, usize)> = Vec::with_capacity(args.len() + 1);
        let mut failure = None;
        for arg in args.iter().chain(std::iter::once(&KernelArg::Value(out))) {
            match *arg {
                KernelArg::Weight(w) | KernelArg::PackedPerCall { weight: w, .. } => {
                    let len = self.weights[w].len();
                    held.push((Home::Weight(w), std::mem::take(&mut self.weights[w]), 0, len));
                }
                KernelArg::Value(t) => {
                    let meta = &self.tensors[t.0];
                    let Storage::Buffer(b) = meta.storage else {
                        failure = Some(format!("`{}` has no buffer", meta.name));
                        break;
                    };
                    let (offset, len) = (meta.offset, meta.len);
                    let taken = held.iter().find(|(home, ..)| matches!(home, Home::Buffer(x) if *x == b));
                    match taken {
                        Some((_, data, ..)) if t != out => {
                            let copy = OperandBuffer::from_slice(&data[offset..offset + len]);
                            held.push((Home::Scratch, copy, 0, len));
                        }
                        Some(_) => {
                            failure = Some(format!("output `{}` shares a buffer with an input", meta.name));
                            break;
                        }
                        None => {
                            held.push((Home::Buffer(b), std::mem::take(&mut self.buffers[b]), offset, len))
                        }
                    }
                }
            }
        }
        let result = match failure {
            Some(reason) => Err(RuntimeError::InvalidGraph { node: self.steps[i].node.clone(), reason }),
            None => {
                let mut slices: Vec<&mut [f32]> = held
                    .iter_mut()
                    .map(|(_, data, offset, len)| &mut data[*offset..*offset + *len])
                    .collect();
                match &self.programs[program] {
                    TaskCode::Cpu(p) => p
                        .kernel
                        .run(&self.runtime, &mut slices)
                        .map_err(|source| RuntimeError::Kernel { node: self.steps[i].node.clone(), source }),
                    TaskCode::Gpu(_) => Err(RuntimeError::InvalidGraph {
                        node: self.steps[i].node.clone(),
                        reason: "a GPU kernel run on the host".into(),
                    }),
                }
            }
        };
        // Put every buffer back, whatever happened.
        for (home, data, ..) in held {
            match home {
                Home::Buffer(b) => self.buffers[b] = data,
                Home::Weight(w) => self.weights[w] = data,
                Home::Scratch => {}
            }
        }
        result
    }

    /// Packs run-time value `value` (kernel input `input` of step `i`) into `weights[weight]`.
    fn pack_per_call(
        &mut self,
        i: usize,
        program: usize,
        value: TensorId,
        input: usize,
        weight: usize,
    ) -> Result<(), RuntimeError> {
        let meta = &self.tensors[value.0];
        let Storage::Buffer(b) = meta.storage else {
            let reason = format!("`{}` has no buffer", meta.name);
            return Err(RuntimeError::InvalidGraph { node: self.steps[i].node.clone(), reason });
        };
        let (offset, len) = (meta.offset, meta.len);
        let mut source = std::mem::take(&mut self.buffers[b]);
        let mut packed = std::mem::take(&mut self.weights[weight]);
        let result = match &self.programs[program] {
            TaskCode::Cpu(p) => p
                .pack_input(&self.runtime, input, &mut source[offset..offset + len], &mut packed)
                .map_err(|source| RuntimeError::Kernel { node: self.steps[i].node.clone(), source }),
            TaskCode::Gpu(_) => Err(RuntimeError::InvalidGraph {
                node: self.steps[i].node.clone(),
                reason: "a GPU kernel packs no input".into(),
            }),
        };
        self.buffers[b] = source;
        self.weights[weight] = packed;
        result
    }

    fn run_plain(&mut self, i: usize) -> Result<(), RuntimeError> {
        let step = &self.steps[i];
        let StepKind::Plain(op) = &step.kind else { return Ok(()) };
        let invalid = |reason: String| RuntimeError::InvalidGraph { node: step.node.clone(), reason };
        // Each output's buffer, taken once: the outputs of a Split written into one Concat's
        // output share it, in disjoint slices.
        let mut outs: Vec<(usize, OperandBuffer)> = Vec::with_capacity(step.outputs.len());
        let mut home_of_output = Vec::with_capacity(step.outputs.len());
        for t in &step.outputs {
            let Storage::Buffer(b) = self.tensors[t.0].storage else {
                return Err(invalid(format!("output `{}` has no buffer", self.tensors[t.0].name)));
            };
            match outs.iter().position(|(x, _)| *x == b) {
                Some(k) => home_of_output.push(k),
                None => {
                    home_of_output.push(outs.len());
                    outs.push((b, std::mem::take(&mut self.buffers[b])));
                }
            }
        }
        let result = {
            let mut slices: Vec<Option<&mut [f32]>> = (0..step.outputs.len()).map(|_| None).collect();
            let mut carved = Ok(());
            for (k, (_, data)) in outs.iter_mut().enumerate() {
                let mut mine: Vec<(usize, usize, usize)> = (0..step.outputs.len())
                    .filter(|&o| home_of_output[o] == k)
                    .map(|o| {
                        let meta = &self.tensors[step.outputs[o].0];
                        (meta.offset, meta.len, o)
                    })
                    .collect();
                mine.sort_unstable();
                let mut rest: &mut [f32] = &mut data[..];
                let mut consumed = 0;
                for (offset, len, o) in mine {
                    if offset < consumed || offset + len > consumed + rest.len() {
                        carved = Err("two outputs overlap in one buffer".to_string());
                        break;
                    }
                    let (_, tail) = std::mem::take(&mut rest).split_at_mut(offset - consumed);
                    let (slice, tail) = tail.split_at_mut(len);
                    slices[o] = Some(slice);
                    rest = tail;
                    consumed = offset + len;
                }
            }
            let inputs: Vec<Operand> = step
                .inputs
                .iter()
                .map(|t| {
                    let meta = &self.tensors[t.0];
                    Operand { data: self.value(*t), shape: &meta.shape }
                })
                .collect();
            let mut outputs: Vec<OutBuf> = slices
                .into_iter()
                .zip(&step.outputs)
                .filter_map(|(slice, t)| {
                    let meta = &self.tensors[t.0];
                    Some(OutBuf { data: slice?, shape: &meta.shape, dtype: meta.dtype })
                })
                .collect();
            if let Err(reason) = carved {
                Err(reason)
            } else if inputs.iter().any(|x| x.data.len() != x.shape.iter().product::<usize>()) {
                Err("an input has no value".to_string())
            } else {
                plain::run(op, &inputs, &mut outputs, &Par::new(&self.runtime, self.vector_level))
            }
        };
        let node = step.node.clone();
        let op_name = op.name();
        for (b, data) in outs {
            self.buffers[b] = data;
        }
        result.map_err(|reason| RuntimeError::Op { node, op: op_name, reason })
    }

    /// Copies the inputs of a partly in-place Concat that were not written in place. They live in
    /// other buffers than the output (`plan_concats_in_place` sees to it).
    fn run_concat_into(&mut self, i: usize) -> Result<(), RuntimeError> {
        let step = &self.steps[i];
        let StepKind::ConcatInto { copies } = &step.kind else { return Ok(()) };
        let out = &self.tensors[step.outputs[0].0];
        let Storage::Buffer(b) = out.storage else {
            return Err(RuntimeError::InvalidGraph {
                node: step.node.clone(),
                reason: format!("output `{}` has no buffer", out.name),
            });
        };
        let mut data = std::mem::take(&mut self.buffers[b]);
        let mut failure = None;
        for &(member, at) in copies {
            let values = self.value(member);
            let meta = &self.tensors[member.0];
            if values.len() != meta.len {
                failure = Some(format!("input `{}` has no value", meta.name));
                break;
            }
            let start = out.offset + at;
            data[start..start + meta.len].copy_from_slice(values);
        }
        self.buffers[b] = data;
        match failure {
            Some(reason) => Err(RuntimeError::InvalidGraph { node: step.node.clone(), reason }),
            None => Ok(()),
        }
    }

    /// The target the kernels were compiled for (CPU, features, threads; or the GPU).
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// What a GPU plan's kernels run on (`None` for a CPU plan).
    pub fn gpu_device(&self) -> Option<String> {
        self.gpu.as_ref().map(|g| g.device.describe())
    }

    /// The host↔device copies of the last run of a GPU plan (`None` for a CPU plan).
    pub fn transfers(&self) -> Option<TransferStats> {
        self.gpu.as_ref().map(|g| g.last_run)
    }

    /// Bytes of weights a GPU plan uploaded when it was made.
    pub fn gpu_weight_bytes(&self) -> usize {
        self.gpu.as_ref().map_or(0, |g| g.weight_bytes)
    }

    /// Threads the kernels' parallel loops and the plain ops run on.
    pub fn threads(&self) -> usize {
        self.runtime.threads()
    }

    /// The model inputs, in the model's order.
    pub fn inputs(&self) -> Vec<ValueInfo> {
        self.inputs.iter().map(|t| self.info(&self.tensors[t.0].name, *t)).collect()
    }

    /// The model outputs, in the model's order.
    pub fn outputs(&self) -> Vec<ValueInfo> {
        self.outputs.iter().map(|(name, t)| self.info(name, *t)).collect()
    }

    fn info(&self, name: &str, t: TensorId) -> ValueInfo {
        let meta = &self.tensors[t.0];
        ValueInfo { name: name.to_string(), shape: meta.shape.clone(), dtype: meta.dtype }
    }

    /// Names of the model inputs this plan was loaded with as constants
    /// (`LoadConfig::input_values`); a run may pass them, with the same value.
    pub fn bound_inputs(&self) -> impl Iterator<Item = &str> {
        self.bound_inputs.iter().map(|(name, _)| name.as_str())
    }

    /// The distinct tasks of the model, in order of first use, with the kernel each runs.
    pub fn tasks(&self) -> &[TaskKernel] {
        &self.kernels
    }

    /// The distinct tasks that run their default schedule (no replayable tuned trial).
    pub fn untuned_tasks(&self) -> impl Iterator<Item = &TaskKernel> {
        self.kernels.iter().filter(|k| !k.is_tuned())
    }

    /// Tasks whose tuned kernel comes from another, compatible target of the log (none was tuned
    /// for this exact one), with that target's name.
    pub fn borrowed_tasks(&self) -> impl Iterator<Item = (&TaskKernel, &str)> {
        self.kernels.iter().filter_map(|k| match &k.source {
            crate::KernelSource::Tuned { borrowed_from: Some(name), .. } => Some((k, name.as_str())),
            _ => None,
        })
    }

    /// Tasks that run the schedule of the nearest tuned shape of the log (their own shape was
    /// never tuned: a dynamic dimension at a new size), with that shape's description.
    pub fn nearest_shape_tasks(&self) -> impl Iterator<Item = (&TaskKernel, &str)> {
        self.kernels.iter().filter_map(|k| match &k.source {
            crate::KernelSource::Tuned { nearest_shape: Some(shape), .. } => Some((k, shape.as_str())),
            _ => None,
        })
    }

    /// Tasks with zero borders that run the schedule the log holds for the same conv without
    /// them (a log tuned before borders existed).
    pub fn borderless_tasks(&self) -> impl Iterator<Item = &TaskKernel> {
        self.kernels
            .iter()
            .filter(|k| matches!(k.source, crate::KernelSource::Tuned { from_borderless: true, .. }))
    }

    /// Kernel nodes of the model (kernel calls per run).
    pub fn n_kernels(&self) -> usize {
        self.kernels.iter().map(|k| k.n_nodes).sum()
    }

    /// Kernel nodes that run a tuned kernel.
    pub fn n_tuned(&self) -> usize {
        self.kernels.iter().filter(|k| k.is_tuned()).map(|k| k.n_nodes).sum()
    }

    /// Kernel nodes that run their task's default schedule.
    pub fn n_default(&self) -> usize {
        self.n_kernels() - self.n_tuned()
    }

    /// Memory held by the plan.
    pub fn memory(&self) -> MemoryStats {
        self.memory
    }

    /// Wall time spent choosing and compiling the kernels in [`Plan::new`].
    pub fn build_time_s(&self) -> f64 {
        self.build_time_s
    }
}

/// The pool buffer of a tensor that has one (else an index no buffer has).
fn meta_buffer(meta: &TensorMeta) -> usize {
    match meta.storage {
        Storage::Buffer(b) => b,
        _ => usize::MAX,
    }
}

fn gpu_error(node: &str, source: DeviceError) -> RuntimeError {
    RuntimeError::Gpu { node: node.to_string(), source }
}

/// Lets producers write straight into their slice of a Concat's output, so the Concat copies
/// nothing (Inception's and SqueezeNet's branch outputs, DenseNet's growing feature maps).
///
/// A Concat qualifies when its slices are contiguous (every dimension before the axis is 1). An
/// input is written in place when it is a run-time value written by a node of the plan (not a
/// model input or output), appears once in the Concat and lives in no other value's buffer yet:
/// then it, and everything sharing its buffer (its reshapes, the inputs of an earlier Concat
/// that produced it), move into the output's buffer at the input's offset. A move is kept only
/// if no node then reads and writes one buffer (`writes_into_what_it_reads`); a Concat that keeps
/// none stays a plain copy.
fn plan_concats_in_place(
    graph: &Graph,
    tensors: &[TensorMeta],
    steps: &mut [Step],
    root: &mut [usize],
    offset: &mut [usize],
) {
    let mut written_by_a_step = vec![false; tensors.len()];
    for step in steps.iter() {
        if !matches!(step.kind, StepKind::Alias) {
            for t in &step.outputs {
                written_by_a_step[t.0] = true;
            }
        }
    }
    let mut at_the_edge = vec![false; tensors.len()];
    for t in &graph.inputs {
        at_the_edge[t.0] = true;
    }
    for o in &graph.outputs {
        at_the_edge[o.tensor.0] = true;
    }
    for ci in 0..steps.len() {
        let StepKind::Plain(PlainOp::Concat { axis }) = steps[ci].kind else { continue };
        let (inputs, out) = match steps[ci].outputs.as_slice() {
            [out] => (steps[ci].inputs.clone(), *out),
            _ => continue,
        };
        let out_meta = &tensors[out.0];
        if out_meta.constant || out_meta.shape[..axis].iter().product::<usize>() != 1 || root[out.0] != out.0
        {
            continue;
        }
        let (saved_root, saved_offset) = (root.to_vec(), offset.to_vec());
        let mut in_place = vec![false; inputs.len()];
        let mut at = 0;
        for (k, &m) in inputs.iter().enumerate() {
            let start = at;
            at += tensors[m.0].len;
            let movable = !tensors[m.0].constant
                && written_by_a_step[m.0]
                && !at_the_edge[m.0]
                && root[m.0] == m.0
                && inputs.iter().filter(|&&x| x == m).count() == 1;
            if !movable {
                continue;
            }
            let (before_root, before_offset) = (root.to_vec(), offset.to_vec());
            for t in 0..root.len() {
                if root[t] == m.0 {
                    root[t] = out.0;
                    offset[t] += start;
                }
            }
            in_place[k] = true;
            if writes_into_what_it_reads(steps, tensors, root, ci) {
                root.copy_from_slice(&before_root);
                offset.copy_from_slice(&before_offset);
                in_place[k] = false;
            }
        }
        // A copied input must not live in the output's buffer (it would be read while written).
        let copied_from_the_output =
            inputs.iter().zip(&in_place).any(|(m, &placed)| !placed && root[m.0] == out.0);
        if !in_place.contains(&true) || copied_from_the_output {
            root.copy_from_slice(&saved_root);
            offset.copy_from_slice(&saved_offset);
            continue;
        }
        let mut copies = Vec::new();
        let mut at = 0;
        for (&m, &placed) in inputs.iter().zip(&in_place) {
            if !placed {
                copies.push((m, at));
            }
            at += tensors[m.0].len;
        }
        steps[ci].kind = StepKind::ConcatInto { copies };
    }
}

/// Whether a node (other than Concat `skip`, being planned, and other in-place Concats, whose
/// placed inputs are their output's own slices) would write into the buffer of a value it reads.
fn writes_into_what_it_reads(steps: &[Step], tensors: &[TensorMeta], root: &[usize], skip: usize) -> bool {
    steps.iter().enumerate().any(|(i, step)| {
        let reads: Vec<TensorId> = match &step.kind {
            StepKind::Alias => return false,
            _ if i == skip => return false,
            StepKind::ConcatInto { copies } => copies.iter().map(|(t, _)| *t).collect(),
            _ => step.inputs.clone(),
        };
        step.outputs.iter().any(|o| reads.iter().any(|r| !tensors[r.0].constant && root[r.0] == root[o.0]))
    })
}
