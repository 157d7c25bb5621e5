//! Naive reference semantics of every operator, written for obviousness, sharing nothing with the
//! schedules. Accumulates in f64 so the reference is more accurate than any kernel it judges.

use crate::task::{Op, Task};
use ndarray::{Array2, ArrayView2};

/// `C = A · B` with an f64 accumulator, i-k-j order only so that big references finish quickly.
pub fn matmul(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array2<f32> {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "matmul reference: inner dimensions differ");
    let mut acc = Array2::<f64>::zeros((m, n));
    for i in 0..m {
        for p in 0..k {
            let a_ip = f64::from(a[(i, p)]);
            for j in 0..n {
                acc[(i, j)] += a_ip * f64::from(b[(p, j)]);
            }
        }
    }
    acc.mapv(|x| x as f32)
}

/// Runs the reference of `task` on flat row-major inputs (in [`Task::inputs`] order) and returns
/// the flat outputs (in [`Task::outputs`] order).
pub fn run(task: &Task, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    match &task.op {
        Op::Matmul(s) => {
            let a = ArrayView2::from_shape((s.m, s.k), &inputs[0]).expect("A has m*k elements");
            let b = ArrayView2::from_shape((s.k, s.n), &inputs[1]).expect("B has k*n elements");
            vec![matmul(a, b).into_raw_vec_and_offset().0]
        }
    }
}

/// Seeded inputs uniform in [-1, 1), one flat buffer per [`Task::inputs`] entry. SplitMix64: tiny,
/// portable and stable across crate versions, so a seed means the same data everywhere.
pub fn random_inputs(task: &Task, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    task.inputs()
        .iter()
        .map(|spec| {
            (0..spec.len())
                .map(|_| {
                    state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let mut z = state;
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    z ^= z >> 31;
                    // 24 random bits → [0,1) exactly representable in f32, then → [-1,1).
                    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn matmul_small_known_values() {
        let a = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let b = array![[1.0f32, 0.0, -1.0], [2.0, 1.0, 0.5]];
        let c = matmul(a.view(), b.view());
        assert_eq!(c, array![[5.0f32, 2.0, 0.0], [11.0, 4.0, -1.0], [17.0, 6.0, -2.0]]);
    }

    #[test]
    fn random_inputs_are_seeded_and_in_range() {
        let t = Task::matmul(3, 4, 5);
        let x = random_inputs(&t, 7);
        assert_eq!(x, random_inputs(&t, 7));
        assert_ne!(x, random_inputs(&t, 8));
        assert_eq!((x[0].len(), x[1].len()), (15, 20));
        assert!(x.iter().flatten().all(|v| (-1.0..1.0).contains(v)));
    }
}
