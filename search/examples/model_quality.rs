//! How well the cost model ranks held-out trials of a tuning log: k-fold cross-validation of the
//! search's own model ([`RandomForestModel`] on [`LoopNestFeaturizer`] features) on every task
//! of the log, reported as pairwise ranking accuracy and top-k recall. Used by `bench/search.py`.
//!
//! ```text
//! cargo run --release -p autotune-search --example model_quality -- LOG.db [--folds 5] [--seed 0]
//! ```
//!
//! Prints one JSON object per line per (task, target) with at least 20 valid trials. Best run on
//! a log of *random* search, whose trials are a fair sample of the space.

use std::path::Path;

use autotune_cost_model::ranking::{pairwise_ranking_accuracy, top_k_recall};
use autotune_cost_model::{CostModel, ForestConfig, MachineModel, RandomForestModel, Sample};
use autotune_db::Database;
use autotune_ir::{Target, Task, Trace};
use autotune_schedules::space_for;
use autotune_search::{Featurizer, LoopNestFeaturizer};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() {
    if let Err(message) = run() {
        eprintln!("model_quality: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut path = None;
    let (mut folds, mut seed) = (5usize, 0u64);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--folds" => {
                folds = args.get(i + 1).and_then(|v| v.parse().ok()).ok_or("--folds needs a number")?;
                i += 1;
            }
            "--seed" => {
                seed = args.get(i + 1).and_then(|v| v.parse().ok()).ok_or("--seed needs a number")?;
                i += 1;
            }
            other => path = Some(other.to_string()),
        }
        i += 1;
    }
    let path = path.ok_or("usage: model_quality LOG.db [--folds K] [--seed S]")?;
    let db = Database::open_read_only(Path::new(&path)).map_err(|e| e.to_string())?;
    let targets = db.targets().map_err(|e| e.to_string())?;
    for (_, workload) in db.workloads().map_err(|e| e.to_string())? {
        let task: Task = serde_json::from_str(&workload.task_json).map_err(|e| e.to_string())?;
        for (_, target_spec) in &targets {
            let target: Target = serde_json::from_str(&target_spec.target_json).map_err(|e| e.to_string())?;
            let Ok(space) = space_for(&task, &target) else { continue };
            let featurizer = LoopNestFeaturizer::new(space.as_ref(), MachineModel::for_target(&target));
            let records =
                db.trials(&workload.task_key, &target_spec.target_key).map_err(|e| e.to_string())?;
            let samples: Vec<Sample> = records
                .iter()
                .filter(|r| r.space_version == space.version())
                .filter_map(|r| {
                    let median_s = r.median_s?;
                    let trace = Trace::from_json(&r.trace_json).ok()?;
                    let features = featurizer.features(&trace)?;
                    Some(Sample { features, score: (task.flops() / median_s / 1e9).log2(), weight: 1.0 })
                })
                .collect();
            if samples.len() < 20 {
                continue;
            }
            let (accuracy, recall, k) = cross_validate(&samples, folds.max(2), seed);
            println!(
                "{}",
                serde_json::json!({
                    "task": task.description(), "threads": target.threads(), "n_trials": samples.len(),
                    "folds": folds, "pairwise_accuracy": accuracy, "top_k_recall": recall, "k": k,
                })
            );
        }
    }
    Ok(())
}

/// Mean over folds of (pairwise accuracy, top-k recall) on the held-out fold, k = 10 % of a fold.
fn cross_validate(samples: &[Sample], folds: usize, seed: u64) -> (f64, f64, usize) {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let (mut accuracy, mut recall, mut n) = (0.0, 0.0, 0.0);
    let k = (samples.len() / folds / 10).max(1);
    for fold in 0..folds {
        let held_out: Vec<usize> = order.iter().copied().skip(fold).step_by(folds).collect();
        let train: Vec<Sample> =
            order.iter().filter(|i| !held_out.contains(i)).map(|&i| samples[i].clone()).collect();
        let mut model = RandomForestModel::new(ForestConfig { seed, ..ForestConfig::default() });
        if model.fit(&train).is_err() {
            continue;
        }
        let rows: Vec<Vec<f64>> = held_out.iter().map(|&i| samples[i].features.clone()).collect();
        let predicted: Vec<f64> = model.predict(&rows).iter().map(|p| p.mean).collect();
        let actual: Vec<f64> = held_out.iter().map(|&i| samples[i].score).collect();
        if let (Some(a), Some(r)) =
            (pairwise_ranking_accuracy(&predicted, &actual), top_k_recall(&predicted, &actual, k))
        {
            accuracy += a;
            recall += r;
            n += 1.0;
        }
    }
    (accuracy / n, recall / n, k)
}
