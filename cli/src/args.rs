//! Command-line syntax (clap). Parsing only: values are validated into typed settings here, so
//! the commands never see a malformed shape or device.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "autotune",
    version,
    about = "Autotuning kernel search: find the fastest loop schedule for each kernel"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Tune one operator instance.
    #[command(subcommand)]
    Op(OpCommand),
    /// Re-measure the best kernel the tuning log holds for an operator instance, now, on this
    /// machine.
    Best(BestArgs),
}

#[derive(Subcommand, Debug)]
pub enum OpCommand {
    /// fp32 matrix multiply C[M×N] = A[M×K]·B[K×N], row-major.
    Matmul(TuneArgs),
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
    Err(format!("unknown device `{text}`: use cpu (cuda:N comes with the GPU backend)"))
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
pub struct TuneArgs {
    /// Problem size, MxNxK (e.g. 1024x1024x1024).
    #[arg(long, value_parser = parse_matmul_shape)]
    pub shape: MatmulShapeArg,
    /// cpu (cuda:N is not available yet).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Threads the kernels run on (a kernel is tuned for a thread count).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    /// Trials to measure in this session; a db that already holds trials is resumed, never
    /// re-measuring a schedule.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub trials: u64,
    /// The SQLite tuning log to write (created if missing).
    #[arg(long)]
    pub db: PathBuf,
    /// Seed of the search.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Candidates compiled together and committed in one transaction.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub batch_size: u64,
    /// Per-candidate time limit in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout_s: f64,
    /// Print exactly one JSON object on stdout instead of the progress bar and summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BestArgs {
    #[arg(long, value_enum)]
    pub op: OpName,
    #[arg(long, value_parser = parse_matmul_shape)]
    pub shape: MatmulShapeArg,
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    #[arg(long)]
    pub db: PathBuf,
    /// Minimum total timed seconds of the re-measurement.
    #[arg(long, default_value_t = 1.0)]
    pub min_time_s: f64,
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_reject_garbage() {
        assert_eq!(parse_matmul_shape("2x3x4"), Ok(MatmulShapeArg { m: 2, n: 3, k: 4 }));
        for bad in ["", "2x3", "2x3x4x5", "0x1x1", "ax1x1", "-1x2x2", "1x1x99999999"] {
            assert!(parse_matmul_shape(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn devices_parse() {
        assert_eq!(parse_device("cpu"), Ok(Device::Cpu));
        assert_eq!(parse_device("cuda:1"), Ok(Device::Cuda(1)));
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
    }
}
