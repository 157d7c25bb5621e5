//! ONNX node → folded constants, an alias, or a graph node with inferred output shapes. One
//! function per operator family; opset differences (attributes that became inputs, changed
//! defaults and semantics) are resolved here, so nothing after load sees an opset.

mod elementwise;
mod nn;
mod tensor_ops;

use crate::attrs::Attrs;
use crate::builder::Builder;
use crate::error::{GraphError, NodeRef};
use crate::graph::{NodeKind, TensorId};
use crate::tensor::{ElemType, Tensor};
use std::sync::Arc;

/// What one ONNX node becomes.
// One value per ONNX node, returned once and consumed: its size costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Lowered {
    /// Every output is known at load time.
    Constants(Vec<Tensor>),
    /// The outputs are existing tensors (Identity, inference Dropout).
    Alias(Vec<TensorId>),
    /// A node of the graph, with the shape and type of each output.
    Node { kind: NodeKind, inputs: Vec<TensorId>, outputs: Vec<(Vec<usize>, ElemType)> },
}

/// One ONNX node as the lowering functions see it.
pub(crate) struct Ctx<'a> {
    pub node: NodeRef,
    pub attrs: Attrs<'a>,
    /// `None` for an omitted optional input (empty name).
    pub inputs: Vec<Option<TensorId>>,
    /// Output names as in the model (empty: omitted optional output).
    pub outputs: Vec<String>,
    pub opset: i64,
}

impl Ctx<'_> {
    pub fn input(&self, i: usize) -> Result<TensorId, GraphError> {
        self.inputs.get(i).copied().flatten().ok_or_else(|| {
            GraphError::invalid(
                &self.node,
                format!("needs input {i}, but the node has {} input(s)", self.inputs.len()),
            )
        })
    }

    pub fn opt_input(&self, i: usize) -> Option<TensorId> {
        self.inputs.get(i).copied().flatten()
    }

    /// Whether optional output `i` is used (present with a name).
    pub fn has_output(&self, i: usize) -> bool {
        self.outputs.get(i).is_some_and(|n| !n.is_empty())
    }

    pub fn invalid(&self, reason: impl Into<String>) -> GraphError {
        GraphError::invalid(&self.node, reason)
    }

    pub fn unsupported(&self, reason: impl Into<String>) -> GraphError {
        GraphError::unsupported(&self.node, reason)
    }

    /// The value of input `i`, which must be known at load time.
    pub fn const_input(&self, b: &Builder, i: usize, what: &str) -> Result<Arc<Tensor>, GraphError> {
        let id = self.input(i)?;
        if let Some(value) = b.value(id) {
            return Ok(value);
        }
        // Computed from model inputs only (shapes are static, so a value that is not a constant
        // comes from some model input's value): binding those inputs makes it a constant.
        if let Some(input) = b.model_inputs_upstream(id).first() {
            return Err(GraphError::NeedsInputValue {
                node: self.node.clone(),
                index: i,
                input: b.info(*input).name.clone(),
                what: what.to_string(),
            });
        }
        // What is left comes from no model input: a skipped node's output in a partial load.
        Err(self.unsupported(format!(
            "input {i} (`{}`, {what}) is computed at run time; only a constant (load-time) {what} is supported",
            b.info(id).name
        )))
    }

    /// Optional constant integer-list input (e.g. Squeeze's axes since opset 13).
    pub fn opt_const_ints(&self, b: &Builder, i: usize, what: &str) -> Result<Option<Vec<i64>>, GraphError> {
        match self.opt_input(i) {
            None => Ok(None),
            Some(_) => Ok(Some(self.const_input(b, i, what)?.to_i64())),
        }
    }

    /// An axis attribute/value resolved against `rank`.
    pub fn axis(&self, axis: i64, rank: usize) -> Result<usize, GraphError> {
        crate::shape::axis(axis, rank)
            .ok_or_else(|| self.invalid(format!("axis {axis} is out of range for a rank-{rank} input")))
    }
}

/// The values of every input, if all are constants.
pub(crate) fn all_constant(b: &Builder, ids: &[TensorId]) -> Option<Vec<Arc<Tensor>>> {
    ids.iter().map(|&id| b.value(id)).collect()
}

/// The ONNX op types this build can load (default domain), for docs and messages.
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "CastLike",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Cos",
    "Div",
    "Dropout",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "LRN",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mod",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "Range",
    "Reciprocal",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Selu",
    "Shape",
    "Sigmoid",
    "Sin",
    "Size",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Tile",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Where",
    "Xor",
];

/// Lowers one node. `op_type` is in the default domain.
pub(crate) fn lower(b: &mut Builder, ctx: &Ctx, op_type: &str) -> Result<Lowered, GraphError> {
    use elementwise as e;
    use nn as n;
    use tensor_ops as t;
    match op_type {
        "Constant" => t::constant(b, ctx),
        "ConstantOfShape" => t::constant_of_shape(b, ctx),
        "Shape" => t::shape(b, ctx),
        "Size" => t::size(b, ctx),
        "Range" => t::range(b, ctx),
        "Identity" => Ok(Lowered::Alias(vec![ctx.input(0)?])),
        "Dropout" => t::dropout(b, ctx),
        "Cast" => t::cast(b, ctx, false),
        "CastLike" => t::cast(b, ctx, true),
        "Reshape" => t::reshape(b, ctx),
        "Flatten" => t::flatten(b, ctx),
        "Squeeze" => t::squeeze(b, ctx),
        "Unsqueeze" => t::unsqueeze(b, ctx),
        "Transpose" => t::transpose(b, ctx),
        "Concat" => t::concat(b, ctx),
        "Gather" => t::gather(b, ctx),
        "Slice" => t::slice(b, ctx),
        "Split" => t::split(b, ctx),
        "Pad" => t::pad(b, ctx),
        "Tile" => t::tile(b, ctx),
        "Trilu" => t::trilu(b, ctx),
        "Expand" => t::expand(b, ctx),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "PRelu" | "Equal" | "Less" | "LessOrEqual" | "Greater"
        | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Mod" => e::binary(b, ctx, op_type),
        "Where" => e::where_(b, ctx),
        "Not" => e::not(b, ctx),
        "Sum" | "Max" | "Min" | "Mean" => e::variadic(b, ctx, op_type),
        "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Log" | "Neg" | "Abs" | "Sqrt" | "Reciprocal" | "Floor"
        | "Ceil" | "Sin" | "Cos" | "Softplus" | "Softsign" | "HardSwish" | "Elu" | "Selu" | "LeakyRelu"
        | "HardSigmoid" | "Clip" | "Erf" | "Gelu" => e::unary(b, ctx, op_type),
        "Conv" => n::conv(b, ctx),
        "MaxPool" | "AveragePool" => n::pool(b, ctx, op_type),
        "GlobalAveragePool" | "GlobalMaxPool" => n::global_pool(b, ctx, op_type),
        "Gemm" => n::gemm(b, ctx),
        "MatMul" => n::matmul(b, ctx),
        "BatchNormalization" => n::batch_norm(b, ctx),
        "InstanceNormalization" => n::instance_norm(b, ctx),
        "LRN" => n::lrn(b, ctx),
        "Softmax" | "LogSoftmax" => n::softmax(b, ctx, op_type),
        "LayerNormalization" => n::layer_norm(b, ctx),
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" => n::reduce(b, ctx, op_type),
        _ => Err(GraphError::UnsupportedOp {
            node: ctx.node.clone(),
            op: op_type.to_string(),
            domain_note: String::new(),
        }),
    }
}
