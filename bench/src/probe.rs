//! FMA throughput probe: the attainable fp32 FLOP/s of this machine.
//!
//! Each thread runs a loop of independent FMA chains, enough of them to cover the FMA
//! latency times the number of FMA pipes, so the loop is bound by FMA throughput alone.
// The probe calls SIMD intrinsics in functions compiled with `#[target_feature]`; calling
// those functions is `unsafe` (the CPU must support the feature), which the workspace denies
// by default. Every call is guarded by a run-time `is_x86_feature_detected!` check.
#![allow(unsafe_code)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Vector ISA used by the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 16 zmm accumulators, `vfmadd*ps zmm`.
    Avx512,
    /// 12 ymm accumulators, `vfmadd*ps ymm`.
    Avx2,
}

impl Isa {
    /// The widest FMA ISA this CPU supports.
    pub fn detect() -> Result<Isa> {
        #[cfg(target_arch = "x86_64")]
        {
            if Isa::Avx512.supported() {
                return Ok(Isa::Avx512);
            }
            if Isa::Avx2.supported() {
                return Ok(Isa::Avx2);
            }
        }
        bail!("the FMA probe needs an x86-64 CPU with AVX2+FMA or AVX-512F")
    }

    /// The named ISA, if this CPU supports it.
    pub fn from_name(name: &str) -> Result<Isa> {
        let isa = match name {
            "avx512" => Isa::Avx512,
            "avx2" => Isa::Avx2,
            other => bail!("unknown ISA {other:?} (expected \"avx512\" or \"avx2\")"),
        };
        if !isa.supported() {
            bail!("this CPU does not support {name}");
        }
        Ok(isa)
    }

    fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
                Isa::Avx2 => {
                    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
        }
    }
}

/// Iterations of the unrolled FMA block between two clock reads.
const CHUNK: u64 = 1 << 14;

/// Runs the probe on `threads` threads for about `duration` and returns the aggregate FLOP/s.
pub fn measure(isa: Isa, threads: usize, duration: Duration) -> f64 {
    let threads = threads.max(1);
    let barrier = Barrier::new(threads);
    let results: Vec<(f64, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    run_thread(isa, duration)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or((0.0, Duration::from_secs(1)))).collect()
    });
    // All threads start together; divide the total work by the longest thread's time.
    let flops: f64 = results.iter().map(|r| r.0).sum();
    let longest = results.iter().map(|r| r.1).max().unwrap_or(Duration::from_secs(1));
    flops / longest.as_secs_f64().max(1e-9)
}

/// One thread's share: returns (FLOPs done, elapsed time).
fn run_thread(isa: Isa, duration: Duration) -> (f64, Duration) {
    let mut blocks = 0u64;
    let mut sink = 0.0f32;
    let start = Instant::now();
    loop {
        sink += run_chunk(isa, CHUNK);
        blocks += CHUNK;
        if start.elapsed() >= duration {
            break;
        }
    }
    let elapsed = start.elapsed();
    black_box(sink);
    (blocks as f64 * flops_per_block(isa), elapsed)
}

fn flops_per_block(isa: Isa) -> f64 {
    match isa {
        // 16 accumulators x 16 lanes x 2 FLOP (multiply + add).
        Isa::Avx512 => (16 * 16 * 2) as f64,
        // 12 accumulators x 8 lanes x 2 FLOP.
        Isa::Avx2 => (12 * 8 * 2) as f64,
    }
}

/// Runs `iters` blocks of independent FMAs and returns the sum of the accumulators.
fn run_chunk(isa: Isa, iters: u64) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        // Multiplier and addend come through black_box so the chain can't be constant-folded;
        // acc = acc * 0.999999 + 1e-7 stays bounded and normal (no overflow, no denormals).
        let mul = black_box(0.999_999f32);
        let add = black_box(1e-7f32);
        match isa {
            Isa::Avx512 => {
                assert!(isa.supported(), "avx512f not supported");
                // SAFETY: avx512f support was checked at run time just above.
                unsafe { x86::fma_avx512(iters, mul, add) }
            }
            Isa::Avx2 => {
                assert!(isa.supported(), "avx2+fma not supported");
                // SAFETY: avx2 and fma support were checked at run time just above.
                unsafe { x86::fma_avx2(iters, mul, add) }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, iters);
        unreachable!("Isa::detect only succeeds on x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 16 independent zmm FMA chains per iteration.
    #[target_feature(enable = "avx512f")]
    pub(super) fn fma_avx512(iters: u64, mul: f32, add: f32) -> f32 {
        let m = _mm512_set1_ps(mul);
        let c = _mm512_set1_ps(add);
        let mut acc = [_mm512_setzero_ps(); 16];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = _mm512_set1_ps(i as f32);
        }
        for _ in 0..iters {
            // Fully unrolled by the compiler: 16 independent FMAs, each in its own register.
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, m, c);
            }
        }
        let mut total = _mm512_setzero_ps();
        for a in acc {
            total = _mm512_add_ps(total, a);
        }
        _mm512_reduce_add_ps(total)
    }

    /// 12 independent ymm FMA chains per iteration.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn fma_avx2(iters: u64, mul: f32, add: f32) -> f32 {
        let m = _mm256_set1_ps(mul);
        let c = _mm256_set1_ps(add);
        let mut acc = [_mm256_setzero_ps(); 12];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = _mm256_set1_ps(i as f32);
        }
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        let mut total = _mm256_setzero_ps();
        for a in acc {
            total = _mm256_add_ps(total, a);
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` is 8 f32 = 32 bytes, exactly one unaligned ymm store.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), total) };
        lanes.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_returns_positive_finite_flops() {
        let Ok(isa) = Isa::detect() else {
            return; // no FMA ISA on this CPU: nothing to measure
        };
        let flops = measure(isa, 1, Duration::from_millis(5));
        assert!(flops.is_finite() && flops > 0.0, "flops = {flops}");
    }

    #[test]
    fn avx2_probe_runs_when_available() {
        if Isa::Avx2.supported() {
            let flops = measure(Isa::Avx2, 2, Duration::from_millis(5));
            assert!(flops.is_finite() && flops > 0.0, "flops = {flops}");
        }
    }
}
