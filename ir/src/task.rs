//! Tasks: what is tuned (operator × shapes × dtype × layout), and their stable keys.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Element type of a tensor. Only fp32 is tuned today; the enum is the place where fp16/bf16/int8 go.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
}

impl DType {
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
        }
    }
}

/// `C[m×n] = A[m×k] · B[k×n]`, all row-major and contiguous.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// The operator of a task with its shapes. New operator families are new variants.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Matmul(MatmulShape),
}

/// One tuning task: an operator instance with its dtype. Two tasks with equal fields are the same
/// workload, whatever model they came from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Task {
    #[serde(flatten)]
    pub op: Op,
    pub dtype: DType,
}

/// The shape and dtype of one kernel argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Stable identity of a task: the SHA-256 of its canonical JSON, hex. Stable across runs, machines
/// and builds (unlike a `Hash`-derived value), so it can key the tuning log that ships with a model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskKey(pub String);

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Task {
    pub fn matmul(m: usize, n: usize, k: usize) -> Task {
        Task { op: Op::Matmul(MatmulShape { m, n, k }), dtype: DType::F32 }
    }

    /// Canonical JSON: field order is fixed by the type definitions, no whitespace.
    pub fn canonical_json(&self) -> String {
        // Serializing plain structs and enums of integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn key(&self) -> TaskKey {
        TaskKey(stable_hash_hex(&self.canonical_json()))
    }

    pub fn op_name(&self) -> &'static str {
        match self.op {
            Op::Matmul(_) => "matmul",
        }
    }

    /// Human-readable one-liner, e.g. `matmul 1024x1024x1024 f32`.
    pub fn description(&self) -> String {
        match &self.op {
            Op::Matmul(s) => format!("matmul {}x{}x{} {}", s.m, s.n, s.k, self.dtype.as_str()),
        }
    }

    /// Floating-point operations of one execution (a multiply-add counts as two).
    pub fn flops(&self) -> f64 {
        match &self.op {
            Op::Matmul(s) => 2.0 * s.m as f64 * s.n as f64 * s.k as f64,
        }
    }

    /// Bytes that must cross the memory interface at least once (inputs read, outputs written).
    pub fn min_bytes(&self) -> f64 {
        let elems: usize = self.inputs().iter().chain(self.outputs().iter()).map(TensorSpec::len).sum();
        (elems * self.dtype.size_bytes()) as f64
    }

    /// Kernel inputs in argument order.
    pub fn inputs(&self) -> Vec<TensorSpec> {
        match &self.op {
            Op::Matmul(s) => vec![
                TensorSpec { name: "A", shape: vec![s.m, s.k], dtype: self.dtype },
                TensorSpec { name: "B", shape: vec![s.k, s.n], dtype: self.dtype },
            ],
        }
    }

    /// Kernel outputs in argument order (they follow the inputs).
    pub fn outputs(&self) -> Vec<TensorSpec> {
        match &self.op {
            Op::Matmul(s) => vec![TensorSpec { name: "C", shape: vec![s.m, s.n], dtype: self.dtype }],
        }
    }

    /// Length of the longest reduction that feeds one output element; scales the tolerance.
    pub fn reduction_len(&self) -> usize {
        match &self.op {
            Op::Matmul(s) => s.k,
        }
    }
}

pub(crate) fn stable_hash_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_key_is_stable_and_distinguishes_shapes() {
        let a = Task::matmul(1024, 1024, 1024);
        // Pinned: a changed key orphans every shipped tuning log, so it must never change silently.
        assert_eq!(a.canonical_json(), r#"{"op":"matmul","m":1024,"n":1024,"k":1024,"dtype":"f32"}"#);
        assert_eq!(a.key(), Task::matmul(1024, 1024, 1024).key());
        assert_ne!(a.key(), Task::matmul(1024, 1024, 512).key());
        assert_eq!(a.key().0.len(), 64);
    }

    #[test]
    fn flops_and_bytes() {
        let t = Task::matmul(2, 3, 4);
        assert_eq!(t.flops(), 48.0);
        assert_eq!(t.min_bytes(), ((2 * 4 + 4 * 3 + 2 * 3) * 4) as f64);
    }
}
