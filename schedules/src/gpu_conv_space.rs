//! The conv space on CUDA GPUs (every conv but depthwise, which `gpu_depthwise.rs` serves): an
//! implicit GEMM per group through the tiled GEMM nest (`gpu_gemm.rs`), sketch
//! `gpu_conv_implicit_gemm`.
//!
//! Per group, `C[oc, col] = Σ_k W[oc, k] · X̂[k, col]` with M = output channels of the group,
//! N = N·OH·OW (images folded into the columns, so small late-layer images still fill a tile),
//! K = C/groups·KH·KW. That is the `M = N·OH·OW, N = OC` GEMM transposed: in NCHW the output and
//! the input are contiguous along positions, so with positions as columns the tile loads of the
//! input and the stores of the output are coalesced across a warp's threads (with positions as
//! rows they would be strided by OH·OW), and the weights are a plain row-major `OC × K` matrix.
//! `X̂` (im2col) is never built: the cooperative shared-memory loads of B gather it on the fly,
//! zero in the padding and past the edges. The decisions are the GEMM sketch's, with the load
//! width split by operand: weights (`vec_w`: any K divisible by it) and input (`vec_x`: only a
//! pointwise conv, 1×1 stride 1 unpadded, has contiguous columns).

use crate::gpu_gemm::{self, GpuGemmProblem, GpuGemmSchedule, Operand, OutputMap};
use crate::gpu_gemm_space::{
    tiled_resources, tiled_structural, BK, BLOCK_TILES, CLASSIC_SGEMM, SMALLEST_TILE, THREAD_TILES, VEC,
};
use crate::gpu_space::{useful_tile, GpuKnob, GpuResources, GpuSketch, GpuSpace};
use crate::space::ScheduleError;
use crate::DepthwiseSpace;
use autotune_ir::{CudaTarget, Op, Program, Task};

pub const SKETCH: &str = "gpu_conv_implicit_gemm";
const VERSION: &str = "conv-cuda-v1";

/// The decisions of `gpu_conv_implicit_gemm`, in trace (and draw) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    Bm,
    Bn,
    Tm,
    Tn,
    Bk,
    VecW,
    VecX,
    DoubleBuffer,
    UnrollK,
}

impl GpuKnob<GpuGemmSchedule> for Knob {
    fn name(self) -> &'static str {
        match self {
            Knob::Bm => "bm",
            Knob::Bn => "bn",
            Knob::Tm => "tm",
            Knob::Tn => "tn",
            Knob::Bk => "bk",
            Knob::VecW => "vec_w",
            Knob::VecX => "vec_x",
            Knob::DoubleBuffer => "double_buffer",
            Knob::UnrollK => "unroll_k",
        }
    }

    fn values(self) -> &'static [i64] {
        match self {
            Knob::Bm | Knob::Bn => BLOCK_TILES,
            Knob::Tm | Knob::Tn => THREAD_TILES,
            Knob::Bk => BK,
            Knob::VecW | Knob::VecX => VEC,
            Knob::DoubleBuffer | Knob::UnrollK => &[0, 1],
        }
    }

    fn get(self, s: &GpuGemmSchedule) -> i64 {
        match self {
            Knob::Bm => s.bm,
            Knob::Bn => s.bn,
            Knob::Tm => s.tm,
            Knob::Tn => s.tn,
            Knob::Bk => s.bk,
            Knob::VecW => s.vec_a,
            Knob::VecX => s.vec_b,
            Knob::DoubleBuffer => i64::from(s.double_buffer),
            Knob::UnrollK => i64::from(s.unroll_k),
        }
    }

    fn set(self, s: &mut GpuGemmSchedule, v: i64) {
        match self {
            Knob::Bm => s.bm = v,
            Knob::Bn => s.bn = v,
            Knob::Tm => s.tm = v,
            Knob::Tn => s.tn = v,
            Knob::Bk => s.bk = v,
            Knob::VecW => s.vec_a = v,
            Knob::VecX => s.vec_b = v,
            Knob::DoubleBuffer => s.double_buffer = v != 0,
            Knob::UnrollK => s.unroll_k = v != 0,
        }
    }
}

/// The sketch `gpu_conv_implicit_gemm` on one conv.
#[derive(Debug, Clone)]
pub struct ConvSketch {
    problem: GpuGemmProblem,
}

impl GpuSketch for ConvSketch {
    type Schedule = GpuGemmSchedule;
    type Knob = Knob;
    const SKETCH: &'static str = SKETCH;
    const VERSION: &'static str = VERSION;
    const KNOBS: &'static [Knob] = &[
        Knob::Bm,
        Knob::Bn,
        Knob::Tm,
        Knob::Tn,
        Knob::Bk,
        Knob::VecW,
        Knob::VecX,
        Knob::DoubleBuffer,
        Knob::UnrollK,
    ];
    const SMALLEST: GpuGemmSchedule = SMALLEST_TILE;

    /// The GEMM's rules; whole warps (a block of fewer threads than a warp leaves lanes idle,
    /// and each of its threads gathers a large share of the tiles: ptxas spilled at 255
    /// registers for 16 threads gathering 16 elements each); and thread tiles no taller or
    /// wider than the matrix rounded to a power of two (a grouped conv's few output channels
    /// per group made the default an 8-row thread tile over 4 rows).
    fn structural(&self, s: &GpuGemmSchedule, gpu: &CudaTarget) -> bool {
        let p = &self.problem;
        tiled_structural(p, s)
            && s.n_threads() % i64::from(gpu.warp_size.max(1)) == 0
            && useful_tile(s.tm, THREAD_TILES[0], p.m)
            && useful_tile(s.tn, THREAD_TILES[0], p.n)
    }

    fn resources(&self, s: &GpuGemmSchedule, gpu: &CudaTarget) -> GpuResources {
        tiled_resources(&self.problem, s, gpu)
    }

    fn preferred(&self) -> GpuGemmSchedule {
        CLASSIC_SGEMM
    }

    fn lower(&self, s: &GpuGemmSchedule) -> Program {
        gpu_gemm::lower(&self.problem, s).into()
    }
}

/// The implicit-GEMM conv space on a [`CudaTarget`].
pub type GpuConvSpace = GpuSpace<ConvSketch>;

impl GpuSpace<ConvSketch> {
    /// A space for every valid conv but the depthwise ones ([`DepthwiseSpace::applies_to`]).
    pub fn new(task: &Task, gpu: &CudaTarget) -> Result<GpuConvSpace, ScheduleError> {
        let unsupported =
            || ScheduleError::Unsupported { task: task.description(), target: gpu.name.clone() };
        let conv = match &task.op {
            Op::Conv2d(c)
                if task.validate().is_ok() && task.layout.is_plain() && !DepthwiseSpace::applies_to(c) =>
            {
                *c
            }
            _ => return Err(unsupported()),
        };
        let (m, k) = (conv.o_per_group() as i64, (conv.c_per_group() * conv.kh * conv.kw) as i64);
        let positions = (conv.out_h() * conv.out_w()) as i64;
        let n = conv.n as i64 * positions;
        // The weights OIHW are `O × K` row-major; group g's rows start at g·(O/groups)·K.
        let weights = Operand::Dense { param: 1, rows: m, cols: k, batch_stride: m * k, k_along_cols: true };
        let problem = GpuGemmProblem::new(
            task,
            format!("gpu_conv_g{}_m{m}_n{n}_k{k}", conv.groups),
            (conv.groups as i64, m, n, k),
            (weights, Operand::Im2col { param: 0, conv }),
            OutputMap::ConvNchw { channels: conv.o as i64, per_group: m, positions },
        );
        GpuSpace::with_sketch(task, gpu, ConvSketch { problem })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu_space::assert_space_consistent;
    use crate::SpaceGenerator;
    use autotune_ir::{Conv2dSpec, EpilogueOp, Trace};

    pub(crate) fn conv(
        (n, c, hw, o): (usize, usize, usize, usize),
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> Conv2dSpec {
        Conv2dSpec {
            n,
            c,
            h: hw,
            w: hw,
            o,
            kh: k,
            kw: k,
            stride: [stride; 2],
            pad: [pad; 4],
            dilation: [1, 1],
            groups,
        }
    }

    fn tasks() -> Vec<Task> {
        let fused = vec![EpilogueOp::Bias, EpilogueOp::Add, EpilogueOp::Relu];
        vec![
            Task::new(Op::Conv2d(conv((1, 64, 56, 256), 1, 1, 0, 1)), vec![EpilogueOp::Bias]),
            Task::new(Op::Conv2d(conv((2, 32, 14, 32), 3, 1, 1, 1)), fused),
            Task::new(Op::Conv2d(conv((1, 64, 28, 128), 3, 2, 1, 1)), vec![]),
            Task::new(Op::Conv2d(conv((1, 3, 224, 64), 7, 2, 3, 1)), vec![EpilogueOp::Relu]),
            Task::new(Op::Conv2d(conv((1, 32, 9, 64), 3, 1, 1, 4)), vec![]),
            Task::new(Op::Conv2d(Conv2dSpec { dilation: [2, 3], ..conv((1, 5, 11, 7), 3, 1, 2, 1) }), vec![]),
        ]
    }

    #[test]
    fn sampled_points_verify_round_trip_and_mutate_within_the_space() {
        for gpu in [CudaTarget::a100(), CudaTarget::h100()] {
            for (i, task) in tasks().iter().enumerate() {
                let space = GpuConvSpace::new(task, &gpu).expect("space");
                assert_space_consistent(&space, i as u64, 12);
            }
        }
    }

    #[test]
    fn only_a_pointwise_conv_loads_its_input_in_vectors() {
        let gpu = CudaTarget::h100();
        let domain_of_vec_x = |task: &Task| {
            let space = GpuConvSpace::new(task, &gpu).expect("space");
            space.domain(&space.default_schedule(), 6)
        };
        let [pointwise, padded, ..] = &tasks()[..] else { panic!("tasks") };
        assert_eq!(domain_of_vec_x(pointwise), vec![1, 2, 4]);
        assert_eq!(domain_of_vec_x(padded), vec![1]);
        // 56·56 positions divide by 4, the weights' K = 64 too: the default loads float4s.
        let space = GpuConvSpace::new(pointwise, &gpu).expect("space");
        let t: Trace = space.default_trace();
        assert_eq!((t.get("vec_w"), t.get("vec_x")), (Some(4), Some(4)), "{}", t.display());
    }

    #[test]
    fn thread_tiles_stay_within_a_groups_channels() {
        // 32 groups of 4 output channels: no thread tile taller than 4 rows.
        let grouped = Task::new(Op::Conv2d(conv((1, 128, 28, 128), 3, 1, 1, 32)), vec![]);
        let space = GpuConvSpace::new(&grouped, &CudaTarget::h100()).expect("space");
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
        for t in (0..40).map(|_| space.sample(&mut rng)).chain([space.default_trace()]) {
            assert!(t.get("tm").is_some_and(|tm| tm <= 4), "{}", t.display());
        }
    }

    #[test]
    fn depthwise_convs_are_not_this_space() {
        let depthwise = Task::new(Op::Conv2d(conv((1, 32, 14, 32), 3, 1, 1, 32)), vec![]);
        assert!(GpuConvSpace::new(&depthwise, &CudaTarget::h100()).is_err());
    }

    #[test]
    fn decision_names_keep_their_trace_order() {
        let names: Vec<&str> = ConvSketch::KNOBS.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["bm", "bn", "tm", "tn", "bk", "vec_w", "vec_x", "double_buffer", "unroll_k"]);
    }
}
