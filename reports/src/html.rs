//! Page assembly: a [`Report`] as one self-contained HTML document. Styles and the sorting script
//! are inlined (`report.css`, `sort.js`), charts are inline SVG, and every text that comes from
//! the tuning log is escaped.
//!
//! Figures a test or a script may want to read carry their exact value in a `data-value`
//! attribute next to the rounded text, and summary figures are named by `data-figure`.

use autotune_ir::TrialStatus;

use crate::charts::{self, ConvergenceAxis};
use crate::error::ReportError;
use crate::format;
use crate::model::{DefaultBaseline, Measured, ModelProfile, Report, TargetSummary, TaskSummary};
use crate::schedule_text::ScheduleText;

const STYLE: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("sort.js");

/// Characters of an error text shown before it is cut (compiler errors can be pages long).
const MAX_ERROR_CHARS: usize = 1_200;

/// ISA features worth a glance, shown highlighted (the full list is there too).
const SIMD_FEATURE_PREFIXES: &[&str] = &["avx", "fma", "amx", "sse4", "f16c", "neon", "sve"];

/// The report as one HTML page.
pub fn render_html(report: &Report) -> Result<String, ReportError> {
    let mut page = String::with_capacity(64 * 1024);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    page.push_str(&format!("<title>Tuning report — {}</title>\n", escape(&report.source)));
    page.push_str(&format!("<style>\n{STYLE}</style>\n</head>\n<body>\n"));
    header(&mut page, report);
    page.push_str("<main>\n");
    summary(&mut page, report);
    if let Some(profile) = &report.model_profile {
        model_profile(&mut page, profile);
    }
    tasks_table(&mut page, report);
    convergence(&mut page, report)?;
    roofline(&mut page, report)?;
    cost_model(&mut page);
    failures(&mut page, report);
    schedules(&mut page, report);
    match &report.model_profile {
        None => page.push_str(&format!(
            "<footer>Made by <code>autotune report</code> from {}. Every figure is computed from the tuning log; \
             what the log does not hold is marked as missing.</footer>\n",
            escape(&report.source)
        )),
        Some(profile) => page.push_str(&format!(
            "<footer>Made by <code>autotune run --report</code> from {}. The model profile was measured by that run \
             of {}; every other figure is computed from the tuning log, and what the log does not hold is marked \
             as missing.</footer>\n",
            escape(&report.source),
            escape(&profile.model)
        )),
    }
    page.push_str("</main>\n");
    page.push_str(&format!("<script>\n{SCRIPT}</script>\n</body>\n</html>\n"));
    Ok(page)
}

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// `<span class="na">text</span>` for a missing figure.
fn missing(text: &str) -> String {
    format!("<span class=\"na\">{}</span>", escape(text))
}

/// A summary figure: the rounded text, with its exact value for scripts and tests.
fn figure(name: &str, value: f64, text: &str) -> String {
    format!("<span data-figure=\"{}\" data-value=\"{value}\">{}</span>", escape(name), escape(text))
}

fn header(page: &mut String, report: &Report) {
    page.push_str("<div class=\"header\"><div class=\"header-inner\">\n<h1>Tuning report</h1>\n");
    page.push_str(&format!(
        "<p class=\"subtitle\">{} · tuning log schema {} · {} workload(s) on {} target(s)</p>\n",
        escape(&report.source),
        report.schema_version,
        report.totals.n_workloads,
        report.targets.len()
    ));
    let profile_link =
        if report.model_profile.is_some() { "<a href=\"#profile\">Model profile</a>" } else { "" };
    page.push_str(&format!(
        "<nav class=\"toc\"><a href=\"#summary\">Summary</a>{profile_link}<a href=\"#tasks\">Tasks</a>\
         <a href=\"#convergence\">Convergence</a><a href=\"#roofline\">Roofline</a>\
         <a href=\"#cost-model\">Cost model</a><a href=\"#failures\">Failures</a>\
         <a href=\"#schedules\">Best schedules</a></nav>\n</div></div>\n",
    ));
}

/// Where the model's time went, per task and kind of plain op: its time per run in the model,
/// share of the latency, and against its kernel's time alone; and how much of the measured
/// latency the nodes account for (the rest is between nodes).
fn model_profile(page: &mut String, profile: &ModelProfile) {
    page.push_str("<section id=\"profile\">\n<h2>Model profile</h2>\n");
    let in_nodes = profile.in_nodes_s();
    let latency = profile.latency_s;
    page.push_str(&format!(
        "<p class=\"lead\">{} on {} thread(s): {} per run (median of {} runs). A timer around every node \
         (as many runs again) puts {} in the nodes: {} of the latency; the rest is between nodes. \
         In the model against alone: the kernel's calls in the model against the same calls timed alone \
         when it was tuned (tuned kernels only). Click a column to sort.</p>\n",
        escape(&profile.model),
        profile.threads,
        figure("profile-latency-s", latency, &format::latency(latency)),
        profile.runs,
        figure("profile-in-nodes-s", in_nodes, &format::latency(in_nodes)),
        figure(
            "profile-accounted",
            if latency > 0.0 { in_nodes / latency } else { 0.0 },
            &if latency > 0.0 { format::percent(100.0 * in_nodes / latency) } else { "n/a".to_string() }
        ),
    ));
    page.push_str(
        "<div class=\"table-wrap\"><table class=\"sortable\" id=\"profile-table\"><thead><tr>\
         <th data-sort=\"text\">task or plain op</th><th data-sort=\"number\" class=\"num\">calls</th>\
         <th data-sort=\"number\" class=\"num\">per run</th><th data-sort=\"number\" class=\"num\">share of latency</th>\
         <th data-sort=\"number\" class=\"num\">alone</th><th data-sort=\"number\" class=\"num\">in the model / alone</th>\
         </tr></thead><tbody>\n",
    );
    for row in &profile.rows {
        let share = (latency > 0.0).then(|| row.seconds / latency);
        let ratio = row.measured_alone_s.filter(|alone| *alone > 0.0).map(|alone| row.seconds / alone);
        page.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\" data-value=\"{}\">{}</td>",
            escape(&row.what),
            row.calls,
            row.calls
        ));
        page.push_str(&number_cell(Some(row.seconds), format::latency(row.seconds)));
        page.push_str(&share_cell(share));
        page.push_str(&number_cell(
            row.measured_alone_s,
            row.measured_alone_s.map_or_else(|| missing("not timed alone"), format::latency),
        ));
        page.push_str(&number_cell(ratio, ratio.map_or_else(|| missing("n/a"), format::ratio)));
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody></table></div>\n</section>\n");
}

fn summary(page: &mut String, report: &Report) {
    let totals = &report.totals;
    page.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"cards\">\n");

    for target in &report.targets {
        latency_card(page, target, report.targets.len() > 1);
    }

    let n_ok = totals.n_trials - totals.n_errors;
    page.push_str("<div class=\"card\"><div class=\"label\">Trials</div>");
    page.push_str(&format!(
        "<div class=\"big\">{}</div><div class=\"note\">{} ok · {} error{}</div>",
        figure("total-trials", totals.n_trials as f64, &totals.n_trials.to_string()),
        n_ok,
        figure("total-errors", totals.n_errors as f64, &totals.n_errors.to_string()),
        if totals.n_errors == 1 { "" } else { "s" }
    ));
    page.push_str(&format!(
        "<div class=\"note\">in {} session{}{}</div></div>\n",
        figure("sessions", totals.n_sessions as f64, &totals.n_sessions.to_string()),
        if totals.n_sessions == 1 { "" } else { "s" },
        if totals.n_open_sessions > 0 {
            format!(", {} not ended (running, or killed)", totals.n_open_sessions)
        } else {
            String::new()
        }
    ));

    for target in &report.targets {
        page.push_str("<div class=\"card\"><div class=\"label\">Machine ceilings");
        if report.targets.len() > 1 {
            page.push_str(&format!(" · target {}", target.number));
        }
        page.push_str("</div>");
        page.push_str(&format!(
            "<div class=\"big\">{}</div><div class=\"note\">fp32 peak, {} thread(s)</div>",
            measured_text(&target.peak_gflops, &format!("peak-gflops-{}", target.number), "GFLOP/s"),
            target.threads
        ));
        page.push_str(&format!(
            "<div class=\"big\">{}</div><div class=\"note\">memory bandwidth</div></div>\n",
            measured_text(&target.bandwidth_gbs, &format!("bandwidth-gbs-{}", target.number), "GB/s"),
        ));
    }

    page.push_str("<div class=\"card\"><div class=\"label\">Model</div>");
    match &report.model {
        None => page.push_str(
            "<div class=\"note\">No model given: each task counts once (weight 1), as <code>autotune op</code> \
             tunes them. A model's tuning run, and <code>autotune run --report</code>, weigh its tasks by their \
             calls per run.</div>",
        ),
        Some(model) => {
            page.push_str(&format!(
                "<div class=\"note\">{}: each task weighs its kernel calls per run ({} in all).</div>",
                escape(&model.model),
                figure("model-calls-per-run", model.calls_per_run, &format::significant(model.calls_per_run))
            ));
            if model.n_model_tasks_not_in_log > 0 {
                page.push_str(&format!(
                    "<div class=\"note\">{} of the model's tasks have no trial in this log.</div>",
                    model.n_model_tasks_not_in_log
                ));
            }
            if model.n_log_tasks_not_in_model > 0 {
                page.push_str(&format!(
                    "<div class=\"note\">{} of the log's tasks are not in this model (weight 0).</div>",
                    model.n_log_tasks_not_in_model
                ));
            }
        }
    }
    page.push_str(&format!(
        "<div class=\"note\">{} workload{}:</div><ul>",
        figure("workloads", totals.n_workloads as f64, &totals.n_workloads.to_string()),
        if totals.n_workloads == 1 { "" } else { "s" }
    ));
    for workload in &report.workloads {
        page.push_str(&format!("<li>{}</li>", escape(workload)));
    }
    page.push_str("</ul></div>\n</div>\n");

    for target in &report.targets {
        device(page, target, report.targets.len() > 1);
    }
    sessions(page, report);
    page.push_str("</section>\n");
}

fn measured_text(measured: &Option<Measured>, name: &str, unit: &str) -> String {
    match measured {
        Some(m) => figure(name, m.value, &format!("{} {unit}", format::significant(m.value))),
        None => missing("not measured"),
    }
}

fn latency_card(page: &mut String, target: &TargetSummary, several_targets: bool) {
    let n = target.number;
    let latency = &target.latency;
    page.push_str("<div class=\"card\"><div class=\"label\">End-to-end latency (estimated)");
    if several_targets {
        page.push_str(&format!(" · target {n}"));
    }
    page.push_str("</div>");
    match &latency.comparison {
        Some(comparison) => {
            page.push_str(&format!(
                "<div class=\"big\">{} → {}</div>",
                figure(
                    &format!("untuned-latency-s-{n}"),
                    comparison.untuned_s,
                    &format::latency(comparison.untuned_s)
                ),
                figure(
                    &format!("tuned-latency-s-{n}"),
                    comparison.tuned_s,
                    &format::latency(comparison.tuned_s)
                ),
            ));
            let speedup = comparison.speedup();
            page.push_str(&format!(
                "<div><span class=\"badge{}\">{} {}</span></div>",
                if speedup < 1.0 { " bad" } else { "" },
                figure(&format!("speedup-{n}"), speedup, &format::ratio(speedup)),
                if speedup < 1.0 { "slower" } else { "faster" }
            ));
            page.push_str(&format!(
                "<div class=\"note\">untuned (default schedules) → tuned: Σ weight × latency over {} of {} task(s)",
                comparison.n_tasks, latency.n_tasks
            ));
            if comparison.n_tasks < latency.n_tasks {
                page.push_str(&format!(
                    "; {} task(s) without a measured default or a valid kernel are left out",
                    latency.n_tasks - comparison.n_tasks
                ));
            }
            page.push_str("</div>");
        }
        None => {
            page.push_str(&format!("<div class=\"big\">{}</div>", missing("untuned: default not measured")))
        }
    }
    match latency.tuned_s {
        Some(tuned_s) => page.push_str(&format!(
            "<div class=\"note\">tuned total: {} over all {} tuned task(s)</div>",
            figure(&format!("tuned-total-s-{n}"), tuned_s, &format::latency(tuned_s)),
            latency.n_tuned
        )),
        None => page.push_str("<div class=\"note\">no task has a valid kernel yet</div>"),
    }
    page.push_str("</div>\n");
}

fn device(page: &mut String, target: &TargetSummary, several_targets: bool) {
    page.push_str(&format!(
        "<h3>Device{}</h3>\n<dl class=\"facts\">\n",
        if several_targets { format!(" · target {}", target.number) } else { String::new() }
    ));
    let row = |page: &mut String, name: &str, value: String| {
        page.push_str(&format!("<dt>{}</dt><dd>{value}</dd>\n", escape(name)));
    };
    row(page, "kind", escape(&target.kind));
    row(page, if target.kind == "cpu" { "CPU model" } else { "GPU" }, escape(&target.name));
    if target.kind == "cpu" {
        row(page, "GPU", missing("none: a CPU target"));
    }
    if let Some(llvm_cpu) = &target.llvm_cpu {
        row(page, "LLVM CPU", format!("<code>{}</code>", escape(llvm_cpu)));
    }
    row(page, "threads", target.threads.to_string());
    if let Some(lanes) = target.vector_lanes {
        row(page, "vector width", format!("{lanes} fp32 lanes ({} bits)", lanes * 32));
    }
    let simd: Vec<&String> = target
        .features
        .iter()
        .filter(|feature| SIMD_FEATURE_PREFIXES.iter().any(|prefix| feature.starts_with(prefix)))
        .collect();
    let chips = |features: &[&String], class: &str| -> String {
        features
            .iter()
            .map(|feature| format!("<span class=\"chip {class}\">{}</span>", escape(feature)))
            .collect()
    };
    row(page, "SIMD features", format!("<div class=\"features\">{}</div>", chips(&simd, "simd")));
    let all: Vec<&String> = target.features.iter().collect();
    row(
        page,
        "all ISA features",
        format!(
            "<details><summary>{} features</summary><div class=\"features\">{}</div></details>",
            all.len(),
            chips(&all, "")
        ),
    );
    for (name, measured, unit) in
        [("peak fp32", &target.peak_gflops, "GFLOP/s"), ("memory bandwidth", &target.bandwidth_gbs, "GB/s")]
    {
        let value = match measured {
            Some(m) => format!(
                "{} {unit} <span class=\"muted\">· {}, measured {}</span>",
                escape(&format::significant(m.value)),
                escape(&m.method),
                escape(&m.measured_at)
            ),
            None => missing("not measured (tune with this build's `autotune op` to measure it)"),
        };
        row(page, name, value);
    }
    row(page, "target key", format!("<code>{}</code>", escape(&target.target_key)));
    page.push_str("</dl>\n");
}

fn sessions(page: &mut String, report: &Report) {
    page.push_str("<h3>Sessions</h3>\n");
    if report.sessions.is_empty() {
        page.push_str("<p class=\"empty\">No session in this log.</p>\n");
        return;
    }
    page.push_str(
        "<div class=\"table-wrap\"><table><thead><tr><th class=\"num\">#</th><th>strategy</th><th>started (UTC)</th>\
         <th>ended (UTC)</th><th class=\"num\">duration</th><th class=\"num\">trials</th><th class=\"num\">errors</th>\
         <th>command</th></tr></thead><tbody>\n",
    );
    for session in &report.sessions {
        page.push_str(&format!(
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"nowrap\">{}</td><td class=\"nowrap\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td><code>{}</code></td></tr>\n",
            session.id,
            escape(&session.strategy),
            escape(&session.started_at),
            match &session.ended_at {
                Some(ended_at) => escape(ended_at),
                None => missing("not ended: running, or killed"),
            },
            session.duration_s.map_or_else(|| missing("n/a"), format::duration),
            session.n_trials,
            session.n_errors,
            escape(&session.command)
        ));
    }
    page.push_str("</tbody></table></div>\n");
}

/// A share of a total as a table cell: the percentage and a bar as long as it.
fn share_cell(share: Option<f64>) -> String {
    number_cell(
        share,
        share.map_or_else(
            || missing("n/a"),
            |share| {
                format!(
                    "{}<span class=\"bar\" style=\"width:{:.0}px\"></span>",
                    format::percent(100.0 * share),
                    (share * 60.0).max(1.0)
                )
            },
        ),
    )
}

/// A numeric table cell: the text, and the exact value to sort by (none: sorts last).
fn number_cell(value: Option<f64>, text: String) -> String {
    match value {
        Some(value) => format!("<td class=\"num\" data-value=\"{value}\">{text}</td>"),
        None => format!("<td class=\"num\" data-value=\"\">{text}</td>"),
    }
}

fn tasks_table(page: &mut String, report: &Report) {
    let several_targets = report.targets.len() > 1;
    page.push_str("<section id=\"tasks\">\n<h2>Tasks</h2>\n");
    page.push_str(
        "<p class=\"lead\">One row per task and target, by share of the total time. Click a column to sort. \
         GFLOP/s is at the best kernel's median time; % roofline compares it with min(peak, intensity × \
         bandwidth), the most the task can reach here; vs default is the speedup over the default schedule (what \
         runs without tuning); share is the task's part of the estimated end-to-end time.</p>\n",
    );
    if report.tasks.is_empty() {
        page.push_str("<p class=\"empty\">No trial in this log yet.</p>\n</section>\n");
        return;
    }
    let target_header =
        if several_targets { "<th data-sort=\"number\" class=\"num\">target</th>" } else { "" };
    page.push_str(&format!(
        "<div class=\"table-wrap\"><table class=\"sortable\" id=\"task-table\"><thead><tr>\
         <th data-sort=\"number\" class=\"num\">#</th><th data-sort=\"text\">op</th><th data-sort=\"text\">shape</th>{target_header}\
         <th data-sort=\"number\" class=\"num\">weight</th><th data-sort=\"number\" class=\"num\">trials</th>\
         <th data-sort=\"number\" class=\"num\">best latency</th><th data-sort=\"number\" class=\"num\">GFLOP/s</th>\
         <th data-sort=\"number\" class=\"num\">% peak</th><th data-sort=\"number\" class=\"num\">% roofline</th>\
         <th data-sort=\"number\" class=\"num\">vs default</th><th data-sort=\"number\" class=\"num\">share</th>\
         </tr></thead><tbody id=\"task-rows\">\n"
    ));
    for task in &report.tasks {
        let best = task.best.as_ref();
        page.push_str(&format!("<tr class=\"task-row\" data-task=\"{}\">", task.number));
        page.push_str(&number_cell(
            Some(task.number as f64),
            format!("<a href=\"#task-{0}\">{0}</a>", task.number),
        ));
        page.push_str(&format!("<td data-value=\"{0}\">{0}</td>", escape(&task.op)));
        page.push_str(&format!("<td data-value=\"{0}\" class=\"mono\">{0}</td>", escape(&task.shape)));
        if several_targets {
            page.push_str(&number_cell(Some(task.target_number as f64), task.target_number.to_string()));
        }
        page.push_str(&number_cell(Some(task.weight), format::significant(task.weight)));
        page.push_str(&number_cell(Some(task.n_trials as f64), task.n_trials.to_string()));
        page.push_str(&number_cell(
            best.map(|b| b.median_s),
            best.map_or_else(|| missing("no valid kernel"), |b| format::latency(b.median_s)),
        ));
        page.push_str(&number_cell(
            best.map(|b| b.gflops),
            best.map_or_else(|| missing("n/a"), |b| format::significant(b.gflops)),
        ));
        page.push_str(&number_cell(
            task.pct_of_peak,
            task.pct_of_peak.map_or_else(
                || missing(if best.is_some() { "peak not measured" } else { "n/a" }),
                format::percent,
            ),
        ));
        page.push_str(&number_cell(
            task.pct_of_roofline,
            task.pct_of_roofline.map_or_else(
                || missing(if best.is_some() { "roofs not measured" } else { "n/a" }),
                format::percent,
            ),
        ));
        page.push_str(&number_cell(task.speedup_over_default, speedup_text(task)));
        page.push_str(&share_cell(task.share_of_total));
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody></table></div>\n");
    let above_peak =
        report.tasks.iter().filter(|task| task.pct_of_peak.is_some_and(|pct| pct > 100.0)).count();
    if above_peak > 0 {
        page.push_str(&format!(
            "<p class=\"muted\">{above_peak} task(s) run faster than the measured peak: the peak probe ran on a \
             busy or not yet warmed-up machine, so that ceiling is low. The figures are shown as measured.</p>\n"
        ));
    }
    page.push_str("</section>\n");
}

fn speedup_text(task: &TaskSummary) -> String {
    match (&task.default, task.speedup_over_default) {
        (_, Some(speedup)) => format::ratio(speedup),
        (DefaultBaseline::Measured { .. }, None) => missing("no valid kernel"),
        (DefaultBaseline::Failed { status }, None) => missing(&format!("default failed ({status})")),
        (DefaultBaseline::NotMeasured, None) => missing("default not measured"),
        (DefaultBaseline::Unknown { .. }, None) => missing("default unknown"),
    }
}

fn legend(page: &mut String, report: &Report) {
    page.push_str("<div class=\"legend\">");
    for strategy in &report.strategies {
        page.push_str(&format!(
            "<span><i class=\"swatch\" style=\"background:{}\"></i>new best found by {}</span>",
            charts::css_colour(charts::strategy_colour(&report.strategies, strategy)),
            escape(strategy)
        ));
    }
    page.push_str(&format!(
        "<span><i class=\"swatch line\" style=\"background:{}\"></i>best so far</span>\
         <span><i class=\"swatch\" style=\"background:{};opacity:0.6\"></i>each ok trial</span>\
         <span><i class=\"swatch dashed\" style=\"border-color:{}\"></i>default schedule</span></div>\n",
        charts::best_line_css(),
        charts::trial_dot_css(),
        charts::default_line_css()
    ));
}

fn convergence(page: &mut String, report: &Report) -> Result<(), ReportError> {
    page.push_str("<section id=\"convergence\">\n<h2>Convergence</h2>\n");
    page.push_str(
        "<p class=\"lead\">Per task, the best GFLOP/s found so far against trials and against tuning time \
         (sessions laid end to end; the time between two runs is left out). Each new best is marked in the colour \
         of the strategy that found it.</p>\n",
    );
    if report.tasks.is_empty() {
        page.push_str("<p class=\"empty\">No trial in this log yet.</p>\n</section>\n");
        return Ok(());
    }
    legend(page, report);
    for task in &report.tasks {
        page.push_str(&format!("<div class=\"task-block\" id=\"task-{}\">\n", task.number));
        page.push_str(&format!(
            "<h3>#{} {}{}</h3>\n",
            task.number,
            escape(&task.description),
            target_suffix(report, task)
        ));
        page.push_str("<div class=\"chart-pair\">\n");
        for (axis, name, caption) in [
            (ConvergenceAxis::Trial, "convergence-trials", "best GFLOP/s by trial"),
            (ConvergenceAxis::TuningTime, "convergence-time", "best GFLOP/s by tuning time"),
        ] {
            page.push_str(&format!(
                "<figure class=\"chart\" data-chart=\"{name}-{}\">\n{}<figcaption>{caption}</figcaption></figure>\n",
                task.number,
                charts::convergence(task, axis, &report.strategies)?
            ));
        }
        page.push_str("</div>\n");
        page.push_str(&format!("<p class=\"muted\">{}</p>\n", improvements_text(task)));
        page.push_str("</div>\n");
    }
    page.push_str("</section>\n");
    Ok(())
}

fn target_suffix(report: &Report, task: &TaskSummary) -> String {
    if report.targets.len() > 1 {
        format!(" <span class=\"muted\">· target {}</span>", task.target_number)
    } else {
        String::new()
    }
}

/// `3 improvements: 2 by random, 1 by default; best 12.3 GFLOP/s at trial 17.`
fn improvements_text(task: &TaskSummary) -> String {
    let improvements: Vec<&crate::model::TrialPoint> =
        task.convergence.iter().filter(|point| point.improved).collect();
    if improvements.is_empty() {
        return format!("{} trial(s), none valid yet.", task.n_trials);
    }
    let mut by_strategy: Vec<(String, usize)> = Vec::new();
    for point in &improvements {
        match by_strategy.iter_mut().find(|(strategy, _)| *strategy == point.strategy) {
            Some((_, count)) => *count += 1,
            None => by_strategy.push((point.strategy.clone(), 1)),
        }
    }
    let found_by: Vec<String> =
        by_strategy.iter().map(|(strategy, count)| format!("{count} by {}", escape(strategy))).collect();
    let last = improvements[improvements.len() - 1];
    format!(
        "{} improvement{} ({}); best {} GFLOP/s at trial {} of {}.",
        improvements.len(),
        if improvements.len() == 1 { "" } else { "s" },
        found_by.join(", "),
        last.best_gflops.map_or_else(|| "n/a".into(), format::significant),
        last.trial_number,
        task.n_trials
    )
}

fn roofline(page: &mut String, report: &Report) -> Result<(), ReportError> {
    page.push_str("<section id=\"roofline\">\n<h2>Roofline</h2>\n");
    page.push_str(
        "<p class=\"lead\">Every task's best kernel (labelled with its #) by arithmetic intensity (FLOPs per byte \
         that must cross the memory interface at least once) against the machine's measured roofs: the \
         bandwidth slope and the fp32 peak.</p>\n",
    );
    for target in &report.targets {
        let tasks: Vec<&TaskSummary> =
            report.tasks.iter().filter(|task| task.target_number == target.number).collect();
        let caption = match (&target.peak_gflops, &target.bandwidth_gbs) {
            (Some(peak), Some(bandwidth)) => format!(
                "{}: peak {} GFLOP/s, bandwidth {} GB/s, {} thread(s)",
                escape(&target.name),
                format::significant(peak.value),
                format::significant(bandwidth.value),
                target.threads
            ),
            _ => format!(
                "{}: roofs not measured in this log, so only the kernels are placed",
                escape(&target.name)
            ),
        };
        page.push_str(&format!(
            "<figure class=\"chart\" data-chart=\"roofline-{}\">\n{}<figcaption>{caption}</figcaption></figure>\n",
            target.number,
            charts::roofline(target, &tasks)?
        ));
    }
    page.push_str("</section>\n");
    Ok(())
}

fn cost_model(page: &mut String) {
    // The log has no cost-model table yet; when the learned search records its predictions,
    // this section shows them. Until then it says so rather than showing anything made up.
    page.push_str(
        "<section id=\"cost-model\">\n<h2>Cost model</h2>\n<p class=\"empty\">No cost-model data in this log.</p>\n\
         </section>\n",
    );
}

fn failures(page: &mut String, report: &Report) {
    page.push_str("<section id=\"failures\">\n<h2>Failures</h2>\n");
    let failing: Vec<&TaskSummary> =
        report.tasks.iter().filter(|task| !task.first_errors.is_empty()).collect();
    page.push_str(&format!(
        "<p class=\"lead\">Trials by status, per task. A failed trial is recorded with its status and never \
         timed; {} of {} trials failed.</p>\n",
        report.totals.n_errors, report.totals.n_trials
    ));
    if report.tasks.is_empty() {
        page.push_str("<p class=\"empty\">No trial in this log yet.</p>\n</section>\n");
        return;
    }
    page.push_str("<div class=\"table-wrap\"><table class=\"sortable\" id=\"failure-table\"><thead><tr>");
    page.push_str("<th data-sort=\"number\" class=\"num\">#</th><th data-sort=\"text\">task</th>");
    page.push_str("<th data-sort=\"number\" class=\"num\">trials</th>");
    for status in TrialStatus::ALL {
        page.push_str(&format!("<th data-sort=\"number\" class=\"num\">{status}</th>"));
    }
    page.push_str("</tr></thead><tbody>\n");
    let mut by_number: Vec<&TaskSummary> = report.tasks.iter().collect();
    by_number.sort_by_key(|task| task.number);
    for task in &by_number {
        page.push_str(&format!(
            "<tr><td class=\"num\" data-value=\"{0}\">{0}</td><td data-value=\"{1}\">{1}{2}</td>{3}",
            task.number,
            escape(&task.description),
            target_suffix(report, task),
            number_cell(Some(task.n_trials as f64), task.n_trials.to_string())
        ));
        for (status, count) in &task.status_counts {
            let text = if *count > 0 && !status.is_ok() {
                format!("<strong>{count}</strong>")
            } else {
                count.to_string()
            };
            page.push_str(&number_cell(Some(*count as f64), text));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody></table></div>\n");

    if failing.is_empty() {
        page.push_str("<p class=\"empty\">No failed trials.</p>\n");
    } else {
        page.push_str("<h3>First error of each kind</h3>\n");
        let mut failing = failing;
        failing.sort_by_key(|task| task.number);
        for task in failing {
            page.push_str(&format!(
                "<h4>#{} {}{}</h4>\n",
                task.number,
                escape(&task.description),
                target_suffix(report, task)
            ));
            for error in &task.first_errors {
                page.push_str(&format!(
                    "<div><strong>{}</strong> <span class=\"muted\">· {} trial(s); first: trial {}</span></div>\n",
                    error.status,
                    task.count(error.status),
                    error.trial_id
                ));
                let text =
                    if error.text.is_empty() { "(no error text recorded)" } else { error.text.as_str() };
                page.push_str(&format!(
                    "<pre class=\"error\">{}</pre>\n",
                    escape(&truncate(text, MAX_ERROR_CHARS))
                ));
            }
        }
    }
    page.push_str("</section>\n");
}

/// `text` cut to `max_chars` characters, saying how much was left out.
fn truncate(text: &str, max_chars: usize) -> String {
    let n_chars = text.chars().count();
    if n_chars <= max_chars {
        return text.to_string();
    }
    let kept: String = text.chars().take(max_chars).collect();
    format!("{kept}\n… ({} more characters)", n_chars - max_chars)
}

fn schedules(page: &mut String, report: &Report) {
    page.push_str("<section id=\"schedules\">\n<h2>Best schedules</h2>\n");
    page.push_str(
        "<p class=\"lead\">The best trace of each task, read as a schedule: its tiles, the main loop nest from \
         the outermost loop in (packing loops and edge-tile paths left out), and the raw decisions the log \
         stores.</p>\n",
    );
    let mut by_number: Vec<&TaskSummary> = report.tasks.iter().collect();
    by_number.sort_by_key(|task| task.number);
    if by_number.is_empty() {
        page.push_str("<p class=\"empty\">No trial in this log yet.</p>\n");
    }
    for task in by_number {
        page.push_str(&format!(
            "<div class=\"schedule\" id=\"schedule-{}\"><h3>#{} {}{}</h3>\n",
            task.number,
            task.number,
            escape(&task.description),
            target_suffix(report, task)
        ));
        match &task.best {
            None => page.push_str("<p class=\"empty\">No valid kernel yet.</p>\n"),
            Some(best) => {
                page.push_str(&format!(
                    "<p class=\"muted\">{} median, {} GFLOP/s; trial {}, found by {}; schedule space {}.</p>\n",
                    format::latency(best.median_s),
                    format::significant(best.gflops),
                    best.trial_id,
                    escape(&best.strategy),
                    escape(&best.space_version)
                ));
                schedule(page, &best.schedule);
            }
        }
        page.push_str("</div>\n");
    }
    page.push_str("</section>\n");
}

fn schedule(page: &mut String, text: &ScheduleText) {
    if let Some(note) = &text.note {
        page.push_str(&format!("<p class=\"muted\">{}</p>\n", escape(note)));
    }
    if !text.facts.is_empty() {
        page.push_str("<dl class=\"facts\">\n");
        for (name, value) in &text.facts {
            page.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", escape(name), escape(value)));
        }
        page.push_str("</dl>\n");
    }
    if !text.loop_order.is_empty() {
        page.push_str("<div class=\"muted\">loop nest, outermost first:</div><div class=\"loops\">");
        for (index, label) in text.loop_order.iter().enumerate() {
            if index > 0 {
                page.push_str("<span class=\"arrow\">›</span>");
            }
            let class = ["parallel", "vectorized", "unrolled"]
                .into_iter()
                .find(|kind| label.contains(kind))
                .unwrap_or("");
            page.push_str(&format!("<span class=\"loop {class}\">{}</span>", escape(label)));
        }
        page.push_str("</div>\n");
    }
    if !text.decisions.is_empty() {
        page.push_str(&format!(
            "<div class=\"muted\">decisions of sketch <code>{}</code>:</div><div class=\"decisions\">",
            escape(&text.sketch)
        ));
        for (name, value) in &text.decisions {
            page.push_str(&format!("<span class=\"chip mono\">{}={value}</span>", escape(name)));
        }
        page.push_str("</div>\n");
    }
}

#[cfg(test)]
mod tests;
