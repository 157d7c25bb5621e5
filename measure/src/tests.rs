//! Every point of the matmul space computes the reference result; wrong kernels are caught;
//! hanging and crashing workers become recorded outcomes.

use crate::{LocalRunner, MeasureConfig, Runner, WorkerConfig, WorkerRunner};
use autotune_codegen::{cpu_target_at, host_cpu_target, host_isa_levels};
use autotune_ir::{
    BatchMatmulSpec, ChannelBlocks, Conv2dSpec, EpilogueOp, Expr, Halo, LoopKind, NestBuilder, Op,
    Pool2dSpec, PoolKind, Scalar, Stmt, Task, Trace, TrialStatus,
};
use autotune_schedules::space_for;
use proptest::prelude::*;
use rand::SeedableRng;

fn quick_config() -> MeasureConfig {
    MeasureConfig {
        warmup_runs: 0,
        min_repeats: 1,
        min_total_time_s: 0.0,
        max_repeats: 1,
        ..MeasureConfig::default()
    }
}

/// The host narrowed to every ISA level it can run (AVX-512, AVX2, SSE4.2 on an AVX-512 host):
/// each level's space has its own lanes, register budget and default tiles, and LLVM builds
/// code for any subset of the host's features.
fn targets_at_every_level(threads: u32) -> Vec<autotune_ir::Target> {
    host_isa_levels()
        .expect("host levels")
        .into_iter()
        .map(|level| cpu_target_at(Some(level), threads).expect("the host runs its own levels"))
        .collect()
}

/// Samples `n` points of the space of `task` at every ISA level the host runs and asserts each
/// one matches the reference.
fn assert_space_points_match_reference(task: &Task, threads: u32, seed: u64, n: usize) {
    for target in targets_at_every_level(threads) {
        let space = space_for(task, &target).expect("space");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut traces: Vec<Trace> = (0..n).map(|_| space.sample(&mut rng)).collect();
        traces.push(space.default_trace());
        let mut runner = LocalRunner::new(&target, quick_config()).expect("runner");
        let level = target.as_cpu().map(|cpu| cpu.isa_level());
        for (trace, outcome) in traces.iter().zip(runner.measure_batch(task, &traces)) {
            assert_eq!(
                outcome.status,
                TrialStatus::Ok,
                "{} on {} at {level:?}: {:?}",
                trace.display(),
                task.description(),
                outcome.error
            );
        }
    }
}

#[test]
fn awkward_shapes_match_the_reference() {
    // Named cases from the issue: degenerate, prime-ish, skinny and wide.
    for (i, (m, n, k)) in [(1, 1, 1), (17, 33, 65), (127, 1, 255), (1, 1024, 1)].into_iter().enumerate() {
        assert_space_points_match_reference(&Task::matmul(m, n, k), 1 + (i as u32 % 2), 11 + i as u64, 6);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn random_points_on_random_shapes_match_the_reference(
        m in 1usize..70, n in 1usize..90, k in 1usize..70, threads in 1u32..3, seed in any::<u64>()
    ) {
        assert_space_points_match_reference(&Task::matmul(m, n, k), threads, seed, 3);
    }
}

/// A random epilogue in the order real models use: scale?, bias?, add?, activation?.
fn epilogue_strategy() -> impl Strategy<Value = Vec<EpilogueOp>> {
    (any::<bool>(), any::<bool>(), any::<bool>(), 0usize..6).prop_map(|(scale, bias, add, act)| {
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
            2 => e.push(EpilogueOp::Clip { min: Scalar(-0.5), max: Scalar(0.75) }),
            3 => e.push(EpilogueOp::LeakyRelu { alpha: Scalar(0.1) }),
            4 => e.push(EpilogueOp::Sigmoid),
            _ => {}
        }
        e
    })
}

prop_compose! {
    fn conv_spec()(
        n in 1usize..3, groups in 1usize..4, cg in 1usize..4, og in 1usize..5, h in 1usize..12, w in 1usize..12,
        kh in 1usize..4, kw in 1usize..4, sh in 1usize..4, sw in 1usize..4, dh in 1usize..3, dw in 1usize..3,
        pad in proptest::array::uniform4(0usize..4),
    ) -> Conv2dSpec {
        Conv2dSpec { n, c: groups * cg, h, w, o: groups * og, kh, kw, stride: [sh, sw], pad, dilation: [dh, dw], groups }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn random_conv_points_match_the_reference(spec in conv_spec(), epilogue in epilogue_strategy(), threads in 1u32..3, seed in any::<u64>()) {
        prop_assume!(spec.validate().is_ok());
        assert_space_points_match_reference(&Task::new(Op::Conv2d(spec), epilogue), threads, seed, 3);
    }

    /// Enough output channels per group (≥ 16) that the channels-as-columns layout is a choice
    /// too: half the sampled points take it.
    #[test]
    fn random_conv_points_with_channels_as_columns_match_the_reference(
        spec in conv_spec(), og in 16usize..40, epilogue in epilogue_strategy(), threads in 1u32..3, seed in any::<u64>(),
    ) {
        let spec = Conv2dSpec { o: spec.groups * og, ..spec };
        prop_assume!(spec.validate().is_ok());
        assert_space_points_match_reference(&Task::new(Op::Conv2d(spec), epilogue), threads, seed, 4);
    }

    /// Channel-blocked activations (NCHW{b}c): the input, the output (and residual) or both
    /// blocked, at every ISA level the host runs (an output block of 16 or 32 holds whole vectors
    /// at each; an input block is any divisor of the channels).
    #[test]
    fn random_channel_blocked_conv_points_match_the_reference(
        n in 1usize..3, blocks in prop::sample::select(vec![(2usize, 1usize), (4, 16), (8, 16), (16, 1), (16, 16), (1, 16), (16, 32)]),
        c_blocks in 1usize..4, o_wide in 16usize..40, o_blocks in 1usize..3, h in 1usize..10, w in 1usize..10,
        kh in 1usize..4, kw in 1usize..4, sh in 1usize..3, sw in 1usize..3, dh in 1usize..3, dw in 1usize..3,
        pad in proptest::array::uniform4(0usize..3), epilogue in epilogue_strategy(), threads in 1u32..3, seed in any::<u64>(),
    ) {
        let (input, output) = blocks;
        let o = if output > 1 { o_blocks * output } else { o_wide };
        let spec = Conv2dSpec {
            n, c: c_blocks * input, h, w, o, kh, kw, stride: [sh, sw], pad, dilation: [dh, dw], groups: 1,
        };
        prop_assume!(spec.validate().is_ok());
        let task = Task::new(Op::Conv2d(spec), epilogue).with_layout(ChannelBlocks { input, output });
        assert_space_points_match_reference(&task, threads, seed, 4);
    }

    /// Zero borders (halos): an input that holds the conv's padding (or a wider border), read in
    /// place, and an output written inside a border the kernel zeroes (its buffer starts as NaN,
    /// so a border left unwritten fails), each alone and both.
    #[test]
    fn random_bordered_conv_points_match_the_reference(
        n in 1usize..3, input in prop::sample::select(vec![2usize, 4, 16]), output in prop::sample::select(vec![16usize, 32]),
        c_blocks in 1usize..4, o_blocks in 1usize..3, h in 1usize..10, w in 1usize..10, kh in 1usize..4, kw in 1usize..4,
        sh in 1usize..3, sw in 1usize..3, pad in proptest::array::uniform4(0usize..3),
        out_border in proptest::array::uniform4(0usize..3), wider in proptest::array::uniform4(0usize..2),
        sides in 1usize..4, epilogue in epilogue_strategy(),
        threads in 1u32..3, seed in any::<u64>(),
    ) {
        let spec = Conv2dSpec {
            n, c: c_blocks * input, h, w, o: o_blocks * output, kh, kw, stride: [sh, sw], pad, dilation: [1, 1], groups: 1,
        };
        prop_assume!(spec.validate().is_ok());
        let epilogue: Vec<EpilogueOp> = epilogue.into_iter().filter(|e| *e != EpilogueOp::Add).collect();
        let halo = Halo {
            // The conv's padding, or wider (another reader of the buffer needs more).
            input: if sides & 1 != 0 { std::array::from_fn(|i| pad[i] + wider[i]) } else { [0; 4] },
            output: if sides & 2 != 0 { out_border } else { [0; 4] },
        };
        let task = Task::new(Op::Conv2d(spec), epilogue).with_layout(ChannelBlocks { input, output }).with_halo(halo);
        prop_assert!(task.validate().is_ok(), "{}", task.description());
        assert_space_points_match_reference(&task, threads, seed, 4);
    }

    /// Channel-blocked pooling (NCHW16c / NCHW32c, whole vectors of channels at every ISA level):
    /// max and average, every padding, stride, dilation, ceil mode and count_include_pad, and
    /// global windows.
    #[test]
    fn random_channel_blocked_pool_points_match_the_reference(
        max in any::<bool>(), n in 1usize..3, c_blocks in 1usize..3, block in prop::sample::select(vec![16usize, 32]),
        h in 1usize..12, w in 1usize..12, kh in 1usize..4, kw in 1usize..4, sh in 1usize..4, sw in 1usize..4,
        dh in 1usize..3, dw in 1usize..3, pad in proptest::array::uniform4(0usize..3), ceil_mode in any::<bool>(),
        count_include_pad in any::<bool>(), global in any::<bool>(), threads in 1u32..3, seed in any::<u64>(),
    ) {
        let spec = Pool2dSpec {
            kind: if max { PoolKind::Max } else { PoolKind::Avg }, n, c: c_blocks * block, h, w, kh, kw,
            stride: [sh, sw], pad, dilation: [dh, dw], ceil_mode, count_include_pad,
        };
        let spec = if global {
            Pool2dSpec { kh: h, kw: w, stride: [1, 1], pad: [0; 4], dilation: [1, 1], ceil_mode: false, ..spec }
        } else {
            spec
        };
        prop_assume!(spec.validate().is_ok());
        let task = Task::new(Op::Pool2d(spec), vec![]).with_layout(ChannelBlocks { input: block, output: block });
        assert_space_points_match_reference(&task, threads, seed, 3);
    }

    /// Depthwise convs (one input channel per group) have their own sliding-window space: output
    /// widths below, at and past a vector (overlapping last vector), and heights below a row block.
    #[test]
    fn random_depthwise_points_match_the_reference(
        n in 1usize..3, channels in 2usize..6, multiplier in 1usize..3, h in 1usize..12, w in 1usize..40,
        kh in 1usize..4, kw in 1usize..4, sh in 1usize..3, sw in 1usize..3, dh in 1usize..3, dw in 1usize..3,
        pad in proptest::array::uniform4(0usize..3), epilogue in epilogue_strategy(), threads in 1u32..3, seed in any::<u64>(),
    ) {
        let spec = Conv2dSpec {
            n, c: channels, h, w, o: channels * multiplier, kh, kw, stride: [sh, sw], pad, dilation: [dh, dw], groups: channels,
        };
        prop_assume!(spec.validate().is_ok());
        assert_space_points_match_reference(&Task::new(Op::Conv2d(spec), epilogue), threads, seed, 4);
    }

    #[test]
    fn random_batch_matmul_points_match_the_reference(
        batch in 1usize..4, m in 1usize..20, n in 1usize..40, k in 1usize..20,
        flags in proptest::array::uniform4(any::<bool>()), b_constant in any::<bool>(),
        epilogue in epilogue_strategy(), threads in 1u32..3, seed in any::<u64>(),
    ) {
        let spec = BatchMatmulSpec {
            batch, m, n, k, trans_a: flags[0], trans_b: flags[1], a_broadcast: flags[2], b_broadcast: flags[3], b_constant,
        };
        assert_space_points_match_reference(&Task::new(Op::BatchMatmul(spec), epilogue), threads, seed, 3);
    }

    #[test]
    fn random_pool_points_match_the_reference(
        max in any::<bool>(), n in 1usize..3, c in 1usize..4, h in 1usize..20, w in 1usize..40,
        kh in 1usize..4, kw in 1usize..4, sh in 1usize..4, sw in 1usize..4, dh in 1usize..3, dw in 1usize..3,
        pad in proptest::array::uniform4(0usize..3), ceil_mode in any::<bool>(), count_include_pad in any::<bool>(),
        threads in 1u32..3, seed in any::<u64>(),
    ) {
        let dilation = [dh, dw];
        let spec = Pool2dSpec {
            kind: if max { PoolKind::Max } else { PoolKind::Avg }, n, c, h, w, kh, kw, stride: [sh, sw], pad, dilation,
            ceil_mode, count_include_pad,
        };
        prop_assume!(spec.validate().is_ok());
        assert_space_points_match_reference(&Task::new(Op::Pool2d(spec), vec![]), threads, seed, 4);
    }
}

/// Named cases from the operators issue: shapes that broke or nearly broke something.
#[test]
fn awkward_conv_and_pool_cases_match_the_reference() {
    let base = Conv2dSpec {
        n: 1,
        c: 4,
        h: 7,
        w: 7,
        o: 4,
        kh: 3,
        kw: 3,
        stride: [1, 1],
        pad: [1; 4],
        dilation: [1, 1],
        groups: 1,
    };
    let cases = [
        // 1×1 conv that reads its input in place.
        Conv2dSpec { kh: 1, kw: 1, pad: [0; 4], ..base },
        // Stride larger than the kernel.
        Conv2dSpec { kh: 2, kw: 2, stride: [3, 3], pad: [0; 4], ..base },
        // Padding as large as the kernel, asymmetric.
        Conv2dSpec { pad: [3, 0, 2, 3], ..base },
        // Depthwise (groups = channels) and depthwise with a channel multiplier.
        Conv2dSpec { groups: 4, ..base },
        Conv2dSpec { groups: 4, o: 8, stride: [2, 2], ..base },
        // 7×7 stride 2 (ResNet's stem): too many taps to unroll, so only the serial tap loops.
        Conv2dSpec { c: 2, h: 12, w: 12, o: 3, kh: 7, kw: 7, stride: [2, 2], pad: [3; 4], ..base },
        // Prime sizes everywhere.
        Conv2dSpec {
            n: 1,
            c: 3,
            h: 13,
            w: 11,
            o: 5,
            kh: 5,
            kw: 3,
            stride: [2, 1],
            pad: [2, 1, 2, 1],
            dilation: [1, 2],
            groups: 1,
        },
    ];
    for (i, spec) in cases.into_iter().enumerate() {
        let task = Task::new(
            Op::Conv2d(spec),
            if i % 2 == 0 { vec![EpilogueOp::Bias, EpilogueOp::Relu] } else { vec![] },
        );
        assert_space_points_match_reference(&task, 1 + (i as u32 % 2), 100 + i as u64, 4);
    }
    // Channels as columns (≥ 16 output channels per group): edge tiles read zero rows below the
    // image; one output column (ow = 1) needs the most of them; a 1×1 conv reads in place; a
    // stride-2 1×1 conv reads one phase plane of four; depthwise with a channel multiplier of 16.
    let wide = Conv2dSpec { o: 33, ..base };
    let by_channels = [
        wide,
        Conv2dSpec { w: 1, pad: [1, 0, 1, 0], kw: 1, ..wide },
        Conv2dSpec { kh: 1, kw: 1, pad: [0; 4], ..wide },
        Conv2dSpec { kh: 1, kw: 1, pad: [0; 4], stride: [2, 2], ..wide },
        Conv2dSpec { groups: 4, o: 64, ..base },
    ];
    for (i, spec) in by_channels.into_iter().enumerate() {
        let task = Task::new(Op::Conv2d(spec), vec![EpilogueOp::Bias, EpilogueOp::Add, EpilogueOp::Relu]);
        assert_space_points_match_reference(&task, 1 + (i as u32 % 2), 200 + i as u64, 8);
    }
    // Channel-blocked (NCHW16c): a 1×1 conv in place, strided in place, a padded 3×3 with a
    // residual in blocks, and ResNet's stem (3 plain input channels, 7×7 stride 2, blocked out).
    let blocked = [
        (Conv2dSpec { c: 32, o: 32, kh: 1, kw: 1, pad: [0; 4], ..base }, 16),
        (Conv2dSpec { c: 32, o: 48, kh: 1, kw: 1, pad: [0; 4], stride: [2, 2], ..base }, 16),
        (Conv2dSpec { c: 16, o: 32, ..base }, 16),
        (Conv2dSpec { c: 3, h: 12, w: 12, o: 16, kh: 7, kw: 7, stride: [2, 2], pad: [3; 4], ..base }, 1),
    ];
    for (i, (spec, input)) in blocked.into_iter().enumerate() {
        let task = Task::new(Op::Conv2d(spec), vec![EpilogueOp::Bias, EpilogueOp::Add, EpilogueOp::Relu])
            .with_layout(ChannelBlocks { input, output: 16 });
        assert_space_points_match_reference(&task, 1 + (i as u32 % 2), 300 + i as u64, 8);
    }
    let global = Pool2dSpec {
        kind: PoolKind::Avg,
        n: 1,
        c: 3,
        h: 7,
        w: 7,
        kh: 7,
        kw: 7,
        stride: [1, 1],
        pad: [0; 4],
        dilation: [1, 1],
        ceil_mode: false,
        count_include_pad: false,
    };
    assert_space_points_match_reference(&Task::new(Op::Pool2d(global), vec![]), 2, 5, 3);
    // Average pooling with dilations (ONNX opset 19): the counts are of the taps inside.
    for (i, (count_include_pad, ceil_mode)) in
        [(false, false), (true, true), (false, true)].into_iter().enumerate()
    {
        let spec = Pool2dSpec {
            h: 9,
            w: 11,
            kh: 3,
            kw: 2,
            stride: [2, 1],
            pad: [1, 1, 2, 0],
            dilation: [2, 3],
            count_include_pad,
            ceil_mode,
            ..global
        };
        assert_space_points_match_reference(&Task::new(Op::Pool2d(spec), vec![]), 1, 400 + i as u64, 8);
    }
    // Global pooling reduces each plane where it lies, vectors then lanes then a tail: sizes
    // below, at and off a multiple of every vector width, both kinds, every point of the space.
    for (i, (kind, size)) in [
        (PoolKind::Avg, 13),
        (PoolKind::Max, 13),
        (PoolKind::Max, 7),
        (PoolKind::Avg, 2),
        (PoolKind::Avg, 4),
        (PoolKind::Max, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let spec = Pool2dSpec { kind, h: size, w: size, kh: size, kw: size, c: 5, ..global };
        assert_space_points_match_reference(
            &Task::new(Op::Pool2d(spec), vec![]),
            1 + (i as u32 % 2),
            300 + i as u64,
            8,
        );
    }
}

#[test]
fn a_wrong_kernel_is_recorded_as_wrong_result_without_a_time() {
    // Planted: writes C = 1 everywhere instead of A·B.
    let task = Task::matmul(4, 5, 3);
    let mut b = NestBuilder::new();
    b.param("A", 12);
    b.param("B", 15);
    let c = b.param("C", 20);
    let i = b.var("i");
    let body = vec![Stmt::for_loop(
        i,
        Expr::int(0),
        Expr::int(20),
        LoopKind::Serial,
        vec![Stmt::store(c, Expr::var(i), Expr::Float(1.0))],
    )];
    let wrong = b.finish("planted_wrong", body);
    let target = host_cpu_target(1).expect("host target");
    let right = space_for(&task, &target).expect("space").lower_default();
    let mut runner = LocalRunner::new(&target, quick_config()).expect("runner");
    let outcomes = runner.measure_nests(&task, vec![Ok(wrong.into()), Ok(right)]);
    assert_eq!(outcomes[0].status, TrialStatus::WrongResult);
    assert!(outcomes[0].repeat_times_s.is_empty() && outcomes[0].median_s().is_none());
    assert!(outcomes[0].error.as_deref().unwrap_or("").contains("differ"), "{:?}", outcomes[0].error);
    assert_eq!(outcomes[1].status, TrialStatus::Ok);
}

#[test]
fn a_kernel_that_forgets_outputs_is_caught() {
    // Writes only half of C: the NaN prefill makes the rest mismatch.
    let task = Task::matmul(2, 2, 1);
    let mut b = NestBuilder::new();
    let a = b.param("A", 2);
    let bb = b.param("B", 2);
    let c = b.param("C", 4);
    let body = vec![Stmt::store(
        c,
        Expr::int(0),
        Expr::Bin(
            autotune_ir::BinOp::Mul,
            Box::new(Expr::load(a, Expr::int(0))),
            Box::new(Expr::load(bb, Expr::int(0))),
        ),
    )];
    let nest = b.finish("half", body);
    let mut runner = LocalRunner::new(&host_cpu_target(1).expect("t"), quick_config()).expect("runner");
    assert_eq!(runner.measure_nests(&task, vec![Ok(nest.into())])[0].status, TrialStatus::WrongResult);
}

#[test]
fn a_store_just_past_or_before_an_output_is_a_run_error_even_when_the_result_is_right() {
    let task = Task::matmul(8, 8, 8);
    let target = host_cpu_target(1).expect("host target");
    let space = space_for(&task, &target).expect("space");
    let mut past_end = space.lower_default();
    crate::planted::plant(&mut past_end, crate::planted::PlantedFault::OutOfBoundsWrite);
    let mut before_start = space.lower_default();
    let output = *before_start.kernel.params.last().expect("output");
    before_start.kernel.body.push(Stmt::store(output, Expr::int(-1), Expr::Float(0.5)));
    let mut runner = LocalRunner::new(&target, quick_config()).expect("runner");
    let outcomes =
        runner.measure_nests(&task, vec![Ok(past_end), Ok(before_start), Ok(space.lower_default())]);
    for outcome in &outcomes[..2] {
        assert_eq!(outcome.status, TrialStatus::RunError, "{outcome:?}");
        assert!(outcome.error.as_deref().unwrap_or("").contains("wrote outside C"), "{outcome:?}");
        assert!(outcome.repeat_times_s.is_empty());
    }
    assert_eq!(outcomes[2].status, TrialStatus::Ok);
}

#[test]
fn the_in_process_runner_never_honours_a_planted_fault() {
    let task = Task::matmul(8, 8, 8);
    let target = host_cpu_target(1).expect("host target");
    let good = space_for(&task, &target).expect("space").default_trace();
    let planted = crate::planted::PlantedFault::Segfault.plant_in(&good);
    let mut runner = LocalRunner::new(&target, quick_config()).expect("runner");
    assert_eq!(runner.measure_batch(&task, &[planted])[0].status, TrialStatus::Ok);
}

#[test]
fn a_lowering_failure_is_a_build_error() {
    let task = Task::matmul(2, 2, 2);
    let mut runner = LocalRunner::new(&host_cpu_target(1).expect("t"), quick_config()).expect("runner");
    let outcomes = runner.measure_batch(&task, &[Trace::new("no_such_sketch", vec![])]);
    assert_eq!(outcomes[0].status, TrialStatus::BuildError);
}

fn fake_worker(script: &str) -> WorkerConfig {
    WorkerConfig {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        measure: MeasureConfig { timeout_s: 0.2, max_total_time_s: 0.1, ..quick_config() },
        build_timeout_s: 2.0,
        gpu_backend: Default::default(),
    }
}

#[test]
fn a_hanging_candidate_times_out_and_the_worker_is_replaced() {
    // A worker that compiles, then never answers: every candidate must come back as a timeout.
    let target = host_cpu_target(1).expect("t");
    let mut runner =
        WorkerRunner::new(&target, fake_worker(r#"read line; echo '{"reply":"built"}'; sleep 30"#))
            .expect("runner");
    let task = Task::matmul(2, 2, 2);
    let traces = vec![Trace::new("a", vec![]), Trace::new("b", vec![])];
    let outcomes = runner.measure_batch(&task, &traces);
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.iter().all(|o| o.status == TrialStatus::Timeout), "{outcomes:?}");
    assert_eq!(runner.n_restarts(), 2);
}

#[test]
fn a_crashing_candidate_is_a_run_error_and_the_rest_still_run() {
    // Crashes on the first candidate of a batch, answers the next batch normally.
    let ok = r#"{"reply":"outcome","outcome":{"status":"ok","error":null,"repeat_times_s":[0.5],"build_time_s":0.1}}"#;
    let script = format!(
        r#"read line; echo '{{"reply":"built"}}'; case "$line" in *'"first"'*) kill -SEGV $$ ;; esac; echo '{ok}'; sleep 5"#
    );
    let target = host_cpu_target(1).expect("t");
    let mut runner = WorkerRunner::new(&target, fake_worker(&script)).expect("runner");
    let traces = vec![Trace::new("first", vec![]), Trace::new("second", vec![])];
    let outcomes = runner.measure_batch(&Task::matmul(2, 2, 2), &traces);
    assert_eq!(outcomes[0].status, TrialStatus::RunError, "{outcomes:?}");
    assert!(outcomes[0].error.as_deref().unwrap_or("").contains("died"), "{outcomes:?}");
    assert_eq!(outcomes[1].status, TrialStatus::Ok, "{outcomes:?}");
}

#[test]
fn cold_operands_time_every_point_and_keep_the_weights_intact() {
    // Weights and bias evicted before each timed repeat (prepacked or not): still correct, and the
    // repeats are all there.
    let spec = autotune_ir::Conv2dSpec {
        n: 1,
        c: 8,
        h: 9,
        w: 9,
        o: 16,
        kh: 3,
        kw: 3,
        stride: [1, 1],
        pad: [1, 1, 1, 1],
        dilation: [1, 1],
        groups: 1,
    };
    let task = Task::new(autotune_ir::Op::Conv2d(spec), vec![autotune_ir::EpilogueOp::Bias]);
    for target in targets_at_every_level(1) {
        let space = space_for(&task, &target).expect("space");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let traces: Vec<Trace> = (0..4).map(|_| space.sample(&mut rng)).collect();
        let config = MeasureConfig { cold_operands: true, min_repeats: 3, max_repeats: 3, ..quick_config() };
        let mut runner = LocalRunner::new(&target, config).expect("runner");
        for outcome in runner.measure_batch(&task, &traces) {
            assert_eq!(outcome.status, TrialStatus::Ok, "{:?}", outcome.error);
            assert_eq!(outcome.repeat_times_s.len(), 3);
        }
    }
}

/// The loop with the most FMAs in `assembly` (a label and the jump back to it), as its lines.
fn hottest_loop(assembly: &str) -> Vec<&str> {
    let lines: Vec<&str> = assembly.lines().collect();
    let mut hottest: Vec<&str> = Vec::new();
    let fmas = |body: &[&str]| body.iter().filter(|l| l.contains("vfmadd")).count();
    for (start, line) in lines.iter().enumerate() {
        let Some(label) = line.split(':').next().filter(|l| l.starts_with(".LBB")) else { continue };
        let back_jump = lines[start + 1..]
            .iter()
            .position(|l| l.trim_start().starts_with('j') && l.trim_end().ends_with(label));
        if let Some(len) = back_jump {
            let body = &lines[start..=start + 1 + len];
            if fmas(body) > fmas(&hottest) {
                hottest = body.to_vec();
            }
        }
    }
    hottest
}

/// A `size`×`size` conv, `channels` in and out, `kh`×`kh` taps padded to keep the size, bias and
/// ReLU fused, input and output in 16-channel blocks.
fn blocked_square_conv(channels: usize, size: usize, kh: usize) -> Task {
    let spec = Conv2dSpec {
        n: 1,
        c: channels,
        h: size,
        w: size,
        o: channels,
        kh,
        kw: kh,
        stride: [1, 1],
        pad: [kh / 2; 4],
        dilation: [1, 1],
        groups: 1,
    };
    Task::new(Op::Conv2d(spec), vec![EpilogueOp::Bias, EpilogueOp::Relu])
        .with_layout(ChannelBlocks { input: 16, output: 16 })
}

/// The default register tile of a conv in channel blocks (6 × 4 vectors: 24 accumulators of the
/// 32 AVX-512 registers) keeps its inner loop in registers: no vector spilled to or reloaded
/// from the stack. LLVM's machine scheduler hoisted the broadcasts of this loop ahead of their
/// FMAs and spilled 81 of them per 384 FMAs (1.4× slower), so this fails if it comes back on.
/// Compiled for a generic AVX-512 CPU, not run: it holds on any host.
#[test]
fn the_default_register_tile_of_a_blocked_conv_does_not_spill() {
    let target = autotune_ir::Target::Cpu(autotune_ir::CpuTarget::generic(autotune_ir::IsaLevel::Avx512, 1));
    let builder = autotune_codegen::CpuBuilder::new(&target).expect("builder");
    for kh in [3, 1] {
        let task = blocked_square_conv(64, 14, kh);
        let space = space_for(&task, &target).expect("space");
        let trace = space.default_trace();
        assert_eq!((trace.get("mr"), trace.get("nr_vecs")), (Some(6), Some(4)), "{}", trace.display());
        let program = space.lower(&trace).expect("lowers");
        let assembly = builder.assembly(&program.kernel).expect("assembly");
        let inner = hottest_loop(&assembly);
        assert!(inner.iter().filter(|l| l.contains("vfmadd")).count() >= 24, "{}", inner.join("\n"));
        let stack_vectors: Vec<&&str> =
            inner.iter().filter(|l| l.contains("(%rsp)") && l.contains("mm")).collect();
        assert!(
            stack_vectors.is_empty(),
            "{} k{kh}x{kh}: vectors spilled in the inner loop: {stack_vectors:?}",
            task.description()
        );
    }
}

/// The default of a conv with few output rows (7×7: ten row tiles read each weight panel)
/// prefetches the next panel of its weights from inside the micro-kernel's reduction loop; one
/// with many (56×56), where only the first of hundreds of tiles finds a panel out of cache, does
/// not prefetch at all. Compiled for a generic AVX-512 CPU, not run: it holds on any host.
#[test]
fn the_default_prefetches_the_weights_only_when_few_row_tiles_share_them() {
    let target = autotune_ir::Target::Cpu(autotune_ir::CpuTarget::generic(autotune_ir::IsaLevel::Avx512, 1));
    let builder = autotune_codegen::CpuBuilder::new(&target).expect("builder");
    for (size, kh) in [(7, 3), (7, 1), (56, 3), (56, 1)] {
        let task = blocked_square_conv(256, size, kh);
        let space = space_for(&task, &target).expect("space");
        let trace = space.default_trace();
        let assembly = builder.assembly(&space.lower(&trace).expect("lowers").kernel).expect("assembly");
        let prefetches = |lines: &[&str]| lines.iter().filter(|l| l.contains("prefetcht1")).count();
        if size == 7 {
            assert_eq!(trace.get("prefetch_b"), Some(1), "{}", trace.display());
            let inner = hottest_loop(&assembly);
            assert!(
                prefetches(&inner) > 0,
                "{}: no prefetch in the inner loop\n{}",
                task.description(),
                inner.join("\n")
            );
        } else {
            assert_eq!(trace.get("prefetch_b"), Some(0), "{}", trace.display());
            assert_eq!(prefetches(&assembly.lines().collect::<Vec<_>>()), 0, "{}", task.description());
        }
    }
}

#[test]
fn a_kernel_twice_in_a_batch_is_built_once_and_timed_twice() {
    let target = host_cpu_target(1).expect("host");
    let task = Task::matmul(32, 48, 40);
    let space = space_for(&task, &target).expect("space");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let other = space.sample(&mut rng);
    let default = space.default_trace();
    let config =
        MeasureConfig { min_repeats: 3, max_repeats: 3, min_total_time_s: 0.0, ..MeasureConfig::default() };
    let mut runner = LocalRunner::new(&target, config).expect("runner");
    let traces = [default.clone(), other, default];
    let outcomes = runner.measure_batch(&task, &traces);
    assert!(outcomes.iter().all(|o| o.status == TrialStatus::Ok), "{outcomes:?}");
    assert!(outcomes.iter().all(|o| o.repeat_times_s.len() == 3), "every copy timed on its own");
    // One build: the copies report the same build, down to the nanosecond.
    assert_eq!(outcomes[0].build_time_s, outcomes[2].build_time_s);
    assert_ne!(outcomes[0].build_time_s, outcomes[1].build_time_s);
}
