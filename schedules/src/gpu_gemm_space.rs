//! The schedule space of GEMM-shaped tasks on CUDA GPUs: matmul, dense and batched matmul with
//! their fused epilogues. One sketch, `gpu_gemm_tiled` (block tile BM × BN over BK, a TM × TN
//! register tile per thread, cooperative vector loads into shared memory, optional double
//! buffering; see `gpu_gemm.rs` for the nest).
//!
//! The verifier ([`GpuResources`]) is the one judge of which points exist: a decision's domain is
//! the values with which the point so far still extends to a verified point, so a point that
//! needs more threads, shared memory or registers than the [`CudaTarget`] has is never sampled,
//! never built, never launched.

use crate::gpu_gemm::{self, ceil_div, GpuGemmProblem, GpuGemmSchedule};
use crate::space::{ScheduleError, SpaceGenerator};
use autotune_ir::{BatchMatmulSpec, CudaTarget, Op, Program, Task, Trace};
use rand::{Rng, RngCore};

pub const SKETCH: &str = "gpu_gemm_tiled";
const VERSION: &str = "gemm-cuda-v1";

const BLOCK_TILES: &[i64] = &[16, 32, 64, 128];
const BK: &[i64] = &[4, 8, 16, 32];
const THREAD_TILES: &[i64] = &[1, 2, 4, 8];
const VEC: &[i64] = &[1, 2, 4];

/// Registers a thread needs besides its tiles: the tile's base addresses, loop counters and
/// index arithmetic. ptxas figures of sampled points (`codegen`'s ptxas test) stay within the
/// estimate this gives.
const OVERHEAD_REGISTERS: i64 = 32;

/// Every decision at its first value: a starting point that every decision then overwrites.
const SMALLEST: GpuGemmSchedule =
    GpuGemmSchedule { bm: 16, bn: 16, bk: 4, tm: 1, tn: 1, vec: 1, double_buffer: false, unroll_k: false };

/// The decisions of `gpu_gemm_tiled`, one typed table that sampling, mutation, repair, decoding
/// and counting walk (the pattern of the CPU spaces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Knob {
    Bm,
    Bn,
    Tm,
    Tn,
    Bk,
    Vec,
    DoubleBuffer,
    UnrollK,
}

impl Knob {
    /// Trace order, which is also the draw order: each domain depends on the decisions before it.
    pub(crate) const ALL: [Knob; 8] =
        [Knob::Bm, Knob::Bn, Knob::Tm, Knob::Tn, Knob::Bk, Knob::Vec, Knob::DoubleBuffer, Knob::UnrollK];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Knob::Bm => "bm",
            Knob::Bn => "bn",
            Knob::Tm => "tm",
            Knob::Tn => "tn",
            Knob::Bk => "bk",
            Knob::Vec => "vec",
            Knob::DoubleBuffer => "double_buffer",
            Knob::UnrollK => "unroll_k",
        }
    }

    /// Every value the decision can take on some shape, before the verifier.
    fn values(self) -> &'static [i64] {
        match self {
            Knob::Bm | Knob::Bn => BLOCK_TILES,
            Knob::Tm | Knob::Tn => THREAD_TILES,
            Knob::Bk => BK,
            Knob::Vec => VEC,
            Knob::DoubleBuffer | Knob::UnrollK => &[0, 1],
        }
    }

    fn get(self, s: &GpuGemmSchedule) -> i64 {
        match self {
            Knob::Bm => s.bm,
            Knob::Bn => s.bn,
            Knob::Tm => s.tm,
            Knob::Tn => s.tn,
            Knob::Bk => s.bk,
            Knob::Vec => s.vec,
            Knob::DoubleBuffer => i64::from(s.double_buffer),
            Knob::UnrollK => i64::from(s.unroll_k),
        }
    }

    fn set(self, s: &mut GpuGemmSchedule, v: i64) {
        match self {
            Knob::Bm => s.bm = v,
            Knob::Bn => s.bn = v,
            Knob::Tm => s.tm = v,
            Knob::Tn => s.tn = v,
            Knob::Bk => s.bk = v,
            Knob::Vec => s.vec = v,
            Knob::DoubleBuffer => s.double_buffer = v != 0,
            Knob::UnrollK => s.unroll_k = v != 0,
        }
    }
}

/// What one point asks of the GPU, as the verifier predicts it, and the target's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuResources {
    pub n_threads: i64,
    /// Static shared memory of a block: exactly what the kernel declares.
    pub shared_bytes: i64,
    /// Estimated 32-bit registers per thread: accumulators, one A and one B fragment, the
    /// elements of a tile copy (its loads are unrolled, and all issued before the first store)
    /// and [`OVERHEAD_REGISTERS`]. Without the copy's share, points with few threads and big
    /// tiles spilled (ptxas: 424 bytes at 16 threads copying 16×32 and 64×32 tiles).
    pub registers_per_thread: i64,
    /// The most registers per thread a block of `n_threads` can have on the target: what the
    /// kernel is compiled for (`__launch_bounds__`), so ptxas must stay within it.
    pub register_limit: i64,
}

impl GpuResources {
    fn of(s: &GpuGemmSchedule, gpu: &CudaTarget) -> GpuResources {
        let n_threads = s.n_threads();
        let per_block = i64::from(gpu.registers_per_block) / n_threads.max(1);
        // Registers are allocated per warp in units of 8 per thread.
        let register_limit = (per_block / 8 * 8).min(i64::from(gpu.max_registers_per_thread));
        GpuResources {
            n_threads,
            shared_bytes: s.shared_bytes(),
            registers_per_thread: s.tm * s.tn + s.tm + s.tn + s.loads_in_flight() + OVERHEAD_REGISTERS,
            register_limit,
        }
    }

    fn fits(&self, gpu: &CudaTarget) -> bool {
        self.n_threads >= 1
            && self.n_threads <= i64::from(gpu.max_threads_per_block)
            && self.shared_bytes <= gpu.shared_bytes_per_block as i64
            && self.registers_per_thread <= self.register_limit
    }
}

/// The smallest power of two ≥ `extent` (1 for extents below 1).
fn pow2_at_least(extent: i64) -> i64 {
    (extent.max(1) as u64).next_power_of_two() as i64
}

#[derive(Debug, Clone)]
pub struct GpuGemmSpace {
    task: Task,
    problem: GpuGemmProblem,
    gpu: CudaTarget,
}

impl GpuGemmSpace {
    pub fn new(task: &Task, gpu: &CudaTarget) -> Result<GpuGemmSpace, ScheduleError> {
        let unsupported =
            || ScheduleError::Unsupported { task: task.description(), target: gpu.name.clone() };
        task.validate().map_err(|_| unsupported())?;
        let spec = match &task.op {
            Op::Matmul(s) => BatchMatmulSpec {
                batch: 1,
                m: s.m,
                n: s.n,
                k: s.k,
                trans_a: false,
                trans_b: false,
                a_broadcast: true,
                b_broadcast: true,
                b_constant: false,
            },
            Op::BatchMatmul(b) => *b,
            Op::Conv2d(_) | Op::Pool2d(_) => return Err(unsupported()),
        };
        let names: Vec<&str> = task.inputs().iter().map(|s| s.name).collect();
        let problem = GpuGemmProblem {
            name: format!("gpu_gemm_b{}_m{}_n{}_k{}", spec.batch, spec.m, spec.n, spec.k),
            spec,
            epilogue: task.epilogue.clone(),
            params: task.inputs().iter().chain(task.outputs().iter()).map(|s| (s.name, s.len())).collect(),
            bias: names.iter().position(|n| *n == "bias"),
            residual: names.iter().position(|n| *n == "residual"),
        };
        let space = GpuGemmSpace { task: task.clone(), problem, gpu: gpu.clone() };
        if space.size() == 0 {
            return Err(unsupported());
        }
        Ok(space)
    }

    /// The verifier's figures for a trace of this space (what the ptxas check compares with).
    pub fn resources(&self, trace: &Trace) -> Result<GpuResources, ScheduleError> {
        Ok(GpuResources::of(&self.decode(trace)?, &self.gpu))
    }

    /// Structural rules (tiles divide, vectors stay inside a row and aligned) and the target's
    /// limits: the one definition of a point.
    fn verify(&self, s: &GpuGemmSchedule) -> bool {
        let spec = self.problem.spec;
        let (m, n, k) = (spec.m as i64, spec.n as i64, spec.k as i64);
        // Contiguous extents of A and B in memory: a vector must not cross a row, and its start
        // must be aligned to it.
        let a_contiguous = if spec.trans_a { (m, s.bm) } else { (k, s.bk) };
        let b_contiguous = if spec.trans_b { (k, s.bk) } else { (n, s.bn) };
        let vec_ok = |(extent, tile): (i64, i64)| extent % s.vec == 0 && tile % s.vec == 0;
        // Tiles larger than the matrix (rounded to a power of two) only add idle threads.
        let useful = |tile: i64, extent: i64| tile == BLOCK_TILES[0] || tile <= pow2_at_least(extent);
        s.tm <= s.bm
            && s.tn <= s.bn
            && useful(s.bm, m)
            && useful(s.bn, n)
            && (s.bk == BK[0] || s.bk <= pow2_at_least(k))
            && vec_ok(a_contiguous)
            && vec_ok(b_contiguous)
            && (!s.double_buffer || ceil_div(k, s.bk) > 1)
            && GpuResources::of(s, &self.gpu).fits(&self.gpu)
    }

    /// Whether the decisions from `from` on (trace order) can be chosen so that `s` verifies.
    fn completable(&self, s: &mut GpuGemmSchedule, from: usize) -> bool {
        let Some(&knob) = Knob::ALL.get(from) else { return self.verify(s) };
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
    fn domain(&self, s: &GpuGemmSchedule, index: usize) -> Vec<i64> {
        let knob = Knob::ALL[index];
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
    fn repair(&self, s: &mut GpuGemmSchedule) {
        for (index, knob) in Knob::ALL.into_iter().enumerate() {
            let domain = self.domain(s, index);
            let v = knob.get(s);
            if !domain.contains(&v) {
                if let Some(nearest) = domain.iter().copied().min_by_key(|d| (d - v).abs()) {
                    knob.set(s, nearest);
                }
            }
        }
    }

    fn default_schedule(&self) -> GpuGemmSchedule {
        // The classic SGEMM tile (128 × 128 blocks of 256 threads, 8 × 8 outputs each, float4
        // loads, two stages), shrunk by repair to what the shape and the target allow.
        let mut s = GpuGemmSchedule {
            bm: 128,
            bn: 128,
            bk: 8,
            tm: 8,
            tn: 8,
            vec: 4,
            double_buffer: true,
            unroll_k: true,
        };
        self.repair(&mut s);
        s
    }

    fn to_trace(s: &GpuGemmSchedule) -> Trace {
        Trace::new(SKETCH, Knob::ALL.iter().map(|&knob| (knob.name(), knob.get(s))).collect())
    }

    fn decode(&self, trace: &Trace) -> Result<GpuGemmSchedule, ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidTrace {
            trace: trace.display(),
            space: VERSION.into(),
            reason,
        };
        if trace.sketch != SKETCH {
            return Err(invalid(format!("sketch is `{}`", trace.sketch)));
        }
        let mut s = SMALLEST;
        for knob in Knob::ALL {
            let v = trace
                .get(knob.name())
                .ok_or_else(|| invalid(format!("decision `{}` missing", knob.name())))?;
            knob.set(&mut s, v);
        }
        if !self.verify(&s) {
            let r = GpuResources::of(&s, &self.gpu);
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

impl SpaceGenerator for GpuGemmSpace {
    fn version(&self) -> &'static str {
        VERSION
    }

    fn task(&self) -> &Task {
        &self.task
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Trace {
        let mut s = self.default_schedule();
        for (index, knob) in Knob::ALL.into_iter().enumerate() {
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
            let index = rng.gen_range(0..Knob::ALL.len());
            let knob = Knob::ALL[index];
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
        for knob in Knob::ALL {
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
        Ok(gpu_gemm::lower(&self.problem, &self.decode(trace)?).into())
    }

    fn size(&self) -> u64 {
        fn count(space: &GpuGemmSpace, s: &mut GpuGemmSchedule, i: usize) -> u64 {
            let Some(&knob) = Knob::ALL.get(i) else { return u64::from(space.verify(s)) };
            knob.values()
                .iter()
                .map(|&v| {
                    knob.set(s, v);
                    count(space, s, i + 1)
                })
                .sum()
        }
        let mut s = SMALLEST;
        count(self, &mut s, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotune_ir::{EpilogueOp, LoopKind, Stmt};
    use rand::SeedableRng;

    fn tasks() -> Vec<Task> {
        let bmm = |batch, m, n, k, trans_a, trans_b| {
            Task::new(
                Op::BatchMatmul(BatchMatmulSpec {
                    batch,
                    m,
                    n,
                    k,
                    trans_a,
                    trans_b,
                    a_broadcast: false,
                    b_broadcast: batch > 1 && trans_b,
                    b_constant: false,
                }),
                vec![EpilogueOp::Bias, EpilogueOp::Relu],
            )
        };
        vec![
            Task::matmul(4096, 4096, 4096),
            Task::matmul(1, 1, 1),
            Task::matmul(17, 33, 65),
            Task::matmul(1, 1000, 2048),
            bmm(3, 50, 64, 24, true, false),
            bmm(2, 64, 30, 12, false, true),
        ]
    }

    #[test]
    fn every_sampled_point_verifies_on_both_presets() {
        for gpu in [CudaTarget::a100(), CudaTarget::h100()] {
            for (i, task) in tasks().iter().enumerate() {
                let space = GpuGemmSpace::new(task, &gpu).expect("space");
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
                let mut traces: Vec<Trace> = (0..100).map(|_| space.sample(&mut rng)).collect();
                traces.push(space.default_trace());
                for t in &traces {
                    let r = space.resources(t).unwrap_or_else(|e| panic!("{}: {e}", task.description()));
                    assert!(r.n_threads <= 1024 && r.shared_bytes <= 48 << 10, "{r:?}");
                    assert!(r.registers_per_thread <= r.register_limit, "{r:?}");
                    let m = space.mutate(t, &mut rng);
                    space.decode(&m).unwrap_or_else(|e| panic!("mutation of {}: {e}", t.display()));
                    let c = space.crossover(t, &m, &mut rng);
                    space.decode(&c).unwrap_or_else(|e| panic!("child of {}: {e}", t.display()));
                }
                assert!(space.size() >= 1, "{}", task.description());
            }
        }
    }

    #[test]
    fn the_verifier_prunes_what_the_target_cannot_run() {
        let space = GpuGemmSpace::new(&Task::matmul(4096, 4096, 4096), &CudaTarget::h100()).expect("space");
        let mut t = space.default_trace();
        assert_eq!(
            t.decisions.iter().map(|d| d.value).collect::<Vec<_>>(),
            vec![128, 128, 8, 8, 8, 4, 1, 1],
            "the classic SGEMM tile by default"
        );
        // 128 × 128 outputs one per thread: 16384 threads.
        for d in &mut t.decisions {
            if d.name == "tm" || d.name == "tn" {
                d.value = 1;
            }
        }
        let err = space.decode(&t).expect_err("too many threads");
        assert!(err.to_string().contains("16384 threads"), "{err}");
        // 128 × 128 × 32 double-buffered: 64 KiB of shared memory, over the 48 KiB static limit.
        let mut t = space.default_trace();
        for d in &mut t.decisions {
            if d.name == "bk" {
                d.value = 32;
            }
        }
        assert!(space.decode(&t).expect_err("shared").to_string().contains("65536 shared bytes"));
        // A target with a smaller register file prunes the big register tiles.
        let small = CudaTarget { registers_per_block: 16_384, ..CudaTarget::h100() };
        let small_space = GpuGemmSpace::new(&Task::matmul(4096, 4096, 4096), &small).expect("space");
        assert!(small_space.size() < space.size());
        assert!(small_space.decode(&space.default_trace()).is_err(), "256 threads × 120 registers > 16384");
    }

    #[test]
    fn vectors_need_divisible_rows() {
        // K = 65 and N = 33: no vector divides a row of A or B.
        let space = GpuGemmSpace::new(&Task::matmul(17, 33, 65), &CudaTarget::a100()).expect("space");
        let s = space.default_schedule();
        assert_eq!(space.domain(&s, 5), vec![1]);
    }

    #[test]
    fn decision_names_keep_their_trace_order() {
        let names: Vec<&str> = Knob::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["bm", "bn", "tm", "tn", "bk", "vec", "double_buffer", "unroll_k"]);
    }

    #[test]
    fn the_nest_binds_blocks_and_threads_and_syncs() {
        let space = GpuGemmSpace::new(&Task::matmul(256, 256, 256), &CudaTarget::h100()).expect("space");
        let nest = space.lower_default().kernel;
        let text = autotune_ir::printer::print(&nest);
        for expected in
            ["for.blockZ", "for.blockY", "for.blockX", "for.threadX", "barrier", "Shared", "Register"]
        {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
        let Some(Stmt::For(z)) = nest.body.first() else { panic!("blocks outermost") };
        assert_eq!(z.kind, LoopKind::GpuBlock(autotune_ir::GpuAxis::Z));
    }
}
