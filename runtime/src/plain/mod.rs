//! Plain (untuned) operators: everything a model runs besides its tuned kernels. Simple,
//! correct loops over flat f32 buffers; the large ones split their output rows across the plan's
//! threads. Values of integer tensors are held as f32 too (exact up to 2^24), which is all the
//! supported models need at run time: integer arithmetic is folded at load time.

mod elementwise;
mod fast_math;
mod movement;
mod nn;
mod reduce;
mod simd;
pub(crate) mod strided;

pub(crate) use simd::{per_vector_level, VectorLevel};

use autotune_graph::{ElemType, PlainOp};

/// An input of a plain op: its values and shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub shape: &'a [usize],
}

/// An output of a plain op, to be written completely.
#[derive(Debug)]
pub(crate) struct OutBuf<'a> {
    pub data: &'a mut [f32],
    pub shape: &'a [usize],
    pub dtype: ElemType,
}

/// Where plain ops run their rows: inline, or split across a thread pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Par<'a> {
    runtime: Option<&'a autotune_codegen::HostRuntime>,
    /// What the hot loops are compiled for ([`Par::vectorized`]).
    level: VectorLevel,
}

/// Below this many elements an op runs on one thread (splitting costs more than it saves).
const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

impl<'a> Par<'a> {
    /// Rows split across the kernels' threads (none when the runtime has one thread).
    pub fn new(runtime: &'a autotune_codegen::HostRuntime, level: VectorLevel) -> Par<'a> {
        Par { runtime: (runtime.threads() > 1).then_some(runtime), level }
    }

    #[cfg(test)]
    pub fn serial() -> Par<'static> {
        Par { runtime: None, level: VectorLevel::Baseline }
    }

    #[cfg(test)]
    pub fn serial_at(level: VectorLevel) -> Par<'static> {
        Par { runtime: None, level }
    }

    /// The vector level the plan's hot loops are compiled for.
    pub fn level(&self) -> VectorLevel {
        self.level
    }

    /// Runs `body` compiled for the plan's vector level (see [`VectorLevel::run`]).
    #[inline(always)]
    pub fn vectorized<R>(&self, body: impl FnOnce() -> R) -> R {
        self.level.run(body)
    }

    /// Calls `f(row, out_row)` for every `row_len`-element row of `out` (row_len 0 is treated as
    /// 1), on several threads when `out` is large.
    pub fn rows<F: Fn(usize, &mut [f32]) + Sync>(&self, out: &mut [f32], row_len: usize, f: F) {
        let row_len = row_len.max(1);
        match self.runtime {
            Some(runtime) if out.len() >= PARALLEL_MIN_ELEMENTS => {
                let rows_per_chunk = (PARALLEL_MIN_ELEMENTS / 4 / row_len).max(1);
                // Each chunk behind its own (never contended) lock: a safe way to hand disjoint
                // `&mut` chunks to whichever thread takes the iteration.
                let chunks: Vec<std::sync::Mutex<&mut [f32]>> =
                    out.chunks_mut(rows_per_chunk * row_len).map(std::sync::Mutex::new).collect();
                runtime.parallel_for(chunks.len(), &|c| {
                    let mut chunk = chunks[c].lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    for (r, row) in chunk.chunks_mut(row_len).enumerate() {
                        f(c * rows_per_chunk + r, row);
                    }
                });
            }
            _ => {
                for (r, row) in out.chunks_mut(row_len).enumerate() {
                    f(r, row);
                }
            }
        }
    }
}

/// Runs `op`. The graph's shape inference guarantees the shapes fit; what can still fail on
/// values (an out-of-range Gather index) is the error text.
pub(crate) fn run(op: &PlainOp, inputs: &[Operand], outputs: &mut [OutBuf], par: &Par) -> Result<(), String> {
    let [out, ..] = outputs else { return Err("no output".into()) };
    let first = inputs.first().copied().ok_or("no input")?;
    match op {
        PlainOp::Reshape => {
            out.data.copy_from_slice(first.data);
            Ok(())
        }
        PlainOp::Unary(u) => {
            elementwise::unary(*u, first.data, out.data, par);
            Ok(())
        }
        PlainOp::Binary(b) => {
            let second = *inputs.get(1).ok_or("needs two inputs")?;
            elementwise::binary(*b, first, second, out, par);
            Ok(())
        }
        PlainOp::Trilu { upper } => {
            let k = inputs.get(1).and_then(|k| k.data.first()).map_or(0, |&v| v as i64);
            movement::trilu(*upper, k, first, out);
            Ok(())
        }
        PlainOp::Where => {
            let [_, x, y] = inputs else { return Err("needs three inputs".into()) };
            elementwise::select(first, *x, *y, out, par);
            Ok(())
        }
        PlainOp::Variadic(v) => {
            elementwise::variadic(*v, inputs, out, par);
            Ok(())
        }
        PlainOp::Cast { to } => {
            elementwise::cast(*to, first.data, out.data);
            Ok(())
        }
        PlainOp::BatchNorm { epsilon } => nn::batch_norm(*epsilon, inputs, out, par),
        PlainOp::InstanceNorm { epsilon } => nn::instance_norm(*epsilon, inputs, out),
        PlainOp::LayerNorm { axis, epsilon } => nn::layer_norm(*axis, *epsilon, inputs, outputs, par),
        PlainOp::Lrn { size, alpha, beta, bias } => {
            nn::lrn(*size, *alpha, *beta, *bias, first, out, par);
            Ok(())
        }
        PlainOp::Softmax { axis, log, coerce_2d } => {
            nn::softmax(*axis, *log, *coerce_2d, first, inputs.get(1).copied(), out, par);
            Ok(())
        }
        PlainOp::Concat { axis } => {
            movement::concat(*axis, inputs, out);
            Ok(())
        }
        PlainOp::Split { axis, .. } => {
            movement::split(*axis, first, outputs, par);
            Ok(())
        }
        PlainOp::Transpose { perm } => {
            movement::transpose(perm, first, out, par);
            Ok(())
        }
        PlainOp::Slice { starts, steps } => {
            movement::slice(starts, steps, first, out, par);
            Ok(())
        }
        PlainOp::Pad { pads, mode } => {
            movement::pad(pads, *mode, first, out, par);
            Ok(())
        }
        PlainOp::Gather { axis } => {
            let indices = *inputs.get(1).ok_or("needs data and indices")?;
            movement::gather(*axis, first, indices, out)
        }
        PlainOp::Reduce { kind, axes, .. } => {
            reduce::reduce(*kind, axes, first, out);
            Ok(())
        }
        PlainOp::Tile { repeats } => {
            movement::tile(repeats, first, out, par);
            Ok(())
        }
        PlainOp::Expand => {
            movement::expand(first, out, par);
            Ok(())
        }
    }
}
