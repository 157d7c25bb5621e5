//! The vocabulary every other crate speaks, at the bottom of the dependency graph.
//!
//! Owns: [`Task`] and [`TaskKey`] (what is tuned), [`Target`] (where it runs), [`Trace`] and
//! [`Decision`] (a point of a schedule space, as stored in the tuning log), the loop-nest IR
//! ([`LoopNest`]: what schedules lower to and codegen compiles), flop and byte counts, trial
//! [`TrialStatus`], named [`Tolerance`]s, and [`reference`]: the naive semantics of every operator.
//!
//! Must not know: I/O, LLVM, CUDA, SQLite, search. It has no heavy dependencies so every crate
//! can depend on it.

pub mod cuda_target;
pub mod loop_nest;
pub mod ops;
pub mod printer;
pub mod reference;
pub mod stats;
pub mod status;
pub mod target;
pub mod task;
pub mod task_key;
pub mod tolerance;
pub mod trace;

pub use loop_nest::{
    BinOp, BufId, BufScope, BufferDecl, CmpOp, Expr, GpuAxis, Loop, LoopKind, LoopNest, NestBuilder, Prepack,
    Program, Stmt, UnaryOp, VarId,
};
pub use ops::{BatchMatmulSpec, Conv2dSpec, EpilogueOp, Pool2dSpec, PoolKind, Scalar};
pub use status::TrialStatus;
pub use target::{CacheSizes, CpuTarget, CudaTarget, IsaLevel, Target, UnsupportedLevel};
pub use task::{ChannelBlocks, DType, Halo, InputWindow, MatmulShape, Op, Task, TaskKey, TensorSpec};
pub use tolerance::{compare, Mismatch, Tolerance};
pub use trace::{Decision, Trace};
