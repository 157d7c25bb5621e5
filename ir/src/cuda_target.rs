//! A CUDA device as data: what the GPU spaces' verifier and the cost model read (threads, shared
//! memory, registers), and what the log's fingerprint records (name, compute capability, clocks).
//!
//! The device's ordinal (`cuda:N`) says where to run, not what the device is: two H100s are one
//! target, so it is neither serialized nor compared.

use serde::{Deserialize, Serialize};

/// A CUDA device's identity and limits, read from the driver's device attributes (or a preset
/// for offline compile checks). Every byte and count is per the unit its name says.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CudaTarget {
    /// The driver's device name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    pub compute_major: u32,
    pub compute_minor: u32,
    pub sm_count: u32,
    pub max_threads_per_block: u32,
    /// Static `__shared__` memory a block may use without opting in (48 KiB on every current GPU):
    /// the verifier's limit, since the kernels declare their shared buffers statically.
    pub shared_bytes_per_block: u64,
    /// What a block may use after `cudaFuncSetAttribute` opts in (dynamic shared memory).
    pub shared_bytes_per_block_optin: u64,
    pub shared_bytes_per_sm: u64,
    /// 32-bit registers of one block (65536 on sm_70…sm_90).
    pub registers_per_block: u32,
    /// The most registers one thread may use (255).
    pub max_registers_per_thread: u32,
    pub max_threads_per_sm: u32,
    pub warp_size: u32,
    pub clock_khz: u32,
    pub memory_clock_khz: u32,
    pub memory_bus_width_bits: u32,
    pub l2_bytes: u64,
    /// `cuda:N`: which device of this machine runs the kernels. Not part of the fingerprint.
    #[serde(skip)]
    pub ordinal: u32,
}

impl CudaTarget {
    /// Every field but the ordinal.
    fn identity(&self) -> (&str, [u32; 11], [u64; 4]) {
        (
            &self.name,
            [
                self.compute_major,
                self.compute_minor,
                self.sm_count,
                self.max_threads_per_block,
                self.registers_per_block,
                self.max_registers_per_thread,
                self.max_threads_per_sm,
                self.warp_size,
                self.clock_khz,
                self.memory_clock_khz,
                self.memory_bus_width_bits,
            ],
            [
                self.shared_bytes_per_block,
                self.shared_bytes_per_block_optin,
                self.shared_bytes_per_sm,
                self.l2_bytes,
            ],
        )
    }

    /// The virtual architecture NVRTC and ptxas compile for: `sm_90` for compute capability 9.0.
    pub fn arch(&self) -> String {
        format!("sm_{}{}", self.compute_major, self.compute_minor)
    }

    /// Peak DRAM bandwidth in GB/s: double data rate × bus width.
    pub fn memory_bandwidth_gbs(&self) -> f64 {
        2.0 * f64::from(self.memory_clock_khz) * 1e3 * f64::from(self.memory_bus_width_bits) / 8.0 / 1e9
    }

    /// An NVIDIA A100-SXM4-80GB (sm_80), as its driver reports it: the preset for offline compile
    /// checks of sm_80 code.
    pub fn a100() -> CudaTarget {
        CudaTarget {
            name: "NVIDIA A100-SXM4-80GB".into(),
            compute_major: 8,
            compute_minor: 0,
            sm_count: 108,
            max_threads_per_block: 1024,
            shared_bytes_per_block: 48 << 10,
            shared_bytes_per_block_optin: 166_912,
            shared_bytes_per_sm: 167_936,
            registers_per_block: 65_536,
            max_registers_per_thread: 255,
            max_threads_per_sm: 2048,
            warp_size: 32,
            clock_khz: 1_410_000,
            memory_clock_khz: 1_593_000,
            memory_bus_width_bits: 5120,
            l2_bytes: 40 << 20,
            ordinal: 0,
        }
    }

    /// An NVIDIA H100 80GB HBM3 (SXM, sm_90), as its driver reports it.
    pub fn h100() -> CudaTarget {
        CudaTarget {
            name: "NVIDIA H100 80GB HBM3".into(),
            compute_major: 9,
            compute_minor: 0,
            sm_count: 132,
            max_threads_per_block: 1024,
            shared_bytes_per_block: 48 << 10,
            shared_bytes_per_block_optin: 232_448,
            shared_bytes_per_sm: 233_472,
            registers_per_block: 65_536,
            max_registers_per_thread: 255,
            max_threads_per_sm: 2048,
            warp_size: 32,
            clock_khz: 1_980_000,
            memory_clock_khz: 2_619_000,
            memory_bus_width_bits: 5120,
            l2_bytes: 50 << 20,
            ordinal: 0,
        }
    }
}

impl PartialEq for CudaTarget {
    fn eq(&self, other: &CudaTarget) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for CudaTarget {}

impl std::hash::Hash for CudaTarget {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Target;

    #[test]
    fn presets_describe_their_architectures() {
        let (a100, h100) = (CudaTarget::a100(), CudaTarget::h100());
        assert_eq!((a100.arch(), h100.arch()), ("sm_80".to_string(), "sm_90".to_string()));
        // Data-sheet bandwidths: 2039 GB/s (A100 80GB), 3352 GB/s (H100 SXM).
        assert!((a100.memory_bandwidth_gbs() - 2039.0).abs() < 1.0, "{}", a100.memory_bandwidth_gbs());
        assert!((h100.memory_bandwidth_gbs() - 3352.0).abs() < 1.0, "{}", h100.memory_bandwidth_gbs());
    }

    #[test]
    fn the_fingerprint_records_the_device_but_not_its_ordinal() {
        let t = Target::Cuda(CudaTarget::h100());
        let json = t.canonical_json();
        assert!(
            json.starts_with(r#"{"kind":"cuda","name":"NVIDIA H100 80GB HBM3","compute_major":9"#),
            "{json}"
        );
        for field in ["sm_count", "shared_bytes_per_block", "registers_per_block", "clock_khz", "l2_bytes"] {
            assert!(json.contains(field), "{field} in {json}");
        }
        assert!(!json.contains("ordinal"));
        let second = Target::Cuda(CudaTarget { ordinal: 1, ..CudaTarget::h100() });
        assert_eq!(second.key(), t.key(), "two H100s are one target");
        assert_ne!(Target::Cuda(CudaTarget::a100()).key(), t.key());
        let back: Target = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, t);
        assert_eq!((t.kind(), t.threads(), t.as_cpu().is_none()), ("cuda", 1, true));
    }
}
