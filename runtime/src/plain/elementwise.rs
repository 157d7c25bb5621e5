//! Element-wise ops: unary functions, binary ops and n-ary Sum/Max/Min/Mean with numpy
//! broadcasting, and casts. Simple arithmetic is computed in f32 (as onnxruntime does); exp,
//! tanh, erf and the functions built on them with the vectorizable f32 forms of [`fast_math`],
//! the rarer transcendental functions through the f64 reference semantics of `autotune_graph`.

use super::fast_math;
use super::strided::{broadcast_strides, zip};
use super::{Operand, OutBuf, Par};
use autotune_graph::{BinaryOp, ElemType, UnaryOp, VariadicOp};

/// Elements per parallel chunk of a flat element-wise loop.
const FLAT_ROW: usize = 4096;

pub fn unary(op: UnaryOp, x: &[f32], out: &mut [f32], par: &Par) {
    fn map<F: Fn(f32) -> f32 + Sync>(x: &[f32], out: &mut [f32], par: &Par, f: F) {
        par.rows(out, FLAT_ROW, |row, dst| {
            let src = &x[row * FLAT_ROW..row * FLAT_ROW + dst.len()];
            par.vectorized(|| {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = f(v);
                }
            })
        });
    }
    match op {
        UnaryOp::Relu => map(x, out, par, |v| v.max(0.0)),
        UnaryOp::Neg => map(x, out, par, |v| -v),
        UnaryOp::Abs => map(x, out, par, f32::abs),
        UnaryOp::Sqrt => map(x, out, par, f32::sqrt),
        UnaryOp::Reciprocal => map(x, out, par, |v| 1.0 / v),
        UnaryOp::Floor => map(x, out, par, f32::floor),
        UnaryOp::Ceil => map(x, out, par, f32::ceil),
        UnaryOp::LeakyRelu { alpha } => map(x, out, par, |v| if v >= 0.0 { v } else { alpha * v }),
        UnaryOp::Clip { min, max } => map(x, out, par, |v| v.max(min).min(max)),
        UnaryOp::Exp => map(x, out, par, fast_math::exp),
        UnaryOp::Tanh => map(x, out, par, fast_math::tanh),
        UnaryOp::Erf => map(x, out, par, fast_math::erf),
        UnaryOp::Sigmoid => map(x, out, par, fast_math::sigmoid),
        UnaryOp::Gelu { tanh: false } => map(x, out, par, fast_math::gelu_erf),
        UnaryOp::Gelu { tanh: true } => map(x, out, par, fast_math::gelu_tanh),
        other => map(x, out, par, |v| other.apply(f64::from(v)) as f32),
    }
}

pub fn binary(op: BinaryOp, a: Operand, b: Operand, out: &mut OutBuf, par: &Par) {
    let shape = out.shape;
    let sa = broadcast_strides(a.shape, shape);
    let sb = broadcast_strides(b.shape, shape);
    let (a, b) = ((a.data, sa.as_slice()), (b.data, sb.as_slice()));
    // One monomorphic loop per common op (so it vectorizes); the rest through the reference.
    match op {
        BinaryOp::Add => zip(a, b, shape, out.data, par, |x, y| x + y),
        BinaryOp::Sub => zip(a, b, shape, out.data, par, |x, y| x - y),
        BinaryOp::Mul => zip(a, b, shape, out.data, par, |x, y| x * y),
        BinaryOp::Div => zip(a, b, shape, out.data, par, |x, y| x / y),
        BinaryOp::Max => zip(a, b, shape, out.data, par, f32::max),
        BinaryOp::Min => zip(a, b, shape, out.data, par, f32::min),
        BinaryOp::PRelu => zip(a, b, shape, out.data, par, |x, y| if x >= 0.0 { x } else { x * y }),
        BinaryOp::Pow => match small_integer_exponent(b.0, b.1) {
            // x² and x³ (variance, Gelu's cubic) as products, exactly what powf rounds to
            // within an ulp, without a libm call per element.
            Some(2) => zip(a, b, shape, out.data, par, |x, _| x * x),
            Some(3) => zip(a, b, shape, out.data, par, |x, _| x * x * x),
            Some(1) => zip(a, b, shape, out.data, par, |x, _| x),
            _ => zip(a, b, shape, out.data, par, |x, y| op.apply(f64::from(x), f64::from(y)) as f32),
        },
        BinaryOp::Equal => zip(a, b, shape, out.data, par, |x, y| f32::from(u8::from(x == y))),
        BinaryOp::Less => zip(a, b, shape, out.data, par, |x, y| f32::from(u8::from(x < y))),
        BinaryOp::LessOrEqual => zip(a, b, shape, out.data, par, |x, y| f32::from(u8::from(x <= y))),
        BinaryOp::Greater => zip(a, b, shape, out.data, par, |x, y| f32::from(u8::from(x > y))),
        BinaryOp::GreaterOrEqual => zip(a, b, shape, out.data, par, |x, y| f32::from(u8::from(x >= y))),
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor | BinaryOp::Mod | BinaryOp::FMod => {
            zip(a, b, shape, out.data, par, |x, y| op.apply(f64::from(x), f64::from(y)) as f32)
        }
    }
    normalize_ints(out);
}

/// The exponent of a Pow when every element of it is the same small integer (1 to 3).
fn small_integer_exponent(data: &[f32], strides: &[isize]) -> Option<u8> {
    let first = *data.first()?;
    let all_same = strides.iter().all(|&s| s == 0) || data.iter().all(|&v| v == first);
    (all_same && [1.0, 2.0, 3.0].contains(&first)).then_some(first as u8)
}

pub fn variadic(op: VariadicOp, inputs: &[Operand], out: &mut OutBuf, par: &Par) {
    let shape = out.shape;
    let Some((first, rest)) = inputs.split_first() else { return };
    super::strided::gather(first.data, 0, shape, &broadcast_strides(first.shape, shape), out.data, par);
    let contiguous = super::strided::strides(shape);
    for b in rest {
        let acc = out.data.to_vec();
        let sb = broadcast_strides(b.shape, shape);
        match op {
            VariadicOp::Sum | VariadicOp::Mean => {
                zip((&acc, &contiguous), (b.data, &sb), shape, out.data, par, |x, y| x + y)
            }
            VariadicOp::Max => zip((&acc, &contiguous), (b.data, &sb), shape, out.data, par, f32::max),
            VariadicOp::Min => zip((&acc, &contiguous), (b.data, &sb), shape, out.data, par, f32::min),
        }
    }
    if op == VariadicOp::Mean {
        let n = inputs.len() as f32;
        out.data.iter_mut().for_each(|v| *v /= n);
    }
    normalize_ints(out);
}

/// Integer tensors (held as f32) keep integer values: truncated toward zero and wrapped to
/// their type, as ONNX integer arithmetic does.
fn normalize_ints(out: &mut OutBuf) {
    if !out.dtype.is_float() {
        let to = out.dtype;
        out.data.iter_mut().for_each(|v| *v = int_value(to, *v));
    }
}

fn int_value(to: ElemType, v: f32) -> f32 {
    if to == ElemType::Bool {
        f32::from(u8::from(v != 0.0))
    } else {
        to.wrap_int(v.trunc() as i64) as f32
    }
}

pub fn cast(to: ElemType, x: &[f32], out: &mut [f32]) {
    if to.is_float() {
        out.copy_from_slice(x);
    } else {
        for (d, &v) in out.iter_mut().zip(x) {
            *d = int_value(to, v);
        }
    }
}

/// ONNX Where: `x` where `c` is nonzero, else `y`, the three broadcast to the output.
pub fn select(c: Operand, x: Operand, y: Operand, out: &mut OutBuf, par: &Par) {
    let shape = out.shape;
    let broadcast = |o: Operand| -> Vec<f32> {
        let mut full = vec![0.0; out.data.len()];
        super::strided::gather(o.data, 0, shape, &broadcast_strides(o.shape, shape), &mut full, par);
        full
    };
    let (c, x, y) = (broadcast(c), broadcast(x), broadcast(y));
    for (k, d) in out.data.iter_mut().enumerate() {
        *d = if c[k] != 0.0 { x[k] } else { y[k] };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operand<'a>(data: &'a [f32], shape: &'a [usize]) -> Operand<'a> {
        Operand { data, shape }
    }

    #[test]
    fn binary_broadcasts_like_numpy() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [10.0, 20.0];
        let mut data = vec![0.0; 6];
        let shape = [2, 3];
        let mut out = OutBuf { data: &mut data, shape: &shape, dtype: ElemType::F32 };
        binary(BinaryOp::Sub, operand(&a, &[2, 3]), operand(&b, &[2, 1]), &mut out, &Par::serial());
        assert_eq!(data, vec![-9.0, -8.0, -7.0, -16.0, -15.0, -14.0]);
    }

    #[test]
    fn pow_and_prelu_follow_the_reference() {
        let a = [-2.0, 3.0];
        let b = [2.0, 0.5];
        let mut data = vec![0.0; 2];
        let mut out = OutBuf { data: &mut data, shape: &[2], dtype: ElemType::F32 };
        binary(BinaryOp::Pow, operand(&a, &[2]), operand(&b, &[2]), &mut out, &Par::serial());
        assert_eq!(data, vec![4.0, 3.0f32.sqrt()]);
        let mut out = OutBuf { data: &mut data, shape: &[2], dtype: ElemType::F32 };
        binary(BinaryOp::PRelu, operand(&a, &[2]), operand(&b[..1], &[1]), &mut out, &Par::serial());
        assert_eq!(data, vec![-4.0, 3.0]);
    }

    #[test]
    fn variadic_mean_and_casts() {
        let (a, b, c) = ([1.0, 2.0], [3.0], [5.0, 7.0]);
        let mut data = vec![0.0; 2];
        let mut out = OutBuf { data: &mut data, shape: &[2], dtype: ElemType::F32 };
        let inputs = [operand(&a, &[2]), operand(&b, &[1]), operand(&c, &[2])];
        variadic(VariadicOp::Mean, &inputs, &mut out, &Par::serial());
        assert_eq!(data, vec![3.0, 4.0]);
        let mut ints = vec![0.0; 3];
        cast(ElemType::I8, &[1.7, -1.7, 200.0], &mut ints);
        assert_eq!(ints, vec![1.0, -1.0, -56.0]);
        cast(ElemType::Bool, &[0.0, -0.5, 2.0], &mut ints);
        assert_eq!(ints, vec![0.0, 1.0, 1.0]);
    }

    #[test]
    fn unary_uses_reference_semantics() {
        let x = [-1.0f32, 0.0, 2.0];
        let mut out = vec![0.0; 3];
        unary(UnaryOp::Sigmoid, &x, &mut out, &Par::serial());
        for (&got, &v) in out.iter().zip(&x) {
            let want = 1.0 / (1.0 + (-f64::from(v)).exp());
            assert!((f64::from(got) - want).abs() <= 3e-7 * want, "sigmoid({v}) = {got}, want {want}");
        }
        unary(UnaryOp::Clip { min: -0.5, max: 1.0 }, &x, &mut out, &Par::serial());
        assert_eq!(out, vec![-0.5, 0.0, 1.0]);
    }
}
