//! Search: which candidates to measure next, and the loop that measures them.
//!
//! A [`SearchStrategy`] is an ask/tell object: [`propose`](SearchStrategy::propose) a batch of
//! [`Trace`](autotune_ir::Trace)s not measured before, [`observe`](SearchStrategy::observe) what
//! measuring them gave. [`RandomSearch`] samples the schedule space without replacement; it is the
//! baseline every smarter strategy has to beat.
//!
//! Search that learns ([`LearnedSearch`], picked by name with [`StrategyKind`]): a [`Surrogate`]
//! (features from a [`Featurizer`], a cost model from `autotune-cost-model`, refitted after every
//! batch) ranks candidates; **evolutionary** search maximises its prediction over mutations and
//! crossovers of Traces; **BO** maximises an [`Acquisition`] (expected improvement on the forest's
//! mean and spread); **auto** shares each batch between random, evolutionary and BO with an
//! area-under-curve bandit ([`AucBandit`]) crediting the technique whose candidates improved the
//! best. [`WarmStart`] transfers samples and traces from other shapes and other logs.
//! [`TaskScheduler`] decides which task of a model gets the next batch, and [`tune_model`] runs a
//! whole model's tasks against one log under a trial cap and/or a wall-clock deadline;
//! [`assign_shards`] splits a model's tasks between machines (`--shard I/N`), balanced by
//! estimated tuning cost.
//!
//! [`tune`] is the whole tuning loop on one screen: open a session in the tuning log, skip every
//! trace an earlier session already measured (so a killed run resumes instead of starting over),
//! then propose → measure → record the batch in one transaction → observe, until the trial budget
//! is spent, the space is exhausted, or the caller cancels (checked between batches, so the batch
//! in flight is always committed).
//!
//! Owns: search strategies, bandits (between techniques and between tasks), transfer, the tune
//! loop, resume and cancellation, and the shard split.
//!
//! Must not know: CPU vs GPU, how code is generated, built or timed — that is behind the
//! [`Runner`](autotune_measure::Runner) it is handed.

mod bandit;
mod baseline;
mod error;
mod evolution;
mod featurize;
mod learned;
mod model;
mod random;
mod shard;
mod strategies;
mod strategy;
mod surrogate;
mod task_scheduler;
mod transfer;
mod tune;

#[cfg(test)]
mod testing;

pub use bandit::{AucBandit, BanditConfig};
pub use baseline::{measure_default_schedule, DEFAULT_SCHEDULE_STRATEGY};
pub use error::SearchError;
pub use evolution::{evolve, EvolutionConfig};
pub use featurize::{DecisionFeaturizer, Featurizer, LoopNestFeaturizer};
pub use learned::{Acquisition, LearnedSearch, LearnedSearchConfig, Technique};
pub use model::{
    tune_model, ModelEvent, ModelProgress, ModelStopReason, ModelTask, ModelTuneConfig, ModelTuneSummary,
    TaskProgress,
};
pub use random::{RandomSearch, RandomSearchConfig};
pub use shard::{assign_shards, estimated_trial_cost};
pub use strategies::{make_strategy, StrategyKind};
pub use strategy::SearchStrategy;
pub use surrogate::{Surrogate, SurrogateConfig};
pub use task_scheduler::{TaskScheduler, TaskSchedulerConfig};
pub use transfer::{warm_start_from_log, WarmStart, WarmStartConfig};
pub use tune::{
    tune, BestKernel, Progress, StopReason, TaskTuner, TrialReport, TuneConfig, TuneSummary,
    DEFAULT_BATCH_SIZE,
};
