#!/usr/bin/env python3
"""GEMM benchmark: the tuned kernel vs numpy's OpenBLAS vs the machine's measured peak, in one run.

    cargo build --release && python3 bench/gemm.py

For each thread count T it measures the machine's peak fp32 FLOP/s (`autotune-bench peak`).
For each size S and thread count T it tunes an S x S x S float32 matmul into
{db-dir}/gemm_{S}_t{T}.db (skipped with --reuse when that database exists), then measures, in
this run and interleaved so both see the same machine state, the database's best kernel
(`autotune best`) and numpy's matmul (bench/numpy_gemm.py, a fresh process per run), 3 runs
each, and reports the median of the 3 medians. Prints a table and writes the same data as
JSON to {db-dir}/gemm_bench.json.
"""

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)


class BenchError(Exception):
    """A failed step; reported as one line and a non-zero exit."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--autotune", default=os.path.join(REPO_ROOT, "target", "release", "autotune"),
                   help="the autotune binary (default: target/release/autotune)")
    p.add_argument("--bench-bin", default=os.path.join(REPO_ROOT, "target", "release", "autotune-bench"),
                   help="the autotune-bench binary (default: target/release/autotune-bench)")
    p.add_argument("--db-dir", default=os.path.join(BENCH_DIR, "out"),
                   help="where the tuning databases and gemm_bench.json go (default: bench/out)")
    p.add_argument("--trials", type=int, default=200, help="tuning trials per (size, threads) (default 200)")
    p.add_argument("--sizes", type=int_list, default=[512, 1024], help="matrix sizes (default 512,1024)")
    p.add_argument("--threads", type=int_list, default=[1, 2], help="thread counts (default 1,2)")
    p.add_argument("--seed", type=int, default=1, help="tuner seed (default 1)")
    p.add_argument("--repeats", type=int, default=3,
                   help="interleaved measurement runs per side; the median is reported (default 3)")
    p.add_argument("--reuse", action="store_true", help="skip tuning where the database already exists")
    p.add_argument("--python", default=sys.executable, help="python for numpy_gemm.py (default: this one)")
    args = p.parse_args()
    if args.trials < 1 or args.repeats < 1:
        p.error("--trials and --repeats must be positive")
    return args


def last_line(text):
    lines = [ln.strip() for ln in (text or "").replace("\r", "\n").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run_json(cmd, what, required, show_stderr=False):
    """Runs cmd; its stdout must be exactly one JSON object holding every key in `required`."""
    shown = " ".join(shlex.quote(c) for c in cmd)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if show_stderr else subprocess.PIPE,
                              text=True, cwd=REPO_ROOT)
    except OSError as e:
        raise BenchError(f"{what}: cannot run `{shown}`: {e.strerror}")
    if proc.returncode != 0:
        detail = "its stderr is above" if show_stderr else (last_line(proc.stderr) or "no stderr")
        raise BenchError(f"{what}: `{shown}` exited with status {proc.returncode}: {detail}")
    out = proc.stdout.strip()
    try:
        obj = json.loads(out)
    except json.JSONDecodeError:
        raise BenchError(f"{what}: `{shown}` did not print exactly one JSON object on stdout; got {out[:200]!r}")
    if not isinstance(obj, dict):
        raise BenchError(f"{what}: `{shown}` printed JSON that is not an object: {out[:200]!r}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise BenchError(f"{what}: output of `{shown}` lacks key(s) {', '.join(map(repr, missing))}")
    return obj


def number(obj, key, what, positive=True):
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BenchError(f"{what}: {key!r} is not a finite number: {value!r}")
    if positive and value <= 0:
        raise BenchError(f"{what}: {key!r} is not positive: {value!r}")
    return float(value)


def check_threads(obj, threads, what):
    if obj["threads"] != threads:
        raise BenchError(f"{what}: asked for {threads} threads, output says {obj['threads']!r}")


def measure_peak(args, threads):
    what = f"peak t={threads}"
    obj = run_json([args.bench_bin, "peak", "--threads", str(threads)], what, ["threads", "isa", "gflops"])
    check_threads(obj, threads, what)
    return {"gflops": number(obj, "gflops", what), "isa": obj["isa"]}


TUNE_KEYS = ["task", "device", "threads", "best_gflops", "best_latency_s", "best_trace", "n_trials",
             "n_errors", "trials"]
BEST_KEYS = ["task", "device", "threads", "gflops", "latency_s_median", "latency_s_min", "trace", "n_repeats"]
NUMPY_KEYS = ["size", "threads", "median_s", "min_s", "gflops", "blas"]


def tune(args, size, threads, db):
    """Tunes into db (or reuses it); returns what the table needs about the tuning."""
    summary = db + ".tune.json"  # the tuner's summary, kept so that --reuse can still show it
    if args.reuse and os.path.exists(db):
        log(f"reusing {db}")
        info = {"reused": True, "n_trials": None, "n_errors": None, "tune_wall_s": None, "tune_best_gflops": None}
        if os.path.exists(summary):
            try:
                with open(summary) as f:
                    old = json.load(f)
                info.update({k: old.get(k) for k in ("n_trials", "n_errors", "tune_wall_s", "tune_best_gflops")})
            except (OSError, json.JSONDecodeError):
                pass
        return info
    if os.path.exists(db):
        # A fresh tuning: start from an empty database so the trial count and wall time are this run's.
        for suffix in ("", "-wal", "-shm", ".tune.json"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
    shape = f"{size}x{size}x{size}"
    what = f"tuning {size}^3 t={threads}"
    log(f"tuning {size}^3 t={threads} ({args.trials} trials) ...")
    t0 = time.monotonic()
    obj = run_json([args.autotune, "op", "matmul", "--shape", shape, "--device", "cpu", "--threads", str(threads),
                    "--trials", str(args.trials), "--db", db, "--seed", str(args.seed), "--json"],
                   what, TUNE_KEYS, show_stderr=True)
    wall = time.monotonic() - t0
    check_threads(obj, threads, what)
    best = number(obj, "best_gflops", what)
    if not isinstance(obj["n_trials"], int) or not isinstance(obj["trials"], list):
        raise BenchError(f"{what}: 'n_trials' must be an integer and 'trials' a list")
    log(f"  tuned {size}^3 t={threads} in {wall:.1f} s: {obj['n_trials']} trials, {obj['n_errors']} errors, "
        f"best {best:.1f} GFLOP/s")
    info = {"reused": False, "n_trials": obj["n_trials"], "n_errors": obj["n_errors"], "tune_wall_s": wall,
            "tune_best_gflops": best}
    with open(summary, "w") as f:
        json.dump(dict(info, task=obj["task"], best_trace=obj["best_trace"]), f, indent=1)
    return info


def measure_tuned(args, size, threads, db):
    what = f"re-measuring the best kernel of {db}"
    shape = f"{size}x{size}x{size}"
    obj = run_json([args.autotune, "best", "--op", "matmul", "--shape", shape, "--device", "cpu",
                    "--threads", str(threads), "--db", db, "--json"], what, BEST_KEYS)
    check_threads(obj, threads, what)
    return {"gflops": number(obj, "gflops", what), "latency_s_median": number(obj, "latency_s_median", what),
            "latency_s_min": number(obj, "latency_s_min", what), "trace": obj["trace"], "task": obj["task"]}


def measure_numpy(args, size, threads):
    what = f"numpy {size}^3 t={threads}"
    obj = run_json([args.python, os.path.join(BENCH_DIR, "numpy_gemm.py"), "--size", str(size),
                    "--threads", str(threads)], what, NUMPY_KEYS)
    check_threads(obj, threads, what)
    return {"gflops": number(obj, "gflops", what), "median_s": number(obj, "median_s", what),
            "min_s": number(obj, "min_s", what), "blas": obj["blas"], "blas_core": obj.get("blas_core"),
            "blas_threads": obj.get("blas_threads")}


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return None


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_table(rows):
    headers = ["size", "threads", "autotune GFLOP/s", "OpenBLAS GFLOP/s", "ratio(at/blas)", "peak GFLOP/s",
               "at %peak", "blas %peak", "trials", "tune wall s"]
    lines = []
    for r in rows:
        trials = fmt(r["n_trials"], "d")
        if r["reused"]:
            trials += " (reused)"
        lines.append([str(r["size"]), str(r["threads"]), fmt(r["autotune_gflops"], ".1f"),
                      fmt(r["blas_gflops"], ".1f"), fmt(r["ratio_at_blas"], ".2f"), fmt(r["peak_gflops"], ".1f"),
                      fmt(r["autotune_pct_peak"], ".1f"), fmt(r["blas_pct_peak"], ".1f"), trials,
                      fmt(r["tune_wall_s"], ".1f")])
    widths = [max(len(h), *(len(ln[i]) for ln in lines)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for ln in lines:
        print("  ".join(c.ljust(w) for c, w in zip(ln, widths)).rstrip())


def main():
    args = parse_args()
    for path, hint in ((args.autotune, "cargo build --release"), (args.bench_bin, "cargo build --release")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise BenchError(f"{path} is not an executable file; build it first ({hint})")
    os.makedirs(args.db_dir, exist_ok=True)

    peaks = {}
    for t in args.threads:
        peaks[t] = measure_peak(args, t)
        log(f"peak t={t}: {peaks[t]['gflops']:.1f} GFLOP/s ({peaks[t]['isa']})")

    # On a quiet machine, T threads reach about T times the 1-thread peak; much less means
    # something else is running (and multi-threaded BLAS collapses when it has to share cores).
    warnings = []
    base = min(args.threads)
    for t in args.threads:
        scaling = peaks[t]["gflops"] / peaks[base]["gflops"] * base
        if t > base and scaling < 0.85 * t:
            warnings.append(f"peak with {t} threads is only {scaling:.2f}x the 1-thread rate "
                            f"(expected ~{t}x): the machine is not quiet, numbers below are suspect")
            log(f"warning: {warnings[-1]}")

    rows = []
    for s in args.sizes:
        for t in args.threads:
            db = os.path.join(args.db_dir, f"gemm_{s}_t{t}.db")
            info = tune(args, s, t, db)
            tuned_runs, numpy_runs = [], []
            for i in range(args.repeats):
                tuned_runs.append(measure_tuned(args, s, t, db))
                numpy_runs.append(measure_numpy(args, s, t))
                log(f"  {s}^3 t={t} run {i + 1}/{args.repeats}: autotune {tuned_runs[-1]['gflops']:.1f}, "
                    f"numpy {numpy_runs[-1]['gflops']:.1f} GFLOP/s")
            at = statistics.median(r["gflops"] for r in tuned_runs)
            blas = statistics.median(r["gflops"] for r in numpy_runs)
            peak = peaks[t]["gflops"]
            blas_name = numpy_runs[0]["blas"]
            if "openblas" not in str(blas_name).lower():
                warnings.append(f"numpy's BLAS is {blas_name!r}, not OpenBLAS")
                log(f"warning: {warnings[-1]}")
            rows.append({
                "size": s, "threads": t, "db": db,
                "autotune_gflops": at, "blas_gflops": blas, "peak_gflops": peak,
                "ratio_at_blas": at / blas,
                "autotune_pct_peak": 100.0 * at / peak, "blas_pct_peak": 100.0 * blas / peak,
                "reused": info["reused"], "n_trials": info["n_trials"], "n_errors": info["n_errors"],
                "tune_wall_s": info["tune_wall_s"], "tune_best_gflops": info["tune_best_gflops"],
                "best_trace": tuned_runs[-1]["trace"], "blas": blas_name, "blas_core": numpy_runs[0]["blas_core"],
                "autotune_runs": tuned_runs, "numpy_runs": numpy_runs,
            })

    print_table(rows)
    for w in warnings:
        print(f"warning: {w}")
    out = os.path.join(args.db_dir, "gemm_bench.json")
    result = {
        "config": {"trials": args.trials, "sizes": args.sizes, "threads": args.threads, "seed": args.seed,
                   "repeats": args.repeats, "reuse": args.reuse, "autotune": args.autotune},
        "peak": {str(t): p for t, p in peaks.items()},
        "rows": rows,
        "warnings": warnings,
        "loadavg": loadavg(),
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        sys.exit(f"gemm.py: error: {e}")
    except KeyboardInterrupt:
        sys.exit("gemm.py: interrupted")
