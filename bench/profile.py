#!/usr/bin/env python3
"""Where a model's time goes, in autotune and in onnxruntime, side by side in one run.

    cargo build --release && python3 bench/profile.py MODEL.onnx [--db LOG] [--threads 1] [--repeat 20]

Runs `autotune run MODEL --profile --json` (every node timed over --repeat runs, after as many
untimed ones) and onnxruntime with `enable_profiling` on the same model (sequential, all graph
optimizations, --threads intra-op threads, one warm-up then --repeat runs), each in a fresh
process. For each side it prints the measured latency, the sum of its nodes' median times and
how much of the latency that accounts for (a profile that does not add up hides where the time
goes); then the time per kind of operator on both sides (Conv with its fused bias/ReLU, pooling,
Concat, …), their ratio, and the ten slowest nodes of each. Writes
bench/out/profile/<model>_t<T>.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from models import ORT_SCRIPT  # noqa: E402  the same onnxruntime session as the model bench
OUT = os.path.join(ROOT, "bench", "out", "profile")


# Our task ops and plain ops, and onnxruntime's (possibly fused) op types, as one kind each.
KINDS = {
    "conv2d": "Conv", "conv": "Conv", "fusedconv": "Conv", "nchwcconv": "Conv",
    "dense": "Gemm/MatMul", "gemm": "Gemm/MatMul", "fusedgemm": "Gemm/MatMul", "matmul": "Gemm/MatMul",
    "batch_matmul": "Gemm/MatMul", "fusedmatmul": "Gemm/MatMul",
    "max_pool": "MaxPool", "maxpool": "MaxPool", "nchwcmaxpool": "MaxPool",
    "avg_pool": "AveragePool", "averagepool": "AveragePool", "globalaveragepool": "AveragePool",
    "nchwcglobalaveragepool": "AveragePool", "nchwcaveragepool": "AveragePool",
    "reordercpu": "layout change", "reorderinput": "layout change", "reorderoutput": "layout change",
    "transpose": "Transpose", "concat": "Concat", "softmax": "Softmax", "relu": "Relu", "add": "Add",
    "sum": "Add", "mul": "Mul", "reshape": "Reshape", "flatten": "Reshape", "lrn": "LRN",
    "batch_norm": "BatchNormalization", "batchnormalization": "BatchNormalization", "dropout": "Dropout",
}


def kind(op):
    op = op.strip()
    if op.startswith("(plain) "):
        op = op[len("(plain) "):]
    head = op.split()[0].split("(")[0].lower()
    return KINDS.get(head, head)


def fail(msg):
    print(f"bench/profile.py: {msg}", file=sys.stderr)
    sys.exit(1)


def ours(args):
    cmd = [args.bin, "run", args.model, "--threads", str(args.threads), "--repeat", str(args.repeat),
           "--profile", "--json"]
    if args.db:
        cmd += ["--db", args.db]
    if args.nchw:
        cmd += ["--nchw"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"autotune run failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    run = json.loads(out.stdout)
    nodes = [{"node": n["node"], "kind": kind(n["what"]), "what": n["what"], "seconds": n["seconds"]}
             for n in run["profile_nodes"]]
    return run["latency_s_median"], nodes


def onnxruntime(args, tmp):
    out = subprocess.run([sys.executable, "-c", ORT_SCRIPT, args.model, str(args.threads), str(args.repeat),
                          os.path.join(tmp, "ort")], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"onnxruntime failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    result = json.loads(out.stdout)
    events = json.load(open(result["trace"]))
    per_node = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        op = e.get("args", {}).get("op_name", name)
        per_node.setdefault((name, op), []).append(e["dur"] * 1e-6)
    # The first run of each node is the warm-up: drop it, keep the median of the timed runs.
    nodes = []
    for (name, op), durations in per_node.items():
        timed = durations[1:] or durations
        nodes.append({"node": name, "kind": kind(op), "what": op, "seconds": statistics.median(timed)})
    return result["latency_s_median"], nodes


def by_kind(nodes):
    totals = {}
    for n in nodes:
        totals[n["kind"]] = totals.get(n["kind"], 0.0) + n["seconds"]
    return totals


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--db", help="the tuning log [default: none, every task on its default schedule]")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--nchw", action="store_true", help="run autotune with --nchw (no channel blocks)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "autotune"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        fail(f"no autotune binary at {args.bin}: run `cargo build --release` first")
    with tempfile.TemporaryDirectory() as tmp:
        ort_latency, ort_nodes = onnxruntime(args, tmp)
        our_latency, our_nodes = ours(args)
    ours_sum = sum(n["seconds"] for n in our_nodes)
    ort_sum = sum(n["seconds"] for n in ort_nodes)
    name = os.path.splitext(os.path.basename(args.model))[0]
    blocks = ", --nchw" if args.nchw else ""
    print(f"{name}, {args.threads} thread(s), {'tuned: ' + args.db if args.db else 'untuned'}{blocks}")
    print(f"  autotune:    {our_latency * 1e3:8.3f} ms; nodes add up to {ours_sum * 1e3:8.3f} ms "
          f"({ours_sum / our_latency:.1%} of it) in {len(our_nodes)} nodes")
    print(f"  onnxruntime: {ort_latency * 1e3:8.3f} ms; nodes add up to {ort_sum * 1e3:8.3f} ms "
          f"({ort_sum / ort_latency:.1%} of it) in {len(ort_nodes)} nodes")
    print(f"  latency ratio autotune / onnxruntime: {our_latency / ort_latency:.3f}")
    mine, theirs = by_kind(our_nodes), by_kind(ort_nodes)
    print("  per kind of operator: autotune ms, onnxruntime ms, ratio")
    for k in sorted(set(mine) | set(theirs), key=lambda k: -max(mine.get(k, 0), theirs.get(k, 0))):
        a, b = mine.get(k, 0.0), theirs.get(k, 0.0)
        ratio = f"{a / b:6.2f}" if b > 0 else "     -"
        print(f"    {k:<20} {a * 1e3:8.3f} {b * 1e3:8.3f} {ratio}")
    for side, nodes in (("autotune", our_nodes), ("onnxruntime", ort_nodes)):
        print(f"  slowest nodes, {side}:")
        for n in sorted(nodes, key=lambda n: -n["seconds"])[:10]:
            print(f"    {n['seconds'] * 1e3:7.3f} ms  {n['node']}: {n['what']}")
    os.makedirs(OUT, exist_ok=True)
    suffix = ("_tuned" if args.db else "") + ("_nchw" if args.nchw else "")
    path = os.path.join(OUT, f"{name}_t{args.threads}{suffix}.json")
    with open(path, "w") as fh:
        json.dump({"model": args.model, "threads": args.threads, "db": args.db,
                   "autotune": {"latency_s": our_latency, "nodes_s": ours_sum, "nodes": our_nodes},
                   "onnxruntime": {"latency_s": ort_latency, "nodes_s": ort_sum, "nodes": ort_nodes}},
                  fh, indent=1)
    print(f"  wrote {path}")


if __name__ == "__main__":
    main()
