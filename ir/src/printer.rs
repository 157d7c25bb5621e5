//! Human-readable text of a LoopNest, for debugging, golden snapshots and reports.

use crate::loop_nest::{BinOp, CmpOp, Expr, LoopKind, LoopNest, Stmt};
use std::fmt::Write;

pub fn print(nest: &LoopNest) -> String {
    let mut out = String::new();
    let params: Vec<String> =
        nest.params.iter().map(|&b| format!("{}[{}]", nest.buffer(b).name, nest.buffer(b).len)).collect();
    let _ = writeln!(out, "kernel {}({}) {{", nest.name, params.join(", "));
    print_block(nest, &nest.body, 1, &mut out);
    out.push_str("}\n");
    out
}

fn print_block(nest: &LoopNest, body: &[Stmt], depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    for stmt in body {
        match stmt {
            Stmt::For(l) => {
                let kind = match l.kind {
                    LoopKind::Serial => "for".to_string(),
                    LoopKind::UnrollBy(n) => format!("for.unroll{n}"),
                    LoopKind::Unrolled => "for.unrolled".to_string(),
                    LoopKind::Vectorized => "for.vectorized".to_string(),
                    LoopKind::Parallel => "for.parallel".to_string(),
                    LoopKind::GpuBlock(a) => format!("for.block{a:?}"),
                    LoopKind::GpuThread(a) => format!("for.thread{a:?}"),
                };
                let _ = writeln!(
                    out,
                    "{pad}{kind} {} in {} +: {} {{",
                    nest.var_name(l.var),
                    expr(nest, &l.min),
                    expr(nest, &l.extent)
                );
                print_block(nest, &l.body, depth + 1, out);
                let _ = writeln!(out, "{pad}}}");
            }
            Stmt::Store { buf, index, value } => {
                let _ = writeln!(
                    out,
                    "{pad}{}[{}] = {}",
                    nest.buffer(*buf).name,
                    expr(nest, index),
                    expr(nest, value)
                );
            }
            Stmt::Allocate { buf, body } => {
                let b = nest.buffer(*buf);
                let _ = writeln!(out, "{pad}allocate {}[{}] {:?} {{", b.name, b.len, b.scope);
                print_block(nest, body, depth + 1, out);
                let _ = writeln!(out, "{pad}}}");
            }
            Stmt::Barrier => {
                let _ = writeln!(out, "{pad}barrier");
            }
            Stmt::Prefetch { buf, index } => {
                let _ = writeln!(out, "{pad}prefetch {}[{}]", nest.buffer(*buf).name, expr(nest, index));
            }
            Stmt::If { cond, then_body, else_body } => {
                let _ = writeln!(out, "{pad}if {} {{", expr(nest, cond));
                print_block(nest, then_body, depth + 1, out);
                if !else_body.is_empty() {
                    let _ = writeln!(out, "{pad}}} else {{");
                    print_block(nest, else_body, depth + 1, out);
                }
                let _ = writeln!(out, "{pad}}}");
            }
        }
    }
}

pub fn expr(nest: &LoopNest, e: &Expr) -> String {
    match e {
        Expr::Int(v) => v.to_string(),
        Expr::Float(v) => format!("{v:?}f"),
        Expr::Var(v) => nest.var_name(*v).to_string(),
        Expr::Bin(op, a, b) => {
            let (a, b) = (expr(nest, a), expr(nest, b));
            match op {
                BinOp::Add => format!("({a} + {b})"),
                BinOp::Sub => format!("({a} - {b})"),
                BinOp::Mul => format!("{a}*{b}"),
                BinOp::Div => format!("({a} / {b})"),
                BinOp::Mod => format!("({a} % {b})"),
                BinOp::Min => format!("min({a}, {b})"),
                BinOp::Max => format!("max({a}, {b})"),
            }
        }
        Expr::Unary(op, a) => format!("{op:?}({})", expr(nest, a)).to_lowercase(),
        Expr::Cmp(op, a, b) => {
            let sym = match op {
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
                CmpOp::Eq => "==",
                CmpOp::Ne => "!=",
                CmpOp::Ge => ">=",
                CmpOp::Gt => ">",
            };
            format!("{} {sym} {}", expr(nest, a), expr(nest, b))
        }
        Expr::And(a, b) => format!("({} && {})", expr(nest, a), expr(nest, b)),
        Expr::Fma(a, b, c) => format!("fma({}, {}, {})", expr(nest, a), expr(nest, b), expr(nest, c)),
        Expr::Select(c, t, f) => format!("select({}, {}, {})", expr(nest, c), expr(nest, t), expr(nest, f)),
        Expr::Load { buf, index } => format!("{}[{}]", nest.buffer(*buf).name, expr(nest, index)),
    }
}
