//! What the features need to know about the machine: cache sizes, vector width, registers,
//! threads — all read from the [`Target`], never guessed here.

pub use autotune_ir::CacheSizes;
use autotune_ir::{IsaLevel, Target};

/// The machine as the features see it. Built from a [`Target`] or spelled out, as tests do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineModel {
    pub caches: CacheSizes,
    /// fp32 lanes of the widest vector register.
    pub vector_lanes: u32,
    /// Architectural vector registers (32 with AVX-512, 16 with AVX2).
    pub vector_registers: u32,
    /// Threads the kernels run on.
    pub threads: u32,
}

impl MachineModel {
    /// The machine a target describes (its caches are the host's where the target was detected
    /// on it, the documented fallback where it was read back from a log).
    pub fn for_target(target: &Target) -> MachineModel {
        match target {
            Target::Cpu(cpu) => MachineModel {
                caches: cpu.caches,
                vector_lanes: cpu.vector_lanes.max(1),
                vector_registers: cpu.vector_registers(),
                threads: cpu.threads.max(1),
            },
            // The features are CPU-shaped; for a GPU nest they are read against its memory
            // hierarchy (shared memory as the first level, then L2) and its float4 accesses. The
            // surrogate also sees the raw decisions, so this is a rough but honest stand-in.
            Target::Cuda(gpu) => MachineModel {
                caches: CacheSizes {
                    l1d_bytes: gpu.shared_bytes_per_block,
                    l2_bytes: gpu.l2_bytes,
                    l3_bytes: gpu.l2_bytes,
                    line_bytes: 128,
                },
                vector_lanes: 4,
                vector_registers: gpu.max_registers_per_thread,
                threads: gpu.sm_count.max(1),
            },
        }
    }

    /// A CPU of an ISA level with these caches and threads.
    pub fn cpu(caches: CacheSizes, level: IsaLevel, threads: u32) -> MachineModel {
        MachineModel {
            caches,
            vector_lanes: level.vector_lanes(),
            vector_registers: level.vector_registers(),
            threads: threads.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotune_ir::CpuTarget;

    #[test]
    fn the_model_reads_the_target() {
        let mut cpu = CpuTarget::new(
            "t".into(),
            "znver3".into(),
            vec!["+avx2".into(), "+avx".into(), "+fma".into()],
            2,
        );
        cpu.caches = CacheSizes { l1d_bytes: 48 << 10, ..CacheSizes::FALLBACK };
        let m = MachineModel::for_target(&Target::Cpu(cpu));
        assert_eq!((m.vector_lanes, m.vector_registers, m.threads, m.caches.l1d_bytes), (8, 16, 2, 48 << 10));
        let zmm = MachineModel::cpu(CacheSizes::FALLBACK, IsaLevel::Avx512, 1);
        assert_eq!((zmm.vector_lanes, zmm.vector_registers), (16, 32));
    }
}
