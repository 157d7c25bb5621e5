//! The host side of JIT'd kernels: the thread pool that runs parallel loops and the scratch
//! allocator. Kernels call back into these functions; the host owns every thread.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker keeps spinning for the next parallel loop before it sleeps. A kernel
/// runs its parallel loops back to back and a model runs its kernels back to back, so a worker
/// that sleeps between them pays a wake-up on every loop: measured on this VM, 50–100 µs per
/// loop (a 2-thread loop of 2 × 50 µs took 118 µs, the caller doing both halves while the worker
/// woke up). onnxruntime's and OpenMP's pools spin for the same reason.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_millis(5);

/// The threads parallel loops run on. One per measurement context (`--threads N`): the calling
/// thread and `N - 1` workers, so that exactly N threads are busy — with N workers plus a caller
/// waiting for them, the caller's serial code between loops and the workers still spinning after
/// theirs would be N + 1 runnable threads on N cores.
pub struct HostRuntime {
    threads: usize,
    pool: Option<SpinPool>,
}

impl std::fmt::Debug for HostRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRuntime").field("threads", &self.threads).finish()
    }
}

impl HostRuntime {
    /// A runtime running parallel loops on `threads` threads (1 = inline, no pool at all).
    pub fn new(threads: usize) -> std::io::Result<HostRuntime> {
        let threads = threads.max(1);
        let pool = if threads == 1 { None } else { Some(SpinPool::new(threads - 1)?) };
        Ok(HostRuntime { threads, pool })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Calls `body(i)` for every `i` in `0..n`, on all the runtime's threads (the caller's
    /// included); iterations are handed out in shrinking chunks (see `Shared::work`), the last
    /// ones one at a time, so uneven ones balance. Host code that runs between kernels (a model's
    /// plain ops) should use this rather than a pool of its own, for the same reason the runtime
    /// has no spare thread. A call made while another one is
    /// running on this runtime (a nested loop, another thread) runs inline.
    pub fn parallel_for(&self, n: usize, body: &(dyn Fn(usize) + Sync)) {
        match self.pool.as_ref().filter(|_| n > 1) {
            Some(pool) => pool.run(n, body),
            None => (0..n).for_each(body),
        }
    }
}

/// The loop body of the job in flight, with its lifetime erased: `SpinPool::run` does not return
/// before every worker that joined the job has left it.
type ErasedBody = *const (dyn Fn(usize) + Sync + 'static);

/// `state` packs the job's epoch (high 32 bits), a closed flag (bit 31: no more workers may
/// join) and the number of workers that joined (low 31 bits).
const CLOSED: u64 = 1 << 31;
const JOINED_MASK: u64 = CLOSED - 1;

struct Shared {
    state: AtomicU64,
    /// Workers that joined the current job and have finished their part.
    left: AtomicUsize,
    next: AtomicUsize,
    n: AtomicUsize,
    body: UnsafeCell<Option<ErasedBody>>,
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
    /// Threads that run a job's iterations: the workers and the submitter.
    threads: usize,
}

// SAFETY: `body` is written only by the submitting thread while it holds `SpinPool::submit` and
// before it publishes a new epoch (Release); workers read it only after joining that epoch
// (Acquire), and the submitter waits for every joined worker to leave before writing it again.
#[allow(unsafe_code)]
unsafe impl Sync for Shared {}
// SAFETY: the raw pointer in `body` is only dereferenced under the protocol above.
#[allow(unsafe_code)]
unsafe impl Send for Shared {}

impl Shared {
    /// Claims and runs iterations until none are left, a chunk at a time: the chunk is the
    /// iterations left over twice the thread count (guided scheduling), never less than one.
    /// A kernel's loop over a few cache blocks still hands them out one by one, so uneven
    /// blocks balance; a loop over thousands of tiny iterations (a global pooling's planes)
    /// claims O(threads · log n) chunks instead of bouncing the counter's cache line between
    /// the cores on every iteration, which made ResNet-50's 2048-plane average pool 23× slower
    /// on 2 threads than on 1 (0.26 ms against 0.011, Xeon).
    fn work(&self, body: &(dyn Fn(usize) + Sync)) {
        let n = self.n.load(Ordering::Relaxed);
        let mut start = self.next.load(Ordering::Relaxed);
        while start < n {
            let chunk = ((n - start) / (2 * self.threads)).max(1);
            match self.next.compare_exchange_weak(start, start + chunk, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    (start..start + chunk).for_each(body);
                    start = self.next.load(Ordering::Relaxed);
                }
                Err(current) => start = current,
            }
        }
    }

    fn epoch(state: u64) -> u64 {
        state >> 32
    }

    /// Waits (spinning, then sleeping) for an epoch other than `seen`; None on shutdown.
    fn wait_for_job(&self, seen: u64) -> Option<u64> {
        let spin_start = Instant::now();
        let mut spins = 0u32;
        loop {
            if self.shutdown.load(Ordering::Acquire) {
                return None;
            }
            let state = self.state.load(Ordering::Acquire);
            if Self::epoch(state) != seen {
                return Some(state);
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && spin_start.elapsed() > SPIN_BEFORE_SLEEP {
                break;
            }
            std::hint::spin_loop();
        }
        let mut guard = self.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let state = loop {
            let state = self.state.load(Ordering::SeqCst);
            if Self::epoch(state) != seen || self.shutdown.load(Ordering::SeqCst) {
                break state;
            }
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        (!self.shutdown.load(Ordering::Acquire)).then_some(state)
    }

    fn worker_loop(&self) {
        let mut seen = 0;
        while let Some(mut state) = self.wait_for_job(seen) {
            seen = Self::epoch(state);
            // Join unless the submitter has closed the job (it ran every iteration itself).
            let joined = loop {
                if state & CLOSED != 0 || Self::epoch(state) != seen {
                    break false;
                }
                match self.state.compare_exchange_weak(state, state + 1, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => break true,
                    Err(current) => state = current,
                }
            };
            if !joined {
                continue;
            }
            // SAFETY: joined, so the submitter is inside `run` and keeps `body` alive and
            // unchanged until this worker increments `left`.
            #[allow(unsafe_code)]
            let body = unsafe { &*(*self.body.get()).expect("a published job has a body") };
            if catch_unwind(AssertUnwindSafe(|| self.work(body))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            self.left.fetch_add(1, Ordering::Release);
        }
    }
}

/// `workers` threads that spin between jobs and run each job's iterations with the submitter.
struct SpinPool {
    shared: Arc<Shared>,
    submit: Mutex<()>,
    handles: Vec<JoinHandle<()>>,
}

impl SpinPool {
    fn new(workers: usize) -> std::io::Result<SpinPool> {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            left: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            n: AtomicUsize::new(0),
            body: UnsafeCell::new(None),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            threads: workers + 1,
        });
        let mut pool = SpinPool { shared: Arc::clone(&shared), submit: Mutex::new(()), handles: Vec::new() };
        for i in 0..workers {
            let shared = Arc::clone(&shared);
            // Packed panels live on the heap, but give workers room for register tiles anyway.
            let handle = std::thread::Builder::new()
                .name(format!("autotune-worker-{i}"))
                .stack_size(16 << 20)
                .spawn(move || shared.worker_loop())?;
            pool.handles.push(handle);
        }
        Ok(pool)
    }

    fn run(&self, n: usize, body: &(dyn Fn(usize) + Sync)) {
        let Ok(_submitting) = self.submit.try_lock() else {
            // A nested loop (or a second thread): the workers are busy, so run it here.
            return (0..n).for_each(body);
        };
        let shared = &*self.shared;
        // SAFETY (lifetime erasure): this function returns only after every worker that joined
        // this job has left it, so no worker dereferences `body` after it dies.
        #[allow(unsafe_code)]
        let erased: ErasedBody = unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), ErasedBody>(body as *const _)
        };
        // SAFETY: no worker is inside a job (the previous `run` waited for all of them) and new
        // ones cannot join before the epoch below is published.
        #[allow(unsafe_code)]
        unsafe {
            *shared.body.get() = Some(erased)
        };
        shared.n.store(n, Ordering::Relaxed);
        shared.next.store(0, Ordering::Relaxed);
        shared.left.store(0, Ordering::Relaxed);
        let epoch = Shared::epoch(shared.state.load(Ordering::Relaxed)) + 1;
        shared.state.store(epoch << 32, Ordering::SeqCst);
        if shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = shared.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        let caller = catch_unwind(AssertUnwindSafe(|| shared.work(body)));
        let joined = (shared.state.fetch_or(CLOSED, Ordering::AcqRel) & JOINED_MASK) as usize;
        while shared.left.load(Ordering::Acquire) < joined {
            std::hint::spin_loop();
        }
        if let Err(payload) = caller {
            resume_unwind(payload);
        }
        if shared.panicked.swap(false, Ordering::Relaxed) {
            panic!("a parallel loop body panicked on a worker thread");
        }
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
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

#[cfg(test)]
mod pool_tests {
    use super::*;

    fn counts(runtime: &HostRuntime, n: usize) -> Vec<usize> {
        let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        runtime.parallel_for(n, &|i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        hits.iter().map(|h| h.load(Ordering::Relaxed)).collect()
    }

    #[test]
    fn every_iteration_runs_exactly_once_across_many_loops() {
        let runtime = HostRuntime::new(3).expect("runtime");
        for n in [0, 1, 2, 3, 7, 64, 1000] {
            for _ in 0..50 {
                assert_eq!(counts(&runtime, n), vec![1; n], "n = {n}");
            }
        }
    }

    #[test]
    fn tiny_iterations_are_claimed_in_few_chunks() {
        use std::hash::{Hash, Hasher};
        let runtime = HostRuntime::new(2).expect("runtime");
        let n = 100_000;
        let owner: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
        runtime.parallel_for(n, &|i| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::thread::current().id().hash(&mut h);
            owner[i].store(h.finish(), Ordering::Relaxed);
        });
        let owner: Vec<u64> = owner.iter().map(|o| o.load(Ordering::Relaxed)).collect();
        let runs = 1 + owner.windows(2).filter(|w| w[0] != w[1]).count();
        // Guided chunks: about 2·threads·ln(n) claims at most, against one per iteration.
        assert!(runs <= 200, "{runs} runs of consecutive iterations on one thread");
    }

    #[test]
    fn workers_that_went_to_sleep_take_part_again() {
        let runtime = HostRuntime::new(2).expect("runtime");
        std::thread::sleep(SPIN_BEFORE_SLEEP * 3);
        let threads = Mutex::new(std::collections::HashSet::new());
        // Iterations long enough that the caller cannot take them all before a worker wakes.
        runtime.parallel_for(8, &|_| {
            threads.lock().expect("lock").insert(std::thread::current().id());
            std::thread::sleep(Duration::from_millis(20));
        });
        assert_eq!(threads.lock().expect("lock").len(), 2);
    }

    #[test]
    fn a_nested_loop_runs_inline_and_completes() {
        let runtime = HostRuntime::new(2).expect("runtime");
        let total = AtomicUsize::new(0);
        runtime.parallel_for(4, &|_| {
            runtime.parallel_for(5, &|_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(total.load(Ordering::Relaxed), 20);
    }

    #[test]
    fn a_panicking_body_reaches_the_caller_and_the_pool_stays_usable() {
        let runtime = HostRuntime::new(2).expect("runtime");
        let result = catch_unwind(AssertUnwindSafe(|| {
            runtime.parallel_for(64, &|i| {
                if i == 63 {
                    panic!("iteration {i} failed");
                }
                std::thread::sleep(Duration::from_micros(200));
            })
        }));
        assert!(result.is_err());
        assert_eq!(counts(&runtime, 100), vec![1; 100]);
    }
}
