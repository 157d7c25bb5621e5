//! Targets: where a kernel runs. A best kernel is only best for the target it was measured on.
//!
//! A CPU target is data: its LLVM name and feature list (what the log's fingerprint holds), and
//! the machine facts every space and the cost model read from it — [`CpuTarget::isa_level`],
//! [`CpuTarget::vector_registers`], [`CpuTarget::has_fma`], [`CpuTarget::caches`]. No other crate
//! guesses a register count from a lane count.

use crate::task::stable_hash_hex;
use serde::{Deserialize, Serialize};

pub use crate::cuda_target::CudaTarget;

/// The x86-64 ISA levels autotune generates and tests code for, narrowest first. A level is a
/// set of LLVM features (the x86-64 psABI micro-architecture levels v2, v3 and v4's core); a CPU
/// can run a level when it has every one of them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IsaLevel {
    /// x86-64's baseline SSE2, or a CPU that is not x86-64: 128-bit vectors, no FMA. Works, slowly.
    #[serde(rename = "baseline")]
    Baseline,
    /// SSE4.2 (x86-64-v2): 4 fp32 lanes, 16 xmm registers, no FMA.
    #[serde(rename = "sse4.2")]
    Sse42,
    /// AVX2 + FMA (x86-64-v3): 8 lanes, 16 ymm registers.
    #[serde(rename = "avx2")]
    Avx2,
    /// AVX-512 F/BW/DQ/VL (x86-64-v4): 16 lanes, 32 zmm registers.
    #[serde(rename = "avx512")]
    Avx512,
}

/// x86-64 itself (v1), which every level keeps: switching one off breaks 64-bit code.
const V1_FEATURES: &[&str] = &["64bit", "cmov", "cx8", "fxsr", "mmx", "nopl", "sse", "sse2", "x87"];
/// What x86-64-v2 adds.
const V2_FEATURES: &[&str] = &["crc32", "cx16", "popcnt", "sahf", "sse3", "sse4.1", "sse4.2", "ssse3"];
/// What x86-64-v3 adds.
const V3_FEATURES: &[&str] = &["avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave"];
/// What x86-64-v4 adds.
const V4_FEATURES: &[&str] = &["avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl", "evex512"];

impl IsaLevel {
    /// Every level, narrowest first.
    pub const ALL: [IsaLevel; 4] = [IsaLevel::Baseline, IsaLevel::Sse42, IsaLevel::Avx2, IsaLevel::Avx512];

    /// The name users type (`--cpu-features avx2`) and logs record.
    pub fn name(self) -> &'static str {
        match self {
            IsaLevel::Baseline => "baseline",
            IsaLevel::Sse42 => "sse4.2",
            IsaLevel::Avx2 => "avx2",
            IsaLevel::Avx512 => "avx512",
        }
    }

    /// The features (LLVM names, no `+`) a CPU must have to run this level's code.
    pub fn required_features(self) -> &'static [&'static str] {
        match self {
            IsaLevel::Baseline => &["sse2"],
            IsaLevel::Sse42 => &["sse4.2"],
            IsaLevel::Avx2 => &["avx", "avx2", "fma"],
            IsaLevel::Avx512 => &["avx512f"],
        }
    }

    /// Whether a CPU target restricted to this level may keep `feature`: the features of this
    /// level and the narrower ones. Everything else of the host (AVX-512 extensions on an AVX2
    /// target, AVX on an SSE4.2 one, AMX, ...) is switched off, so the code runs on any CPU of the
    /// level, not only on the host.
    fn allows(self, feature: &str) -> bool {
        if V1_FEATURES.contains(&feature) {
            return true;
        }
        let v2 = V2_FEATURES.contains(&feature);
        let v3 = V3_FEATURES.contains(&feature);
        let v4 = V4_FEATURES.contains(&feature);
        match self {
            IsaLevel::Baseline => false,
            IsaLevel::Sse42 => v2,
            IsaLevel::Avx2 => v2 || v3,
            IsaLevel::Avx512 => v2 || v3 || v4,
        }
    }

    /// fp32 lanes of the widest vector register.
    pub fn vector_lanes(self) -> u32 {
        match self {
            IsaLevel::Baseline | IsaLevel::Sse42 => 4,
            IsaLevel::Avx2 => 8,
            IsaLevel::Avx512 => 16,
        }
    }

    /// Architectural vector registers (x86-64 has 16 xmm/ymm registers, AVX-512 32 zmm).
    pub fn vector_registers(self) -> u32 {
        match self {
            IsaLevel::Avx512 => 32,
            _ => 16,
        }
    }

    pub fn has_fma(self) -> bool {
        self >= IsaLevel::Avx2
    }

    /// The widest level whose required features are all in `features` (LLVM names, with or
    /// without a leading `+`; entries starting with `-` are off).
    pub fn of_features<S: AsRef<str>>(features: &[S]) -> IsaLevel {
        let on: Vec<&str> = features.iter().filter_map(|f| feature_on(f.as_ref())).collect();
        IsaLevel::ALL
            .into_iter()
            .rev()
            .find(|level| level.required_features().iter().all(|r| on.contains(r)))
            .unwrap_or(IsaLevel::Baseline)
    }

    /// Parses `--cpu-features`: a comma-separated list of level names (`avx512`, `avx2`,
    /// `sse4.2`, `baseline`) or of the features that name one (`avx512f`, `avx2`, `fma`, `avx`,
    /// `sse4.1`…); the level is the widest one named.
    pub fn parse_list(text: &str) -> Result<IsaLevel, String> {
        let mut widest = None;
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let token = token.trim_start_matches('+').to_ascii_lowercase();
            let level = match token.as_str() {
                "avx512" | "avx512f" | "avx512bw" | "avx512dq" | "avx512vl" | "avx512cd" | "x86-64-v4" => {
                    IsaLevel::Avx512
                }
                "avx2" | "fma" | "avx" | "x86-64-v3" => IsaLevel::Avx2,
                "sse4.2" | "sse4.1" | "ssse3" | "sse3" | "popcnt" | "x86-64-v2" => IsaLevel::Sse42,
                "baseline" | "sse2" | "sse" | "x86-64" => IsaLevel::Baseline,
                other => {
                    return Err(format!(
                    "unknown CPU feature `{other}`: name an ISA level (avx512, avx2, sse4.2, baseline) or \
                         its features (e.g. avx2,fma)"
                ))
                }
            };
            widest = widest.max(Some(level));
        }
        widest.ok_or_else(|| "no CPU features given: name an ISA level, e.g. avx2".to_string())
    }
}

impl std::fmt::Display for IsaLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `+avx2` or `avx2` → `Some("avx2")`; `-avx2` → `None`.
fn feature_on(feature: &str) -> Option<&str> {
    if feature.starts_with('-') {
        None
    } else {
        Some(feature.trim_start_matches('+'))
    }
}

/// Data-cache capacities of one core's view of the hierarchy, in bytes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheSizes {
    pub l1d_bytes: u64,
    pub l2_bytes: u64,
    pub l3_bytes: u64,
    pub line_bytes: u64,
}

impl CacheSizes {
    /// What a target has when the machine does not say (a target read back from a log, a host
    /// without `/sys`): 32 KiB L1d, 1 MiB L2, 32 MiB L3, 64-byte lines — a current x86-64 server
    /// core (Zen 3/4, Sapphire Rapids have 32–48 KiB L1d and 0.5–2 MiB L2).
    pub const FALLBACK: CacheSizes =
        CacheSizes { l1d_bytes: 32 << 10, l2_bytes: 1 << 20, l3_bytes: 32 << 20, line_bytes: 64 };
}

impl Default for CacheSizes {
    fn default() -> CacheSizes {
        CacheSizes::FALLBACK
    }
}

/// A CPU as LLVM names it, with the ISA features the kernels may use and the thread count they run
/// with (a kernel tuned for 1 thread is a different winner than one for 2). Equal when their
/// fingerprints are: the caches are facts about the machine, not part of its identity.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CpuTarget {
    /// The marketing model string (`/proc/cpuinfo` "model name"), for people.
    pub model_name: String,
    /// LLVM's CPU name (e.g. `znver4`), used for code generation.
    pub llvm_cpu: String,
    /// LLVM feature string entries (`+avx512f`, `+fma`, …), sorted; a target restricted to a
    /// narrower level than its host also lists the host features it switches off (`-avx512f`).
    pub features: Vec<String>,
    /// Width of the widest usable fp32 vector register, in lanes (16 with AVX-512).
    pub vector_lanes: u32,
    pub threads: u32,
    /// The level this target was narrowed to (`--cpu-features`); `None` for the host as it is,
    /// which keeps the fingerprint of every log written before levels existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restricted_to: Option<IsaLevel>,
    /// The host's caches (from `/sys` where present). Not part of the fingerprint: the same CPU
    /// model is the same target whatever a VM reports; read back from a log, the fallback.
    #[serde(skip)]
    pub caches: CacheSizes,
}

impl CpuTarget {
    fn identity(&self) -> (&str, &str, &[String], u32, u32, Option<IsaLevel>) {
        (
            &self.model_name,
            &self.llvm_cpu,
            &self.features,
            self.vector_lanes,
            self.threads,
            self.restricted_to,
        )
    }
}

impl PartialEq for CpuTarget {
    fn eq(&self, other: &CpuTarget) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for CpuTarget {}

impl std::hash::Hash for CpuTarget {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

/// Why a target cannot be narrowed to a level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this CPU ({model}) cannot run {level} code: it lacks {missing}")]
pub struct UnsupportedLevel {
    pub model: String,
    pub level: IsaLevel,
    pub missing: String,
}

impl CpuTarget {
    /// A target from LLVM's CPU name and the host's enabled features (`+` entries).
    pub fn new(model_name: String, llvm_cpu: String, features: Vec<String>, threads: u32) -> CpuTarget {
        let mut features: Vec<String> = features.into_iter().filter(|f| f.starts_with('+')).collect();
        features.sort();
        features.dedup();
        let level = IsaLevel::of_features(&features);
        CpuTarget {
            model_name,
            llvm_cpu,
            features,
            vector_lanes: level.vector_lanes(),
            threads: threads.max(1),
            restricted_to: None,
            caches: CacheSizes::FALLBACK,
        }
    }

    /// A generic x86-64 CPU of `level` (LLVM's `x86-64-v2`/`-v3`/`-v4` with exactly the level's
    /// features): what space tests run against, and a CPU that never has to be the host.
    pub fn generic(level: IsaLevel, threads: u32) -> CpuTarget {
        let llvm_cpu = match level {
            IsaLevel::Baseline => "x86-64",
            IsaLevel::Sse42 => "x86-64-v2",
            IsaLevel::Avx2 => "x86-64-v3",
            IsaLevel::Avx512 => "x86-64-v4",
        };
        let features = [V1_FEATURES, V2_FEATURES, V3_FEATURES, V4_FEATURES]
            .concat()
            .into_iter()
            .filter(|f| level.allows(f))
            .map(|f| format!("+{f}"))
            .collect();
        CpuTarget::new(format!("generic {llvm_cpu} ({level})"), llvm_cpu.into(), features, threads)
    }

    /// The widest ISA level this target's code may use.
    pub fn isa_level(&self) -> IsaLevel {
        IsaLevel::of_features(&self.features)
    }

    /// Architectural vector registers the register tiles may fill: the one answer to "how many
    /// registers" (the spaces' domains and the cost model read it here).
    pub fn vector_registers(&self) -> u32 {
        self.isa_level().vector_registers()
    }

    pub fn has_fma(&self) -> bool {
        self.features.iter().any(|f| f == "+fma")
    }

    /// Whether `feature` (LLVM name, no `+`) is on.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f.strip_prefix('+') == Some(feature))
    }

    /// Whether a CPU with `host`'s features can run this target's code: every feature this
    /// target turns on, the host has.
    pub fn runs_on(&self, host: &CpuTarget) -> bool {
        self.features.iter().filter_map(|f| f.strip_prefix('+')).all(|f| host.has_feature(f))
    }

    /// The features this target turns on that `host` lacks, comma separated.
    pub fn missing_on(&self, host: &CpuTarget) -> Vec<String> {
        self.features
            .iter()
            .filter_map(|f| f.strip_prefix('+'))
            .filter(|f| !host.has_feature(f))
            .map(str::to_string)
            .collect()
    }

    /// This target narrowed to `level`: the features of wider levels (and every extension outside
    /// the level's set) switched off explicitly, so that LLVM's CPU model cannot bring them back.
    /// Narrowing to the target's own level or a wider one returns it unchanged.
    pub fn restricted(&self, level: IsaLevel) -> Result<CpuTarget, UnsupportedLevel> {
        let missing: Vec<&str> =
            level.required_features().iter().copied().filter(|f| !self.has_feature(f)).collect();
        if !missing.is_empty() {
            return Err(UnsupportedLevel {
                model: self.model_name.clone(),
                level,
                missing: missing.join(","),
            });
        }
        if level >= self.isa_level() {
            return Ok(self.clone());
        }
        let mut features: Vec<String> = self
            .features
            .iter()
            .filter_map(|f| f.strip_prefix('+'))
            .map(|f| if level.allows(f) { format!("+{f}") } else { format!("-{f}") })
            .collect();
        features.sort();
        Ok(CpuTarget {
            features,
            vector_lanes: level.vector_lanes(),
            restricted_to: Some(level),
            ..self.clone()
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    Cpu(CpuTarget),
    Cuda(CudaTarget),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Cpu(_) => "cpu",
            Target::Cuda(_) => "cuda",
        }
    }
    pub fn name(&self) -> &str {
        match self {
            Target::Cpu(cpu) => &cpu.model_name,
            Target::Cuda(gpu) => &gpu.name,
        }
    }
    /// Host threads a kernel runs with; a GPU kernel is launched from one.
    pub fn threads(&self) -> u32 {
        match self {
            Target::Cpu(cpu) => cpu.threads,
            Target::Cuda(_) => 1,
        }
    }
    /// The ISA features, comma separated without the `+`, only the enabled ones (a GPU: its
    /// architecture, `sm_90`).
    pub fn feature_summary(&self) -> String {
        match self {
            Target::Cpu(cpu) => {
                cpu.features.iter().filter_map(|f| f.strip_prefix('+')).collect::<Vec<_>>().join(",")
            }
            Target::Cuda(gpu) => gpu.arch(),
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
            Target::Cuda(_) => None,
        }
    }
    pub fn as_cuda(&self) -> Option<&CudaTarget> {
        match self {
            Target::Cuda(gpu) => Some(gpu),
            Target::Cpu(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(features: &[&str]) -> CpuTarget {
        CpuTarget::new(
            "Test CPU".into(),
            "znver4".into(),
            features.iter().map(|f| format!("+{f}")).collect(),
            1,
        )
    }

    const ZEN4: &[&str] = &[
        "64bit",
        "cmov",
        "cx8",
        "sse",
        "avx",
        "avx2",
        "avx512bw",
        "avx512cd",
        "avx512dq",
        "avx512f",
        "avx512vl",
        "avx512vnni",
        "bmi",
        "bmi2",
        "cx16",
        "evex512",
        "f16c",
        "fma",
        "lzcnt",
        "movbe",
        "popcnt",
        "sahf",
        "sse2",
        "sse3",
        "sse4.1",
        "sse4.2",
        "ssse3",
        "xsave",
        "vaes",
    ];

    #[test]
    fn machine_facts_follow_the_features() {
        let zen4 = host(ZEN4);
        assert_eq!(
            (zen4.isa_level(), zen4.vector_lanes, zen4.vector_registers()),
            (IsaLevel::Avx512, 16, 32)
        );
        let zen3 = host(&["avx", "avx2", "fma", "sse4.2", "sse2"]);
        assert_eq!((zen3.isa_level(), zen3.vector_lanes, zen3.vector_registers()), (IsaLevel::Avx2, 8, 16));
        // AVX without FMA (Sandy Bridge) is not the AVX2 level.
        let snb = host(&["avx", "sse4.2", "sse2"]);
        assert_eq!((snb.isa_level(), snb.vector_lanes, snb.has_fma()), (IsaLevel::Sse42, 4, false));
        assert_eq!(host(&[]).isa_level(), IsaLevel::Baseline);
        for level in IsaLevel::ALL {
            let generic = CpuTarget::generic(level, 1);
            assert_eq!(
                (generic.isa_level(), generic.vector_lanes),
                (level, level.vector_lanes()),
                "{generic:?}"
            );
        }
    }

    #[test]
    fn narrowing_switches_off_every_wider_feature() {
        let zen4 = host(ZEN4);
        let avx2 = zen4.restricted(IsaLevel::Avx2).expect("zen4 runs avx2");
        assert_eq!((avx2.isa_level(), avx2.vector_lanes, avx2.vector_registers()), (IsaLevel::Avx2, 8, 16));
        assert_eq!(avx2.restricted_to, Some(IsaLevel::Avx2));
        for off in ["-avx512f", "-avx512vnni", "-evex512", "-vaes"] {
            assert!(avx2.features.iter().any(|f| f == off), "{off} in {:?}", avx2.features);
        }
        for kept in ["+64bit", "+sse2", "+cmov"] {
            assert!(avx2.features.iter().any(|f| f == kept), "{kept} in {:?}", avx2.features);
        }
        assert!(avx2.has_fma() && avx2.has_feature("avx2") && !avx2.has_feature("avx512f"));
        let sse = zen4.restricted(IsaLevel::Sse42).expect("zen4 runs sse4.2");
        assert_eq!((sse.isa_level(), sse.vector_lanes, sse.has_fma()), (IsaLevel::Sse42, 4, false));
        assert!(sse.features.iter().any(|f| f == "-avx"));
        // Narrowing changes the fingerprint; the host's own level does not.
        assert_ne!(Target::Cpu(avx2.clone()).key(), Target::Cpu(zen4.clone()).key());
        assert_eq!(zen4.restricted(IsaLevel::Avx512).expect("same"), zen4);
        let err = avx2.restricted(IsaLevel::Avx512).expect_err("no avx512f left");
        assert!(err.to_string().contains("lacks avx512f"), "{err}");
    }

    #[test]
    fn a_narrowed_target_runs_on_a_narrower_host() {
        let zen4 = host(ZEN4);
        let zen3 = host(&[
            "64bit", "cmov", "cx8", "sse", "avx", "avx2", "bmi", "bmi2", "cx16", "f16c", "fma", "lzcnt",
            "movbe", "popcnt", "sahf", "sse2", "sse3", "sse4.1", "sse4.2", "ssse3", "xsave",
        ]);
        assert!(!zen4.runs_on(&zen3));
        assert!(zen4.missing_on(&zen3).contains(&"avx512f".to_string()));
        assert!(zen4.restricted(IsaLevel::Avx2).expect("avx2").runs_on(&zen3));
        assert!(zen4.restricted(IsaLevel::Sse42).expect("sse").runs_on(&zen3));
    }

    #[test]
    fn the_host_fingerprint_is_unchanged_by_levels_and_caches() {
        // A log written before targets carried levels and caches must keep matching the host.
        let t = Target::Cpu(CpuTarget {
            model_name: "AMD EPYC".into(),
            llvm_cpu: "znver3".into(),
            features: vec!["+avx2".into(), "+fma".into()],
            vector_lanes: 8,
            threads: 1,
            restricted_to: None,
            caches: CacheSizes { l1d_bytes: 1, l2_bytes: 2, l3_bytes: 3, line_bytes: 4 },
        });
        assert_eq!(
            t.canonical_json(),
            r#"{"kind":"cpu","model_name":"AMD EPYC","llvm_cpu":"znver3","features":["+avx2","+fma"],"vector_lanes":8,"threads":1}"#
        );
        let back: Target = serde_json::from_str(&t.canonical_json()).expect("reads back");
        assert_eq!(back, t);
    }

    #[test]
    fn cpu_features_lists_name_a_level() {
        assert_eq!(IsaLevel::parse_list("avx2,fma"), Ok(IsaLevel::Avx2));
        assert_eq!(IsaLevel::parse_list("avx512"), Ok(IsaLevel::Avx512));
        assert_eq!(IsaLevel::parse_list(" sse4.2 "), Ok(IsaLevel::Sse42));
        assert_eq!(IsaLevel::parse_list("+avx512f,+avx2"), Ok(IsaLevel::Avx512));
        assert!(IsaLevel::parse_list("neon").expect_err("unknown").contains("unknown CPU feature `neon`"));
        assert!(IsaLevel::parse_list("").is_err());
    }
}
