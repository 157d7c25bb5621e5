//! Random search without replacement: the baseline.

use std::collections::HashSet;

use autotune_ir::Trace;
use autotune_measure::MeasureOutcome;
use autotune_schedules::SpaceGenerator;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::strategy::SearchStrategy;

/// Settings of [`RandomSearch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RandomSearchConfig {
    /// Seed of the sampler: the same seed (and the same measured set) gives the same proposals.
    pub seed: u64,
    /// How many consecutive already-seen samples per requested trace make the space "look
    /// exhausted". At least `4 × min(space size, 65 536)` is always allowed, so that a small space
    /// is enumerated completely. Default 64.
    pub duplicate_samples_per_trace: usize,
}

impl RandomSearchConfig {
    pub fn new(seed: u64) -> Self {
        RandomSearchConfig { seed, duplicate_samples_per_trace: 64 }
    }
}

impl Default for RandomSearchConfig {
    fn default() -> Self {
        RandomSearchConfig::new(0)
    }
}

/// Samples the space uniformly and never proposes a point twice, nor one measured before.
///
/// Ignores measurement results: it is the baseline that strategies which learn must beat.
pub struct RandomSearch<'a> {
    space: &'a dyn SpaceGenerator,
    /// `space.size()`, computed once: spaces may count their points by enumeration.
    space_size: u64,
    config: RandomSearchConfig,
    rng: ChaCha8Rng,
    /// Keys of every trace proposed so far.
    proposed: HashSet<String>,
}

impl std::fmt::Debug for RandomSearch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RandomSearch")
            .field("space_version", &self.space.version())
            .field("config", &self.config)
            .field("n_proposed", &self.proposed.len())
            .finish()
    }
}

impl<'a> RandomSearch<'a> {
    pub fn new(space: &'a dyn SpaceGenerator, config: RandomSearchConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        RandomSearch { space, space_size: space.size(), config, rng, proposed: HashSet::new() }
    }

    /// Number of traces proposed so far.
    pub fn n_proposed(&self) -> usize {
        self.proposed.len()
    }

    /// Consecutive duplicate samples after which a request for `n` traces gives up.
    fn duplicate_budget(&self, n: usize) -> usize {
        let small_space = self.space_size.min(1 << 16) as usize;
        self.config.duplicate_samples_per_trace.saturating_mul(n).max(4 * small_space)
    }
}

impl SearchStrategy for RandomSearch<'_> {
    fn name(&self) -> &'static str {
        "random"
    }

    fn propose(&mut self, n: usize, already_measured: &HashSet<String>) -> Vec<Trace> {
        let size = self.space_size;
        // Distinct points known to be taken: proposed by us, or measured by anyone.
        let measured_elsewhere = already_measured.iter().filter(|key| !self.proposed.contains(*key)).count();
        let mut n_seen = (self.proposed.len() + measured_elsewhere) as u64;
        let budget = self.duplicate_budget(n);
        let mut consecutive_duplicates = 0;
        let mut batch = Vec::with_capacity(n);
        while batch.len() < n && n_seen < size {
            let trace = self.space.sample(&mut self.rng);
            let key = trace.key();
            if already_measured.contains(&key) || self.proposed.contains(&key) {
                consecutive_duplicates += 1;
                if consecutive_duplicates >= budget {
                    break;
                }
                continue;
            }
            consecutive_duplicates = 0;
            self.proposed.insert(key);
            n_seen += 1;
            batch.push(trace);
        }
        batch
    }

    fn observe(&mut self, _results: &[(Trace, MeasureOutcome)]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeSpace;

    fn drain(search: &mut RandomSearch<'_>, batch: usize, measured: &HashSet<String>) -> Vec<Trace> {
        let mut all = Vec::new();
        loop {
            let proposed = search.propose(batch, measured);
            assert!(proposed.len() <= batch);
            if proposed.is_empty() {
                return all;
            }
            all.extend(proposed);
        }
    }

    #[test]
    fn proposes_every_point_exactly_once_then_reports_exhaustion() {
        let space = FakeSpace::new();
        let mut search = RandomSearch::new(&space, RandomSearchConfig::new(7));
        let all = drain(&mut search, 5, &HashSet::new());
        let keys: HashSet<String> = all.iter().map(Trace::key).collect();
        assert_eq!(all.len() as u64, space.size());
        assert_eq!(keys.len(), all.len(), "a point was proposed twice");
        assert_eq!(keys, space.all_points().iter().map(Trace::key).collect());
        // Exhausted stays exhausted.
        assert!(search.propose(3, &HashSet::new()).is_empty());
        assert_eq!(search.n_proposed() as u64, space.size());
    }

    #[test]
    fn never_proposes_an_already_measured_trace() {
        let space = FakeSpace::new();
        let points = space.all_points();
        let measured: HashSet<String> = points.iter().step_by(3).map(Trace::key).collect();
        let mut search = RandomSearch::new(&space, RandomSearchConfig::new(1));
        let all = drain(&mut search, 4, &measured);
        assert_eq!(all.len(), points.len() - measured.len());
        assert!(all.iter().all(|trace| !measured.contains(&trace.key())));
    }

    #[test]
    fn same_seed_same_sequence_different_seed_different_sequence() {
        let space = FakeSpace::new();
        let run = |seed| {
            let mut search = RandomSearch::new(&space, RandomSearchConfig::new(seed));
            drain(&mut search, 3, &HashSet::new())
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn zero_requested_gives_zero() {
        let space = FakeSpace::new();
        let mut search = RandomSearch::new(&space, RandomSearchConfig::new(0));
        assert!(search.propose(0, &HashSet::new()).is_empty());
        assert_eq!(search.propose(2, &HashSet::new()).len(), 2);
    }
}
