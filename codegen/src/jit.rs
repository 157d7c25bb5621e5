//! Building a LoopNest into a callable kernel: LLVM O3 for the host CPU, then MCJIT.

use crate::lower::{host_symbol_addresses, CpuAttributes, ModuleLowering};
use crate::runtime::HostRuntime;
use crate::{CodegenError, OperandBuffer};
use autotune_ir::{CacheSizes, CpuTarget, IsaLevel, LoopNest, Program, Target};
use inkwell::context::Context;
use inkwell::execution_engine::ExecutionEngine;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{CodeModel, InitializationConfig, RelocMode, Target as LlvmTarget, TargetMachine};
use inkwell::OptimizationLevel;
use std::mem::ManuallyDrop;
use std::sync::Once;

/// Bumped whenever the code generated for the same LoopNest changes meaning or speed class;
/// stored with every trial.
/// v2: LLVM's machine scheduler off (`LLVM_OPTIONS`).
pub const CODEGEN_VERSION: &str = "cpu-llvm19-v2";

/// LLVM options for every kernel this process compiles. The machine scheduler is off: the
/// lowering already emits a micro-kernel in the order it should run (a broadcast, then the FMAs
/// that use it), and the scheduler, hoisting loads ahead of their uses to hide latency an
/// out-of-order core hides anyway, ran a 6×4 AVX-512 tile out of its 32 registers: 81 spills and
/// reloads per 384 FMAs in a 3×3 conv's inner loop, 1.9 ms against 1.35 without it (ResNet-50's
/// 64→64 3×3 conv at 56×56; Xeon, 1 thread). Elsewhere, within noise (1×1 convs, AVX2 tiles).
const LLVM_OPTIONS: &[&str] = &["-enable-misched=false"];

type KernelEntry = unsafe extern "C" fn(*const HostRuntime, *const *mut f32);

/// Sets LLVM's process-wide command-line options; LLVM reads them once, so this runs once, before
/// anything is compiled.
fn set_llvm_options(options: &[&str]) {
    let args: Vec<std::ffi::CString> = std::iter::once("autotune")
        .chain(options.iter().copied())
        .filter_map(|a| std::ffi::CString::new(a).ok())
        .collect();
    let argv: Vec<*const std::ffi::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    // SAFETY: `argv` holds `argv.len()` pointers to NUL-terminated strings that outlive the
    // call; a null overview is allowed.
    #[allow(unsafe_code)]
    unsafe {
        inkwell::llvm_sys::support::LLVMParseCommandLineOptions(
            argv.len() as i32,
            argv.as_ptr(),
            std::ptr::null(),
        );
    }
}

fn init_llvm() -> Result<(), CodegenError> {
    static INIT: Once = Once::new();
    let mut result = Ok(());
    INIT.call_once(|| {
        result = LlvmTarget::initialize_native(&InitializationConfig::default())
            .map_err(|e| CodegenError::Llvm(e.to_string()));
        set_llvm_options(LLVM_OPTIONS);
    });
    result
}

/// The CPU this process runs on, as a tuning target: LLVM's name and features for it, and its
/// caches from `/sys` (the fallback where absent). A CPU below SSE4.2 (or not x86-64) still gets
/// kernels, 128-bit or scalar ones: [`slow_isa_warning`] says so.
pub fn host_cpu_target(threads: u32) -> Result<Target, CodegenError> {
    init_llvm()?;
    let llvm_cpu = TargetMachine::get_host_cpu_name().to_string();
    let features: Vec<String> =
        TargetMachine::get_host_cpu_features().to_string().split(',').map(str::to_string).collect();
    let mut cpu =
        CpuTarget::new(cpu_model_name().unwrap_or_else(|| llvm_cpu.clone()), llvm_cpu, features, threads);
    cpu.caches = detect_host_caches();
    Ok(Target::Cpu(cpu))
}

/// The host narrowed to `level` (`--cpu-features`): the code it builds runs on any CPU of that
/// level. The host itself when `level` is `None`.
pub fn cpu_target_at(level: Option<IsaLevel>, threads: u32) -> Result<Target, CodegenError> {
    let host = host_cpu_target(threads)?;
    match (level, &host) {
        (None, _) => Ok(host),
        (Some(level), Target::Cpu(cpu)) => {
            Ok(Target::Cpu(cpu.restricted(level).map_err(|e| CodegenError::Unsupported(e.to_string()))?))
        }
        (Some(_), Target::Cuda(_)) => Err(CodegenError::NotCpu(host.name().to_string())),
    }
}

/// Every ISA level this host can run, widest first, down to SSE4.2: what the test suites build
/// and check each space at (an AVX-512 host also checks the AVX2 and SSE4.2 spaces).
pub fn host_isa_levels() -> Result<Vec<IsaLevel>, CodegenError> {
    let host = host_cpu_target(1)?;
    let host = host.as_cpu().ok_or_else(|| CodegenError::NotCpu(host.name().to_string()))?;
    let own = host.isa_level();
    Ok(IsaLevel::ALL.into_iter().rev().filter(|&l| l <= own && l >= IsaLevel::Sse42.min(own)).collect())
}

/// A line to print when a target's kernels will be slow because its CPU has no SSE4.2.
pub fn slow_isa_warning(target: &Target) -> Option<String> {
    let cpu = target.as_cpu()?;
    (cpu.isa_level() < IsaLevel::Sse42).then(|| {
        format!(
            "{} has no SSE4.2/AVX2/AVX-512 that autotune knows: kernels use 128-bit or scalar code and run slowly",
            cpu.model_name
        )
    })
}

/// The host's caches as Linux reports them under `/sys/devices/system/cpu/cpu0/cache`; any
/// level it does not report keeps [`CacheSizes::FALLBACK`].
pub fn detect_host_caches() -> CacheSizes {
    let mut sizes = CacheSizes::FALLBACK;
    let Ok(entries) = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache") else {
        return sizes;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok().map(|s| s.trim().to_string());
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

fn cpu_model_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Compiles loop nests for one CPU target.
#[derive(Debug, Clone)]
pub struct CpuBuilder {
    target: CpuTarget,
}

impl CpuBuilder {
    pub fn new(target: &Target) -> Result<CpuBuilder, CodegenError> {
        init_llvm()?;
        match target {
            Target::Cpu(cpu) => Ok(CpuBuilder { target: cpu.clone() }),
            Target::Cuda(gpu) => Err(CodegenError::NotCpu(gpu.name.clone())),
        }
    }

    fn attributes(&self) -> CpuAttributes {
        CpuAttributes {
            cpu: self.target.llvm_cpu.clone(),
            features: self.target.features.join(","),
            vector_bits: self.target.vector_lanes * 32,
            has_fma: self.target.has_fma(),
        }
    }

    fn target_machine(&self) -> Result<TargetMachine, CodegenError> {
        let triple = TargetMachine::get_default_triple();
        let llvm_target = LlvmTarget::from_triple(&triple).map_err(|e| CodegenError::Llvm(e.to_string()))?;
        llvm_target
            .create_target_machine(
                &triple,
                &self.target.llvm_cpu,
                &self.target.features.join(","),
                OptimizationLevel::Aggressive,
                RelocMode::Default,
                CodeModel::JITDefault,
            )
            .ok_or_else(|| CodegenError::Llvm("cannot create a target machine for the host".into()))
    }

    /// The optimized LLVM IR of a nest, for inspection and tests.
    pub fn llvm_ir(&self, nest: &LoopNest) -> Result<String, CodegenError> {
        let cx = Context::create();
        let module = self.optimized_module(&cx, nest)?.0;
        Ok(module.print_to_string().to_string())
    }

    /// Assembly as the host target machine emits it (same CPU and features as the JIT'd code).
    pub fn assembly(&self, nest: &LoopNest) -> Result<String, CodegenError> {
        let cx = Context::create();
        let module = self.optimized_module(&cx, nest)?.0;
        let buf = self
            .target_machine()?
            .write_to_memory_buffer(&module, inkwell::targets::FileType::Assembly)
            .map_err(|e| CodegenError::Llvm(e.to_string()))?;
        Ok(String::from_utf8_lossy(buf.as_slice()).into_owned())
    }

    fn optimized_module<'ctx>(
        &self,
        cx: &'ctx Context,
        nest: &LoopNest,
    ) -> Result<(inkwell::module::Module<'ctx>, String), CodegenError> {
        let module = cx.create_module(&nest.name);
        let tm = self.target_machine()?;
        module.set_triple(&tm.get_triple());
        module.set_data_layout(&tm.get_target_data().get_data_layout());
        let entry = ModuleLowering::new(cx, &module, nest, self.attributes()).lower_kernel()?;
        module.verify().map_err(|e| CodegenError::Llvm(format!("invalid IR: {e}")))?;
        module
            .run_passes("default<O3>", &tm, PassBuilderOptions::create())
            .map_err(|e| CodegenError::Llvm(e.to_string()))?;
        Ok((module, entry))
    }

    /// Lowers, optimizes and JIT-compiles a nest.
    pub fn build(&self, nest: &LoopNest) -> Result<CpuKernel, CodegenError> {
        let context = Box::new(Context::create());
        // SAFETY: the context is boxed (stable address) and owned by the returned kernel, which
        // drops the engine (and with it the module) before the context.
        #[allow(unsafe_code)]
        let cx: &'static Context = unsafe { &*(context.as_ref() as *const Context) };
        let (module, entry_name) = self.optimized_module(cx, nest)?;
        let engine = module
            .create_jit_execution_engine(OptimizationLevel::Aggressive)
            .map_err(|e| CodegenError::Llvm(e.to_string()))?;
        for (name, addr) in host_symbol_addresses() {
            if let Some(f) = module.get_function(name) {
                engine.add_global_mapping(&f, addr);
            }
        }
        let addr = engine
            .get_function_address(&entry_name)
            .map_err(|e| CodegenError::Llvm(format!("JIT lookup of {entry_name}: {e}")))?;
        // SAFETY: `entry_name` was emitted by `lower_kernel` with exactly this signature.
        #[allow(unsafe_code)]
        let entry: KernelEntry = unsafe { std::mem::transmute::<usize, KernelEntry>(addr) };
        let param_lens = nest.params.iter().map(|&b| nest.buffer(b).len).collect();
        Ok(CpuKernel {
            engine: ManuallyDrop::new(engine),
            _context: context,
            entry,
            entry_addr: addr,
            param_lens,
            name: nest.name.clone(),
        })
    }
}

/// A JIT-compiled kernel, callable with buffers of the sizes its LoopNest declares.
pub struct CpuKernel {
    engine: ManuallyDrop<ExecutionEngine<'static>>,
    _context: Box<Context>,
    entry: KernelEntry,
    entry_addr: usize,
    param_lens: Vec<usize>,
    name: String,
}

impl std::fmt::Debug for CpuKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuKernel").field("name", &self.name).field("param_lens", &self.param_lens).finish()
    }
}

// SAFETY: the LLVM context and engine are owned exclusively by this kernel and only touched by
// whichever single thread owns it (built on a rayon worker, then moved to the measuring thread).
#[allow(unsafe_code)]
unsafe impl Send for CpuKernel {}

impl Drop for CpuKernel {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here, before `_context` (declared after it) is dropped.
        #[allow(unsafe_code)]
        unsafe {
            ManuallyDrop::drop(&mut self.engine)
        };
    }
}

impl CpuKernel {
    /// Runs the kernel once. Buffers are in `LoopNest::params` order and must have exactly the
    /// declared lengths (checked). In-bounds access beyond that is the schedule's contract, which
    /// is why the tuner runs untrusted candidates in a worker process.
    pub fn run(&self, runtime: &HostRuntime, buffers: &mut [&mut [f32]]) -> Result<(), CodegenError> {
        if buffers.len() != self.param_lens.len()
            || buffers.iter().zip(&self.param_lens).any(|(b, &n)| b.len() != n)
        {
            return Err(CodegenError::BufferMismatch {
                expected: self.param_lens.clone(),
                got: buffers.iter().map(|b| b.len()).collect(),
            });
        }
        let ptrs: Vec<*mut f32> = buffers.iter_mut().map(|b| b.as_mut_ptr()).collect();
        // SAFETY: the entry has the KernelEntry signature; `ptrs` holds one valid pointer per
        // parameter with the declared length; `runtime` outlives the call.
        #[allow(unsafe_code)]
        unsafe {
            (self.entry)(runtime as *const HostRuntime, ptrs.as_ptr())
        };
        Ok(())
    }

    /// Address of the JIT'd entry function (for disassembly in tests and reports).
    pub fn entry_address(&self) -> usize {
        self.entry_addr
    }

    /// Address of a JIT'd function of this kernel by name (e.g. an outlined parallel body).
    pub fn function_address(&self, name: &str) -> Option<usize> {
        self.engine.get_function_address(name).ok()
    }
}

/// A compiled [`Program`]: the kernel and the one-time packing kernels of its constant inputs.
#[derive(Debug)]
pub struct CpuProgram {
    pub kernel: CpuKernel,
    /// (task input index, packing kernel, packed length)
    prepacks: Vec<(usize, CpuKernel, usize)>,
}

impl CpuBuilder {
    pub fn build_program(&self, program: &Program) -> Result<CpuProgram, CodegenError> {
        let kernel = self.build(&program.kernel)?;
        let prepacks = program
            .prepacks
            .iter()
            .map(|p| {
                let packed_len = p.nest.params.get(1).map(|&b| p.nest.buffer(b).len).ok_or_else(|| {
                    CodegenError::Unsupported(format!("prepack of input {} has no output parameter", p.input))
                })?;
                Ok((p.input, self.build(&p.nest)?, packed_len))
            })
            .collect::<Result<_, CodegenError>>()?;
        Ok(CpuProgram { kernel, prepacks })
    }
}

impl CpuProgram {
    /// The kernel's input buffers: `inputs` with every prepacked one replaced by its packed form.
    /// Runs once per set of constant inputs (model load), not per call.
    pub fn prepare_inputs(
        &self,
        runtime: &HostRuntime,
        inputs: &[Vec<f32>],
    ) -> Result<Vec<OperandBuffer>, CodegenError> {
        let mut prepared: Vec<OperandBuffer> =
            inputs.iter().map(|input| OperandBuffer::from_slice(input)).collect();
        for &(input, _, packed_len) in &self.prepacks {
            let mut source = inputs
                .get(input)
                .map(|values| OperandBuffer::from_slice(values))
                .ok_or_else(|| CodegenError::Unsupported(format!("no input {input} to prepack")))?;
            let mut packed = OperandBuffer::filled(packed_len, 0.0);
            self.pack_input(runtime, input, &mut source, &mut packed)?;
            prepared[input] = packed;
        }
        Ok(prepared)
    }

    /// The length of the packed form of input `input`, if the kernel reads it packed.
    pub fn packed_len(&self, input: usize) -> Option<usize> {
        self.prepacks.iter().find(|p| p.0 == input).map(|p| p.2)
    }

    /// Packs input `input` into `packed` (of [`CpuProgram::packed_len`]): what
    /// [`CpuProgram::prepare_inputs`] does once for a constant, done per call when the operand
    /// is a run-time value (a model's weights given as an input).
    pub fn pack_input(
        &self,
        runtime: &HostRuntime,
        input: usize,
        source: &mut [f32],
        packed: &mut [f32],
    ) -> Result<(), CodegenError> {
        let (_, kernel, _) = self
            .prepacks
            .iter()
            .find(|p| p.0 == input)
            .ok_or_else(|| CodegenError::Unsupported(format!("input {input} is not packed")))?;
        kernel.run(runtime, &mut [source, packed])
    }
}
