//! Element-wise operators: binary with broadcasting (including opset ≤ 6 `broadcast`/`axis`
//! attributes and PRelu's per-channel slope), n-ary Sum/Max/Min/Mean, and unary activations.

use super::{all_constant, Ctx, Lowered};
use crate::builder::Builder;
use crate::error::GraphError;
use crate::fold;
use crate::graph::{NodeKind, TensorId};
use crate::plain::{BinaryOp, PlainOp, UnaryOp, VariadicOp};
use crate::shape;
use crate::tensor::{ElemType, Tensor};

/// Reshapes `id` to `shape`: a new constant, or an inserted Reshape node.
fn reshape_operand(b: &mut Builder, ctx: &Ctx, id: TensorId, shape: Vec<usize>) -> TensorId {
    let info = b.info(id).clone();
    match info.value {
        Some(v) => b.add_constant(&format!("{}/reshaped", info.name), v.reshaped(shape)),
        None => {
            let out = b.add_temp(&format!("{}/reshaped", info.name), shape, info.dtype);
            b.push_node(&ctx.node.name, "Reshape", NodeKind::Plain(PlainOp::Reshape), vec![id], vec![out]);
            out
        }
    }
}

fn binary_node(
    b: &mut Builder,
    ctx: &Ctx,
    op: BinaryOp,
    a: TensorId,
    c: TensorId,
) -> Result<Lowered, GraphError> {
    let (sa, sc) = (b.shape(a).to_vec(), b.shape(c).to_vec());
    let out = shape::broadcast(&sa, &sc)
        .ok_or_else(|| ctx.invalid(format!("input shapes {sa:?} and {sc:?} do not broadcast")))?;
    if let (Some(x), Some(y)) = (b.value(a), b.value(c)) {
        let v = fold::binary(op, &x, &y).map_err(|e| ctx.invalid(e))?;
        return Ok(Lowered::Constants(vec![v]));
    }
    let dtype = if op.is_predicate() { ElemType::Bool } else { b.info(a).dtype };
    Ok(Lowered::Node {
        kind: NodeKind::Plain(PlainOp::Binary(op)),
        inputs: vec![a, c],
        outputs: vec![(out, dtype)],
    })
}

pub fn binary(b: &mut Builder, ctx: &Ctx, op_type: &str) -> Result<Lowered, GraphError> {
    let op = match op_type {
        "Add" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "Pow" => BinaryOp::Pow,
        "Equal" => BinaryOp::Equal,
        "Less" => BinaryOp::Less,
        "LessOrEqual" => BinaryOp::LessOrEqual,
        "Greater" => BinaryOp::Greater,
        "GreaterOrEqual" => BinaryOp::GreaterOrEqual,
        "And" => BinaryOp::And,
        "Or" => BinaryOp::Or,
        "Xor" => BinaryOp::Xor,
        // fmod=1: the sign of the dividend (C fmod); 0: the sign of the divisor (Python %).
        "Mod" if ctx.attrs.int_or("fmod", 0)? != 0 => BinaryOp::FMod,
        "Mod" => BinaryOp::Mod,
        _ => BinaryOp::PRelu,
    };
    let a = ctx.input(0)?;
    let mut c = ctx.input(1)?;
    let (sa, sc) = (b.shape(a).to_vec(), b.shape(c).to_vec());
    if ctx.opset < 7 {
        if op == BinaryOp::PRelu {
            // Opset 6 PRelu: a 1-D slope of C values is per channel (dimension 1).
            if sc.len() == 1 && sa.len() > 2 && sc[0] == sa[1] && sc[0] != 1 {
                let mut shape = vec![sc[0]];
                shape.resize(sa.len() - 1, 1);
                c = reshape_operand(b, ctx, c, shape);
            }
        } else if ctx.attrs.int_or("broadcast", 0)? != 0 && sc.len() < sa.len() {
            // Opset ≤ 6 broadcasting: B's dimensions line up with A's starting at `axis`.
            let axis = match ctx.attrs.int("axis")? {
                Some(x) => ctx.axis(x, sa.len())?,
                None => sa.len() - sc.len(),
            };
            if axis + sc.len() > sa.len() {
                return Err(ctx.invalid(format!("cannot broadcast {sc:?} into {sa:?} at axis {axis}")));
            }
            let mut shape = sc.clone();
            shape.resize(sa.len() - axis, 1);
            c = reshape_operand(b, ctx, c, shape);
        }
    }
    binary_node(b, ctx, op, a, c)
}

pub fn variadic(b: &mut Builder, ctx: &Ctx, op_type: &str) -> Result<Lowered, GraphError> {
    let ids: Vec<TensorId> = (0..ctx.inputs.len()).map(|i| ctx.input(i)).collect::<Result<_, _>>()?;
    let (op, bin) = match op_type {
        "Sum" => (VariadicOp::Sum, Some(BinaryOp::Add)),
        "Max" => (VariadicOp::Max, Some(BinaryOp::Max)),
        "Min" => (VariadicOp::Min, Some(BinaryOp::Min)),
        _ => (VariadicOp::Mean, None),
    };
    match ids.as_slice() {
        [] => Err(ctx.invalid("no inputs")),
        [only] => Ok(Lowered::Alias(vec![*only])),
        [x, y] if bin.is_some() => binary_node(b, ctx, bin.unwrap_or(BinaryOp::Add), *x, *y),
        _ => {
            let mut out = b.shape(ids[0]).to_vec();
            for &id in &ids[1..] {
                out = shape::broadcast(&out, b.shape(id)).ok_or_else(|| {
                    ctx.invalid(format!("input shapes {out:?} and {:?} do not broadcast", b.shape(id)))
                })?;
            }
            if let Some(values) = all_constant(b, &ids) {
                let refs: Vec<&Tensor> = values.iter().map(|v| v.as_ref()).collect();
                return Ok(Lowered::Constants(vec![fold::variadic(op, &refs).map_err(|e| ctx.invalid(e))?]));
            }
            let dtype = b.info(ids[0]).dtype;
            Ok(Lowered::Node {
                kind: NodeKind::Plain(PlainOp::Variadic(op)),
                inputs: ids,
                outputs: vec![(out, dtype)],
            })
        }
    }
}

/// Clip's bounds: attributes before opset 11, optional constant inputs since.
fn clip_bounds(b: &Builder, ctx: &Ctx) -> Result<(f32, f32), GraphError> {
    if ctx.opset < 11 {
        return Ok((
            ctx.attrs.float_or("min", f32::NEG_INFINITY)?,
            ctx.attrs.float_or("max", f32::INFINITY)?,
        ));
    }
    let bound = |i: usize, default: f32, what: &str| -> Result<f32, GraphError> {
        match ctx.opt_input(i) {
            None => Ok(default),
            Some(_) => {
                let v = ctx.const_input(b, i, what)?.to_f64();
                v.first().map(|&x| x as f32).ok_or_else(|| ctx.invalid(format!("{what} is empty")))
            }
        }
    };
    Ok((bound(1, f32::NEG_INFINITY, "min")?, bound(2, f32::INFINITY, "max")?))
}

/// Clip (opset ≥ 11) whose `min` or `max` is a graph input or computed: `Min(Max(x, min), max)`,
/// each bound broadcast (ONNX: when min > max every value becomes max, which this order gives).
/// `None` when both bounds are constants or absent (the plain Clip).
fn clip_with_run_time_bounds(b: &mut Builder, ctx: &Ctx) -> Result<Option<Lowered>, GraphError> {
    if ctx.opset < 11 {
        return Ok(None);
    }
    let run_time = |i: usize| ctx.opt_input(i).filter(|&id| b.value(id).is_none());
    let (min, max) = (run_time(1), run_time(2));
    if min.is_none() && max.is_none() {
        return Ok(None);
    }
    let x = ctx.input(0)?;
    let (min, max) = (ctx.opt_input(1), ctx.opt_input(2));
    let Some(max) = max else {
        let min = min.ok_or_else(|| ctx.invalid("Clip without bounds"))?;
        return binary_node(b, ctx, BinaryOp::Max, x, min).map(Some);
    };
    let lower = match min {
        None => x,
        Some(min) => match binary_node(b, ctx, BinaryOp::Max, x, min)? {
            Lowered::Node { kind, inputs, outputs } => {
                let (shape, dtype) = outputs[0].clone();
                let out = b.add_temp(&format!("{}/at_least_min", b.info(x).name), shape, dtype);
                b.push_node(&ctx.node.name, "Max", kind, inputs, vec![out]);
                out
            }
            Lowered::Constants(mut folded) => {
                let name = format!("{}/at_least_min", b.info(x).name);
                b.add_constant(&name, folded.remove(0))
            }
            Lowered::Alias(ids) => ids[0],
        },
    };
    binary_node(b, ctx, BinaryOp::Min, lower, max).map(Some)
}

/// ONNX Where(condition, x, y), the three broadcast; Not(x) as `x == 0`.
pub fn where_(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let (c, x, y) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let (sc, sx, sy) = (b.shape(c).to_vec(), b.shape(x).to_vec(), b.shape(y).to_vec());
    let out = shape::broadcast(&sx, &sy)
        .and_then(|xy| shape::broadcast(&sc, &xy))
        .ok_or_else(|| ctx.invalid(format!("shapes {sc:?}, {sx:?} and {sy:?} do not broadcast")))?;
    if let (Some(vc), Some(vx), Some(vy)) = (b.value(c), b.value(x), b.value(y)) {
        return Ok(Lowered::Constants(vec![fold::select(&vc, &vx, &vy, &out)]));
    }
    let dtype = b.info(x).dtype;
    Ok(Lowered::Node {
        kind: NodeKind::Plain(PlainOp::Where),
        inputs: vec![c, x, y],
        outputs: vec![(out, dtype)],
    })
}

pub fn not(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let zero = b.add_constant("zero", Tensor::from_f64(ElemType::Bool, vec![], [0.0]));
    binary_node(b, ctx, BinaryOp::Equal, x, zero)
}

pub fn unary(b: &mut Builder, ctx: &Ctx, op_type: &str) -> Result<Lowered, GraphError> {
    let a = &ctx.attrs;
    let op = match op_type {
        "Relu" => UnaryOp::Relu,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Tanh" => UnaryOp::Tanh,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Neg" => UnaryOp::Neg,
        "Abs" => UnaryOp::Abs,
        "Sqrt" => UnaryOp::Sqrt,
        "Reciprocal" => UnaryOp::Reciprocal,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Softplus" => UnaryOp::Softplus,
        "Softsign" => UnaryOp::Softsign,
        "HardSwish" => UnaryOp::HardSwish,
        "Erf" => UnaryOp::Erf,
        "Gelu" => match a.string("approximate")?.as_deref().unwrap_or("none") {
            "none" => UnaryOp::Gelu { tanh: false },
            "tanh" => UnaryOp::Gelu { tanh: true },
            other => return Err(ctx.invalid(format!("approximate `{other}`: none or tanh"))),
        },
        "Elu" => UnaryOp::Elu { alpha: a.float_or("alpha", 1.0)? },
        "Selu" => {
            UnaryOp::Selu { alpha: a.float_or("alpha", 1.673_263_2)?, gamma: a.float_or("gamma", 1.050_701)? }
        }
        "LeakyRelu" => UnaryOp::LeakyRelu { alpha: a.float_or("alpha", 0.01)? },
        "HardSigmoid" => {
            UnaryOp::HardSigmoid { alpha: a.float_or("alpha", 0.2)?, beta: a.float_or("beta", 0.5)? }
        }
        _ => {
            if let Some(lowered) = clip_with_run_time_bounds(b, ctx)? {
                return Ok(lowered);
            }
            let (min, max) = clip_bounds(b, ctx)?;
            UnaryOp::Clip { min, max }
        }
    };
    let x = ctx.input(0)?;
    if let Some(v) = b.value(x) {
        return Ok(Lowered::Constants(vec![fold::unary(op, &v)]));
    }
    let info = b.info(x);
    Ok(Lowered::Node {
        kind: NodeKind::Plain(PlainOp::Unary(op)),
        inputs: vec![x],
        outputs: vec![(info.shape.clone(), info.dtype)],
    })
}
