//! Operator specifications beyond plain matmul: convolution, batched matmul (dense / ONNX Gemm /
//! MatMul), pooling, and the fused epilogues that follow conv and matmul in real models.

use serde::{Deserialize, Serialize};

/// An f32 constant inside a Task (alpha, clip bounds…): compared and hashed by its bits so Tasks
/// stay `Eq + Hash` and keys stay stable.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
#[serde(transparent)]
pub struct Scalar(pub f32);

impl PartialEq for Scalar {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for Scalar {}
impl std::hash::Hash for Scalar {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}

/// One step of a fused epilogue, applied in order to each output element after the reduction.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EpilogueOp {
    /// `y *= alpha` (ONNX Gemm's alpha).
    Scale {
        alpha: Scalar,
    },
    /// `y += bias[channel]`: per output channel for conv, per output column for dense. An
    /// inference batch-norm is folded into the weights and this bias before tuning.
    Bias,
    /// `y += residual[same position]` (a residual connection; ONNX Gemm's beta·C with C full-size).
    Add,
    Relu,
    Clip {
        min: Scalar,
        max: Scalar,
    },
    LeakyRelu {
        alpha: Scalar,
    },
    Sigmoid,
}

impl EpilogueOp {
    /// Applies the element-wise part (everything but the extra inputs, which the caller adds).
    pub fn apply(self, y: f64, extra: Option<f64>) -> f64 {
        match self {
            EpilogueOp::Scale { alpha } => y * f64::from(alpha.0),
            EpilogueOp::Bias | EpilogueOp::Add => y + extra.unwrap_or(0.0),
            EpilogueOp::Relu => y.max(0.0),
            EpilogueOp::Clip { min, max } => y.max(f64::from(min.0)).min(f64::from(max.0)),
            EpilogueOp::LeakyRelu { alpha } => {
                if y < 0.0 {
                    y * f64::from(alpha.0)
                } else {
                    y
                }
            }
            EpilogueOp::Sigmoid => 1.0 / (1.0 + (-y).exp()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EpilogueOp::Scale { .. } => "scale",
            EpilogueOp::Bias => "bias",
            EpilogueOp::Add => "add",
            EpilogueOp::Relu => "relu",
            EpilogueOp::Clip { .. } => "clip",
            EpilogueOp::LeakyRelu { .. } => "leaky_relu",
            EpilogueOp::Sigmoid => "sigmoid",
        }
    }
}

/// 2-D convolution, NCHW input `[n, c, h, w]`, OIHW weights `[o, c/groups, kh, kw]`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dSpec {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// Top, left, bottom, right.
    pub pad: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Conv2dSpec {
    pub fn out_h(&self) -> usize {
        (self.h + self.pad[0] + self.pad[2] - self.dilation[0] * (self.kh - 1) - 1) / self.stride[0] + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + self.pad[1] + self.pad[3] - self.dilation[1] * (self.kw - 1) - 1) / self.stride[1] + 1
    }
    pub fn c_per_group(&self) -> usize {
        self.c / self.groups
    }
    pub fn o_per_group(&self) -> usize {
        self.o / self.groups
    }
    /// The conv a kernel computes when its input buffer already holds the padding (a
    /// [`crate::task::Halo`]): no padding over the padded plane, the same output.
    pub fn over_padded_input(&self) -> Conv2dSpec {
        let [top, left, bottom, right] = self.pad;
        Conv2dSpec { h: self.h + top + bottom, w: self.w + left + right, pad: [0; 4], ..*self }
    }

    /// Whether the numbers describe a computable convolution.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [self.n, self.c, self.h, self.w, self.o, self.kh, self.kw, self.groups];
        if positive.contains(&0) || self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err("sizes, strides, dilations and groups must be positive".into());
        }
        if !self.c.is_multiple_of(self.groups) || !self.o.is_multiple_of(self.groups) {
            return Err(format!(
                "groups={} must divide both channels c={} and o={}",
                self.groups, self.c, self.o
            ));
        }
        let eff_h = self.dilation[0] * (self.kh - 1) + 1;
        let eff_w = self.dilation[1] * (self.kw - 1) + 1;
        if self.h + self.pad[0] + self.pad[2] < eff_h || self.w + self.pad[1] + self.pad[3] < eff_w {
            return Err("the (dilated) kernel is larger than the padded input".into());
        }
        Ok(())
    }
}

/// `Y[b] = op(A[b]) · op(B[b])` for `b < batch`, with `op` an optional transpose and either side
/// possibly shared by every batch (broadcast). Dense / ONNX Gemm is `batch = 1` with constant B.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchMatmulSpec {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is stored `[k, m]` (ONNX Gemm transA).
    pub trans_a: bool,
    /// B is stored `[n, k]` (ONNX Gemm transB; the usual layout of dense weights).
    pub trans_b: bool,
    /// A has one matrix shared by every batch.
    pub a_broadcast: bool,
    /// B has one matrix shared by every batch.
    pub b_broadcast: bool,
    /// B is a constant (weights): it may be packed once, before the kernel runs.
    pub b_constant: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    Max,
    Avg,
}

/// 2-D pooling over NCHW `[n, c, h, w]`. Global average pooling is `Avg` with the kernel equal
/// to the input size.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dSpec {
    pub kind: PoolKind,
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// Top, left, bottom, right.
    pub pad: [usize; 4],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
    /// Average pooling divides by the full window (true) or by the in-bounds count (false).
    pub count_include_pad: bool,
}

impl Pool2dSpec {
    pub fn out_h(&self) -> usize {
        self.out_dim_exact(self.h, self.pad[0], self.pad[2], self.kh, self.stride[0], self.dilation[0])
    }
    pub fn out_w(&self) -> usize {
        self.out_dim_exact(self.w, self.pad[1], self.pad[3], self.kw, self.stride[1], self.dilation[1])
    }
    /// Output size with ONNX's rule: floor (or ceil with `ceil_mode`) of
    /// `(size + pads − dilated kernel) / stride + 1`, and with ceil_mode the last window must start
    /// inside the input or its begin padding.
    fn out_dim_exact(
        &self,
        size: usize,
        pad_begin: usize,
        pad_end: usize,
        k: usize,
        stride: usize,
        dilation: usize,
    ) -> usize {
        let span = size + pad_begin + pad_end;
        let eff = dilation * (k - 1) + 1;
        if span < eff {
            return 0;
        }
        let numer = span - eff;
        let mut out = if self.ceil_mode { numer.div_ceil(stride) + 1 } else { numer / stride + 1 };
        if self.ceil_mode && (out - 1) * stride >= size + pad_begin {
            out -= 1;
        }
        out
    }
    pub fn validate(&self) -> Result<(), String> {
        let positive = [self.n, self.c, self.h, self.w, self.kh, self.kw];
        if positive.contains(&0) || self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err("sizes, strides and dilations must be positive".into());
        }
        if self.pad[0] >= self.kh * self.dilation[0] || self.pad[1] >= self.kw * self.dilation[1] {
            return Err("padding must be smaller than the (dilated) window".into());
        }
        if self.out_h() == 0 || self.out_w() == 0 {
            return Err("the window is larger than the padded input".into());
        }
        Ok(())
    }
}
