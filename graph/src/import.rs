//! ModelProto → Builder: opset check, initializers, inputs, topological order, and each node
//! lowered in turn; then fusion and clean-up into a [`Graph`].

use crate::attrs::Attrs;
use crate::builder::Builder;
use crate::error::{GraphError, NodeRef};
use crate::graph::{Graph, GraphOutput, Node, SkippedNode, TensorId};
use crate::lower::{self, Ctx, Lowered};
use crate::proto::{self, type_proto, ModelProto, TensorShapeProto};
use crate::tensor::{ElemType, Tensor};
use crate::{fuse, LoadConfig, MAX_OPSET, MIN_OPSET};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

pub(crate) fn load_bytes(
    bytes: &[u8],
    what: &str,
    model_dir: Option<&Path>,
    config: &LoadConfig,
) -> Result<Graph, GraphError> {
    let not_onnx = |reason: String| GraphError::NotOnnx { what: what.to_string(), reason };
    let model = ModelProto::decode(bytes).map_err(|e| not_onnx(format!("protobuf decoding failed ({e})")))?;
    let graph = match (&model.graph, model.ir_version) {
        (Some(g), Some(v)) if v > 0 => g,
        _ => return Err(not_onnx("it holds no graph and no IR version".into())),
    };
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| not_onnx("it imports no default-domain opset".into()))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        let hint = if opset < MIN_OPSET { " (upgrade it with onnx.version_converter)" } else { "" };
        return Err(GraphError::UnsupportedOpset {
            what: what.to_string(),
            version: opset,
            min: MIN_OPSET,
            max: MAX_OPSET,
            hint,
        });
    }
    let functions: HashSet<&str> = model.functions.iter().filter_map(|f| f.name.as_deref()).collect();

    let mut b = Builder::new(opset);
    if let Some(s) = graph.sparse_initializer.first() {
        let name = s.values.as_ref().and_then(|v| v.name.clone()).unwrap_or_default();
        return Err(GraphError::TensorData {
            tensor: name,
            reason: "sparse initializers are not supported".into(),
        });
    }
    for init in &graph.initializer {
        let t = Tensor::from_proto(init, model_dir)?;
        let name = init.name.clone().unwrap_or_default();
        if b.by_name.contains_key(&name) {
            return Err(GraphError::Tensor { tensor: name, reason: "is initialized twice".into() });
        }
        b.add_named(&name, t.shape.clone(), t.dtype, Some(Arc::new(t)));
    }
    let mut inputs = Vec::new();
    let mut symbolic_dims = std::collections::BTreeMap::new();
    let mut bound_inputs = Vec::new();
    for input in &graph.input {
        let name = input.name.clone().unwrap_or_default();
        if b.by_name.contains_key(&name) {
            continue; // an initializer listed as an input (IR < 4): a constant here
        }
        let (dtype, shape) = input_type(input, config)?;
        if let Some(value) = config.input_values.get(&name) {
            bind_input(&name, dtype, &shape, value)?;
            b.add_named(&name, value.shape.clone(), dtype, Some(value.clone()));
            bound_inputs.push((name, value.clone()));
            continue;
        }
        for (param, &size) in dim_params(input).iter().zip(&shape) {
            if let Some(param) = param {
                symbolic_dims.insert(param.clone(), size);
            }
        }
        let id = b.add_named(&name, shape, dtype, None);
        b.model_inputs.insert(id);
        inputs.push(id);
    }

    // Shapes ONNX shape inference wrote into the model: what lets a partial load go on past a
    // node it cannot lower.
    let annotated: HashMap<&str, &proto::ValueInfoProto> =
        graph.value_info.iter().chain(&graph.output).filter_map(|v| Some((v.name.as_deref()?, v))).collect();
    let mut skipped: Vec<SkippedNode> = Vec::new();
    let mut keep_alive: Vec<TensorId> = Vec::new();

    let order = topological_order(&graph.node, &b)?;
    for &i in &order {
        let node = &graph.node[i];
        let op_type = node.op_type.clone().unwrap_or_default();
        let name = node.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| format!("#{i}"));
        let node_ref = NodeRef { name, op_type: op_type.clone() };
        let lowered = lower_node(&mut b, node, &node_ref, &functions, opset);
        let error = match lowered {
            Ok(()) => continue,
            Err(e) if config.skip_unsupported && skippable(&e) => e,
            Err(e) => return Err(e),
        };
        // Partial load: what the node reads stays computed (tuned), what it writes is a run-time
        // tensor of the annotated shape, or unavailable, which skips its readers in turn.
        keep_alive.extend(node.input.iter().filter_map(|input| b.by_name.get(input).copied()));
        for output in node.output.iter().filter(|o| !o.is_empty()) {
            match annotated.get(output.as_str()).map(|v| input_type(v, config)) {
                Some(Ok((dtype, shape))) => {
                    b.add_named(output, shape, dtype, None);
                }
                _ => {
                    let why = format!("it comes from {node_ref}, which was skipped (no shape is annotated)");
                    b.unavailable.insert(output.clone(), why);
                }
            }
        }
        skipped.push(SkippedNode { node: node_ref, reason: error.to_string() });
    }
    let mut outputs = Vec::new();
    for out in &graph.output {
        let name = out.name.clone().unwrap_or_default();
        let tensor = match b.by_name.get(&name) {
            Some(&tensor) => tensor,
            None if !skipped.is_empty() => continue,
            None => {
                return Err(GraphError::Tensor {
                    tensor: name.clone(),
                    reason: match b.unavailable.get(&name) {
                        Some(why) => format!("is a graph output, but {why}"),
                        None => "is a graph output, but nothing produces it".into(),
                    },
                })
            }
        };
        if let Some(declared) = static_shape(out) {
            if declared != b.shape(tensor) {
                return Err(GraphError::OutputShape {
                    tensor: name,
                    declared,
                    inferred: b.shape(tensor).to_vec(),
                });
            }
        }
        outputs.push(GraphOutput { name, tensor });
    }

    let live_outputs: Vec<GraphOutput> = outputs
        .iter()
        .cloned()
        .chain(keep_alive.iter().map(|&tensor| GraphOutput { name: String::new(), tensor }))
        .collect();
    crate::fuse_chains::fuse_chains(&mut b, &live_outputs);
    fuse::fuse(&mut b, &live_outputs)?;
    let mut graph =
        finish(b, graph.name.clone().unwrap_or_default(), inputs, outputs, &keep_alive, graph.node.len());
    graph.skipped = skipped;
    graph.symbolic_dims = symbolic_dims;
    graph.bound_inputs = bound_inputs;
    Ok(graph)
}

/// Errors a partial load steps over: the operator or its use is unsupported, or the node reads
/// what a skipped node would have written. A malformed model stays an error.
fn skippable(error: &GraphError) -> bool {
    match error {
        GraphError::UnsupportedOp { .. }
        | GraphError::Unsupported { .. }
        | GraphError::NeedsInputValue { .. } => true,
        GraphError::Tensor { reason, .. } => reason.contains("which was skipped"),
        _ => false,
    }
}

/// Lowers one ONNX node into the builder.
fn lower_node(
    b: &mut Builder,
    node: &proto::NodeProto,
    node_ref: &NodeRef,
    functions: &HashSet<&str>,
    opset: i64,
) -> Result<(), GraphError> {
    let op_type = node_ref.op_type.clone();
    let domain = node.domain.as_deref().unwrap_or("");
    if !matches!(domain, "" | "ai.onnx") || functions.contains(op_type.as_str()) {
        let domain_note = if functions.contains(op_type.as_str()) {
            " (a model-local function)".to_string()
        } else {
            format!(" from domain `{domain}`")
        };
        return Err(GraphError::UnsupportedOp { node: node_ref.clone(), op: op_type, domain_note });
    }
    let mut ins = Vec::with_capacity(node.input.len());
    for input in &node.input {
        if input.is_empty() {
            ins.push(None);
            continue;
        }
        let id = b.by_name.get(input).copied().ok_or_else(|| GraphError::Tensor {
            tensor: input.clone(),
            reason: match b.unavailable.get(input) {
                Some(why) => format!("{node_ref} reads it, but {why}"),
                None => format!("{node_ref} reads it, but nothing produces it"),
            },
        })?;
        ins.push(Some(id));
    }
    let ctx = Ctx {
        node: node_ref.clone(),
        attrs: Attrs::new(node_ref, &node.attribute),
        inputs: ins,
        outputs: node.output.clone(),
        opset,
    };
    let lowered = lower::lower(b, &ctx, &op_type)?;
    apply(b, &ctx, lowered)
}

/// Element type and shape of a model input: `LoadConfig::input_shapes` wins; a symbolic
/// dimension takes its size from `LoadConfig::dims` by name, else `LoadConfig::symbolic_dim`.
fn input_type(
    input: &proto::ValueInfoProto,
    config: &LoadConfig,
) -> Result<(ElemType, Vec<usize>), GraphError> {
    let name = input.name.clone().unwrap_or_default();
    let bad = |reason: String| GraphError::Tensor { tensor: name.clone(), reason };
    let Some(type_proto::Value::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(bad(
            "model input is not a tensor (sequences, maps and optionals are not supported)".into()
        ));
    };
    let code = t.elem_type.unwrap_or(0);
    let dtype = ElemType::from_onnx(code).ok_or_else(|| {
        bad(format!("model input of element type {} is not supported", ElemType::onnx_name(code)))
    })?;
    if let Some(shape) = config.input_shapes.get(&name) {
        return Ok((dtype, shape.clone()));
    }
    let dims = t.shape.as_ref().ok_or_else(|| {
        bad("model input has no declared shape: give it one in LoadConfig::input_shapes".into())
    })?;
    let shape = dims
        .dim
        .iter()
        .map(|d| match d.value {
            Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) if v >= 0 => v as usize,
            Some(proto::tensor_shape_proto::dimension::Value::DimParam(ref param)) => {
                config.dims.get(param).copied().unwrap_or(config.symbolic_dim)
            }
            _ => config.symbolic_dim,
        })
        .collect();
    Ok((dtype, shape))
}

/// Checks a value given for a model input against what the model declares: the same element
/// type and rank (its sizes are the value's: a symbolic dimension takes the value's size).
fn bind_input(name: &str, dtype: ElemType, declared: &[usize], value: &Tensor) -> Result<(), GraphError> {
    let bad = |reason: String| GraphError::Tensor { tensor: name.to_string(), reason };
    if value.dtype != dtype {
        return Err(bad(format!(
            "the value given for this model input is {:?}, the model declares {dtype:?}",
            value.dtype
        )));
    }
    if value.shape.len() != declared.len() {
        return Err(bad(format!(
            "the value given for this model input has shape {:?}, the model declares rank {}",
            value.shape,
            declared.len()
        )));
    }
    Ok(())
}

/// The name of each declared dimension of a value that is symbolic (`dim_param`).
fn dim_params(v: &proto::ValueInfoProto) -> Vec<Option<String>> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Vec::new();
    };
    t.shape
        .iter()
        .flat_map(|s| &s.dim)
        .map(|d| match &d.value {
            Some(proto::tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => {
                Some(p.clone())
            }
            _ => None,
        })
        .collect()
}

/// The declared shape of a value, if every dimension is a number.
fn static_shape(v: &proto::ValueInfoProto) -> Option<Vec<usize>> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let shape: &TensorShapeProto = t.shape.as_ref()?;
    shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) if v >= 0 => Some(v as usize),
            _ => None,
        })
        .collect()
}

/// Node indices in an order where every input is produced first (Kahn, stable: the model's own
/// order when it already is topological, as ONNX requires).
fn topological_order(nodes: &[proto::NodeProto], b: &Builder) -> Result<Vec<usize>, GraphError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for out in n.output.iter().filter(|o| !o.is_empty()) {
            if producer.insert(out, i).is_some() || b.by_name.contains_key(out) {
                return Err(GraphError::Tensor { tensor: out.clone(), reason: "is produced twice".into() });
            }
        }
    }
    let mut waiting = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for input in n.input.iter().filter(|x| !x.is_empty()) {
            if let Some(&p) = producer.get(input.as_str()) {
                waiting[i] += 1;
                users[p].push(i);
            }
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..nodes.len()).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            waiting[u] -= 1;
            if waiting[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck = (0..nodes.len())
            .find(|i| waiting[*i] > 0)
            .map_or_else(String::new, |i| nodes[i].name.clone().unwrap_or_default());
        return Err(GraphError::Tensor { tensor: stuck, reason: "the graph has a cycle".into() });
    }
    Ok(order)
}

/// Records a lowered node's outputs under their ONNX names.
fn apply(b: &mut Builder, ctx: &Ctx, lowered: Lowered) -> Result<(), GraphError> {
    let named = |i: usize| ctx.outputs.get(i).filter(|n| !n.is_empty()).cloned();
    let n_produced = match &lowered {
        Lowered::Constants(v) => v.len(),
        Lowered::Alias(v) => v.len(),
        Lowered::Node { outputs, .. } => outputs.len(),
    };
    for i in n_produced..ctx.outputs.len() {
        if let Some(name) = named(i) {
            let why = format!("output {i} of {} is not supported (inference only)", ctx.node);
            b.unavailable.insert(name, why);
        }
    }
    match lowered {
        Lowered::Constants(values) => {
            for (i, v) in values.into_iter().enumerate() {
                if let Some(name) = named(i) {
                    b.add_named(&name, v.shape.clone(), v.dtype, Some(Arc::new(v)));
                }
            }
        }
        Lowered::Alias(ids) => {
            for (i, id) in ids.into_iter().enumerate() {
                if let Some(name) = named(i) {
                    b.by_name.insert(name, id);
                }
            }
        }
        Lowered::Node { kind, inputs, outputs } => {
            let mut ids = Vec::with_capacity(outputs.len());
            for (i, (shape, dtype)) in outputs.into_iter().enumerate() {
                ids.push(match named(i) {
                    Some(name) => b.add_named(&name, shape, dtype, None),
                    None => b.add_temp(&format!("{}/out{i}", ctx.node.name), shape, dtype),
                });
            }
            b.nodes.push(Node {
                name: ctx.node.name.clone(),
                onnx_ops: vec![ctx.node.op_type.clone()],
                kind,
                inputs,
                outputs: ids,
            });
        }
    }
    Ok(())
}

/// Drops nodes whose outputs nobody reads and tensors nothing refers to, and renumbers.
fn finish(
    b: Builder,
    name: String,
    inputs: Vec<TensorId>,
    outputs: Vec<GraphOutput>,
    keep_alive: &[TensorId],
    n_onnx: usize,
) -> Graph {
    let mut live = vec![false; b.tensors.len()];
    for t in outputs.iter().map(|o| &o.tensor).chain(keep_alive) {
        live[t.0] = true;
    }
    let mut keep = vec![false; b.nodes.len()];
    for (i, node) in b.nodes.iter().enumerate().rev() {
        if node.outputs.iter().any(|t| live[t.0]) {
            keep[i] = true;
            node.inputs.iter().chain(&node.outputs).for_each(|t| live[t.0] = true);
        }
    }
    for t in &inputs {
        live[t.0] = true;
    }
    let mut new_id = vec![usize::MAX; b.tensors.len()];
    let mut tensors = Vec::new();
    for (i, t) in b.tensors.into_iter().enumerate() {
        if live[i] {
            new_id[i] = tensors.len();
            tensors.push(t);
        }
    }
    let map = |t: &TensorId| TensorId(new_id[t.0]);
    let nodes = b
        .nodes
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(n, _)| Node {
            inputs: n.inputs.iter().map(map).collect(),
            outputs: n.outputs.iter().map(map).collect(),
            ..n
        })
        .collect::<Vec<_>>();
    Graph {
        name,
        opset: b.opset,
        tensors,
        inputs: inputs.iter().map(map).collect(),
        outputs: outputs.into_iter().map(|o| GraphOutput { tensor: map(&o.tensor), name: o.name }).collect(),
        nodes,
        n_onnx_nodes: n_onnx,
        skipped: Vec::new(),
        symbolic_dims: Default::default(),
        bound_inputs: Vec::new(),
    }
}
