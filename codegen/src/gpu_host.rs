//! A GPU LoopNest as a host program with the same meaning, so the semantics of every GPU
//! schedule are checked on the CPU (no GPU needed): block loops become serial loops, and each
//! thread loop becomes serial loops split at its barriers — the way CPU OpenCL runtimes (pocl)
//! run work-groups. Every thread runs up to a barrier before any runs past it, which is exactly
//! what `__syncthreads()` guarantees and all a correct kernel may rely on.
//!
//! Splitting needs what CUDA needs anyway: control flow around a barrier is the same for every
//! thread (loops and conditions that enclose a barrier do not read the thread variable). Register
//! buffers allocated inside a split thread loop live across the split, so each thread gets its
//! own copy (expanded by the thread count, indexed by the thread variable); shared buffers become
//! heap scratch of the block.

use crate::CodegenError;
use autotune_ir::{BufId, BufScope, Expr, Loop, LoopKind, LoopNest, Stmt, VarId};
use std::collections::HashMap;

/// `nest` with every GPU loop made serial and every barrier region split (see the module docs).
/// Fails on a barrier under thread-dependent control flow, outside a thread loop, or under
/// nested thread loops.
pub fn gpu_nest_for_host(nest: &LoopNest) -> Result<LoopNest, CodegenError> {
    let mut out = nest.clone();
    for buffer in &mut out.buffers {
        if buffer.scope == BufScope::Shared {
            buffer.scope = BufScope::Heap;
        }
    }
    let mut expanded = HashMap::new();
    out.body = host_block(&nest.body, &mut expanded, &mut out)?;
    Ok(out)
}

fn unsupported(why: &str) -> CodegenError {
    CodegenError::Unsupported(format!("GPU nest on the host: {why}"))
}

/// Outside any thread loop: block loops become serial, thread loops are split.
fn host_block(
    body: &[Stmt],
    expanded: &mut HashMap<BufId, (VarId, i64)>,
    out: &mut LoopNest,
) -> Result<Vec<Stmt>, CodegenError> {
    let mut result = Vec::new();
    for stmt in body {
        match stmt {
            Stmt::For(l) if matches!(l.kind, LoopKind::GpuThread(_)) => {
                let n_threads =
                    l.extent.as_int().ok_or_else(|| unsupported("a thread loop of unknown extent"))?;
                let split = split_threads(&l.body, l, n_threads, expanded, out)?;
                result.extend(split);
            }
            Stmt::For(l) => {
                let kind = if matches!(l.kind, LoopKind::GpuBlock(_)) { LoopKind::Serial } else { l.kind };
                let body = host_block(&l.body, expanded, out)?;
                result.push(Stmt::For(Loop { body, kind, ..l.clone() }));
            }
            Stmt::Allocate { buf, body } => {
                result.push(Stmt::Allocate { buf: *buf, body: host_block(body, expanded, out)? })
            }
            Stmt::If { cond, then_body, else_body } => result.push(Stmt::If {
                cond: cond.clone(),
                then_body: host_block(then_body, expanded, out)?,
                else_body: host_block(else_body, expanded, out)?,
            }),
            Stmt::Store { .. } | Stmt::Prefetch { .. } => result.push(stmt.clone()),
            Stmt::Barrier => return Err(unsupported("a barrier outside a thread loop")),
        }
    }
    Ok(result)
}

fn contains_barrier(body: &[Stmt]) -> bool {
    body.iter().any(|stmt| match stmt {
        Stmt::Barrier => true,
        Stmt::For(l) => contains_barrier(&l.body),
        Stmt::Allocate { body, .. } => contains_barrier(body),
        Stmt::If { then_body, else_body, .. } => contains_barrier(then_body) || contains_barrier(else_body),
        Stmt::Store { .. } | Stmt::Prefetch { .. } => false,
    })
}

fn uses_var(e: &Expr, v: VarId) -> bool {
    match e {
        Expr::Var(x) => *x == v,
        Expr::Int(_) | Expr::Float(_) => false,
        Expr::Bin(_, a, b) | Expr::Cmp(_, a, b) | Expr::And(a, b) => uses_var(a, v) || uses_var(b, v),
        Expr::Unary(_, a) => uses_var(a, v),
        Expr::Fma(a, b, c) | Expr::Select(a, b, c) => uses_var(a, v) || uses_var(b, v) || uses_var(c, v),
        Expr::Load { index, .. } => uses_var(index, v),
    }
}

/// The body of thread loop `l` as block-level statements: runs of barrier-free statements become
/// serial thread loops; a loop, condition or allocation that encloses a barrier stays outside and
/// is split inside.
fn split_threads(
    body: &[Stmt],
    l: &Loop,
    n_threads: i64,
    expanded: &mut HashMap<BufId, (VarId, i64)>,
    out: &mut LoopNest,
) -> Result<Vec<Stmt>, CodegenError> {
    let mut result = Vec::new();
    let mut run: Vec<Stmt> = Vec::new();
    let flush = |run: &mut Vec<Stmt>, result: &mut Vec<Stmt>, expanded: &HashMap<BufId, (VarId, i64)>| {
        if !run.is_empty() {
            let body =
                std::mem::take(run).iter().map(|s| per_thread(s, expanded)).collect::<Result<_, _>>()?;
            result.push(Stmt::For(Loop { kind: LoopKind::Serial, body, ..l.clone() }));
        }
        Ok::<(), CodegenError>(())
    };
    for stmt in body {
        if !contains_barrier(std::slice::from_ref(stmt)) {
            run.push(stmt.clone());
            continue;
        }
        flush(&mut run, &mut result, expanded)?;
        match stmt {
            Stmt::Barrier | Stmt::Prefetch { .. } => {}
            Stmt::For(inner) => {
                if uses_var(&inner.min, l.var) || uses_var(&inner.extent, l.var) {
                    return Err(unsupported("a barrier in a loop whose bounds depend on the thread"));
                }
                if matches!(
                    inner.kind,
                    LoopKind::GpuThread(_)
                        | LoopKind::GpuBlock(_)
                        | LoopKind::Vectorized
                        | LoopKind::Parallel
                ) {
                    return Err(unsupported("a barrier under a nested GPU, vector or parallel loop"));
                }
                // Unrolling is a code-size choice; the split loop runs its iterations in order.
                let body = split_threads(&inner.body, l, n_threads, expanded, out)?;
                result.push(Stmt::For(Loop { body, kind: LoopKind::Serial, ..inner.clone() }));
            }
            Stmt::If { cond, then_body, else_body } => {
                if uses_var(cond, l.var) {
                    return Err(unsupported("a barrier under a condition that depends on the thread"));
                }
                result.push(Stmt::If {
                    cond: cond.clone(),
                    then_body: split_threads(then_body, l, n_threads, expanded, out)?,
                    else_body: split_threads(else_body, l, n_threads, expanded, out)?,
                });
            }
            Stmt::Allocate { buf, body } => {
                // One copy per thread, alive across the split: `n_threads` times as long, on the
                // heap (a 256-thread block's accumulators are too big for the stack).
                let decl = &mut out.buffers[buf.0 as usize];
                let len = decl.len as i64;
                decl.len *= n_threads as usize;
                decl.scope = BufScope::Heap;
                expanded.insert(*buf, (l.var, len));
                result.push(Stmt::Allocate {
                    buf: *buf,
                    body: split_threads(body, l, n_threads, expanded, out)?,
                });
            }
            Stmt::Store { .. } => return Err(unsupported("a store that contains a barrier")),
        }
    }
    flush(&mut run, &mut result, expanded)?;
    Ok(result)
}

/// A statement inside a (now serial) thread loop: nested GPU loops are refused, accesses to
/// expanded buffers get the thread's offset.
fn per_thread(stmt: &Stmt, expanded: &HashMap<BufId, (VarId, i64)>) -> Result<Stmt, CodegenError> {
    let all = |body: &[Stmt]| body.iter().map(|s| per_thread(s, expanded)).collect::<Result<Vec<_>, _>>();
    Ok(match stmt {
        Stmt::For(l) if matches!(l.kind, LoopKind::GpuThread(_) | LoopKind::GpuBlock(_)) => {
            return Err(unsupported("nested GPU loops inside a thread loop"))
        }
        Stmt::For(l) => Stmt::For(Loop { body: all(&l.body)?, ..l.clone() }),
        Stmt::Allocate { buf, body } => Stmt::Allocate { buf: *buf, body: all(body)? },
        Stmt::If { cond, then_body, else_body } => {
            Stmt::If { cond: offset(cond, expanded), then_body: all(then_body)?, else_body: all(else_body)? }
        }
        Stmt::Store { buf, index, value } => Stmt::Store {
            buf: *buf,
            index: thread_index(*buf, index, expanded),
            value: offset(value, expanded),
        },
        Stmt::Prefetch { buf, index } => {
            Stmt::Prefetch { buf: *buf, index: thread_index(*buf, index, expanded) }
        }
        Stmt::Barrier => return Err(unsupported("a barrier left after splitting")),
    })
}

/// `index` into `buf` as the current thread sees it: past the other threads' copies when `buf`
/// was expanded to one copy per thread.
fn thread_index(buf: BufId, index: &Expr, expanded: &HashMap<BufId, (VarId, i64)>) -> Expr {
    let index = offset(index, expanded);
    match expanded.get(&buf) {
        Some(&(v, len)) => Expr::var(v) * len + index,
        None => index,
    }
}

fn offset(e: &Expr, expanded: &HashMap<BufId, (VarId, i64)>) -> Expr {
    let o = |e: &Expr| Box::new(offset(e, expanded));
    match e {
        Expr::Int(_) | Expr::Float(_) | Expr::Var(_) => e.clone(),
        Expr::Bin(op, a, b) => Expr::Bin(*op, o(a), o(b)),
        Expr::Cmp(op, a, b) => Expr::Cmp(*op, o(a), o(b)),
        Expr::And(a, b) => Expr::And(o(a), o(b)),
        Expr::Unary(op, a) => Expr::Unary(*op, o(a)),
        Expr::Fma(a, b, c) => Expr::Fma(o(a), o(b), o(c)),
        Expr::Select(a, b, c) => Expr::Select(o(a), o(b), o(c)),
        Expr::Load { buf, index } => Expr::load(*buf, thread_index(*buf, index, expanded)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotune_ir::{printer, CmpOp, GpuAxis, NestBuilder};

    /// Each thread writes its id into shared memory, then (after a barrier) reads its neighbour's:
    /// without the split the last thread would read a slot nobody wrote yet.
    #[test]
    fn a_barrier_splits_the_thread_loop_and_registers_get_a_copy_per_thread() {
        let mut b = NestBuilder::new();
        let out = b.param("out", 8);
        let shared = b.buffer("s", 8, BufScope::Shared);
        let reg = b.buffer("r", 1, BufScope::Register);
        let t = b.var("t");
        let tv = || Expr::var(t);
        let body = vec![Stmt::Allocate {
            buf: shared,
            body: vec![Stmt::for_loop(
                t,
                Expr::int(0),
                Expr::int(8),
                LoopKind::GpuThread(GpuAxis::X),
                vec![Stmt::Allocate {
                    buf: reg,
                    body: vec![
                        Stmt::store(reg, Expr::int(0), Expr::float(10.0)),
                        Stmt::store(shared, tv(), Expr::float(1.0)),
                        Stmt::Barrier,
                        Stmt::store(
                            out,
                            tv(),
                            Expr::load(shared, (tv() + 1) % 8) + Expr::load(reg, Expr::int(0)),
                        ),
                    ],
                }],
            )],
        }];
        let nest = b.finish("neighbours", body);
        let host = gpu_nest_for_host(&nest).expect("splits");
        let text = printer::print(&host);
        assert_eq!(text.matches("for t in 0 +: 8").count(), 2, "{text}");
        assert!(!text.contains("barrier") && !text.contains("Shared"), "{text}");
        assert!(text.contains("r[(t*1 + 0)]"), "{text}");
        assert_eq!(host.buffers[reg.0 as usize].len, 8);
        let builder = crate::CpuBuilder::new(&crate::host_cpu_target(1).expect("host")).expect("builder");
        let kernel = builder.build(&host).expect("builds");
        let runtime = crate::HostRuntime::new(1).expect("runtime");
        let mut values = vec![0.0f32; 8];
        kernel.run(&runtime, &mut [&mut values]).expect("runs");
        assert_eq!(values, vec![11.0; 8]);
    }

    #[test]
    fn a_barrier_under_thread_dependent_control_flow_is_refused() {
        let mut b = NestBuilder::new();
        let t = b.var("t");
        let guarded = Stmt::If {
            cond: Expr::var(t).cmp(CmpOp::Lt, Expr::int(4)),
            then_body: vec![Stmt::Barrier],
            else_body: vec![],
        };
        let body = vec![Stmt::for_loop(
            t,
            Expr::int(0),
            Expr::int(8),
            LoopKind::GpuThread(GpuAxis::X),
            vec![guarded],
        )];
        let err = gpu_nest_for_host(&b.finish("divergent", body)).expect_err("divergent barrier");
        assert!(err.to_string().contains("depends on the thread"), "{err}");
    }
}
