//! `autotune db …`: tools for tuning logs that travel — list what a log holds, merge the logs of
//! sharded runs, export and import the line-per-record JSONL form, prune a log to its winners,
//! and verify on this machine the winners a model would run. The format is docs/tuning-log.md.

use crate::commands::{host_target, open_db, worker_runner};
use crate::error::BadInput;
use crate::run_cmd::default_db_path;
use anyhow::{anyhow, Context, Result};
use autotune_db::{read_jsonl, write_jsonl, Database, DbError, ImportStats};
use autotune_graph::{load, LoadConfig};
use autotune_measure::{MeasureConfig, Runner};
use autotune_runtime::{KernelSource, Plan, PlanConfig};
use autotune_schedules::space_for;
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// What a log holds: its targets, sessions, and per task and target the trial counts and the
    /// fastest kernel.
    Ls(LsArgs),
    /// Join logs (e.g. the logs of `--shard I/N` runs) into one: every trial once, every session
    /// kept. OUT is created, or added to if it exists.
    Merge(MergeArgs),
    /// Write a log as JSONL, one record per line (header, workloads, targets, sessions, machine
    /// measurements, trials): for review, diffs and `autotune db import`.
    Export(ExportArgs),
    /// Read a JSONL export into a log (created, or added to with the merge rules).
    Import(ImportArgs),
    /// Keep the K fastest ok trials of each task and target (per space and codegen version) and
    /// delete the rest, failures included; then compact the file. For shipping a small log.
    Prune(PruneArgs),
    /// Re-measure and re-check, on this machine, the tuned kernels `autotune run` would use for a
    /// model; flag those that fail or got slower than logged. Exit 1 when any is flagged.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// The tuning log.
    pub db: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The logs to join, in order: of a trial in several, the first log's copy is kept.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The merged log.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The tuning log.
    pub db: PathBuf,
    /// JSONL, one record per line (the only export format; the flag is for scripts that say so).
    #[arg(long)]
    pub jsonl: bool,
    /// Where to write it [default: standard output].
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The JSONL export, or `-` for standard input.
    pub input: PathBuf,
    /// The log to import into.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// The tuning log (changed in place).
    pub db: PathBuf,
    /// How many of the fastest ok trials to keep per task and target.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_best: u64,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The ONNX model whose tuned kernels are verified.
    pub model: PathBuf,
    /// The tuning log [default: MODEL.tuning.db beside the model].
    #[arg(long)]
    pub db: Option<PathBuf>,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    #[command(flatten)]
    pub cpu_features: crate::args::CpuFeaturesArg,
    #[command(flatten)]
    pub layout: crate::args::LayoutArg,
    /// A winner is flagged when it now takes more than (1 + TOLERANCE) times its logged median,
    /// or when the default schedule now beats it by that much.
    #[arg(long, default_value_t = 0.25, value_parser = parse_tolerance)]
    pub tolerance: f64,
    #[arg(long)]
    pub json: bool,
}

fn parse_tolerance(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(t) if t.is_finite() && (0.0..=10.0).contains(&t) => Ok(t),
        _ => Err(format!("`{text}` is not a tolerance: give a fraction between 0 and 10, e.g. 0.25")),
    }
}

fn bad(text: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(BadInput(text.to_string()))
}

fn open_existing(path: &Path) -> Result<Database> {
    Database::open_read_only(path).map_err(bad)
}

pub fn run(command: DbCommand) -> Result<ExitCode> {
    match command {
        DbCommand::Ls(args) => ls(args),
        DbCommand::Merge(args) => merge(args),
        DbCommand::Export(args) => export(args),
        DbCommand::Import(args) => import(args),
        DbCommand::Prune(args) => prune(args),
        DbCommand::Verify(args) => verify(args),
    }
}

fn ms(seconds: f64) -> String {
    format!("{:.3} ms", seconds * 1e3)
}

fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

/// `writeln!` into a String, which cannot fail.
macro_rules! outln {
    ($text:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($text, $($arg)*);
    }};
}

/// Prints `text`; a reader that closed the pipe (`autotune db ls LOG | head`) is not an error.
fn print_quietly(text: &str) -> Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to standard output"),
        _ => Ok(()),
    }
}

fn ls(args: LsArgs) -> Result<ExitCode> {
    let db = open_existing(&args.db)?;
    let targets = db.targets().context("reading the targets")?;
    let sessions = db.sessions().context("reading the sessions")?;
    let per_session = db.trials_per_session().context("counting trials")?;
    let tasks = db.task_summaries().context("summarizing the log")?;
    let n_trials: usize = per_session.values().sum();
    if args.json {
        let out = json!({
            "db": args.db,
            "schema_version": db.schema_version().context("reading the schema version")?,
            "n_trials": n_trials,
            "targets": targets.iter().map(|(_, t)| json!({
                "target_key": t.target_key, "kind": t.kind, "name": t.name, "features": t.features,
                "threads": t.threads,
            })).collect::<Vec<_>>(),
            "sessions": sessions.iter().map(|s| json!({
                "session": s.id.0, "started_at": s.started_at, "ended_at": s.ended_at,
                "command": s.command, "seed": s.seed, "strategy": s.strategy,
                "tool_version": s.tool_version, "n_trials": per_session.get(&s.id.0).copied().unwrap_or(0),
            })).collect::<Vec<_>>(),
            "tasks": tasks.iter().map(|t| json!({
                "task_key": t.task_key, "description": t.description, "target_key": t.target_key,
                "n_trials": t.n_trials, "n_ok": t.n_ok, "best_median_s": t.best_median_s,
                "best_trace_key": t.best_trace_key,
                "best_gflops": t.best_median_s.map(|s| t.flops / s / 1e9),
            })).collect::<Vec<_>>(),
        });
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    let n_tasks = tasks.iter().map(|t| &t.task_key).collect::<std::collections::HashSet<_>>().len();
    outln!(
        text,
        "{}: {n_tasks} task(s), {} target(s), {} session(s), {n_trials} trial(s)",
        args.db.display(),
        targets.len(),
        sessions.len()
    );
    outln!(text, "targets:");
    for (_, t) in &targets {
        outln!(
            text,
            "  {}  {} {}, {} thread(s) [{}]",
            short(&t.target_key),
            t.kind,
            t.name,
            t.threads,
            t.features
        );
    }
    outln!(text, "sessions:");
    for s in &sessions {
        let ended = s.ended_at.as_deref().unwrap_or("(did not end: killed, or still running)");
        let n = per_session.get(&s.id.0).copied().unwrap_or(0);
        outln!(text, "  #{} {} → {ended}, {n} trial(s), {}: {}", s.id.0, s.started_at, s.strategy, s.command);
    }
    outln!(text, "tasks (fastest ok trial per task and target):");
    for t in &tasks {
        let best = match (t.best_median_s, &t.best_trace_key) {
            (Some(s), Some(key)) => {
                format!("best {} ({:.1} GFLOP/s), trace {}", ms(s), t.flops / s / 1e9, short(key))
            }
            _ => "no ok trial".to_string(),
        };
        outln!(
            text,
            "  {}  {} on {}: {} trial(s), {} ok, {best}",
            short(&t.task_key),
            t.description,
            short(&t.target_key),
            t.n_trials,
            t.n_ok
        );
    }
    print_quietly(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn stats_line(stats: &ImportStats) -> String {
    format!(
        "{} trial(s) added, {} already there; {} session(s), {} task(s), {} target(s) added",
        stats.trials_added,
        stats.trials_already_present,
        stats.sessions_added,
        stats.workloads_added,
        stats.targets_added
    )
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn merge(args: MergeArgs) -> Result<ExitCode> {
    if let Some(input) = args.inputs.iter().find(|i| same_file(i, &args.output)) {
        return Err(bad(format!(
            "{} is both an input and the output: merge into a new file with -o",
            input.display()
        )));
    }
    // Every input is read before the output is touched, so a bad input changes nothing.
    let inputs: Vec<Database> = args.inputs.iter().map(|p| open_existing(p)).collect::<Result<_>>()?;
    let mut out = open_db(&args.output)?;
    let mut total = ImportStats::default();
    for (path, input) in args.inputs.iter().zip(&inputs) {
        total += out.merge_from(input).with_context(|| format!("merging {}", path.display()))?;
    }
    println!("merged {} log(s) into {}: {}", inputs.len(), args.output.display(), stats_line(&total));
    Ok(ExitCode::SUCCESS)
}

fn export(args: ExportArgs) -> Result<ExitCode> {
    let db = open_existing(&args.db)?;
    let records = db.export_records().context("exporting the log")?;
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| bad(format!("cannot write {}: {e}: check -o", path.display())))?;
            let mut out = std::io::BufWriter::new(file);
            write_jsonl(&records, &mut out).with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match write_jsonl(&records, &mut out) {
                // `autotune db export LOG | head`: the reader has what it wanted.
                Err(DbError::JsonlIo { source }) if source.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.context("writing the export")?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn import(args: ImportArgs) -> Result<ExitCode> {
    let name = args.input.display().to_string();
    let mut reader: Box<dyn BufRead> = if name == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        let file = std::fs::File::open(&args.input).map_err(|e| bad(format!("cannot read {name}: {e}")))?;
        Box::new(BufReader::new(file))
    };
    let records = read_jsonl(&mut reader).map_err(|e| bad(format!("{name}: {e}")))?;
    let mut out = open_db(&args.output)?;
    let stats = out.import_records(&records).map_err(|e| bad(format!("{name}: {e}")))?;
    println!("imported {name} into {}: {}", args.output.display(), stats_line(&stats));
    Ok(ExitCode::SUCCESS)
}

fn prune(args: PruneArgs) -> Result<ExitCode> {
    // Opened for writing, but only an existing log: pruning a path that holds none is a typo.
    if !args.db.exists() {
        return Err(bad(format!("no tuning log at {}: check the path", args.db.display())));
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = size(&args.db);
    let mut db = open_db(&args.db)?;
    let stats = db.prune_keep_best(args.keep_best as usize).context("pruning the log")?;
    drop(db);
    println!(
        "pruned {}: {} trial(s) deleted, {} kept; {} KiB → {} KiB",
        args.db.display(),
        stats.trials_deleted,
        stats.trials_kept,
        before / 1024,
        size(&args.db) / 1024
    );
    Ok(ExitCode::SUCCESS)
}

/// How one tuned kernel held up.
struct Verdict {
    description: String,
    logged_s: f64,
    now_s: Option<f64>,
    default_s: Option<f64>,
    problem: Option<String>,
}

fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let db_path = args.db.clone().unwrap_or_else(|| default_db_path(&args.model));
    if !db_path.exists() {
        return Err(bad(format!("no tuning log at {}: tune first, or pass --db", db_path.display())));
    }
    let db = open_existing(&db_path)?;
    let mut graph = load(&args.model, &LoadConfig::default()).map_err(bad)?;
    let target = host_target(args.threads, &args.cpu_features)?;
    graph.lay_out(args.layout.block(&target, Some(&db))?);
    // The plan chooses each task's kernel by the runtime's own rule, so what is verified is what
    // `autotune run` would use.
    let plan = Plan::from_graph(graph, Some(&db), &target, PlanConfig::default()).map_err(bad)?;
    let measure = MeasureConfig { cold_operands: true, ..MeasureConfig::default() };
    let mut runner = worker_runner(&target, measure)?;
    let limit = 1.0 + args.tolerance;
    let mut verdicts = Vec::new();
    let (mut n_default, mut n_borrowed) = (0usize, 0usize);
    for kernel in plan.tasks() {
        let KernelSource::Tuned { median_s, trace, borrowed_from, nearest_shape, .. } = &kernel.source else {
            n_default += 1;
            continue;
        };
        if borrowed_from.is_some() || nearest_shape.is_some() {
            // Its logged time is another machine's or another shape's: nothing here to hold it to.
            n_borrowed += 1;
            continue;
        }
        let space = space_for(&kernel.task, &target).context("no schedule space")?;
        let outcomes = runner.measure_batch(&kernel.task, &[trace.clone(), space.default_trace()]);
        let (now, default) = (&outcomes[0], &outcomes[1]);
        let now_s = now.median_s();
        let default_s = default.median_s();
        let problem = match (now_s, default_s) {
            (None, _) => Some(format!("{}: {}", now.status, now.error.clone().unwrap_or_default())),
            (Some(now), _) if now > median_s * limit => {
                Some(format!("now {:.2}× its logged time", now / median_s))
            }
            (Some(now), Some(default)) if default * limit < now => {
                Some(format!("the default schedule is now {:.2}× faster", now / default))
            }
            _ => None,
        };
        verdicts.push(Verdict {
            description: kernel.task.description(),
            logged_s: *median_s,
            now_s,
            default_s,
            problem,
        });
    }
    let flagged = verdicts.iter().filter(|v| v.problem.is_some()).count();
    if args.json {
        let out = json!({
            "model": args.model, "db": db_path, "threads": args.threads, "tolerance": args.tolerance,
            "n_verified": verdicts.len(), "n_flagged": flagged, "n_default": n_default,
            "n_tuned_for_another_target": n_borrowed,
            "kernels": verdicts.iter().map(|v| json!({
                "task": v.description, "logged_median_s": v.logged_s, "median_s": v.now_s,
                "default_median_s": v.default_s, "problem": v.problem,
            })).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        println!(
            "verifying {} tuned kernel(s) of {} from {} on {}:",
            verdicts.len(),
            args.model.display(),
            db_path.display(),
            target.name()
        );
        for v in &verdicts {
            let now = v.now_s.map(ms).unwrap_or_else(|| "-".into());
            let default = v.default_s.map(ms).unwrap_or_else(|| "-".into());
            let mark = if v.problem.is_some() { "FLAGGED" } else { "ok     " };
            let why = v.problem.as_deref().map(|p| format!(": {p}")).unwrap_or_default();
            println!(
                "  {mark} {}: logged {}, now {now} (default {default}){why}",
                v.description,
                ms(v.logged_s)
            );
        }
        if n_default + n_borrowed > 0 {
            println!(
                "  not verified: {n_default} task(s) run the default schedule, {n_borrowed} run kernels tuned for another CPU"
            );
        }
    }
    if flagged > 0 {
        return Err(bad(format!(
            "{flagged} of {} tuned kernel(s) no longer hold on this machine (listed above): re-tune them into a new log, or verify again on a quiet machine",
            verdicts.len()
        )));
    }
    Ok(ExitCode::SUCCESS)
}
