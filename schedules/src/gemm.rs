//! The blocked-GEMM lowering shared by every "reduction into a matrix" operator: matmul, dense,
//! batched matmul and convolution (as an implicit GEMM).
//!
//! The problem is `C[i, col] = Σ_{c, kh, kw} A(i, c, kh, kw) · B(c, kh, kw, col)` for `i < m`,
//! `col < n`, inside optional outer batch loops. `c` is the blocked reduction (matmul's K, conv's
//! input channels); `kh, kw` are the kernel taps (1×1 for matmuls), iterated inside the
//! micro-kernel so B's index stays affine in `col`. The column space may be a *grid* wider than the
//! output rows (`grid_w ≥ valid_w`): conv computes a few junk columns per output row so that every
//! B row is a contiguous slice of its padded input; junk columns are never stored. Or the columns
//! may be the output's slow axis (`OutLayout::Columns`): conv with output channels as columns and
//! output positions as rows, A read from the padded input a broadcast at a time — no junk at all,
//! at the price of a transposing store.
//!
//! The schedule (BLIS/Goto structure): three cache-block loops (`jc` over columns, `pc` over `c`,
//! `ic` over rows) in a chosen order, packing of A (per `ic,pc` block into `mr`-tall panels) and
//! of B (per `jc,pc` block into `nr`-wide panels, or once for all blocks when B is a constant),
//! an `mr × nr` register tile (`i` unrolled, columns vectorized at the native width) and the
//! epilogue fused into the tile's write-back or run as a separate pass.

use crate::epilogue::{self, bin};
use autotune_ir::{
    BinOp, BufId, BufScope, CmpOp, EpilogueOp, Expr, LoopKind, LoopNest, NestBuilder, Prepack, Program, Stmt,
    VarId,
};

/// An index into a buffer, as a function of the batch-loop variables and per-access coordinates.
pub(crate) type IndexFn = Box<dyn Fn(&[Expr], &[Expr]) -> Expr>;
/// Statements that fill a scratch buffer: (builder, batch vars, params, scratch).
pub(crate) type FillFn = Box<dyn Fn(&mut NestBuilder, &[Expr], &[BufId], BufId) -> Vec<Stmt>>;

/// Where an operand's elements come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operand {
    /// A kernel parameter.
    Param(usize),
    /// The problem's scratch buffer ([`ScratchFill`]).
    Scratch,
}

/// A scratch buffer of `len` elements filled at batch depth `depth` (after that many batch loops)
/// by `fill`: conv's zero-padded (phase-split, for the first layout) copy of one input image.
pub(crate) struct ScratchFill {
    pub len: usize,
    pub depth: usize,
    pub fill: FillFn,
}

pub(crate) enum BiasAxis {
    /// One bias per row `i` (conv: output channel); the fn maps (batch, [i]) to the bias index.
    Row(IndexFn),
    /// One bias per column: the fn maps (batch, [column within its output row]) to the bias index
    /// (dense: the column itself; conv with channels as columns: the channel).
    Col(IndexFn),
}

/// Where element (i, col) of C goes in the output.
pub(crate) enum OutLayout {
    /// Row `i` is the output run at `row_base(i)`; its columns are rows of a grid `grid_w` wide of
    /// which the first `valid_w` are stored (matmul: one row of `n`, no junk).
    Rows { row_base: IndexFn, grid_w: i64, valid_w: i64 },
    /// Column `col` is the output run at `col_base(col)`, rows contiguous in it (conv with output
    /// channels as columns: a tile's vector lanes land `m` apart).
    Columns { col_base: IndexFn },
    /// Columns in blocks of `block` (a multiple of the vector width), each block a run of
    /// `plane` rows of `block` contiguous elements from `image_base(batch)`: conv with output
    /// channels as columns into a channel-blocked (NCHW{block}c) output, a tile's vectors stored
    /// whole.
    /// `plane` is the whole plane, its zero border included; `border` places the positions in it.
    ChannelBlocks { image_base: IndexFn, plane: i64, block: i64, border: Option<Bordered> },
}

/// Where output position `i` (row-major over rows `valid_w` wide) lies in a plane with a zero
/// border ([`autotune_ir::Halo`]): its rows are `row_w` long and the first position is at `origin`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bordered {
    pub valid_w: i64,
    pub row_w: i64,
    pub origin: i64,
}

impl Bordered {
    fn position(border: Option<Bordered>, i: Expr) -> Expr {
        match border {
            None => i,
            Some(b) => {
                Expr::int(b.origin)
                    + i.clone().floor_div(Expr::int(b.valid_w)) * b.row_w
                    + i % Expr::int(b.valid_w)
            }
        }
    }
}

/// Statements that write the zero border around the output's planes (given the output buffer):
/// the producer's half of a [`autotune_ir::Halo`].
pub(crate) type BorderFill = Box<dyn Fn(&mut NestBuilder, BufId) -> Vec<Stmt>>;

pub(crate) struct GemmProblem {
    pub name: String,
    pub m: i64,
    /// Columns of the grid (= rows × grid_w for conv).
    pub n: i64,
    /// The blocked reduction extent.
    pub k: i64,
    pub kh: i64,
    pub kw: i64,
    /// The `kw` loop walks the channels of an input channel block (coefficient 1 in A's index):
    /// unrolled, so A's reads are constant offsets from one address — unless the `kh` loop (the
    /// kernel taps) is, which leaves this one a loop.
    pub kw_unrolled: bool,
    pub lanes: i64,
    /// Kernel parameters in order: (name, length).
    pub params: Vec<(&'static str, usize)>,
    /// Outer loops around the GEMM, outermost first: (name, extent).
    pub batch: Vec<(&'static str, i64)>,
    pub a_source: Operand,
    /// A may be read up to `mr` rows past `m` (its scratch has room): edge tiles then run the
    /// full micro-kernel unpacked too, and only their stores are bounded.
    pub a_rows_slack: bool,
    /// coords: [i, c, kh, kw]
    pub a_index: IndexFn,
    /// A is a model constant (conv weights) that depends only on these batch loops (conv: the
    /// group): it may be prepacked once into the kernel's panel layout.
    pub a_constant_over: Option<Vec<usize>>,
    pub b_source: Operand,
    /// coords: [c, kh, kw, col]; affine in col with coefficient 1 unless B is only read packed.
    pub b_index: IndexFn,
    /// As `a_constant_over`, for B (constant dense weights; conv weights as columns).
    pub b_constant_over: Option<Vec<usize>>,
    /// The buffer an operand may come from instead of a parameter.
    pub scratch: Option<ScratchFill>,
    pub out_param: usize,
    pub out: OutLayout,
    /// Zeroes the output's border once per call, before the tiles write the rest.
    pub out_border: Option<BorderFill>,
    pub epilogue: Vec<EpilogueOp>,
    pub bias: Option<(usize, BiasAxis)>,
    pub residual: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PackA {
    None,
    PerCall,
    /// Packed once for every block (and group), before the kernel runs (constant A only).
    Prepacked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PackB {
    None,
    PerCall,
    /// Packed once for all blocks, before the kernel runs (constant B only).
    Prepacked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GemmSchedule {
    pub mr: i64,
    pub nr_vecs: i64,
    pub kc: i64,
    pub mc_tiles: i64,
    pub nc_tiles: i64,
    pub pack_a: PackA,
    pub pack_b: PackB,
    pub order: usize,
    pub inner_order: i64,
    /// 0: the outer spatial block loop is parallel, 1: the inner one, 2: the outermost batch loop.
    pub parallel_loop: i64,
    pub unroll_k: i64,
    pub unroll_taps: bool,
    pub epilogue_in_tile: bool,
    /// Accumulate into a scratch shaped like the column grid (every tile a full vector store),
    /// then copy the valid columns out, applying the epilogue on the way. Only for grids with
    /// junk columns.
    pub out_via_grid: bool,
    /// Prefetch the prepacked B panel the micro-kernel reads next while it computes on this one
    /// (prepacked B only; see [`Lowering::prefetch_next_b_panel`]).
    pub prefetch_b: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    A,
    B,
}

impl Side {
    fn letter(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Jc,
    Pc,
    Ic,
}

/// Orders of the three block loops, outermost first.
const ORDERS: [[Block; 3]; 4] = [
    [Block::Jc, Block::Pc, Block::Ic],
    [Block::Pc, Block::Jc, Block::Ic],
    [Block::Ic, Block::Pc, Block::Jc],
    [Block::Pc, Block::Ic, Block::Jc],
];
pub(crate) const N_ORDERS: i64 = ORDERS.len() as i64;

pub(crate) fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// `line_elems`: elements per cache line of the target (the unit of a prefetch).
pub(crate) fn lower(p: &GemmProblem, s: &GemmSchedule, line_elems: i64) -> Program {
    Lowering::new(p, s, line_elems.max(1)).build()
}

struct Lowering<'a> {
    b: NestBuilder,
    p: &'a GemmProblem,
    s: &'a GemmSchedule,
    nr: i64,
    mc: i64,
    nc: i64,
    taps: i64,
    params: Vec<BufId>,
    batch_vars: Vec<Expr>,
    jc: VarId,
    pc: VarId,
    ic: VarId,
    /// The buffers A and B are read from (param, scratch or prepacked param).
    a_buf: BufId,
    b_buf: BufId,
    scratch: Option<BufId>,
    ap: Option<BufId>,
    bp: Option<BufId>,
    /// The grid-shaped accumulation scratch, when `out_via_grid`.
    grid: Option<BufId>,
    line_elems: i64,
}

impl<'a> Lowering<'a> {
    fn new(p: &'a GemmProblem, s: &'a GemmSchedule, line_elems: i64) -> Self {
        let mut b = NestBuilder::new();
        let nr = s.nr_vecs * p.lanes;
        let mc = s.mr * s.mc_tiles;
        let nc = nr * s.nc_tiles;
        let taps = p.kh * p.kw;
        let mut params = Vec::new();
        for (i, (name, len)) in p.params.iter().enumerate() {
            let len = if p.b_source == Operand::Param(i) && s.pack_b == PackB::Prepacked {
                prepacked_b_len(p, s)
            } else if p.a_source == Operand::Param(i) && s.pack_a == PackA::Prepacked {
                prepacked_a_len(p, s)
            } else {
                *len
            };
            params.push(b.param(name, len));
        }
        let batch_vars: Vec<Expr> = p.batch.iter().map(|(name, _)| Expr::var(b.var(name))).collect();
        let (jc, pc, ic) = (b.var("jc"), b.var("pc"), b.var("ic"));
        let scratch = p.scratch.as_ref().map(|sc| b.buffer("scratch", sc.len, BufScope::Heap));
        let source = |operand: Operand| match (operand, scratch) {
            (Operand::Param(i), _) => params[i],
            (Operand::Scratch, Some(buf)) => buf,
            (Operand::Scratch, None) => unreachable!("an operand reads a scratch the problem does not fill"),
        };
        let (a_buf, b_buf) = (source(p.a_source), source(p.b_source));
        let ap = (s.pack_a == PackA::PerCall)
            .then(|| b.buffer("A_packed", (mc * s.kc * taps) as usize, BufScope::Heap));
        let bp = (s.pack_b == PackB::PerCall)
            .then(|| b.buffer("B_packed", (nc * s.kc * taps) as usize, BufScope::Heap));
        // The grid scratch drops junk columns on the way out (Rows), or transposes (Columns).
        let needs_grid = match p.out {
            OutLayout::Rows { grid_w, valid_w, .. } => grid_w != valid_w,
            OutLayout::Columns { .. } => true,
            OutLayout::ChannelBlocks { .. } => false,
        };
        let grid =
            (s.out_via_grid && needs_grid).then(|| b.buffer("C_grid", (p.m * p.n) as usize, BufScope::Heap));
        Lowering {
            b,
            p,
            s,
            nr,
            mc,
            nc,
            taps,
            params,
            batch_vars,
            jc,
            pc,
            ic,
            a_buf,
            b_buf,
            scratch,
            ap,
            bp,
            grid,
            line_elems,
        }
    }

    fn build(mut self) -> Program {
        let order = ORDERS[self.s.order];
        let spatial: Vec<Block> = order.iter().copied().filter(|&b| b != Block::Pc).collect();
        let parallel_block = match self.s.parallel_loop {
            0 => Some(spatial[0]),
            1 => Some(spatial[1]),
            _ => None,
        };
        let parallel_batch = self.s.parallel_loop == 2 && !self.p.batch.is_empty();

        let mut body = self.block_body();
        for (depth, &block) in order.iter().enumerate().rev() {
            let fixed = &order[..=depth];
            let fixed_before = &order[..depth];
            let newly = |x: Block, y: Block| {
                fixed.contains(&x)
                    && fixed.contains(&y)
                    && !(fixed_before.contains(&x) && fixed_before.contains(&y))
            };
            if let Some(bp) = self.bp {
                if newly(Block::Jc, Block::Pc) {
                    let pack = self.pack_b_block(bp, Expr::int(0));
                    body = vec![Stmt::Allocate { buf: bp, body: [pack, body].concat() }];
                }
            }
            if let Some(ap) = self.ap {
                if newly(Block::Ic, Block::Pc) {
                    let pack = self.pack_a_block(ap, Expr::int(0));
                    body = vec![Stmt::Allocate { buf: ap, body: [pack, body].concat() }];
                }
            }
            let (var, extent, step) = match block {
                Block::Jc => (self.jc, self.p.n, self.nc),
                Block::Pc => (self.pc, self.p.k, self.s.kc),
                Block::Ic => (self.ic, self.p.m, self.mc),
            };
            let kind = if Some(block) == parallel_block && !parallel_batch {
                LoopKind::Parallel
            } else {
                LoopKind::Serial
            };
            body = vec![Stmt::for_loop(var, Expr::int(0), Expr::int(ceil_div(extent, step)), kind, body)];
        }
        if let Some(grid) = self.grid {
            let copy = self.output_pass(Some(grid));
            body = vec![Stmt::Allocate { buf: grid, body: [body, copy].concat() }];
        } else if !self.s.epilogue_in_tile && self.has_epilogue() {
            body.extend(self.output_pass(None));
        }
        // Batch loops, innermost first; the B scratch is filled at its depth.
        for depth in (0..self.p.batch.len()).rev() {
            body = self.wrap_scratch(depth + 1, body);
            let var = match self.batch_vars[depth] {
                Expr::Var(v) => v,
                _ => unreachable!("batch vars are variables"),
            };
            let kind = if parallel_batch && depth == 0 { LoopKind::Parallel } else { LoopKind::Serial };
            body = vec![Stmt::for_loop(var, Expr::int(0), Expr::int(self.p.batch[depth].1), kind, body)];
        }
        body = self.wrap_scratch(0, body);
        if let Some(fill) = &self.p.out_border {
            let border = fill(&mut self.b, self.params[self.p.out_param]);
            body = [border, body].concat();
        }
        let mut prepacks = Vec::new();
        if self.s.pack_a == PackA::Prepacked {
            prepacks.push(self.prepack_a());
        }
        if self.s.pack_b == PackB::Prepacked {
            prepacks.push(self.prepack_b());
        }
        let name = self.p.name.clone();
        Program { kernel: self.b.finish(&name, body), prepacks }
    }

    fn wrap_scratch(&mut self, depth: usize, body: Vec<Stmt>) -> Vec<Stmt> {
        match (&self.p.scratch, self.scratch) {
            (Some(sc), Some(buf)) if sc.depth == depth => {
                let fill_stmts = (sc.fill)(&mut self.b, &self.batch_vars, &self.params, buf);
                vec![Stmt::Allocate { buf, body: [fill_stmts, body].concat() }]
            }
            _ => body,
        }
    }

    fn has_epilogue(&self) -> bool {
        !self.p.epilogue.is_empty()
    }

    fn origin(v: VarId, step: i64) -> Expr {
        Expr::var(v) * step
    }

    fn block_len(v: VarId, step: i64, dim: i64) -> Expr {
        Expr::int(step).min(Expr::int(dim) - Self::origin(v, step))
    }

    fn a_at(&self, i: Expr, c: Expr, kh: Expr, kw: Expr) -> Expr {
        Expr::load(self.a_buf, (self.p.a_index)(&self.batch_vars, &[i, c, kh, kw]))
    }

    fn b_at(&self, c: Expr, kh: Expr, kw: Expr, col: Expr) -> Expr {
        (self.p.b_index)(&self.batch_vars, &[c, kh, kw, col])
    }

    /// Offset of tap (kh, kw) of reduction row c inside a packed panel (in panel rows).
    fn panel_row(&self, c: Expr, kh: Expr, kw: Expr) -> Expr {
        (c * self.taps) + kh * self.p.kw + kw
    }

    /// Which copy of a prepacked operand the batch variables select: the operand depends only on
    /// the batch loops `over`.
    fn prepacked_slot(&self, over: Option<&[usize]>, batch: &[Expr]) -> Expr {
        let mut slot = Expr::int(0);
        for &d in over.unwrap_or(&[]) {
            slot = slot * self.p.batch[d].1 + batch[d].clone();
        }
        slot
    }

    /// Offset of the current (batch, jc, pc) block inside the prepacked B parameter.
    fn prepacked_b_base(&self, batch: &[Expr], jc: Expr, pc: Expr) -> Expr {
        let (n_jc, n_pc) = (ceil_div(self.p.n, self.nc), ceil_div(self.p.k, self.s.kc));
        let slot = self.prepacked_slot(self.p.b_constant_over.as_deref(), batch);
        ((slot * n_jc + jc) * n_pc + pc) * (self.nc * self.s.kc * self.taps)
    }

    /// Offset of the current (batch, ic, pc) block inside the prepacked A parameter.
    fn prepacked_a_base(&self, batch: &[Expr], ic: Expr, pc: Expr) -> Expr {
        let (n_ic, n_pc) = (ceil_div(self.p.m, self.mc), ceil_div(self.p.k, self.s.kc));
        let slot = self.prepacked_slot(self.p.a_constant_over.as_deref(), batch);
        ((slot * n_ic + ic) * n_pc + pc) * (self.mc * self.s.kc * self.taps)
    }

    /// Builds a separate nest (a prepack) with this lowering's helpers: the kernel's builder,
    /// parameters, batch variables, B source and block variables are set aside while `body`
    /// runs against a fresh builder, and restored afterwards.
    fn in_separate_nest(&mut self, name: &str, body: impl FnOnce(&mut Self) -> Vec<Stmt>) -> LoopNest {
        let saved_builder = std::mem::replace(&mut self.b, NestBuilder::new());
        let saved_params = self.params.clone();
        let saved_batch = self.batch_vars.clone();
        let saved = (self.a_buf, self.b_buf, self.jc, self.pc, self.ic);
        let stmts = body(self);
        let builder = std::mem::replace(&mut self.b, saved_builder);
        self.params = saved_params;
        self.batch_vars = saved_batch;
        (self.a_buf, self.b_buf, self.jc, self.pc, self.ic) = saved;
        builder.finish(&format!("{}_{name}", self.p.name), stmts)
    }

    /// One serial loop per (var, extent), outermost first, around `body`.
    fn serial_loops(loops: &[(VarId, i64)], body: Vec<Stmt>) -> Vec<Stmt> {
        loops.iter().rev().fold(body, |body, &(v, extent)| {
            vec![Stmt::for_loop(v, Expr::int(0), Expr::int(extent), LoopKind::Serial, body)]
        })
    }

    /// The prepack nest of A: every (batch slot, ic, pc) block packed once into panels.
    fn prepack_a(&mut self) -> Prepack {
        self.prepack(Side::A)
    }

    /// The prepack nest of B: every (batch slot, jc, pc) block packed once, in the kernel's read
    /// order.
    fn prepack_b(&mut self) -> Prepack {
        self.prepack(Side::B)
    }

    fn prepack(&mut self, side: Side) -> Prepack {
        let (source, over, name) = match side {
            Side::A => (self.p.a_source, self.p.a_constant_over.clone(), "A_prepacked"),
            Side::B => (self.p.b_source, self.p.b_constant_over.clone(), "B_prepacked"),
        };
        let Operand::Param(input) = source else { unreachable!("only a parameter is prepacked") };
        let nest = self.in_separate_nest(&format!("prepack_{}", side.letter()), |this| {
            let (param_name, len) = this.p.params[input];
            let unpacked = this.b.param(param_name, len);
            let packed_len = match side {
                Side::A => prepacked_a_len(this.p, this.s),
                Side::B => prepacked_b_len(this.p, this.s),
            };
            let packed = this.b.param(name, packed_len);
            // The operand depends only on the batch loops it is constant over; the others are 0.
            this.batch_vars = vec![Expr::int(0); this.p.batch.len()];
            let mut loops = Vec::new();
            for &d in over.as_deref().unwrap_or(&[]) {
                let v = this.b.var(this.p.batch[d].0);
                this.batch_vars[d] = Expr::var(v);
                loops.push((v, this.p.batch[d].1));
            }
            this.pc = this.b.var("pc");
            let batch = this.batch_vars.clone();
            let pack = match side {
                Side::A => {
                    this.a_buf = unpacked;
                    this.ic = this.b.var("ic");
                    loops.push((this.ic, ceil_div(this.p.m, this.mc)));
                    let base = this.prepacked_a_base(&batch, Expr::var(this.ic), Expr::var(this.pc));
                    this.pack_a_block(packed, base)
                }
                Side::B => {
                    this.b_buf = unpacked;
                    this.jc = this.b.var("jc");
                    loops.push((this.jc, ceil_div(this.p.n, this.nc)));
                    let base = this.prepacked_b_base(&batch, Expr::var(this.jc), Expr::var(this.pc));
                    this.pack_b_block(packed, base)
                }
            };
            loops.push((this.pc, ceil_div(this.p.k, this.s.kc)));
            Self::serial_loops(&loops, pack)
        });
        Prepack { input, nest }
    }

    /// The tap loops (kh, kw) around `body`.
    fn tap_loops(&mut self, kh: VarId, kw: VarId, body: Vec<Stmt>) -> Stmt {
        self.tap_loops_after(kh, kw, Vec::new(), body)
    }

    /// The tap loops, with `per_row` at the start of each row of taps (before its `kw` loop).
    fn tap_loops_after(&mut self, kh: VarId, kw: VarId, per_row: Vec<Stmt>, body: Vec<Stmt>) -> Stmt {
        let kind = if self.s.unroll_taps { LoopKind::Unrolled } else { LoopKind::Serial };
        // Channels within a block: unrolled, unless the kernel taps around them are.
        let kw_kind = match (self.p.kw_unrolled, self.s.unroll_taps) {
            (true, true) => LoopKind::Serial,
            (true, false) => LoopKind::Unrolled,
            (false, _) => kind,
        };
        let kw_loop = Stmt::for_loop(kw, Expr::int(0), Expr::int(self.p.kw), kw_kind, body);
        Stmt::for_loop(kh, Expr::int(0), Expr::int(self.p.kh), kind, [per_row, vec![kw_loop]].concat())
    }

    /// Packs the B block (jc, pc) into nr-wide panels at `base` of `dst`, zero beyond the grid.
    fn pack_b_block(&mut self, dst: BufId, base: Expr) -> Vec<Stmt> {
        let (kc, nr, n, lanes, taps) = (self.s.kc, self.nr, self.p.n, self.p.lanes, self.taps);
        let (jr, c, kh, kw) =
            (self.b.var("pb_jr"), self.b.var("pb_c"), self.b.var("pb_kh"), self.b.var("pb_kw"));
        let (jv, j, je) = (self.b.var("pb_jv"), self.b.var("pb_j"), self.b.var("pb_je"));
        let k_len = Self::block_len(self.pc, kc, self.p.k);
        let n_len = Self::block_len(self.jc, self.nc, n);
        let n_tiles = (n_len + (nr - 1)).floor_div(Expr::int(nr));
        let col0 = Self::origin(self.jc, self.nc) + Expr::var(jr) * nr;
        let c_abs = Self::origin(self.pc, kc) + Expr::var(c);
        let row =
            (Expr::var(jr) * (kc * taps) + self.panel_row(Expr::var(c), Expr::var(kh), Expr::var(kw))) * nr;
        let dst_at = |off: Expr| base.clone() + row.clone() + off;
        let src = |col: Expr| self.b_at(c_abs.clone(), Expr::var(kh), Expr::var(kw), col);
        let full = Stmt::for_loop(
            jv,
            Expr::int(0),
            Expr::int(self.s.nr_vecs),
            LoopKind::Unrolled,
            vec![Stmt::for_loop(
                j,
                Expr::int(0),
                Expr::int(lanes),
                LoopKind::Vectorized,
                vec![Stmt::store(
                    dst,
                    dst_at(Expr::var(jv) * lanes + Expr::var(j)),
                    Expr::load(self.b_buf, src(col0.clone() + Expr::var(jv) * lanes + Expr::var(j))),
                )],
            )],
        );
        let col = col0.clone() + Expr::var(je);
        let edge = Stmt::for_loop(
            je,
            Expr::int(0),
            Expr::int(nr),
            LoopKind::Serial,
            vec![Stmt::If {
                cond: col.clone().cmp(CmpOp::Lt, Expr::int(n)),
                then_body: vec![Stmt::store(dst, dst_at(Expr::var(je)), Expr::load(self.b_buf, src(col)))],
                else_body: vec![Stmt::store(dst, dst_at(Expr::var(je)), Expr::Float(0.0))],
            }],
        );
        let per_row = Stmt::If {
            cond: (col0 + nr).cmp(CmpOp::Le, Expr::int(n)),
            then_body: vec![full],
            else_body: vec![edge],
        };
        let taps_loop = self.tap_loops(kh, kw, vec![per_row]);
        // Parallel over panels: when the block is packed outside the parallel block loop (the
        // threads then share it), the threads pack it together instead of waiting for one; inside
        // a parallel loop the code generator runs it inline.
        vec![Stmt::for_loop(
            jr,
            Expr::int(0),
            n_tiles,
            LoopKind::Parallel,
            vec![Stmt::for_loop(c, Expr::int(0), k_len, LoopKind::Serial, vec![taps_loop])],
        )]
    }

    /// A_packed[((ir·kc + c)·taps + tap)·mr + i] = A(ic0 + ir·mr + i, pc0 + c, tap), zero beyond m.
    fn pack_a_block(&mut self, ap: BufId, base: Expr) -> Vec<Stmt> {
        let (kc, mr, m, taps) = (self.s.kc, self.s.mr, self.p.m, self.taps);
        let (ir, c, kh, kw) =
            (self.b.var("pa_ir"), self.b.var("pa_c"), self.b.var("pa_kh"), self.b.var("pa_kw"));
        let (i, ie) = (self.b.var("pa_i"), self.b.var("pa_ie"));
        let k_len = Self::block_len(self.pc, kc, self.p.k);
        let m_len = Self::block_len(self.ic, self.mc, m);
        let m_tiles = (m_len + (mr - 1)).floor_div(Expr::int(mr));
        let row0 = Self::origin(self.ic, self.mc) + Expr::var(ir) * mr;
        let c_abs = Self::origin(self.pc, kc) + Expr::var(c);
        let dst = |i: Expr, this: &Self| {
            base.clone()
                + (Expr::var(ir) * (kc * taps) + this.panel_row(Expr::var(c), Expr::var(kh), Expr::var(kw)))
                    * mr
                + i
        };
        let full = Stmt::for_loop(
            i,
            Expr::int(0),
            Expr::int(mr),
            LoopKind::Unrolled,
            vec![Stmt::store(
                ap,
                dst(Expr::var(i), self),
                self.a_at(row0.clone() + Expr::var(i), c_abs.clone(), Expr::var(kh), Expr::var(kw)),
            )],
        );
        let row = row0.clone() + Expr::var(ie);
        let edge = Stmt::for_loop(
            ie,
            Expr::int(0),
            Expr::int(mr),
            LoopKind::Serial,
            vec![Stmt::If {
                cond: row.clone().cmp(CmpOp::Lt, Expr::int(m)),
                then_body: vec![Stmt::store(
                    ap,
                    dst(Expr::var(ie), self),
                    self.a_at(row, c_abs.clone(), Expr::var(kh), Expr::var(kw)),
                )],
                else_body: vec![Stmt::store(ap, dst(Expr::var(ie), self), Expr::Float(0.0))],
            }],
        );
        let per_tap = Stmt::If {
            cond: (row0 + mr).cmp(CmpOp::Le, Expr::int(m)),
            then_body: vec![full],
            else_body: vec![edge],
        };
        let taps_loop = self.tap_loops(kh, kw, vec![per_tap]);
        // Parallel over panels, as for B (see `pack_b_block`).
        vec![Stmt::for_loop(
            ir,
            Expr::int(0),
            m_tiles,
            LoopKind::Parallel,
            vec![Stmt::for_loop(c, Expr::int(0), k_len, LoopKind::Serial, vec![taps_loop])],
        )]
    }

    fn block_body(&mut self) -> Vec<Stmt> {
        let (mr, nr) = (self.s.mr, self.nr);
        let (jr, ir) = (self.b.var("jr"), self.b.var("ir"));
        let m_len = Self::block_len(self.ic, self.mc, self.p.m);
        let n_len = Self::block_len(self.jc, self.nc, self.p.n);
        let m_tiles = (m_len + (mr - 1)).floor_div(Expr::int(mr));
        let n_tiles = (n_len + (nr - 1)).floor_div(Expr::int(nr));
        let tile = self.micro_tile(jr, ir);
        let (outer, outer_n, inner, inner_n) =
            if self.s.inner_order == 0 { (jr, n_tiles, ir, m_tiles) } else { (ir, m_tiles, jr, n_tiles) };
        vec![Stmt::for_loop(
            outer,
            Expr::int(0),
            outer_n,
            LoopKind::Serial,
            vec![Stmt::for_loop(inner, Expr::int(0), inner_n, LoopKind::Serial, tile)],
        )]
    }

    /// (grid_w, valid_w) when the columns are a grid with junk columns (Rows layout only).
    fn junk(&self) -> Option<(i64, i64)> {
        match self.p.out {
            OutLayout::Rows { grid_w, valid_w, .. } if grid_w != valid_w => Some((grid_w, valid_w)),
            _ => None,
        }
    }

    /// Output index of row `i`, grid column `col` (valid only if `col % grid_w < valid_w`).
    fn out_index(&self, i: Expr, col: Expr) -> Expr {
        if self.grid.is_some() {
            return i * self.p.n + col;
        }
        match &self.p.out {
            OutLayout::Columns { col_base } => col_base(&self.batch_vars, &[col]) + i,
            OutLayout::ChannelBlocks { image_base, plane, block, border } => {
                let b = Expr::int(*block);
                image_base(&self.batch_vars, &[])
                    + (col.clone().floor_div(b.clone()) * *plane + Bordered::position(*border, i)) * *block
                    + col % b
            }
            OutLayout::Rows { row_base, grid_w, valid_w } => {
                let base = row_base(&self.batch_vars, &[i]);
                if grid_w == valid_w {
                    return base + col;
                }
                base + col.clone().floor_div(Expr::int(*grid_w)) * *valid_w + (col % Expr::int(*grid_w))
            }
        }
    }

    /// Output index for lane `lane` of the vector that starts `vec_off` (a multiple of the vector
    /// width) past tile column `col0` (same grid row).
    fn out_index_run(&self, i: Expr, col0: Expr, vec_off: Expr, lane: Expr) -> Expr {
        if self.grid.is_some() {
            return i * self.p.n + col0 + vec_off + lane;
        }
        match &self.p.out {
            // The lanes of a run are output channels: `m` apart, stored lane by lane.
            OutLayout::Columns { col_base } => col_base(&self.batch_vars, &[col0 + vec_off + lane]) + i,
            // A vector never straddles two blocks: it starts at a multiple of the width, which
            // divides the block.
            OutLayout::ChannelBlocks { .. } => self.out_index(i, col0 + vec_off) + lane,
            OutLayout::Rows { row_base, grid_w, valid_w } => {
                let base = row_base(&self.batch_vars, &[i]);
                if grid_w == valid_w {
                    return base + col0 + vec_off + lane;
                }
                base + col0.clone().floor_div(Expr::int(*grid_w)) * *valid_w
                    + (col0 % Expr::int(*grid_w))
                    + vec_off
                    + lane
            }
        }
    }

    fn col_valid(&self, col: Expr) -> Expr {
        match self.junk() {
            Some((gw, vw)) if self.grid.is_none() => (col.clone() % Expr::int(gw))
                .cmp(CmpOp::Lt, Expr::int(vw))
                .and(col.cmp(CmpOp::Lt, Expr::int(self.p.n))),
            _ => col.cmp(CmpOp::Lt, Expr::int(self.p.n)),
        }
    }

    /// The epilogue applied to `v` for output row `i`; `out_idx` is the element's output index,
    /// `col_in_row` its column within the output row (for a per-column bias).
    fn epilogue(&self, v: Expr, i: Expr, out_idx: Expr, col_in_row: Expr) -> Expr {
        let bias = self.p.bias.as_ref().map(|(param, axis)| {
            let index = match axis {
                BiasAxis::Row(f) => f(&self.batch_vars, std::slice::from_ref(&i)),
                BiasAxis::Col(f) => f(&self.batch_vars, std::slice::from_ref(&col_in_row)),
            };
            Expr::load(self.params[*param], index)
        });
        let residual = self.p.residual.map(|param| Expr::load(self.params[param], out_idx));
        epilogue::apply(&self.p.epilogue, v, bias, residual)
    }

    /// Column of grid column `col` within its output row.
    fn col_in_row(&self, col: Expr) -> Expr {
        match self.junk() {
            Some((gw, _)) => col % Expr::int(gw),
            None => col,
        }
    }

    /// Stores `value` (the tile's partial sum) into output element `idx`: the first K block
    /// overwrites, later ones accumulate, the last one also applies a fused epilogue.
    fn write_back(
        &self,
        idx: Expr,
        value: Expr,
        i: Expr,
        col_in_row: Expr,
        body: &dyn Fn(Stmt) -> Stmt,
    ) -> Stmt {
        let out = self.grid.unwrap_or(self.params[self.p.out_param]);
        let n_pc = ceil_div(self.p.k, self.s.kc);
        let first = Expr::var(self.pc).cmp(CmpOp::Eq, Expr::int(0));
        let last = Expr::var(self.pc).cmp(CmpOp::Eq, Expr::int(n_pc - 1));
        let acc_plus_c = bin(BinOp::Add, Expr::load(out, idx.clone()), value.clone());
        let fuse = self.s.epilogue_in_tile && self.has_epilogue() && self.grid.is_none();
        let store = |v: Expr| body(Stmt::store(out, idx.clone(), v));
        let epi = |v: Expr| self.epilogue(v, i.clone(), idx.clone(), col_in_row.clone());
        if !fuse {
            return Stmt::If {
                cond: first,
                then_body: vec![store(value)],
                else_body: vec![store(acc_plus_c)],
            };
        }
        if n_pc == 1 {
            return store(epi(value));
        }
        Stmt::If {
            cond: first,
            then_body: vec![store(value)],
            else_body: vec![Stmt::If {
                cond: last,
                then_body: vec![store(epi(acc_plus_c.clone()))],
                else_body: vec![store(acc_plus_c)],
            }],
        }
    }

    fn micro_tile(&mut self, jr: VarId, ir: VarId) -> Vec<Stmt> {
        let (mr, nr, lanes, kc, m, n, taps) =
            (self.s.mr, self.nr, self.p.lanes, self.s.kc, self.p.m, self.p.n, self.taps);
        let row0 = Self::origin(self.ic, self.mc) + Expr::var(ir) * mr;
        let col0 = Self::origin(self.jc, self.nc) + Expr::var(jr) * nr;
        let pc0 = Self::origin(self.pc, kc);
        let k_len = Self::block_len(self.pc, kc, self.p.k);
        let full_tile = (row0.clone() + mr)
            .cmp(CmpOp::Le, Expr::int(m))
            .and((col0.clone() + nr).cmp(CmpOp::Le, Expr::int(n)));
        let vector_store_ok = match self.junk() {
            Some((gw, vw)) if self.grid.is_none() => {
                full_tile.clone().and(((col0.clone() % Expr::int(gw)) + nr).cmp(CmpOp::Le, Expr::int(vw)))
            }
            _ => full_tile.clone(),
        };

        let acc = self.b.buffer("acc", (mr * nr) as usize, BufScope::Register);
        let (i, jv, j, c, kh, kw) = (
            self.b.var("i"),
            self.b.var("jv"),
            self.b.var("j"),
            self.b.var("c"),
            self.b.var("kh"),
            self.b.var("kw"),
        );
        let acc_idx = || Expr::var(i) * nr + Expr::var(jv) * lanes + Expr::var(j);
        let tile_loops = |body: Vec<Stmt>| -> Stmt {
            Stmt::for_loop(
                i,
                Expr::int(0),
                Expr::int(mr),
                LoopKind::Unrolled,
                vec![Stmt::for_loop(
                    jv,
                    Expr::int(0),
                    Expr::int(self.s.nr_vecs),
                    LoopKind::Unrolled,
                    vec![Stmt::for_loop(j, Expr::int(0), Expr::int(lanes), LoopKind::Vectorized, body)],
                )],
            )
        };
        let panel_row = self.panel_row(Expr::var(c), Expr::var(kh), Expr::var(kw));
        let a_prepacked_base =
            self.prepacked_a_base(&self.batch_vars, Expr::var(self.ic), Expr::var(self.pc));
        let a_panel = |this: &Self, c: VarId, kh: VarId, kw: VarId, i: VarId| -> Option<Expr> {
            let at = (Expr::var(ir) * (kc * taps)
                + this.panel_row(Expr::var(c), Expr::var(kh), Expr::var(kw)))
                * mr
                + Expr::var(i);
            match (this.ap, this.s.pack_a) {
                (Some(ap), _) => Some(Expr::load(ap, at)),
                (None, PackA::Prepacked) => Some(Expr::load(this.a_buf, a_prepacked_base.clone() + at)),
                _ => None,
            }
        };
        let a_value = a_panel(self, c, kh, kw, i).unwrap_or_else(|| {
            self.a_at(row0.clone() + Expr::var(i), pc0.clone() + Expr::var(c), Expr::var(kh), Expr::var(kw))
        });
        let b_col = Expr::var(jv) * lanes + Expr::var(j);
        let b_value = match self.s.pack_b {
            PackB::PerCall => Expr::load(
                self.bp.unwrap_or(self.b_buf),
                (Expr::var(jr) * (kc * taps) + panel_row.clone()) * nr + b_col.clone(),
            ),
            PackB::Prepacked => Expr::load(
                self.b_buf,
                self.prepacked_b_base(&self.batch_vars, Expr::var(self.jc), Expr::var(self.pc))
                    + (Expr::var(jr) * (kc * taps) + panel_row.clone()) * nr
                    + b_col.clone(),
            ),
            PackB::None => Expr::load(
                self.b_buf,
                self.b_at(
                    pc0.clone() + Expr::var(c),
                    Expr::var(kh),
                    Expr::var(kw),
                    col0.clone() + b_col.clone(),
                ),
            ),
        };
        let packed_both =
            (self.s.pack_a != PackA::None || self.p.a_rows_slack) && self.s.pack_b != PackB::None;
        let update = tile_loops(vec![Stmt::store(
            acc,
            acc_idx(),
            Expr::fma(a_value, b_value, Expr::load(acc, acc_idx())),
        )]);
        let (per_step, per_tap_row) = self.prefetch_next_b_panel(jr, ir, c, kh);
        let taps_loop = self.tap_loops_after(kh, kw, per_tap_row, vec![update]);
        let k_loop = Stmt::for_loop(
            c,
            Expr::int(0),
            k_len.clone(),
            LoopKind::UnrollBy(self.s.unroll_k as u32),
            [per_step, vec![taps_loop]].concat(),
        );
        let init = tile_loops(vec![Stmt::store(acc, acc_idx(), Expr::Float(0.0))]);
        let out_run = self.out_index_run(
            Expr::var(i) + row0.clone(),
            col0.clone(),
            Expr::var(jv) * lanes,
            Expr::var(j),
        );
        let col_in_row_run = self.col_in_row(col0.clone()) + Expr::var(jv) * lanes + Expr::var(j);
        let write_full = self.write_back(
            out_run,
            Expr::load(acc, acc_idx()),
            row0.clone() + Expr::var(i),
            col_in_row_run,
            &|store| tile_loops(vec![store]),
        );

        // Edge tiles and tiles that straddle junk columns: bounded scalar write-back.
        let (ie, je, ce, khe, kwe) =
            (self.b.var("ie"), self.b.var("je"), self.b.var("ce"), self.b.var("khe"), self.b.var("kwe"));
        let rows = Expr::int(mr).min(Expr::int(m) - row0.clone());
        let cols = Expr::int(nr).min(Expr::int(n) - col0.clone());
        let col_e = col0.clone() + Expr::var(je);
        let bounded = |this: &Self, value: Expr| -> Stmt {
            let idx = this.out_index(row0.clone() + Expr::var(ie), col_e.clone());
            let wb = this.write_back(
                idx,
                value,
                row0.clone() + Expr::var(ie),
                this.col_in_row(col_e.clone()),
                &|s| s,
            );
            Stmt::for_loop(
                ie,
                Expr::int(0),
                rows.clone(),
                LoopKind::Serial,
                vec![Stmt::for_loop(
                    je,
                    Expr::int(0),
                    cols.clone(),
                    LoopKind::Serial,
                    vec![Stmt::If {
                        cond: this.col_valid(col_e.clone()),
                        then_body: vec![wb],
                        else_body: vec![],
                    }],
                )],
            )
        };

        if packed_both {
            // Zero-padded panels: the same micro-kernel for every tile; only the store differs.
            let spill = self.b.buffer("acc_spill", (mr * nr) as usize, BufScope::Register);
            let to_spill = tile_loops(vec![Stmt::store(spill, acc_idx(), Expr::load(acc, acc_idx()))]);
            let slow_store = Stmt::Allocate {
                buf: spill,
                body: vec![to_spill, bounded(self, Expr::load(spill, Expr::var(ie) * nr + Expr::var(je)))],
            };
            vec![Stmt::Allocate {
                buf: acc,
                body: vec![
                    init,
                    k_loop,
                    Stmt::If {
                        cond: vector_store_ok,
                        then_body: vec![write_full],
                        else_body: vec![slow_store],
                    },
                ],
            }]
        } else {
            // Unpacked operands cannot be read past the matrix: edge tiles take a scalar path.
            let sum = self.b.buffer("edge_sum", 1, BufScope::Register);
            let a_e = a_panel(self, ce, khe, kwe, ie).unwrap_or_else(|| {
                self.a_at(
                    row0.clone() + Expr::var(ie),
                    pc0.clone() + Expr::var(ce),
                    Expr::var(khe),
                    Expr::var(kwe),
                )
            });
            let b_e = match self.s.pack_b {
                PackB::None => Expr::load(
                    self.b_buf,
                    self.b_at(pc0.clone() + Expr::var(ce), Expr::var(khe), Expr::var(kwe), col_e.clone()),
                ),
                PackB::PerCall => Expr::load(
                    self.bp.unwrap_or(self.b_buf),
                    (Expr::var(jr) * (kc * taps)
                        + self.panel_row(Expr::var(ce), Expr::var(khe), Expr::var(kwe)))
                        * nr
                        + Expr::var(je),
                ),
                PackB::Prepacked => Expr::load(
                    self.b_buf,
                    self.prepacked_b_base(&self.batch_vars, Expr::var(self.jc), Expr::var(self.pc))
                        + (Expr::var(jr) * (kc * taps)
                            + self.panel_row(Expr::var(ce), Expr::var(khe), Expr::var(kwe)))
                            * nr
                        + Expr::var(je),
                ),
            };
            let dot = Stmt::for_loop(
                ce,
                Expr::int(0),
                k_len.clone(),
                LoopKind::Serial,
                vec![Stmt::for_loop(
                    khe,
                    Expr::int(0),
                    Expr::int(self.p.kh),
                    LoopKind::Serial,
                    vec![Stmt::for_loop(
                        kwe,
                        Expr::int(0),
                        Expr::int(self.p.kw),
                        LoopKind::Serial,
                        vec![Stmt::store(
                            sum,
                            Expr::int(0),
                            Expr::fma(a_e, b_e, Expr::load(sum, Expr::int(0))),
                        )],
                    )],
                )],
            );
            let idx = self.out_index(row0.clone() + Expr::var(ie), col_e.clone());
            let wb = self.write_back(
                idx,
                Expr::load(sum, Expr::int(0)),
                row0.clone() + Expr::var(ie),
                self.col_in_row(col_e.clone()),
                &|s| s,
            );
            let per_element = vec![Stmt::If {
                cond: self.col_valid(col_e.clone()),
                then_body: vec![Stmt::Allocate {
                    buf: sum,
                    body: vec![Stmt::store(sum, Expr::int(0), Expr::Float(0.0)), dot, wb],
                }],
                else_body: vec![],
            }];
            let edge = vec![Stmt::for_loop(
                ie,
                Expr::int(0),
                rows,
                LoopKind::Serial,
                vec![Stmt::for_loop(je, Expr::int(0), cols, LoopKind::Serial, per_element)],
            )];
            let fast = vec![Stmt::Allocate { buf: acc, body: vec![init, k_loop, write_full] }];
            vec![Stmt::If { cond: vector_store_ok, then_body: fast, else_body: edge }]
        }
    }

    /// Prefetches of the prepacked B panel after the one tile (`ir`, `jr`) reads: the panel the
    /// block's tiles read next. Returned as (statements at the start of each reduction step `c`,
    /// statements at the start of each row `kh` of taps); one of the two is empty.
    ///
    /// Every row tile of a block reads the same panel; only the first finds it out of cache,
    /// and with weights streamed from memory (a 1×1 conv at 7×7 reads 4 MiB once per call) that
    /// first tile stalls while the others compute with the memory idle: on ResNet-50's convs
    /// at 14×14 and 7×7, 1.1–1.5× their time with the weights in cache (Xeon, AVX-512). So the
    /// next panel's lines are split among the row tiles, each fetching its share a few lines at
    /// a time through its reduction, and the stream overlaps the whole block's arithmetic. The
    /// few lines go at the start of each tap row when a reduction step alone would issue a long
    /// burst (a 3×3 conv's step covers 9 taps): more misses than the core can track at once
    /// stall it. Prefetches past the last panel touch nothing the kernel reads and cannot fault.
    fn prefetch_next_b_panel(&self, jr: VarId, ir: VarId, c: VarId, kh: VarId) -> (Vec<Stmt>, Vec<Stmt>) {
        if !self.s.prefetch_b || self.s.pack_b != PackB::Prepacked {
            return (Vec::new(), Vec::new());
        }
        let panel = self.s.kc * self.taps * self.nr;
        let panel_lines = ceil_div(panel, self.line_elems);
        let row_tiles = self.s.mc_tiles.min(ceil_div(self.p.m, self.s.mr)).max(1);
        let share = ceil_div(panel_lines, row_tiles);
        let by_tap_row = self.p.kh > 1 && self.s.kc * self.p.kh <= share;
        let (steps, step, step_elems) = if by_tap_row {
            (self.s.kc * self.p.kh, Expr::var(c) * self.p.kh + Expr::var(kh), self.p.kw * self.nr)
        } else {
            (self.s.kc, Expr::var(c), self.taps * self.nr)
        };
        // Never more lines per step than the step itself reads from its own panel.
        let per_step = ceil_div(share, steps).clamp(1, ceil_div(step_elems, self.line_elems));
        let next_panel = self.prepacked_b_base(&self.batch_vars, Expr::var(self.jc), Expr::var(self.pc))
            + (Expr::var(jr) + 1) * panel;
        let first_line = Expr::var(ir) * share + step * per_step;
        let prefetches = (0..per_step)
            .map(|t| Stmt::Prefetch {
                buf: self.b_buf,
                index: next_panel.clone() + (first_line.clone() + t) * self.line_elems,
            })
            .collect();
        if by_tap_row {
            (Vec::new(), prefetches)
        } else {
            (prefetches, Vec::new())
        }
    }

    /// A pass over this batch iteration's output rows, a vector at a time along each row: copies
    /// the valid columns out of the grid scratch (`Some(grid)`), or applies a non-fused epilogue
    /// in place (`None`).
    fn output_pass(&mut self, grid: Option<BufId>) -> Vec<Stmt> {
        let out = self.params[self.p.out_param];
        let lanes = self.p.lanes;
        let (r, row, xv, lane, x) = (
            self.b.var("op_r"),
            self.b.var("op_row"),
            self.b.var("op_xv"),
            self.b.var("op_lane"),
            self.b.var("op_x"),
        );
        // Each output run `r` (a row of C, or with channels as columns a column of C) is `rows`
        // rows of `vw` contiguous output elements.
        let (runs, rows, vw) = match self.p.out {
            OutLayout::Rows { grid_w, valid_w, .. } => (self.p.m, (self.p.n / grid_w).max(1), valid_w),
            OutLayout::Columns { .. } => (self.p.n, 1, self.p.m),
            // Each run a block of channels: every position's `block` channels.
            OutLayout::ChannelBlocks { block, .. } => (self.p.n / block, self.p.m, block),
        };
        let element = |this: &Self, col: Expr| -> Stmt {
            let (dst, grid_at, i, col_in_row) = match &this.p.out {
                OutLayout::Rows { row_base, grid_w, valid_w } => (
                    row_base(&this.batch_vars, &[Expr::var(r)]) + Expr::var(row) * *valid_w + col.clone(),
                    Expr::var(r) * this.p.n + Expr::var(row) * *grid_w + col.clone(),
                    Expr::var(r),
                    col,
                ),
                // Reading C's column: a gather, lane by lane.
                OutLayout::Columns { col_base } => (
                    col_base(&this.batch_vars, &[Expr::var(r)]) + col.clone(),
                    col.clone() * this.p.n + Expr::var(r),
                    col,
                    Expr::var(r),
                ),
                OutLayout::ChannelBlocks { image_base, plane, block, border } => {
                    let channel = Expr::var(r) * *block + col.clone();
                    (
                        image_base(&this.batch_vars, &[])
                            + (Expr::var(r) * *plane + Bordered::position(*border, Expr::var(row))) * *block
                            + col,
                        Expr::var(row) * this.p.n + channel.clone(),
                        Expr::var(row),
                        channel,
                    )
                }
            };
            let src = match grid {
                Some(g) => Expr::load(g, grid_at),
                None => Expr::load(out, dst.clone()),
            };
            Stmt::store(out, dst.clone(), this.epilogue(src, i, dst, col_in_row))
        };
        let n_vec = vw / lanes;
        let vector = Stmt::for_loop(
            xv,
            Expr::int(0),
            Expr::int(n_vec),
            LoopKind::Serial,
            vec![Stmt::for_loop(
                lane,
                Expr::int(0),
                Expr::int(lanes),
                LoopKind::Vectorized,
                vec![element(self, Expr::var(xv) * lanes + Expr::var(lane))],
            )],
        );
        let rest = Stmt::for_loop(
            x,
            Expr::int(n_vec * lanes),
            Expr::int(vw - n_vec * lanes),
            LoopKind::Serial,
            vec![element(self, Expr::var(x))],
        );
        // Parallel over runs: with several threads a serial pass over the whole output would be
        // a fixed share of the kernel that does not shrink (nested in a parallel batch loop, the
        // code generator runs it inline).
        vec![Stmt::for_loop(
            r,
            Expr::int(0),
            Expr::int(runs),
            LoopKind::Parallel,
            vec![Stmt::for_loop(row, Expr::int(0), Expr::int(rows), LoopKind::Serial, vec![vector, rest])],
        )]
    }
}

/// Copies of a prepacked operand: one per combination of the batch loops it depends on.
fn prepacked_slots(p: &GemmProblem, over: Option<&[usize]>) -> i64 {
    over.unwrap_or(&[]).iter().map(|&d| p.batch[d].1).product()
}

fn prepacked_b_len(p: &GemmProblem, s: &GemmSchedule) -> usize {
    let nc = s.nr_vecs * p.lanes * s.nc_tiles;
    let slots = prepacked_slots(p, p.b_constant_over.as_deref());
    (slots * ceil_div(p.n, nc) * ceil_div(p.k, s.kc) * nc * s.kc * p.kh * p.kw) as usize
}

fn prepacked_a_len(p: &GemmProblem, s: &GemmSchedule) -> usize {
    let mc = s.mr * s.mc_tiles;
    let slots = prepacked_slots(p, p.a_constant_over.as_deref());
    (slots * ceil_div(p.m, mc) * ceil_div(p.k, s.kc) * mc * s.kc * p.kh * p.kw) as usize
}
