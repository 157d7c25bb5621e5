use autotune_db::TrialStatus;
use autotune_ir::Task;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::model::ProfiledWork;
use crate::queries::collect;
use crate::test_log::{cpu_target, failed, ok, TestLog};

#[test]
fn escapes_every_character_that_could_open_markup() {
    assert_eq!(
        escape(r#"<script>alert("x" & 'y')</script>"#),
        "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
    );
    assert_eq!(escape("matmul 64x64x64 f32"), "matmul 64x64x64 f32");
}

#[test]
fn long_error_texts_are_cut_and_say_so() {
    assert_eq!(truncate("short", 10), "short");
    let cut = truncate(&"é".repeat(15), 10);
    assert!(cut.starts_with(&"é".repeat(10)) && cut.ends_with("(5 more characters)"), "{cut}");
}

/// `tasks` tuned on a measured 2-thread CPU: per task a default, `n_trials` searched trials
/// (one in seven fails) and a hostile error text.
fn tuned_log(tasks: &[Task], n_trials: usize) -> TestLog {
    let mut log = TestLog::new(cpu_target(2));
    log.measure_machine(150.0, 12.0);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let baseline = log.session("default");
    for task in tasks {
        log.record(task, baseline, "default", &[(log.default_trace(task), ok(&[rng.gen_range(1e-3..2e-3)]))]);
    }
    log.db.end_session(baseline).expect("end");
    let search = log.session("random");
    for (index, task) in tasks.iter().enumerate() {
        let traces = log.other_traces(task, n_trials, index as u64);
        let batch: Vec<_> = traces
            .into_iter()
            .enumerate()
            .map(|(i, trace)| {
                let outcome = if i % 7 == 3 {
                    failed(TrialStatus::WrongResult, "mismatch </pre><script>alert(1)</script>")
                } else {
                    ok(&[rng.gen_range(2e-4..3e-3), rng.gen_range(2e-4..3e-3)])
                };
                (trace, outcome)
            })
            .collect();
        log.record(task, search, "random", &batch);
    }
    log.db.end_session(search).expect("end");
    log
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The text of every `<figure class="chart" …>…</figure>`.
fn charts(page: &str) -> Vec<&str> {
    page.split("<figure class=\"chart\"").skip(1).filter_map(|rest| rest.split("</figure>").next()).collect()
}

#[test]
fn the_page_is_self_contained_with_every_section_a_row_per_task_and_every_chart() {
    let tasks = [Task::matmul(64, 64, 64), Task::matmul(96, 32, 48), Task::matmul(128, 64, 32)];
    let log = tuned_log(&tasks, 12);
    let page = render_html(&collect(&log.db, "three <tasks>.db").expect("collect")).expect("render");

    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    for section in ["summary", "tasks", "convergence", "roofline", "cost-model", "failures", "schedules"] {
        assert!(page.contains(&format!("<section id=\"{section}\">")), "section {section} missing");
    }
    assert_eq!(count(&page, "class=\"task-row\""), tasks.len());
    let charts = charts(&page);
    assert_eq!(charts.len(), 2 * tasks.len() + 1, "two convergence charts per task and a roofline");
    for chart in &charts {
        assert!(chart.contains("<svg") && chart.contains("</svg>"), "{chart}");
        assert!(chart.contains("<polyline") || chart.contains("<circle"), "an empty chart: {chart}");
    }
    assert!(page.contains("No cost-model data in this log."));

    // Nothing is fetched: no external script, stylesheet, font or image. The only URL is the SVG
    // namespace, which is a name, not a request.
    let without_namespace = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for external in ["http://", "https://", "<link", "src=", "@import", "url("] {
        assert!(!without_namespace.contains(external), "the page refers to something outside: {external}");
    }
    // Text from the log is escaped wherever it appears.
    assert!(!page.contains("<tasks>") && page.contains("three &lt;tasks&gt;.db"));
    assert!(!page.contains("<16-core>") && page.contains("&lt;16-core&gt;"));
    assert!(!page.contains("<script>alert") && page.contains("&lt;script&gt;alert(1)"));
    assert_eq!(count(&page, "<script>"), 1, "only the page's own sorting script");
}

#[test]
fn summary_figures_carry_the_exact_values_of_the_report() {
    let tasks = [Task::matmul(64, 64, 64), Task::matmul(96, 32, 48)];
    let log = tuned_log(&tasks, 10);
    let report = collect(&log.db, "two.db").expect("collect");
    let page = render_html(&report).expect("render");
    let figure = |name: &str| -> f64 {
        let marker = format!("data-figure=\"{name}\" data-value=\"");
        let start = page.find(&marker).unwrap_or_else(|| panic!("no figure {name}")) + marker.len();
        let end = start + page[start..].find('"').expect("closing quote");
        page[start..end].parse().expect("a number")
    };
    assert_eq!(figure("total-trials"), report.totals.n_trials as f64);
    assert_eq!(figure("total-errors"), report.totals.n_errors as f64);
    assert_eq!(figure("sessions"), 2.0);
    assert_eq!(figure("workloads"), 2.0);
    assert_eq!(figure("peak-gflops-1"), 150.0);
    assert_eq!(figure("bandwidth-gbs-1"), 12.0);
    let latency = &report.targets[0].latency;
    let comparison = latency.comparison.as_ref().expect("defaults measured");
    assert_eq!(figure("untuned-latency-s-1"), comparison.untuned_s);
    assert_eq!(figure("tuned-latency-s-1"), comparison.tuned_s);
    assert_eq!(figure("speedup-1"), comparison.speedup());
    assert_eq!(Some(figure("tuned-total-s-1")), latency.tuned_s);
}

#[test]
fn the_same_log_gives_the_same_page() {
    let log = tuned_log(&[Task::matmul(64, 64, 64)], 8);
    let first = render_html(&collect(&log.db, "a.db").expect("collect")).expect("render");
    let second = render_html(&collect(&log.db, "a.db").expect("collect")).expect("render");
    assert_eq!(first, second);
}

#[test]
fn an_empty_log_still_renders_every_section() {
    let log = TestLog::new(cpu_target(1));
    let page = render_html(&collect(&log.db, "empty.db").expect("collect")).expect("render");
    assert_eq!(count(&page, "class=\"task-row\""), 0);
    assert_eq!(charts(&page).len(), 1, "the roofline of the one target");
    assert!(page.contains("No trial in this log yet."));
}

#[test]
fn a_30_task_report_stays_under_2_mb() {
    // A model-sized log: 30 tasks with 600 trials each (18,000 trials).
    let tasks: Vec<Task> = (0..30).map(|i| Task::matmul(128 + 16 * i, 256, 64 + 32 * (i % 5))).collect();
    let log = tuned_log(&tasks, 600);
    let page = render_html(&collect(&log.db, "model.tuning.db").expect("collect")).expect("render");
    assert_eq!(count(&page, "class=\"task-row\""), 30);
    assert_eq!(charts(&page).len(), 61);
    println!("30-task report: {} bytes", page.len());
    assert!(page.len() < 2 * 1024 * 1024, "{} bytes", page.len());
}

#[test]
fn a_model_profile_is_a_section_of_its_own_with_what_its_nodes_account_for() {
    let task = Task::matmul(64, 64, 64);
    let log = tuned_log(std::slice::from_ref(&task), 8);
    let mut report = collect(&log.db, "model.tuning.db").expect("collect");
    let without = render_html(&report).expect("render");
    assert!(!without.contains("id=\"profile\""), "only a page `run --profile` wrote has a profile");
    assert!(without.contains("Every figure is computed from the tuning log"));

    report.model_profile = Some(ModelProfile {
        model: "net<1>.onnx".into(),
        threads: 2,
        runs: 20,
        latency_s: 0.010,
        rows: vec![
            ProfiledWork {
                what: task.description(),
                calls: 3,
                seconds: 0.006,
                measured_alone_s: Some(0.005),
            },
            ProfiledWork { what: "(plain) concat".into(), calls: 2, seconds: 0.0035, measured_alone_s: None },
        ],
    });
    let page = render_html(&report).expect("render");
    let section = &page[page.find("<section id=\"profile\">").expect("a profile section")..];
    let section = &section[..section.find("</section>").expect("end")];
    assert!(page.contains("<a href=\"#profile\">Model profile</a>"), "linked from the contents");
    assert!(section.contains("net&lt;1&gt;.onnx"), "the model's name is escaped");
    let figure = |name: &str| -> f64 {
        let marker = format!("data-figure=\"{name}\" data-value=\"");
        let start = section.find(&marker).unwrap_or_else(|| panic!("no figure {name}")) + marker.len();
        let end = start + section[start..].find('"').expect("closing quote");
        section[start..end].parse().expect("a number")
    };
    assert_eq!(figure("profile-latency-s"), 0.010);
    assert!((figure("profile-in-nodes-s") - 0.0095).abs() < 1e-12);
    assert!((figure("profile-accounted") - 0.95).abs() < 1e-12, "the nodes account for 95 % of the latency");
    assert!(section.contains("95.0%"));
    assert_eq!(count(section, "<tr><td>"), 2, "a row per task or plain op");
    assert!(section.contains(&task.description()) && section.contains("(plain) concat"));
    assert!(section.contains("60.0%") && section.contains("35.0%"), "each row's share of the latency");
    assert!(section.contains("1.20×"), "the task in the model against alone");
    assert!(section.contains("not timed alone"), "a plain op has no time alone");
    assert!(
        page.contains("The model profile was measured by that run"),
        "the footer says where it comes from"
    );
}
