//! Which task of a model gets the next batch: the one whose improvement most lowers the model's
//! weighted end-to-end latency (Ansor's gradient-based task scheduler, simplified).
//!
//! The objective is `Σ weight_i · best_latency_i` (weights: how often a task occurs in the model).
//! A task's expected gain per trial is its weight times a blend of its recent improvement rate
//! (best latency `window_trials` trials ago minus now, per trial) and an optimistic forward
//! estimate (`best_latency / trials`: tasks tuned little may still improve a lot). Every task first
//! gets `min_trials_per_task` trials (round robin); after that, with probability `exploration` the
//! next batch goes to a random task, otherwise to the task with the largest gain. A task without
//! any valid kernel yet goes first after the round robin: its latency is unknown and infinite.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Settings of the [`TaskScheduler`].
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSchedulerConfig {
    /// Seeds the exploration draws: same seed, same history → same choices.
    pub seed: u64,
    /// Trials every task gets before gains decide (the guaranteed minimum).
    pub min_trials_per_task: usize,
    /// Probability of giving a batch to a uniformly random task.
    pub exploration: f64,
    /// Trials over which the recent improvement rate is measured.
    pub window_trials: usize,
    /// Weight of the recent rate against the optimistic forward estimate (0..1).
    pub backward_weight: f64,
}

impl Default for TaskSchedulerConfig {
    fn default() -> Self {
        TaskSchedulerConfig {
            seed: 0,
            min_trials_per_task: 16,
            exploration: 0.05,
            window_trials: 32,
            backward_weight: 0.7,
        }
    }
}

/// Chooses the task of each batch. Feed it with [`record`](Self::record) after every batch.
#[derive(Clone, Debug)]
pub struct TaskScheduler {
    weights: Vec<f64>,
    config: TaskSchedulerConfig,
    rng: ChaCha8Rng,
    trials: Vec<usize>,
    /// Per task: (trials so far, best latency so far) after each recorded batch.
    history: Vec<Vec<(usize, Option<f64>)>>,
}

impl TaskScheduler {
    /// `weights[i]`: occurrences of task `i` in the model (non-positive weights count as 0).
    pub fn new(weights: Vec<f64>, config: TaskSchedulerConfig) -> Self {
        let n = weights.len();
        TaskScheduler {
            weights: weights.into_iter().map(|w| if w > 0.0 { w } else { 0.0 }).collect(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            trials: vec![0; n],
            history: vec![Vec::new(); n],
        }
    }

    pub fn n_tasks(&self) -> usize {
        self.weights.len()
    }

    /// Trials recorded per task.
    pub fn trials(&self) -> &[usize] {
        &self.trials
    }

    /// Records a batch of `n_trials` trials of task `task_idx`, after which its best latency (all
    /// sessions) is `best_latency_s` (`None`: no valid kernel yet).
    pub fn record(&mut self, task_idx: usize, n_trials: usize, best_latency_s: Option<f64>) {
        if task_idx >= self.n_tasks() {
            return;
        }
        self.trials[task_idx] += n_trials;
        let best = best_latency_s.filter(|l| l.is_finite() && *l > 0.0);
        self.history[task_idx].push((self.trials[task_idx], best));
    }

    fn best_latency(&self, task_idx: usize) -> Option<f64> {
        self.history[task_idx].last().and_then(|(_, best)| *best)
    }

    /// The weighted end-to-end latency `Σ weight_i · best_latency_i`; `None` while a task with
    /// positive weight has no valid kernel.
    pub fn weighted_latency(&self) -> Option<f64> {
        (0..self.n_tasks())
            .filter(|&i| self.weights[i] > 0.0)
            .map(|i| self.best_latency(i).map(|latency| self.weights[i] * latency))
            .sum()
    }

    /// Expected decrease of the weighted latency per trial spent on `task_idx`.
    pub fn expected_gain(&self, task_idx: usize) -> f64 {
        let weight = self.weights[task_idx];
        let Some(latency) = self.best_latency(task_idx) else {
            return if weight > 0.0 { f64::INFINITY } else { 0.0 };
        };
        let trials = self.trials[task_idx].max(1);
        let window_start = trials.saturating_sub(self.config.window_trials.max(1));
        // Best latency at the latest record no later than the window start (or the first one).
        let earlier = self.history[task_idx]
            .iter()
            .rev()
            .find(|(n, best)| *n <= window_start && best.is_some())
            .or_else(|| self.history[task_idx].iter().find(|(_, best)| best.is_some()))
            .and_then(|(n, best)| best.map(|b| (*n, b)));
        let backward = match earlier {
            Some((n, before)) if n < trials => (before - latency).max(0.0) / (trials - n) as f64,
            _ => 0.0,
        };
        let forward = latency / trials as f64;
        let alpha = self.config.backward_weight.clamp(0.0, 1.0);
        weight * (alpha * backward + (1.0 - alpha) * forward)
    }

    /// The task that gets the next batch.
    pub fn next_task(&mut self) -> usize {
        self.next_task_among(&vec![true; self.n_tasks()]).unwrap_or(0)
    }

    /// The task that gets the next batch among those with `eligible[i]` (tasks that reached their
    /// trial cap or exhausted their space are not); `None` when none is.
    pub fn next_task_among(&mut self, eligible: &[bool]) -> Option<usize> {
        let candidates: Vec<usize> =
            (0..self.n_tasks()).filter(|&i| eligible.get(i) == Some(&true)).collect();
        match candidates.as_slice() {
            [] => return None,
            [only] => return Some(*only),
            _ => {}
        }
        if let Some(behind) = candidates
            .iter()
            .copied()
            .filter(|&i| self.weights[i] > 0.0 && self.trials[i] < self.config.min_trials_per_task)
            .min_by_key(|&i| (self.trials[i], i))
        {
            return Some(behind);
        }
        if self.rng.gen_bool(self.config.exploration.clamp(0.0, 1.0)) {
            return Some(candidates[self.rng.gen_range(0..candidates.len())]);
        }
        candidates
            .iter()
            .map(|&i| (i, self.expected_gain(i)))
            .fold(None, |best: Option<(usize, f64)>, (i, gain)| match best {
                Some((_, best_gain)) if gain <= best_gain => best,
                _ => Some((i, gain)),
            })
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Best latency of a synthetic task after `t` trials: from `start` down towards `floor`.
    fn curve(start: f64, floor: f64, speed: f64, t: usize) -> f64 {
        floor + (start - floor) / (1.0 + t as f64 / speed)
    }

    /// Runs `n_batches` batches of 8 trials; task `i` follows `curves[i]`.
    fn simulate(weights: Vec<f64>, curves: &[(f64, f64, f64)], n_batches: usize, seed: u64) -> TaskScheduler {
        let mut scheduler = TaskScheduler::new(weights, TaskSchedulerConfig { seed, ..Default::default() });
        for _ in 0..n_batches {
            let task = scheduler.next_task();
            let t = scheduler.trials()[task] + 8;
            let (start, floor, speed) = curves[task];
            scheduler.record(task, 8, Some(curve(start, floor, speed, t)));
        }
        scheduler
    }

    #[test]
    fn every_task_gets_its_minimum_first() {
        let scheduler = simulate(vec![1.0, 1.0, 1.0], &[(1.0, 0.5, 10.0); 3], 6, 0);
        assert_eq!(scheduler.trials(), &[16, 16, 16]);
    }

    #[test]
    fn the_task_with_more_weighted_gain_gets_more_trials() {
        // Same weight: task 0 has much more to gain than task 1 (which is already near its floor).
        let scheduler = simulate(vec![1.0, 1.0], &[(10.0, 1.0, 30.0), (1.1, 1.0, 30.0)], 60, 1);
        let trials = scheduler.trials();
        assert!(trials[0] > 2 * trials[1], "{trials:?}");
        assert!(trials[1] >= 16, "the guaranteed minimum: {trials:?}");

        // Same curves: the task that occurs 4 times in the model gets more trials.
        let scheduler = simulate(vec![1.0, 4.0], &[(4.0, 1.0, 40.0), (4.0, 1.0, 40.0)], 60, 1);
        let trials = scheduler.trials();
        assert!(trials[1] > trials[0], "{trials:?}");
    }

    #[test]
    fn same_seed_same_choices() {
        let curves = [(3.0, 1.0, 20.0), (2.0, 1.0, 50.0), (5.0, 2.0, 10.0)];
        let a = simulate(vec![1.0, 2.0, 1.0], &curves, 40, 9);
        let b = simulate(vec![1.0, 2.0, 1.0], &curves, 40, 9);
        assert_eq!(a.trials(), b.trials());
        assert_eq!(a.weighted_latency(), b.weighted_latency());
    }

    #[test]
    fn a_task_without_a_valid_kernel_goes_first_and_latency_is_unknown_until_it_has_one() {
        let mut scheduler = TaskScheduler::new(
            vec![1.0, 1.0],
            TaskSchedulerConfig { min_trials_per_task: 0, exploration: 0.0, ..Default::default() },
        );
        scheduler.record(0, 8, Some(1.0));
        scheduler.record(1, 8, None);
        assert_eq!(scheduler.weighted_latency(), None);
        assert_eq!(scheduler.next_task(), 1);
        scheduler.record(1, 8, Some(2.0));
        assert_eq!(scheduler.weighted_latency(), Some(3.0));
    }

    #[test]
    fn only_eligible_tasks_are_chosen() {
        let mut scheduler = TaskScheduler::new(vec![1.0, 5.0, 1.0], TaskSchedulerConfig::default());
        for _ in 0..20 {
            let chosen = scheduler.next_task_among(&[true, false, true]).expect("two eligible");
            assert_ne!(chosen, 1);
            scheduler.record(chosen, 8, Some(1.0));
        }
        assert_eq!(scheduler.next_task_among(&[false, false, false]), None);
        assert_eq!(scheduler.next_task_among(&[false, true, false]), Some(1));
    }
}
