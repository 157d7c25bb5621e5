//! Evaluation of operators on constant tensors (constant folding). Only what models use to build
//! weights and shapes: element-wise arithmetic, casts and data movement. An op without an
//! evaluator here stays in the graph, with constant inputs, and runs at run time.

use crate::plain::{BinaryOp, UnaryOp, VariadicOp};
use crate::shape::{broadcast, broadcast_indices, strides, walk};
use crate::tensor::{ElemType, Tensor, TensorData};

/// `a ∘ b` with numpy broadcasting; the result has `a`'s element type.
pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let shape = broadcast(&a.shape, &b.shape)
        .ok_or_else(|| format!("shapes {:?} and {:?} do not broadcast", a.shape, b.shape))?;
    let ia = broadcast_indices(&a.shape, &shape);
    let ib = broadcast_indices(&b.shape, &shape);
    let dtype = if op.is_predicate() { ElemType::Bool } else { a.dtype };
    let data = match (&a.data, a.dtype.is_float() || b.dtype.is_float()) {
        (TensorData::I64(x), false) => {
            let y = b.to_i64();
            TensorData::I64(
                ia.iter().zip(&ib).map(|(&i, &j)| dtype.wrap_int(op.apply_i64(x[i], y[j]))).collect(),
            )
        }
        _ => {
            let (x, y) = (a.to_f64(), b.to_f64());
            return Ok(Tensor::from_f64(
                dtype,
                shape,
                ia.iter().zip(&ib).map(|(&i, &j)| op.apply(x[i], y[j])),
            ));
        }
    };
    Ok(Tensor { dtype, shape, data })
}

/// ONNX Where: `x` where `c` is nonzero, else `y`, broadcast to `shape`.
pub fn select(c: &Tensor, x: &Tensor, y: &Tensor, shape: &[usize]) -> Tensor {
    let (ic, ix, iy) = (
        broadcast_indices(&c.shape, shape),
        broadcast_indices(&x.shape, shape),
        broadcast_indices(&y.shape, shape),
    );
    let (cv, xv, yv) = (c.to_f64(), x.to_f64(), y.to_f64());
    let values = (0..ic.len()).map(|k| if cv[ic[k]] != 0.0 { xv[ix[k]] } else { yv[iy[k]] });
    Tensor::from_f64(x.dtype, shape.to_vec(), values)
}

pub fn unary(op: UnaryOp, a: &Tensor) -> Tensor {
    Tensor::from_f64(a.dtype, a.shape.clone(), a.to_f64().into_iter().map(|v| op.apply(v)))
}

pub fn variadic(op: VariadicOp, inputs: &[&Tensor]) -> Result<Tensor, String> {
    let (first, rest) = inputs.split_first().ok_or("no inputs")?;
    let bin = match op {
        VariadicOp::Sum | VariadicOp::Mean => BinaryOp::Add,
        VariadicOp::Max => BinaryOp::Max,
        VariadicOp::Min => BinaryOp::Min,
    };
    let mut acc = (*first).clone();
    for t in rest {
        acc = binary(bin, &acc, t)?;
    }
    if op == VariadicOp::Mean {
        let n = inputs.len() as f64;
        acc = Tensor::from_f64(acc.dtype, acc.shape.clone(), acc.to_f64().into_iter().map(|v| v / n));
    }
    Ok(acc)
}

pub fn cast(a: &Tensor, to: ElemType) -> Tensor {
    match (&a.data, to) {
        (TensorData::I64(v), t) if !t.is_float() => Tensor {
            dtype: to,
            shape: a.shape.clone(),
            data: TensorData::I64(v.iter().map(|&x| to.wrap_int(x)).collect()),
        },
        _ => Tensor::from_f64(to, a.shape.clone(), a.to_f64()),
    }
}

pub fn transpose(a: &Tensor, perm: &[usize]) -> Tensor {
    let shape: Vec<usize> = perm.iter().map(|&p| a.shape[p]).collect();
    let s = strides(&a.shape);
    let idx = walk(&shape, |i| i.iter().zip(perm).map(|(x, &p)| x * s[p]).sum());
    a.gather_flat(shape, idx.into_iter())
}

pub fn concat(inputs: &[&Tensor], axis: usize) -> Tensor {
    let mut shape = inputs[0].shape.clone();
    shape[axis] = inputs.iter().map(|t| t.shape[axis]).sum();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let dtype = inputs[0].dtype;
    let mut f64s = Vec::new();
    let mut i64s = Vec::new();
    let mut f32s = Vec::new();
    for o in 0..outer {
        for t in inputs {
            let block = t.shape[axis] * inner;
            let range = o * block..(o + 1) * block;
            match &t.data {
                TensorData::F32(v) => f32s.extend_from_slice(&v[range]),
                TensorData::F64(v) => f64s.extend_from_slice(&v[range]),
                TensorData::I64(v) => i64s.extend_from_slice(&v[range]),
            }
        }
    }
    let data = match inputs[0].data {
        TensorData::F32(_) => TensorData::F32(f32s),
        TensorData::F64(_) => TensorData::F64(f64s),
        TensorData::I64(_) => TensorData::I64(i64s),
    };
    Tensor { dtype, shape, data }
}

/// Output element `i` reads `starts[d] + i·steps[d]` along each dimension.
pub fn slice(a: &Tensor, starts: &[usize], steps: &[i64], out_shape: &[usize]) -> Tensor {
    let s = strides(&a.shape);
    let idx = walk(out_shape, |i| {
        i.iter().enumerate().map(|(d, &x)| ((starts[d] as i64 + x as i64 * steps[d]) as usize) * s[d]).sum()
    });
    a.gather_flat(out_shape.to_vec(), idx.into_iter())
}

/// ONNX Gather along `axis`; `indices` already checked in range (negative allowed).
pub fn gather(data: &Tensor, indices: &Tensor, axis: usize) -> Tensor {
    let dim = data.shape[axis];
    let ind: Vec<usize> =
        indices.to_i64().iter().map(|&i| (if i < 0 { i + dim as i64 } else { i }) as usize).collect();
    let mut shape = data.shape[..axis].to_vec();
    shape.extend_from_slice(&indices.shape);
    shape.extend_from_slice(&data.shape[axis + 1..]);
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis + 1..].iter().product();
    let idx = (0..outer).flat_map(|o| {
        let ind = &ind;
        ind.iter().flat_map(move |&j| (0..inner).map(move |i| (o * dim + j) * inner + i))
    });
    data.gather_flat(shape, idx)
}

pub fn expand(a: &Tensor, shape: &[usize]) -> Tensor {
    a.gather_flat(shape.to_vec(), broadcast_indices(&a.shape, shape).into_iter())
}

pub fn tile(a: &Tensor, repeats: &[usize]) -> Tensor {
    let shape: Vec<usize> = a.shape.iter().zip(repeats).map(|(d, r)| d * r).collect();
    let s = strides(&a.shape);
    let idx = walk(&shape, |i| i.iter().enumerate().map(|(d, &x)| (x % a.shape[d]) * s[d]).sum());
    a.gather_flat(shape, idx.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::f32(shape.to_vec(), v.to_vec())
    }

    #[test]
    fn binary_broadcasts_and_keeps_int_types() {
        let a = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b = t(&[2], &[10.0, 20.0]);
        assert_eq!(binary(BinaryOp::Add, &a, &b).map(|r| r.to_f32()), Ok(vec![11.0, 22.0, 13.0, 24.0]));
        let i = Tensor::i64(vec![2], vec![7, -7]);
        let d = binary(BinaryOp::Div, &i, &Tensor::i64(vec![], vec![2]));
        assert_eq!(d.map(|r| (r.dtype, r.to_i64())), Ok((ElemType::I64, vec![3, -3])));
        assert!(binary(BinaryOp::Add, &a, &t(&[3], &[0.0; 3])).is_err());
    }

    #[test]
    fn data_movement() {
        let a = t(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(transpose(&a, &[1, 0]).to_f32(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(transpose(&a, &[1, 0]).shape, vec![3, 2]);
        let c = concat(&[&a, &t(&[2, 1], &[9.0, 8.0])], 1);
        assert_eq!((c.shape.clone(), c.to_f32()), (vec![2, 4], vec![0.0, 1.0, 2.0, 9.0, 3.0, 4.0, 5.0, 8.0]));
        assert_eq!(slice(&a, &[1, 2], &[1, -1], &[1, 2]).to_f32(), vec![5.0, 4.0]);
        let g = gather(&a, &Tensor::i64(vec![2], vec![2, -3]), 1);
        assert_eq!((g.shape.clone(), g.to_f32()), (vec![2, 2], vec![2.0, 0.0, 5.0, 3.0]));
        let g0 = gather(&Tensor::i64(vec![4], vec![1, 3, 224, 224]), &Tensor::i64(vec![], vec![0]), 0);
        assert_eq!((g0.shape.clone(), g0.to_i64()), (vec![], vec![1]));
        let g2 = gather(&a, &Tensor::i64(vec![1, 2], vec![1, 0]), 0);
        assert_eq!((g2.shape.clone(), g2.to_f32()), (vec![1, 2, 3], vec![3.0, 4.0, 5.0, 0.0, 1.0, 2.0]));
        assert_eq!(tile(&t(&[2], &[1.0, 2.0]), &[2]).to_f32(), vec![1.0, 2.0, 1.0, 2.0]);
        assert_eq!(expand(&t(&[2, 1], &[1.0, 2.0]), &[2, 2]).to_f32(), vec![1.0, 1.0, 2.0, 2.0]);
        assert_eq!(cast(&t(&[2], &[1.7, -1.7]), ElemType::I64).to_i64(), vec![1, -1]);
    }
}
