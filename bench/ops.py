#!/usr/bin/env python3
"""Operator benchmark: tuned autotune kernels vs onnxruntime, layer by layer, in one run.

    cargo build --release && python3 bench/ops.py [--trials 200] [--threads 1,2] [--layers all]

For every layer (the distinct conv layers of ResNet-50 at batch 1, 224x224, a MobileNet depthwise
layer, and the 2048->1000 dense layer) and every thread count T it:
  1. tunes the layer with `autotune op ... --trials N` into bench/out/ops/<layer>_t<T>.db
     (with --reuse, an existing db is kept and topped up to N trials: only the trials it lacks run),
  2. re-measures the db's best kernel now (`autotune best --db ... --json`) and this build's
     untuned default schedule (`autotune best --db ... --default-schedule --json`),
  3. builds a one-node ONNX model of the same layer (Conv with bias, or Gemm with transB=1 and
     bias) and times it in onnxruntime with intra_op_num_threads=T, in a fresh process,
and prints GFLOP/s, % of the machine's measured peak, the ratio autotune / onnxruntime (a latency
ratio: > 1 means autotune is faster), and the same for the untuned default schedule.
The three are measured --repeats times (interleaved) and the medians are reported.
"""
import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (kind, dict of parameters). conv: input NCHW, weight OIHW, stride, pad, groups.
LAYERS = {
    "conv1_7x7s2": ("conv", dict(input=(1, 3, 224, 224), weight=(64, 3, 7, 7), stride=2, pad=3)),
    "conv2_3x3_64": ("conv", dict(input=(1, 64, 56, 56), weight=(64, 64, 3, 3), stride=1, pad=1)),
    "conv3_3x3_128": ("conv", dict(input=(1, 128, 28, 28), weight=(128, 128, 3, 3), stride=1, pad=1)),
    "conv4_3x3_256": ("conv", dict(input=(1, 256, 14, 14), weight=(256, 256, 3, 3), stride=1, pad=1)),
    "conv5_3x3_512": ("conv", dict(input=(1, 512, 7, 7), weight=(512, 512, 3, 3), stride=1, pad=1)),
    "conv3_3x3s2_128": ("conv", dict(input=(1, 128, 56, 56), weight=(128, 128, 3, 3), stride=2, pad=1)),
    "proj_1x1_64_256": ("conv", dict(input=(1, 64, 56, 56), weight=(256, 64, 1, 1), stride=1, pad=0)),
    "proj_1x1_256_64": ("conv", dict(input=(1, 256, 56, 56), weight=(64, 256, 1, 1), stride=1, pad=0)),
    "proj_1x1_128_512": ("conv", dict(input=(1, 128, 28, 28), weight=(512, 128, 1, 1), stride=1, pad=0)),
    "proj_1x1_256_1024": ("conv", dict(input=(1, 256, 14, 14), weight=(1024, 256, 1, 1), stride=1, pad=0)),
    "proj_1x1s2_1024_2048": ("conv", dict(input=(1, 1024, 14, 14), weight=(2048, 1024, 1, 1), stride=2, pad=0)),
    "dw_3x3_32": ("conv", dict(input=(1, 32, 112, 112), weight=(32, 1, 3, 3), stride=1, pad=1, groups=32)),
    "dense_2048_1000": ("dense", dict(m=1, n=1000, k=2048)),
}


def fail(msg):
    print(f"bench/ops.py: {msg}", file=sys.stderr)
    sys.exit(1)


def run_json(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1:] or [f"exit code {out.returncode}"]
        fail(f"{' '.join(cmd[:2])} failed: {last[0]}")
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        fail(f"{' '.join(cmd[:4])} ... did not print one JSON object: {out.stdout[:200]!r}")


def flops(kind, p):
    if kind == "dense":
        return 2.0 * p["m"] * p["n"] * p["k"]
    n, c, h, w = p["input"]
    o, cg, kh, kw = p["weight"]
    s, pad = p["stride"], p["pad"]
    oh = (h + 2 * pad - kh) // s + 1
    ow = (w + 2 * pad - kw) // s + 1
    return 2.0 * n * o * oh * ow * cg * kh * kw


def autotune_args(kind, p):
    if kind == "dense":
        return ["op", "dense", "--shape", f"{p['m']}x{p['n']}x{p['k']}", "--epilogue", "bias"]
    dims = lambda t: "x".join(map(str, t))
    return [
        "op", "conv2d", "--input", dims(p["input"]), "--weight", dims(p["weight"]),
        "--stride", str(p["stride"]), "--pad", str(p["pad"]), "--groups", str(p.get("groups", 1)),
        "--epilogue", "bias",
    ]


ORT_SCRIPT = r"""
import json, sys, time, statistics
import numpy as np, onnx, onnxruntime as ort
from onnx import helper, TensorProto, numpy_helper
kind, p, threads = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
if kind == "dense":
    x = rng.standard_normal((p["m"], p["k"]), dtype=np.float32)
    w = rng.standard_normal((p["n"], p["k"]), dtype=np.float32)
    b = rng.standard_normal((p["n"],), dtype=np.float32)
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
    y_shape = [p["m"], p["n"]]
else:
    x = rng.standard_normal(p["input"], dtype=np.float32)
    w = rng.standard_normal(p["weight"], dtype=np.float32)
    b = rng.standard_normal((p["weight"][0],), dtype=np.float32)
    pad = p["pad"]
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[p["stride"]] * 2, pads=[pad] * 4,
                            group=p.get("groups", 1), kernel_shape=list(p["weight"][2:]))
    y_shape = None
graph = helper.make_graph([node], "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                          initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8  # what every onnxruntime release reads
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
feed = {"x": x}
for _ in range(5):
    sess.run(None, feed)
times, total = [], 0.0
while total < 1.0 or len(times) < 10:
    t0 = time.perf_counter(); sess.run(None, feed); dt = time.perf_counter() - t0
    times.append(dt); total += dt
print(json.dumps({"median_s": statistics.median(times), "min_s": min(times), "n": len(times)}))
"""


def searched_trials(db):
    """Trials a tuning run proposed (the default schedule, measured first, is not one)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM trial WHERE strategy != 'default'").fetchone()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--autotune", default=os.path.join(ROOT, "target/release/autotune"))
    ap.add_argument("--bench-bin", default=os.path.join(ROOT, "target/release/autotune-bench"))
    ap.add_argument("--db-dir", default=os.path.join(ROOT, "bench/out/ops"))
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--layers", default="all", help="comma separated names, or all")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reuse", action="store_true",
                    help="keep the layer's db when it exists and only run the trials it lacks")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    names = list(LAYERS) if args.layers == "all" else args.layers.split(",")
    for n in names:
        if n not in LAYERS:
            fail(f"unknown layer {n}; choose from {', '.join(LAYERS)}")
    os.makedirs(args.db_dir, exist_ok=True)
    peaks = {t: run_json([args.bench_bin, "peak", "--threads", str(t)])["gflops"] for t in threads}
    rows = []
    for name in names:
        kind, p = LAYERS[name]
        p = dict(p)
        p.setdefault("groups", 1)
        for t in threads:
            db = os.path.join(args.db_dir, f"{name}_t{t}.db")
            tune_s = None
            have = 0
            if args.reuse and os.path.exists(db):
                have = searched_trials(db)
            else:
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(db + suffix):
                        os.remove(db + suffix)
            if have < args.trials:
                todo = args.trials - have
                print(f"tuning {name} t={t} ({todo} trials, {have} in the log) ...", file=sys.stderr, flush=True)
                t0 = time.time()
                run_json([args.autotune] + autotune_args(kind, p) + [
                    "--threads", str(t), "--trials", str(todo), "--db", db, "--seed", str(args.seed + have), "--json"])
                tune_s = time.time() - t0
            ours, untuned, theirs = [], [], []
            best_cmd = [args.autotune, "best", "--db", db, "--threads", str(t), "--json"]
            for _ in range(args.repeats):
                ours.append(run_json(best_cmd)["latency_s_median"])
                # This build's untuned default schedule, timed in the same rounds.
                untuned.append(run_json(best_cmd + ["--default-schedule"])["latency_s_median"])
                ort_out = run_json([sys.executable, "-c", ORT_SCRIPT, json.dumps(kind), json.dumps(p), str(t)])
                theirs.append(ort_out["median_s"])
            f = flops(kind, p)
            at, ort_s, default_s = statistics.median(ours), statistics.median(theirs), statistics.median(untuned)
            row = dict(layer=name, threads=t, autotune_gflops=f / at / 1e9, ort_gflops=f / ort_s / 1e9,
                       ratio=ort_s / at, peak_gflops=peaks[t], autotune_latency_s=at, ort_latency_s=ort_s,
                       trials=args.trials, tune_wall_s=tune_s,
                       default_gflops=f / default_s / 1e9 if default_s else None,
                       default_ratio=ort_s / default_s if default_s else None)
            rows.append(row)
            print(f"  {name} t={t}: autotune {row['autotune_gflops']:.1f}, onnxruntime {row['ort_gflops']:.1f} GFLOP/s,"
                  f" ratio {row['ratio']:.2f}", file=sys.stderr, flush=True)
    print(f"{'layer':22} {'thr':>3} {'autotune GF/s':>13} {'ORT GF/s':>9} {'ratio':>6} {'at %peak':>8} "
          f"{'untuned GF/s':>12} {'untuned ratio':>13} {'tune s':>7}")
    for r in rows:
        tune = f"{r['tune_wall_s']:.0f}" if r["tune_wall_s"] else "reused"
        untuned = f"{r['default_gflops']:.1f}" if r["default_gflops"] else "n/a"
        untuned_ratio = f"{r['default_ratio']:.2f}" if r["default_ratio"] else "n/a"
        print(f"{r['layer']:22} {r['threads']:>3} {r['autotune_gflops']:>13.1f} {r['ort_gflops']:>9.1f} "
              f"{r['ratio']:>6.2f} {100 * r['autotune_gflops'] / r['peak_gflops']:>8.1f} {untuned:>12} "
              f"{untuned_ratio:>13} {tune:>7}")
    with open(os.path.join(args.db_dir, "ops_bench.json"), "w") as fh:
        json.dump({"peaks": peaks, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
