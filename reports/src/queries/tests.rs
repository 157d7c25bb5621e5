use autotune_db::TrialStatus;
use autotune_ir::Task;

use super::*;
use crate::test_log::{cpu_target, failed, ok, TestLog};

/// Relative comparison for figures computed along different paths.
fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= 1e-12 * expected.abs().max(1e-300)
}

fn assert_close(actual: Option<f64>, expected: f64, what: &str) {
    let actual = actual.unwrap_or_else(|| panic!("{what} is missing, expected {expected}"));
    assert!(close(actual, expected), "{what}: {actual} != {expected}");
}

/// Two matmuls on one measured target: A has a measured default and several failures; B's
/// default failed to build.
fn two_task_log() -> (TestLog, Task, Task) {
    let mut log = TestLog::new(cpu_target(2));
    log.measure_machine(100.0, 10.0);
    let a = Task::matmul(64, 64, 64);
    let b = Task::matmul(32, 48, 16);
    let a_traces = log.other_traces(&a, 5, 1);
    let b_traces = log.other_traces(&b, 3, 2);

    let baseline = log.session("default");
    log.record(&a, baseline, "default", &[(log.default_trace(&a), ok(&[4e-3]))]);
    log.record(
        &b,
        baseline,
        "default",
        &[(log.default_trace(&b), failed(TrialStatus::BuildError, "default fails <to> build"))],
    );
    log.db.end_session(baseline).expect("end");

    let search = log.session("random");
    log.record(
        &a,
        search,
        "random",
        &[
            (a_traces[0].clone(), ok(&[2e-3, 2e-3, 3e-3])),
            (a_traces[1].clone(), failed(TrialStatus::WrongResult, "mismatch at C[3]")),
            (a_traces[2].clone(), ok(&[1e-3])),
            (a_traces[3].clone(), failed(TrialStatus::Timeout, "took longer than 10 s")),
            (a_traces[4].clone(), failed(TrialStatus::RunError, "")),
        ],
    );
    log.record(
        &b,
        search,
        "random",
        &[
            (b_traces[0].clone(), ok(&[5e-4])),
            (b_traces[1].clone(), ok(&[2.5e-4, 2.5e-4])),
            (b_traces[2].clone(), failed(TrialStatus::BuildError, "second build error")),
        ],
    );
    log.db.end_session(search).expect("end");
    (log, a, b)
}

#[test]
fn figures_match_values_computed_by_hand() {
    let (log, a, b) = two_task_log();
    let report = collect(&log.db, "two.tuning.db").expect("report");

    assert_eq!(report.source, "two.tuning.db");
    assert_eq!(
        report.totals,
        Totals { n_workloads: 2, n_sessions: 2, n_open_sessions: 0, n_trials: 10, n_errors: 5 }
    );
    assert_eq!(report.workloads, [a.description(), b.description()]);
    assert_eq!(report.strategies, ["default", "random"]);

    // A: 2·64³ FLOPs, best median 1 ms, default 4 ms; 3·64² floats of 4 bytes cross memory.
    let a_flops = 2.0 * 64.0 * 64.0 * 64.0;
    let a_gflops = a_flops / 1e-3 / 1e9;
    let a_intensity = a_flops / (3.0 * 64.0 * 64.0 * 4.0);
    let a_bound = 100.0_f64.min(a_intensity * 10.0);
    // B: 2·32·48·16 FLOPs, best median 0.25 ms; (32·16 + 16·48 + 32·48)·4 bytes.
    let b_flops = 2.0 * 32.0 * 48.0 * 16.0;
    let b_gflops = b_flops / 2.5e-4 / 1e9;
    let b_intensity = b_flops / ((32.0 * 16.0 + 16.0 * 48.0 + 32.0 * 48.0) * 4.0);
    let b_bound = 100.0_f64.min(b_intensity * 10.0);

    // A takes 1 ms of 1.25 ms, so it comes first.
    let numbers: Vec<usize> = report.tasks.iter().map(|task| task.number).collect();
    assert_eq!(numbers, [1, 2]);
    let (task_a, task_b) = (&report.tasks[0], &report.tasks[1]);
    assert_eq!((task_a.op.as_str(), task_a.shape.as_str()), ("matmul", "64x64x64 f32"));
    assert_eq!(task_a.weight, 1.0);
    assert_eq!(task_a.n_trials, 6);
    assert_close(task_a.best.as_ref().map(|best| best.median_s), 1e-3, "A best latency");
    assert_close(task_a.best.as_ref().map(|best| best.gflops), a_gflops, "A GFLOP/s");
    assert_close(task_a.intensity_flop_per_byte, a_intensity, "A intensity");
    assert_close(task_a.pct_of_peak, 100.0 * a_gflops / 100.0, "A % of peak");
    assert_close(task_a.roofline_bound_gflops, a_bound, "A roofline bound");
    assert_close(task_a.pct_of_roofline, 100.0 * a_gflops / a_bound, "A % of roofline");
    assert_close(task_a.speedup_over_default, 4.0, "A speedup");
    assert_close(task_a.share_of_total, 1e-3 / 1.25e-3, "A share");
    assert!(matches!(task_a.default, DefaultBaseline::Measured { median_s, .. } if close(median_s, 4e-3)));
    assert_eq!(task_a.best.as_ref().map(|best| best.strategy.as_str()), Some("random"));

    assert_close(task_b.best.as_ref().map(|best| best.gflops), b_gflops, "B GFLOP/s");
    assert_close(task_b.pct_of_roofline, 100.0 * b_gflops / b_bound, "B % of roofline");
    assert_close(task_b.share_of_total, 2.5e-4 / 1.25e-3, "B share");
    assert_eq!(task_b.default, DefaultBaseline::Failed { status: TrialStatus::BuildError });
    assert_eq!(task_b.speedup_over_default, None);

    let counts: Vec<usize> = task_a.status_counts.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, [3, 0, 1, 1, 1], "ok, build_error, run_error, wrong_result, timeout");
    let a_errors: Vec<(TrialStatus, &str)> =
        task_a.first_errors.iter().map(|error| (error.status, error.text.as_str())).collect();
    assert_eq!(
        a_errors,
        [
            (TrialStatus::RunError, ""),
            (TrialStatus::WrongResult, "mismatch at C[3]"),
            (TrialStatus::Timeout, "took longer than 10 s")
        ]
    );
    let b_errors: Vec<(TrialStatus, &str)> =
        task_b.first_errors.iter().map(|error| (error.status, error.text.as_str())).collect();
    assert_eq!(b_errors, [(TrialStatus::BuildError, "default fails <to> build")], "the first, not the last");

    // End to end: only A has both a default and a best; both are tuned.
    let target = &report.targets[0];
    assert_eq!((target.latency.n_tasks, target.latency.n_tuned), (2, 2));
    assert_close(target.latency.tuned_s, 1.25e-3, "tuned total");
    let comparison = target.latency.comparison.as_ref().expect("A compares");
    assert_eq!(comparison.n_tasks, 1);
    assert!(close(comparison.untuned_s, 4e-3) && close(comparison.tuned_s, 1e-3), "{comparison:?}");
    assert!(close(comparison.speedup(), 4.0));

    assert_eq!(target.peak_gflops.as_ref().map(|m| m.value), Some(100.0));
    assert_eq!(target.bandwidth_gbs.as_ref().map(|m| m.value), Some(10.0));
    assert_eq!(
        (target.threads, target.vector_lanes, target.llvm_cpu.as_deref()),
        (2, Some(16), Some("x86-64-v4"))
    );
    assert_eq!(target.features, ["avx2", "avx512f", "fma", "sse4.2"], "enabled features only, without `+`");

    let sessions: Vec<(i64, &str, usize, usize)> = report
        .sessions
        .iter()
        .map(|session| (session.id, session.strategy.as_str(), session.n_trials, session.n_errors))
        .collect();
    assert_eq!(sessions, [(1, "default", 2, 1), (2, "random", 8, 4)]);
}

#[test]
fn convergence_marks_each_new_best_with_the_strategy_that_found_it() {
    let (log, _, _) = two_task_log();
    let report = collect(&log.db, "two.tuning.db").expect("report");
    let task_a = report.tasks.iter().find(|task| task.number == 1).expect("task A");
    let flops = 2.0 * 64.0 * 64.0 * 64.0;
    let points: Vec<(usize, Option<f64>, bool, &str)> = task_a
        .convergence
        .iter()
        .map(|point| (point.trial_number, point.gflops, point.improved, point.strategy.as_str()))
        .collect();
    assert_eq!(
        points,
        [
            (1, Some(flops / 4e-3 / 1e9), true, "default"),
            (2, Some(flops / 2e-3 / 1e9), true, "random"),
            (3, None, false, "random"),
            (4, Some(flops / 1e-3 / 1e9), true, "random"),
            (5, None, false, "random"),
            (6, None, false, "random"),
        ]
    );
    let best: Vec<Option<f64>> = task_a.convergence.iter().map(|point| point.best_gflops).collect();
    assert_eq!(best.last().copied().flatten(), Some(flops / 1e-3 / 1e9));
    assert!(best.windows(2).all(|pair| pair[0] <= pair[1]), "the best never drops: {best:?}");
    assert!(task_a.convergence.iter().all(|point| point.tuning_time_s.is_some_and(|t| t >= 0.0)));
}

#[test]
fn the_best_trial_agrees_with_the_log_and_its_schedule_is_readable() {
    let (log, a, b) = two_task_log();
    let report = collect(&log.db, "two.tuning.db").expect("report");
    for task in [&a, &b] {
        let from_log = log.db.best(&task.key().0, &log.target.key(), 1).expect("best")[0].clone();
        let summary = report.tasks.iter().find(|summary| summary.task_key == task.key().0).expect("task");
        let best = summary.best.as_ref().expect("best");
        assert_eq!(best.trial_id, from_log.id.0);
        assert_eq!(Some(best.median_s), from_log.median_s);
        assert_eq!(best.schedule.note, None, "{:?}", best.schedule);
        assert!(!best.schedule.loop_order.is_empty() && !best.schedule.decisions.is_empty());
    }
}

#[test]
fn a_log_without_measurements_or_default_says_what_is_missing() {
    let mut log = TestLog::new(cpu_target(1));
    let task = Task::matmul(40, 24, 8);
    let traces = log.other_traces(&task, 2, 3);
    // Still running: begun, never ended.
    let session = log.session("random");
    log.record(
        &task,
        session,
        "random",
        &[(traces[0].clone(), ok(&[1e-4])), (traces[1].clone(), ok(&[2e-4]))],
    );

    let report = collect(&log.db, "running.db").expect("report of a running session");
    assert_eq!(report.totals.n_open_sessions, 1);
    assert_eq!(report.sessions[0].ended_at, None);
    let task = &report.tasks[0];
    assert_eq!(task.default, DefaultBaseline::NotMeasured);
    assert_eq!((task.pct_of_peak, task.pct_of_roofline, task.speedup_over_default), (None, None, None));
    assert_close(task.share_of_total, 1.0, "the only task");
    let target = &report.targets[0];
    assert!(target.peak_gflops.is_none() && target.bandwidth_gbs.is_none());
    assert_eq!(target.latency.comparison, None);
    assert_close(target.latency.tuned_s, 1e-4, "tuned total");
}

#[test]
fn an_empty_log_gives_an_empty_report() {
    let log = TestLog::new(cpu_target(1));
    let report = collect(&log.db, "empty.db").expect("report");
    assert!(report.tasks.is_empty() && report.sessions.is_empty());
    assert_eq!(report.totals.n_trials, 0);
    assert_eq!(report.targets.len(), 1);
}

#[test]
fn a_model_weighs_its_tasks_by_their_calls_per_run() {
    let (log, a, b) = two_task_log();
    let mut report = collect(&log.db, "two.tuning.db").expect("report");
    assert_eq!(report.model, None);
    // The model runs B eight times per inference and A once, plus a task the log never tuned.
    let calls = HashMap::from([(b.key().0, 8.0), (a.key().0, 1.0), ("untuned-task".to_string(), 2.0)]);
    report.weigh_by_model("net.onnx", &calls);

    let model = report.model.as_ref().expect("weighed");
    assert_eq!((model.model.as_str(), model.calls_per_run), ("net.onnx", 11.0));
    assert_eq!((model.n_model_tasks_not_in_log, model.n_log_tasks_not_in_model), (1, 0));
    // B now takes 8 × 0.25 ms of 3 ms, so it comes first.
    let numbers: Vec<usize> = report.tasks.iter().map(|task| task.number).collect();
    assert_eq!(numbers, [2, 1]);
    assert_eq!((report.tasks[0].weight, report.tasks[1].weight), (8.0, 1.0));
    assert_close(report.tasks[0].share_of_total, 2e-3 / 3e-3, "B share");
    assert_close(report.tasks[1].share_of_total, 1e-3 / 3e-3, "A share");
    let latency = &report.targets[0].latency;
    assert_close(latency.tuned_s, 3e-3, "tuned total: 1 × 1 ms + 8 × 0.25 ms");
    let comparison = latency.comparison.as_ref().expect("A compares");
    assert!(close(comparison.untuned_s, 4e-3) && close(comparison.tuned_s, 1e-3), "only A has a default");

    // A model that runs only A: B weighs nothing and takes no share.
    let mut only_a = collect(&log.db, "two.tuning.db").expect("report");
    only_a.weigh_by_model("a.onnx", &HashMap::from([(a.key().0, 3.0)]));
    assert_eq!(only_a.model.as_ref().map(|m| m.n_log_tasks_not_in_model), Some(1));
    assert_close(only_a.targets[0].latency.tuned_s, 3e-3, "3 × 1 ms");
    let b_row = only_a.tasks.iter().find(|task| task.number == 2).expect("B");
    assert_eq!(b_row.weight, 0.0);
    assert_close(b_row.share_of_total, 0.0, "B share");
}
