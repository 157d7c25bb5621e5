//! What can go wrong between an ONNX file and a [`Graph`](crate::Graph), with enough context (file,
//! node name, op type) to say what to do.

use std::path::PathBuf;

/// Where in the model an error happened: the ONNX node's name (or `#index` when it has none) and
/// its op type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRef {
    pub name: String,
    pub op_type: String,
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node `{}` ({})", self.name, self.op_type)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a protobuf ModelProto.
    #[error("{what} is not an ONNX model: {reason}")]
    NotOnnx { what: String, reason: String },
    #[error("{what} uses opset {version} of the default ONNX domain; this build supports opsets {min} to {max}{hint}")]
    UnsupportedOpset { what: String, version: i64, min: i64, max: i64, hint: &'static str },
    /// An operator (or an operator domain) this build does not know.
    #[error("{node}: unsupported operator `{op}`{domain_note}")]
    UnsupportedOp { node: NodeRef, op: String, domain_note: String },
    /// A known operator used in a way this build does not handle (e.g. non-constant weights).
    #[error("{node}: {reason}")]
    Unsupported { node: NodeRef, reason: String },
    /// A node needs as a constant (a shape, axes, bounds) what is a model input or computed from
    /// one (`input`): known only at run time unless the caller binds `input`
    /// ([`crate::LoadConfig::input_values`]).
    #[error("{node}: input {index} ({what}) needs the value of model input `{input}` when the model is loaded; pass its value (`autotune run --input FILE`, or LoadConfig::input_values)")]
    NeedsInputValue { node: NodeRef, index: usize, input: String, what: String },
    /// The model itself is inconsistent (wrong input count, shapes that do not fit the operator…).
    #[error("{node}: {reason}")]
    Invalid { node: NodeRef, reason: String },
    /// A tensor is read but never produced, or produced twice.
    #[error("tensor `{tensor}`: {reason}")]
    Tensor { tensor: String, reason: String },
    /// The shape inferred for a graph output differs from the one the model declares.
    #[error(
        "graph output `{tensor}`: the model declares shape {declared:?} but inference gives {inferred:?}"
    )]
    OutputShape { tensor: String, declared: Vec<usize>, inferred: Vec<usize> },
    /// A tensor's stored data cannot be read (unknown data type, truncated data, external file).
    #[error("tensor `{tensor}`: {reason}")]
    TensorData { tensor: String, reason: String },
}

impl GraphError {
    pub(crate) fn invalid(node: &NodeRef, reason: impl Into<String>) -> GraphError {
        GraphError::Invalid { node: node.clone(), reason: reason.into() }
    }
    pub(crate) fn unsupported(node: &NodeRef, reason: impl Into<String>) -> GraphError {
        GraphError::Unsupported { node: node.clone(), reason: reason.into() }
    }
}
