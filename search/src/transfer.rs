//! Transfer: warm-starting a search from what tuning logs already hold — other shapes of the same
//! operator, and other logs (`--warm-start other.tuning.db`).
//!
//! Two things transfer. **Samples** (features and log2 GFLOP/s of measured trials, each featurized
//! with its own task's space) train the cost model before this task has data; the surrogate drops
//! them once this task has enough valid trials of its own
//! ([`SurrogateConfig::prior_until_own_ok`](crate::SurrogateConfig)). **Traces** (the best
//! schedules found elsewhere, adapted to this task's space) are proposed first, a handful at most.
//! Both are bounded so that transfer can speed up the start but cannot steer a long search.

use autotune_cost_model::{MachineModel, Sample};
use autotune_db::{Database, TrialRecord};
use autotune_ir::{Target, Task, Trace};
use autotune_schedules::{space_for, SpaceGenerator};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::SearchError;
use crate::featurize::{Featurizer, LoopNestFeaturizer};

/// What a search starts from besides this task's own trials.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WarmStart {
    /// Samples for the cost model, in the featurizer's vector layout.
    pub samples: Vec<Sample>,
    /// Points of this task's space worth trying first, best first.
    pub traces: Vec<Trace>,
}

impl WarmStart {
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.traces.is_empty()
    }

    pub fn extend(&mut self, other: WarmStart) {
        self.samples.extend(other.samples);
        for trace in other.traces {
            if !self.traces.contains(&trace) {
                self.traces.push(trace);
            }
        }
    }
}

/// Settings of [`warm_start_from_log`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarmStartConfig {
    /// Samples taken per other task (the best half, then an even spread of the rest).
    pub max_samples_per_task: usize,
    /// Traces kept (best first).
    pub max_traces: usize,
    /// Whether trials of the very task being tuned count (yes for another log; no for the log
    /// being tuned into, whose own trials the tune loop already hands the strategy).
    pub include_same_task: bool,
}

impl Default for WarmStartConfig {
    fn default() -> Self {
        WarmStartConfig { max_samples_per_task: 128, max_traces: 8, include_same_task: false }
    }
}

/// Reads a warm start for tuning `task` with `space` on `target` from `db`: valid trials of tasks
/// of the same operator and space on the same target, measured with replayable space and codegen
/// versions.
/// Features use `machine` and line up with `space`'s decision names.
pub fn warm_start_from_log(
    db: &Database,
    task: &Task,
    target: &Target,
    space: &dyn SpaceGenerator,
    codegen_version: &str,
    machine: MachineModel,
    config: &WarmStartConfig,
) -> Result<WarmStart, SearchError> {
    let decision_names: Vec<String> = space.default_trace().decisions.into_iter().map(|d| d.name).collect();
    let target_key = target.key();
    let mut same_task: Vec<(Trace, f64)> = Vec::new();
    let mut other_tasks: Vec<(Trace, f64)> = Vec::new();
    let mut warm = WarmStart::default();
    let workloads = db.workloads().map_err(SearchError::db("read the workloads of the warm-start log"))?;
    for (_, workload) in workloads {
        let Ok(other_task) = serde_json::from_str::<Task>(&workload.task_json) else { continue };
        let is_same_task = other_task == *task;
        // The same conv without zero borders: its schedules are this task's, nearly as fast.
        let is_twin = !task.halo.is_none() && other_task == task.without_halo();
        if other_task.op_name() != task.op_name() || (is_same_task && !config.include_same_task) {
            continue;
        }
        // Only tasks tuned in the same space: another sketch's decisions mean nothing here (a
        // depthwise conv and a dense one are both `conv2d`).
        let Ok(other_space) = space_for(&other_task, target) else { continue };
        if other_space.version() != space.version() {
            continue;
        }
        let records = db
            .trials(&workload.task_key, &target_key)
            .map_err(SearchError::db("read the trials of the warm-start log"))?;
        let mut valid: Vec<(Trace, f64)> = records
            .iter()
            .filter(|r| r.is_comparable(other_space.version(), codegen_version))
            .filter_map(|r| Some((Trace::from_json(&r.trace_json).ok()?, score(&other_task, r)?)))
            .collect();
        valid.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let featurizer =
            LoopNestFeaturizer::with_decision_names(other_space.as_ref(), machine, decision_names.clone());
        for (trace, score) in spread(&valid, config.max_samples_per_task) {
            if let Some(features) = featurizer.features(trace) {
                warm.samples.push(Sample { features, score: *score, weight: 1.0 });
            }
        }
        let best = valid.into_iter().take(config.max_traces);
        if is_same_task || is_twin {
            same_task.extend(best);
        } else {
            other_tasks.extend(best);
        }
    }

    // Same task (or its borderless twin) first, valid as is; then other shapes' best, adapted to
    // this space.
    other_tasks.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for (trace, _) in same_task.into_iter().chain(other_tasks) {
        if warm.traces.len() >= config.max_traces {
            break;
        }
        // Crossing a trace with itself repairs it into this space (domains shrink with the shape).
        let adapted = space.crossover(&trace, &trace, &mut rng);
        if space.lower(&adapted).is_ok() && !warm.traces.contains(&adapted) {
            warm.traces.push(adapted);
        }
    }
    Ok(warm)
}

/// log2 GFLOP/s of a valid trial.
fn score(task: &Task, record: &TrialRecord) -> Option<f64> {
    let median_s = record.median_s.filter(|m| *m > 0.0)?;
    Some((task.flops() / median_s / 1e9).log2())
}

/// At most `n` items of a best-first list: the best half, then an even spread of the rest.
fn spread<T>(sorted: &[T], n: usize) -> Vec<&T> {
    if sorted.len() <= n {
        return sorted.iter().collect();
    }
    let head = n / 2;
    let rest = &sorted[head..];
    let tail = n - head;
    let mut picked: Vec<&T> = sorted[..head].iter().collect();
    picked.extend((0..tail).map(|i| &rest[i * rest.len() / tail]));
    picked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{RandomSearch, RandomSearchConfig};
    use crate::testing::FakeRunner;
    use crate::tune::{tune, TuneConfig};
    use autotune_cost_model::CacheSizes;
    use autotune_measure::Runner;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn other_shapes_in_a_log_become_samples_and_adapted_traces() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let target = runner.target().clone();
        let small = Task::matmul(64, 48, 32);
        let small_space = space_for(&small, &target).expect("space");
        let mut strategy = RandomSearch::new(small_space.as_ref(), RandomSearchConfig::new(1));
        let config = TuneConfig::new(12, 1, "fake-codegen");
        tune(
            &small,
            small_space.as_ref(),
            &mut strategy,
            &mut runner,
            &mut db,
            &config,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .expect("tune the small shape");

        let big = Task::matmul(200, 176, 144);
        let big_space = space_for(&big, &target).expect("space");
        let machine = MachineModel::cpu(CacheSizes::FALLBACK, autotune_ir::IsaLevel::Sse42, 1);
        let read = |config: &WarmStartConfig, codegen: &str| {
            warm_start_from_log(&db, &big, &target, big_space.as_ref(), codegen, machine, config)
                .expect("warm start")
        };
        let warm = read(&WarmStartConfig::default(), "fake-codegen");
        // FakeRunner fails some traces and plants a wrong result; the valid ones transfer.
        assert!(!warm.samples.is_empty() && warm.samples.len() <= 12);
        let n_features =
            LoopNestFeaturizer::new(big_space.as_ref(), machine).features(&big_space.default_trace());
        assert!(warm.samples.iter().all(|s| Some(s.features.len()) == n_features.as_ref().map(Vec::len)));
        assert!(!warm.traces.is_empty() && warm.traces.len() <= 8);
        assert!(warm.traces.iter().all(|t| big_space.lower(t).is_ok()), "adapted to the big shape");

        // Another codegen version does not replay: nothing transfers. The same task is skipped
        // unless asked for.
        assert!(read(&WarmStartConfig::default(), "other-codegen").is_empty());
        let same_task = warm_start_from_log(
            &db,
            &small,
            &target,
            small_space.as_ref(),
            "fake-codegen",
            machine,
            &WarmStartConfig::default(),
        )
        .expect("warm start");
        assert!(same_task.is_empty());
        let included = WarmStartConfig { include_same_task: true, ..WarmStartConfig::default() };
        let same_task = warm_start_from_log(
            &db,
            &small,
            &target,
            small_space.as_ref(),
            "fake-codegen",
            machine,
            &included,
        )
        .expect("warm start");
        assert!(!same_task.samples.is_empty());
    }

    #[test]
    fn a_bordered_conv_starts_from_its_borderless_twins_best() {
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let target = runner.target().clone();
        let conv = |size: usize| {
            let spec = autotune_ir::Conv2dSpec {
                n: 1,
                c: 32,
                h: size,
                w: size,
                o: 32,
                kh: 3,
                kw: 3,
                stride: [1, 1],
                pad: [1; 4],
                dilation: [1, 1],
                groups: 1,
            };
            Task::new(autotune_ir::Op::Conv2d(spec), vec![autotune_ir::EpilogueOp::Bias])
                .with_layout(autotune_ir::ChannelBlocks { input: 16, output: 16 })
        };
        // The twin, and a larger conv whose trials score higher (the fake runner times every
        // trial alike): without the twin rule its traces would come first.
        let (twin, larger) = (conv(8), conv(16));
        for (task, seed) in [(&twin, 3), (&larger, 4)] {
            let space = space_for(task, &target).expect("space");
            let mut strategy = RandomSearch::new(space.as_ref(), RandomSearchConfig::new(seed));
            let config = TuneConfig::new(12, 1, "fake-codegen");
            let stop = AtomicBool::new(false);
            tune(task, space.as_ref(), &mut strategy, &mut runner, &mut db, &config, &stop, &mut |_| {})
                .expect("tune");
        }
        let twin_traces: Vec<Trace> = db
            .best(&twin.key().0, &target.key(), 100)
            .expect("best")
            .iter()
            .map(|r| Trace::from_json(&r.trace_json).expect("trace"))
            .collect();
        assert!(twin_traces.len() >= 4, "{}", twin_traces.len());

        let bordered = twin.clone().with_halo(autotune_ir::Halo { input: [1; 4], output: [0; 4] });
        let space = space_for(&bordered, &target).expect("space");
        let machine = MachineModel::cpu(CacheSizes::FALLBACK, autotune_ir::IsaLevel::Sse42, 1);
        let warm = warm_start_from_log(
            &db,
            &bordered,
            &target,
            space.as_ref(),
            "fake-codegen",
            machine,
            &WarmStartConfig::default(),
        )
        .expect("warm start");
        let first = &warm.traces[..4];
        assert!(first.iter().all(|t| twin_traces.contains(t)), "the twin's schedules first, as they are");
        assert!(first.iter().all(|t| space.lower(t).is_ok()));
    }

    #[test]
    fn a_task_of_another_space_does_not_transfer() {
        // A dense 3×3 conv and a depthwise one are both `conv2d`, tuned in different spaces.
        let conv = |c: usize, groups: usize| {
            Task::new(
                autotune_ir::Op::Conv2d(autotune_ir::Conv2dSpec {
                    n: 1,
                    c,
                    h: 8,
                    w: 8,
                    o: 8,
                    kh: 3,
                    kw: 3,
                    stride: [1, 1],
                    pad: [1; 4],
                    dilation: [1, 1],
                    groups,
                }),
                vec![],
            )
        };
        let (dense, depthwise) = (conv(8, 1), conv(8, 8));
        let mut db = Database::open_in_memory().expect("db");
        let mut runner = FakeRunner::new();
        let target = runner.target().clone();
        let dense_space = space_for(&dense, &target).expect("space");
        let mut strategy = RandomSearch::new(dense_space.as_ref(), RandomSearchConfig::new(1));
        let config = TuneConfig::new(8, 1, "fake-codegen");
        let cancel = AtomicBool::new(false);
        tune(
            &dense,
            dense_space.as_ref(),
            &mut strategy,
            &mut runner,
            &mut db,
            &config,
            &cancel,
            &mut |_| {},
        )
        .expect("tune the dense conv");
        let machine = MachineModel::cpu(CacheSizes::FALLBACK, autotune_ir::IsaLevel::Sse42, 1);
        let config = WarmStartConfig::default();
        let depthwise_space = space_for(&depthwise, &target).expect("space");
        assert_ne!(depthwise_space.version(), dense_space.version());
        let warm = warm_start_from_log(
            &db,
            &depthwise,
            &target,
            depthwise_space.as_ref(),
            "fake-codegen",
            machine,
            &config,
        )
        .expect("warm start");
        assert!(warm.is_empty());
        let other_dense = conv(16, 2);
        let other_space = space_for(&other_dense, &target).expect("space");
        let warm = warm_start_from_log(
            &db,
            &other_dense,
            &target,
            other_space.as_ref(),
            "fake-codegen",
            machine,
            &config,
        )
        .expect("warm start");
        assert!(!warm.is_empty(), "a grouped conv of the same space does");
    }

    #[test]
    fn spread_keeps_the_best_half_and_an_even_tail() {
        let items: Vec<u32> = (0..100).collect();
        let picked: Vec<u32> = spread(&items, 10).into_iter().copied().collect();
        assert_eq!(picked, vec![0, 1, 2, 3, 4, 5, 24, 43, 62, 81]);
        assert_eq!(spread(&items[..3], 10).len(), 3);
    }
}
