//! The `autotune` binary: command-line parsing, progress, Ctrl-C, exit codes. Everything else is
//! behind the library crates' APIs.
//!
//! Exit codes: 0 ok, 1 bad input or usage, 2 internal failure, 130 interrupted (after the batch in
//! flight was committed).

mod args;
mod commands;
mod db_cmd;
mod error;
mod run_cmd;
mod tasks_cmd;
mod tune_model_cmd;

use clap::Parser;
use error::BadInput;
use std::process::ExitCode;

/// The hidden first argument that turns this binary into a measurement worker.
pub const WORKER_ARG: &str = "__measure-worker";

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(WORKER_ARG) {
        let plant_faults =
            std::env::args().nth(2).as_deref() == Some(autotune_measure::planted::PLANT_FAULTS_ARG);
        return match autotune_measure::serve_stdio(plant_faults) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("autotune worker: {e}");
                ExitCode::from(2)
            }
        };
    }
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help / --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Bare `autotune`: the usage, and a failing exit status (nothing was done).
            let _ = e.print();
            return ExitCode::from(1);
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("autotune: {first} (run `autotune --help` for usage)");
            return ExitCode::from(1);
        }
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            let disk_full =
                e.chain().any(|c| c.downcast_ref::<autotune_db::DbError>().is_some_and(|d| d.is_disk_full()));
            let code = if e.downcast_ref::<BadInput>().is_some() || disk_full { 1 } else { 2 };
            let advice = if disk_full {
                ": every batch committed before is in the log; free some space and run the same command again to resume"
            } else {
                ""
            };
            eprintln!("autotune: {}{advice}", error::one_line(&e));
            ExitCode::from(code)
        }
    }
}
