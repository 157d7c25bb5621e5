//! Named numerical tolerances: `|actual − expected| ≤ atol + rtol·|expected|`.

/// A named tolerance, so a failure message can say which rule was applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub name: &'static str,
    pub atol: f64,
    pub rtol: f64,
}

impl Tolerance {
    /// fp32 results of a reduction of length `n` against an f64-accumulated reference. Rounding
    /// error of a blocked fp32 sum grows roughly like √n·ε·|terms|; a wrong kernel is off by O(1).
    pub fn fp32_reduction(n: usize) -> Tolerance {
        let scale = (n.max(1) as f64).sqrt();
        Tolerance { name: "fp32_reduction", atol: 1e-5 * scale, rtol: 1e-4 }
    }

    pub fn allows(&self, actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= self.atol + self.rtol * expected.abs()
    }
}

/// The first element outside the tolerance, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    pub index: usize,
    pub actual: f64,
    pub expected: f64,
    pub n_bad: usize,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} elements differ; first at flat index {}: got {}, expected {}",
            self.n_bad, self.index, self.actual, self.expected
        )
    }
}

/// Compares two buffers element by element; NaN anywhere is a mismatch.
pub fn compare(actual: &[f32], expected: &[f32], tol: Tolerance) -> Result<(), Mismatch> {
    let mut first: Option<Mismatch> = None;
    let mut n_bad = 0;
    if actual.len() != expected.len() {
        return Err(Mismatch {
            index: actual.len().min(expected.len()),
            actual: f64::NAN,
            expected: f64::NAN,
            n_bad: 1,
        });
    }
    for (index, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let (a, e) = (f64::from(a), f64::from(e));
        // Equal values match even when the tolerance arithmetic cannot (∞ − ∞ is NaN).
        if a == e {
            continue;
        }
        if !tol.allows(a, e) || a.is_nan() != e.is_nan() {
            n_bad += 1;
            first.get_or_insert(Mismatch { index, actual: a, expected: e, n_bad: 0 });
        }
    }
    match first {
        None => Ok(()),
        Some(m) => Err(Mismatch { n_bad, ..m }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_reports_first_mismatch_and_count() {
        let tol = Tolerance { name: "t", atol: 0.01, rtol: 0.0 };
        assert!(compare(&[1.0, 2.0], &[1.005, 2.0], tol).is_ok());
        let err = compare(&[1.0, 5.0, 7.0], &[1.0, 2.0, 3.0], tol).expect_err("mismatch");
        assert_eq!((err.index, err.n_bad), (1, 2));
        assert!(compare(&[f32::NAN], &[1.0], tol).is_err());
        assert!(compare(&[f32::NEG_INFINITY], &[f32::NEG_INFINITY], tol).is_ok());
        assert!(compare(&[f32::INFINITY], &[f32::NEG_INFINITY], tol).is_err());
    }
}
