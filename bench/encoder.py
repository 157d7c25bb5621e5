#!/usr/bin/env python3
"""Transformer encoder benchmark: autotune (untuned and tuned) vs onnxruntime, in one run.

    cargo build --release && python3 bench/encoder.py [--seqs 128,384] [--threads 1,2]
        [--layers 2] [--hidden 256] [--heads 4] [--trials-per-task 64] [--repeat 20] [--rounds 3]

Builds the BERT-like encoder of tests/encoder_model.py (symbolic batch and sequence dims, seeded
random weights; batch 1) as bench/out/encoder/encoder.onnx. For every thread count T it tunes the
encoder once for every sequence length (`autotune encoder.onnx --dim batch=1 --dim seq=128,384
--threads T`; a log that holds the trials is resumed), then for every sequence length runs,
interleaved for --rounds rounds, each in a fresh process: autotune untuned (no log), autotune
tuned (`run --db`), onnxruntime (intra_op_num_threads=T, sequential, all graph optimizations) on
the same token ids and mask; prints the medians and the ratios autotune / onnxruntime (< 1:
autotune is faster), and checks that autotune's output matches onnxruntime's.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out", "encoder")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from models import fail, run_with_peak  # noqa: E402

ORT_SCRIPT = r"""
import json, sys, time
import numpy as np
import onnxruntime as ort
from onnx import numpy_helper, TensorProto
path, threads, repeat, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
feeds = {}
for p in sys.argv[5:]:
    t = TensorProto(); t.ParseFromString(open(p, "rb").read())
    feeds[t.name] = numpy_helper.to_array(t)
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
result = sess.run(None, feeds)[0]
open(out, "wb").write(numpy_helper.from_array(result, "last_hidden_state").SerializeToString())
times = []
for _ in range(repeat):
    t = time.perf_counter()
    sess.run(None, feeds)
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"latency_s_median": times[len(times) // 2], "latency_s_min": times[0]}))
"""


def read(path):
    import onnx
    from onnx import numpy_helper

    t = onnx.TensorProto()
    t.ParseFromString(open(path, "rb").read())
    return numpy_helper.to_array(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqs", default="128,384")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--trials-per-task", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "autotune"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        fail(f"{args.bin} is missing: run `cargo build --release` first")
    import numpy as np
    import onnx
    from onnx import numpy_helper
    import encoder_model

    os.makedirs(OUT, exist_ok=True)
    model = os.path.join(OUT, "encoder.onnx")
    onnx.save(encoder_model.build(layers=args.layers, hidden=args.hidden, heads=args.heads), model)
    seqs = [int(s) for s in args.seqs.split(",")]
    inputs = {}
    for seq in seqs:
        files = []
        for name, value in encoder_model.inputs(1, seq).items():
            path = os.path.join(OUT, f"s{seq}_{name}.pb")
            with open(path, "wb") as fh:
                fh.write(numpy_helper.from_array(value, name).SerializeToString())
            files.append(path)
        inputs[seq] = files
    rows = []
    for t in [int(x) for x in args.threads.split(",")]:
        db = os.path.join(OUT, f"encoder_l{args.layers}_h{args.hidden}_t{t}.tuning.db")
        started = time.time()
        tuned = run_with_peak([args.bin, model, "--dim", "batch=1", "--dim", f"seq={args.seqs}",
                               "--trials-per-task", str(args.trials_per_task), "--threads", str(t),
                               "--db", db, "--json", "--report", db.replace(".tuning.db", ".report.html")])[0]
        print(f"t{t}: tuned {tuned['n_tasks']} tasks, {tuned['trials_this_run']} trials this run in "
              f"{time.time() - started:.0f} s", flush=True)
        for seq in seqs:
            feed = sum((["--input", p] for p in inputs[seq]), [])
            ours_out = os.path.join(OUT, f"ours_s{seq}.pb")
            ort_out = os.path.join(OUT, f"ort_s{seq}.pb")
            run = [args.bin, "run", model, "--threads", str(t), "--repeat", str(args.repeat), "--json",
                   "--output", ours_out] + feed
            samples = {"untuned": [], "tuned": [], "ort": []}
            info = None
            worst = 0.0
            for _ in range(args.rounds):
                samples["untuned"].append(run_with_peak(run)[0]["latency_s_median"])
                info = run_with_peak(run + ["--db", db])[0]
                samples["tuned"].append(info["latency_s_median"])
                v = run_with_peak([sys.executable, "-c", ORT_SCRIPT, model, str(t), str(args.repeat), ort_out]
                                  + inputs[seq])[0]
                samples["ort"].append(v["latency_s_median"])
                a, e = read(ours_out), read(ort_out)
                worst = max(worst, float(np.max(np.abs(a - e) / (1e-4 + 1e-3 * np.abs(e)))))
            if worst > 1.0:
                fail(f"seq {seq}, {t} thread(s): the output is {worst:.2f}x the tolerance away from onnxruntime's")
            med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
            rows.append(dict(seq=seq, threads=t, trials_per_task=args.trials_per_task,
                             n_tuned=info["n_tuned"], n_kernels=info["n_kernels"],
                             untuned_ms=med["untuned"], tuned_ms=med["tuned"], ort_ms=med["ort"],
                             tuned_over_ort=med["tuned"] / med["ort"], untuned_over_ort=med["untuned"] / med["ort"],
                             samples_ms={k: [x * 1e3 for x in v] for k, v in samples.items()}))
            r = rows[-1]
            print(f"seq {seq} t{t}: tuned {r['tuned_ms']:.2f} ms, untuned {r['untuned_ms']:.2f} ms, onnxruntime "
                  f"{r['ort_ms']:.2f} ms -> tuned/ORT {r['tuned_over_ort']:.2f}x", flush=True)
    print()
    print(f"{'seq':>4} {'thr':>3} {'tuned ms':>9} {'untuned ms':>10} {'ORT ms':>8} {'tuned/ORT':>9} {'untuned/ORT':>11}")
    for r in rows:
        print(f"{r['seq']:>4} {r['threads']:>3} {r['tuned_ms']:>9.2f} {r['untuned_ms']:>10.2f} {r['ort_ms']:>8.2f} "
              f"{r['tuned_over_ort']:>9.2f} {r['untuned_over_ort']:>11.2f}")
    with open(os.path.join(OUT, "encoder.json"), "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
