//! The fp32 matmul space on CPUs: the BLIS/Goto structure as decisions.
//!
//! One sketch, `matmul_blocked`: three cache-block loops (`jc` over N, `pc` over K, `ic` over M)
//! in a chosen order, optional packing of B (per `jc,pc` block, into `nr`-wide panels) and of A
//! (per `ic,pc` block, into `mr`-tall panels), one of the spatial block loops parallel, and an
//! `mr × nr` register micro-tile (`i` unrolled, `j` vectorized at the native width) over an
//! unrolled `k` loop. Edges: packed panels are zero-padded so edge tiles run the same
//! micro-kernel and only their write-back is bounded; without packing, edge tiles take a scalar
//! bounded path.

use crate::space::{ScheduleError, SpaceGenerator};
use autotune_ir::{
    BufScope, CmpOp, Expr, LoopKind, LoopNest, MatmulShape, NestBuilder, Op, Stmt, Task, Trace, VarId,
};
use rand::{Rng, RngCore};

pub const SKETCH: &str = "matmul_blocked";
const VERSION: &str = "matmul-cpu-v1";

/// Candidate values before clamping to the problem's shape.
const MR: &[i64] = &[1, 2, 4, 6, 8, 10, 12, 14, 16];
const NR_VECS: &[i64] = &[1, 2, 3, 4];
const KC: &[i64] = &[32, 64, 128, 192, 256, 384, 512];
const MC_TILES: &[i64] = &[1, 2, 4, 8, 16, 32, 64];
const NC_TILES: &[i64] = &[1, 2, 4, 8, 16, 32, 64];
const UNROLL_K: &[i64] = &[1, 2, 4, 8];
/// Orders of the three block loops, outermost first.
const ORDERS: [[Block; 3]; 4] = [
    [Block::Jc, Block::Pc, Block::Ic],
    [Block::Pc, Block::Jc, Block::Ic],
    [Block::Ic, Block::Pc, Block::Jc],
    [Block::Pc, Block::Ic, Block::Jc],
];
/// Vector registers the micro-kernel may use (AVX-512 has 32; AVX2 16).
fn vector_registers(lanes: u32) -> i64 {
    if lanes >= 16 {
        32
    } else {
        16
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Jc,
    Pc,
    Ic,
}

/// One point of the space, decoded from a Trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulSchedule {
    pub mr: i64,
    pub nr_vecs: i64,
    pub kc: i64,
    pub mc_tiles: i64,
    pub nc_tiles: i64,
    pub pack_a: bool,
    pub pack_b: bool,
    pub order: usize,
    /// 0: column tiles outside row tiles inside a block; 1: the reverse.
    pub inner_order: i64,
    /// 0: the outer spatial block loop is parallel, 1: the inner one.
    pub parallel_loop: i64,
    pub unroll_k: i64,
}

const NAMES: [&str; 11] = [
    "mr",
    "nr_vecs",
    "kc",
    "mc_tiles",
    "nc_tiles",
    "pack_a",
    "pack_b",
    "order",
    "inner_order",
    "parallel_loop",
    "unroll_k",
];

impl MatmulSchedule {
    fn to_trace(self) -> Trace {
        let values = [
            self.mr,
            self.nr_vecs,
            self.kc,
            self.mc_tiles,
            self.nc_tiles,
            self.pack_a as i64,
            self.pack_b as i64,
            self.order as i64,
            self.inner_order,
            self.parallel_loop,
            self.unroll_k,
        ];
        Trace::new(SKETCH, NAMES.iter().copied().zip(values).collect())
    }
}

/// The matmul space for one task on one CPU.
#[derive(Debug, Clone)]
pub struct MatmulCpuSpace {
    task: Task,
    shape: MatmulShape,
    lanes: i64,
    threads: u32,
}

impl MatmulCpuSpace {
    pub fn new(task: &Task, vector_lanes: u32, threads: u32) -> Result<Self, ScheduleError> {
        match &task.op {
            Op::Matmul(shape) if shape.m > 0 && shape.n > 0 && shape.k > 0 => Ok(MatmulCpuSpace {
                task: task.clone(),
                shape: *shape,
                lanes: i64::from(vector_lanes.max(1)),
                threads: threads.max(1),
            }),
            _ => Err(ScheduleError::Unsupported { task: task.description(), target: "cpu".into() }),
        }
    }

    fn ceil_div(a: i64, b: i64) -> i64 {
        (a + b - 1) / b
    }

    /// The values decision `name` may take given the earlier decisions (domains shrink to the
    /// problem: a tile larger than the matrix is the same kernel as one that just covers it).
    fn domain(&self, name: &str, s: &MatmulSchedule) -> Vec<i64> {
        let (m, n, k) = (self.shape.m as i64, self.shape.n as i64, self.shape.k as i64);
        let clamp = |values: &[i64], limit: i64| {
            let mut v: Vec<i64> = values.iter().map(|&x| x.min(limit.max(1))).collect();
            v.dedup();
            v
        };
        let regs = vector_registers(self.lanes as u32);
        match name {
            "mr" => clamp(MR, m),
            "nr_vecs" => {
                let fits = |v: i64| s.mr * v + v < regs;
                let max_useful = Self::ceil_div(n, self.lanes);
                let mut v: Vec<i64> =
                    NR_VECS.iter().copied().filter(|&v| fits(v)).map(|v| v.min(max_useful)).collect();
                v.dedup();
                v
            }
            "kc" => clamp(KC, k),
            "mc_tiles" => clamp(MC_TILES, Self::ceil_div(m, s.mr)),
            "nc_tiles" => clamp(NC_TILES, Self::ceil_div(n, s.nr_vecs * self.lanes)),
            "pack_a" | "pack_b" | "inner_order" => vec![0, 1],
            "order" => (0..ORDERS.len() as i64).collect(),
            "parallel_loop" => {
                if self.threads > 1 {
                    vec![0, 1]
                } else {
                    vec![0]
                }
            }
            "unroll_k" => clamp(UNROLL_K, k),
            _ => vec![],
        }
    }

    fn set(s: &mut MatmulSchedule, name: &str, v: i64) {
        match name {
            "mr" => s.mr = v,
            "nr_vecs" => s.nr_vecs = v,
            "kc" => s.kc = v,
            "mc_tiles" => s.mc_tiles = v,
            "nc_tiles" => s.nc_tiles = v,
            "pack_a" => s.pack_a = v != 0,
            "pack_b" => s.pack_b = v != 0,
            "order" => s.order = v as usize,
            "inner_order" => s.inner_order = v,
            "parallel_loop" => s.parallel_loop = v,
            "unroll_k" => s.unroll_k = v,
            _ => {}
        }
    }

    fn get(s: &MatmulSchedule, name: &str) -> i64 {
        s.to_trace().get(name).unwrap_or(0)
    }

    /// Re-validates every decision after `from` (in order), replacing values that left their
    /// domain with the nearest valid one; dependent domains stay consistent.
    fn repair(&self, s: &mut MatmulSchedule, from: usize) {
        for name in &NAMES[from..] {
            let domain = self.domain(name, s);
            let v = Self::get(s, name);
            if !domain.contains(&v) {
                let nearest = domain.iter().copied().min_by_key(|d| (d - v).abs()).unwrap_or(v);
                Self::set(s, name, nearest);
            }
        }
    }

    pub fn decode(&self, trace: &Trace) -> Result<MatmulSchedule, ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidTrace {
            trace: trace.display(),
            space: VERSION.to_string(),
            reason,
        };
        if trace.sketch != SKETCH {
            return Err(invalid(format!("sketch is `{}`", trace.sketch)));
        }
        let mut s = MatmulSchedule {
            mr: 0,
            nr_vecs: 0,
            kc: 0,
            mc_tiles: 0,
            nc_tiles: 0,
            pack_a: false,
            pack_b: false,
            order: 0,
            inner_order: 0,
            parallel_loop: 0,
            unroll_k: 0,
        };
        for name in NAMES {
            let v = trace.get(name).ok_or_else(|| invalid(format!("decision `{name}` missing")))?;
            if !self.domain(name, &s).contains(&v) {
                return Err(invalid(format!("{name}={v} is not a valid choice")));
            }
            Self::set(&mut s, name, v);
        }
        Ok(s)
    }

    pub fn default_schedule(&self) -> MatmulSchedule {
        let mut s = MatmulSchedule {
            mr: 8,
            nr_vecs: 2,
            kc: 256,
            mc_tiles: 8,
            nc_tiles: 32,
            pack_a: true,
            pack_b: true,
            order: 0,
            inner_order: 0,
            parallel_loop: 1,
            unroll_k: 4,
        };
        self.repair(&mut s, 0);
        s
    }

    pub fn lower_schedule(&self, s: &MatmulSchedule) -> LoopNest {
        Lowering::new(self.shape, self.lanes, s).build()
    }
}

impl SpaceGenerator for MatmulCpuSpace {
    fn version(&self) -> &'static str {
        VERSION
    }

    fn task(&self) -> &Task {
        &self.task
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Trace {
        let mut s = self.default_schedule();
        for name in NAMES {
            let domain = self.domain(name, &s);
            if !domain.is_empty() {
                Self::set(&mut s, name, domain[rng.gen_range(0..domain.len())]);
            }
        }
        s.to_trace()
    }

    fn mutate(&self, trace: &Trace, rng: &mut dyn RngCore) -> Trace {
        let Ok(mut s) = self.decode(trace) else {
            return self.sample(rng);
        };
        // Try a few decisions until one has an alternative value.
        for _ in 0..16 {
            let which = rng.gen_range(0..NAMES.len());
            let domain = self.domain(NAMES[which], &s);
            let current = Self::get(&s, NAMES[which]);
            let others: Vec<i64> = domain.into_iter().filter(|&v| v != current).collect();
            if !others.is_empty() {
                Self::set(&mut s, NAMES[which], others[rng.gen_range(0..others.len())]);
                self.repair(&mut s, which + 1);
                break;
            }
        }
        s.to_trace()
    }

    fn default_trace(&self) -> Trace {
        self.default_schedule().to_trace()
    }

    fn lower(&self, trace: &Trace) -> Result<LoopNest, ScheduleError> {
        Ok(self.lower_schedule(&self.decode(trace)?))
    }

    fn size(&self) -> u64 {
        // Exact count by walking the dependent domains (small: thousands to a few million).
        fn count(space: &MatmulCpuSpace, s: &mut MatmulSchedule, i: usize) -> u64 {
            if i == NAMES.len() {
                return 1;
            }
            let mut total = 0u64;
            for v in space.domain(NAMES[i], s) {
                MatmulCpuSpace::set(s, NAMES[i], v);
                total = total.saturating_add(count(space, s, i + 1));
            }
            total
        }
        let mut s = self.default_schedule();
        count(self, &mut s, 0)
    }
}

/// Builds the LoopNest of one schedule.
struct Lowering<'a> {
    b: NestBuilder,
    m: i64,
    n: i64,
    k: i64,
    lanes: i64,
    s: &'a MatmulSchedule,
    nr: i64,
    mc: i64,
    nc: i64,
}

/// Variables of the enclosing block loops: block origins and extents are expressions of them.
struct BlockVars {
    jc: VarId,
    pc: VarId,
    ic: VarId,
}

impl<'a> Lowering<'a> {
    fn new(shape: MatmulShape, lanes: i64, s: &'a MatmulSchedule) -> Self {
        let nr = s.nr_vecs * lanes;
        Lowering {
            b: NestBuilder::new(),
            m: shape.m as i64,
            n: shape.n as i64,
            k: shape.k as i64,
            lanes,
            s,
            nr,
            mc: s.mr * s.mc_tiles,
            nc: nr * s.nc_tiles,
        }
    }

    fn build(mut self) -> LoopNest {
        let a = self.b.param("A", (self.m * self.k) as usize);
        let bm = self.b.param("B", (self.k * self.n) as usize);
        let c = self.b.param("C", (self.m * self.n) as usize);
        let vars = BlockVars { jc: self.b.var("jc"), pc: self.b.var("pc"), ic: self.b.var("ic") };
        let (kc, mc, nc) = (self.s.kc, self.mc, self.nc);
        let ap = self.s.pack_a.then(|| self.b.buffer("A_packed", (mc * kc) as usize, BufScope::Heap));
        let bp = self.s.pack_b.then(|| self.b.buffer("B_packed", (nc * kc) as usize, BufScope::Heap));
        let operands = Operands { a, b: bm, c, ap, bp };

        let order = ORDERS[self.s.order];
        // Which spatial block loop is parallel: the outer or inner of jc/ic in this order.
        let spatial: Vec<Block> = order.iter().copied().filter(|&b| b != Block::Pc).collect();
        let parallel_block = spatial[self.s.parallel_loop as usize % 2];

        let mut body = self.block_body(&vars, &operands);
        for (depth, &block) in order.iter().enumerate().rev() {
            // Packing happens right inside the loop after which its operand block is fixed:
            // B_packed needs jc and pc, A_packed needs ic and pc.
            let fixed: Vec<Block> = order[..=depth].to_vec();
            let inner_fixed = depth + 1 < 3 && {
                let next: Vec<Block> = order[..=depth + 1].to_vec();
                next.contains(&Block::Jc) && next.contains(&Block::Pc)
            };
            let _ = inner_fixed;
            if let Some(bp) = operands.bp {
                if fixed.contains(&Block::Jc)
                    && fixed.contains(&Block::Pc)
                    && !(depth > 0
                        && order[..depth].contains(&Block::Jc)
                        && order[..depth].contains(&Block::Pc))
                {
                    let pack = self.pack_b(&vars, operands.b, bp);
                    body = vec![Stmt::Allocate { buf: bp, body: [pack, body].concat() }];
                }
            }
            if let Some(ap) = operands.ap {
                if fixed.contains(&Block::Ic)
                    && fixed.contains(&Block::Pc)
                    && !(depth > 0
                        && order[..depth].contains(&Block::Ic)
                        && order[..depth].contains(&Block::Pc))
                {
                    let pack = self.pack_a(&vars, operands.a, ap);
                    body = vec![Stmt::Allocate { buf: ap, body: [pack, body].concat() }];
                }
            }
            let (var, extent, step) = match block {
                Block::Jc => (vars.jc, self.n, nc),
                Block::Pc => (vars.pc, self.k, kc),
                Block::Ic => (vars.ic, self.m, mc),
            };
            let kind = if block == parallel_block { LoopKind::Parallel } else { LoopKind::Serial };
            // The loop runs over block indices; the origin is index·step.
            body = vec![Stmt::for_loop(var, Expr::int(0), Expr::int(ceil_div(extent, step)), kind, body)];
        }
        let name = format!("matmul_{}x{}x{}", self.m, self.n, self.k);
        self.b.finish(&name, body)
    }

    fn origin(&self, v: VarId, step: i64) -> Expr {
        Expr::var(v) * step
    }

    /// Extent of the block at `origin` along a dimension of size `dim`: min(step, dim − origin).
    fn block_len(&self, v: VarId, step: i64, dim: i64) -> Expr {
        Expr::int(step).min(Expr::int(dim) - self.origin(v, step))
    }

    /// B_packed[(jr·kc + p)·nr + j] = B[pc0 + p, jc0 + jr·nr + j], zero beyond N.
    fn pack_b(&mut self, v: &BlockVars, b: autotune_ir::BufId, bp: autotune_ir::BufId) -> Vec<Stmt> {
        let (kc, nr, n, lanes) = (self.s.kc, self.nr, self.n, self.lanes);
        let (jr, p, jv, j, je) = (
            self.b.var("pb_jr"),
            self.b.var("pb_p"),
            self.b.var("pb_jv"),
            self.b.var("pb_j"),
            self.b.var("pb_je"),
        );
        let k_len = self.block_len(v.pc, kc, self.k);
        let n_len = self.block_len(v.jc, self.nc, n);
        let n_tiles = (n_len + (nr - 1)).floor_div(Expr::int(nr));
        let col0 = self.origin(v.jc, self.nc) + Expr::var(jr) * nr;
        let src_row = self.origin(v.pc, kc) + Expr::var(p);
        let dst = |j: Expr| (Expr::var(jr) * kc + Expr::var(p)) * nr + j;
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
                    bp,
                    dst(Expr::var(jv) * lanes + Expr::var(j)),
                    Expr::load(b, src_row.clone() * n + col0.clone() + Expr::var(jv) * lanes + Expr::var(j)),
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
                then_body: vec![Stmt::store(
                    bp,
                    dst(Expr::var(je)),
                    Expr::load(b, src_row.clone() * n + col),
                )],
                else_body: vec![Stmt::store(bp, dst(Expr::var(je)), Expr::Float(0.0))],
            }],
        );
        let per_row = Stmt::If {
            cond: (col0 + nr).cmp(CmpOp::Le, Expr::int(n)),
            then_body: vec![full],
            else_body: vec![edge],
        };
        vec![Stmt::for_loop(
            jr,
            Expr::int(0),
            n_tiles,
            LoopKind::Serial,
            vec![Stmt::for_loop(p, Expr::int(0), k_len, LoopKind::Serial, vec![per_row])],
        )]
    }

    /// A_packed[(ir·kc + p)·mr + i] = A[ic0 + ir·mr + i, pc0 + p], zero beyond M.
    fn pack_a(&mut self, v: &BlockVars, a: autotune_ir::BufId, ap: autotune_ir::BufId) -> Vec<Stmt> {
        let (kc, mr, m, k) = (self.s.kc, self.s.mr, self.m, self.k);
        let (ir, i, p, ie) =
            (self.b.var("pa_ir"), self.b.var("pa_i"), self.b.var("pa_p"), self.b.var("pa_ie"));
        let k_len = self.block_len(v.pc, kc, k);
        let m_len = self.block_len(v.ic, self.mc, m);
        let m_tiles = (m_len + (mr - 1)).floor_div(Expr::int(mr));
        let row0 = self.origin(v.ic, self.mc) + Expr::var(ir) * mr;
        let col = self.origin(v.pc, kc) + Expr::var(p);
        let dst = |i: Expr| (Expr::var(ir) * kc + Expr::var(p)) * mr + i;
        // Full tile: for each row, a contiguous run along k (reads stream, writes stride mr).
        let full = Stmt::for_loop(
            i,
            Expr::int(0),
            Expr::int(mr),
            LoopKind::Unrolled,
            vec![Stmt::store(
                ap,
                dst(Expr::var(i)),
                Expr::load(a, (row0.clone() + Expr::var(i)) * k + col.clone()),
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
                then_body: vec![Stmt::store(ap, dst(Expr::var(ie)), Expr::load(a, row * k + col.clone()))],
                else_body: vec![Stmt::store(ap, dst(Expr::var(ie)), Expr::Float(0.0))],
            }],
        );
        let per_k = Stmt::If {
            cond: (row0 + mr).cmp(CmpOp::Le, Expr::int(m)),
            then_body: vec![full],
            else_body: vec![edge],
        };
        vec![Stmt::for_loop(
            ir,
            Expr::int(0),
            m_tiles,
            LoopKind::Serial,
            vec![Stmt::for_loop(p, Expr::int(0), k_len, LoopKind::Serial, vec![per_k])],
        )]
    }

    /// Inside all three block loops: the micro-tile loops over the (ic, jc) block.
    fn block_body(&mut self, v: &BlockVars, ops: &Operands) -> Vec<Stmt> {
        let (mr, nr) = (self.s.mr, self.nr);
        let (jr, ir) = (self.b.var("jr"), self.b.var("ir"));
        let m_len = self.block_len(v.ic, self.mc, self.m);
        let n_len = self.block_len(v.jc, self.nc, self.n);
        let m_tiles = (m_len + (mr - 1)).floor_div(Expr::int(mr));
        let n_tiles = (n_len + (nr - 1)).floor_div(Expr::int(nr));
        let tile = self.micro_tile(v, ops, jr, ir);
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

    fn micro_tile(&mut self, v: &BlockVars, ops: &Operands, jr: VarId, ir: VarId) -> Vec<Stmt> {
        let (mr, nr, lanes, kc, n, m, k) =
            (self.s.mr, self.nr, self.lanes, self.s.kc, self.n, self.m, self.k);
        let row0 = self.origin(v.ic, self.mc) + Expr::var(ir) * mr;
        let col0 = self.origin(v.jc, self.nc) + Expr::var(jr) * nr;
        let pc0 = self.origin(v.pc, kc);
        let k_len = self.block_len(v.pc, kc, k);
        let first_k_block = Expr::var(v.pc).cmp(CmpOp::Eq, Expr::int(0));
        let full_tile = (row0.clone() + mr)
            .cmp(CmpOp::Le, Expr::int(m))
            .and((col0.clone() + nr).cmp(CmpOp::Le, Expr::int(n)));

        let acc = self.b.buffer("acc", (mr * nr) as usize, BufScope::Register);
        let (i, jv, j, p) = (self.b.var("i"), self.b.var("jv"), self.b.var("j"), self.b.var("p"));
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
        let a_value = match ops.ap {
            Some(ap) => Expr::load(ap, (Expr::var(ir) * kc + Expr::var(p)) * mr + Expr::var(i)),
            None => Expr::load(ops.a, (row0.clone() + Expr::var(i)) * k + pc0.clone() + Expr::var(p)),
        };
        let b_value = match ops.bp {
            Some(bp) => Expr::load(
                bp,
                (Expr::var(jr) * kc + Expr::var(p)) * nr + Expr::var(jv) * lanes + Expr::var(j),
            ),
            None => Expr::load(
                ops.b,
                (pc0.clone() + Expr::var(p)) * n + col0.clone() + Expr::var(jv) * lanes + Expr::var(j),
            ),
        };
        let init = tile_loops(vec![Stmt::store(acc, acc_idx(), Expr::Float(0.0))]);
        let k_loop = Stmt::for_loop(
            p,
            Expr::int(0),
            k_len.clone(),
            LoopKind::UnrollBy(self.s.unroll_k as u32),
            vec![tile_loops(vec![Stmt::store(
                acc,
                acc_idx(),
                Expr::fma(a_value, b_value, Expr::load(acc, acc_idx())),
            )])],
        );
        let c_idx = |row: Expr, col: Expr| row * n + col;
        let c_full =
            || c_idx(row0.clone() + Expr::var(i), col0.clone() + Expr::var(jv) * lanes + Expr::var(j));
        let write_full = Stmt::If {
            cond: first_k_block.clone(),
            then_body: vec![tile_loops(vec![Stmt::store(ops.c, c_full(), Expr::load(acc, acc_idx()))])],
            else_body: vec![tile_loops(vec![Stmt::store(
                ops.c,
                c_full(),
                Expr::Bin(
                    autotune_ir::BinOp::Add,
                    Box::new(Expr::load(ops.c, c_full())),
                    Box::new(Expr::load(acc, acc_idx())),
                ),
            )])],
        };
        let fast = vec![Stmt::Allocate { buf: acc, body: vec![init, k_loop, write_full] }];

        // Edge tiles.
        let (ie, je, pe) = (self.b.var("ie"), self.b.var("je"), self.b.var("pe"));
        let rows = Expr::int(mr).min(Expr::int(m) - row0.clone());
        let cols = Expr::int(nr).min(Expr::int(n) - col0.clone());
        let c_edge = c_idx(row0.clone() + Expr::var(ie), col0.clone() + Expr::var(je));
        let accumulate_into_c = |value: Expr| Stmt::If {
            cond: first_k_block.clone(),
            then_body: vec![Stmt::store(ops.c, c_edge.clone(), value.clone())],
            else_body: vec![Stmt::store(
                ops.c,
                c_edge.clone(),
                Expr::Bin(
                    autotune_ir::BinOp::Add,
                    Box::new(Expr::load(ops.c, c_edge.clone())),
                    Box::new(value),
                ),
            )],
        };
        let edge = if let (Some(_), Some(_)) = (ops.ap, ops.bp) {
            // Zero-padded panels: the same micro-kernel, then a bounded write-back via a spill.
            let acc_e = self.b.buffer("acc_edge", (mr * nr) as usize, BufScope::Register);
            let spill = self.b.buffer("acc_spill", (mr * nr) as usize, BufScope::Register);
            let re = |s: Stmt| rename_buf(s, acc, acc_e);
            let init_e = re(tile_loops(vec![Stmt::store(acc, acc_idx(), Expr::Float(0.0))]));
            let k_loop_e = re(Stmt::for_loop(
                p,
                Expr::int(0),
                k_len,
                LoopKind::UnrollBy(self.s.unroll_k as u32),
                vec![tile_loops(vec![Stmt::store(
                    acc,
                    acc_idx(),
                    Expr::fma(
                        Expr::load(
                            ops.ap.unwrap_or(ops.a),
                            (Expr::var(ir) * kc + Expr::var(p)) * mr + Expr::var(i),
                        ),
                        Expr::load(
                            ops.bp.unwrap_or(ops.b),
                            (Expr::var(jr) * kc + Expr::var(p)) * nr + Expr::var(jv) * lanes + Expr::var(j),
                        ),
                        Expr::load(acc, acc_idx()),
                    ),
                )])],
            ));
            let to_spill = re(tile_loops(vec![Stmt::store(spill, acc_idx(), Expr::load(acc, acc_idx()))]));
            let write = Stmt::for_loop(
                ie,
                Expr::int(0),
                rows,
                LoopKind::Serial,
                vec![Stmt::for_loop(
                    je,
                    Expr::int(0),
                    cols,
                    LoopKind::Serial,
                    vec![accumulate_into_c(Expr::load(spill, Expr::var(ie) * nr + Expr::var(je)))],
                )],
            );
            vec![Stmt::Allocate {
                buf: acc_e,
                body: vec![Stmt::Allocate { buf: spill, body: vec![init_e, k_loop_e, to_spill, write] }],
            }]
        } else {
            // Scalar bounded dot products straight from A and B.
            let sum = self.b.buffer("edge_sum", 1, BufScope::Register);
            let dot = Stmt::for_loop(
                pe,
                Expr::int(0),
                k_len,
                LoopKind::Serial,
                vec![Stmt::store(
                    sum,
                    Expr::int(0),
                    Expr::fma(
                        Expr::load(ops.a, (row0.clone() + Expr::var(ie)) * k + pc0.clone() + Expr::var(pe)),
                        Expr::load(ops.b, (pc0.clone() + Expr::var(pe)) * n + col0.clone() + Expr::var(je)),
                        Expr::load(sum, Expr::int(0)),
                    ),
                )],
            );
            let per_element = vec![Stmt::Allocate {
                buf: sum,
                body: vec![
                    Stmt::store(sum, Expr::int(0), Expr::Float(0.0)),
                    dot,
                    accumulate_into_c(Expr::load(sum, Expr::int(0))),
                ],
            }];
            vec![Stmt::for_loop(
                ie,
                Expr::int(0),
                rows,
                LoopKind::Serial,
                vec![Stmt::for_loop(je, Expr::int(0), cols, LoopKind::Serial, per_element)],
            )]
        };
        vec![Stmt::If { cond: full_tile, then_body: fast, else_body: edge }]
    }
}

struct Operands {
    a: autotune_ir::BufId,
    b: autotune_ir::BufId,
    c: autotune_ir::BufId,
    ap: Option<autotune_ir::BufId>,
    bp: Option<autotune_ir::BufId>,
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// Replaces every use of buffer `from` by `to` in a statement tree.
fn rename_buf(stmt: Stmt, from: autotune_ir::BufId, to: autotune_ir::BufId) -> Stmt {
    let rb = |b: autotune_ir::BufId| if b == from { to } else { b };
    let re = |e: Expr| rename_expr(e, from, to);
    let rs = |body: Vec<Stmt>| body.into_iter().map(|s| rename_buf(s, from, to)).collect();
    match stmt {
        Stmt::For(mut l) => {
            l.body = rs(l.body);
            Stmt::For(l)
        }
        Stmt::Store { buf, index, value } => Stmt::Store { buf: rb(buf), index: re(index), value: re(value) },
        Stmt::Allocate { buf, body } => Stmt::Allocate { buf: rb(buf), body: rs(body) },
        Stmt::If { cond, then_body, else_body } => {
            Stmt::If { cond: re(cond), then_body: rs(then_body), else_body: rs(else_body) }
        }
    }
}

fn rename_expr(e: Expr, from: autotune_ir::BufId, to: autotune_ir::BufId) -> Expr {
    let r = |e: Box<Expr>| Box::new(rename_expr(*e, from, to));
    match e {
        Expr::Load { buf, index } => Expr::Load { buf: if buf == from { to } else { buf }, index: r(index) },
        Expr::Bin(op, a, b) => Expr::Bin(op, r(a), r(b)),
        Expr::Cmp(op, a, b) => Expr::Cmp(op, r(a), r(b)),
        Expr::And(a, b) => Expr::And(r(a), r(b)),
        Expr::Fma(a, b, c) => Expr::Fma(r(a), r(b), r(c)),
        Expr::Select(a, b, c) => Expr::Select(r(a), r(b), r(c)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn space(m: usize, n: usize, k: usize, threads: u32) -> MatmulCpuSpace {
        MatmulCpuSpace::new(&Task::matmul(m, n, k), 16, threads).expect("space")
    }

    #[test]
    fn samples_decode_and_mutations_stay_valid() {
        let s = space(17, 33, 65, 2);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let t = s.sample(&mut rng);
            let decoded = s.decode(&t).expect("sampled traces are valid");
            assert_eq!(decoded.to_trace(), t);
            let m = s.mutate(&t, &mut rng);
            s.decode(&m).expect("mutated traces are valid");
            assert!(s.lower(&m).is_ok());
        }
        s.decode(&s.default_trace()).expect("default is valid");
    }

    #[test]
    fn register_budget_is_respected() {
        let s = space(1024, 1024, 1024, 1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..500 {
            let d = s.decode(&s.sample(&mut rng)).expect("valid");
            assert!(d.mr * d.nr_vecs + d.nr_vecs < 32, "{d:?}");
        }
    }

    #[test]
    fn domains_shrink_to_tiny_shapes() {
        let s = space(1, 1, 1, 1);
        assert_eq!(s.domain("mr", &s.default_schedule()), vec![1]);
        assert_eq!(s.domain("kc", &s.default_schedule()), vec![1]);
        assert!(s.size() > 1);
    }

    #[test]
    fn foreign_traces_are_rejected() {
        let s = space(8, 8, 8, 1);
        assert!(s.decode(&Trace::new("conv", vec![])).is_err());
        let mut t = s.default_trace();
        t.decisions[0].value = 7; // mr=7 is not a choice
        assert!(s.decode(&t).is_err());
    }
}
