//! Search: which candidates to measure next, and the loop that measures them.
//!
//! A [`SearchStrategy`] is an ask/tell object: [`propose`](SearchStrategy::propose) a batch of
//! [`Trace`](autotune_ir::Trace)s not measured before, [`observe`](SearchStrategy::observe) what
//! measuring them gave. [`RandomSearch`] samples the schedule space without replacement; it is the
//! baseline every smarter strategy (Bayesian optimization, evolutionary) has to beat.
//!
//! [`tune`] is the whole tuning loop on one screen: open a session in the tuning log, skip every
//! trace an earlier session already measured (so a killed run resumes instead of starting over),
//! then propose → measure → record the batch in one transaction → observe, until the trial budget
//! is spent, the space is exhausted, or the caller cancels (checked between batches, so the batch
//! in flight is always committed).
//!
//! Owns: search strategies, the tune loop, resume and cancellation.
//!
//! Must not know: CPU vs GPU, how code is generated, built or timed — that is behind the
//! [`Runner`](autotune_measure::Runner) it is handed.

mod error;
mod random;
mod strategy;
mod tune;

#[cfg(test)]
mod testing;

pub use error::SearchError;
pub use random::{RandomSearch, RandomSearchConfig};
pub use strategy::SearchStrategy;
pub use tune::{
    tune, BestKernel, Progress, StopReason, TrialReport, TuneConfig, TuneSummary, DEFAULT_BATCH_SIZE,
};
