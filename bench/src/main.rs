//! `autotune-bench`: small machine-measurement helpers for the benchmark scripts in `bench/`.
//!
//! `autotune-bench peak --threads N [--seconds S]` measures the machine's attainable fp32 FLOP/s
//! with an FMA throughput probe and prints one JSON object:
//! `{"threads": N, "isa": "avx512"|"avx2", "gflops": X}`.

mod probe;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "autotune-bench", about = "Machine measurements for the autotune benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measured peak fp32 FLOP/s from an FMA throughput probe (best of 3 runs).
    Peak {
        /// Number of threads running the probe at the same time.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Duration of each of the 3 runs, in seconds.
        #[arg(long, default_value_t = 0.3)]
        seconds: f64,
        /// Force an ISA (`avx512` or `avx2`) instead of the widest one the CPU supports.
        #[arg(long)]
        isa: Option<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, no backtrace: the bench scripts show this message as is.
            eprintln!("autotune-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Peak { threads, seconds, isa } => {
            if threads == 0 {
                bail!("--threads must be at least 1");
            }
            if !(seconds.is_finite() && seconds > 0.0) {
                bail!("--seconds must be a positive number, got {seconds}");
            }
            let isa = match isa.as_deref() {
                None => probe::Isa::detect()?,
                Some(name) => probe::Isa::from_name(name)?,
            };
            let duration = Duration::from_secs_f64(seconds);
            let mut best = 0.0f64;
            for _ in 0..3 {
                best = best.max(probe::measure(isa, threads, duration));
            }
            let gflops = (best / 1e9 * 100.0).round() / 100.0;
            // Written by hand to keep the documented key order (serde_json sorts object keys).
            println!(
                "{{\"threads\": {threads}, \"isa\": {}, \"gflops\": {}}}",
                serde_json::Value::from(isa.name()),
                serde_json::Value::from(gflops)
            );
        }
    }
    Ok(())
}
