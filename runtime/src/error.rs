//! What can go wrong planning or running a model.

use autotune_codegen::CodegenError;
use autotune_db::DbError;
use autotune_schedules::ScheduleError;

/// An error of [`Plan::new`](crate::Plan::new) or [`Plan::run`](crate::Plan::run). Each variant
/// names what it is about (the task, the node or the input).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The graph breaks an invariant the frontend promises (a bug in the loader, or a graph built
    /// by hand).
    #[error("invalid graph at node `{node}`: {reason}")]
    InvalidGraph { node: String, reason: String },
    /// The target has no schedule space for a task of the model.
    #[error("no schedule for {task}: {source}")]
    Schedule {
        task: String,
        #[source]
        source: ScheduleError,
    },
    /// The default schedule of a task failed to compile (a tuned one that fails falls back to the
    /// default schedule instead).
    #[error("cannot compile the kernel of {task}: {source}")]
    Build {
        task: String,
        #[source]
        source: CodegenError,
    },
    /// The model computes something this runtime does not (float64 values at run time).
    #[error("tensor `{tensor}`: {reason}")]
    Unsupported { tensor: String, reason: String },
    /// The tuning log could not be read.
    #[error("reading the tuning log: {0}")]
    Log(#[from] DbError),
    /// A kernel refused its buffers (or a weight prepack failed).
    #[error("running node `{node}`: {source}")]
    Kernel {
        node: String,
        #[source]
        source: CodegenError,
    },
    /// The GPU failed (or refused a copy or launch) while running a node.
    #[error("running node `{node}` on the GPU: {source}")]
    Gpu {
        node: String,
        #[source]
        source: autotune_codegen::DeviceError,
    },
    /// A plain operator cannot run on these values (e.g. a Gather index out of range).
    #[error("running node `{node}` ({op}): {reason}")]
    Op { node: String, op: &'static str, reason: String },
    /// The thread pool could not be started.
    #[error("cannot start {threads} thread(s): {reason}")]
    Threads { threads: usize, reason: String },
    /// `run` was not given a value for a model input.
    #[error("missing model input `{name}` (the model's inputs: {expected})")]
    MissingInput { name: String, expected: String },
    /// `run` was given a value for a name that is not a model input (or one input twice).
    #[error("`{name}` is not an input of the model, or is given twice (the model's inputs: {expected})")]
    UnknownInput { name: String, expected: String },
    /// A value for a model input the plan was loaded with as a constant
    /// (`LoadConfig::input_values`) differs from that constant.
    #[error("model input `{name}` was bound to another value when the model was loaded (it shapes the plan); load the model again with this value")]
    BoundInputChanged { name: String },
    /// A model input of the wrong size.
    #[error("model input `{name}` has {got} values, its shape {shape:?} needs {expected}")]
    InputLength { name: String, shape: Vec<usize>, expected: usize, got: usize },
    /// Two graphs given to [`Plan::load_constants`](crate::Plan::load_constants) differ in more
    /// than their constants' values.
    #[error("the graph does not have the structure the plan was built for: {reason}")]
    StructureMismatch { reason: String },
}
