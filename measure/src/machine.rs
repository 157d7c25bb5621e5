//! Probes of the machine's ceilings: the attainable fp32 FLOP/s (an FMA throughput loop) and the
//! attainable memory bandwidth (a STREAM-style triad). A tuning run measures them once per target
//! and stores them in the tuning log, so a report can place every kernel against the roofline of
//! the machine it was tuned on.
//!
//! The FMA probe is the one `autotune-bench peak` runs (`bench/src/probe.rs`); the copy is on
//! purpose, because the bench depends on no autotune crate and talks to autotune only through the
//! command line.
// The FMA probe calls SIMD intrinsics in functions compiled with `#[target_feature]`; calling those
// functions is `unsafe` (the CPU must support the feature), which the workspace denies by default.
// Every call is guarded by a run-time `is_x86_feature_detected!` check.
#![allow(unsafe_code)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::MeasureError;

/// Settings of the probes. [`MachineProbeConfig::new`] gives the defaults a tuning run uses:
/// about a second for both probes together.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineProbeConfig {
    /// Threads running each probe at the same time: the target's thread count, so the ceiling is
    /// the one its kernels can reach.
    pub threads: usize,
    /// Runs of each probe; the best one is kept (the machine's ceiling, not its average day).
    pub n_runs: usize,
    /// Length of one FMA probe run.
    pub fma_run: Duration,
    /// Bytes of each of the triad's three arrays, all threads together. `None`: four times the
    /// last-level cache (STREAM's rule, so the arrays cannot stay in cache), at least 64 MiB and at
    /// most 256 MiB.
    pub triad_array_bytes: Option<usize>,
}

impl MachineProbeConfig {
    pub fn new(threads: usize) -> Self {
        MachineProbeConfig {
            threads: threads.max(1),
            n_runs: 5,
            fma_run: Duration::from_millis(100),
            triad_array_bytes: None,
        }
    }
}

/// One measured ceiling.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    /// GFLOP/s for the FMA probe, GB/s (10⁹ bytes per second) for the triad.
    pub value: f64,
    /// How it was measured, in words, stored next to the value.
    pub method: String,
}

/// The attainable fp32 GFLOP/s with `config.threads` threads: independent FMA chains, enough of
/// them to cover the FMA latency times the number of FMA pipes, so the loop is bound by FMA
/// throughput alone. Fails on a CPU with neither AVX-512F nor AVX2+FMA.
pub fn probe_peak_gflops(config: &MachineProbeConfig) -> Result<ProbeResult, MeasureError> {
    let isa = FmaIsa::detect().ok_or_else(|| {
        MeasureError::Setup("the FMA peak probe needs an x86-64 CPU with AVX2+FMA or AVX-512F".into())
    })?;
    let threads = config.threads.max(1);
    // A cold core runs below its full clock for a while: the first, untimed run warms it up (a
    // peak below what tuned kernels reach is no ceiling), and the best run is kept because other
    // work on the machine only ever makes a run slower.
    fma_flops_per_s(isa, threads, config.fma_run * 2);
    let best_flops =
        (0..config.n_runs.max(1)).map(|_| fma_flops_per_s(isa, threads, config.fma_run)).fold(0.0, f64::max);
    Ok(ProbeResult {
        value: best_flops / 1e9,
        method: format!(
            "FMA throughput probe ({}, {} independent chains per thread), {threads} thread(s), best of {} runs of {:.2} s after a warm-up",
            isa.name(),
            isa.accumulators(),
            config.n_runs.max(1),
            config.fma_run.as_secs_f64()
        ),
    })
}

/// The attainable memory bandwidth in GB/s with `config.threads` threads: the STREAM triad
/// `a[i] = b[i] + s·c[i]` over f64 arrays much larger than the caches, each thread on its own
/// slice (allocated and first touched by that thread). Counts 24 bytes per element, as STREAM
/// does: the write-allocate read of `a` is not counted.
pub fn probe_bandwidth_gbs(config: &MachineProbeConfig) -> Result<ProbeResult, MeasureError> {
    let threads = config.threads.max(1);
    let array_bytes = config.triad_array_bytes.unwrap_or_else(default_triad_array_bytes);
    let elements_per_thread = (array_bytes / std::mem::size_of::<f64>() / threads).max(1024);
    // A first run touches fresh pages; it only counts if nothing faster follows.
    let n_runs = config.n_runs.max(1) + 1;
    let best_s = triad_best_seconds(threads, elements_per_thread, n_runs)
        .ok_or_else(|| MeasureError::Setup("the triad probe's threads failed".into()))?;
    let bytes = 3.0 * (elements_per_thread * threads * std::mem::size_of::<f64>()) as f64;
    Ok(ProbeResult {
        value: bytes / best_s / 1e9,
        method: format!(
            "STREAM triad a = b + s*c on f64, {threads} thread(s), 3 arrays of {} MiB, best of {n_runs} runs, 24 bytes counted per element",
            (elements_per_thread * threads * std::mem::size_of::<f64>()) >> 20
        ),
    })
}

/// Four times the last-level cache of CPU 0, clamped to [64 MiB, 256 MiB]; 64 MiB when the
/// cache size is unknown.
fn default_triad_array_bytes() -> usize {
    const MIN_BYTES: usize = 64 << 20;
    const MAX_BYTES: usize = 256 << 20;
    last_level_cache_bytes().map_or(MIN_BYTES, |cache| cache.saturating_mul(4).clamp(MIN_BYTES, MAX_BYTES))
}

/// The largest cache size Linux reports for CPU 0 (e.g. `32768K`), in bytes.
fn last_level_cache_bytes() -> Option<usize> {
    let entries = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("size")).ok())
        .filter_map(|text| parse_cache_size(text.trim()))
        .max()
}

fn parse_cache_size(text: &str) -> Option<usize> {
    let (digits, scale) = match text.as_bytes().last()? {
        b'K' => (&text[..text.len() - 1], 1 << 10),
        b'M' => (&text[..text.len() - 1], 1 << 20),
        b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    digits.parse::<usize>().ok().map(|value| value * scale)
}

/// Runs the triad `n_runs` times on every thread, all threads starting each run together, and
/// returns the fastest run's time (a run lasts as long as its slowest thread).
fn triad_best_seconds(threads: usize, elements_per_thread: usize, n_runs: usize) -> Option<f64> {
    let start_line = Barrier::new(threads);
    let per_thread: Vec<Option<Vec<f64>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let start_line = &start_line;
                scope.spawn(move || {
                    // Allocated and written by the thread that uses them: first touch places the
                    // pages on this thread's memory node.
                    let mut a = vec![0.0f64; elements_per_thread];
                    let b = vec![1.0f64; elements_per_thread];
                    let c = vec![2.0f64; elements_per_thread];
                    let scalar = black_box(3.0f64);
                    let mut seconds = Vec::with_capacity(n_runs);
                    for _ in 0..n_runs {
                        start_line.wait();
                        let start = Instant::now();
                        for ((x, y), z) in a.iter_mut().zip(&b).zip(&c) {
                            *x = y + scalar * z;
                        }
                        black_box(&mut a);
                        seconds.push(start.elapsed().as_secs_f64());
                    }
                    seconds
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().ok()).collect()
    });
    let per_thread: Vec<Vec<f64>> = per_thread.into_iter().collect::<Option<_>>()?;
    (0..n_runs)
        .map(|run| per_thread.iter().map(|seconds| seconds[run]).fold(0.0, f64::max))
        .filter(|seconds| *seconds > 0.0)
        .reduce(f64::min)
}

/// Vector ISA the FMA probe runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FmaIsa {
    /// 16 zmm accumulators, `vfmadd*ps zmm`.
    Avx512,
    /// 12 ymm accumulators, `vfmadd*ps ymm`.
    Avx2,
}

impl FmaIsa {
    /// The widest FMA ISA this CPU supports.
    fn detect() -> Option<FmaIsa> {
        [FmaIsa::Avx512, FmaIsa::Avx2].into_iter().find(|isa| isa.supported())
    }

    fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                FmaIsa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
                FmaIsa::Avx2 => {
                    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    fn name(self) -> &'static str {
        match self {
            FmaIsa::Avx512 => "avx512",
            FmaIsa::Avx2 => "avx2",
        }
    }

    fn accumulators(self) -> u32 {
        match self {
            FmaIsa::Avx512 => 16,
            FmaIsa::Avx2 => 12,
        }
    }

    /// FLOPs of one block: every accumulator does one FMA (2 FLOPs) on every lane.
    fn flops_per_block(self) -> f64 {
        let lanes = match self {
            FmaIsa::Avx512 => 16,
            FmaIsa::Avx2 => 8,
        };
        f64::from(self.accumulators() * lanes * 2)
    }
}

/// Blocks of FMAs between two clock reads.
const FMA_CHUNK: u64 = 1 << 14;

/// Runs the FMA probe on `threads` threads for about `duration` and returns the aggregate FLOP/s.
fn fma_flops_per_s(isa: FmaIsa, threads: usize, duration: Duration) -> f64 {
    let start_line = Barrier::new(threads);
    let results: Vec<Option<(f64, Duration)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let start_line = &start_line;
                scope.spawn(move || {
                    start_line.wait();
                    fma_thread(isa, duration)
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().ok()).collect()
    });
    // All threads start together: the total work divided by the longest thread's time.
    let flops: f64 = results.iter().flatten().map(|(flops, _)| flops).sum();
    let longest = results.iter().flatten().map(|(_, elapsed)| *elapsed).max().unwrap_or(Duration::ZERO);
    if longest.is_zero() {
        return 0.0;
    }
    flops / longest.as_secs_f64()
}

/// One thread's share: (FLOPs done, elapsed time).
fn fma_thread(isa: FmaIsa, duration: Duration) -> (f64, Duration) {
    let mut blocks = 0u64;
    let mut sink = 0.0f32;
    let start = Instant::now();
    loop {
        sink += fma_chunk(isa, FMA_CHUNK);
        blocks += FMA_CHUNK;
        if start.elapsed() >= duration {
            break;
        }
    }
    let elapsed = start.elapsed();
    black_box(sink);
    (blocks as f64 * isa.flops_per_block(), elapsed)
}

/// Runs `iters` blocks of independent FMAs and returns the sum of the accumulators.
fn fma_chunk(isa: FmaIsa, iters: u64) -> f32 {
    // Multiplier and addend come through black_box so the chains cannot be constant-folded;
    // acc = acc * 0.999999 + 1e-7 stays bounded and normal (no overflow, no denormals).
    let mul = black_box(0.999_999f32);
    let add = black_box(1e-7f32);
    #[cfg(target_arch = "x86_64")]
    {
        if !isa.supported() {
            return 0.0;
        }
        match isa {
            // SAFETY: avx512f support was checked at run time just above.
            FmaIsa::Avx512 => unsafe { x86::fma_avx512(iters, mul, add) },
            // SAFETY: avx2 and fma support were checked at run time just above.
            FmaIsa::Avx2 => unsafe { x86::fma_avx2(iters, mul, add) },
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, iters, mul, add);
        0.0
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

    fn quick(threads: usize) -> MachineProbeConfig {
        MachineProbeConfig {
            threads,
            n_runs: 2,
            fma_run: Duration::from_millis(5),
            triad_array_bytes: Some(8 << 20),
        }
    }

    #[test]
    fn peak_probe_gives_a_plausible_positive_number_or_says_why_not() {
        match probe_peak_gflops(&quick(1)) {
            // Any x86-64 core with FMA does more than 1 GFLOP/s and less than 10 TFLOP/s.
            Ok(peak) => {
                assert!(peak.value > 1.0 && peak.value < 10_000.0, "{peak:?}");
                assert!(peak.method.contains("1 thread"), "{}", peak.method);
            }
            Err(error) => {
                assert!(FmaIsa::detect().is_none(), "probe failed on a CPU with FMA: {error}");
                println!("skipped: {error}");
            }
        }
    }

    #[test]
    fn bandwidth_probe_gives_a_plausible_positive_number() {
        let bandwidth = probe_bandwidth_gbs(&quick(2)).expect("triad");
        // Between a slow laptop's DRAM and a fast cache: 8 MiB arrays may partly stay in cache.
        assert!(bandwidth.value > 0.1 && bandwidth.value < 10_000.0, "{bandwidth:?}");
        assert!(bandwidth.method.contains("2 thread"), "{}", bandwidth.method);
    }

    #[test]
    fn cache_sizes_parse_as_linux_writes_them() {
        assert_eq!(parse_cache_size("32768K"), Some(32 << 20));
        assert_eq!(parse_cache_size("1M"), Some(1 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("lots"), None);
        assert_eq!(parse_cache_size(""), None);
        let default = default_triad_array_bytes();
        assert!((64 << 20..=256 << 20).contains(&default), "{default}");
    }
}
