//! Naive reference semantics of every operator, written for obviousness, sharing nothing with the
//! schedules. Accumulates in f64 so the reference is more accurate than any kernel it judges.

use crate::ops::{BatchMatmulSpec, Conv2dSpec, EpilogueOp, Pool2dSpec, PoolKind};
use crate::task::{ChannelBlocks, InputWindow, Op, Task};
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
    if !task.halo.is_none() {
        return run_bordered(task, inputs);
    }
    if !task.layout.is_plain() {
        return run_channel_blocked(task, inputs);
    }
    let acc: Vec<f64> = match &task.op {
        Op::Matmul(s) => {
            let a = ArrayView2::from_shape((s.m, s.k), &inputs[0]).expect("A has m*k elements");
            let b = ArrayView2::from_shape((s.k, s.n), &inputs[1]).expect("B has k*n elements");
            matmul(a, b).iter().map(|&v| f64::from(v)).collect()
        }
        Op::Conv2d(c) => conv2d(c, &inputs[0], &inputs[1]),
        Op::BatchMatmul(b) => batch_matmul(b, &inputs[0], &inputs[1]),
        Op::Pool2d(p) => pool2d(p, &inputs[0]),
    };
    vec![apply_epilogue(task, acc, inputs)]
}

/// A conv or pooling with channel-blocked activations: the plain one on unblocked copies,
/// blocked back.
fn run_channel_blocked(task: &Task, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let ChannelBlocks { input, output } = task.layout;
    // (input channels, input plane, output channels, output plane)
    let (c_in, in_plane, c_out, out_plane) = match &task.op {
        Op::Conv2d(c) => (c.c, c.h * c.w, c.o, c.out_h() * c.out_w()),
        Op::Pool2d(p) => (p.c, p.h * p.w, p.c, p.out_h() * p.out_w()),
        _ => unreachable!("Task::validate allows blocks on convs and poolings only"),
    };
    let plain = task.clone().with_layout(ChannelBlocks::PLAIN);
    let mut unblocked = inputs.to_vec();
    unblocked[0] = unblock_channels(&inputs[0], c_in, in_plane, input);
    if let Some(r) = task.inputs().iter().position(|spec| spec.name == "residual") {
        unblocked[r] = unblock_channels(&inputs[r], c_out, out_plane, output);
    }
    run(&plain, &unblocked).into_iter().map(|y| block_channels(&y, c_out, out_plane, output)).collect()
}

/// A conv with zero borders ([`crate::Halo`]): the unpadded conv over an input buffer that holds
/// its padding (reading the border as it is, as the kernel does), the result placed inside a
/// zero border.
fn run_bordered(task: &Task, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let Op::Conv2d(c) = &task.op else { unreachable!("Task::validate allows borders on convs only") };
    let mut inner = task.without_halo();
    let mut inputs = inputs.to_vec();
    if let Some(window) = task.halo.input_window(c) {
        inner.op = Op::Conv2d(c.over_padded_input());
        inputs[0] = padded_window(c, window, task.layout.input, &inputs[0]);
    }
    let border = task.halo.output;
    let block = task.layout.output;
    let (planes, rows, cols) = (c.n * c.o / block, c.out_h(), c.out_w());
    run(&inner, &inputs)
        .into_iter()
        .map(|y| {
            let (rows_out, cols_out) = (rows + border[0] + border[2], cols + border[1] + border[3]);
            let mut out = vec![0.0; planes * rows_out * cols_out * block];
            for p in 0..planes {
                for r in 0..rows {
                    let from = ((p * rows + r) * cols) * block;
                    let to = ((p * rows_out + r + border[0]) * cols_out + border[1]) * block;
                    out[to..to + cols * block].copy_from_slice(&y[from..from + cols * block]);
                }
            }
            out
        })
        .collect()
}

/// The window `at` of a bordered input buffer (planes of `block`-wide positions) that is the
/// conv's padded input.
fn padded_window(c: &Conv2dSpec, at: InputWindow, block: usize, x: &[f32]) -> Vec<f32> {
    let window = c.over_padded_input();
    let planes = x.len() / (at.rows * at.cols * block);
    let mut out = Vec::with_capacity(planes * window.h * window.w * block);
    for p in 0..planes {
        for r in 0..window.h {
            let from = ((p * at.rows + at.top + r) * at.cols + at.left) * block;
            out.extend_from_slice(&x[from..from + window.w * block]);
        }
    }
    out
}

/// An NCHW tensor (images of `c` channels of `plane` positions) in NCHW{block}c order:
/// `[n, c / block, plane, block]`. A block of 1 is a copy.
pub fn block_channels(x: &[f32], c: usize, plane: usize, block: usize) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for (i, &v) in x.iter().enumerate() {
        y[blocked_index(i, c, plane, block)] = v;
    }
    y
}

/// The inverse of [`block_channels`].
pub fn unblock_channels(x: &[f32], c: usize, plane: usize, block: usize) -> Vec<f32> {
    (0..x.len()).map(|i| x[blocked_index(i, c, plane, block)]).collect()
}

/// Where NCHW element `flat` lives in NCHW{block}c order.
fn blocked_index(flat: usize, c: usize, plane: usize, block: usize) -> usize {
    let (image, rest) = (flat / (c * plane), flat % (c * plane));
    let (ch, pos) = (rest / plane, rest % plane);
    image * c * plane + ((ch / block) * plane + pos) * block + ch % block
}

/// Applies the task's epilogue in order. The extra inputs follow the operands in input order.
fn apply_epilogue(task: &Task, mut y: Vec<f64>, inputs: &[Vec<f32>]) -> Vec<f32> {
    let names: Vec<&str> = task.inputs().iter().map(|s| s.name).collect();
    let find = |name: &str| names.iter().position(|n| *n == name).map(|i| &inputs[i]);
    let out_shape = task.outputs()[0].shape.clone();
    // Which bias element feeds output element `flat`: the channel (conv: dim 1) or column (last dim).
    let bias_of = |flat: usize| -> usize {
        match &task.op {
            Op::Conv2d(_) | Op::Pool2d(_) => (flat / (out_shape[2] * out_shape[3])) % out_shape[1],
            _ => flat % out_shape[out_shape.len() - 1],
        }
    };
    for step in &task.epilogue {
        match step {
            EpilogueOp::Bias => {
                let bias = find("bias").expect("a bias input");
                for (flat, v) in y.iter_mut().enumerate() {
                    *v = step.apply(*v, Some(f64::from(bias[bias_of(flat)])));
                }
            }
            EpilogueOp::Add => {
                let residual = find("residual").expect("a residual input");
                for (v, r) in y.iter_mut().zip(residual) {
                    *v = step.apply(*v, Some(f64::from(*r)));
                }
            }
            _ => y.iter_mut().for_each(|v| *v = step.apply(*v, None)),
        }
    }
    y.into_iter().map(|v| v as f32).collect()
}

/// Direct convolution: for every output element, the sum over its window, zero outside the input.
pub fn conv2d(c: &Conv2dSpec, x: &[f32], w: &[f32]) -> Vec<f64> {
    let (oh, ow) = (c.out_h(), c.out_w());
    let (cg, og) = (c.c_per_group(), c.o_per_group());
    let mut y = vec![0.0f64; c.n * c.o * oh * ow];
    for n in 0..c.n {
        for o in 0..c.o {
            let g = o / og;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = 0.0f64;
                    for ci in 0..cg {
                        let ch = g * cg + ci;
                        for ky in 0..c.kh {
                            let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.pad[0] as isize;
                            if iy < 0 || iy >= c.h as isize {
                                continue;
                            }
                            for kx in 0..c.kw {
                                let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize - c.pad[1] as isize;
                                if ix < 0 || ix >= c.w as isize {
                                    continue;
                                }
                                let xv = x[((n * c.c + ch) * c.h + iy as usize) * c.w + ix as usize];
                                let wv = w[((o * cg + ci) * c.kh + ky) * c.kw + kx];
                                sum += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    y[((n * c.o + o) * oh + oy) * ow + ox] = sum;
                }
            }
        }
    }
    y
}

pub fn batch_matmul(s: &BatchMatmulSpec, a: &[f32], b: &[f32]) -> Vec<f64> {
    let mut y = vec![0.0f64; s.batch * s.m * s.n];
    for bi in 0..s.batch {
        let a0 = if s.a_broadcast { 0 } else { bi * s.m * s.k };
        let b0 = if s.b_broadcast { 0 } else { bi * s.k * s.n };
        for i in 0..s.m {
            for j in 0..s.n {
                let mut sum = 0.0f64;
                for p in 0..s.k {
                    let av = if s.trans_a { a[a0 + p * s.m + i] } else { a[a0 + i * s.k + p] };
                    let bv = if s.trans_b { b[b0 + j * s.k + p] } else { b[b0 + p * s.n + j] };
                    sum += f64::from(av) * f64::from(bv);
                }
                y[(bi * s.m + i) * s.n + j] = sum;
            }
        }
    }
    y
}

/// ONNX MaxPool / AveragePool semantics; padding never wins a max, and averages divide by the
/// window size (count_include_pad) or by the in-bounds elements.
pub fn pool2d(p: &Pool2dSpec, x: &[f32]) -> Vec<f64> {
    let (oh, ow) = (p.out_h(), p.out_w());
    let mut y = vec![0.0f64; p.n * p.c * oh * ow];
    for nc in 0..p.n * p.c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut max = f64::NEG_INFINITY;
                let (mut sum, mut count, mut window) = (0.0f64, 0usize, 0usize);
                for ky in 0..p.kh {
                    let iy = (oy * p.stride[0] + ky * p.dilation[0]) as isize - p.pad[0] as isize;
                    for kx in 0..p.kw {
                        let ix = (ox * p.stride[1] + kx * p.dilation[1]) as isize - p.pad[1] as isize;
                        // The window counts positions inside input + declared padding only
                        // (ceil_mode may run past the end padding).
                        let in_padded = iy < (p.h + p.pad[2]) as isize && ix < (p.w + p.pad[3]) as isize;
                        if in_padded {
                            window += 1;
                        }
                        if iy < 0 || ix < 0 || iy >= p.h as isize || ix >= p.w as isize {
                            continue;
                        }
                        let v = f64::from(x[(nc * p.h + iy as usize) * p.w + ix as usize]);
                        max = max.max(v);
                        sum += v;
                        count += 1;
                    }
                }
                y[(nc * oh + oy) * ow + ox] = match p.kind {
                    PoolKind::Max => max,
                    PoolKind::Avg if p.count_include_pad => sum / window.max(1) as f64,
                    PoolKind::Avg => sum / count.max(1) as f64,
                };
            }
        }
    }
    y
}

/// Folds an inference batch-norm that follows a convolution into its weights and bias:
/// `BN(conv(x, w) + b) = conv(x, w·s) + (b − mean)·s + beta` with `s = gamma / √(var + eps)`.
/// `weights` is OIHW (outer dimension = output channel).
pub fn fold_batch_norm(
    weights: &mut [f32],
    bias: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) {
    let per_channel = weights.len() / bias.len().max(1);
    for o in 0..bias.len() {
        let scale = f64::from(gamma[o]) / (f64::from(var[o]) + f64::from(eps)).sqrt();
        for w in &mut weights[o * per_channel..(o + 1) * per_channel] {
            *w = (f64::from(*w) * scale) as f32;
        }
        bias[o] = ((f64::from(bias[o]) - f64::from(mean[o])) * scale + f64::from(beta[o])) as f32;
    }
}

/// Seeded inputs uniform in [-1, 1), one flat buffer per [`Task::inputs`] entry. SplitMix64: tiny,
/// portable and stable across crate versions, so a seed means the same data everywhere.
pub fn random_inputs(task: &Task, seed: u64) -> Vec<Vec<f32>> {
    let mut stream = SeededUniform::new(seed);
    task.inputs().iter().map(|spec| (0..spec.len()).map(|_| stream.next_f32()).collect()).collect()
}

/// Floats uniform in [-1, 1) from a SplitMix64 stream: tiny, portable and stable across crate
/// versions, so a seed means the same data everywhere (tests, measurement, `autotune run`).
#[derive(Debug, Clone)]
pub struct SeededUniform {
    state: u64,
}

impl SeededUniform {
    pub fn new(seed: u64) -> SeededUniform {
        SeededUniform { state: seed ^ 0x9E37_79B9_7F4A_7C15 }
    }

    pub fn next_f32(&mut self) -> f32 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 24 random bits → [0,1) exactly representable in f32, then → [-1,1).
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
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
    fn channel_blocks_put_a_positions_channels_side_by_side() {
        // 2 images × 4 channels × 3 positions, value = 100·image + 10·channel + position.
        let x: Vec<f32> = (0..2)
            .flat_map(|i| (0..4).flat_map(move |c| (0..3).map(move |p| (100 * i + 10 * c + p) as f32)))
            .collect();
        let y = block_channels(&x, 4, 3, 2);
        // Image 0, channel block 0: positions 0..3, each [channel 0, channel 1].
        assert_eq!(&y[..6], &[0.0, 10.0, 1.0, 11.0, 2.0, 12.0]);
        // Channel block 1 of image 1 ends the buffer.
        assert_eq!(&y[18..], &[120.0, 130.0, 121.0, 131.0, 122.0, 132.0]);
        assert_eq!(unblock_channels(&y, 4, 3, 2), x);
        assert_eq!(block_channels(&x, 4, 3, 1), x);
    }

    #[test]
    fn a_channel_blocked_conv_is_the_plain_conv_blocked() {
        let spec = Conv2dSpec {
            n: 2,
            c: 8,
            h: 5,
            w: 4,
            o: 4,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [1; 4],
            dilation: [1, 1],
            groups: 1,
        };
        let plain = Task::new(Op::Conv2d(spec), vec![EpilogueOp::Bias, EpilogueOp::Add, EpilogueOp::Relu]);
        let blocked = plain.clone().with_layout(ChannelBlocks { input: 4, output: 2 });
        assert_eq!(blocked.inputs()[0].shape, vec![2, 2, 5, 4, 4]);
        assert_eq!(blocked.outputs()[0].shape, vec![2, 2, 5, 4, 2]);
        let inputs = random_inputs(&plain, 7);
        let mut blocked_inputs = inputs.clone();
        blocked_inputs[0] = block_channels(&inputs[0], 8, 20, 4);
        blocked_inputs[3] = block_channels(&inputs[3], 4, 20, 2);
        let want = block_channels(&run(&plain, &inputs)[0], 4, 20, 2);
        assert_eq!(run(&blocked, &blocked_inputs)[0], want);
    }

    #[test]
    fn a_bordered_conv_reads_its_padding_from_the_buffer_and_writes_a_zero_border() {
        let spec = Conv2dSpec {
            n: 2,
            c: 4,
            h: 3,
            w: 2,
            o: 2,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [1, 1, 1, 1],
            dilation: [1, 1],
            groups: 1,
        };
        let blocks = ChannelBlocks { input: 4, output: 2 };
        let blocked = Task::new(Op::Conv2d(spec), vec![EpilogueOp::Bias]).with_layout(blocks);
        let bordered = blocked.clone().with_halo(crate::Halo { input: [1; 4], output: [1, 0, 0, 2] });
        assert_eq!(bordered.inputs()[0].shape, vec![2, 1, 5, 4, 4]);
        assert_eq!(bordered.outputs()[0].shape, vec![2, 1, 4, 4, 2]);
        assert_eq!(bordered.flops(), blocked.flops(), "the border is not work");
        let inputs = random_inputs(&blocked, 3);
        // The same input with a zero border of one position around each 3×2 plane.
        let mut padded = vec![0.0; 2 * 5 * 4 * 4];
        for (i, &v) in inputs[0].iter().enumerate() {
            let (image, pos, lane) = (i / 24, (i / 4) % 6, i % 4);
            let (y, x) = (pos / 2 + 1, pos % 2 + 1);
            padded[((image * 5 + y) * 4 + x) * 4 + lane] = v;
        }
        let want = run(&blocked, &inputs)[0].clone();
        let got = run(&bordered, &[padded, inputs[1].clone(), inputs[2].clone()])[0].clone();
        // Each image's one output plane: 3 + 1 rows of 2 + 2 positions, the result at (1, 0).
        for image in 0..2 {
            for y in 0..4 {
                for x in 0..4 {
                    for lane in 0..2 {
                        let v = got[((image * 4 + y) * 4 + x) * 2 + lane];
                        if y >= 1 && x < 2 {
                            assert_eq!(v, want[((image * 3 + y - 1) * 2 + x) * 2 + lane]);
                        } else {
                            assert_eq!(v, 0.0, "border at image {image} ({y}, {x})");
                        }
                    }
                }
            }
        }
        assert!(bordered.validate().is_ok());
        let short = blocked.clone().with_halo(crate::Halo { input: [0, 1, 1, 1], output: [0; 4] });
        assert!(short.validate().is_err(), "an input border covers the padding");

        // A wider border (another reader needs more): the conv reads its window, the padding
        // nearest the plane; what lies beyond it is never read.
        let wider = blocked.clone().with_halo(crate::Halo { input: [2, 1, 1, 3], output: [0; 4] });
        assert!(wider.validate().is_ok());
        assert_eq!(wider.inputs()[0].shape, vec![2, 1, 6, 6, 4]);
        let mut buffer = vec![99.0; 2 * 6 * 6 * 4];
        for (i, &v) in inputs[0].iter().enumerate() {
            let (image, pos, lane) = (i / 24, (i / 4) % 6, i % 4);
            let (y, x) = (pos / 2, pos % 2);
            buffer[((image * 6 + y + 2) * 6 + x + 1) * 4 + lane] = v;
        }
        // The padding ring one position around the plane is zero; row 0 and columns 4–5 stay 99.
        for image in 0..2 {
            for y in 1..6 {
                for x in 0..4 {
                    let inside = (2..5).contains(&y) && (1..3).contains(&x);
                    if !inside {
                        for lane in 0..4 {
                            buffer[((image * 6 + y) * 6 + x) * 4 + lane] = 0.0;
                        }
                    }
                }
            }
        }
        let got = run(&wider, &[buffer, inputs[1].clone(), inputs[2].clone()]);
        assert_eq!(got[0], want, "the window of a wider border");
        let plain_input = bordered.clone().with_layout(ChannelBlocks { input: 1, output: 2 });
        assert!(plain_input.validate().is_err(), "borders are for channel blocks");
        let with_residual = Task::new(Op::Conv2d(spec), vec![EpilogueOp::Add])
            .with_layout(blocks)
            .with_halo(crate::Halo { input: [0; 4], output: [1; 4] });
        assert!(with_residual.validate().is_err(), "a residual would need the border too");
    }

    fn conv_task(c: Conv2dSpec, epilogue: Vec<EpilogueOp>) -> Task {
        Task::new(Op::Conv2d(c), epilogue)
    }

    fn spec_1ch() -> Conv2dSpec {
        Conv2dSpec {
            n: 1,
            c: 1,
            h: 3,
            w: 3,
            o: 1,
            kh: 2,
            kw: 2,
            stride: [1, 1],
            pad: [0; 4],
            dilation: [1, 1],
            groups: 1,
        }
    }

    #[test]
    fn conv2d_known_values_padding_and_epilogue() {
        // x = 1..9 (3x3), w = [[1,0],[0,1]] → y = x[i,j] + x[i+1,j+1].
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let w = vec![1.0, 0.0, 0.0, 1.0];
        assert_eq!(
            run(&conv_task(spec_1ch(), vec![]), &[x.clone(), w.clone()]),
            vec![vec![6.0, 8.0, 12.0, 14.0]]
        );
        // Padding 1 on every side, stride 2: the corners see zeros.
        let padded = Conv2dSpec { pad: [1; 4], stride: [2, 2], ..spec_1ch() };
        assert_eq!(padded.out_h(), 2);
        assert_eq!(run(&conv_task(padded, vec![]), &[x.clone(), w.clone()]), vec![vec![1.0, 3.0, 7.0, 14.0]]);
        // Bias then relu.
        let t = conv_task(spec_1ch(), vec![EpilogueOp::Bias, EpilogueOp::Relu]);
        assert_eq!(run(&t, &[x, w, vec![-10.0]]), vec![vec![0.0, 0.0, 2.0, 4.0]]);
    }

    #[test]
    fn grouped_conv_only_sees_its_group() {
        // 2 groups of 1 channel: output o reads channel o only.
        let c = Conv2dSpec { c: 2, o: 2, groups: 2, h: 1, w: 1, kh: 1, kw: 1, ..spec_1ch() };
        let y = run(&conv_task(c, vec![]), &[vec![3.0, 5.0], vec![2.0, 10.0]]);
        assert_eq!(y, vec![vec![6.0, 50.0]]);
    }

    #[test]
    fn folded_batch_norm_equals_batch_norm_after_conv() {
        let c = Conv2dSpec { c: 1, o: 2, ..spec_1ch() };
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let w = vec![1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.25, 2.0];
        let (gamma, beta, mean, var, eps) = ([2.0, 0.5], [1.0, -1.0], [3.0, 0.0], [4.0, 0.25], 1e-5);
        let plain = run(&conv_task(c, vec![]), &[x.clone(), w.clone()])[0].clone();
        let expected: Vec<f32> = plain
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let o = i / 4;
                (f64::from(gamma[o]) * (f64::from(v) - f64::from(mean[o])) / (f64::from(var[o]) + eps).sqrt()
                    + f64::from(beta[o])) as f32
            })
            .collect();
        let (mut wf, mut bf) = (w, vec![0.0, 0.0]);
        fold_batch_norm(&mut wf, &mut bf, &gamma, &beta, &mean, &var, eps as f32);
        let folded = run(&conv_task(c, vec![EpilogueOp::Bias]), &[x, wf, bf])[0].clone();
        for (a, b) in folded.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-4, "{folded:?} vs {expected:?}");
        }
    }

    #[test]
    fn pooling_semantics() {
        let x: Vec<f32> = (1..=16).map(|v| v as f32).collect(); // 4x4
        let base = Pool2dSpec {
            kind: PoolKind::Max,
            n: 1,
            c: 1,
            h: 4,
            w: 4,
            kh: 2,
            kw: 2,
            stride: [2, 2],
            pad: [0; 4],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad: false,
        };
        let t = |p: Pool2dSpec| Task::new(Op::Pool2d(p), vec![]);
        assert_eq!(run(&t(base), std::slice::from_ref(&x)), vec![vec![6.0, 8.0, 14.0, 16.0]]);
        let avg = Pool2dSpec { kind: PoolKind::Avg, ..base };
        assert_eq!(run(&t(avg), std::slice::from_ref(&x)), vec![vec![3.5, 5.5, 11.5, 13.5]]);
        // Padding 1, 3x3 window, stride 2: the corner window holds 4 real elements of 9.
        let padded = Pool2dSpec { kh: 3, kw: 3, pad: [1; 4], ..avg };
        let include = Pool2dSpec { count_include_pad: true, ..padded };
        assert_eq!(run(&t(padded), std::slice::from_ref(&x))[0][0], (1.0 + 2.0 + 5.0 + 6.0) / 4.0);
        assert_eq!(run(&t(include), std::slice::from_ref(&x))[0][0], (1.0 + 2.0 + 5.0 + 6.0) / 9.0);
        // ceil_mode: 4 wide, k3 s2 → floor gives 1, ceil gives 2.
        let ceil = Pool2dSpec { kh: 3, kw: 3, ceil_mode: true, ..base };
        assert_eq!((ceil.out_h(), Pool2dSpec { ceil_mode: false, ..ceil }.out_h()), (2, 1));
        assert_eq!(run(&t(ceil), &[x])[0], vec![11.0, 12.0, 15.0, 16.0]);
    }

    #[test]
    fn batch_matmul_transposes_and_broadcasts() {
        let s = BatchMatmulSpec {
            batch: 2,
            m: 1,
            n: 2,
            k: 2,
            trans_a: false,
            trans_b: true,
            a_broadcast: true,
            b_broadcast: false,
            b_constant: false,
        };
        // A = [1, 2] shared; B[0] = [[1,0],[0,1]] stored [n,k]; B[1] = [[2,2],[3,3]].
        let y = batch_matmul(&s, &[1.0, 2.0], &[1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        assert_eq!(y, vec![1.0, 2.0, 6.0, 9.0]);
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
