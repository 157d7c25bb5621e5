//! Sketches whose decisions are independent of each other, each drawn from its own domain
//! (pooling, depthwise conv): decoding, sampling, mutation and size in one place.

use crate::space::ScheduleError;
use autotune_ir::Trace;
use rand::{Rng, RngCore};

pub(crate) struct FlatSketch<F: Fn(&str) -> Vec<i64>> {
    pub sketch: &'static str,
    pub version: &'static str,
    pub names: &'static [&'static str],
    /// The values decision `name` may take.
    pub domain: F,
}

impl<F: Fn(&str) -> Vec<i64>> FlatSketch<F> {
    /// The trace's values in `names` order, each checked against its domain.
    pub fn decode(&self, trace: &Trace) -> Result<Vec<i64>, ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidTrace {
            trace: trace.display(),
            space: self.version.to_string(),
            reason,
        };
        if trace.sketch != self.sketch {
            return Err(invalid(format!("sketch is `{}`", trace.sketch)));
        }
        self.names
            .iter()
            .map(|&name| {
                let v = trace.get(name).ok_or_else(|| invalid(format!("decision `{name}` missing")))?;
                if (self.domain)(name).contains(&v) {
                    Ok(v)
                } else {
                    Err(invalid(format!("{name}={v} is not a valid choice")))
                }
            })
            .collect()
    }

    pub fn trace(&self, values: &[i64]) -> Trace {
        Trace::new(self.sketch, self.names.iter().copied().zip(values.iter().copied()).collect())
    }

    pub fn sample(&self, rng: &mut dyn RngCore) -> Trace {
        let values: Vec<i64> = self
            .names
            .iter()
            .map(|&name| {
                let d = (self.domain)(name);
                d[rng.gen_range(0..d.len())]
            })
            .collect();
        self.trace(&values)
    }

    /// One decision changed (where it has another value); an invalid trace gets a fresh sample.
    pub fn mutate(&self, trace: &Trace, rng: &mut dyn RngCore) -> Trace {
        let Ok(mut values) = self.decode(trace) else { return self.sample(rng) };
        let which = rng.gen_range(0..self.names.len());
        let others: Vec<i64> =
            (self.domain)(self.names[which]).into_iter().filter(|v| *v != values[which]).collect();
        if !others.is_empty() {
            values[which] = others[rng.gen_range(0..others.len())];
        }
        self.trace(&values)
    }

    pub fn size(&self) -> u64 {
        self.names.iter().map(|&n| (self.domain)(n).len() as u64).product()
    }
}
