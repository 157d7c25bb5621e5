//! A/B of zero borders (`Graph::add_halos`): the same model in channel blocks planned twice, with
//! and without borders, timed in interleaved rounds in one process; prints each one's median
//! latency, their ratio, how many tasks ran a borderless twin's schedule, and how far apart the
//! outputs are. With a BEFORE_LOG, the second side is the bordered model too, with that log
//! instead: a log whose bordered tasks were tuned against the same log before (their borderless
//! twins' schedules).
//!
//! ```text
//! cargo run --release -p autotune-runtime --example halo_ab -- MODEL.onnx [TUNING_LOG|-] [THREADS] [ROUNDS] [BEFORE_LOG]
//! ```

#[path = "support/ab.rs"]
mod ab;

use ab::{as_named, interleaved, median, random_named_inputs, AbArgs};
use autotune_ir::ChannelBlocks;
use autotune_runtime::{host_cpu_target, Database, Plan, PlanConfig};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let AbArgs { model, log, threads, rounds, rest } =
        AbArgs::parse("usage: halo_ab MODEL.onnx [TUNING_LOG|-] [THREADS] [ROUNDS] [BEFORE_LOG]")?;
    let before = rest.first().map(|p| Database::open_read_only(Path::new(p))).transpose()?;
    let mut borderless = autotune_graph::load(Path::new(&model), &Default::default())?;
    borderless.block_channels(ChannelBlocks::cpu_block());
    let mut bordered = borderless.clone();
    let n_bordered = bordered.add_halos();
    let target = host_cpu_target(threads)?;
    let (b_graph, b_log, b_name) = match &before {
        Some(before) => (&bordered, Some(before), "before"),
        None => (&borderless, log.as_ref(), "borderless"),
    };
    let mut plans = [
        Plan::new(&bordered, log.as_ref(), &target, PlanConfig::default())?,
        Plan::new(b_graph, b_log, &target, PlanConfig::default())?,
    ];
    let inputs = random_named_inputs(&plans[0]);
    let named = as_named(&inputs);
    let outputs: Vec<_> = plans.iter_mut().map(|p| p.run(&named)).collect::<Result<_, _>>()?;
    let max_diff = outputs[0]
        .iter()
        .zip(&outputs[1])
        .flat_map(|((_, a), (_, b))| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0f32, f32::max);

    let times = interleaved(&mut plans, &named, rounds, |_, _| Ok(()))?;
    let [with, without] = [median(times[0].clone()), median(times[1].clone())];
    println!(
        "{model}, {threads} thread(s), {rounds} interleaved rounds: bordered {:.3} ms, {b_name} {:.3} ms, ratio {:.3}; {n_bordered} tensors bordered, {} vs {} of {} tasks on a borderless twin's schedule, {} default vs {}; outputs differ by at most {max_diff:e}",
        with * 1e3,
        without * 1e3,
        with / without,
        plans[0].borderless_tasks().count(),
        plans[1].borderless_tasks().count(),
        plans[0].tasks().len(),
        plans[0].n_default(),
        plans[1].n_default(),
    );
    Ok(())
}
