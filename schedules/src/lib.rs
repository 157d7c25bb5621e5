//! Schedule spaces, one per operator family × target class.
pub mod space;
pub use space::{ScheduleError, SpaceGenerator};
