//! Data movement: Concat, Split, Transpose, Slice, Pad, Gather, Tile, Expand. All but Concat,
//! Gather and Pad are one strided gather (`strided::gather`).

use super::strided::{broadcast_strides, gather as strided_gather, strides};
use super::{Operand, OutBuf, Par};
use autotune_graph::PadMode;

pub fn concat(axis: usize, inputs: &[Operand], out: &mut OutBuf) {
    let outer: usize = out.shape[..axis].iter().product();
    let inner: usize = out.shape[axis + 1..].iter().product();
    let mut at = 0;
    for o in 0..outer {
        for x in inputs {
            let block = x.shape[axis] * inner;
            out.data[at..at + block].copy_from_slice(&x.data[o * block..(o + 1) * block]);
            at += block;
        }
    }
}

/// Zeroes each matrix (last two dimensions) below (`upper`) or above the `k`-th diagonal.
pub fn trilu(upper: bool, k: i64, x: Operand, out: &mut OutBuf) {
    let r = x.shape.len();
    let (rows, cols) = (x.shape[r - 2], x.shape[r - 1]);
    for (e, (d, &v)) in out.data.iter_mut().zip(x.data).enumerate() {
        let (i, j) = (((e / cols.max(1)) % rows.max(1)) as i64, (e % cols.max(1)) as i64);
        let keep = if upper { j - i >= k } else { j - i <= k };
        *d = if keep { v } else { 0.0 };
    }
}

pub fn split(axis: usize, x: Operand, outputs: &mut [OutBuf], par: &Par) {
    let s = strides(x.shape);
    let mut offset = 0isize;
    for out in outputs.iter_mut() {
        strided_gather(x.data, offset * s[axis], out.shape, &s, out.data, par);
        offset += out.shape[axis] as isize;
    }
}

pub fn transpose(perm: &[usize], x: Operand, out: &mut OutBuf, par: &Par) {
    let s = strides(x.shape);
    let permuted: Vec<isize> = perm.iter().map(|&p| s[p]).collect();
    strided_gather(x.data, 0, out.shape, &permuted, out.data, par);
}

pub fn slice(starts: &[usize], steps: &[i64], x: Operand, out: &mut OutBuf, par: &Par) {
    let s = strides(x.shape);
    let base: isize = starts.iter().zip(&s).map(|(&a, &st)| a as isize * st).sum();
    let stepped: Vec<isize> = steps.iter().zip(&s).map(|(&k, &st)| k as isize * st).collect();
    strided_gather(x.data, base, out.shape, &stepped, out.data, par);
}

pub fn expand(x: Operand, out: &mut OutBuf, par: &Par) {
    strided_gather(x.data, 0, out.shape, &broadcast_strides(x.shape, out.shape), out.data, par);
}

/// Output dimension `d` of size `r·n` read as `[r, n]` with strides `[0, stride_d]`.
pub fn tile(repeats: &[usize], x: Operand, out: &mut OutBuf, par: &Par) {
    let s = strides(x.shape);
    let mut shape = Vec::with_capacity(2 * repeats.len());
    let mut st = Vec::with_capacity(2 * repeats.len());
    for d in 0..repeats.len() {
        shape.extend([repeats[d], x.shape[d]]);
        st.extend([0, s[d]]);
    }
    strided_gather(x.data, 0, &shape, &st, out.data, par);
}

/// For each output index along a dimension, the input index it reads (`-1`: the pad value).
fn pad_map(n_in: usize, n_out: usize, before: i64, mode: PadMode) -> Vec<isize> {
    let n = n_in as i64;
    (0..n_out as i64)
        .map(|o| {
            let i = o - before;
            let j = if (0..n).contains(&i) {
                i
            } else {
                match mode {
                    PadMode::Constant { .. } => -1,
                    PadMode::Edge => i.clamp(0, n - 1),
                    PadMode::Wrap => i.rem_euclid(n),
                    PadMode::Reflect if n == 1 => 0,
                    PadMode::Reflect => {
                        let period = 2 * (n - 1);
                        let k = i.rem_euclid(period);
                        if k < n {
                            k
                        } else {
                            period - k
                        }
                    }
                }
            };
            j as isize
        })
        .collect()
}

pub fn pad(pads: &[[i64; 2]], mode: PadMode, x: Operand, out: &mut OutBuf, par: &Par) {
    let value = match mode {
        PadMode::Constant { value } => value,
        _ => 0.0,
    };
    let rank = x.shape.len();
    if rank == 0 || x.data.is_empty() {
        out.data.fill(value);
        return;
    }
    let maps: Vec<Vec<isize>> =
        (0..rank).map(|d| pad_map(x.shape[d], out.shape[d], pads[d][0], mode)).collect();
    let s = strides(x.shape);
    let outer = &out.shape[..rank - 1];
    let last = &maps[rank - 1];
    par.rows(out.data, out.shape[rank - 1], |row, dst| {
        // Walk the outer index of this row through the per-dimension maps.
        let mut r = row;
        let mut off = 0isize;
        let mut inside = true;
        for d in (0..outer.len()).rev() {
            let j = maps[d][r % outer[d]];
            r /= outer[d];
            inside &= j >= 0;
            off += j * s[d];
        }
        for (d, &j) in dst.iter_mut().zip(last) {
            *d = if inside && j >= 0 { x.data[(off + j) as usize] } else { value };
        }
    });
}

pub fn gather(axis: usize, data: Operand, indices: Operand, out: &mut OutBuf) -> Result<(), String> {
    let dim = data.shape[axis] as i64;
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis + 1..].iter().product();
    let mut index = Vec::with_capacity(indices.data.len());
    for &v in indices.data {
        let i = v as i64;
        if !(-dim..dim).contains(&i) {
            return Err(format!("index {i} is out of range for axis {axis} of size {dim}"));
        }
        index.push((if i < 0 { i + dim } else { i }) as usize);
    }
    let mut at = 0;
    for o in 0..outer {
        for &j in &index {
            let from = (o * dim as usize + j) * inner;
            out.data[at..at + inner].copy_from_slice(&data.data[from..from + inner]);
            at += inner;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotune_graph::ElemType;

    fn op<'a>(data: &'a [f32], shape: &'a [usize]) -> Operand<'a> {
        Operand { data, shape }
    }

    fn out<'a>(data: &'a mut [f32], shape: &'a [usize]) -> OutBuf<'a> {
        OutBuf { data, shape, dtype: ElemType::F32 }
    }

    #[test]
    fn pad_modes_match_numpy() {
        let x = [1.0, 2.0, 3.0];
        let mut y = vec![0.0; 7];
        let cases = [
            (PadMode::Constant { value: 9.0 }, [9.0, 9.0, 1.0, 2.0, 3.0, 9.0, 9.0]),
            (PadMode::Edge, [1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]),
            (PadMode::Reflect, [3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]),
            (PadMode::Wrap, [2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0]),
        ];
        for (mode, expected) in cases {
            pad(&[[2, 2]], mode, op(&x, &[3]), &mut out(&mut y, &[7]), &Par::serial());
            assert_eq!(y, expected, "{mode:?}");
        }
        // Negative pads crop; a padded outer dimension reads the pad value.
        let x2 = [1.0, 2.0, 3.0, 4.0];
        let mut y2 = vec![0.0; 3];
        let pads = [[1, 0], [0, -1]];
        pad(
            &pads,
            PadMode::Constant { value: 0.0 },
            op(&x2, &[2, 2]),
            &mut out(&mut y2, &[3, 1]),
            &Par::serial(),
        );
        assert_eq!(y2, vec![0.0, 1.0, 3.0]);
    }

    #[test]
    fn concat_split_tile_gather() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0];
        let mut y = vec![0.0; 6];
        concat(1, &[op(&a, &[2, 2]), op(&b, &[2, 1])], &mut out(&mut y, &[2, 3]));
        assert_eq!(y, vec![1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
        let (mut p, mut q) = (vec![0.0; 2], vec![0.0; 4]);
        let mut outs = [out(&mut p, &[2, 1]), out(&mut q, &[2, 2])];
        split(1, op(&y, &[2, 3]), &mut outs, &Par::serial());
        assert_eq!((p, q), (vec![1.0, 3.0], vec![2.0, 5.0, 4.0, 6.0]));
        let mut t = vec![0.0; 8];
        tile(&[2, 2], op(&b, &[2, 1]), &mut out(&mut t, &[4, 2]), &Par::serial());
        assert_eq!(t, vec![5.0, 5.0, 6.0, 6.0, 5.0, 5.0, 6.0, 6.0]);
        let mut g = vec![0.0; 4];
        assert!(gather(0, op(&a, &[2, 2]), op(&[1.0, -2.0], &[2]), &mut out(&mut g, &[2, 2])).is_ok());
        assert_eq!(g, vec![3.0, 4.0, 1.0, 2.0]);
        assert!(gather(0, op(&a, &[2, 2]), op(&[2.0], &[1]), &mut out(&mut g[..2], &[1, 2])).is_err());
    }
}
