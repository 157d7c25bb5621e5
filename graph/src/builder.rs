//! The graph under construction: tensors by name, nodes in order, fresh names for tensors made
//! at load time.

use crate::graph::{Node, NodeKind, TensorId, TensorInfo};
use crate::tensor::{ElemType, Tensor};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug, Default)]
pub(crate) struct Builder {
    pub tensors: Vec<TensorInfo>,
    pub by_name: HashMap<String, TensorId>,
    pub nodes: Vec<Node>,
    pub opset: i64,
    /// Outputs a node does not produce (Dropout's mask), with why: an error only if read.
    pub unavailable: HashMap<String, String>,
    /// The model inputs (not bound to a value): a node that needs one as a constant asks for
    /// its value ([`crate::GraphError::NeedsInputValue`]).
    pub model_inputs: HashSet<TensorId>,
    used_names: HashSet<String>,
}

impl Builder {
    pub fn new(opset: i64) -> Builder {
        Builder { opset, ..Builder::default() }
    }

    pub fn info(&self, id: TensorId) -> &TensorInfo {
        &self.tensors[id.0]
    }

    pub fn shape(&self, id: TensorId) -> &[usize] {
        &self.tensors[id.0].shape
    }

    pub fn value(&self, id: TensorId) -> Option<Arc<Tensor>> {
        self.tensors[id.0].value.clone()
    }

    /// The model inputs whose values `id`'s value depends on, nearest first (none for a constant).
    pub fn model_inputs_upstream(&self, id: TensorId) -> Vec<TensorId> {
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![id];
        while let Some(t) = stack.pop() {
            if !seen.insert(t) || self.tensors[t.0].value.is_some() {
                continue;
            }
            if self.model_inputs.contains(&t) {
                found.push(t);
            } else if let Some(node) = self.nodes.iter().find(|n| n.outputs.contains(&t)) {
                stack.extend(node.inputs.iter().rev());
            }
        }
        found
    }

    /// A new tensor under exactly this ONNX name (later definitions of a name win, as in SSA
    /// they cannot happen; the caller checks).
    pub fn add_named(
        &mut self,
        name: &str,
        shape: Vec<usize>,
        dtype: ElemType,
        value: Option<Arc<Tensor>>,
    ) -> TensorId {
        let id = TensorId(self.tensors.len());
        self.used_names.insert(name.to_string());
        self.tensors.push(TensorInfo { name: name.to_string(), shape, dtype, value });
        self.by_name.insert(name.to_string(), id);
        id
    }

    /// A name no tensor of the model uses, based on `hint`.
    pub fn fresh_name(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut k = 1;
        while self.used_names.contains(&name) || self.by_name.contains_key(&name) {
            k += 1;
            name = format!("{hint}#{k}");
        }
        self.used_names.insert(name.clone());
        name
    }

    /// A constant made at load time (folded weights, a bias), under a fresh name.
    pub fn add_constant(&mut self, hint: &str, value: Tensor) -> TensorId {
        let name = self.fresh_name(hint);
        let id = TensorId(self.tensors.len());
        self.tensors.push(TensorInfo {
            name,
            shape: value.shape.clone(),
            dtype: value.dtype,
            value: Some(Arc::new(value)),
        });
        id
    }

    /// A runtime tensor made at load time (the output of an inserted node), under a fresh name.
    pub fn add_temp(&mut self, hint: &str, shape: Vec<usize>, dtype: ElemType) -> TensorId {
        let name = self.fresh_name(hint);
        let id = TensorId(self.tensors.len());
        self.tensors.push(TensorInfo { name, shape, dtype, value: None });
        id
    }

    /// Appends a node made at load time (e.g. a Reshape inserted for opset-6 broadcasting).
    pub fn push_node(
        &mut self,
        name: &str,
        onnx_op: &str,
        kind: NodeKind,
        inputs: Vec<TensorId>,
        outputs: Vec<TensorId>,
    ) {
        self.nodes.push(Node {
            name: name.to_string(),
            onnx_ops: vec![onnx_op.to_string()],
            kind,
            inputs,
            outputs,
        });
    }
}
