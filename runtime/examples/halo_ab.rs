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

use autotune_ir::ChannelBlocks;
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
        return Err("usage: halo_ab MODEL.onnx [TUNING_LOG|-] [THREADS] [ROUNDS] [BEFORE_LOG]".into());
    };
    let log =
        args.get(1).filter(|p| *p != "-").map(|p| Database::open_read_only(Path::new(p))).transpose()?;
    let threads: u32 = args.get(2).map(|t| t.parse()).transpose()?.unwrap_or(1);
    let rounds: usize = args.get(3).map(|t| t.parse()).transpose()?.unwrap_or(30);
    let before = args.get(4).map(|p| Database::open_read_only(Path::new(p))).transpose()?;
    let mut borderless = autotune_graph::load(Path::new(model), &Default::default())?;
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
    let inputs = plans[0].inputs();
    let values = random_inputs(&inputs, 0);
    let named: Vec<(&str, &[f32])> =
        inputs.iter().zip(&values).map(|(info, v)| (info.name.as_str(), v.as_slice())).collect();
    let outputs: Vec<_> = plans.iter_mut().map(|p| p.run(&named)).collect::<Result<_, _>>()?;
    let max_diff = outputs[0]
        .iter()
        .zip(&outputs[1])
        .flat_map(|((_, a), (_, b))| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0f32, f32::max);

    let mut times = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        // Alternate which goes first, so neither always runs on a cache the other warmed.
        for k in [round % 2, 1 - round % 2] {
            let start = Instant::now();
            plans[k].run(&named)?;
            times[k].push(start.elapsed().as_secs_f64());
        }
    }
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
