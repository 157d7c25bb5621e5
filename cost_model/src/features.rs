//! The versioned feature vector of a [`LoopNest`]: what a model learns kernel speed from.
//!
//! Computed from the loop nest alone (loops, buffers, stores), so every schedule space gets
//! features without writing any: matmul, conv and pooling alike. The walk that estimates trip
//! counts, branch fractions and access strides is [`NestAnalysis`]; this module turns it into
//! numbers relative to the [`MachineModel`] (caches, vector width, registers, threads).
//!
//! The **hot statement** is the store that performs the most floating-point operations (the
//! micro-kernel's FMA); the **hot path** is its enclosing loops. Each feature's meaning is in
//! [`SUMMARY_FEATURES`] and [`LEVEL_FEATURES`]; [`feature_names`] lists them in vector order.
//! Changing what any feature means, or their order, must change [`FEATURE_VERSION`]: a model
//! trained on one version is meaningless on another.

use std::collections::HashMap;

use autotune_ir::{BufScope, LoopKind, LoopNest};

use crate::analysis::{Access, LoopInfo, NestAnalysis, StoreInfo};
use crate::machine::MachineModel;

/// Identifies the meaning and order of the features.
pub const FEATURE_VERSION: &str = "loopnest-features-v2";

/// Loops of the hot path described one by one (innermost first); deeper nests lose their
/// outermost loops, shallower ones pad with −1.
pub const MAX_LEVELS: usize = 10;

/// Whole-nest features, in vector order: `(name, meaning)`.
pub const SUMMARY_FEATURES: &[(&str, &str)] = &[
    ("log2_flops", "log2 of the floating-point operations of one call (FMA = 2), from trip counts"),
    ("log2_param_bytes", "log2 of the bytes of the kernel's argument buffers (inputs and outputs)"),
    ("log2_arithmetic_intensity", "log2(flops / argument bytes): the operator's intrinsic intensity"),
    ("log2_threads", "log2 of the threads the kernel runs on"),
    ("log2_vector_lanes", "log2 of the machine's fp32 vector lanes"),
    ("hot_vector_width_ratio", "lanes of the vectorized loop around the hot statement / machine lanes (0: scalar)"),
    ("vectorized_flop_fraction", "share of all flops executed inside a vectorized loop"),
    ("hot_flop_fraction", "share of all flops in the hot statement (the rest: edge paths, epilogues)"),
    ("log2_unroll_product", "log2 of the product of unroll factors on the hot path (full unrolls and unroll-by)"),
    ("log2_unroll_by", "log2 of the largest partial unroll factor (unroll-by) on the hot path"),
    ("log2_register_body_fmas", "log2 of the vector operations in the fully unrolled register body of the hot statement"),
    ("register_intensity", "vector operations per distinct vector load of memory operands in the register body"),
    ("register_pressure", "(accumulator vectors + live operand vectors + 1) / architectural vector registers"),
    ("log2_inner_serial_max_stride", "log2(1 + largest stride, in elements, of a memory operand along the innermost serial loop of the hot path)"),
    ("log2_l1_bytes_per_flop", "log2 of estimated bytes moved into L1 per flop: each statement's outermost loop whose footprint fits L1, times its entries"),
    ("log2_l2_bytes_per_flop", "as log2_l1_bytes_per_flop, for L2"),
    ("log2_l3_bytes_per_flop", "as log2_l1_bytes_per_flop, for L3 (roughly the DRAM traffic)"),
    ("levels_fitting_l1", "share of hot-path loops whose footprint fits L1"),
    ("levels_fitting_l2", "share of hot-path loops whose footprint fits L2"),
    ("levels_fitting_l3", "share of hot-path loops whose footprint fits L3"),
    ("parallel_balance", "parallel iterations / (threads × rounds): 1 when they divide evenly; 1/threads without a parallel loop"),
    ("log2_parallel_iters_per_thread", "log2(1 + parallel loop extent / threads); 0 without a parallel loop"),
    ("parallel_depth", "position of the parallel loop on the hot path (0 outermost, 1 innermost); −1 without one"),
    ("log2_parallel_entries", "log2(1 + times the parallel loop starts per call): fork-join overhead"),
    ("copy_bytes_per_flop", "bytes written to heap scratch by copy stores (packing) per flop"),
    ("log2_heap_bytes", "log2(1 + bytes of heap scratch buffers): packed panels"),
    ("heap_bytes_over_l2", "heap scratch bytes / L2 size"),
    ("log2_heap_allocations", "log2(1 + heap allocations per call)"),
    ("log2_prefetches_per_kflop", "log2(1 + cache-line prefetches per 1000 flops): operands streamed ahead of the arithmetic"),
    ("log2_output_passes", "log2 of writes to argument buffers per output element (read-modify-write passes)"),
    ("non_hot_flops_per_output", "flops outside the hot statement per output element: epilogue and edge work"),
    ("log2_branches_per_kflop", "log2(1 + branch evaluations per 1000 flops)"),
    ("log2_model_compute_cycles_per_flop", "log2 of an analytic estimate of core cycles per flop: vector or scalar FMA and load issue, register-body reuse, parallel speed-up"),
    ("log2_model_cycles_per_flop", "log2 of the analytic estimate including memory (bytes into each cache level over its bandwidth, roofline max) and branch, allocation and fork-join overheads"),
];

/// Features of each hot-path loop, innermost first (`level0_…` is the innermost loop).
pub const LEVEL_FEATURES: &[(&str, &str)] = &[
    ("log2_extent", "log2 of the loop's mean trip count; −1 for a missing level"),
    (
        "kind",
        "0 serial, 1 unroll-by, 2 unrolled, 3 vectorized, 4 parallel, 5 GPU block, 6 GPU thread; −1 missing",
    ),
    (
        "log2_footprint_bytes",
        "log2(1 + bytes of distinct cache lines the loop touches, all iterations); −1 missing",
    ),
];

/// Length of every feature vector of this version.
pub fn n_features() -> usize {
    SUMMARY_FEATURES.len() + MAX_LEVELS * LEVEL_FEATURES.len()
}

/// Names in vector order: the summary features, then `level{d}_{name}` for each level.
pub fn feature_names() -> Vec<String> {
    let mut names: Vec<String> = SUMMARY_FEATURES.iter().map(|(name, _)| (*name).to_string()).collect();
    for level in 0..MAX_LEVELS {
        names.extend(LEVEL_FEATURES.iter().map(|(name, _)| format!("level{level}_{name}")));
    }
    names
}

/// The feature vector of `nest` on `machine`: [`n_features`] finite numbers.
pub fn extract_features(nest: &LoopNest, machine: &MachineModel) -> Vec<f64> {
    let analysis = NestAnalysis::of(nest);
    Extractor::new(nest, machine, &analysis).features()
}

struct Extractor<'a> {
    nest: &'a LoopNest,
    machine: &'a MachineModel,
    analysis: &'a NestAnalysis,
    total_flops: f64,
    /// Index of the hot statement in `analysis.stores`, if the nest stores anything.
    hot: Option<usize>,
    /// Bytes of distinct lines touched by each loop (all statements inside it).
    loop_footprint_bytes: Vec<f64>,
}

impl<'a> Extractor<'a> {
    fn new(nest: &'a LoopNest, machine: &'a MachineModel, analysis: &'a NestAnalysis) -> Self {
        let total_flops: f64 = analysis.stores.iter().map(|s| s.executions * s.flops).sum();
        let hot = (0..analysis.stores.len()).max_by(|&a, &b| {
            let work = |s: &StoreInfo| (s.executions * s.flops, s.executions);
            let (wa, wb) = (work(&analysis.stores[a]), work(&analysis.stores[b]));
            wa.partial_cmp(&wb).unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut extractor = Extractor {
            nest,
            machine,
            analysis,
            total_flops: total_flops.max(1.0),
            hot,
            loop_footprint_bytes: Vec::new(),
        };
        extractor.loop_footprint_bytes = extractor.loop_footprints();
        extractor
    }

    fn scope(&self, buf: u32) -> BufScope {
        self.nest.buffers.get(buf as usize).map_or(BufScope::Param, |b| b.scope)
    }

    fn elem_bytes(&self, buf: u32) -> f64 {
        self.nest.buffers.get(buf as usize).map_or(4.0, |b| b.dtype.size_bytes() as f64)
    }

    fn in_memory(&self, access: &Access) -> bool {
        self.scope(access.buf) != BufScope::Register
    }

    fn line_bytes(&self) -> f64 {
        self.machine.caches.line_bytes as f64
    }

    /// Bytes of distinct cache lines `access` touches while the loops `path[from..]` run through
    /// all their iterations (outer loops fixed). Strides sorted small to large: a stride within
    /// the current contiguous block extends it, a larger one repeats it.
    fn access_bytes(&self, access: &Access, path: &[usize], from: usize) -> f64 {
        let elem = self.elem_bytes(access.buf);
        let mut dims: Vec<(f64, f64)> = path[from..]
            .iter()
            .zip(&access.strides[from..])
            .filter(|(_, &stride)| stride != 0)
            .map(|(&loop_idx, &stride)| {
                (stride.unsigned_abs() as f64, self.analysis.loops[loop_idx].mean_extent.round().max(1.0))
            })
            .collect();
        dims.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut block_len, mut n_blocks, mut span) = (1.0f64, 1.0f64, 1.0f64);
        for (stride, extent) in dims {
            if stride <= block_len {
                block_len += stride * (extent - 1.0);
            } else {
                n_blocks *= extent;
            }
            span += stride * (extent - 1.0);
        }
        let line = self.line_bytes();
        let lines = (n_blocks * (block_len * elem / line).ceil()).min((span * elem / line).ceil() + 1.0);
        lines.max(1.0) * line
    }

    fn loop_footprints(&self) -> Vec<f64> {
        let mut per_loop: Vec<HashMap<u32, f64>> = vec![HashMap::new(); self.analysis.loops.len()];
        for store in &self.analysis.stores {
            for (level, &loop_idx) in store.path.iter().enumerate() {
                for access in store.accesses.iter().filter(|a| self.in_memory(a)) {
                    let bytes = self.access_bytes(access, &store.path, level);
                    let entry = per_loop[loop_idx].entry(access.buf).or_insert(0.0);
                    *entry = entry.max(bytes);
                }
            }
        }
        per_loop.iter().map(|bufs| bufs.values().sum()).collect()
    }

    /// Bytes moved into a cache of `capacity` bytes per call: for each statement, the outermost
    /// enclosing loop whose footprint fits loads its lines once per entry.
    fn traffic_bytes(&self, capacity: f64) -> f64 {
        let mut total = 0.0;
        for store in &self.analysis.stores {
            let memory: Vec<&Access> = store.accesses.iter().filter(|a| self.in_memory(a)).collect();
            if memory.is_empty() {
                continue;
            }
            let fitting = (0..store.path.len())
                .rev()
                .take_while(|&level| self.loop_footprint_bytes[store.path[level]] <= capacity)
                .last();
            total += match fitting {
                Some(level) => {
                    let entries = self.analysis.loops[store.path[level]].entries;
                    entries * memory.iter().map(|a| self.access_bytes(a, &store.path, level)).sum::<f64>()
                }
                None => store.executions * memory.iter().map(|a| self.elem_bytes(a.buf)).sum::<f64>(),
            };
        }
        total
    }

    fn hot_store(&self) -> Option<&StoreInfo> {
        self.hot.map(|i| &self.analysis.stores[i])
    }

    fn hot_loops(&self) -> Vec<&LoopInfo> {
        self.hot_store().map_or_else(Vec::new, |s| s.path.iter().map(|&i| &self.analysis.loops[i]).collect())
    }

    fn features(&self) -> Vec<f64> {
        let mut f = Vec::with_capacity(n_features());
        let machine = self.machine;
        let lanes = f64::from(machine.vector_lanes);
        let threads = f64::from(machine.threads);
        let flops = self.total_flops;
        let param_bytes: f64 = self
            .nest
            .params
            .iter()
            .filter_map(|id| self.nest.buffers.get(id.0 as usize))
            .map(|b| (b.len * b.dtype.size_bytes()) as f64)
            .sum::<f64>()
            .max(1.0);
        let hot = self.hot_store();
        let hot_loops = self.hot_loops();
        let stores = &self.analysis.stores;

        // Problem and machine.
        f.push(flops.log2());
        f.push(param_bytes.log2());
        f.push((flops / param_bytes).log2());
        f.push(threads.log2());
        f.push(lanes.log2());

        // Vectorization.
        let hot_lanes =
            hot_loops.iter().find(|l| l.kind == LoopKind::Vectorized).map_or(0.0, |l| l.mean_extent);
        f.push(hot_lanes / lanes);
        let in_vector_loop =
            |s: &StoreInfo| s.path.iter().any(|&i| self.analysis.loops[i].kind == LoopKind::Vectorized);
        let vector_flops: f64 =
            stores.iter().filter(|s| in_vector_loop(s)).map(|s| s.executions * s.flops).sum();
        f.push(vector_flops / flops);
        f.push(hot.map_or(0.0, |s| s.executions * s.flops / flops));

        // Unrolling and the register body.
        let unroll_factor = |l: &LoopInfo| match l.kind {
            LoopKind::Unrolled => l.mean_extent.max(1.0),
            LoopKind::UnrollBy(n) => f64::from(n.max(1)),
            _ => 1.0,
        };
        f.push(hot_loops.iter().map(|l| unroll_factor(l).log2()).sum());
        f.push(
            hot_loops
                .iter()
                .filter_map(|l| match l.kind {
                    LoopKind::UnrollBy(n) => Some(f64::from(n.max(1)).log2()),
                    _ => None,
                })
                .fold(0.0, f64::max),
        );
        let body = self.register_body();
        f.push(body.vector_ops.log2());
        f.push(body.vector_ops / body.operand_vectors.max(1.0));
        f.push(
            (body.accumulator_vectors + body.live_operand_vectors + 1.0)
                / f64::from(machine.vector_registers),
        );
        f.push((1.0 + self.inner_serial_max_stride()).log2());

        // Memory hierarchy.
        let caches = machine.caches;
        let capacities = [caches.l1d_bytes as f64, caches.l2_bytes as f64, caches.l3_bytes as f64];
        for capacity in capacities {
            f.push((self.traffic_bytes(capacity) / flops + 1e-6).log2());
        }
        let hot_footprints: Vec<f64> =
            hot.map_or_else(Vec::new, |s| s.path.iter().map(|&i| self.loop_footprint_bytes[i]).collect());
        for capacity in capacities {
            let n_fitting = hot_footprints.iter().filter(|&&bytes| bytes <= capacity).count();
            f.push(n_fitting as f64 / hot_footprints.len().max(1) as f64);
        }

        // Parallelism.
        let parallel = hot_loops.iter().position(|l| l.kind == LoopKind::Parallel);
        match parallel.map(|position| (position, hot_loops[position])) {
            Some((position, l)) => {
                let rounds = (l.mean_extent / threads).ceil().max(1.0);
                f.push(l.mean_extent / (rounds * threads));
                f.push((1.0 + l.mean_extent / threads).log2());
                f.push(position as f64 / (hot_loops.len().max(2) - 1) as f64);
                f.push((1.0 + l.entries).log2());
            }
            None => f.extend([1.0 / threads, 0.0, -1.0, 0.0]),
        }

        // Packing and scratch.
        let copy_bytes: f64 = stores
            .iter()
            .filter(|s| s.is_copy && self.scope(s.buf) == BufScope::Heap)
            .map(|s| s.executions * self.elem_bytes(s.buf))
            .sum();
        f.push(copy_bytes / flops);
        let heap_bytes: f64 = self
            .nest
            .buffers
            .iter()
            .filter(|b| b.scope == BufScope::Heap)
            .map(|b| (b.len * b.dtype.size_bytes()) as f64)
            .sum();
        f.push((1.0 + heap_bytes).log2());
        f.push(heap_bytes / caches.l2_bytes as f64);
        f.push((1.0 + self.analysis.heap_allocations).log2());
        f.push((1.0 + 1000.0 * self.analysis.prefetches / flops).log2());

        // Outputs, epilogue, control flow.
        let written: Vec<u32> = {
            let mut bufs: Vec<u32> =
                stores.iter().filter(|s| self.scope(s.buf) == BufScope::Param).map(|s| s.buf).collect();
            bufs.sort_unstable();
            bufs.dedup();
            bufs
        };
        let output_elems: f64 = written
            .iter()
            .filter_map(|&b| self.nest.buffers.get(b as usize))
            .map(|b| b.len as f64)
            .sum::<f64>()
            .max(1.0);
        let output_writes: f64 =
            stores.iter().filter(|s| self.scope(s.buf) == BufScope::Param).map(|s| s.executions).sum();
        f.push((output_writes / output_elems).max(1e-6).log2());
        let non_hot_flops = flops - hot.map_or(0.0, |s| s.executions * s.flops);
        f.push(non_hot_flops.max(0.0) / output_elems);
        f.push((1.0 + 1000.0 * self.analysis.branch_evaluations / flops).log2());
        let (compute_cycles, total_cycles) = self.model_cycles(&body);
        f.push((compute_cycles / flops).max(1e-9).log2());
        f.push((total_cycles / flops).max(1e-9).log2());

        // The hot path, innermost first.
        let path = hot.map_or(&[][..], |s| &s.path[..]);
        for level in 0..MAX_LEVELS {
            match path.len().checked_sub(level + 1).map(|i| path[i]) {
                Some(loop_idx) => {
                    let l = &self.analysis.loops[loop_idx];
                    f.push(l.mean_extent.max(1.0).log2());
                    f.push(kind_code(l.kind));
                    f.push((1.0 + self.loop_footprint_bytes[loop_idx]).log2());
                }
                None => f.extend([-1.0, -1.0, -1.0]),
            }
        }
        debug_assert_eq!(f.len(), n_features());
        // Guard the contract: models cannot learn from NaN or infinity.
        f.iter_mut().filter(|v| !v.is_finite()).for_each(|v| *v = 0.0);
        f
    }

    /// A crude analytic cost: (compute cycles, total cycles) per call. Compute: each statement's
    /// instructions (one per `lanes` executions when vectorized) issue their FMAs at 1 vector or
    /// 2 scalar per cycle and their memory operands at 2 per cycle; the hot statement's operands
    /// are shared across its unrolled register body. Memory: bytes into L1, L2, L3 at 32, 16 and 8
    /// bytes per cycle. Roofline max of the two, spread over the threads the parallel loop keeps
    /// busy, plus a cycle per branch, 200 per heap allocation and 2000 per parallel launch.
    fn model_cycles(&self, body: &RegisterBody) -> (f64, f64) {
        let mut compute = 0.0;
        for (index, store) in self.analysis.stores.iter().enumerate() {
            let lanes = store
                .path
                .iter()
                .map(|&i| &self.analysis.loops[i])
                .find(|l| l.kind == LoopKind::Vectorized)
                .map_or(1.0, |l| l.mean_extent.max(1.0));
            let instructions = store.executions / lanes;
            let fma_cycles = instructions * (store.flops / 2.0) / if lanes > 1.0 { 1.0 } else { 2.0 };
            let memory_ops = if Some(index) == self.hot && body.vector_ops > 1.0 {
                body.operand_vectors / body.vector_ops + 1.0 / body.vector_ops.max(1.0)
            } else {
                store.accesses.iter().filter(|a| self.in_memory(a)).count() as f64
            };
            compute += fma_cycles.max(instructions * memory_ops / 2.0);
        }
        let caches = self.machine.caches;
        let memory = self.traffic_bytes(caches.l1d_bytes as f64) / 32.0
            + self.traffic_bytes(caches.l2_bytes as f64) / 16.0
            + self.traffic_bytes(caches.l3_bytes as f64) / 8.0;
        let threads = f64::from(self.machine.threads);
        let hot_loops = self.hot_loops();
        let (speedup, launches) = match hot_loops.iter().find(|l| l.kind == LoopKind::Parallel) {
            Some(l) => {
                let rounds = (l.mean_extent / threads).ceil().max(1.0);
                ((l.mean_extent / rounds).clamp(1.0, threads), l.entries)
            }
            None => (1.0, 0.0),
        };
        let overheads =
            self.analysis.branch_evaluations + 200.0 * self.analysis.heap_allocations + 2000.0 * launches;
        let compute = compute / speedup;
        (compute.max(1.0), compute.max(memory / speedup.sqrt()) + overheads / speedup)
    }

    /// The fully unrolled (and vectorized) innermost loops of the hot statement, seen as one
    /// straight-line block of vector operations.
    fn register_body(&self) -> RegisterBody {
        let Some(hot) = self.hot_store() else { return RegisterBody::default() };
        let body_levels: Vec<usize> = (0..hot.path.len())
            .rev()
            .take_while(|&level| {
                matches!(self.analysis.loops[hot.path[level]].kind, LoopKind::Unrolled | LoopKind::Vectorized)
            })
            .collect();
        let unrolled = |level: &&usize| self.analysis.loops[hot.path[**level]].kind == LoopKind::Unrolled;
        let extent = |level: usize| self.analysis.loops[hot.path[level]].mean_extent.max(1.0);
        let vector_ops: f64 = body_levels.iter().filter(unrolled).map(|&level| extent(level)).product();
        // Distinct vectors an access touches across the body: unrolled loops it depends on.
        let distinct = |access: &Access| -> f64 {
            body_levels
                .iter()
                .filter(unrolled)
                .filter(|&&level| access.strides[level] != 0)
                .map(|&level| extent(level))
                .product()
        };
        let mut body = RegisterBody { vector_ops, ..RegisterBody::default() };
        let mut smallest_operand = f64::INFINITY;
        let mut accumulators: HashMap<u32, f64> = HashMap::new();
        for access in &hot.accesses {
            if self.in_memory(access) {
                if !access.is_write {
                    let vectors = distinct(access);
                    body.operand_vectors += vectors;
                    smallest_operand = smallest_operand.min(vectors);
                }
            } else {
                let entry = accumulators.entry(access.buf).or_insert(0.0);
                *entry = entry.max(distinct(access));
            }
        }
        body.accumulator_vectors = accumulators.values().sum();
        body.live_operand_vectors = if smallest_operand.is_finite() { smallest_operand } else { 0.0 };
        body
    }

    /// Largest stride (elements) of a memory load along the innermost serial or unroll-by loop
    /// of the hot path: a large one means each iteration touches a new cache line (no packing).
    fn inner_serial_max_stride(&self) -> f64 {
        let Some(hot) = self.hot_store() else { return 0.0 };
        let Some(level) = (0..hot.path.len()).rev().find(|&level| {
            matches!(self.analysis.loops[hot.path[level]].kind, LoopKind::Serial | LoopKind::UnrollBy(_))
        }) else {
            return 0.0;
        };
        hot.accesses
            .iter()
            .filter(|a| self.in_memory(a) && !a.is_write)
            .map(|a| a.strides[level].unsigned_abs() as f64)
            .fold(0.0, f64::max)
    }
}

#[derive(Default)]
struct RegisterBody {
    vector_ops: f64,
    operand_vectors: f64,
    accumulator_vectors: f64,
    live_operand_vectors: f64,
}

fn kind_code(kind: LoopKind) -> f64 {
    match kind {
        LoopKind::Serial => 0.0,
        LoopKind::UnrollBy(_) => 1.0,
        LoopKind::Unrolled => 2.0,
        LoopKind::Vectorized => 3.0,
        LoopKind::Parallel => 4.0,
        LoopKind::GpuBlock(_) => 5.0,
        LoopKind::GpuThread(_) => 6.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::CacheSizes;
    use autotune_ir::IsaLevel;
    use autotune_ir::{Task, Trace};
    use autotune_schedules::{GemmSpace, SpaceGenerator};
    use rand::SeedableRng;

    fn machine(threads: u32) -> MachineModel {
        MachineModel::cpu(CacheSizes::FALLBACK, IsaLevel::Avx512, threads)
    }

    fn feature(features: &[f64], name: &str) -> f64 {
        let index =
            feature_names().iter().position(|n| n == name).unwrap_or_else(|| panic!("no feature {name}"));
        features[index]
    }

    /// The default 512³ matmul schedule with some decisions changed, and its features.
    fn matmul_features(threads: u32, changes: &[(&str, i64)]) -> Vec<f64> {
        let space = GemmSpace::new(
            &Task::matmul(512, 512, 512),
            &autotune_ir::CpuTarget::generic(IsaLevel::Avx512, threads),
        )
        .expect("space");
        let mut trace: Trace = space.default_trace();
        for (name, value) in changes {
            let decision = trace.decisions.iter_mut().find(|d| d.name == *name).expect("decision");
            decision.value = *value;
        }
        // Repair the dependent domains (tile counts shrink with the tile), keeping the changes.
        let trace = space.crossover(&trace, &trace, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
        for (name, value) in changes {
            assert_eq!(trace.get(name), Some(*value), "{name} was repaired away");
        }
        let program = space.lower(&trace).expect("a valid point");
        extract_features(&program.kernel, &machine(threads))
    }

    #[test]
    fn names_and_vectors_line_up_and_are_finite_and_deterministic() {
        assert_eq!(feature_names().len(), n_features());
        let names = feature_names();
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "duplicate feature names");
        let space =
            GemmSpace::new(&Task::matmul(96, 80, 70), &autotune_ir::CpuTarget::generic(IsaLevel::Avx512, 2))
                .expect("space");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let program = space.lower(&space.sample(&mut rng)).expect("lower");
            let features = extract_features(&program.kernel, &machine(2));
            assert_eq!(features.len(), n_features());
            assert!(features.iter().all(|v| v.is_finite()));
            assert_eq!(features, extract_features(&program.kernel, &machine(2)));
        }
    }

    #[test]
    fn conv_and_pooling_nests_get_features_too() {
        use autotune_ir::{Conv2dSpec, EpilogueOp, Op};
        let conv = Conv2dSpec {
            n: 1,
            c: 32,
            h: 14,
            w: 14,
            o: 32,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [1; 4],
            dilation: [1, 1],
            groups: 1,
        };
        let task = Task::new(Op::Conv2d(conv), vec![EpilogueOp::Bias, EpilogueOp::Relu]);
        let space = autotune_schedules::space_for(
            &task,
            &autotune_ir::Target::Cpu(autotune_ir::CpuTarget::generic(IsaLevel::Avx512, 1)),
        )
        .expect("conv space");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..20 {
            let program = space.lower(&space.sample(&mut rng)).expect("lower");
            let features = extract_features(&program.kernel, &machine(1));
            assert!(features.iter().all(|v| v.is_finite()));
            // The flops the nest performs are the conv's (2·N·O·OH·OW·C·KH·KW), epilogue aside.
            let flops = feature(&features, "log2_flops").exp2();
            assert!(
                flops >= task.flops() * 0.95 && flops < task.flops() * 1.6,
                "{flops} vs {}",
                task.flops()
            );
            distinct.insert(features.iter().map(|v| v.to_bits()).collect::<Vec<u64>>());
        }
        assert!(distinct.len() > 15, "different schedules, different features");
    }

    #[test]
    fn the_register_tile_shows_in_intensity_and_pressure() {
        let f = matmul_features(1, &[("mr", 8), ("nr_vecs", 2)]);
        // 8 × 2 vector FMAs per k step share 8 broadcasts of A and 2 vectors of B.
        assert!((feature(&f, "register_intensity") - 16.0 / 10.0).abs() < 1e-9);
        assert!((feature(&f, "log2_register_body_fmas") - 4.0).abs() < 1e-9);
        assert_eq!(feature(&f, "hot_vector_width_ratio"), 1.0);
        let small = matmul_features(1, &[("mr", 1), ("nr_vecs", 1)]);
        assert!(feature(&small, "register_pressure") < feature(&f, "register_pressure"));
    }

    #[test]
    fn packing_and_edge_tiles_show() {
        let packed = matmul_features(1, &[("pack_a", 1), ("pack_b", 1)]);
        let unpacked = matmul_features(1, &[("pack_a", 0), ("pack_b", 0)]);
        assert!(feature(&packed, "copy_bytes_per_flop") > 0.0);
        assert!(feature(&packed, "log2_heap_bytes") > 10.0);
        assert_eq!(feature(&unpacked, "copy_bytes_per_flop"), 0.0);
        assert_eq!(feature(&unpacked, "log2_heap_bytes"), 0.0);
        // Unpacked B is read along k with a stride of a whole row.
        assert!(feature(&unpacked, "log2_inner_serial_max_stride") >= 9.0);
        // 512 columns in 48-wide tiles leave an edge tile on the scalar path when nothing is packed.
        let edges = matmul_features(1, &[("pack_a", 0), ("pack_b", 0), ("nr_vecs", 3)]);
        assert!(feature(&unpacked, "vectorized_flop_fraction") > 0.99);
        let fraction = feature(&edges, "vectorized_flop_fraction");
        assert!(fraction < 0.99 && fraction > 0.8, "{fraction}");
        assert!(
            feature(&edges, "log2_model_cycles_per_flop") > feature(&unpacked, "log2_model_cycles_per_flop")
        );
    }

    #[test]
    fn a_parallel_loop_shows_its_balance() {
        let parallel = matmul_features(2, &[]);
        assert!(feature(&parallel, "parallel_depth") >= 0.0);
        let balance = feature(&parallel, "parallel_balance");
        assert!(balance > 0.5 && balance <= 1.0, "{balance}");
        assert_eq!(feature(&parallel, "log2_threads"), 1.0);
    }
}
