//! Channel-blocked activations, chosen for the whole graph.
//!
//! A tensor is kept in channel blocks (NCHW{b}c, [`ChannelBlocks`]) when every node that reads it
//! can take it so — a conv (as its input, or as the residual of a conv whose output is blocked
//! too), a pooling, a channel Concat of whole blocks — and its producer can write it so. Some
//! tensors must share a layout: a residual and its conv's output, a pooling's input and output,
//! a Concat's inputs and output; such a group is blocked only if all of it can be. Everything
//! else — plain ops, the model's inputs and outputs — sees NCHW, so the graph holds no layout
//! conversions: a ResNet passes blocks from its stem's output to its last bottleneck.
//!
//! A blocked tensor that only convs read, some of them padded, carries the widest of their
//! paddings as a zero border (a [`Halo`]) that its producing conv writes, so no conv copies its
//! input into a padded scratch per call: a ResNet bottleneck's 1×1 conv writes its output inside
//! the border its 3×3 conv reads, a fire module's squeeze conv inside the border its 3×3 expand
//! conv reads (its 1×1 expand conv reads the plane inside).

use crate::graph::{Graph, NodeKind, TensorId};
use crate::plain::PlainOp;
use autotune_ir::{ChannelBlocks, EpilogueOp, Halo, Op, Task};

/// Tensors that must share a layout, as a union-find forest over tensor ids.
struct Groups(Vec<usize>);

impl Groups {
    fn root(&mut self, t: usize) -> usize {
        let mut r = t;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut t = t;
        while self.0[t] != r {
            (self.0[t], t) = (r, self.0[t]);
        }
        r
    }
    fn join(&mut self, a: TensorId, b: TensorId) {
        let (ra, rb) = (self.root(a.0), self.root(b.0));
        self.0[ra] = rb;
    }
}

/// Whether a kernel node may read and write channel blocks.
fn blockable(task: &Task) -> bool {
    task.layout.is_plain()
        && match &task.op {
            Op::Conv2d(c) => c.groups == 1,
            Op::Pool2d(_) => true,
            _ => false,
        }
}

impl Graph {
    /// Keeps tensors in channel blocks of `block` wherever the module doc allows and sets each
    /// conv's and pooling's [`ChannelBlocks`]; returns how many tensors are blocked. `block`
    /// must be a multiple of the target's vector width (the CPU spaces load and store a block
    /// whole vectors at a time): [`ChannelBlocks::cpu_block`] on CPUs; 1 changes nothing.
    pub fn block_channels(&mut self, block: usize) -> usize {
        if block <= 1 {
            return 0;
        }
        let channels = |t: TensorId| {
            let shape = &self.tensors[t.0].shape;
            (shape.len() == 4).then(|| shape[1])
        };
        let whole_blocks = |t: TensorId| channels(t).is_some_and(|c| c.is_multiple_of(block));
        let residual_slot = |task: &Task| task.inputs().iter().position(|spec| spec.name == "residual");
        let mut groups = Groups((0..self.tensors.len()).collect());
        // Per tensor: whether its producer may write it blocked and every reader take it so.
        let mut allowed = vec![true; self.tensors.len()];
        let mut produced = vec![false; self.tensors.len()];
        for node in &self.nodes {
            for (slot, &t) in node.inputs.iter().enumerate() {
                let takes = match &node.kind {
                    NodeKind::Kernel(task) if blockable(task) => match &task.op {
                        Op::Conv2d(c) if slot == 0 => c.c.is_multiple_of(block) && c.o >= block,
                        Op::Conv2d(_) => Some(slot) == residual_slot(task),
                        Op::Pool2d(p) => p.c.is_multiple_of(block),
                        _ => false,
                    },
                    NodeKind::Plain(PlainOp::Concat { axis: 1 }) => {
                        node.inputs.iter().all(|&i| whole_blocks(i))
                    }
                    _ => false,
                };
                allowed[t.0] &= takes;
            }
            let out = node.outputs[0];
            match &node.kind {
                NodeKind::Kernel(task) if blockable(task) => {
                    produced[out.0] = match &task.op {
                        Op::Conv2d(c) => c.o.is_multiple_of(block),
                        _ => true,
                    };
                    // A pooling writes its input's layout — except where its output is one position
                    // per channel (a global pool), whose blocked and NCHW layouts are the same
                    // bytes: its readers then see NCHW, and ResNet's chain of residuals (which
                    // ends in a global average pool) stays blocked.
                    if let Op::Pool2d(p) = task.op {
                        if p.out_h() * p.out_w() > 1 {
                            groups.join(node.inputs[0], out);
                        }
                    }
                    if let Some(slot) = residual_slot(task) {
                        groups.join(node.inputs[slot], out);
                    }
                }
                NodeKind::Plain(PlainOp::Concat { axis: 1 }) if whole_blocks(out) => {
                    produced[out.0] = true;
                    for &i in &node.inputs {
                        groups.join(i, out);
                    }
                }
                _ => {}
            }
        }
        for output in &self.outputs {
            allowed[output.tensor.0] = false;
        }
        // A group is blocked when every member is.
        let mut group_ok = vec![true; self.tensors.len()];
        for t in 0..self.tensors.len() {
            let root = groups.root(t);
            group_ok[root] &= allowed[t] && produced[t];
        }
        let blocked: Vec<bool> = (0..self.tensors.len()).map(|t| group_ok[groups.root(t)]).collect();
        for node in &mut self.nodes {
            let (input, output) = (node.inputs[0], node.outputs[0]);
            if let NodeKind::Kernel(task) = &mut node.kind {
                if blockable(task) {
                    let side = |t: TensorId| if blocked[t.0] { block } else { 1 };
                    task.layout = match task.op {
                        Op::Pool2d(_) => ChannelBlocks { input: side(input), output: side(input) },
                        _ => ChannelBlocks { input: side(input), output: side(output) },
                    };
                }
            }
        }
        blocked.iter().filter(|&&b| b).count()
    }
}

impl Graph {
    /// Channel blocks ([`Graph::block_channels`]) and then zero borders ([`Graph::add_halos`]):
    /// the layout a CPU plan runs and tunes in. Returns (blocked tensors, bordered tensors).
    pub fn lay_out(&mut self, block: usize) -> (usize, usize) {
        let blocked = self.block_channels(block);
        (blocked, self.add_halos())
    }

    /// Gives a zero border to every tensor that a channel-blocked conv with no residual writes
    /// and only channel-blocked convs read, as their input, some of them padded — not a model
    /// output: on each side the widest of their paddings. Sets the producer's and readers'
    /// [`Halo`]s and the tensor's shape (its buffer's: the border included); returns how many
    /// tensors got one. Call after [`Graph::block_channels`]; calling it again changes nothing.
    pub fn add_halos(&mut self) -> usize {
        let mut producer = vec![None; self.tensors.len()];
        let mut readers: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.tensors.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for &t in &node.outputs {
                producer[t.0] = Some(i);
            }
            for (slot, &t) in node.inputs.iter().enumerate() {
                readers[t.0].push((i, slot));
            }
        }
        let is_output: Vec<bool> = {
            let mut v = vec![false; self.tensors.len()];
            for output in &self.outputs {
                v[output.tensor.0] = true;
            }
            v
        };
        let conv = |node: usize| match &self.nodes[node].kind {
            NodeKind::Kernel(task @ Task { op: Op::Conv2d(c), .. }) => Some((task, *c)),
            _ => None,
        };
        let mut bordered = Vec::new();
        for t in 0..self.tensors.len() {
            let Some(writer) = producer[t] else { continue };
            let Some((task, _)) = conv(writer) else { continue };
            let writes_bordered = task.layout.output > 1
                && task.halo.output == [0; 4]
                && !task.epilogue.contains(&EpilogueOp::Add);
            if !writes_bordered || is_output[t] || readers[t].is_empty() {
                continue;
            }
            let pads: Option<Vec<[usize; 4]>> = readers[t]
                .iter()
                .map(|&(node, slot)| match conv(node) {
                    Some((task, c)) if slot == 0 && task.layout.input > 1 && task.halo.input == [0; 4] => {
                        Some(c.pad)
                    }
                    _ => None,
                })
                .collect();
            let Some(pads) = pads else { continue };
            // The widest padding on each side: a reader that needs less reads its window.
            let border: [usize; 4] =
                std::array::from_fn(|side| pads.iter().map(|p| p[side]).max().unwrap_or(0));
            if border != [0; 4] {
                bordered.push((t, writer, border));
            }
        }
        for &(t, writer, border) in &bordered {
            let set = |kind: &mut NodeKind, input: bool| {
                if let NodeKind::Kernel(task) = kind {
                    let mut halo = task.halo;
                    if input {
                        halo.input = border;
                    } else {
                        halo.output = border;
                    }
                    *task = task.clone().with_halo(halo);
                }
            };
            set(&mut self.nodes[writer].kind, false);
            for &(reader, _) in &readers[t] {
                set(&mut self.nodes[reader].kind, true);
            }
            let shape = &mut self.tensors[t].shape;
            if let [n, c, h, w] = shape[..] {
                *shape = Halo::bordered([n, c, h, w], border).to_vec();
            }
        }
        bordered.len()
    }
}
