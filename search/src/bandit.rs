//! A multi-armed bandit over search techniques, credited by the improvements each one produced:
//! OpenTuner's area-under-curve (AUC) bandit.
//!
//! Every measured candidate is one use of the technique that proposed it, with a reward of 1 if
//! it beat the best score known when it was measured, else 0. A technique's exploitation value is
//! the area under its cumulative-success curve over a sliding window of recent uses, normalised
//! to [0, 1], which favours techniques whose successes are recent; the exploration bonus is the
//! UCB term `C · sqrt(2 ln(window uses) / own uses)`. Unused arms go first.

use std::collections::VecDeque;

/// Settings of the [`AucBandit`].
#[derive(Clone, Debug, PartialEq)]
pub struct BanditConfig {
    /// Recent uses (of all arms) the credit is computed over.
    pub window: usize,
    /// Weight of the exploration bonus.
    pub exploration: f64,
    /// Pseudo uses `(arm, improved)` the history starts with, oldest first.
    pub prior: Vec<(usize, bool)>,
}

impl Default for BanditConfig {
    fn default() -> Self {
        BanditConfig { window: 96, exploration: 0.15, prior: Vec::new() }
    }
}

/// Chooses between `n_arms` techniques.
#[derive(Clone, Debug)]
pub struct AucBandit {
    config: BanditConfig,
    n_arms: usize,
    /// (arm, improved) per use, oldest first, at most `window` entries.
    history: VecDeque<(usize, bool)>,
}

impl AucBandit {
    pub fn new(n_arms: usize, config: BanditConfig) -> Self {
        let prior = config.prior.clone();
        let mut bandit = AucBandit { config, n_arms: n_arms.max(1), history: VecDeque::new() };
        for (arm, improved) in prior {
            bandit.record(arm, improved);
        }
        bandit
    }

    /// Records one use of `arm` and whether it produced an improvement.
    pub fn record(&mut self, arm: usize, improved: bool) {
        if arm >= self.n_arms {
            return;
        }
        self.history.push_back((arm, improved));
        while self.history.len() > self.config.window.max(1) {
            self.history.pop_front();
        }
    }

    fn uses(&self, arm: usize) -> usize {
        self.history.iter().filter(|(a, _)| *a == arm).count()
    }

    /// Normalised area under `arm`'s cumulative-success curve in the window (0 without uses).
    pub fn auc(&self, arm: usize) -> f64 {
        let (mut position, mut area) = (0.0, 0.0);
        for &(a, improved) in &self.history {
            if a == arm {
                position += 1.0;
                if improved {
                    area += position;
                }
            }
        }
        if position == 0.0 {
            0.0
        } else {
            area * 2.0 / (position * (position + 1.0))
        }
    }

    /// Exploitation plus exploration; `extra_uses[arm]` counts picks not yet recorded (slots of
    /// the batch being planned), so one batch can mix arms.
    fn score(&self, arm: usize, extra_uses: &[usize]) -> f64 {
        let uses = self.uses(arm) + extra_uses.get(arm).copied().unwrap_or(0);
        if uses == 0 {
            return f64::INFINITY;
        }
        let total = (self.history.len() + extra_uses.iter().sum::<usize>()).max(2) as f64;
        self.auc(arm) + self.config.exploration * (2.0 * total.ln() / uses as f64).sqrt()
    }

    /// Arms for `n` slots, one at a time, each counted as a use for the next slot's choice.
    /// Deterministic: ties go to the lower arm.
    pub fn plan(&self, n: usize) -> Vec<usize> {
        let mut extra = vec![0usize; self.n_arms];
        (0..n)
            .map(|_| {
                let arm = (0..self.n_arms)
                    .map(|arm| (arm, self.score(arm, &extra)))
                    .fold(
                        (0, f64::NEG_INFINITY),
                        |best, (arm, score)| if score > best.1 { (arm, score) } else { best },
                    )
                    .0;
                extra[arm] += 1;
                arm
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untried_arms_go_first_then_the_one_that_improves() {
        let mut bandit = AucBandit::new(3, BanditConfig::default());
        assert_eq!(bandit.plan(3), vec![0, 1, 2]);
        for round in 0..20 {
            bandit.record(0, false);
            bandit.record(1, round % 2 == 0);
            bandit.record(2, false);
        }
        let plan = bandit.plan(8);
        let n_one = plan.iter().filter(|&&arm| arm == 1).count();
        assert!(n_one >= 5, "{plan:?}");
    }

    #[test]
    fn recent_successes_count_more_than_old_ones() {
        let mut early = AucBandit::new(1, BanditConfig::default());
        let mut late = AucBandit::new(1, BanditConfig::default());
        for i in 0..10 {
            early.record(0, i < 3);
            late.record(0, i >= 7);
        }
        assert!(late.auc(0) > early.auc(0));
    }

    #[test]
    fn the_window_forgets() {
        let mut bandit = AucBandit::new(2, BanditConfig { window: 4, exploration: 0.0, prior: Vec::new() });
        for _ in 0..4 {
            bandit.record(0, true);
        }
        for _ in 0..4 {
            bandit.record(1, false);
        }
        assert_eq!(bandit.auc(0), 0.0, "arm 0's successes left the window");
        assert_eq!(bandit.uses(0), 0);
    }

    #[test]
    fn a_prior_decides_the_first_batch_and_then_fades() {
        let prior = vec![(0, false), (1, true), (1, true)];
        let mut bandit = AucBandit::new(2, BanditConfig { window: 16, prior, ..BanditConfig::default() });
        assert_eq!(bandit.plan(8), vec![1; 8], "the trusted arm takes the first batch");
        // The trusted arm stops improving, the other one does: the prior leaves the window.
        for _ in 0..8 {
            bandit.record(1, false);
            bandit.record(0, true);
        }
        let plan = bandit.plan(8);
        assert!(plan.iter().filter(|&&arm| arm == 0).count() >= 5, "{plan:?}");
    }
}
