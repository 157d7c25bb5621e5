//! The schedule space of every GEMM-shaped task on CPUs: matmul, dense / batched matmul, and
//! conv2d as an implicit GEMM. One sketch, `gemm_blocked`; which decisions are free depends on
//! the task (a conv has tap unrolling and grid alignment, a constant B can be prepacked…).
//!
//! Conv as GEMM: rows are output channels of a group, the blocked reduction runs over the group's
//! input channels with the kernel taps inside, and columns are a grid over output positions whose
//! row width `grid_w` leaves room for the taps: every B row is then a contiguous slice of a
//! zero-padded (and, for strides > 1, phase-split) copy of the input image, so the micro-kernel
//! reads B with unit stride and no bounds checks, and a few junk columns per row are never stored.
//! Or (`conv_layout = 1`) the other way round: output positions as rows, read a broadcast at a
//! time from the same padded copy, output channels as columns against weights prepacked into
//! panels — no junk columns (a 7×7 output wastes 2 of 9 grid columns the first way), and the
//! threads split the weights rather than share them.

use crate::gemm::{
    self, ceil_div, BiasAxis, BorderFill, Bordered, GemmProblem, GemmSchedule, Operand, OutLayout, PackA,
    PackB, ScratchFill, N_ORDERS,
};
use crate::padded::{tap_offset, zero_border, PhaseSplit};
use crate::space::{ScheduleError, SpaceGenerator};
use autotune_ir::{BatchMatmulSpec, Conv2dSpec, CpuTarget, Expr, LoopKind, Op, Program, Task, Trace};
use rand::{Rng, RngCore};

pub const SKETCH: &str = "gemm_blocked";
const VERSION: &str = "gemm-cpu-v3";

const MR: &[i64] = &[1, 2, 4, 5, 6, 7, 8, 10, 12, 14, 16];
const NR_VECS: &[i64] = &[1, 2, 3, 4];
const KC: &[i64] = &[8, 16, 32, 64, 128, 192, 256, 384, 512];
const MC_TILES: &[i64] = &[1, 2, 4, 8, 16, 32, 64];
const NC_TILES: &[i64] = &[1, 2, 4, 8, 16, 32, 64];
const UNROLL_K: &[i64] = &[1, 2, 4, 8];
/// Largest kernel-tap count (kh·kw) that may be fully unrolled.
const MAX_UNROLLED_TAPS: i64 = 25;
/// The default prefetches the weights' next panel (`gemm::Lowering::prefetch_next_b_panel`) for
/// outputs of at most this many row tiles. Only the first pass over a panel finds it out of
/// cache: with few rows that pass is a large part of the call (ResNet-50's convs at 14×14 and
/// 7×7, 33 and 10 tiles: 1.1–1.5× faster prefetched, Xeon, AVX-512, 1 thread, weights cold), with
/// many it is not, and the other passes' prefetches only cost (at 56×56, 523 tiles: 0–6 %
/// slower; at 28×28, 131 tiles: within 3 % either way).
const MAX_ROW_TILES_PREFETCHED: i64 = 160;
/// The block order with the row blocks outermost (`[Ic, Pc, Jc]` in `gemm::ORDERS`).
const ORDER_ROWS_OUTER: usize = 2;

/// The decisions of `gemm_blocked`: one typed table that sampling, mutation, repair, decoding
/// and counting all walk, and that `domain`, `get` and `set` match exhaustively, so a decision
/// cannot be known to one of them and missing from another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Knob {
    Mr,
    NrVecs,
    Kc,
    McTiles,
    NcTiles,
    PackA,
    PackB,
    Order,
    InnerOrder,
    ParallelLoop,
    UnrollK,
    UnrollTaps,
    EpilogueInTile,
    GridAlign,
    OutViaGrid,
    ConvLayout,
    PrefetchB,
}

impl Knob {
    /// Trace order (the order of the log's decisions; changing it changes every trace key).
    pub(crate) const ALL: [Knob; 17] = [
        Knob::Mr,
        Knob::NrVecs,
        Knob::Kc,
        Knob::McTiles,
        Knob::NcTiles,
        Knob::PackA,
        Knob::PackB,
        Knob::Order,
        Knob::InnerOrder,
        Knob::ParallelLoop,
        Knob::UnrollK,
        Knob::UnrollTaps,
        Knob::EpilogueInTile,
        Knob::GridAlign,
        Knob::OutViaGrid,
        Knob::ConvLayout,
        Knob::PrefetchB,
    ];

    /// The decisions that shape the problem itself (and so the other decisions' domains): drawn,
    /// repaired and decoded first.
    const SHAPE: [Knob; 2] = [Knob::ConvLayout, Knob::GridAlign];

    /// The decision's name in traces.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Knob::Mr => "mr",
            Knob::NrVecs => "nr_vecs",
            Knob::Kc => "kc",
            Knob::McTiles => "mc_tiles",
            Knob::NcTiles => "nc_tiles",
            Knob::PackA => "pack_a",
            Knob::PackB => "pack_b",
            Knob::Order => "order",
            Knob::InnerOrder => "inner_order",
            Knob::ParallelLoop => "parallel_loop",
            Knob::UnrollK => "unroll_k",
            Knob::UnrollTaps => "unroll_taps",
            Knob::EpilogueInTile => "epilogue_in_tile",
            Knob::GridAlign => "grid_align",
            Knob::OutViaGrid => "out_via_grid",
            Knob::ConvLayout => "conv_layout",
            Knob::PrefetchB => "prefetch_b",
        }
    }

    fn shapes_problem(self) -> bool {
        Knob::SHAPE.contains(&self)
    }

    /// Shape decisions first, then the rest in trace order: the order domains depend on.
    fn draw_order() -> impl Iterator<Item = Knob> {
        Knob::SHAPE.into_iter().chain(Knob::ALL.into_iter().filter(|k| !k.shapes_problem()))
    }
}

/// The GEMM view of a task, independent of the schedule except for its [`Shape`].
#[derive(Clone, Copy, Debug)]
enum Kind {
    Matmul(BatchMatmulSpec),
    Conv(Conv2dSpec),
}

/// The decisions that shape a conv's GEMM: the grid alignment of the output-positions-as-columns
/// layout, and which layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    grid_align: i64,
    /// Output channels as columns (output positions as rows).
    channels_as_columns: bool,
}

#[derive(Debug, Clone)]
pub struct GemmSpace {
    task: Task,
    kind: Kind,
    lanes: i64,
    /// Vector registers a register tile may fill (accumulators, B vectors and a broadcast).
    registers: i64,
    threads: u32,
    l2_bytes: u64,
    /// f32 elements per cache line.
    line_elems: i64,
}

impl GemmSpace {
    pub fn new(task: &Task, cpu: &CpuTarget) -> Result<GemmSpace, ScheduleError> {
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
            // An input that holds its padding is read in place as an unpadded conv's.
            Op::Conv2d(c) if task.halo.input != [0; 4] => Kind::Conv(c.over_padded_input()),
            Op::Conv2d(c) => Kind::Conv(*c),
            Op::Pool2d(_) => return Err(unsupported()),
        };
        let lanes = cpu.vector_lanes.max(1);
        // A channel-blocked output is stored a vector at a time: whole vectors per block, and at
        // least one vector of channels (only the channels-as-columns layout reads blocks).
        let blocks = task.layout;
        if !blocks.is_plain()
            && (!blocks.output.is_multiple_of(lanes as usize) && blocks.output > 1
                || task.bias_len() < lanes as usize)
        {
            return Err(unsupported());
        }
        Ok(GemmSpace {
            task: task.clone(),
            kind,
            lanes: i64::from(lanes),
            registers: i64::from(cpu.vector_registers()),
            threads: cpu.threads.max(1),
            l2_bytes: cpu.caches.l2_bytes,
            line_elems: (cpu.caches.line_bytes / 4).max(1) as i64,
        })
    }

    /// Channels per block of the input (1: NCHW).
    fn in_block(&self) -> i64 {
        self.task.layout.input as i64
    }

    /// (rows, grid columns, blocked reduction, taps) for a shape.
    fn dims(&self, shape: Shape) -> (i64, i64, i64, i64) {
        match self.kind {
            Kind::Matmul(b) => (b.m as i64, b.n as i64, b.k as i64, 1),
            Kind::Conv(c) => {
                let (og, cg, taps) = (c.o_per_group() as i64, c.c_per_group() as i64, (c.kh * c.kw) as i64);
                if shape.channels_as_columns {
                    // An input in channel blocks reduces over blocks, with (tap, channel) inside.
                    let block = self.in_block();
                    ((c.out_h() * c.out_w()) as i64, og, cg / block, taps * block)
                } else {
                    let g = ConvGrid::new(&c, shape.grid_align);
                    (og, g.oh * g.wq, cg, taps)
                }
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

    /// Whether an `mr × nr_vecs` tile fits the register file: `mr · nr_vecs` accumulators, the
    /// `nr_vecs` B vectors of one reduction step and one broadcast of A.
    fn tile_fits(&self, mr: i64, nr_vecs: i64) -> bool {
        mr * nr_vecs + nr_vecs < self.registers
    }

    /// The values `knob` may take given the decisions before it (in [`Knob::draw_order`]).
    /// Never empty: `every_domain_is_non_empty_at_every_level` walks the space to check it.
    fn domain(&self, knob: Knob, s: &GemmSchedule, shape: Shape) -> Vec<i64> {
        let (m, n, k, taps) = self.dims(shape);
        let by_channels = shape.channels_as_columns;
        let clamp = |values: &[i64], limit: i64| {
            let mut v: Vec<i64> = values.iter().map(|&x| x.min(limit.max(1))).collect();
            v.dedup();
            v
        };
        match knob {
            // Only row counts that leave room for at least one vector of columns.
            Knob::Mr => clamp(MR, m).into_iter().filter(|&mr| self.tile_fits(mr, 1)).collect(),
            Knob::NrVecs => {
                let max_useful = ceil_div(n, self.lanes);
                let mut v: Vec<i64> = NR_VECS
                    .iter()
                    .copied()
                    .filter(|&v| self.tile_fits(s.mr, v))
                    .map(|v| v.min(max_useful))
                    .collect();
                v.dedup();
                v
            }
            // In channels (a blocked input's reduction counts channel blocks): the same depths.
            Knob::Kc => {
                let depths: Vec<i64> = KC.iter().map(|&kc| (kc / self.in_block()).max(1)).collect();
                clamp(&depths, k)
            }
            Knob::McTiles => clamp(MC_TILES, ceil_div(m, s.mr)),
            Knob::NcTiles => clamp(NC_TILES, ceil_div(n, s.nr_vecs * self.lanes)),
            // With channels as columns A is the input image: packed per call or read in place.
            Knob::PackA => match self.kind {
                Kind::Conv(_) if !by_channels => vec![0, 1, 2],
                // Read in place, edge tiles could only take the scalar path: packed panels only,
                // unless the channels are blocked (broadcasts then read `block` contiguous
                // channels of one position, as a packed panel would).
                Kind::Conv(c) if !ConvGrid::has_padding(&c) && self.task.layout.input == 1 => vec![1],
                _ => vec![0, 1],
            },
            Knob::InnerOrder => vec![0, 1],
            // …and B the weights, read only through panels packed once.
            Knob::PackB if by_channels => vec![2],
            Knob::PackB => {
                let trans_b = matches!(self.kind, Kind::Matmul(b) if b.trans_b);
                let mut v = if trans_b { vec![1] } else { vec![0, 1] };
                if self.b_prepackable() {
                    v.push(2);
                }
                v
            }
            Knob::Order => (0..N_ORDERS).collect(),
            Knob::ParallelLoop => match (self.threads > 1, self.has_batch_parallelism()) {
                (false, _) => vec![0],
                (true, false) => vec![0, 1],
                (true, true) => vec![0, 1, 2],
            },
            Knob::UnrollK => clamp(UNROLL_K, k),
            // Fully unrolled taps multiply the micro-kernel's code: past 5×5 compile time explodes
            // (an 11×11 conv took 31 s) for no speed gain.
            Knob::UnrollTaps => match taps / self.in_block() {
                1 => vec![1],
                2..=MAX_UNROLLED_TAPS => vec![0, 1],
                _ => vec![0],
            },
            Knob::EpilogueInTile => {
                if self.task.epilogue.is_empty() {
                    vec![1]
                } else {
                    vec![0, 1]
                }
            }
            Knob::GridAlign => match self.kind {
                Kind::Conv(c) if ConvGrid::needs_scratch(&c) && !by_channels => vec![1, self.lanes],
                _ => vec![1],
            },
            Knob::OutViaGrid => match self.kind {
                // A channel-blocked output is stored a vector at a time: nothing to transpose.
                Kind::Conv(_) if self.task.layout.output > 1 => vec![0],
                // Transposed through a scratch, or stored a lane at a time from the tile.
                Kind::Conv(_) if by_channels => vec![0, 1],
                Kind::Conv(c) if ConvGrid::new(&c, shape.grid_align).wq != c.out_w() as i64 => vec![0, 1],
                _ => vec![0],
            },
            // Only a prepacked B is a stream of panels in the order the kernel reads them.
            Knob::PrefetchB if s.pack_b == PackB::Prepacked => vec![0, 1],
            Knob::PrefetchB => vec![0],
            // Channels as columns needs a vector's worth of output channels per group; it is the
            // only layout that reads and writes channel blocks.
            Knob::ConvLayout => match self.kind {
                Kind::Conv(_) if !self.task.layout.is_plain() => vec![1],
                Kind::Conv(c) if c.o_per_group() as i64 >= self.lanes => vec![0, 1],
                _ => vec![0],
            },
        }
    }

    fn get(s: &GemmSchedule, shape: Shape, knob: Knob) -> i64 {
        match knob {
            Knob::Mr => s.mr,
            Knob::NrVecs => s.nr_vecs,
            Knob::Kc => s.kc,
            Knob::McTiles => s.mc_tiles,
            Knob::NcTiles => s.nc_tiles,
            Knob::PackA => match s.pack_a {
                PackA::None => 0,
                PackA::PerCall => 1,
                PackA::Prepacked => 2,
            },
            Knob::PackB => match s.pack_b {
                PackB::None => 0,
                PackB::PerCall => 1,
                PackB::Prepacked => 2,
            },
            Knob::Order => s.order as i64,
            Knob::InnerOrder => s.inner_order,
            Knob::ParallelLoop => s.parallel_loop,
            Knob::UnrollK => s.unroll_k,
            Knob::UnrollTaps => s.unroll_taps as i64,
            Knob::EpilogueInTile => s.epilogue_in_tile as i64,
            Knob::GridAlign => shape.grid_align,
            Knob::OutViaGrid => s.out_via_grid as i64,
            Knob::ConvLayout => shape.channels_as_columns as i64,
            Knob::PrefetchB => s.prefetch_b as i64,
        }
    }

    fn set(s: &mut GemmSchedule, shape: &mut Shape, knob: Knob, v: i64) {
        match knob {
            Knob::Mr => s.mr = v,
            Knob::NrVecs => s.nr_vecs = v,
            Knob::Kc => s.kc = v,
            Knob::McTiles => s.mc_tiles = v,
            Knob::NcTiles => s.nc_tiles = v,
            Knob::PackA => {
                s.pack_a = match v {
                    0 => PackA::None,
                    1 => PackA::PerCall,
                    _ => PackA::Prepacked,
                }
            }
            Knob::PackB => {
                s.pack_b = match v {
                    0 => PackB::None,
                    1 => PackB::PerCall,
                    _ => PackB::Prepacked,
                }
            }
            Knob::Order => s.order = v as usize,
            Knob::InnerOrder => s.inner_order = v,
            Knob::ParallelLoop => s.parallel_loop = v,
            Knob::UnrollK => s.unroll_k = v,
            Knob::UnrollTaps => s.unroll_taps = v != 0,
            Knob::EpilogueInTile => s.epilogue_in_tile = v != 0,
            Knob::GridAlign => shape.grid_align = v,
            Knob::OutViaGrid => s.out_via_grid = v != 0,
            Knob::ConvLayout => shape.channels_as_columns = v != 0,
            Knob::PrefetchB => s.prefetch_b = v != 0,
        }
    }

    /// Makes every decision valid again after some changed: in [`Knob::draw_order`], each value
    /// outside its domain moves to the nearest one (the shape decisions to their first).
    /// Decisions before `from` in trace order are kept (they were valid and nothing before them
    /// changed), except the shape decisions, which every domain depends on.
    fn repair(&self, s: &mut GemmSchedule, shape: &mut Shape, from: usize) {
        for knob in Knob::draw_order() {
            let position = Knob::ALL.iter().position(|&k| k == knob).unwrap_or(0);
            if !knob.shapes_problem() && position < from {
                continue;
            }
            let domain = self.domain(knob, s, *shape);
            let v = Self::get(s, *shape, knob);
            if !domain.contains(&v) {
                let nearest = if knob.shapes_problem() {
                    domain.first().copied()
                } else {
                    domain.iter().copied().min_by_key(|d| (d - v).abs())
                };
                Self::set(s, shape, knob, nearest.unwrap_or(v));
            }
        }
    }

    fn to_trace(s: &GemmSchedule, shape: Shape) -> Trace {
        Trace::new(SKETCH, Knob::ALL.iter().map(|&knob| (knob.name(), Self::get(s, shape, knob))).collect())
    }

    fn decode(&self, trace: &Trace) -> Result<(GemmSchedule, Shape), ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidTrace {
            trace: trace.display(),
            space: VERSION.to_string(),
            reason,
        };
        if trace.sketch != SKETCH {
            return Err(invalid(format!("sketch is `{}`", trace.sketch)));
        }
        let (mut s, mut shape) = self.default_schedule();
        for knob in Knob::draw_order() {
            let name = knob.name();
            let v = trace.get(name).ok_or_else(|| invalid(format!("decision `{name}` missing")))?;
            if !self.domain(knob, &s, shape).contains(&v) {
                return Err(invalid(format!("{name}={v} is not a valid choice")));
            }
            Self::set(&mut s, &mut shape, knob, v);
        }
        Ok((s, shape))
    }

    fn default_schedule(&self) -> (GemmSchedule, Shape) {
        // Output channels as columns for convs with several taps that cannot read their input in
        // place, unless they have too few channels for a vector (ResNet's 3-channel stem). In
        // 200-trial searches on the 2-core Xeon this layout won every 3×3 layer of ResNet-50 at 2
        // threads, by 1.2–1.6×; as a default it was 1.03–1.29× the grid layout on them, but 0.8–0.9×
        // on the strided 1×1 projection, whose grid layout copies no taps.
        let channels_as_columns = match self.kind {
            Kind::Conv(_) if !self.task.layout.is_plain() => true,
            Kind::Conv(c) => {
                let lanes = self.lanes as usize;
                c.o_per_group() >= lanes
                    && c.c_per_group() >= lanes
                    && c.kh * c.kw > 1
                    && ConvGrid::needs_scratch(&c)
            }
            _ => false,
        };
        let mut shape = Shape { grid_align: 1, channels_as_columns };
        let (rows, _, _, taps) = self.dims(shape);
        let conv = matches!(self.kind, Kind::Conv(_));
        let in_block = self.in_block();
        let (mr, nr_vecs) = self.default_register_tile(channels_as_columns);
        let mr = if channels_as_columns { self.rows_without_waste(mr, nr_vecs, rows) } else { mr };
        // A 1×1 conv's reduction in blocks of 512 input channels: each block after the first
        // reads back and writes the output tile again; on ResNet-50's 1×1 convs with 512 to 2048
        // input channels 512 was 2–14 % faster than 256 (Xeon, AVX-512, 1 thread, operands cold).
        // An input in channel blocks: 128 channels per block for a 1×1 conv, 64 otherwise
        // (ResNet-50's 1×1 convs at 56×56: 0.55 ms against 0.59 with 64; Xeon, AVX-512, cold).
        let kc = match (channels_as_columns, conv && taps == 1) {
            (true, _) if in_block > 1 && taps == in_block => 128 / in_block,
            (true, _) => 64 / in_block,
            (false, true) => 512,
            (false, false) => (256 / taps).max(8),
        };
        let mut s = GemmSchedule {
            mr,
            nr_vecs,
            kc,
            mc_tiles: 8,
            nc_tiles: 32,
            pack_a: match (conv, channels_as_columns) {
                (true, false) => PackA::Prepacked,
                (true, true) => PackA::None,
                (false, _) => PackA::PerCall,
            },
            pack_b: if self.b_prepackable() || channels_as_columns {
                PackB::Prepacked
            } else {
                PackB::PerCall
            },
            order: 0,
            // A conv with output channels as rows sweeps each row tile along the columns: the
            // tiles then write (and read a residual from) a few output rows front to back. Down
            // the rows first, the default for the 1×1 convs of ResNet-50 at 56×56 and 28×28 was
            // 1.3–2.0× slower with the output out of cache (Xeon, AVX-512, 1 thread), as in a
            // model; the 3×3 convs, channels as columns, were 3–12 % faster down the rows.
            inner_order: i64::from(conv && !channels_as_columns),
            // The outermost block loop (columns), cut below into enough blocks for every thread.
            parallel_loop: 0,
            unroll_k: if taps > 1 { 1 } else { 4 },
            unroll_taps: taps <= 9,
            epilogue_in_tile: true,
            // Channels as columns: tiles stored transposed a lane at a time (no copy-out pass).
            out_via_grid: !channels_as_columns,
            prefetch_b: false,
        };
        // A dense grid (little junk) with full-vector tiles via the grid scratch.
        self.repair(&mut s, &mut shape, 0);
        self.cut_blocks(&mut s, shape);
        s.prefetch_b = s.pack_b == PackB::Prepacked && ceil_div(rows, s.mr) <= MAX_ROW_TILES_PREFETCHED;
        (s, shape)
    }

    /// The default's cache blocks over rows and columns. Every column block reads all of A again
    /// and every row block all of B, so the operand with more elements (A when rows outnumber
    /// columns: a 1×1 conv's weights at 7×7 or 14×14) is cut along its own dimension only.
    /// With one thread and A the larger, that means one block of columns: cutting the columns
    /// of a 2048×512 conv at 7×7 into two blocks streamed its 4 MiB of weights twice, 1.38 ms
    /// instead of 0.99 on a Xeon (AVX-512) with the weights out of cache, as in a model.
    /// Otherwise the outermost block loop (the parallel one) is cut into the widest blocks that
    /// still give each thread two (a thread left without a block would halve a 2-thread
    /// kernel's speed): along the smaller operand's dimension, so that each thread reads its
    /// own share of the larger one; along the other dimension when that one is too short.
    fn cut_blocks(&self, s: &mut GemmSchedule, shape: Shape) {
        let (m, n, _, taps) = self.dims(shape);
        let nr = s.nr_vecs * self.lanes;
        let all_columns = |s: &GemmSchedule| self.domain(Knob::NcTiles, s, shape).last().copied();
        if self.threads == 1 && m > n {
            if let Some(tiles) = all_columns(s) {
                s.nc_tiles = tiles;
            }
            return;
        }
        let wanted_blocks = 2 * i64::from(self.threads);
        let widest = |domain: Vec<i64>, len: i64, tile: i64| {
            domain.iter().rev().copied().find(|&t| ceil_div(len, tile * t) >= wanted_blocks)
        };
        let cut_columns = |s: &mut GemmSchedule| match widest(self.domain(Knob::NcTiles, s, shape), n, nr) {
            Some(tiles) => {
                s.nc_tiles = tiles;
                // A channel-blocked conv takes its rows in one block too, when fewer than the
                // columns and their panel fits half of L2: every row block streams the weights
                // again (ResNet-50's 512→2048 1×1 conv at 7×7 read its 4 MiB twice in blocks of
                // 32 and 17 positions: 1.10 ms, 1.04 in one; Xeon, AVX-512, cold). Measured on
                // blocked convs only, so NCHW defaults keep theirs.
                let panel_bytes = m * s.kc * taps * 4;
                if !self.task.layout.is_plain() && m <= n && panel_bytes as u64 <= self.l2_bytes / 2 {
                    if let Some(&all_rows) = self.domain(Knob::McTiles, s, shape).last() {
                        s.mc_tiles = all_rows;
                    }
                }
                true
            }
            None => false,
        };
        let cut_rows = |s: &mut GemmSchedule| match widest(self.domain(Knob::McTiles, s, shape), m, s.mr) {
            Some(tiles) => {
                (s.mc_tiles, s.order) = (tiles, ORDER_ROWS_OUTER);
                if let Some(tiles) = all_columns(s) {
                    s.nc_tiles = tiles;
                }
                true
            }
            None => false,
        };
        type Cut<'a> = &'a dyn Fn(&mut GemmSchedule) -> bool;
        let preference: [Cut; 2] = if m > n { [&cut_rows, &cut_columns] } else { [&cut_columns, &cut_rows] };
        let cut = preference.iter().any(|cut| cut(s));
        if !cut {
            if let Some(&smallest) = self.domain(Knob::NcTiles, s, shape).first() {
                s.nc_tiles = smallest;
            }
        }
    }

    /// The register tile of the default schedule, by the register file. With 32 registers
    /// (AVX-512), the tiles 200-trial searches on the 2-core Xeon settled on: 6 output positions ×
    /// 4 vectors of channels (24 accumulators) with channels as columns, 8 rows × 2 vectors
    /// otherwise. With 16 (AVX2, SSE), 6 rows × 2 vectors: 12 accumulators, 2 B vectors and a
    /// broadcast leave one register free, the tile of BLIS' and OpenBLAS' Haswell/Zen kernels.
    /// An input in channel blocks takes the same 6 × 4: on ResNet-50's convs in 16-channel
    /// blocks it was 4–7 % faster than 4 × 4 on the 3×3 ones and 0–6 % on the 1×1 ones (Xeon,
    /// AVX-512, 1 thread, cold; it lost by 1.3× while LLVM's machine scheduler spilled it, see
    /// `autotune_codegen::CODEGEN_VERSION`).
    fn default_register_tile(&self, channels_as_columns: bool) -> (i64, i64) {
        let tile = match (self.registers >= 32, channels_as_columns) {
            (true, true) => (6, 4),
            (true, false) => (8, 2),
            (false, _) => (6, 2),
        };
        debug_assert!(self.tile_fits(tile.0, tile.1));
        tile
    }

    /// The register tile's row count for `m` rows: `mr`, unless its last tile would compute more
    /// than 5 % of rows that do not exist; then the one of `mr - 1`, `mr - 2` that wastes the
    /// fewest. A 7×7 output (49 positions) in tiles of 6 computes 54; in tiles of 5, 50: on
    /// ResNet-50's convs at 7×7 in channel blocks, 3–4 % faster (Xeon, AVX-512, 1 thread, cold).
    fn rows_without_waste(&self, mr: i64, nr_vecs: i64, m: i64) -> i64 {
        let waste = |r: i64| ceil_div(m, r) * r - m;
        if m < mr || waste(mr) * 20 <= m {
            return mr;
        }
        [mr, mr - 1, mr - 2]
            .into_iter()
            .filter(|&r| r >= 1 && MR.contains(&r) && self.tile_fits(r, nr_vecs))
            .min_by_key(|&r| (waste(r), -r))
            .unwrap_or(mr)
    }

    fn problem(&self, shape: Shape) -> GemmProblem {
        match self.kind {
            Kind::Matmul(b) => matmul_problem(&self.task, &b, self.lanes),
            Kind::Conv(c) if shape.channels_as_columns => {
                conv_problem_by_channels(&self.task, &c, self.lanes)
            }
            Kind::Conv(c) => conv_problem(&self.task, &c, self.lanes, shape.grid_align),
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
        let (mut s, mut shape) = self.default_schedule();
        for knob in Knob::draw_order() {
            let domain = self.domain(knob, &s, shape);
            // Domains are never empty (a test walks every level's spaces); if one were, the
            // default's value stays and `decode` names the decision.
            if let Some(&v) = domain.get(rng.gen_range(0..domain.len().max(1))) {
                Self::set(&mut s, &mut shape, knob, v);
            }
        }
        Self::to_trace(&s, shape)
    }

    fn mutate(&self, trace: &Trace, rng: &mut dyn RngCore) -> Trace {
        let Ok((mut s, mut shape)) = self.decode(trace) else {
            return self.sample(rng);
        };
        for _ in 0..16 {
            let which = rng.gen_range(0..Knob::ALL.len());
            let knob = Knob::ALL[which];
            let current = Self::get(&s, shape, knob);
            let others: Vec<i64> =
                self.domain(knob, &s, shape).into_iter().filter(|&v| v != current).collect();
            if !others.is_empty() {
                Self::set(&mut s, &mut shape, knob, others[rng.gen_range(0..others.len())]);
                let from = if knob.shapes_problem() { 0 } else { which + 1 };
                self.repair(&mut s, &mut shape, from);
                break;
            }
        }
        Self::to_trace(&s, shape)
    }

    fn crossover(&self, a: &Trace, b: &Trace, rng: &mut dyn RngCore) -> Trace {
        // Each decision from either parent (a's when b lacks it), then repaired in order, so
        // the child is valid even when the parents' dependent domains differ or a parent was
        // tuned for another shape.
        let (mut s, mut shape) = self.default_schedule();
        for knob in Knob::ALL {
            let name = knob.name();
            let from_b = rng.gen_bool(0.5);
            let value = if from_b {
                b.get(name).or_else(|| a.get(name))
            } else {
                a.get(name).or_else(|| b.get(name))
            };
            if let Some(value) = value {
                Self::set(&mut s, &mut shape, knob, value);
            }
        }
        self.repair(&mut s, &mut shape, 0);
        Self::to_trace(&s, shape)
    }

    fn default_trace(&self) -> Trace {
        let (s, shape) = self.default_schedule();
        Self::to_trace(&s, shape)
    }

    fn lower(&self, trace: &Trace) -> Result<Program, ScheduleError> {
        let (s, shape) = self.decode(trace)?;
        Ok(gemm::lower(&self.problem(shape), &s, self.line_elems))
    }

    fn size(&self) -> u64 {
        /// Points with decisions `i..` free, the shape fixed.
        fn count(space: &GemmSpace, s: &mut GemmSchedule, shape: Shape, i: usize) -> u64 {
            let Some(&knob) = Knob::ALL.get(i) else { return 1 };
            if knob.shapes_problem() {
                return count(space, s, shape, i + 1);
            }
            let mut total = 0u64;
            for v in space.domain(knob, s, shape) {
                GemmSpace::set(s, &mut shape.clone(), knob, v);
                total = total.saturating_add(count(space, s, shape, i + 1));
            }
            total
        }
        let (mut s, default_shape) = self.default_schedule();
        let mut total = 0u64;
        for layout in self.domain(Knob::ConvLayout, &s, default_shape) {
            let by_layout = Shape { channels_as_columns: layout != 0, ..default_shape };
            for grid_align in self.domain(Knob::GridAlign, &s, by_layout) {
                let shape = Shape { grid_align, ..by_layout };
                total = total.saturating_add(count(self, &mut s, shape, 0));
            }
        }
        total
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
        kw_unrolled: false,
        lanes,
        batch,
        a_rows_slack: false,
        a_source: Operand::Param(0),
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
        b_source: Operand::Param(1),
        b_index: Box::new(move |bvars, x| {
            let base = if b_shared { Expr::int(0) } else { bv(bvars, 0) * (k * n) };
            let (c, col) = (x[0].clone(), x[3].clone());
            if trans_b {
                base + col * k + c
            } else {
                base + c * n + col
            }
        }),
        // A constant B shared by every batch is packed once.
        b_constant_over: (b.b_constant && (b.b_broadcast || b.batch == 1)).then(Vec::new),
        scratch: None,
        out_param: params.len() - 1,
        out_border: None,
        out: OutLayout::Rows {
            row_base: Box::new(move |bvars, x| (bv(bvars, 0) * m + x[0].clone()) * n),
            grid_w: n,
            valid_w: n,
        },
        epilogue: task.epilogue.clone(),
        bias: bias.map(|p| (p, BiasAxis::Col(Box::new(|_, x| x[0].clone())))),
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

    fn has_padding(c: &Conv2dSpec) -> bool {
        c.pad != [0; 4]
    }

    /// A 1×1-wide, unit-stride, unpadded conv reads its input in place.
    fn needs_scratch(c: &Conv2dSpec) -> bool {
        !(c.kw == 1 && c.stride == [1, 1] && c.pad == [0; 4])
    }
}

/// The zero-padded, phase-split copy of one input image that both conv layouts read (`None` for
/// a conv that reads its input in place), and the index of tap `(kh, kw)` of channel `ch` at grid
/// position (`oy`, `ox`) in whichever buffer it reads.
struct ConvInput {
    scratch: Option<ScratchFill>,
    index: ConvInputIndex,
}

/// (batch vars, channel, kh, kw, grid row, grid column) → index.
type ConvInputIndex = Box<dyn Fn(&[Expr], Expr, Expr, Expr, Expr, Expr) -> Expr>;

fn conv_input(c: &Conv2dSpec, grid: ConvGrid, lanes: i64) -> ConvInput {
    let (cin, h, w) = (c.c as i64, c.h as i64, c.w as i64);
    let (sh, sw) = (c.stride[0] as i64, c.stride[1] as i64);
    let (dh, dw) = (c.dilation[0] as i64, c.dilation[1] as i64);
    let (pt, pl) = (c.pad[0] as i64, c.pad[1] as i64);
    let ConvGrid { hq, wq, .. } = grid;
    let plane = hq * wq;
    if !ConvGrid::needs_scratch(c) {
        // 1-wide kernel, unit stride, no padding: the input itself is the grid (wq = w).
        return ConvInput {
            scratch: None,
            index: Box::new(move |bvars, ch, kh, _kw, oy, ox| {
                (bv(bvars, 0) * cin + ch) * (h * w) + (oy + kh * dh) * w + ox
            }),
        };
    }
    let (kh, kw) = (c.kh as i64, c.kw as i64);
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
    let scratch = ScratchFill {
        len: split.len(),
        depth: 1,
        fill: Box::new(move |b, bvars, params, xp| {
            let image = bv(bvars, 0);
            split.fill(b, params[0], &|ch| (image.clone() * cin + ch) * (h * w), xp, 0.0, LoopKind::Parallel)
        }),
    };
    ConvInput {
        scratch: Some(scratch),
        index: Box::new(move |_, ch, kh, kw, oy, ox| {
            let (ph, dy) = tap_offset(kh, dh, sh);
            let (pw, dx) = tap_offset(kw, dw, sw);
            ((ch * sh + ph) * sw + pw) * plane + (oy + dy) * wq + ox + dx
        }),
    }
}

/// Conv as `C[output channel, grid position]`: weights as A (prepackable), the padded input as B,
/// read along grid rows `wq ≥ ow` wide.
fn conv_problem(task: &Task, c: &Conv2dSpec, lanes: i64, grid_align: i64) -> GemmProblem {
    let grid = ConvGrid::new(c, grid_align);
    let (o, cg, og) = (c.o as i64, c.c_per_group() as i64, c.o_per_group() as i64);
    let (kh, kw) = (c.kh as i64, c.kw as i64);
    let ConvGrid { oh, ow, wq, .. } = grid;
    let params = params_of(task);
    let (bias, residual) = epilogue_params(task);
    let input = conv_input(c, grid, lanes);
    let read = input.index;
    GemmProblem {
        name: format!("conv2d_{}x{}_o{}_k{}x{}", c.h, c.w, c.o, c.kh, c.kw),
        m: og,
        n: oh * wq,
        k: cg,
        kh,
        kw,
        kw_unrolled: false,
        lanes,
        batch: vec![("n", c.n as i64), ("g", c.groups as i64)],
        a_rows_slack: false,
        a_source: Operand::Param(1),
        // Weights depend on the group only.
        a_constant_over: Some(vec![1]),
        a_index: Box::new(move |bvars, x| {
            (((bv(bvars, 1) * og + x[0].clone()) * cg + x[1].clone()) * kh + x[2].clone()) * kw + x[3].clone()
        }),
        b_source: if input.scratch.is_some() { Operand::Scratch } else { Operand::Param(0) },
        // Grid column `col` is position (0, col) of the grid: its rows follow each other.
        b_index: Box::new(move |bvars, x| {
            let ch = bv(bvars, 1) * cg + x[0].clone();
            read(bvars, ch, x[1].clone(), x[2].clone(), Expr::int(0), x[3].clone())
        }),
        b_constant_over: None,
        scratch: input.scratch,
        out_param: params.len() - 1,
        out_border: None,
        out: OutLayout::Rows {
            row_base: Box::new(move |bvars, x| {
                ((bv(bvars, 0) * o + bv(bvars, 1) * og + x[0].clone()) * oh) * ow
            }),
            grid_w: wq,
            valid_w: ow,
        },
        epilogue: task.epilogue.clone(),
        bias: bias.map(|p| (p, BiasAxis::Row(Box::new(move |bvars, x| bv(bvars, 1) * og + x[0].clone())))),
        residual,
        params,
    }
}

/// Conv as `C[output position, output channel]`: the input as A, one broadcast per output
/// position (rows are exactly the `oh × ow` outputs: no junk), weights as B, read only from panels
/// prepacked once per group; C is transposed into the NCHW output on the way out, or stored a
/// vector at a time into a channel-blocked one. Broadcasts need no contiguous runs, so strided
/// taps read a plain zero-padded copy (a row copy, vectorized) rather than phase planes, and an
/// unpadded conv reads its input in place.
///
/// With the input's channels in blocks of `bi > 1` the blocked reduction runs over channel
/// blocks, and the two tap loops over (kernel tap, channel within its block): the innermost loop
/// then steps A's index by one, so once unrolled its broadcasts are constant offsets from one
/// address — where walking the channels of NCHW{bi}c one by one would need a division per step.
fn conv_problem_by_channels(task: &Task, c: &Conv2dSpec, lanes: i64) -> GemmProblem {
    let (cin, h, w) = (c.c as i64, c.h as i64, c.w as i64);
    let (oh, ow) = (c.out_h() as i64, c.out_w() as i64);
    let (o, cg, og) = (c.o as i64, c.c_per_group() as i64, c.o_per_group() as i64);
    let (kh, kw) = (c.kh as i64, c.kw as i64);
    let (sh, sw) = (c.stride[0] as i64, c.stride[1] as i64);
    let (dh, dw) = (c.dilation[0] as i64, c.dilation[1] as i64);
    let (bi, bo) = (task.layout.input as i64, task.layout.output as i64);
    let params = params_of(task);
    let (bias, residual) = epilogue_params(task);
    // Channel blocks of the input (plain channels when bi = 1): each a plane of `bi`-wide pixels.
    let in_blocks = cin / bi;
    let scratch = ConvGrid::has_padding(c).then(|| {
        // An edge tile reads up to MR rows past the last output position: zero rows below the
        // image keep those reads inside the channel's plane (their results are never stored).
        let rows_read = (oh + ceil_div(MR[MR.len() - 1], ow) + 1) * sh + (kh - 1) * dh + 1;
        let (hp, wp) = ((h + (c.pad[0] + c.pad[2]) as i64).max(rows_read), w + (c.pad[1] + c.pad[3]) as i64);
        let padded = PhaseSplit::padded(
            in_blocks,
            (h, w * bi),
            (c.pad[0] as i64, c.pad[1] as i64 * bi),
            (hp, wp * bi),
            lanes,
        );
        let fill = ScratchFill {
            len: padded.len(),
            depth: 1,
            fill: Box::new(move |b, bvars, params, xp| {
                let image = bv(bvars, 0);
                padded.fill(
                    b,
                    params[0],
                    &|ch| (image.clone() * in_blocks + ch) * (h * w * bi),
                    xp,
                    0.0,
                    LoopKind::Parallel,
                )
            }),
        };
        (fill, hp, wp)
    });
    // An input in place is the conv's window of its buffer: the buffer's border may be wider
    // than this conv's padding (another reader needs more), so the window starts `origin` in.
    let window = match &task.op {
        Op::Conv2d(logical) => task.halo.input_window(logical),
        _ => None,
    };
    let (a_source, plane, row_len, origin) = match (&scratch, window) {
        (Some((_, hp, wp)), _) => (Operand::Scratch, hp * wp, *wp, 0),
        (None, Some(at)) => {
            let (rows, cols) = (at.rows as i64, at.cols as i64);
            (Operand::Param(0), rows * cols, cols, at.top as i64 * cols + at.left as i64)
        }
        (None, None) => (Operand::Param(0), h * w, w, 0),
    };
    let in_place_slack = scratch.is_none() && bi > 1;
    // (channel block or channel, tap row, tap column, channel within the block) → A's index.
    let read = move |bvars: &[Expr], i: Expr, ch: Expr, th: Expr, tw: Expr, lane: Expr| {
        // The scratch holds one image; the input in place holds them all.
        let image_plane = match a_source {
            Operand::Scratch => ch,
            Operand::Param(_) => bv(bvars, 0) * in_blocks + ch,
        };
        // An edge tile's rows past the last position read the last one in place (their results
        // are never stored): no read past the input, and no scalar path for edge tiles.
        let i = if in_place_slack { i.min(Expr::int(oh * ow - 1)) } else { i };
        let (oy, ox) = (i.clone().floor_div(Expr::int(ow)), i % Expr::int(ow));
        (image_plane * plane + origin + (oy * sh + th * dh) * row_len + ox * sw + tw * dw) * bi + lane
    };
    let blocked_in = bi > 1;
    let (k, taps_h, taps_w) = if blocked_in { (cg / bi, kh * kw, bi) } else { (cg, kh, kw) };
    let border = task.halo.output.map(|b| b as i64);
    let (rows_out, cols_out) = (oh + border[0] + border[2], ow + border[1] + border[3]);
    let bordered = border != [0; 4];
    let out = if bo > 1 {
        OutLayout::ChannelBlocks {
            image_base: Box::new(move |bvars, _| bv(bvars, 0) * (o * rows_out * cols_out)),
            plane: rows_out * cols_out,
            block: bo,
            border: bordered.then_some(Bordered {
                valid_w: ow,
                row_w: cols_out,
                origin: border[0] * cols_out + border[1],
            }),
        }
    } else {
        OutLayout::Columns {
            col_base: Box::new(move |bvars, x| {
                (bv(bvars, 0) * o + bv(bvars, 1) * og + x[0].clone()) * (oh * ow)
            }),
        }
    };
    GemmProblem {
        name: format!("conv2d_{}x{}_o{}_k{}x{}_bych", c.h, c.w, c.o, c.kh, c.kw),
        m: oh * ow,
        n: og,
        k,
        kh: taps_h,
        kw: taps_w,
        kw_unrolled: blocked_in,
        lanes,
        batch: vec![("n", c.n as i64), ("g", c.groups as i64)],
        a_rows_slack: scratch.is_some() || in_place_slack,
        a_source,
        a_index: Box::new(move |bvars, x| {
            if blocked_in {
                // Groups are 1 (checked by the task): x[1] is the channel block itself.
                let (tap, lane) = (x[2].clone(), x[3].clone());
                let (th, tw) = (tap.clone().floor_div(Expr::int(kw)), tap % Expr::int(kw));
                read(bvars, x[0].clone(), x[1].clone(), th, tw, lane)
            } else {
                let ch = bv(bvars, 1) * cg + x[1].clone();
                read(bvars, x[0].clone(), ch, x[2].clone(), x[3].clone(), Expr::int(0))
            }
        }),
        a_constant_over: None,
        b_source: Operand::Param(1),
        b_index: Box::new(move |bvars, x| {
            let (ch, th, tw) = if blocked_in {
                let tap = x[1].clone();
                (x[0].clone() * bi + x[2].clone(), tap.clone().floor_div(Expr::int(kw)), tap % Expr::int(kw))
            } else {
                (x[0].clone(), x[1].clone(), x[2].clone())
            };
            (((bv(bvars, 1) * og + x[3].clone()) * cg + ch) * kh + th) * kw + tw
        }),
        // Weights depend on the group only.
        b_constant_over: Some(vec![1]),
        scratch: scratch.map(|(fill, _, _)| fill),
        out_param: params.len() - 1,
        out,
        out_border: bordered.then(|| -> BorderFill {
            let planes = c.n as i64 * o / bo;
            Box::new(move |b, y| {
                zero_border(
                    b,
                    y,
                    planes,
                    (rows_out, cols_out * bo),
                    (border[0], border[1] * bo),
                    (oh, ow * bo),
                )
            })
        }),
        epilogue: task.epilogue.clone(),
        bias: bias.map(|p| (p, BiasAxis::Col(Box::new(move |bvars, x| bv(bvars, 1) * og + x[0].clone())))),
        residual,
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotune_ir::{ChannelBlocks, EpilogueOp, IsaLevel};
    use rand::SeedableRng;

    /// The levels every space test runs at: the register budget and lanes differ between them.
    const LEVELS: [IsaLevel; 3] = [IsaLevel::Avx512, IsaLevel::Avx2, IsaLevel::Sse42];

    fn cpu(level: IsaLevel, threads: u32) -> CpuTarget {
        CpuTarget::generic(level, threads)
    }

    fn matmul(m: usize, n: usize, k: usize, threads: u32) -> GemmSpace {
        matmul_at(IsaLevel::Avx512, m, n, k, threads)
    }

    fn matmul_at(level: IsaLevel, m: usize, n: usize, k: usize, threads: u32) -> GemmSpace {
        GemmSpace::new(&Task::matmul(m, n, k), &cpu(level, threads)).expect("space")
    }

    fn conv_task(c: usize, h: usize, o: usize, k: usize, stride: usize, pad: usize, groups: usize) -> Task {
        Task::new(
            Op::Conv2d(Conv2dSpec {
                n: 1,
                c,
                h,
                w: h,
                o,
                kh: k,
                kw: k,
                stride: [stride; 2],
                pad: [pad; 4],
                dilation: [1, 1],
                groups,
            }),
            vec![EpilogueOp::Bias, EpilogueOp::Relu],
        )
    }

    /// Walks `n` sampled points (and the default) in draw order and asserts every decision's
    /// domain is non-empty at the point reached so far, and that sampling, decoding and mutation
    /// agree.
    fn assert_domains_non_empty(space: &GemmSpace, n: usize, seed: u64) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut traces: Vec<Trace> = (0..n).map(|_| space.sample(&mut rng)).collect();
        traces.push(space.default_trace());
        for t in &traces {
            let (mut s, mut shape) = space.default_schedule();
            for knob in Knob::draw_order() {
                let domain = space.domain(knob, &s, shape);
                assert!(!domain.is_empty(), "{} has no valid value after {:?}, {shape:?}", knob.name(), s);
                let v = t.get(knob.name()).expect("every decision in the trace");
                assert!(domain.contains(&v), "{}={v} not in {domain:?}: {}", knob.name(), t.display());
                GemmSpace::set(&mut s, &mut shape, knob, v);
            }
            let m = space.mutate(t, &mut rng);
            space.decode(&m).unwrap_or_else(|e| panic!("mutation of {}: {e}", t.display()));
        }
    }

    #[test]
    fn every_domain_is_non_empty_at_every_level() {
        let tasks = [
            Task::matmul(1024, 1024, 1024),
            Task::matmul(1, 1, 1),
            Task::matmul(127, 1, 255),
            Task::matmul(3, 1000, 2048),
            conv_task(64, 56, 64, 3, 1, 1, 1),
            conv_task(256, 14, 256, 3, 1, 1, 1),
            conv_task(3, 224, 64, 7, 2, 3, 1),
            conv_task(1024, 14, 2048, 1, 2, 0, 1),
            conv_task(8, 9, 16, 3, 2, 1, 2),
        ];
        for level in LEVELS {
            for threads in [1, 2] {
                for (i, task) in tasks.iter().enumerate() {
                    let space = GemmSpace::new(task, &cpu(level, threads)).expect("space");
                    assert_domains_non_empty(&space, 150, i as u64);
                }
            }
        }
    }

    #[test]
    fn decision_names_keep_their_trace_order() {
        // Trace keys in shipped logs hash these names in this order.
        let names: Vec<&str> = Knob::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
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
                "conv_layout",
                "prefetch_b"
            ]
        );
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
        let spaces = LEVELS.into_iter().flat_map(|level| {
            [matmul_at(level, 17, 33, 65, 2), GemmSpace::new(&conv, &cpu(level, 2)).expect("conv space")]
        });
        for s in spaces {
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
        for level in LEVELS {
            let registers = i64::from(level.vector_registers());
            for s in [
                matmul_at(level, 1024, 1024, 1024, 1),
                GemmSpace::new(&conv_task(64, 56, 64, 3, 1, 1, 1), &cpu(level, 1)).expect("conv"),
            ] {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
                for _ in 0..500 {
                    let (d, _) = s.decode(&s.sample(&mut rng)).expect("valid");
                    assert!(d.mr * d.nr_vecs + d.nr_vecs < registers, "{level}: {d:?}");
                }
                let (d, _) = s.decode(&s.default_trace()).expect("default");
                assert!(d.mr * d.nr_vecs + d.nr_vecs < registers, "{level} default: {d:?}");
            }
            // The widest tiles are reachable: 16 registers fit 14 rows of one vector, 32 fit 16.
            let s = matmul_at(level, 1024, 1024, 1024, 1);
            let (d, shape) = s.default_schedule();
            let rows = s.domain(Knob::Mr, &d, shape);
            assert_eq!(rows.last(), Some(&if registers >= 32 { 16 } else { 14 }), "{level}");
        }
    }

    #[test]
    fn default_tiles_follow_the_register_file() {
        let tile = |level| {
            let (d, _) = matmul_at(level, 1024, 1024, 1024, 1).default_schedule();
            (d.mr, d.nr_vecs)
        };
        assert_eq!(tile(IsaLevel::Avx512), (8, 2), "8×32 on 32 zmm");
        assert_eq!(tile(IsaLevel::Avx2), (6, 2), "6×16 on 16 ymm");
        assert_eq!(tile(IsaLevel::Sse42), (6, 2), "6×8 on 16 xmm");
    }

    #[test]
    fn domains_shrink_to_tiny_shapes() {
        let s = matmul(1, 1, 1, 1);
        let (d, ga) = s.default_schedule();
        assert_eq!(s.domain(Knob::Mr, &d, ga), vec![1]);
        assert_eq!(s.domain(Knob::Kc, &d, ga), vec![1]);
        assert!(s.size() > 1);
    }

    #[test]
    fn foreign_traces_are_rejected() {
        let s = matmul(8, 8, 8, 1);
        assert!(s.decode(&Trace::new("conv", vec![])).is_err());
        let mut t = s.default_trace();
        t.decisions[0].value = 3; // mr=3 is not a choice
        assert!(s.decode(&t).is_err());
    }

    #[test]
    fn default_layout_follows_the_conv() {
        let conv = |c: usize, kh: usize, stride: usize, pad: usize| {
            let spec = Conv2dSpec {
                n: 1,
                c,
                h: 28,
                w: 28,
                o: 64,
                kh,
                kw: kh,
                stride: [stride; 2],
                pad: [pad; 4],
                dilation: [1, 1],
                groups: 1,
            };
            GemmSpace::new(&Task::new(Op::Conv2d(spec), vec![]), &cpu(IsaLevel::Avx512, 2)).expect("space")
        };
        let layout = |s: GemmSpace| s.default_trace().get("conv_layout");
        assert_eq!(layout(conv(64, 3, 1, 1)), Some(1), "3×3: channels as columns");
        assert_eq!(layout(conv(64, 1, 2, 0)), Some(0), "strided 1×1: no taps to copy");
        assert_eq!(layout(conv(64, 1, 1, 0)), Some(0), "1×1 reads in place");
        assert_eq!(layout(conv(3, 7, 2, 3)), Some(0), "3-channel stem");
        let s = conv(64, 3, 1, 1);
        let (d, shape) = s.decode(&s.default_trace()).expect("default decodes");
        assert!(shape.channels_as_columns && d.pack_b == PackB::Prepacked && (d.mr, d.nr_vecs) == (6, 4));
        // 64 channels are one column block: the rows are cut for the two threads instead.
        let (m, n, _, _) = s.dims(shape);
        assert_eq!(ceil_div(n, d.nr_vecs * 16 * d.nc_tiles), 1);
        assert!(
            d.order == ORDER_ROWS_OUTER && d.parallel_loop == 0 && ceil_div(m, d.mr * d.mc_tiles) >= 4,
            "{d:?}"
        );
    }

    #[test]
    fn channel_blocked_convs_take_channels_as_columns_in_whole_vectors() {
        let spec = |c: usize, k: usize, pad: usize| Conv2dSpec {
            n: 1,
            c,
            h: 14,
            w: 14,
            o: 64,
            kh: k,
            kw: k,
            stride: [1, 1],
            pad: [pad; 4],
            dilation: [1, 1],
            groups: 1,
        };
        let blocked = |c, k, pad, input, output| {
            Task::new(Op::Conv2d(spec(c, k, pad)), vec![EpilogueOp::Bias])
                .with_layout(ChannelBlocks { input, output })
        };
        for level in LEVELS {
            let lanes = cpu(level, 1).vector_lanes as usize;
            for (c, k, pad, input) in [(64, 1, 0, 16), (64, 3, 1, 16), (3, 7, 3, 1), (64, 3, 1, 4)] {
                let space = GemmSpace::new(&blocked(c, k, pad, input, 16), &cpu(level, 1)).expect("space");
                assert_eq!(
                    space.domain(Knob::ConvLayout, &space.default_schedule().0, space.default_schedule().1),
                    [1]
                );
                let (d, shape) = space.decode(&space.default_trace()).expect("default decodes");
                assert!(shape.channels_as_columns && !d.out_via_grid, "{level:?} {d:?}");
                // The reduction counts channel blocks: its depth in channels is a plain conv's.
                let (_, _, k_blocks, taps) = space.dims(shape);
                assert_eq!((k_blocks * input as i64, taps), (c as i64, (k * k * input) as i64));
                if level == IsaLevel::Avx512 && input > 1 {
                    let depth = if k == 1 { 128 } else { 64 }.min(c as i64);
                    assert_eq!((d.mr, d.nr_vecs, d.kc * input as i64), (6, 4, depth));
                }
            }
            // An output block must hold whole vectors.
            let narrow = GemmSpace::new(&blocked(64, 1, 0, 16, lanes / 2), &cpu(level, 1));
            assert!(lanes / 2 <= 1 || narrow.is_err(), "{level:?}: a block of {} lanes", lanes / 2);
        }
    }

    #[test]
    fn default_tiles_waste_few_rows_of_a_small_output() {
        for (side, rows_per_tile) in [(7, 5), (14, 6), (56, 6), (2, 4)] {
            let task =
                conv_task(64, side, 64, 1, 1, 0, 1).with_layout(ChannelBlocks { input: 16, output: 16 });
            let space = GemmSpace::new(&task, &cpu(IsaLevel::Avx512, 1)).expect("space");
            let (d, _) = space.decode(&space.default_trace()).expect("default decodes");
            assert_eq!(d.mr, rows_per_tile, "{side}×{side}");
        }
    }

    #[test]
    fn default_reads_the_larger_operand_once_per_thread() {
        // ResNet-50's 2048→512 1×1 conv at 7×7: 1 Mi weights (rows) against 100 Ki input columns.
        let task = conv_task(2048, 7, 512, 1, 1, 0, 1);
        for level in LEVELS {
            for threads in [1, 2, 4] {
                let s = GemmSpace::new(&task, &cpu(level, threads)).expect("space");
                let (d, shape) = s.decode(&s.default_trace()).expect("default decodes");
                let (m, n, _, _) = s.dims(shape);
                assert!(m > n && !shape.channels_as_columns);
                let lanes = i64::from(cpu(level, threads).vector_lanes);
                assert_eq!(ceil_div(n, d.nr_vecs * lanes * d.nc_tiles), 1, "{level:?} t{threads}: {d:?}");
                if threads > 1 {
                    let row_blocks = ceil_div(m, d.mr * d.mc_tiles);
                    assert!(d.order == ORDER_ROWS_OUTER && row_blocks >= 2 * i64::from(threads), "{d:?}");
                }
            }
        }
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
