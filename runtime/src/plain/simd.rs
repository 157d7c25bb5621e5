//! The plain ops' hot loops compiled for the plan's vector level, not for the x86-64 baseline
//! the crate is built for: the loops are written once, and [`VectorLevel::run`] runs a loop body
//! inside a function compiled with the level's target features, where it is inlined and
//! vectorized 8 or 16 lanes wide (softmax, Gelu and LayerNorm rows of a transformer encoder run
//! several times faster than in SSE2).
//!
//! The level comes from the plan's target (a plan restricted to AVX2 runs AVX2 plain ops), and
//! is used only where this CPU has the features too (checked on every call), which is what makes
//! the calls sound.

use autotune_ir::{IsaLevel, Target};

/// How wide the plain ops' loops are compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VectorLevel {
    /// The crate's own build (SSE2 on x86-64).
    Baseline,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512 (F, BW, DQ, VL).
    Avx512,
}

impl VectorLevel {
    /// The widest level the target allows and this CPU runs.
    pub fn of_target(target: &Target) -> VectorLevel {
        let level = target.as_cpu().map_or(IsaLevel::Baseline, |cpu| cpu.isa_level());
        VectorLevel::ALL
            .into_iter()
            .rev()
            .find(|v| v.isa_level() <= level && v.runs_here())
            .unwrap_or(VectorLevel::Baseline)
    }

    pub const ALL: [VectorLevel; 3] = [VectorLevel::Baseline, VectorLevel::Avx2, VectorLevel::Avx512];

    fn isa_level(self) -> IsaLevel {
        match self {
            VectorLevel::Baseline => IsaLevel::Baseline,
            VectorLevel::Avx2 => IsaLevel::Avx2,
            VectorLevel::Avx512 => IsaLevel::Avx512,
        }
    }

    /// Whether this CPU has the features the level's code is compiled with.
    pub fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                VectorLevel::Baseline => true,
                VectorLevel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                VectorLevel::Avx512 => {
                    is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512dq")
                        && is_x86_feature_detected!("avx512vl")
                        && is_x86_feature_detected!("avx2")
                        && is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == VectorLevel::Baseline
        }
    }

    /// Runs `body` compiled for this level: the closure (called once) is inlined into a function
    /// with the level's target features, and so are the `#[inline]` loops it calls.
    #[inline(always)]
    pub fn run<R>(self, body: impl FnOnce() -> R) -> R {
        #[cfg(target_arch = "x86_64")]
        {
            if !self.runs_here() {
                return body();
            }
            // SAFETY: `runs_here` checked that this CPU has every feature the functions enable
            // (std caches the CPUID answer: the check is one load).
            #[allow(unsafe_code)]
            match self {
                VectorLevel::Baseline => body(),
                VectorLevel::Avx2 => unsafe { with_avx2(body) },
                VectorLevel::Avx512 => unsafe { with_avx512(body) },
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            body()
        }
    }
}

/// Defines `fn NAME(level: VectorLevel, args…)`: the body compiled once per [`VectorLevel`] (an
/// `#[inline(always)]` body inside functions with each level's target features: unlike a
/// closure handed to [`VectorLevel::run`], which LLVM may keep out of line and so compile for
/// the baseline, it is always inlined), dispatched on `level`.
macro_rules! per_vector_level {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name(level: $crate::plain::VectorLevel, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            #[target_feature(enable = "avx,avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            #[target_feature(enable = "avx,avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if level.runs_here() {
                // SAFETY: `runs_here` checked that this CPU has every feature enabled above.
                #[allow(unsafe_code)]
                match level {
                    $crate::plain::VectorLevel::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::plain::VectorLevel::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::plain::VectorLevel::Baseline => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use per_vector_level;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx,avx2,fma")]
unsafe fn with_avx2<R>(body: impl FnOnce() -> R) -> R {
    body()
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx,avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn with_avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}

#[cfg(test)]
mod tests {
    use super::VectorLevel;
    use crate::plain::{run, Operand, OutBuf, Par};
    use autotune_graph::{ElemType, PlainOp, UnaryOp};

    /// Every op whose loops are compiled per level, on `x` of `shape`.
    fn ops() -> Vec<PlainOp> {
        vec![
            PlainOp::Softmax { axis: 1, log: false, coerce_2d: false },
            PlainOp::Softmax { axis: 1, log: true, coerce_2d: false },
            PlainOp::LayerNorm { axis: 1, epsilon: 1e-5 },
            PlainOp::Unary(UnaryOp::Exp),
            PlainOp::Unary(UnaryOp::Gelu { tanh: false }),
            PlainOp::Unary(UnaryOp::Gelu { tanh: true }),
            PlainOp::Unary(UnaryOp::Sigmoid),
        ]
    }

    fn run_at(level: VectorLevel, op: &PlainOp, x: &[f32], shape: &[usize]) -> Vec<f32> {
        let (gamma, beta): (Vec<f32>, Vec<f32>) =
            (0..shape[1]).map(|k| (0.5 + k as f32 / 97.0, (k as f32 / 31.0).sin())).unzip();
        let mut y = vec![0.0; x.len()];
        let vector_shape = [shape[1]];
        let mut inputs = vec![Operand { data: x, shape }];
        if matches!(op, PlainOp::LayerNorm { .. }) {
            inputs.push(Operand { data: &gamma, shape: &vector_shape });
            inputs.push(Operand { data: &beta, shape: &vector_shape });
        }
        let mut out = [OutBuf { data: &mut y, shape, dtype: ElemType::F32 }];
        run(op, &inputs, &mut out, &Par::serial_at(level)).expect("runs");
        y
    }

    #[test]
    fn every_level_this_cpu_runs_gives_the_baseline_bits() {
        // Rows of 771 (not a multiple of 16: the remainders run too), values over a wide range.
        let shape = [5usize, 771];
        let x: Vec<f32> =
            (0..shape[0] * shape[1]).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 37.0).collect();
        let levels: Vec<VectorLevel> = VectorLevel::ALL.into_iter().filter(|l| l.runs_here()).collect();
        println!("levels this CPU runs: {levels:?}");
        for op in ops() {
            let baseline = run_at(VectorLevel::Baseline, &op, &x, &shape);
            assert!(baseline.iter().all(|v| v.is_finite()), "{op:?}");
            for &level in &levels[1..] {
                let got = run_at(level, &op, &x, &shape);
                // Same operations in the same order (explicit partial sums, no fused multiply-add),
                // so the same bits: a difference is a miscompiled or mis-dispatched loop.
                let same = got.iter().zip(&baseline).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{op:?} at {level:?} differs from the baseline");
            }
        }
    }

    #[test]
    fn a_level_this_cpu_lacks_falls_back_to_the_baseline() {
        for level in VectorLevel::ALL {
            // Whatever the CPU, `run` never executes code it cannot run.
            assert_eq!(level.run(|| 41 + 1), 42);
        }
        let target =
            autotune_ir::Target::Cpu(autotune_ir::CpuTarget::generic(autotune_ir::IsaLevel::Baseline, 1));
        assert_eq!(VectorLevel::of_target(&target), VectorLevel::Baseline);
    }
}
