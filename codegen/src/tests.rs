//! Codegen tests on hand-written loop nests: each loop kind computes what the IR says, and the
//! code the JIT actually runs uses the host's native vector width.

use crate::{host_cpu_target, CpuBuilder, HostRuntime};
use autotune_ir::{BufScope, Expr, LoopKind, LoopNest, NestBuilder, Stmt};

/// `C[m×n] += A[m×k]·B[k×n]` with a register tile of `mr × lanes` accumulators, `j` vectorized,
/// `i` unrolled, the row-tile loop parallel: the shape of a real GEMM micro-kernel.
fn tiled_matmul(m: usize, n: usize, k: usize, mr: usize, lanes: usize) -> LoopNest {
    assert!(m.is_multiple_of(mr) && n.is_multiple_of(lanes));
    let mut b = NestBuilder::new();
    let a = b.param("A", m * k);
    let bb = b.param("B", k * n);
    let c = b.param("C", m * n);
    let acc = b.buffer("acc", mr * lanes, BufScope::Register);
    let (io, jo, p, i, j) = (b.var("io"), b.var("jo"), b.var("p"), b.var("i"), b.var("j"));
    let (mr_i, lanes_i, k_i, n_i) = (mr as i64, lanes as i64, k as i64, n as i64);
    let row = |i| Expr::var(io) * mr_i + Expr::var(i);
    let col = |j| Expr::var(jo) * lanes_i + Expr::var(j);
    let acc_idx = || Expr::var(i) * lanes_i + Expr::var(j);
    let tile = |body: Vec<Stmt>| {
        vec![Stmt::for_loop(
            i,
            Expr::int(0),
            Expr::int(mr_i),
            LoopKind::Unrolled,
            vec![Stmt::for_loop(j, Expr::int(0), Expr::int(lanes_i), LoopKind::Vectorized, body)],
        )]
    };
    let init = tile(vec![Stmt::store(acc, acc_idx(), Expr::Float(0.0))]);
    let fma = Expr::fma(
        Expr::load(a, row(i) * k_i + Expr::var(p)),
        Expr::load(bb, Expr::var(p) * n_i + col(j)),
        Expr::load(acc, acc_idx()),
    );
    let update = Stmt::for_loop(
        p,
        Expr::int(0),
        Expr::int(k_i),
        LoopKind::Serial,
        tile(vec![Stmt::store(acc, acc_idx(), fma)]),
    );
    let write = tile(vec![Stmt::store(c, row(i) * n_i + col(j), Expr::load(acc, acc_idx()))]);
    let body = [init, vec![update], write].concat();
    let nest = vec![Stmt::for_loop(
        io,
        Expr::int(0),
        Expr::int((m / mr) as i64),
        LoopKind::Parallel,
        vec![Stmt::for_loop(
            jo,
            Expr::int(0),
            Expr::int((n / lanes) as i64),
            LoopKind::Serial,
            vec![Stmt::Allocate { buf: acc, body }],
        )],
    )];
    b.finish("tiled_matmul", nest)
}

fn run_matmul(nest: &LoopNest, m: usize, n: usize, k: usize, threads: usize) -> Vec<f32> {
    let target = host_cpu_target(threads as u32).expect("host target");
    let kernel = CpuBuilder::new(&target).expect("builder").build(nest).expect("build");
    let mut a: Vec<f32> = (0..m * k).map(|x| (x % 7) as f32 - 3.0).collect();
    let mut b: Vec<f32> = (0..k * n).map(|x| (x % 5) as f32 - 2.0).collect();
    let mut c = vec![f32::NAN; m * n];
    let rt = HostRuntime::new(threads).expect("runtime");
    kernel.run(&rt, &mut [&mut a, &mut b, &mut c]).expect("run");
    c
}

fn naive(m: usize, n: usize, k: usize) -> Vec<f32> {
    let a: Vec<f32> = (0..m * k).map(|x| (x % 7) as f32 - 3.0).collect();
    let b: Vec<f32> = (0..k * n).map(|x| (x % 5) as f32 - 2.0).collect();
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

#[test]
fn tiled_matmul_matches_naive_serial_and_parallel() {
    let (m, n, k) = (12, 32, 9);
    let nest = tiled_matmul(m, n, k, 4, 16);
    assert_eq!(run_matmul(&nest, m, n, k, 1), naive(m, n, k));
    assert_eq!(run_matmul(&nest, m, n, k, 2), naive(m, n, k));
}

#[test]
fn heap_scratch_unroll_by_and_conditionals() {
    // out[i] = (i % 3 == 0 ? 2·x[i] : x[i]) through a heap scratch copy, loop unrolled by 4 with a
    // remainder (n = 10).
    let n = 10;
    let mut b = NestBuilder::new();
    let x = b.param("x", n);
    let out = b.param("out", n);
    let tmp = b.buffer("tmp", n, BufScope::Heap);
    let i = b.var("i");
    let copy = Stmt::for_loop(
        i,
        Expr::int(0),
        Expr::int(n as i64),
        LoopKind::UnrollBy(4),
        vec![Stmt::store(tmp, Expr::var(i), Expr::load(x, Expr::var(i)))],
    );
    let i2 = b.var("i2");
    let cond = (Expr::var(i2) % Expr::int(3)).cmp(autotune_ir::CmpOp::Eq, Expr::int(0));
    let write = Stmt::for_loop(
        i2,
        Expr::int(0),
        Expr::int(n as i64),
        LoopKind::Serial,
        vec![Stmt::If {
            cond,
            then_body: vec![Stmt::store(
                out,
                Expr::var(i2),
                Expr::Bin(
                    autotune_ir::BinOp::Mul,
                    Box::new(Expr::load(tmp, Expr::var(i2))),
                    Box::new(Expr::Float(2.0)),
                ),
            )],
            else_body: vec![Stmt::store(out, Expr::var(i2), Expr::load(tmp, Expr::var(i2)))],
        }],
    );
    let nest = b.finish("cond", vec![Stmt::Allocate { buf: tmp, body: vec![copy, write] }]);
    let target = host_cpu_target(1).expect("host target");
    let kernel = CpuBuilder::new(&target).expect("builder").build(&nest).expect("build");
    let mut xs: Vec<f32> = (0..n).map(|v| v as f32).collect();
    let mut o = vec![0.0; n];
    kernel.run(&HostRuntime::new(1).expect("rt"), &mut [&mut xs, &mut o]).expect("run");
    let expected: Vec<f32> = (0..n).map(|v| if v % 3 == 0 { 2.0 * v as f32 } else { v as f32 }).collect();
    assert_eq!(o, expected);
}

#[test]
fn gather_in_vectorized_loop_is_scalarized_correctly() {
    // out[j] = x[2j] for 16 lanes: a stride-2 load inside a vectorized loop.
    let mut b = NestBuilder::new();
    let x = b.param("x", 32);
    let out = b.param("out", 16);
    let j = b.var("j");
    let body = vec![Stmt::for_loop(
        j,
        Expr::int(0),
        Expr::int(16),
        LoopKind::Vectorized,
        vec![Stmt::store(out, Expr::var(j), Expr::load(x, Expr::var(j) * 2))],
    )];
    let nest = b.finish("gather", body);
    let kernel = CpuBuilder::new(&host_cpu_target(1).expect("t")).expect("b").build(&nest).expect("build");
    let mut xs: Vec<f32> = (0..32).map(|v| v as f32).collect();
    let mut o = vec![0.0; 16];
    kernel.run(&HostRuntime::new(1).expect("rt"), &mut [&mut xs, &mut o]).expect("run");
    assert_eq!(o, (0..16).map(|v| (2 * v) as f32).collect::<Vec<_>>());
}

/// Stride-2 loads become two overlapping vector loads and a shuffle: every lane's element, for
/// the even and the odd phase, with the last lane reading the buffer's last element.
#[test]
fn stride_two_loads_in_vectorized_loops_pick_every_second_element() {
    for (phase, lanes) in [(0i64, 16usize), (1, 16), (1, 8), (0, 4)] {
        let len = 2 * lanes + phase as usize - 1;
        let mut b = NestBuilder::new();
        let x = b.param("x", len);
        let out = b.param("out", lanes);
        let j = b.var("j");
        let body = vec![Stmt::for_loop(
            j,
            Expr::int(0),
            Expr::int(lanes as i64),
            LoopKind::Vectorized,
            vec![Stmt::store(out, Expr::var(j), Expr::load(x, Expr::var(j) * 2 + Expr::int(phase)))],
        )];
        let nest = b.finish("stride2", body);
        let kernel =
            CpuBuilder::new(&host_cpu_target(1).expect("t")).expect("b").build(&nest).expect("build");
        let mut xs: Vec<f32> = (0..len).map(|v| v as f32).collect();
        let mut o = vec![0.0; lanes];
        kernel.run(&HostRuntime::new(1).expect("rt"), &mut [&mut xs, &mut o]).expect("run");
        let expected: Vec<f32> = (0..lanes).map(|v| (2 * v as i64 + phase) as f32).collect();
        assert_eq!(o, expected, "phase {phase}, {lanes} lanes");
    }
}

#[test]
fn wrong_buffer_lengths_are_an_error_not_a_crash() {
    let nest = tiled_matmul(4, 16, 2, 4, 16);
    let kernel = CpuBuilder::new(&host_cpu_target(1).expect("t")).expect("b").build(&nest).expect("build");
    let mut short = vec![0.0; 3];
    let (mut b, mut c) = (vec![0.0; 32], vec![0.0; 64]);
    assert!(kernel.run(&HostRuntime::new(1).expect("rt"), &mut [&mut short, &mut b, &mut c]).is_err());
}

/// Decodes the JIT'd machine code of the function at `addr` (until its last `ret` followed by
/// padding) and returns its instructions in Intel syntax.
pub(crate) fn disassemble_jitted(addr: usize) -> Vec<String> {
    use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Mnemonic};
    const MAX_BYTES: usize = 16 * 1024;
    // SAFETY: `addr` is the start of a JIT'd function inside MCJIT's code section; we read at most
    // until the function's final `ret` and padding, bounded by MAX_BYTES.
    #[allow(unsafe_code)]
    let code = unsafe { std::slice::from_raw_parts(addr as *const u8, MAX_BYTES) };
    let mut decoder = Decoder::with_ip(64, code, addr as u64, DecoderOptions::NONE);
    let mut formatter = IntelFormatter::new();
    let mut out = Vec::new();
    let mut instr = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        let mut text = String::new();
        formatter.format(&instr, &mut text);
        out.push(text);
        if instr.mnemonic() == Mnemonic::Ret {
            let pos = decoder.position();
            // Function padding: int3 / nop / zero bytes mean nothing of this function follows.
            if pos >= code.len() || matches!(code[pos], 0xCC | 0x90 | 0x00 | 0x66 | 0x0F) {
                break;
            }
        }
    }
    out
}

/// The JIT'd micro-kernel at every ISA level the host runs uses that level's registers: zmm
/// FMAs with AVX-512, ymm FMAs with AVX2, packed xmm multiplies and adds with SSE4.2 (no FMA
/// there, and no libm `fmaf` call per lane) — never scalar SSE arithmetic, and never a register
/// wider than the level (an AVX2 target on an AVX-512 host must not touch zmm).
#[test]
fn jitted_microkernel_uses_each_levels_vector_width() {
    for level in crate::host_isa_levels().expect("levels") {
        let target = crate::cpu_target_at(Some(level), 1).expect("host level");
        let lanes = target.as_cpu().expect("cpu").vector_lanes as usize;
        let nest = tiled_matmul(8, 2 * lanes, 64, 4, lanes);
        let kernel = CpuBuilder::new(&target).expect("builder").build(&nest).expect("build");
        // The micro-kernel lives in the outlined parallel body.
        let addr = kernel.function_address("tiled_matmul_par1").expect("outlined body is JIT'd");
        let asm = disassemble_jitted(addr);
        let listing = || format!("{level}:\n{}", asm.join("\n"));
        let register = match lanes {
            16 => "zmm",
            8 => "ymm",
            _ => "xmm",
        };
        let uses =
            |prefix: &str| asm.iter().filter(|l| l.starts_with(prefix) && l.contains(register)).count();
        if level.has_fma() {
            assert!(uses("vfmadd") >= 4, "expected {register} FMAs, got {}", listing());
        } else {
            assert!(uses("mulps") + uses("vmulps") >= 4, "expected packed multiplies, got {}", listing());
        }
        assert!(
            !asm.iter().any(|l| l.starts_with("call")),
            "a call (libm fmaf?) in the micro-kernel: {}",
            listing()
        );
        let wider: &[&str] = match lanes {
            16 => &[],
            8 => &["zmm"],
            _ => &["zmm", "ymm"],
        };
        for wider in wider {
            assert!(!asm.iter().any(|l| l.contains(wider)), "{wider} on a {register} level: {}", listing());
        }
        assert!(
            !asm.iter().any(|l| l.starts_with("mulss") || l.starts_with("addss") || l.starts_with("vmulss")),
            "scalar SSE arithmetic in the micro-kernel: {}",
            listing()
        );
    }
}
