//! Task extraction: the distinct kernels of a graph with how often each runs.

use crate::graph::{Graph, NodeKind};
use autotune_ir::{Task, TaskKey};
use std::collections::{BTreeMap, HashMap};

/// The distinct kernel tasks of `graph`, deduplicated by [`TaskKey`], with their weight (how many
/// nodes run it), in order of first occurrence.
pub fn extract_tasks(graph: &Graph) -> Vec<(Task, usize)> {
    let mut index: HashMap<TaskKey, usize> = HashMap::new();
    let mut tasks: Vec<(Task, usize)> = Vec::new();
    for (_, _, task) in graph.kernels() {
        match index.get(&task.key()) {
            Some(&i) => tasks[i].1 += 1,
            None => {
                index.insert(task.key(), tasks.len());
                tasks.push((task.clone(), 1));
            }
        }
    }
    tasks
}

/// Counts that describe a loaded graph, for reports and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphSummary {
    pub n_onnx_nodes: usize,
    pub n_nodes: usize,
    pub n_kernels: usize,
    pub n_unique_tasks: usize,
    /// Σ weight × FLOPs over the tasks.
    pub kernel_flops: f64,
    /// Plain nodes by op name.
    pub plain_ops: BTreeMap<&'static str, usize>,
}

impl GraphSummary {
    pub fn of(graph: &Graph) -> GraphSummary {
        let tasks = extract_tasks(graph);
        let mut plain_ops = BTreeMap::new();
        for node in &graph.nodes {
            if let NodeKind::Plain(op) = &node.kind {
                *plain_ops.entry(op.name()).or_default() += 1;
            }
        }
        GraphSummary {
            n_onnx_nodes: graph.n_onnx_nodes,
            n_nodes: graph.nodes.len(),
            n_kernels: graph.kernels().count(),
            n_unique_tasks: tasks.len(),
            kernel_flops: tasks.iter().map(|(t, w)| t.flops() * *w as f64).sum(),
            plain_ops,
        }
    }
}
