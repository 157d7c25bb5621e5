//! Writing trials into a tuning log the way a tuning session does, without tuning: one `ok`
//! trial per task with a random non-default schedule. Shared by `runtime/tests/plan.rs` and
//! `tests/e2e_models.rs` (included with `#[path]`).

#![allow(dead_code)]

use autotune_codegen::codegen_version;
use autotune_db::{Database, NewTrial, SessionSpec, TargetSpec, TrialStatus, WorkloadSpec};
use autotune_graph::Graph;
use autotune_ir::{Target, Task, Trace};
use autotune_schedules::space_for;
use rand::SeedableRng;

/// Records, for each task of `graph`, one `ok` trial of a random non-default schedule on
/// `target` (as a tuning session would) and returns the traces by task (tasks with no schedule
/// space on `target` — conv on a GPU without a conv space — get none). With `stale`, the trials
/// carry another schedule space version, so they no longer replay.
pub fn write_trials(db: &mut Database, graph: &Graph, target: &Target, stale: bool) -> Vec<(Task, Trace)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let target_id = db.upsert_target(&TargetSpec::of(target)).expect("target");
    let session = db
        .begin_session(&SessionSpec {
            command: "test".into(),
            seed: 11,
            strategy: "random".into(),
            tool_version: "test".into(),
        })
        .expect("session");
    let mut chosen = Vec::new();
    for (task, _) in autotune_graph::extract_tasks(graph) {
        let Ok(space) = space_for(&task, target) else { continue };
        let default = space.default_trace();
        let trace = (0..100).map(|_| space.sample(&mut rng)).find(|t| *t != default).unwrap_or(default);
        let workload = db
            .upsert_workload(&WorkloadSpec {
                task_key: task.key().0,
                op: task.op_name().to_string(),
                description: task.description(),
                task_json: task.canonical_json(),
                flops: task.flops(),
            })
            .expect("workload");
        let trial = NewTrial {
            workload,
            target: target_id,
            session,
            trace_json: trace.canonical_json(),
            trace_key: trace.key(),
            space_version: if stale { "old-space-v0".into() } else { space.version().into() },
            codegen_version: codegen_version(target).into(),
            status: TrialStatus::Ok,
            error: None,
            repeat_times_s: vec![1e-3, 2e-3],
            build_time_s: 0.1,
            strategy: "random".into(),
        };
        db.record_batch(&[trial]).expect("record");
        chosen.push((task, trace));
    }
    db.end_session(session).expect("end");
    chosen
}
