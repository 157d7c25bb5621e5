//! `autotune-bench`: small machine-measurement helpers for the benchmark scripts in `bench/`.
//!
//! `autotune-bench peak --threads N [--seconds S]` measures the machine's attainable fp32 FLOP/s
//! with the same FMA throughput probe the tuner records in its logs
//! (`autotune_measure::machine`), and prints one JSON object:
//! `{"threads": N, "isa": "avx512"|"avx2", "gflops": X}`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use autotune_measure::machine::{probe_peak_gflops, MachineProbeConfig};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "autotune-bench", about = "Machine measurements for the autotune benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measured peak fp32 FLOP/s from an FMA throughput probe (best of 5 runs).
    Peak {
        /// Number of threads running the probe at the same time.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Duration of each run, in seconds.
        #[arg(long, default_value_t = 0.3)]
        seconds: f64,
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
        Command::Peak { threads, seconds } => {
            if threads == 0 {
                bail!("--threads must be at least 1");
            }
            if !(seconds.is_finite() && seconds > 0.0) {
                bail!("--seconds must be a positive number, got {seconds}");
            }
            let config = MachineProbeConfig {
                fma_run: Duration::from_secs_f64(seconds),
                ..MachineProbeConfig::new(threads)
            };
            let peak = probe_peak_gflops(&config)?;
            let isa = if std::arch::is_x86_feature_detected!("avx512f") { "avx512" } else { "avx2" };
            let gflops = (peak.value * 100.0).round() / 100.0;
            // Written by hand to keep the documented key order (serde_json sorts object keys).
            println!(
                "{{\"threads\": {threads}, \"isa\": {}, \"gflops\": {}}}",
                serde_json::Value::from(isa),
                serde_json::Value::from(gflops)
            );
        }
    }
    Ok(())
}
