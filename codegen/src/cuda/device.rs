//! The CUDA devices of this machine, through the driver (cudarc, loaded at run time).
//!
//! cudarc panics when it touches a driver library that is not there, so every entry point asks
//! [`driver_available`] first, which probes for `libcuda` without loading cudarc's bindings.

use crate::CodegenError;
use autotune_ir::{CudaTarget, Target};
use cudarc::driver::result;
use cudarc::driver::sys::CUdevice_attribute as Attr;

/// Whether the CUDA driver library can be loaded; the error says what to do when not.
pub fn driver_available() -> Result<(), CodegenError> {
    // SAFETY: the probe only tries to open the driver library by its names (and closes it).
    #[allow(unsafe_code)]
    let present = unsafe { cudarc::driver::sys::is_culib_present() };
    if present {
        Ok(())
    } else {
        Err(CodegenError::NoCuda(
            "no CUDA driver (libcuda.so) on this machine: install the NVIDIA driver, or use --device cpu"
                .into(),
        ))
    }
}

fn driver_error(what: &str, e: result::DriverError) -> CodegenError {
    CodegenError::NoCuda(format!("{what}: {e:?}"))
}

/// `cuda:ordinal` as a tuning target: the device's name, compute capability and limits, read
/// from its attributes.
pub fn cuda_target(ordinal: u32) -> Result<Target, CodegenError> {
    driver_available()?;
    result::init().map_err(|e| driver_error("the CUDA driver does not initialise", e))?;
    let count = result::device::get_count().map_err(|e| driver_error("cannot count CUDA devices", e))?;
    if i64::from(ordinal) >= i64::from(count) {
        return Err(CodegenError::NoCuda(format!(
            "there is no cuda:{ordinal}: this machine has {count} CUDA device(s)"
        )));
    }
    let device =
        result::device::get(ordinal as i32).map_err(|e| driver_error("cannot open the device", e))?;
    let attribute = |a: Attr| -> Result<u32, CodegenError> {
        // SAFETY: `device` is a valid handle from `device::get` after `init`; the attribute is
        // one of the driver's enum values.
        #[allow(unsafe_code)]
        let value = unsafe { result::device::get_attribute(device, a) };
        value.map(|v| v.max(0) as u32).map_err(|e| driver_error("cannot read a device attribute", e))
    };
    Ok(Target::Cuda(CudaTarget {
        name: result::device::get_name(device).map_err(|e| driver_error("cannot read the device name", e))?,
        compute_major: attribute(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
        compute_minor: attribute(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        sm_count: attribute(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
        max_threads_per_block: attribute(Attr::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
        shared_bytes_per_block: u64::from(attribute(Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK)?),
        shared_bytes_per_block_optin: u64::from(attribute(
            Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        )?),
        shared_bytes_per_sm: u64::from(attribute(
            Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,
        )?),
        registers_per_block: attribute(Attr::CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK)?,
        // Fixed by the ISA since sm_35; the driver has no attribute for it.
        max_registers_per_thread: 255,
        max_threads_per_sm: attribute(Attr::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR)?,
        warp_size: attribute(Attr::CU_DEVICE_ATTRIBUTE_WARP_SIZE)?,
        clock_khz: attribute(Attr::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)?,
        memory_clock_khz: attribute(Attr::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)?,
        memory_bus_width_bits: attribute(Attr::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)?,
        l2_bytes: u64::from(attribute(Attr::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?),
        ordinal,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_described_or_its_absence_explained() {
        match cuda_target(0) {
            Ok(Target::Cuda(gpu)) => {
                assert!(
                    gpu.sm_count > 0 && gpu.max_threads_per_block >= 256 && gpu.warp_size == 32,
                    "{gpu:?}"
                );
            }
            Ok(other) => panic!("cuda:0 described as {other:?}"),
            Err(e) => {
                println!("skipped: no CUDA device here ({e})");
                assert!(e.to_string().contains("cuda") || e.to_string().contains("CUDA"), "{e}");
            }
        }
    }
}
