//! Memory planning: every run-time value (model inputs, node outputs) lives in one buffer of a
//! pool, and a buffer is reused once the last reader of its value has run.
//!
//! Positions are steps of the plan: model inputs are written at position 0, node `i` runs at
//! position `i + 1`, and model outputs are read after the last node. A value defined at `p`
//! may take the buffer of a value whose last read is before `p` — not at `p`, because a node
//! reads its inputs while it writes its outputs. Among the free buffers the smallest one that is
//! large enough is taken (best fit); if none is, the largest free one grows; if none is free, a
//! new buffer is added. Sizes are static, so the whole pool is allocated once, at load time.

/// The life of one run-time value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    /// Elements.
    pub len: usize,
    /// Position where it is written.
    pub first: usize,
    /// Last position where it is read (≥ `first`).
    pub last: usize,
}

/// Which buffer each value lives in, and each buffer's size in elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    pub buffer_of: Vec<usize>,
    pub buffer_len: Vec<usize>,
}

/// Assigns buffers; with `reuse` false every value gets a buffer of its own.
pub(crate) fn assign(values: &[Lifetime], reuse: bool) -> Assignment {
    let mut buffer_of = vec![usize::MAX; values.len()];
    let mut buffer_len: Vec<usize> = Vec::new();
    if !reuse {
        for (v, life) in values.iter().enumerate() {
            buffer_of[v] = buffer_len.len();
            buffer_len.push(life.len);
        }
        return Assignment { buffer_of, buffer_len };
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by_key(|&v| (values[v].first, v));
    // Values holding a buffer, by the position after which it becomes free.
    let mut busy: Vec<(usize, usize)> = Vec::new(); // (last, buffer)
    let mut free: Vec<usize> = Vec::new();
    for v in order {
        let life = values[v];
        busy.retain(|&(last, buffer)| {
            if last < life.first {
                free.push(buffer);
                false
            } else {
                true
            }
        });
        let fits = free
            .iter()
            .enumerate()
            .filter(|(_, &b)| buffer_len[b] >= life.len)
            .min_by_key(|(_, &b)| buffer_len[b]);
        let chosen = match fits {
            Some((i, _)) => Some(free.swap_remove(i)),
            None => {
                let largest = free.iter().enumerate().max_by_key(|(_, &b)| buffer_len[b]).map(|(i, _)| i);
                largest.map(|i| free.swap_remove(i))
            }
        };
        let buffer = chosen.unwrap_or_else(|| {
            buffer_len.push(0);
            buffer_len.len() - 1
        });
        buffer_len[buffer] = buffer_len[buffer].max(life.len);
        buffer_of[v] = buffer;
        busy.push((life.last, buffer));
    }
    Assignment { buffer_of, buffer_len }
}

/// The most elements alive at once: a lower bound for any assignment.
pub(crate) fn peak_live(values: &[Lifetime]) -> usize {
    let end = values.iter().map(|l| l.last).max().unwrap_or(0);
    (0..=end)
        .map(|p| values.iter().filter(|l| l.first <= p && p <= l.last).map(|l| l.len).sum())
        .max()
        .unwrap_or(0)
}

/// How much memory a plan holds, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
    /// Buffers in the pool that holds inputs and intermediate values.
    pub n_buffers: usize,
    /// Bytes of that pool: the peak memory of run-time values (allocated once, at load).
    pub activation_bytes: usize,
    /// Bytes the run-time values would take with a buffer each (no reuse).
    pub activation_bytes_without_reuse: usize,
    /// The most bytes of run-time values alive at one time: a lower bound of `activation_bytes`.
    pub peak_live_bytes: usize,
    /// Bytes of constants the plan holds: weights in their packed layout, biases, and the
    /// constant inputs of plain ops.
    pub constant_bytes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(len: usize, first: usize, last: usize) -> Lifetime {
        Lifetime { len, first, last }
    }

    /// No two values whose lives overlap share a buffer, and every buffer holds its values.
    fn check(values: &[Lifetime], a: &Assignment) {
        for (i, x) in values.iter().enumerate() {
            assert!(a.buffer_len[a.buffer_of[i]] >= x.len);
            for (j, y) in values.iter().enumerate().skip(i + 1) {
                let overlap = x.first <= y.last && y.first <= x.last;
                assert!(!(overlap && a.buffer_of[i] == a.buffer_of[j]), "values {i} and {j} share a buffer");
            }
        }
    }

    #[test]
    fn a_chain_needs_two_buffers() {
        // input → n1 → n2 → n3 (output): each value is read by the next node only.
        let values = [life(100, 0, 1), life(50, 1, 2), life(80, 2, 3), life(10, 3, 4)];
        let a = assign(&values, true);
        check(&values, &a);
        assert_eq!(a.buffer_len.len(), 2);
        assert_eq!(a.buffer_len.iter().sum::<usize>(), 150);
        assert_eq!(peak_live(&values), 150);
        let own = assign(&values, false);
        check(&values, &own);
        assert_eq!(own.buffer_len.iter().sum::<usize>(), 240);
    }

    #[test]
    fn a_node_never_writes_into_a_buffer_it_reads() {
        // Value 0 is last read at position 2, where value 2 is written: they must not share.
        let values = [life(10, 0, 2), life(10, 1, 2), life(10, 2, 3)];
        let a = assign(&values, true);
        check(&values, &a);
        assert_eq!(a.buffer_len.len(), 3);
    }

    #[test]
    fn random_lifetimes_never_overlap_in_a_buffer() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let n = rng.gen_range(1..30);
            let values: Vec<Lifetime> = (0..n)
                .map(|_| {
                    let first = rng.gen_range(0..20);
                    life(rng.gen_range(1..1000), first, first + rng.gen_range(0..6))
                })
                .collect();
            let a = assign(&values, true);
            check(&values, &a);
            assert!(a.buffer_len.iter().sum::<usize>() >= peak_live(&values));
        }
    }
}
