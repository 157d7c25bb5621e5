//! A static walk of a [`LoopNest`] that estimates how often each statement runs and what memory
//! each loop touches: the raw material of the [features](crate::features).
//!
//! Loop extents and `if` conditions may depend on enclosing loop variables (edge tiles:
//! `min(step, dim − origin)`, `row0 + mr ≤ m`). Instead of symbolic analysis, the walk carries a
//! fixed set of sample points of the enclosing iteration space: each loop gives every sample a
//! pseudo-random iteration (deterministic), an extent is averaged over the samples that reach it,
//! and an `if` splits the samples by its condition, so a branch taken by 1 tile in 8 gets weight
//! 1/8. Everything is deterministic: the same nest always gives the same numbers.

use autotune_ir::{BinOp, BufScope, CmpOp, Expr, LoopKind, LoopNest, Stmt};

/// Sample points carried through the walk (a power of two, see [`stratum`]). More samples: finer
/// branch fractions, slower walk.
const N_SAMPLES: usize = 64;

/// One `for` loop of the nest.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopInfo {
    pub var: u32,
    pub kind: LoopKind,
    /// Trip count averaged over the sample points that reach the loop.
    pub mean_extent: f64,
    /// Expected executions of the loop statement itself per kernel call.
    pub entries: f64,
}

/// One memory access of a store statement (the store itself, or a load in its value).
#[derive(Clone, Debug, PartialEq)]
pub struct Access {
    pub buf: u32,
    pub is_write: bool,
    /// `index(v + 1) − index(v)` for each loop of the statement's path (outermost first), at a
    /// representative iteration: the stride of the access along that loop, in elements.
    pub strides: Vec<i64>,
}

/// One store statement with its context.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreInfo {
    pub buf: u32,
    /// Indices into [`NestAnalysis::loops`] of the enclosing loops, outermost first.
    pub path: Vec<usize>,
    /// Expected executions per kernel call (scalar: a vectorized loop counts its lanes).
    pub executions: f64,
    /// Floating-point operations per execution (a fused multiply-add counts 2).
    pub flops: f64,
    /// The stored value is a plain load or a constant (packing, zero fill).
    pub is_copy: bool,
    pub accesses: Vec<Access>,
}

/// Everything the features are computed from.
#[derive(Clone, Debug, PartialEq)]
pub struct NestAnalysis {
    pub loops: Vec<LoopInfo>,
    pub stores: Vec<StoreInfo>,
    /// Expected executions per call of `if` statements.
    pub branch_evaluations: f64,
    /// Expected executions per call of `Allocate` statements of heap buffers.
    pub heap_allocations: f64,
    /// Expected executions per call of `Prefetch` statements (cache lines fetched ahead).
    pub prefetches: f64,
}

impl NestAnalysis {
    pub fn of(nest: &LoopNest) -> NestAnalysis {
        let mut walker = Walker {
            nest,
            samples: vec![vec![0; nest.var_names.len()]; N_SAMPLES],
            loops: Vec::new(),
            stores: Vec::new(),
            path: Vec::new(),
            branch_evaluations: 0.0,
            heap_allocations: 0.0,
            prefetches: 0.0,
        };
        let active: Vec<usize> = (0..N_SAMPLES).collect();
        walker.walk(&nest.body, &active, 1.0);
        NestAnalysis {
            loops: walker.loops,
            stores: walker.stores,
            branch_evaluations: walker.branch_evaluations,
            heap_allocations: walker.heap_allocations,
            prefetches: walker.prefetches,
        }
    }
}

struct Walker<'a> {
    nest: &'a LoopNest,
    /// Per sample point, the current value of every loop variable.
    samples: Vec<Vec<i64>>,
    loops: Vec<LoopInfo>,
    stores: Vec<StoreInfo>,
    path: Vec<usize>,
    branch_evaluations: f64,
    heap_allocations: f64,
    prefetches: f64,
}

impl Walker<'_> {
    fn walk(&mut self, body: &[Stmt], active: &[usize], weight: f64) {
        if active.is_empty() || weight <= 0.0 {
            return;
        }
        for stmt in body {
            match stmt {
                Stmt::For(l) => {
                    let loop_salt = salt(u64::from(l.var.0), self.loops.len() as u64);
                    let mut sum = 0.0;
                    let mut inside = Vec::with_capacity(active.len());
                    for &s in active {
                        let min = eval(&l.min, &self.samples[s]);
                        let extent = eval(&l.extent, &self.samples[s]).max(0);
                        sum += extent as f64;
                        if extent > 0 {
                            let pick = (stratum(s, loop_salt) * extent as f64) as i64;
                            self.samples[s][l.var.0 as usize] = min + pick.min(extent - 1);
                            inside.push(s);
                        }
                    }
                    let mean_extent = sum / active.len() as f64;
                    self.loops.push(LoopInfo { var: l.var.0, kind: l.kind, mean_extent, entries: weight });
                    self.path.push(self.loops.len() - 1);
                    self.walk(&l.body, &inside, weight * mean_extent);
                    self.path.pop();
                }
                Stmt::If { cond, then_body, else_body } => {
                    self.branch_evaluations += weight;
                    let (taken, not_taken): (Vec<usize>, Vec<usize>) =
                        active.iter().partition(|&&s| eval(cond, &self.samples[s]) != 0);
                    let p = taken.len() as f64 / active.len() as f64;
                    self.walk(then_body, &taken, weight * p);
                    self.walk(else_body, &not_taken, weight * (1.0 - p));
                }
                // A block-wide wait: no work of its own; the features see GPU nests by their loops.
                Stmt::Barrier => {}
                Stmt::Prefetch { .. } => self.prefetches += weight,
                Stmt::Allocate { buf, body } => {
                    if self.nest.buffers.get(buf.0 as usize).map(|b| b.scope) == Some(BufScope::Heap) {
                        self.heap_allocations += weight;
                    }
                    self.walk(body, active, weight);
                }
                Stmt::Store { buf, index, value } => {
                    let representative = &self.samples[active[0]];
                    let mut accesses = vec![self.access(buf.0, index, true, representative)];
                    collect_loads(value, &mut |load_buf, load_index| {
                        accesses.push(self.access(load_buf, load_index, false, representative));
                    });
                    self.stores.push(StoreInfo {
                        buf: buf.0,
                        path: self.path.clone(),
                        executions: weight,
                        flops: float_ops(value),
                        is_copy: matches!(value, Expr::Load { .. } | Expr::Float(_)),
                        accesses,
                    });
                }
            }
        }
    }

    fn access(&self, buf: u32, index: &Expr, is_write: bool, at: &[i64]) -> Access {
        let base = eval(index, at);
        let mut shifted = at.to_vec();
        let strides = self
            .path
            .iter()
            .map(|&loop_idx| {
                let var = self.loops[loop_idx].var as usize;
                shifted[var] += 1;
                let stride = eval(index, &shifted).wrapping_sub(base);
                shifted[var] -= 1;
                stride
            })
            .collect();
        Access { buf, is_write, strides }
    }
}

/// Calls `f(buffer, index)` for every load in a value expression (not inside indices).
fn collect_loads(e: &Expr, f: &mut dyn FnMut(u32, &Expr)) {
    match e {
        Expr::Load { buf, index } => f(buf.0, index),
        Expr::Bin(_, a, b) | Expr::Cmp(_, a, b) | Expr::And(a, b) => {
            collect_loads(a, f);
            collect_loads(b, f);
        }
        Expr::Fma(a, b, c) | Expr::Select(a, b, c) => {
            collect_loads(a, f);
            collect_loads(b, f);
            collect_loads(c, f);
        }
        Expr::Unary(_, a) => collect_loads(a, f),
        Expr::Int(_) | Expr::Float(_) | Expr::Var(_) => {}
    }
}

/// Floating-point operations of a value expression (an FMA counts 2; index arithmetic is free).
fn float_ops(e: &Expr) -> f64 {
    match e {
        Expr::Fma(a, b, c) => 2.0 + float_ops(a) + float_ops(b) + float_ops(c),
        Expr::Bin(_, a, b) => 1.0 + float_ops(a) + float_ops(b),
        Expr::Unary(_, a) => 1.0 + float_ops(a),
        Expr::Select(_, a, b) => float_ops(a) + float_ops(b),
        Expr::Load { .. } | Expr::Int(_) | Expr::Float(_) | Expr::Var(_) | Expr::Cmp(..) | Expr::And(..) => {
            0.0
        }
    }
}

/// Integer value of an index or condition expression; float parts count as 0.
pub(crate) fn eval(e: &Expr, vars: &[i64]) -> i64 {
    match e {
        Expr::Int(v) => *v,
        Expr::Var(v) => vars.get(v.0 as usize).copied().unwrap_or(0),
        Expr::Bin(op, a, b) => {
            let (a, b) = (eval(a, vars), eval(b, vars));
            match op {
                BinOp::Add => a.wrapping_add(b),
                BinOp::Sub => a.wrapping_sub(b),
                BinOp::Mul => a.wrapping_mul(b),
                BinOp::Div if b != 0 => a.div_euclid(b),
                BinOp::Mod if b != 0 => a.rem_euclid(b),
                BinOp::Div | BinOp::Mod => 0,
                BinOp::Min => a.min(b),
                BinOp::Max => a.max(b),
            }
        }
        Expr::Cmp(op, a, b) => {
            let (a, b) = (eval(a, vars), eval(b, vars));
            i64::from(match op {
                CmpOp::Lt => a < b,
                CmpOp::Le => a <= b,
                CmpOp::Eq => a == b,
                CmpOp::Ne => a != b,
                CmpOp::Ge => a >= b,
                CmpOp::Gt => a > b,
            })
        }
        Expr::And(a, b) => i64::from(eval(a, vars) != 0 && eval(b, vars) != 0),
        Expr::Select(c, a, b) => {
            if eval(c, vars) != 0 {
                eval(a, vars)
            } else {
                eval(b, vars)
            }
        }
        Expr::Float(_) | Expr::Fma(..) | Expr::Load { .. } | Expr::Unary(..) => 0,
    }
}

/// A per-loop pseudo-random value (SplitMix64 finaliser), so different loops stratify their
/// samples in unrelated orders.
fn salt(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where sample `s` falls in `[0, 1)` for a loop with this salt: stratified, one sample per
/// stratum `k / N_SAMPLES`, the strata permuted per loop (an odd multiplier is a bijection
/// modulo a power of two). Each iteration value of a loop is hit equally often, so a branch
/// taken by 1 tile in 11 gets close to 1/11 of the weight.
fn stratum(s: usize, salt: u64) -> f64 {
    let n = N_SAMPLES as u64;
    let permuted = (s as u64).wrapping_mul(salt | 1).wrapping_add(salt >> 32) % n;
    (permuted as f64 + 0.5) / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotune_ir::NestBuilder;

    /// for i in 0..10 { if i < 3 { C[i] = A[i] * B[i] } else { C[i] = 0 } }
    #[test]
    fn branch_weights_follow_the_condition() {
        let mut b = NestBuilder::new();
        let a = b.param("A", 10);
        let bb = b.param("B", 10);
        let c = b.param("C", 10);
        let i = b.var("i");
        let body = vec![Stmt::for_loop(
            i,
            Expr::int(0),
            Expr::int(10),
            LoopKind::Serial,
            vec![Stmt::If {
                cond: Expr::var(i).cmp(CmpOp::Lt, Expr::int(3)),
                then_body: vec![Stmt::store(
                    c,
                    Expr::var(i),
                    Expr::Bin(
                        BinOp::Mul,
                        Box::new(Expr::load(a, Expr::var(i))),
                        Box::new(Expr::load(bb, Expr::var(i))),
                    ),
                )],
                else_body: vec![Stmt::store(c, Expr::var(i), Expr::Float(0.0))],
            }],
        )];
        let nest = b.finish("t", body);
        let analysis = NestAnalysis::of(&nest);
        assert_eq!(analysis.loops.len(), 1);
        assert_eq!(analysis.loops[0].mean_extent, 10.0);
        let [mul, zero] = &analysis.stores[..] else { panic!("two stores: {:?}", analysis.stores) };
        assert_eq!(mul.flops, 1.0);
        assert!(zero.is_copy && !mul.is_copy);
        // Stratified samples of i in 0..10: close to 3 of 10 iterations take the then-branch.
        assert!((mul.executions + zero.executions - 10.0).abs() < 1e-9);
        assert!((mul.executions - 3.0).abs() < 0.2, "{}", mul.executions);
        assert_eq!(mul.accesses.len(), 3);
        assert!(mul.accesses.iter().all(|access| access.strides == vec![1]));
        assert_eq!(analysis.branch_evaluations, 10.0);
    }

    #[test]
    fn extents_depending_on_outer_loops_are_averaged() {
        // for o in 0..4 { for i in 0..min(3, 10 - 3·o) { C[3·o + i] = 1 } }: extents 3,3,3,1.
        let mut b = NestBuilder::new();
        let c = b.param("C", 10);
        let (o, i) = (b.var("o"), b.var("i"));
        let inner_extent = Expr::int(3).min(Expr::int(10) - Expr::var(o) * 3);
        let body = vec![Stmt::for_loop(
            o,
            Expr::int(0),
            Expr::int(4),
            LoopKind::Serial,
            vec![Stmt::for_loop(
                i,
                Expr::int(0),
                inner_extent,
                LoopKind::Serial,
                vec![Stmt::store(c, Expr::var(o) * 3 + Expr::var(i), Expr::Float(1.0))],
            )],
        )];
        let analysis = NestAnalysis::of(&b.finish("t", body));
        let inner = &analysis.loops[1];
        assert!(inner.mean_extent > 1.0 && inner.mean_extent <= 3.0, "{inner:?}");
        assert_eq!(inner.entries, 4.0);
        assert_eq!(analysis.stores[0].accesses[0].strides, vec![3, 1]);
    }

    #[test]
    fn eval_handles_division_by_zero_and_selects() {
        let vars = [5, 0];
        let x = Expr::var(autotune_ir::VarId(0));
        let zero = Expr::var(autotune_ir::VarId(1));
        assert_eq!(eval(&x.clone().floor_div(zero.clone()), &vars), 0);
        assert_eq!(eval(&(x.clone() % 3), &vars), 2);
        assert_eq!(eval(&Expr::select(zero.cmp(CmpOp::Eq, Expr::int(0)), x, Expr::int(9)), &vars), 5);
    }

    #[test]
    fn strata_cover_the_unit_interval_once_each() {
        for salt_value in [0, 1, salt(7, 3), u64::MAX] {
            let mut picks: Vec<f64> = (0..N_SAMPLES).map(|s| stratum(s, salt_value)).collect();
            picks.sort_by(f64::total_cmp);
            for (k, pick) in picks.iter().enumerate() {
                assert!((pick - (k as f64 + 0.5) / N_SAMPLES as f64).abs() < 1e-12, "salt {salt_value}");
            }
        }
    }
}
