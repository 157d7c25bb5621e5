//! What the A/B examples share: their common arguments (`MODEL.onnx [TUNING_LOG|-] [THREADS]
//! [ROUNDS]`), one random input, and timing two plans in interleaved rounds.

// Each example compiles this module on its own and uses part of it.
#![allow(dead_code)]

use autotune_runtime::{random_inputs, Database, Plan, RuntimeError};
use std::path::Path;
use std::time::Instant;

pub struct AbArgs {
    pub model: String,
    pub log: Option<Database>,
    pub threads: u32,
    pub rounds: usize,
    /// Arguments after ROUNDS.
    pub rest: Vec<String>,
}

impl AbArgs {
    /// Reads the command line; `usage` is the error without a model.
    pub fn parse(usage: &str) -> Result<AbArgs, Box<dyn std::error::Error>> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let Some(model) = args.first().cloned() else { return Err(usage.into()) };
        let log =
            args.get(1).filter(|p| *p != "-").map(|p| Database::open_read_only(Path::new(p))).transpose()?;
        Ok(AbArgs {
            model,
            log,
            threads: args.get(2).map(|t| t.parse()).transpose()?.unwrap_or(1),
            rounds: args.get(3).map(|t| t.parse()).transpose()?.unwrap_or(30),
            rest: args.iter().skip(4).cloned().collect(),
        })
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One seeded random value per input of `plan`, by name.
pub fn random_named_inputs(plan: &Plan) -> Vec<(String, Vec<f32>)> {
    let inputs = plan.inputs();
    let values = random_inputs(&inputs, 0);
    inputs.into_iter().map(|info| info.name).zip(values).collect()
}

pub fn as_named(inputs: &[(String, Vec<f32>)]) -> Vec<(&str, &[f32])> {
    inputs.iter().map(|(name, v)| (name.as_str(), v.as_slice())).collect()
}

/// Each plan's run times over `rounds` interleaved rounds, the order alternating so neither
/// always runs on a cache the other warmed; `after_round` runs after each round.
pub fn interleaved(
    plans: &mut [Plan; 2],
    named: &[(&str, &[f32])],
    rounds: usize,
    mut after_round: impl FnMut(usize, &mut [Plan; 2]) -> Result<(), RuntimeError>,
) -> Result<[Vec<f64>; 2], RuntimeError> {
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for k in [round % 2, 1 - round % 2] {
            let start = Instant::now();
            plans[k].run(named)?;
            times[k].push(start.elapsed().as_secs_f64());
        }
        after_round(round, plans)?;
    }
    Ok(times)
}
