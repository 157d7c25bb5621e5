//! ReduceSum / Mean / Max / Min / Prod over sorted axes, accumulated in f64.

use super::strided::{row_offset, strides};
use super::{Operand, OutBuf};
use autotune_graph::ReduceKind;

pub fn reduce(kind: ReduceKind, axes: &[usize], x: Operand, out: &mut OutBuf) {
    let rank = x.shape.len();
    // The output laid out as the input with reduced dimensions of size 1 (keepdims or not, the
    // data is the same); a reduced dimension advances no output element.
    let kept: Vec<usize> =
        x.shape.iter().enumerate().map(|(d, &n)| if axes.contains(&d) { 1 } else { n }).collect();
    let mut out_strides = strides(&kept);
    for &a in axes {
        out_strides[a] = 0;
    }
    let init = match kind {
        ReduceKind::Sum | ReduceKind::Mean => 0.0,
        ReduceKind::Prod => 1.0,
        ReduceKind::Max => f64::NEG_INFINITY,
        ReduceKind::Min => f64::INFINITY,
    };
    let mut acc = vec![init; out.data.len()];
    if rank == 0 {
        acc[0] = x.data.first().map_or(init, |&v| f64::from(v));
    } else {
        let inner = x.shape[rank - 1];
        let inner_stride = out_strides[rank - 1];
        let outer = &x.shape[..rank - 1];
        for (row, src) in x.data.chunks(inner.max(1)).enumerate() {
            let base = row_offset(row, outer, &out_strides[..rank - 1]);
            for (j, &v) in src.iter().enumerate() {
                let a = &mut acc[(base + j as isize * inner_stride) as usize];
                let v = f64::from(v);
                *a = match kind {
                    ReduceKind::Sum | ReduceKind::Mean => *a + v,
                    ReduceKind::Prod => *a * v,
                    ReduceKind::Max => a.max(v),
                    ReduceKind::Min => a.min(v),
                };
            }
        }
    }
    let count: usize = axes.iter().map(|&a| x.shape.get(a).copied().unwrap_or(1)).product();
    for (d, a) in out.data.iter_mut().zip(acc) {
        *d = if kind == ReduceKind::Mean { (a / count.max(1) as f64) as f32 } else { a as f32 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plain::{Operand, OutBuf};
    use autotune_graph::ElemType;

    #[test]
    fn reduces_inner_outer_and_all_axes() {
        let x: Vec<f32> = (1..=6).map(|v| v as f32).collect();
        let xs = Operand { data: &x, shape: &[2, 3] };
        let mut y = vec![0.0; 3];
        reduce(ReduceKind::Sum, &[0], xs, &mut OutBuf { data: &mut y, shape: &[3], dtype: ElemType::F32 });
        assert_eq!(y, vec![5.0, 7.0, 9.0]);
        let mut y = vec![0.0; 2];
        reduce(
            ReduceKind::Mean,
            &[1],
            xs,
            &mut OutBuf { data: &mut y, shape: &[2, 1], dtype: ElemType::F32 },
        );
        assert_eq!(y, vec![2.0, 5.0]);
        let mut y = vec![0.0; 1];
        reduce(ReduceKind::Max, &[0, 1], xs, &mut OutBuf { data: &mut y, shape: &[], dtype: ElemType::F32 });
        assert_eq!(y, vec![6.0]);
        reduce(ReduceKind::Prod, &[0, 1], xs, &mut OutBuf { data: &mut y, shape: &[], dtype: ElemType::F32 });
        assert_eq!(y, vec![720.0]);
    }
}
