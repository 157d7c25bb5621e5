//! Lowering of one GPU GEMM point to a LoopNest: `C[b, i, j] = Σ_k A[b, i, k] · B[b, k, j]`
//! (either operand transposed or shared by every batch), then the fused epilogue. A conv is the
//! same nest as an implicit GEMM: B's tile is gathered from the input image (im2col on the fly,
//! [`Operand::Im2col`]) and C is scattered into NCHW ([`OutputMap::ConvNchw`]).
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
//! Edges are handled for any M, N, K by the guards (loads read zero past an edge or in the
//! conv's padding, stores skip it); a vector of a load is all inside or all outside, because the
//! space offers a vector width only when it divides the operand's contiguous extent
//! ([`Operand::vector_ok`]).

use crate::epilogue;
use autotune_ir::{
    BufId, BufScope, CmpOp, Conv2dSpec, EpilogueOp, Expr, GpuAxis, LoopKind, LoopNest, NestBuilder, Stmt,
    Task, VarId,
};

/// One point of the GPU GEMM space, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuGemmSchedule {
    pub bm: i64,
    pub bn: i64,
    pub bk: i64,
    pub tm: i64,
    pub tn: i64,
    /// Elements per cooperative load of A and of B (1, 2 or 4: `float4`).
    pub vec_a: i64,
    pub vec_b: i64,
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
    /// Elements one thread copies into shared memory per reduction tile, of A and of B.
    pub(crate) fn loads_in_flight(&self) -> (i64, i64) {
        let per_thread = |tile_elems: i64, vec: i64| ceil_div(tile_elems / vec, self.n_threads()) * vec;
        (per_thread(self.bm * self.bk, self.vec_a), per_thread(self.bn * self.bk, self.vec_b))
    }
    /// Static shared memory of one block, bytes.
    pub(crate) fn shared_bytes(&self) -> i64 {
        4 * self.stages() * self.bk * (self.bm + self.bn)
    }
}

/// Where the elements of a GEMM operand come from (A is `M × K`, B is `K × N`, per batch).
#[derive(Clone, Debug)]
pub(crate) enum Operand {
    /// Task input `param`: a row-major `rows × cols` matrix per batch, `batch_stride` elements
    /// apart (0: one matrix shared by every batch); the reduction runs along its columns
    /// (`k_along_cols`: A untransposed, B transposed) or its rows.
    Dense { param: usize, rows: i64, cols: i64, batch_stride: i64, k_along_cols: bool },
    /// B of a conv: the im2col matrix of input `param` (rows: (ci, kh, kw) of group `batch`,
    /// columns: output positions (image, oh, ow)), gathered on the fly, zero in the padding.
    Im2col { param: usize, conv: Conv2dSpec },
}

impl Operand {
    /// Registers one element of a tile copy holds while the copy's unrolled loads are in flight:
    /// its value, or for a gather also its decoded (image, position, channel, tap) and guard.
    /// ptxas: a gathered element took 4.5–6.5 registers (80 for 8 per thread where 44 was counted
    /// without them, 160 for 16 where 62 was, 238 for 16 where 136 was).
    pub(crate) fn registers_per_loaded_element(&self) -> i64 {
        match self {
            Operand::Im2col { conv, .. } if !is_pointwise(conv) => 7,
            Operand::Dense { .. } | Operand::Im2col { .. } => 1,
        }
    }

    /// Whether `vec`-wide loads stay inside a contiguous run of memory and aligned to it, for a
    /// tile of `tile_k` along the reduction and `tile_other` along M (A) or N (B).
    pub(crate) fn vector_ok(&self, vec: i64, tile_k: i64, tile_other: i64) -> bool {
        match self {
            Operand::Dense { cols, k_along_cols, .. } => {
                let tile_cols = if *k_along_cols { tile_k } else { tile_other };
                cols % vec == 0 && tile_cols % vec == 0
            }
            // Only a pointwise conv's columns are contiguous (within one image plane).
            Operand::Im2col { conv, .. } => {
                vec == 1
                    || (is_pointwise(conv) && (conv.h * conv.w) as i64 % vec == 0 && tile_other % vec == 0)
            }
        }
    }
}

/// A 1×1 conv with stride 1 and no padding: its im2col matrix is the input itself, per image.
pub(crate) fn is_pointwise(c: &Conv2dSpec) -> bool {
    c.kh == 1 && c.kw == 1 && c.stride == [1, 1] && c.pad == [0; 4]
}

/// Where `C[b, i, j]` is stored, and which bias element it adds.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OutputMap {
    /// Row-major `batch × M × N`; bias by column.
    Matrix,
    /// A conv's NCHW output: batch = group, row = output channel of the group, column =
    /// (image, position); bias by channel.
    ConvNchw { channels: i64, per_group: i64, positions: i64 },
}

/// The task's GEMM and the epilogue's operands, in `Task::inputs()` order.
#[derive(Clone, Debug)]
pub(crate) struct GpuGemmProblem {
    pub name: String,
    pub batch: i64,
    pub m: i64,
    pub n: i64,
    pub k: i64,
    pub a: Operand,
    pub b: Operand,
    pub out: OutputMap,
    pub epilogue: Vec<EpilogueOp>,
    /// Lengths of the task's inputs then its output, with the names they are declared with.
    pub params: Vec<(&'static str, usize)>,
    pub bias: Option<usize>,
    pub residual: Option<usize>,
}

impl GpuGemmProblem {
    /// The problem of `task` (its inputs, then its output, are the kernel's parameters) with
    /// `(batch, m, n, k)` and operands `(a, b)`.
    pub(crate) fn new(
        task: &Task,
        name: String,
        (batch, m, n, k): (i64, i64, i64, i64),
        (a, b): (Operand, Operand),
        out: OutputMap,
    ) -> GpuGemmProblem {
        let inputs = task.inputs();
        let position = |name: &str| inputs.iter().position(|s| s.name == name);
        GpuGemmProblem {
            name,
            batch,
            m,
            n,
            k,
            a,
            b,
            out,
            epilogue: task.epilogue.clone(),
            params: inputs.iter().chain(task.outputs().iter()).map(|s| (s.name, s.len())).collect(),
            bias: position("bias"),
            residual: position("residual"),
        }
    }
}

pub(crate) fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// How one operand's tile is copied into shared memory, k-major (`BK × other`, `other` = BM for
/// A, BN for B): the tile starts at reduction index `k0` and at `other0` along M (A) or N (B).
struct TileLoad<'p> {
    operand: &'p Operand,
    dst: BufId,
    vec: i64,
    other: i64,
    k0: Expr,
    other0: Expr,
}

struct Lowering<'a> {
    s: GpuGemmSchedule,
    p: &'a GpuGemmProblem,
    b: NestBuilder,
    t: VarId,
    params: Vec<BufId>,
    /// The block's batch (GEMM batch or conv group).
    bz: VarId,
}

pub(crate) fn lower(p: &GpuGemmProblem, s: &GpuGemmSchedule) -> LoopNest {
    let mut b = NestBuilder::new();
    let params: Vec<BufId> = p.params.iter().map(|&(name, len)| b.param(name, len)).collect();
    let t = b.var("t");
    let bz = b.var("bz");
    let mut l = Lowering { s: *s, p, b, t, params, bz };
    let body = l.kernel();
    l.b.finish(&p.name, body)
}

impl Lowering<'_> {
    fn kernel(&mut self) -> Vec<Stmt> {
        let s = self.s;
        let p = self.p;
        let (m, n, k) = (p.m, p.n, p.k);
        let bz = self.bz;
        let (by, bx) = (self.b.var("by"), self.b.var("bx"));
        let (kt, kk) = (self.b.var("kt"), self.b.var("kk"));
        let stages = s.stages();
        let a_s = self.b.buffer("As", (stages * s.bk * s.bm) as usize, BufScope::Shared);
        let b_s = self.b.buffer("Bs", (stages * s.bk * s.bn) as usize, BufScope::Shared);
        let acc = self.b.buffer("acc", (s.tm * s.tn) as usize, BufScope::Register);
        let t = Expr::var(self.t);
        let threads_n = s.bn / s.tn;
        let (tx, ty) = (t.clone() % threads_n, t.clone().floor_div(Expr::int(threads_n)));

        let (row0, col0) = (Expr::var(by) * s.bm, Expr::var(bx) * s.bn);
        // The A and B tiles of reduction tile `k_tile`.
        let tiles = |k_tile: Expr| {
            let k0 = k_tile * s.bk;
            let a_tile = TileLoad {
                operand: &p.a,
                dst: a_s,
                vec: s.vec_a,
                other: s.bm,
                k0: k0.clone(),
                other0: row0.clone(),
            };
            let b_tile =
                TileLoad { operand: &p.b, dst: b_s, vec: s.vec_b, other: s.bn, k0, other0: col0.clone() };
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
        thread_body.push(self.store_out(acc, row0 + ty * s.tm, col0 + tx * s.tn));

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
            Expr::int(p.batch),
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

    /// Element (`r`, `c`) of the operand's storage: the condition under which it exists (not
    /// past an edge, not in the padding), the buffer it is read from, and its index there.
    fn source(&self, operand: &Operand, r: Expr, c: Expr) -> (Expr, BufId, Expr) {
        let bz = Expr::var(self.bz);
        match operand {
            Operand::Dense { param, rows, cols, batch_stride, .. } => {
                let cond = r
                    .clone()
                    .cmp(CmpOp::Lt, Expr::int(*rows))
                    .and(c.clone().cmp(CmpOp::Lt, Expr::int(*cols)));
                let base = if *batch_stride == 0 { Expr::int(0) } else { bz * *batch_stride };
                (cond, self.params[*param], base + r * *cols + c)
            }
            Operand::Im2col { param, conv } => {
                let cv = conv;
                let (oh, ow) = (cv.out_h() as i64, cv.out_w() as i64);
                let (h, w) = (cv.h as i64, cv.w as i64);
                let taps = (cv.kh * cv.kw) as i64;
                let k = cv.c_per_group() as i64 * taps;
                let positions = oh * ow;
                let columns = cv.n as i64 * positions;
                let mut cond =
                    r.clone().cmp(CmpOp::Lt, Expr::int(k)).and(c.clone().cmp(CmpOp::Lt, Expr::int(columns)));
                let image = c.clone().floor_div(Expr::int(positions));
                let position = c % positions;
                let ci = if taps == 1 { r.clone() } else { r.clone().floor_div(Expr::int(taps)) };
                let plane = (image * cv.c as i64 + bz * cv.c_per_group() as i64 + ci) * (h * w);
                if is_pointwise(cv) {
                    // Columns within an image are the input's own positions.
                    return (cond, self.params[*param], plane + position);
                }
                let (y, x) = (position.clone().floor_div(Expr::int(ow)), position % ow);
                let (ky, kx) = if taps == 1 {
                    (Expr::int(0), Expr::int(0))
                } else {
                    let tap = r % taps;
                    (tap.clone().floor_div(Expr::int(cv.kw as i64)), tap % cv.kw as i64)
                };
                let iy = y * cv.stride[0] as i64 + ky * cv.dilation[0] as i64 - cv.pad[0] as i64;
                let ix = x * cv.stride[1] as i64 + kx * cv.dilation[1] as i64 - cv.pad[1] as i64;
                // A side can only be crossed where it is padded: floor-mode windows end inside
                // the padded input.
                let sides = [
                    (cv.pad[0], iy.clone().cmp(CmpOp::Ge, Expr::int(0))),
                    (cv.pad[2], iy.clone().cmp(CmpOp::Lt, Expr::int(h))),
                    (cv.pad[1], ix.clone().cmp(CmpOp::Ge, Expr::int(0))),
                    (cv.pad[3], ix.clone().cmp(CmpOp::Lt, Expr::int(w))),
                ];
                for (pad, inside) in sides {
                    if pad > 0 {
                        cond = cond.and(inside);
                    }
                }
                (cond, self.params[*param], plane + iy * w + ix)
            }
        }
    }

    /// The threads copy one tile, `vec` elements per load, thread `t` taking vectors
    /// `t, t + T, …`; a vector outside the operand (or in its padding) stores zeros.
    fn tile_load(&mut self, tl: &TileLoad, stage_offset: Expr) -> Vec<Stmt> {
        let (v, n_threads) = (tl.vec, self.s.n_threads());
        let k_along_cols = matches!(tl.operand, Operand::Dense { k_along_cols: true, .. });
        // The tile in the operand's storage: `tile_rows × tile_cols` at (`r0`, `c0`).
        let (tile_rows, tile_cols, r0, c0) = if k_along_cols {
            (tl.other, self.s.bk, tl.other0.clone(), tl.k0.clone())
        } else {
            (self.s.bk, tl.other, tl.k0.clone(), tl.other0.clone())
        };
        let vecs_per_row = tile_cols / v;
        let n_vecs = tile_rows * vecs_per_row;
        let per_thread = ceil_div(n_vecs, n_threads);
        let (l, lane) = (self.b.var("l"), self.b.var("v"));
        let q = Expr::var(self.t) + Expr::var(l) * n_threads;
        let (rr, cv) = (q.clone().floor_div(Expr::int(vecs_per_row)), q.clone() % vecs_per_row);
        let col = cv * v;
        let (in_bounds, src_buf, src) = self.source(tl.operand, r0 + rr.clone(), c0 + col.clone());
        let dst = if k_along_cols {
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
            then_body: vec![vector(Expr::load(src_buf, src + Expr::var(lane)))],
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
    fn store_out(&mut self, acc: BufId, row: Expr, col: Expr) -> Stmt {
        let (s, p) = (self.s, self.p);
        let (i, j) = (self.b.var("i"), self.b.var("j"));
        let (r, c) = (row + Expr::var(i), col + Expr::var(j));
        let bz = Expr::var(self.bz);
        let (out_idx, bias_idx) = match p.out {
            OutputMap::Matrix => ((bz * p.m + r.clone()) * p.n + c.clone(), c.clone()),
            OutputMap::ConvNchw { channels, per_group, positions } => {
                let channel = bz * per_group + r.clone();
                let image = c.clone().floor_div(Expr::int(positions));
                ((image * channels + channel.clone()) * positions + c.clone() % positions, channel)
            }
        };
        let out = self.params[p.params.len() - 1];
        let bias = p.bias.map(|b| Expr::load(self.params[b], bias_idx.clone()));
        let residual = p.residual.map(|b| Expr::load(self.params[b], out_idx.clone()));
        let value =
            epilogue::apply(&p.epilogue, Expr::load(acc, Expr::var(i) * s.tn + Expr::var(j)), bias, residual);
        let guarded = Stmt::If {
            cond: r.cmp(CmpOp::Lt, Expr::int(p.m)).and(c.cmp(CmpOp::Lt, Expr::int(p.n))),
            then_body: vec![Stmt::store(out, out_idx, value)],
            else_body: vec![],
        };
        let inner = Stmt::for_loop(j, Expr::int(0), Expr::int(s.tn), LoopKind::Unrolled, vec![guarded]);
        Stmt::for_loop(i, Expr::int(0), Expr::int(s.tm), LoopKind::Unrolled, vec![inner])
    }
}
