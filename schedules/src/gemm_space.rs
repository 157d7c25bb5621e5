//! The schedule space of every GEMM-shaped task on CPUs: matmul, dense / batched matmul, and
//! conv2d as an implicit GEMM. One sketch, `gemm_blocked`; which decisions are free depends on
//! the task (a conv has tap unrolling and grid alignment, a constant B can be prepacked…).
//!
//! Conv as GEMM: rows are output channels of a group, the blocked reduction runs over the group's
//! input channels with the kernel taps inside, and columns are a grid over output positions whose
//! row width `grid_w` leaves room for the taps: every B row is then a contiguous slice of a
//! zero-padded (and, for strides > 1, phase-split) copy of the input image, so the micro-kernel
//! reads B with unit stride and no bounds checks, and a few junk columns per row are never stored.

use crate::gemm::{self, ceil_div, BSource, BiasAxis, GemmProblem, GemmSchedule, PackA, PackB, N_ORDERS};
use crate::padded::PhaseSplit;
use crate::space::{ScheduleError, SpaceGenerator};
use autotune_ir::{BatchMatmulSpec, Conv2dSpec, Expr, LoopKind, Op, Program, Task, Trace};
use rand::{Rng, RngCore};

pub const SKETCH: &str = "gemm_blocked";
const VERSION: &str = "gemm-cpu-v1";

const MR: &[i64] = &[1, 2, 4, 6, 8, 10, 12, 14, 16];
const NR_VECS: &[i64] = &[1, 2, 3, 4];
const KC: &[i64] = &[8, 16, 32, 64, 128, 192, 256, 384, 512];
const MC_TILES: &[i64] = &[1, 2, 4, 8, 16, 32, 64];
const NC_TILES: &[i64] = &[1, 2, 4, 8, 16, 32, 64];
const UNROLL_K: &[i64] = &[1, 2, 4, 8];
/// Largest kernel-tap count (kh·kw) that may be fully unrolled.
const MAX_UNROLLED_TAPS: i64 = 25;

pub(crate) const NAMES: [&str; 15] = [
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
    "unroll_taps",
    "epilogue_in_tile",
    "grid_align",
    "out_via_grid",
];

fn vector_registers(lanes: i64) -> i64 {
    if lanes >= 16 {
        32
    } else {
        16
    }
}

/// The GEMM view of a task, independent of the schedule except for the conv grid alignment.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Matmul(BatchMatmulSpec),
    Conv(Conv2dSpec),
}

#[derive(Debug, Clone)]
pub struct GemmSpace {
    task: Task,
    kind: Kind,
    lanes: i64,
    threads: u32,
}

impl GemmSpace {
    pub fn new(task: &Task, vector_lanes: u32, threads: u32) -> Result<GemmSpace, ScheduleError> {
        let unsupported = || ScheduleError::Unsupported { task: task.description(), target: "cpu".into() };
        task.validate().map_err(|_| unsupported())?;
        let kind = match &task.op {
            Op::Matmul(s) => Kind::Matmul(BatchMatmulSpec {
                batch: 1,
                m: s.m,
                n: s.n,
                k: s.k,
                trans_a: false,
                trans_b: false,
                a_broadcast: true,
                b_broadcast: true,
                b_constant: false,
            }),
            Op::BatchMatmul(b) => Kind::Matmul(*b),
            Op::Conv2d(c) => Kind::Conv(*c),
            Op::Pool2d(_) => return Err(unsupported()),
        };
        Ok(GemmSpace {
            task: task.clone(),
            kind,
            lanes: i64::from(vector_lanes.max(1)),
            threads: threads.max(1),
        })
    }

    /// (rows, grid columns, blocked reduction, taps) for a grid alignment.
    fn dims(&self, grid_align: i64) -> (i64, i64, i64, i64) {
        match self.kind {
            Kind::Matmul(b) => (b.m as i64, b.n as i64, b.k as i64, 1),
            Kind::Conv(c) => {
                let g = ConvGrid::new(&c, grid_align);
                (c.o_per_group() as i64, g.oh * g.wq, c.c_per_group() as i64, (c.kh * c.kw) as i64)
            }
        }
    }

    fn has_batch_parallelism(&self) -> bool {
        match self.kind {
            Kind::Matmul(b) => b.batch > 1,
            Kind::Conv(c) => c.n > 1 || c.groups > 1,
        }
    }

    fn b_prepackable(&self) -> bool {
        matches!(self.kind, Kind::Matmul(b) if b.b_constant && (b.b_broadcast || b.batch == 1))
    }

    fn domain(&self, name: &str, s: &GemmSchedule, grid_align: i64) -> Vec<i64> {
        let (m, n, k, taps) = self.dims(grid_align);
        let clamp = |values: &[i64], limit: i64| {
            let mut v: Vec<i64> = values.iter().map(|&x| x.min(limit.max(1))).collect();
            v.dedup();
            v
        };
        match name {
            "mr" => clamp(MR, m),
            "nr_vecs" => {
                let regs = vector_registers(self.lanes);
                let max_useful = ceil_div(n, self.lanes);
                let mut v: Vec<i64> = NR_VECS
                    .iter()
                    .copied()
                    .filter(|&v| s.mr * v + v < regs)
                    .map(|v| v.min(max_useful))
                    .collect();
                v.dedup();
                v
            }
            "kc" => clamp(KC, k),
            "mc_tiles" => clamp(MC_TILES, ceil_div(m, s.mr)),
            "nc_tiles" => clamp(NC_TILES, ceil_div(n, s.nr_vecs * self.lanes)),
            "pack_a" => {
                if matches!(self.kind, Kind::Conv(_)) {
                    vec![0, 1, 2]
                } else {
                    vec![0, 1]
                }
            }
            "inner_order" => vec![0, 1],
            "pack_b" => {
                let trans_b = matches!(self.kind, Kind::Matmul(b) if b.trans_b);
                let mut v = if trans_b { vec![1] } else { vec![0, 1] };
                if self.b_prepackable() {
                    v.push(2);
                }
                v
            }
            "order" => (0..N_ORDERS).collect(),
            "parallel_loop" => match (self.threads > 1, self.has_batch_parallelism()) {
                (false, _) => vec![0],
                (true, false) => vec![0, 1],
                (true, true) => vec![0, 1, 2],
            },
            "unroll_k" => clamp(UNROLL_K, k),
            // Fully unrolled taps multiply the micro-kernel's code: past 5×5 compile time explodes
            // (an 11×11 conv took 31 s) for no speed gain.
            "unroll_taps" => match taps {
                1 => vec![1],
                2..=MAX_UNROLLED_TAPS => vec![0, 1],
                _ => vec![0],
            },
            "epilogue_in_tile" => {
                if self.task.epilogue.is_empty() {
                    vec![1]
                } else {
                    vec![0, 1]
                }
            }
            "grid_align" => match self.kind {
                Kind::Conv(c) if ConvGrid::needs_scratch(&c) => vec![1, self.lanes],
                _ => vec![1],
            },
            "out_via_grid" => match self.kind {
                Kind::Conv(c) if ConvGrid::new(&c, grid_align).wq != c.out_w() as i64 => vec![0, 1],
                _ => vec![0],
            },
            _ => vec![],
        }
    }

    fn get(s: &GemmSchedule, grid_align: i64, name: &str) -> i64 {
        match name {
            "mr" => s.mr,
            "nr_vecs" => s.nr_vecs,
            "kc" => s.kc,
            "mc_tiles" => s.mc_tiles,
            "nc_tiles" => s.nc_tiles,
            "pack_a" => match s.pack_a {
                PackA::None => 0,
                PackA::PerCall => 1,
                PackA::Prepacked => 2,
            },
            "pack_b" => match s.pack_b {
                PackB::None => 0,
                PackB::PerCall => 1,
                PackB::Prepacked => 2,
            },
            "order" => s.order as i64,
            "inner_order" => s.inner_order,
            "parallel_loop" => s.parallel_loop,
            "unroll_k" => s.unroll_k,
            "unroll_taps" => s.unroll_taps as i64,
            "epilogue_in_tile" => s.epilogue_in_tile as i64,
            "grid_align" => grid_align,
            "out_via_grid" => s.out_via_grid as i64,
            _ => 0,
        }
    }

    fn set(s: &mut GemmSchedule, grid_align: &mut i64, name: &str, v: i64) {
        match name {
            "mr" => s.mr = v,
            "nr_vecs" => s.nr_vecs = v,
            "kc" => s.kc = v,
            "mc_tiles" => s.mc_tiles = v,
            "nc_tiles" => s.nc_tiles = v,
            "pack_a" => {
                s.pack_a = match v {
                    0 => PackA::None,
                    1 => PackA::PerCall,
                    _ => PackA::Prepacked,
                }
            }
            "pack_b" => {
                s.pack_b = match v {
                    0 => PackB::None,
                    1 => PackB::PerCall,
                    _ => PackB::Prepacked,
                }
            }
            "order" => s.order = v as usize,
            "inner_order" => s.inner_order = v,
            "parallel_loop" => s.parallel_loop = v,
            "unroll_k" => s.unroll_k = v,
            "unroll_taps" => s.unroll_taps = v != 0,
            "epilogue_in_tile" => s.epilogue_in_tile = v != 0,
            "grid_align" => *grid_align = v,
            "out_via_grid" => s.out_via_grid = v != 0,
            _ => {}
        }
    }

    /// Decisions are drawn in NAMES order, but grid_align shapes the dimensions the tile domains
    /// are clamped to, so it is fixed first when repairing.
    fn repair(&self, s: &mut GemmSchedule, grid_align: &mut i64, from: usize) {
        let ga_domain = self.domain("grid_align", s, *grid_align);
        if !ga_domain.contains(grid_align) {
            *grid_align = ga_domain[0];
        }
        for name in NAMES[from..].iter().filter(|n| **n != "grid_align") {
            let domain = self.domain(name, s, *grid_align);
            let v = Self::get(s, *grid_align, name);
            if !domain.contains(&v) {
                let nearest = domain.iter().copied().min_by_key(|d| (d - v).abs()).unwrap_or(v);
                Self::set(s, grid_align, name, nearest);
            }
        }
    }

    fn to_trace(s: &GemmSchedule, grid_align: i64) -> Trace {
        Trace::new(SKETCH, NAMES.iter().map(|&name| (name, Self::get(s, grid_align, name))).collect())
    }

    fn decode(&self, trace: &Trace) -> Result<(GemmSchedule, i64), ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidTrace {
            trace: trace.display(),
            space: VERSION.to_string(),
            reason,
        };
        if trace.sketch != SKETCH {
            return Err(invalid(format!("sketch is `{}`", trace.sketch)));
        }
        let (mut s, mut ga) = self.default_schedule();
        let ga_value =
            trace.get("grid_align").ok_or_else(|| invalid("decision `grid_align` missing".into()))?;
        if !self.domain("grid_align", &s, ga).contains(&ga_value) {
            return Err(invalid(format!("grid_align={ga_value} is not a valid choice")));
        }
        ga = ga_value;
        for name in NAMES {
            let v = trace.get(name).ok_or_else(|| invalid(format!("decision `{name}` missing")))?;
            if !self.domain(name, &s, ga).contains(&v) {
                return Err(invalid(format!("{name}={v} is not a valid choice")));
            }
            Self::set(&mut s, &mut ga, name, v);
        }
        Ok((s, ga))
    }

    fn default_schedule(&self) -> (GemmSchedule, i64) {
        let (_, _, _, taps) = self.dims(self.lanes);
        let mut s = GemmSchedule {
            mr: 8,
            nr_vecs: 2,
            kc: (256 / taps).max(8),
            mc_tiles: 8,
            nc_tiles: 32,
            pack_a: if matches!(self.kind, Kind::Conv(_)) { PackA::Prepacked } else { PackA::PerCall },
            pack_b: if self.b_prepackable() { PackB::Prepacked } else { PackB::PerCall },
            order: 0,
            inner_order: 0,
            parallel_loop: 1,
            unroll_k: if taps > 1 { 1 } else { 4 },
            unroll_taps: taps <= 9,
            epilogue_in_tile: true,
            out_via_grid: true,
        };
        // A dense grid (little junk) with full-vector tiles via the grid scratch.
        let mut ga = 1;
        self.repair(&mut s, &mut ga, 0);
        (s, ga)
    }

    fn problem(&self, grid_align: i64) -> GemmProblem {
        match self.kind {
            Kind::Matmul(b) => matmul_problem(&self.task, &b, self.lanes),
            Kind::Conv(c) => conv_problem(&self.task, &c, self.lanes, grid_align),
        }
    }
}

impl SpaceGenerator for GemmSpace {
    fn version(&self) -> &'static str {
        VERSION
    }

    fn task(&self) -> &Task {
        &self.task
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Trace {
        let (mut s, mut ga) = self.default_schedule();
        let ga_domain = self.domain("grid_align", &s, ga);
        ga = ga_domain[rng.gen_range(0..ga_domain.len())];
        for name in NAMES.into_iter().filter(|n| *n != "grid_align") {
            let domain = self.domain(name, &s, ga);
            if !domain.is_empty() {
                Self::set(&mut s, &mut ga, name, domain[rng.gen_range(0..domain.len())]);
            }
        }
        Self::to_trace(&s, ga)
    }

    fn mutate(&self, trace: &Trace, rng: &mut dyn RngCore) -> Trace {
        let Ok((mut s, mut ga)) = self.decode(trace) else {
            return self.sample(rng);
        };
        for _ in 0..16 {
            let which = rng.gen_range(0..NAMES.len());
            let current = Self::get(&s, ga, NAMES[which]);
            let others: Vec<i64> =
                self.domain(NAMES[which], &s, ga).into_iter().filter(|&v| v != current).collect();
            if !others.is_empty() {
                Self::set(&mut s, &mut ga, NAMES[which], others[rng.gen_range(0..others.len())]);
                let from = if NAMES[which] == "grid_align" { 0 } else { which + 1 };
                self.repair(&mut s, &mut ga, from);
                break;
            }
        }
        Self::to_trace(&s, ga)
    }

    fn crossover(&self, a: &Trace, b: &Trace, rng: &mut dyn RngCore) -> Trace {
        // Each decision from either parent (a's when b lacks it), then repaired in NAMES order, so
        // the child is valid even when the parents' dependent domains differ or a parent was
        // tuned for another shape.
        let (mut s, mut ga) = self.default_schedule();
        for name in NAMES {
            let from_b = rng.gen_bool(0.5);
            let value = if from_b {
                b.get(name).or_else(|| a.get(name))
            } else {
                a.get(name).or_else(|| b.get(name))
            };
            if let Some(value) = value {
                Self::set(&mut s, &mut ga, name, value);
            }
        }
        self.repair(&mut s, &mut ga, 0);
        Self::to_trace(&s, ga)
    }

    fn default_trace(&self) -> Trace {
        let (s, ga) = self.default_schedule();
        Self::to_trace(&s, ga)
    }

    fn lower(&self, trace: &Trace) -> Result<Program, ScheduleError> {
        let (s, ga) = self.decode(trace)?;
        Ok(gemm::lower(&self.problem(ga), &s))
    }

    fn size(&self) -> u64 {
        fn count(space: &GemmSpace, s: &mut GemmSchedule, ga: i64, i: usize) -> u64 {
            if i == NAMES.len() {
                return 1;
            }
            if NAMES[i] == "grid_align" {
                return count(space, s, ga, i + 1);
            }
            let mut total = 0u64;
            for v in space.domain(NAMES[i], s, ga) {
                GemmSpace::set(s, &mut ga.clone(), NAMES[i], v);
                total = total.saturating_add(count(space, s, ga, i + 1));
            }
            total
        }
        let (mut s, ga0) = self.default_schedule();
        self.domain("grid_align", &s, ga0)
            .into_iter()
            .map(|ga| count(self, &mut s, ga, 0))
            .fold(0u64, u64::saturating_add)
    }
}

/// Index helpers over the batch-variable slice.
fn bv(batch: &[Expr], i: usize) -> Expr {
    batch.get(i).cloned().unwrap_or(Expr::int(0))
}

fn epilogue_params(task: &Task) -> (Option<usize>, Option<usize>) {
    let names: Vec<&str> = task.inputs().iter().map(|s| s.name).collect();
    (names.iter().position(|n| *n == "bias"), names.iter().position(|n| *n == "residual"))
}

fn params_of(task: &Task) -> Vec<(&'static str, usize)> {
    task.inputs().iter().chain(task.outputs().iter()).map(|s| (s.name, s.len())).collect()
}

fn matmul_problem(task: &Task, b: &BatchMatmulSpec, lanes: i64) -> GemmProblem {
    let (m, n, k) = (b.m as i64, b.n as i64, b.k as i64);
    let (trans_a, trans_b, a_shared, b_shared) = (b.trans_a, b.trans_b, b.a_broadcast, b.b_broadcast);
    let batch = if b.batch > 1 || matches!(task.op, Op::BatchMatmul(_)) {
        vec![("b", b.batch as i64)]
    } else {
        vec![]
    };
    let params = params_of(task);
    let (bias, residual) = epilogue_params(task);
    GemmProblem {
        name: task.description().split_whitespace().take(2).collect::<Vec<_>>().join("_"),
        m,
        n,
        k,
        kh: 1,
        kw: 1,
        lanes,
        batch,
        a_param: 0,
        a_constant_over: None,
        a_index: Box::new(move |bvars, x| {
            let base = if a_shared { Expr::int(0) } else { bv(bvars, 0) * (m * k) };
            let (i, c) = (x[0].clone(), x[1].clone());
            if trans_a {
                base + c * m + i
            } else {
                base + i * k + c
            }
        }),
        b_source: BSource::Param(1),
        b_index: Box::new(move |bvars, x| {
            let base = if b_shared { Expr::int(0) } else { bv(bvars, 0) * (k * n) };
            let (c, col) = (x[0].clone(), x[3].clone());
            if trans_b {
                base + col * k + c
            } else {
                base + c * n + col
            }
        }),
        out_param: params.len() - 1,
        out_row_base: Box::new(move |bvars, x| (bv(bvars, 0) * m + x[0].clone()) * n),
        grid_w: n,
        valid_w: n,
        epilogue: task.epilogue.clone(),
        bias: bias.map(|p| (p, BiasAxis::Col)),
        residual,
        params,
    }
}

/// The column grid of a convolution: output rows of `wq` columns over a padded, phase-split
/// input plane of `hq × wq` per (channel, row phase, column phase).
#[derive(Clone, Copy, Debug)]
struct ConvGrid {
    oh: i64,
    ow: i64,
    hq: i64,
    wq: i64,
}

impl ConvGrid {
    fn new(c: &Conv2dSpec, align: i64) -> ConvGrid {
        let (oh, ow) = (c.out_h() as i64, c.out_w() as i64);
        if !Self::needs_scratch(c) {
            return ConvGrid { oh, ow, hq: c.h as i64, wq: c.w as i64 };
        }
        let (sh, sw) = (c.stride[0] as i64, c.stride[1] as i64);
        let (dh, dw) = (c.dilation[0] as i64, c.dilation[1] as i64);
        // One spare row: junk columns of the last row read slightly past the taps' reach.
        let hq = oh + ((c.kh as i64 - 1) * dh) / sh + 1;
        let wq_min = ow + ((c.kw as i64 - 1) * dw) / sw;
        let wq = ceil_div(wq_min, align.max(1)) * align.max(1);
        ConvGrid { oh, ow, hq, wq }
    }

    /// A 1×1-wide, unit-stride, unpadded conv reads its input in place.
    fn needs_scratch(c: &Conv2dSpec) -> bool {
        !(c.kw == 1 && c.stride == [1, 1] && c.pad == [0; 4])
    }
}

fn conv_problem(task: &Task, c: &Conv2dSpec, lanes: i64, grid_align: i64) -> GemmProblem {
    let grid = ConvGrid::new(c, grid_align);
    let (cin, h, w) = (c.c as i64, c.h as i64, c.w as i64);
    let (o, cg, og) = (c.o as i64, c.c_per_group() as i64, c.o_per_group() as i64);
    let (kh, kw) = (c.kh as i64, c.kw as i64);
    let (sh, sw) = (c.stride[0] as i64, c.stride[1] as i64);
    let (dh, dw) = (c.dilation[0] as i64, c.dilation[1] as i64);
    let (pt, pl) = (c.pad[0] as i64, c.pad[1] as i64);
    let ConvGrid { oh, ow, hq, wq } = grid;
    let scratch = ConvGrid::needs_scratch(c);
    let params = params_of(task);
    let (bias, residual) = epilogue_params(task);
    let plane = hq * wq;
    let b_source = if scratch {
        let split = PhaseSplit {
            channels: cin,
            h,
            w,
            stride: (sh, sw),
            pad: (pt, pl),
            grid: (hq, wq),
            taps: (kh, kw),
            dilation: (dh, dw),
            lanes,
        };
        BSource::Scratch {
            len: split.len(),
            depth: 1,
            fill: Box::new(move |b, bvars, params, xp| {
                let image = bv(bvars, 0);
                split.fill(
                    b,
                    params[0],
                    &|ch| (image.clone() * cin + ch) * (h * w),
                    xp,
                    0.0,
                    LoopKind::Parallel,
                )
            }),
        }
    } else {
        BSource::Param(0)
    };
    // Offsets of tap (kh, kw): phase and whole-step shift along each axis.
    let split = |tap: Expr, d: i64, s: i64| -> (Expr, Expr) {
        if s == 1 {
            (Expr::int(0), tap * d)
        } else {
            ((tap.clone() * d) % Expr::int(s), (tap * d).floor_div(Expr::int(s)))
        }
    };
    let b_index: gemm::IndexFn = if scratch {
        Box::new(move |bvars, x| {
            let ch = bv(bvars, 1) * cg + x[0].clone();
            let (ph, oy) = split(x[1].clone(), dh, sh);
            let (pw, ox) = split(x[2].clone(), dw, sw);
            ((ch * sh + ph) * sw + pw) * plane + oy * wq + ox + x[3].clone()
        })
    } else {
        Box::new(move |bvars, x| {
            let ch = bv(bvars, 1) * cg + x[0].clone();
            (bv(bvars, 0) * cin + ch) * (h * w) + x[1].clone() * (dh * w) + x[3].clone()
        })
    };
    GemmProblem {
        name: format!("conv2d_{}x{}_o{}_k{}x{}", c.h, c.w, c.o, c.kh, c.kw),
        m: og,
        n: oh * wq,
        k: cg,
        kh,
        kw,
        lanes,
        batch: vec![("n", c.n as i64), ("g", c.groups as i64)],
        a_param: 1,
        // Weights depend on the group only.
        a_constant_over: Some(vec![1]),
        a_index: Box::new(move |bvars, x| {
            (((bv(bvars, 1) * og + x[0].clone()) * cg + x[1].clone()) * kh + x[2].clone()) * kw + x[3].clone()
        }),
        b_source,
        b_index,
        out_param: params.len() - 1,
        out_row_base: Box::new(move |bvars, x| {
            ((bv(bvars, 0) * o + bv(bvars, 1) * og + x[0].clone()) * oh) * ow
        }),
        grid_w: wq,
        valid_w: ow,
        epilogue: task.epilogue.clone(),
        bias: bias.map(|p| (p, BiasAxis::Row(Box::new(move |bvars, x| bv(bvars, 1) * og + x[0].clone())))),
        residual,
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotune_ir::EpilogueOp;
    use rand::SeedableRng;

    fn matmul(m: usize, n: usize, k: usize, threads: u32) -> GemmSpace {
        GemmSpace::new(&Task::matmul(m, n, k), 16, threads).expect("space")
    }

    #[test]
    fn samples_decode_and_mutations_stay_valid() {
        let conv = Task::new(
            Op::Conv2d(Conv2dSpec {
                n: 2,
                c: 4,
                h: 9,
                w: 7,
                o: 6,
                kh: 3,
                kw: 3,
                stride: [2, 1],
                pad: [1, 1, 0, 1],
                dilation: [1, 2],
                groups: 2,
            }),
            vec![EpilogueOp::Bias, EpilogueOp::Relu],
        );
        for s in [matmul(17, 33, 65, 2), GemmSpace::new(&conv, 16, 2).expect("conv space")] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            for _ in 0..200 {
                let t = s.sample(&mut rng);
                let (decoded, ga) = s.decode(&t).expect("sampled traces are valid");
                assert_eq!(GemmSpace::to_trace(&decoded, ga), t);
                let m = s.mutate(&t, &mut rng);
                s.decode(&m).expect("mutated traces are valid");
                assert!(s.lower(&m).is_ok());
            }
            s.decode(&s.default_trace()).expect("default is valid");
        }
    }

    #[test]
    fn register_budget_is_respected() {
        let s = matmul(1024, 1024, 1024, 1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..500 {
            let (d, _) = s.decode(&s.sample(&mut rng)).expect("valid");
            assert!(d.mr * d.nr_vecs + d.nr_vecs < 32, "{d:?}");
        }
    }

    #[test]
    fn domains_shrink_to_tiny_shapes() {
        let s = matmul(1, 1, 1, 1);
        let (d, ga) = s.default_schedule();
        assert_eq!(s.domain("mr", &d, ga), vec![1]);
        assert_eq!(s.domain("kc", &d, ga), vec![1]);
        assert!(s.size() > 1);
    }

    #[test]
    fn foreign_traces_are_rejected() {
        let s = matmul(8, 8, 8, 1);
        assert!(s.decode(&Trace::new("conv", vec![])).is_err());
        let mut t = s.default_trace();
        t.decisions[0].value = 7; // mr=7 is not a choice
        assert!(s.decode(&t).is_err());
    }

    #[test]
    fn conv_grid_leaves_room_for_the_taps() {
        let c = Conv2dSpec {
            n: 1,
            c: 64,
            h: 56,
            w: 56,
            o: 64,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [1; 4],
            dilation: [1, 1],
            groups: 1,
        };
        let g = ConvGrid::new(&c, 16);
        assert_eq!((g.oh, g.ow, g.wq, g.hq), (56, 56, 64, 59));
        let one_by_one = Conv2dSpec { kh: 1, kw: 1, pad: [0; 4], ..c };
        assert!(!ConvGrid::needs_scratch(&one_by_one));
    }
}
