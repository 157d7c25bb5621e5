//! Operand storage for JIT'd kernels, aligned to a cache line.
//!
//! Why not `Vec<f32>`: the system allocator returns large blocks 16 bytes past a page boundary
//! (glibc's mmap'd chunks), so every 64-byte vector load and store of such an operand straddles
//! two cache lines. On an AVX-512 Xeon that cost tuned convolutions 7–10 % (measured: the same
//! kernel at 198 GFLOP/s with page+16 operands, 214 with 64-byte aligned ones), and whether a
//! given buffer was mmap'd or carved from the heap depended on the process's allocation history,
//! so a kernel's measured speed depended on the process that timed it. The tuner and the runtime
//! both hand kernels these buffers, so what is tuned is what runs.

use aligned_vec::{AVec, ConstAlign};
use std::ops::{Deref, DerefMut};

/// Byte alignment of every operand: one cache line, one zmm register.
pub const OPERAND_ALIGN: usize = 64;

/// An `f32` buffer whose first element starts a cache line.
#[derive(Clone, PartialEq, Debug)]
pub struct OperandBuffer(AVec<f32, ConstAlign<OPERAND_ALIGN>>);

impl OperandBuffer {
    /// `len` copies of `value`.
    pub fn filled(len: usize, value: f32) -> OperandBuffer {
        let mut data = AVec::with_capacity(OPERAND_ALIGN, len);
        data.resize(len, value);
        OperandBuffer(data)
    }

    pub fn from_slice(values: &[f32]) -> OperandBuffer {
        OperandBuffer(AVec::from_slice(OPERAND_ALIGN, values))
    }
}

impl Default for OperandBuffer {
    fn default() -> OperandBuffer {
        OperandBuffer(AVec::new(OPERAND_ALIGN))
    }
}

impl Deref for OperandBuffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for OperandBuffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_buffer_starts_a_cache_line_whatever_its_size() {
        // Sizes either side of glibc's mmap threshold, where Vec<f32> lands 16 bytes past a page.
        for len in [1, 7, 1000, 40_000, 1 << 20, (1 << 20) + 3] {
            let filled = OperandBuffer::filled(len, 2.5);
            let copied = OperandBuffer::from_slice(&filled);
            for buffer in [&filled, &copied] {
                assert_eq!(buffer.as_ptr() as usize % OPERAND_ALIGN, 0, "len {len}");
                assert_eq!(buffer.len(), len);
                assert!(buffer.iter().all(|&v| v == 2.5));
            }
        }
        assert!(OperandBuffer::default().is_empty());
    }
}
