//! `autotune MODEL.onnx` (the default command): tunes every task of a model into its tuning log
//! (`MODEL.tuning.db` beside the model, or `--db`) under a wall-clock budget and/or a trial cap per
//! task, with one progress bar for the whole run and a line for the task being tuned. Ctrl-C
//! finishes the batch in flight, commits it and exits 130; the same command resumes. At the end
//! (Ctrl-C included) it writes the HTML report beside the log.

use crate::args::SearchArgs;
use crate::commands::{
    cancel_on_ctrl_c, device_target, load_warm_start, open_db, record_machine_ceilings, strategy_kind,
    worker_runner,
};
use crate::error::BadInput;
use crate::run_cmd::default_db_path;
use anyhow::{anyhow, Context, Result};
use autotune_codegen::codegen_version;
use autotune_cost_model::MachineModel;
use autotune_db::Database;
use autotune_graph::{extract_tasks, load, LoadConfig};
use autotune_measure::MeasureConfig;
use autotune_schedules::{space_for, SpaceGenerator};
use autotune_search::{
    assign_shards, make_strategy, tune_model, LoopNestFeaturizer, ModelEvent, ModelProgress, ModelStopReason,
    ModelTask, ModelTuneConfig, ModelTuneSummary, SearchStrategy, TaskSchedulerConfig, TuneConfig, WarmStart,
};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Trials per task when neither `--budget` nor `--trials-per-task` is given.
const DEFAULT_TRIALS_PER_TASK: u64 = 64;

#[derive(Args, Debug, Clone)]
pub struct ModelTuneArgs {
    /// The ONNX model to tune.
    pub model: Option<PathBuf>,
    /// The tuning log [default: MODEL.tuning.db beside the model]. An existing log is resumed:
    /// no schedule is measured twice, and trial caps count what it already holds.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Wall-clock budget for the whole run, e.g. 8h, 45m, 90s, 1h30m. The run ends within 2% of
    /// it (the last batches shrink to fit).
    #[arg(long, value_parser = parse_budget)]
    pub budget: Option<Duration>,
    /// Stop tuning a task once the log holds this many of its measured schedules (the default
    /// schedule included) [default: 64 when there is no --budget].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub trials_per_task: Option<u64>,
    /// Where to write the HTML report [default: MODEL.report.html beside the model].
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Tune shard I of N (I counts from 0): a deterministic 1/N of the model's tasks, balanced
    /// by estimated tuning cost, into its own log [default: MODEL.shard-I-of-N.tuning.db]; join
    /// the N logs with `autotune db merge`. For batch schedulers: see deploy/.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Sizes to tune a symbolic input dimension for, e.g. `--dim batch=1,8 --dim seq=128,384`
    /// (repeatable): every combination is a set of tasks, tuned together. A symbolic dimension
    /// not named is 1. At run time any size runs: a tuned one with its kernels, another with the
    /// nearest tuned schedule that fits it, else the default.
    #[arg(long = "dim", value_name = "NAME=SIZES", value_parser = parse_dim)]
    pub dims: Vec<(String, Vec<usize>)>,
    #[command(flatten)]
    pub layout: crate::args::LayoutArg,
    #[command(flatten)]
    pub search: SearchArgs,
}

/// `--dim NAME=S1,S2,…`.
pub fn parse_dim(text: &str) -> Result<(String, Vec<usize>), String> {
    let bad = || format!("`{text}` is not a dimension: write NAME=SIZES, e.g. seq=128,384");
    let (name, sizes) = text.split_once('=').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad());
    }
    let sizes: Vec<usize> = sizes
        .split(',')
        .map(|v| v.trim().parse::<usize>().ok().filter(|&v| (1..=1 << 20).contains(&v)))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("`{text}`: the sizes of {name} must be whole numbers from 1 to 1048576"))?;
    Ok((name.to_string(), sizes))
}

/// Every combination of the `--dim` sizes (one empty binding without any).
fn dim_bindings(dims: &[(String, Vec<usize>)]) -> Vec<std::collections::BTreeMap<String, usize>> {
    let mut bindings = vec![std::collections::BTreeMap::new()];
    for (name, sizes) in dims {
        bindings = bindings
            .into_iter()
            .flat_map(|b| {
                sizes.iter().map(move |&size| {
                    let mut b = b.clone();
                    b.insert(name.clone(), size);
                    b
                })
            })
            .collect();
    }
    bindings
}

/// The model loaded for every `--dim` binding, and their tasks with the weights summed (a task
/// that occurs at several sizes, like a weight-only one, is tuned once).
fn load_for_dims(
    model: &std::path::Path,
    dims: &[(String, Vec<usize>)],
    channel_block: usize,
) -> Result<(autotune_graph::Graph, Vec<(autotune_ir::Task, usize)>)> {
    let bad = |e: String| anyhow!(BadInput(e));
    let mut first: Option<autotune_graph::Graph> = None;
    let mut tasks: Vec<(autotune_ir::Task, usize)> = Vec::new();
    let mut index: std::collections::HashMap<autotune_ir::TaskKey, usize> = std::collections::HashMap::new();
    for binding in dim_bindings(dims) {
        // An unsupported node does not cost the user the night: the rest is tuned, and `run`
        // (which loads strictly) names the node.
        let config = LoadConfig { skip_unsupported: true, dims: binding.clone(), ..LoadConfig::default() };
        let mut graph = load(model, &config).map_err(|e| {
            let at = binding.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
            bad(if at.is_empty() { e.to_string() } else { format!("at {at}: {e}") })
        })?;
        if let Some(unknown) = binding.keys().find(|k| !graph.symbolic_dims.contains_key(*k)) {
            let known: Vec<&str> = graph.symbolic_dims.keys().map(String::as_str).collect();
            return Err(bad(format!(
                "--dim {unknown}: {} has no symbolic input dimension of that name ({})",
                model.display(),
                if known.is_empty() {
                    "it has none".to_string()
                } else {
                    format!("it has {}", known.join(", "))
                }
            )));
        }
        graph.lay_out(channel_block);
        for (task, weight) in extract_tasks(&graph) {
            match index.entry(task.key()) {
                std::collections::hash_map::Entry::Occupied(at) => tasks[*at.get()].1 += weight,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(tasks.len());
                    tasks.push((task, weight));
                }
            }
        }
        first.get_or_insert(graph);
    }
    Ok((first.expect("at least one binding"), tasks))
}

/// `--shard I/N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    fn suffix(self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

pub fn parse_shard(text: &str) -> Result<Shard, String> {
    let bad = || format!("`{text}` is not a shard: write I/N, e.g. 0/4 for the first of four");
    let (index, count) = text.split_once('/').ok_or_else(bad)?;
    let (index, count): (usize, usize) =
        (index.trim().parse().map_err(|_| bad())?, count.trim().parse().map_err(|_| bad())?);
    if count == 0 || count > 10_000 {
        return Err(format!("`{text}`: the number of shards must be between 1 and 10000"));
    }
    if index >= count {
        return Err(format!("`{text}`: shards count from 0, so the index must be below {count}"));
    }
    Ok(Shard { index, count })
}

/// `8h`, `45m`, `90s`, `1h30m`, `2.5h`, or plain seconds.
pub fn parse_budget(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration: write e.g. 8h, 45m, 90s or 1h30m");
    let mut total_s = 0.0;
    let mut number = String::new();
    let mut saw_unit = false;
    for c in text.trim().chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'h' | 'm' | 's' => {
                let value: f64 = number.parse().map_err(|_| bad())?;
                total_s += value
                    * match c {
                        'h' => 3600.0,
                        'm' => 60.0,
                        _ => 1.0,
                    };
                number.clear();
                saw_unit = true;
            }
            _ => return Err(bad()),
        }
    }
    if !number.is_empty() {
        if saw_unit {
            return Err(bad());
        }
        total_s = number.parse().map_err(|_| bad())?;
    }
    if !(total_s.is_finite() && total_s > 0.0) {
        return Err(format!("--budget must be positive, got `{text}`"));
    }
    Ok(Duration::from_secs_f64(total_s))
}

/// Time kept back from the budget for writing the report at the end.
fn report_reserve(budget: Duration) -> Duration {
    // What follows the deadline (ending the sessions, the report, stopping the worker) must fit
    // in the 2 % the budget allows; 0.2 s of a 30 s budget left too little on a loaded 2-core
    // machine (a run ended at 30.93 s).
    Duration::from_secs_f64((budget.as_secs_f64() * 0.01).clamp(0.5, 10.0))
}

pub fn tune_model_cmd(args: ModelTuneArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let Some(model) = args.model.clone() else {
        return Err(anyhow!(BadInput(
            "no model given: run `autotune MODEL.onnx` to tune a model, or see `autotune --help`".into()
        )));
    };
    let target = device_target(&args.search.device, args.search.threads, &args.search.cpu_features)?;
    // A log being resumed keeps the layout it was tuned in (unless the user says otherwise).
    let log_path = match args.shard {
        Some(shard) => args.db.clone().unwrap_or_else(|| shard_db_path(&model, shard)),
        None => args.db.clone().unwrap_or_else(|| default_db_path(&model)),
    };
    let existing = log_path.exists().then(|| autotune_db::Database::open_read_only(&log_path).ok()).flatten();
    let block = args.layout.block(&target, existing.as_ref())?;
    drop(existing);
    let (graph, mut extracted) = load_for_dims(&model, &args.dims, block)?;
    let n_model_tasks = extracted.len();
    if let Some(shard) = args.shard {
        let tasks: Vec<autotune_ir::Task> = extracted.iter().map(|(t, _)| t.clone()).collect();
        let shard_of = assign_shards(&tasks, shard.count);
        extracted =
            extracted.into_iter().zip(shard_of).filter(|(_, s)| *s == shard.index).map(|(t, _)| t).collect();
    }
    if extracted.is_empty() && n_model_tasks > 0 {
        // A job array may have more shards than the model has tasks: the extra ones leave an
        // empty log (so a merge of every shard's log finds them all) and succeed.
        let shard = args.shard.expect("only a shard can be empty");
        let db_path = args.db.clone().unwrap_or_else(|| shard_db_path(&model, shard));
        open_db(&db_path)?;
        println!(
            "autotune: shard {}/{} of {} has none of its {n_model_tasks} task(s): nothing to tune ({} is empty)",
            shard.index,
            shard.count,
            model.display(),
            db_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if extracted.is_empty() {
        let why = match graph.skipped.first() {
            Some(first) => format!(
                " it can tune; {} node(s) are unsupported, first {}",
                graph.skipped.len(),
                first.reason
            ),
            None => " autotune tunes (conv, matmul, dense, pooling)".to_string(),
        };
        return Err(anyhow!(BadInput(format!("{} has no operator{why}: nothing to do", model.display()))));
    }
    if !args.search.json {
        print_skipped_nodes(&graph.skipped);
    }
    let db_path = match args.shard {
        Some(shard) => args.db.clone().unwrap_or_else(|| shard_db_path(&model, shard)),
        None => args.db.clone().unwrap_or_else(|| default_db_path(&model)),
    };
    let report_path = match args.shard {
        Some(shard) => args
            .report
            .clone()
            .unwrap_or_else(|| model.with_extension(format!("{}.report.html", shard.suffix()))),
        None => args.report.clone().unwrap_or_else(|| model.with_extension("report.html")),
    };
    if let (Some(shard), false) = (args.shard, args.search.json) {
        println!(
            "autotune: shard {}/{}: tuning {} of the model's {n_model_tasks} task(s) into {}",
            shard.index,
            shard.count,
            extracted.len(),
            db_path.display()
        );
    }
    // Found out now, not after a night of tuning.
    check_report_path(&report_path)?;
    let mut db = open_db(&db_path)?;

    let mut spaces: Vec<(autotune_ir::Task, f64, Box<dyn SpaceGenerator>)> = Vec::new();
    for (task, weight) in extracted {
        match space_for(&task, &target) {
            Ok(space) => spaces.push((task, weight as f64, space)),
            Err(e) if !args.search.json => eprintln!("autotune: not tuning {}: {e}", task.description()),
            Err(_) => {}
        }
    }
    let tasks: Vec<ModelTask> = spaces
        .iter()
        .map(|(task, weight, space)| ModelTask { task: task.clone(), weight: *weight, space: space.as_ref() })
        .collect();

    let trials_per_task = match (args.trials_per_task, args.budget) {
        (Some(n), _) => Some(n as usize),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TRIALS_PER_TASK as usize),
    };
    let deadline = args.budget.map(|budget| started + budget.saturating_sub(report_reserve(budget)));
    let config = ModelTuneConfig {
        trials_per_task,
        deadline,
        tune: TuneConfig {
            batch_size: args.search.batch_size as usize,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            ..TuneConfig::new(0, args.search.seed, codegen_version(&target))
        },
        scheduler: TaskSchedulerConfig { seed: args.search.seed, ..TaskSchedulerConfig::default() },
    };

    let cancel = cancel_on_ctrl_c();

    // In the model a layer's weights come from memory (the whole model's do not fit in the
    // caches): time them that way, so the winners are the winners in the model.
    let measure =
        MeasureConfig { timeout_s: args.search.timeout_s, cold_operands: true, ..MeasureConfig::default() };
    let mut runner = worker_runner(&target, measure)?;
    record_machine_ceilings(&mut db, &target, args.search.json)?;

    let machine = MachineModel::for_target(&target);
    let mut warm_start_error: Option<anyhow::Error> = None;
    let mut make = |i: usize, db: &Database| -> Box<dyn SearchStrategy + '_> {
        let task = &tasks[i];
        let warm =
            match load_warm_start(&task.task, &target, task.space, machine, db, &args.search.warm_start) {
                Ok(warm) => warm,
                Err(e) => {
                    warm_start_error.get_or_insert(e);
                    WarmStart::default()
                }
            };
        let featurizer = Box::new(LoopNestFeaturizer::new(task.space, machine));
        make_strategy(
            strategy_kind(args.search.strategy),
            task.space,
            featurizer,
            args.search.seed ^ i as u64,
            warm,
        )
    };

    let ui = ProgressUi::new(&tasks, &args, trials_per_task, started);
    let summary = tune_model(&tasks, &mut make, &mut runner, &mut db, &config, &cancel, &mut |event| {
        ui.on_event(event)
    });
    ui.finish();
    if let Some(error) = warm_start_error {
        return Err(error);
    }
    let summary = summary.context("tuning failed")?;

    let report = write_report(&db, &db_path, &report_path, &model, &tasks);
    let elapsed = started.elapsed();
    if args.search.json {
        let mut json =
            summary_json(&model, &db_path, &report_path, &tasks, &summary, elapsed, runner.n_restarts());
        if let Some(shard) = args.shard {
            json["shard"] =
                json!({"index": shard.index, "count": shard.count, "n_model_tasks": n_model_tasks});
        }
        json["skipped_nodes"] = graph
            .skipped
            .iter()
            .map(|s| json!({"node": s.node.name, "op": s.node.op_type, "reason": s.reason}))
            .collect();
        println!("{json}");
    } else {
        print_summary(&model, &db_path, &tasks, &summary, elapsed, &args.search, runner.n_restarts());
        if !graph.skipped.is_empty() {
            println!(
                "  not tuned: {} unsupported node(s), listed above; `autotune run` refuses this model until they are supported",
                graph.skipped.len()
            );
        }
    }
    match report {
        Ok(()) if !args.search.json => println!("  report: {}", report_path.display()),
        Ok(()) => {}
        Err(e) => eprintln!("autotune: {}", crate::error::one_line(&e)),
    }
    Ok(if summary.stopped == ModelStopReason::Cancelled { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

/// The log of one shard: `MODEL.shard-I-of-N.tuning.db` beside the model.
pub fn shard_db_path(model: &Path, shard: Shard) -> PathBuf {
    model.with_extension(format!("{}.tuning.db", shard.suffix()))
}

/// One line per node a partial load left out (the first few, then a count), so the user knows
/// which part of the model the night's tuning does not cover.
fn print_skipped_nodes(skipped: &[autotune_graph::SkippedNode]) {
    const SHOWN: usize = 10;
    for s in skipped.iter().take(SHOWN) {
        eprintln!("autotune: not tuning {}", s.reason);
    }
    if skipped.len() > SHOWN {
        eprintln!("autotune: … and {} more unsupported node(s)", skipped.len() - SHOWN);
    }
}

/// The report can be written where asked: its folder exists and is not read-only.
pub(crate) fn check_report_path(report_path: &Path) -> Result<()> {
    let folder = match report_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let problem = if report_path.is_dir() {
        Some("it is a directory".to_string())
    } else if !folder.is_dir() {
        Some(format!("directory {} does not exist", folder.display()))
    } else if std::fs::metadata(folder).is_ok_and(|m| m.permissions().readonly()) {
        Some(format!("directory {} is read-only", folder.display()))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(anyhow!(BadInput(format!(
            "cannot write the report to {}: {problem}: check --report",
            report_path.display()
        )))),
        None => Ok(()),
    }
}

/// The log's report, its tasks weighed by the model's calls per run of each.
fn write_report(
    db: &Database,
    db_path: &Path,
    report_path: &Path,
    model: &Path,
    tasks: &[ModelTask],
) -> Result<()> {
    let source = db_path
        .file_name()
        .map_or_else(|| db_path.display().to_string(), |name| name.to_string_lossy().into_owned());
    let calls = tasks.iter().map(|t| (t.task.key().0, t.weight)).collect();
    let html = autotune_reports::render(db, &source, Some((&model.display().to_string(), &calls)), None)
        .context("cannot make the report")?;
    std::fs::write(report_path, html)
        .map_err(|e| anyhow!("cannot write the report to {}: {e}: check --report", report_path.display()))
}

/// The whole-run bar and the active task's line.
struct ProgressUi {
    _multi: MultiProgress,
    run: ProgressBar,
    task: ProgressBar,
    descriptions: Vec<String>,
    weights: Vec<f64>,
    n_tasks: usize,
    budget: Option<Duration>,
    started: Instant,
}

impl ProgressUi {
    fn new(
        tasks: &[ModelTask],
        args: &ModelTuneArgs,
        trials_per_task: Option<usize>,
        started: Instant,
    ) -> Self {
        let multi = MultiProgress::new();
        if args.search.json {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        // With a budget the bar is time; otherwise it is trials towards every task's cap.
        let length = match (args.budget, trials_per_task) {
            (Some(budget), _) => budget.as_secs().max(1),
            (None, Some(cap)) => (cap * tasks.len()) as u64,
            (None, None) => 1,
        };
        let run = multi.add(ProgressBar::new(length));
        let template = if args.budget.is_some() {
            "[{elapsed_precise}] {bar:30} {percent:>3}% of budget  {msg}"
        } else {
            "[{elapsed_precise}] {bar:30} {pos}/{len} trials  {msg}"
        };
        run.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let task = multi.add(ProgressBar::new_spinner());
        task.set_style(
            ProgressStyle::with_template("  {spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        run.set_message("measuring the default schedules");
        ProgressUi {
            _multi: multi,
            run,
            task,
            descriptions: tasks.iter().map(|t| t.task.description()).collect(),
            weights: tasks.iter().map(|t| t.weight).collect(),
            n_tasks: tasks.len(),
            budget: args.budget,
            started,
        }
    }

    fn on_event(&self, event: &ModelEvent) {
        if let Some(budget) = self.budget {
            self.run.set_position(self.started.elapsed().as_secs().min(budget.as_secs()));
        }
        match event {
            ModelEvent::MeasuringDefault { task_idx, .. } => {
                self.task.set_message(format!("{}: default schedule", self.task_name(*task_idx)));
                self.task.tick();
            }
            ModelEvent::BatchStarted { task_idx, n, .. } => {
                self.task.set_message(format!("{}: measuring {n}", self.task_name(*task_idx)));
                self.task.tick();
            }
            ModelEvent::Confirming { task_idx, .. } => {
                self.task.set_message(format!("{}: timing the leaders again", self.task_name(*task_idx)));
                self.task.tick();
            }
            ModelEvent::BatchDone(progress) => {
                if self.budget.is_none() {
                    let done: usize = progress
                        .tasks
                        .iter()
                        .map(|t| {
                            t.trials_in_log.min(self.run.length().unwrap_or(0) as usize / self.n_tasks.max(1))
                        })
                        .sum();
                    self.run.set_position(done as u64);
                }
                let left = self.budget.map_or(String::new(), |budget| {
                    let left_s = budget.saturating_sub(self.started.elapsed()).as_secs();
                    format!("{}h{:02}m{:02}s left, ", left_s / 3600, left_s / 60 % 60, left_s % 60)
                });
                self.run.set_message(format!("{left}{}", latency_line(progress)));
                let t = &progress.tasks[progress.task_idx];
                let speedup = match (t.best_latency_s, t.default_latency_s) {
                    (Some(best), Some(default)) => format!(", {:.2}x its default", default / best),
                    _ => String::new(),
                };
                let best =
                    t.best_latency_s.map_or("no valid kernel yet".to_string(), |l| format!("best {}", ms(l)));
                self.task.set_message(format!(
                    "{}: {} trials, {best}{speedup}",
                    self.task_name(progress.task_idx),
                    t.trials_in_log
                ));
            }
        }
    }

    fn task_name(&self, i: usize) -> String {
        format!("task {}/{} (x{}) {}", i + 1, self.n_tasks, self.weights[i], self.descriptions[i])
    }

    fn finish(&self) {
        self.task.finish_and_clear();
        self.run.finish_and_clear();
    }
}

fn ms(seconds: f64) -> String {
    format!("{:.3} ms", seconds * 1e3)
}

/// "model ≈ 41.2 ms now vs 77.0 ms untuned (1.87x), 3 errors".
fn latency_line(progress: &ModelProgress) -> String {
    let errors = format!("{} trials this run, {} errors", progress.trials_this_run, progress.errors_this_run);
    match (progress.tuned_latency_s(), progress.untuned_latency_s()) {
        (Some(now), Some(untuned)) => {
            format!("kernels {} now vs {} untuned ({:.2}x), {errors}", ms(now), ms(untuned), untuned / now)
        }
        (Some(now), None) => format!("kernels {} now, {errors}", ms(now)),
        _ => errors,
    }
}

fn stop_text(reason: ModelStopReason) -> &'static str {
    match reason {
        ModelStopReason::TrialsDone => "every task has its trials",
        ModelStopReason::Deadline => "the budget is spent",
        ModelStopReason::Cancelled => "interrupted: run the same command again to resume",
        ModelStopReason::SpacesExhausted => "every schedule of every task has been measured",
    }
}

fn print_summary(
    model: &Path,
    db_path: &Path,
    tasks: &[ModelTask],
    summary: &ModelTuneSummary,
    elapsed: Duration,
    search: &SearchArgs,
    n_restarts: usize,
) {
    let (device, threads) = (&search.device, search.threads);
    let progress = &summary.progress;
    let n_tuned = summary.best.iter().filter(|b| b.is_some()).count();
    let on = match device {
        crate::args::Device::Cpu => format!("cpu, {threads} thread(s)"),
        gpu => gpu.to_string(),
    };
    println!(
        "{}: {} tasks, {} with a valid kernel, {on}; {} trials this run ({} errors) in {:.1} s",
        model.display(),
        tasks.len(),
        n_tuned,
        progress.trials_this_run,
        progress.errors_this_run,
        elapsed.as_secs_f64()
    );
    println!("  {}", latency_line(progress));
    println!(
        "  {:.1} s searching (models and proposals), {:.1} s measuring; {}",
        summary.search_time_s,
        summary.measure_time_s,
        stop_text(summary.stopped)
    );
    if n_restarts > 0 {
        println!("  measurement worker restarted {n_restarts} time(s) after a crash or timeout");
    }
    println!("  tuning log: {}", db_path.display());
    let run_on = match device {
        crate::args::Device::Cpu => format!("--threads {threads}"),
        gpu => format!("--device {gpu}"),
    };
    println!("  run it: autotune run {} --db {} {run_on}", model.display(), db_path.display());
}

fn summary_json(
    model: &Path,
    db_path: &Path,
    report_path: &Path,
    tasks: &[ModelTask],
    summary: &ModelTuneSummary,
    elapsed: Duration,
    n_restarts: usize,
) -> serde_json::Value {
    let progress = &summary.progress;
    let rows: Vec<serde_json::Value> = tasks
        .iter()
        .zip(&progress.tasks)
        .zip(&summary.best)
        .map(|((task, state), best)| {
            json!({
                "key": task.task.key().0,
                "description": task.task.description(),
                "weight": task.weight,
                "trials_in_log": state.trials_in_log,
                "trials_this_run": state.trials_this_run,
                "best_latency_s": best.as_ref().map(|b| b.median_s),
                "best_gflops": best.as_ref().map(|b| b.gflops),
                "default_latency_s": state.default_latency_s,
                "space_exhausted": state.exhausted,
            })
        })
        .collect();
    json!({
        "model": model.display().to_string(),
        "db": db_path.display().to_string(),
        "report": report_path.display().to_string(),
        "n_tasks": tasks.len(),
        "trials_this_run": progress.trials_this_run,
        "errors_this_run": progress.errors_this_run,
        "stopped": match summary.stopped {
            ModelStopReason::TrialsDone => "trials_done",
            ModelStopReason::Deadline => "budget",
            ModelStopReason::Cancelled => "cancelled",
            ModelStopReason::SpacesExhausted => "spaces_exhausted",
        },
        "elapsed_s": elapsed.as_secs_f64(),
        "search_time_s": summary.search_time_s,
        "measure_time_s": summary.measure_time_s,
        "kernels_latency_tuned_s": progress.tuned_latency_s(),
        "kernels_latency_untuned_s": progress.untuned_latency_s(),
        "worker_restarts": n_restarts,
        "tasks": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_in_hours_minutes_and_seconds() {
        assert_eq!(parse_budget("8h"), Ok(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_budget("45m"), Ok(Duration::from_secs(45 * 60)));
        assert_eq!(parse_budget("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_budget("2.5h"), Ok(Duration::from_secs(9000)));
        assert_eq!(parse_budget("90"), Ok(Duration::from_secs(90)));
        for bad in ["", "0s", "8x", "h", "1h30", "-5m"] {
            assert!(parse_budget(bad).is_err(), "{bad}");
        }
    }
}
