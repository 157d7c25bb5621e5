//! Lowering of one GPU GEMM point to a LoopNest: `C[b, i, j] = Σ_k A[b, i, k] · B[b, k, j]`
//! (either operand transposed or shared by every batch), then the fused epilogue.
//!
//! ```text
//! for.blockZ b, for.blockY by, for.blockX bx          one block per BM × BN tile of C
//!   allocate As[stages·BK·BM], Bs[stages·BK·BN] Shared  k-major: a thread's TM rows (TN columns)
//!     for.threadX t in 0..(BM/TM)·(BN/TN)              are consecutive in a k-row
//!       allocate acc[TM·TN] Register
//!         acc = 0
//!         for kt: cooperative vector loads of the A and B tiles (zero outside the matrices),
//!                 barrier, TM × TN outer products over BK, barrier   (double buffered: the next
//!                 tile is loaded into the other stage while this one is used, one barrier)
//!         guarded stores of epilogue(acc)
//! ```
//! Edges are handled for any M, N, K by the guards (loads read zero past an edge, stores skip
//! it); a vector of a load is all inside or all outside, because the space offers a vector width
//! only when it divides the operand's contiguous extent.

use crate::epilogue;
use autotune_ir::{
    BatchMatmulSpec, BufId, BufScope, CmpOp, EpilogueOp, Expr, GpuAxis, LoopKind, LoopNest, NestBuilder,
    Stmt, VarId,
};

/// One point of the GPU GEMM space, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GpuGemmSchedule {
    pub bm: i64,
    pub bn: i64,
    pub bk: i64,
    pub tm: i64,
    pub tn: i64,
    /// Elements per cooperative load (1, 2 or 4: `float4`).
    pub vec: i64,
    pub double_buffer: bool,
    /// The BK loop of the outer products fully unrolled (else a plain loop).
    pub unroll_k: bool,
}

impl GpuGemmSchedule {
    pub(crate) fn n_threads(&self) -> i64 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }
    pub(crate) fn stages(&self) -> i64 {
        if self.double_buffer {
            2
        } else {
            1
        }
    }
    /// Elements one thread copies into shared memory per reduction tile (A and B).
    pub(crate) fn loads_in_flight(&self) -> i64 {
        let per_thread = |tile_elems: i64| ceil_div(tile_elems / self.vec, self.n_threads()) * self.vec;
        per_thread(self.bm * self.bk) + per_thread(self.bn * self.bk)
    }
    /// Static shared memory of one block, bytes.
    pub(crate) fn shared_bytes(&self) -> i64 {
        4 * self.stages() * self.bk * (self.bm + self.bn)
    }
}

/// The task's GEMM and the epilogue's operands, in `Task::inputs()` order.
#[derive(Clone, Debug)]
pub(crate) struct GpuGemmProblem {
    pub name: String,
    pub spec: BatchMatmulSpec,
    pub epilogue: Vec<EpilogueOp>,
    /// Lengths of the task's inputs then its output, with the names they are declared with.
    pub params: Vec<(&'static str, usize)>,
    pub bias: Option<usize>,
    pub residual: Option<usize>,
}

pub(crate) fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// How one operand's tile is copied into shared memory: its storage is `rows × cols` (row-major,
/// `cols` contiguous), the tile `tile_rows × tile_cols` at (`r0`, `c0`); in shared memory it is
/// stored k-major, `BK × other` with `other` = BM (A) or BN (B).
struct TileLoad {
    src: BufId,
    dst: BufId,
    base: Expr,
    rows: i64,
    cols: i64,
    tile_rows: i64,
    tile_cols: i64,
    r0: Expr,
    c0: Expr,
    /// The reduction runs along the storage's columns (A untransposed, B transposed).
    k_along_cols: bool,
    other: i64,
}

struct Lowering<'a> {
    s: GpuGemmSchedule,
    p: &'a GpuGemmProblem,
    b: NestBuilder,
    t: VarId,
}

pub(crate) fn lower(p: &GpuGemmProblem, s: &GpuGemmSchedule) -> LoopNest {
    let mut b = NestBuilder::new();
    let params: Vec<BufId> = p.params.iter().map(|&(name, len)| b.param(name, len)).collect();
    let t = b.var("t");
    let mut l = Lowering { s: *s, p, b, t };
    let body = l.kernel(&params);
    l.b.finish(&p.name, body)
}

impl Lowering<'_> {
    fn kernel(&mut self, params: &[BufId]) -> Vec<Stmt> {
        let s = self.s;
        let spec = self.p.spec;
        let (m, n, k) = (spec.m as i64, spec.n as i64, spec.k as i64);
        let (bz, by, bx) = (self.b.var("bz"), self.b.var("by"), self.b.var("bx"));
        let (kt, kk) = (self.b.var("kt"), self.b.var("kk"));
        let stages = s.stages();
        let a_s = self.b.buffer("As", (stages * s.bk * s.bm) as usize, BufScope::Shared);
        let b_s = self.b.buffer("Bs", (stages * s.bk * s.bn) as usize, BufScope::Shared);
        let acc = self.b.buffer("acc", (s.tm * s.tn) as usize, BufScope::Register);
        let t = Expr::var(self.t);
        let threads_n = s.bn / s.tn;
        let (tx, ty) = (t.clone() % threads_n, t.clone().floor_div(Expr::int(threads_n)));

        let a_base = if spec.a_broadcast { Expr::int(0) } else { Expr::var(bz) * (m * k) };
        let b_base = if spec.b_broadcast { Expr::int(0) } else { Expr::var(bz) * (k * n) };
        let (row0, col0) = (Expr::var(by) * s.bm, Expr::var(bx) * s.bn);
        // The A and B tiles of reduction tile `k_tile`.
        let tiles = |k_tile: Expr| {
            let k0 = k_tile * s.bk;
            let a_tile = if spec.trans_a {
                TileLoad {
                    src: params[0],
                    dst: a_s,
                    base: a_base.clone(),
                    rows: k,
                    cols: m,
                    tile_rows: s.bk,
                    tile_cols: s.bm,
                    r0: k0.clone(),
                    c0: row0.clone(),
                    k_along_cols: false,
                    other: s.bm,
                }
            } else {
                TileLoad {
                    src: params[0],
                    dst: a_s,
                    base: a_base.clone(),
                    rows: m,
                    cols: k,
                    tile_rows: s.bm,
                    tile_cols: s.bk,
                    r0: row0.clone(),
                    c0: k0.clone(),
                    k_along_cols: true,
                    other: s.bm,
                }
            };
            let b_tile = if spec.trans_b {
                TileLoad {
                    src: params[1],
                    dst: b_s,
                    base: b_base.clone(),
                    rows: n,
                    cols: k,
                    tile_rows: s.bn,
                    tile_cols: s.bk,
                    r0: col0.clone(),
                    c0: k0.clone(),
                    k_along_cols: true,
                    other: s.bn,
                }
            } else {
                TileLoad {
                    src: params[1],
                    dst: b_s,
                    base: b_base.clone(),
                    rows: k,
                    cols: n,
                    tile_rows: s.bk,
                    tile_cols: s.bn,
                    r0: k0.clone(),
                    c0: col0.clone(),
                    k_along_cols: false,
                    other: s.bn,
                }
            };
            (a_tile, b_tile)
        };
        let n_k_tiles = ceil_div(k, s.bk);
        // Stage of tile `kt`: always 0 single-buffered.
        let stage_of = |e: Expr| if s.double_buffer { e % 2 } else { Expr::int(0) };
        let load_both = |this: &mut Self, k_tile: Expr, stage: Expr| {
            let (a_tile, b_tile) = tiles(k_tile);
            let mut v = this.tile_load(&a_tile, stage.clone() * (s.bk * s.bm));
            v.extend(this.tile_load(&b_tile, stage * (s.bk * s.bn)));
            v
        };

        // The outer products of one stage: acc[i][j] += As[kk][ty·TM + i] · Bs[kk][tx·TN + j].
        let compute = |this: &mut Self, stage: Expr| {
            let (i, j) = (this.b.var("i"), this.b.var("j"));
            let a_val = Expr::load(
                a_s,
                stage.clone() * (s.bk * s.bm) + Expr::var(kk) * s.bm + ty.clone() * s.tm + Expr::var(i),
            );
            let b_val = Expr::load(
                b_s,
                stage * (s.bk * s.bn) + Expr::var(kk) * s.bn + tx.clone() * s.tn + Expr::var(j),
            );
            let cell = Expr::var(i) * s.tn + Expr::var(j);
            let fma = Stmt::store(acc, cell.clone(), Expr::fma(a_val, b_val, Expr::load(acc, cell)));
            let inner = Stmt::for_loop(j, Expr::int(0), Expr::int(s.tn), LoopKind::Unrolled, vec![fma]);
            let outer = Stmt::for_loop(i, Expr::int(0), Expr::int(s.tm), LoopKind::Unrolled, vec![inner]);
            let kind = if s.unroll_k { LoopKind::Unrolled } else { LoopKind::Serial };
            Stmt::for_loop(kk, Expr::int(0), Expr::int(s.bk.min(k.max(1))), kind, vec![outer])
        };
        // Past K the tiles hold zeros, so the reduction loop may run over the whole BK; it is cut
        // to K only when K < BK (fewer wasted products on tiny K).

        let mut thread_body = vec![self.zero(acc)];
        if s.double_buffer {
            thread_body.extend(load_both(self, Expr::int(0), Expr::int(0)));
            thread_body.push(Stmt::Barrier);
            let next = Expr::var(kt) + 1;
            let mut step = vec![Stmt::If {
                cond: next.clone().cmp(CmpOp::Lt, Expr::int(n_k_tiles)),
                then_body: load_both(self, next.clone(), stage_of(next)),
                else_body: vec![],
            }];
            step.push(compute(self, stage_of(Expr::var(kt))));
            step.push(Stmt::Barrier);
            thread_body.push(Stmt::for_loop(kt, Expr::int(0), Expr::int(n_k_tiles), LoopKind::Serial, step));
        } else {
            let mut step = load_both(self, Expr::var(kt), Expr::int(0));
            step.push(Stmt::Barrier);
            step.push(compute(self, Expr::int(0)));
            step.push(Stmt::Barrier);
            thread_body.push(Stmt::for_loop(kt, Expr::int(0), Expr::int(n_k_tiles), LoopKind::Serial, step));
        }
        thread_body.push(self.store_out(params, acc, bz, row0 + ty * s.tm, col0 + tx * s.tn));

        let threads = Stmt::for_loop(
            self.t,
            Expr::int(0),
            Expr::int(s.n_threads()),
            LoopKind::GpuThread(GpuAxis::X),
            vec![Stmt::Allocate { buf: acc, body: thread_body }],
        );
        let shared =
            Stmt::Allocate { buf: a_s, body: vec![Stmt::Allocate { buf: b_s, body: vec![threads] }] };
        let blocks_x = Stmt::for_loop(
            bx,
            Expr::int(0),
            Expr::int(ceil_div(n, s.bn)),
            LoopKind::GpuBlock(GpuAxis::X),
            vec![shared],
        );
        let blocks_y = Stmt::for_loop(
            by,
            Expr::int(0),
            Expr::int(ceil_div(m, s.bm)),
            LoopKind::GpuBlock(GpuAxis::Y),
            vec![blocks_x],
        );
        vec![Stmt::for_loop(
            bz,
            Expr::int(0),
            Expr::int(spec.batch as i64),
            LoopKind::GpuBlock(GpuAxis::Z),
            vec![blocks_y],
        )]
    }

    fn zero(&mut self, acc: BufId) -> Stmt {
        let c = self.b.var("c");
        let cells = self.s.tm * self.s.tn;
        Stmt::for_loop(
            c,
            Expr::int(0),
            Expr::int(cells),
            LoopKind::Unrolled,
            vec![Stmt::store(acc, Expr::var(c), Expr::float(0.0))],
        )
    }

    /// The threads copy one tile, `vec` elements per load, thread `t` taking vectors
    /// `t, t + T, …`; a vector outside the matrix stores zeros.
    fn tile_load(&mut self, tl: &TileLoad, stage_offset: Expr) -> Vec<Stmt> {
        let (v, n_threads) = (self.s.vec, self.s.n_threads());
        let vecs_per_row = tl.tile_cols / v;
        let n_vecs = tl.tile_rows * vecs_per_row;
        let per_thread = ceil_div(n_vecs, n_threads);
        let (l, lane) = (self.b.var("l"), self.b.var("v"));
        let q = Expr::var(self.t) + Expr::var(l) * n_threads;
        let (rr, cv) = (q.clone().floor_div(Expr::int(vecs_per_row)), q.clone() % vecs_per_row);
        let col = cv * v;
        let in_bounds = (tl.r0.clone() + rr.clone())
            .cmp(CmpOp::Lt, Expr::int(tl.rows))
            .and((tl.c0.clone() + col.clone()).cmp(CmpOp::Lt, Expr::int(tl.cols)));
        let src = tl.base.clone() + (tl.r0.clone() + rr.clone()) * tl.cols + tl.c0.clone() + col.clone();
        let dst = if tl.k_along_cols {
            stage_offset + (col + Expr::var(lane)) * tl.other + rr
        } else {
            stage_offset + rr * tl.other + col + Expr::var(lane)
        };
        // `src + lane`: the form the CUDA emitter turns into one vector load.
        let vector = |value: Expr| {
            Stmt::for_loop(
                lane,
                Expr::int(0),
                Expr::int(v),
                LoopKind::Vectorized,
                vec![Stmt::store(tl.dst, dst.clone(), value)],
            )
        };
        let copy = Stmt::If {
            cond: in_bounds,
            then_body: vec![vector(Expr::load(tl.src, src + Expr::var(lane)))],
            else_body: vec![vector(Expr::float(0.0))],
        };
        let body = if n_vecs % n_threads == 0 {
            vec![copy]
        } else {
            vec![Stmt::If {
                cond: q.cmp(CmpOp::Lt, Expr::int(n_vecs)),
                then_body: vec![copy],
                else_body: vec![],
            }]
        };
        vec![Stmt::for_loop(l, Expr::int(0), Expr::int(per_thread), LoopKind::Unrolled, body)]
    }

    /// `C[row + i, col + j] = epilogue(acc[i][j])` where inside the matrix.
    fn store_out(&mut self, params: &[BufId], acc: BufId, bz: VarId, row: Expr, col: Expr) -> Stmt {
        let (s, spec) = (self.s, self.p.spec);
        let (m, n) = (spec.m as i64, spec.n as i64);
        let (i, j) = (self.b.var("i"), self.b.var("j"));
        let (r, c) = (row + Expr::var(i), col + Expr::var(j));
        let out_idx = (Expr::var(bz) * m + r.clone()) * n + c.clone();
        let out = params[self.p.params.len() - 1];
        let bias = self.p.bias.map(|p| Expr::load(params[p], c.clone()));
        let residual = self.p.residual.map(|p| Expr::load(params[p], out_idx.clone()));
        let value = epilogue::apply(
            &self.p.epilogue,
            Expr::load(acc, Expr::var(i) * s.tn + Expr::var(j)),
            bias,
            residual,
        );
        let guarded = Stmt::If {
            cond: r.cmp(CmpOp::Lt, Expr::int(m)).and(c.cmp(CmpOp::Lt, Expr::int(n))),
            then_body: vec![Stmt::store(out, out_idx, value)],
            else_body: vec![],
        };
        let inner = Stmt::for_loop(j, Expr::int(0), Expr::int(s.tn), LoopKind::Unrolled, vec![guarded]);
        Stmt::for_loop(i, Expr::int(0), Expr::int(s.tm), LoopKind::Unrolled, vec![inner])
    }
}
