//! Shape arithmetic shared by inference and folding: broadcasting, axes, strides, and index
//! walks over an output shape.

/// Numpy (multidirectional) broadcasting of two shapes; `None` if they do not broadcast.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// A possibly negative ONNX axis for a tensor of `rank` dimensions.
pub fn axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// Row-major strides in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Strides of `input` read as if broadcast to `out` (0 along broadcast dimensions).
pub fn broadcast_strides(input: &[usize], out: &[usize]) -> Vec<usize> {
    let s = strides(input);
    let offset = out.len() - input.len();
    (0..out.len()).map(|i| if i < offset || input[i - offset] == 1 { 0 } else { s[i - offset] }).collect()
}

/// Every multi-index of `shape` in row-major order, mapped through `f`.
pub fn walk<F: FnMut(&[usize]) -> usize>(shape: &[usize], mut f: F) -> Vec<usize> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..total {
        out.push(f(&idx));
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

/// Flat indices into `input` for each element of `out` under broadcasting.
pub fn broadcast_indices(input: &[usize], out: &[usize]) -> Vec<usize> {
    let s = broadcast_strides(input, out);
    walk(out, |idx| idx.iter().zip(&s).map(|(i, s)| i * s).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast(&[2, 3, 4], &[4]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast(&[2, 3], &[4]), None);
        assert_eq!(broadcast_indices(&[3, 1], &[3, 2]), vec![0, 0, 1, 1, 2, 2]);
        assert_eq!(broadcast_indices(&[2], &[2, 2]), vec![0, 1, 0, 1]);
    }

    #[test]
    fn axes_and_strides() {
        assert_eq!(axis(-1, 4), Some(3));
        assert_eq!(axis(4, 4), None);
        assert_eq!(axis(-5, 4), None);
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(walk(&[2, 2], |i| i[0] * 10 + i[1]), vec![0, 1, 10, 11]);
    }
}
