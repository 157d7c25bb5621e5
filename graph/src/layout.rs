//! Channel-blocked activations between convolutions, chosen for the whole graph.
//!
//! A conv's output is kept in channel blocks (NCHW{b}c, [`ChannelBlocks`]) when every node that
//! reads it is a conv that can take it so: as its input, or as the residual of a conv whose own
//! output is blocked too. Nothing else ever sees a blocked tensor — plain ops, poolings, Concat
//! and the model's outputs read NCHW — so the graph needs no layout conversions at all: a chain
//! of convolutions (a ResNet's bottlenecks) passes blocks from one to the next, and the chain's
//! first conv reads NCHW and its last one writes NCHW.

use crate::graph::{Graph, NodeKind, TensorId};
use autotune_ir::{ChannelBlocks, Conv2dSpec, Op, Task};
use std::collections::BTreeSet;

impl Graph {
    /// Keeps conv outputs in channel blocks of `block` where every reader can take them (see
    /// the module doc) and sets each conv task's [`ChannelBlocks`]; returns how many tensors are
    /// blocked. `block` should be the target's vector width (the CPU spaces store an output
    /// block a vector at a time); 1 changes nothing.
    pub fn block_channels(&mut self, block: usize) -> usize {
        if block <= 1 {
            return 0;
        }
        let conv_of = |task: &Task| match &task.op {
            Op::Conv2d(c) if c.groups == 1 && task.layout.is_plain() => Some(*c),
            _ => None,
        };
        let residual_slot = |task: &Task| task.inputs().iter().position(|spec| spec.name == "residual");
        let consumers = self.consumers();
        let outputs: BTreeSet<TensorId> = self.outputs.iter().map(|o| o.tensor).collect();
        // Every reader a conv that takes a blocked input (whole blocks of input channels, and a
        // vector's worth of output channels) or a blocked residual.
        let readable = |t: TensorId| {
            !consumers[t.0].is_empty()
                && consumers[t.0].iter().all(|&reader| {
                    let node = &self.nodes[reader];
                    let Some(task) = node.task() else { return false };
                    let Some(c) = conv_of(task) else { return false };
                    let slots: Vec<usize> = node
                        .inputs
                        .iter()
                        .enumerate()
                        .filter(|(_, &i)| i == t)
                        .map(|(slot, _)| slot)
                        .collect();
                    slots.iter().all(|&slot| {
                        (slot == 0 && c.c.is_multiple_of(block) && c.o >= block) || Some(slot) == residual_slot(task)
                    })
                })
        };
        let mut blocked: BTreeSet<TensorId> = self
            .nodes
            .iter()
            .filter_map(|node| {
                let c: Conv2dSpec = conv_of(node.task()?)?;
                let out = node.outputs[0];
                (c.o.is_multiple_of(block) && !outputs.contains(&out) && readable(out)).then_some(out)
            })
            .collect();
        // A residual is in its reader's output layout: where only one of the two is blocked,
        // neither is, until nothing changes.
        loop {
            let before = blocked.len();
            for node in &self.nodes {
                let Some(slot) = node.task().and_then(residual_slot) else { continue };
                let (residual, out) = (node.inputs[slot], node.outputs[0]);
                if blocked.contains(&residual) != blocked.contains(&out) {
                    blocked.remove(&residual);
                    blocked.remove(&out);
                }
            }
            if blocked.len() == before {
                break;
            }
        }
        for node in &mut self.nodes {
            let (input, output) = (node.inputs[0], node.outputs[0]);
            if let NodeKind::Kernel(task) = &mut node.kind {
                if conv_of(task).is_some() {
                    let side = |t: &TensorId| if blocked.contains(t) { block } else { 1 };
                    task.layout = ChannelBlocks { input: side(&input), output: side(&output) };
                }
            }
        }
        blocked.len()
    }
}
