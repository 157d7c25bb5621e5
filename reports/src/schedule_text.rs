//! A stored Trace made readable as a schedule: its decisions, the tiles they pick, and the loop
//! structure it lowers to (order, parallel, vectorized and unrolled loops).
//!
//! The loop structure comes from lowering the trace with this build's schedule space, so it is
//! exactly what the trace means, as long as the trial's space version is this build's; for any
//! other version only the raw decisions are shown, with a note.

use autotune_ir::{printer, BinOp, Expr, Loop, LoopKind, LoopNest, Stmt, Target, Task, Trace};
use autotune_schedules::space_for;

/// How a report shows one schedule.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ScheduleText {
    /// The sketch the trace fills in, e.g. `gemm_blocked`.
    pub sketch: String,
    /// The decisions in the sketch's order.
    pub decisions: Vec<(String, i64)>,
    /// Named facts about the schedule (tiles, packing, parallel, vectorized, unrolled), in reading
    /// order.
    pub facts: Vec<(String, String)>,
    /// The main loop nest, outermost first: at each level the branch holding the most nested
    /// loops (packing loops and edge-tile paths are left out).
    pub loop_order: Vec<String>,
    /// Why facts or loops are missing.
    pub note: Option<String>,
}

/// Describes the trace stored as `trace_json` under `space_version`, for `task` on `target` when
/// this build can read them.
pub(crate) fn describe(
    trace_json: &str,
    space_version: &str,
    task: Option<&Task>,
    target: Option<&Target>,
) -> ScheduleText {
    let trace = match Trace::from_json(trace_json) {
        Ok(trace) => trace,
        Err(error) => {
            return ScheduleText {
                note: Some(format!("the stored trace does not parse ({error}): {trace_json}")),
                ..ScheduleText::default()
            }
        }
    };
    let mut text = ScheduleText {
        sketch: trace.sketch.clone(),
        decisions: trace.decisions.iter().map(|decision| (decision.name.clone(), decision.value)).collect(),
        ..ScheduleText::default()
    };
    let (Some(task), Some(target)) = (task, target) else {
        text.note = Some("this build cannot read the task or target: raw decisions only".into());
        return text;
    };
    let vector_lanes = target.as_cpu().map(|cpu| i64::from(cpu.vector_lanes));
    text.facts.extend(tile_facts(&trace, vector_lanes));
    let space = match space_for(task, target) {
        Ok(space) => space,
        Err(error) => {
            text.note =
                Some(format!("this build has no schedule space for it ({error}): raw decisions only"));
            return text;
        }
    };
    if space.version() != space_version {
        text.note = Some(format!(
            "recorded under schedule space {space_version}; this build's is {}: raw decisions only",
            space.version()
        ));
        return text;
    }
    match space.lower(&trace) {
        Ok(program) => {
            // A loop that runs once (a 1×1 filter's taps) says nothing about the schedule.
            let chain: Vec<&Loop> = main_loop_chain(&program.kernel)
                .into_iter()
                .filter(|l| l.extent.as_int() != Some(1))
                .collect();
            text.loop_order = chain.iter().map(|l| loop_label(&program.kernel, l)).collect();
            text.facts.extend(loop_facts(&program.kernel, &chain));
            if !program.prepacks.is_empty() {
                text.facts.push((
                    "prepacked inputs".into(),
                    format!("{} (packed once, before the kernel runs)", program.prepacks.len()),
                ));
            }
        }
        Err(error) => text.note = Some(format!("the trace does not lower in this build: {error}")),
    }
    text
}

/// Tiles named by the decisions of the blocked GEMM sketches (`mr`, `nr_vecs`, `kc`, `mc_tiles`,
/// `nc_tiles`, `pack_a`, `pack_b`, `unroll_k`); nothing for a trace without them.
fn tile_facts(trace: &Trace, vector_lanes: Option<i64>) -> Vec<(String, String)> {
    let mut facts = Vec::new();
    let (Some(mr), Some(nr_vecs)) = (trace.get("mr"), trace.get("nr_vecs")) else { return facts };
    let nr = vector_lanes.map(|lanes| nr_vecs * lanes);
    facts.push((
        "register tile (mr × nr)".into(),
        match (nr, vector_lanes) {
            (Some(nr), Some(lanes)) => format!("{mr} × {nr} ({nr_vecs} vectors of {lanes} lanes)"),
            _ => format!("{mr} × {nr_vecs} vectors"),
        },
    ));
    if let (Some(kc), Some(mc_tiles), Some(nc_tiles), Some(nr)) =
        (trace.get("kc"), trace.get("mc_tiles"), trace.get("nc_tiles"), nr)
    {
        facts.push((
            "cache blocks (mc × nc × kc)".into(),
            format!("{} × {} × {kc}", mr * mc_tiles, nr * nc_tiles),
        ));
    }
    if let (Some(pack_a), Some(pack_b)) = (trace.get("pack_a"), trace.get("pack_b")) {
        let packed = match (pack_a != 0, pack_b != 0) {
            (true, true) => "A and B",
            (true, false) => "A only",
            (false, true) => "B only",
            (false, false) => "none",
        };
        facts.push(("packing".into(), packed.into()));
    }
    facts
}

/// The loops from the outermost inwards, following at each level the statement whose subtree
/// nests the most loops (the last one on a tie: packing comes before the compute it feeds), and
/// the fast path of a branch.
fn main_loop_chain(nest: &LoopNest) -> Vec<&Loop> {
    let mut chain = Vec::new();
    let mut body: &[Stmt] = &nest.body;
    loop {
        let deepest = body
            .iter()
            .map(|stmt| (loop_depth(stmt), stmt))
            .filter(|(depth, _)| *depth > 0)
            .reduce(|best, next| if next.0 >= best.0 { next } else { best });
        match deepest.map(|(_, stmt)| stmt) {
            Some(Stmt::For(l)) => {
                chain.push(l);
                body = &l.body;
            }
            Some(Stmt::Allocate { body: inner, .. }) => body = inner,
            Some(Stmt::If { then_body, else_body, .. }) => {
                body =
                    if loop_depth_of(then_body) >= loop_depth_of(else_body) { then_body } else { else_body }
            }
            Some(Stmt::Store { .. } | Stmt::Barrier | Stmt::Prefetch { .. }) | None => break,
        }
    }
    chain
}

fn loop_depth(stmt: &Stmt) -> usize {
    match stmt {
        Stmt::For(l) => 1 + loop_depth_of(&l.body),
        Stmt::Allocate { body, .. } => loop_depth_of(body),
        Stmt::If { then_body, else_body, .. } => loop_depth_of(then_body).max(loop_depth_of(else_body)),
        Stmt::Store { .. } | Stmt::Barrier | Stmt::Prefetch { .. } => 0,
    }
}

fn loop_depth_of(body: &[Stmt]) -> usize {
    body.iter().map(loop_depth).max().unwrap_or(0)
}

/// `jc ×4 parallel`, `k ×≤256 unrolled by 4`, `j ×16 vectorized`: the trip count, or its upper
/// bound when it depends on outer loops (edge blocks are shorter).
fn loop_label(nest: &LoopNest, l: &Loop) -> String {
    let extent = match (l.extent.as_int(), upper_bound(&l.extent)) {
        (Some(n), _) => format!("×{n}"),
        (None, Some(bound)) => format!("×≤{bound}"),
        (None, None) => format!("×({})", printer::expr(nest, &l.extent)),
    };
    let kind = match kind_name(l.kind) {
        Some(kind) => format!(" {kind}"),
        None => String::new(),
    };
    format!("{} {extent}{kind}", nest.var_name(l.var))
}

/// An upper bound of an integer extent, assuming (as in every nest the schedules emit) that loop
/// variables are non-negative; `None` when the expression is beyond this simple reasoning.
fn upper_bound(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Int(n) => Some(*n),
        Expr::Bin(op, a, b) => match op {
            BinOp::Min => match (upper_bound(a), upper_bound(b)) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            },
            BinOp::Max => Some(upper_bound(a)?.max(upper_bound(b)?)),
            BinOp::Add => Some(upper_bound(a)? + upper_bound(b)?),
            BinOp::Sub => Some(upper_bound(a)? - lower_bound(b)?),
            BinOp::Mul => Some(upper_bound(a)? * upper_bound(b)?),
            BinOp::Div => match b.as_int() {
                Some(d) if d > 0 => Some(upper_bound(a)?.div_euclid(d)),
                _ => None,
            },
            BinOp::Mod => None,
        },
        _ => None,
    }
}

/// A lower bound, with loop variables at least 0.
fn lower_bound(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Int(n) => Some(*n),
        Expr::Var(_) => Some(0),
        Expr::Bin(BinOp::Add, a, b) => Some(lower_bound(a)? + lower_bound(b)?),
        Expr::Bin(BinOp::Mul, a, b) => {
            let (x, y) = (lower_bound(a)?, lower_bound(b)?);
            (x >= 0 && y >= 0).then_some(x * y)
        }
        _ => None,
    }
}

fn kind_name(kind: LoopKind) -> Option<String> {
    match kind {
        LoopKind::Serial => None,
        LoopKind::UnrollBy(n) => Some(format!("unrolled by {n}")),
        LoopKind::Unrolled => Some("unrolled".into()),
        LoopKind::Vectorized => Some("vectorized".into()),
        LoopKind::Parallel => Some("parallel".into()),
        LoopKind::GpuBlock(axis) => Some(format!("GPU blocks {axis:?}")),
        LoopKind::GpuThread(axis) => Some(format!("GPU threads {axis:?}")),
    }
}

/// Which loops of the chain run in parallel, are vectorized, or unrolled.
fn loop_facts(nest: &LoopNest, chain: &[&Loop]) -> Vec<(String, String)> {
    let names = |wanted: fn(LoopKind) -> bool| -> String {
        let loops: Vec<String> =
            chain.iter().filter(|l| wanted(l.kind)).map(|l| loop_label(nest, l)).collect();
        if loops.is_empty() {
            "none".into()
        } else {
            loops.join(", ")
        }
    };
    vec![
        ("parallel".into(), names(|kind| matches!(kind, LoopKind::Parallel))),
        ("vectorized".into(), names(|kind| matches!(kind, LoopKind::Vectorized))),
        ("unrolled".into(), names(|kind| matches!(kind, LoopKind::Unrolled | LoopKind::UnrollBy(_)))),
    ]
}

#[cfg(test)]
mod tests {
    use autotune_ir::{CpuTarget, Expr, NestBuilder};

    use super::*;

    fn cpu(threads: u32) -> Target {
        Target::Cpu(CpuTarget {
            model_name: "Test CPU".into(),
            llvm_cpu: "x86-64-v4".into(),
            features: vec!["+avx2".into(), "+avx512f".into(), "+fma".into()],
            vector_lanes: 16,
            threads,
            restricted_to: None,
            caches: autotune_ir::CacheSizes::FALLBACK,
        })
    }

    #[test]
    fn the_chain_follows_the_deepest_branch_and_the_fast_path() {
        let mut b = NestBuilder::new();
        let out = b.param("C", 64);
        let (pack, outer, inner, lane, edge) =
            (b.var("pack"), b.var("jc"), b.var("k"), b.var("j"), b.var("je"));
        let store = |v| Stmt::store(out, Expr::var(v), Expr::Float(0.0));
        let fast = Stmt::for_loop(
            inner,
            Expr::int(0),
            Expr::int(8),
            LoopKind::UnrollBy(4),
            vec![Stmt::for_loop(lane, Expr::int(0), Expr::int(16), LoopKind::Vectorized, vec![store(lane)])],
        );
        let slow = Stmt::for_loop(edge, Expr::int(0), Expr::int(3), LoopKind::Serial, vec![store(edge)]);
        let body = vec![
            Stmt::for_loop(pack, Expr::int(0), Expr::int(4), LoopKind::Serial, vec![store(pack)]),
            Stmt::for_loop(
                outer,
                Expr::int(0),
                Expr::int(4),
                LoopKind::Parallel,
                vec![Stmt::If { cond: Expr::int(1), then_body: vec![fast], else_body: vec![slow] }],
            ),
        ];
        let nest = b.finish("test", body);
        let chain = main_loop_chain(&nest);
        let labels: Vec<String> = chain.iter().map(|l| loop_label(&nest, l)).collect();
        assert_eq!(labels, ["jc ×4 parallel", "k ×8 unrolled by 4", "j ×16 vectorized"]);
        let facts = loop_facts(&nest, &chain);
        assert_eq!(
            facts,
            [
                ("parallel".to_string(), "jc ×4 parallel".to_string()),
                ("vectorized".to_string(), "j ×16 vectorized".to_string()),
                ("unrolled".to_string(), "k ×8 unrolled by 4".to_string()),
            ]
        );
    }

    #[test]
    fn extents_that_depend_on_outer_loops_show_their_bound() {
        let mut b = NestBuilder::new();
        let ic = b.var("ic");
        // min(10, 64 − ic·10): 10 rows, fewer at the edge; (rows + 9) / 10 tiles of 10.
        let rows = Expr::int(10).min(Expr::int(64) - Expr::var(ic) * 10);
        assert_eq!(upper_bound(&rows), Some(10));
        assert_eq!(upper_bound(&(rows + 9).floor_div(Expr::int(10))), Some(1));
        assert_eq!(upper_bound(&(Expr::int(64) - Expr::var(ic))), Some(64));
        assert_eq!(upper_bound(&Expr::var(ic)), None);
    }

    #[test]
    fn the_default_matmul_schedule_reads_as_tiles_and_loops() {
        let task = Task::matmul(256, 256, 256);
        let target = cpu(2);
        let space = space_for(&task, &target).expect("matmul space");
        let trace = space.default_trace();
        let text = describe(&trace.canonical_json(), space.version(), Some(&task), Some(&target));
        assert_eq!(text.note, None);
        assert_eq!(text.sketch, trace.sketch);
        assert_eq!(text.decisions.len(), trace.decisions.len());
        let fact = |name: &str| text.facts.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert!(fact("register tile (mr × nr)").is_some_and(|tile| tile.contains("lanes")), "{text:?}");
        assert!(fact("parallel").is_some_and(|loops| loops.contains("parallel")), "{text:?}");
        assert!(fact("vectorized").is_some_and(|loops| loops.contains("vectorized")), "{text:?}");
        assert!(text.loop_order.len() >= 3, "{text:?}");
    }

    #[test]
    fn another_space_version_or_a_broken_trace_falls_back_to_what_is_known() {
        let task = Task::matmul(64, 64, 64);
        let target = cpu(1);
        let trace = space_for(&task, &target).expect("space").default_trace();
        let old = describe(&trace.canonical_json(), "matmul-cpu-v0", Some(&task), Some(&target));
        assert!(old.note.as_deref().is_some_and(|note| note.contains("matmul-cpu-v0")), "{old:?}");
        assert!(old.loop_order.is_empty());
        assert_eq!(old.decisions.len(), trace.decisions.len());

        let broken = describe("{not json", "v", Some(&task), Some(&target));
        assert!(broken.note.is_some() && broken.decisions.is_empty());
        let unknown = describe(&trace.canonical_json(), "v", None, None);
        assert!(unknown.note.is_some() && !unknown.decisions.is_empty());
    }
}
