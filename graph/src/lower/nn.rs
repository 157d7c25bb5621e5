//! Neural-network operators. Conv, MatMul, Gemm and the poolings become kernel [`Task`]s (with
//! their bias and Gemm's alpha/beta as the first epilogue steps); the normalizations, LRN,
//! softmax and reductions become plain ops.

use super::{Ctx, Lowered};
use crate::builder::Builder;
use crate::error::GraphError;
use crate::fold;
use crate::graph::{NodeKind, TensorId};
use crate::plain::{PlainOp, ReduceKind};
use crate::tensor::{ElemType, Tensor};
use autotune_ir::{BatchMatmulSpec, Conv2dSpec, EpilogueOp, Op, Pool2dSpec, PoolKind, Scalar, Task};

fn require_f32(b: &Builder, ctx: &Ctx, id: TensorId, what: &str) -> Result<(), GraphError> {
    let t = b.info(id).dtype;
    if t != ElemType::F32 {
        return Err(ctx.unsupported(format!("{what} is {t:?}; tuned kernels take f32 only")));
    }
    Ok(())
}

fn kernel_node(
    ctx: &Ctx,
    task: Task,
    inputs: Vec<TensorId>,
    out_shape: Vec<usize>,
) -> Result<Lowered, GraphError> {
    task.validate().map_err(|e| ctx.invalid(format!("{}: {e}", task.description())))?;
    Ok(Lowered::Node { kind: NodeKind::Kernel(task), inputs, outputs: vec![(out_shape, ElemType::F32)] })
}

/// Spatial geometry shared by Conv and the poolings, for 1-D or 2-D inputs, as 2-D numbers.
struct Window {
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    /// Top, left, bottom, right.
    pad: [usize; 4],
}

/// Reads strides, dilations, pads and auto_pad for `spatial` (1 or 2) spatial dimensions.
fn window(
    ctx: &Ctx,
    input: &[usize],
    kernel: &[usize],
    dilations_allowed: bool,
) -> Result<Window, GraphError> {
    let k = kernel.len();
    let a = &ctx.attrs;
    let list = |name: &str, n: usize, default: usize| -> Result<Vec<usize>, GraphError> {
        let v = a.sizes(name)?.unwrap_or_else(|| vec![default; n]);
        if v.len() != n {
            return Err(ctx.invalid(format!("`{name}` has {} entries, {n} expected", v.len())));
        }
        Ok(v)
    };
    let stride = list("strides", k, 1)?;
    let dilation = if dilations_allowed { list("dilations", k, 1)? } else { vec![1; k] };
    if stride.contains(&0) || dilation.contains(&0) {
        return Err(ctx.invalid("strides and dilations must be positive"));
    }
    let auto_pad = a.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
    let spatial = &input[input.len() - k..];
    let pads: Vec<usize> = match auto_pad.as_str() {
        "NOTSET" | "" => list("pads", 2 * k, 0)?,
        "VALID" => vec![0; 2 * k],
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut begin = Vec::new();
            let mut end = Vec::new();
            for i in 0..k {
                let out = spatial[i].div_ceil(stride[i]);
                let eff = dilation[i] * (kernel[i] - 1) + 1;
                let total = ((out - 1) * stride[i] + eff).saturating_sub(spatial[i]);
                let small = total / 2;
                let (b, e) =
                    if auto_pad == "SAME_UPPER" { (small, total - small) } else { (total - small, small) };
                begin.push(b);
                end.push(e);
            }
            begin.into_iter().chain(end).collect()
        }
        other => return Err(ctx.invalid(format!("unknown auto_pad `{other}`"))),
    };
    Ok(if k == 1 {
        Window {
            kernel: [1, kernel[0]],
            stride: [1, stride[0]],
            dilation: [1, dilation[0]],
            pad: [0, pads[0], 0, pads[1]],
        }
    } else {
        Window {
            kernel: [kernel[0], kernel[1]],
            stride: [stride[0], stride[1]],
            dilation: [dilation[0], dilation[1]],
            pad: [pads[0], pads[1], pads[2], pads[3]],
        }
    })
}

/// `[n, c, h, w]` of a 1-D (`[n, c, w]`, h = 1) or 2-D input.
fn nchw(ctx: &Ctx, s: &[usize], what: &str) -> Result<[usize; 4], GraphError> {
    match *s {
        [n, c, w] => Ok([n, c, 1, w]),
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(ctx.unsupported(format!(
            "{what} has shape {s:?}; only 1-D and 2-D (rank 3 or 4) inputs are supported"
        ))),
    }
}

/// The output shape in the input's rank (drops the height of a 1-D op).
fn spatial_out(rank: usize, n: usize, c: usize, oh: usize, ow: usize) -> Vec<usize> {
    if rank == 3 {
        vec![n, c, ow]
    } else {
        vec![n, c, oh, ow]
    }
}

pub fn conv(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    require_f32(b, ctx, x, "the input")?;
    let xs = b.shape(x).to_vec();
    let [n, c, h, wd] = nchw(ctx, &xs, "the input")?;
    // Only the weights' shape matters here: run-time weights are packed per call by the runtime
    // (constants of another float type are converted when they are packed).
    if b.value(w).is_none() {
        require_f32(b, ctx, w, "the weights")?;
    }
    let ws = b.shape(w).to_vec();
    if ws.len() != xs.len() {
        return Err(ctx.invalid(format!("weights {ws:?} do not match the input {xs:?}")));
    }
    let kernel = &ws[2..];
    if let Some(k) = ctx.attrs.sizes("kernel_shape")? {
        if k != kernel {
            return Err(ctx.invalid(format!("kernel_shape {k:?} differs from the weights' {kernel:?}")));
        }
    }
    let groups = usize::try_from(ctx.attrs.int_or("group", 1)?).map_err(|_| ctx.invalid("negative group"))?;
    if groups == 0 || c % groups != 0 || ws[1] * groups != c {
        return Err(ctx.invalid(format!("weights {ws:?} do not fit {c} input channels in {groups} group(s)")));
    }
    let win = window(ctx, &xs, kernel, true)?;
    let spec = Conv2dSpec {
        n,
        c,
        h,
        w: wd,
        o: ws[0],
        kh: win.kernel[0],
        kw: win.kernel[1],
        stride: win.stride,
        pad: win.pad,
        dilation: win.dilation,
        groups,
    };
    spec.validate().map_err(|e| ctx.invalid(e))?;
    let mut inputs = vec![x, w];
    let mut epilogue = Vec::new();
    if let Some(bias) = ctx.opt_input(2) {
        let len: usize = b.shape(bias).iter().product();
        if len != spec.o {
            return Err(ctx.invalid(format!("bias has {len} values for {} output channels", spec.o)));
        }
        let bias = match b.value(bias) {
            Some(value) if value.dtype != ElemType::F32 || value.shape.len() != 1 => {
                let name = format!("{}/bias", b.info(bias).name);
                b.add_constant(&name, Tensor::f32(vec![spec.o], value.to_f32()))
            }
            Some(_) => bias,
            None => {
                require_f32(b, ctx, bias, "the bias")?;
                bias
            }
        };
        inputs.push(bias);
        epilogue.push(EpilogueOp::Bias);
    }
    let out = spatial_out(xs.len(), n, spec.o, spec.out_h(), spec.out_w());
    kernel_node(ctx, Task::new(Op::Conv2d(spec), epilogue), inputs, out)
}

pub fn pool(b: &mut Builder, ctx: &Ctx, op_type: &str) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    require_f32(b, ctx, x, "the input")?;
    if ctx.has_output(1) {
        return Err(ctx.unsupported("the Indices output of MaxPool is not supported"));
    }
    let xs = b.shape(x).to_vec();
    let [n, c, h, w] = nchw(ctx, &xs, "the input")?;
    let kernel = ctx.attrs.sizes("kernel_shape")?.ok_or_else(|| ctx.invalid("missing kernel_shape"))?;
    if kernel.len() + 2 != xs.len() || kernel.contains(&0) {
        return Err(ctx.invalid(format!("kernel_shape {kernel:?} does not fit the input {xs:?}")));
    }
    let max = op_type == "MaxPool";
    let dilations_allowed = if max { ctx.opset >= 10 } else { ctx.opset >= 19 };
    let win = window(ctx, &xs, &kernel, dilations_allowed)?;
    let spec = Pool2dSpec {
        kind: if max { PoolKind::Max } else { PoolKind::Avg },
        n,
        c,
        h,
        w,
        kh: win.kernel[0],
        kw: win.kernel[1],
        stride: win.stride,
        pad: win.pad,
        dilation: win.dilation,
        ceil_mode: ctx.opset >= 10 && ctx.attrs.int_or("ceil_mode", 0)? != 0,
        count_include_pad: !max && ctx.attrs.int_or("count_include_pad", 0)? != 0,
    };
    let out = spatial_out(xs.len(), n, c, spec.out_h(), spec.out_w());
    kernel_pool(ctx, spec, x, out)
}

fn kernel_pool(ctx: &Ctx, spec: Pool2dSpec, x: TensorId, out: Vec<usize>) -> Result<Lowered, GraphError> {
    kernel_node(ctx, Task::new(Op::Pool2d(spec), vec![]), vec![x], out)
}

pub fn global_pool(b: &mut Builder, ctx: &Ctx, op_type: &str) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    require_f32(b, ctx, x, "the input")?;
    let xs = b.shape(x).to_vec();
    let [n, c, h, w] = nchw(ctx, &xs, "the input")?;
    let spec = Pool2dSpec {
        kind: if op_type == "GlobalMaxPool" { PoolKind::Max } else { PoolKind::Avg },
        n,
        c,
        h,
        w,
        kh: h,
        kw: w,
        stride: [1, 1],
        pad: [0; 4],
        dilation: [1, 1],
        ceil_mode: false,
        count_include_pad: false,
    };
    let out = if xs.len() == 3 { vec![n, c, 1] } else { vec![n, c, 1, 1] };
    kernel_pool(ctx, spec, x, out)
}

/// `Y = alpha · op(A) · op(B) + beta · C`: a batch-1 matmul with Scale / Bias / residual Add
/// epilogue steps.
pub fn gemm(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let (a, bm) = (ctx.input(0)?, ctx.input(1)?);
    require_f32(b, ctx, a, "A")?;
    require_f32(b, ctx, bm, "B")?;
    let (sa, sb) = (b.shape(a).to_vec(), b.shape(bm).to_vec());
    let (&[a0, a1], &[b0, b1]) = (sa.as_slice(), sb.as_slice()) else {
        return Err(ctx.invalid(format!("A {sa:?} and B {sb:?} must be matrices")));
    };
    let trans_a = ctx.attrs.int_or("transA", 0)? != 0;
    let trans_b = ctx.attrs.int_or("transB", 0)? != 0;
    let (m, k) = if trans_a { (a1, a0) } else { (a0, a1) };
    let (k2, n) = if trans_b { (b1, b0) } else { (b0, b1) };
    if k != k2 {
        return Err(ctx
            .invalid(format!("A {sa:?} and B {sb:?} do not multiply (transA={trans_a}, transB={trans_b})")));
    }
    let alpha = ctx.attrs.float_or("alpha", 1.0)?;
    let beta = ctx.attrs.float_or("beta", 1.0)?;
    let spec = BatchMatmulSpec {
        batch: 1,
        m,
        n,
        k,
        trans_a,
        trans_b,
        a_broadcast: false,
        b_broadcast: true,
        b_constant: b.value(bm).is_some(),
    };
    let mut epilogue = Vec::new();
    let mut inputs = vec![a, bm];
    if alpha != 1.0 {
        epilogue.push(EpilogueOp::Scale { alpha: Scalar(alpha) });
    }
    if let Some(cid) = ctx.opt_input(2).filter(|_| beta != 0.0) {
        let sc = b.shape(cid).to_vec();
        let fits = crate::shape::broadcast(&sc, &[m, n]).is_some_and(|s| s == [m, n]);
        if !fits {
            return Err(ctx.invalid(format!("C {sc:?} does not broadcast to [{m}, {n}]")));
        }
        let name = b.info(cid).name.clone();
        if let Some(cv) = b.value(cid) {
            let scaled: Vec<f32> = cv.to_f64().iter().map(|&v| (v * f64::from(beta)) as f32).collect();
            let scaled = Tensor::f32(sc.clone(), scaled);
            let per_column = sc.iter().rev().skip(1).all(|&d| d == 1);
            if per_column {
                let values = scaled.to_f32();
                let values = if values.len() == n { values } else { vec![values[0]; n] };
                let bias = Tensor::f32(vec![n], values);
                inputs.push(b.add_constant(&format!("{name}/bias"), bias));
                epilogue.push(EpilogueOp::Bias);
            } else {
                let full = crate::fold::expand(&scaled, &[m, n]);
                inputs.push(b.add_constant(&format!("{name}/residual"), full));
                epilogue.push(EpilogueOp::Add);
            }
        } else {
            require_f32(b, ctx, cid, "C")?;
            let full = if sc == [m, n] {
                cid
            } else {
                let t = b.add_temp(&format!("{name}/expanded"), vec![m, n], ElemType::F32);
                b.push_node(&ctx.node.name, "Expand", NodeKind::Plain(PlainOp::Expand), vec![cid], vec![t]);
                t
            };
            // alpha·AB + beta·C = beta · ((alpha/beta)·AB + C).
            if beta != 1.0 {
                epilogue.retain(|e| !matches!(e, EpilogueOp::Scale { .. }));
                epilogue.push(EpilogueOp::Scale { alpha: Scalar(alpha / beta) });
            }
            epilogue.push(EpilogueOp::Add);
            if beta != 1.0 {
                epilogue.push(EpilogueOp::Scale { alpha: Scalar(beta) });
            }
            inputs.push(full);
        }
    }
    kernel_node(ctx, Task::new(Op::BatchMatmul(spec), epilogue), inputs, vec![m, n])
}

/// numpy matmul: leading dimensions broadcast; a 2-D (or shared) B folds A's leading dimensions
/// into `m`.
pub fn matmul(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let (a, bm) = (ctx.input(0)?, ctx.input(1)?);
    require_f32(b, ctx, a, "A")?;
    require_f32(b, ctx, bm, "B")?;
    let (sa, sb) = (b.shape(a).to_vec(), b.shape(bm).to_vec());
    if sa.is_empty() || sb.is_empty() {
        return Err(ctx.invalid("MatMul of a scalar"));
    }
    let a_mat = if sa.len() == 1 { vec![1, sa[0]] } else { sa[sa.len() - 2..].to_vec() };
    let b_mat = if sb.len() == 1 { vec![sb[0], 1] } else { sb[sb.len() - 2..].to_vec() };
    let (m, k, k2, n) = (a_mat[0], a_mat[1], b_mat[0], b_mat[1]);
    if k != k2 {
        return Err(ctx.invalid(format!("A {sa:?} and B {sb:?} do not multiply")));
    }
    let a_batch = &sa[..sa.len().saturating_sub(2)];
    let b_batch = &sb[..sb.len().saturating_sub(2)];
    let out_batch = crate::shape::broadcast(a_batch, b_batch)
        .ok_or_else(|| ctx.invalid(format!("batch dimensions of {sa:?} and {sb:?} do not broadcast")))?;
    let (na, nb, nout) = (
        a_batch.iter().product::<usize>(),
        b_batch.iter().product::<usize>(),
        out_batch.iter().product::<usize>(),
    );
    let spec = if nb == 1 {
        // B is one matrix: every row of every A batch is a row of one big matmul.
        BatchMatmulSpec {
            batch: 1,
            m: m * na,
            n,
            k,
            trans_a: false,
            trans_b: false,
            a_broadcast: false,
            b_broadcast: true,
            b_constant: b.value(bm).is_some(),
        }
    } else if na == nout && nb == nout && a_batch.len() == b_batch.len() {
        BatchMatmulSpec {
            batch: nout,
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            a_broadcast: false,
            b_broadcast: false,
            b_constant: b.value(bm).is_some(),
        }
    } else if na == 1 && nb == nout {
        BatchMatmulSpec {
            batch: nout,
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            a_broadcast: true,
            b_broadcast: false,
            b_constant: b.value(bm).is_some(),
        }
    } else {
        // Partly broadcast batch dimensions ([3,1,M,K] × [1,2,K,N]): each operand whose batch is
        // not the output's is expanded to it, and the matmul is an ordinary batched one.
        let mut expanded = |id: TensorId, matrix: &[usize]| -> TensorId {
            let full: Vec<usize> = out_batch.iter().chain(matrix).copied().collect();
            let info = b.info(id).clone();
            if info.shape == full {
                return id;
            }
            match info.value {
                Some(v) => b.add_constant(&format!("{}/expanded", info.name), fold::expand(&v, &full)),
                None => {
                    let out = b.add_temp(&format!("{}/expanded", info.name), full, info.dtype);
                    b.push_node(
                        &ctx.node.name,
                        "Expand",
                        NodeKind::Plain(PlainOp::Expand),
                        vec![id],
                        vec![out],
                    );
                    out
                }
            }
        };
        let a_full = expanded(a, &a_mat);
        let b_full = expanded(bm, &b_mat);
        let spec = BatchMatmulSpec {
            batch: nout,
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            a_broadcast: false,
            b_broadcast: false,
            b_constant: b.value(b_full).is_some(),
        };
        let mut out = out_batch;
        out.extend([m, n]);
        return kernel_node(ctx, Task::new(Op::BatchMatmul(spec), vec![]), vec![a_full, b_full], out);
    };
    let mut out = out_batch;
    if sa.len() > 1 {
        out.push(m);
    }
    if sb.len() > 1 {
        out.push(n);
    }
    kernel_node(ctx, Task::new(Op::BatchMatmul(spec), vec![]), vec![a, bm], out)
}

pub fn batch_norm(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let xs = b.shape(x).to_vec();
    if xs.len() < 2 {
        return Err(ctx.invalid(format!("input {xs:?} has no channel dimension")));
    }
    if ctx.attrs.int_or("training_mode", 0)? != 0 || (1..5).any(|i| ctx.has_output(i)) {
        return Err(ctx.unsupported("training mode is not supported (inference only)"));
    }
    if ctx.opset < 9 && ctx.attrs.int_or("spatial", 1)? == 0 {
        return Err(ctx.unsupported("spatial=0 (per-position statistics) is not supported"));
    }
    let mut inputs = vec![x];
    for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")] {
        let id = ctx.input(i)?;
        if b.shape(id).iter().product::<usize>() != xs[1] {
            return Err(ctx.invalid(format!(
                "{what} has shape {:?}, {} channels expected",
                b.shape(id),
                xs[1]
            )));
        }
        inputs.push(id);
    }
    let epsilon = ctx.attrs.float_or("epsilon", 1e-5)?;
    Ok(Lowered::Node {
        kind: NodeKind::Plain(PlainOp::BatchNorm { epsilon }),
        inputs,
        outputs: vec![(xs, b.info(x).dtype)],
    })
}

pub fn instance_norm(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let xs = b.shape(x).to_vec();
    if xs.len() < 3 {
        return Err(ctx.invalid(format!("input {xs:?} has no spatial dimension")));
    }
    let inputs = vec![x, ctx.input(1)?, ctx.input(2)?];
    let epsilon = ctx.attrs.float_or("epsilon", 1e-5)?;
    Ok(Lowered::Node {
        kind: NodeKind::Plain(PlainOp::InstanceNorm { epsilon }),
        inputs,
        outputs: vec![(xs, b.info(x).dtype)],
    })
}

pub fn lrn(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let xs = b.shape(x).to_vec();
    let a = &ctx.attrs;
    let size = a.int("size")?.ok_or_else(|| ctx.invalid("missing attribute `size`"))?;
    let size =
        usize::try_from(size).ok().filter(|&s| s > 0).ok_or_else(|| ctx.invalid("size must be positive"))?;
    if xs.len() < 2 {
        return Err(ctx.invalid(format!("input {xs:?} has no channel dimension")));
    }
    let op = PlainOp::Lrn {
        size,
        alpha: a.float_or("alpha", 1e-4)?,
        beta: a.float_or("beta", 0.75)?,
        bias: a.float_or("bias", 1.0)?,
    };
    Ok(Lowered::Node { kind: NodeKind::Plain(op), inputs: vec![x], outputs: vec![(xs, b.info(x).dtype)] })
}

pub fn layer_norm(b: &mut Builder, ctx: &Ctx) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let xs = b.shape(x).to_vec();
    if ctx.attrs.int_or("stash_type", 1)? != 1 {
        return Err(ctx.unsupported("stash_type other than float is not supported"));
    }
    let axis = ctx.axis(ctx.attrs.int_or("axis", -1)?, xs.len())?;
    let normalized = &xs[axis..];
    let mut inputs = vec![x];
    for (i, what) in [(1, "scale"), (2, "bias")] {
        let Some(id) = ctx.opt_input(i) else { continue };
        let shape = b.shape(id).to_vec();
        if crate::shape::broadcast(&shape, normalized).as_deref() != Some(normalized) {
            return Err(
                ctx.invalid(format!("{what} {shape:?} does not broadcast to the normalized {normalized:?}"))
            );
        }
        inputs.push(id);
    }
    let epsilon = ctx.attrs.float_or("epsilon", 1e-5)?;
    let mut outputs = vec![(xs.clone(), b.info(x).dtype)];
    if (1..3).any(|i| ctx.has_output(i)) {
        // Mean and InvStdDev: one value per normalized run, the normalized dims kept as 1.
        let stats: Vec<usize> = xs.iter().enumerate().map(|(d, &n)| if d < axis { n } else { 1 }).collect();
        outputs.extend([(stats.clone(), ElemType::F32), (stats, ElemType::F32)]);
    }
    Ok(Lowered::Node { kind: NodeKind::Plain(PlainOp::LayerNorm { axis, epsilon }), inputs, outputs })
}

pub fn softmax(b: &mut Builder, ctx: &Ctx, op_type: &str) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let xs = b.shape(x).to_vec();
    let default = if ctx.opset < 13 { 1 } else { -1 };
    let axis = ctx.axis(ctx.attrs.int_or("axis", default)?, xs.len())?;
    let coerce_2d = ctx.opset < 13 && axis + 1 < xs.len();
    let op = PlainOp::Softmax { axis, log: op_type == "LogSoftmax", coerce_2d };
    Ok(Lowered::Node { kind: NodeKind::Plain(op), inputs: vec![x], outputs: vec![(xs, b.info(x).dtype)] })
}

pub fn reduce(b: &mut Builder, ctx: &Ctx, op_type: &str) -> Result<Lowered, GraphError> {
    let x = ctx.input(0)?;
    let xs = b.shape(x).to_vec();
    let kind = match op_type {
        "ReduceSum" => ReduceKind::Sum,
        "ReduceMean" => ReduceKind::Mean,
        "ReduceMax" => ReduceKind::Max,
        "ReduceMin" => ReduceKind::Min,
        _ => ReduceKind::Prod,
    };
    let axes_are_input = if kind == ReduceKind::Sum { ctx.opset >= 13 } else { ctx.opset >= 18 };
    let axes = if axes_are_input { ctx.opt_const_ints(b, 1, "axes")? } else { ctx.attrs.ints("axes")? };
    let keepdims = ctx.attrs.int_or("keepdims", 1)? != 0;
    let mut axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a.iter().map(|&v| ctx.axis(v, xs.len())).collect::<Result<_, _>>()?,
        _ if ctx.attrs.int_or("noop_with_empty_axes", 0)? != 0 => return Ok(Lowered::Alias(vec![x])),
        _ => (0..xs.len()).collect(),
    };
    axes.sort_unstable();
    axes.dedup();
    let out: Vec<usize> = xs
        .iter()
        .enumerate()
        .filter_map(|(d, &n)| match (axes.contains(&d), keepdims) {
            (false, _) => Some(n),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect();
    let dtype = b.info(x).dtype;
    let empty = axes.iter().any(|&a| xs[a] == 0);
    if empty && matches!(kind, ReduceKind::Max | ReduceKind::Min) {
        // The max of nothing is the type's least value (false, the most negative integer,
        // -inf), which the runtime's f32 could not hold for every type: a constant of the type.
        let least = kind == ReduceKind::Max;
        let identity = match dtype {
            ElemType::Bool => f64::from(u8::from(!least)),
            t if t.is_float() => {
                if least {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }
            }
            t => extreme_int(t, least),
        };
        let len = out.iter().product();
        return Ok(Lowered::Constants(vec![Tensor::from_f64(
            dtype,
            out,
            std::iter::repeat_n(identity, len),
        )]));
    }
    let op = PlainOp::Reduce { kind, axes, keepdims };
    Ok(Lowered::Node { kind: NodeKind::Plain(op), inputs: vec![x], outputs: vec![(out, dtype)] })
}

/// The least (`least`) or greatest value of an integer element type.
fn extreme_int(t: ElemType, least: bool) -> f64 {
    let (lo, hi) = match t {
        ElemType::I8 => (i8::MIN as f64, i8::MAX as f64),
        ElemType::I16 => (i16::MIN as f64, i16::MAX as f64),
        ElemType::I32 => (i32::MIN as f64, i32::MAX as f64),
        ElemType::U8 => (0.0, u8::MAX as f64),
        ElemType::U16 => (0.0, u16::MAX as f64),
        ElemType::U32 => (0.0, u32::MAX as f64),
        _ => (i64::MIN as f64, i64::MAX as f64),
    };
    if least {
        lo
    } else {
        hi
    }
}
