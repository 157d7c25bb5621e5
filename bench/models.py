#!/usr/bin/env python3
"""Model benchmark: autotune-tuned models vs onnxruntime, end to end, in one run.

    cargo build --release && python3 bench/models.py [--models resnet50,squeezenet] [--threads 1,2]
                                                     [--trials-per-task 64] [--repeat 20] [--rounds 3]

For every light model of the onnx package (ResNet-50 and SqueezeNet by default) and every thread
count T it:
  1. tunes the model: `autotune MODEL.onnx --trials-per-task N --threads T --db
     bench/out/models/<model>_t<T>.tuning.db` (a log that already holds the trials is resumed, so a
     rerun only re-measures; the tuning wall time reported is the sum over the runs that measured
     something, kept in <log>.wall.json),
  2. runs the model untuned (no log: every task on its default schedule) and tuned
     (`autotune run --db ... --threads T --repeat R --json`), each in a fresh process,
  3. runs it in onnxruntime (Python, intra_op_num_threads=T, sequential, all graph optimizations)
     on the same kind of input, R timed runs after a warm-up, in a fresh process,
interleaving 2. and 3. for --rounds rounds, and prints the medians, the latency ratio
autotune / onnxruntime (< 1: autotune is faster) and each process's peak resident memory
(getrusage of the child; onnxruntime's includes the Python interpreter and numpy).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out", "models")

# python -c ORT_SCRIPT MODEL THREADS REPEAT [PROFILE_PREFIX]: with a prefix, onnxruntime's own
# per-node profile is written too and its path printed as "trace" (bench/profile.py).
ORT_SCRIPT = r"""
import json, os, sys, time
import numpy as np
import onnx
import onnxruntime as ort
path, threads, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
prefix = sys.argv[4] if len(sys.argv) > 4 else None
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
if prefix:
    so.enable_profiling = True
    so.profile_file_prefix = prefix
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
feeds = {}
for i in sess.get_inputs():
    shape = [d if isinstance(d, int) else 1 for d in i.shape]
    feeds[i.name] = rng.uniform(-1, 1, size=shape).astype(np.float32)
sess.run(None, feeds)
times = []
for _ in range(repeat):
    t = time.perf_counter()
    sess.run(None, feeds)
    times.append(time.perf_counter() - t)
times.sort()
result = {"latency_s_median": times[len(times) // 2], "latency_s_min": times[0]}
if prefix:
    result["trace"] = os.path.abspath(sess.end_profiling())
print(json.dumps(result))
"""


def fail(msg):
    print(f"bench/models.py: {msg}", file=sys.stderr)
    sys.exit(1)


def run_with_peak(cmd):
    """Runs cmd, returns (parsed JSON of its stdout, its peak RSS in MiB) using wait4."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        stdout = proc.stdout.read().decode()
        # Reap with wait4: this child's own rusage (RUSAGE_CHILDREN would mix all children).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        last = stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        fail(f"{' '.join(cmd[:3])} failed: {last[0]}")
    try:
        value = json.loads(stdout)
    except json.JSONDecodeError:
        fail(f"{' '.join(cmd[:3])} did not print one JSON object: {stdout[:200]!r}")
    return value, usage.ru_maxrss / 1024.0


def light_models_dir():
    try:
        import onnx
    except ImportError:
        fail("the onnx Python package is missing: run `bash setup.sh` (pip install -r requirements-dev.txt)")
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def add_tuning_wall(db, seconds):
    """Adds to and returns the tuning wall time of `db` over every run that measured something
    (kept in a file beside the log, since a resumed log's sessions span the gaps between runs)."""
    path = db + ".wall.json"
    total = json.load(open(path))["seconds"] if os.path.exists(path) else 0.0
    total += seconds
    with open(path, "w") as fh:
        json.dump({"seconds": total}, fh)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50,squeezenet")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--trials-per-task", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=20, help="timed runs per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved measurements per side")
    ap.add_argument("--skip-tuning", action="store_true", help="only measure the logs that exist")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "autotune"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        fail(f"{args.bin} is missing: run `cargo build --release` first")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        fail("onnxruntime is missing: run `bash setup.sh` (pip install -r requirements-dev.txt)")
    light = light_models_dir()
    os.makedirs(OUT, exist_ok=True)
    threads = [int(t) for t in args.threads.split(",")]
    rows = []
    for name in args.models.split(","):
        src = os.path.join(light, f"light_{name}.onnx")
        if not os.path.exists(src):
            fail(f"{src} is missing")
        model = os.path.join(OUT, f"light_{name}.onnx")
        shutil.copyfile(src, model)
        for t in threads:
            db = os.path.join(OUT, f"light_{name}_t{t}.tuning.db")
            wall = add_tuning_wall(db, 0.0)
            if not args.skip_tuning:
                started = time.time()
                tuned = run_with_peak([args.bin, model, "--trials-per-task", str(args.trials_per_task),
                                       "--threads", str(t), "--db", db, "--json",
                                       "--report", os.path.join(OUT, f"light_{name}_t{t}.report.html")])[0]
                elapsed = time.time() - started
                if tuned["trials_this_run"] > 0:
                    wall = add_tuning_wall(db, elapsed)
                print(f"{name} t{t}: tuned {tuned['n_tasks']} tasks, {tuned['trials_this_run']} trials this run "
                      f"in {elapsed:.0f} s ({tuned['errors_this_run']} errors)", flush=True)
            if not os.path.exists(db):
                fail(f"{db} is missing: run without --skip-tuning")
            samples = {"untuned": [], "tuned": [], "ort": []}
            peaks = {"untuned": [], "tuned": [], "ort": []}
            run = [args.bin, "run", model, "--threads", str(t), "--repeat", str(args.repeat), "--json"]
            info = None
            for _ in range(args.rounds):
                # No --db and no MODEL.tuning.db beside the copy: every task on its default schedule.
                v, peak = run_with_peak(run)
                samples["untuned"].append(v["latency_s_median"])
                peaks["untuned"].append(peak)
                v, peak = run_with_peak(run + ["--db", db])
                samples["tuned"].append(v["latency_s_median"])
                peaks["tuned"].append(peak)
                info = v
                v, peak = run_with_peak([sys.executable, "-c", ORT_SCRIPT, model, str(t), str(args.repeat)])
                samples["ort"].append(v["latency_s_median"])
                peaks["ort"].append(peak)
            med = {k: statistics.median(v) for k, v in samples.items()}
            rows.append(dict(
                model=name, threads=t, trials_per_task=args.trials_per_task,
                n_kernels=info["n_kernels"], n_tuned=info["n_tuned"],
                untuned_ms=med["untuned"] * 1e3, tuned_ms=med["tuned"] * 1e3, ort_ms=med["ort"] * 1e3,
                tuned_over_ort=med["tuned"] / med["ort"], untuned_over_ort=med["untuned"] / med["ort"],
                tuning_wall_s=wall,
                peak_mib_tuned=max(peaks["tuned"]), peak_mib_ort=max(peaks["ort"]),
                samples_ms={k: [x * 1e3 for x in v] for k, v in samples.items()},
            ))
            r = rows[-1]
            print(f"{name} t{t}: tuned {r['tuned_ms']:.1f} ms, untuned {r['untuned_ms']:.1f} ms, "
                  f"onnxruntime {r['ort_ms']:.1f} ms -> tuned/ORT {r['tuned_over_ort']:.2f}x", flush=True)
    print()
    print(f"{'model':12} {'thr':>3} {'tuned ms':>9} {'untuned ms':>10} {'ORT ms':>8} {'tuned/ORT':>9} "
          f"{'untuned/ORT':>11} {'tuned kern':>10} {'tune wall':>9} {'peak MiB':>8} {'ORT MiB':>7}")
    for r in rows:
        print(f"{r['model']:12} {r['threads']:>3} {r['tuned_ms']:>9.1f} {r['untuned_ms']:>10.1f} {r['ort_ms']:>8.1f} "
              f"{r['tuned_over_ort']:>9.2f} {r['untuned_over_ort']:>11.2f} "
              f"{r['n_tuned']:>4}/{r['n_kernels']:<5} {r['tuning_wall_s'] / 60:>7.1f} m "
              f"{r['peak_mib_tuned']:>8.0f} {r['peak_mib_ort']:>7.0f}")
    with open(os.path.join(OUT, "models.json"), "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
