//! The canonical description of a task, which its [`TaskKey`](crate::TaskKey) hashes.
//!
//! Written out field by field here, not derived from the Rust types, so that renaming or
//! reordering a field of `Task` (or changing how it serializes) cannot change a key and orphan the
//! tuning logs users ship. The format is public and documented in `docs/tuning-log.md`
//! ("Task keys"); `golden_keys` below pins the keys of a set of tasks, so a change fails loudly.
//!
//! Format: one JSON object, no whitespace, keys in this fixed order:
//! `op`, then the operator's fields (below), then `dtype`, then `epilogue` only when non-empty
//! (a list of `{"kind": …}` objects with their constants), then `layout` only when not NCHW
//! (`{"input":b,"output":b}`, the channel blocks of the input and of the output), then `halo` only
//! when a buffer has zero borders (`{"input":[t,l,b,r],"output":[t,l,b,r]}`). Integers are decimal; booleans are
//! `true`/`false`; an f32 constant is the shortest decimal that reads back to the same f32.
//!
//! | op | fields |
//! |---|---|
//! | `matmul` | `m`, `n`, `k` |
//! | `conv2d` | `n`, `c`, `h`, `w`, `o`, `kh`, `kw`, `stride` [h, w], `pad` [top, left, bottom, right], `dilation` [h, w], `groups` |
//! | `batch_matmul` | `batch`, `m`, `n`, `k`, `trans_a`, `trans_b`, `a_broadcast`, `b_broadcast`, `b_constant` |
//! | `pool2d` | `kind` (`max`/`avg`), `n`, `c`, `h`, `w`, `kh`, `kw`, `stride`, `pad`, `dilation`, `ceil_mode`, `count_include_pad` |

use crate::ops::{EpilogueOp, PoolKind, Scalar};
use crate::task::{Op, Task};
use std::fmt::Write;

/// The canonical description of `task` (see the module doc).
pub fn canonical_description(task: &Task) -> String {
    let mut d = Description::default();
    match &task.op {
        Op::Matmul(s) => {
            d.text("op", "matmul");
            d.ints(&[("m", s.m), ("n", s.n), ("k", s.k)]);
        }
        Op::Conv2d(c) => {
            d.text("op", "conv2d");
            d.ints(&[("n", c.n), ("c", c.c), ("h", c.h), ("w", c.w), ("o", c.o), ("kh", c.kh), ("kw", c.kw)]);
            d.list("stride", &c.stride);
            d.list("pad", &c.pad);
            d.list("dilation", &c.dilation);
            d.int("groups", c.groups);
        }
        Op::BatchMatmul(b) => {
            d.text("op", "batch_matmul");
            d.ints(&[("batch", b.batch), ("m", b.m), ("n", b.n), ("k", b.k)]);
            d.flag("trans_a", b.trans_a);
            d.flag("trans_b", b.trans_b);
            d.flag("a_broadcast", b.a_broadcast);
            d.flag("b_broadcast", b.b_broadcast);
            d.flag("b_constant", b.b_constant);
        }
        Op::Pool2d(p) => {
            d.text("op", "pool2d");
            d.text(
                "kind",
                match p.kind {
                    PoolKind::Max => "max",
                    PoolKind::Avg => "avg",
                },
            );
            d.ints(&[("n", p.n), ("c", p.c), ("h", p.h), ("w", p.w), ("kh", p.kh), ("kw", p.kw)]);
            d.list("stride", &p.stride);
            d.list("pad", &p.pad);
            d.list("dilation", &p.dilation);
            d.flag("ceil_mode", p.ceil_mode);
            d.flag("count_include_pad", p.count_include_pad);
        }
    }
    d.text("dtype", task.dtype.as_str());
    if !task.epilogue.is_empty() {
        let steps: Vec<String> = task.epilogue.iter().map(|&step| epilogue_step(step)).collect();
        d.raw("epilogue", &format!("[{}]", steps.join(",")));
    }
    if !task.layout.is_plain() {
        d.raw("layout", &format!(r#"{{"input":{},"output":{}}}"#, task.layout.input, task.layout.output));
    }
    if !task.halo.is_none() {
        let list = |b: [usize; 4]| format!("[{},{},{},{}]", b[0], b[1], b[2], b[3]);
        d.raw(
            "halo",
            &format!(r#"{{"input":{},"output":{}}}"#, list(task.halo.input), list(task.halo.output)),
        );
    }
    d.finish()
}

fn epilogue_step(step: EpilogueOp) -> String {
    let mut d = Description::default();
    d.text("kind", step.name());
    match step {
        EpilogueOp::Scale { alpha } | EpilogueOp::LeakyRelu { alpha } => d.scalar("alpha", alpha),
        EpilogueOp::Clip { min, max } => {
            d.scalar("min", min);
            d.scalar("max", max);
        }
        EpilogueOp::Bias | EpilogueOp::Add | EpilogueOp::Relu | EpilogueOp::Sigmoid => {}
    }
    d.finish()
}

/// A JSON object written in the order its fields are added.
#[derive(Default)]
struct Description {
    fields: Vec<String>,
}

impl Description {
    fn raw(&mut self, name: &str, value: &str) {
        self.fields.push(format!("\"{name}\":{value}"));
    }
    fn text(&mut self, name: &str, value: &str) {
        // Only fixed identifiers are written: nothing to escape.
        self.raw(name, &format!("\"{value}\""));
    }
    fn int(&mut self, name: &str, value: usize) {
        self.raw(name, &value.to_string());
    }
    fn ints(&mut self, fields: &[(&str, usize)]) {
        for &(name, value) in fields {
            self.int(name, value);
        }
    }
    fn flag(&mut self, name: &str, value: bool) {
        self.raw(name, if value { "true" } else { "false" });
    }
    fn list(&mut self, name: &str, values: &[usize]) {
        let mut text = String::from("[");
        for (i, v) in values.iter().enumerate() {
            let _ = write!(text, "{}{v}", if i > 0 { "," } else { "" });
        }
        text.push(']');
        self.raw(name, &text);
    }
    fn scalar(&mut self, name: &str, value: Scalar) {
        // serde_json writes an f32 as its shortest round-trip decimal (ryu); a non-finite one
        // as null (no task holds one: ONNX attributes are finite where they reach a task).
        let text = serde_json::to_string(&value.0).unwrap_or_else(|_| "null".into());
        self.raw(name, &text);
    }
    fn finish(self) -> String {
        format!("{{{}}}", self.fields.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{BatchMatmulSpec, Conv2dSpec, Pool2dSpec};

    fn conv(c: usize, h: usize, o: usize, k: usize, stride: usize, pad: usize, groups: usize) -> Conv2dSpec {
        Conv2dSpec {
            n: 1,
            c,
            h,
            w: h,
            o,
            kh: k,
            kw: k,
            stride: [stride, stride],
            pad: [pad; 4],
            dilation: [1, 1],
            groups,
        }
    }

    /// A spread of tasks: every operator, broadcasts and transposes, every epilogue step.
    fn golden_tasks() -> Vec<(Task, &'static str)> {
        let dense = BatchMatmulSpec {
            batch: 1,
            m: 1,
            n: 1000,
            k: 2048,
            trans_a: false,
            trans_b: true,
            a_broadcast: false,
            b_broadcast: true,
            b_constant: true,
        };
        let pool = Pool2dSpec {
            kind: PoolKind::Max,
            n: 1,
            c: 64,
            h: 112,
            w: 112,
            kh: 3,
            kw: 3,
            stride: [2, 2],
            pad: [1, 1, 1, 1],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad: false,
        };
        let gap = Pool2dSpec {
            kind: PoolKind::Avg,
            c: 2048,
            h: 7,
            w: 7,
            kh: 7,
            kw: 7,
            stride: [1, 1],
            pad: [0; 4],
            ..pool
        };
        vec![
            (
                Task::matmul(1024, 1024, 1024),
                "e8495efd8e319c4fd5df8bfa2b5afb0d1fec64a62f83b1b7ddc81bdf9507a4c7",
            ),
            (
                Task::new(Op::Conv2d(conv(64, 56, 64, 3, 1, 1, 1)), vec![EpilogueOp::Bias, EpilogueOp::Relu]),
                "c74ccdecc7fa0d81e4d7a38433d58ea71cf9130586d2949242d662ac1ca3b8b1",
            ),
            (
                Task::new(
                    Op::Conv2d(conv(256, 14, 1024, 1, 1, 0, 1)),
                    vec![EpilogueOp::Bias, EpilogueOp::Add, EpilogueOp::Relu],
                ),
                "cba65c4bf5ddbec874ef3cf579095767adda42d16dde8c20e1e070733b1dd66b",
            ),
            (
                Task::new(
                    Op::Conv2d(conv(32, 112, 32, 3, 2, 1, 32)),
                    vec![EpilogueOp::Bias, EpilogueOp::Clip { min: Scalar(0.0), max: Scalar(6.0) }],
                ),
                "d79deee26e34a3e325646d779f9209b25b001e581763a466e7e410b393dce5af",
            ),
            (
                Task::new(Op::BatchMatmul(dense), vec![EpilogueOp::Bias]),
                "008cb90934fd41f6ec1e2ec3b3b71434f0ef83b7f785fd2565caaa6be7486022",
            ),
            (
                Task::new(
                    Op::BatchMatmul(BatchMatmulSpec {
                        batch: 12,
                        m: 128,
                        n: 128,
                        k: 64,
                        b_constant: false,
                        b_broadcast: false,
                        trans_b: false,
                        ..dense
                    }),
                    vec![EpilogueOp::Scale { alpha: Scalar(0.125) }],
                ),
                "44279037a1bb0991ca44a7088dc9989398166f64347fd03b4c1e20fde58f5f5d",
            ),
            (
                Task::new(Op::Pool2d(pool), vec![]),
                "41293cbfaa1a70319e1f572b0b60a50fae2ebf644ed76f171af2790f509dc084",
            ),
            (
                Task::new(Op::Pool2d(gap), vec![]),
                "b1176492ca44bf81f5ca94b45f706a79f914b0e160f25f4cefc8956bfbfd2e2b",
            ),
            (
                Task::new(
                    Op::Conv2d(conv(3, 224, 64, 7, 2, 3, 1)),
                    vec![EpilogueOp::LeakyRelu { alpha: Scalar(0.1) }, EpilogueOp::Sigmoid],
                ),
                "adf2788b9825ce70eb07cfbe73dc7b77c15080242cf23a38ec9026021d40cd72",
            ),
            (
                Task::new(Op::Conv2d(conv(64, 56, 256, 1, 1, 0, 1)), vec![EpilogueOp::Bias])
                    .with_layout(crate::ChannelBlocks { input: 16, output: 16 }),
                "6d76ceb4bc15c94f974cb9e14ac865a9c1841a14989f1e7c60692caa3c65ad8f",
            ),
            (
                Task::new(Op::Conv2d(conv(64, 56, 64, 3, 1, 1, 1)), vec![EpilogueOp::Bias])
                    .with_layout(crate::ChannelBlocks { input: 16, output: 16 })
                    .with_halo(crate::Halo { input: [1; 4], output: [0, 2, 0, 2] }),
                "6e55236ceb19d1c05a5bdaab8c41d67a7ceb937c85363b3c34227a03098a6da7",
            ),
        ]
    }

    #[test]
    fn golden_keys() {
        // Pinned: a changed key orphans every shipped tuning log. If this fails, the canonical
        // description changed: that is a new log format (docs/tuning-log.md), not a refactor.
        // The keys were made (before this module) as the SHA-256 of the serde JSON of `Task`; the
        // canonical description reproduces that text byte for byte, so older logs keep theirs.
        for (task, key) in golden_tasks() {
            assert_eq!(task.key().0, key, "{}", canonical_description(&task));
        }
    }

    #[test]
    fn the_description_reads_as_documented() {
        let (task, _) = &golden_tasks()[1];
        assert_eq!(
            canonical_description(task),
            r#"{"op":"conv2d","n":1,"c":64,"h":56,"w":56,"o":64,"kh":3,"kw":3,"stride":[1,1],"pad":[1,1,1,1],"dilation":[1,1],"groups":1,"dtype":"f32","epilogue":[{"kind":"bias"},{"kind":"relu"}]}"#
        );
        let tasks = golden_tasks();
        let (bordered, _) = tasks.last().expect("golden tasks");
        assert!(
            canonical_description(bordered).ends_with(
                r#""layout":{"input":16,"output":16},"halo":{"input":[1,1,1,1],"output":[0,2,0,2]}}"#
            ),
            "{}",
            canonical_description(bordered)
        );
        assert_eq!(canonical_description(bordered), bordered.canonical_json(), "serde writes the same text");
        let bare = canonical_description(&Task::matmul(2, 3, 4));
        assert_eq!(
            bare, r#"{"op":"matmul","m":2,"n":3,"k":4,"dtype":"f32"}"#,
            "no epilogue field when empty"
        );
    }
}
