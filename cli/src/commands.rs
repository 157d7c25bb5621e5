//! The commands: `op` (tune one operator instance), `best` (re-measure the winner) and `report`
//! (the HTML report of a tuning log).

use crate::args::{
    BatchMatmulArgs, BestArgs, Cli, Command, Conv2dArgs, CpuFeaturesArg, DenseArgs, Device, MatmulArgs,
    OpCommand, PoolArgs, PoolKindArg, ReportArgs, StrategyArg, TuneArgs,
};
use crate::error::BadInput;
use anyhow::{anyhow, Context, Result};
use autotune_codegen::{codegen_version, host_cpu_target, slow_isa_warning};
use autotune_cost_model::MachineModel;
use autotune_db::{Database, MachineMeasurementKind, NewMachineMeasurement, TargetSpec, TrialRecord};
use autotune_ir::{BatchMatmulSpec, Conv2dSpec, Op, Pool2dSpec, PoolKind, Target, Task, Trace, TrialStatus};
use autotune_measure::{
    probe_bandwidth_gbs, probe_peak_gflops, GpuBackend, MachineProbeConfig, MeasureConfig, Runner,
    WorkerConfig, WorkerRunner,
};
use autotune_schedules::space_for;
use autotune_schedules::SpaceGenerator;
use autotune_search::{
    make_strategy, measure_default_schedule, tune, warm_start_from_log, LoopNestFeaturizer, Progress,
    StopReason, StrategyKind, TuneConfig, TuneSummary, WarmStart, WarmStartConfig,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub fn run(cli: Cli) -> Result<ExitCode> {
    let Some(command) = cli.command else {
        return crate::tune_model_cmd::tune_model_cmd(cli.tune_model);
    };
    match command {
        Command::Tune(args) => crate::tune_model_cmd::tune_model_cmd(args),
        Command::Op(op) => {
            let (task, tune_args) = op_task(op)?;
            tune_task(task, tune_args)
        }
        Command::Best(args) => best(args),
        Command::Report(args) => report(args),
        Command::Tasks(args) => crate::tasks_cmd::tasks(args),
        Command::Run(args) => crate::run_cmd::run(args),
        Command::Db(command) => crate::db_cmd::run(command),
    }
}

/// The target `--device` names: this CPU (narrowed to `--cpu-features`), or CUDA device N
/// described by its driver. No driver or no such device is the user's to fix: one line, exit 1.
pub(crate) fn device_target(device: &Device, threads: u32, features: &CpuFeaturesArg) -> Result<Target> {
    match device {
        Device::Cpu => host_target(threads, features),
        Device::Cuda(ordinal) => autotune_codegen::cuda::cuda_target(*ordinal)
            .map_err(|e| anyhow!(BadInput(format!("--device cuda:{ordinal}: {e}")))),
    }
}

/// This CPU, narrowed to `--cpu-features` where given; says on stderr when its kernels will be
/// slow (no SSE4.2 or wider).
pub(crate) fn host_target(threads: u32, features: &CpuFeaturesArg) -> Result<Target> {
    let host = host_cpu_target(threads).context("cannot describe this machine's CPU")?;
    let target = match (features.level, &host) {
        (None, _) => host,
        (Some(level), Target::Cpu(cpu)) => Target::Cpu(cpu.restricted(level).map_err(|e| {
            anyhow!(BadInput(format!("--cpu-features {level}: {e}; name a level this CPU has")))
        })?),
        (Some(_), Target::Cuda(_)) => return Err(anyhow!("the host CPU was described as a GPU")),
    };
    if let Some(warning) = slow_isa_warning(&target) {
        eprintln!("autotune: warning: {warning}");
    }
    Ok(target)
}

pub(crate) fn open_db(path: &std::path::Path) -> Result<Database> {
    Database::open(path).map_err(|e| anyhow!(BadInput(format!("{e}"))))
}

pub(crate) fn worker_runner(target: &Target, measure: MeasureConfig) -> Result<WorkerRunner> {
    let program = std::env::current_exe().context("cannot find the autotune executable to start workers")?;
    let config = WorkerConfig {
        program,
        args: vec![crate::WORKER_ARG.to_string()],
        measure,
        build_timeout_s: 300.0,
        // A CUDA target's candidates run on its own device (`--device cuda:N`).
        gpu_backend: GpuBackend::Cuda,
    };
    Ok(WorkerRunner::new(target, config)?)
}

/// The task an `autotune op …` command describes, validated.
fn op_task(op: OpCommand) -> Result<(Task, TuneArgs)> {
    let (task, args) = match op {
        OpCommand::Matmul(MatmulArgs { shape, tune }) => (Task::matmul(shape.m, shape.n, shape.k), tune),
        OpCommand::Conv2d(Conv2dArgs { input, weight, stride, pad, dilation, groups, epilogue, tune }) => {
            let spec = Conv2dSpec {
                n: input[0],
                c: input[1],
                h: input[2],
                w: input[3],
                o: weight[0],
                kh: weight[2],
                kw: weight[3],
                stride,
                pad,
                dilation,
                groups,
            };
            if groups > 0 && input[1] % groups == 0 && weight[1] != input[1] / groups {
                return Err(anyhow!(BadInput(format!(
                    "--weight {}x{}x{}x{} does not match the input's {} channels in {groups} group(s): the second \
                     dimension must be {}",
                    weight[0], weight[1], weight[2], weight[3], input[1], input[1] / groups
                ))));
            }
            (Task::new(Op::Conv2d(spec), epilogue.0), tune)
        }
        OpCommand::Dense(DenseArgs { shape, weights_kn, trans_a, epilogue, tune }) => {
            let spec = BatchMatmulSpec {
                batch: 1,
                m: shape.m,
                n: shape.n,
                k: shape.k,
                trans_a,
                trans_b: !weights_kn,
                a_broadcast: false,
                b_broadcast: true,
                b_constant: true,
            };
            (Task::new(Op::BatchMatmul(spec), epilogue.0), tune)
        }
        OpCommand::BatchMatmul(BatchMatmulArgs {
            shape,
            trans_a,
            trans_b,
            shared_a,
            shared_b,
            epilogue,
            tune,
        }) => {
            let spec = BatchMatmulSpec {
                batch: shape[0],
                m: shape[1],
                n: shape[2],
                k: shape[3],
                trans_a,
                trans_b,
                a_broadcast: shared_a,
                b_broadcast: shared_b,
                b_constant: false,
            };
            (Task::new(Op::BatchMatmul(spec), epilogue.0), tune)
        }
        OpCommand::Pool(PoolArgs {
            kind,
            input,
            kernel,
            stride,
            pad,
            dilation,
            ceil_mode,
            count_include_pad,
            tune,
        }) => {
            let global = kind == PoolKindArg::GlobalAvg;
            let spec = Pool2dSpec {
                kind: if kind == PoolKindArg::Max { PoolKind::Max } else { PoolKind::Avg },
                n: input[0],
                c: input[1],
                h: input[2],
                w: input[3],
                kh: if global { input[2] } else { kernel[0] },
                kw: if global { input[3] } else { kernel[1] },
                stride: if global { [1, 1] } else { stride },
                pad: if global { [0; 4] } else { pad },
                dilation: if global { [1, 1] } else { dilation },
                ceil_mode: ceil_mode && !global,
                count_include_pad,
            };
            (Task::new(Op::Pool2d(spec), vec![]), tune)
        }
    };
    task.validate().map_err(|e| anyhow!(BadInput(format!("{}: {e}", task.description()))))?;
    Ok((task, args))
}

fn tune_task(task: Task, args: TuneArgs) -> Result<ExitCode> {
    let target = device_target(&args.search.device, args.search.threads, &args.search.cpu_features)?;
    let mut db = open_db(&args.db)?;
    let space = space_for(&task, &target).context("no schedule space")?;
    let measure = MeasureConfig { timeout_s: args.search.timeout_s, ..MeasureConfig::default() };
    let mut runner = worker_runner(&target, measure)?;
    let machine = MachineModel::for_target(&target);
    let warm_start = load_warm_start(&task, &target, space.as_ref(), machine, &db, &args.search.warm_start)?;
    let featurizer = Box::new(LoopNestFeaturizer::new(space.as_ref(), machine));
    let mut strategy = make_strategy(
        strategy_kind(args.search.strategy),
        space.as_ref(),
        featurizer,
        args.search.seed,
        warm_start,
    );
    let config = TuneConfig {
        batch_size: args.search.batch_size as usize,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ..TuneConfig::new(args.trials as usize, args.search.seed, codegen_version(&target))
    };

    let cancel = cancel_on_ctrl_c();

    // What a report compares the tuned kernel with: the default schedule (measured once per
    // workload and target, in a session of its own) and the machine's ceilings (once per target).
    measure_default_schedule(&task, space.as_ref(), &mut runner, &mut db, &config, &cancel)
        .context("measuring the default schedule failed")?;
    if !cancel.load(Ordering::SeqCst) {
        record_machine_ceilings(&mut db, &target, args.search.json)?;
    }

    let bar = if args.search.json { ProgressBar::hidden() } else { ProgressBar::new(args.trials) };
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
        tune(&task, space.as_ref(), strategy.as_mut(), &mut runner, &mut db, &config, &cancel, &mut on_batch)
            .context("tuning failed")?;
    bar.finish_and_clear();

    if args.search.json {
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

/// A flag set by the first Ctrl-C: the run finishes and commits the batch in flight, then stops.
/// A second Ctrl-C while it finishes means "now": the log keeps every committed batch.
pub(crate) fn cancel_on_ctrl_c() -> Arc<AtomicBool> {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nautotune: stopping after the batch in flight (Ctrl-C again to stop now)");
    });
    cancel
}

pub(crate) fn strategy_kind(arg: StrategyArg) -> StrategyKind {
    match arg {
        StrategyArg::Auto => StrategyKind::Auto,
        StrategyArg::Bo => StrategyKind::Bo,
        StrategyArg::Evolutionary => StrategyKind::Evolutionary,
        StrategyArg::Random => StrategyKind::Random,
    }
}

/// What the search starts from besides this task's own trials: other shapes of the operator in
/// the log being tuned, and this operator's trials (any shape) in each `--warm-start` log.
pub(crate) fn load_warm_start(
    task: &Task,
    target: &Target,
    space: &dyn SpaceGenerator,
    machine: MachineModel,
    db: &Database,
    paths: &[PathBuf],
) -> Result<WarmStart> {
    let mut warm = warm_start_from_log(
        db,
        task,
        target,
        space,
        codegen_version(target),
        machine,
        &WarmStartConfig::default(),
    )
    .context("reading other shapes from the tuning log")?;
    let other_logs = WarmStartConfig { include_same_task: true, ..WarmStartConfig::default() };
    for path in paths {
        if !path.exists() {
            return Err(anyhow!(BadInput(format!("--warm-start {}: no such file", path.display()))));
        }
        let log = Database::open_read_only(path)
            .map_err(|e| anyhow!(BadInput(format!("--warm-start {}: {e}", path.display()))))?;
        let more =
            warm_start_from_log(&log, task, target, space, codegen_version(target), machine, &other_logs)
                .with_context(|| format!("reading the warm start from {}", path.display()))?;
        warm.extend(more);
    }
    Ok(warm)
}

/// Measures this machine's fp32 peak and memory bandwidth for `target` unless the log holds them
/// already. A probe that cannot run here (no FMA unit) is skipped with a note; a report then says
/// "not measured".
pub(crate) fn record_machine_ceilings(db: &mut Database, target: &Target, quiet: bool) -> Result<()> {
    let target_key = target.key();
    db.upsert_target(&TargetSpec::of(target)).context("recording the target")?;
    if target.as_cuda().is_some() {
        // The probes measure this CPU; a GPU's ceilings are left missing (the report says so)
        // until a GPU probe exists, rather than estimated from its data sheet.
        return Ok(());
    }
    let stored = db.machine_measurements(&target_key).context("reading the machine measurements")?;
    let config = MachineProbeConfig::new(target.threads() as usize);
    for kind in MachineMeasurementKind::ALL {
        if stored.iter().any(|measurement| measurement.kind == kind) {
            continue;
        }
        let probe = match kind {
            MachineMeasurementKind::PeakGflops => probe_peak_gflops(&config),
            MachineMeasurementKind::BandwidthGbs => probe_bandwidth_gbs(&config),
        };
        match probe {
            Ok(result) => {
                let measurement = NewMachineMeasurement { kind, value: result.value, method: result.method };
                db.record_machine_measurement(&target_key, &measurement)
                    .context("recording a machine measurement")?;
            }
            Err(error) if !quiet => eprintln!("autotune: {} not measured: {error}", kind.as_str()),
            Err(_) => {}
        }
    }
    Ok(())
}

fn tune_json(task: &Task, args: &TuneArgs, summary: &TuneSummary) -> serde_json::Value {
    let trials: Vec<serde_json::Value> = summary
        .trials
        .iter()
        .map(|t| json!({"index": t.index, "gflops": t.gflops, "status": t.outcome.status.as_str()}))
        .collect();
    json!({
        "task": task.description(),
        "device": args.search.device.to_string(),
        "threads": args.search.threads,
        "best_gflops": summary.best.as_ref().map(|b| b.gflops),
        "best_latency_s": summary.best.as_ref().map(|b| b.median_s),
        "best_trace": summary.best.as_ref().map(|b| &b.trace),
        "n_trials": summary.trials.len(),
        "n_errors": summary.n_errors,
        "trials": trials,
        "strategy": strategy_kind(args.search.strategy).name(),
        "search_time_s": summary.search_time_s,
        "measure_time_s": summary.measure_time_s,
    })
}

fn print_summary(task: &Task, args: &TuneArgs, summary: &TuneSummary, n_restarts: usize) {
    let mut by_status: BTreeMap<TrialStatus, usize> = BTreeMap::new();
    for t in &summary.trials {
        *by_status.entry(t.outcome.status).or_default() += 1;
    }
    let counts: Vec<String> = by_status.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!("{} on cpu, {} thread(s)", task.description(), args.search.threads);
    println!("  this session: {} trials ({})", summary.trials.len(), counts.join(", "));
    println!(
        "  strategy {}: {:.1} s searching (model and proposals), {:.1} s measuring",
        strategy_kind(args.search.strategy).name(),
        summary.search_time_s,
        summary.measure_time_s
    );
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
    let target = device_target(&args.device, args.threads, &args.cpu_features)?;
    if !args.db.exists() {
        return Err(anyhow!(BadInput(format!(
            "no tuning log at {}: tune first with `autotune op …`",
            args.db.display()
        ))));
    }
    let db = Database::open_read_only(&args.db).map_err(|e| anyhow!(BadInput(e.to_string())))?;
    let task = match (args.op, args.shape) {
        (Some(crate::args::OpName::Matmul), Some(shape)) => Task::matmul(shape.m, shape.n, shape.k),
        _ => {
            let workloads = db.workloads().context("reading the tuning log")?;
            match workloads.as_slice() {
                [(_, only)] => serde_json::from_str::<Task>(&only.task_json)
                    .with_context(|| format!("unreadable task in {}", args.db.display()))?,
                _ => {
                    return Err(anyhow!(BadInput(format!(
                        "{} holds {} tasks: name one with --op matmul --shape MxNxK",
                        args.db.display(),
                        workloads.len()
                    ))))
                }
            }
        }
    };
    let space = space_for(&task, &target).context("no schedule space")?;
    let replayable = |t: &&TrialRecord| t.is_comparable(space.version(), codegen_version(&target));
    let traces: Vec<(String, Trace)> = if args.default_schedule {
        let default = space.default_trace();
        vec![(default.key(), default)]
    } else if args.trace_keys.is_empty() {
        let winners = db.best(&task.key().0, &target.key(), 64).context("reading the tuning log")?;
        let winner = winners
            .iter()
            .filter(replayable)
            .find_map(|t| Some((t.trace_key.clone(), Trace::from_json(&t.trace_json).ok()?)))
            .ok_or_else(|| {
                anyhow!(BadInput(format!(
                    "{} holds no valid kernel for {} on this CPU with {} thread(s): tune it first with `autotune op …`",
                    args.db.display(),
                    task.description(),
                    args.threads
                )))
            })?;
        vec![winner]
    } else {
        let trials = db.trials(&task.key().0, &target.key()).context("reading the tuning log")?;
        args.trace_keys
            .iter()
            .map(|key| {
                trials
                    .iter()
                    .filter(replayable)
                    .find(|t| t.trace_key == *key && t.status == TrialStatus::Ok)
                    .and_then(|t| Some((key.clone(), Trace::from_json(&t.trace_json).ok()?)))
                    .ok_or_else(|| {
                        anyhow!(BadInput(format!(
                            "{} holds no valid trial with trace key {key} for {} with {} thread(s): pass a key of an `ok` trial",
                            args.db.display(),
                            task.description(),
                            args.threads
                        )))
                    })
            })
            .collect::<Result<_>>()?
    };
    let measure = MeasureConfig {
        min_repeats: 10,
        min_total_time_s: args.min_time_s,
        max_total_time_s: args.min_time_s * 4.0,
        max_repeats: 10_000,
        ..MeasureConfig::default()
    };
    let mut runner = worker_runner(&target, measure)?;
    let batch: Vec<Trace> = traces.iter().map(|(_, t)| t.clone()).collect();
    let outcomes = runner.measure_batch(&task, &batch);
    let mut kernels = Vec::new();
    for ((key, trace), outcome) in traces.iter().zip(outcomes) {
        let (Some(median), Some(min)) = (outcome.median_s(), outcome.min_s()) else {
            return Err(anyhow!(
                "re-measuring {} failed ({}): {}",
                trace.display(),
                outcome.status,
                outcome.error.unwrap_or_default()
            ));
        };
        kernels.push((key, trace, median, min, outcome.repeat_times_s.len()));
    }
    let gflops = |median: f64| task.flops() / median / 1e9;
    if args.json {
        let as_json = |&(key, trace, median, min, n): &(&String, &Trace, f64, f64, usize)| {
            json!({
                "task": task.description(), "device": args.device.to_string(), "threads": args.threads, "gflops": gflops(median),
                "latency_s_median": median, "latency_s_min": min, "trace": trace, "trace_key": key,
                "n_repeats": n,
            })
        };
        // The best kernel alone is the object itself; chosen trials come as a list.
        let out = if args.trace_keys.is_empty() {
            kernels.first().map(as_json).unwrap_or_default()
        } else {
            json!({ "kernels": kernels.iter().map(as_json).collect::<Vec<_>>() })
        };
        println!("{out}");
    } else {
        for (_, trace, median, min, n) in &kernels {
            println!(
                "{} on cpu, {} thread(s): {:.1} GFLOP/s ({:.3} ms median, {:.3} ms min, {n} repeats)",
                task.description(),
                args.threads,
                gflops(*median),
                median * 1e3,
                min * 1e3,
            );
            println!("  schedule: {}", trace.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the HTML report of a tuning log. Opens the log read-only, so a tuning run may be
/// writing it at the same time.
fn report(args: ReportArgs) -> Result<ExitCode> {
    let db = Database::open_read_only(&args.db).map_err(|e| anyhow!(BadInput(e.to_string())))?;
    let output = args.output.clone().unwrap_or_else(|| default_report_path(&args.db));
    let source = args
        .db
        .file_name()
        .map_or_else(|| args.db.display().to_string(), |name| name.to_string_lossy().into_owned());
    let model = match &args.model {
        Some(model) => {
            let mut graph = autotune_graph::load(model, &autotune_graph::LoadConfig::default())
                .map_err(|e| anyhow!(BadInput(e.to_string())))?;
            // The layout the log was tuned in, as `run` would choose it.
            let target =
                autotune_codegen::host_cpu_target(1).context("cannot describe this machine's CPU")?;
            let layout = crate::args::LayoutArg { channel_blocks: false, nchw: false };
            graph.lay_out(layout.block(&target, Some(&db))?);
            let logged: std::collections::HashSet<String> =
                db.workloads()?.into_iter().map(|(_, w)| w.task_key).collect();
            let mut calls: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
            for (task, n) in autotune_graph::extract_tasks(&graph) {
                *calls.entry(autotune_runtime::logged_key(&task, &logged)).or_default() += n as f64;
            }
            Some((model.display().to_string(), calls))
        }
        None => None,
    };
    let html = autotune_reports::render(
        &db,
        &source,
        model.as_ref().map(|(name, calls)| (name.as_str(), calls)),
        None,
    )
    .context("cannot make the report")?;
    std::fs::write(&output, &html).map_err(|e| {
        anyhow!(BadInput(format!("cannot write the report to {}: {e}: check the -o path", output.display())))
    })?;
    println!("wrote {} ({} KiB)", output.display(), html.len().div_ceil(1024));
    Ok(ExitCode::SUCCESS)
}

/// `gemm.db` → `gemm.report.html` in the same folder.
fn default_report_path(db: &Path) -> PathBuf {
    let stem = db.file_stem().map_or_else(|| "tuning".into(), |stem| stem.to_string_lossy().into_owned());
    db.with_file_name(format!("{stem}.report.html"))
}
