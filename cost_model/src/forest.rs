//! The cost model search uses: a random forest whose spread between trees is the uncertainty
//! Bayesian optimization explores with.
//!
//! Each tree is a `smartcore` regression tree (CART) fitted on a weighted bootstrap of the samples
//! (a sample's chance of being drawn is proportional to its weight, which is how transferred
//! samples count less) and on a random subset of the features (random subspaces decorrelate the
//! trees). The prediction is the mean over trees; the spread is their standard deviation. The
//! forest is grown here rather than with `smartcore`'s own random forest because that one
//! neither exposes its trees (no spread) nor takes sample weights. Why a forest at all, rather
//! than boosting, a GP or a linear model: README, "Dependencies and why".

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::tree::decision_tree_regressor::{DecisionTreeRegressor, DecisionTreeRegressorParameters};

use crate::model::{check_samples, CostModel, CostModelError, Prediction, Sample};

/// Settings of a [`RandomForestModel`].
#[derive(Clone, Debug, PartialEq)]
pub struct ForestConfig {
    /// Seeds the bootstraps, the feature subsets and the trees: same seed and samples, same model.
    pub seed: u64,
    pub n_trees: usize,
    /// Share of the features each tree sees (at least 8, or all when there are fewer).
    pub feature_fraction: f64,
    pub min_samples_leaf: usize,
    /// `None`: grow until leaves are pure or `min_samples_leaf` stops them.
    pub max_depth: Option<u16>,
}

impl Default for ForestConfig {
    fn default() -> Self {
        ForestConfig { seed: 0, n_trees: 48, feature_fraction: 0.5, min_samples_leaf: 1, max_depth: None }
    }
}

type Tree = DecisionTreeRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

/// One tree; `Send` and `Sync` so trees fit and predict on rayon's pool.
struct FittedTree {
    /// The features this tree was trained on, in order.
    columns: Vec<usize>,
    tree: Tree,
}

/// Bagged regression trees on random feature subsets. See the module documentation.
pub struct RandomForestModel {
    config: ForestConfig,
    trees: Vec<FittedTree>,
    n_features: usize,
}

impl std::fmt::Debug for RandomForestModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RandomForestModel")
            .field("config", &self.config)
            .field("n_trees_fitted", &self.trees.len())
            .field("n_features", &self.n_features)
            .finish()
    }
}

impl RandomForestModel {
    pub fn new(config: ForestConfig) -> Self {
        RandomForestModel { config, trees: Vec::new(), n_features: 0 }
    }
}

fn training_error(e: impl std::fmt::Display) -> CostModelError {
    CostModelError::Training { reason: e.to_string() }
}

impl CostModel for RandomForestModel {
    fn fit(&mut self, samples: &[Sample]) -> Result<(), CostModelError> {
        let n_features = check_samples(samples, 2)?;
        if n_features == 0 {
            return Err(training_error("the samples have no features"));
        }
        if let Some(index) =
            samples.iter().position(|s| !s.score.is_finite() || s.features.iter().any(|v| !v.is_finite()))
        {
            return Err(training_error(format!("sample {index} has a non-finite score or feature")));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        // Cumulative weights for the weighted bootstrap.
        let mut cumulative = Vec::with_capacity(samples.len());
        let mut total = 0.0;
        for sample in samples {
            total += sample.weight.max(0.0);
            cumulative.push(total);
        }
        if total.is_nan() || total <= 0.0 {
            return Err(training_error("every sample has weight 0"));
        }
        // Few features (synthetic spaces): every tree still sees up to 8 of them.
        let n_columns =
            ((n_features as f64 * self.config.feature_fraction).ceil() as usize).max(8).clamp(1, n_features);
        let params = DecisionTreeRegressorParameters::default()
            .with_min_samples_leaf(self.config.min_samples_leaf.max(1))
            .with_min_samples_split(2);
        let params = match self.config.max_depth {
            Some(depth) => params.with_max_depth(depth),
            None => params,
        };
        // All randomness is drawn here, in order, so fitting the trees in parallel changes nothing.
        let plans: Vec<(Vec<usize>, Vec<usize>, u64)> = (0..self.config.n_trees.max(1))
            .map(|_| {
                let rows: Vec<usize> = (0..samples.len())
                    .map(|_| {
                        let point = rng.gen_range(0.0..total);
                        cumulative.partition_point(|&c| c <= point).min(samples.len() - 1)
                    })
                    .collect();
                let mut columns = rand::seq::index::sample(&mut rng, n_features, n_columns).into_vec();
                columns.sort_unstable();
                (rows, columns, rng.gen())
            })
            .collect();
        let trees = plans
            .into_par_iter()
            .map(|(rows, columns, seed)| {
                let x: Vec<Vec<f64>> =
                    rows.iter().map(|&r| columns.iter().map(|&c| samples[r].features[c]).collect()).collect();
                let y: Vec<f64> = rows.iter().map(|&r| samples[r].score).collect();
                let x = DenseMatrix::from_2d_vec(&x).map_err(training_error)?;
                let tree_params = DecisionTreeRegressorParameters { seed: Some(seed), ..params.clone() };
                let tree = Tree::fit(&x, &y, tree_params).map_err(training_error)?;
                Ok(FittedTree { columns, tree })
            })
            .collect::<Result<Vec<FittedTree>, CostModelError>>()?;
        self.trees = trees;
        self.n_features = n_features;
        Ok(())
    }

    fn predict(&self, features: &[Vec<f64>]) -> Vec<Prediction> {
        let unfitted = Prediction { mean: 0.0, std: 1.0 };
        if self.trees.is_empty() || features.is_empty() {
            return vec![unfitted; features.len()];
        }
        let per_tree: Vec<Vec<f64>> = self
            .trees
            .par_iter()
            .filter_map(|fitted| {
                let x: Vec<Vec<f64>> = features
                    .iter()
                    .map(|row| fitted.columns.iter().map(|&c| row.get(c).copied().unwrap_or(0.0)).collect())
                    .collect();
                fitted.tree.predict(&DenseMatrix::from_2d_vec(&x).ok()?).ok()
            })
            .collect();
        let mut sum = vec![0.0; features.len()];
        let mut sum_sq = vec![0.0; features.len()];
        let n_trees = per_tree.len() as f64;
        for values in per_tree {
            for ((s, sq), v) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(values) {
                *s += v;
                *sq += v * v;
            }
        }
        if n_trees == 0.0 {
            return vec![unfitted; features.len()];
        }
        sum.iter()
            .zip(&sum_sq)
            .map(|(s, sq)| {
                let mean = s / n_trees;
                Prediction { mean, std: (sq / n_trees - mean * mean).max(0.0).sqrt() }
            })
            .collect()
    }

    fn is_fitted(&self) -> bool {
        !self.trees.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranking::pairwise_ranking_accuracy;

    /// score = 2·x0 − x1², plus an irrelevant feature.
    fn samples(n: usize, seed: u64) -> Vec<Sample> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let x: Vec<f64> = (0..3).map(|_| rng.gen_range(-1.0..1.0)).collect();
                Sample { score: 2.0 * x[0] - x[1] * x[1], features: x, weight: 1.0 }
            })
            .collect()
    }

    #[test]
    fn learns_to_rank_a_known_function() {
        let mut model = RandomForestModel::new(ForestConfig { seed: 3, ..ForestConfig::default() });
        assert!(!model.is_fitted());
        model.fit(&samples(120, 1)).expect("fit");
        let test = samples(60, 2);
        let features: Vec<Vec<f64>> = test.iter().map(|s| s.features.clone()).collect();
        let predicted: Vec<f64> = model.predict(&features).iter().map(|p| p.mean).collect();
        let actual: Vec<f64> = test.iter().map(|s| s.score).collect();
        let accuracy = pairwise_ranking_accuracy(&predicted, &actual).expect("pairs");
        assert!(accuracy > 0.85, "{accuracy}");
    }

    #[test]
    fn same_seed_same_model_and_spread_grows_away_from_data() {
        let data = samples(60, 4);
        let fit = |seed| {
            let mut model = RandomForestModel::new(ForestConfig { seed, ..ForestConfig::default() });
            model.fit(&data).expect("fit");
            model
        };
        let probe = vec![vec![0.1, 0.2, 0.3], vec![50.0, -50.0, 0.0]];
        assert_eq!(fit(7).predict(&probe), fit(7).predict(&probe));
        let predictions = fit(7).predict(&probe);
        assert!(predictions.iter().all(|p| p.std >= 0.0 && p.mean.is_finite()));
    }

    #[test]
    fn weights_steer_the_bootstrap() {
        // Two groups with the same features but different scores: the heavy one wins.
        let mut data: Vec<Sample> =
            (0..20).map(|i| Sample { features: vec![i as f64 % 2.0], score: 1.0, weight: 1.0 }).collect();
        data.extend((0..20).map(|i| Sample { features: vec![i as f64 % 2.0], score: 5.0, weight: 0.01 }));
        let mut model = RandomForestModel::new(ForestConfig::default());
        model.fit(&data).expect("fit");
        let mean = model.predict(&[vec![0.0]])[0].mean;
        assert!(mean < 1.5, "{mean}");
    }

    #[test]
    fn bad_input_is_an_error_and_keeps_the_previous_fit() {
        let mut model = RandomForestModel::new(ForestConfig::default());
        assert!(model.fit(&samples(1, 0)).is_err());
        model.fit(&samples(10, 0)).expect("fit");
        let mut bad = samples(10, 0);
        bad[3].features.pop();
        assert!(matches!(model.fit(&bad), Err(CostModelError::FeatureLength { index: 3, .. })));
        bad = samples(10, 0);
        bad[2].score = f64::NAN;
        assert!(model.fit(&bad).is_err());
        assert!(model.is_fitted());
        assert_eq!(model.predict(&[]).len(), 0);
    }
}
