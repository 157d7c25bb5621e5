//! Runs an ONNX model with the kernels its tuning log chose.
//!
//! A [`Plan`] is made once from a loaded model ([`autotune_graph::Graph`]), an optional tuning log
//! ([`autotune_db::Database`]) and a [`Target`](autotune_ir::Target) (this CPU and a thread
//! count): for every distinct task of the model it takes the fastest `ok` trial of the log that
//! still replays — same target, same schedule space version, same [`CODEGEN_VERSION`] — or else
//! the schedule space's default schedule, and compiles it once (distinct tasks in parallel);
//! it packs every kernel's constant inputs (weights) into the kernel's layout once; and it
//! assigns every run-time value a buffer of one pool, reusing a buffer once the value's last
//! reader has run (memory planning: [`MemoryStats`]). [`Plan::run`] then runs the nodes in order:
//! kernels through their JIT-compiled code on the plan's thread pool, everything else as plain
//! operators (simple loops, rows split across the same number of threads).
//!
//! A GPU plan ([`Plan::for_gpu`], a CUDA target and a [`GpuDevice`]) runs each task's GPU
//! kernel (the log's best GPU trial, else the GPU space's default) on the device's one stream,
//! with the weights uploaded once and a device copy of every buffer a kernel touches, allocated
//! once. Tasks without a GPU schedule space and all plain ops run on the host, as in a CPU plan:
//! a value is copied where a GPU kernel and a host node meet (and model inputs up, outputs
//! down), tracked per buffer so nothing is copied twice; [`Plan::transfers`] counts the copies.
//! With [`HostGpuDevice`] the same plan runs on the CPU (how it is tested without a GPU).
//!
//! Kernels run in this process, with no worker process around them: a plan runs trusted winners
//! (each `ok` trial matched the reference when it was tuned) and the default schedules, not the
//! untrusted candidates of a search.
//!
//! Owns: [`Plan`] (model + tuning log + target → compiled kernels → `run`), the choice of
//! kernel per task ([`KernelSource`]), memory planning, and the plain operators' implementations.
//! Must not know: search or how kernels are timed — it reads the log, it never writes it.
//!
//! ```no_run
//! use autotune_runtime::{host_cpu_target, random_inputs, Database, Plan, PlanConfig};
//! use std::path::Path;
//!
//! let graph = autotune_graph::load(Path::new("resnet50.onnx"), &Default::default())?;
//! let log = Database::open_read_only(Path::new("resnet50.tuning.db"))?;
//! let target = host_cpu_target(2)?; // this CPU, 2 threads: what the log was tuned for
//! // `Plan::new(&graph, …)` leaves the graph to the caller; `from_graph` frees its weights as
//! // soon as they are packed.
//! let mut plan = Plan::from_graph(graph, Some(&log), &target, PlanConfig::default())?;
//! for task in plan.untuned_tasks() {
//!     eprintln!("default schedule: {}", task.task.description());
//! }
//! let inputs = plan.inputs();
//! let values = random_inputs(&inputs, 0);
//! let named: Vec<(&str, &[f32])> =
//!     inputs.iter().zip(&values).map(|(i, v)| (i.name.as_str(), v.as_slice())).collect();
//! for (name, values) in plan.run(&named)? {
//!     println!("{name}: {} values", values.len());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `examples/run_model.rs` is the same as a program.

mod error;
mod kernels;
mod memory;
mod plain;
mod plan;
mod random;

pub use autotune_codegen::{host_cpu_target, CODEGEN_VERSION};
pub use autotune_codegen::{DeviceError, GpuDevice, HostGpuDevice};
pub use autotune_db::Database;
pub use error::RuntimeError;
pub use kernels::{log_uses_channel_blocks, logged_key, DefaultReason, KernelSource, TaskKernel};
pub use memory::MemoryStats;
pub use plan::{NodeTime, Outputs, Plan, PlanConfig, TransferStats, ValueInfo};
pub use random::random_inputs;
