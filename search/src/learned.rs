//! Search that learns from every measurement: evolutionary search on a cost model, Bayesian
//! optimization, and the bandit (`auto`) that shares a batch between them and random sampling.

use std::collections::{HashMap, HashSet, VecDeque};

use autotune_cost_model::{CostModel, Prediction};
use autotune_ir::Trace;
use autotune_measure::MeasureOutcome;
use autotune_schedules::SpaceGenerator;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::bandit::{AucBandit, BanditConfig};
use crate::evolution::{evolve, EvolutionConfig};
use crate::featurize::Featurizer;
use crate::strategy::SearchStrategy;
use crate::surrogate::{Surrogate, SurrogateConfig};
use crate::transfer::WarmStart;

/// A way of choosing candidates; `auto` mixes them with a bandit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Technique {
    /// Uniform samples of the space, ignoring the model (the bandit's safety net).
    Random,
    /// Evolutionary search maximising the model's predicted score (plus a share of random
    /// samples, see [`LearnedSearchConfig::random_share`]).
    Evolutionary,
    /// Evolutionary search maximising an acquisition function of the model's mean and spread.
    BayesOpt,
}

impl Technique {
    pub fn name(self) -> &'static str {
        match self {
            Technique::Random => "random",
            Technique::Evolutionary => "evolutionary",
            Technique::BayesOpt => "bo",
        }
    }
}

/// What Bayesian optimization maximises.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Acquisition {
    /// Expected improvement over the best score so far by more than `xi` (log2 GFLOP/s).
    ExpectedImprovement { xi: f64 },
    /// Mean plus `beta` spreads.
    UpperConfidenceBound { beta: f64 },
}

impl Acquisition {
    pub fn value(self, prediction: Prediction, best: f64) -> f64 {
        match self {
            Acquisition::ExpectedImprovement { xi } => expected_improvement(prediction, best + xi),
            Acquisition::UpperConfidenceBound { beta } => prediction.mean + beta * prediction.std,
        }
    }
}

/// Settings of a [`LearnedSearch`]. One technique: that technique alone; several: the bandit
/// shares each batch between them.
#[derive(Clone, Debug, PartialEq)]
pub struct LearnedSearchConfig {
    /// Seeds sampling, evolution and (through the caller) the model.
    pub seed: u64,
    pub techniques: Vec<Technique>,
    pub bandit: BanditConfig,
    pub evolution: EvolutionConfig,
    pub surrogate: SurrogateConfig,
    pub acquisition: Acquisition,
    /// Share of an evolutionary batch replaced by random samples (ε-greedy exploration).
    pub random_share: f64,
    /// Best measured traces that seed every evolutionary run.
    pub elite_seeds: usize,
    /// Decisions in which a model-chosen candidate must differ from every other candidate of its
    /// batch, while enough such candidates exist (0: no constraint).
    pub min_batch_distance: usize,
    /// Transferred traces proposed as-is at the start (after the default schedule).
    pub max_warm_traces: usize,
    /// As in [`RandomSearchConfig`](crate::RandomSearchConfig): consecutive already-seen samples
    /// per requested trace before random sampling gives up.
    pub duplicate_samples_per_trace: usize,
}

impl LearnedSearchConfig {
    /// `auto`: random, evolutionary and BO arms under the bandit, which starts out trusting BO
    /// (the fastest to 90 % of the best on the GEMM and conv benchmarks) and random least; the
    /// prior fades as real credit comes in.
    pub fn auto(seed: u64) -> Self {
        let (random, evolutionary, bayes_opt) = (0, 1, 2);
        let bandit = BanditConfig {
            prior: vec![
                (random, false),
                (evolutionary, true),
                (evolutionary, false),
                (bayes_opt, true),
                (bayes_opt, true),
            ],
            ..BanditConfig::default()
        };
        LearnedSearchConfig {
            techniques: vec![Technique::Random, Technique::Evolutionary, Technique::BayesOpt],
            random_share: 0.0,
            bandit,
            ..Self::single(Technique::BayesOpt, seed)
        }
    }

    /// One technique alone.
    pub fn single(technique: Technique, seed: u64) -> Self {
        LearnedSearchConfig {
            seed,
            techniques: vec![technique],
            bandit: BanditConfig::default(),
            evolution: EvolutionConfig::default(),
            surrogate: SurrogateConfig::default(),
            acquisition: Acquisition::UpperConfidenceBound { beta: 1.0 },
            random_share: if technique == Technique::Evolutionary { 0.125 } else { 0.0 },
            elite_seeds: 16,
            min_batch_distance: 2,
            max_warm_traces: 4,
            duplicate_samples_per_trace: 64,
        }
    }
}

/// Model-guided search: proposes the default schedule and any transferred traces first, random
/// samples until the model has data, then per batch what the techniques choose on the refitted
/// model.
pub struct LearnedSearch<'a> {
    name: &'static str,
    space: &'a dyn SpaceGenerator,
    /// `space.size()`, computed once: spaces may count their points by enumeration.
    space_size: u64,
    config: LearnedSearchConfig,
    rng: ChaCha8Rng,
    surrogate: Surrogate<'a>,
    bandit: AucBandit,
    /// Keys of every trace proposed so far.
    proposed: HashSet<String>,
    /// The technique (index into `config.techniques`) that proposed each pending trace.
    technique_of: HashMap<String, usize>,
    best_score: Option<f64>,
    /// Valid measured traces with their scores, for elite seeds.
    measured_ok: Vec<(Trace, f64)>,
    /// Traces to try before anything else: the default schedule, then transferred ones.
    pending_seeds: VecDeque<Trace>,
}

impl std::fmt::Debug for LearnedSearch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnedSearch")
            .field("name", &self.name)
            .field("space_version", &self.space.version())
            .field("config", &self.config)
            .field("surrogate", &self.surrogate)
            .field("n_proposed", &self.proposed.len())
            .finish()
    }
}

impl<'a> LearnedSearch<'a> {
    pub fn new(
        space: &'a dyn SpaceGenerator,
        featurizer: Box<dyn Featurizer + 'a>,
        make_model: &dyn Fn() -> Box<dyn CostModel>,
        mut config: LearnedSearchConfig,
        warm_start: WarmStart,
    ) -> Self {
        if config.techniques.is_empty() {
            config.techniques.push(Technique::Random);
        }
        let name = match config.techniques[..] {
            [only] => only.name(),
            _ => "auto",
        };
        let mut surrogate =
            Surrogate::new(featurizer, make_model, space.task().flops(), config.surrogate.clone());
        surrogate.add_prior(warm_start.samples);
        let mut pending_seeds = VecDeque::from([space.default_trace()]);
        pending_seeds.extend(warm_start.traces.into_iter().take(config.max_warm_traces));
        LearnedSearch {
            name,
            space,
            space_size: space.size(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            bandit: AucBandit::new(config.techniques.len(), config.bandit.clone()),
            config,
            surrogate,
            proposed: HashSet::new(),
            technique_of: HashMap::new(),
            best_score: None,
            measured_ok: Vec::new(),
            pending_seeds,
        }
    }

    pub fn n_proposed(&self) -> usize {
        self.proposed.len()
    }

    /// How often the model has been refitted.
    pub fn n_model_fits(&self) -> usize {
        self.surrogate.n_fits()
    }

    fn is_fresh(&self, trace: &Trace, already_measured: &HashSet<String>) -> bool {
        let key = trace.key();
        !already_measured.contains(&key) && !self.proposed.contains(&key)
    }

    /// Adds `trace` to the batch if it is new; `technique`: who gets the credit.
    fn take(&mut self, trace: Trace, technique: Option<usize>, batch: &mut Vec<Trace>) {
        let key = trace.key();
        if let Some(technique) = technique {
            self.technique_of.insert(key.clone(), technique);
        }
        self.proposed.insert(key);
        batch.push(trace);
    }

    /// Up to `n` fresh uniform samples.
    fn random_fill(
        &mut self,
        n: usize,
        technique: Option<usize>,
        already_measured: &HashSet<String>,
        batch: &mut Vec<Trace>,
    ) {
        let small_space = self.space_size.min(1 << 16) as usize;
        let budget = self.config.duplicate_samples_per_trace.saturating_mul(n.max(1)).max(4 * small_space);
        let goal = batch.len() + n;
        let mut consecutive_duplicates = 0;
        while batch.len() < goal && consecutive_duplicates < budget {
            let trace = self.space.sample(&mut self.rng);
            if self.is_fresh(&trace, already_measured) {
                consecutive_duplicates = 0;
                self.take(trace, technique, batch);
            } else {
                consecutive_duplicates += 1;
            }
        }
    }

    /// The best measured traces, best first.
    fn elites(&self) -> Vec<Trace> {
        let mut ranked: Vec<&(Trace, f64)> = self.measured_ok.iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.into_iter().take(self.config.elite_seeds).map(|(trace, _)| trace.clone()).collect()
    }

    /// How `technique` values a prediction.
    fn fitness(&self, technique: Technique, prediction: Prediction) -> f64 {
        let best = self.best_score.unwrap_or(f64::NEG_INFINITY);
        match technique {
            // Where the acquisition is flat (no tree expects an improvement), prefer the better
            // mean rather than an arbitrary point.
            Technique::BayesOpt => self.config.acquisition.value(prediction, best) + 1e-4 * prediction.mean,
            Technique::Evolutionary | Technique::Random => prediction.mean,
        }
    }

    /// Every candidate one evolutionary run on the current model scored, with its prediction.
    /// `guide` picks the fitness the run maximises; one pool serves every technique of a batch
    /// (each ranks it by its own fitness), so featurizing and predicting is paid once.
    fn evolved_pool(&mut self, guide: Technique) -> Vec<(Trace, Prediction)> {
        let seeds = self.elites();
        let mut predictions: HashMap<String, Prediction> = HashMap::new();
        let mut fitness_of = |surrogate: &mut Surrogate<'_>, traces: &[Trace]| -> Vec<Option<Prediction>> {
            let missing: Vec<Trace> =
                traces.iter().filter(|t| !predictions.contains_key(&t.key())).cloned().collect();
            for (trace, prediction) in missing.iter().zip(surrogate.predict(&missing)) {
                if let Some(prediction) = prediction {
                    predictions.insert(trace.key(), prediction);
                }
            }
            traces.iter().map(|t| predictions.get(&t.key()).copied()).collect()
        };
        let this = &*self;
        let best = this.best_score.unwrap_or(f64::NEG_INFINITY);
        let acquisition = this.config.acquisition;
        let value = move |p: Prediction| match guide {
            Technique::BayesOpt => acquisition.value(p, best) + 1e-4 * p.mean,
            Technique::Evolutionary | Technique::Random => p.mean,
        };
        let mut scored: Vec<(Trace, Prediction)> = Vec::new();
        let surrogate = &mut self.surrogate;
        let mut fitness = |traces: &[Trace]| -> Vec<Option<f64>> {
            let predicted = fitness_of(surrogate, traces);
            for (trace, prediction) in traces.iter().zip(&predicted) {
                if let Some(prediction) = prediction {
                    scored.push((trace.clone(), *prediction));
                }
            }
            predicted.into_iter().map(|p| p.map(value)).collect()
        };
        evolve(self.space, &seeds, &mut fitness, &self.config.evolution, &mut self.rng);
        scored
    }

    /// The pool ranked by `technique`'s fitness, best first (ties by key: deterministic).
    fn ranked(&self, technique: Technique, pool: &[(Trace, Prediction)]) -> Vec<Trace> {
        let mut ranked: Vec<(f64, String, &Trace)> =
            pool.iter().map(|(trace, p)| (self.fitness(technique, *p), trace.key(), trace)).collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        ranked.dedup_by(|a, b| a.1 == b.1);
        ranked.into_iter().map(|(_, _, trace)| trace.clone()).collect()
    }
}

impl SearchStrategy for LearnedSearch<'_> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn propose(&mut self, n: usize, already_measured: &HashSet<String>) -> Vec<Trace> {
        let mut batch = Vec::with_capacity(n);
        while batch.len() < n {
            let Some(seed) = self.pending_seeds.pop_front() else { break };
            if self.is_fresh(&seed, already_measured) {
                self.take(seed, None, &mut batch);
            }
        }
        if batch.len() == n {
            return batch;
        }
        if !self.surrogate.refit() {
            self.random_fill(n - batch.len(), None, already_measured, &mut batch);
            return batch;
        }

        let plan: Vec<usize> = match self.config.techniques.len() {
            1 => vec![0; n - batch.len()],
            _ => self.bandit.plan(n - batch.len()),
        };
        let guide = if self
            .config
            .techniques
            .iter()
            .enumerate()
            .any(|(i, &t)| t == Technique::BayesOpt && plan.contains(&i))
        {
            Technique::BayesOpt
        } else {
            Technique::Evolutionary
        };
        let mut pool: Option<Vec<(Trace, Prediction)>> = None;
        for (technique_idx, &technique) in self.config.techniques.clone().iter().enumerate() {
            let slots = plan.iter().filter(|&&t| t == technique_idx).count();
            if slots == 0 {
                continue;
            }
            if technique == Technique::Random {
                self.random_fill(slots, Some(technique_idx), already_measured, &mut batch);
                continue;
            }
            let share = self.config.random_share.clamp(0.0, 1.0);
            let n_random = (0..slots).filter(|_| self.rng.gen_bool(share)).count();
            if pool.is_none() {
                pool = Some(self.evolved_pool(guide));
            }
            let ranked = self.ranked(technique, pool.as_deref().unwrap_or(&[]));
            let before = batch.len();
            // Two passes: first only candidates that differ from everything already in the
            // batch in at least `min_batch_distance` decisions (the top of a ranking is often one
            // region, and a batch spent on near-duplicates learns little), then any.
            for min_distance in [self.config.min_batch_distance, 0] {
                for trace in &ranked {
                    if batch.len() - before >= slots - n_random {
                        break;
                    }
                    let diverse = batch.iter().all(|other| decision_distance(trace, other) >= min_distance);
                    if diverse && self.is_fresh(trace, already_measured) {
                        self.take(trace.clone(), Some(technique_idx), &mut batch);
                    }
                }
            }
            // The random share, plus whatever the model's candidates could not fill.
            let missing = slots - (batch.len() - before);
            self.random_fill(missing, Some(technique_idx), already_measured, &mut batch);
        }
        batch
    }

    fn observe(&mut self, results: &[(Trace, MeasureOutcome)]) {
        self.surrogate.observe(results);
        for (trace, outcome) in results {
            let score = self.surrogate.score_of(outcome);
            let improved = match (score, self.best_score) {
                (Some(score), Some(best)) => score > best,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if let Some(technique) = self.technique_of.remove(&trace.key()) {
                self.bandit.record(technique, improved);
            }
            if let Some(score) = score {
                if improved {
                    self.best_score = Some(score);
                }
                self.measured_ok.push((trace.clone(), score));
            }
        }
    }
}

/// Decisions in which two traces differ (a decision only one of them has counts as different).
fn decision_distance(a: &Trace, b: &Trace) -> usize {
    let differing = a.decisions.iter().filter(|d| b.get(&d.name) != Some(d.value)).count();
    let only_in_b = b.decisions.iter().filter(|d| a.get(&d.name).is_none()).count();
    differing + only_in_b
}

/// E[max(X − threshold, 0)] for X ~ N(mean, std²).
fn expected_improvement(prediction: Prediction, threshold: f64) -> f64 {
    let gain = prediction.mean - threshold;
    if prediction.std.is_nan() || prediction.std <= 0.0 {
        return gain.max(0.0);
    }
    let z = gain / prediction.std;
    gain * normal_cdf(z) + prediction.std * normal_pdf(z)
}

fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

/// Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7): enough to rank candidates.
fn erf(x: f64) -> f64 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    sign * (1.0 - poly * (-x * x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_distance_counts_differing_and_missing_decisions() {
        let a = Trace::new("s", vec![("x", 1), ("y", 2), ("z", 3)]);
        assert_eq!(decision_distance(&a, &a), 0);
        assert_eq!(decision_distance(&a, &Trace::new("s", vec![("x", 1), ("y", 5), ("z", 3)])), 1);
        assert_eq!(decision_distance(&a, &Trace::new("s", vec![("x", 1), ("w", 2)])), 3);
    }

    #[test]
    fn erf_and_expected_improvement_are_sane() {
        assert!((erf(0.0)).abs() < 1e-7);
        assert!((erf(1.0) - 0.842_700_79).abs() < 1e-6);
        assert!((erf(-2.0) + 0.995_322_27).abs() < 1e-6);
        let sure = Prediction { mean: 2.0, std: 0.0 };
        assert_eq!(expected_improvement(sure, 1.5), 0.5);
        assert_eq!(expected_improvement(sure, 2.5), 0.0);
        // Same mean below the best: more spread, more expected improvement.
        let narrow = expected_improvement(Prediction { mean: 1.0, std: 0.1 }, 1.5);
        let wide = expected_improvement(Prediction { mean: 1.0, std: 1.0 }, 1.5);
        assert!(wide > narrow && narrow >= 0.0);
    }
}
