//! `autotune tasks MODEL.onnx`: the tuning tasks a model extracts to (after constant folding and
//! fusion), how often each runs, their FLOPs, and — with `--db` — which already have a valid
//! kernel in a tuning log for this machine.

use crate::error::BadInput;
use anyhow::{anyhow, Context, Result};
use autotune_codegen::{codegen_version, host_cpu_target};
use autotune_db::Database;
use autotune_graph::{extract_tasks, load, GraphSummary, LoadConfig, Task};
use autotune_ir::Target;
use autotune_schedules::space_for;
use clap::Args;
use serde_json::json;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct TasksArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// A tuning log: mark the tasks that have a valid (`ok`) kernel in it for this CPU and
    /// --threads.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Thread count the tuning log's kernels must be tuned for (with --db).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    #[command(flatten)]
    pub layout: crate::args::LayoutArg,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn tasks(args: TasksArgs) -> Result<ExitCode> {
    let mut graph =
        load(&args.model, &LoadConfig::default()).map_err(|e| anyhow!(BadInput(e.to_string())))?;
    let target = host_cpu_target(args.threads).context("cannot describe this machine's CPU")?;
    let db = match &args.db {
        None => None,
        Some(path) => Some(Database::open_read_only(path).map_err(|e| anyhow!(BadInput(e.to_string())))?),
    };
    // The tasks tuning and `autotune run` would use: in the layout they choose.
    graph.lay_out(args.layout.block(&target, db.as_ref())?);
    let tasks = extract_tasks(&graph);
    let tuned: Option<Vec<bool>> = match &db {
        None => None,
        Some(db) => Some(tasks.iter().map(|(task, _)| is_tuned(db, task, &target)).collect::<Result<_>>()?),
    };
    let total_flops: f64 = tasks.iter().map(|(t, w)| t.flops() * *w as f64).sum();
    let model = args.model.display().to_string();
    if args.json {
        let rows: Vec<serde_json::Value> = tasks
            .iter()
            .enumerate()
            .map(|(i, (task, weight))| {
                json!({
                    "key": task.key().0,
                    "description": task.description(),
                    "op": task.op_name(),
                    "weight": weight,
                    "flops": task.flops(),
                    "tuned": tuned.as_ref().map(|t| t[i]),
                })
            })
            .collect();
        let v = json!({"model": model, "tasks": rows, "n_tasks": tasks.len(), "total_flops": total_flops});
        return print(format!("{v}\n"));
    }
    let summary = GraphSummary::of(&graph);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{model}: opset {}, {} ONNX nodes -> {} nodes ({} kernels, {} plain ops); {} distinct tasks, {:.2} GFLOP per run",
        graph.opset,
        summary.n_onnx_nodes,
        summary.n_nodes,
        summary.n_kernels,
        summary.n_nodes - summary.n_kernels,
        tasks.len(),
        total_flops / 1e9
    );
    let tuned_head = if tuned.is_some() { "  tuned" } else { "" };
    let _ = writeln!(text, "{:>4} {:>6} {:>10}{tuned_head}  {:<16}  task", "#", "weight", "MFLOP", "key");
    for (i, (task, weight)) in tasks.iter().enumerate() {
        let mark = match &tuned {
            Some(t) if t[i] => "    yes",
            Some(_) => "     no",
            None => "",
        };
        let key = task.key().0;
        let _ = writeln!(
            text,
            "{:>4} {:>6} {:>10.1}{mark}  {:<16}  {}",
            i + 1,
            weight,
            task.flops() / 1e6,
            &key[..16.min(key.len())],
            task.description()
        );
    }
    if let Some(t) = &tuned {
        let n_tuned = t.iter().filter(|x| **x).count();
        let _ = writeln!(
            text,
            "{n_tuned} of {} tasks tuned for this CPU with {} thread(s)",
            t.len(),
            args.threads
        );
    }
    print(text)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print(text: String) -> Result<ExitCode> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow!(e).context("cannot write to stdout"))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Whether the log holds an `ok` trial of `task` on `target` that still replays (same schedule
/// space and codegen versions).
fn is_tuned(db: &Database, task: &Task, target: &Target) -> Result<bool> {
    let Ok(space) = space_for(task, target) else { return Ok(false) };
    let trials = db.best(&task.key().0, &target.key(), 64).context("reading the tuning log")?;
    Ok(trials.iter().any(|t| t.is_comparable(space.version(), codegen_version(target))))
}
