//! Fusion: a kernel absorbs what follows it, while its output has exactly one reader and is not
//! a model output.
//!
//! - BatchNormalization with constant statistics after a conv or dense kernel: folded into the
//!   weights and bias (`autotune_ir::reference::fold_batch_norm`); it costs nothing at run time.
//! - Mul by a per-channel constant: folded into the weights and bias; Add (or Sub) of a
//!   per-channel constant: folded into the bias (DenseNet's scale layers).
//! - Mul or Div by a scalar constant when the weights are a run-time operand (attention's
//!   scaling of Q·Kᵀ): a `Scale` epilogue step.
//! - Add of a run-time per-channel tensor (an attention mask at batch 1): the `Bias` step.
//! - Add or Sum with a same-shape tensor: a residual `Add` epilogue step.
//! - Relu, Clip, LeakyRelu, Sigmoid: activation epilogue steps.
//! - An Add read only by a last-axis Softmax (an attention mask): the Softmax's second input.
//!
//! The merged node takes the position of the last node it absorbed, so every input it reads is
//! already computed. A BatchNormalization that stays a plain op (after a Concat, say) absorbs
//! per-channel Mul / Add constants into its own scale and bias the same way.

use crate::builder::Builder;
use crate::error::GraphError;
use crate::graph::{GraphOutput, Node, NodeKind, TensorId};
use crate::plain::{BinaryOp, PlainOp, UnaryOp};
use crate::tensor::{ElemType, Tensor};
use autotune_ir::reference::fold_batch_norm;
use autotune_ir::{EpilogueOp, Op, Scalar, Task};
use std::collections::{HashMap, HashSet};

pub(crate) fn fuse(b: &mut Builder, outputs: &[GraphOutput]) -> Result<(), GraphError> {
    let is_output: HashSet<TensorId> = outputs.iter().map(|o| o.tensor).collect();
    let mut nodes: Vec<Option<Node>> = std::mem::take(&mut b.nodes).into_iter().map(Some).collect();
    let mut readers: HashMap<TensorId, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for t in n.iter().flat_map(|n| &n.inputs) {
            let list = readers.entry(*t).or_default();
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }
    for start in 0..nodes.len() {
        let mut cur = start;
        while let Some((out, j)) = sole_reader(&nodes, cur, &readers, &is_output) {
            let (Some(node), Some(next)) = (nodes[cur].as_ref(), nodes[j].as_ref()) else { break };
            let merged = match (&node.kind, &next.kind) {
                (NodeKind::Kernel(task), NodeKind::Plain(op)) => {
                    absorb_into_kernel(b, node, task, next, op, out)
                }
                (NodeKind::Plain(PlainOp::BatchNorm { epsilon }), NodeKind::Plain(op)) => {
                    absorb_into_batch_norm(b, node, *epsilon, next, op, out)
                }
                (NodeKind::Plain(PlainOp::Binary(BinaryOp::Add)), NodeKind::Plain(softmax)) => {
                    add_into_softmax(b, node, next, softmax, out)
                }
                _ => None,
            };
            let Some(merged) = merged else { break };
            for t in &merged.inputs {
                let list = readers.entry(*t).or_default();
                list.retain(|&r| r != cur);
                if !list.contains(&j) {
                    list.push(j);
                }
            }
            nodes[j] = Some(merged);
            nodes[cur] = None;
            cur = j;
        }
    }
    b.nodes = nodes.into_iter().flatten().collect();
    Ok(())
}

/// The output of node `i` and the one node reading it, if it has exactly one reader (reading it
/// once) and is not a model output.
fn sole_reader(
    nodes: &[Option<Node>],
    i: usize,
    readers: &HashMap<TensorId, Vec<usize>>,
    is_output: &HashSet<TensorId>,
) -> Option<(TensorId, usize)> {
    let node = nodes[i].as_ref()?;
    let [out] = node.outputs.as_slice() else { return None };
    if is_output.contains(out) {
        return None;
    }
    let [j] = readers.get(out)?.as_slice() else { return None };
    let reader = nodes[*j].as_ref()?;
    (reader.inputs.iter().filter(|t| *t == out).count() == 1).then_some((*out, *j))
}

/// The kernel's operands, bias and residual, put back in `Task::inputs` order.
struct KernelInputs {
    operands: Vec<TensorId>,
    bias: Option<TensorId>,
    residual: Option<TensorId>,
}

impl KernelInputs {
    fn of(node: &Node, task: &Task) -> KernelInputs {
        let n_operands = match task.op {
            Op::Pool2d(_) => 1,
            _ => 2,
        };
        let mut rest = node.inputs[n_operands..].iter().copied();
        let mut k = KernelInputs { operands: node.inputs[..n_operands].to_vec(), bias: None, residual: None };
        for step in &task.epilogue {
            match step {
                EpilogueOp::Bias => k.bias = rest.next(),
                EpilogueOp::Add => k.residual = rest.next(),
                _ => {}
            }
        }
        k
    }

    fn ordered(&self, task: &Task) -> Vec<TensorId> {
        let mut v = self.operands.clone();
        for step in &task.epilogue {
            match step {
                EpilogueOp::Bias => v.extend(self.bias),
                EpilogueOp::Add => v.extend(self.residual),
                _ => {}
            }
        }
        v
    }
}

/// Where the output channel of the kernel's output tensor is: dimension 1 for a convolution, the
/// last dimension for a matmul.
fn channel_axis(task: &Task, out_rank: usize) -> usize {
    match task.op {
        Op::Conv2d(_) | Op::Pool2d(_) => 1,
        _ => out_rank.saturating_sub(1),
    }
}

/// The values of `c` as one per channel, if `c` is an f32/f64 constant that varies along the
/// channel axis of an `out`-shaped tensor only (a scalar counts: the same for every channel), and
/// broadcasting it does not grow `out`.
fn per_channel(b: &Builder, c: TensorId, out: &[usize], axis: usize, n_channels: usize) -> Option<Vec<f32>> {
    let value = b.value(c)?;
    if !value.dtype.is_float() || value.shape.len() > out.len() {
        return None;
    }
    let offset = out.len() - value.shape.len();
    for (i, &d) in value.shape.iter().enumerate() {
        let fits = if i + offset == axis { d == 1 || d == n_channels } else { d == 1 };
        if !fits {
            return None;
        }
    }
    let v = value.to_f32();
    match v.len() {
        1 => Some(vec![v[0]; n_channels]),
        n if n == n_channels => Some(v),
        _ => None,
    }
}

/// Whether the kernel's weights are constant and the epilogue so far is linear (Scale and Bias
/// only), so that a per-channel scale can move into the weights and bias.
fn weights_foldable(b: &Builder, task: &Task, ins: &KernelInputs) -> bool {
    let constant_weights = match &task.op {
        Op::Conv2d(_) => true,
        Op::BatchMatmul(s) => s.b_constant,
        _ => false,
    };
    constant_weights
        && b.value(ins.operands[1]).is_some()
        && task.epilogue.iter().all(|e| matches!(e, EpilogueOp::Bias | EpilogueOp::Scale { .. }))
}

/// Channel of each weight element: the outer dimension for conv OIHW and dense `[n, k]`, the
/// last for `[k, n]`.
fn weight_channel(task: &Task, len: usize) -> impl Fn(usize) -> usize + '_ {
    let n_channels = task.bias_len();
    move |i: usize| match &task.op {
        Op::BatchMatmul(s) if s.trans_b => (i / s.k) % s.n,
        Op::BatchMatmul(s) => i % s.n,
        _ => i / (len / n_channels),
    }
}

fn current_bias(b: &Builder, task: &Task, ins: &KernelInputs) -> Vec<f32> {
    ins.bias.and_then(|id| b.value(id)).map_or_else(|| vec![0.0; task.bias_len()], |t| t.to_f32())
}

/// A kernel with new weights and bias (a linear per-channel change folded in).
fn with_weights_and_bias(
    b: &mut Builder,
    node: &Node,
    task: &Task,
    mut ins: KernelInputs,
    weights: Tensor,
    bias: Vec<f32>,
) -> (Task, Vec<TensorId>) {
    let w_name = format!("{}/weights", node.name);
    ins.operands[1] = b.add_constant(&w_name, weights);
    let n = bias.len();
    ins.bias = Some(b.add_constant(&format!("{}/bias", node.name), Tensor::f32(vec![n], bias)));
    let mut task = task.clone();
    if !task.epilogue.contains(&EpilogueOp::Bias) {
        task.epilogue.push(EpilogueOp::Bias);
    }
    let inputs = ins.ordered(&task);
    (task, inputs)
}

fn absorb_into_kernel(
    b: &mut Builder,
    node: &Node,
    task: &Task,
    next: &Node,
    op: &PlainOp,
    out: TensorId,
) -> Option<Node> {
    if matches!(task.op, Op::Pool2d(_)) || b.info(out).dtype != ElemType::F32 {
        return None;
    }
    let out_shape = b.info(out).shape.clone();
    let axis = channel_axis(task, out_shape.len());
    let n_channels = task.bias_len();
    let ins = KernelInputs::of(node, task);
    let other = next.inputs.iter().copied().find(|&t| t != out);
    let (task, inputs) = match op {
        PlainOp::Unary(u) => {
            let step = match *u {
                UnaryOp::Relu => EpilogueOp::Relu,
                UnaryOp::Sigmoid => EpilogueOp::Sigmoid,
                UnaryOp::LeakyRelu { alpha } => EpilogueOp::LeakyRelu { alpha: Scalar(alpha) },
                UnaryOp::Clip { min, max } => EpilogueOp::Clip { min: Scalar(min), max: Scalar(max) },
                _ => return None,
            };
            let mut task = task.clone();
            task.epilogue.push(step);
            (task, node.inputs.clone())
        }
        PlainOp::BatchNorm { epsilon } => {
            if !weights_foldable(b, task, &ins) || out_shape.len() < 2 || axis != 1 {
                return None;
            }
            let params: Option<Vec<Vec<f32>>> = next.inputs[1..]
                .iter()
                .map(|&t| b.value(t).filter(|v| v.dtype.is_float()).map(|v| v.to_f32()))
                .collect();
            let [gamma, beta, mean, var] = <[Vec<f32>; 4]>::try_from(params?).ok()?;
            if gamma.len() != n_channels {
                return None;
            }
            let mut weights = b.value(ins.operands[1])?.as_ref().clone();
            let mut bias = current_bias(b, task, &ins);
            let outer_is_channel = match &task.op {
                Op::Conv2d(_) => true,
                Op::BatchMatmul(s) => s.trans_b && s.batch == 1,
                _ => false,
            };
            if outer_is_channel {
                let mut w = weights.to_f32();
                fold_batch_norm(&mut w, &mut bias, &gamma, &beta, &mean, &var, *epsilon);
                weights = Tensor::f32(weights.shape.clone(), w);
            } else {
                let scale: Vec<f64> = (0..n_channels)
                    .map(|c| f64::from(gamma[c]) / (f64::from(var[c]) + f64::from(*epsilon)).sqrt())
                    .collect();
                weights = scale_weights(task, &weights, &scale);
                for c in 0..n_channels {
                    bias[c] =
                        ((f64::from(bias[c]) - f64::from(mean[c])) * scale[c] + f64::from(beta[c])) as f32;
                }
            }
            with_weights_and_bias(b, node, task, ins, weights, bias)
        }
        PlainOp::Binary(BinaryOp::Mul) if !weights_foldable(b, task, &ins) => {
            scale_step(b, node, task, other?, &out_shape, false)?
        }
        PlainOp::Binary(BinaryOp::Div) if next.inputs[0] == out => {
            scale_step(b, node, task, other?, &out_shape, true)?
        }
        PlainOp::Binary(BinaryOp::Mul) => {
            let c = per_channel(b, other?, &out_shape, axis, n_channels)?;
            let scale: Vec<f64> = c.iter().map(|&v| f64::from(v)).collect();
            let weights = scale_weights(task, b.value(ins.operands[1])?.as_ref(), &scale);
            let bias: Vec<f32> = current_bias(b, task, &ins)
                .iter()
                .zip(&scale)
                .map(|(&x, &s)| (f64::from(x) * s) as f32)
                .collect();
            with_weights_and_bias(b, node, task, ins, weights, bias)
        }
        PlainOp::Binary(bop @ (BinaryOp::Add | BinaryOp::Sub)) => {
            let other = other?;
            let sign = if *bop == BinaryOp::Sub { -1.0 } else { 1.0 };
            if *bop == BinaryOp::Sub && next.inputs[0] != out {
                return None;
            }
            if let Some(c) = per_channel(b, other, &out_shape, axis, n_channels) {
                add_bias(b, node, task, ins, &c, sign)?
            } else if *bop == BinaryOp::Add
                && b.value(other).is_none()
                && b.info(other).dtype == ElemType::F32
                && channel_shaped(b.shape(other), &out_shape, axis, n_channels)
                && !task.epilogue.contains(&EpilogueOp::Bias)
            {
                // A run-time per-channel addend (an attention mask at batch 1): the kernel's bias.
                with_input_step(task, ins, EpilogueOp::Bias, other)
            } else if *bop == BinaryOp::Add
                && b.info(other).shape == out_shape
                && b.info(other).dtype == ElemType::F32
                && !task.epilogue.contains(&EpilogueOp::Add)
            {
                with_input_step(task, ins, EpilogueOp::Add, other)
            } else {
                return None;
            }
        }
        _ => return None,
    };
    task.validate().ok()?;
    let mut onnx_ops = node.onnx_ops.clone();
    onnx_ops.extend(next.onnx_ops.iter().cloned());
    Some(Node {
        name: node.name.clone(),
        onnx_ops,
        kind: NodeKind::Kernel(task),
        inputs,
        outputs: next.outputs.clone(),
    })
}

/// The kernel with one more epilogue step, `Bias` or (residual) `Add`, that reads `extra`.
fn with_input_step(
    task: &Task,
    mut ins: KernelInputs,
    step: EpilogueOp,
    extra: TensorId,
) -> (Task, Vec<TensorId>) {
    match step {
        EpilogueOp::Bias => ins.bias = Some(extra),
        _ => ins.residual = Some(extra),
    }
    let mut task = task.clone();
    task.epilogue.push(step);
    let inputs = ins.ordered(&task);
    (task, inputs)
}

/// `y · c` or `y / c` for a scalar constant `c`, when it cannot move into the weights (they are a
/// run-time operand, as attention's K): a Scale step.
fn scale_step(
    b: &Builder,
    node: &Node,
    task: &Task,
    other: TensorId,
    out_shape: &[usize],
    divide: bool,
) -> Option<(Task, Vec<TensorId>)> {
    let value = b.value(other)?;
    if !value.dtype.is_float() || value.len() != 1 || value.shape.len() > out_shape.len() {
        return None;
    }
    let c = value.to_f64()[0];
    let alpha = if divide { 1.0 / c } else { c };
    if !alpha.is_finite() {
        return None;
    }
    let mut task = task.clone();
    task.epilogue.push(EpilogueOp::Scale { alpha: Scalar(alpha as f32) });
    Some((task, node.inputs.clone()))
}

/// Whether a tensor of `shape` broadcast to `out` varies along the channel `axis` only, with
/// `n_channels` values there (a scalar does not: it is not a bias).
fn channel_shaped(shape: &[usize], out: &[usize], axis: usize, n_channels: usize) -> bool {
    if shape.len() > out.len() || shape.iter().product::<usize>() != n_channels {
        return false;
    }
    let offset = out.len() - shape.len();
    shape.iter().enumerate().all(|(i, &d)| if i + offset == axis { d == n_channels } else { d == 1 })
}

/// `softmax(x + m)` along the last axis, `m` broadcast to `x` with the full last dimension (an
/// attention mask): one Softmax that adds `m` as it reads its rows, instead of a pass of its own.
fn add_into_softmax(b: &Builder, add: &Node, next: &Node, softmax: &PlainOp, out: TensorId) -> Option<Node> {
    let PlainOp::Softmax { axis, coerce_2d: false, .. } = *softmax else { return None };
    let shape = b.shape(out);
    let [p, q] = add.inputs.as_slice() else { return None };
    let (x, m) = if b.shape(*p) == shape { (*p, *q) } else { (*q, *p) };
    let ms = b.shape(m);
    let fits = b.shape(x) == shape
        && axis + 1 == shape.len()
        && ms.len() <= shape.len()
        && ms.last() == shape.last()
        && ms.iter().rev().zip(shape.iter().rev()).all(|(&d, &n)| d == 1 || d == n);
    let f32s = [x, m, out].iter().all(|t| b.info(*t).dtype == ElemType::F32);
    if !fits || !f32s {
        return None;
    }
    let mut onnx_ops = add.onnx_ops.clone();
    onnx_ops.extend(next.onnx_ops.iter().cloned());
    Some(Node {
        name: next.name.clone(),
        onnx_ops,
        kind: next.kind.clone(),
        inputs: vec![x, m],
        outputs: next.outputs.clone(),
    })
}

/// `y + sign·c` per channel: a new Bias step at the end, or into the existing bias when only
/// residual adds follow it (they commute with adding a constant).
fn add_bias(
    b: &mut Builder,
    node: &Node,
    task: &Task,
    mut ins: KernelInputs,
    c: &[f32],
    sign: f64,
) -> Option<(Task, Vec<TensorId>)> {
    let mut task = task.clone();
    let bias: Vec<f32> = match task.epilogue.iter().position(|e| *e == EpilogueOp::Bias) {
        None => {
            task.epilogue.push(EpilogueOp::Bias);
            c.iter().map(|&v| (sign * f64::from(v)) as f32).collect()
        }
        Some(p) if task.epilogue[p + 1..].iter().all(|e| *e == EpilogueOp::Add) => {
            let old = b.value(ins.bias?)?.to_f32();
            old.iter().zip(c).map(|(&x, &v)| (f64::from(x) + sign * f64::from(v)) as f32).collect()
        }
        Some(_) => return None,
    };
    let n = bias.len();
    ins.bias = Some(b.add_constant(&format!("{}/bias", node.name), Tensor::f32(vec![n], bias)));
    let inputs = ins.ordered(&task);
    Some((task, inputs))
}

/// Multiplies every weight by its output channel's factor.
fn scale_weights(task: &Task, w: &Tensor, scale: &[f64]) -> Tensor {
    let len = w.len();
    let channel = weight_channel(task, len);
    let values =
        w.to_f32().iter().enumerate().map(|(i, &x)| (f64::from(x) * scale[channel(i)]) as f32).collect();
    Tensor::f32(w.shape.clone(), values)
}

/// A plain batch-norm followed by Mul / Add of per-channel constants: `c·BN(x) = BN'(x)` with
/// gamma and beta times c; `BN(x) + d` with beta + d.
fn absorb_into_batch_norm(
    b: &mut Builder,
    node: &Node,
    epsilon: f32,
    next: &Node,
    op: &PlainOp,
    out: TensorId,
) -> Option<Node> {
    let PlainOp::Binary(bop @ (BinaryOp::Mul | BinaryOp::Add)) = op else { return None };
    let other = next.inputs.iter().copied().find(|&t| t != out)?;
    let shape = b.info(out).shape.clone();
    let n_channels = *shape.get(1)?;
    let c = per_channel(b, other, &shape, 1, n_channels)?;
    let gamma = b.value(node.inputs[1])?.to_f32();
    let beta = b.value(node.inputs[2])?.to_f32();
    let (gamma, beta): (Vec<f32>, Vec<f32>) = match bop {
        BinaryOp::Mul => (
            gamma.iter().zip(&c).map(|(&g, &s)| g * s).collect(),
            beta.iter().zip(&c).map(|(&x, &s)| x * s).collect(),
        ),
        _ => (gamma, beta.iter().zip(&c).map(|(&x, &d)| x + d).collect()),
    };
    let g = b.add_constant(&format!("{}/scale", node.name), Tensor::f32(vec![n_channels], gamma));
    let bt = b.add_constant(&format!("{}/bias", node.name), Tensor::f32(vec![n_channels], beta));
    let mut onnx_ops = node.onnx_ops.clone();
    onnx_ops.extend(next.onnx_ops.iter().cloned());
    Some(Node {
        name: node.name.clone(),
        onnx_ops,
        kind: NodeKind::Plain(PlainOp::BatchNorm { epsilon }),
        inputs: vec![node.inputs[0], g, bt, node.inputs[3], node.inputs[4]],
        outputs: next.outputs.clone(),
    })
}
