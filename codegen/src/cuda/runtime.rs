//! [`CudaDevice`]: the [`GpuDevice`] of a real GPU, through cudarc's driver API on one stream.
//! Kernels are CUDA C compiled by NVRTC for the device's architecture, loaded as modules and
//! launched with the grid and block their source says.
//!
//! cudarc asserts (panics) where a copy's lengths disagree, so every length is checked here
//! first; what the driver reports comes back as [`DeviceError::Fault`], since after a faulting
//! kernel every call of the context fails.

use super::device::driver_available;
use super::nvrtc::compile_ptx_batch;
use crate::gpu_device::{
    check_args, check_slice, DeviceBuffer, DeviceError, DeviceEvent, DeviceSlice, GpuDevice, GpuKernel,
    KernelHandle,
};
use crate::CodegenError;
use autotune_ir::CudaTarget;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use std::sync::Arc;

fn fault(what: &str, e: cudarc::driver::DriverError) -> DeviceError {
    DeviceError::Fault(format!("{what}: {e:?}"))
}

struct Loaded {
    function: CudaFunction,
    config: LaunchConfig,
    param_lens: Vec<usize>,
}

/// CUDA device `target.ordinal`; see the module docs.
pub struct CudaDevice {
    name: String,
    arch: String,
    max_threads_per_block: u32,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// Each buffer and its length (cudarc refuses empty allocations: an empty buffer holds one).
    buffers: Vec<Option<(CudaSlice<f32>, usize)>>,
    kernels: Vec<Option<Loaded>>,
    events: Vec<CudaEvent>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice({}, {})", self.name, self.arch)
    }
}

impl CudaDevice {
    /// Opens the device `target` describes (its ordinal says which) and its default stream.
    pub fn new(target: &CudaTarget) -> Result<CudaDevice, CodegenError> {
        driver_available()?;
        let ctx = CudaContext::new(target.ordinal as usize)
            .map_err(|e| CodegenError::NoCuda(format!("cannot open cuda:{}: {e:?}", target.ordinal)))?;
        // SAFETY: this device issues all its work on the one stream below, so the cross-stream
        // synchronisation event tracking provides is never needed (and would add events to every
        // launch that is timed).
        #[allow(unsafe_code)]
        unsafe {
            ctx.disable_event_tracking()
        };
        let stream = ctx.default_stream();
        Ok(CudaDevice {
            name: target.name.clone(),
            arch: target.arch(),
            max_threads_per_block: target.max_threads_per_block,
            ctx,
            stream,
            buffers: Vec::new(),
            kernels: Vec::new(),
            events: Vec::new(),
        })
    }

    fn buffer_len(&self, b: DeviceBuffer) -> Option<usize> {
        self.buffers.get(b.0).and_then(|x| x.as_ref()).map(|(_, len)| *len)
    }

    fn buffer(&self, b: DeviceBuffer) -> Result<&CudaSlice<f32>, DeviceError> {
        self.buffers
            .get(b.0)
            .and_then(|x| x.as_ref())
            .map(|(slice, _)| slice)
            .ok_or_else(|| DeviceError::Usage("unknown buffer handle".into()))
    }

    fn load_one(&self, kernel: &GpuKernel, ptx: String) -> Result<Loaded, CodegenError> {
        let s = &kernel.source;
        if s.n_threads() > self.max_threads_per_block {
            return Err(CodegenError::Unsupported(format!(
                "{} threads per block, the device allows {}",
                s.n_threads(),
                self.max_threads_per_block
            )));
        }
        let load =
            |e: cudarc::driver::DriverError| CodegenError::Nvrtc(format!("loading {}: {e:?}", s.entry));
        let module = self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx)).map_err(load)?;
        let function = module.load_function(&s.entry).map_err(load)?;
        // Static shared memory only (the verifier keeps it within the default per-block limit).
        let config = LaunchConfig {
            grid_dim: (s.grid[0], s.grid[1], s.grid[2]),
            block_dim: (s.block[0], s.block[1], s.block[2]),
            shared_mem_bytes: 0,
        };
        Ok(Loaded { function, config, param_lens: kernel.param_lens() })
    }
}

impl GpuDevice for CudaDevice {
    fn describe(&self) -> String {
        format!("{} ({})", self.name, self.arch)
    }

    fn load_kernels(&mut self, kernels: &[GpuKernel]) -> Vec<Result<KernelHandle, CodegenError>> {
        let sources: Vec<_> = kernels.iter().map(|k| k.source.clone()).collect();
        let compiled = compile_ptx_batch(&sources, &self.arch);
        kernels
            .iter()
            .zip(compiled)
            .map(|(kernel, ptx)| {
                let loaded = self.load_one(kernel, ptx?.ptx)?;
                self.kernels.push(Some(loaded));
                Ok(KernelHandle(self.kernels.len() - 1))
            })
            .collect()
    }

    fn unload_kernel(&mut self, kernel: KernelHandle) {
        if let Some(slot) = self.kernels.get_mut(kernel.0) {
            *slot = None;
        }
    }

    fn alloc(&mut self, len: usize) -> Result<DeviceBuffer, DeviceError> {
        let slice = self.stream.alloc_zeros::<f32>(len.max(1)).map_err(|e| fault("cuMemAlloc", e))?;
        self.buffers.push(Some((slice, len)));
        Ok(DeviceBuffer(self.buffers.len() - 1))
    }

    fn free(&mut self, buffer: DeviceBuffer) {
        if let Some(slot) = self.buffers.get_mut(buffer.0) {
            *slot = None;
        }
    }

    fn upload(&mut self, dst: DeviceSlice, data: &[f32]) -> Result<(), DeviceError> {
        check_slice(dst, |b| self.buffer_len(b))?;
        if dst.len != data.len() {
            return Err(DeviceError::Usage(format!("{} values into a slice of {}", data.len(), dst.len)));
        }
        if data.is_empty() {
            return Ok(());
        }
        let stream = self.stream.clone();
        let (buffer, _) = self.buffers[dst.buffer.0]
            .as_mut()
            .ok_or_else(|| DeviceError::Usage("unknown buffer handle".into()))?;
        let mut view = buffer.slice_mut(dst.offset..dst.offset + dst.len);
        stream.memcpy_htod(data, &mut view).map_err(|e| fault("cuMemcpyHtoD", e))
    }

    fn download(&mut self, src: DeviceSlice, out: &mut [f32]) -> Result<(), DeviceError> {
        check_slice(src, |b| self.buffer_len(b))?;
        if src.len != out.len() {
            return Err(DeviceError::Usage(format!("a slice of {} into {} values", src.len, out.len())));
        }
        if out.is_empty() {
            return Ok(());
        }
        let view = self.buffer(src.buffer)?.slice(src.offset..src.offset + src.len);
        self.stream.memcpy_dtoh(&view, out).map_err(|e| fault("cuMemcpyDtoH", e))?;
        // Pageable host memory: the copy is staged, so wait for it before the caller reads.
        self.stream.synchronize().map_err(|e| fault("synchronizing after a download", e))
    }

    fn zero(&mut self, buffer: DeviceBuffer) -> Result<(), DeviceError> {
        let stream = self.stream.clone();
        let (slice, _) = self
            .buffers
            .get_mut(buffer.0)
            .and_then(|x| x.as_mut())
            .ok_or_else(|| DeviceError::Usage("unknown buffer handle".into()))?;
        stream.memset_zeros(slice).map_err(|e| fault("cuMemsetD8", e))
    }

    fn launch(&mut self, kernel: KernelHandle, args: &[DeviceSlice]) -> Result<(), DeviceError> {
        let Some(Some(loaded)) = self.kernels.get(kernel.0) else {
            return Err(DeviceError::Usage("unknown kernel handle".into()));
        };
        check_args(&loaded.param_lens, args, |b| self.buffer_len(b))?;
        let views = args
            .iter()
            .map(|a| Ok(self.buffer(a.buffer)?.slice(a.offset..a.offset + a.len)))
            .collect::<Result<Vec<_>, DeviceError>>()?;
        let mut builder = self.stream.launch_builder(&loaded.function);
        for view in &views {
            builder.arg(view);
        }
        // SAFETY: the kernel was emitted from its nest with one `float*` parameter per nest
        // parameter, in this order, and each argument is a live device slice exactly as long as
        // that parameter (checked above), so the kernel reads and writes only inside its
        // arguments — if its nest is correct. A wrong candidate can still fault; measurement
        // runs candidates in a worker process for that reason.
        #[allow(unsafe_code)]
        let launched = unsafe { builder.launch(loaded.config) };
        launched.map(|_| ()).map_err(|e| fault("cuLaunchKernel", e))
    }

    fn new_event(&mut self) -> Result<DeviceEvent, DeviceError> {
        let event = self
            .ctx
            .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| fault("cuEventCreate", e))?;
        self.events.push(event);
        Ok(DeviceEvent(self.events.len() - 1))
    }

    fn record(&mut self, event: DeviceEvent) -> Result<(), DeviceError> {
        let event =
            self.events.get(event.0).ok_or_else(|| DeviceError::Usage("unknown event handle".into()))?;
        event.record(&self.stream).map_err(|e| fault("cuEventRecord", e))
    }

    fn elapsed_s(&mut self, start: DeviceEvent, end: DeviceEvent) -> Result<f64, DeviceError> {
        let get = |e: DeviceEvent| {
            self.events.get(e.0).ok_or_else(|| DeviceError::Usage("unknown event handle".into()))
        };
        let ms = get(start)?.elapsed_ms(get(end)?).map_err(|e| fault("cuEventElapsedTime", e))?;
        Ok(f64::from(ms) * 1e-3)
    }

    fn synchronize(&mut self) -> Result<(), DeviceError> {
        self.stream.synchronize().map_err(|e| fault("cuStreamSynchronize", e))
    }
}
