//! The plan on a small model built in code (no Python needed): tuned and untuned kernels agree,
//! memory planning and threads do not change results, the first kernels match the naive
//! reference, constants can be swapped without compiling, and bad inputs are errors that leave
//! the plan usable.

#[path = "support/small_model.rs"]
mod small_model;
#[path = "support/trials.rs"]
mod trials;

use autotune_codegen::{cpu_target_at, host_cpu_target, host_isa_levels};
use autotune_db::Database;
use autotune_graph::{load_bytes, Graph, LoadConfig, NodeKind};
use autotune_ir::{CpuTarget, IsaLevel, Target};
use autotune_runtime::{DefaultReason, KernelSource, Plan, PlanConfig, RuntimeError};

fn graph(seed: u64) -> Graph {
    load_bytes(&small_model::bytes(seed), "small", &LoadConfig::default()).expect("the small model loads")
}

fn target(threads: u32) -> Target {
    host_cpu_target(threads).expect("host target")
}

fn run(plan: &mut Plan, input: &[f32]) -> Vec<(String, Vec<f32>)> {
    plan.run(&[(small_model::INPUT, input)]).expect("runs")
}

/// |a − b| ≤ atol + rtol·|b| everywhere; returns the largest |a − b|.
fn assert_close(what: &str, actual: &[f32], expected: &[f32], rtol: f32, atol: f32) -> f32 {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    let mut worst = 0f32;
    for (i, (&a, &b)) in actual.iter().zip(expected).enumerate() {
        let err = (a - b).abs();
        assert!(err <= atol + rtol * b.abs(), "{what}[{i}]: {a} vs {b}");
        worst = worst.max(err);
    }
    worst
}

#[test]
fn tuned_and_untuned_plans_give_the_same_outputs() {
    let g = graph(1);
    let t = target(1);
    let mut untuned = Plan::new(&g, None, &t, PlanConfig::default()).expect("plan");
    assert_eq!((untuned.n_kernels(), untuned.n_tuned(), untuned.n_default()), (5, 0, 5));
    assert!(untuned.tasks().iter().all(|k| k.source == KernelSource::Default(DefaultReason::NoLog)));

    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(&dir.path().join("small.tuning.db")).expect("db");
    let traces = trials::write_trials(&mut db, &g, &t, false);
    let mut tuned = Plan::new(&g, Some(&db), &t, PlanConfig::default()).expect("tuned plan");
    assert_eq!((tuned.n_kernels(), tuned.n_tuned(), tuned.n_default()), (5, 5, 0));
    assert_eq!(tuned.untuned_tasks().count(), 0);
    for ((task, trace), kernel) in traces.iter().zip(tuned.tasks()) {
        assert_eq!(kernel.task.key(), task.key());
        match &kernel.source {
            KernelSource::Tuned { trace: used, .. } => assert_eq!(used, trace, "{}", task.description()),
            other => panic!("{}: {other:?}", task.description()),
        }
    }
    let x = small_model::input(3);
    let (a, b) = (run(&mut untuned, &x), run(&mut tuned, &x));
    for ((name, got), (_, want)) in b.iter().zip(&a) {
        let err = assert_close(name, got, want, 1e-4, 1e-6);
        println!("{name}: tuned vs default max |err| {err:.2e}");
    }

    // Trials of another thread count are not this target's; trials of another space version
    // no longer replay.
    let two = target(2);
    let other = Plan::new(&g, Some(&db), &two, PlanConfig::default()).expect("plan");
    assert!(other.tasks().iter().all(|k| k.source == KernelSource::Default(DefaultReason::NotTuned)));
    let mut stale_db = Database::open(&dir.path().join("stale.tuning.db")).expect("db");
    trials::write_trials(&mut stale_db, &g, &t, true);
    let stale = Plan::new(&g, Some(&stale_db), &t, PlanConfig::default()).expect("plan");
    assert_eq!(stale.n_tuned(), 0);
    assert!(stale
        .tasks()
        .iter()
        .all(|k| matches!(&k.source, KernelSource::Default(DefaultReason::Stale { .. }))));
}

/// A log tuned on an AVX-512 machine, run where only AVX2 (or less) may be used: none of its
/// kernels runs (they would be illegal instructions on a fleet machine), every task says what the
/// target lacks, and the default schedules compute the same outputs. The AVX-512 target is a
/// generic one, so this holds on any host: its trials are never built here.
#[test]
fn kernels_tuned_for_a_wider_isa_are_never_run_and_say_what_is_missing() {
    let g = graph(1);
    let wide = Target::Cpu(CpuTarget::generic(IsaLevel::Avx512, 1));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(&dir.path().join("avx512.tuning.db")).expect("db");
    trials::write_trials(&mut db, &g, &wide, false);

    let host_level = host_isa_levels().expect("levels")[0];
    let narrow = cpu_target_at(Some(host_level.min(IsaLevel::Avx2)), 1).expect("narrowed host");
    let mut plan = Plan::new(&g, Some(&db), &narrow, PlanConfig::default()).expect("plan");
    assert_eq!(plan.n_tuned(), 0);
    for kernel in plan.tasks() {
        match &kernel.source {
            KernelSource::Default(reason @ DefaultReason::CannotRun { missing, .. }) => {
                assert!(missing.iter().any(|f| f == "avx512f"), "{missing:?}");
                assert!(reason.to_string().contains("that this target lacks"), "{reason}");
            }
            other => panic!("{}: {other:?}", kernel.task.description()),
        }
    }
    let mut untuned = Plan::new(&g, None, &narrow, PlanConfig::default()).expect("plan");
    let x = small_model::input(5);
    for ((name, got), (_, want)) in run(&mut plan, &x).iter().zip(&run(&mut untuned, &x)) {
        assert_close(name, got, want, 0.0, 0.0);
    }
}

#[test]
fn memory_planning_and_threads_do_not_change_results() {
    let g = graph(2);
    let x = small_model::input(5);
    let mut planned = Plan::new(&g, None, &target(1), PlanConfig::default()).expect("plan");
    let own = PlanConfig { reuse_buffers: false, parallel_build: false, concat_in_place: false };
    let mut separate = Plan::new(&g, None, &target(1), own).expect("plan");
    let reference = run(&mut separate, &x);
    assert_eq!(run(&mut planned, &x), reference, "buffer reuse changed the outputs");
    assert_eq!(run(&mut planned, &x), reference, "a second run differs");
    // A plan that consumes its graph (freeing weights as it packs them) computes the same.
    let mut consumed = Plan::from_graph(graph(2), None, &target(1), PlanConfig::default()).expect("plan");
    assert_eq!(run(&mut consumed, &x), reference, "from_graph differs");
    let m = planned.memory();
    println!("{m:?}");
    assert!(m.activation_bytes < m.activation_bytes_without_reuse, "{m:?}");
    assert!(m.peak_live_bytes <= m.activation_bytes, "{m:?}");
    assert_eq!(separate.memory().activation_bytes, separate.memory().activation_bytes_without_reuse);

    let mut two = Plan::new(&g, None, &target(2), PlanConfig::default()).expect("plan");
    assert_eq!(two.threads(), 2);
    for ((name, got), (_, want)) in run(&mut two, &x).iter().zip(&reference) {
        assert_close(name, got, want, 1e-5, 1e-7);
    }
}

#[test]
fn the_first_kernels_match_the_naive_reference() {
    // `pooled` (an output) is conv + bias + relu, then max pool: check it with ir::reference.
    let g = graph(3);
    let x = small_model::input(7);
    let mut plan = Plan::new(&g, None, &target(1), PlanConfig::default()).expect("plan");
    let outputs = run(&mut plan, &x);
    let mut value = x.clone();
    for node in g.nodes.iter().take(2) {
        let NodeKind::Kernel(task) = &node.kind else { panic!("{} is not a kernel", node.name) };
        let mut inputs = vec![value.clone()];
        inputs.extend(node.inputs[1..].iter().map(|t| g.constant(*t).expect("constant").to_f32()));
        value = autotune_ir::reference::run(task, &inputs).remove(0);
    }
    let pooled = &outputs.iter().find(|(n, _)| n == "pooled").expect("pooled output").1;
    assert_close("pooled", pooled, &value, 1e-5, 1e-6);
    let y = &outputs.iter().find(|(n, _)| n == "y").expect("y output").1;
    assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-5, "softmax sums to 1: {y:?}");
}

#[test]
fn constants_can_be_swapped_without_compiling() {
    let x = small_model::input(1);
    let mut plan = Plan::new(&graph(1), None, &target(1), PlanConfig::default()).expect("plan");
    let before = run(&mut plan, &x);
    let other = graph(2);
    plan.load_constants(&other).expect("same structure");
    let mut fresh = Plan::new(&other, None, &target(1), PlanConfig::default()).expect("plan");
    let swapped = run(&mut plan, &x);
    assert_eq!(swapped, run(&mut fresh, &x));
    assert_ne!(swapped, before);

    let mut different = graph(1);
    different.nodes.pop();
    match plan.load_constants(&different) {
        Err(RuntimeError::StructureMismatch { .. }) => {}
        other => panic!("expected a structure mismatch, got {other:?}"),
    }
}

#[test]
fn bad_inputs_are_errors_and_the_plan_stays_usable() {
    let mut plan = Plan::new(&graph(1), None, &target(1), PlanConfig::default()).expect("plan");
    let x = small_model::input(1);
    let inputs = plan.inputs();
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].shape, small_model::INPUT_SHAPE.to_vec());
    let names: Vec<String> = plan.outputs().into_iter().map(|o| o.name).collect();
    assert_eq!(names, ["y", "pooled"]);
    type Inputs<'a> = &'a [(&'a str, &'a [f32])];
    let cases: [(Inputs, &str); 4] = [
        (&[], "missing model input `x`"),
        (&[("x", &x[1..])], "has 191 values"),
        (&[("x", &x), ("z", &x)], "`z` is not an input"),
        (&[("x", &x), ("x", &x)], "`x` is not an input of the model, or is given twice"),
    ];
    for (given, needle) in cases {
        let err = plan.run(given).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(needle), "{err}");
    }
    let good = run(&mut plan, &x);
    assert_eq!(good, run(&mut plan, &x));
}
