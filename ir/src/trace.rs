//! Traces: the ordered decisions that pick one point of a schedule space. A Trace is what the
//! tuning log stores (never generated code), so it must replay to the same LoopNest.

use crate::task::stable_hash_hex;
use serde::{Deserialize, Serialize};

/// One free choice of a sketch, e.g. `("mr", 6)`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Decision {
    pub name: String,
    pub value: i64,
}

/// A sketch name plus its decisions in the order the sketch defines them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Trace {
    pub sketch: String,
    pub decisions: Vec<Decision>,
}

impl Trace {
    pub fn new(sketch: impl Into<String>, decisions: Vec<(&str, i64)>) -> Trace {
        Trace {
            sketch: sketch.into(),
            decisions: decisions
                .into_iter()
                .map(|(name, value)| Decision { name: name.to_string(), value })
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<i64> {
        self.decisions.iter().find(|d| d.name == name).map(|d| d.value)
    }

    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Stable identity of the trace, used to never measure the same point twice.
    pub fn key(&self) -> String {
        stable_hash_hex(&self.canonical_json())
    }

    pub fn from_json(text: &str) -> Result<Trace, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Compact human form: `sketch(mr=6, nr=32, …)`.
    pub fn display(&self) -> String {
        let parts: Vec<String> = self.decisions.iter().map(|d| format!("{}={}", d.name, d.value)).collect();
        format!("{}({})", self.sketch, parts.join(", "))
    }
}
