//! Prints the assembly of one schedule of a task (the kernel nest as the JIT compiles it for
//! this host), for reading what a micro-kernel became.
//!
//! ```text
//! cargo run --release -p autotune-measure --example kernel_asm -- TASK_JSON [TRACE_JSON | k=v,k=v]
//! ```
//! TASK_JSON and the trace as for `time_traces` (no trace: the space's default);
//! `KERNEL_ASM_IR=1` prints the optimized LLVM IR instead.

#[path = "support/trace_arg.rs"]
mod trace_arg;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [task_json, rest @ ..] = args.as_slice() else {
        return Err("usage: kernel_asm TASK_JSON [TRACE_JSON | k=v,...]".into());
    };
    let task: autotune_ir::Task = serde_json::from_str(task_json)?;
    let target = autotune_codegen::cpu_target_at(None, 1)?;
    let space = autotune_schedules::space_for(&task, &target)?;
    let default = space.default_trace();
    let trace = match rest.first() {
        Some(text) => trace_arg::parse(&default, text)?,
        None => default,
    };
    let program = space.lower(&trace)?;
    let builder = autotune_codegen::CpuBuilder::new(&target)?;
    if std::env::var("KERNEL_ASM_IR").is_ok() {
        println!("{}", builder.llvm_ir(&program.kernel)?);
    } else {
        println!("{}", builder.assembly(&program.kernel)?);
    }
    Ok(())
}
