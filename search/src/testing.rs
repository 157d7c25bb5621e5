//! Test doubles: a tiny schedule space and a runner that times nothing.

use autotune_ir::{CpuTarget, Expr, LoopKind, NestBuilder, Program, Stmt, Target, Task, Trace, TrialStatus};
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

    fn lower(&self, trace: &Trace) -> Result<Program, ScheduleError> {
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
        Ok(builder.finish("fake", body).into())
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
            ..CpuTarget::generic(autotune_ir::IsaLevel::Sse42, 1)
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

/// A synthetic schedule space with a known optimum, for testing search strategies without
/// compiling anything: `n_dims` decisions `x0, x1, …`, each in `0..n_values`.
#[derive(Debug)]
pub struct LandscapeSpace {
    task: Task,
    n_dims: usize,
    n_values: i64,
    /// The fastest point.
    optimum: Vec<i64>,
}

impl LandscapeSpace {
    pub fn new(n_dims: usize, n_values: i64) -> Self {
        // An optimum away from the corners and the default point, fixed per shape of the space.
        let optimum = (0..n_dims as i64).map(|d| (3 * d + 2) % n_values).collect();
        LandscapeSpace { task: Task::matmul(128, 128, 128), n_dims, n_values, optimum }
    }

    fn names(&self) -> Vec<String> {
        (0..self.n_dims).map(|d| format!("x{d}")).collect()
    }

    pub fn point(&self, values: &[i64]) -> Trace {
        let names = self.names();
        Trace::new("landscape", names.iter().map(String::as_str).zip(values.iter().copied()).collect())
    }

    pub fn optimum(&self) -> Trace {
        self.point(&self.optimum)
    }

    fn values(&self, trace: &Trace) -> Vec<i64> {
        (0..self.n_dims).map(|d| trace.get(&format!("x{d}")).unwrap_or(0)).collect()
    }

    pub fn distance_to_optimum(&self, trace: &Trace) -> f64 {
        self.values(trace).iter().zip(&self.optimum).map(|(x, o)| (x - o).abs() as f64).sum()
    }

    /// The landscape: 1 ms at the optimum; a separable bowl with decreasing weights per decision,
    /// an interaction between `x0` and `x1`, and up to 8 % deterministic ruggedness elsewhere.
    pub fn time_s(&self, trace: &Trace) -> f64 {
        let x = self.values(trace);
        let scale = self.n_values as f64;
        let mut time = 1e-3;
        for (d, (&xd, &od)) in x.iter().zip(&self.optimum).enumerate() {
            let weight = 4.0 / (d as f64 + 1.0);
            time *= 1.0 + weight * ((xd - od) as f64 / scale).powi(2) + 0.05 * (xd != od) as i64 as f64;
        }
        if self.n_dims >= 2 {
            let skew = ((x[0] - self.optimum[0]) - (x[1] - self.optimum[1])) as f64 / scale;
            time *= 1.0 + 2.0 * skew * skew;
        }
        if x != self.optimum {
            let hash = x.iter().fold(0x2545_F491_4F6C_DD1Du64, |h, &v| {
                (h ^ v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
            });
            time *= 1.0 + 0.08 * (hash % 1000) as f64 / 1000.0;
        }
        time
    }

    /// A point the runner reports as a build failure.
    pub fn fails(&self, trace: &Trace) -> bool {
        let x = self.values(trace);
        x.len() >= 3 && x[1] == self.n_values - 1 && x[2] == self.n_values - 1
    }
}

impl SpaceGenerator for LandscapeSpace {
    fn version(&self) -> &'static str {
        "landscape-1"
    }

    fn task(&self) -> &Task {
        &self.task
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Trace {
        let values: Vec<i64> = (0..self.n_dims).map(|_| rng.gen_range(0..self.n_values)).collect();
        self.point(&values)
    }

    fn mutate(&self, trace: &Trace, rng: &mut dyn RngCore) -> Trace {
        let mut values = self.values(trace);
        let which = rng.gen_range(0..self.n_dims);
        values[which] = (values[which] + rng.gen_range(1..self.n_values)) % self.n_values;
        self.point(&values)
    }

    fn default_trace(&self) -> Trace {
        self.point(&vec![0; self.n_dims])
    }

    fn lower(&self, trace: &Trace) -> Result<Program, ScheduleError> {
        let values = self.values(trace);
        if trace.sketch != "landscape" || values.iter().any(|v| !(0..self.n_values).contains(v)) {
            return Err(ScheduleError::InvalidTrace {
                trace: trace.display(),
                space: self.version().to_string(),
                reason: "out of range".to_string(),
            });
        }
        let mut builder = NestBuilder::new();
        let out = builder.param("C", 1);
        Ok(builder.finish("landscape", vec![Stmt::store(out, Expr::int(0), Expr::Float(0.0))]).into())
    }

    fn size(&self) -> u64 {
        (self.n_values as u64).saturating_pow(self.n_dims as u32)
    }
}

/// Times from a [`LandscapeSpace`], no compilation; remembers what it measured.
#[derive(Debug)]
pub struct LandscapeRunner<'a> {
    space: &'a LandscapeSpace,
    target: Target,
    pub measured: Vec<Trace>,
}

impl<'a> LandscapeRunner<'a> {
    pub fn new(space: &'a LandscapeSpace) -> Self {
        LandscapeRunner { space, target: FakeRunner::new().target, measured: Vec::new() }
    }
}

impl Runner for LandscapeRunner<'_> {
    fn target(&self) -> &Target {
        &self.target
    }

    fn measure_batch(&mut self, _task: &Task, traces: &[Trace]) -> Vec<MeasureOutcome> {
        self.measured.extend_from_slice(traces);
        traces
            .iter()
            .map(|trace| {
                if self.space.fails(trace) {
                    MeasureOutcome::failed(TrialStatus::BuildError, "landscape hole", 0.0)
                } else {
                    let time_s = self.space.time_s(trace);
                    MeasureOutcome {
                        status: TrialStatus::Ok,
                        error: None,
                        repeat_times_s: vec![time_s],
                        build_time_s: 0.0,
                    }
                }
            })
            .collect()
    }
}
