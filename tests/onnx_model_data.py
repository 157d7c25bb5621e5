#!/usr/bin/env python3
"""Test data for tests/e2e_models.rs, made with the onnx package (and onnxruntime).

    python3 tests/onnx_model_data.py dummy-input MODEL.onnx OUT_DIR
        The inputs the ONNX backend test runner feeds a light model:
        `Runner.generate_dummy_data(x, seed=0, random=False)` for every graph input that is not an
        initializer, written as OUT_DIR/input_<i>.pb (named after the input).

    python3 tests/onnx_model_data.py onnxruntime MODEL.onnx DIR
        onnxruntime's outputs for the inputs DIR/input_<i>.pb (in the model's input order), as
        DIR/output_<i>.pb.

    python3 tests/onnx_model_data.py node-cases OUT_DIR
        The ONNX backend node test cases (the onnx wheel ships their generators, not their data),
        written as the backend's own test data: OUT_DIR/node/<case>/model.onnx and
        test_data_set_<i>/{input,output}_<j>.pb. Cases whose inputs or outputs are not tensors
        (sequences, maps, optionals) are left out. Prints the number written.

    python3 tests/onnx_model_data.py randomize MODEL.onnx OUT_DIR [--seed S]
        The model with its constant weights (ConstantOfShape outputs, float initializers) replaced
        by seeded random ones of a sensible scale, as OUT_DIR/model.onnx; random inputs
        (`generate_dummy_data(x, seed=S, random=True)`, uniform in [0, 1)) as input_<i>.pb; and
        onnxruntime's outputs for them as output_<i>.pb. The input of a Softmax that is a model
        output (the logits) becomes one more output. Prints one JSON line describing what was
        randomized.

    python3 tests/onnx_model_data.py encoder OUT_DIR [--layers L] [--hidden H] [--heads A]
                                         [--sizes BxS,...] [--seed S]
        A BERT-like encoder (tests/encoder_model.py) with symbolic batch and sequence dims as
        OUT_DIR/encoder.onnx, and for every size BxS random token ids and a padding mask
        (OUT_DIR/bB_sS/input_<i>.pb) with onnxruntime's outputs for them (output_<i>.pb).

Weights by role (the first node that reads the tensor): Conv / Gemm / MatMul weights are He
initialized (normal, std sqrt(2 / fan_in)); biases and BatchNormalization means are normal with
std 0.1; BatchNormalization scales and variances, and per-channel Mul factors, uniform in
[0.5, 1.5); Add / Sub constants normal with std 0.1. Anything else keeps its value.
"""

import argparse
import collections
import json
import math
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.backend.test.runner import Runner


def graph_inputs(model):
    inits = {t.name for t in model.graph.initializer}
    return [x for x in model.graph.input if x.name not in inits]


def write_tensor(path, array, name):
    with open(path, "wb") as f:
        f.write(numpy_helper.from_array(array, name).SerializeToString())


def dummy_input(args):
    model = onnx.load(args.model)
    os.makedirs(args.out_dir, exist_ok=True)
    for i, x in enumerate(graph_inputs(model)):
        value = Runner.generate_dummy_data(x, seed=0, name=os.path.basename(args.model), random=False)
        write_tensor(os.path.join(args.out_dir, f"input_{i}.pb"), value, x.name)


def run_onnxruntime(model_path, feeds, out_dir, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # no warnings about the unused shape initializers
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    outputs = session.run(None, feeds)
    for i, (info, value) in enumerate(zip(session.get_outputs(), outputs)):
        write_tensor(os.path.join(out_dir, f"output_{i}.pb"), value, info.name)
    return ort.__version__


def onnxruntime_outputs(args):
    model = onnx.load(args.model)
    feeds = {}
    for i, x in enumerate(graph_inputs(model)):
        with open(os.path.join(args.dir, f"input_{i}.pb"), "rb") as f:
            t = onnx.TensorProto()
            t.ParseFromString(f.read())
        feeds[x.name] = numpy_helper.to_array(t)
    run_onnxruntime(args.model, feeds, args.dir, args.threads)


def random_weight(rng, role, shape, node):
    """A random array for a constant read as input `role` of `node`, or None to keep it."""
    op = node.op_type
    size = int(np.prod(shape)) if len(shape) else 1

    def normal(std):
        value = rng.standard_normal(shape, dtype=np.float32)
        value *= np.float32(std)
        return value

    def he(fan_in):
        return normal(math.sqrt(2.0 / max(fan_in, 1)))

    def uniform():
        return rng.random(shape, dtype=np.float32) + np.float32(0.5)

    if op == "Conv":
        return he(size // shape[0]) if role == 1 else normal(0.1) if role == 2 else None
    if op == "Gemm":
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        if role == 1:
            return he(shape[1] if trans_b else shape[0])
        return normal(0.1) if role == 2 else None
    if op == "MatMul" and role == 1 and len(shape) >= 2:
        return he(shape[-2])
    if op == "BatchNormalization":
        return {1: uniform, 2: lambda: normal(0.1), 3: lambda: normal(0.1), 4: uniform}.get(role, lambda: None)()
    if op == "Mul":
        return uniform()
    if op in ("Add", "Sub"):
        return normal(0.1)
    return None


def randomize(args):
    model = onnx.load(args.model)
    g = model.graph
    rng = np.random.default_rng(args.seed)
    readers = collections.defaultdict(list)
    for node in g.node:
        for i, name in enumerate(node.input):
            readers[name].append((node, i))
    known = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    known[node.output[0]] = numpy_helper.to_array(a.t)

    counts = collections.Counter()

    def new_value(name, shape):
        if not readers[name]:
            return None
        node, role = readers[name][0]
        value = random_weight(rng, role, tuple(int(d) for d in shape), node)
        if value is not None:
            counts[f"{node.op_type}[{role}]"] += 1
        return value

    nodes = []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in known:
            fill = [a.t for a in node.attribute if a.name == "value"]
            is_float = not fill or fill[0].data_type == onnx.TensorProto.FLOAT
            value = new_value(node.output[0], known[node.input[0]]) if is_float else None
            if value is not None:
                tensor = numpy_helper.from_array(value, node.output[0])
                nodes.append(helper.make_node("Constant", [], [node.output[0]], value=tensor, name=node.name))
                continue
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    for i, init in enumerate(g.initializer):
        if init.data_type == onnx.TensorProto.FLOAT:
            value = new_value(init.name, init.dims)
            if value is not None:
                g.initializer[i].CopyFrom(numpy_helper.from_array(value, init.name))

    # A softmax output is nearly one-hot (or nearly uniform) for random weights, which says
    # little about the layers before it: expose the softmax's input (the logits) as well.
    outputs = {o.name for o in g.output}
    for node in g.node:
        if node.op_type == "Softmax" and node.output[0] in outputs and node.input[0] not in outputs:
            g.output.append(helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
            counts["exposed logits"] += 1

    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "model.onnx")
    onnx.save(model, path)
    feeds = {}
    for i, x in enumerate(graph_inputs(model)):
        value = Runner.generate_dummy_data(x, seed=args.seed, name="randomized", random=True)
        feeds[x.name] = value
        write_tensor(os.path.join(args.out_dir, f"input_{i}.pb"), value, x.name)
    version = run_onnxruntime(path, feeds, args.out_dir, args.threads)
    print(json.dumps({"randomized": dict(counts), "onnxruntime": version}))


def node_cases(args):
    import warnings

    from onnx.backend.test.case import node as node_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node_tests.collect_testcases(None)
    written = 0
    for case in cases:
        graph = case.model.graph
        values = [v.type for v in list(graph.input) + list(graph.output)]
        if any(not t.HasField("tensor_type") for t in values) or not case.data_sets:
            continue
        out = os.path.join(args.out_dir, "node", case.name)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        for i, (inputs, outputs) in enumerate(case.data_sets):
            d = os.path.join(out, f"test_data_set_{i}")
            os.makedirs(d, exist_ok=True)
            for kind, values, infos in (("input", inputs, graph.input), ("output", outputs, graph.output)):
                for j, value in enumerate(values):
                    tensor = value if isinstance(value, onnx.TensorProto) else numpy_helper.from_array(
                        np.asarray(value), infos[j].name)
                    with open(os.path.join(d, f"{kind}_{j}.pb"), "wb") as f:
                        f.write(tensor.SerializeToString())
        written += 1
    print(written)


def encoder(args):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import encoder_model

    os.makedirs(args.out_dir, exist_ok=True)
    model = encoder_model.build(layers=args.layers, hidden=args.hidden, heads=args.heads, seed=args.seed)
    onnx.checker.check_model(model, full_check=True)
    path = os.path.join(args.out_dir, "encoder.onnx")
    onnx.save(model, path)
    for size in args.sizes.split(","):
        batch, seq = (int(v) for v in size.lower().split("x"))
        out = os.path.join(args.out_dir, f"b{batch}_s{seq}")
        os.makedirs(out, exist_ok=True)
        feeds = encoder_model.inputs(batch, seq, seed=args.seed)
        for i, (name, value) in enumerate(feeds.items()):
            write_tensor(os.path.join(out, f"input_{i}.pb"), value, name)
        run_onnxruntime(path, feeds, out, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dummy-input")
    d.add_argument("model")
    d.add_argument("out_dir")
    o = sub.add_parser("onnxruntime")
    o.add_argument("model")
    o.add_argument("dir")
    o.add_argument("--threads", type=int, default=1)
    nc = sub.add_parser("node-cases")
    nc.add_argument("out_dir")
    r = sub.add_parser("randomize")
    r.add_argument("model")
    r.add_argument("out_dir")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=1)
    e = sub.add_parser("encoder")
    e.add_argument("out_dir")
    e.add_argument("--layers", type=int, default=2)
    e.add_argument("--hidden", type=int, default=256)
    e.add_argument("--heads", type=int, default=4)
    e.add_argument("--sizes", default="1x128")
    e.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    {"dummy-input": dummy_input, "onnxruntime": onnxruntime_outputs, "randomize": randomize,
     "node-cases": node_cases, "encoder": encoder}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
