//! Numbers as people read them: latencies with a unit that fits, rates and ratios with three
//! significant digits.

/// `1.23 ms`, `45.6 µs`, `789 ns`, `1.50 s`.
pub(crate) fn latency(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "n/a".into();
    }
    let (value, unit) = if seconds >= 1.0 {
        (seconds, "s")
    } else if seconds >= 1e-3 {
        (seconds * 1e3, "ms")
    } else if seconds >= 1e-6 {
        (seconds * 1e6, "µs")
    } else {
        (seconds * 1e9, "ns")
    };
    format!("{} {unit}", significant(value))
}

/// Three significant digits, without a needless exponent: `1.23`, `45.6`, `789`, `12345`.
pub(crate) fn significant(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    let magnitude = value.abs();
    let decimals = if magnitude >= 100.0 || magnitude == 0.0 {
        0
    } else if magnitude >= 10.0 {
        1
    } else if magnitude >= 1.0 {
        2
    } else {
        // 0.0123 → 4 decimals: three significant digits below 1.
        (2.0 - magnitude.log10().floor()).clamp(2.0, 12.0) as usize
    };
    format!("{value:.decimals$}")
}

/// `12.3%` of a percentage value.
pub(crate) fn percent(value: f64) -> String {
    format!("{}%", significant(value))
}

/// `4.56×`.
pub(crate) fn ratio(value: f64) -> String {
    format!("{}×", significant(value))
}

/// A duration in the largest units that matter: `42 s`, `3 min 05 s`, `2 h 07 min`.
pub(crate) fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "n/a".into();
    }
    let whole = seconds.round() as u64;
    match whole {
        0..=59 => format!("{whole} s"),
        60..=3599 => format!("{} min {:02} s", whole / 60, whole % 60),
        _ => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
    }
}

/// A compact axis label: `0.5`, `20`, `1.5k`, `2M`.
pub(crate) fn axis(value: f64) -> String {
    let magnitude = value.abs();
    let trimmed = |v: f64| {
        let text = format!("{v:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if magnitude >= 1e6 {
        format!("{}M", trimmed(value / 1e6))
    } else if magnitude >= 1e3 {
        format!("{}k", trimmed(value / 1e3))
    } else if magnitude >= 0.01 || magnitude == 0.0 {
        trimmed(value)
    } else {
        format!("{value:.0e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_pick_a_unit() {
        assert_eq!(latency(1.5), "1.50 s");
        assert_eq!(latency(0.001_234_5), "1.23 ms");
        assert_eq!(latency(45.6e-6), "45.6 µs");
        assert_eq!(latency(789e-9), "789 ns");
        assert_eq!(latency(f64::NAN), "n/a");
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(significant(123.456), "123");
        assert_eq!(significant(12.345), "12.3");
        assert_eq!(significant(1.2345), "1.23");
        assert_eq!(significant(0.012_345), "0.0123");
        assert_eq!(significant(0.0), "0");
        assert_eq!(percent(87.65), "87.7%");
        assert_eq!(ratio(3.0), "3.00×");
    }

    #[test]
    fn durations_and_axis_labels() {
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(duration(7620.0), "2 h 07 min");
        assert_eq!(axis(0.5), "0.5");
        assert_eq!(axis(20.0), "20");
        assert_eq!(axis(1500.0), "1.5k");
        assert_eq!(axis(2e6), "2M");
        assert_eq!(axis(0.0), "0");
    }
}
