"""A small BERT-like transformer encoder as ONNX, built with the onnx package (no download).

Imported by tests/onnx_model_data.py (`encoder` command). The graph is what exporters emit for
BERT-style models, in both of the forms they use:
  - embeddings: Gather (word table, by `input_ids`) + a position table sliced to the sequence
    length (Shape / Gather / Slice) + LayerNormalization;
  - mask: Equal(attention_mask, 0) → Where(…, -10000, 0), Unsqueeze'd to [batch, 1, 1, seq] and
    broadcast (Expand) over the heads;
  - attention: one QKV MatMul + bias, Split into Q, K, V, Reshape [0, 0, heads, head] and
    Transpose (K to [b, h, d, s]), MatMul, scale, + mask, Softmax on the last axis, MatMul,
    Transpose / Reshape back, output projection + bias + residual;
  - normalisation: LayerNormalization in even layers, the decomposed
    ReduceMean / Sub / Pow / ReduceMean / Add / Sqrt / Div / Mul / Add form in odd layers;
  - feed-forward: MatMul + bias, Gelu in the Erf form (even layers) or the tanh form (odd
    layers), MatMul + bias + residual.
Batch and sequence are symbolic (`batch`, `seq`) unless fixed; weights are seeded random normal
(std 0.02, as BERT initialises them), biases and LayerNorm affine parameters too, so no term is
trivial.
"""

import math

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def build(layers=2, hidden=256, heads=4, ffn=None, vocab=1000, max_pos=512, seed=0, batch=None, seq=None):
    ffn = ffn or 4 * hidden
    assert hidden % heads == 0
    head = hidden // heads
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    counter = [0]

    def name(base):
        counter[0] += 1
        return f"{base}_{counter[0]}"

    def const(base, array):
        n = name(base)
        inits.append(numpy_helper.from_array(np.asarray(array), n))
        return n

    def weight(base, shape, std=0.02, mean=0.0):
        return const(base, (mean + std * rng.standard_normal(shape)).astype(np.float32))

    def node(op, inputs, n_out=1, **attrs):
        outs = [name(op.lower()) for _ in range(n_out)]
        nodes.append(helper.make_node(op, inputs, outs, name=name(op), **attrs))
        return outs[0] if n_out == 1 else outs

    def scalar(base, v):
        return const(base, np.array(v, dtype=np.float32))

    def ints(base, v):
        return const(base, np.array(v, dtype=np.int64))

    def layer_norm(x, decomposed):
        gamma = weight("ln_gamma", [hidden], std=0.1, mean=1.0)
        beta = weight("ln_beta", [hidden], std=0.1)
        if not decomposed:
            return node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-12)
        axes = ints("axes", [-1])
        mean = node("ReduceMean", [x, axes], keepdims=1)
        centred = node("Sub", [x, mean])
        var = node("ReduceMean", [node("Pow", [centred, scalar("two", 2.0)]), axes], keepdims=1)
        std = node("Sqrt", [node("Add", [var, scalar("eps", 1e-12)])])
        return node("Add", [node("Mul", [node("Div", [centred, std]), gamma]), beta])

    def gelu(x, tanh_form):
        if not tanh_form:
            inner = node("Erf", [node("Div", [x, scalar("sqrt2", math.sqrt(2.0))])])
            return node("Mul", [node("Mul", [x, node("Add", [inner, scalar("one", 1.0)])]), scalar("half", 0.5)])
        cube = node("Pow", [x, scalar("three", 3.0)])
        inner = node("Mul", [node("Add", [x, node("Mul", [cube, scalar("c", 0.044715)])]),
                             scalar("k", math.sqrt(2.0 / math.pi))])
        return node("Mul", [node("Mul", [x, scalar("half", 0.5)]),
                            node("Add", [node("Tanh", [inner]), scalar("one", 1.0)])])

    def dense(x, n_in, n_out):
        return node("Add", [node("MatMul", [x, weight("w", [n_in, n_out])]), weight("b", [n_out])])

    # Embeddings.
    words = node("Gather", [weight("word_embeddings", [vocab, hidden]), "input_ids"], axis=0)
    seq_len = node("Gather", [node("Shape", ["input_ids"]), ints("one_idx", [1])], axis=0)
    positions = node("Slice", [weight("position_embeddings", [max_pos, hidden]), ints("zero", [0]), seq_len,
                               ints("axis0", [0])])
    x = layer_norm(node("Add", [words, positions]), decomposed=False)

    # Additive mask [batch, heads, 1, seq]: 0 where attended, -10000 where masked.
    masked = node("Equal", ["attention_mask", const("zero_i64", np.array(0, dtype=np.int64))])
    bias4 = node("Unsqueeze", [node("Where", [masked, scalar("neg", -10000.0), scalar("zero_f", 0.0)]),
                               ints("axes12", [1, 2])])
    shape4 = node("Concat", [node("Gather", [node("Shape", ["input_ids"]), ints("zero_idx", [0])], axis=0),
                             ints("heads", [heads, 1]), seq_len], axis=0)
    mask = node("Expand", [bias4, shape4])

    for layer in range(layers):
        odd = layer % 2 == 1
        qkv = dense(x, hidden, 3 * hidden)
        q, k, v = node("Split", [qkv, ints("split", [hidden] * 3)], n_out=3, axis=-1)
        to_heads = ints("to_heads", [0, 0, heads, head])
        q = node("Transpose", [node("Reshape", [q, to_heads])], perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [k, to_heads])], perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [v, to_heads])], perm=[0, 2, 1, 3])
        scores = node("Div", [node("MatMul", [q, k]), scalar("scale", math.sqrt(head))])
        probs = node("Softmax", [node("Add", [scores, mask])], axis=-1)
        context = node("Transpose", [node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        context = node("Reshape", [context, ints("to_hidden", [0, 0, hidden])])
        x = layer_norm(node("Add", [dense(context, hidden, hidden), x]), decomposed=odd)
        h = gelu(dense(x, hidden, ffn), tanh_form=odd)
        x = layer_norm(node("Add", [dense(h, ffn, hidden), x]), decomposed=odd)

    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))
    dims = [batch or "batch", seq or "seq"]
    graph = helper.make_graph(
        nodes,
        f"encoder_l{layers}_h{hidden}",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, dims),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dims)],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, dims + [hidden])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def inputs(batch, seq, vocab=1000, seed=0):
    """Token ids and a mask that leaves the last quarter of every row but the first padded."""
    rng = np.random.default_rng(seed + 1)
    ids = rng.integers(0, vocab, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    for b in range(1, batch):
        mask[b, seq - seq // 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}
