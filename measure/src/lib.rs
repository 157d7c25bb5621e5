//! Measurement.
pub mod outcome;
pub use outcome::{MeasureOutcome, Runner};
