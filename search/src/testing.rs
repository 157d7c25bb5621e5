//! Test doubles: a tiny schedule space and a runner that times nothing.

use autotune_ir::{CpuTarget, Expr, LoopKind, LoopNest, NestBuilder, Stmt, Target, Task, Trace, TrialStatus};
use autotune_measure::{MeasureOutcome, Runner};
use autotune_schedules::{ScheduleError, SpaceGenerator};
use rand::{Rng, RngCore};

/// Decisions and their domains `0..extent`: 4 × 3 × 2 = 24 points.
const DECISIONS: [(&str, i64); 3] = [("a", 4), ("b", 3), ("c", 2)];

/// A space of [`DECISIONS`] with one sketch.
#[derive(Debug)]
pub struct FakeSpace {
    task: Task,
}

impl FakeSpace {
    pub fn new() -> Self {
        FakeSpace { task: Task::matmul(64, 64, 64) }
    }

    pub fn point(a: i64, b: i64, c: i64) -> Trace {
        Trace::new("fake", vec![("a", a), ("b", b), ("c", c)])
    }

    pub fn all_points(&self) -> Vec<Trace> {
        let mut points = Vec::new();
        for a in 0..DECISIONS[0].1 {
            for b in 0..DECISIONS[1].1 {
                for c in 0..DECISIONS[2].1 {
                    points.push(FakeSpace::point(a, b, c));
                }
            }
        }
        points
    }
}

impl SpaceGenerator for FakeSpace {
    fn version(&self) -> &'static str {
        "fake-1"
    }

    fn task(&self) -> &Task {
        &self.task
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Trace {
        let values: Vec<(&str, i64)> =
            DECISIONS.iter().map(|&(name, extent)| (name, rng.gen_range(0..extent))).collect();
        Trace::new("fake", values)
    }

    fn mutate(&self, trace: &Trace, rng: &mut dyn RngCore) -> Trace {
        let mut mutated = trace.clone();
        let which = rng.gen_range(0..DECISIONS.len());
        let extent = DECISIONS[which].1;
        if let Some(decision) = mutated.decisions.get_mut(which) {
            decision.value = (decision.value + rng.gen_range(1..extent)) % extent;
        }
        mutated
    }

    fn default_trace(&self) -> Trace {
        FakeSpace::point(0, 0, 0)
    }

    fn lower(&self, trace: &Trace) -> Result<LoopNest, ScheduleError> {
        let mut builder = NestBuilder::new();
        let out = builder.param("C", 4);
        let i = builder.var("i");
        let extent = trace.get("a").unwrap_or(0) + 1;
        let body = vec![Stmt::for_loop(
            i,
            Expr::int(0),
            Expr::int(extent),
            LoopKind::Serial,
            vec![Stmt::store(out, Expr::var(i), Expr::Float(0.0))],
        )];
        Ok(builder.finish("fake", body))
    }

    fn size(&self) -> u64 {
        DECISIONS.iter().map(|&(_, extent)| extent as u64).product()
    }
}

/// The trace the runner reports as `wrong_result`, with the fastest time of the whole space.
pub fn planted_wrong() -> Trace {
    FakeSpace::point(0, 0, 0)
}

/// Whether the runner reports `build_error` for `trace`.
pub fn fails_to_build(trace: &Trace) -> bool {
    trace.get("a") == Some(3) && trace.get("c") == Some(1)
}

/// The time the runner reports: distinct for every point, fastest at `(0, 0, 0)`.
pub fn fake_time_s(trace: &Trace) -> f64 {
    let a = trace.get("a").unwrap_or(0) as f64;
    let b = trace.get("b").unwrap_or(0) as f64;
    let c = trace.get("c").unwrap_or(0) as f64;
    1e-3 * (1.0 + a + 4.0 * b + 12.0 * c)
}

/// Reports deterministic times from the decisions, never compiles anything, and remembers every
/// trace it was asked to measure.
#[derive(Debug)]
pub struct FakeRunner {
    target: Target,
    pub measured: Vec<Trace>,
    pub batch_sizes: Vec<usize>,
}

impl FakeRunner {
    pub fn new() -> Self {
        let target = Target::Cpu(CpuTarget {
            model_name: "Fake CPU".to_string(),
            llvm_cpu: "generic".to_string(),
            features: vec!["+fake".to_string()],
            vector_lanes: 4,
            threads: 1,
        });
        FakeRunner { target, measured: Vec::new(), batch_sizes: Vec::new() }
    }
}

impl Runner for FakeRunner {
    fn target(&self) -> &Target {
        &self.target
    }

    fn measure_batch(&mut self, _task: &Task, traces: &[Trace]) -> Vec<MeasureOutcome> {
        self.measured.extend_from_slice(traces);
        self.batch_sizes.push(traces.len());
        traces
            .iter()
            .map(|trace| {
                let time_s = fake_time_s(trace);
                if *trace == planted_wrong() {
                    // Times present on purpose: a wrong result must not win even when timed.
                    MeasureOutcome {
                        status: TrialStatus::WrongResult,
                        error: Some("max abs error 1.5 > tolerance".to_string()),
                        repeat_times_s: vec![time_s; 3],
                        build_time_s: 0.01,
                    }
                } else if fails_to_build(trace) {
                    MeasureOutcome::failed(TrialStatus::BuildError, "fake build failure", 0.01)
                } else {
                    MeasureOutcome {
                        status: TrialStatus::Ok,
                        error: None,
                        repeat_times_s: vec![time_s * 1.1, time_s, time_s * 1.05],
                        build_time_s: 0.01,
                    }
                }
            })
            .collect()
    }
}
