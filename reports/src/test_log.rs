//! Test support: small tuning logs written through the db crate's public API, with real tasks,
//! targets and traces, so the report is tested on what a tuning run writes.

use autotune_db::{
    Database, MachineMeasurementKind, NewMachineMeasurement, NewTrial, SessionId, SessionSpec, TargetId,
    TargetSpec, TrialStatus, WorkloadId, WorkloadSpec,
};
use autotune_ir::{CpuTarget, Target, Task, Trace};
use autotune_schedules::space_for;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub(crate) const CODEGEN: &str = "test-codegen-1";

/// A 2-thread AVX-512 CPU.
pub(crate) fn cpu_target(threads: u32) -> Target {
    Target::Cpu(CpuTarget {
        model_name: "Test CPU 9000 <16-core>".into(),
        llvm_cpu: "x86-64-v4".into(),
        features: vec![
            "+avx2".into(),
            "+avx512f".into(),
            "+fma".into(),
            "+sse4.2".into(),
            "-amx-tile".into(),
        ],
        vector_lanes: 16,
        threads,
        restricted_to: None,
        caches: autotune_ir::CacheSizes::FALLBACK,
    })
}

/// What happened to one recorded trial.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// Every repeat time, in seconds.
    Ok(Vec<f64>),
    Failed(TrialStatus, String),
}

pub(crate) fn ok(times: &[f64]) -> Outcome {
    Outcome::Ok(times.to_vec())
}

pub(crate) fn failed(status: TrialStatus, text: &str) -> Outcome {
    Outcome::Failed(status, text.to_string())
}

/// A tuning log being written by a test.
pub(crate) struct TestLog {
    pub db: Database,
    pub target: Target,
    target_id: TargetId,
}

impl TestLog {
    pub fn new(target: Target) -> TestLog {
        let mut db = Database::open_in_memory().expect("in-memory log");
        let target_id = db
            .upsert_target(&TargetSpec {
                target_key: target.key(),
                kind: target.kind().to_string(),
                name: target.name().to_string(),
                features: target.feature_summary(),
                threads: target.threads(),
                target_json: target.canonical_json(),
            })
            .expect("target");
        TestLog { db, target, target_id }
    }

    pub fn workload(&mut self, task: &Task) -> WorkloadId {
        self.db
            .upsert_workload(&WorkloadSpec {
                task_key: task.key().0,
                op: task.op_name().to_string(),
                description: task.description(),
                task_json: task.canonical_json(),
                flops: task.flops(),
            })
            .expect("workload")
    }

    pub fn session(&mut self, strategy: &str) -> SessionId {
        self.db
            .begin_session(&SessionSpec {
                command: format!("autotune op matmul --strategy {strategy}"),
                seed: 1,
                strategy: strategy.to_string(),
                tool_version: "0.1.0".into(),
            })
            .expect("session")
    }

    pub fn measure_machine(&mut self, peak_gflops: f64, bandwidth_gbs: f64) {
        for (kind, value) in [
            (MachineMeasurementKind::PeakGflops, peak_gflops),
            (MachineMeasurementKind::BandwidthGbs, bandwidth_gbs),
        ] {
            let measurement = NewMachineMeasurement { kind, value, method: "test probe".into() };
            self.db.record_machine_measurement(&self.target.key(), &measurement).expect("measurement");
        }
    }

    /// Records one batch of `(trace, outcome)` for `task` in `session`, proposed by `strategy`.
    pub fn record(&mut self, task: &Task, session: SessionId, strategy: &str, batch: &[(Trace, Outcome)]) {
        let workload = self.workload(task);
        let target = self.target_id;
        let space_version = space_for(task, &self.target).expect("space").version();
        let rows: Vec<NewTrial> = batch
            .iter()
            .map(|(trace, outcome)| {
                let (status, error, repeat_times_s) = match outcome {
                    Outcome::Ok(times) => (TrialStatus::Ok, None, times.clone()),
                    Outcome::Failed(status, text) => (*status, Some(text.clone()), Vec::new()),
                };
                NewTrial {
                    workload,
                    target,
                    session,
                    trace_json: trace.canonical_json(),
                    trace_key: trace.key(),
                    space_version: space_version.to_string(),
                    codegen_version: CODEGEN.into(),
                    status,
                    error,
                    repeat_times_s,
                    build_time_s: 0.05,
                    strategy: strategy.to_string(),
                }
            })
            .collect();
        let ids = self.db.record_batch(&rows).expect("record batch");
        assert!(ids.iter().all(Option::is_some), "a test trace was recorded twice");
    }

    pub fn default_trace(&self, task: &Task) -> Trace {
        space_for(task, &self.target).expect("space").default_trace()
    }

    /// `n` distinct points of the task's space, none of them the default.
    pub fn other_traces(&self, task: &Task, n: usize, seed: u64) -> Vec<Trace> {
        let space = space_for(task, &self.target).expect("space");
        let default_key = space.default_trace().key();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut keys = std::collections::HashSet::from([default_key]);
        let mut traces = Vec::with_capacity(n);
        for _ in 0..n * 1000 {
            if traces.len() == n {
                break;
            }
            let trace = space.sample(&mut rng);
            if keys.insert(trace.key()) {
                traces.push(trace);
            }
        }
        assert_eq!(traces.len(), n, "the space of {} is too small for the test", task.description());
        traces
    }
}
