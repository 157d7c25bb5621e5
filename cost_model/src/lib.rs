//! The cost model: what makes a kernel fast, learned from measurements.
//!
//! [`features`] turns a [`LoopNest`](autotune_ir::LoopNest) into a versioned vector of numbers
//! (loop extents and kinds, footprints against the cache sizes of the [`MachineModel`],
//! vectorization, unrolling, register tile, parallelism, packing, epilogue) computed from the
//! loop nest alone, so every schedule space gets features for free. [`CostModel`] is the learned
//! part: fit on [`Sample`]s, predict a score with a spread ([`Prediction`]) for search to rank
//! and explore with. [`ranking`] measures how well a model orders held-out trials.
//!
//! Owns: feature extraction and its version, the models, and their quality measures.
//!
//! Must not know: the tuning log (it is fed samples by search), search strategies, or how
//! kernels are built and timed.

mod analysis;
pub mod features;
mod forest;
mod machine;
mod model;
pub mod ranking;

pub use features::{extract_features, feature_names, n_features, FEATURE_VERSION};
pub use forest::{ForestConfig, RandomForestModel};
pub use machine::{CacheSizes, MachineModel};
pub use model::{CostModel, CostModelError, Prediction, Sample};
