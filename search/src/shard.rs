//! Splitting a model's tasks between machines (`autotune MODEL.onnx --shard I/N`): every task in
//! exactly one shard, the shards' estimated tuning costs as even as a greedy split makes them,
//! and the same split on every machine — it depends only on the tasks, never on their order, the
//! host, or a random seed, because each shard computes it on its own.

use autotune_ir::Task;

/// What one trial of `task` costs, in units of one kernel build: a build, plus a run time that
/// grows with the task's FLOPs (a GFLOP at a few tens of GFLOP/s, times the timed repeats,
/// costs about as much as a build). An estimate for balancing shards, not a prediction.
pub fn estimated_trial_cost(task: &Task) -> f64 {
    1.0 + task.flops() / 2e9
}

/// The shard (0..n) of each of `tasks`: longest-processing-time-first — the costliest task goes
/// to the least loaded shard, ties broken by task key and then by the lowest shard index.
pub fn assign_shards(tasks: &[Task], n: usize) -> Vec<usize> {
    assert!(n > 0, "at least one shard");
    let mut order: Vec<(f64, String, usize)> =
        tasks.iter().enumerate().map(|(i, t)| (estimated_trial_cost(t), t.key().0, i)).collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut load = vec![0.0f64; n];
    let mut shard_of = vec![0; tasks.len()];
    for (cost, _, index) in order {
        let lightest = (0..n).min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b))).unwrap_or(0);
        load[lightest] += cost;
        shard_of[index] = lightest;
    }
    shard_of
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks() -> Vec<Task> {
        [
            (8, 8, 8),
            (512, 512, 512),
            (64, 64, 64),
            (256, 256, 256),
            (1024, 1024, 64),
            (32, 32, 32),
            (128, 128, 128),
        ]
        .into_iter()
        .map(|(m, n, k)| Task::matmul(m, n, k))
        .collect()
    }

    #[test]
    fn every_task_lands_in_exactly_one_shard_whatever_the_input_order() {
        let tasks = tasks();
        let shards = assign_shards(&tasks, 3);
        assert!(shards.iter().all(|&s| s < 3));
        let mut reversed = tasks.clone();
        reversed.reverse();
        let shards_reversed = assign_shards(&reversed, 3);
        for (i, task) in tasks.iter().enumerate() {
            let j = reversed.iter().position(|t| t.key() == task.key()).expect("same tasks");
            assert_eq!(
                shards[i],
                shards_reversed[j],
                "{} moved shard with the input order",
                task.description()
            );
        }
    }

    #[test]
    fn shards_are_balanced_by_estimated_cost() {
        let tasks = tasks();
        for n in 1..=4 {
            let shards = assign_shards(&tasks, n);
            let mut load = vec![0.0; n];
            for (task, &s) in tasks.iter().zip(&shards) {
                load[s] += estimated_trial_cost(task);
            }
            let (max, total) = (load.iter().cloned().fold(0.0, f64::max), load.iter().sum::<f64>());
            let largest = tasks.iter().map(estimated_trial_cost).fold(0.0, f64::max);
            // Greedy LPT: no shard exceeds the even share by more than one task.
            assert!(max <= total / n as f64 + largest, "n={n}: {load:?}");
            assert!(load.iter().all(|&l| l > 0.0), "n={n}: an empty shard with tasks to spare: {load:?}");
        }
    }

    #[test]
    fn more_shards_than_tasks_leaves_the_extra_ones_empty() {
        let tasks = tasks();
        let shards = assign_shards(&tasks, 10);
        let mut used: Vec<_> = shards.clone();
        used.sort();
        used.dedup();
        assert_eq!(used.len(), tasks.len(), "one task per shard");
    }
}
