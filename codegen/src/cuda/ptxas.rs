//! ptxas as a checker: assembles PTX for a real architecture and reports what the kernel uses
//! (registers per thread, static shared memory, spills), so tests compare the GPU verifier's
//! predictions with the assembler's figures on machines without a GPU. ptxas comes from the
//! `nvidia-cuda-nvcc-cu12` wheel (`nvidia/cuda_nvcc/bin/ptxas`) or the `PATH`.

use super::nvrtc::{python_package_dir, CudaPtx};
use crate::CodegenError;
use std::path::PathBuf;

/// What ptxas `-v` reported for one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtxasUsage {
    pub registers_per_thread: u32,
    pub shared_bytes: u64,
    pub spill_store_bytes: u64,
    pub spill_load_bytes: u64,
}

/// The ptxas binary: the wheel's, else one on the `PATH`.
pub fn find_ptxas() -> Option<PathBuf> {
    let wheel = python_package_dir("nvidia.cuda_nvcc").map(|d| d.join("bin").join("ptxas"));
    if let Some(path) = wheel.filter(|p| p.exists()) {
        return Some(path);
    }
    std::process::Command::new("ptxas")
        .arg("--version")
        .output()
        .ok()?
        .status
        .success()
        .then(|| "ptxas".into())
}

/// Assembles `ptx` for its architecture and parses `-v`'s resource line.
pub fn ptxas_usage(ptxas: &std::path::Path, ptx: &CudaPtx) -> Result<PtxasUsage, CodegenError> {
    let dir = std::env::temp_dir().join(format!("autotune-ptxas-{}-{}", std::process::id(), ptx.entry));
    std::fs::create_dir_all(&dir).map_err(|e| CodegenError::Ptxas(format!("{}: {e}", dir.display())))?;
    let input = dir.join(format!("{}_{}.ptx", ptx.entry, ptx.arch));
    std::fs::write(&input, &ptx.ptx).map_err(|e| CodegenError::Ptxas(format!("{}: {e}", input.display())))?;
    let output = std::process::Command::new(ptxas)
        .arg("-v")
        .arg(format!("--gpu-name={}", ptx.arch))
        .arg("-o")
        .arg(dir.join("out.cubin"))
        .arg(&input)
        .output()
        .map_err(|e| CodegenError::Ptxas(format!("cannot run {}: {e}", ptxas.display())));
    let _ = std::fs::remove_dir_all(&dir);
    let output = output?;
    let text =
        String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(CodegenError::Ptxas(format!("{}: {text}", ptx.entry)));
    }
    parse_usage(&text)
        .ok_or_else(|| CodegenError::Ptxas(format!("no resource usage in ptxas output: {text}")))
}

/// `ptxas info    : Used 40 registers, 16384 bytes smem, 400 bytes cmem[0]` and
/// `… 0 bytes spill stores, 0 bytes spill loads`.
fn parse_usage(text: &str) -> Option<PtxasUsage> {
    let number_before = |line: &str, unit: &str| -> Option<u64> {
        let at = line.find(unit)?;
        line[..at].split(|c: char| !c.is_ascii_digit()).rfind(|s| !s.is_empty())?.parse().ok()
    };
    let used = text.lines().find(|l| l.contains("Used") && l.contains("registers"))?;
    let spills = text.lines().find(|l| l.contains("spill stores"));
    Some(PtxasUsage {
        registers_per_thread: number_before(used, " registers")? as u32,
        shared_bytes: number_before(used, " bytes smem").unwrap_or(0),
        spill_store_bytes: spills.and_then(|l| number_before(l, " bytes spill stores")).unwrap_or(0),
        spill_load_bytes: spills.and_then(|l| number_before(l, " bytes spill loads")).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptxas_verbose_output_parses() {
        let text = "ptxas info    : Compiling entry function 'k' for 'sm_90'\n\
                    ptxas info    : Function properties for k\n    \
                    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
                    ptxas info    : Used 127 registers, 16384 bytes smem, 400 bytes cmem[0]\n";
        assert_eq!(
            parse_usage(text),
            Some(PtxasUsage {
                registers_per_thread: 127,
                shared_bytes: 16384,
                spill_store_bytes: 4,
                spill_load_bytes: 12
            })
        );
        assert_eq!(
            parse_usage("ptxas info : Used 8 registers, 352 bytes cmem[0]").map(|u| u.shared_bytes),
            Some(0)
        );
    }
}
