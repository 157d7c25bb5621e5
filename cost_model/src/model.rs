//! The interface between a learned model and the search that feeds it.

/// One training example: a candidate's features and how fast it ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub features: Vec<f64>,
    /// Higher is faster. Search uses log2 GFLOP/s, so scores of tasks of different sizes are
    /// comparable and a 2× speed-up is one unit anywhere on the scale.
    pub score: f64,
    /// Relative importance in training (1 for this task's own trials; less for transferred ones).
    pub weight: f64,
}

/// A model's belief about one candidate's score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    pub mean: f64,
    /// Spread of the belief (0 when the model has none): what Bayesian optimization explores.
    pub std: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CostModelError {
    #[error("cannot train on {n_samples} samples: at least {min_samples} are needed")]
    TooFewSamples { n_samples: usize, min_samples: usize },
    #[error("sample {index} has {got} features, the others {expected}")]
    FeatureLength { index: usize, expected: usize, got: usize },
    #[error("training failed: {reason}")]
    Training { reason: String },
}

/// A regressor from features to scores, with uncertainty, retrained as trials arrive.
pub trait CostModel: Send {
    /// Replaces what the model learned with a fit to `samples`. On error the model keeps its
    /// previous fit (if any).
    fn fit(&mut self, samples: &[Sample]) -> Result<(), CostModelError>;
    /// One prediction per feature vector, in order. Before the first successful fit every mean
    /// is 0 and every spread 1.
    fn predict(&self, features: &[Vec<f64>]) -> Vec<Prediction>;
    /// Whether a fit succeeded.
    fn is_fitted(&self) -> bool;
}

/// Checks that every sample has the same number of features; returns it.
pub(crate) fn check_samples(samples: &[Sample], min_samples: usize) -> Result<usize, CostModelError> {
    if samples.len() < min_samples {
        return Err(CostModelError::TooFewSamples { n_samples: samples.len(), min_samples });
    }
    let expected = samples.first().map_or(0, |s| s.features.len());
    for (index, sample) in samples.iter().enumerate() {
        if sample.features.len() != expected {
            return Err(CostModelError::FeatureLength { index, expected, got: sample.features.len() });
        }
    }
    Ok(expected)
}
