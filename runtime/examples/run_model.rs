//! Runs an ONNX model with the kernels of its tuning log, as a library user would.
//!
//! ```text
//! cargo run --release -p autotune-runtime --example run_model -- MODEL.onnx [TUNING_LOG|-] [THREADS]
//! ```
//!
//! Without a tuning log (or with `-`) every task runs its default schedule. The inputs are seeded random
//! values; the example prints each output's first values, the kernels' sources and the memory
//! the plan holds.

use autotune_runtime::{host_cpu_target, random_inputs, Database, Plan, PlanConfig};
use std::path::Path;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model) = args.first() else {
        return Err("usage: run_model MODEL.onnx [TUNING_LOG|-] [THREADS]".into());
    };
    let log =
        args.get(1).filter(|p| *p != "-").map(|p| Database::open_read_only(Path::new(p))).transpose()?;
    let threads: u32 = args.get(2).map(|t| t.parse()).transpose()?.unwrap_or(1);

    let start = Instant::now();
    let graph = autotune_graph::load(Path::new(model), &Default::default())?;
    let target = host_cpu_target(threads)?;
    // `from_graph` frees each weight of the graph as soon as it is packed.
    let mut plan = Plan::from_graph(graph, log.as_ref(), &target, PlanConfig::default())?;
    println!(
        "planned in {:.2} s: {} kernel calls ({} tuned, {} default) in {} distinct tasks",
        start.elapsed().as_secs_f64(),
        plan.n_kernels(),
        plan.n_tuned(),
        plan.n_default(),
        plan.tasks().len()
    );
    for task in plan.untuned_tasks() {
        if let autotune_runtime::KernelSource::Default(reason) = &task.source {
            println!("  default schedule ({reason}): {}", task.task.description());
        }
    }

    let mut slowest: Vec<_> = plan.tasks().iter().collect();
    slowest.sort_by(|a, b| b.build_time_s.total_cmp(&a.build_time_s));
    for task in slowest.iter().take(6) {
        println!("  compiled in {:.2} s: {}", task.build_time_s, task.task.description());
    }

    let inputs = plan.inputs();
    let values = random_inputs(&inputs, 0);
    let named: Vec<(&str, &[f32])> =
        inputs.iter().zip(&values).map(|(info, v)| (info.name.as_str(), v.as_slice())).collect();
    let start = Instant::now();
    let outputs = plan.run(&named)?;
    println!("ran in {:.3} s", start.elapsed().as_secs_f64());
    // Where the time goes: kernels against plain ops, from a second, profiled run.
    let (_, times) = plan.run_profiled(&named)?;
    let kernel_s: f64 = times.iter().filter(|t| t.task.is_some()).map(|t| t.seconds).sum();
    let plain_s: f64 = times.iter().filter(|t| t.task.is_none()).map(|t| t.seconds).sum();
    println!("profiled run: {:.3} s in kernels, {:.3} s in plain ops", kernel_s, plain_s);
    let mut by_op: Vec<(&str, f64)> = Vec::new();
    for t in times.iter().filter(|t| t.task.is_none()) {
        match by_op.iter_mut().find(|(op, _)| *op == t.op) {
            Some((_, s)) => *s += t.seconds,
            None => by_op.push((t.op, t.seconds)),
        }
    }
    for (op, s) in by_op {
        println!("  {op}: {:.2} ms", s * 1e3);
    }
    for (name, values) in &outputs {
        let head: Vec<String> = values.iter().take(4).map(|v| format!("{v:.5}")).collect();
        println!("  {name}: {} values [{} …]", values.len(), head.join(", "));
    }
    let m = plan.memory();
    println!(
        "memory: {:.1} MiB of activations in {} buffers ({:.1} MiB without reuse, {:.1} MiB live at most), {:.1} MiB of constants",
        m.activation_bytes as f64 / (1 << 20) as f64,
        m.n_buffers,
        m.activation_bytes_without_reuse as f64 / (1 << 20) as f64,
        m.peak_live_bytes as f64 / (1 << 20) as f64,
        m.constant_bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
