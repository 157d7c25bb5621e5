//! The GPU operations measurement and the runtime need — allocate, upload, download, launch,
//! time with events — behind one small trait, [`GpuDevice`], with two implementations: the real
//! device through cudarc ([`crate::cuda::CudaDevice`]), and [`HostGpuDevice`], which keeps
//! "device" memory on the host and runs each kernel's nest through [`gpu_nest_for_host`] and the
//! CPU JIT. Everything above the trait (the measurement protocol, the runtime's plan of buffers,
//! copies and launches) is the same code on both, so it is tested in CI on the host one; only
//! what is below the trait needs a GPU.
//!
//! The model is one in-order stream: operations run in the order they are issued, a download
//! returns once the data is on the host, and an event pair times the work issued between them.
//! Handles are plain indices into the device's own tables, so no borrow of the device outlives
//! a call and the trait stays object-safe.

use crate::cuda::{emit_cuda, CudaSource};
use crate::{gpu_nest_for_host, CodegenError, CpuBuilder, CpuKernel, HostRuntime, OperandBuffer};
use autotune_ir::LoopNest;
use rayon::prelude::*;
use std::time::Instant;

/// A buffer of `f32` in device memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceBuffer(pub(crate) usize);

/// Elements `offset .. offset + len` of a device buffer: what a kernel argument, an upload or a
/// download addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSlice {
    pub buffer: DeviceBuffer,
    pub offset: usize,
    pub len: usize,
}

impl DeviceSlice {
    /// The first `len` elements of `buffer`.
    pub fn head(buffer: DeviceBuffer, len: usize) -> DeviceSlice {
        DeviceSlice { buffer, offset: 0, len }
    }
}

/// A kernel loaded on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelHandle(pub(crate) usize);

/// A timing event of the device's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceEvent(pub(crate) usize);

/// What a device loads: a GPU nest and its CUDA C (with the launch's grid and block). The real
/// device compiles the CUDA C; the host one runs the nest, so both run the same schedule.
#[derive(Clone, Debug)]
pub struct GpuKernel {
    pub nest: LoopNest,
    pub source: CudaSource,
}

impl GpuKernel {
    pub fn new(nest: LoopNest) -> Result<GpuKernel, CodegenError> {
        let source = emit_cuda(&nest)?;
        Ok(GpuKernel { nest, source })
    }

    /// The element count of each parameter, in launch order (the output last).
    pub fn param_lens(&self) -> Vec<usize> {
        self.nest.params.iter().map(|&p| self.nest.buffer(p).len).collect()
    }
}

/// Why a device operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The request was wrong (unknown handle, lengths that do not match): nothing ran, the
    /// device is as it was.
    #[error("{0}")]
    Usage(String),
    /// The device reported an error. A faulting kernel leaves a CUDA context unusable (every
    /// later call fails), so whoever owns the device must start over in a fresh process.
    #[error("the GPU failed: {0}")]
    Fault(String),
}

impl DeviceError {
    /// Whether the device may be unusable from now on.
    pub fn poisons_device(&self) -> bool {
        matches!(self, DeviceError::Fault(_))
    }
}

/// One GPU and its stream; see the module docs.
pub trait GpuDevice: Send {
    /// What runs the kernels, for messages (`NVIDIA H100 80GB HBM3`, `the host (emulated GPU)`).
    fn describe(&self) -> String;
    /// Compiles and loads a batch (in parallel where it can): one result per kernel, in order.
    fn load_kernels(&mut self, kernels: &[GpuKernel]) -> Vec<Result<KernelHandle, CodegenError>>;
    /// Drops a loaded kernel (a measured candidate); its handle is invalid afterwards.
    fn unload_kernel(&mut self, kernel: KernelHandle);
    /// A new buffer of `len` elements, zero-filled.
    fn alloc(&mut self, len: usize) -> Result<DeviceBuffer, DeviceError>;
    fn free(&mut self, buffer: DeviceBuffer);
    /// `data` into `dst` (`dst.len == data.len()`).
    fn upload(&mut self, dst: DeviceSlice, data: &[f32]) -> Result<(), DeviceError>;
    /// `src` into `out` (`src.len == out.len()`), waiting for the work before it.
    fn download(&mut self, src: DeviceSlice, out: &mut [f32]) -> Result<(), DeviceError>;
    /// Writes zeros over a whole buffer (the L2 flush between timed repeats).
    fn zero(&mut self, buffer: DeviceBuffer) -> Result<(), DeviceError>;
    /// Launches `kernel` on `args` (one per parameter, in order, each as long as the
    /// parameter) with the grid and block its source says.
    fn launch(&mut self, kernel: KernelHandle, args: &[DeviceSlice]) -> Result<(), DeviceError>;
    fn new_event(&mut self) -> Result<DeviceEvent, DeviceError>;
    /// Marks the point of the stream reached by the work issued so far.
    fn record(&mut self, event: DeviceEvent) -> Result<(), DeviceError>;
    /// Seconds between two recorded events, waiting for the second.
    fn elapsed_s(&mut self, start: DeviceEvent, end: DeviceEvent) -> Result<f64, DeviceError>;
    /// Waits for everything issued so far; a kernel's fault surfaces here at the latest.
    fn synchronize(&mut self) -> Result<(), DeviceError>;
}

fn unknown(what: &str) -> DeviceError {
    DeviceError::Usage(format!("unknown {what} handle"))
}

/// Checks `args` against a kernel's parameters and the buffers' lengths.
pub(crate) fn check_args(
    param_lens: &[usize],
    args: &[DeviceSlice],
    buffer_len: impl Fn(DeviceBuffer) -> Option<usize>,
) -> Result<(), DeviceError> {
    if args.len() != param_lens.len() || args.iter().zip(param_lens).any(|(a, &n)| a.len != n) {
        return Err(DeviceError::Usage(format!(
            "kernel launched with slices of lengths {:?}, it expects {param_lens:?}",
            args.iter().map(|a| a.len).collect::<Vec<_>>()
        )));
    }
    args.iter().try_for_each(|a| check_slice(*a, &buffer_len))
}

pub(crate) fn check_slice(
    slice: DeviceSlice,
    buffer_len: impl Fn(DeviceBuffer) -> Option<usize>,
) -> Result<(), DeviceError> {
    let len = buffer_len(slice.buffer).ok_or_else(|| unknown("buffer"))?;
    if slice.offset.checked_add(slice.len).is_none_or(|end| end > len) {
        return Err(DeviceError::Usage(format!(
            "elements {}..{} of a buffer of {len}",
            slice.offset,
            slice.offset.saturating_add(slice.len)
        )));
    }
    Ok(())
}

/// The GPU model on the host: memory is host memory, a launch runs the kernel's nest made a host
/// nest ([`gpu_nest_for_host`]: blocks and threads serial, thread loops split at barriers) on
/// the CPU JIT, synchronously, and events read the wall clock. Same results as the GPU for every
/// correct kernel; a kernel that faults takes this process down as a CUDA fault poisons a
/// context, so it is as isolated (measurement runs it in a worker process).
pub struct HostGpuDevice {
    builder: CpuBuilder,
    runtime: HostRuntime,
    buffers: Vec<Option<OperandBuffer>>,
    kernels: Vec<Option<(CpuKernel, Vec<usize>)>>,
    events: Vec<Option<Instant>>,
}

impl std::fmt::Debug for HostGpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostGpuDevice({} buffers, {} kernels)", self.buffers.len(), self.kernels.len())
    }
}

impl HostGpuDevice {
    /// Kernels are built for this CPU and run on one thread (a GPU kernel has no parallel loops
    /// for the host to spread).
    pub fn new() -> Result<HostGpuDevice, CodegenError> {
        let builder = CpuBuilder::new(&crate::host_cpu_target(1)?)?;
        let runtime = HostRuntime::new(1).map_err(|e| CodegenError::Unsupported(e.to_string()))?;
        Ok(HostGpuDevice { builder, runtime, buffers: Vec::new(), kernels: Vec::new(), events: Vec::new() })
    }

    fn buffer_len(&self, b: DeviceBuffer) -> Option<usize> {
        self.buffers.get(b.0).and_then(|x| x.as_ref()).map(|x| x.len())
    }
}

impl GpuDevice for HostGpuDevice {
    fn describe(&self) -> String {
        "the host CPU (GPU kernels emulated)".into()
    }

    fn load_kernels(&mut self, kernels: &[GpuKernel]) -> Vec<Result<KernelHandle, CodegenError>> {
        let builder = &self.builder;
        let built: Vec<Result<(CpuKernel, Vec<usize>), CodegenError>> = kernels
            .par_iter()
            .map(|k| Ok((builder.build(&gpu_nest_for_host(&k.nest)?)?, k.param_lens())))
            .collect();
        built
            .into_iter()
            .map(|b| {
                let b = b?;
                self.kernels.push(Some(b));
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
        self.buffers.push(Some(OperandBuffer::filled(len, 0.0)));
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
        let buffer = self.buffers[dst.buffer.0].as_mut().ok_or_else(|| unknown("buffer"))?;
        buffer[dst.offset..dst.offset + dst.len].copy_from_slice(data);
        Ok(())
    }

    fn download(&mut self, src: DeviceSlice, out: &mut [f32]) -> Result<(), DeviceError> {
        check_slice(src, |b| self.buffer_len(b))?;
        if src.len != out.len() {
            return Err(DeviceError::Usage(format!("a slice of {} into {} values", src.len, out.len())));
        }
        let buffer = self.buffers[src.buffer.0].as_ref().ok_or_else(|| unknown("buffer"))?;
        out.copy_from_slice(&buffer[src.offset..src.offset + src.len]);
        Ok(())
    }

    fn zero(&mut self, buffer: DeviceBuffer) -> Result<(), DeviceError> {
        self.buffers.get_mut(buffer.0).and_then(|b| b.as_mut()).ok_or_else(|| unknown("buffer"))?.fill(0.0);
        Ok(())
    }

    fn launch(&mut self, kernel: KernelHandle, args: &[DeviceSlice]) -> Result<(), DeviceError> {
        let Some(Some((_, param_lens))) = self.kernels.get(kernel.0) else { return Err(unknown("kernel")) };
        check_args(param_lens, args, |b| self.buffer_len(b))?;
        // Each buffer is taken out once; a buffer passed again is handed over as a copy (on the
        // GPU both arguments would point at one buffer: the same values, and a kernel's
        // `__restrict__` parameters promise that neither is written through the other).
        // (home buffer if taken, the data, where the argument starts in it)
        let mut held: Vec<(Option<usize>, OperandBuffer, usize)> = Vec::with_capacity(args.len());
        for a in args {
            match held.iter().position(|(home, ..)| *home == Some(a.buffer.0)) {
                Some(i) => {
                    let copy = OperandBuffer::from_slice(&held[i].1[a.offset..a.offset + a.len]);
                    held.push((None, copy, 0));
                }
                None => {
                    let data = self.buffers[a.buffer.0].take().unwrap_or_default();
                    held.push((Some(a.buffer.0), data, a.offset));
                }
            }
        }
        let mut slices: Vec<&mut [f32]> = held
            .iter_mut()
            .zip(args)
            .map(|((_, data, offset), a)| &mut data[*offset..*offset + a.len])
            .collect();
        let result = match &self.kernels[kernel.0] {
            Some((k, _)) => k.run(&self.runtime, &mut slices).map_err(|e| DeviceError::Usage(e.to_string())),
            None => Err(unknown("kernel")),
        };
        drop(slices);
        for (home, data, _) in held {
            if let Some(b) = home {
                self.buffers[b] = Some(data);
            }
        }
        result
    }

    fn new_event(&mut self) -> Result<DeviceEvent, DeviceError> {
        self.events.push(None);
        Ok(DeviceEvent(self.events.len() - 1))
    }

    fn record(&mut self, event: DeviceEvent) -> Result<(), DeviceError> {
        *self.events.get_mut(event.0).ok_or_else(|| unknown("event"))? = Some(Instant::now());
        Ok(())
    }

    fn elapsed_s(&mut self, start: DeviceEvent, end: DeviceEvent) -> Result<f64, DeviceError> {
        let at = |e: DeviceEvent| {
            self.events
                .get(e.0)
                .ok_or_else(|| unknown("event"))?
                .ok_or_else(|| DeviceError::Usage("an event that was never recorded".into()))
        };
        Ok(at(end)?.saturating_duration_since(at(start)?).as_secs_f64())
    }

    fn synchronize(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotune_ir::{compare, reference, CudaTarget, Target, Task};

    fn gemm_kernel(task: &Task) -> GpuKernel {
        let space = autotune_schedules::space_for(task, &Target::Cuda(CudaTarget::h100())).expect("space");
        GpuKernel::new(space.lower(&space.default_trace()).expect("lowers").kernel).expect("emits")
    }

    /// The round trip every GPU user makes: upload, launch, download — into slices at an offset of
    /// larger buffers, as the runtime's pooled buffers are.
    #[test]
    fn the_host_device_runs_a_gpu_kernel_on_slices_of_its_buffers() {
        let task = Task::matmul(9, 20, 7);
        let inputs = reference::random_inputs(&task, 3);
        let expected = reference::run(&task, &inputs);
        let mut device = HostGpuDevice::new().expect("host device");
        let kernel = device.load_kernels(&[gemm_kernel(&task)]).remove(0).expect("loads");
        let mut args = Vec::new();
        for values in &inputs {
            let buffer = device.alloc(values.len() + 5).expect("alloc");
            let slice = DeviceSlice { buffer, offset: 5, len: values.len() };
            device.upload(slice, values).expect("upload");
            args.push(slice);
        }
        let out = device.alloc(expected[0].len()).expect("alloc");
        args.push(DeviceSlice::head(out, expected[0].len()));
        let (start, end) = (device.new_event().expect("event"), device.new_event().expect("event"));
        device.record(start).expect("record");
        device.launch(kernel, &args).expect("launch");
        device.record(end).expect("record");
        assert!(device.elapsed_s(start, end).expect("elapsed") > 0.0);
        let mut result = vec![f32::NAN; expected[0].len()];
        device.download(DeviceSlice::head(out, result.len()), &mut result).expect("download");
        compare(&result, &expected[0], autotune_ir::Tolerance::fp32_reduction(7)).expect("matches");

        // A: B passed as both operands is handed over twice (square case).
        let square = Task::matmul(6, 6, 6);
        let k2 = device.load_kernels(&[gemm_kernel(&square)]).remove(0).expect("loads");
        let a = reference::random_inputs(&square, 4).remove(0);
        let buf = device.alloc(36).expect("alloc");
        device.upload(DeviceSlice::head(buf, 36), &a).expect("upload");
        let o = device.alloc(36).expect("alloc");
        let s = DeviceSlice::head(buf, 36);
        device.launch(k2, &[s, s, DeviceSlice::head(o, 36)]).expect("launch with a repeated buffer");
        let mut squared = vec![0.0; 36];
        device.download(DeviceSlice::head(o, 36), &mut squared).expect("download");
        let want = reference::run(&square, &[a.clone(), a.clone()]).remove(0);
        compare(&squared, &want, autotune_ir::Tolerance::fp32_reduction(6)).expect("a·a");
        let mut after = vec![0.0; 36];
        device.download(s, &mut after).expect("download");
        assert_eq!(after, a, "the repeated input is back in its buffer");
    }

    #[test]
    fn wrong_lengths_and_handles_are_usage_errors_that_leave_the_device_usable() {
        let task = Task::matmul(4, 4, 4);
        let mut device = HostGpuDevice::new().expect("host device");
        let kernel = device.load_kernels(&[gemm_kernel(&task)]).remove(0).expect("loads");
        let b = device.alloc(16).expect("alloc");
        let short = DeviceSlice::head(b, 15);
        let err = device.launch(kernel, &[short, short, short]).expect_err("wrong lengths");
        assert!(!err.poisons_device() && err.to_string().contains("[16, 16, 16]"), "{err}");
        let past = DeviceSlice { buffer: b, offset: 4, len: 16 };
        assert!(device.upload(past, &[0.0; 16]).is_err(), "a slice past the end");
        device.free(b);
        assert!(device.download(DeviceSlice::head(b, 16), &mut [0.0; 16]).is_err(), "a freed buffer");
        device.unload_kernel(kernel);
        let c = device.alloc(16).expect("alloc");
        let s = DeviceSlice::head(c, 16);
        assert!(device.launch(kernel, &[s, s, s]).is_err(), "an unloaded kernel");
        device.zero(c).expect("zero");
    }
}

/// The same kernels on a real GPU, where there is one (bench/gpu/run_on_device.sh runs these).
#[cfg(test)]
mod cuda_tests {
    use super::*;
    use crate::cuda::{cuda_target, nvrtc_available, CudaDevice};
    use autotune_ir::{compare, reference, Target, Task, Tolerance};

    /// cuda:0 and NVRTC, or why this test is skipped.
    fn real_gpu() -> Option<autotune_ir::CudaTarget> {
        match (cuda_target(0), nvrtc_available()) {
            (Ok(Target::Cuda(gpu)), Ok(())) => Some(gpu),
            (Err(e), _) | (_, Err(e)) => {
                println!("skipped: no GPU to run on ({e})");
                None
            }
            (Ok(other), _) => panic!("cuda:0 described as {other:?}"),
        }
    }

    #[test]
    fn the_cuda_device_computes_what_the_host_device_computes() {
        let Some(gpu) = real_gpu() else { return };
        let target = Target::Cuda(gpu.clone());
        let task = Task::matmul(100, 70, 33);
        let space = autotune_schedules::space_for(&task, &target).expect("space");
        let kernel =
            GpuKernel::new(space.lower(&space.default_trace()).expect("lowers").kernel).expect("emits");
        let inputs = reference::random_inputs(&task, 1);
        let expected = reference::run(&task, &inputs);
        let mut device = CudaDevice::new(&gpu).expect("opens cuda:0");
        let handle = device.load_kernels(&[kernel]).remove(0).expect("loads");
        let mut args = Vec::new();
        for values in &inputs {
            let b = device.alloc(values.len()).expect("alloc");
            device.upload(DeviceSlice::head(b, values.len()), values).expect("upload");
            args.push(DeviceSlice::head(b, values.len()));
        }
        let out = device.alloc(expected[0].len() + 8).expect("alloc");
        args.push(DeviceSlice { buffer: out, offset: 8, len: expected[0].len() });
        let (start, end) = (device.new_event().expect("event"), device.new_event().expect("event"));
        device.record(start).expect("record");
        device.launch(handle, &args).expect("launch");
        device.record(end).expect("record");
        device.synchronize().expect("no fault");
        assert!(device.elapsed_s(start, end).expect("elapsed") > 0.0);
        let mut result = vec![f32::NAN; expected[0].len()];
        device.download(args[2], &mut result).expect("download");
        compare(&result, &expected[0], Tolerance::fp32_reduction(33)).expect("the GPU matches the reference");
        let err =
            device.upload(DeviceSlice::head(out, 10_000_000), &[0.0]).expect_err("a slice past the end");
        assert!(!err.poisons_device(), "{err}");
    }
}
