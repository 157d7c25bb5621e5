//! Time in the tuning log: its RFC 3339 timestamps, and the tuning clock that lays sessions end
//! to end so that a convergence chart shows tuning time, not the nights between two runs.

use std::collections::HashMap;

use autotune_db::{SessionId, SessionRecord};

/// Seconds since the Unix epoch of a UTC timestamp as the tuning log writes it
/// (`2024-01-31T23:59:59Z`; fractional seconds and a `+00:00` offset are accepted too). `None`
/// for anything else.
pub(crate) fn parse_rfc3339_utc(text: &str) -> Option<f64> {
    let text = text.strip_suffix('Z').or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: i64 = date_parts.next()?.parse().ok()?;
    let day: i64 = date_parts.next()?.parse().ok()?;
    let mut time_parts = time.splitn(3, ':');
    let hour: i64 = time_parts.next()?.parse().ok()?;
    let minute: i64 = time_parts.next()?.parse().ok()?;
    let second: f64 = time_parts.next()?.parse().ok()?;
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0.0..61.0).contains(&second);
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3_600 + minute * 60) as f64 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`: eras
/// of 400 years that start on March 1st, so the leap day ends each era-year).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Maps a trial's session and timestamp to seconds of tuning: each session starts where the one
/// before it stopped.
#[derive(Clone, Debug, Default)]
pub(crate) struct TuningClock {
    /// Per session: its start (Unix seconds) and the tuning time at that start.
    sessions: HashMap<SessionId, (f64, f64)>,
}

impl TuningClock {
    /// `last_trial_at` holds, per session, the latest timestamp of its trials (Unix seconds): a
    /// session that was killed has no end time, and stopped at its last trial.
    pub(crate) fn new(sessions: &[SessionRecord], last_trial_at: &HashMap<SessionId, f64>) -> TuningClock {
        let mut clock = TuningClock::default();
        let mut elapsed_s = 0.0;
        for session in sessions {
            let Some(start) = parse_rfc3339_utc(&session.started_at) else { continue };
            clock.sessions.insert(session.id, (start, elapsed_s));
            let end = session.ended_at.as_deref().and_then(parse_rfc3339_utc);
            let stop = match (end, last_trial_at.get(&session.id)) {
                (Some(end), Some(&last)) => end.max(last),
                (Some(end), None) => end,
                (None, Some(&last)) => last,
                (None, None) => start,
            };
            // A clock that jumped backwards must not move tuning time backwards.
            elapsed_s += (stop - start).max(0.0);
        }
        clock
    }

    /// Tuning seconds at `recorded_at` in `session`; `None` for an unknown session or an
    /// unreadable timestamp.
    pub(crate) fn at(&self, session: SessionId, recorded_at: &str) -> Option<f64> {
        let (start, offset_s) = *self.sessions.get(&session)?;
        let at = parse_rfc3339_utc(recorded_at)?;
        Some(offset_s + (at - start).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_timestamps_the_log_writes() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339_utc("2000-02-29T00:00:00Z"), Some(951_782_400.0));
        assert_eq!(parse_rfc3339_utc("2023-11-14T22:13:20Z"), Some(1_700_000_000.0));
        assert_eq!(parse_rfc3339_utc("2024-02-29T23:59:59Z"), Some(1_709_251_199.0));
        assert_eq!(parse_rfc3339_utc("2100-01-01T00:00:00+00:00"), Some(4_102_444_800.0));
        assert_eq!(parse_rfc3339_utc("2024-01-01T00:00:00.25Z"), Some(1_704_067_200.25));
        for bad in
            ["", "now", "2024-01-01", "2024-01-01T00:00:00", "2024-13-01T00:00:00Z", "2024-01-01T25:00:00Z"]
        {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
    }

    fn session(id: i64, started_at: &str, ended_at: Option<&str>) -> SessionRecord {
        SessionRecord {
            id: SessionId(id),
            started_at: started_at.into(),
            ended_at: ended_at.map(Into::into),
            command: String::new(),
            seed: 0,
            strategy: "random".into(),
            tool_version: "0".into(),
        }
    }

    #[test]
    fn sessions_are_laid_end_to_end() {
        let sessions = [
            session(1, "2024-01-01T00:00:00Z", Some("2024-01-01T00:01:00Z")),
            // Killed: no end, stopped at its last trial.
            session(2, "2024-01-02T00:00:00Z", None),
            session(3, "2024-01-03T00:00:00Z", None),
        ];
        let last = HashMap::from([(SessionId(2), parse_rfc3339_utc("2024-01-02T00:00:30Z").expect("ts"))]);
        let clock = TuningClock::new(&sessions, &last);
        assert_eq!(clock.at(SessionId(1), "2024-01-01T00:00:10Z"), Some(10.0));
        assert_eq!(clock.at(SessionId(2), "2024-01-02T00:00:30Z"), Some(90.0));
        assert_eq!(clock.at(SessionId(3), "2024-01-03T00:00:05Z"), Some(95.0));
        assert_eq!(clock.at(SessionId(4), "2024-01-03T00:00:05Z"), None);
        assert_eq!(clock.at(SessionId(3), "garbage"), None);
    }
}
