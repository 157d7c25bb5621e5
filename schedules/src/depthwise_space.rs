//! The depthwise conv space on CPUs (one input channel per group: MobileNet's 3×3 layers, with or
//! without a channel multiplier): a direct sliding-window sketch, not a GEMM.
//!
//! As a GEMM a depthwise conv has one row per group, so a B vector feeds a single FMA and the
//! kernel is load-bound. Here each (image, channel) plane is copied into a small zero-padded,
//! phase-split scratch (L1/L2-resident, so every tap reads in bounds and unit-stride), and a block
//! of `rows` output rows is computed a vector of output columns at a time: with the taps and the
//! rows unrolled, an input vector that feeds several output rows (ky = 0, 1, 2 of three rows) is
//! loaded once, and the weights are broadcast once per block. The last column vector and the last
//! row block are shifted back to end at the edge (overlapping their neighbours, whose values they
//! store again) instead of taking a scalar path; outputs narrower than a vector use narrower
//! vectors. Planes run in parallel.

use crate::epilogue;
use crate::flat::{FlatKnob, FlatSketch};
use crate::padded::{tap_offset, PhaseSplit};
use crate::space::{ScheduleError, SpaceGenerator};
use autotune_ir::{
    BufScope, Conv2dSpec, CpuTarget, Expr, LoopKind, NestBuilder, Op, Program, Stmt, Task, Trace,
};
use rand::RngCore;

pub const SKETCH: &str = "depthwise_rows";
const VERSION: &str = "depthwise-cpu-v1";

/// The decisions of `depthwise_rows`, in trace order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Knob {
    Rows,
    UnrollTaps,
    ColumnsOuter,
}

impl Knob {
    const ALL: [Knob; 3] = [Knob::Rows, Knob::UnrollTaps, Knob::ColumnsOuter];
}

impl FlatKnob for Knob {
    fn name(self) -> &'static str {
        match self {
            Knob::Rows => "rows",
            Knob::UnrollTaps => "unroll_taps",
            Knob::ColumnsOuter => "columns_outer",
        }
    }
}
const ROWS: &[i64] = &[1, 2, 3, 4, 6, 8];
/// Kernels with more taps than this keep their tap loops (code size, compile time).
const MAX_UNROLLED_TAPS: i64 = 25;

#[derive(Debug, Clone)]
pub struct DepthwiseSpace {
    task: Task,
    spec: Conv2dSpec,
    lanes: i64,
    /// Vector registers: a block's row accumulators, an input vector and a weight broadcast.
    registers: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DepthwiseSchedule {
    /// Output rows per block (register tile: `rows` vectors of accumulators).
    rows: i64,
    unroll_taps: bool,
    /// Column vectors outside the row blocks (else row blocks outside the column vectors).
    columns_outer: bool,
}

impl DepthwiseSpace {
    /// A space for depthwise convs: `c_per_group == 1` with more than one group.
    pub fn new(task: &Task, cpu: &CpuTarget) -> Result<DepthwiseSpace, ScheduleError> {
        match &task.op {
            Op::Conv2d(spec)
                if Self::applies_to(spec) && task.layout.is_plain() && task.validate().is_ok() =>
            {
                Ok(DepthwiseSpace {
                    task: task.clone(),
                    spec: *spec,
                    lanes: i64::from(cpu.vector_lanes.max(1)),
                    registers: i64::from(cpu.vector_registers()),
                })
            }
            _ => Err(ScheduleError::Unsupported { task: task.description(), target: "cpu".into() }),
        }
    }

    /// Whether a conv is depthwise (one input channel per group).
    pub fn applies_to(spec: &Conv2dSpec) -> bool {
        spec.c_per_group() == 1 && spec.groups > 1
    }

    fn domain(&self, knob: Knob) -> Vec<i64> {
        match knob {
            Knob::Rows => {
                let oh = self.spec.out_h() as i64;
                let mut v: Vec<i64> =
                    ROWS.iter().filter(|&&r| r + 2 <= self.registers).map(|&r| r.min(oh)).collect();
                v.dedup();
                v
            }
            Knob::UnrollTaps if ((self.spec.kh * self.spec.kw) as i64) <= MAX_UNROLLED_TAPS => vec![0, 1],
            Knob::UnrollTaps => vec![0],
            Knob::ColumnsOuter => vec![0, 1],
        }
    }

    fn flat(&self) -> FlatSketch<Knob, impl Fn(Knob) -> Vec<i64> + '_> {
        FlatSketch {
            sketch: SKETCH,
            version: VERSION,
            knobs: &Knob::ALL,
            domain: move |knob| self.domain(knob),
        }
    }

    fn decode(&self, trace: &Trace) -> Result<DepthwiseSchedule, ScheduleError> {
        let v = self.flat().decode(trace)?;
        Ok(DepthwiseSchedule { rows: v[0], unroll_taps: v[1] != 0, columns_outer: v[2] != 0 })
    }

    fn lower_schedule(&self, s: DepthwiseSchedule) -> Program {
        let c = &self.spec;
        let (h, w, oh, ow) = (c.h as i64, c.w as i64, c.out_h() as i64, c.out_w() as i64);
        let (kh, kw) = (c.kh as i64, c.kw as i64);
        let (sh, sw) = (c.stride[0] as i64, c.stride[1] as i64);
        let (dh, dw) = (c.dilation[0] as i64, c.dilation[1] as i64);
        let (channels, og, o_total) = (c.c as i64, c.o_per_group() as i64, c.o as i64);
        // Grid positions a tap may read: the output extent plus the taps' reach, per phase.
        let hq = oh + ((kh - 1) * dh) / sh;
        let wq = ow + ((kw - 1) * dw) / sw;
        let plane = hq * wq;
        let lanes = self.lanes.min(ow);
        let rows = s.rows.min(oh);

        let mut b = NestBuilder::new();
        let names: Vec<&str> = self.task.inputs().iter().map(|t| t.name).collect();
        let x = b.param("X", self.task.inputs()[0].len());
        let weights = b.param("W", self.task.inputs()[1].len());
        let extra: Vec<_> = self.task.inputs()[2..].iter().map(|t| b.param(t.name, t.len())).collect();
        let y = b.param("Y", self.task.outputs()[0].len());
        let bias = names.iter().position(|n| *n == "bias").map(|i| extra[i - 2]);
        let residual = names.iter().position(|n| *n == "residual").map(|i| extra[i - 2]);
        let xp = b.buffer("X_padded", (sh * sw * plane) as usize, BufScope::Heap);
        let acc = b.buffer("acc", (rows * lanes) as usize, BufScope::Register);
        let (p, j, rb, v) = (b.var("plane"), b.var("j"), b.var("rb"), b.var("v"));
        let (r, lane, ky, kx) = (b.var("r"), b.var("lane"), b.var("ky"), b.var("kx"));
        let (image, group) =
            (Expr::var(p).floor_div(Expr::int(channels)), Expr::var(p) % Expr::int(channels));

        let split = PhaseSplit {
            channels: 1,
            h,
            w,
            stride: (sh, sw),
            pad: (c.pad[0] as i64, c.pad[1] as i64),
            grid: (hq, wq),
            taps: (kh, kw),
            dilation: (dh, dw),
            lanes: self.lanes,
        };
        let fill = split.fill(&mut b, x, &|_| Expr::var(p) * (h * w), xp, 0.0, LoopKind::Serial);

        // The block's first row and column, shifted back at the edges (overlapping, never past).
        let oy0 = (Expr::var(rb) * rows).min(Expr::int(oh - rows));
        let ox0 = (Expr::var(v) * lanes).min(Expr::int(ow - lanes));
        let o = group * og + Expr::var(j);
        let (phy, dy) = tap_offset(Expr::var(ky), dh, sh);
        let (phx, dx) = tap_offset(Expr::var(kx), dw, sw);
        let input_at = (phy * sw + phx) * plane
            + (oy0.clone() + Expr::var(r) + dy) * wq
            + ox0.clone()
            + dx
            + Expr::var(lane);
        let weight = Expr::load(weights, (o.clone() * kh + Expr::var(ky)) * kw + Expr::var(kx));
        let slot = Expr::var(r) * lanes + Expr::var(lane);
        let per_row = |body: Vec<Stmt>| {
            Stmt::for_loop(
                r,
                Expr::int(0),
                Expr::int(rows),
                LoopKind::Unrolled,
                vec![Stmt::for_loop(lane, Expr::int(0), Expr::int(lanes), LoopKind::Vectorized, body)],
            )
        };
        let tap_kind = if s.unroll_taps { LoopKind::Unrolled } else { LoopKind::Serial };
        let update = Stmt::for_loop(
            ky,
            Expr::int(0),
            Expr::int(kh),
            tap_kind,
            vec![Stmt::for_loop(
                kx,
                Expr::int(0),
                Expr::int(kw),
                tap_kind,
                vec![per_row(vec![Stmt::store(
                    acc,
                    slot.clone(),
                    Expr::fma(weight, Expr::load(xp, input_at), Expr::load(acc, slot.clone())),
                )])],
            )],
        );
        let out_at = ((image * o_total + o.clone()) * oh + oy0 + Expr::var(r)) * ow + ox0 + Expr::var(lane);
        let value = epilogue::apply(
            &self.task.epilogue,
            Expr::load(acc, slot.clone()),
            bias.map(|bias| Expr::load(bias, o.clone())),
            residual.map(|res| Expr::load(res, out_at.clone())),
        );
        let block = vec![Stmt::Allocate {
            buf: acc,
            body: vec![
                per_row(vec![Stmt::store(acc, slot.clone(), Expr::Float(0.0))]),
                update,
                per_row(vec![Stmt::store(y, out_at, value)]),
            ],
        }];
        let (row_blocks, col_vectors) = ((oh + rows - 1) / rows, (ow + lanes - 1) / lanes);
        let loop_over =
            |var, n, body| Stmt::for_loop(var, Expr::int(0), Expr::int(n), LoopKind::Serial, body);
        let tiles = if s.columns_outer {
            loop_over(v, col_vectors, vec![loop_over(rb, row_blocks, block)])
        } else {
            loop_over(rb, row_blocks, vec![loop_over(v, col_vectors, block)])
        };
        let per_output = loop_over(j, og, vec![tiles]);
        let per_plane = vec![Stmt::Allocate { buf: xp, body: [fill, vec![per_output]].concat() }];
        let planes =
            Stmt::for_loop(p, Expr::int(0), Expr::int((c.n * c.c) as i64), LoopKind::Parallel, per_plane);
        let name = format!("dwconv_{}x{}_c{}_k{}x{}", c.h, c.w, c.c, c.kh, c.kw);
        b.finish(&name, vec![planes]).into()
    }
}

impl SpaceGenerator for DepthwiseSpace {
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
        // Four rows a block (three taps' rows shared between them), taps unrolled where allowed.
        let rows = *self.domain(Knob::Rows).iter().find(|&&r| r >= 4).unwrap_or(&1);
        let unroll = *self.domain(Knob::UnrollTaps).last().unwrap_or(&0);
        self.flat().trace(&[rows.min(self.spec.out_h() as i64), unroll, 0])
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
    use rand::SeedableRng;

    fn avx512() -> CpuTarget {
        CpuTarget::generic(IsaLevel::Avx512, 1)
    }

    #[test]
    fn every_level_has_valid_points() {
        for level in [IsaLevel::Avx512, IsaLevel::Avx2, IsaLevel::Sse42] {
            for task in [depthwise(112, 112, 1, 1), depthwise(3, 40, 2, 2), depthwise(7, 5, 1, 2)] {
                let space = DepthwiseSpace::new(&task, &CpuTarget::generic(level, 2)).expect("space");
                space.flat().assert_consistent(&space, &format!("{level} {}", task.description()), 20);
            }
        }
    }

    fn depthwise(h: usize, w: usize, multiplier: usize, stride: usize) -> Task {
        Task::new(
            Op::Conv2d(Conv2dSpec {
                n: 1,
                c: 8,
                h,
                w,
                o: 8 * multiplier,
                kh: 3,
                kw: 3,
                stride: [stride; 2],
                pad: [1; 4],
                dilation: [1, 1],
                groups: 8,
            }),
            vec![],
        )
    }

    #[test]
    fn only_depthwise_convs_get_this_space() {
        assert!(DepthwiseSpace::new(&depthwise(9, 9, 1, 1), &avx512()).is_ok());
        assert!(DepthwiseSpace::new(&Task::matmul(4, 4, 4), &avx512()).is_err());
        let grouped = Conv2dSpec {
            c: 16,
            ..match depthwise(9, 9, 1, 1).op {
                Op::Conv2d(c) => c,
                _ => unreachable!(),
            }
        };
        assert!(!DepthwiseSpace::applies_to(&grouped), "two input channels per group is a GEMM");
    }

    #[test]
    fn samples_and_mutations_are_valid_and_rows_shrink_to_the_output() {
        let space = DepthwiseSpace::new(&depthwise(3, 40, 2, 2), &avx512()).expect("space");
        assert_eq!(space.domain(Knob::Rows), vec![1, 2]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let t = space.sample(&mut rng);
            space.decode(&t).expect("sampled");
            space.decode(&space.mutate(&t, &mut rng)).expect("mutated");
        }
        space.decode(&space.default_trace()).expect("default");
        assert_eq!(space.size(), 2 * 2 * 2);
    }
}
