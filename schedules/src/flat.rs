//! Sketches whose decisions are independent of each other, each drawn from its own domain
//! (pooling, depthwise conv): decoding, sampling, mutation and size in one place.

use crate::space::ScheduleError;
use autotune_ir::Trace;
use rand::{Rng, RngCore};

/// A decision of a flat sketch: a typed name, so a space's `domain` matches every one of them
/// (a misspelt or forgotten decision fails to compile).
pub(crate) trait FlatKnob: Copy + 'static {
    /// The decision's name in traces.
    fn name(self) -> &'static str;
}

pub(crate) struct FlatSketch<K: FlatKnob, F: Fn(K) -> Vec<i64>> {
    pub sketch: &'static str,
    pub version: &'static str,
    /// Trace order.
    pub knobs: &'static [K],
    /// The values decision `knob` may take; never empty (each space's tests check every one).
    pub domain: F,
}

impl<K: FlatKnob, F: Fn(K) -> Vec<i64>> FlatSketch<K, F> {
    /// The trace's values in `knobs` order, each checked against its domain.
    pub fn decode(&self, trace: &Trace) -> Result<Vec<i64>, ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidTrace {
            trace: trace.display(),
            space: self.version.to_string(),
            reason,
        };
        if trace.sketch != self.sketch {
            return Err(invalid(format!("sketch is `{}`", trace.sketch)));
        }
        self.knobs
            .iter()
            .map(|&knob| {
                let name = knob.name();
                let v = trace.get(name).ok_or_else(|| invalid(format!("decision `{name}` missing")))?;
                if (self.domain)(knob).contains(&v) {
                    Ok(v)
                } else {
                    Err(invalid(format!("{name}={v} is not a valid choice")))
                }
            })
            .collect()
    }

    pub fn trace(&self, values: &[i64]) -> Trace {
        Trace::new(self.sketch, self.knobs.iter().map(|k| k.name()).zip(values.iter().copied()).collect())
    }

    pub fn sample(&self, rng: &mut dyn RngCore) -> Trace {
        let values: Vec<i64> = self
            .knobs
            .iter()
            .map(|&knob| {
                let d = (self.domain)(knob);
                d.get(rng.gen_range(0..d.len().max(1))).copied().unwrap_or(0)
            })
            .collect();
        self.trace(&values)
    }

    /// One decision changed (where it has another value); an invalid trace gets a fresh sample.
    pub fn mutate(&self, trace: &Trace, rng: &mut dyn RngCore) -> Trace {
        let Ok(mut values) = self.decode(trace) else { return self.sample(rng) };
        let which = rng.gen_range(0..self.knobs.len());
        let others: Vec<i64> =
            (self.domain)(self.knobs[which]).into_iter().filter(|v| *v != values[which]).collect();
        if !others.is_empty() {
            values[which] = others[rng.gen_range(0..others.len())];
        }
        self.trace(&values)
    }

    pub fn size(&self) -> u64 {
        self.knobs.iter().map(|&k| (self.domain)(k).len() as u64).product()
    }

    /// Asserts, for the space this sketch belongs to, that no domain is empty and that `n`
    /// sampled points, their mutations and the default all decode and lower.
    #[cfg(test)]
    pub fn assert_consistent(&self, space: &dyn crate::SpaceGenerator, what: &str, n: usize) {
        use rand::SeedableRng;
        for &knob in self.knobs {
            assert!(!(self.domain)(knob).is_empty(), "{what}: `{}` has no valid value", knob.name());
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        for _ in 0..n {
            let t = space.sample(&mut rng);
            space.lower(&t).unwrap_or_else(|e| panic!("{what}: sampled {}: {e}", t.display()));
            space.lower(&space.mutate(&t, &mut rng)).unwrap_or_else(|e| panic!("{what}: mutated: {e}"));
        }
        space.lower(&space.default_trace()).unwrap_or_else(|e| panic!("{what}: default: {e}"));
    }
}
