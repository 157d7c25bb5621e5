//! The loop-nest IR: the concrete program a schedule lowers to and codegen compiles.
//!
//! A [`LoopNest`] is a function over flat buffers. Statements are loops, stores, scoped buffer
//! allocations and conditionals; expressions are integer index arithmetic and f32 arithmetic.
//! Loops carry a [`LoopKind`] that tells codegen *how* to emit them (serial, parallel on the
//! host's thread pool, vectorized across SIMD lanes, unrolled, bound to GPU blocks/threads), so the
//! same IR serves matmul, conv, pooling, fused epilogues and GPU kernels.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(pub u32);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub u32);

/// Where a buffer lives. Codegen decides the mechanism; the IR says the intent.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BufScope {
    /// A kernel argument, owned by the caller.
    Param,
    /// Scratch allocated by an [`Stmt::Allocate`] from the heap (packed panels, large tiles).
    Heap,
    /// Small scratch meant to live in registers (accumulator tiles); every access should use
    /// indices that are constant after unrolling.
    Register,
    /// GPU shared memory (one copy per thread block).
    Shared,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BufferDecl {
    pub name: String,
    pub dtype: crate::DType,
    /// Number of elements.
    pub len: usize,
    pub scope: BufScope,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GpuAxis {
    X,
    Y,
    Z,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoopKind {
    Serial,
    /// Serial, with the body replicated `n` times per iteration (a remainder loop follows).
    UnrollBy(u32),
    /// Fully unrolled: the extent must be a constant.
    Unrolled,
    /// One SIMD vector: the extent must be a constant (the lane count); the loop variable becomes
    /// a vector of consecutive values.
    Vectorized,
    /// Iterations are distributed over the host's thread pool.
    Parallel,
    GpuBlock(GpuAxis),
    GpuThread(GpuAxis),
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    /// Integer division (operands are non-negative in every index the schedules emit, where
    /// truncating and flooring agree); plain division for floats.
    Div,
    /// Integer remainder matching `Div`.
    Mod,
    Min,
    Max,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// e^x (float).
    Exp,
    /// −x (float).
    Neg,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Lt,
    Le,
    Eq,
    Ne,
    Ge,
    Gt,
}

/// Expressions. Integer expressions (`Int`, `Var`, arithmetic on them) are 64-bit indices;
/// float expressions are the buffer element type.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Expr {
    Int(i64),
    Float(f32),
    Var(VarId),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Unary(UnaryOp, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    /// `a * b + c` in one rounding.
    Fma(Box<Expr>, Box<Expr>, Box<Expr>),
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    Load {
        buf: BufId,
        index: Box<Expr>,
    },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Loop {
    pub var: VarId,
    pub min: Expr,
    pub extent: Expr,
    pub kind: LoopKind,
    pub body: Vec<Stmt>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Stmt {
    For(Loop),
    Store {
        buf: BufId,
        index: Expr,
        value: Expr,
    },
    /// `buf` exists (uninitialised) for the duration of `body`; inside a parallel loop each
    /// iteration gets its own.
    Allocate {
        buf: BufId,
        body: Vec<Stmt>,
    },
    If {
        cond: Expr,
        then_body: Vec<Stmt>,
        else_body: Vec<Stmt>,
    },
    /// Every thread of the enclosing GPU block waits here until all have arrived, and their
    /// shared-memory writes before it are visible after it (`__syncthreads()`). Only inside a
    /// `GpuThread` loop, and only under control flow that is the same for every thread of the
    /// block (the host lowering splits the thread loop here, which needs that).
    Barrier,
    /// A hint that `buf[index]` is read soon: a CPU starts bringing its cache line in now, so
    /// that a stream of reads from memory overlaps the arithmetic before them. It changes no
    /// result, and `index` may lie outside the buffer (a prefetch never faults). GPU kernels
    /// drop it.
    Prefetch {
        buf: BufId,
        index: Expr,
    },
}

/// A kernel: `params` (in argument order) are the caller's buffers, the other buffers are scratch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LoopNest {
    pub name: String,
    pub buffers: Vec<BufferDecl>,
    pub params: Vec<BufId>,
    pub var_names: Vec<String>,
    pub body: Vec<Stmt>,
}

impl LoopNest {
    pub fn buffer(&self, id: BufId) -> &BufferDecl {
        &self.buffers[id.0 as usize]
    }
    pub fn var_name(&self, id: VarId) -> &str {
        &self.var_names[id.0 as usize]
    }
}

/// Builds a [`LoopNest`], handing out buffer and variable ids.
#[derive(Debug, Default)]
pub struct NestBuilder {
    buffers: Vec<BufferDecl>,
    params: Vec<BufId>,
    var_names: Vec<String>,
}

impl NestBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn param(&mut self, name: &str, len: usize) -> BufId {
        let id = self.buffer(name, len, BufScope::Param);
        self.params.push(id);
        id
    }
    pub fn buffer(&mut self, name: &str, len: usize, scope: BufScope) -> BufId {
        self.buffers.push(BufferDecl { name: name.to_string(), dtype: crate::DType::F32, len, scope });
        BufId(self.buffers.len() as u32 - 1)
    }
    pub fn var(&mut self, name: &str) -> VarId {
        self.var_names.push(name.to_string());
        VarId(self.var_names.len() as u32 - 1)
    }
    pub fn finish(self, name: &str, body: Vec<Stmt>) -> LoopNest {
        LoopNest {
            name: name.to_string(),
            buffers: self.buffers,
            params: self.params,
            var_names: self.var_names,
            body,
        }
    }
}

// ---- construction helpers: keep schedule code readable --------------------------------------

impl Expr {
    pub fn var(v: VarId) -> Expr {
        Expr::Var(v)
    }
    pub fn int(v: i64) -> Expr {
        Expr::Int(v)
    }
    pub fn load(buf: BufId, index: Expr) -> Expr {
        Expr::Load { buf, index: Box::new(index) }
    }
    pub fn fma(a: Expr, b: Expr, c: Expr) -> Expr {
        Expr::Fma(Box::new(a), Box::new(b), Box::new(c))
    }
    pub fn min(self, other: Expr) -> Expr {
        Expr::Bin(BinOp::Min, Box::new(self), Box::new(other))
    }
    pub fn max(self, other: Expr) -> Expr {
        Expr::Bin(BinOp::Max, Box::new(self), Box::new(other))
    }
    pub fn cmp(self, op: CmpOp, other: Expr) -> Expr {
        Expr::Cmp(op, Box::new(self), Box::new(other))
    }
    pub fn and(self, other: Expr) -> Expr {
        Expr::And(Box::new(self), Box::new(other))
    }
    pub fn select(cond: Expr, then_value: Expr, else_value: Expr) -> Expr {
        Expr::Select(Box::new(cond), Box::new(then_value), Box::new(else_value))
    }
    pub fn floor_div(self, other: Expr) -> Expr {
        Expr::Bin(BinOp::Div, Box::new(self), Box::new(other))
    }
    pub fn unary(op: UnaryOp, x: Expr) -> Expr {
        Expr::Unary(op, Box::new(x))
    }
    pub fn float(v: f32) -> Expr {
        Expr::Float(v)
    }
    /// The constant value, if the expression is a literal integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Expr::Int(v) => Some(*v),
            _ => None,
        }
    }
}

macro_rules! impl_bin {
    ($trait:ident, $method:ident, $op:expr) => {
        impl std::ops::$trait for Expr {
            type Output = Expr;
            fn $method(self, rhs: Expr) -> Expr {
                Expr::Bin($op, Box::new(self), Box::new(rhs))
            }
        }
        impl std::ops::$trait<i64> for Expr {
            type Output = Expr;
            fn $method(self, rhs: i64) -> Expr {
                Expr::Bin($op, Box::new(self), Box::new(Expr::Int(rhs)))
            }
        }
    };
}
impl_bin!(Add, add, BinOp::Add);
impl_bin!(Sub, sub, BinOp::Sub);
impl_bin!(Mul, mul, BinOp::Mul);
impl_bin!(Rem, rem, BinOp::Mod);

impl From<VarId> for Expr {
    fn from(v: VarId) -> Expr {
        Expr::Var(v)
    }
}

impl Stmt {
    pub fn for_loop(var: VarId, min: Expr, extent: Expr, kind: LoopKind, body: Vec<Stmt>) -> Stmt {
        Stmt::For(Loop { var, min, extent, kind, body })
    }
    pub fn store(buf: BufId, index: Expr, value: Expr) -> Stmt {
        Stmt::Store { buf, index, value }
    }
}

/// What a schedule point lowers to: the kernel, plus one-time transforms of constant inputs
/// (weights packed into the kernel's layout) that run once before the kernel runs many times, at
/// model load in the runtime and untimed in measurement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Program {
    /// Parameters: the task's inputs in order (an input with a prepack is replaced by its packed
    /// form), then the outputs.
    pub kernel: LoopNest,
    pub prepacks: Vec<Prepack>,
}

/// Packs task input `input` into the layout the kernel reads. Parameters: the original input,
/// then the packed buffer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Prepack {
    pub input: usize,
    pub nest: LoopNest,
}

impl From<LoopNest> for Program {
    fn from(kernel: LoopNest) -> Program {
        Program { kernel, prepacks: Vec::new() }
    }
}
