//! Element-wise chains that exporters emit for one operation, recognised and replaced by that
//! operation, before kernels absorb their epilogues:
//!
//! - the decomposed layer norm `(x − mean(x)) / √(mean((x − mean(x))²) + ε) · γ + β` over the
//!   last axis (ReduceMean, Sub, Pow or Mul, ReduceMean, Add, Sqrt, Div, then optionally Mul by
//!   and Add of constants) → [`PlainOp::LayerNorm`];
//! - Gelu in its erf form `x · ½ · (1 + erf(x / √2))` and its tanh form
//!   `x · ½ · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`, with the products in any order →
//!   [`UnaryOp::Gelu`].
//!
//! Nine or ten passes over the activations become one. A chain is replaced only when every
//! intermediate has no reader outside it and is not a model output, so nothing else sees a
//! change; the replacement takes the position of the chain's last node.

use crate::builder::Builder;
use crate::graph::{GraphOutput, Node, NodeKind, TensorId};
use crate::plain::{BinaryOp, PlainOp, ReduceKind, UnaryOp};
use crate::tensor::{ElemType, Tensor};
use std::collections::{HashMap, HashSet};

pub(crate) fn fuse_chains(b: &mut Builder, outputs: &[GraphOutput]) {
    let is_output: HashSet<TensorId> = outputs.iter().map(|o| o.tensor).collect();
    let nodes = std::mem::take(&mut b.nodes);
    let mut chains = Chains::new(nodes, is_output);
    for i in 0..chains.nodes.len() {
        let Some(node) = chains.nodes[i].as_ref() else { continue };
        let found = match &node.kind {
            NodeKind::Plain(PlainOp::Reduce { kind: ReduceKind::Mean, .. }) => chains.layer_norm(b, i),
            NodeKind::Plain(PlainOp::Unary(UnaryOp::Erf)) => chains.gelu_erf(b, i),
            NodeKind::Plain(PlainOp::Unary(UnaryOp::Tanh)) => chains.gelu_tanh(b, i),
            _ => None,
        };
        if let Some(replacement) = found {
            chains.replace(replacement);
        }
    }
    b.nodes = chains.nodes.into_iter().flatten().collect();
}

/// A matched chain: its nodes (the last one's position is kept) and the node replacing them.
struct Replacement {
    chain: Vec<usize>,
    node: Node,
}

struct Chains {
    nodes: Vec<Option<Node>>,
    producer: HashMap<TensorId, usize>,
    readers: HashMap<TensorId, Vec<usize>>,
    is_output: HashSet<TensorId>,
}

impl Chains {
    fn new(nodes: Vec<Node>, is_output: HashSet<TensorId>) -> Chains {
        let mut producer = HashMap::new();
        let mut readers: HashMap<TensorId, Vec<usize>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for &t in &n.outputs {
                producer.insert(t, i);
            }
            for &t in &n.inputs {
                readers.entry(t).or_default().push(i);
            }
        }
        Chains { nodes: nodes.into_iter().map(Some).collect(), producer, readers, is_output }
    }

    fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(i)?.as_ref()
    }

    /// The single output of node `i`.
    fn out(&self, i: usize) -> Option<TensorId> {
        match self.node(i)?.outputs.as_slice() {
            [t] => Some(*t),
            _ => None,
        }
    }

    /// The one node reading `t` (once), when `t` is not a model output.
    fn sole_reader(&self, t: TensorId) -> Option<usize> {
        if self.is_output.contains(&t) {
            return None;
        }
        match self.readers.get(&t)?.as_slice() {
            [j] => Some(*j),
            _ => None,
        }
    }

    /// `(op, inputs)` of node `i` if it is an f32 binary op.
    fn binary(&self, i: usize) -> Option<(BinaryOp, TensorId, TensorId)> {
        let node = self.node(i)?;
        match (&node.kind, node.inputs.as_slice()) {
            (NodeKind::Plain(PlainOp::Binary(op)), [a, c]) => Some((*op, *a, *c)),
            _ => None,
        }
    }

    /// For binary node `i` with `t` as one operand: the op and the other operand.
    fn with_operand(&self, i: usize, t: TensorId) -> Option<(BinaryOp, TensorId)> {
        let (op, a, c) = self.binary(i)?;
        if a == t {
            Some((op, c))
        } else if c == t && matches!(op, BinaryOp::Add | BinaryOp::Mul) {
            Some((op, a))
        } else {
            None
        }
    }

    fn replace(&mut self, r: Replacement) {
        let last = *r.chain.iter().max().expect("a chain has nodes");
        for &i in &r.chain {
            self.nodes[i] = None;
        }
        for &t in &r.node.inputs {
            let list = self.readers.entry(t).or_default();
            list.retain(|j| !r.chain.contains(j));
            list.push(last);
        }
        self.nodes[last] = Some(r.node);
    }

    /// The decomposed layer norm starting at the first ReduceMean (`first`).
    fn layer_norm(&self, b: &mut Builder, first: usize) -> Option<Replacement> {
        let mean_node = self.node(first)?;
        let x = *mean_node.inputs.first()?;
        let shape = b.shape(x).to_vec();
        let last_axis = shape.len().checked_sub(1)?;
        let is_last_axis_mean = |n: &Node| {
            matches!(&n.kind, NodeKind::Plain(PlainOp::Reduce { kind: ReduceKind::Mean, axes, keepdims: true })
                if axes == &[last_axis])
        };
        if b.info(x).dtype != ElemType::F32 || !is_last_axis_mean(mean_node) {
            return None;
        }
        let mean = self.out(first)?;
        let sub = self.sole_reader(mean)?;
        if self.binary(sub)? != (BinaryOp::Sub, x, mean) {
            return None;
        }
        let centred = self.out(sub)?;
        let [r1, r2] = self.readers.get(&centred)?.as_slice() else { return None };
        if self.is_output.contains(&centred) {
            return None;
        }
        // One reader squares, the other divides by the deviation.
        let squares = |i: usize| match self.binary(i) {
            Some((BinaryOp::Pow, a, e)) => a == centred && constant_near(b, e, 2.0),
            Some((BinaryOp::Mul, a, c)) => a == centred && c == centred,
            _ => false,
        };
        let (square, div) = if squares(*r1) { (*r1, *r2) } else { (*r2, *r1) };
        if !squares(square) {
            return None;
        }
        let var_node = self.sole_reader(self.out(square)?)?;
        if !is_last_axis_mean(self.node(var_node)?) {
            return None;
        }
        let var = self.out(var_node)?;
        let add_eps = self.sole_reader(var)?;
        let (BinaryOp::Add, eps) = self.with_operand(add_eps, var)? else { return None };
        let epsilon = scalar(b, eps)?;
        let sqrt = self.sole_reader(self.out(add_eps)?)?;
        if self.node(sqrt)?.kind != NodeKind::Plain(PlainOp::Unary(UnaryOp::Sqrt)) {
            return None;
        }
        let std = self.out(sqrt)?;
        if self.sole_reader(std)? != div || self.binary(div)? != (BinaryOp::Div, centred, std) {
            return None;
        }
        let mut chain = vec![first, sub, square, var_node, add_eps, sqrt, div];
        let mut out = self.out(div)?;
        let width = shape[last_axis];
        // The affine part: `· γ` then `+ β`, each a per-feature constant, each optional.
        let mut affine = |op: BinaryOp, out: &mut TensorId| -> Option<Vec<f32>> {
            let j = self.sole_reader(*out)?;
            let (found, c) = self.with_operand(j, *out)?;
            let v = b.value(c)?;
            let dims: Vec<usize> = v.shape.iter().copied().skip_while(|&d| d == 1).collect();
            if found != op || !v.dtype.is_float() || dims != [width] {
                return None;
            }
            *out = self.out(j)?;
            chain.push(j);
            Some(v.to_f32())
        };
        let gamma = affine(BinaryOp::Mul, &mut out);
        let beta = affine(BinaryOp::Add, &mut out);
        let name = self.node(*chain.last()?)?.name.clone();
        let gamma = b.add_constant(
            &format!("{name}/scale"),
            Tensor::f32(vec![width], gamma.unwrap_or(vec![1.0; width])),
        );
        let beta = b.add_constant(
            &format!("{name}/bias"),
            Tensor::f32(vec![width], beta.unwrap_or(vec![0.0; width])),
        );
        let onnx_ops = chain.iter().filter_map(|&i| self.node(i)).flat_map(|n| n.onnx_ops.clone()).collect();
        let node = Node {
            name: self.node(first)?.name.clone(),
            onnx_ops,
            kind: NodeKind::Plain(PlainOp::LayerNorm { axis: last_axis, epsilon }),
            inputs: vec![x, gamma, beta],
            outputs: vec![out],
        };
        Some(Replacement { chain, node })
    }

    /// Gelu's erf form, found at its Erf node.
    fn gelu_erf(&self, b: &Builder, erf: usize) -> Option<Replacement> {
        let a = *self.node(erf)?.inputs.first()?;
        let scale = *self.producer.get(&a)?;
        let x = match self.binary(scale)? {
            (BinaryOp::Div, x, c) if constant_near(b, c, std::f32::consts::SQRT_2) => x,
            (BinaryOp::Mul, x, c) if constant_near(b, c, std::f32::consts::FRAC_1_SQRT_2) => x,
            (BinaryOp::Mul, c, x) if constant_near(b, c, std::f32::consts::FRAC_1_SQRT_2) => x,
            _ => return None,
        };
        if self.sole_reader(a)? != erf {
            return None;
        }
        self.gelu_tail(b, x, vec![scale, erf], false)
    }

    /// Gelu's tanh form, found at its Tanh node.
    fn gelu_tanh(&self, b: &Builder, tanh: usize) -> Option<Replacement> {
        let inner = *self.node(tanh)?.inputs.first()?;
        let scale = *self.producer.get(&inner)?;
        let (BinaryOp::Mul, a, c) = self.binary(scale)? else { return None };
        let k = (2.0 / std::f32::consts::PI).sqrt();
        let sum = if constant_near(b, c, k) {
            a
        } else if constant_near(b, a, k) {
            c
        } else {
            return None;
        };
        let add = *self.producer.get(&sum)?;
        let (BinaryOp::Add, p, q) = self.binary(add)? else { return None };
        // One addend is x, the other 0.044715 · x³.
        for (x, cubic) in [(p, q), (q, p)] {
            let Some(&times) = self.producer.get(&cubic) else { continue };
            let Some((BinaryOp::Mul, u, v)) = self.binary(times) else { continue };
            let cube = if constant_near(b, v, 0.044_715) {
                u
            } else if constant_near(b, u, 0.044_715) {
                v
            } else {
                continue;
            };
            let Some(&pow) = self.producer.get(&cube) else { continue };
            let is_cube = matches!(self.binary(pow), Some((BinaryOp::Pow, base, e)) if base == x && constant_near(b, e, 3.0));
            let private = [inner, sum, cubic, cube].iter().all(|&t| self.sole_reader(t).is_some());
            if is_cube && private {
                return self.gelu_tail(b, x, vec![pow, times, add, scale, tanh], true);
            }
        }
        None
    }

    /// The common end of both Gelu forms: `f = 1 + t` (t the Erf/Tanh output, the last node of
    /// `chain`), then `x · f · ½` in any association.
    fn gelu_tail(&self, b: &Builder, x: TensorId, mut chain: Vec<usize>, tanh: bool) -> Option<Replacement> {
        let t = self.out(*chain.last()?)?;
        let plus_one = self.sole_reader(t)?;
        let (BinaryOp::Add, one) = self.with_operand(plus_one, t)? else { return None };
        if !constant_near(b, one, 1.0) {
            return None;
        }
        let f = self.out(plus_one)?;
        chain.push(plus_one);
        let m1 = self.sole_reader(f)?;
        let (BinaryOp::Mul, other) = self.with_operand(m1, f)? else { return None };
        chain.push(m1);
        let out = if other == x {
            // (x · f) · ½
            let m1_out = self.out(m1)?;
            let m2 = self.sole_reader(m1_out)?;
            let (BinaryOp::Mul, half) = self.with_operand(m2, m1_out)? else { return None };
            if !constant_near(b, half, 0.5) {
                return None;
            }
            chain.push(m2);
            self.out(m2)?
        } else {
            // (x · ½) · f, or (½ · x) · f
            let half_x = *self.producer.get(&other)?;
            let (BinaryOp::Mul, h) = self.with_operand(half_x, x)? else { return None };
            if !constant_near(b, h, 0.5) || self.sole_reader(other)? != m1 {
                return None;
            }
            chain.push(half_x);
            self.out(m1)?
        };
        let first = *chain.iter().min()?;
        let onnx_ops = chain.iter().filter_map(|&i| self.node(i)).flat_map(|n| n.onnx_ops.clone()).collect();
        let node = Node {
            name: self.node(first)?.name.clone(),
            onnx_ops,
            kind: NodeKind::Plain(PlainOp::Unary(UnaryOp::Gelu { tanh })),
            inputs: vec![x],
            outputs: vec![out],
        };
        Some(Replacement { chain, node })
    }
}

/// The value of a constant whose elements are all the same.
fn scalar(b: &Builder, t: TensorId) -> Option<f32> {
    let v = b.value(t)?;
    if !v.dtype.is_float() {
        return None;
    }
    let values = v.to_f32();
    let first = *values.first()?;
    values.iter().all(|&x| x == first).then_some(first)
}

fn constant_near(b: &Builder, t: TensorId, want: f32) -> bool {
    scalar(b, t).is_some_and(|v| (v - want).abs() <= 1e-5 * want.abs().max(1.0))
}
