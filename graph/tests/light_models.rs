//! Every light model of the onnx package's backend test data loads, infers the output shape the
//! model declares, and gives a plausible list of tasks. Skips, saying why, when the onnx Python
//! package (and so its test data) is missing.

use autotune_graph::{extract_tasks, load, Graph, GraphSummary, LoadConfig, NodeKind, PlainOp};
use autotune_ir::{ChannelBlocks, EpilogueOp, Halo, Op};
use std::path::PathBuf;
use std::process::Command;

/// `onnx/backend/test/data/light` of the installed onnx package, or why it is not there.
fn light_dir() -> Result<PathBuf, String> {
    let out = Command::new("python3")
        .args(["-c", "import onnx, os; print(os.path.dirname(onnx.__file__))"])
        .output()
        .map_err(|e| format!("cannot run python3 ({e})"))?;
    if !out.status.success() {
        return Err("the onnx Python package is not installed (pip install -r requirements-dev.txt)".into());
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("backend/test/data/light");
    if !dir.join("light_resnet50.onnx").exists() {
        return Err(format!("{} has no light models", dir.display()));
    }
    Ok(dir)
}

/// Loads `light_{name}.onnx`, prints its summary and tasks, and checks the graph's invariants and
/// that its output has `out_shape` (what the model declares; `load` also checks the declaration).
fn load_light(name: &str, out_shape: &[usize]) -> Option<Graph> {
    let dir = match light_dir() {
        Ok(d) => d,
        Err(why) => {
            println!("SKIPPED: {why}");
            return None;
        }
    };
    let path = dir.join(format!("light_{name}.onnx"));
    let graph = load(&path, &LoadConfig::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let s = GraphSummary::of(&graph);
    println!(
        "{name}: {} ONNX nodes -> {} nodes ({} kernels, {} unique tasks, {:.2} GFLOP), plain ops {:?}",
        s.n_onnx_nodes,
        s.n_nodes,
        s.n_kernels,
        s.n_unique_tasks,
        s.kernel_flops / 1e9,
        s.plain_ops
    );
    for (task, weight) in extract_tasks(&graph) {
        println!("  {weight:>3} × {}", task.description());
    }
    check_graph(&graph);
    assert_eq!(graph.outputs.len(), 1);
    assert_eq!(graph.tensor(graph.outputs[0].tensor).shape, out_shape, "{name}");
    Some(graph)
}

/// Structural invariants every loaded graph keeps.
fn check_graph(g: &Graph) {
    let mut defined: Vec<bool> = g.tensors.iter().map(|t| t.is_constant()).collect();
    for &i in &g.inputs {
        defined[i.0] = true;
    }
    for node in &g.nodes {
        for t in &node.inputs {
            assert!(defined[t.0], "{} reads {} before it is computed", node.name, g.tensor(*t).name);
        }
        for t in &node.outputs {
            assert!(!defined[t.0], "{} writes {} twice", node.name, g.tensor(*t).name);
            defined[t.0] = true;
        }
        if let NodeKind::Kernel(task) = &node.kind {
            task.validate().unwrap_or_else(|e| panic!("{}: {e}", node.name));
            let specs = task.inputs();
            assert_eq!(specs.len(), node.inputs.len(), "{}", node.name);
            for (spec, t) in specs.iter().zip(&node.inputs) {
                assert_eq!(spec.len(), g.tensor(*t).len(), "{} input {}", node.name, spec.name);
            }
            for i in task.constant_inputs() {
                assert!(g.tensor(node.inputs[i]).is_constant(), "{} input {i} is not constant", node.name);
            }
            assert_eq!(task.outputs()[0].len(), g.tensor(node.outputs[0]).len(), "{}", node.name);
        }
    }
    for o in &g.outputs {
        assert!(defined[o.tensor.0], "output {} is never computed", o.name);
    }
}

fn count_plain(g: &Graph, f: impl Fn(&PlainOp) -> bool) -> usize {
    g.nodes.iter().filter(|n| n.plain().is_some_and(&f)).count()
}

#[test]
fn resnet50() {
    let Some(g) = load_light("resnet50", &[1, 1000]) else { return };
    let tasks = extract_tasks(&g);
    let convs: Vec<_> = g.kernels().filter(|(_, _, t)| matches!(t.op, Op::Conv2d(_))).collect();
    assert_eq!(convs.len(), 53);
    // Every batch-norm is folded; 16 residual adds and 49 relus are fused.
    assert_eq!(count_plain(&g, |op| matches!(op, PlainOp::BatchNorm { .. })), 0);
    assert_eq!(convs.iter().filter(|(_, _, t)| t.epilogue.contains(&EpilogueOp::Add)).count(), 16);
    assert!(convs.iter().all(|(_, _, t)| t.epilogue.first() == Some(&EpilogueOp::Bias)));
    let dense: Vec<_> = tasks.iter().filter(|(t, _)| matches!(t.op, Op::BatchMatmul(_))).collect();
    assert_eq!(dense.len(), 1);
    let Op::BatchMatmul(d) = dense[0].0.op else { unreachable!() };
    assert_eq!((d.m, d.n, d.k, d.b_constant), (1, 1000, 2048, true));
    assert!(g.nodes.len() < 70, "{} nodes", g.nodes.len());

    // Channel blocks: from the stem's output to the last bottleneck everything is blocked — the
    // max pool, every conv's input and output, the residual chain — and the global pool (one
    // position per channel) hands NCHW-identical bytes to the classifier.
    let mut blocked = g.clone();
    assert!(blocked.block_channels(16) >= 53);
    check_graph(&blocked);
    let layouts: Vec<(Op, ChannelBlocks)> =
        blocked.kernels().map(|(_, _, t)| (t.op.clone(), t.layout)).collect();
    assert_eq!(layouts[0].1, ChannelBlocks { input: 1, output: 16 }, "the stem reads the NCHW image");
    let inner = ChannelBlocks { input: 16, output: 16 };
    assert!(layouts[1..layouts.len() - 1].iter().all(|(_, l)| *l == inner), "{layouts:?}");
    assert!(matches!(layouts.last(), Some((Op::BatchMatmul(_), l)) if l.is_plain()));

    // Zero borders: each bottleneck's 1×1 conv writes its output inside the border of one
    // position that its 3×3 conv reads (the stem's 7×7 conv reads the image, no conv's output).
    assert_eq!(blocked.add_halos(), 16);
    check_graph(&blocked);
    let convs: Vec<(usize, Halo)> = blocked
        .kernels()
        .filter_map(|(_, _, t)| match t.op {
            Op::Conv2d(c) => Some((c.kh, t.halo)),
            _ => None,
        })
        .collect();
    let read_in_place = convs.iter().filter(|(k, h)| *k == 3 && h.input == [1; 4]).count();
    let written_bordered = convs.iter().filter(|(k, h)| *k == 1 && h.output == [1; 4]).count();
    assert_eq!((read_in_place, written_bordered), (16, 16), "{convs:?}");
    assert_eq!(convs.iter().filter(|(_, h)| !h.is_none()).count(), 32, "{convs:?}");
    assert_eq!(blocked.add_halos(), 0, "bordering twice changes nothing more");
    let mut unblocked = g.clone();
    assert_eq!(unblocked.add_halos(), 0, "only channel blocks take a border");
}

#[test]
fn squeezenet() {
    let Some(g) = load_light("squeezenet", &[1, 1000, 1, 1]) else { return };
    let convs = g.kernels().filter(|(_, _, t)| matches!(t.op, Op::Conv2d(_))).count();
    assert_eq!(convs, 26);
    assert!(g.kernels().all(
        |(_, _, t)| !matches!(t.op, Op::Conv2d(_)) || t.epilogue == [EpilogueOp::Bias, EpilogueOp::Relu]
    ));
    // Each fire module's squeeze conv writes inside the border its 3×3 expand conv reads; its
    // 1×1 expand conv reads the plane inside the same buffer.
    let mut laid_out = g.clone();
    let (_, bordered) = laid_out.lay_out(16);
    check_graph(&laid_out);
    assert_eq!(bordered, 8);
    let reading_a_border: Vec<usize> = laid_out
        .kernels()
        .filter_map(|(_, _, t)| match t.op {
            Op::Conv2d(c) if t.halo.input == [1; 4] => Some(c.kh),
            _ => None,
        })
        .collect();
    assert_eq!(reading_a_border.iter().filter(|&&k| k == 1).count(), 8, "{reading_a_border:?}");
    assert_eq!(reading_a_border.iter().filter(|&&k| k == 3).count(), 8, "{reading_a_border:?}");
}

/// Kernels by op name (`conv2d`, `batch_matmul`, `max_pool`, `avg_pool`).
fn kernel_counts(g: &Graph) -> std::collections::BTreeMap<&'static str, usize> {
    let mut m = std::collections::BTreeMap::new();
    for (_, _, t) in g.kernels() {
        *m.entry(t.op_name()).or_insert(0) += 1;
    }
    m
}

fn counts(pairs: &[(&'static str, usize)]) -> std::collections::BTreeMap<&'static str, usize> {
    pairs.iter().copied().collect()
}

#[test]
fn vgg19() {
    let Some(g) = load_light("vgg19", &[1, 1000]) else { return };
    assert_eq!(kernel_counts(&g), counts(&[("batch_matmul", 3), ("conv2d", 16), ("max_pool", 5)]));
    // fc6 and fc7 take their relu; fc8 feeds the softmax.
    let relus = g.kernels().filter(|(_, _, t)| t.epilogue.contains(&EpilogueOp::Relu)).count();
    assert_eq!(relus, 18);
}

#[test]
fn bvlc_alexnet() {
    let Some(g) = load_light("bvlc_alexnet", &[1, 1000]) else { return };
    assert_eq!(kernel_counts(&g), counts(&[("batch_matmul", 3), ("conv2d", 5), ("max_pool", 3)]));
    assert_eq!(count_plain(&g, |op| matches!(op, PlainOp::Lrn { .. })), 2);
}

#[test]
fn zfnet512() {
    let Some(g) = load_light("zfnet512", &[1, 1000]) else { return };
    assert_eq!(kernel_counts(&g), counts(&[("batch_matmul", 3), ("conv2d", 5), ("max_pool", 3)]));
    assert_eq!(count_plain(&g, |op| matches!(op, PlainOp::Lrn { .. })), 2);
}

#[test]
fn inception_v1() {
    let Some(g) = load_light("inception_v1", &[1, 1000]) else { return };
    assert_eq!(
        kernel_counts(&g),
        counts(&[("avg_pool", 1), ("batch_matmul", 1), ("conv2d", 57), ("max_pool", 13)])
    );
    assert_eq!(count_plain(&g, |op| matches!(op, PlainOp::Concat { .. })), 9);
    // Inception modules: convs, pools and channel Concats of whole blocks pass blocks on.
    let mut blocked = g.clone();
    let n = blocked.block_channels(16);
    check_graph(&blocked);
    let blocked_kernels = blocked.kernels().filter(|(_, _, t)| !t.layout.is_plain()).count();
    assert!(n > 60 && blocked_kernels > 60, "{n} tensors, {blocked_kernels} kernels blocked");
    // Each module's 3×3 and 5×5 reductions write inside the border their conv reads, and so does
    // the stem's 1×1 reduction — but for 4b's and 4c's 5×5 reductions, whose 24 channels are not
    // blocked: 9 · 2 + 1 − 2.
    let bordered = blocked.add_halos();
    check_graph(&blocked);
    assert_eq!(bordered, 17);
}

#[test]
fn inception_v2() {
    let Some(g) = load_light("inception_v2", &[1, 1000]) else { return };
    assert_eq!(
        kernel_counts(&g),
        counts(&[("avg_pool", 8), ("batch_matmul", 1), ("conv2d", 69), ("max_pool", 5)])
    );
    // Every conv absorbs its batch-norm, scale layer (Mul, Add) and relu.
    assert_eq!(count_plain(&g, |op| matches!(op, PlainOp::BatchNorm { .. } | PlainOp::Binary(_))), 0);
    let mut convs = g.kernels().filter(|(_, _, t)| matches!(t.op, Op::Conv2d(_)));
    assert!(convs.all(|(_, _, t)| t.epilogue == [EpilogueOp::Bias, EpilogueOp::Relu]));
}

#[test]
fn densenet121() {
    let Some(g) = load_light("densenet121", &[1, 1000, 1, 1]) else { return };
    assert_eq!(kernel_counts(&g), counts(&[("avg_pool", 4), ("conv2d", 121), ("max_pool", 1)]));
    // Pre-activation batch-norms (after a Concat or pooling) stay plain, with the scale layer
    // (Mul, Add) merged in; the others fold into their conv.
    assert_eq!(count_plain(&g, |op| matches!(op, PlainOp::BatchNorm { .. })), 62);
    assert_eq!(count_plain(&g, |op| matches!(op, PlainOp::Binary(_))), 0);
}

#[test]
fn shufflenet() {
    let Some(g) = load_light("shufflenet", &[1, 1000]) else { return };
    assert_eq!(
        kernel_counts(&g),
        counts(&[("avg_pool", 4), ("batch_matmul", 1), ("conv2d", 49), ("max_pool", 1)])
    );
    // Channel shuffles: Reshape, Transpose, Reshape.
    assert_eq!(count_plain(&g, |op| matches!(op, PlainOp::Transpose { .. })), 16);
    let grouped = g.kernels().filter(|(_, _, t)| matches!(t.op, Op::Conv2d(c) if c.groups > 1)).count();
    assert!(grouped > 30, "{grouped} grouped convs");
    assert_eq!(count_plain(&g, |op| matches!(op, PlainOp::BatchNorm { .. })), 0);
}
