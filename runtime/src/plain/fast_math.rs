//! f32 transcendental functions for the plain ops, branch-free so that a loop over a slice
//! vectorizes (the f64 reference semantics go through libm one element at a time: 20–30 ns per
//! element, which made Erf, Tanh and Softmax a third of a transformer encoder's time).
//!
//! Over their whole range exp stays within 2e-7 and tanh within 6e-7 relative of the f64
//! function, erf within 5e-7 absolute; the tests below check that on dense grids, and the ONNX
//! node cases check them against the backend's data.

/// `c[0]·y^(n−1) + … + c[n−1]` by Horner's rule (highest coefficient first). Inlined with a
/// constant array, it unrolls to the same multiply-adds written out.
#[inline(always)]
fn horner<const N: usize>(y: f32, c: [f32; N]) -> f32 {
    c.iter().skip(1).fold(c[0], |p, &k| p * y + k)
}

/// e^x: Cephes' range reduction `x = n·ln 2 + r`, |r| ≤ ln 2 / 2, a degree-6 polynomial for e^r,
/// and 2^n built in the exponent bits. Below −87.3 (the smallest normal result) it is 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer, no libm call
    let c = x.clamp(-87.3, 88.376_26);
    let t = c * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = c - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = horner(r, [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_66, 0.5]);
    let e = p * r * r + r + 1.0;
    // n as an integer from t's low mantissa bits (t = 1.5·2^23 + n, one unit per ulp): `n as i32`
    // would be a saturating conversion, which keeps the loop from vectorizing.
    let n_int = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    if x < -87.3 {
        0.0
    } else {
        e * scale
    }
}

/// tanh(x): Eigen's odd rational approximation (degree 13 / 6) on |x| ≤ 7.905, where f32
/// tanh reaches ±1.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let p = horner(
        x2,
        [
            -2.760_768_4e-16,
            2.000_188e-13,
            -8.604_672e-11,
            5.122_297e-8,
            1.485_722_35e-5,
            6.372_619_5e-4,
            4.893_524_6e-3,
        ],
    );
    let q = horner(x2, [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_6e-3, 4.893_525e-3]);
    x * p / q
}

/// erf(x): Eigen's odd rational approximation (degree 13 / 8) on |x| ≤ 4, where f32 erf reaches
/// ±1.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = horner(
        x2,
        [
            -2.726_142_4e-10,
            2.770_681_5e-8,
            -2.101_024e-6,
            -5.692_506_2e-5,
            -7.349_906_4e-4,
            -2.954_6e-3,
            -1.609_603_3e-2,
        ],
    );
    let q = horner(x2, [-1.456_607_15e-5, -2.133_740_5e-4, -1.682_827e-3, -7.373_329_3e-3, -1.426_473_9e-2]);
    x * p / q
}

/// 1 / (1 + e^−x).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// x · Φ(x), the exact (erf) form of Gelu.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The tanh approximation of Gelu: `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `step`-th f32 in [lo, hi] (by value), with the f64 function at it.
    fn worst_relative(lo: f32, hi: f32, f: fn(f32) -> f32, exact: fn(f64) -> f64) -> (f64, f32) {
        let n = 400_000;
        let mut worst = (0.0, lo);
        for i in 0..=n {
            let x = lo + (hi - lo) * (i as f32 / n as f32);
            let want = exact(f64::from(x));
            let got = f64::from(f(x));
            let err = (got - want).abs() / want.abs().max(1e-30);
            if err > worst.0 {
                worst = (err, x);
            }
        }
        worst
    }

    fn erf_f64(x: f64) -> f64 {
        f64::from(autotune_graph::UnaryOp::Erf.apply(x) as f32)
    }

    #[test]
    fn exp_is_within_2e7_relative_and_underflows_to_zero() {
        let (err, at) = worst_relative(-87.0, 88.3, exp, f64::exp);
        assert!(err < 2e-7, "exp: relative error {err:e} at {at}");
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn tanh_and_erf_are_within_6e7_relative() {
        let (err, at) = worst_relative(-10.0, 10.0, tanh, f64::tanh);
        assert!(err < 6e-7, "tanh: relative error {err:e} at {at}");
        let (err, at) = worst_relative(-1e-3, 1e-3, tanh, f64::tanh);
        assert!(err < 6e-7, "tanh near 0: relative error {err:e} at {at}");
        // The reference erf is good to 1.2e-7 absolute (not relative near 0): compare absolute
        // errors against it, and relative ones near 0 against erf's Taylor series.
        for i in -600_000..=600_000 {
            let x = i as f32 / 100_000.0;
            let err = (f64::from(erf(x)) - erf_f64(f64::from(x))).abs();
            assert!(err < 5e-7, "erf: absolute error {err:e} at {x}");
        }
        let taylor = |x: f64| {
            2.0 / std::f64::consts::PI.sqrt() * (x - x.powi(3) / 3.0 + x.powi(5) / 10.0 - x.powi(7) / 42.0)
        };
        let (err, at) = worst_relative(-0.05, 0.05, erf, taylor);
        assert!(err < 6e-7, "erf near 0: relative error {err:e} at {at}");
        assert!(
            (tanh(f32::INFINITY) - 1.0).abs() <= 2.5e-7 && (erf(f32::NEG_INFINITY) + 1.0).abs() <= 2.5e-7
        );
        assert!(tanh(f32::NAN).is_nan() && erf(f32::NAN).is_nan() && exp(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_forms_match_their_definitions() {
        for i in -600..=600 {
            let x = i as f32 / 100.0;
            let xd = f64::from(x);
            let want = 0.5 * xd * (1.0 + erf_f64(xd / 2f64.sqrt()));
            assert!((f64::from(gelu_erf(x)) - want).abs() <= 1e-6 + 1e-6 * want.abs(), "gelu_erf({x})");
            let want = 0.5
                * xd
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd.powi(3))).tanh());
            assert!((f64::from(gelu_tanh(x)) - want).abs() <= 1e-6 + 1e-6 * want.abs(), "gelu_tanh({x})");
            let want = 1.0 / (1.0 + (-xd).exp());
            assert!((f64::from(sigmoid(x)) - want).abs() <= 3e-7 * want, "sigmoid({x})");
        }
    }
}
