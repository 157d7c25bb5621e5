//! The pooling space on CPUs (max / average, global average as a window the size of the input).
//!
//! Each (image, channel) plane is first copied into a padded, phase-split scratch filled with the
//! padding value (−∞ for max, 0 for average), so every window read is in bounds and, per phase,
//! contiguous along output columns: the output row is then computed a SIMD vector at a time, its
//! last partial vector too (the scratch has a vector of slack to read past the last row; only the
//! valid lanes are stored).
//! Average pooling multiplies by reciprocal window counts that depend only on the shape, so they
//! are computed here, at lowering time, and emitted as constants.
//!
//! Global pooling (one window the size of an unpadded plane: GlobalAveragePool, GlobalMaxPool)
//! needs neither padding nor phases: each plane is reduced where it lies, a SIMD vector of
//! consecutive elements at a time, then across the vector's lanes.

use crate::flat::{FlatKnob, FlatSketch};
use crate::gemm::ceil_div;
use crate::padded::{inside_plane, tap_offset, PhaseSplit};
use crate::space::{ScheduleError, SpaceGenerator};
use autotune_ir::{
    BinOp, BufId, BufScope, CpuTarget, Expr, LoopKind, NestBuilder, Op, Pool2dSpec, PoolKind, Program, Stmt,
    Task, Trace, VarId,
};
use rand::RngCore;

pub const SKETCH: &str = "pool_rows";
/// v3: a row's last, partial vector of outputs is computed as a whole vector and its valid lanes
/// stored one by one (v2 computed those outputs one at a time: every output of a plane narrower
/// than a vector, e.g. Inception's 14×14 and 7×7 pools on AVX-512).
const VERSION: &str = "pool-cpu-v3";

/// The decisions of `pool_rows`, in trace order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Knob {
    Vectorize,
    UnrollWindow,
    Parallel,
}

impl Knob {
    const ALL: [Knob; 3] = [Knob::Vectorize, Knob::UnrollWindow, Knob::Parallel];
}

impl FlatKnob for Knob {
    fn name(self) -> &'static str {
        match self {
            Knob::Vectorize => "vectorize",
            Knob::UnrollWindow => "unroll_window",
            Knob::Parallel => "parallel",
        }
    }
}
/// Windows with more taps than this are never unrolled (global pooling over 56×56…).
const MAX_UNROLLED_TAPS: usize = 64;

#[derive(Debug, Clone)]
pub struct PoolSpace {
    task: Task,
    spec: Pool2dSpec,
    lanes: i64,
    threads: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PoolSchedule {
    vectorize: bool,
    unroll_window: bool,
    parallel: bool,
}

impl PoolSpace {
    pub fn new(task: &Task, cpu: &CpuTarget) -> Result<PoolSpace, ScheduleError> {
        match &task.op {
            // A channel block is reduced whole vectors at a time.
            Op::Pool2d(spec)
                if task.validate().is_ok()
                    && (task.layout.is_plain()
                        || task.layout.input.is_multiple_of(cpu.vector_lanes.max(1) as usize)) =>
            {
                Ok(PoolSpace {
                    task: task.clone(),
                    spec: *spec,
                    lanes: i64::from(cpu.vector_lanes.max(1)),
                    threads: cpu.threads.max(1),
                })
            }
            _ => Err(ScheduleError::Unsupported { task: task.description(), target: "cpu".into() }),
        }
    }

    fn domain(&self, knob: Knob) -> Vec<i64> {
        match knob {
            // A window row is vectorized whole vectors and a partial one (any row of two or more
            // outputs); a global plane only in whole vectors.
            Knob::Vectorize if !self.task.layout.is_plain() => vec![1],
            Knob::Vectorize => {
                let vectorizable = match self.is_global() {
                    true => (self.spec.h * self.spec.w) as i64 >= self.lanes,
                    false => self.spec.out_w() >= 2 && self.lanes > 1,
                };
                if vectorizable {
                    vec![0, 1]
                } else {
                    vec![0]
                }
            }
            Knob::UnrollWindow => {
                // A global window is reduced a vector at a time: what unrolls is its vectors.
                let taps = if self.is_global() && self.task.layout.is_plain() {
                    self.spec.kh * self.spec.kw / self.lanes.max(1) as usize
                } else {
                    self.spec.kh * self.spec.kw
                };
                if taps <= MAX_UNROLLED_TAPS {
                    vec![0, 1]
                } else {
                    vec![0]
                }
            }
            Knob::Parallel => {
                if self.threads > 1 && self.spec.n * self.spec.c > 1 {
                    vec![0, 1]
                } else {
                    vec![0]
                }
            }
        }
    }

    /// The taps of output `o`'s (dilated) window along `axis` (0: rows, 1: columns) that fall
    /// inside the input, or also the declared padding (`count_include_pad`): an average's
    /// divisor is the product of the two.
    fn window_taps(&self, o: i64, axis: usize) -> i64 {
        let p = &self.spec;
        let (s, pad_begin, pad_end, k, d, size) = match axis {
            0 => (p.stride[0], p.pad[0], p.pad[2], p.kh, p.dilation[0], p.h),
            _ => (p.stride[1], p.pad[1], p.pad[3], p.kw, p.dilation[1], p.w),
        };
        let (s, pad_begin, pad_end, k, d, size) =
            (s as i64, pad_begin as i64, pad_end as i64, k as i64, d as i64, size as i64);
        let start = o * s - pad_begin;
        let (lo, hi) = if p.count_include_pad { (-pad_begin, size + pad_end) } else { (0, size) };
        ((0..k).filter(|t| (lo..hi).contains(&(start + t * d))).count() as i64).max(1)
    }

    /// Stores of the reciprocal window counts of an average: `1 / taps` of each output row
    /// into `ry`, of each output column into `rx` (whose `width` may exceed the output's: the
    /// extra columns are zero), whose product is an output's divisor.
    fn reciprocal_tables(&self, ry: BufId, rx: BufId, width: i64) -> Vec<Stmt> {
        let (oh, ow) = (self.spec.out_h() as i64, self.spec.out_w() as i64);
        let rows = (0..oh).map(|o| (ry, o, 1.0 / self.window_taps(o, 0) as f32));
        let columns =
            (0..width).map(|o| (rx, o, if o < ow { 1.0 / self.window_taps(o, 1) as f32 } else { 0.0 }));
        rows.chain(columns).map(|(buf, o, v)| Stmt::store(buf, Expr::int(o), Expr::Float(v))).collect()
    }

    /// Channel-blocked pooling (NCHW{b}c): every output position is `b` channels side by side,
    /// so the window is reduced a whole vector of channels per tap, whatever the plane's width
    /// (a 7×7 or 14×14 plane is as vectorized as a 112×112 one); taps outside the input are
    /// skipped, and an average divides by the window's precomputed count.
    fn lower_blocked(&self, s: PoolSchedule) -> Program {
        let p = &self.spec;
        let block = self.task.layout.input as i64;
        let (h, w, oh, ow) = (p.h as i64, p.w as i64, p.out_h() as i64, p.out_w() as i64);
        let (kh, kw) = (p.kh as i64, p.kw as i64);
        let (sh, sw) = (p.stride[0] as i64, p.stride[1] as i64);
        let (dh, dw) = (p.dilation[0] as i64, p.dilation[1] as i64);
        let (pt, pl) = (p.pad[0] as i64, p.pad[1] as i64);
        let is_max = p.kind == PoolKind::Max;
        let lanes = self.lanes;
        let mut b = NestBuilder::new();
        let x = b.param("X", self.task.inputs()[0].len());
        let y = b.param("Y", self.task.outputs()[0].len());
        let (plane, oy, ox, v, lane, ky, kx) =
            (b.var("plane"), b.var("oy"), b.var("ox"), b.var("v"), b.var("lane"), b.var("ky"), b.var("kx"));
        let (ry, rx) = (
            b.buffer("rcp_rows", oh as usize, BufScope::Heap),
            b.buffer("rcp_cols", ow as usize, BufScope::Heap),
        );
        let tables = if is_max { Vec::new() } else { self.reciprocal_tables(ry, rx, ow) };
        let acc = b.buffer("acc", lanes as usize, BufScope::Register);
        let vectorized = |body: Vec<Stmt>| {
            Stmt::for_loop(lane, Expr::int(0), Expr::int(lanes), LoopKind::Vectorized, body)
        };
        let channel = Expr::var(v) * lanes + Expr::var(lane);
        let (iy, ix) = (
            Expr::var(oy) * sh + Expr::var(ky) * dh - Expr::int(pt),
            Expr::var(ox) * sw + Expr::var(kx) * dw - Expr::int(pl),
        );
        let inside = inside_plane(iy.clone(), ix.clone(), h, w);
        let combine = window_combine(is_max);
        let read = Expr::load(x, ((Expr::var(plane) * h + iy) * w + ix) * block + channel.clone());
        let window_kind = if s.unroll_window { LoopKind::Unrolled } else { LoopKind::Serial };
        let taps = window_loops(
            (ky, kx),
            (kh, kw),
            window_kind,
            vec![Stmt::If {
                cond: inside,
                then_body: vec![vectorized(vec![Stmt::store(
                    acc,
                    Expr::var(lane),
                    combine(Expr::load(acc, Expr::var(lane)), read),
                )])],
                else_body: vec![],
            }],
        );
        let result = if is_max {
            Expr::load(acc, Expr::var(lane))
        } else {
            let scale = Expr::Bin(
                BinOp::Mul,
                Box::new(Expr::load(ry, Expr::var(oy))),
                Box::new(Expr::load(rx, Expr::var(ox))),
            );
            Expr::Bin(BinOp::Mul, Box::new(Expr::load(acc, Expr::var(lane))), Box::new(scale))
        };
        let out = ((Expr::var(plane) * oh + Expr::var(oy)) * ow + Expr::var(ox)) * block + channel;
        let start = if is_max { f32::NEG_INFINITY } else { 0.0 };
        let per_vector = Stmt::Allocate {
            buf: acc,
            body: vec![
                vectorized(vec![Stmt::store(acc, Expr::var(lane), Expr::Float(start))]),
                taps,
                vectorized(vec![Stmt::store(y, out, result)]),
            ],
        };
        let positions = Stmt::for_loop(
            oy,
            Expr::int(0),
            Expr::int(oh),
            LoopKind::Serial,
            vec![Stmt::for_loop(
                ox,
                Expr::int(0),
                Expr::int(ow),
                LoopKind::Serial,
                vec![Stmt::for_loop(
                    v,
                    Expr::int(0),
                    Expr::int(block / lanes),
                    LoopKind::Unrolled,
                    vec![per_vector],
                )],
            )],
        );
        let kind = if s.parallel { LoopKind::Parallel } else { LoopKind::Serial };
        let planes = (p.n * p.c) as i64 / block;
        let body = vec![Stmt::Allocate {
            buf: ry,
            body: vec![Stmt::Allocate {
                buf: rx,
                body: [
                    tables,
                    vec![Stmt::for_loop(plane, Expr::int(0), Expr::int(planes), kind, vec![positions])],
                ]
                .concat(),
            }],
        }];
        let name = format!("{}_{}x{}_k{}x{}_{}c", self.task.op_name(), p.h, p.w, p.kh, p.kw, block);
        b.finish(&name, body).into()
    }

    /// One window covering the whole unpadded plane, one output per plane.
    fn is_global(&self) -> bool {
        let p = &self.spec;
        p.kh == p.h && p.kw == p.w && p.pad == [0; 4] && p.out_h() == 1 && p.out_w() == 1
    }

    /// Global pooling: each plane reduced in place, `lanes` consecutive elements at a time into a
    /// vector accumulator, then its lanes and the tail into one value.
    fn lower_global(&self, s: PoolSchedule) -> Program {
        let p = &self.spec;
        let size = (p.h * p.w) as i64;
        let is_max = p.kind == PoolKind::Max;
        let start_value = if is_max { f32::NEG_INFINITY } else { 0.0 };
        let lanes = self.lanes;
        let n_vec = if s.vectorize { size / lanes } else { 0 };
        let mut b = NestBuilder::new();
        let x = b.param("X", self.task.inputs()[0].len());
        let y = b.param("Y", self.task.outputs()[0].len());
        let (plane, chunk, lane, tail) = (b.var("plane"), b.var("chunk"), b.var("lane"), b.var("tail"));
        let acc = b.buffer("acc", lanes as usize, BufScope::Register);
        let total = b.buffer("total", 1, BufScope::Register);
        let combine = window_combine(is_max);
        let base = Expr::var(plane) * size;
        let vectors = vec![
            Stmt::for_loop(
                lane,
                Expr::int(0),
                Expr::int(lanes),
                LoopKind::Vectorized,
                vec![Stmt::store(acc, Expr::var(lane), Expr::Float(start_value))],
            ),
            Stmt::for_loop(
                chunk,
                Expr::int(0),
                Expr::int(n_vec),
                if s.unroll_window { LoopKind::Unrolled } else { LoopKind::Serial },
                vec![Stmt::for_loop(
                    lane,
                    Expr::int(0),
                    Expr::int(lanes),
                    LoopKind::Vectorized,
                    vec![Stmt::store(
                        acc,
                        Expr::var(lane),
                        combine(
                            Expr::load(acc, Expr::var(lane)),
                            Expr::load(x, base.clone() + Expr::var(chunk) * lanes + Expr::var(lane)),
                        ),
                    )],
                )],
            ),
        ];
        let result = if is_max {
            Expr::load(total, Expr::int(0))
        } else {
            Expr::Bin(
                BinOp::Mul,
                Box::new(Expr::load(total, Expr::int(0))),
                Box::new(Expr::Float(1.0 / size as f32)),
            )
        };
        let reduce = vec![
            Stmt::store(total, Expr::int(0), Expr::Float(start_value)),
            Stmt::for_loop(
                lane,
                Expr::int(0),
                Expr::int(if n_vec > 0 { lanes } else { 0 }),
                LoopKind::Unrolled,
                vec![Stmt::store(
                    total,
                    Expr::int(0),
                    combine(Expr::load(total, Expr::int(0)), Expr::load(acc, Expr::var(lane))),
                )],
            ),
            Stmt::for_loop(
                tail,
                Expr::int(n_vec * lanes),
                Expr::int(size - n_vec * lanes),
                LoopKind::Serial,
                vec![Stmt::store(
                    total,
                    Expr::int(0),
                    combine(Expr::load(total, Expr::int(0)), Expr::load(x, base.clone() + Expr::var(tail))),
                )],
            ),
            Stmt::store(y, Expr::var(plane), result),
        ];
        let per_plane = vec![Stmt::Allocate {
            buf: acc,
            body: [vectors, vec![Stmt::Allocate { buf: total, body: reduce }]].concat(),
        }];
        let kind = if s.parallel { LoopKind::Parallel } else { LoopKind::Serial };
        let body = vec![Stmt::for_loop(plane, Expr::int(0), Expr::int((p.n * p.c) as i64), kind, per_plane)];
        let name = format!("{}_global_{}x{}", self.task.op_name(), p.h, p.w);
        b.finish(&name, body).into()
    }

    fn flat(&self) -> FlatSketch<Knob, impl Fn(Knob) -> Vec<i64> + '_> {
        FlatSketch {
            sketch: SKETCH,
            version: VERSION,
            knobs: &Knob::ALL,
            domain: move |knob| self.domain(knob),
        }
    }

    fn decode(&self, trace: &Trace) -> Result<PoolSchedule, ScheduleError> {
        let v = self.flat().decode(trace)?;
        Ok(PoolSchedule { vectorize: v[0] != 0, unroll_window: v[1] != 0, parallel: v[2] != 0 })
    }

    fn lower_schedule(&self, s: PoolSchedule) -> Program {
        if !self.task.layout.is_plain() {
            return self.lower_blocked(s);
        }
        if self.is_global() {
            return self.lower_global(s);
        }
        let p = &self.spec;
        let (h, w, oh, ow) = (p.h as i64, p.w as i64, p.out_h() as i64, p.out_w() as i64);
        let (kh, kw) = (p.kh as i64, p.kw as i64);
        let (sh, sw) = (p.stride[0] as i64, p.stride[1] as i64);
        let (dh, dw) = (p.dilation[0] as i64, p.dilation[1] as i64);
        let (pt, pl) = (p.pad[0] as i64, p.pad[1] as i64);
        let hq = oh + ((kh - 1) * dh) / sh + 1;
        let wq = ow + ((kw - 1) * dw) / sw;
        let plane = hq * wq;
        let is_max = p.kind == PoolKind::Max;
        let pad_value = if is_max { f32::NEG_INFINITY } else { 0.0 };

        let mut b = NestBuilder::new();
        let x = b.param("X", self.task.inputs()[0].len());
        let y = b.param("Y", self.task.outputs()[0].len());
        let lanes = self.lanes;
        // A vector of slack: the last output row's partial vector reads past the last grid row.
        let xp = b.buffer("X_padded", (sh * sw * plane + lanes) as usize, BufScope::Heap);
        let plane_var = b.var("plane");

        // The padded, phase-split plane: every window read below is in bounds.
        let split = PhaseSplit {
            channels: 1,
            h,
            w,
            stride: (sh, sw),
            pad: (pt, pl),
            grid: (hq, wq),
            taps: (kh, kw),
            dilation: (dh, dw),
            lanes: self.lanes,
        };
        let fill =
            split.fill(&mut b, x, &|_| Expr::var(plane_var) * (h * w), xp, pad_value, LoopKind::Serial);

        // Reciprocal window counts (average pooling), separable into rows × columns.
        // Whole vectors of column factors: a partial vector's junk lanes read them too.
        let ow_vectors = ceil_div(ow, lanes) * lanes;
        let (ry, rx) = (
            b.buffer("rcp_rows", oh as usize, BufScope::Heap),
            b.buffer("rcp_cols", ow_vectors as usize, BufScope::Heap),
        );
        let tables = if is_max { Vec::new() } else { self.reciprocal_tables(ry, rx, ow_vectors) };

        // The window reduction for output (oy, ox): the tap (ky, kx) reads phase
        // (ky·d mod s) at grid offset (ky·d div s) — constants once the taps are unrolled.
        let (oy, ox_vec, lane, ox) = (b.var("oy"), b.var("ox_vec"), b.var("lane"), b.var("ox"));
        let (ky, kx) = (b.var("ky"), b.var("kx"));
        let acc = b.buffer("acc", self.lanes as usize, BufScope::Register);
        let tap_index = |col: Expr| -> Expr {
            let (phy, offy) = tap_offset(Expr::var(ky), dh, sh);
            let (phx, offx) = tap_offset(Expr::var(kx), dw, sw);
            (phy * sw + phx) * plane + (Expr::var(oy) + offy) * wq + offx + col
        };
        let combine = window_combine(is_max);
        let window_kind = if s.unroll_window { LoopKind::Unrolled } else { LoopKind::Serial };
        // `store(value)` puts a result where it goes: the output, or a partial vector's registers.
        type Store<'a> = &'a dyn Fn(Expr) -> Stmt;
        let to_output = |col: Expr, value: Expr| {
            Stmt::store(y, (Expr::var(plane_var) * oh + Expr::var(oy)) * ow + col, value)
        };
        let row_body =
            |col: Expr, slot: Expr, wrap: &dyn Fn(Vec<Stmt>) -> Vec<Stmt>, store: Store| -> Vec<Stmt> {
                let init = wrap(vec![Stmt::store(acc, slot.clone(), Expr::Float(pad_value))]);
                let update = window_loops(
                    (ky, kx),
                    (kh, kw),
                    window_kind,
                    wrap(vec![Stmt::store(
                        acc,
                        slot.clone(),
                        combine(Expr::load(acc, slot.clone()), Expr::load(xp, tap_index(col.clone()))),
                    )]),
                );
                let result = if is_max {
                    Expr::load(acc, slot.clone())
                } else {
                    let scale = Expr::Bin(
                        BinOp::Mul,
                        Box::new(Expr::load(ry, Expr::var(oy))),
                        Box::new(Expr::load(rx, col.clone())),
                    );
                    Expr::Bin(BinOp::Mul, Box::new(Expr::load(acc, slot.clone())), Box::new(scale))
                };
                [init, vec![update], wrap(vec![store(result)])].concat()
            };
        let n_vec = if s.vectorize { ow / lanes } else { 0 };
        let vectorized = |body: Vec<Stmt>| {
            vec![Stmt::for_loop(lane, Expr::int(0), Expr::int(lanes), LoopKind::Vectorized, body)]
        };
        let vec_col = Expr::var(ox_vec) * lanes + Expr::var(lane);
        let vector_part = Stmt::for_loop(
            ox_vec,
            Expr::int(0),
            Expr::int(n_vec),
            LoopKind::Serial,
            row_body(vec_col.clone(), Expr::var(lane), &vectorized, &|v| to_output(vec_col.clone(), v)),
        );
        let rest = ow - n_vec * lanes;
        let rest_part = if s.vectorize && rest > 0 {
            // The partial vector: computed whole into registers, its `rest` valid lanes stored.
            let tail = b.buffer("tail", lanes as usize, BufScope::Register);
            let col = Expr::int(n_vec * lanes) + Expr::var(lane);
            let to_tail = |v| Stmt::store(tail, Expr::var(lane), v);
            let store_valid = Stmt::for_loop(
                ox,
                Expr::int(0),
                Expr::int(rest),
                LoopKind::Serial,
                vec![to_output(Expr::int(n_vec * lanes) + Expr::var(ox), Expr::load(tail, Expr::var(ox)))],
            );
            Stmt::Allocate {
                buf: tail,
                body: [row_body(col, Expr::var(lane), &vectorized, &to_tail), vec![store_valid]].concat(),
            }
        } else {
            Stmt::for_loop(
                ox,
                Expr::int(n_vec * lanes),
                Expr::int(rest),
                LoopKind::Serial,
                row_body(Expr::var(ox), Expr::int(0), &|body| body, &|v| to_output(Expr::var(ox), v)),
            )
        };
        let rows = Stmt::for_loop(
            oy,
            Expr::int(0),
            Expr::int(oh),
            LoopKind::Serial,
            vec![Stmt::Allocate { buf: acc, body: vec![vector_part, rest_part] }],
        );
        let per_plane = vec![Stmt::Allocate { buf: xp, body: [fill, vec![rows]].concat() }];
        let kind = if s.parallel { LoopKind::Parallel } else { LoopKind::Serial };
        let planes = Stmt::for_loop(plane_var, Expr::int(0), Expr::int((p.n * p.c) as i64), kind, per_plane);
        let body = vec![Stmt::Allocate {
            buf: ry,
            body: vec![Stmt::Allocate { buf: rx, body: [tables, vec![planes]].concat() }],
        }];
        let name = format!("{}_{}x{}_k{}x{}", self.task.op_name(), p.h, p.w, p.kh, p.kw);
        b.finish(&name, body).into()
    }
}

/// How a window's values combine: their maximum, or their sum (an average is scaled after).
fn window_combine(is_max: bool) -> impl Fn(Expr, Expr) -> Expr {
    let op = if is_max { BinOp::Max } else { BinOp::Add };
    move |a, v| Expr::Bin(op, Box::new(a), Box::new(v))
}

/// The window's tap loops, rows (`ky` up to `kh`) outside columns (`kx` up to `kw`), around `body`.
fn window_loops((ky, kx): (VarId, VarId), (kh, kw): (i64, i64), kind: LoopKind, body: Vec<Stmt>) -> Stmt {
    Stmt::for_loop(
        ky,
        Expr::int(0),
        Expr::int(kh),
        kind,
        vec![Stmt::for_loop(kx, Expr::int(0), Expr::int(kw), kind, body)],
    )
}

impl SpaceGenerator for PoolSpace {
    fn version(&self) -> &'static str {
        VERSION
    }
    fn task(&self) -> &Task {
        &self.task
    }
    fn sample(&self, rng: &mut dyn RngCore) -> Trace {
        self.flat().sample(rng)
    }
    fn mutate(&self, trace: &Trace, rng: &mut dyn RngCore) -> Trace {
        self.flat().mutate(trace, rng)
    }
    fn default_trace(&self) -> Trace {
        let pick = |knob| *self.domain(knob).last().unwrap_or(&0);
        self.flat().trace(&Knob::ALL.map(pick))
    }
    fn lower(&self, trace: &Trace) -> Result<Program, ScheduleError> {
        Ok(self.lower_schedule(self.decode(trace)?))
    }
    fn size(&self) -> u64 {
        self.flat().size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotune_ir::IsaLevel;

    fn pool(kind: PoolKind, h: usize, k: usize, stride: usize, pad: usize) -> Task {
        Task::new(
            Op::Pool2d(Pool2dSpec {
                kind,
                n: 1,
                c: 4,
                h,
                w: h,
                kh: k,
                kw: k,
                stride: [stride; 2],
                pad: [pad; 4],
                dilation: [1, 1],
                ceil_mode: false,
                count_include_pad: false,
            }),
            vec![],
        )
    }

    #[test]
    fn every_level_has_valid_points() {
        for level in [IsaLevel::Avx512, IsaLevel::Avx2, IsaLevel::Sse42] {
            for threads in [1, 2] {
                for task in [
                    pool(PoolKind::Max, 112, 3, 2, 1),
                    pool(PoolKind::Avg, 7, 7, 1, 0),
                    pool(PoolKind::Max, 7, 7, 1, 0),
                    pool(PoolKind::Avg, 13, 13, 1, 0),
                    pool(PoolKind::Avg, 2, 2, 1, 0),
                    pool(PoolKind::Max, 5, 2, 2, 0),
                ] {
                    let space = PoolSpace::new(&task, &CpuTarget::generic(level, threads)).expect("space");
                    space.flat().assert_consistent(&space, &format!("{level} {}", task.description()), 10);
                }
            }
        }
    }
}
