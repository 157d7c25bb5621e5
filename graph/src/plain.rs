//! The operators that run as plain (untuned) implementations: everything that is not a tuned
//! kernel [`Task`](autotune_ir::Task). Attributes are normalized at load time (negative axes
//! resolved, opset differences removed, defaults filled in), so an implementation needs only the
//! op, its input tensors and the output shapes the [`Graph`](crate::Graph) records.
//!
//! Unless said otherwise, inputs and outputs are f32 and every op has one output.

use crate::tensor::ElemType;

/// An element-wise function of one value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Neg,
    Abs,
    Sqrt,
    Reciprocal,
    Floor,
    Ceil,
    Sin,
    Cos,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `x · max(0, min(1, x/6 + 1/2))`.
    HardSwish,
    /// `x` if `x ≥ 0`, else `alpha · (e^x − 1)`.
    Elu {
        alpha: f32,
    },
    /// `gamma · x` if `x > 0`, else `gamma · alpha · (e^x − 1)`.
    Selu {
        alpha: f32,
        gamma: f32,
    },
    /// `x` if `x ≥ 0`, else `alpha · x`.
    LeakyRelu {
        alpha: f32,
    },
    /// `max(0, min(1, alpha · x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `min(max(x, min), max)`; absent bounds are ±∞.
    Clip {
        min: f32,
        max: f32,
    },
    /// The error function.
    Erf,
    /// `x · Φ(x)` (ONNX Gelu): with `tanh`, its tanh approximation.
    Gelu {
        tanh: bool,
    },
}

/// The error function, to within 1.2e-7 everywhere (Numerical Recipes' `erfcc`, a Chebyshev
/// fit): std has none, and f32 results need no more.
pub fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 {
        1.0 - erfc
    } else {
        erfc - 1.0
    }
}

impl UnaryOp {
    /// The reference semantics (in f64).
    pub fn apply(self, x: f64) -> f64 {
        match self {
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Reciprocal => 1.0 / x,
            UnaryOp::Floor => x.floor(),
            UnaryOp::Ceil => x.ceil(),
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
            UnaryOp::Softplus => x.exp().ln_1p(),
            UnaryOp::Softsign => x / (1.0 + x.abs()),
            UnaryOp::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            UnaryOp::Elu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    f64::from(alpha) * x.exp_m1()
                }
            }
            UnaryOp::Selu { alpha, gamma } => {
                f64::from(gamma) * if x > 0.0 { x } else { f64::from(alpha) * x.exp_m1() }
            }
            UnaryOp::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    f64::from(alpha) * x
                }
            }
            UnaryOp::HardSigmoid { alpha, beta } => (f64::from(alpha) * x + f64::from(beta)).clamp(0.0, 1.0),
            UnaryOp::Clip { min, max } => x.max(f64::from(min)).min(f64::from(max)),
            UnaryOp::Erf => erf(x),
            UnaryOp::Gelu { tanh: false } => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
            UnaryOp::Gelu { tanh: true } => {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (k * (x + 0.044_715 * x * x * x)).tanh())
            }
        }
    }
}

/// An element-wise function of two values, with numpy (multidirectional) broadcasting of the two
/// inputs to the output shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    /// `a` if `a ≥ 0`, else `a · b` (ONNX PRelu: `b` is the slope).
    PRelu,
    /// ONNX Mod: the remainder with the divisor's sign (`fmod = 0`), or the dividend's (`FMod`).
    Mod,
    FMod,
    /// Comparisons and logic (ONNX Equal, Less, …, And, Or, Xor): 1 or 0, a boolean output.
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

impl BinaryOp {
    /// Whether the output is a boolean (1 or 0) rather than of the inputs' type.
    pub fn is_predicate(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual
                | BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor
        )
    }

    fn predicate(self, a: f64, b: f64) -> bool {
        match self {
            BinaryOp::Equal => a == b,
            BinaryOp::Less => a < b,
            BinaryOp::LessOrEqual => a <= b,
            BinaryOp::Greater => a > b,
            BinaryOp::GreaterOrEqual => a >= b,
            BinaryOp::And => a != 0.0 && b != 0.0,
            BinaryOp::Or => a != 0.0 || b != 0.0,
            BinaryOp::Xor => (a != 0.0) != (b != 0.0),
            _ => false,
        }
    }

    /// The reference semantics (in f64).
    pub fn apply(self, a: f64, b: f64) -> f64 {
        if self.is_predicate() {
            return f64::from(u8::from(self.predicate(a, b)));
        }
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Pow => a.powf(b),
            BinaryOp::Max => a.max(b),
            BinaryOp::Min => a.min(b),
            BinaryOp::PRelu => {
                if a >= 0.0 {
                    a
                } else {
                    a * b
                }
            }
            BinaryOp::FMod => a % b,
            BinaryOp::Mod => {
                let r = a % b;
                if r != 0.0 && (r < 0.0) != (b < 0.0) {
                    r + b
                } else {
                    r
                }
            }
            _ => unreachable!("predicates are answered above"),
        }
    }

    /// The same on integers (Div truncates; Pow of a negative exponent is 0).
    pub fn apply_i64(self, a: i64, b: i64) -> i64 {
        if self.is_predicate() {
            // i64 → f64 is exact for the magnitudes tensors hold here (indices, shapes, masks).
            return i64::from(self.predicate(a as f64, b as f64));
        }
        match self {
            BinaryOp::Add => a.wrapping_add(b),
            BinaryOp::Sub => a.wrapping_sub(b),
            BinaryOp::Mul => a.wrapping_mul(b),
            BinaryOp::Div => a.checked_div(b).unwrap_or(0),
            BinaryOp::Pow => u32::try_from(b).map_or(0, |e| a.wrapping_pow(e)),
            BinaryOp::Max => a.max(b),
            BinaryOp::Min => a.min(b),
            BinaryOp::PRelu => {
                if a >= 0 {
                    a
                } else {
                    a.wrapping_mul(b)
                }
            }
            BinaryOp::FMod => a.checked_rem(b).unwrap_or(0),
            BinaryOp::Mod => a.checked_rem_euclid(b).map_or(0, |r| if b < 0 && r != 0 { r + b } else { r }),
            _ => unreachable!("predicates are answered above"),
        }
    }
}

/// A reduction over n ≥ 3 broadcast inputs (two-input Sum/Max/Min become [`BinaryOp`]s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VariadicOp {
    Sum,
    Max,
    Min,
    Mean,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// Pads with `value`.
    Constant { value: f32 },
    /// Mirrors without repeating the edge (numpy `reflect`).
    Reflect,
    /// Repeats the edge value.
    Edge,
    /// Wraps around (numpy `wrap`).
    Wrap,
}

/// A plain operator with its normalized attributes. Axes are non-negative and refer to the
/// (first) input's dimensions unless said otherwise.
#[derive(Clone, Debug, PartialEq)]
pub enum PlainOp {
    /// The same values in the output tensor's shape (Reshape, Flatten, Squeeze, Unsqueeze): a
    /// copy, or nothing at all if the buffer can be shared.
    Reshape,
    Unary(UnaryOp),
    /// Inputs `a`, `b`, broadcast to the output shape.
    Binary(BinaryOp),
    /// n ≥ 3 inputs, broadcast to the output shape.
    Variadic(VariadicOp),
    /// Inference batch normalization over dimension 1 (rank ≥ 2): `y = gamma · (x − mean) /
    /// √(var + epsilon) + beta`. Inputs `x, gamma, beta, mean, var` (each `[C]`). Per-channel Mul
    /// and Add by constants right after it are merged into gamma and beta at load time.
    BatchNorm {
        epsilon: f32,
    },
    /// `y = scale · (x − mean) / √(var + epsilon) + bias`, mean and variance over the spatial
    /// dimensions (2..) of each (n, c). Inputs `x, scale, bias` (each `[C]`).
    /// ONNX LayerNormalization: each run of the dimensions from `axis` on normalized to zero
    /// mean and unit variance, then scaled and shifted (inputs x, scale, and optionally bias,
    /// broadcast to those dimensions).
    LayerNorm {
        axis: usize,
        epsilon: f32,
    },
    InstanceNorm {
        epsilon: f32,
    },
    /// Local response normalization across channels (dimension 1): `y = x / (bias + alpha/size ·
    /// Σ x²)^beta`, the sum over channels `c − ⌊(size−1)/2⌋ ..= c + ⌈(size−1)/2⌉` that exist.
    Lrn {
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
    },
    /// Softmax (or log-softmax with `log`) along `axis`. With `coerce_2d` (ONNX opset < 13), the
    /// dimensions `axis..` are flattened into one and normalized together. An optional second
    /// input (an attention mask: fused from an Add) is added first, broadcast to the first; it
    /// then has the full size along `axis`, which is the last.
    Softmax {
        axis: usize,
        log: bool,
        coerce_2d: bool,
    },
    /// Inputs laid end to end along `axis` (n ≥ 1 inputs).
    Concat {
        axis: usize,
    },
    /// One output per entry of `sizes`, consecutive slices along `axis`.
    Split {
        axis: usize,
        sizes: Vec<usize>,
    },
    /// Output dimension `i` is input dimension `perm[i]`.
    Transpose {
        perm: Vec<usize>,
    },
    /// Output element at index `i` (per dimension `d`) reads input index `starts[d] + i · steps[d]`;
    /// the output shape gives the counts. Steps may be negative.
    Slice {
        starts: Vec<usize>,
        steps: Vec<i64>,
    },
    /// Output dimension `d` has `pads[d][0]` elements before and `pads[d][1]` after the input's
    /// (negative: crop).
    Pad {
        pads: Vec<[i64; 2]>,
        mode: PadMode,
    },
    /// Inputs `data`, `indices` (integer, any shape; negative counts from the end). Output shape
    /// `data[..axis] ++ indices ++ data[axis+1..]`.
    Gather {
        axis: usize,
    },
    /// Reduction over `axes` (sorted); with `keepdims` they stay as size 1.
    Reduce {
        kind: ReduceKind,
        axes: Vec<usize>,
        keepdims: bool,
    },
    /// Output dimension `d` is `repeats[d]` copies of the input's.
    Tile {
        repeats: Vec<usize>,
    },
    /// The input broadcast (numpy rules) to the output shape.
    Expand,
    /// ONNX Where: `x` where `condition` is nonzero, else `y`, the three broadcast.
    Where,
    /// ONNX Trilu: each matrix of the last two dimensions with the elements below (`upper`) or
    /// above the `k`-th diagonal zeroed; `k` is the optional second input, read at run time.
    Trilu {
        upper: bool,
    },
    /// Element type conversion (floats to integers truncate toward zero).
    Cast {
        to: ElemType,
    },
}

impl PlainOp {
    /// Short name, e.g. `relu`, `concat`, `batch_norm`.
    pub fn name(&self) -> &'static str {
        match self {
            PlainOp::Reshape => "reshape",
            PlainOp::Unary(u) => match u {
                UnaryOp::Relu => "relu",
                UnaryOp::Sigmoid => "sigmoid",
                UnaryOp::Tanh => "tanh",
                UnaryOp::Exp => "exp",
                UnaryOp::Log => "log",
                UnaryOp::Neg => "neg",
                UnaryOp::Abs => "abs",
                UnaryOp::Sqrt => "sqrt",
                UnaryOp::Reciprocal => "reciprocal",
                UnaryOp::Floor => "floor",
                UnaryOp::Ceil => "ceil",
                UnaryOp::Sin => "sin",
                UnaryOp::Cos => "cos",
                UnaryOp::Softplus => "softplus",
                UnaryOp::Softsign => "softsign",
                UnaryOp::HardSwish => "hard_swish",
                UnaryOp::Elu { .. } => "elu",
                UnaryOp::Selu { .. } => "selu",
                UnaryOp::LeakyRelu { .. } => "leaky_relu",
                UnaryOp::HardSigmoid { .. } => "hard_sigmoid",
                UnaryOp::Clip { .. } => "clip",
                UnaryOp::Erf => "erf",
                UnaryOp::Gelu { .. } => "gelu",
            },
            PlainOp::Binary(b) => match b {
                BinaryOp::Add => "add",
                BinaryOp::Sub => "sub",
                BinaryOp::Mul => "mul",
                BinaryOp::Div => "div",
                BinaryOp::Pow => "pow",
                BinaryOp::Max => "max",
                BinaryOp::Min => "min",
                BinaryOp::PRelu => "prelu",
                BinaryOp::Mod => "mod",
                BinaryOp::FMod => "fmod",
                BinaryOp::Equal => "equal",
                BinaryOp::Less => "less",
                BinaryOp::LessOrEqual => "less_or_equal",
                BinaryOp::Greater => "greater",
                BinaryOp::GreaterOrEqual => "greater_or_equal",
                BinaryOp::And => "and",
                BinaryOp::Or => "or",
                BinaryOp::Xor => "xor",
            },
            PlainOp::Variadic(v) => match v {
                VariadicOp::Sum => "sum",
                VariadicOp::Max => "max",
                VariadicOp::Min => "min",
                VariadicOp::Mean => "mean",
            },
            PlainOp::BatchNorm { .. } => "batch_norm",
            PlainOp::InstanceNorm { .. } => "instance_norm",
            PlainOp::LayerNorm { .. } => "layer_norm",
            PlainOp::Lrn { .. } => "lrn",
            PlainOp::Softmax { log: false, .. } => "softmax",
            PlainOp::Softmax { log: true, .. } => "log_softmax",
            PlainOp::Concat { .. } => "concat",
            PlainOp::Split { .. } => "split",
            PlainOp::Transpose { .. } => "transpose",
            PlainOp::Slice { .. } => "slice",
            PlainOp::Pad { .. } => "pad",
            PlainOp::Gather { .. } => "gather",
            PlainOp::Reduce { .. } => "reduce",
            PlainOp::Tile { .. } => "tile",
            PlainOp::Expand => "expand",
            PlainOp::Where => "where",
            PlainOp::Trilu { upper: true } => "triu",
            PlainOp::Trilu { upper: false } => "tril",
            PlainOp::Cast { .. } => "cast",
        }
    }
}
