//! A/B of Concat in place (`PlanConfig::concat_in_place`): the same model planned twice, with and
//! without, timed in interleaved rounds in one process; prints each one's median latency, their
//! ratio, the time the Concat steps take in each, and that the outputs are identical.
//!
//! ```text
//! cargo run --release -p autotune-runtime --example concat_in_place_ab -- MODEL.onnx [TUNING_LOG|-] [THREADS] [ROUNDS]
//! ```

#[path = "support/ab.rs"]
mod ab;

use ab::{as_named, interleaved, median, random_named_inputs, AbArgs};
use autotune_runtime::{host_cpu_target, Plan, PlanConfig};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let AbArgs { model, log, threads, rounds, .. } =
        AbArgs::parse("usage: concat_in_place_ab MODEL.onnx [TUNING_LOG|-] [THREADS] [ROUNDS]")?;
    let graph = autotune_graph::load(Path::new(&model), &Default::default())?;
    let target = host_cpu_target(threads)?;
    let copying = PlanConfig { concat_in_place: false, ..PlanConfig::default() };
    let mut plans = [
        Plan::new(&graph, log.as_ref(), &target, PlanConfig::default())?,
        Plan::new(&graph, log.as_ref(), &target, copying)?,
    ];
    let inputs = random_named_inputs(&plans[0]);
    let named = as_named(&inputs);
    let outputs: Vec<_> = plans.iter_mut().map(|p| p.run(&named)).collect::<Result<_, _>>()?;
    let identical = outputs[0] == outputs[1];

    let mut concat_s = [Vec::new(), Vec::new()];
    let times = interleaved(&mut plans, &named, rounds, |round, plans| {
        if round % 5 == 0 {
            for (k, plan) in plans.iter_mut().enumerate() {
                let (_, steps) = plan.run_profiled(&named)?;
                concat_s[k]
                    .push(steps.iter().filter(|t| t.op.starts_with("concat")).map(|t| t.seconds).sum());
            }
        }
        Ok(())
    })?;
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
