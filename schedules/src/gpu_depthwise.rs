//! The depthwise conv space on CUDA GPUs (one input channel per group, with or without a channel
//! multiplier), sketch `gpu_depthwise_direct`: a direct sliding window, not a GEMM (as a GEMM
//! each group is a single row, so a tile would be almost all idle).
//!
//! ```text
//! for.blockX plane (image, output channel), for.blockY rows, for.blockZ columns of the plane
//!   [allocate in_s Shared: the block's input tile with its halo]       (stage_input)
//!     for.threadX t in 0..threads_x·threads_y
//!       acc[outputs_y·outputs_x] = 0
//!       [cooperative copy of the input tile, zero in the padding; barrier] (stage_input)
//!       for ky, kx (unrolled or not): w = W[oc, ky, kx]
//!         for i, j unrolled: acc[i][j] += in(oh_i·sh + ky·dh, ow_j·sw + kx·dw) · w
//!       guarded stores of epilogue(acc)
//! ```
//! A thread's outputs are `outputs_y` consecutive rows (the rows of one tap overlap, so an
//! unrolled tile reads a staged input value once for several outputs) by `outputs_x` columns
//! `threads_x` apart (neighbouring threads store, and read from global, neighbouring columns).
//! Without staging each tap reads the input directly, guarded at the padding.

use crate::epilogue;
use crate::gpu_gemm::ceil_div;
use crate::gpu_space::{pow2_at_least, useful_tile, GpuKnob, GpuResources, GpuSketch, GpuSpace};
use crate::space::ScheduleError;
use crate::DepthwiseSpace;
use autotune_ir::{
    BufScope, CmpOp, Conv2dSpec, CudaTarget, Expr, GpuAxis, LoopKind, NestBuilder, Op, Program, Stmt, Task,
};

pub const SKETCH: &str = "gpu_depthwise_direct";
const VERSION: &str = "depthwise-cuda-v1";

const THREADS_X: &[i64] = &[8, 16, 32, 64];
const THREADS_Y: &[i64] = &[1, 2, 4, 8, 16];
const OUTPUTS: &[i64] = &[1, 2, 4];
/// Kernels with more taps than this keep their tap loops (code size, compile time).
const MAX_UNROLLED_TAPS: i64 = 64;
/// Registers besides the accumulators and the weights: indices, addresses, loop counters.
/// ptxas figures of sampled points (`codegen`'s offline test) stay within the estimate.
const OVERHEAD_REGISTERS: i64 = 32;

/// One point of `gpu_depthwise_direct`, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthwiseSchedule {
    threads_x: i64,
    threads_y: i64,
    outputs_x: i64,
    outputs_y: i64,
    stage_input: bool,
    unroll_taps: bool,
}

impl DepthwiseSchedule {
    fn n_threads(&self) -> i64 {
        self.threads_x * self.threads_y
    }
    /// Output tile of a block: rows, columns.
    fn block_tile(&self) -> (i64, i64) {
        (self.threads_y * self.outputs_y, self.threads_x * self.outputs_x)
    }
}

/// The decisions of `gpu_depthwise_direct`, in trace (and draw) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    ThreadsX,
    ThreadsY,
    OutputsX,
    OutputsY,
    StageInput,
    UnrollTaps,
}

impl GpuKnob<DepthwiseSchedule> for Knob {
    fn name(self) -> &'static str {
        match self {
            Knob::ThreadsX => "threads_x",
            Knob::ThreadsY => "threads_y",
            Knob::OutputsX => "outputs_x",
            Knob::OutputsY => "outputs_y",
            Knob::StageInput => "stage_input",
            Knob::UnrollTaps => "unroll_taps",
        }
    }

    fn values(self) -> &'static [i64] {
        match self {
            Knob::ThreadsX => THREADS_X,
            Knob::ThreadsY => THREADS_Y,
            Knob::OutputsX | Knob::OutputsY => OUTPUTS,
            Knob::StageInput | Knob::UnrollTaps => &[0, 1],
        }
    }

    fn get(self, s: &DepthwiseSchedule) -> i64 {
        match self {
            Knob::ThreadsX => s.threads_x,
            Knob::ThreadsY => s.threads_y,
            Knob::OutputsX => s.outputs_x,
            Knob::OutputsY => s.outputs_y,
            Knob::StageInput => i64::from(s.stage_input),
            Knob::UnrollTaps => i64::from(s.unroll_taps),
        }
    }

    fn set(self, s: &mut DepthwiseSchedule, v: i64) {
        match self {
            Knob::ThreadsX => s.threads_x = v,
            Knob::ThreadsY => s.threads_y = v,
            Knob::OutputsX => s.outputs_x = v,
            Knob::OutputsY => s.outputs_y = v,
            Knob::StageInput => s.stage_input = v != 0,
            Knob::UnrollTaps => s.unroll_taps = v != 0,
        }
    }
}

/// The sketch `gpu_depthwise_direct` on one conv.
#[derive(Debug, Clone)]
pub struct DepthwiseSketch {
    task: Task,
    conv: Conv2dSpec,
}

impl GpuSketch for DepthwiseSketch {
    type Schedule = DepthwiseSchedule;
    type Knob = Knob;
    const SKETCH: &'static str = SKETCH;
    const VERSION: &'static str = VERSION;
    const KNOBS: &'static [Knob] =
        &[Knob::ThreadsX, Knob::ThreadsY, Knob::OutputsX, Knob::OutputsY, Knob::StageInput, Knob::UnrollTaps];
    const SMALLEST: DepthwiseSchedule = DepthwiseSchedule {
        threads_x: 8,
        threads_y: 1,
        outputs_x: 1,
        outputs_y: 1,
        stage_input: false,
        unroll_taps: false,
    };

    fn structural(&self, s: &DepthwiseSchedule, gpu: &CudaTarget) -> bool {
        let (oh, ow) = (self.conv.out_h() as i64, self.conv.out_w() as i64);
        let (rows, cols) = s.block_tile();
        // Whole warps, unless one block covers the whole (small) plane: a partial warp idles
        // lanes the hardware schedules anyway.
        let covers_plane = rows >= oh && cols >= ow;
        useful_tile(s.threads_x, THREADS_X[0], ow)
            && useful_tile(s.threads_y, THREADS_Y[0], oh)
            && (s.outputs_x == 1 || cols <= pow2_at_least(ow))
            && (s.outputs_y == 1 || rows <= pow2_at_least(oh))
            && (s.n_threads() % i64::from(gpu.warp_size.max(1)) == 0 || covers_plane)
            && (!s.unroll_taps || self.taps() <= MAX_UNROLLED_TAPS)
    }

    /// Registers: the accumulators, the weights (all of them live when the taps are unrolled)
    /// and [`OVERHEAD_REGISTERS`]; shared memory: the staged input tile.
    fn resources(&self, s: &DepthwiseSchedule, gpu: &CudaTarget) -> GpuResources {
        let (in_rows, in_cols) = self.input_tile(s);
        let shared = if s.stage_input { 4 * in_rows * in_cols } else { 0 };
        let weights = if s.unroll_taps { self.taps() } else { 1 };
        let registers = s.outputs_x * s.outputs_y + weights + OVERHEAD_REGISTERS;
        GpuResources::new(s.n_threads(), shared, registers, gpu)
    }

    fn preferred(&self) -> DepthwiseSchedule {
        // 256 threads over a 16 × 32 tile, two rows of outputs each, input staged: each staged
        // value feeds every output whose window covers it from shared memory.
        DepthwiseSchedule {
            threads_x: 32,
            threads_y: 8,
            outputs_x: 1,
            outputs_y: 2,
            stage_input: true,
            unroll_taps: true,
        }
    }

    fn lower(&self, s: &DepthwiseSchedule) -> Program {
        self.nest(s).into()
    }
}

impl DepthwiseSketch {
    fn taps(&self) -> i64 {
        (self.conv.kh * self.conv.kw) as i64
    }

    /// The input rows and columns a block's output tile reads (its halo included).
    fn input_tile(&self, s: &DepthwiseSchedule) -> (i64, i64) {
        let c = &self.conv;
        let (rows, cols) = s.block_tile();
        (
            (rows - 1) * c.stride[0] as i64 + (c.kh as i64 - 1) * c.dilation[0] as i64 + 1,
            (cols - 1) * c.stride[1] as i64 + (c.kw as i64 - 1) * c.dilation[1] as i64 + 1,
        )
    }

    /// The nest of a verified point (see the module docs).
    fn nest(&self, s: &DepthwiseSchedule) -> autotune_ir::LoopNest {
        let (task, c) = (&self.task, &self.conv);
        let (oh, ow) = (c.out_h() as i64, c.out_w() as i64);
        let (h, w) = (c.h as i64, c.w as i64);
        let (sh, sw) = (c.stride[0] as i64, c.stride[1] as i64);
        let (dh, dw) = (c.dilation[0] as i64, c.dilation[1] as i64);
        let (kh, kw) = (c.kh as i64, c.kw as i64);
        let (rows, cols) = s.block_tile();
        let (in_rows, in_cols) = self.input_tile(s);
        let n_threads = s.n_threads();
        let inputs = task.inputs();
        let mut b = NestBuilder::new();
        let params: Vec<_> =
            inputs.iter().chain(task.outputs().iter()).map(|spec| b.param(spec.name, spec.len())).collect();
        let find = |name: &str| inputs.iter().position(|spec| spec.name == name).map(|i| params[i]);
        let (x, wt, y) = (params[0], params[1], params[params.len() - 1]);
        let (plane, by, bz, t) = (b.var("plane"), b.var("by"), b.var("bz"), b.var("t"));
        let (l, ky, kx, i, j) = (b.var("l"), b.var("ky"), b.var("kx"), b.var("i"), b.var("j"));
        let acc = b.buffer("acc", (s.outputs_x * s.outputs_y) as usize, BufScope::Register);
        let in_s = b.buffer("in_s", (in_rows * in_cols) as usize, BufScope::Shared);

        let channel = Expr::var(plane) % c.o as i64;
        // Group g = output channel / multiplier reads input channel g.
        let in_plane = Expr::var(plane).floor_div(Expr::int(c.o as i64)) * c.c as i64
            + channel.clone().floor_div(Expr::int(c.o_per_group() as i64));
        let (lx, ly) = (Expr::var(t) % s.threads_x, Expr::var(t).floor_div(Expr::int(s.threads_x)));
        // The thread's output (row i, column j) in the block's tile, and in the plane.
        let local_row = ly * s.outputs_y + Expr::var(i);
        let local_col = lx + Expr::var(j) * s.threads_x;
        let out_row = Expr::var(by) * rows + local_row.clone();
        let out_col = Expr::var(bz) * cols + local_col.clone();
        let cell = Expr::var(i) * s.outputs_x + Expr::var(j);
        let inside = |iy: &Expr, ix: &Expr| {
            iy.clone()
                .cmp(CmpOp::Ge, Expr::int(0))
                .and(iy.clone().cmp(CmpOp::Lt, Expr::int(h)))
                .and(ix.clone().cmp(CmpOp::Ge, Expr::int(0)))
                .and(ix.clone().cmp(CmpOp::Lt, Expr::int(w)))
        };
        let x_at = |iy: Expr, ix: Expr| Expr::load(x, (in_plane.clone() * h + iy) * w + ix);

        let mut thread_body = vec![Stmt::for_loop(
            i,
            Expr::int(0),
            Expr::int(s.outputs_x * s.outputs_y),
            LoopKind::Unrolled,
            vec![Stmt::store(acc, Expr::var(i), Expr::float(0.0))],
        )];
        let weight = Expr::load(wt, channel.clone() * (kh * kw) + Expr::var(ky) * kw + Expr::var(kx));
        let product = if s.stage_input {
            // The block's input tile starts at its first output's first tap.
            let (iy0, ix0) = (
                Expr::var(by) * (rows * sh) - c.pad[0] as i64,
                Expr::var(bz) * (cols * sw) - c.pad[1] as i64,
            );
            let total = in_rows * in_cols;
            let e = Expr::var(t) + Expr::var(l) * n_threads;
            let (r, col) = (e.clone().floor_div(Expr::int(in_cols)), e.clone() % in_cols);
            let (iy, ix) = (iy0 + r, ix0 + col);
            let copy = Stmt::If {
                cond: inside(&iy, &ix),
                then_body: vec![Stmt::store(in_s, e.clone(), x_at(iy, ix))],
                else_body: vec![Stmt::store(in_s, e.clone(), Expr::float(0.0))],
            };
            let body = if total % n_threads == 0 {
                vec![copy]
            } else {
                vec![Stmt::If {
                    cond: e.cmp(CmpOp::Lt, Expr::int(total)),
                    then_body: vec![copy],
                    else_body: vec![],
                }]
            };
            // A serial copy: unrolled, a few threads copying a big halo would be hundreds of loads.
            thread_body.push(Stmt::for_loop(
                l,
                Expr::int(0),
                Expr::int(ceil_div(total, n_threads)),
                LoopKind::Serial,
                body,
            ));
            thread_body.push(Stmt::Barrier);
            let value = Expr::load(
                in_s,
                (local_row * sh + Expr::var(ky) * dh) * in_cols + local_col * sw + Expr::var(kx) * dw,
            );
            Stmt::store(acc, cell.clone(), Expr::fma(value, weight, Expr::load(acc, cell.clone())))
        } else {
            let iy = out_row.clone() * sh + Expr::var(ky) * dh - c.pad[0] as i64;
            let ix = out_col.clone() * sw + Expr::var(kx) * dw - c.pad[1] as i64;
            Stmt::If {
                cond: inside(&iy, &ix),
                then_body: vec![Stmt::store(
                    acc,
                    cell.clone(),
                    Expr::fma(x_at(iy, ix), weight, Expr::load(acc, cell.clone())),
                )],
                else_body: vec![],
            }
        };
        let tile = Stmt::for_loop(
            i,
            Expr::int(0),
            Expr::int(s.outputs_y),
            LoopKind::Unrolled,
            vec![Stmt::for_loop(j, Expr::int(0), Expr::int(s.outputs_x), LoopKind::Unrolled, vec![product])],
        );
        let tap_kind = if s.unroll_taps { LoopKind::Unrolled } else { LoopKind::Serial };
        thread_body.push(Stmt::for_loop(
            ky,
            Expr::int(0),
            Expr::int(kh),
            tap_kind,
            vec![Stmt::for_loop(kx, Expr::int(0), Expr::int(kw), tap_kind, vec![tile])],
        ));

        let out_idx = (Expr::var(plane) * oh + out_row.clone()) * ow + out_col.clone();
        let bias = find("bias").map(|bias| Expr::load(bias, channel.clone()));
        let residual = find("residual").map(|r| Expr::load(r, out_idx.clone()));
        let value = epilogue::apply(&task.epilogue, Expr::load(acc, cell), bias, residual);
        let store = Stmt::If {
            cond: out_row.cmp(CmpOp::Lt, Expr::int(oh)).and(out_col.cmp(CmpOp::Lt, Expr::int(ow))),
            then_body: vec![Stmt::store(y, out_idx, value)],
            else_body: vec![],
        };
        thread_body.push(Stmt::for_loop(
            i,
            Expr::int(0),
            Expr::int(s.outputs_y),
            LoopKind::Unrolled,
            vec![Stmt::for_loop(j, Expr::int(0), Expr::int(s.outputs_x), LoopKind::Unrolled, vec![store])],
        ));

        let threads = Stmt::for_loop(
            t,
            Expr::int(0),
            Expr::int(n_threads),
            LoopKind::GpuThread(GpuAxis::X),
            vec![Stmt::Allocate { buf: acc, body: thread_body }],
        );
        let block = if s.stage_input { Stmt::Allocate { buf: in_s, body: vec![threads] } } else { threads };
        let grid = Stmt::for_loop(
            plane,
            Expr::int(0),
            Expr::int((c.n * c.o) as i64),
            LoopKind::GpuBlock(GpuAxis::X),
            vec![Stmt::for_loop(
                by,
                Expr::int(0),
                Expr::int(ceil_div(oh, rows)),
                LoopKind::GpuBlock(GpuAxis::Y),
                vec![Stmt::for_loop(
                    bz,
                    Expr::int(0),
                    Expr::int(ceil_div(ow, cols)),
                    LoopKind::GpuBlock(GpuAxis::Z),
                    vec![block],
                )],
            )],
        );
        let name =
            format!("gpu_depthwise_c{}_o{}_{}x{}_k{}x{}_s{}", c.c, c.o, c.h, c.w, c.kh, c.kw, c.stride[0]);
        b.finish(&name, vec![grid])
    }
}

/// The depthwise conv space on a [`CudaTarget`].
pub type GpuDepthwiseSpace = GpuSpace<DepthwiseSketch>;

impl GpuSpace<DepthwiseSketch> {
    /// A space for depthwise convs ([`DepthwiseSpace::applies_to`]).
    pub fn new(task: &Task, gpu: &CudaTarget) -> Result<GpuDepthwiseSpace, ScheduleError> {
        match &task.op {
            Op::Conv2d(conv)
                if DepthwiseSpace::applies_to(conv) && task.layout.is_plain() && task.validate().is_ok() =>
            {
                GpuSpace::with_sketch(task, gpu, DepthwiseSketch { task: task.clone(), conv: *conv })
            }
            _ => Err(ScheduleError::Unsupported { task: task.description(), target: gpu.name.clone() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu_space::assert_space_consistent;
    use crate::SpaceGenerator;
    use autotune_ir::EpilogueOp;

    fn depthwise(c: usize, multiplier: usize, hw: usize, k: usize, stride: usize, pad: usize) -> Conv2dSpec {
        Conv2dSpec {
            n: 1,
            c,
            h: hw,
            w: hw,
            o: c * multiplier,
            kh: k,
            kw: k,
            stride: [stride; 2],
            pad: [pad; 4],
            dilation: [1, 1],
            groups: c,
        }
    }

    fn tasks() -> Vec<Task> {
        vec![
            Task::new(Op::Conv2d(depthwise(32, 1, 112, 3, 1, 1)), vec![EpilogueOp::Bias, EpilogueOp::Relu]),
            Task::new(Op::Conv2d(depthwise(96, 1, 56, 3, 2, 1)), vec![]),
            Task::new(Op::Conv2d(depthwise(8, 2, 7, 5, 1, 2)), vec![EpilogueOp::Add]),
            Task::new(Op::Conv2d(depthwise(4, 1, 1, 1, 1, 0)), vec![]),
            Task::new(Op::Conv2d(Conv2dSpec { dilation: [2, 2], ..depthwise(6, 1, 9, 3, 1, 2) }), vec![]),
        ]
    }

    #[test]
    fn sampled_points_verify_round_trip_and_mutate_within_the_space() {
        for gpu in [CudaTarget::a100(), CudaTarget::h100()] {
            for (i, task) in tasks().iter().enumerate() {
                let space = GpuDepthwiseSpace::new(task, &gpu).expect("space");
                assert_space_consistent(&space, i as u64, 12);
            }
        }
    }

    #[test]
    fn blocks_are_whole_warps_unless_one_covers_the_plane() {
        let gpu = CudaTarget::h100();
        let big = GpuDepthwiseSpace::new(&tasks()[0], &gpu).expect("space");
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
        for _ in 0..50 {
            let r = big.resources(&big.sample(&mut rng)).expect("verified");
            assert_eq!(r.n_threads % i64::from(gpu.warp_size), 0, "{r:?}");
        }
        // A 1 × 1 plane: one block of 8 threads covers it.
        let tiny = GpuDepthwiseSpace::new(&tasks()[3], &gpu).expect("space");
        assert_eq!(tiny.resources(&tiny.default_trace()).expect("verified").n_threads, 8);
        // A wider warp (a target fact, not a constant) prunes 32-thread blocks.
        let wide = CudaTarget { warp_size: 64, ..CudaTarget::h100() };
        let space = GpuDepthwiseSpace::new(&tasks()[0], &wide).expect("space");
        for _ in 0..50 {
            assert_eq!(space.resources(&space.sample(&mut rng)).expect("verified").n_threads % 64, 0);
        }
    }

    #[test]
    fn the_staged_halo_is_counted_in_shared_memory() {
        let space = GpuDepthwiseSpace::new(&tasks()[1], &CudaTarget::a100()).expect("space");
        let t = space.default_trace();
        assert_eq!(t.get("stage_input"), Some(1), "{}", t.display());
        let s = space.decode(&t).expect("verified");
        let (rows, cols) = s.block_tile();
        // Stride 2, 3 × 3: (rows − 1)·2 + 3 input rows by (cols − 1)·2 + 3 columns.
        let expected = 4 * ((rows - 1) * 2 + 3) * ((cols - 1) * 2 + 3);
        assert_eq!(space.resources(&t).expect("verified").shared_bytes, expected);
        let text = autotune_ir::printer::print(&space.lower_default().kernel);
        assert!(text.contains("barrier") && text.contains("Shared"), "{text}");
    }

    #[test]
    fn decision_names_keep_their_trace_order() {
        let names: Vec<&str> = DepthwiseSketch::KNOBS.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["threads_x", "threads_y", "outputs_x", "outputs_y", "stage_input", "unroll_taps"]);
    }
}
