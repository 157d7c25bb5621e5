//! The loaded model: tensors with static shapes, constants with their data, and nodes in
//! topological order, each either a tuned kernel ([`Task`]) or a [`PlainOp`].

use crate::plain::PlainOp;
use crate::tensor::{ElemType, Tensor};
use autotune_ir::Task;
use std::sync::Arc;

/// Index of a tensor in [`Graph::tensors`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub usize);

/// One tensor of the graph: a model input, a constant (with its data), or a node's output.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// The ONNX name (for tensors made at load time, e.g. folded weights, a new unique name).
    pub name: String,
    /// Logical NCHW for activations — a channel-blocked one keeps it — except that one with a
    /// zero border ([`Graph::add_halos`]) has its buffer's shape, the border included.
    pub shape: Vec<usize>,
    pub dtype: ElemType,
    /// The data, for constants (initializers and folded values); `None` for tensors computed at
    /// run time.
    pub value: Option<Arc<Tensor>>,
}

impl TensorInfo {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_constant(&self) -> bool {
        self.value.is_some()
    }
}

/// What a node computes.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// A tuned kernel. The node's inputs are the task's [`Task::inputs`] in order (operands, then
    /// `bias`, then `residual`); its one output is [`Task::outputs`]`[0]`. Tensors hold the same
    /// number of elements, row-major, as the task's specs but may be shaped differently (a 1-D
    /// convolution is a 2-D one with height 1; MatMul's leading dimensions fold into `m`), so a
    /// runtime passes the flat buffers. The inputs listed in [`Task::constant_inputs`] are
    /// constants of the graph (weights with any batch-norm folded in; the bias).
    Kernel(Task),
    Plain(PlainOp),
}

/// One step of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The name of the ONNX node it starts from (`#index` if unnamed).
    pub name: String,
    /// The ONNX op types fused into this node, in order (`["Conv", "BatchNormalization", "Relu"]`).
    pub onnx_ops: Vec<String>,
    pub kind: NodeKind,
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
}

impl Node {
    pub fn task(&self) -> Option<&Task> {
        match &self.kind {
            NodeKind::Kernel(task) => Some(task),
            NodeKind::Plain(_) => None,
        }
    }
    pub fn plain(&self) -> Option<&PlainOp> {
        match &self.kind {
            NodeKind::Plain(op) => Some(op),
            NodeKind::Kernel(_) => None,
        }
    }
}

/// A named model output. Identity and inference Dropout are removed at load time, so an output
/// may name a model input or a constant directly (a runtime copies it out), and two outputs may
/// name the same tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphOutput {
    /// The output's name in the ONNX model.
    pub name: String,
    pub tensor: TensorId,
}

/// A model ready to plan: static shapes everywhere, constants folded, kernels fused.
///
/// Every node's inputs are model inputs, constants, or outputs of earlier nodes. A runtime
/// walks [`Graph::nodes`] in order; for a [`NodeKind::Kernel`] node it runs the task's kernel on the
/// node's input buffers; for a [`NodeKind::Plain`] node, the plain op. Constants are
/// [`TensorInfo::value`].
#[derive(Clone, Debug)]
pub struct Graph {
    /// The ONNX graph's name.
    pub name: String,
    /// The default-domain opset the model imports.
    pub opset: i64,
    pub tensors: Vec<TensorInfo>,
    /// Tensors the caller provides, in the model's order (initializers are constants, not inputs).
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<GraphOutput>,
    /// Topological order.
    pub nodes: Vec<Node>,
    /// Nodes in the ONNX model (before folding and fusion).
    pub n_onnx_nodes: usize,
    /// Nodes a partial load ([`crate::LoadConfig::skip_unsupported`]) left out, in model order.
    /// A graph with any is for tuning what it has; it cannot be run.
    pub skipped: Vec<SkippedNode>,
    /// The model inputs' named symbolic dimensions (`batch`, `seq`) and the size each was bound
    /// to for this graph.
    pub symbolic_dims: std::collections::BTreeMap<String, usize>,
    /// Model inputs loaded as constants of a value given at load
    /// ([`crate::LoadConfig::input_values`]), by name: not in [`Graph::inputs`]; a run may pass
    /// them, with the same value.
    pub bound_inputs: Vec<(String, std::sync::Arc<crate::Tensor>)>,
}

/// A node a partial load could not lower, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedNode {
    pub node: crate::NodeRef,
    pub reason: String,
}

impl Graph {
    pub fn tensor(&self, id: TensorId) -> &TensorInfo {
        &self.tensors[id.0]
    }

    /// The data of a constant tensor.
    pub fn constant(&self, id: TensorId) -> Option<&Tensor> {
        self.tensors[id.0].value.as_deref()
    }

    /// The tensor with this ONNX name.
    pub fn find(&self, name: &str) -> Option<TensorId> {
        self.tensors.iter().position(|t| t.name == name).map(TensorId)
    }

    /// For each tensor, the indices of the nodes that read it (once per node).
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.tensors.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for t in &node.inputs {
                if out[t.0].last() != Some(&i) {
                    out[t.0].push(i);
                }
            }
        }
        out
    }

    /// The kernel nodes, in order, with their tasks.
    pub fn kernels(&self) -> impl Iterator<Item = (usize, &Node, &Task)> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| n.task().map(|t| (i, n, t)))
    }

    /// Bytes of constant data (weights after folding).
    pub fn constant_bytes(&self) -> usize {
        self.tensors.iter().filter(|t| t.is_constant()).map(|t| t.len() * t.dtype.size_bytes()).sum()
    }
}
