//! The schedule space of GEMM-shaped tasks on CUDA GPUs: matmul, dense and batched matmul with
//! their fused epilogues. One sketch, `gpu_gemm_tiled` (block tile BM × BN over BK, a TM × TN
//! register tile per thread, cooperative vector loads into shared memory, optional double
//! buffering; see `gpu_gemm.rs` for the nest).
//!
//! The decision table walks through [`GpuSpace`] (`gpu_space.rs`), whose verifier defines the
//! points; the implicit-GEMM conv space (`gpu_conv_space.rs`) reuses this sketch's tiling rules,
//! resource model and nest.

use crate::gpu_gemm::{self, ceil_div, GpuGemmProblem, GpuGemmSchedule, Operand, OutputMap};
use crate::gpu_space::{useful_tile, GpuKnob, GpuResources, GpuSketch, GpuSpace};
use crate::space::ScheduleError;
use autotune_ir::{CudaTarget, Op, Program, Task};

pub const SKETCH: &str = "gpu_gemm_tiled";
const VERSION: &str = "gemm-cuda-v1";

pub(crate) const BLOCK_TILES: &[i64] = &[16, 32, 64, 128];
pub(crate) const BK: &[i64] = &[4, 8, 16, 32];
pub(crate) const THREAD_TILES: &[i64] = &[1, 2, 4, 8];
pub(crate) const VEC: &[i64] = &[1, 2, 4];

/// Registers a thread needs besides its tiles: the tile's base addresses, loop counters and
/// index arithmetic. ptxas figures of sampled points (`codegen`'s ptxas test) stay within the
/// estimate this gives.
pub(crate) const OVERHEAD_REGISTERS: i64 = 32;

/// The decisions of `gpu_gemm_tiled`, one typed table that sampling, mutation, repair, decoding
/// and counting walk (the pattern of the CPU spaces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    Bm,
    Bn,
    Tm,
    Tn,
    Bk,
    Vec,
    DoubleBuffer,
    UnrollK,
}

impl GpuKnob<GpuGemmSchedule> for Knob {
    fn name(self) -> &'static str {
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
            Knob::Vec => s.vec_a,
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
            // One width for both operands' loads.
            Knob::Vec => (s.vec_a, s.vec_b) = (v, v),
            Knob::DoubleBuffer => s.double_buffer = v != 0,
            Knob::UnrollK => s.unroll_k = v != 0,
        }
    }
}

/// What a tiled GEMM point on `p` asks of the GPU: its threads, its shared tiles, and registers
/// for the accumulators, one A and one B fragment, the elements of a tile copy (its loads are
/// unrolled, and all issued before the first store; a gathered element costs more,
/// [`Operand::registers_per_loaded_element`]) and [`OVERHEAD_REGISTERS`]. Without the copy's
/// share, points with few threads and big tiles spilled (ptxas: 424 bytes at 16 threads copying
/// 16×32 and 64×32 tiles).
pub(crate) fn tiled_resources(p: &GpuGemmProblem, s: &GpuGemmSchedule, gpu: &CudaTarget) -> GpuResources {
    let (a_loads, b_loads) = s.loads_in_flight();
    let copies = a_loads * p.a.registers_per_loaded_element() + b_loads * p.b.registers_per_loaded_element();
    GpuResources::new(
        s.n_threads(),
        s.shared_bytes(),
        s.tm * s.tn + s.tm + s.tn + copies + OVERHEAD_REGISTERS,
        gpu,
    )
}

/// The structural rules of a tiled GEMM point on `p` (tiles divide, vectors stay inside a
/// contiguous run and aligned, no tile far beyond its matrix).
pub(crate) fn tiled_structural(p: &GpuGemmProblem, s: &GpuGemmSchedule) -> bool {
    s.tm <= s.bm
        && s.tn <= s.bn
        && useful_tile(s.bm, BLOCK_TILES[0], p.m)
        && useful_tile(s.bn, BLOCK_TILES[0], p.n)
        && useful_tile(s.bk, BK[0], p.k)
        && p.a.vector_ok(s.vec_a, s.bk, s.bm)
        && p.b.vector_ok(s.vec_b, s.bk, s.bn)
        && (!s.double_buffer || ceil_div(p.k, s.bk) > 1)
}

/// Every tiled decision at its first value (the GEMM and the implicit-GEMM conv sketches).
pub(crate) const SMALLEST_TILE: GpuGemmSchedule = GpuGemmSchedule {
    bm: 16,
    bn: 16,
    bk: 4,
    tm: 1,
    tn: 1,
    vec_a: 1,
    vec_b: 1,
    double_buffer: false,
    unroll_k: false,
};

/// The classic SGEMM tile (128 × 128 blocks of 256 threads, 8 × 8 outputs each, float4 loads,
/// two stages): what repair shrinks to the shape and the target for a default.
pub(crate) const CLASSIC_SGEMM: GpuGemmSchedule = GpuGemmSchedule {
    bm: 128,
    bn: 128,
    bk: 8,
    tm: 8,
    tn: 8,
    vec_a: 4,
    vec_b: 4,
    double_buffer: true,
    unroll_k: true,
};

/// The sketch `gpu_gemm_tiled` on one problem.
#[derive(Debug, Clone)]
pub struct GemmSketch {
    problem: GpuGemmProblem,
}

impl GpuSketch for GemmSketch {
    type Schedule = GpuGemmSchedule;
    type Knob = Knob;
    const SKETCH: &'static str = SKETCH;
    const VERSION: &'static str = VERSION;
    const KNOBS: &'static [Knob] =
        &[Knob::Bm, Knob::Bn, Knob::Tm, Knob::Tn, Knob::Bk, Knob::Vec, Knob::DoubleBuffer, Knob::UnrollK];
    const SMALLEST: GpuGemmSchedule = SMALLEST_TILE;

    fn structural(&self, s: &GpuGemmSchedule, _gpu: &CudaTarget) -> bool {
        tiled_structural(&self.problem, s)
    }

    fn resources(&self, s: &GpuGemmSchedule, gpu: &CudaTarget) -> GpuResources {
        tiled_resources(&self.problem, s, gpu)
    }

    fn preferred(&self) -> GpuGemmSchedule {
        CLASSIC_SGEMM
    }

    fn lower(&self, s: &GpuGemmSchedule) -> Program {
        gpu_gemm::lower(&self.problem, s).into()
    }
}

/// The GPU GEMM space: matmul, dense and batched matmul on a [`CudaTarget`].
pub type GpuGemmSpace = GpuSpace<GemmSketch>;

impl GpuSpace<GemmSketch> {
    pub fn new(task: &Task, gpu: &CudaTarget) -> Result<GpuGemmSpace, ScheduleError> {
        let unsupported =
            || ScheduleError::Unsupported { task: task.description(), target: gpu.name.clone() };
        task.validate().map_err(|_| unsupported())?;
        let spec = match &task.op {
            Op::Matmul(s) => autotune_ir::BatchMatmulSpec {
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
        let (m, n, k) = (spec.m as i64, spec.n as i64, spec.k as i64);
        let dense = |param, (rows, cols): (i64, i64), broadcast: bool, k_along_cols| Operand::Dense {
            param,
            rows,
            cols,
            batch_stride: if broadcast { 0 } else { rows * cols },
            k_along_cols,
        };
        let a = if spec.trans_a {
            dense(0, (k, m), spec.a_broadcast, false)
        } else {
            dense(0, (m, k), spec.a_broadcast, true)
        };
        let b = if spec.trans_b {
            dense(1, (n, k), spec.b_broadcast, true)
        } else {
            dense(1, (k, n), spec.b_broadcast, false)
        };
        let problem = GpuGemmProblem::new(
            task,
            format!("gpu_gemm_b{}_m{m}_n{n}_k{k}", spec.batch),
            (spec.batch as i64, m, n, k),
            (a, b),
            OutputMap::Matrix,
        );
        GpuSpace::with_sketch(task, gpu, GemmSketch { problem })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu_space::assert_space_consistent;
    use crate::SpaceGenerator;
    use autotune_ir::{BatchMatmulSpec, EpilogueOp, LoopKind, Stmt};

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
                assert_space_consistent(&space, i as u64, 100);
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
        let names: Vec<&str> = GemmSketch::KNOBS.iter().map(|k| k.name()).collect();
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
