//! Command-line syntax (clap). Parsing only: values are validated into typed settings here, so
//! the commands never see a malformed shape or device.

use autotune_ir::{EpilogueOp, IsaLevel, Scalar};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "autotune",
    version,
    about = "Autotuning kernel search: find the fastest loop schedule for each kernel",
    long_about = "Autotuning kernel search: find the fastest loop schedule for each kernel.\n\n\
                  `autotune MODEL.onnx --device cpu` tunes every kernel of a model into \
                  MODEL.tuning.db beside it (the default command, same as `autotune tune`); \
                  `autotune run MODEL.onnx` then runs the model with the winners.",
    args_conflicts_with_subcommands = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Tuning a model is the default command: `autotune MODEL.onnx [OPTIONS]`.
    #[command(flatten)]
    pub tune_model: crate::tune_model_cmd::ModelTuneArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Tune every kernel of an ONNX model (the default command: `autotune MODEL.onnx` does the
    /// same).
    Tune(crate::tune_model_cmd::ModelTuneArgs),
    /// Tune one operator instance.
    #[command(subcommand)]
    Op(OpCommand),
    /// Re-measure the best kernel the tuning log holds for an operator instance, now, on this
    /// machine.
    Best(BestArgs),
    /// Write the HTML report of a tuning log: summary, per-task table, convergence and roofline
    /// charts, failures, best schedules. Only reads the log, so it works while a run writes it.
    Report(ReportArgs),
    /// List the tuning tasks of an ONNX model (after constant folding and fusion): weight,
    /// FLOPs, task key, and with --db which are tuned.
    Tasks(crate::tasks_cmd::TasksArgs),
    /// Run an ONNX model with the kernels of its tuning log (MODEL.tuning.db or --db; tasks
    /// without one run their default schedule): time it and write its outputs.
    Run(crate::run_cmd::RunArgs),
    /// Tools for tuning logs: ls, merge, export --jsonl, import, prune --keep-best K, verify MODEL.
    #[command(subcommand)]
    Db(crate::db_cmd::DbCommand),
}

#[derive(Subcommand, Debug)]
pub enum OpCommand {
    /// fp32 matrix multiply C[M×N] = A[M×K]·B[K×N], row-major.
    Matmul(MatmulArgs),
    /// 2-D convolution, NCHW input, OIHW weights (ONNX Conv), with an optional fused epilogue.
    Conv2d(Conv2dArgs),
    /// Dense layer / ONNX Gemm: Y[M×N] = X[M×K]·Wᵀ with constant weights W[N×K].
    Dense(DenseArgs),
    /// Batched matmul / ONNX MatMul: Y[b] = A[b]·B[b] with optional transposes and broadcasting.
    #[command(alias = "batch_matmul")]
    BatchMatmul(BatchMatmulArgs),
    /// Max, average or global average pooling over NCHW (ONNX MaxPool / AveragePool).
    Pool(PoolArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpName {
    Matmul,
}

/// Where kernels run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(u32),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

pub fn parse_device(text: &str) -> Result<Device, String> {
    if text == "cpu" {
        return Ok(Device::Cpu);
    }
    if let Some(index) = text.strip_prefix("cuda:") {
        return index
            .parse()
            .map(Device::Cuda)
            .map_err(|_| format!("`{text}` is not a device: use cpu or cuda:N"));
    }
    Err(format!("unknown device `{text}`: use cpu or cuda:N"))
}

/// `M×N×K` for matmul, written `1024x1024x1024`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShapeArg {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

pub fn parse_matmul_shape(text: &str) -> Result<MatmulShapeArg, String> {
    let dims: Vec<&str> = text.split(['x', 'X']).collect();
    let bad =
        || format!("`{text}` is not a matmul shape: write MxNxK with positive integers, e.g. 1024x1024x1024");
    if dims.len() != 3 {
        return Err(bad());
    }
    let mut v = [0usize; 3];
    for (slot, d) in v.iter_mut().zip(&dims) {
        *slot = d.trim().parse().map_err(|_| bad())?;
        if *slot == 0 || *slot > 1 << 20 {
            return Err(bad());
        }
    }
    Ok(MatmulShapeArg { m: v[0], n: v[1], k: v[2] })
}

#[derive(Args, Debug)]
pub struct MatmulArgs {
    /// Problem size, MxNxK (e.g. 1024x1024x1024).
    #[arg(long, value_parser = parse_matmul_shape)]
    pub shape: MatmulShapeArg,
    #[command(flatten)]
    pub tune: TuneArgs,
}

#[derive(Args, Debug)]
pub struct Conv2dArgs {
    /// Input shape NxCxHxW, e.g. 1x64x56x56.
    #[arg(long, value_parser = |s: &str| parse_dims(s, 4))]
    pub input: Dims,
    /// Weight shape OxIxKHxKW with I = C / groups, e.g. 64x64x3x3.
    #[arg(long, value_parser = |s: &str| parse_dims(s, 4))]
    pub weight: Dims,
    /// Stride: S or SHxSW.
    #[arg(long, default_value = "1", value_parser = parse_pair)]
    pub stride: [usize; 2],
    /// Padding: P (all sides), PHxPW (top=bottom, left=right) or T,L,B,R.
    #[arg(long, default_value = "0", value_parser = parse_pads)]
    pub pad: [usize; 4],
    /// Dilation: D or DHxDW.
    #[arg(long, default_value = "1", value_parser = parse_pair)]
    pub dilation: [usize; 2],
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// Fused epilogue, in order: bias, add (residual), relu, sigmoid, clip=MIN:MAX,
    /// leaky_relu=ALPHA, scale=ALPHA; comma separated, e.g. bias,add,relu.
    #[arg(long, default_value = "", value_parser = parse_epilogue)]
    pub epilogue: EpilogueArg,
    #[command(flatten)]
    pub tune: TuneArgs,
}

#[derive(Args, Debug)]
pub struct DenseArgs {
    /// MxNxK: M input rows, N output features, K input features (e.g. 1x1000x2048).
    #[arg(long, value_parser = parse_matmul_shape)]
    pub shape: MatmulShapeArg,
    /// Weights are stored KxN instead of NxK (ONNX Gemm transB=0).
    #[arg(long)]
    pub weights_kn: bool,
    /// The input is stored KxM (ONNX Gemm transA=1).
    #[arg(long)]
    pub trans_a: bool,
    /// Fused epilogue (see conv2d), e.g. bias,relu.
    #[arg(long, default_value = "", value_parser = parse_epilogue)]
    pub epilogue: EpilogueArg,
    #[command(flatten)]
    pub tune: TuneArgs,
}

#[derive(Args, Debug)]
pub struct BatchMatmulArgs {
    /// BxMxNxK: B batches of [M×K]·[K×N].
    #[arg(long, value_parser = |s: &str| parse_dims(s, 4))]
    pub shape: Dims,
    /// A is stored [K×M] per batch.
    #[arg(long)]
    pub trans_a: bool,
    /// B is stored [N×K] per batch.
    #[arg(long)]
    pub trans_b: bool,
    /// One A matrix is shared by every batch (broadcast).
    #[arg(long)]
    pub shared_a: bool,
    /// One B matrix is shared by every batch (broadcast).
    #[arg(long)]
    pub shared_b: bool,
    #[arg(long, default_value = "", value_parser = parse_epilogue)]
    pub epilogue: EpilogueArg,
    #[command(flatten)]
    pub tune: TuneArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKindArg {
    Max,
    Avg,
    GlobalAvg,
}

#[derive(Args, Debug)]
pub struct PoolArgs {
    #[arg(long, value_enum)]
    pub kind: PoolKindArg,
    /// Input shape NxCxHxW.
    #[arg(long, value_parser = |s: &str| parse_dims(s, 4))]
    pub input: Dims,
    /// Window KHxKW (or K); ignored by global-avg.
    #[arg(long, default_value = "2", value_parser = parse_pair)]
    pub kernel: [usize; 2],
    /// Stride: S or SHxSW (default: 1).
    #[arg(long, default_value = "1", value_parser = parse_pair)]
    pub stride: [usize; 2],
    /// Padding: P, PHxPW or T,L,B,R.
    #[arg(long, default_value = "0", value_parser = parse_pads)]
    pub pad: [usize; 4],
    /// Dilation (max pooling only).
    #[arg(long, default_value = "1", value_parser = parse_pair)]
    pub dilation: [usize; 2],
    #[arg(long)]
    pub ceil_mode: bool,
    /// Average pooling divides by the whole window, padding included.
    #[arg(long)]
    pub count_include_pad: bool,
    #[command(flatten)]
    pub tune: TuneArgs,
}

/// Options of `autotune op …`: one operator, tuned for a number of trials into a log.
#[derive(Args, Debug)]
pub struct TuneArgs {
    /// Trials to measure in this session; a db that already holds trials is resumed, never
    /// re-measuring a schedule.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub trials: u64,
    /// The SQLite tuning log to write (created if missing).
    #[arg(long)]
    pub db: PathBuf,
    #[command(flatten)]
    pub search: SearchArgs,
}

/// Options every tuning command shares (`autotune op …` and model tuning).
#[derive(Args, Debug, Clone)]
pub struct SearchArgs {
    /// `cpu`, or `cuda:N` (the CUDA device N of this machine, described by its driver).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Threads the kernels run on: a kernel is tuned for a thread count, so use the one it will
    /// run with (`autotune run --threads`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    #[command(flatten)]
    pub cpu_features: CpuFeaturesArg,
    /// Seed of the search (and, for a model, of the choice between tasks).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Candidates compiled together and committed in one transaction.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub batch_size: u64,
    /// Per-candidate time limit in seconds.
    #[arg(long, default_value_t = 10.0, value_parser = parse_timeout)]
    pub timeout_s: f64,
    /// Search strategy: auto (a bandit sharing each batch between random, evolutionary and BO),
    /// bo (Bayesian optimization on a random-forest cost model), evolutionary (on the cost
    /// model), random.
    #[arg(long, value_enum, default_value_t = StrategyArg::Auto)]
    pub strategy: StrategyArg,
    /// Another tuning log to learn from before the first trial: its trials of the same operators
    /// on this machine train the cost model and its best schedules are tried first (repeatable).
    /// Other shapes in the log being written are always used this way.
    #[arg(long = "warm-start", value_name = "PATH")]
    pub warm_start: Vec<PathBuf>,
    /// Print exactly one JSON object on stdout instead of the progress bars and summary.
    #[arg(long)]
    pub json: bool,
}

/// `--channel-blocks` / `--nchw`, shared by model tuning and `autotune run`, which must agree:
/// the layout changes the model's conv and pooling tasks.
#[derive(Args, Debug, Clone, Default)]
pub struct LayoutArg {
    /// Pass activations between convolutions, poolings and channel Concats in blocks of 16
    /// channels (NCHW16c: a whole number of vectors at every ISA level): no transposing stores,
    /// 1×1 convs read their input in place, pools vectorize across channels [default, unless
    /// the tuning log was tuned NCHW].
    #[arg(long = "channel-blocks", conflicts_with = "nchw")]
    pub channel_blocks: bool,
    /// Keep every activation NCHW [default for a log tuned that way].
    #[arg(long)]
    pub nchw: bool,
}

impl LayoutArg {
    /// The channel block for `target` (1: NCHW). Unless the user says, a model runs and
    /// resumes tuning in the layout its log was tuned in
    /// ([`autotune_runtime::log_uses_channel_blocks`]), and in channel blocks when it has no
    /// trials.
    pub fn block(
        &self,
        target: &autotune_ir::Target,
        log: Option<&autotune_db::Database>,
    ) -> anyhow::Result<usize> {
        let blocked = if self.channel_blocks {
            true
        } else if self.nchw {
            false
        } else {
            match log {
                Some(db) => autotune_runtime::log_uses_channel_blocks(db, target)?.unwrap_or(true),
                None => true,
            }
        };
        Ok(match (blocked, target.as_cpu()) {
            (true, Some(_)) => autotune_ir::ChannelBlocks::cpu_block(),
            _ => 1,
        })
    }
}

/// `--cpu-features`, shared by every command that builds kernels.
#[derive(Args, Debug, Clone, Default)]
pub struct CpuFeaturesArg {
    /// The widest ISA the kernels may use, narrower than this CPU's: a level (avx512, avx2,
    /// sse4.2) or its features (e.g. avx2,fma). Tune here for fleet machines that lack this
    /// one's extensions; the log records the level, so its kernels run only where they can
    /// [default: everything this CPU has].
    #[arg(long = "cpu-features", value_name = "LIST", value_parser = IsaLevel::parse_list)]
    pub level: Option<IsaLevel>,
}

/// `--timeout-s`: a positive number of seconds.
fn parse_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(s),
        _ => Err(format!("`{text}` is not a positive number of seconds")),
    }
}

/// `--strategy` values.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyArg {
    Auto,
    Bo,
    Evolutionary,
    Random,
}

/// A parsed `AxBx…` shape (a newtype: clap reads a bare `Vec` as "many values").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dims(pub Vec<usize>);

impl std::ops::Index<usize> for Dims {
    type Output = usize;
    fn index(&self, i: usize) -> &usize {
        &self.0[i]
    }
}

/// A parsed epilogue list.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EpilogueArg(pub Vec<EpilogueOp>);

/// `AxBx…` with exactly `n` positive integers.
pub fn parse_dims(text: &str, n: usize) -> Result<Dims, String> {
    let bad =
        || format!("`{text}` is not a shape: write {n} positive integers separated by x, e.g. 1x64x56x56");
    let dims: Vec<usize> =
        text.split(['x', 'X']).map(|d| d.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    if dims.len() != n || dims.iter().any(|&d| d == 0 || d > 1 << 20) {
        return Err(bad());
    }
    Ok(Dims(dims))
}

/// `S` or `AxB` (non-negative).
pub fn parse_pair(text: &str) -> Result<[usize; 2], String> {
    let bad = || format!("`{text}` is not a size pair: write N or NxM, e.g. 2 or 2x1");
    let v: Vec<usize> =
        text.split(['x', 'X']).map(|d| d.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    match v.as_slice() {
        [a] => Ok([*a, *a]),
        [a, b] => Ok([*a, *b]),
        _ => Err(bad()),
    }
}

/// `P`, `PHxPW` or `T,L,B,R`.
pub fn parse_pads(text: &str) -> Result<[usize; 4], String> {
    if text.contains(',') {
        let bad = || format!("`{text}` is not a padding: write T,L,B,R with non-negative integers");
        let v: Vec<usize> =
            text.split(',').map(|d| d.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
        return <[usize; 4]>::try_from(v).map_err(|_| bad());
    }
    let [h, w] =
        parse_pair(text).map_err(|_| format!("`{text}` is not a padding: write P, PHxPW or T,L,B,R"))?;
    Ok([h, w, h, w])
}

/// `bias,add,relu,clip=0:6,leaky_relu=0.1,sigmoid,scale=2`.
pub fn parse_epilogue(text: &str) -> Result<EpilogueArg, String> {
    let number = |v: &str, what: &str| -> Result<Scalar, String> {
        v.parse::<f32>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Scalar)
            .ok_or_else(|| format!("`{v}` is not a number for {what}"))
    };
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|item| {
            let (name, value) = item.split_once('=').unwrap_or((item, ""));
            match (name, value) {
                ("bias", "") => Ok(EpilogueOp::Bias),
                ("add", "") => Ok(EpilogueOp::Add),
                ("relu", "") => Ok(EpilogueOp::Relu),
                ("sigmoid", "") => Ok(EpilogueOp::Sigmoid),
                ("scale", v) => Ok(EpilogueOp::Scale { alpha: number(v, "scale")? }),
                ("leaky_relu", v) => Ok(EpilogueOp::LeakyRelu { alpha: number(v, "leaky_relu")? }),
                ("clip", v) => {
                    let (lo, hi) = v.split_once(':').ok_or_else(|| "write clip=MIN:MAX".to_string())?;
                    Ok(EpilogueOp::Clip { min: number(lo, "clip")?, max: number(hi, "clip")? })
                }
                _ => Err(format!(
                    "unknown epilogue step `{item}`: use bias, add, relu, sigmoid, clip=MIN:MAX, leaky_relu=A, scale=A"
                )),
            }
        })
        .collect::<Result<_, _>>()
        .map(EpilogueArg)
}

#[derive(Args, Debug)]
pub struct BestArgs {
    /// With --shape: the matmul to re-measure. Without: the db must hold exactly one task.
    #[arg(long, value_enum, requires = "shape")]
    pub op: Option<OpName>,
    #[arg(long, value_parser = parse_matmul_shape, requires = "op")]
    pub shape: Option<MatmulShapeArg>,
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    #[command(flatten)]
    pub cpu_features: CpuFeaturesArg,
    #[arg(long)]
    pub db: PathBuf,
    /// Minimum total timed seconds of the re-measurement.
    #[arg(long, default_value_t = 1.0)]
    pub min_time_s: f64,
    /// Re-measure these trials of the log (their trace keys, as stored) instead of the best one,
    /// in one batch: how benchmarks check that a recorded time was not a lucky moment of the
    /// machine. Repeatable.
    #[arg(long = "trace-key", value_name = "KEY")]
    pub trace_keys: Vec<String>,
    /// Re-measure this build's untuned default schedule of the log's task instead of its best
    /// kernel: what tuning bought, timed in the same run as anything it is compared with.
    #[arg(long, conflicts_with = "trace_keys")]
    pub default_schedule: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The tuning log to report on.
    #[arg(long)]
    pub db: PathBuf,
    /// Where to write the HTML file [default: <db file stem>.report.html next to the db].
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// The ONNX model the log was tuned for: each task then weighs its kernel calls per run of
    /// the model (in the layout the log was tuned in), as in the report a tuning run writes.
    /// Without it each task counts once.
    #[arg(long)]
    pub model: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_defaults_to_auto_and_warm_start_repeats() {
        let tune_args = |extra: &[&str]| -> TuneArgs {
            let mut argv = vec!["autotune", "op", "matmul", "--shape", "8x8x8", "--db", "x.db"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).expect("parses").command {
                Some(Command::Op(OpCommand::Matmul(args))) => args.tune,
                other => panic!("not op matmul: {other:?}"),
            }
        };
        let plain = tune_args(&[]);
        assert_eq!((plain.search.strategy, plain.search.warm_start.len()), (StrategyArg::Auto, 0));
        let chosen = tune_args(&["--strategy", "bo", "--warm-start", "a.db", "--warm-start", "b.db"]);
        assert_eq!(chosen.search.strategy, StrategyArg::Bo);
        assert_eq!(chosen.search.warm_start, vec![PathBuf::from("a.db"), PathBuf::from("b.db")]);
        let parses = |name: &str| {
            let argv = ["autotune", "op", "matmul", "--shape", "8x8x8", "--db", "x", "--strategy", name];
            Cli::try_parse_from(argv).is_ok()
        };
        assert!(["auto", "bo", "evolutionary", "random"].into_iter().all(parses));
        assert!(!parses("grid"));
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let parsed = Cli::try_parse_from([
            "autotune",
            "op",
            "conv2d",
            "--input",
            "1x8x9x9",
            "--weight",
            "4x8x3x3",
            "--pad",
            "1",
            "--epilogue",
            "bias,relu",
            "--db",
            "x.db",
        ]);
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn a_model_path_without_a_command_means_tune_the_model() {
        let parsed = Cli::try_parse_from(["autotune", "m.onnx", "--budget", "1h30m", "--threads", "2"])
            .expect("parses");
        assert!(parsed.command.is_none());
        let args = parsed.tune_model;
        assert_eq!(args.model, Some(PathBuf::from("m.onnx")));
        assert_eq!(args.budget, Some(std::time::Duration::from_secs(5400)));
        assert_eq!((args.search.threads, args.trials_per_task), (2, None));
        // A command keeps its own options; model options before it are refused, not ignored.
        assert!(matches!(
            Cli::try_parse_from(["autotune", "tune", "m.onnx", "--trials-per-task", "8"]).expect("parses").command,
            Some(Command::Tune(ref t)) if t.trials_per_task == Some(8)
        ));
        assert!(Cli::try_parse_from(["autotune", "--budget", "1h", "run", "m.onnx"]).is_err());
    }

    #[test]
    fn shapes_parse_and_reject_garbage() {
        assert_eq!(parse_matmul_shape("2x3x4"), Ok(MatmulShapeArg { m: 2, n: 3, k: 4 }));
        for bad in ["", "2x3", "2x3x4x5", "0x1x1", "ax1x1", "-1x2x2", "1x1x99999999"] {
            assert!(parse_matmul_shape(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conv_and_pool_syntax() {
        assert_eq!(parse_dims("1x64x56x56", 4), Ok(Dims(vec![1, 64, 56, 56])));
        assert!(parse_dims("1x64x56", 4).is_err());
        assert_eq!(parse_pair("2"), Ok([2, 2]));
        assert_eq!(parse_pair("2x1"), Ok([2, 1]));
        assert_eq!(parse_pads("1"), Ok([1, 1, 1, 1]));
        assert_eq!(parse_pads("1x2"), Ok([1, 2, 1, 2]));
        assert_eq!(parse_pads("0,1,2,3"), Ok([0, 1, 2, 3]));
        assert!(parse_pads("1,2").is_err());
        assert_eq!(
            parse_epilogue("bias,add,relu"),
            Ok(EpilogueArg(vec![EpilogueOp::Bias, EpilogueOp::Add, EpilogueOp::Relu]))
        );
        assert_eq!(
            parse_epilogue("clip=0:6"),
            Ok(EpilogueArg(vec![EpilogueOp::Clip { min: Scalar(0.0), max: Scalar(6.0) }]))
        );
        assert_eq!(parse_epilogue(""), Ok(EpilogueArg(vec![])));
        assert!(parse_epilogue("gelu").is_err());
        assert!(parse_epilogue("clip=0").is_err());
    }

    #[test]
    fn devices_parse() {
        assert_eq!(parse_device("cpu"), Ok(Device::Cpu));
        assert_eq!(parse_device("cuda:1"), Ok(Device::Cuda(1)));
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
    }
}
