//! Seeded inputs for running a model without data (`autotune run` with no `--input`).

use crate::ValueInfo;

/// One value per input: floats uniform in [-1, 1) from `ir`'s seeded stream (the same data for a
/// seed everywhere), integers and bools zero (a valid index or mask for any shape).
pub fn random_inputs(inputs: &[ValueInfo], seed: u64) -> Vec<Vec<f32>> {
    let mut stream = autotune_ir::reference::SeededUniform::new(seed);
    inputs
        .iter()
        .map(|info| {
            let len: usize = info.shape.iter().product();
            if !info.dtype.is_float() {
                return vec![0.0; len];
            }
            (0..len).map(|_| stream.next_f32()).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotune_graph::ElemType;

    #[test]
    fn seeded_uniform_floats_and_zero_integers() {
        let infos = [
            ValueInfo { name: "x".into(), shape: vec![2, 500], dtype: ElemType::F32 },
            ValueInfo { name: "i".into(), shape: vec![3], dtype: ElemType::I64 },
        ];
        let a = random_inputs(&infos, 7);
        assert_eq!(a, random_inputs(&infos, 7));
        assert_ne!(a, random_inputs(&infos, 8));
        assert!(a[0].iter().all(|v| (-1.0..1.0).contains(v)));
        assert!(a[0].iter().any(|&v| v < -0.5) && a[0].iter().any(|&v| v > 0.5));
        assert_eq!(a[1], vec![0.0; 3]);
    }
}
