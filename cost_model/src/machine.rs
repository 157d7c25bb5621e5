//! What the features need to know about the machine: cache sizes, vector width, registers,
//! threads.

use autotune_ir::Target;

/// Data-cache capacities of one core's view of the hierarchy, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSizes {
    pub l1d_bytes: u64,
    pub l2_bytes: u64,
    pub l3_bytes: u64,
    pub line_bytes: u64,
}

impl CacheSizes {
    /// The development machine (AMD Zen 4): 32 KiB L1d, 1 MiB L2, 32 MiB L3, 64-byte lines. The
    /// fallback when the host does not say.
    pub const ZEN4: CacheSizes =
        CacheSizes { l1d_bytes: 32 << 10, l2_bytes: 1 << 20, l3_bytes: 32 << 20, line_bytes: 64 };

    /// The host's caches as Linux reports them under `/sys/devices/system/cpu/cpu0/cache`; any
    /// level it does not report keeps the [`ZEN4`](Self::ZEN4) value.
    pub fn detect_host() -> CacheSizes {
        let mut sizes = CacheSizes::ZEN4;
        let Ok(entries) = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache") else {
            return sizes;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let read =
                |name: &str| std::fs::read_to_string(dir.join(name)).ok().map(|s| s.trim().to_string());
            let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size")) else {
                continue;
            };
            let Some(bytes) = parse_cache_size(&size) else { continue };
            match (level.as_str(), kind.as_str()) {
                ("1", "Data") => sizes.l1d_bytes = bytes,
                ("2", "Unified" | "Data") => sizes.l2_bytes = bytes,
                ("3", "Unified" | "Data") => sizes.l3_bytes = bytes,
                _ => {}
            }
            if let Some(line) = read("coherency_line_size").and_then(|s| s.parse().ok()) {
                if line > 0 {
                    sizes.line_bytes = line;
                }
            }
        }
        sizes
    }
}

/// `32K`, `1024K`, `32M`, `123` (bytes) → bytes.
fn parse_cache_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, scale) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 1 << 10),
        'M' | 'm' => (&text[..text.len() - 1], 1 << 20),
        'G' | 'g' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok().map(|v| v * scale).filter(|&v| v > 0)
}

/// The machine as the features see it. Built from a [`Target`] (the caches read from the host at
/// run time) or spelled out, as tests do.
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
    /// The machine a target describes; a CPU target's caches are the host's
    /// ([`CacheSizes::detect_host`]), because a CPU target is always the host here.
    pub fn for_target(target: &Target) -> MachineModel {
        match target {
            Target::Cpu(cpu) => MachineModel::cpu(CacheSizes::detect_host(), cpu.vector_lanes, cpu.threads),
        }
    }

    /// A CPU with these caches, fp32 lanes and threads.
    pub fn cpu(caches: CacheSizes, vector_lanes: u32, threads: u32) -> MachineModel {
        let vector_lanes = vector_lanes.max(1);
        MachineModel {
            caches,
            vector_lanes,
            vector_registers: if vector_lanes >= 16 { 32 } else { 16 },
            threads: threads.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_cache_size("32K"), Some(32 << 10));
        assert_eq!(parse_cache_size("1024K"), Some(1 << 20));
        assert_eq!(parse_cache_size("32M"), Some(32 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("K"), None);
        assert_eq!(parse_cache_size("0K"), None);
        assert_eq!(parse_cache_size(""), None);
    }

    #[test]
    fn host_caches_are_plausible() {
        let caches = CacheSizes::detect_host();
        assert!(caches.l1d_bytes >= 4 << 10 && caches.l1d_bytes < caches.l2_bytes, "{caches:?}");
        assert!(caches.l2_bytes <= caches.l3_bytes, "{caches:?}");
        assert!(caches.line_bytes >= 16, "{caches:?}");
    }
}
