//! Traces → feature vectors for the cost model.

use autotune_cost_model::{extract_features, MachineModel};
use autotune_ir::Trace;
use autotune_schedules::SpaceGenerator;

/// Turns a point of a schedule space into the numbers a cost model learns from.
pub trait Featurizer: Send + Sync {
    /// Identifies the meaning of the vectors: samples of different versions never mix.
    fn version(&self) -> String;
    /// `None` for a trace that is not a point of the space.
    fn features(&self, trace: &Trace) -> Option<Vec<f64>>;
}

/// The production featurizer: lowers the trace and extracts the loop-nest features
/// ([`autotune_cost_model::features`]) of the kernel, then appends the raw decision values (by the
/// space's decision names, −1 where a trace lacks one), which let the model tell apart points
/// whose loop nests look alike.
pub struct LoopNestFeaturizer<'a> {
    space: &'a dyn SpaceGenerator,
    machine: MachineModel,
    decision_names: Vec<String>,
}

impl std::fmt::Debug for LoopNestFeaturizer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopNestFeaturizer")
            .field("space_version", &self.space.version())
            .field("machine", &self.machine)
            .finish()
    }
}

impl<'a> LoopNestFeaturizer<'a> {
    /// Decision names are those of `space`'s default trace.
    pub fn new(space: &'a dyn SpaceGenerator, machine: MachineModel) -> Self {
        let decision_names = space.default_trace().decisions.into_iter().map(|d| d.name).collect();
        LoopNestFeaturizer { space, machine, decision_names }
    }

    /// Like [`new`](Self::new), with decision names given: a featurizer for another task of the
    /// same space family whose vectors line up with this task's.
    pub fn with_decision_names(
        space: &'a dyn SpaceGenerator,
        machine: MachineModel,
        decision_names: Vec<String>,
    ) -> Self {
        LoopNestFeaturizer { space, machine, decision_names }
    }

    pub fn decision_names(&self) -> &[String] {
        &self.decision_names
    }
}

impl Featurizer for LoopNestFeaturizer<'_> {
    fn version(&self) -> String {
        format!("{}+decisions({})", autotune_cost_model::FEATURE_VERSION, self.decision_names.join(","))
    }

    fn features(&self, trace: &Trace) -> Option<Vec<f64>> {
        let program = self.space.lower(trace).ok()?;
        let mut features = extract_features(&program.kernel, &self.machine);
        features.extend(decision_values(trace, &self.decision_names));
        Some(features)
    }
}

/// The trace's decisions as numbers, by name: a featurizer for spaces whose lowering says little
/// (the synthetic spaces of the tests) or is expensive.
#[derive(Debug, Clone)]
pub struct DecisionFeaturizer {
    pub decision_names: Vec<String>,
}

impl DecisionFeaturizer {
    pub fn for_space(space: &dyn SpaceGenerator) -> Self {
        DecisionFeaturizer {
            decision_names: space.default_trace().decisions.into_iter().map(|d| d.name).collect(),
        }
    }
}

impl Featurizer for DecisionFeaturizer {
    fn version(&self) -> String {
        format!("decisions({})", self.decision_names.join(","))
    }

    fn features(&self, trace: &Trace) -> Option<Vec<f64>> {
        Some(decision_values(trace, &self.decision_names))
    }
}

fn decision_values(trace: &Trace, names: &[String]) -> Vec<f64> {
    names.iter().map(|name| trace.get(name).map_or(-1.0, |v| v as f64)).collect()
}
