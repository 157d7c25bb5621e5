//! The fused epilogue as an expression: what every lowering applies to an accumulated value
//! before it is stored (scale, bias, residual add, activation), in the task's order.

use autotune_ir::{BinOp, CmpOp, EpilogueOp, Expr, UnaryOp};

/// `v` after each step of `steps`; `bias` and `residual` are the values the Bias and Add steps
/// add (loads the caller builds for this element). A step whose operand is missing is skipped.
pub(crate) fn apply(steps: &[EpilogueOp], mut v: Expr, bias: Option<Expr>, residual: Option<Expr>) -> Expr {
    for step in steps {
        v = match *step {
            EpilogueOp::Scale { alpha } => bin(BinOp::Mul, v, Expr::Float(alpha.0)),
            EpilogueOp::Bias => match &bias {
                Some(b) => bin(BinOp::Add, v, b.clone()),
                None => v,
            },
            EpilogueOp::Add => match &residual {
                Some(r) => bin(BinOp::Add, v, r.clone()),
                None => v,
            },
            EpilogueOp::Relu => bin(BinOp::Max, v, Expr::Float(0.0)),
            EpilogueOp::Clip { min, max } => {
                bin(BinOp::Min, bin(BinOp::Max, v, Expr::Float(min.0)), Expr::Float(max.0))
            }
            EpilogueOp::LeakyRelu { alpha } => Expr::select(
                v.clone().cmp(CmpOp::Lt, Expr::Float(0.0)),
                bin(BinOp::Mul, v.clone(), Expr::Float(alpha.0)),
                v,
            ),
            EpilogueOp::Sigmoid => bin(
                BinOp::Div,
                Expr::Float(1.0),
                bin(BinOp::Add, Expr::Float(1.0), Expr::unary(UnaryOp::Exp, Expr::unary(UnaryOp::Neg, v))),
            ),
        };
    }
    v
}

pub(crate) fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    Expr::Bin(op, Box::new(a), Box::new(b))
}
