//! The host side of JIT'd kernels: the thread pool that runs parallel loops and the scratch
//! allocator. Kernels call back into these functions; the host owns every thread.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The threads parallel loops run on. One per measurement context (`--threads N`): the calling
/// thread and a pool of `N - 1` workers, so that exactly N threads are busy — with N workers plus
/// a caller waiting for them, the caller's serial code between loops and the workers still
/// spinning after theirs would be N + 1 runnable threads on N cores.
#[derive(Debug)]
pub struct HostRuntime {
    threads: usize,
    pool: Option<rayon::ThreadPool>,
}

impl HostRuntime {
    /// A runtime running parallel loops on `threads` threads (1 = inline, no pool at all).
    pub fn new(threads: usize) -> Result<HostRuntime, rayon::ThreadPoolBuildError> {
        let threads = threads.max(1);
        let pool = if threads == 1 {
            None
        } else {
            // Packed panels live on the heap, but give workers room for register tiles anyway.
            Some(rayon::ThreadPoolBuilder::new().num_threads(threads - 1).stack_size(16 << 20).build()?)
        };
        Ok(HostRuntime { threads, pool })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Calls `body(i)` for every `i` in `0..n`, on all the runtime's threads (the caller's
    /// included); iterations are handed out one at a time, so uneven ones balance. Host code
    /// that runs between kernels (a model's plain ops) should use this rather than a pool of its
    /// own, for the same reason the runtime has no spare thread.
    pub fn parallel_for(&self, n: usize, body: &(dyn Fn(usize) + Sync)) {
        let Some(pool) = self.pool.as_ref().filter(|_| n > 1) else {
            (0..n).for_each(body);
            return;
        };
        let next = AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            body(i);
        };
        pool.in_place_scope(|scope| {
            for _ in 1..self.threads.min(n) {
                scope.spawn(|_| work());
            }
            work();
        });
    }
}

/// Signature of an outlined parallel-loop body: `(captured context, iteration)`.
pub(crate) type ParallelBody = extern "C" fn(*const i64, i64);

/// Called by JIT'd code for every parallel loop.
pub(crate) extern "C" fn autotune_parallel_for(
    runtime: *const HostRuntime,
    body: ParallelBody,
    context: *const i64,
    n: i64,
) {
    // The context pointer is read-only for the bodies and outlives this call (it lives in the
    // caller's stack frame, which is blocked here), so sharing its address across threads is fine.
    let context_addr = context as usize;
    let run = move |i: i64| body(context_addr as *const i64, i);
    #[allow(unsafe_code)]
    // SAFETY: `runtime` is the `&HostRuntime` that `CpuKernel::run` passed to the kernel entry,
    // which stays borrowed for the whole kernel call, so it is valid here.
    let runtime = unsafe { &*runtime };
    runtime.parallel_for(usize::try_from(n).unwrap_or(0), &|i| run(i as i64));
}

const SCRATCH_ALIGN: usize = 64;

fn scratch_layout(bytes: i64) -> Option<std::alloc::Layout> {
    std::alloc::Layout::from_size_align(usize::try_from(bytes).ok()?.max(1), SCRATCH_ALIGN).ok()
}

/// Heap scratch for `BufScope::Heap` buffers, 64-byte aligned (a cache line, a zmm register).
pub(crate) extern "C" fn autotune_alloc(bytes: i64) -> *mut u8 {
    match scratch_layout(bytes) {
        #[allow(unsafe_code)]
        // SAFETY: the layout has a non-zero size.
        Some(layout) => unsafe { std::alloc::alloc(layout) },
        None => std::ptr::null_mut(),
    }
}

pub(crate) extern "C" fn autotune_free(ptr: *mut u8, bytes: i64) {
    if let (false, Some(layout)) = (ptr.is_null(), scratch_layout(bytes)) {
        #[allow(unsafe_code)]
        // SAFETY: `ptr` came from `autotune_alloc` with the same byte count, hence the same layout.
        unsafe {
            std::alloc::dealloc(ptr, layout)
        };
    }
}
