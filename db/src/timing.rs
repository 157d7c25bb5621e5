//! Checks a [`NewTrial`]'s times and derives the stored summary (median and minimum).
//!
//! The log never holds a sentinel time: an `Ok` trial gets a real median and minimum, any other
//! status gets none, and a time that is not a finite positive number is refused.

use crate::records::NewTrial;
use autotune_ir::stats::median;

/// The stored timing columns of one trial.
#[derive(Copy, Clone, Debug, PartialEq)]
pub(crate) struct TimeSummary {
    pub median_s: Option<f64>,
    pub min_s: Option<f64>,
}

/// Validates `trial`'s times and returns what to store, or why the trial is invalid.
pub(crate) fn summarize(trial: &NewTrial) -> Result<TimeSummary, String> {
    if !(trial.build_time_s.is_finite() && trial.build_time_s >= 0.0) {
        return Err(format!("build time {} s is not a finite non-negative number", trial.build_time_s));
    }
    check_repeat_times(&trial.repeat_times_s)?;
    if !trial.status.is_ok() {
        return Ok(TimeSummary { median_s: None, min_s: None });
    }
    let (median_s, min_s) = median_and_min(&trial.repeat_times_s)?;
    Ok(TimeSummary { median_s: Some(median_s), min_s: Some(min_s) })
}

/// Refuses a repeat time that is not a finite positive number.
pub(crate) fn check_repeat_times(times_s: &[f64]) -> Result<(), String> {
    match times_s.iter().find(|time| !(time.is_finite() && **time > 0.0)) {
        Some(bad) => Err(format!("repeat time {bad} s is not a finite positive number")),
        None => Ok(()),
    }
}

/// The median and minimum an `ok` trial stores for these repeat times.
pub(crate) fn median_and_min(times_s: &[f64]) -> Result<(f64, f64), String> {
    let median_s = median(times_s).ok_or_else(|| "status ok needs at least one repeat time".to_string())?;
    Ok((median_s, times_s.iter().copied().fold(f64::INFINITY, f64::min)))
}

#[cfg(test)]
mod tests {
    use autotune_ir::TrialStatus;

    use super::*;
    use crate::records::{SessionId, TargetId, WorkloadId};

    fn trial(status: TrialStatus, repeat_times_s: &[f64]) -> NewTrial {
        NewTrial {
            workload: WorkloadId(1),
            target: TargetId(1),
            session: SessionId(1),
            trace_json: "[]".into(),
            trace_key: "t".into(),
            space_version: "s1".into(),
            codegen_version: "c1".into(),
            status,
            error: None,
            repeat_times_s: repeat_times_s.to_vec(),
            build_time_s: 0.5,
            strategy: "random".into(),
        }
    }

    #[test]
    fn median_of_odd_count_is_the_middle_value() {
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[9.0, 2.0, 7.0, 1.0, 4.0]), Some(4.0));
    }

    #[test]
    fn median_of_even_count_is_the_mean_of_the_two_middle_values() {
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn ok_trial_gets_median_and_min() {
        let summary = summarize(&trial(TrialStatus::Ok, &[4.0, 2.0, 3.0, 9.0])).expect("valid");
        assert_eq!(summary, TimeSummary { median_s: Some(3.5), min_s: Some(2.0) });
    }

    #[test]
    fn failed_trial_never_gets_a_time() {
        for status in TrialStatus::ALL.into_iter().filter(|status| !status.is_ok()) {
            for times in [&[][..], &[0.001][..]] {
                let summary = summarize(&trial(status, times)).expect("valid");
                assert_eq!(summary, TimeSummary { median_s: None, min_s: None });
            }
        }
    }

    #[test]
    fn rejects_missing_and_non_physical_times() {
        assert!(summarize(&trial(TrialStatus::Ok, &[])).is_err());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(summarize(&trial(TrialStatus::Ok, &[0.1, bad])).is_err(), "{bad}");
            assert!(summarize(&trial(TrialStatus::Timeout, &[bad])).is_err(), "{bad}");
        }
        let mut slow_build = trial(TrialStatus::BuildError, &[]);
        slow_build.build_time_s = f64::NAN;
        assert!(summarize(&slow_build).is_err());
    }
}
