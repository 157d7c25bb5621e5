//! Issue 18 (6c): the semantics of every GPU schedule, checked on the CPU. Points of the GPU
//! spaces (for the A100 and H100 presets: their limits shape the spaces) are lowered for the host
//! by `gpu_nest_for_host` — blocks and threads made serial loops, thread loops split at every
//! barrier — JIT-compiled by the CPU path and compared with `ir::reference`. Only launch and
//! timing need a GPU.

use crate::ReferenceData;
use autotune_codegen::{gpu_nest_for_host, host_cpu_target, CpuBuilder, HostRuntime, OperandBuffer};
use autotune_ir::{compare, BatchMatmulSpec, CudaTarget, EpilogueOp, Op, Scalar, Target, Task, Trace};
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
