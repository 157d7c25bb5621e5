//! Normalizations and softmax: BatchNormalization (inference), InstanceNormalization, LRN,
//! Softmax / LogSoftmax. Statistics are accumulated in f64; a last-axis softmax in f32 (eight
//! partial sums) with the vectorizable exp.

use super::{per_vector_level, Operand, OutBuf, Par};

/// `[outer, channels, inner]` of an NC… tensor.
fn nc_rest(shape: &[usize]) -> (usize, usize, usize) {
    let n = shape.first().copied().unwrap_or(1);
    let c = shape.get(1).copied().unwrap_or(1);
    (n, c, shape.iter().skip(2).product())
}

pub fn batch_norm(epsilon: f32, inputs: &[Operand], out: &mut OutBuf, par: &Par) -> Result<(), String> {
    let [x, gamma, beta, mean, var] = inputs else {
        return Err(format!("needs 5 inputs (x, scale, bias, mean, var), got {}", inputs.len()));
    };
    let (_, c, inner) = nc_rest(x.shape);
    if [gamma, beta, mean, var].iter().any(|t| t.data.len() != c) {
        return Err(format!("scale, bias, mean and var must hold {c} values"));
    }
    // y = x · scale + shift, scale and shift computed once per channel in f64.
    let scale: Vec<f32> = (0..c)
        .map(|i| (f64::from(gamma.data[i]) / (f64::from(var.data[i]) + f64::from(epsilon)).sqrt()) as f32)
        .collect();
    let shift: Vec<f32> = (0..c)
        .map(|i| (f64::from(beta.data[i]) - f64::from(mean.data[i]) * f64::from(scale[i])) as f32)
        .collect();
    par.rows(out.data, inner, |row, dst| {
        let ch = row % c;
        let src = &x.data[row * inner..row * inner + dst.len()];
        let (s, t) = (scale[ch], shift[ch]);
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v * s + t;
        }
    });
    Ok(())
}

pub fn instance_norm(epsilon: f32, inputs: &[Operand], out: &mut OutBuf) -> Result<(), String> {
    let [x, scale, bias] = inputs else {
        return Err(format!("needs 3 inputs (x, scale, bias), got {}", inputs.len()));
    };
    let (_, c, inner) = nc_rest(x.shape);
    if scale.data.len() != c || bias.data.len() != c {
        return Err(format!("scale and bias must hold {c} values"));
    }
    for (row, dst) in out.data.chunks_mut(inner.max(1)).enumerate() {
        let ch = row % c;
        let src = &x.data[row * inner..row * inner + dst.len()];
        let n = src.len().max(1) as f64;
        let mean = src.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = src.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        let k = f64::from(scale.data[ch]) / (var + f64::from(epsilon)).sqrt();
        let b = f64::from(bias.data[ch]);
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = ((f64::from(v) - mean) * k + b) as f32;
        }
    }
    Ok(())
}

/// ONNX LayerNormalization over the dimensions from `axis` on; scale and bias (optional)
/// broadcast to them. Statistics in f32, two passes (mean, then the squared deviations from it:
/// no cancellation when the mean is large), in 16 partial sums; rows on the plan's threads.
pub fn layer_norm(
    axis: usize,
    epsilon: f32,
    inputs: &[Operand],
    outputs: &mut [OutBuf],
    par: &Par,
) -> Result<(), String> {
    let [out, stats @ ..] = outputs else { return Err("no output".into()) };
    let (x, scale, bias) = match inputs {
        [x, scale] => (x, scale, None),
        [x, scale, bias] => (x, scale, Some(bias)),
        _ => return Err(format!("needs x, scale and optionally bias, got {} inputs", inputs.len())),
    };
    let normalized = &x.shape[axis..];
    let inner: usize = normalized.iter().product::<usize>().max(1);
    let spread = |o: &Operand| -> Vec<f32> {
        let s = super::strided::broadcast_strides(o.shape, normalized);
        let mut full = vec![0.0; inner];
        for (k, f) in full.iter_mut().enumerate() {
            let (mut rest, mut at) = (k, 0isize);
            for d in (0..normalized.len()).rev() {
                at += (rest % normalized[d]) as isize * s[d];
                rest /= normalized[d];
            }
            *f = o.data[at as usize];
        }
        full
    };
    let gamma = spread(scale);
    let beta = bias.map(spread).unwrap_or_else(|| vec![0.0; inner]);
    let row = |r: usize, dst: &mut [f32]| {
        layer_norm_row(par.level(), &x.data[r * inner..(r + 1) * inner], dst, &gamma, &beta, epsilon)
    };
    match stats {
        [mean_out, inv_out] => {
            // The statistics outputs (training graphs) are written row by row: one thread.
            for (r, dst) in out.data.chunks_mut(inner).enumerate() {
                let (mean, inv) = row(r, dst);
                mean_out.data[r] = mean;
                inv_out.data[r] = inv;
            }
        }
        _ => par.rows(out.data, inner, |r, dst| {
            row(r, dst);
        }),
    }
    Ok(())
}

per_vector_level! {
/// Normalizes one row; returns its mean and 1/σ.
fn layer_norm_row(src: &[f32], dst: &mut [f32], gamma: &[f32], beta: &[f32], epsilon: f32) -> (f32, f32) {
    let n = src.len().max(1) as f32;
    let mean = lane_sum(src, |v| v) / n;
    let var = lane_sum(src, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + epsilon).sqrt();
    for (((d, &v), &g), &b) in dst.iter_mut().zip(src).zip(gamma).zip(beta) {
        *d = (v - mean) * inv * g + b;
    }
    (mean, inv)
}
}

/// Σ f(v) over `src` in 16 partial sums: a reduction the compiler vectorizes (one f32 chain
/// would not be), with a smaller rounding error than one running sum.
#[inline(always)]
pub(crate) fn lane_sum(src: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut partial = [0f32; 16];
    let mut chunks = src.chunks_exact(16);
    for c in &mut chunks {
        for (p, &v) in partial.iter_mut().zip(c) {
            *p += f(v);
        }
    }
    partial.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

/// Local response normalization across channels (ONNX LRN), one output plane at a time: the
/// window's sum of squares plane by plane (vectorizes), then `x · (bias + alpha/size · sum)^-beta`
/// in f32 (the common beta = 0.75 as square roots).
pub fn lrn(size: usize, alpha: f32, beta: f32, bias: f32, x: Operand, out: &mut OutBuf, par: &Par) {
    let (_, c, inner) = nc_rest(x.shape);
    let before = (size - 1) / 2;
    let after = size - 1 - before;
    let scale = alpha / size as f32;
    par.rows(out.data, inner, |row, dst| {
        let (n, ch) = (row / c, row % c);
        let plane = |k: usize| &x.data[(n * c + k) * inner..(n * c + k + 1) * inner];
        dst.fill(0.0);
        for k in ch.saturating_sub(before)..=(ch + after).min(c - 1) {
            for (d, &v) in dst.iter_mut().zip(plane(k)) {
                *d += v * v;
            }
        }
        let center = plane(ch);
        if beta == 0.75 {
            for (d, &v) in dst.iter_mut().zip(center) {
                let base = bias + scale * *d;
                let root = base.sqrt();
                *d = v / (root * root.sqrt());
            }
        } else {
            for (d, &v) in dst.iter_mut().zip(center) {
                *d = v * (bias + scale * *d).powf(-beta);
            }
        }
    });
}

/// Softmax (or log-softmax) along `axis`; with `coerce_2d` over the flattened dimensions
/// `axis..` (ONNX opset < 13). `addend` (a fused attention mask: full along the last axis, which
/// `axis` then is) is added to `x` first, broadcast.
pub fn softmax(
    axis: usize,
    log: bool,
    coerce_2d: bool,
    x: Operand,
    addend: Option<Operand>,
    out: &mut OutBuf,
    par: &Par,
) {
    let shape = x.shape;
    let outer: usize = shape[..axis].iter().product();
    let (dim, inner) = if coerce_2d {
        (shape[axis..].iter().product(), 1)
    } else {
        (shape.get(axis).copied().unwrap_or(1), shape.get(axis + 1..).map_or(1, |s| s.iter().product()))
    };
    if inner == 1 {
        // Rows are contiguous (the last axis: attention's case): f32 passes that vectorize.
        let rank = shape.len();
        let addend = addend.map(|m| (m.data, super::strided::broadcast_strides(m.shape, shape)));
        return par.rows(out.data, dim, |r, dst| {
            let add = match &addend {
                Some((data, strides)) => {
                    let at = super::strided::row_offset(r, &shape[..rank - 1], &strides[..rank - 1]) as usize;
                    &data[at..at + dim]
                }
                None => &[],
            };
            softmax_row(par.level(), &x.data[r * dim..(r + 1) * dim], add, dst, log)
        });
    }
    let mut row = vec![0f64; dim];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * dim + k) * inner + i;
            for (k, r) in row.iter_mut().enumerate() {
                *r = f64::from(x.data[at(k)]);
            }
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row.iter().map(|&v| (v - max).exp()).sum();
            for (k, &v) in row.iter().enumerate() {
                out.data[at(k)] =
                    if log { (v - max - sum.ln()) as f32 } else { ((v - max).exp() / sum) as f32 };
            }
        }
    }
}

per_vector_level! {
/// Softmax (or log-softmax) of one contiguous row.
fn softmax_row(src: &[f32], addend: &[f32], dst: &mut [f32], log: bool) {
    // The row's logits (x, or x + the mask) in `dst`, then everything in place.
    if addend.is_empty() {
        dst.copy_from_slice(src);
    } else {
        for ((d, &v), &a) in dst.iter_mut().zip(src).zip(addend) {
            *d = v + a;
        }
    }
    let max = lane_max(dst);
    if log {
        let sum = lane_sum(dst, |v| super::fast_math::exp(v - max));
        let shift = max + sum.ln();
        dst.iter_mut().for_each(|d| *d -= shift);
    } else {
        for d in dst.iter_mut() {
            *d = super::fast_math::exp(*d - max);
        }
        let scale = 1.0 / lane_sum(dst, |v| v);
        dst.iter_mut().for_each(|d| *d *= scale);
    }
}
}

/// The largest value of `src` (−∞ for none) in 16 partial maxima, so it vectorizes.
#[inline(always)]
fn lane_max(src: &[f32]) -> f32 {
    let mut partial = [f32::NEG_INFINITY; 16];
    let mut chunks = src.chunks_exact(16);
    for c in &mut chunks {
        for (p, &v) in partial.iter_mut().zip(c) {
            *p = p.max(v);
        }
    }
    partial.iter().chain(chunks.remainder()).copied().fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotune_graph::ElemType;

    fn op<'a>(data: &'a [f32], shape: &'a [usize]) -> Operand<'a> {
        Operand { data, shape }
    }

    #[test]
    fn a_fused_mask_is_the_same_as_adding_it_first() {
        // x [2, 3, 1, 5] + mask [2, 1, 1, 5] (per batch row, broadcast over the 3 heads).
        let shape = [2usize, 3, 1, 5];
        let x: Vec<f32> = (0..30).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let mask: Vec<f32> = (0..10).map(|i| if i % 4 == 3 { -10000.0 } else { 0.0 }).collect();
        let added: Vec<f32> = (0..30).map(|i| x[i] + mask[(i / 15) * 5 + i % 5]).collect();
        for log in [false, true] {
            let (mut fused, mut plain) = (vec![0.0; 30], vec![0.0; 30]);
            let mut out = OutBuf { data: &mut fused, shape: &shape, dtype: ElemType::F32 };
            let m = Some(op(&mask, &[2, 1, 1, 5]));
            softmax(3, log, false, op(&x, &shape), m, &mut out, &Par::serial());
            let mut out = OutBuf { data: &mut plain, shape: &shape, dtype: ElemType::F32 };
            softmax(3, log, false, op(&added, &shape), None, &mut out, &Par::serial());
            assert_eq!(fused, plain, "log: {log}");
        }
    }

    #[test]
    fn softmax_along_an_inner_axis_and_coerced() {
        // [2, 2]: along axis 0 (columns) vs. coerced from axis 0 (all four together).
        let x = [0.0, 1.0, 2.0, 3.0];
        let mut data = vec![0.0; 4];
        let mut out = OutBuf { data: &mut data, shape: &[2, 2], dtype: ElemType::F32 };
        softmax(0, false, false, op(&x, &[2, 2]), None, &mut out, &Par::serial());
        let e2 = (1.0 / (1.0 + 2f64.exp())) as f32;
        assert_eq!(data[0], e2);
        assert_eq!(data[1], e2);
        let mut out = OutBuf { data: &mut data, shape: &[2, 2], dtype: ElemType::F32 };
        softmax(0, true, true, op(&x, &[2, 2]), None, &mut out, &Par::serial());
        let lse = (0..4).map(|v| (v as f64).exp()).sum::<f64>().ln();
        for (v, &got) in data.iter().enumerate() {
            let want = v as f64 - lse;
            assert!(
                (f64::from(got) - want).abs() <= 1e-6 * want.abs(),
                "log-softmax[{v}] = {got}, want {want}"
            );
        }
    }

    #[test]
    fn lrn_window_is_clipped_at_the_channel_edges() {
        // 3 channels of one pixel, size 3: channel 0 sees channels 0..=1.
        let x = [1.0, 2.0, 3.0];
        let mut data = vec![0.0; 3];
        let mut out = OutBuf { data: &mut data, shape: &[1, 3, 1, 1], dtype: ElemType::F32 };
        lrn(3, 3.0, 1.0, 1.0, op(&x, &[1, 3, 1, 1]), &mut out, &Par::serial());
        let expected = [1.0f32 / 6.0, 2.0 / 15.0, 3.0 / 14.0];
        data.iter().zip(expected).for_each(|(a, b)| assert!((a - b).abs() <= 1e-6 * b, "{a} vs {b}"));
        // beta 0.75 takes the square-root path.
        let mut out = OutBuf { data: &mut data, shape: &[1, 3, 1, 1], dtype: ElemType::F32 };
        lrn(3, 3.0, 0.75, 1.0, op(&x, &[1, 3, 1, 1]), &mut out, &Par::serial());
        let expected = [1.0f64 / 6f64.powf(0.75), 2.0 / 15f64.powf(0.75), 3.0 / 14f64.powf(0.75)];
        data.iter()
            .zip(expected)
            .for_each(|(&a, b)| assert!((f64::from(a) - b).abs() <= 1e-6 * b, "{a} vs {b}"));
    }

    #[test]
    fn batch_and_instance_norm() {
        let x = [1.0, 3.0, 10.0, 20.0];
        let (g, b, m, v) = ([2.0, 1.0], [0.5, 0.0], [2.0, 0.0], [4.0, 1.0]);
        let mut data = vec![0.0; 4];
        let mut out = OutBuf { data: &mut data, shape: &[1, 2, 2], dtype: ElemType::F32 };
        let inputs = [op(&x, &[1, 2, 2]), op(&g, &[2]), op(&b, &[2]), op(&m, &[2]), op(&v, &[2])];
        assert!(batch_norm(0.0, &inputs, &mut out, &Par::serial()).is_ok());
        assert_eq!(data, vec![-0.5, 1.5, 10.0, 20.0]);
        let mut out = OutBuf { data: &mut data, shape: &[1, 2, 2], dtype: ElemType::F32 };
        let inputs = [op(&x, &[1, 2, 2]), op(&[1.0, 2.0], &[2]), op(&[0.0, 1.0], &[2])];
        assert!(instance_norm(0.0, &inputs, &mut out).is_ok());
        assert_eq!(data, vec![-1.0, 1.0, -1.0, 3.0]);
    }
}
