//! The commands: `op` (tune one operator instance) and `best` (re-measure the winner).

use crate::args::{BestArgs, Cli, Command, Device, OpCommand, TuneArgs};
use crate::error::BadInput;
use anyhow::{anyhow, Context, Result};
use autotune_codegen::{host_cpu_target, CODEGEN_VERSION};
use autotune_db::Database;
use autotune_ir::{Target, Task, Trace, TrialStatus};
use autotune_measure::{MeasureConfig, Runner, WorkerConfig, WorkerRunner};
use autotune_schedules::space_for;
use autotune_search::{
    tune, Progress, RandomSearch, RandomSearchConfig, StopReason, TuneConfig, TuneSummary,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Op(OpCommand::Matmul(args)) => tune_matmul(args),
        Command::Best(args) => best(args),
    }
}

fn cpu_target(device: &Device, threads: u32) -> Result<Target> {
    match device {
        Device::Cpu => Ok(host_cpu_target(threads).context("cannot describe this machine's CPU")?),
        Device::Cuda(_) => Err(anyhow!(BadInput(
            "--device cuda:N is not supported by this build yet: use --device cpu".into()
        ))),
    }
}

fn open_db(path: &std::path::Path) -> Result<Database> {
    Database::open(path).map_err(|e| anyhow!(BadInput(format!("{e}"))))
}

fn worker_runner(target: &Target, measure: MeasureConfig) -> Result<WorkerRunner> {
    let program = std::env::current_exe().context("cannot find the autotune executable to start workers")?;
    let config =
        WorkerConfig { program, args: vec![crate::WORKER_ARG.to_string()], measure, build_timeout_s: 300.0 };
    Ok(WorkerRunner::new(target, config)?)
}

fn tune_matmul(args: TuneArgs) -> Result<ExitCode> {
    let task = Task::matmul(args.shape.m, args.shape.n, args.shape.k);
    let target = cpu_target(&args.device, args.threads)?;
    if !args.timeout_s.is_finite() || args.timeout_s <= 0.0 {
        return Err(anyhow!(BadInput(format!(
            "--timeout-s must be a positive number of seconds, got {}",
            args.timeout_s
        ))));
    }
    let mut db = open_db(&args.db)?;
    let space = space_for(&task, &target).context("no schedule space")?;
    let measure = MeasureConfig { timeout_s: args.timeout_s, ..MeasureConfig::default() };
    let mut runner = worker_runner(&target, measure)?;
    let mut strategy = RandomSearch::new(space.as_ref(), RandomSearchConfig::new(args.seed));
    let config = TuneConfig {
        batch_size: args.batch_size as usize,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ..TuneConfig::new(args.trials as usize, args.seed, CODEGEN_VERSION)
    };

    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        // A second Ctrl-C while the batch finishes means "now": the db keeps every committed batch.
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nautotune: stopping after the batch in flight (Ctrl-C again to stop now)");
        });
    }

    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new(args.trials) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} trials  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("best —, 0 errors");
    let mut on_batch = |p: &Progress| {
        bar.set_position(p.trials_done as u64);
        let best = p.best_gflops.map_or("—".to_string(), |g| format!("{g:.1} GFLOP/s"));
        bar.set_message(format!("best {best}, {} errors", p.n_errors));
    };
    let summary =
        tune(&task, space.as_ref(), &mut strategy, &mut runner, &mut db, &config, &cancel, &mut on_batch)
            .context("tuning failed")?;
    bar.finish_and_clear();

    if args.json {
        println!("{}", tune_json(&task, &args, &summary));
    } else {
        print_summary(&task, &args, &summary, runner.n_restarts());
    }
    Ok(if summary.stopped_early == Some(StopReason::Cancelled) {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn tune_json(task: &Task, args: &TuneArgs, summary: &TuneSummary) -> serde_json::Value {
    let trials: Vec<serde_json::Value> = summary
        .trials
        .iter()
        .map(|t| json!({"index": t.index, "gflops": t.gflops, "status": t.outcome.status.as_str()}))
        .collect();
    json!({
        "task": task.description(),
        "device": "cpu",
        "threads": args.threads,
        "best_gflops": summary.best.as_ref().map(|b| b.gflops),
        "best_latency_s": summary.best.as_ref().map(|b| b.median_s),
        "best_trace": summary.best.as_ref().map(|b| &b.trace),
        "n_trials": summary.trials.len(),
        "n_errors": summary.n_errors,
        "trials": trials,
    })
}

fn print_summary(task: &Task, args: &TuneArgs, summary: &TuneSummary, n_restarts: usize) {
    let mut by_status: BTreeMap<TrialStatus, usize> = BTreeMap::new();
    for t in &summary.trials {
        *by_status.entry(t.outcome.status).or_default() += 1;
    }
    let counts: Vec<String> = by_status.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!("{} on cpu, {} thread(s)", task.description(), args.threads);
    println!("  this session: {} trials ({})", summary.trials.len(), counts.join(", "));
    if n_restarts > 0 {
        println!("  measurement worker restarted {n_restarts} time(s) after a crash or timeout");
    }
    match &summary.best {
        Some(best) => {
            println!(
                "  best in {}: {:.1} GFLOP/s, {:.3} ms median",
                args.db.display(),
                best.gflops,
                best.median_s * 1e3
            );
            println!("  schedule: {}", best.trace.display());
        }
        None => println!("  no valid kernel yet in {}", args.db.display()),
    }
    match summary.stopped_early {
        Some(StopReason::Cancelled) => println!("  interrupted: run the same command again to resume"),
        Some(StopReason::SpaceExhausted) => println!("  every schedule of the space has been measured"),
        None => {}
    }
}

fn best(args: BestArgs) -> Result<ExitCode> {
    let crate::args::OpName::Matmul = args.op;
    let task = Task::matmul(args.shape.m, args.shape.n, args.shape.k);
    let target = cpu_target(&args.device, args.threads)?;
    if !args.db.exists() {
        return Err(anyhow!(BadInput(format!(
            "no tuning log at {}: tune first with `autotune op matmul`",
            args.db.display()
        ))));
    }
    let db = Database::open_read_only(&args.db).map_err(|e| anyhow!(BadInput(e.to_string())))?;
    let space = space_for(&task, &target).context("no schedule space")?;
    let winners = db.best(&task.key().0, &target.key(), 64).context("reading the tuning log")?;
    let winner = winners
        .iter()
        .filter(|t| t.space_version == space.version() && t.codegen_version == CODEGEN_VERSION)
        .find_map(|t| Trace::from_json(&t.trace_json).ok())
        .ok_or_else(|| {
            anyhow!(BadInput(format!(
                "{} holds no valid kernel for {} on this CPU with {} thread(s): tune it first with `autotune op matmul`",
                args.db.display(),
                task.description(),
                args.threads
            )))
        })?;
    let measure = MeasureConfig {
        min_repeats: 10,
        min_total_time_s: args.min_time_s,
        max_total_time_s: args.min_time_s * 4.0,
        max_repeats: 10_000,
        ..MeasureConfig::default()
    };
    let mut runner = worker_runner(&target, measure)?;
    let outcome = runner
        .measure_batch(&task, std::slice::from_ref(&winner))
        .pop()
        .ok_or_else(|| anyhow!("no outcome"))?;
    let (Some(median), Some(min)) = (outcome.median_s(), outcome.min_s()) else {
        return Err(anyhow!(
            "re-measuring the best kernel failed ({}): {}",
            outcome.status,
            outcome.error.unwrap_or_default()
        ));
    };
    let gflops = task.flops() / median / 1e9;
    if args.json {
        println!(
            "{}",
            json!({
                "task": task.description(), "device": "cpu", "threads": args.threads, "gflops": gflops,
                "latency_s_median": median, "latency_s_min": min, "trace": winner,
                "n_repeats": outcome.repeat_times_s.len(),
            })
        );
    } else {
        println!(
            "{} on cpu, {} thread(s): {gflops:.1} GFLOP/s ({:.3} ms median, {:.3} ms min, {} repeats)",
            task.description(),
            args.threads,
            median * 1e3,
            min * 1e3,
            outcome.repeat_times_s.len()
        );
        println!("  schedule: {}", winner.display());
    }
    Ok(ExitCode::SUCCESS)
}
