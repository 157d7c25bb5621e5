//! A/B of Concat in place (`PlanConfig::concat_in_place`): the same model planned twice, with and
//! without, timed in interleaved rounds in one process; prints each one's median latency, their
//! ratio, the time the Concat steps take in each, and that the outputs are identical.
//!
//! ```text
//! cargo run --release -p autotune-runtime --example concat_in_place_ab -- MODEL.onnx [TUNING_LOG|-] [THREADS] [ROUNDS]
//! ```

use autotune_runtime::{host_cpu_target, random_inputs, Database, Plan, PlanConfig};
use std::path::Path;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model) = args.first() else {
        return Err("usage: concat_in_place_ab MODEL.onnx [TUNING_LOG|-] [THREADS] [ROUNDS]".into());
    };
    let log =
        args.get(1).filter(|p| *p != "-").map(|p| Database::open_read_only(Path::new(p))).transpose()?;
    let threads: u32 = args.get(2).map(|t| t.parse()).transpose()?.unwrap_or(1);
    let rounds: usize = args.get(3).map(|t| t.parse()).transpose()?.unwrap_or(30);
    let graph = autotune_graph::load(Path::new(model), &Default::default())?;
    let target = host_cpu_target(threads)?;
    let copying = PlanConfig { concat_in_place: false, ..PlanConfig::default() };
    let mut plans = [
        Plan::new(&graph, log.as_ref(), &target, PlanConfig::default())?,
        Plan::new(&graph, log.as_ref(), &target, copying)?,
    ];
    let inputs = plans[0].inputs();
    let values = random_inputs(&inputs, 0);
    let named: Vec<(&str, &[f32])> =
        inputs.iter().zip(&values).map(|(info, v)| (info.name.as_str(), v.as_slice())).collect();
    let outputs: Vec<_> = plans.iter_mut().map(|p| p.run(&named)).collect::<Result<_, _>>()?;
    let identical = outputs[0] == outputs[1];

    let mut times = [Vec::new(), Vec::new()];
    let mut concat_s = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        // Alternate which goes first, so neither always runs on a cache the other warmed.
        for k in [round % 2, 1 - round % 2] {
            let start = Instant::now();
            plans[k].run(&named)?;
            times[k].push(start.elapsed().as_secs_f64());
        }
        if round % 5 == 0 {
            for (k, plan) in plans.iter_mut().enumerate() {
                let (_, steps) = plan.run_profiled(&named)?;
                concat_s[k]
                    .push(steps.iter().filter(|t| t.op.starts_with("concat")).map(|t| t.seconds).sum());
            }
        }
    }
    let [in_place, copied] = [median(times[0].clone()), median(times[1].clone())];
    println!(
        "{model}, {threads} thread(s), {rounds} interleaved rounds: in place {:.3} ms, copying {:.3} ms, ratio {:.3}; concat steps {:.3} vs {:.3} ms; activations {:.1} vs {:.1} MiB; outputs identical: {identical}",
        in_place * 1e3,
        copied * 1e3,
        in_place / copied,
        median(concat_s[0].clone()) * 1e3,
        median(concat_s[1].clone()) * 1e3,
        plans[0].memory().activation_bytes as f64 / (1 << 20) as f64,
        plans[1].memory().activation_bytes as f64 / (1 << 20) as f64,
    );
    Ok(())
}
