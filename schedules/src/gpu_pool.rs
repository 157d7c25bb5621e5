//! The pooling space on CUDA GPUs (max and average, either count, padding, dilation, ceil mode,
//! global pooling as a window the size of the plane), sketch `gpu_pool_direct`.
//!
//! ```text
//! for.blockX b
//!   for.threadX t in 0..warps·warp_size
//!     acc[outputs], count[outputs] = −∞ or 0, 0
//!     for ky, kx (unrolled or not), for o unrolled:     e = (b·outputs + o)·threads + t
//!       if e is an output and its tap is inside the input: acc[o] = max/+ (acc[o], X[tap])
//!       (average) count[o] += 1 where the tap counts (inside, or inside input + padding)
//!     guarded stores: acc, or acc / max(count, 1)
//! ```
//! Threads run over flat NCHW output elements, so neighbouring threads read neighbouring
//! windows and store neighbouring outputs; a thread's `outputs` elements are a block's width
//! apart and interleaved inside the tap loop (independent chains in flight). Window counts are
//! counted as the taps are visited, so every padding and ceil-mode edge divides as the
//! reference does.

use crate::epilogue;
use crate::gpu_gemm::ceil_div;
use crate::gpu_space::{useful_tile, GpuKnob, GpuResources, GpuSketch, GpuSpace};
use crate::padded::inside_plane;
use crate::space::ScheduleError;
use autotune_ir::{
    BinOp, BufScope, CmpOp, CudaTarget, Expr, GpuAxis, LoopKind, NestBuilder, Op, Pool2dSpec, PoolKind,
    Program, Stmt, Task,
};

pub const SKETCH: &str = "gpu_pool_direct";
const VERSION: &str = "pool-cuda-v1";

/// Warps per block.
const WARPS: &[i64] = &[1, 2, 4, 8, 16, 32];
const OUTPUTS: &[i64] = &[1, 2, 4, 8];
/// Windows with more taps than this are never unrolled (global pooling over 56×56…).
const MAX_UNROLLED_TAPS: i64 = 64;
/// Registers besides each output's accumulator, count and index: loop counters, the tap's
/// position. ptxas figures of sampled points (`codegen`'s offline test) stay within the estimate.
const OVERHEAD_REGISTERS: i64 = 24;
/// Registers per output in flight: accumulator, count, its decoded position and guards (ptxas:
/// 80 for 8 outputs of a rolled 7 × 7 window).
const REGISTERS_PER_OUTPUT: i64 = 8;
/// An unrolled window's loads issued ahead (ptxas: 64 for 4 outputs of an unrolled 7 × 7).
const UNROLLED_WINDOW_REGISTERS: i64 = 8;

/// One point of `gpu_pool_direct`, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSchedule {
    warps: i64,
    outputs: i64,
    unroll_window: bool,
}

/// The decisions of `gpu_pool_direct`, in trace (and draw) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    Warps,
    Outputs,
    UnrollWindow,
}

impl GpuKnob<PoolSchedule> for Knob {
    fn name(self) -> &'static str {
        match self {
            Knob::Warps => "warps",
            Knob::Outputs => "outputs",
            Knob::UnrollWindow => "unroll_window",
        }
    }

    fn values(self) -> &'static [i64] {
        match self {
            Knob::Warps => WARPS,
            Knob::Outputs => OUTPUTS,
            Knob::UnrollWindow => &[0, 1],
        }
    }

    fn get(self, s: &PoolSchedule) -> i64 {
        match self {
            Knob::Warps => s.warps,
            Knob::Outputs => s.outputs,
            Knob::UnrollWindow => i64::from(s.unroll_window),
        }
    }

    fn set(self, s: &mut PoolSchedule, v: i64) {
        match self {
            Knob::Warps => s.warps = v,
            Knob::Outputs => s.outputs = v,
            Knob::UnrollWindow => s.unroll_window = v != 0,
        }
    }
}

/// The sketch `gpu_pool_direct` on one pooling.
#[derive(Debug, Clone)]
pub struct PoolSketch {
    task: Task,
    pool: Pool2dSpec,
    /// The target's warp size: blocks are whole warps.
    warp_size: i64,
}

impl PoolSketch {
    fn n_outputs(&self) -> i64 {
        (self.pool.n * self.pool.c * self.pool.out_h() * self.pool.out_w()) as i64
    }

    fn n_threads(&self, s: &PoolSchedule) -> i64 {
        s.warps * self.warp_size
    }
}

impl GpuSketch for PoolSketch {
    type Schedule = PoolSchedule;
    type Knob = Knob;
    const SKETCH: &'static str = SKETCH;
    const VERSION: &'static str = VERSION;
    const KNOBS: &'static [Knob] = &[Knob::Warps, Knob::Outputs, Knob::UnrollWindow];
    const SMALLEST: PoolSchedule = PoolSchedule { warps: 1, outputs: 1, unroll_window: false };

    fn structural(&self, s: &PoolSchedule, _gpu: &CudaTarget) -> bool {
        let taps = (self.pool.kh * self.pool.kw) as i64;
        // A block covering more than the outputs (rounded to a power of two) only adds idle
        // threads.
        useful_tile(self.n_threads(s) * s.outputs, self.warp_size, self.n_outputs())
            && (!s.unroll_window || taps <= MAX_UNROLLED_TAPS)
    }

    fn resources(&self, s: &PoolSchedule, gpu: &CudaTarget) -> GpuResources {
        let window = if s.unroll_window { UNROLLED_WINDOW_REGISTERS } else { 0 };
        GpuResources::new(
            self.n_threads(s),
            0,
            s.outputs * REGISTERS_PER_OUTPUT + window + OVERHEAD_REGISTERS,
            gpu,
        )
    }

    fn preferred(&self) -> PoolSchedule {
        // 256 threads, two outputs each: enough blocks in flight for a memory-bound kernel.
        PoolSchedule { warps: 8, outputs: 2, unroll_window: true }
    }

    fn lower(&self, s: &PoolSchedule) -> Program {
        self.lower_with_threads(s, self.n_threads(s)).into()
    }
}

impl PoolSketch {
    fn lower_with_threads(&self, s: &PoolSchedule, n_threads: i64) -> autotune_ir::LoopNest {
        let p = &self.pool;
        let (oh, ow) = (p.out_h() as i64, p.out_w() as i64);
        let (h, w) = (p.h as i64, p.w as i64);
        let total = self.n_outputs();
        let is_max = p.kind == PoolKind::Max;
        let inputs = self.task.inputs();
        let mut b = NestBuilder::new();
        let params: Vec<_> = inputs
            .iter()
            .chain(self.task.outputs().iter())
            .map(|spec| b.param(spec.name, spec.len()))
            .collect();
        let find = |name: &str| inputs.iter().position(|spec| spec.name == name).map(|i| params[i]);
        let (x, y) = (params[0], params[params.len() - 1]);
        let (blk, t, o, ky, kx) = (b.var("b"), b.var("t"), b.var("o"), b.var("ky"), b.var("kx"));
        let acc = b.buffer("acc", s.outputs as usize, BufScope::Register);
        let count = b.buffer("count", s.outputs as usize, BufScope::Register);

        let e = (Expr::var(blk) * s.outputs + Expr::var(o)) * n_threads + Expr::var(t);
        let is_output = e.clone().cmp(CmpOp::Lt, Expr::int(total));
        let plane = e.clone().floor_div(Expr::int(oh * ow));
        let (row, col) = ((e.clone().floor_div(Expr::int(ow))) % oh, e.clone() % ow);
        let iy = row * p.stride[0] as i64 + Expr::var(ky) * p.dilation[0] as i64 - p.pad[0] as i64;
        let ix = col * p.stride[1] as i64 + Expr::var(kx) * p.dilation[1] as i64 - p.pad[1] as i64;
        let inside = inside_plane(iy.clone(), ix.clone(), h, w);
        let cell = Expr::var(o);
        let value = Expr::load(x, (plane.clone() * h + iy.clone()) * w + ix.clone());
        let op = if is_max { BinOp::Max } else { BinOp::Add };
        let mut visit =
            vec![Stmt::store(acc, cell.clone(), epilogue::bin(op, Expr::load(acc, cell.clone()), value))];
        let add_one = || {
            Stmt::store(
                count,
                cell.clone(),
                epilogue::bin(BinOp::Add, Expr::load(count, cell.clone()), Expr::float(1.0)),
            )
        };
        let mut tap = Vec::new();
        if !is_max && !p.count_include_pad {
            visit.push(add_one());
        }
        tap.push(Stmt::If { cond: is_output.clone().and(inside), then_body: visit, else_body: vec![] });
        if !is_max && p.count_include_pad {
            // The window counts the input and the declared padding (ceil mode may run past
            // the end padding); a window never starts before the begin padding.
            let counted = iy
                .cmp(CmpOp::Lt, Expr::int(h + p.pad[2] as i64))
                .and(ix.cmp(CmpOp::Lt, Expr::int(w + p.pad[3] as i64)));
            tap.push(Stmt::If { cond: counted, then_body: vec![add_one()], else_body: vec![] });
        }
        let tap_kind = if s.unroll_window { LoopKind::Unrolled } else { LoopKind::Serial };
        let taps = Stmt::for_loop(
            ky,
            Expr::int(0),
            Expr::int(p.kh as i64),
            tap_kind,
            vec![Stmt::for_loop(
                kx,
                Expr::int(0),
                Expr::int(p.kw as i64),
                tap_kind,
                vec![Stmt::for_loop(o, Expr::int(0), Expr::int(s.outputs), LoopKind::Unrolled, tap)],
            )],
        );
        let start = if is_max { f32::NEG_INFINITY } else { 0.0 };
        let init = Stmt::for_loop(
            o,
            Expr::int(0),
            Expr::int(s.outputs),
            LoopKind::Unrolled,
            vec![
                Stmt::store(acc, cell.clone(), Expr::float(start)),
                Stmt::store(count, cell.clone(), Expr::float(0.0)),
            ],
        );
        let pooled = if is_max {
            Expr::load(acc, cell.clone())
        } else {
            epilogue::bin(
                BinOp::Div,
                Expr::load(acc, cell.clone()),
                Expr::load(count, cell.clone()).max(Expr::float(1.0)),
            )
        };
        let bias = find("bias").map(|bias| Expr::load(bias, plane % p.c as i64));
        let residual = find("residual").map(|r| Expr::load(r, e.clone()));
        let store = Stmt::for_loop(
            o,
            Expr::int(0),
            Expr::int(s.outputs),
            LoopKind::Unrolled,
            vec![Stmt::If {
                cond: is_output,
                then_body: vec![Stmt::store(
                    y,
                    e,
                    epilogue::apply(&self.task.epilogue, pooled, bias, residual),
                )],
                else_body: vec![],
            }],
        );
        let threads = Stmt::for_loop(
            t,
            Expr::int(0),
            Expr::int(n_threads),
            LoopKind::GpuThread(GpuAxis::X),
            vec![Stmt::Allocate {
                buf: acc,
                body: vec![Stmt::Allocate { buf: count, body: vec![init, taps, store] }],
            }],
        );
        let grid = Stmt::for_loop(
            blk,
            Expr::int(0),
            Expr::int(ceil_div(total, n_threads * s.outputs)),
            LoopKind::GpuBlock(GpuAxis::X),
            vec![threads],
        );
        let kind = if is_max { "max" } else { "avg" };
        let name = format!("gpu_pool_{kind}_c{}_{}x{}_k{}x{}_s{}", p.c, p.h, p.w, p.kh, p.kw, p.stride[0]);
        b.finish(&name, vec![grid])
    }
}

/// The pooling space on a [`CudaTarget`].
pub type GpuPoolSpace = GpuSpace<PoolSketch>;

impl GpuSpace<PoolSketch> {
    pub fn new(task: &Task, gpu: &CudaTarget) -> Result<GpuPoolSpace, ScheduleError> {
        match &task.op {
            Op::Pool2d(pool) if task.validate().is_ok() => GpuSpace::with_sketch(
                task,
                gpu,
                PoolSketch { task: task.clone(), pool: *pool, warp_size: i64::from(gpu.warp_size) },
            ),
            _ => Err(ScheduleError::Unsupported { task: task.description(), target: gpu.name.clone() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu_space::assert_space_consistent;
    use crate::SpaceGenerator;

    pub(crate) fn pool(
        kind: PoolKind,
        (c, hw): (usize, usize),
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Pool2dSpec {
        Pool2dSpec {
            kind,
            n: 1,
            c,
            h: hw,
            w: hw,
            kh: k,
            kw: k,
            stride: [stride; 2],
            pad: [pad; 4],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad: false,
        }
    }

    fn tasks() -> Vec<Task> {
        vec![
            Task::new(Op::Pool2d(pool(PoolKind::Max, (64, 112), 3, 2, 1)), vec![]),
            Task::new(
                Op::Pool2d(Pool2dSpec { count_include_pad: true, ..pool(PoolKind::Avg, (16, 15), 3, 2, 1) }),
                vec![],
            ),
            Task::new(Op::Pool2d(pool(PoolKind::Avg, (512, 7), 7, 1, 0)), vec![]),
            Task::new(
                Op::Pool2d(Pool2dSpec { ceil_mode: true, ..pool(PoolKind::Max, (3, 10), 3, 2, 0) }),
                vec![],
            ),
            Task::new(Op::Pool2d(pool(PoolKind::Avg, (1, 56), 56, 1, 0)), vec![]),
        ]
    }

    #[test]
    fn sampled_points_verify_round_trip_and_mutate_within_the_space() {
        for gpu in [CudaTarget::a100(), CudaTarget::h100()] {
            for (i, task) in tasks().iter().enumerate() {
                let space = GpuPoolSpace::new(task, &gpu).expect("space");
                assert_space_consistent(&space, i as u64, 12);
            }
        }
    }

    #[test]
    fn blocks_are_warps_of_the_target_and_big_windows_stay_rolled() {
        let gpu = CudaTarget { warp_size: 64, ..CudaTarget::a100() };
        let space = GpuPoolSpace::new(&tasks()[0], &gpu).expect("space");
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        for _ in 0..30 {
            let r = space.resources(&space.sample(&mut rng)).expect("verified");
            assert_eq!(r.n_threads % 64, 0, "{r:?}");
            assert!(r.n_threads <= 1024, "{r:?}");
        }
        // 56 × 56 taps: never unrolled; one output plane: a single warp of one output.
        let global = GpuPoolSpace::new(&tasks()[4], &CudaTarget::h100()).expect("space");
        assert_eq!(global.size(), 1);
        let t = global.default_trace();
        assert_eq!((t.get("warps"), t.get("outputs"), t.get("unroll_window")), (Some(1), Some(1), Some(0)));
    }

    #[test]
    fn decision_names_keep_their_trace_order() {
        let names: Vec<&str> = PoolSketch::KNOBS.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["warps", "outputs", "unroll_window"]);
    }
}
