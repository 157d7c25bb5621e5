//! `autotune run MODEL.onnx`: runs a model with the kernels of its tuning log (`--db`, or
//! `MODEL.tuning.db` beside the model), times it, and writes its outputs. Tasks without a tuned
//! kernel run their default schedule and are listed on stderr; no tuning log at all is not an
//! error.

use crate::error::BadInput;
use anyhow::{anyhow, Context, Result};
use autotune_graph::{load, load_binding, read_tensor_proto, write_tensor_proto, Graph, LoadConfig, Tensor};
// A profile row (one task's kernel calls, or one kind of plain op) is the report's.
use autotune_reports::ProfiledWork as ProfileRow;
use autotune_runtime::{random_inputs, Database, KernelSource, Plan, PlanConfig, RuntimeError};
use clap::Args;
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// The tuning log whose kernels to run [default: MODEL.tuning.db beside the model, if it
    /// exists]. Without one, every task runs its default schedule.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Threads the kernels and plain ops run on (the log's kernels for this thread count are
    /// used).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    /// Where the model runs: `cpu`, or `cuda:N` (the log's kernels tuned for that GPU).
    #[arg(long, default_value = "cpu", value_parser = crate::args::parse_device)]
    pub device: crate::args::Device,
    /// Run kernels for this ISA level at most (see `autotune --help`): a log's kernels tuned for
    /// a wider one are never run; their tasks fall back to the default schedule, listed on stderr.
    #[command(flatten)]
    pub cpu_features: crate::args::CpuFeaturesArg,
    #[command(flatten)]
    pub layout: crate::args::LayoutArg,
    /// A model input as an ONNX TensorProto file (repeatable). A file whose tensor is named
    /// after a model input feeds that input; the others feed the remaining inputs in the
    /// model's order. Without any, inputs are seeded random values (--seed).
    #[arg(long = "input", value_name = "PATH")]
    pub inputs: Vec<PathBuf>,
    /// Where to write a model output as an ONNX TensorProto file (repeatable, in the model's
    /// output order).
    #[arg(long = "output", value_name = "PATH")]
    pub outputs: Vec<PathBuf>,
    /// Timed runs, after one untimed warm-up run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub repeat: u64,
    /// Seed of the random inputs (floats uniform in [-1, 1)).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also time every node over --repeat more runs and show where the time goes: per task, its
    /// calls, median time per run and share, next to the time its kernel measured alone when it
    /// was tuned (`"profile"` in --json).
    #[arg(long)]
    pub profile: bool,
    /// Profile the model (as --profile does) and write an HTML report: the tuning log's report
    /// (as `autotune report` writes it) with the model profile as its first section.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Per task or plain op of one profiled run: calls, seconds, calls × time measured alone.
type RunProfile = std::collections::BTreeMap<String, (usize, f64, Option<f64>)>;

/// One node's median time over the profiled runs, in plan order.
#[derive(Debug)]
struct NodeRow {
    node: String,
    /// The task's description for a kernel, `(plain) OP` otherwise.
    what: String,
    seconds: f64,
}

/// Runs the plan `repeat` times with a timer around every node and sums per task (kernels) or
/// per op (plain ops), busiest first; and each node's median, in plan order.
fn profile(
    plan: &mut Plan,
    inputs: &[(&str, &[f32])],
    repeat: u64,
) -> Result<(Vec<ProfileRow>, Vec<NodeRow>)> {
    let mut per_run: Vec<RunProfile> = Vec::new();
    let mut per_node: Vec<(String, String, Vec<f64>)> = Vec::new();
    for _ in 0..repeat {
        let (_, times) = plan.run_profiled(inputs).map_err(runtime_error)?;
        let mut rows = RunProfile::new();
        if per_node.is_empty() {
            per_node = times
                .iter()
                .map(|t| {
                    let what = match t.task {
                        Some(i) => plan.tasks()[i].task.description(),
                        None => format!("(plain) {}", t.op),
                    };
                    (t.node.clone(), what, Vec::new())
                })
                .collect();
        }
        for (row, t) in per_node.iter_mut().zip(&times) {
            row.2.push(t.seconds);
        }
        for t in times {
            let (key, alone) = match t.task {
                Some(i) => {
                    let kernel = &plan.tasks()[i];
                    let alone = match &kernel.source {
                        KernelSource::Tuned { median_s, .. } => Some(*median_s),
                        KernelSource::Default(_) => None,
                    };
                    (kernel.task.description(), alone)
                }
                None => (format!("(plain) {}", t.op), None),
            };
            let row = rows.entry(key).or_insert((0, 0.0, Some(0.0)));
            row.0 += 1;
            row.1 += t.seconds;
            row.2 = match (row.2, alone) {
                (Some(sum), Some(a)) => Some(sum + a),
                _ => None,
            };
        }
        per_run.push(rows);
    }
    let nodes = per_node
        .into_iter()
        .map(|(node, what, mut seconds)| {
            seconds.sort_by(f64::total_cmp);
            NodeRow { node, what, seconds: seconds[seconds.len() / 2] }
        })
        .collect();
    let Some(first) = per_run.first() else { return Ok((Vec::new(), nodes)) };
    let mut rows: Vec<ProfileRow> = first
        .iter()
        .map(|(what, &(calls, _, alone))| {
            let mut seconds: Vec<f64> = per_run.iter().filter_map(|run| run.get(what).map(|r| r.1)).collect();
            seconds.sort_by(f64::total_cmp);
            ProfileRow {
                what: what.clone(),
                calls,
                seconds: seconds[seconds.len() / 2],
                measured_alone_s: alone,
            }
        })
        .collect();
    rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    Ok((rows, nodes))
}

/// The log's report, its tasks weighed by `plan`'s calls per run, with `profile` as its first
/// section, written to `path` (without a log: an empty one's, so the page still shows the profile).
fn write_profile_report(
    path: &Path,
    log: Option<&Database>,
    log_name: &str,
    plan: &Plan,
    profile: autotune_reports::ModelProfile,
) -> Result<()> {
    let empty;
    let db = match log {
        Some(db) => db,
        None => {
            empty = Database::open_in_memory().context("cannot make the report")?;
            &empty
        }
    };
    let mut calls: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    for k in plan.tasks() {
        *calls.entry(k.log_key()).or_default() += k.n_nodes as f64;
    }
    let model = profile.model.clone();
    let html = autotune_reports::render(db, log_name, Some((&model, &calls)), Some(profile))
        .context("cannot make the report")?;
    std::fs::write(path, html).map_err(|e| bad(format!("cannot write the report {}: {e}", path.display())))
}

fn bad(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(BadInput(e.to_string()))
}

/// `model.onnx` → `model.tuning.db` in the same folder.
pub fn default_db_path(model: &Path) -> PathBuf {
    model.with_extension("tuning.db")
}

/// The input files, read, and the model loaded with their shapes (a file may bind a symbolic
/// or different batch dimension). Returns the values in the model's input order.
fn load_with_inputs(args: &RunArgs) -> Result<(Graph, Vec<(String, Tensor)>)> {
    let files: Vec<(String, Tensor)> = args
        .inputs
        .iter()
        .map(|p| read_tensor_proto(p).map_err(|e| bad(format!("--input {}: {e}", p.display()))))
        .collect::<Result<_>>()?;
    // A file named after an input the model needs at load (a Reshape's shape) binds it.
    let mut graph = load_binding(&args.model, &LoadConfig::default(), &files).map_err(bad)?;
    if files.is_empty() {
        return Ok((graph, Vec::new()));
    }
    let bound: Vec<String> = graph.bound_inputs.iter().map(|(name, _)| name.clone()).collect();
    let files: Vec<(String, Tensor)> = files.into_iter().filter(|(name, _)| !bound.contains(name)).collect();
    let names: Vec<String> = graph.inputs.iter().map(|t| graph.tensor(*t).name.clone()).collect();
    if files.len() > names.len() {
        return Err(bad(format!(
            "{} --input files for a model with {} input(s) ({})",
            files.len(),
            names.len(),
            names.join(", ")
        )));
    }
    // Named files first, then the rest in order.
    let mut slot: Vec<Option<usize>> = vec![None; names.len()];
    let mut unplaced = Vec::new();
    for (f, (name, _)) in files.iter().enumerate() {
        match names.iter().position(|n| n == name).filter(|&i| slot[i].is_none()) {
            Some(i) => slot[i] = Some(f),
            None => unplaced.push(f),
        }
    }
    for f in unplaced {
        if let Some(free) = slot.iter_mut().find(|s| s.is_none()) {
            *free = Some(f);
        }
    }
    let placed: Vec<(String, Tensor)> = slot
        .iter()
        .zip(&names)
        .filter_map(|(f, name)| f.map(|f| (name.clone(), files[f].1.clone())))
        .collect();
    // The runtime computes in float32 and would read any numbers; a tensor of another element
    // type than the model declares is the wrong file, not something to convert silently.
    for (name, t) in &placed {
        if let Some(id) = graph.find(name) {
            let declared = graph.tensor(id).dtype;
            if declared != t.dtype {
                return Err(bad(format!(
                    "input `{name}` is {} but the model declares {}: pass a tensor of the model's element type",
                    format!("{:?}", t.dtype).to_lowercase(),
                    format!("{declared:?}").to_lowercase()
                )));
            }
        }
    }
    let differs =
        placed.iter().any(|(name, t)| graph.find(name).is_some_and(|id| graph.tensor(id).shape != t.shape));
    if differs {
        // Bind the files' shapes (a symbolic batch dimension, say) and load again.
        let given: Vec<String> = placed
            .iter()
            .filter_map(|(name, t)| {
                let id = graph.find(name)?;
                let declared = &graph.tensor(id).shape;
                (*declared != t.shape)
                    .then(|| format!("`{name}` has shape {:?} (the model says {declared:?})", t.shape))
            })
            .collect();
        let input_shapes = placed.iter().map(|(name, t)| (name.clone(), t.shape.clone())).collect();
        let config = LoadConfig {
            input_shapes,
            input_values: graph.bound_inputs.iter().cloned().collect(),
            ..LoadConfig::default()
        };
        graph = load(&args.model, &config)
            .map_err(|e| bad(format!("input {}, and the model does not accept it: {e}", given.join(", "))))?;
    }
    Ok((graph, placed))
}

fn open_log(args: &RunArgs) -> Result<(Option<Database>, String)> {
    let (path, explicit) = match &args.db {
        Some(p) => (p.clone(), true),
        None => (default_db_path(&args.model), false),
    };
    if !path.exists() {
        if explicit {
            return Err(bad(format!("no tuning log at {}: check --db", path.display())));
        }
        return Ok((None, format!("no tuning log (none at {}; pass --db)", path.display())));
    }
    let db = Database::open_read_only(&path).map_err(|e| bad(format!("--db: {e}")))?;
    Ok((Some(db), path.display().to_string()))
}

fn runtime_error(e: RuntimeError) -> anyhow::Error {
    match e {
        RuntimeError::MissingInput { .. }
        | RuntimeError::UnknownInput { .. }
        | RuntimeError::InputLength { .. }
        | RuntimeError::Log(_) => bad(e),
        other => anyhow!(other),
    }
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    if let Some(path) = &args.report {
        crate::tune_model_cmd::check_report_path(path)?;
    }
    let (mut graph, given) = load_with_inputs(&args)?;
    let (log, log_name) = open_log(&args)?;
    let target = crate::commands::device_target(&args.device, args.threads, &args.cpu_features)?;
    graph.lay_out(args.layout.block(&target, log.as_ref())?);
    let mut plan = match target.as_cuda() {
        Some(gpu) => {
            let device = autotune_codegen::cuda::CudaDevice::new(gpu)
                .map_err(|e| bad(format!("--device {}: {e}", args.device)))?;
            // Plain ops and tasks without a GPU kernel run on the host, with --threads.
            Plan::for_gpu(graph, log.as_ref(), &target, Box::new(device), args.threads, PlanConfig::default())
        }
        None => Plan::from_graph(graph, log.as_ref(), &target, PlanConfig::default()),
    }
    .map_err(runtime_error)?;
    let on = match target.as_cuda() {
        Some(_) => format!("this GPU ({})", target.name()),
        None => format!("this CPU with {} thread(s)", args.threads),
    };
    let outputs = plan.outputs();
    if args.outputs.len() > outputs.len() {
        return Err(bad(format!(
            "{} --output paths for a model with {} output(s)",
            args.outputs.len(),
            outputs.len()
        )));
    }

    let mut borrowed: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (_, from) in plan.borrowed_tasks() {
        *borrowed.entry(from).or_default() += 1;
    }
    for (from, n) in &borrowed {
        eprintln!(
            "autotune: {n} task(s) run kernels tuned for {from}: {log_name} has none for this exact CPU, and that one's kernels run here"
        );
    }
    let n_borrowed: usize = borrowed.values().sum();
    let nearest: Vec<(String, String)> =
        plan.nearest_shape_tasks().map(|(k, shape)| (k.task.description(), shape.to_string())).collect();
    if !nearest.is_empty() {
        eprintln!(
            "autotune: {} task(s) have a shape {log_name} never tuned; they run the schedule of the nearest tuned shape:",
            nearest.len()
        );
        for (task, shape) in &nearest {
            eprintln!("  {task}  <-  {shape}");
        }
    }
    let n_borderless = plan.borderless_tasks().count();
    if n_borderless > 0 {
        eprintln!(
            "autotune: {n_borderless} task(s) with zero borders run the schedule {log_name} holds for the same conv without them (tuned before borders); tune again to tune them as they run"
        );
    }
    let untuned: Vec<_> = plan.untuned_tasks().cloned().collect();
    if !untuned.is_empty() {
        let mut text = String::new();
        if log.is_none() {
            text.push_str(&format!("autotune: {log_name}: every task runs its default schedule\n"));
        } else {
            text.push_str(&format!(
                "autotune: {} of {} tasks have no tuned kernel in {log_name} for {on}; they run their default schedule:\n",
                untuned.len(),
                plan.tasks().len(),
            ));
        }
        for k in &untuned {
            let why = match &k.source {
                KernelSource::Default(reason) if log.is_some() => format!(" ({reason})"),
                _ => String::new(),
            };
            text.push_str(&format!("  {}{why}\n", k.task.description()));
        }
        eprint!("{text}");
    }

    let values: Vec<(String, Vec<f32>)> = if given.is_empty() {
        let infos = plan.inputs();
        let random = random_inputs(&infos, args.seed);
        infos.into_iter().map(|i| i.name).zip(random).collect()
    } else {
        given.into_iter().map(|(name, t)| (name, t.to_f32())).collect()
    };
    let named: Vec<(&str, &[f32])> = values.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    let results = plan.run(&named).map_err(runtime_error)?;
    let mut times_s = Vec::with_capacity(args.repeat as usize);
    for _ in 0..args.repeat {
        let start = Instant::now();
        plan.run(&named).map_err(runtime_error)?;
        times_s.push(start.elapsed().as_secs_f64());
    }
    times_s.sort_by(f64::total_cmp);
    let median = times_s[times_s.len() / 2];
    let min = times_s[0];
    let (profile_rows, profile_nodes) = match args.profile || args.report.is_some() {
        true => {
            let (rows, nodes) = profile(&mut plan, &named, args.repeat)?;
            (Some(rows), Some(nodes))
        }
        false => (None, None),
    };

    if let (Some(path), Some(rows)) = (&args.report, &profile_rows) {
        let profile = autotune_reports::ModelProfile {
            model: args.model.display().to_string(),
            threads: args.threads,
            runs: args.repeat,
            latency_s: median,
            rows: rows.clone(),
        };
        write_profile_report(path, log.as_ref(), &log_name, &plan, profile)?;
    }

    for ((path, info), (_, values)) in args.outputs.iter().zip(&outputs).zip(&results) {
        let tensor = Tensor::from_f64(info.dtype, info.shape.clone(), values.iter().map(|&v| f64::from(v)));
        write_tensor_proto(path, &info.name, &tensor)
            .map_err(|e| bad(format!("cannot write --output {}: {e}", path.display())))?;
    }

    let memory = plan.memory();
    let n_gpu_tasks = plan.tasks().iter().filter(|k| k.on_gpu).count();
    let transfers = plan.transfers();
    let text = if args.json {
        let v = json!({
            "model": args.model.display().to_string(),
            "db": log.as_ref().map(|_| log_name.clone()),
            "threads": args.threads,
            "device": args.device.to_string(),
            "n_gpu_tasks": n_gpu_tasks,
            "transfers_per_run": transfers.map(|t| json!({
                "uploads": t.uploads, "downloads": t.downloads, "bytes_up": t.bytes_up, "bytes_down": t.bytes_down,
            })),
            "gpu_weight_bytes": plan.gpu_weight_bytes(),
            "latency_s_median": median,
            "latency_s_min": min,
            "n_repeats": times_s.len(),
            "n_kernels": plan.n_kernels(),
            "n_tuned": plan.n_tuned(),
            "n_tuned_for_another_target": n_borrowed,
            "n_nearest_shape": nearest.len(),
            "n_borderless": n_borderless,
            "n_default": plan.n_default(),
            "n_tasks": plan.tasks().len(),
            "untuned_tasks": untuned.iter().map(|k| k.task.description()).collect::<Vec<_>>(),
            "outputs": outputs.iter().map(|o| o.name.clone()).collect::<Vec<_>>(),
            "activation_bytes": memory.activation_bytes,
            "constant_bytes": memory.constant_bytes,
            "build_time_s": plan.build_time_s(),
            "profile": profile_rows.as_ref().map(|rows| rows.iter().map(|r| json!({
                "what": r.what, "calls": r.calls, "seconds": r.seconds, "measured_alone_s": r.measured_alone_s,
            })).collect::<Vec<_>>()),
            "profile_nodes": profile_nodes.as_ref().map(|nodes| nodes.iter().map(|n| json!({
                "node": n.node, "what": n.what, "seconds": n.seconds,
            })).collect::<Vec<_>>()),
        });
        format!("{v}\n")
    } else {
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        let mut t = format!(
            "{}: {} kernel calls ({} tuned, {} default schedule) in {} distinct tasks, {} thread(s); compiled in {:.1} s\n",
            args.model.display(),
            plan.n_kernels(),
            plan.n_tuned(),
            plan.n_default(),
            plan.tasks().len(),
            args.threads,
            plan.build_time_s()
        );
        t.push_str(&format!(
            "  latency: {:.3} ms median, {:.3} ms min over {} runs (after 1 warm-up)\n",
            median * 1e3,
            min * 1e3,
            times_s.len()
        ));
        t.push_str(&format!(
            "  memory: {:.1} MiB of activations in {} buffers ({:.1} MiB without reuse), {:.1} MiB of weights\n",
            mib(memory.activation_bytes),
            memory.n_buffers,
            mib(memory.activation_bytes_without_reuse),
            mib(memory.constant_bytes)
        ));
        if let (Some(copies), Some(device)) = (transfers, plan.gpu_device()) {
            t.push_str(&format!(
                "  gpu: {n_gpu_tasks} of {} tasks on {device}, the rest and the plain ops on the host; per run {} upload(s) ({:.2} MiB) and {} download(s) ({:.2} MiB); {:.1} MiB of weights uploaded once\n",
                plan.tasks().len(),
                copies.uploads,
                mib(copies.bytes_up),
                copies.downloads,
                mib(copies.bytes_down),
                mib(plan.gpu_weight_bytes())
            ));
        }
        for (i, info) in outputs.iter().enumerate() {
            let to = args.outputs.get(i).map_or(String::new(), |p| format!(" -> {}", p.display()));
            t.push_str(&format!("  output {} {:?}{to}\n", info.name, info.shape));
        }
        if let Some(rows) = &profile_rows {
            let total: f64 = rows.iter().map(|r| r.seconds).sum();
            t.push_str(&format!(
                "  profile (median of {} runs, {:.3} ms in nodes): calls, ms per run, share, ms measured alone when tuned\n",
                args.repeat,
                total * 1e3
            ));
            for r in rows {
                let alone = r.measured_alone_s.map_or("-".to_string(), |a| format!("{:.3}", a * 1e3));
                t.push_str(&format!(
                    "  {:>4} {:>9.3} {:>5.1}% {:>9}  {}\n",
                    r.calls,
                    r.seconds * 1e3,
                    100.0 * r.seconds / total.max(f64::MIN_POSITIVE),
                    alone,
                    r.what
                ));
            }
        }
        t
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow!(e).context("cannot write to stdout"))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}
