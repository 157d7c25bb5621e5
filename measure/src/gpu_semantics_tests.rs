//! Issue 18 (6c): the semantics of every GPU schedule, checked on the CPU. Points of the GPU
//! spaces — GEMM, implicit-GEMM conv, depthwise conv, pooling — (for the A100 and H100 presets:
//! their limits shape the spaces) are lowered for the host
//! by `gpu_nest_for_host` — blocks and threads made serial loops, thread loops split at every
//! barrier — JIT-compiled by the CPU path and compared with `ir::reference`. Only launch and
//! timing need a GPU.

use crate::ReferenceData;
use autotune_codegen::{gpu_nest_for_host, host_cpu_target, CpuBuilder, HostRuntime, OperandBuffer};
use autotune_ir::{
    compare, BatchMatmulSpec, Conv2dSpec, CudaTarget, EpilogueOp, Op, Pool2dSpec, PoolKind, Scalar, Target,
    Task, Trace,
};
use autotune_schedules::space_for;
use proptest::prelude::*;
use rand::SeedableRng;

/// Runs `trace` of `task`'s GPU space on the host; the error names the point and the mismatch.
fn run_on_host(task: &Task, gpu: &CudaTarget, trace: &Trace, builder: &CpuBuilder) -> Result<(), String> {
    let space = space_for(task, &Target::Cuda(gpu.clone())).map_err(|e| e.to_string())?;
    let program = space.lower(trace).map_err(|e| e.to_string())?;
    let host = gpu_nest_for_host(&program.kernel).map_err(|e| e.to_string())?;
    let kernel = builder.build(&host).map_err(|e| e.to_string())?;
    let data = ReferenceData::new(task, 7);
    let runtime = HostRuntime::new(1).map_err(|e| e.to_string())?;
    let mut inputs: Vec<OperandBuffer> = data.inputs.iter().map(|i| OperandBuffer::from_slice(i)).collect();
    let mut outputs: Vec<Vec<f32>> = data.expected.iter().map(|e| vec![f32::NAN; e.len()]).collect();
    let mut buffers: Vec<&mut [f32]> =
        inputs.iter_mut().map(|b| &mut b[..]).chain(outputs.iter_mut().map(|o| &mut o[..])).collect();
    kernel.run(&runtime, &mut buffers).map_err(|e| e.to_string())?;
    for (actual, expected) in outputs.iter().zip(&data.expected) {
        compare(actual, expected, data.tolerance)
            .map_err(|m| format!("{} on {}: {m}", trace.display(), task.description()))?;
    }
    Ok(())
}

/// `n` sampled points and the default of `task`'s space on both presets.
fn assert_points_match_reference(task: &Task, seed: u64, n: usize) {
    let builder = CpuBuilder::new(&host_cpu_target(1).expect("host")).expect("builder");
    for gpu in [CudaTarget::a100(), CudaTarget::h100()] {
        let space = space_for(task, &Target::Cuda(gpu.clone())).expect("space");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut traces: Vec<Trace> = (0..n).map(|_| space.sample(&mut rng)).collect();
        traces.push(space.default_trace());
        for trace in &traces {
            if let Err(e) = run_on_host(task, &gpu, trace, &builder) {
                panic!("{} on {}: {e}", trace.display(), gpu.name);
            }
        }
    }
}

fn bmm(
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    trans: (bool, bool),
    broadcast: (bool, bool),
) -> BatchMatmulSpec {
    BatchMatmulSpec {
        batch,
        m,
        n,
        k,
        trans_a: trans.0,
        trans_b: trans.1,
        a_broadcast: broadcast.0,
        b_broadcast: broadcast.1,
        b_constant: false,
    }
}

#[test]
fn named_gpu_gemm_shapes_match_the_reference() {
    // Ragged edges on every side (17 × 33 × 65), tiny, skinny, exact tiles, and a dense layer
    // with transposed weights, bias and relu.
    let dense = Task::new(
        Op::BatchMatmul(bmm(1, 3, 100, 64, (false, true), (true, true))),
        vec![EpilogueOp::Bias, EpilogueOp::Relu],
    );
    for (i, task) in [
        Task::matmul(17, 33, 65),
        Task::matmul(1, 1, 1),
        Task::matmul(64, 64, 64),
        Task::matmul(5, 130, 9),
        dense,
    ]
    .iter()
    .enumerate()
    {
        assert_points_match_reference(task, 40 + i as u64, 4);
    }
}

fn epilogue_strategy() -> impl Strategy<Value = Vec<EpilogueOp>> {
    (any::<bool>(), any::<bool>(), any::<bool>(), 0usize..4).prop_map(|(scale, bias, add, act)| {
        let mut e = Vec::new();
        if scale {
            e.push(EpilogueOp::Scale { alpha: Scalar(0.5) });
        }
        if bias {
            e.push(EpilogueOp::Bias);
        }
        if add {
            e.push(EpilogueOp::Add);
        }
        match act {
            1 => e.push(EpilogueOp::Relu),
            2 => e.push(EpilogueOp::LeakyRelu { alpha: Scalar(0.1) }),
            3 => e.push(EpilogueOp::Sigmoid),
            _ => {}
        }
        e
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]
    /// Every point computes the reference: random batched GEMMs (either operand transposed or
    /// shared by the batch; sizes that are and are not multiples of the vectors) with random
    /// epilogues.
    #[test]
    fn random_gpu_gemm_points_match_the_reference(
        batch in 1usize..3, m in 1usize..80, n in 1usize..80, k in 1usize..50,
        trans in (any::<bool>(), any::<bool>()), broadcast in (any::<bool>(), any::<bool>()),
        epilogue in epilogue_strategy(), seed in any::<u64>(),
    ) {
        let task = Task::new(Op::BatchMatmul(bmm(batch, m, n, k, trans, broadcast)), epilogue);
        prop_assume!(task.validate().is_ok());
        assert_points_match_reference(&task, seed, 2);
    }
}

fn conv(
    (n, c, h, w, o): (usize, usize, usize, usize, usize),
    (kh, kw): (usize, usize),
    stride: [usize; 2],
    pad: [usize; 4],
    dilation: [usize; 2],
    groups: usize,
) -> Conv2dSpec {
    Conv2dSpec { n, c, h, w, o, kh, kw, stride, pad, dilation, groups }
}

fn pool(
    kind: PoolKind,
    (n, c, h, w): (usize, usize, usize, usize),
    k: usize,
    stride: usize,
    pad: usize,
) -> Pool2dSpec {
    Pool2dSpec {
        kind,
        n,
        c,
        h,
        w,
        kh: k,
        kw: k,
        stride: [stride; 2],
        pad: [pad; 4],
        dilation: [1, 1],
        ceil_mode: false,
        count_include_pad: false,
    }
}

#[test]
fn named_gpu_conv_and_pool_shapes_match_the_reference() {
    // The layer kinds of the offline compile check, shrunk: 1×1 (pointwise: vector loads of the
    // input), 3×3 stride 1 and 2 padded, 7×7 stride 2 padded, grouped, depthwise 3×3 with a
    // channel multiplier, and max / average / global pooling.
    let bias_relu = vec![EpilogueOp::Bias, EpilogueOp::Relu];
    let tasks = [
        Task::new(
            Op::Conv2d(conv((2, 8, 6, 6, 12), (1, 1), [1, 1], [0; 4], [1, 1], 1)),
            vec![EpilogueOp::Add],
        ),
        Task::new(Op::Conv2d(conv((1, 5, 9, 7, 6), (3, 3), [1, 1], [1; 4], [1, 1], 1)), bias_relu.clone()),
        Task::new(Op::Conv2d(conv((1, 4, 11, 11, 8), (3, 3), [2, 2], [1; 4], [1, 1], 1)), bias_relu.clone()),
        Task::new(Op::Conv2d(conv((1, 3, 17, 17, 4), (7, 7), [2, 2], [3; 4], [1, 1], 1)), vec![]),
        Task::new(
            Op::Conv2d(conv((1, 8, 7, 7, 8), (3, 3), [1, 1], [1; 4], [1, 1], 4)),
            vec![EpilogueOp::Relu],
        ),
        Task::new(Op::Conv2d(conv((1, 6, 10, 9, 12), (3, 3), [1, 1], [1; 4], [1, 1], 6)), bias_relu),
        Task::new(Op::Pool2d(pool(PoolKind::Max, (1, 3, 13, 13), 3, 2, 1)), vec![]),
        Task::new(
            Op::Pool2d(Pool2dSpec { count_include_pad: true, ..pool(PoolKind::Avg, (2, 3, 9, 9), 3, 2, 1) }),
            vec![],
        ),
        Task::new(Op::Pool2d(pool(PoolKind::Avg, (1, 5, 7, 7), 7, 1, 0)), vec![]),
    ];
    for (i, task) in tasks.iter().enumerate() {
        assert_points_match_reference(task, 60 + i as u64, 2);
    }
}

fn conv_epilogue_strategy() -> impl Strategy<Value = Vec<EpilogueOp>> {
    // Conv tasks carry no Scale; the rest as for GEMMs.
    epilogue_strategy()
        .prop_map(|e| e.into_iter().filter(|s| !matches!(s, EpilogueOp::Scale { .. })).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// Every implicit-GEMM conv point computes the reference: random (grouped) convs with
    /// strides, asymmetric paddings and dilations, and random epilogues.
    #[test]
    fn random_gpu_conv_points_match_the_reference(
        n in 1usize..3, cg in 1usize..5, og in 1usize..7, groups in 1usize..3, h in 1usize..10, w in 1usize..10,
        (kh, kw) in (1usize..4, 1usize..4), stride in (1usize..3, 1usize..3),
        pad in (0usize..3, 0usize..3, 0usize..3, 0usize..3), dilation in (1usize..3, 1usize..3),
        epilogue in conv_epilogue_strategy(), seed in any::<u64>(),
    ) {
        let spec = conv(
            (n, cg * groups, h, w, og * groups),
            (kh, kw),
            [stride.0, stride.1],
            [pad.0, pad.1, pad.2, pad.3],
            [dilation.0, dilation.1],
            groups,
        );
        // One input channel per group is the depthwise space's.
        prop_assume!(cg > 1 || groups == 1);
        let task = Task::new(Op::Conv2d(spec), epilogue);
        prop_assume!(task.validate().is_ok());
        assert_points_match_reference(&task, seed, 2);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    /// Every depthwise point computes the reference: random channel counts and multipliers,
    /// kernels, strides, paddings, dilations and epilogues.
    #[test]
    fn random_gpu_depthwise_points_match_the_reference(
        n in 1usize..3, c in 2usize..6, multiplier in 1usize..3, h in 1usize..14, w in 1usize..14,
        (kh, kw) in (1usize..6, 1usize..6), stride in (1usize..3, 1usize..3),
        pad in (0usize..3, 0usize..3, 0usize..3, 0usize..3), dilation in (1usize..3, 1usize..3),
        epilogue in conv_epilogue_strategy(), seed in any::<u64>(),
    ) {
        let spec = conv(
            (n, c, h, w, c * multiplier),
            (kh, kw),
            [stride.0, stride.1],
            [pad.0, pad.1, pad.2, pad.3],
            [dilation.0, dilation.1],
            c,
        );
        let task = Task::new(Op::Conv2d(spec), epilogue);
        prop_assume!(task.validate().is_ok());
        assert_points_match_reference(&task, seed, 2);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// Every pooling point computes the reference: max and average (either count), padding,
    /// dilation and ceil mode.
    #[test]
    fn random_gpu_pool_points_match_the_reference(
        max in any::<bool>(), n in 1usize..3, c in 1usize..5, h in 1usize..12, w in 1usize..12,
        (kh, kw) in (1usize..5, 1usize..5), stride in (1usize..4, 1usize..4),
        pad in (0usize..3, 0usize..3, 0usize..3, 0usize..3), dilation in (1usize..3, 1usize..3),
        ceil_mode in any::<bool>(), count_include_pad in any::<bool>(), seed in any::<u64>(),
    ) {
        let spec = Pool2dSpec {
            kind: if max { PoolKind::Max } else { PoolKind::Avg },
            n,
            c,
            h,
            w,
            kh,
            kw,
            stride: [stride.0, stride.1],
            pad: [pad.0, pad.1, pad.2, pad.3],
            dilation: [dilation.0, dilation.1],
            ceil_mode,
            count_include_pad,
        };
        let task = Task::new(Op::Pool2d(spec), vec![]);
        prop_assume!(task.validate().is_ok());
        assert_points_match_reference(&task, seed, 2);
    }
}
