//! Unit tests on small models built in code: constant folding, batch-norm and scale folding
//! (checked numerically against `autotune_ir::reference`), Gemm's alpha/beta, opset
//! differences, and the errors users see.

use crate::proto::{self, attribute_proto::AttributeType, AttributeProto, NodeProto};
use crate::{load_bytes, Graph, GraphError, LoadConfig, NodeKind, PlainOp, Tensor};
use autotune_ir::reference;
use autotune_ir::{EpilogueOp, Halo, Op, Task};
use prost::Message;

/// A model under construction.
#[derive(Default)]
struct M {
    nodes: Vec<NodeProto>,
    inits: Vec<proto::TensorProto>,
    inputs: Vec<proto::ValueInfoProto>,
    outputs: Vec<proto::ValueInfoProto>,
}

enum A {
    I(i64),
    Is(Vec<i64>),
    F(f32),
    S(&'static str),
    T(Tensor),
}

fn value_info(name: &str, shape: Option<&[usize]>) -> proto::ValueInfoProto {
    let dims: Option<Vec<i64>> = shape.map(|s| s.iter().map(|&d| d as i64).collect());
    proto::ValueInfoProto::float(name, dims.as_deref())
}

impl M {
    fn input(mut self, name: &str, shape: &[usize]) -> M {
        self.inputs.push(value_info(name, Some(shape)));
        self
    }
    fn output(mut self, name: &str) -> M {
        self.outputs.push(value_info(name, None));
        self
    }
    fn init(mut self, name: &str, t: Tensor) -> M {
        self.inits.push(t.to_proto(name));
        self
    }
    fn node(mut self, op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, A)>) -> M {
        let attribute = attrs
            .into_iter()
            .map(|(n, a)| {
                let mut p = AttributeProto { name: Some(n.into()), ..Default::default() };
                let kind = match a {
                    A::I(v) => {
                        p.i = Some(v);
                        AttributeType::Int
                    }
                    A::Is(v) => {
                        p.ints = v;
                        AttributeType::Ints
                    }
                    A::F(v) => {
                        p.f = Some(v);
                        AttributeType::Float
                    }
                    A::S(v) => {
                        p.s = Some(v.as_bytes().to_vec());
                        AttributeType::String
                    }
                    A::T(t) => {
                        p.t = Some(t.to_proto(""));
                        AttributeType::Tensor
                    }
                };
                p.r#type = Some(kind as i32);
                p
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: Some(name.into()),
            op_type: Some(op.into()),
            attribute,
            ..Default::default()
        });
        self
    }
    fn bytes(self, opset: i64) -> Vec<u8> {
        proto::ModelProto {
            ir_version: Some(7),
            opset_import: vec![proto::OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            graph: Some(proto::GraphProto {
                node: self.nodes,
                name: Some("test".into()),
                initializer: self.inits,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }
    fn load(self, opset: i64) -> Result<Graph, GraphError> {
        load_bytes(&self.bytes(opset), "test model", &LoadConfig::default())
    }
}

/// Deterministic values in [lo, hi).
fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

fn f32t(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    Tensor::f32(shape.to_vec(), values(shape.iter().product(), seed, lo, hi))
}

/// The only kernel node of `g`, with its input data (constants from the graph, the rest from
/// `runtime` by tensor name).
fn only_kernel(g: &Graph, runtime: &[(&str, &Tensor)]) -> (Task, Vec<Vec<f32>>) {
    let kernels: Vec<_> = g.kernels().collect();
    assert_eq!(kernels.len(), 1, "{:#?}", g.nodes);
    let (_, node, task) = kernels[0];
    let data = node
        .inputs
        .iter()
        .map(|&t| match g.constant(t) {
            Some(v) => v.to_f32(),
            None => {
                let name = &g.tensor(t).name;
                runtime
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.to_f32())
                    .unwrap_or_else(|| panic!("no {name}"))
            }
        })
        .collect();
    (task.clone(), data)
}

fn assert_close(actual: &[f32], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len());
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let tol = 1e-4 * (1.0 + e.abs());
        assert!((f64::from(*a) - e).abs() <= tol, "element {i}: {a} vs {e}");
    }
}

fn bn(y: f64, c: usize, p: &[Vec<f32>; 4], eps: f32) -> f64 {
    let [g, b, m, v] = p;
    f64::from(g[c]) * (y - f64::from(m[c])) / (f64::from(v[c]) + f64::from(eps)).sqrt() + f64::from(b[c])
}

#[test]
fn conv_batch_norm_residual_relu_is_one_kernel_equal_to_the_unfused_ops() {
    let (x, r) = (f32t(&[1, 3, 6, 6], 1, -1.0, 1.0), f32t(&[1, 4, 6, 6], 2, -1.0, 1.0));
    let (w, bias) = (f32t(&[4, 3, 3, 3], 3, -0.5, 0.5), f32t(&[4], 4, -0.5, 0.5));
    let params = [
        f32t(&[4], 5, 0.5, 2.0),
        f32t(&[4], 6, -1.0, 1.0),
        f32t(&[4], 7, -0.5, 0.5),
        f32t(&[4], 8, 0.1, 3.0),
    ];
    let eps = 1e-3;
    let g = M::default()
        .input("x", &[1, 3, 6, 6])
        .input("r", &[1, 4, 6, 6])
        .init("w", w.clone())
        .init("b", bias.clone())
        .init("gamma", params[0].clone())
        .init("beta", params[1].clone())
        .init("mean", params[2].clone())
        .init("var", params[3].clone())
        .node("Conv", "conv", &["x", "w", "b"], &["c"], vec![("pads", A::Is(vec![1, 1, 1, 1]))])
        .node(
            "BatchNormalization",
            "bn",
            &["c", "gamma", "beta", "mean", "var"],
            &["n"],
            vec![("epsilon", A::F(eps))],
        )
        .node("Sum", "sum", &["n", "r"], &["s"], vec![])
        .node("Relu", "relu", &["s"], &["y"], vec![])
        .output("y")
        .load(9)
        .expect("the model loads");
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].onnx_ops, ["Conv", "BatchNormalization", "Sum", "Relu"]);
    let (task, inputs) = only_kernel(&g, &[("x", &x), ("r", &r)]);
    assert_eq!(task.epilogue, [EpilogueOp::Bias, EpilogueOp::Add, EpilogueOp::Relu]);
    let fused = reference::run(&task, &inputs).remove(0);

    let Op::Conv2d(spec) = task.op else { panic!() };
    let conv = reference::conv2d(&spec, &x.to_f32(), &w.to_f32());
    let p = [params[0].to_f32(), params[1].to_f32(), params[2].to_f32(), params[3].to_f32()];
    let (rv, bv) = (r.to_f32(), bias.to_f32());
    let expected: Vec<f64> = conv
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let c = i / 36;
            (bn(y + f64::from(bv[c]), c, &p, eps) + f64::from(rv[i])).max(0.0)
        })
        .collect();
    assert_close(&fused, &expected);
}

#[test]
fn densenet_scale_layer_and_constant_of_shape_weights_fold_into_the_conv() {
    // Weights made by ConstantOfShape (as in the light models), then BN, Mul and Add by
    // Unsqueezed per-channel constants, then Relu.
    let x = f32t(&[1, 2, 4, 4], 11, -1.0, 1.0);
    let params = [
        f32t(&[3], 12, 0.5, 2.0),
        f32t(&[3], 13, -1.0, 1.0),
        f32t(&[3], 14, -0.5, 0.5),
        f32t(&[3], 15, 0.1, 3.0),
    ];
    let (scale, shift) = (f32t(&[3], 16, -2.0, 2.0), f32t(&[3], 17, -1.0, 1.0));
    let g = M::default()
        .input("x", &[1, 2, 4, 4])
        .init("w_shape", Tensor::i64(vec![4], vec![3, 2, 1, 1]))
        .init("gamma", params[0].clone())
        .init("beta", params[1].clone())
        .init("mean", params[2].clone())
        .init("var", params[3].clone())
        .init("scale", scale.clone())
        .init("shift", shift.clone())
        .node(
            "ConstantOfShape",
            "w",
            &["w_shape"],
            &["w"],
            vec![("value", A::T(Tensor::f32(vec![1], vec![0.25])))],
        )
        .node("Conv", "conv", &["x", "w"], &["c"], vec![("kernel_shape", A::Is(vec![1, 1]))])
        .node("BatchNormalization", "bn", &["c", "gamma", "beta", "mean", "var"], &["n"], vec![])
        .node("Unsqueeze", "u1", &["scale"], &["s3"], vec![("axes", A::Is(vec![1, 2]))])
        .node("Mul", "mul", &["n", "s3"], &["m"], vec![])
        .node("Unsqueeze", "u2", &["shift"], &["t3"], vec![("axes", A::Is(vec![1, 2]))])
        .node("Add", "add", &["m", "t3"], &["a"], vec![])
        .node("Relu", "relu", &["a"], &["y"], vec![])
        .output("y")
        .load(9)
        .expect("the model loads");
    assert_eq!(g.nodes.len(), 1, "{:#?}", g.nodes);
    let (task, inputs) = only_kernel(&g, &[("x", &x)]);
    assert_eq!(task.epilogue, [EpilogueOp::Bias, EpilogueOp::Relu]);
    let fused = reference::run(&task, &inputs).remove(0);
    let Op::Conv2d(spec) = task.op else { panic!() };
    let conv = reference::conv2d(&spec, &x.to_f32(), &[0.25; 6]);
    let p = [params[0].to_f32(), params[1].to_f32(), params[2].to_f32(), params[3].to_f32()];
    let (s, t) = (scale.to_f32(), shift.to_f32());
    let expected: Vec<f64> = conv
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let c = i / 16;
            (bn(y, c, &p, 1e-5) * f64::from(s[c]) + f64::from(t[c])).max(0.0)
        })
        .collect();
    assert_close(&fused, &expected);
}

#[test]
fn a_batch_norm_after_concat_stays_plain_and_absorbs_the_scale_layer() {
    let g = M::default()
        .input("a", &[1, 2, 3, 3])
        .input("b", &[1, 1, 3, 3])
        .init("gamma", Tensor::f32(vec![3], vec![1.0, 2.0, 3.0]))
        .init("beta", Tensor::f32(vec![3], vec![0.5, 0.0, -0.5]))
        .init("mean", Tensor::f32(vec![3], vec![0.0; 3]))
        .init("var", Tensor::f32(vec![3], vec![1.0; 3]))
        .init("s", Tensor::f32(vec![3, 1, 1], vec![2.0, 2.0, 2.0]))
        .init("t", Tensor::f32(vec![3, 1, 1], vec![1.0, 1.0, 1.0]))
        .node("Concat", "cat", &["a", "b"], &["c"], vec![("axis", A::I(1))])
        .node("BatchNormalization", "bn", &["c", "gamma", "beta", "mean", "var"], &["n"], vec![])
        .node("Mul", "mul", &["n", "s"], &["m"], vec![])
        .node("Add", "add", &["m", "t"], &["y"], vec![])
        .output("y")
        .load(9)
        .expect("the model loads");
    let ops: Vec<&str> = g.nodes.iter().filter_map(|n| n.plain()).map(|p| p.name()).collect();
    assert_eq!(ops, ["concat", "batch_norm"]);
    let bn = &g.nodes[1];
    assert_eq!(g.constant(bn.inputs[1]).map(|t| t.to_f32()), Some(vec![2.0, 4.0, 6.0]));
    assert_eq!(g.constant(bn.inputs[2]).map(|t| t.to_f32()), Some(vec![2.0, 1.0, 0.0]));
}

#[test]
fn gemm_alpha_and_beta_become_scale_bias_and_residual_steps() {
    let a = f32t(&[2, 5], 21, -1.0, 1.0);
    let b = f32t(&[3, 5], 22, -1.0, 1.0); // transB: [n, k]
    let c = f32t(&[3], 23, -1.0, 1.0);
    let ab: Vec<f64> = reference::batch_matmul(
        &autotune_ir::BatchMatmulSpec {
            batch: 1,
            m: 2,
            n: 3,
            k: 5,
            trans_a: false,
            trans_b: true,
            a_broadcast: false,
            b_broadcast: true,
            b_constant: true,
        },
        &a.to_f32(),
        &b.to_f32(),
    );
    // Constant per-column C: alpha·AB + beta·C = Scale, Bias (beta folded into the bias).
    let g = M::default()
        .input("a", &[2, 5])
        .init("b", b.clone())
        .init("c", c.clone())
        .node(
            "Gemm",
            "fc",
            &["a", "b", "c"],
            &["y"],
            vec![("transB", A::I(1)), ("alpha", A::F(0.5)), ("beta", A::F(2.0))],
        )
        .output("y")
        .load(9)
        .expect("the model loads");
    let (task, inputs) = only_kernel(&g, &[("a", &a)]);
    assert!(matches!(task.epilogue.as_slice(), [EpilogueOp::Scale { .. }, EpilogueOp::Bias]));
    let cv = c.to_f32();
    let expected: Vec<f64> =
        ab.iter().enumerate().map(|(i, &v)| 0.5 * v + 2.0 * f64::from(cv[i % 3])).collect();
    assert_close(&reference::run(&task, &inputs)[0], &expected);

    // Run-time full-size C with beta ≠ 1: Scale(alpha/beta), Add, Scale(beta).
    let cfull = f32t(&[2, 3], 24, -1.0, 1.0);
    let g = M::default()
        .input("a", &[2, 5])
        .input("c", &[2, 3])
        .init("b", b)
        .node(
            "Gemm",
            "fc",
            &["a", "b", "c"],
            &["y"],
            vec![("transB", A::I(1)), ("alpha", A::F(0.5)), ("beta", A::F(2.0))],
        )
        .output("y")
        .load(13)
        .expect("the model loads");
    let (task, inputs) = only_kernel(&g, &[("a", &a), ("c", &cfull)]);
    assert_eq!(task.epilogue.len(), 3);
    let cv = cfull.to_f32();
    let expected: Vec<f64> = ab.iter().zip(&cv).map(|(&v, &c)| 0.5 * v + 2.0 * f64::from(c)).collect();
    assert_close(&reference::run(&task, &inputs)[0], &expected);
}

#[test]
fn matmul_with_shared_weights_folds_leading_dimensions_and_takes_a_bias() {
    let g = M::default()
        .input("x", &[2, 4, 8])
        .init("w", f32t(&[8, 16], 31, -1.0, 1.0))
        .init("b", f32t(&[16], 32, -1.0, 1.0))
        .node("MatMul", "mm", &["x", "w"], &["m"], vec![])
        .node("Add", "add", &["m", "b"], &["a"], vec![])
        .node("Clip", "clip", &["a"], &["y"], vec![("min", A::F(0.0)), ("max", A::F(6.0))])
        .output("y")
        .load(9)
        .expect("the model loads");
    let (_, node, task) = g.kernels().next().expect("a kernel");
    let Op::BatchMatmul(s) = task.op else { panic!() };
    assert_eq!((s.batch, s.m, s.n, s.k, s.b_constant), (1, 8, 16, 8, true));
    let clip = EpilogueOp::Clip { min: autotune_ir::Scalar(0.0), max: autotune_ir::Scalar(6.0) };
    assert_eq!(task.epilogue, [EpilogueOp::Bias, clip]);
    assert_eq!(g.tensor(node.outputs[0]).shape, vec![2, 4, 16]);
}

#[test]
fn shape_arithmetic_folds_to_a_single_reshape() {
    // Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])) → [2, 60]: only the Reshape runs.
    let g = M::default()
        .input("x", &[2, 3, 4, 5])
        .init("zero", Tensor::i64(vec![], vec![0]))
        .init("minus_one", Tensor::i64(vec![1], vec![-1]))
        .node("Shape", "shape", &["x"], &["s"], vec![])
        .node("Gather", "gather", &["s", "zero"], &["n"], vec![("axis", A::I(0))])
        .node("Unsqueeze", "unsq", &["n"], &["n1"], vec![("axes", A::Is(vec![0]))])
        .node("Concat", "cat", &["n1", "minus_one"], &["new_shape"], vec![("axis", A::I(0))])
        .node("Cast", "cast", &["new_shape"], &["new_shape64"], vec![("to", A::I(7))])
        .node("Reshape", "reshape", &["x", "new_shape64"], &["y"], vec![])
        .output("y")
        .load(11)
        .expect("the model loads");
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].kind, NodeKind::Plain(PlainOp::Reshape));
    assert_eq!(g.tensor(g.outputs[0].tensor).shape, vec![2, 60]);
    assert_eq!(g.nodes[0].inputs.len(), 1);
}

#[test]
fn constant_subgraphs_fold_completely() {
    // Transpose, Slice, Mul and Squeeze of constants become one constant output.
    let g = M::default()
        .init("a", Tensor::f32(vec![2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))
        .init("starts", Tensor::i64(vec![1], vec![1]))
        .init("ends", Tensor::i64(vec![1], vec![i64::MAX]))
        .init("axes", Tensor::i64(vec![1], vec![0]))
        .init("two", Tensor::f32(vec![], vec![2.0]))
        .node("Transpose", "t", &["a"], &["at"], vec![])
        .node("Slice", "s", &["at", "starts", "ends", "axes"], &["sl"], vec![])
        .node("Mul", "m", &["sl", "two"], &["y"], vec![])
        .output("y")
        .load(13)
        .expect("the model loads");
    assert!(g.nodes.is_empty());
    let y = g.constant(g.outputs[0].tensor).expect("a constant output");
    assert_eq!((y.shape.clone(), y.to_f32()), (vec![2, 2], vec![2.0, 8.0, 4.0, 10.0]));
}

#[test]
fn opset_differences_are_resolved_at_load() {
    // Opset 6: Add's B lines up at `axis`; it becomes a [3, 1, 1] constant.
    let g = M::default()
        .input("x", &[2, 3, 4, 5])
        .init("b", Tensor::f32(vec![3], vec![1.0, 2.0, 3.0]))
        .node("Add", "add", &["x", "b"], &["y"], vec![("broadcast", A::I(1)), ("axis", A::I(1))])
        .output("y")
        .load(6)
        .expect("the model loads");
    assert_eq!(g.tensor(g.nodes[0].inputs[1]).shape, vec![3, 1, 1]);
    // Softmax over [1, 1000, 1, 1]: opset 9 normalizes dims 1.. together, opset 13 axis -1 only.
    let softmax = |opset| {
        let g = M::default()
            .input("x", &[1, 1000, 1, 1])
            .node("Softmax", "sm", &["x"], &["y"], vec![])
            .output("y")
            .load(opset)
            .expect("the model loads");
        g.nodes[0].kind.clone()
    };
    assert_eq!(softmax(9), NodeKind::Plain(PlainOp::Softmax { axis: 1, log: false, coerce_2d: true }));
    assert_eq!(softmax(13), NodeKind::Plain(PlainOp::Softmax { axis: 3, log: false, coerce_2d: false }));
    // Opset 13: Unsqueeze's axes are an input.
    let g = M::default()
        .input("x", &[3])
        .init("axes", Tensor::i64(vec![2], vec![0, -1]))
        .node("Unsqueeze", "u", &["x", "axes"], &["y"], vec![])
        .output("y")
        .load(13)
        .expect("the model loads");
    assert_eq!(g.tensor(g.outputs[0].tensor).shape, vec![1, 3, 1]);
}

#[test]
fn pooling_and_same_padding() {
    let g = M::default()
        .input("x", &[1, 8, 7, 7])
        .node(
            "MaxPool",
            "p",
            &["x"],
            &["p"],
            vec![
                ("kernel_shape", A::Is(vec![3, 3])),
                ("strides", A::Is(vec![2, 2])),
                ("auto_pad", A::S("SAME_UPPER")),
            ],
        )
        .node("GlobalAveragePool", "g", &["p"], &["y"], vec![])
        .output("y")
        .load(11)
        .expect("the model loads");
    let tasks = crate::extract_tasks(&g);
    assert_eq!(tasks.len(), 2);
    let Op::Pool2d(p) = tasks[0].0.op else { panic!() };
    assert_eq!((p.pad, p.out_h()), ([1, 1, 1, 1], 4));
    assert_eq!(g.tensor(g.outputs[0].tensor).shape, vec![1, 8, 1, 1]);
}

#[test]
fn extract_tasks_counts_repeats_in_first_occurrence_order() {
    let mut m = M::default().input("x", &[1, 4, 5, 5]).init("w", f32t(&[4, 4, 3, 3], 41, -1.0, 1.0));
    for i in 0..3 {
        let (src, dst) = (if i == 0 { "x".to_string() } else { format!("y{}", i - 1) }, format!("y{i}"));
        m = m.node("Conv", &format!("c{i}"), &[&src, "w"], &[&dst], vec![("pads", A::Is(vec![1, 1, 1, 1]))]);
    }
    let g = m
        .node("MaxPool", "p", &["y2"], &["y"], vec![("kernel_shape", A::Is(vec![2, 2]))])
        .output("y")
        .load(9)
        .expect("the model loads");
    let tasks = crate::extract_tasks(&g);
    assert_eq!(
        tasks.iter().map(|(t, w)| (t.op_name(), *w)).collect::<Vec<_>>(),
        [("conv2d", 3), ("max_pool", 1)]
    );
}

fn err(m: M, opset: i64) -> String {
    m.load(opset).err().map(|e| e.to_string()).unwrap_or_else(|| "loaded".into())
}

#[test]
fn errors_name_the_node_and_the_op() {
    let e =
        err(M::default().input("x", &[1]).node("Loop", "my_loop", &["x"], &["y"], vec![]).output("y"), 13);
    assert!(e.contains("`Loop`") && e.contains("my_loop"), "{e}");
    let e = err(
        M::default()
            .input("x", &[1, 2, 3, 3])
            .input("w", &[2, 3, 1, 1])
            .node("Conv", "c", &["x", "w"], &["y"], vec![])
            .output("y"),
        13,
    );
    assert!(e.contains("node `c` (Conv)") && e.contains("weights [2, 3, 1, 1]"), "{e}");
    let e = err(M::default().input("x", &[1]).node("Relu", "r", &["x"], &["y"], vec![]).output("y"), 5);
    assert!(e.contains("opset 5"), "{e}");
    let e = err(
        M::default()
            .input("x", &[4])
            .node("Dropout", "d", &["x"], &["y", "mask"], vec![])
            .node("Relu", "r", &["mask"], &["z"], vec![])
            .output("z"),
        9,
    );
    assert!(e.contains("output 1 of node `d` (Dropout)"), "{e}");
    let mut wrong = M::default().input("x", &[2, 3]).node("Relu", "r", &["x"], &["y"], vec![]);
    wrong.outputs.push(value_info("y", Some(&[3, 2])));
    assert!(err(wrong, 9).contains("declares shape [3, 2]"));
    let not_onnx = load_bytes(b"hello, this is not a model\n", "notes.txt", &LoadConfig::default());
    assert!(matches!(not_onnx, Err(GraphError::NotOnnx { .. })), "{not_onnx:?}");
}

#[test]
fn nodes_out_of_order_are_sorted() {
    let g = M::default()
        .input("x", &[3])
        .node("Relu", "second", &["a"], &["y"], vec![])
        .node("Neg", "first", &["x"], &["a"], vec![])
        .output("y")
        .load(9)
        .expect("the model loads");
    let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["first", "second"]);
}

#[test]
fn plain_ops_and_one_d_kernels_infer_shapes() {
    let g = M::default()
        .input("x", &[2, 3, 8])
        .input("i", &[2, 4, 6, 6])
        .init("w", f32t(&[5, 3, 3], 51, -1.0, 1.0))
        .init("pads", Tensor::i64(vec![8], vec![0, 0, 1, 2, 0, 0, 1, 2]))
        .init("split", Tensor::i64(vec![2], vec![1, 3]))
        .init("starts", Tensor::i64(vec![1], vec![-4]))
        .init("ends", Tensor::i64(vec![1], vec![i64::MAX]))
        .init("axes", Tensor::i64(vec![1], vec![3]))
        .init("reps", Tensor::i64(vec![4], vec![1, 2, 1, 1]))
        .init("idx", Tensor::i64(vec![2], vec![0, -1]))
        .init("s", f32t(&[4], 52, 0.5, 1.5))
        .init("b", f32t(&[4], 53, -0.5, 0.5))
        .node(
            "Conv",
            "conv1d",
            &["x", "w"],
            &["c"],
            vec![("pads", A::Is(vec![1, 1])), ("strides", A::Is(vec![2]))],
        )
        .node(
            "MaxPool",
            "pool1d",
            &["c"],
            &["p"],
            vec![("kernel_shape", A::Is(vec![2])), ("strides", A::Is(vec![2]))],
        )
        .node("Pad", "pad", &["i", "pads"], &["padded"], vec![("mode", A::S("reflect"))])
        .node("Split", "split", &["i", "split"], &["s1", "s3"], vec![("axis", A::I(1))])
        .node("Slice", "slice", &["s3", "starts", "ends", "axes"], &["sl"], vec![])
        .node("Tile", "tile", &["s1", "reps"], &["t"], vec![])
        .node("ReduceMean", "mean", &["i"], &["m"], vec![("axes", A::Is(vec![2, 3])), ("keepdims", A::I(0))])
        .node("Gather", "gather", &["i", "idx"], &["gth"], vec![("axis", A::I(1))])
        .node("Transpose", "tr", &["i"], &["trd"], vec![("perm", A::Is(vec![0, 2, 3, 1]))])
        .node("LRN", "lrn", &["i"], &["l"], vec![("size", A::I(3))])
        .node("Flatten", "flat", &["l"], &["f"], vec![("axis", A::I(2))])
        .node("InstanceNormalization", "inorm", &["i", "s", "b"], &["in"], vec![])
        .node("LogSoftmax", "lsm", &["in"], &["ls"], vec![("axis", A::I(1))])
        .output("p")
        .output("padded")
        .output("sl")
        .output("t")
        .output("m")
        .output("gth")
        .output("trd")
        .output("f")
        .output("ls")
        .load(13)
        .expect("the model loads");
    let shape = |name: &str| g.tensor(g.find(name).expect("tensor")).shape.clone();
    assert_eq!(shape("c"), [2, 5, 4]);
    assert_eq!(shape("p"), [2, 5, 2]);
    assert_eq!(shape("padded"), [2, 4, 8, 10]);
    assert_eq!((shape("s1"), shape("s3")), (vec![2, 1, 6, 6], vec![2, 3, 6, 6]));
    assert_eq!(shape("sl"), [2, 3, 6, 4]);
    assert_eq!(shape("t"), [2, 2, 6, 6]);
    assert_eq!(shape("m"), [2, 4]);
    assert_eq!(shape("gth"), [2, 2, 6, 6]);
    assert_eq!(shape("trd"), [2, 6, 6, 4]);
    assert_eq!(shape("f"), [8, 36]);
    assert_eq!(shape("ls"), [2, 4, 6, 6]);
    let Op::Conv2d(c) = crate::extract_tasks(&g)[0].0.op else { panic!("conv first") };
    assert_eq!((c.h, c.w, c.kh, c.kw, c.stride, c.pad), (1, 8, 1, 3, [1, 2], [0, 1, 0, 1]));
    let slice = g.nodes.iter().find(|n| n.name == "slice").and_then(|n| n.plain()).cloned();
    assert_eq!(slice, Some(PlainOp::Slice { starts: vec![0, 0, 0, 2], steps: vec![1; 4] }));
}

#[test]
fn conv_weights_and_bias_may_be_model_inputs() {
    let g = M::default()
        .input("x", &[1, 2, 5, 5])
        .input("w", &[4, 2, 3, 3])
        .input("b", &[4])
        .node("Conv", "c", &["x", "w", "b"], &["y"], vec![("pads", A::Is(vec![1, 1, 1, 1]))])
        .output("y")
        .load(13)
        .expect("run-time weights load");
    assert_eq!(g.nodes.len(), 1);
    let NodeKind::Kernel(task) = &g.nodes[0].kind else { panic!("a kernel: {:?}", g.nodes[0].kind) };
    assert_eq!(task.op_name(), "conv2d");
    assert_eq!(task.epilogue, [EpilogueOp::Bias]);
    assert_eq!(g.nodes[0].inputs, g.inputs, "x, w and b are read as given at run time");
    assert_eq!(g.tensor(g.outputs[0].tensor).shape, vec![1, 4, 5, 5]);
}

fn int64_input(name: &str, shape: &[i64]) -> proto::ValueInfoProto {
    let mut v = proto::ValueInfoProto::float(name, Some(shape));
    if let Some(proto::type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        t.elem_type = Some(proto::tensor_proto::DataType::Int64 as i32);
    }
    v
}

#[test]
fn a_shape_given_as_a_model_input_is_asked_for_then_bound() {
    let mut m = M::default().input("x", &[2, 3, 4]);
    m.inputs.push(int64_input("shape", &[2]));
    let bytes = m.node("Reshape", "r", &["x", "shape"], &["y"], vec![]).output("y").bytes(13);

    let asked = load_bytes(&bytes, "test model", &LoadConfig::default()).expect_err("the shape is asked for");
    assert!(
        matches!(&asked, GraphError::NeedsInputValue { input, index: 1, .. } if input == "shape"),
        "{asked:?}"
    );
    assert!(asked.to_string().contains("`shape`") && asked.to_string().contains("--input"), "{asked}");

    let value = std::sync::Arc::new(Tensor::i64(vec![2], vec![6, -1]));
    let config =
        LoadConfig { input_values: [("shape".to_string(), value.clone())].into(), ..LoadConfig::default() };
    let g = load_bytes(&bytes, "test model", &config).expect("bound, it loads");
    assert_eq!(g.tensor(g.outputs[0].tensor).shape, vec![6, 4]);
    assert_eq!(g.inputs.iter().map(|t| g.tensor(*t).name.as_str()).collect::<Vec<_>>(), ["x"]);
    assert_eq!(g.bound_inputs, [("shape".to_string(), value)]);

    // A value of another element type than the model declares is the wrong value.
    let wrong = std::sync::Arc::new(Tensor::f32(vec![2], vec![6.0, -1.0]));
    let config = LoadConfig { input_values: [("shape".to_string(), wrong)].into(), ..LoadConfig::default() };
    let e = load_bytes(&bytes, "test model", &config).expect_err("a float shape is refused").to_string();
    assert!(e.contains("`shape`") && e.contains("I64"), "{e}");
}

#[test]
fn attention_scaling_and_a_batch_one_mask_become_scale_and_bias_steps() {
    // softmax(Q·Kᵀ / 8 + mask) without the softmax: [1, 2, 5, 4] × [1, 2, 4, 5], mask [1, 1, 1, 5].
    let g = M::default()
        .input("q", &[1, 2, 5, 4])
        .input("kt", &[1, 2, 4, 5])
        .input("mask", &[1, 1, 1, 5])
        .init("eight", Tensor::f32(vec![], vec![8.0]))
        .node("MatMul", "qk", &["q", "kt"], &["s"], vec![])
        .node("Div", "scale", &["s", "eight"], &["scaled"], vec![])
        .node("Add", "masked", &["scaled", "mask"], &["y"], vec![])
        .output("y")
        .load(13)
        .expect("the model loads");
    assert_eq!(g.nodes.len(), 1, "{:?}", g.nodes);
    let NodeKind::Kernel(task) = &g.nodes[0].kind else { panic!("a kernel: {:?}", g.nodes[0].kind) };
    assert_eq!(task.epilogue, [EpilogueOp::Scale { alpha: autotune_ir::Scalar(0.125) }, EpilogueOp::Bias]);
    let names: Vec<&str> = g.nodes[0].inputs.iter().map(|t| g.tensor(*t).name.as_str()).collect();
    assert_eq!(names, ["q", "kt", "mask"]);

    // A mask that differs per batch row is not a bias: the Add stays a plain op.
    let g = M::default()
        .input("q", &[2, 2, 5, 4])
        .input("kt", &[2, 2, 4, 5])
        .input("mask", &[2, 1, 1, 5])
        .node("MatMul", "qk", &["q", "kt"], &["s"], vec![])
        .node("Add", "masked", &["s", "mask"], &["y"], vec![])
        .output("y")
        .load(13)
        .expect("the model loads");
    assert_eq!(g.nodes.len(), 2, "{:?}", g.nodes);
    assert_eq!(g.nodes[1].kind, NodeKind::Plain(PlainOp::Binary(crate::BinaryOp::Add)));
}

#[test]
fn a_mask_added_before_a_last_axis_softmax_is_the_softmax_second_input() {
    let g = M::default()
        .input("scores", &[1, 4, 6, 6])
        .input("mask", &[1, 4, 1, 6])
        .node("Add", "masked", &["mask", "scores"], &["s"], vec![])
        .node("Softmax", "probs", &["s"], &["y"], vec![("axis", A::I(-1))])
        .output("y")
        .load(13)
        .expect("the model loads");
    assert_eq!(g.nodes.len(), 1, "{:?}", g.nodes);
    assert_eq!(g.nodes[0].kind, NodeKind::Plain(PlainOp::Softmax { axis: 3, log: false, coerce_2d: false }));
    let names: Vec<&str> = g.nodes[0].inputs.iter().map(|t| g.tensor(*t).name.as_str()).collect();
    assert_eq!(names, ["scores", "mask"]);

    // Along another axis, or with a mask that is not full along the last one, the Add stays.
    for (axis, mask) in [(2, [1usize, 4, 1, 6]), (3, [1, 4, 6, 1])] {
        let g = M::default()
            .input("scores", &[1, 4, 6, 6])
            .input("mask", &mask)
            .node("Add", "masked", &["scores", "mask"], &["s"], vec![])
            .node("Softmax", "probs", &["s"], &["y"], vec![("axis", A::I(axis))])
            .output("y")
            .load(13)
            .expect("the model loads");
        assert_eq!(g.nodes.len(), 2, "axis {axis}, mask {mask:?}");
    }
}

#[test]
fn a_border_goes_where_every_reader_is_a_conv_and_is_as_wide_as_their_widest_padding() {
    let conv = |m: M, name: &str, x: &str, k: i64, y: &str| {
        let w = format!("w_{name}");
        m.init(&w, f32t(&[16, 16, k as usize, k as usize], 9, -0.5, 0.5)).node(
            "Conv",
            name,
            &[x, &w],
            &[y],
            vec![("pads", A::Is(vec![k / 2; 4]))],
        )
    };
    let m = M::default().input("x", &[1, 16, 6, 6]);
    // a's output is read by b alone (3×3); b's by c (3×3) and d (5×5); c's by e as its input
    // and its residual (no border: it would need one too).
    let m = conv(m, "a", "x", 1, "ya");
    let m = conv(m, "b", "ya", 3, "yb");
    let m = conv(m, "c", "yb", 3, "yc");
    let m = conv(m, "d", "yb", 5, "yd");
    let m = conv(m, "e", "yc", 3, "ye").node("Add", "add", &["ye", "yc"], &["y"], vec![]);
    let m = conv(m, "f", "y", 1, "z");
    let mut g = m.output("z").output("yd").load(13).expect("the model loads");
    assert_eq!(g.add_halos(), 0, "NCHW tensors take no border");
    let (blocked, bordered) = g.lay_out(16);
    assert_eq!(blocked, 4, "a's, b's, c's and e's outputs");
    assert_eq!(bordered, 2, "a's and b's outputs; c's is a residual too");
    let halos: Vec<(String, Halo)> = g
        .nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::Kernel(t) => Some((n.name.clone(), t.halo)),
            NodeKind::Plain(_) => None,
        })
        .collect();
    let halo_of = |name: &str| halos.iter().find(|(n, _)| n == name).map(|(_, h)| *h).expect(name);
    assert_eq!(halo_of("a"), Halo { input: [0; 4], output: [1; 4] });
    // b's readers pad 1 (c) and 2 (d): its border is 2 wide, and c reads the window inside.
    assert_eq!(halo_of("b"), Halo { input: [1; 4], output: [2; 4] });
    assert_eq!(halo_of("c"), Halo { input: [2; 4], output: [0; 4] });
    assert_eq!(halo_of("d"), Halo { input: [2; 4], output: [0; 4] });
    for name in ["e", "f"] {
        assert!(halo_of(name).is_none(), "{name}: {halos:?}");
    }
    for node in &g.nodes {
        if let NodeKind::Kernel(task) = &node.kind {
            task.validate().unwrap_or_else(|e| panic!("{}: {e}", node.name));
            assert_eq!(task.outputs()[0].len(), g.tensor(node.outputs[0]).len(), "{}", node.name);
            assert_eq!(task.inputs()[0].len(), g.tensor(node.inputs[0]).len(), "{}", node.name);
        }
    }
    assert_eq!(g.tensor(g.nodes[0].outputs[0]).shape, vec![1, 16, 8, 8], "the buffer's shape");
}
