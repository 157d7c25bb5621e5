//! Strided iteration, the one building block of the data-movement and broadcasting ops: an output
//! walked in row-major order, each operand read at `base + Σ index_d · stride_d` (a stride of 0
//! broadcasts, a negative one walks backwards). Dimensions are collapsed first wherever every
//! operand is contiguous across them, so a same-shape operation is one flat loop and a
//! per-channel one is a loop over channels of flat rows.

use super::Par;

/// Row-major strides of `shape`, in elements.
pub fn strides(shape: &[usize]) -> Vec<isize> {
    let mut s = vec![1isize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1] as isize;
    }
    s
}

/// Strides reading `input` as if broadcast (numpy rules, right-aligned) to `out`.
pub fn broadcast_strides(input: &[usize], out: &[usize]) -> Vec<isize> {
    let s = strides(input);
    let offset = out.len() - input.len();
    (0..out.len()).map(|d| if d < offset || input[d - offset] == 1 { 0 } else { s[d - offset] }).collect()
}

/// Drops size-1 dimensions and merges neighbours that every operand walks contiguously
/// (`stride[d] == stride[d+1] · shape[d+1]`). Returns a shape of rank ≥ 1.
pub fn collapse(shape: &[usize], operands: &[&[isize]]) -> (Vec<usize>, Vec<Vec<isize>>) {
    let mut out_shape: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<isize>> = vec![Vec::new(); operands.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let mergeable = out_shape.last().is_some_and(|_| {
            operands
                .iter()
                .zip(&out_strides)
                .all(|(s, acc)| acc.last().is_some_and(|&prev| prev == s[d] * shape[d] as isize))
        });
        if mergeable {
            if let Some(last) = out_shape.last_mut() {
                *last *= shape[d];
            }
            for (s, acc) in operands.iter().zip(&mut out_strides) {
                if let Some(prev) = acc.last_mut() {
                    *prev = s[d];
                }
            }
        } else {
            out_shape.push(shape[d]);
            for (s, acc) in operands.iter().zip(&mut out_strides) {
                acc.push(s[d]);
            }
        }
    }
    if out_shape.is_empty() {
        out_shape.push(1);
        for acc in &mut out_strides {
            acc.push(0);
        }
    }
    (out_shape, out_strides)
}

/// Offset of row `row` (a flat index over `outer`) under `strides`.
pub fn row_offset(mut row: usize, outer: &[usize], strides: &[isize]) -> isize {
    let mut off = 0isize;
    for d in (0..outer.len()).rev() {
        let n = outer[d];
        off += (row % n) as isize * strides[d];
        row /= n;
    }
    off
}

/// `out[i] = src[base + Σ i_d · strides_d]` over `shape` (row-major `out`).
pub fn gather(src: &[f32], base: isize, shape: &[usize], strides: &[isize], out: &mut [f32], par: &Par) {
    let (shape, s) = collapse(shape, &[strides]);
    let (outer, inner) = shape.split_at(shape.len() - 1);
    let (outer_s, inner_s) = s[0].split_at(s[0].len() - 1);
    let (n, step) = (inner[0], inner_s[0]);
    par.rows(out, n, |row, dst| {
        let off = base + row_offset(row, outer, outer_s);
        match step {
            1 => dst.copy_from_slice(&src[off as usize..off as usize + n]),
            0 => dst.fill(src[off as usize]),
            _ => {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = src[(off + j as isize * step) as usize];
                }
            }
        }
    });
}

/// `out[i] = f(a[Σ i_d · sa_d], b[Σ i_d · sb_d])` over `shape` (row-major `out`).
pub fn zip<F: Fn(f32, f32) -> f32 + Sync>(
    (a, sa): (&[f32], &[isize]),
    (b, sb): (&[f32], &[isize]),
    shape: &[usize],
    out: &mut [f32],
    par: &Par,
    f: F,
) {
    let (shape, s) = collapse(shape, &[sa, sb]);
    let r = shape.len() - 1;
    let (outer, n) = (&shape[..r], shape[r]);
    let (oa, ob) = (&s[0][..r], &s[1][..r]);
    let (ia, ib) = (s[0][r], s[1][r]);
    par.rows(out, n, |row, dst| {
        let pa = row_offset(row, outer, oa) as usize;
        let pb = row_offset(row, outer, ob) as usize;
        match (ia, ib) {
            (1, 1) => {
                for ((d, &x), &y) in dst.iter_mut().zip(&a[pa..pa + n]).zip(&b[pb..pb + n]) {
                    *d = f(x, y);
                }
            }
            (1, 0) => {
                let y = b[pb];
                for (d, &x) in dst.iter_mut().zip(&a[pa..pa + n]) {
                    *d = f(x, y);
                }
            }
            (0, 1) => {
                let x = a[pa];
                for (d, &y) in dst.iter_mut().zip(&b[pb..pb + n]) {
                    *d = f(x, y);
                }
            }
            _ => {
                for (j, d) in dst.iter_mut().enumerate() {
                    let x = a[(pa as isize + j as isize * ia) as usize];
                    let y = b[(pb as isize + j as isize * ib) as usize];
                    *d = f(x, y);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_merges_contiguous_dims_and_drops_ones() {
        let shape = [1, 4, 3, 2];
        let full = strides(&shape);
        let per_channel = broadcast_strides(&[4, 1, 1], &shape);
        let (s, st) = collapse(&shape, &[&full, &per_channel]);
        assert_eq!(s, vec![4, 6]);
        assert_eq!(st, vec![vec![6, 1], vec![1, 0]]);
        let (s, st) = collapse(&[1, 1], &[&[0, 0]]);
        assert_eq!((s, st), (vec![1], vec![vec![0]]));
    }

    #[test]
    fn gather_transposes_and_reverses() {
        let src: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let mut out = vec![0.0; 6];
        // [2, 3] transposed: out [3, 2] reads stride 1 then 3.
        gather(&src, 0, &[3, 2], &[1, 3], &mut out, &Par::serial());
        assert_eq!(out, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let mut rev = vec![0.0; 3];
        gather(&src, 5, &[3], &[-2], &mut rev, &Par::serial());
        assert_eq!(rev, vec![5.0, 3.0, 1.0]);
    }

    #[test]
    fn zip_broadcasts_both_ways() {
        let a = [1.0, 2.0, 3.0];
        let b = [10.0, 20.0];
        let shape = [2, 3];
        let mut out = vec![0.0; 6];
        let sa = broadcast_strides(&[3], &shape);
        let sb = broadcast_strides(&[2, 1], &shape);
        zip((&a, &sa), (&b, &sb), &shape, &mut out, &Par::serial(), |x, y| x + y);
        assert_eq!(out, vec![11.0, 12.0, 13.0, 21.0, 22.0, 23.0]);
    }
}
