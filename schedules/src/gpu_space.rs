//! What every GPU space shares: a sketch is one typed decision table plus a verifier, and
//! [`GpuSpace`] walks that table for sampling, mutation, repair, decoding and counting, so those
//! can never disagree about which points exist.
//!
//! The verifier ([`GpuSketch::structural`] and the [`GpuResources`] it predicts, against the
//! [`CudaTarget`]'s limits) is the one judge of which points exist: a decision's domain is the
//! values with which the point so far still extends to a verified point, so a point that needs
//! more threads, shared memory or registers than the target has is never sampled, never built,
//! never launched.

use crate::space::{ScheduleError, SpaceGenerator};
use autotune_ir::{CudaTarget, Program, Task, Trace};
use rand::{Rng, RngCore};

/// What one point asks of the GPU, as the verifier predicts it, and the target's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuResources {
    pub n_threads: i64,
    /// Static shared memory of a block: exactly what the kernel declares.
    pub shared_bytes: i64,
    /// Estimated 32-bit registers per thread (each sketch says what it counts). ptxas figures of
    /// sampled points (`codegen`'s offline test) stay within the limit below when the estimate
    /// does.
    pub registers_per_thread: i64,
    /// The most registers per thread a block of `n_threads` can have on the target: what the
    /// kernel is compiled for (`__launch_bounds__`), so ptxas must stay within it.
    pub register_limit: i64,
}

impl GpuResources {
    pub(crate) fn new(
        n_threads: i64,
        shared_bytes: i64,
        registers_per_thread: i64,
        gpu: &CudaTarget,
    ) -> Self {
        let per_block = i64::from(gpu.registers_per_block) / n_threads.max(1);
        // Registers are allocated per warp in units of 8 per thread.
        let register_limit = (per_block / 8 * 8).min(i64::from(gpu.max_registers_per_thread));
        GpuResources { n_threads, shared_bytes, registers_per_thread, register_limit }
    }

    pub(crate) fn fits(&self, gpu: &CudaTarget) -> bool {
        self.n_threads >= 1
            && self.n_threads <= i64::from(gpu.max_threads_per_block)
            && self.shared_bytes <= gpu.shared_bytes_per_block as i64
            && self.registers_per_thread <= self.register_limit
    }
}

/// One decision of a GPU sketch: a typed name with the values it can take on some shape, read
/// from and written into the sketch's decoded schedule `S`.
pub trait GpuKnob<S>: Copy + 'static {
    fn name(self) -> &'static str;
    /// Every value the decision can take on some shape, before the verifier; the first is the
    /// value of [`GpuSketch::SMALLEST`].
    fn values(self) -> &'static [i64];
    fn get(self, s: &S) -> i64;
    fn set(self, s: &mut S, v: i64);
}

/// A GPU sketch: its decision table, its structural rules and its resource prediction, and how a
/// verified point lowers.
pub trait GpuSketch: Clone + std::fmt::Debug + Send + Sync + 'static {
    type Schedule: Copy + std::fmt::Debug;
    type Knob: GpuKnob<Self::Schedule>;
    const SKETCH: &'static str;
    const VERSION: &'static str;
    /// Trace order, which is also the draw order: each domain depends on the decisions before it.
    const KNOBS: &'static [Self::Knob];
    /// Every decision at its first value: a starting point every decision then overwrites.
    const SMALLEST: Self::Schedule;
    /// Rules of the sketch itself (tiles divide, vectors stay aligned, no useless idle threads).
    fn structural(&self, s: &Self::Schedule, gpu: &CudaTarget) -> bool;
    fn resources(&self, s: &Self::Schedule, gpu: &CudaTarget) -> GpuResources;
    /// The default schedule before repair shrinks it to the shape and the target.
    fn preferred(&self) -> Self::Schedule;
    /// The program of a verified point.
    fn lower(&self, s: &Self::Schedule) -> Program;
}

/// A GPU schedule space: one sketch on one task and target.
#[derive(Debug, Clone)]
pub struct GpuSpace<K: GpuSketch> {
    pub(crate) task: Task,
    pub(crate) gpu: CudaTarget,
    pub(crate) sketch: K,
}

/// A GPU space behind `dyn`: a space plus the verifier's figures for its points (what the
/// offline ptxas check compares with).
pub trait GpuSpaceGenerator: SpaceGenerator {
    fn resources(&self, trace: &Trace) -> Result<GpuResources, ScheduleError>;
}

impl<K: GpuSketch> GpuSpace<K> {
    /// The space, refused (`Unsupported`) when not one point verifies.
    pub(crate) fn with_sketch(task: &Task, gpu: &CudaTarget, sketch: K) -> Result<Self, ScheduleError> {
        let space = GpuSpace { task: task.clone(), gpu: gpu.clone(), sketch };
        if !space.completable(&mut { K::SMALLEST }, 0) {
            return Err(ScheduleError::Unsupported { task: task.description(), target: gpu.name.clone() });
        }
        Ok(space)
    }

    /// The verifier's figures for a trace of this space (what the ptxas check compares with).
    pub fn resources(&self, trace: &Trace) -> Result<GpuResources, ScheduleError> {
        Ok(self.sketch.resources(&self.decode(trace)?, &self.gpu))
    }

    /// The structural rules and the target's limits: the one definition of a point.
    pub(crate) fn verify(&self, s: &K::Schedule) -> bool {
        self.sketch.structural(s, &self.gpu) && self.sketch.resources(s, &self.gpu).fits(&self.gpu)
    }

    /// Whether the decisions from `from` on (trace order) can be chosen so that `s` verifies.
    fn completable(&self, s: &mut K::Schedule, from: usize) -> bool {
        let Some(&knob) = K::KNOBS.get(from) else { return self.verify(s) };
        let saved = knob.get(s);
        let found = knob.values().iter().any(|&v| {
            knob.set(s, v);
            self.completable(s, from + 1)
        });
        knob.set(s, saved);
        found
    }

    /// The values of decision `index` that keep the point completable, given the decisions
    /// before it. Never empty for a point reached through domains (the space has a point).
    pub(crate) fn domain(&self, s: &K::Schedule, index: usize) -> Vec<i64> {
        let knob = K::KNOBS[index];
        let mut probe = *s;
        knob.values()
            .iter()
            .copied()
            .filter(|&v| {
                knob.set(&mut probe, v);
                self.completable(&mut probe, index + 1)
            })
            .collect()
    }

    /// Every decision, in order, moved to the nearest value of its domain (earlier ones kept).
    fn repair(&self, s: &mut K::Schedule) {
        for (index, &knob) in K::KNOBS.iter().enumerate() {
            let domain = self.domain(s, index);
            let v = knob.get(s);
            if !domain.contains(&v) {
                if let Some(nearest) = domain.iter().copied().min_by_key(|d| (d - v).abs()) {
                    knob.set(s, nearest);
                }
            }
        }
    }

    pub(crate) fn default_schedule(&self) -> K::Schedule {
        let mut s = self.sketch.preferred();
        self.repair(&mut s);
        s
    }

    fn to_trace(s: &K::Schedule) -> Trace {
        Trace::new(K::SKETCH, K::KNOBS.iter().map(|&knob| (knob.name(), knob.get(s))).collect())
    }

    pub(crate) fn decode(&self, trace: &Trace) -> Result<K::Schedule, ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidTrace {
            trace: trace.display(),
            space: K::VERSION.into(),
            reason,
        };
        if trace.sketch != K::SKETCH {
            return Err(invalid(format!("sketch is `{}`", trace.sketch)));
        }
        let mut s = K::SMALLEST;
        for &knob in K::KNOBS {
            let v = trace
                .get(knob.name())
                .ok_or_else(|| invalid(format!("decision `{}` missing", knob.name())))?;
            knob.set(&mut s, v);
        }
        if !self.verify(&s) {
            let r = self.sketch.resources(&s, &self.gpu);
            return Err(invalid(format!(
                "not a point for {} on {}: {} threads, {} shared bytes, ~{} registers per thread (limit {})",
                self.task.description(),
                self.gpu.name,
                r.n_threads,
                r.shared_bytes,
                r.registers_per_thread,
                r.register_limit
            )));
        }
        Ok(s)
    }
}

impl<K: GpuSketch> SpaceGenerator for GpuSpace<K> {
    fn version(&self) -> &'static str {
        K::VERSION
    }

    fn task(&self) -> &Task {
        &self.task
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Trace {
        let mut s = self.default_schedule();
        for (index, &knob) in K::KNOBS.iter().enumerate() {
            let domain = self.domain(&s, index);
            if let Some(&v) = domain.get(rng.gen_range(0..domain.len().max(1))) {
                knob.set(&mut s, v);
            }
        }
        Self::to_trace(&s)
    }

    fn mutate(&self, trace: &Trace, rng: &mut dyn RngCore) -> Trace {
        let Ok(mut s) = self.decode(trace) else { return self.sample(rng) };
        for _ in 0..16 {
            let index = rng.gen_range(0..K::KNOBS.len());
            let knob = K::KNOBS[index];
            let current = knob.get(&s);
            // Any other value the decision can take; later decisions are repaired around it.
            let mut probe = s;
            let others: Vec<i64> = knob
                .values()
                .iter()
                .copied()
                .filter(|&v| v != current)
                .filter(|&v| {
                    knob.set(&mut probe, v);
                    self.completable(&mut probe, 0)
                })
                .collect();
            if !others.is_empty() {
                knob.set(&mut s, others[rng.gen_range(0..others.len())]);
                self.repair(&mut s);
                if self.verify(&s) {
                    break;
                }
            }
        }
        Self::to_trace(&s)
    }

    fn crossover(&self, a: &Trace, b: &Trace, rng: &mut dyn RngCore) -> Trace {
        let mut s = self.default_schedule();
        for &knob in K::KNOBS {
            let (first, second) = if rng.gen_bool(0.5) { (b, a) } else { (a, b) };
            if let Some(v) = first.get(knob.name()).or_else(|| second.get(knob.name())) {
                knob.set(&mut s, v);
            }
        }
        self.repair(&mut s);
        Self::to_trace(&s)
    }

    fn default_trace(&self) -> Trace {
        Self::to_trace(&self.default_schedule())
    }

    fn lower(&self, trace: &Trace) -> Result<Program, ScheduleError> {
        Ok(self.sketch.lower(&self.decode(trace)?))
    }

    fn size(&self) -> u64 {
        fn count<K: GpuSketch>(space: &GpuSpace<K>, s: &mut K::Schedule, i: usize) -> u64 {
            let Some(&knob) = K::KNOBS.get(i) else { return u64::from(space.verify(s)) };
            knob.values()
                .iter()
                .map(|&v| {
                    knob.set(s, v);
                    count(space, s, i + 1)
                })
                .sum()
        }
        let mut s = K::SMALLEST;
        count(self, &mut s, 0)
    }
}

impl<K: GpuSketch> GpuSpaceGenerator for GpuSpace<K> {
    fn resources(&self, trace: &Trace) -> Result<GpuResources, ScheduleError> {
        GpuSpace::resources(self, trace)
    }
}

/// The smallest power of two ≥ `extent` (1 for extents below 1).
pub(crate) fn pow2_at_least(extent: i64) -> i64 {
    (extent.max(1) as u64).next_power_of_two() as i64
}

/// Whether a tile of `tile` along an extent of `extent` is worth offering: the smallest tile
/// always is, a larger one only while it is no bigger than the extent rounded up to a power of
/// two (beyond that it only adds idle threads).
pub(crate) fn useful_tile(tile: i64, smallest: i64, extent: i64) -> bool {
    tile == smallest || tile <= pow2_at_least(extent)
}

/// Checks shared by every GPU space's unit tests: on both presets, sampled points, their
/// mutations and crossovers and the default decode, fit the target, and lower; every domain on
/// the way is non-empty and holds only values that extend to a verified point.
#[cfg(test)]
pub(crate) fn assert_space_consistent<K: GpuSketch>(space: &GpuSpace<K>, seed: u64, n: usize) {
    use rand::SeedableRng;
    let what = space.task.description();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut traces: Vec<Trace> = (0..n).map(|_| space.sample(&mut rng)).collect();
    traces.push(space.default_trace());
    for t in &traces {
        let s = space.decode(t).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(GpuSpace::<K>::to_trace(&s), *t, "{what}: decode(sample) round trip");
        let r = space.resources(t).expect("verified");
        assert!(r.n_threads <= i64::from(space.gpu.max_threads_per_block), "{r:?}");
        assert!(r.shared_bytes <= space.gpu.shared_bytes_per_block as i64, "{r:?}");
        assert!(r.registers_per_thread <= r.register_limit, "{r:?}");
        // Domain/verifier agreement along the point: each of its values is in the domain given
        // the ones before, and a value is in a domain exactly when some choice of the later
        // decisions makes a verified point of it (checked by brute force over them).
        let mut prefix = K::SMALLEST;
        for (index, &knob) in K::KNOBS.iter().enumerate() {
            let domain = space.domain(&prefix, index);
            assert!(domain.contains(&knob.get(&s)), "{what}: {} not in {domain:?}", t.display());
            for &v in knob.values() {
                let mut probe = prefix;
                knob.set(&mut probe, v);
                let verified = extends_to_verified(space, &mut probe, index + 1);
                assert_eq!(
                    domain.contains(&v),
                    verified,
                    "{what}: {}={v} after {}",
                    knob.name(),
                    t.display()
                );
            }
            knob.set(&mut prefix, knob.get(&s));
        }
        space.lower(t).unwrap_or_else(|e| panic!("{what}: {e}"));
        let m = space.mutate(t, &mut rng);
        space.decode(&m).unwrap_or_else(|e| panic!("{what}: mutation of {}: {e}", t.display()));
        let c = space.crossover(t, &m, &mut rng);
        space.decode(&c).unwrap_or_else(|e| panic!("{what}: child of {}: {e}", t.display()));
    }
    assert!(space.size() >= 1, "{what}");
}

/// Whether any values of the decisions from `from` on make `s` verify, every combination
/// tried: an independent check of `completable`'s short-circuiting search.
#[cfg(test)]
fn extends_to_verified<K: GpuSketch>(space: &GpuSpace<K>, s: &mut K::Schedule, from: usize) -> bool {
    let Some(&knob) = K::KNOBS.get(from) else { return space.verify(s) };
    let mut found = false;
    for &v in knob.values() {
        knob.set(s, v);
        found |= extends_to_verified(space, s, from + 1);
    }
    found
}
