//! Times schedules of one task side by side, in one process, interleaved: the space's default
//! and any traces given, each checked against the reference. For comparing a schedule change on
//! one layer without a tuning run.
//!
//! ```text
//! cargo run --release -p autotune-measure --example time_traces -- TASK_JSON THREADS ROUNDS warm|cold [TRACE_JSON ...]
//! ```
//! `TIME_TRACES_ISA=avx2` narrows the host to an ISA level (`sse4.2`, `avx2`, `avx512`).
//! `cold` evicts the operands a model layer finds cold before every repeat (as model tuning does).
//! TASK_JSON is a task as the tuning log stores it (`workload.task_json`); each TRACE_JSON a
//! trace (`trial.trace_json`), or `k=v,k=v` to change decisions of the default trace.

use autotune_ir::{Task, Trace};

#[path = "support/trace_arg.rs"]
mod trace_arg;
use autotune_measure::{LocalRunner, MeasureConfig, Runner};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [task_json, threads, rounds, temperature, traces @ ..] = args.as_slice() else {
        return Err("usage: time_traces TASK_JSON THREADS ROUNDS warm|cold [TRACE_JSON | k=v,... ...]".into());
    };
    let task: Task = serde_json::from_str(task_json)?;
    let threads: u32 = threads.parse()?;
    let rounds: usize = rounds.parse()?;
    // `TIME_TRACES_ISA=avx2` (or sse4.2, avx512) times the host narrowed to that level.
    let level = match std::env::var("TIME_TRACES_ISA").ok() {
        Some(name) => Some(serde_json::from_value::<autotune_ir::IsaLevel>(serde_json::Value::String(name))?),
        None => None,
    };
    let target = autotune_codegen::cpu_target_at(level, threads)?;
    let space = autotune_schedules::space_for(&task, &target)?;
    let default = space.default_trace();
    let mut candidates = vec![("default".to_string(), default.clone())];
    for text in traces {
        candidates.push((text.clone(), trace_arg::parse(&default, text)?));
    }
    let mut runner = LocalRunner::new(
        &target,
        MeasureConfig { min_total_time_s: 0.3, cold_operands: temperature == "cold", ..Default::default() },
    )?;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
    for _ in 0..rounds {
        let traces: Vec<Trace> = candidates.iter().map(|(_, t)| t.clone()).collect();
        for (i, o) in runner.measure_batch(&task, &traces).into_iter().enumerate() {
            match o.median_s() {
                Some(s) => times[i].push(s),
                None => println!("{}: {:?} {}", candidates[i].0, o.status, o.error.unwrap_or_default()),
            }
        }
    }
    let flops = task.flops();
    println!("{} ({} threads)", task.description(), threads);
    for ((name, trace), mut t) in candidates.into_iter().zip(times) {
        t.sort_by(f64::total_cmp);
        if let Some(&m) = t.get(t.len() / 2) {
            println!("{:9.4} ms {:7.1} GFLOP/s  {}  [{}]", m * 1e3, flops / m / 1e9, name, trace.display());
        }
    }
    Ok(())
}
