//! End-to-end: `autotune report` on the log of a real (small) tuning run, opened in headless
//! Chromium: no console errors, every chart present and drawn, one table row per task, and the
//! summary figures equal to values computed here, independently, from the log.
//!
//! Needs Debian's `chromium` (the README's setup installs it); without it the browser checks are
//! skipped with a printed reason, the rest still runs.

use autotune_db::{Database, MachineMeasurementKind};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SHAPES: [&str; 2] = ["48x40x33", "64x32x16"];
const TRIALS_PER_TASK: &str = "6";
/// The acceptance limit for a 30-task model; a two-task report is far below it.
const MAX_REPORT_BYTES: u64 = 2 * 1024 * 1024;
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

fn autotune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autotune")).args(args).output().expect("run autotune")
}

fn tune(db: &Path, shape: &str, trials: &str) {
    let out = autotune(&[
        "op",
        "matmul",
        "--shape",
        shape,
        "--threads",
        "2",
        "--trials",
        trials,
        "--db",
        db.to_str().expect("utf-8 path"),
        "--json",
    ]);
    assert!(out.status.success(), "tuning {shape} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Writes the report of `db` to `output` and returns its text.
fn report(db: &Path, output: &Path) -> String {
    let out = autotune(&[
        "report",
        "--db",
        db.to_str().expect("utf-8 path"),
        "-o",
        output.to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "report failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("wrote "), "{out:?}");
    std::fs::read_to_string(output).expect("read the report")
}

/// Debian's headless Chromium, if installed.
struct Chromium {
    program: PathBuf,
}

impl Chromium {
    fn find() -> Option<Chromium> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|candidate| candidate.is_file())
            .map(|program| Chromium { program })
    }

    /// Opens `page` with `extra` flags in a fresh profile; kills the browser after
    /// [`BROWSER_TIMEOUT`]. Returns stdout and stderr.
    fn run(&self, page: &Path, extra: &[String]) -> (String, String) {
        let profile = tempfile::tempdir().expect("profile dir");
        let url = format!("file://{}", page.canonicalize().expect("absolute page path").display());
        let mut child = Command::new(&self.program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Read both pipes on threads so a chatty browser cannot block on a full pipe.
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let out_reader = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
        });
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut text).map(|_| text)
        });
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for chromium") {
                break status;
            }
            if start.elapsed() > BROWSER_TIMEOUT {
                let _ = child.kill();
                panic!("chromium did not finish within {BROWSER_TIMEOUT:?} on {url}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = out_reader.join().expect("stdout reader").expect("stdout utf-8");
        let stderr = err_reader.join().expect("stderr reader").expect("stderr utf-8");
        assert!(status.success(), "chromium failed ({status}) on {url}: {stderr}");
        (stdout, stderr)
    }
}

/// The `data-value` of the summary figure `name`.
fn figure(page: &str, name: &str) -> f64 {
    let marker = format!("data-figure=\"{name}\" data-value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("the page has no figure {name}")) + marker.len();
    let end = start + page[start..].find('"').expect("closing quote");
    page[start..end].parse().unwrap_or_else(|_| panic!("figure {name} is not a number"))
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs(),
        "{what}: the page says {actual}, the log {expected}"
    );
}

/// The text of every `<figure class="chart" …>…</figure>`.
fn charts(page: &str) -> Vec<&str> {
    page.split("<figure class=\"chart\"").skip(1).filter_map(|rest| rest.split("</figure>").next()).collect()
}

/// The summary figures, recomputed from the log with plain arithmetic: every trial, every error,
/// the measured ceilings, and Σ latency of the default schedules (the `default` strategy's trials)
/// and of the best trials.
fn check_summary_against_the_log(page: &str, db_path: &Path) {
    let db = Database::open_read_only(db_path).expect("open the log");
    let sessions = db.sessions().expect("sessions");
    let trials: Vec<_> = sessions.iter().flat_map(|s| db.session_trials(s.id).expect("trials")).collect();
    assert_eq!(figure(page, "sessions"), sessions.len() as f64);
    assert_eq!(figure(page, "total-trials"), trials.len() as f64);
    assert_eq!(
        figure(page, "total-errors"),
        trials.iter().filter(|t| t.status.as_str() != "ok").count() as f64
    );
    assert_eq!(figure(page, "workloads"), SHAPES.len() as f64);

    let targets = db.targets().expect("targets");
    assert_eq!(targets.len(), 1, "one machine, one thread count");
    let target_key = &targets[0].1.target_key;
    let measurements = db.machine_measurements(target_key).expect("measurements");
    let measured =
        |kind| measurements.iter().find(|m| m.kind == kind).map(|m| m.value).expect("measured by the run");
    assert_close(figure(page, "peak-gflops-1"), measured(MachineMeasurementKind::PeakGflops), "peak");
    assert_close(
        figure(page, "bandwidth-gbs-1"),
        measured(MachineMeasurementKind::BandwidthGbs),
        "bandwidth",
    );

    let mut untuned_s = 0.0;
    let mut tuned_s = 0.0;
    for (_, workload) in db.workloads().expect("workloads") {
        let of_task = db.trials(&workload.task_key, target_key).expect("trials");
        let default = of_task.iter().find(|t| t.strategy == "default").expect("the run measured the default");
        untuned_s += default.median_s.expect("the default schedule is valid");
        tuned_s += of_task.iter().filter_map(|t| t.median_s).fold(f64::INFINITY, f64::min);
    }
    assert_close(figure(page, "untuned-latency-s-1"), untuned_s, "untuned latency");
    assert_close(figure(page, "tuned-latency-s-1"), tuned_s, "tuned latency");
    assert_close(figure(page, "tuned-total-s-1"), tuned_s, "tuned total");
    assert_close(figure(page, "speedup-1"), untuned_s / tuned_s, "speedup");
}

#[test]
fn the_report_of_a_real_run_renders_in_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("run.tuning.db");
    for shape in SHAPES {
        tune(&db, shape, TRIALS_PER_TASK);
    }
    let output = dir.path().join("run.report.html");
    let html = report(&db, &output);
    let size = std::fs::metadata(&output).expect("report file").len();
    assert!(size < MAX_REPORT_BYTES, "{size} bytes");
    check_summary_against_the_log(&html, &db);

    let Some(chromium) = Chromium::find() else {
        println!(
            "skipped the browser checks: no chromium on PATH (bash setup.sh installs Debian's chromium)"
        );
        return;
    };

    // The DOM after the page's script ran.
    let (dom, log) = chromium.run(&output, &["--dump-dom".to_string()]);
    let console: Vec<&str> = log.lines().filter(|line| line.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "the page wrote to the console: {console:#?}");
    assert!(dom.contains("data-report-ready=\"true\""), "the page's script did not run to its end");
    assert_eq!(dom.matches("class=\"task-row\"").count(), SHAPES.len(), "one table row per task");
    let charts = charts(&dom);
    assert_eq!(charts.len(), 2 * SHAPES.len() + 1, "two convergence charts per task and a roofline");
    for chart in &charts {
        assert!(chart.contains("<svg") && chart.contains("</svg>"), "a chart without its SVG: {chart}");
        assert!(
            chart.contains("<polyline") && chart.contains("<circle"),
            "a chart with nothing drawn: {chart}"
        );
    }
    check_summary_against_the_log(&dom, &db);

    let screenshot = dir.path().join("report.png");
    chromium.run(
        &output,
        &[format!("--screenshot={}", screenshot.display()), "--window-size=1400,2000".to_string()],
    );
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a blank or missing screenshot ({} bytes)",
        png.len()
    );

    // Kept for a person to look at: the report, its DOM and the screenshot.
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e_report");
    std::fs::create_dir_all(&keep).expect("artifact dir");
    std::fs::copy(&output, keep.join("report.html")).expect("keep the report");
    std::fs::write(keep.join("dom.html"), &dom).expect("keep the DOM");
    std::fs::write(keep.join("report.png"), &png).expect("keep the screenshot");
    println!("report, DOM and screenshot kept in {}", keep.display());
}

#[test]
fn a_report_can_be_made_while_a_run_is_writing_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("live.tuning.db");
    tune(&db, SHAPES[0], "2");
    // A second run, in the background, on a new workload of the same log.
    let running = Command::new(env!("CARGO_BIN_EXE_autotune"))
        .args([
            "op",
            "matmul",
            "--shape",
            "80x80x80",
            "--trials",
            "24",
            "--batch-size",
            "2",
            "--json",
            "--db",
        ])
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a tuning run");
    let html = report(&db, &dir.path().join("live.report.html"));
    assert!(html.contains("class=\"task-row\""));
    let finished = running.wait_with_output().expect("the run");
    assert!(
        finished.status.success(),
        "the run failed beside the report: {}",
        String::from_utf8_lossy(&finished.stderr)
    );
    // The report never wrote to the log: the run's trials are all there.
    let log = Database::open_read_only(&db).expect("open");
    let trials: usize = log
        .sessions()
        .expect("sessions")
        .iter()
        .map(|s| log.session_trials(s.id).expect("trials").len())
        .sum();
    assert_eq!(trials, 1 + 2 + 1 + 24, "each run: its default schedule, then its trials");
}

#[test]
fn report_errors_are_one_line_and_exit_code_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.db");
    let not_a_log = dir.path().join("notes.db");
    std::fs::write(&not_a_log, "these are notes, not a tuning log\n".repeat(64)).expect("write");
    let unwritable = dir.path().join("no-such-dir").join("r.html");
    let db = dir.path().join("ok.db");
    tune(&db, SHAPES[1], "1");
    let cases: Vec<Vec<String>> = vec![
        vec!["report".into(), "--db".into(), missing.display().to_string()],
        vec!["report".into(), "--db".into(), not_a_log.display().to_string()],
        vec![
            "report".into(),
            "--db".into(),
            db.display().to_string(),
            "-o".into(),
            unwritable.display().to_string(),
        ],
        vec!["report".into()],
    ];
    for args in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = autotune(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // Without -o, the report lands next to the log.
    let out = autotune(&["report", "--db", db.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("ok.report.html").is_file());
}
