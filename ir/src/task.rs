//! Tasks: what is tuned (operator × shapes × dtype × layout), and their stable keys.

use crate::ops::{BatchMatmulSpec, Conv2dSpec, EpilogueOp, Pool2dSpec, PoolKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Element type of a tensor. Only fp32 is tuned today; the enum is the place where fp16/bf16/int8 go.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
}

impl DType {
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
        }
    }
}

/// `C[m×n] = A[m×k] · B[k×n]`, all row-major and contiguous.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// The operator of a task with its shapes. New operator families are new variants.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Matmul(MatmulShape),
    Conv2d(Conv2dSpec),
    BatchMatmul(BatchMatmulSpec),
    Pool2d(Pool2dSpec),
}

/// One tuning task: an operator instance with its dtype. Two tasks with equal fields are the same
/// workload, whatever model they came from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Task {
    #[serde(flatten)]
    pub op: Op,
    pub dtype: DType,
    /// Fused element-wise steps after the reduction, in order. Part of the identity: a fused
    /// conv+bias+relu is a different task (and key) than a bare conv. Omitted from the canonical
    /// JSON when empty, so keys of unfused tasks never change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epilogue: Vec<EpilogueOp>,
    /// How a conv's or pooling's activations are laid out in memory. Part of the identity (it changes the
    /// kernel); omitted from the canonical JSON when plain NCHW, so existing keys never change.
    #[serde(default, skip_serializing_if = "ChannelBlocks::is_plain")]
    pub layout: ChannelBlocks,
    /// Zero borders around a conv's channel-blocked input or output planes. Part of the identity
    /// (the buffers' sizes change, and the kernel); omitted from the canonical JSON when there
    /// is none, so existing keys never change.
    #[serde(default, skip_serializing_if = "Halo::is_none")]
    pub halo: Halo,
}

/// Zero borders a channel-blocked conv's activation buffers carry around each plane, `[top,
/// left, bottom, right]` positions: written once by the producer, so the consumer of a padded
/// conv reads its input in place instead of making a zero-padded copy per call.
///
/// `input` is either none or covers the conv's `pad` on every side (wider where another reader
/// of the buffer needs more): the kernel computes the unpadded conv
/// ([`Conv2dSpec::over_padded_input`]) over the window of the buffer that is its padded input.
/// `output` is the border the producer leaves around its result, every element of it written
/// zero by every call (the buffer may have held another tensor before). Only channel-blocked
/// convs carry one; an output border excludes a residual (which would need the same border).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Halo {
    pub input: [usize; 4],
    pub output: [usize; 4],
}

/// A bordered input buffer's plane (`rows × cols` positions) and where in it the conv's padded
/// input — the input of [`Conv2dSpec::over_padded_input`] — starts: its padding is the part of
/// the border nearest the plane, a wider border's outer rows and columns are never read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputWindow {
    pub rows: usize,
    pub cols: usize,
    pub top: usize,
    pub left: usize,
}

impl Halo {
    pub const NONE: Halo = Halo { input: [0; 4], output: [0; 4] };

    pub fn is_none(&self) -> bool {
        *self == Halo::NONE
    }

    /// Where `conv`'s padded input lies in a buffer with this input border: the one geometry the
    /// kernel and the reference read by. `None` without an input border.
    pub fn input_window(&self, conv: &Conv2dSpec) -> Option<InputWindow> {
        let b = self.input;
        (b != [0; 4]).then(|| InputWindow {
            rows: conv.h + b[0] + b[2],
            cols: conv.w + b[1] + b[3],
            top: b[0] - conv.pad[0],
            left: b[1] - conv.pad[1],
        })
    }

    /// An `[n, c, h, w]` plane's shape with `border` rows and columns around it.
    pub fn bordered(shape: [usize; 4], border: [usize; 4]) -> [usize; 4] {
        let [n, c, h, w] = shape;
        [n, c, h + border[0] + border[2], w + border[1] + border[3]]
    }
}

/// The channel blocking of a conv's or pooling's input `X` and of its output `Y` (and residual,
/// which has the output's shape and layout; a pooling's two are the same). A block of 1 is NCHW; a block `b > 1` is NCHW{b}c, the shape
/// `[n, c / b, h, w, b]`: the `b` channels of one position are contiguous, so a vector of `b`
/// lanes loads or stores them at once, and consecutive convolutions pass activations on without
/// a transpose. Weights and bias keep their ONNX layout (they are packed once, before any run).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelBlocks {
    pub input: usize,
    pub output: usize,
}

impl Default for ChannelBlocks {
    fn default() -> Self {
        ChannelBlocks::PLAIN
    }
}

impl ChannelBlocks {
    /// NCHW in and out.
    pub const PLAIN: ChannelBlocks = ChannelBlocks { input: 1, output: 1 };

    pub fn is_plain(&self) -> bool {
        *self == ChannelBlocks::PLAIN
    }

    /// The channel block a model's activations take on CPUs: the widest ISA level's vector
    /// width (16 fp32 lanes, AVX-512), a whole number of vectors at every level. One block for
    /// every level keeps a model's tasks — and a log's trials — the same whichever level tunes
    /// or runs them, so a log tuned for AVX2 fleet machines lends its winners to an AVX-512 one.
    pub fn cpu_block() -> usize {
        crate::target::IsaLevel::ALL.iter().map(|level| level.vector_lanes()).max().unwrap_or(1) as usize
    }

    /// The shape of an NCHW tensor `[n, c, h, w]` blocked by `block` (unchanged for 1).
    pub fn blocked_shape(shape: [usize; 4], block: usize) -> Vec<usize> {
        let [n, c, h, w] = shape;
        if block <= 1 {
            vec![n, c, h, w]
        } else {
            vec![n, c / block, h, w, block]
        }
    }
}

/// The shape and dtype of one kernel argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Stable identity of a task: the SHA-256 of its canonical description (`task_key`), hex. Stable across runs, machines
/// and builds (unlike a `Hash`-derived value), so it can key the tuning log that ships with a model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskKey(pub String);

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Task {
    pub fn matmul(m: usize, n: usize, k: usize) -> Task {
        Task::new(Op::Matmul(MatmulShape { m, n, k }), Vec::new())
    }

    pub fn new(op: Op, epilogue: Vec<EpilogueOp>) -> Task {
        Task { op, dtype: DType::F32, epilogue, layout: ChannelBlocks::PLAIN, halo: Halo::NONE }
    }

    /// The same task with zero borders `halo` around its activations.
    pub fn with_halo(mut self, halo: Halo) -> Task {
        self.halo = halo;
        self
    }

    /// The same work on buffers without zero borders: the task a log tuned before borders
    /// existed holds, whose schedules this one replays.
    pub fn without_halo(&self) -> Task {
        self.clone().with_halo(Halo::NONE)
    }

    /// The same task with its activations in `layout`.
    pub fn with_layout(mut self, layout: ChannelBlocks) -> Task {
        self.layout = layout;
        self
    }

    /// Checks that the operator's numbers describe something computable and that the epilogue
    /// fits the operator (pooling takes none).
    pub fn validate(&self) -> Result<(), String> {
        match &self.op {
            Op::Matmul(s) if s.m == 0 || s.n == 0 || s.k == 0 => Err("matmul sizes must be positive".into()),
            Op::Matmul(_) => Ok(()),
            Op::Conv2d(c) => c.validate(),
            Op::BatchMatmul(b) if [b.batch, b.m, b.n, b.k].contains(&0) => {
                Err("batch matmul sizes must be positive".into())
            }
            Op::BatchMatmul(_) => Ok(()),
            Op::Pool2d(_) if !self.epilogue.is_empty() => Err("pooling takes no fused epilogue".into()),
            Op::Pool2d(p) => p.validate(),
        }?;
        self.validate_layout()?;
        self.validate_halo()?;
        let n_bias = self.epilogue.iter().filter(|e| **e == EpilogueOp::Bias).count();
        let n_add = self.epilogue.iter().filter(|e| **e == EpilogueOp::Add).count();
        if n_bias > 1 || n_add > 1 {
            return Err("an epilogue holds at most one bias and one residual add".into());
        }
        Ok(())
    }

    fn validate_layout(&self) -> Result<(), String> {
        if self.layout.is_plain() {
            return Ok(());
        }
        let ChannelBlocks { input, output } = self.layout;
        if input == 0 || output == 0 {
            return Err("a channel block must be at least 1".into());
        }
        match &self.op {
            Op::Conv2d(c) if c.groups != 1 => Err("a channel-blocked conv must have one group".into()),
            Op::Conv2d(c) if c.c % input != 0 || c.o % output != 0 => Err(format!(
                "channel blocks {input} (input) and {output} (output) must divide {} input and {} output channels",
                c.c, c.o
            )),
            Op::Conv2d(_) => Ok(()),
            Op::Pool2d(_) if input != output => Err("a pooling's input and output share one layout".into()),
            Op::Pool2d(p) if p.c % input != 0 => {
                Err(format!("channel block {input} must divide the pooling's {} channels", p.c))
            }
            Op::Pool2d(_) => Ok(()),
            _ => Err("only a conv2d or a pooling takes a channel-blocked layout".into()),
        }
    }

    fn validate_halo(&self) -> Result<(), String> {
        if self.halo.is_none() {
            return Ok(());
        }
        let Op::Conv2d(c) = &self.op else { return Err("only a conv takes zero borders (a halo)".into()) };
        let Halo { input, output } = self.halo;
        let covers_pad = input.iter().zip(&c.pad).all(|(b, p)| b >= p);
        if input != [0; 4] && (!covers_pad || self.layout.input <= 1) {
            return Err(format!(
                "an input halo must cover the conv's padding {:?} around a channel-blocked input",
                c.pad
            ));
        }
        if output != [0; 4] && (self.layout.output <= 1 || self.epilogue.contains(&EpilogueOp::Add)) {
            return Err("an output halo needs a channel-blocked output and no residual".into());
        }
        Ok(())
    }

    /// The task as serde JSON, for storing it (the log's `workload.task_json`) and reading it
    /// back. Not what keys hash: see [`Task::key`].
    pub fn canonical_json(&self) -> String {
        // Serializing plain structs and enums of integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// SHA-256 (hex) of the task's canonical description ([`crate::task_key`]), which is written
    /// out field by field and documented, so no refactor of this type changes a key.
    pub fn key(&self) -> TaskKey {
        TaskKey(stable_hash_hex(&crate::task_key::canonical_description(self)))
    }

    pub fn op_name(&self) -> &'static str {
        match self.op {
            Op::Matmul(_) => "matmul",
            Op::Conv2d(_) => "conv2d",
            Op::BatchMatmul(_) => "batch_matmul",
            Op::Pool2d(p) if p.kind == PoolKind::Max => "max_pool",
            Op::Pool2d(_) => "avg_pool",
        }
    }

    /// Human-readable one-liner, e.g. `matmul 1024x1024x1024 f32` or
    /// `conv2d n1 c64 56x56 o64 k3x3 s1x1 p1,1,1,1 d1x1 g1 +bias+relu f32`.
    pub fn description(&self) -> String {
        let core = match &self.op {
            Op::Matmul(s) => format!("matmul {}x{}x{}", s.m, s.n, s.k),
            Op::Conv2d(c) => format!(
                "conv2d n{} c{} {}x{} o{} k{}x{} s{}x{} p{},{},{},{} d{}x{} g{}",
                c.n,
                c.c,
                c.h,
                c.w,
                c.o,
                c.kh,
                c.kw,
                c.stride[0],
                c.stride[1],
                c.pad[0],
                c.pad[1],
                c.pad[2],
                c.pad[3],
                c.dilation[0],
                c.dilation[1],
                c.groups
            ),
            Op::BatchMatmul(b) => format!(
                "batch_matmul b{} {}x{}x{}{}{}{}{}{}",
                b.batch,
                b.m,
                b.n,
                b.k,
                if b.trans_a { " ta" } else { "" },
                if b.trans_b { " tb" } else { "" },
                if b.a_broadcast { " a_shared" } else { "" },
                if b.b_broadcast { " b_shared" } else { "" },
                if b.b_constant { " b_const" } else { "" }
            ),
            Op::Pool2d(p) => format!(
                "{} n{} c{} {}x{} k{}x{} s{}x{} p{},{},{},{} d{}x{}{}{}",
                self.op_name(),
                p.n,
                p.c,
                p.h,
                p.w,
                p.kh,
                p.kw,
                p.stride[0],
                p.stride[1],
                p.pad[0],
                p.pad[1],
                p.pad[2],
                p.pad[3],
                p.dilation[0],
                p.dilation[1],
                if p.ceil_mode { " ceil" } else { "" },
                if p.count_include_pad && p.kind == PoolKind::Avg { " count_pad" } else { "" }
            ),
        };
        let blocks =
            |side: &str, block: usize| if block > 1 { format!(" {side}{block}c") } else { String::new() };
        let border = |side: &str, b: [usize; 4]| {
            if b == [0; 4] {
                String::new()
            } else {
                format!(" {side}_halo{},{},{},{}", b[0], b[1], b[2], b[3])
            }
        };
        let layout = format!(
            "{}{}{}{}",
            blocks("in", self.layout.input),
            blocks("out", self.layout.output),
            border("in", self.halo.input),
            border("out", self.halo.output)
        );
        let epilogue: String = self.epilogue.iter().map(|e| format!("+{}", e.name())).collect();
        let sep = if epilogue.is_empty() { "" } else { " " };
        format!("{core}{layout}{sep}{epilogue} {}", self.dtype.as_str())
    }

    /// Floating-point operations of one execution (a multiply-add counts as two; pooling counts
    /// one per window element).
    pub fn flops(&self) -> f64 {
        let outputs = self.without_halo().outputs()[0].len() as f64;
        match &self.op {
            Op::Matmul(s) => 2.0 * s.m as f64 * s.n as f64 * s.k as f64,
            Op::Conv2d(c) => 2.0 * outputs * (c.c_per_group() * c.kh * c.kw) as f64,
            Op::BatchMatmul(b) => 2.0 * (b.batch * b.m * b.n * b.k) as f64,
            Op::Pool2d(p) => outputs * (p.kh * p.kw) as f64,
        }
    }

    /// Bytes that must cross the memory interface at least once (inputs read, outputs written).
    pub fn min_bytes(&self) -> f64 {
        let elems: usize = self.inputs().iter().chain(self.outputs().iter()).map(TensorSpec::len).sum();
        (elems * self.dtype.size_bytes()) as f64
    }

    fn spec(&self, name: &'static str, shape: Vec<usize>) -> TensorSpec {
        TensorSpec { name, shape, dtype: self.dtype }
    }

    /// Kernel inputs in argument order: the operator's operands, then one input per epilogue
    /// step that needs data (`bias`, then `residual`, in epilogue order).
    pub fn inputs(&self) -> Vec<TensorSpec> {
        let mut inputs = match &self.op {
            Op::Matmul(s) => vec![self.spec("A", vec![s.m, s.k]), self.spec("B", vec![s.k, s.n])],
            Op::Conv2d(c) => vec![
                self.spec(
                    "X",
                    ChannelBlocks::blocked_shape(
                        Halo::bordered([c.n, c.c, c.h, c.w], self.halo.input),
                        self.layout.input,
                    ),
                ),
                self.spec("W", vec![c.o, c.c_per_group(), c.kh, c.kw]),
            ],
            Op::BatchMatmul(b) => {
                let a_batch = if b.a_broadcast { 1 } else { b.batch };
                let b_batch = if b.b_broadcast { 1 } else { b.batch };
                let a_shape = if b.trans_a { vec![a_batch, b.k, b.m] } else { vec![a_batch, b.m, b.k] };
                let b_shape = if b.trans_b { vec![b_batch, b.n, b.k] } else { vec![b_batch, b.k, b.n] };
                vec![self.spec("A", a_shape), self.spec("B", b_shape)]
            }
            Op::Pool2d(p) => {
                vec![self.spec("X", ChannelBlocks::blocked_shape([p.n, p.c, p.h, p.w], self.layout.input))]
            }
        };
        let out_shape = self.outputs()[0].shape.clone();
        for step in &self.epilogue {
            match step {
                EpilogueOp::Bias => inputs.push(self.spec("bias", vec![self.bias_len()])),
                EpilogueOp::Add => inputs.push(self.spec("residual", out_shape.clone())),
                _ => {}
            }
        }
        inputs
    }

    /// Length of the bias vector: output channels for conv, output columns for matmuls.
    pub fn bias_len(&self) -> usize {
        match &self.op {
            Op::Matmul(s) => s.n,
            Op::Conv2d(c) => c.o,
            Op::BatchMatmul(b) => b.n,
            Op::Pool2d(p) => p.c,
        }
    }

    /// How far `other`'s sizes are from this task's (Σ |ln ratio| over the sizes that differ) when
    /// the two differ only in sizes a dynamic dimension changes — batch, rows and columns of a
    /// matmul, a convolution's or pooling's batch and spatial extent — and in nothing that makes a
    /// different kernel (op, flags, channels, window, dtype, epilogue); `None` otherwise. The
    /// runtime runs the nearest tuned shape's schedule for a shape nobody tuned.
    pub fn shape_distance(&self, other: &Task) -> Option<f64> {
        if self.dtype != other.dtype
            || self.epilogue != other.epilogue
            || self.layout != other.layout
            || self.halo != other.halo
        {
            return None;
        }
        let sizes: Vec<(usize, usize)> = match (&self.op, &other.op) {
            (Op::Matmul(a), Op::Matmul(b)) => vec![(a.m, b.m), (a.n, b.n), (a.k, b.k)],
            (Op::BatchMatmul(a), Op::BatchMatmul(b)) => {
                let flags = |s: &crate::BatchMatmulSpec| {
                    (s.trans_a, s.trans_b, s.a_broadcast, s.b_broadcast, s.b_constant)
                };
                if flags(a) != flags(b) {
                    return None;
                }
                vec![(a.batch, b.batch), (a.m, b.m), (a.n, b.n), (a.k, b.k)]
            }
            (Op::Conv2d(a), Op::Conv2d(b)) => {
                let fixed =
                    |s: &crate::Conv2dSpec| (s.c, s.o, s.kh, s.kw, s.stride, s.pad, s.dilation, s.groups);
                if fixed(a) != fixed(b) {
                    return None;
                }
                vec![(a.n, b.n), (a.h, b.h), (a.w, b.w)]
            }
            (Op::Pool2d(a), Op::Pool2d(b)) => {
                let fixed = |s: &crate::Pool2dSpec| {
                    (s.kind, s.c, s.kh, s.kw, s.stride, s.pad, s.dilation, s.ceil_mode, s.count_include_pad)
                };
                if fixed(a) != fixed(b) {
                    return None;
                }
                vec![(a.n, b.n), (a.h, b.h), (a.w, b.w)]
            }
            _ => return None,
        };
        Some(sizes.iter().map(|&(a, b)| (a.max(1) as f64 / b.max(1) as f64).ln().abs()).sum())
    }

    /// Indices of the inputs that are constants of the model (weights, biases): they may be
    /// packed into another layout once, before the kernel runs.
    pub fn constant_inputs(&self) -> Vec<usize> {
        let mut constant = match &self.op {
            Op::Conv2d(_) => vec![1],
            Op::BatchMatmul(b) if b.b_constant => vec![1],
            _ => vec![],
        };
        let names: Vec<&str> = self.inputs().iter().map(|s| s.name).collect();
        if let Some(i) = names.iter().position(|n| *n == "bias") {
            constant.push(i);
        }
        constant
    }

    /// Kernel outputs in argument order (they follow the inputs).
    pub fn outputs(&self) -> Vec<TensorSpec> {
        let shape = match &self.op {
            Op::Matmul(s) => vec![s.m, s.n],
            Op::Conv2d(c) => ChannelBlocks::blocked_shape(
                Halo::bordered([c.n, c.o, c.out_h(), c.out_w()], self.halo.output),
                self.layout.output,
            ),
            Op::BatchMatmul(b) => vec![b.batch, b.m, b.n],
            Op::Pool2d(p) => {
                ChannelBlocks::blocked_shape([p.n, p.c, p.out_h(), p.out_w()], self.layout.output)
            }
        };
        let name = if matches!(self.op, Op::Matmul(_)) { "C" } else { "Y" };
        vec![self.spec(name, shape)]
    }

    /// Length of the longest reduction that feeds one output element; scales the tolerance.
    pub fn reduction_len(&self) -> usize {
        match &self.op {
            Op::Matmul(s) => s.k,
            Op::Conv2d(c) => c.c_per_group() * c.kh * c.kw,
            Op::BatchMatmul(b) => b.k,
            Op::Pool2d(p) => p.kh * p.kw,
        }
    }
}

pub(crate) fn stable_hash_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_key_is_stable_and_distinguishes_shapes() {
        let a = Task::matmul(1024, 1024, 1024);
        // Pinned: a changed key orphans every shipped tuning log, so it must never change silently.
        assert_eq!(a.canonical_json(), r#"{"op":"matmul","m":1024,"n":1024,"k":1024,"dtype":"f32"}"#);
        assert_eq!(a.key(), Task::matmul(1024, 1024, 1024).key());
        assert_ne!(a.key(), Task::matmul(1024, 1024, 512).key());
        assert_eq!(a.key().0.len(), 64);
    }

    #[test]
    fn flops_and_bytes() {
        let t = Task::matmul(2, 3, 4);
        assert_eq!(t.flops(), 48.0);
        assert_eq!(t.min_bytes(), ((2 * 4 + 4 * 3 + 2 * 3) * 4) as f64);
    }
}
