//! Summary statistics of repeat times, shared by what is stored (db) and what is reported
//! (measure, search): one definition, so the log and the tuner never disagree on a median.

/// The median of `times`: the middle value, or the mean of the two middle values for an even
/// count. `None` when empty.
pub fn median(times: &[f64]) -> Option<f64> {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        len if len % 2 == 1 => Some(sorted[middle]),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2.0),
    }
}
