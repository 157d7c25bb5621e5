//! Targets: where a kernel runs. A best kernel is only best for the target it was measured on.

use crate::task::stable_hash_hex;
use serde::{Deserialize, Serialize};

/// A CPU as LLVM names it, with the ISA features the kernels may use and the thread count they run
/// with (a kernel tuned for 1 thread is a different winner than one for 2).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct CpuTarget {
    /// The marketing model string (`/proc/cpuinfo` "model name"), for people.
    pub model_name: String,
    /// LLVM's CPU name (e.g. `znver4`), used for code generation.
    pub llvm_cpu: String,
    /// LLVM feature string (`+avx512f,+fma,…`), sorted.
    pub features: Vec<String>,
    /// Width of the widest usable fp32 vector register, in lanes (16 with AVX-512).
    pub vector_lanes: u32,
    pub threads: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    Cpu(CpuTarget),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Cpu(_) => "cpu",
        }
    }
    pub fn name(&self) -> &str {
        match self {
            Target::Cpu(cpu) => &cpu.model_name,
        }
    }
    pub fn threads(&self) -> u32 {
        match self {
            Target::Cpu(cpu) => cpu.threads,
        }
    }
    /// The ISA features, comma separated without the `+`, only the enabled ones.
    pub fn feature_summary(&self) -> String {
        match self {
            Target::Cpu(cpu) => {
                cpu.features.iter().filter_map(|f| f.strip_prefix('+')).collect::<Vec<_>>().join(",")
            }
        }
    }
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
    /// Stable identity (SHA-256 of the canonical JSON).
    pub fn key(&self) -> String {
        stable_hash_hex(&self.canonical_json())
    }
    pub fn as_cpu(&self) -> Option<&CpuTarget> {
        match self {
            Target::Cpu(cpu) => Some(cpu),
        }
    }
}
