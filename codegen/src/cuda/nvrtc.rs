//! CUDA C → PTX with NVRTC (through cudarc, loaded at run time), for any architecture, with no
//! GPU and no CUDA toolkit: the `nvidia-cuda-nvrtc-cu12` wheel's `libnvrtc.so.12` is enough.
//!
//! cudarc opens NVRTC by name (`libnvrtc.so.12`, …) and panics when none loads, so
//! [`nvrtc_available`] first tries the names, then the pip wheel's folder (asking `python3` where
//! `nvidia.cuda_nvrtc` is), and loads the library from there by its path: the dynamic loader then
//! hands cudarc that copy when it asks by name (same soname), and the wheel's `$ORIGIN` runpath
//! finds `libnvrtc-builtins`. No `LD_LIBRARY_PATH` needed.

use super::emit::CudaSource;
use crate::CodegenError;
use rayon::prelude::*;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

/// PTX of one kernel for one architecture.
#[derive(Clone, Debug)]
pub struct CudaPtx {
    pub entry: String,
    /// `sm_90`-style architecture it was compiled for.
    pub arch: String,
    pub ptx: String,
    pub compile_time_s: f64,
}

/// Where NVRTC was found, or why not (computed once per process).
fn nvrtc_library() -> &'static Result<String, String> {
    static FOUND: OnceLock<Result<String, String>> = OnceLock::new();
    FOUND.get_or_init(|| {
        // SAFETY: loading NVRTC runs its initialisers, which have no preconditions; the probe
        // loads the library by each of cudarc's names and closes it again.
        #[allow(unsafe_code)]
        if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Ok("the library path".into());
        }
        let Some(dir) = wheel_lib_dir() else {
            return Err(
                "libnvrtc.so.12 is not on the library path and the nvidia-cuda-nvrtc-cu12 wheel is not \
                        installed: run setup.sh (pip install -r requirements-dev.txt)"
                    .into(),
            );
        };
        let path = dir.join("libnvrtc.so.12");
        // SAFETY: as above; the handle is leaked on purpose so that the library stays loaded for
        // cudarc, which finds it by soname.
        #[allow(unsafe_code)]
        let loaded = unsafe { libloading::Library::new(&path) };
        match loaded {
            Ok(library) => {
                std::mem::forget(library);
                Ok(path.display().to_string())
            }
            Err(e) => Err(format!("cannot load {}: {e}", path.display())),
        }
    })
}

/// The `lib/` folder of the `nvidia-cuda-nvrtc-cu12` wheel, if Python has it.
fn wheel_lib_dir() -> Option<PathBuf> {
    python_package_dir("nvidia.cuda_nvrtc")
        .map(|d| d.join("lib"))
        .filter(|d| d.join("libnvrtc.so.12").exists())
}

/// The folder of Python package `module`, asking `python3` (the wheels are the supported way to
/// get NVRTC and ptxas without a CUDA toolkit).
pub(crate) fn python_package_dir(module: &str) -> Option<PathBuf> {
    let output = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}, os; print(os.path.dirname({module}.__file__))")])
        .output()
        .ok()?;
    output.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// Whether NVRTC can be used here, with the reason when not (what to install).
pub fn nvrtc_available() -> Result<(), CodegenError> {
    nvrtc_library().as_ref().map(|_| ()).map_err(|why| CodegenError::NoCuda(why.clone()))
}

/// The architectures NVRTC is asked for by name (cudarc takes a `&'static str`).
fn static_arch(arch: &str) -> Result<&'static str, CodegenError> {
    const KNOWN: [&str; 9] =
        ["sm_70", "sm_75", "sm_80", "sm_86", "sm_87", "sm_89", "sm_90", "sm_100", "sm_120"];
    KNOWN
        .into_iter()
        .find(|k| *k == arch)
        .ok_or_else(|| CodegenError::Unsupported(format!("no NVRTC architecture `{arch}` known to autotune")))
}

/// CUDA C → PTX for `arch` (`sm_80`, `sm_90`, …).
pub fn compile_ptx(source: &CudaSource, arch: &str) -> Result<CudaPtx, CodegenError> {
    nvrtc_available()?;
    let started = Instant::now();
    let options = cudarc::nvrtc::CompileOptions {
        arch: Some(static_arch(arch)?),
        // fp32 semantics as the reference: contract a·b + c only where the nest says fma.
        fmad: Some(false),
        name: Some(format!("{}.cu", source.entry)),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(&source.code, options).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => {
            CodegenError::Nvrtc(format!("{}: {}", source.entry, log.to_string_lossy()))
        }
        other => CodegenError::Nvrtc(format!("{}: {other}", source.entry)),
    })?;
    Ok(CudaPtx {
        entry: source.entry.clone(),
        arch: arch.to_string(),
        ptx: ptx.to_src(),
        compile_time_s: started.elapsed().as_secs_f64(),
    })
}

/// Compiles a batch in parallel (rayon): one result per source, in order.
pub fn compile_ptx_batch(sources: &[CudaSource], arch: &str) -> Vec<Result<CudaPtx, CodegenError>> {
    sources.par_iter().map(|s| compile_ptx(s, arch)).collect()
}
