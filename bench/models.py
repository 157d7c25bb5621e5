#!/usr/bin/env python3
"""Model benchmark: autotune-tuned models vs onnxruntime, end to end, in one run.

    cargo build --release && python3 bench/models.py [--models resnet50,squeezenet,...] [--threads 1,2]
                                                     [--trials-per-task 64] [--repeat 20] [--rounds 3]
                                                     [--untuned-only] [--skip-tuning]

For every light model of the onnx package named (by default seven: ResNet-50, SqueezeNet,
DenseNet-121, Inception v1 and v2, VGG-19 and AlexNet) and every thread count T it:
  0. replaces the model's constant weights by seeded random ones (`tests/onnx_model_data.py
     randomize`, seed 0: the light models' weights are constant fills, whose outputs would not
     catch a wrong kernel) into bench/out/models/<model>/, with onnxruntime's outputs for a random
     input;
  1. tunes the model: `autotune MODEL.onnx --trials-per-task N --threads T --db
     bench/out/models/<model>_t<T>.tuning.db` (a log that already holds the trials is resumed, so a
     rerun only re-measures; the tuning wall time reported is the sum over the runs that measured
     something, kept in <log>.wall.json); skipped with --untuned-only or --skip-tuning;
  2. checks the outputs of `autotune run` untuned (no log: every task on its default schedule)
     and tuned against onnxruntime's, with the tolerance of the end-to-end tests for random weights
     (|a - b| <= 1e-4 * max|b| + 1e-3 * |b|); a mismatch fails the bench;
  3. times the model untuned and tuned (`autotune run --db ... --threads T --repeat R --json`) and
     in onnxruntime (Python, intra_op_num_threads=T, sequential, all graph optimizations), R timed
     runs after a warm-up, each in a fresh process, interleaved for --rounds rounds,
and prints the medians, the latency ratios autotune / onnxruntime (< 1: autotune is faster) and
each process's peak resident memory (getrusage of the child; onnxruntime's includes the Python
interpreter and numpy). With --untuned-only there is no log: only the untuned side is timed.
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


def randomized_model(name, light):
    """The light model with seeded random weights, a random input and onnxruntime's outputs for it
    (made once, in bench/out/models/<name>/): (model path, input paths, output paths)."""
    src = os.path.join(light, f"light_{name}.onnx")
    if not os.path.exists(src):
        fail(f"{src} is missing")
    folder = os.path.join(OUT, name)
    model = os.path.join(folder, "model.onnx")
    if not os.path.exists(model):
        made = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "onnx_model_data.py"), "randomize",
                               src, folder, "--seed", "0"], capture_output=True, text=True)
        if made.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            fail(f"randomizing {name} failed: {(made.stderr.strip().splitlines() or ['?'])[-1]}")
    files = sorted(os.listdir(folder))
    inputs = [os.path.join(folder, f) for f in files if f.startswith("input_") and f.endswith(".pb")]
    outputs = [os.path.join(folder, f) for f in files if f.startswith("output_") and f.endswith(".pb")]
    return model, inputs, sorted(outputs, key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0]))


def check_outputs(what, run_cmd, inputs, expected_paths):
    """Runs the model once on the randomized input and compares every output with onnxruntime's;
    fails the bench on a mismatch. Returns the worst |a - b| / allowed over all outputs."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    with tempfile.TemporaryDirectory() as tmp:
        ours = [os.path.join(tmp, f"out_{i}.pb") for i in range(len(expected_paths))]
        cmd = run_cmd + ["--repeat", "1"] + [a for p in inputs for a in ("--input", p)]
        cmd += [a for p in ours for a in ("--output", p)]
        run_with_peak(cmd + ["--json"])
        worst = 0.0
        for got_path, want_path in zip(ours, expected_paths):
            got, want = onnx.load_tensor(got_path), onnx.load_tensor(want_path)
            a = numpy_helper.to_array(got).astype(np.float64)
            b = numpy_helper.to_array(want).astype(np.float64)
            if a.shape != b.shape:
                fail(f"{what}: output {want.name} has shape {a.shape}, onnxruntime's {b.shape}")
            allowed = 1e-4 * max(float(np.abs(b).max()), 1e-3) + 1e-3 * np.abs(b)
            ratio = float((np.abs(a - b) / allowed).max())
            if not ratio <= 1.0:
                fail(f"{what}: output {want.name} differs from onnxruntime's by {ratio:.1f}x the tolerance")
            worst = max(worst, ratio)
    return worst


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
    ap.add_argument("--models", default="resnet50,squeezenet,densenet121,inception_v1,inception_v2,vgg19,bvlc_alexnet")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--trials-per-task", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=20, help="timed runs per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved measurements per side")
    ap.add_argument("--skip-tuning", action="store_true", help="only measure the logs that exist")
    ap.add_argument("--untuned-only", action="store_true", help="no tuning, no log: untuned against onnxruntime")
    ap.add_argument("--log-tag", default="",
                    help="tuning logs named light_<model>_<tag>_t<threads>.tuning.db (e.g. one tuned in another layout)")
    ap.add_argument("--nchw", action="store_true",
                    help="also run untuned with --nchw (every activation NCHW, no channel blocks)")
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
        model, inputs, expected = randomized_model(name, light)
        for t in threads:
            tag = f"{args.log_tag}_" if args.log_tag else ""
            # The log and its HTML report share one name, so a tagged log never overwrites another's.
            stem = os.path.join(OUT, f"light_{name}_{tag}t{t}")
            db = None if args.untuned_only else stem + ".tuning.db"
            wall = add_tuning_wall(db, 0.0) if db else 0.0
            if db and not args.skip_tuning:
                started = time.time()
                tuned = run_with_peak([args.bin, model, "--trials-per-task", str(args.trials_per_task),
                                       "--threads", str(t), "--db", db, "--json",
                                       "--report", stem + ".report.html"])[0]
                elapsed = time.time() - started
                if tuned["trials_this_run"] > 0:
                    wall = add_tuning_wall(db, elapsed)
                print(f"{name} t{t}: tuned {tuned['n_tasks']} tasks, {tuned['trials_this_run']} trials this run "
                      f"in {elapsed:.0f} s ({tuned['errors_this_run']} errors)", flush=True)
            if db and not os.path.exists(db):
                fail(f"{db} is missing: run without --skip-tuning")
            # No --db and no MODEL.tuning.db beside the model: every task on its default schedule.
            run = [args.bin, "run", model, "--threads", str(t)]
            sides = {"untuned": run} if db is None else {"untuned": run, "tuned": run + ["--db", db]}
            if args.nchw:
                sides["nchw"] = run + ["--nchw"]
            worst = {side: check_outputs(f"{name} t{t} {side}", cmd, inputs, expected)
                     for side, cmd in sides.items()}
            samples = {side: [] for side in [*sides, "ort"]}
            peaks = {side: [] for side in samples}
            info = None
            for _ in range(args.rounds):
                for side, cmd in sides.items():
                    v, peak = run_with_peak(cmd + ["--repeat", str(args.repeat), "--json"])
                    samples[side].append(v["latency_s_median"])
                    peaks[side].append(peak)
                    info = v
                v, peak = run_with_peak([sys.executable, "-c", ORT_SCRIPT, model, str(t), str(args.repeat)])
                samples["ort"].append(v["latency_s_median"])
                peaks["ort"].append(peak)
            med = {k: statistics.median(v) for k, v in samples.items()}
            nan = float("nan")
            rows.append(dict(
                model=name, threads=t, trials_per_task=None if db is None else args.trials_per_task,
                n_kernels=info["n_kernels"], n_tuned=info["n_tuned"],
                untuned_ms=med["untuned"] * 1e3, tuned_ms=med.get("tuned", nan) * 1e3, ort_ms=med["ort"] * 1e3,
                tuned_over_ort=med.get("tuned", nan) / med["ort"], untuned_over_ort=med["untuned"] / med["ort"],
                worst_output_error=worst, tuning_wall_s=wall,
                peak_mib_untuned=max(peaks["untuned"]), peak_mib_tuned=max(peaks.get("tuned", [nan])),
                peak_mib_ort=max(peaks["ort"]),
                samples_ms={k: [x * 1e3 for x in v] for k, v in samples.items()},
                nchw_ms=med.get("nchw", nan) * 1e3, nchw_over_ort=med.get("nchw", nan) / med["ort"],
            ))
            r = rows[-1]
            print(f"{name} t{t}: tuned {r['tuned_ms']:.2f} ms, untuned {r['untuned_ms']:.2f} ms, "
                  f"onnxruntime {r['ort_ms']:.2f} ms -> tuned/ORT {r['tuned_over_ort']:.2f}x, "
                  f"untuned/ORT {r['untuned_over_ort']:.2f}x; outputs match onnxruntime "
                  f"(worst {max(worst.values()):.3g}x the tolerance)", flush=True)
            if args.nchw:
                print(f"{name} t{t}: untuned with --nchw {r['nchw_ms']:.2f} ms -> "
                      f"{r['nchw_over_ort']:.2f}x onnxruntime; channel blocks / NCHW "
                      f"{r['untuned_ms'] / r['nchw_ms']:.2f}x", flush=True)
    print()
    print(f"{'model':12} {'thr':>3} {'tuned ms':>9} {'untuned ms':>10} {'ORT ms':>8} {'tuned/ORT':>9} "
          f"{'untuned/ORT':>11} {'tuned kern':>10} {'tune wall':>9} {'peak MiB':>8} {'ORT MiB':>7}")
    for r in rows:
        print(f"{r['model']:12} {r['threads']:>3} {r['tuned_ms']:>9.2f} {r['untuned_ms']:>10.2f} {r['ort_ms']:>8.2f} "
              f"{r['tuned_over_ort']:>9.2f} {r['untuned_over_ort']:>11.2f} "
              f"{r['n_tuned']:>4}/{r['n_kernels']:<5} {r['tuning_wall_s'] / 60:>7.1f} m "
              f"{(r['peak_mib_untuned'] if r['n_tuned'] == 0 else r['peak_mib_tuned']):>8.0f} {r['peak_mib_ort']:>7.0f}")
    with open(os.path.join(OUT, "models.json"), "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
