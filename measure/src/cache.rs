//! Evicting a buffer from every cache level before a timed run.
//!
//! In a model, a layer's weights were last touched a whole inference earlier and its residual
//! input and output buffer layers earlier; timed warm, a kernel is tuned for conditions it never
//! meets in the model (TVM's `enable_cpu_cache_flush` exists for the same reason). The main input
//! is not evicted: the layer before just wrote it.

// `_mm_clflush` is `unsafe` (a raw pointer), which the workspace denies by default.
#![allow(unsafe_code)]

/// Writes back and evicts every cache line of `buffer` (a no-op off x86-64).
pub fn evict(buffer: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if !buffer.is_empty() {
        use std::arch::x86_64::{_mm_clflush, _mm_mfence};
        const LINE: usize = 64;
        let start = buffer.as_ptr() as usize;
        let end = start + std::mem::size_of_val(buffer);
        let mut line = start & !(LINE - 1);
        while line < end {
            // SAFETY: `buffer` is not empty, so `line.max(start)` is an address inside it (a live
            // allocation), in the cache line being flushed; clflush (SSE2, part of the x86-64 baseline) reads nothing
            // through the pointer, it only writes the line back and evicts it.
            unsafe { _mm_clflush(line.max(start) as *const u8) };
            line += LINE;
        }
        // SAFETY: a fence has no memory operands; SSE2 is part of the x86-64 baseline.
        unsafe { _mm_mfence() };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = buffer;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicting_keeps_the_values_and_handles_odd_sizes() {
        for len in [0usize, 1, 15, 16, 17, 1000] {
            let buffer: Vec<f32> = (0..len).map(|i| i as f32 * 0.5).collect();
            let before = buffer.clone();
            evict(&buffer);
            evict(&buffer[len / 3..]);
            assert_eq!(buffer, before);
        }
    }
}
