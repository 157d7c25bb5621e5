//! Constants, shapes and data movement: Constant, ConstantOfShape, Shape, Size, Range, Dropout,
//! Cast, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Gather, Slice, Split, Pad,
//! Tile, Expand. Each folds when its data inputs are constants.

use super::{all_constant, Ctx, Lowered};
use crate::builder::Builder;
use crate::error::GraphError;
use crate::fold;
use crate::graph::NodeKind;
use crate::plain::{PadMode, PlainOp};
use crate::shape;
use crate::tensor::{ElemType, Tensor};

fn plain(op: PlainOp, inputs: Vec<crate::graph::TensorId>, shape: Vec<usize>, dtype: ElemType) -> Lowered {
    Lowered::Node { kind: NodeKind::Plain(op), inputs, outputs: vec![(shape, dtype)] }
}

pub fn constant(_b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let a = &ctx.attrs;
    let value = if let Some(t) = a.tensor("value")? {
        Tensor::from_proto(t, None).map_err(|e| ctx.invalid(e.to_string()))?
    } else if let Some(f) = a.float("value_float")? {
        Tensor::f32(vec![], vec![f])
    } else if let Some(v) = a.floats("value_floats")? {
        Tensor::f32(vec![v.len()], v)
    } else if let Some(i) = a.int("value_int")? {
        Tensor::i64(vec![], vec![i])
    } else if let Some(v) = a.ints("value_ints")? {
        Tensor::i64(vec![v.len()], v)
    } else {
        return Err(
            ctx.unsupported("only tensor, float(s) and int(s) values are supported (no sparse or string)")
        );
    };
    Ok(Lowered::Constants(vec![value]))
}

/// A shape given as a constant int64 input, checked non-negative.
fn shape_input(b: &Builder, ctx: &Ctx, i: usize, what: &str) -> Result<Vec<i64>, GraphError> {
    Ok(ctx.const_input(b, i, what)?.to_i64())
}

fn to_sizes(ctx: &Ctx, v: &[i64], what: &str) -> Result<Vec<usize>, GraphError> {
    v.iter()
        .map(|&d| usize::try_from(d).map_err(|_| ctx.invalid(format!("{what} {v:?} has a negative entry"))))
        .collect()
}

pub fn constant_of_shape(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let dims = shape_input(b, ctx, 0, "shape")?;
    let shape = to_sizes(ctx, &dims, "shape")?;
    let fill = match ctx.attrs.tensor("value")? {
        Some(t) => Tensor::from_proto(t, None).map_err(|e| ctx.invalid(e.to_string()))?,
        None => Tensor::f32(vec![1], vec![0.0]),
    };
    if fill.len() != 1 {
        return Err(ctx.invalid("`value` must hold exactly one element"));
    }
    let len: usize = shape.iter().product();
    Ok(Lowered::Constants(vec![fill.gather_flat(shape, std::iter::repeat_n(0, len))]))
}

pub fn shape(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let s = b.shape(ctx.input(0)?);
    let rank = s.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(ctx.attrs.int_or("start", 0)?);
    let end = clamp(ctx.attrs.int_or("end", rank)?);
    let dims: Vec<i64> = s[start..end.max(start)].iter().map(|&d| d as i64).collect();
    Ok(Lowered::Constants(vec![Tensor::i64(vec![dims.len()], dims)]))
}

pub fn size(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let n: usize = b.shape(ctx.input(0)?).iter().product();
    Ok(Lowered::Constants(vec![Tensor::i64(vec![], vec![n as i64])]))
}

pub fn range(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let start = ctx.const_input(b, 0, "start")?;
    let limit = ctx.const_input(b, 1, "limit")?;
    let delta = ctx.const_input(b, 2, "delta")?;
    let (s, l, d) = (start.to_f64(), limit.to_f64(), delta.to_f64());
    let (&[s], &[l], &[d]) = (s.as_slice(), l.as_slice(), d.as_slice()) else {
        return Err(ctx.invalid("start, limit and delta must be scalars"));
    };
    if d == 0.0 {
        return Err(ctx.invalid("delta is 0"));
    }
    let n = ((l - s) / d).ceil().max(0.0) as usize;
    Ok(Lowered::Constants(vec![Tensor::from_f64(start.dtype, vec![n], (0..n).map(|i| s + i as f64 * d))]))
}

pub fn dropout(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    // Inference: the identity. Since opset 12 training mode is an input; it must be false.
    if let Some(id) = ctx.opt_input(2) {
        let training = b.value(id).map(|t| t.to_i64().first().copied().unwrap_or(0));
        if training != Some(0) {
            return Err(ctx.unsupported("training_mode must be a constant false (inference only)"));
        }
    }
    // The mask output is not produced: reading it is an error (see `Builder::unavailable`).
    Ok(Lowered::Alias(vec![ctx.input(0)?]))
}

/// Cast, and CastLike (the type of its second input instead of `to`).
pub fn cast(b: &mut Builder, ctx: &Ctx, like: bool) -> Result<Lowered, GraphError> {
    let to = if like {
        b.info(ctx.input(1)?).dtype
    } else {
        let code = ctx.attrs.int("to")?.ok_or_else(|| ctx.invalid("missing attribute `to`"))?;
        i32::try_from(code)
            .ok()
            .and_then(ElemType::from_onnx)
            .ok_or_else(|| ctx.unsupported(format!("cast to {}", ElemType::onnx_name(code as i32))))?
    };
    let x = ctx.input(0)?;
    if let Some(v) = b.value(x) {
        return Ok(Lowered::Constants(vec![fold::cast(&v, to)]));
    }
    if b.info(x).dtype == to {
        return Ok(Lowered::Alias(vec![x]));
    }
    Ok(plain(PlainOp::Cast { to }, vec![x], b.shape(x).to_vec(), to))
}

/// The same data in another shape: folds for constants, a Reshape node otherwise.
pub(crate) fn reshaped(b: &Builder, x: crate::graph::TensorId, shape: Vec<usize>) -> Lowered {
    match b.value(x) {
        Some(v) => Lowered::Constants(vec![v.reshaped(shape)]),
        None => plain(PlainOp::Reshape, vec![x], shape, b.info(x).dtype),
    }
}

pub fn reshape(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let spec = if ctx.opset < 5 {
        ctx.attrs.ints("shape")?.ok_or_else(|| ctx.invalid("missing attribute `shape`"))?
    } else {
        shape_input(b, ctx, 1, "shape")?
    };
    let allow_zero = ctx.attrs.int_or("allowzero", 0)? != 0;
    let input = b.shape(x).to_vec();
    let len: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allow_zero => out.push(
                *input
                    .get(i)
                    .ok_or_else(|| ctx.invalid(format!("shape {spec:?} copies a missing dimension")))?,
            ),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(ctx.invalid(format!("bad shape {spec:?}"))),
        }
    }
    if let Some(i) = infer {
        let known: usize = out.iter().product();
        if known == 0 || !len.is_multiple_of(known) {
            return Err(ctx.invalid(format!("cannot reshape {input:?} into {spec:?}")));
        }
        out[i] = len / known;
    }
    if out.iter().product::<usize>() != len {
        return Err(ctx.invalid(format!("cannot reshape {input:?} ({len} elements) into {out:?}")));
    }
    Ok(reshaped(b, x, out))
}

pub fn flatten(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let s = b.shape(x).to_vec();
    let a = ctx.attrs.int_or("axis", 1)?;
    let axis = if a == s.len() as i64 { s.len() } else { ctx.axis(a, s.len())? };
    let out = vec![s[..axis].iter().product(), s[axis..].iter().product()];
    Ok(reshaped(b, x, out))
}

fn axes_of(b: &Builder, ctx: &Ctx) -> Result<Option<Vec<i64>>, GraphError> {
    if ctx.opset >= 13 {
        ctx.opt_const_ints(b, 1, "axes")
    } else {
        ctx.attrs.ints("axes")
    }
}

pub fn squeeze(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let s = b.shape(x).to_vec();
    let out: Vec<usize> = match axes_of(b, ctx)? {
        Some(axes) if !axes.is_empty() => {
            let axes: Vec<usize> = axes.iter().map(|&a| ctx.axis(a, s.len())).collect::<Result<_, _>>()?;
            if let Some(&a) = axes.iter().find(|&&a| s[a] != 1) {
                return Err(ctx.invalid(format!("cannot squeeze axis {a} of size {} from {s:?}", s[a])));
            }
            s.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
        }
        _ => s.iter().copied().filter(|&d| d != 1).collect(),
    };
    Ok(reshaped(b, x, out))
}

pub fn unsqueeze(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let s = b.shape(x).to_vec();
    let axes = axes_of(b, ctx)?.ok_or_else(|| ctx.invalid("missing axes"))?;
    let rank = s.len() + axes.len();
    let mut axes: Vec<usize> = axes.iter().map(|&a| ctx.axis(a, rank)).collect::<Result<_, _>>()?;
    axes.sort_unstable();
    axes.dedup();
    if axes.len() + s.len() != rank {
        return Err(ctx.invalid("repeated axes"));
    }
    let mut rest = s.iter();
    let out: Vec<usize> =
        (0..rank).map(|i| if axes.contains(&i) { 1 } else { rest.next().copied().unwrap_or(1) }).collect();
    Ok(reshaped(b, x, out))
}

pub fn transpose(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let s = b.shape(x).to_vec();
    let perm: Vec<usize> = match ctx.attrs.ints("perm")? {
        Some(p) => p.iter().map(|&a| ctx.axis(a, s.len())).collect::<Result<_, _>>()?,
        None => (0..s.len()).rev().collect(),
    };
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != (0..s.len()).collect::<Vec<_>>() {
        return Err(
            ctx.invalid(format!("perm {perm:?} is not a permutation of the input's {} axes", s.len()))
        );
    }
    if let Some(v) = b.value(x) {
        return Ok(Lowered::Constants(vec![fold::transpose(&v, &perm)]));
    }
    let out = perm.iter().map(|&p| s[p]).collect();
    Ok(plain(PlainOp::Transpose { perm }, vec![x], out, b.info(x).dtype))
}

pub fn concat(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let ids: Vec<_> = (0..ctx.inputs.len()).map(|i| ctx.input(i)).collect::<Result<_, _>>()?;
    let first = b.shape(*ids.first().ok_or_else(|| ctx.invalid("no inputs"))?).to_vec();
    let axis = ctx.axis(ctx.attrs.int_or("axis", 1)?, first.len())?;
    let mut out = first.clone();
    out[axis] = 0;
    for &id in &ids {
        let s = b.shape(id);
        let fits =
            s.len() == first.len() && s.iter().zip(&first).enumerate().all(|(d, (x, y))| d == axis || x == y);
        if !fits {
            return Err(ctx.invalid(format!("input shapes {first:?} and {s:?} differ outside axis {axis}")));
        }
        out[axis] += s[axis];
    }
    if let Some(values) = all_constant(b, &ids) {
        let refs: Vec<&Tensor> = values.iter().map(|v| v.as_ref()).collect();
        return Ok(Lowered::Constants(vec![fold::concat(&refs, axis)]));
    }
    let dtype = b.info(ids[0]).dtype;
    Ok(plain(PlainOp::Concat { axis }, ids, out, dtype))
}

pub fn gather(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let (data, indices) = (ctx.input(0)?, ctx.input(1)?);
    let s = b.shape(data).to_vec();
    let axis = ctx.axis(ctx.attrs.int_or("axis", 0)?, s.len())?;
    if b.info(indices).dtype.is_float() {
        return Err(ctx.invalid("indices must be integers"));
    }
    if let Some(ind) = b.value(indices) {
        let dim = s[axis] as i64;
        if let Some(bad) = ind.to_i64().into_iter().find(|&i| i < -dim || i >= dim) {
            return Err(ctx.invalid(format!("index {bad} is out of range for axis {axis} of size {dim}")));
        }
        if let Some(d) = b.value(data) {
            return Ok(Lowered::Constants(vec![fold::gather(&d, &ind, axis)]));
        }
    }
    let mut out = s[..axis].to_vec();
    out.extend_from_slice(b.shape(indices));
    out.extend_from_slice(&s[axis + 1..]);
    let dtype = b.info(data).dtype;
    Ok(plain(PlainOp::Gather { axis }, vec![data, indices], out, dtype))
}

/// ONNX Slice's clamping for one axis: returns (first index, count).
fn slice_axis(dim: usize, start: i64, end: i64, step: i64) -> (usize, usize) {
    let d = dim as i128;
    let (start, end, step) = (start as i128, end as i128, step as i128);
    let norm = |v: i128| if v < 0 { v + d } else { v };
    let (s, e) = if step > 0 {
        (norm(start).clamp(0, d), norm(end).clamp(0, d))
    } else {
        (norm(start).clamp(0, d - 1), norm(end).clamp(-1, d - 1))
    };
    let count = if step > 0 { (e - s + step - 1) / step } else { (s - e + (-step) - 1) / (-step) };
    let count = count.max(0) as usize;
    (if count == 0 { 0 } else { s as usize }, count)
}

pub fn slice(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let s = b.shape(x).to_vec();
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        let a = &ctx.attrs;
        (
            a.ints("starts")?.ok_or_else(|| ctx.invalid("missing starts"))?,
            a.ints("ends")?.ok_or_else(|| ctx.invalid("missing ends"))?,
            a.ints("axes")?,
            None,
        )
    } else {
        (
            ctx.const_input(b, 1, "starts")?.to_i64(),
            ctx.const_input(b, 2, "ends")?.to_i64(),
            ctx.opt_const_ints(b, 3, "axes")?,
            ctx.opt_const_ints(b, 4, "steps")?,
        )
    };
    let axes: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&a| ctx.axis(a, s.len())).collect::<Result<_, _>>()?,
        None => (0..starts.len()).map(|a| ctx.axis(a as i64, s.len())).collect::<Result<_, _>>()?,
    };
    let steps = steps.unwrap_or_else(|| vec![1; axes.len()]);
    if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
        return Err(ctx.invalid("starts, ends, axes and steps differ in length"));
    }
    let mut first = vec![0usize; s.len()];
    let mut step_all = vec![1i64; s.len()];
    let mut out = s.clone();
    for (k, &a) in axes.iter().enumerate() {
        if steps[k] == 0 {
            return Err(ctx.invalid("a step is 0"));
        }
        let (f, n) = slice_axis(s[a], starts[k], ends[k], steps[k]);
        first[a] = f;
        step_all[a] = steps[k];
        out[a] = n;
    }
    if let Some(v) = b.value(x) {
        return Ok(Lowered::Constants(vec![fold::slice(&v, &first, &step_all, &out)]));
    }
    let dtype = b.info(x).dtype;
    Ok(plain(PlainOp::Slice { starts: first, steps: step_all }, vec![x], out, dtype))
}

pub fn split(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let s = b.shape(x).to_vec();
    let axis = ctx.axis(ctx.attrs.int_or("axis", 0)?, s.len())?;
    let given = if ctx.opset >= 13 { ctx.opt_const_ints(b, 1, "split")? } else { ctx.attrs.ints("split")? };
    let n_out = ctx.outputs.len();
    let dim = s[axis];
    let sizes: Vec<usize> = match given {
        Some(v) if !v.is_empty() => to_sizes(ctx, &v, "split")?,
        _ => {
            let n = usize::try_from(ctx.attrs.int_or("num_outputs", n_out as i64)?).unwrap_or(0).max(1);
            let chunk = dim.div_ceil(n);
            (0..n).map(|i| chunk.min(dim.saturating_sub(i * chunk))).collect()
        }
    };
    if sizes.iter().sum::<usize>() != dim || sizes.len() != n_out {
        return Err(ctx
            .invalid(format!("split sizes {sizes:?} do not cover axis {axis} of {s:?} in {n_out} outputs")));
    }
    if let Some(v) = b.value(x) {
        let mut offset = 0;
        let parts = sizes
            .iter()
            .map(|&n| {
                let mut first = vec![0; s.len()];
                first[axis] = offset;
                offset += n;
                let mut shape = s.clone();
                shape[axis] = n;
                fold::slice(&v, &first, &vec![1; s.len()], &shape)
            })
            .collect();
        return Ok(Lowered::Constants(parts));
    }
    let dtype = b.info(x).dtype;
    let outputs = sizes
        .iter()
        .map(|&n| {
            let mut shape = s.clone();
            shape[axis] = n;
            (shape, dtype)
        })
        .collect();
    Ok(Lowered::Node { kind: NodeKind::Plain(PlainOp::Split { axis, sizes }), inputs: vec![x], outputs })
}

pub fn pad(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let s = b.shape(x).to_vec();
    let rank = s.len();
    let mode_name = ctx.attrs.string("mode")?.unwrap_or_else(|| "constant".into());
    let (raw, value, axes) = if ctx.opset < 11 {
        let pads = match ctx.attrs.ints("pads")? {
            Some(p) => p,
            None => ctx.attrs.ints("paddings")?.ok_or_else(|| ctx.invalid("missing pads"))?,
        };
        (pads, ctx.attrs.float_or("value", 0.0)?, None)
    } else {
        let value = match ctx.opt_input(2) {
            Some(_) => {
                ctx.const_input(b, 2, "constant_value")?.to_f64().first().copied().unwrap_or(0.0) as f32
            }
            None => 0.0,
        };
        (ctx.const_input(b, 1, "pads")?.to_i64(), value, ctx.opt_const_ints(b, 3, "axes")?)
    };
    let axes: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&a| ctx.axis(a, rank)).collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if raw.len() != 2 * axes.len() {
        return Err(ctx.invalid(format!("pads {raw:?} do not match {} axes", axes.len())));
    }
    let mut pads = vec![[0i64; 2]; rank];
    for (k, &a) in axes.iter().enumerate() {
        pads[a] = [raw[k], raw[k + axes.len()]];
    }
    let mode = match mode_name.as_str() {
        "constant" => PadMode::Constant { value },
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        other => return Err(ctx.unsupported(format!("pad mode `{other}`"))),
    };
    let mut out = Vec::with_capacity(rank);
    for (d, p) in s.iter().zip(&pads) {
        let n = *d as i64 + p[0] + p[1];
        if n < 0 {
            return Err(ctx.invalid(format!("pads {raw:?} crop more than the input {s:?}")));
        }
        out.push(n as usize);
    }
    let dtype = b.info(x).dtype;
    Ok(plain(PlainOp::Pad { pads, mode }, vec![x], out, dtype))
}

pub fn trilu(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let s = b.shape(x).to_vec();
    if s.len() < 2 {
        return Err(ctx.invalid(format!("the input {s:?} has fewer than 2 dimensions")));
    }
    let upper = ctx.attrs.int_or("upper", 1)? != 0;
    let mut inputs = vec![x];
    if let Some(k) = ctx.opt_input(1) {
        if b.shape(k).iter().product::<usize>() != 1 {
            return Err(ctx.invalid("k must be a single value"));
        }
        inputs.push(k);
    }
    let dtype = b.info(x).dtype;
    Ok(plain(PlainOp::Trilu { upper }, inputs, s, dtype))
}

pub fn tile(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let s = b.shape(x).to_vec();
    let repeats = to_sizes(ctx, &ctx.const_input(b, 1, "repeats")?.to_i64(), "repeats")?;
    if repeats.len() != s.len() {
        return Err(ctx.invalid(format!("repeats {repeats:?} do not match the input's rank {}", s.len())));
    }
    if let Some(v) = b.value(x) {
        return Ok(Lowered::Constants(vec![fold::tile(&v, &repeats)]));
    }
    let out = s.iter().zip(&repeats).map(|(d, r)| d * r).collect();
    let dtype = b.info(x).dtype;
    Ok(plain(PlainOp::Tile { repeats }, vec![x], out, dtype))
}

pub fn expand(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let s = b.shape(x).to_vec();
    let target = to_sizes(ctx, &ctx.const_input(b, 1, "shape")?.to_i64(), "shape")?;
    let out = shape::broadcast(&s, &target)
        .ok_or_else(|| ctx.invalid(format!("cannot expand {s:?} to {target:?}")))?;
    if let Some(v) = b.value(x) {
        return Ok(Lowered::Constants(vec![fold::expand(&v, &out)]));
    }
    if out == s {
        return Ok(Lowered::Alias(vec![x]));
    }
    let dtype = b.info(x).dtype;
    Ok(plain(PlainOp::Expand, vec![x], out, dtype))
}

#[cfg(test)]
mod tests {
    use super::slice_axis;

    #[test]
    fn slice_clamps_like_onnx() {
        assert_eq!(slice_axis(10, 0, i64::MAX, 1), (0, 10));
        assert_eq!(slice_axis(10, -3, -1, 1), (7, 2));
        assert_eq!(slice_axis(10, -1, i64::MIN, -1), (9, 10));
        assert_eq!(slice_axis(10, 8, 2, -3), (8, 2));
        assert_eq!(slice_axis(10, 5, 5, 1), (0, 0));
        assert_eq!(slice_axis(10, 0, 10, 3), (0, 4));
    }
}
