//! The learned part of search: the cost model, the trials it learns from, and a cache of
//! features, refitted lazily after each batch.

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use autotune_cost_model::ranking::pairwise_ranking_accuracy;
use autotune_cost_model::{CostModel, Prediction, Sample};
use autotune_ir::Trace;
use autotune_measure::MeasureOutcome;

use crate::featurize::Featurizer;

/// Settings of a [`Surrogate`].
#[derive(Clone, Debug, PartialEq)]
pub struct SurrogateConfig {
    /// Samples (own plus transferred) before the model is trained at all.
    pub min_samples: usize,
    /// Training weight of a transferred sample (another task, another log) relative to one of
    /// this task's own trials.
    pub prior_weight: f64,
    /// Own `ok` trials after which transferred samples are dropped from training: from then on
    /// the model is what a cold start would have learned, so transfer cannot mislead it for long.
    pub prior_until_own_ok: usize,
    /// How far below the slowest valid trial (in log2 GFLOP/s) a failed trial is scored, so the
    /// model learns to avoid what fails.
    pub failure_penalty: f64,
    /// The transfer check: once this task has this many valid trials, a model trained on the
    /// transferred samples alone must rank them with at least `prior_min_accuracy` pairwise
    /// accuracy, or the transferred samples are dropped for good (they describe another landscape).
    pub prior_check_after_own_ok: usize,
    pub prior_min_accuracy: f64,
}

impl Default for SurrogateConfig {
    fn default() -> Self {
        SurrogateConfig {
            min_samples: 8,
            prior_weight: 0.5,
            prior_until_own_ok: 48,
            failure_penalty: 1.0,
            prior_check_after_own_ok: 8,
            prior_min_accuracy: 0.6,
        }
    }
}

/// One observed trial, as the model sees it.
#[derive(Clone, Debug)]
struct Observation {
    features: Arc<[f64]>,
    /// log2 GFLOP/s; `None` for a failed trial.
    score: Option<f64>,
}

/// Cost model + training data + feature cache.
pub struct Surrogate<'a> {
    featurizer: Box<dyn Featurizer + 'a>,
    model: Box<dyn CostModel>,
    /// Trained on the transferred samples alone, for the transfer check; `None` once checked.
    prior_model: Option<Box<dyn CostModel>>,
    config: SurrogateConfig,
    /// GFLOP per call of the task: turns a median time into a score.
    gflop: f64,
    /// Features by trace key (`None`: the trace does not lower).
    cache: HashMap<String, Option<Arc<[f64]>>>,
    own: Vec<Observation>,
    prior: Vec<Sample>,
    /// New data since the last fit.
    stale: bool,
    n_fits: usize,
}

impl std::fmt::Debug for Surrogate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Surrogate")
            .field("featurizer", &self.featurizer.version())
            .field("config", &self.config)
            .field("n_own", &self.own.len())
            .field("n_prior", &self.prior.len())
            .field("n_fits", &self.n_fits)
            .finish()
    }
}

impl<'a> Surrogate<'a> {
    /// `task_flops`: floating-point operations of one call of the task being tuned. `make_model`
    /// builds the cost model (twice: the second judges transferred samples).
    pub fn new(
        featurizer: Box<dyn Featurizer + 'a>,
        make_model: &dyn Fn() -> Box<dyn CostModel>,
        task_flops: f64,
        config: SurrogateConfig,
    ) -> Self {
        Surrogate {
            featurizer,
            model: make_model(),
            prior_model: Some(make_model()),
            config,
            gflop: task_flops / 1e9,
            cache: HashMap::new(),
            own: Vec::new(),
            prior: Vec::new(),
            stale: false,
            n_fits: 0,
        }
    }

    /// Transferred samples (scores in log2 GFLOP/s, features of this surrogate's featurizer
    /// version); their weights are multiplied by [`SurrogateConfig::prior_weight`].
    pub fn add_prior(&mut self, samples: impl IntoIterator<Item = Sample>) {
        let weight = self.config.prior_weight;
        self.prior.extend(samples.into_iter().map(|s| Sample { weight: s.weight * weight, ..s }));
        self.stale = true;
    }

    pub fn featurizer_version(&self) -> String {
        self.featurizer.version()
    }

    /// The score of a measured outcome: log2 GFLOP/s, `None` unless `Ok`.
    pub fn score_of(&self, outcome: &MeasureOutcome) -> Option<f64> {
        outcome.median_s().map(|median_s| (self.gflop / median_s).log2())
    }

    pub fn features(&mut self, trace: &Trace) -> Option<Arc<[f64]>> {
        let key = trace.key();
        if let Some(cached) = self.cache.get(&key) {
            return cached.clone();
        }
        let features: Option<Arc<[f64]>> = self.featurizer.features(trace).map(Arc::from);
        self.cache.insert(key, features.clone());
        features
    }

    pub fn observe(&mut self, results: &[(Trace, MeasureOutcome)]) {
        for (trace, outcome) in results {
            if let Some(features) = self.features(trace) {
                let score = self.score_of(outcome);
                self.own.push(Observation { features, score });
                self.stale = true;
            }
        }
    }

    pub fn n_own_ok(&self) -> usize {
        self.own.iter().filter(|o| o.score.is_some()).count()
    }

    /// The training set: own trials (failures scored below the slowest valid one) and, while
    /// there are few own valid trials, the transferred samples.
    fn training_set(&self) -> Vec<Sample> {
        let own_scores: Vec<f64> = self.own.iter().filter_map(|o| o.score).collect();
        let prior_in_use = own_scores.len() < self.config.prior_until_own_ok;
        let floor = own_scores
            .iter()
            .copied()
            .chain(self.prior.iter().filter(|_| prior_in_use).map(|s| s.score))
            .reduce(f64::min);
        let mut samples: Vec<Sample> = self
            .own
            .iter()
            .filter_map(|o| {
                let score = o.score.or_else(|| floor.map(|f| f - self.config.failure_penalty))?;
                Some(Sample { features: o.features.to_vec(), score, weight: 1.0 })
            })
            .collect();
        if prior_in_use {
            samples.extend(self.prior.iter().cloned());
        }
        samples
    }

    /// Whether transferred samples are still used for training.
    pub fn uses_prior(&self) -> bool {
        !self.prior.is_empty() && self.n_own_ok() < self.config.prior_until_own_ok
    }

    /// The transfer check (see [`SurrogateConfig::prior_min_accuracy`]), once enough own valid
    /// trials exist: drops the transferred samples if they rank this task's trials badly.
    fn check_prior(&mut self) {
        if self.prior.is_empty() || self.n_own_ok() < self.config.prior_check_after_own_ok {
            return;
        }
        let Some(mut judge) = self.prior_model.take() else { return };
        if judge.fit(&self.prior).is_err() {
            return;
        }
        let own: Vec<&Observation> = self.own.iter().filter(|o| o.score.is_some()).collect();
        let rows: Vec<Vec<f64>> = own.iter().map(|o| o.features.to_vec()).collect();
        let predicted: Vec<f64> = judge.predict(&rows).iter().map(|p| p.mean).collect();
        let actual: Vec<f64> = own.iter().filter_map(|o| o.score).collect();
        let accuracy = pairwise_ranking_accuracy(&predicted, &actual).unwrap_or(1.0);
        if accuracy < self.config.prior_min_accuracy {
            self.prior.clear();
        }
    }

    /// Refits the model if new data arrived; `true` when a fitted model is available.
    pub fn refit(&mut self) -> bool {
        if self.stale {
            self.check_prior();
            let samples = self.training_set();
            if samples.len() >= self.config.min_samples && self.model.fit(&samples).is_ok() {
                self.n_fits += 1;
            }
            self.stale = false;
        }
        self.model.is_fitted()
    }

    pub fn is_fitted(&self) -> bool {
        self.model.is_fitted()
    }

    pub fn n_fits(&self) -> usize {
        self.n_fits
    }

    /// Features of every trace not in the cache, computed in parallel (lowering and the nest
    /// walk are the expensive part of scoring a candidate).
    fn featurize_missing(&mut self, traces: &[Trace]) {
        let missing: Vec<(String, &Trace)> =
            traces.iter().map(|t| (t.key(), t)).filter(|(key, _)| !self.cache.contains_key(key)).collect();
        let featurizer = &self.featurizer;
        let computed: Vec<(String, Option<Arc<[f64]>>)> = missing
            .into_par_iter()
            .map(|(key, trace)| (key, featurizer.features(trace).map(Arc::from)))
            .collect();
        self.cache.extend(computed);
    }

    /// Predictions for `traces` (`None` for a trace that does not lower).
    pub fn predict(&mut self, traces: &[Trace]) -> Vec<Option<Prediction>> {
        self.featurize_missing(traces);
        let features: Vec<Option<Arc<[f64]>>> = traces.iter().map(|t| self.features(t)).collect();
        let rows: Vec<Vec<f64>> = features.iter().flatten().map(|f| f.to_vec()).collect();
        let mut predictions = self.model.predict(&rows).into_iter();
        features.iter().map(|f| f.as_ref().and_then(|_| predictions.next())).collect()
    }
}
