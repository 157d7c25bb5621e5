#!/usr/bin/env python3
"""Search-strategy benchmark: how many trials each strategy needs, on real tuning tasks.

    cargo build --release && cargo build --release -p autotune-search --example model_quality
    python3 bench/search.py

Every task is one `autotune op` invocation (without --db/--seed/--trials/--strategy/--json),
named NAME=ARGS with --task (repeatable); the default is GEMM 512^3 and 1024^3 and ResNet-50's
three 3x3 convolutions (64ch@56, 128ch@28, 256ch@14), all on one thread. For
each task, strategy and seed, it tunes into a fresh database {out}/{task}_{strategy}_s{seed}.db
(`--reuse`: keep a run whose JSON summary exists) and records the best-so-far GFLOP/s after every
trial and the time spent searching (model training and proposals) versus measuring.

Per task it reports, as medians over seeds: the best GFLOP/s after 32, 64, 128, 256 (and 512)
trials; the trials needed to reach 90 % of the best kernel found by any run on that task; the
search overhead; and the cost model's ranking quality on held-out trials (5-fold cross-validation
on the random-search logs, `model_quality` example). Then it checks the acceptance criteria of
"search that learns" and prints PASS/FAIL for each. Writes everything to {out}/search_bench.json.

A recorded time is one short window of a machine whose speed drifts (on a shared VM a window now
and then runs ~15 % fast), and the more trials a run makes the more such windows it catches. So
after the runs of a task, every kernel that was a run's incumbent (its best so far) at some trial
is timed again at the end (`autotune best --trace-key`, one fresh process per run and pass, runs
in shuffled order, --remeasure-rounds passes, median per kernel), and the tables and checks use
the re-measured speed of the incumbent after N trials: the speed of the kernel the run would have
handed over. The recorded best-so-far is printed too.
`--no-remeasure` skips this.
"""

import argparse
import json
import os
import random
import sqlite3
import shlex
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)

# One line per task: NAME -> `autotune op` arguments. The convolutions are ResNet-50's 3x3 layers.
DEFAULT_TASKS = [
    ("gemm512", "matmul --shape 512x512x512 --threads 1"),
    ("gemm1024", "matmul --shape 1024x1024x1024 --threads 1"),
    ("conv64x56", "conv2d --input 1x64x56x56 --weight 64x64x3x3 --pad 1 --threads 1"),
    ("conv128x28", "conv2d --input 1x128x28x28 --weight 128x128x3x3 --pad 1 --threads 1"),
    ("conv256x14", "conv2d --input 1x256x14x14 --weight 256x256x3x3 --pad 1 --threads 1"),
]
CHECKPOINTS = [32, 64, 128, 256, 512]
STRATEGIES = ["auto", "bo", "evolutionary", "random"]


class BenchError(Exception):
    """A failed step; reported as one line and a non-zero exit."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def task_arg(text):
    name, sep, args = text.partition("=")
    if not sep or not name.strip() or not args.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=ARGS, e.g. gemm256='matmul --shape 256x256x256', got {text!r}")
    return name.strip(), args.strip()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--autotune", default=os.path.join(REPO_ROOT, "target", "release", "autotune"))
    p.add_argument("--model-quality", default=os.path.join(REPO_ROOT, "target", "release", "examples", "model_quality"),
                   help="the model_quality example binary; skipped if missing")
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "out", "search"), help="databases and results")
    p.add_argument("--task", type=task_arg, action="append", dest="tasks",
                   help="NAME='autotune op ARGS' (repeatable; default: the GEMMs and ResNet-50 convs)")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help=f"comma-separated, from {','.join(STRATEGIES)} (default: all)")
    p.add_argument("--seeds", type=int_list, default=[1, 2, 3], help="default 1,2,3")
    p.add_argument("--trials", type=int, default=256, help="trials per run of a learned strategy (default 256)")
    p.add_argument("--random-trials", type=int, default=512,
                   help="trials per random-search run (default 512: `auto` at 128 is compared with random at 512)")
    p.add_argument("--reuse", action="store_true", help="keep runs whose summary JSON exists")
    p.add_argument("--no-remeasure", action="store_true",
                   help="judge runs by their recorded times, without timing their incumbents again")
    p.add_argument("--remeasure-time-s", type=float, default=0.5,
                   help="timed seconds per incumbent when re-measuring (default 0.5)")
    p.add_argument("--remeasure-rounds", type=int, default=3,
                   help="passes over all incumbents when re-measuring; a kernel's speed is the median (default 3)")
    p.add_argument("--warm-start", metavar="LOG",
                   help="also run `auto` warm-started from LOG (strategy `auto-warm`) to measure transfer")
    args = p.parse_args()
    args.tasks = args.tasks or DEFAULT_TASKS
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        p.error(f"unknown strategies {unknown}: use {STRATEGIES}")
    if args.warm_start:
        if not os.path.exists(args.warm_start):
            p.error(f"--warm-start {args.warm_start}: no such file")
        args.warm_start = os.path.abspath(args.warm_start)
        args.strategies.append("auto-warm")
    if args.remeasure_rounds < 1:
        p.error("--remeasure-rounds must be at least 1")
    if args.trials < 1 or args.random_trials < 1:
        p.error("--trials and --random-trials must be positive")
    return args


def run_tuning(args, task, op_args, strategy, seed):
    """One tuning run (or its cached summary): the per-trial GFLOP/s and the time split."""
    base = os.path.join(args.out, f"{task}_{strategy}_s{seed}")
    summary_path = base + ".json"
    if args.reuse and os.path.exists(summary_path):
        with open(summary_path) as f:
            return json.load(f)
    for suffix in (".db", ".db-wal", ".db-shm", ".json"):
        if os.path.exists(base + suffix):
            os.remove(base + suffix)
    n_trials = args.random_trials if strategy == "random" else args.trials
    strategy_args = ["--strategy", strategy]
    if strategy == "auto-warm":
        strategy_args = ["--strategy", "auto", "--warm-start", args.warm_start]
    cmd = [args.autotune, "op", *shlex.split(op_args), *strategy_args, "--seed", str(seed),
           "--trials", str(n_trials), "--db", base + ".db", "--json"]
    shown = " ".join(shlex.quote(c) for c in cmd)
    log(f"{task} {strategy} seed {seed}: {n_trials} trials ...")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    wall_s = time.monotonic() - t0
    if proc.returncode != 0:
        raise BenchError(f"`{shown}` exited with status {proc.returncode}: {proc.stderr.strip()[-300:]}")
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise BenchError(f"`{shown}` did not print one JSON object: {proc.stdout[:200]!r}")
    for key in ("trials", "search_time_s", "measure_time_s", "best_gflops"):
        if key not in out:
            raise BenchError(f"`{shown}`: output lacks {key!r} (an autotune without search timing?)")
    gflops = [t["gflops"] or 0.0 for t in out["trials"]]
    result = {"task": task, "strategy": strategy, "seed": seed, "command": shown, "wall_s": wall_s,
              "search_time_s": out["search_time_s"], "measure_time_s": out["measure_time_s"],
              "gflops": gflops, "best_gflops": out["best_gflops"]}
    with open(summary_path, "w") as f:
        json.dump(result, f)
    log(f"  best {max(gflops, default=0):.1f} GFLOP/s in {wall_s:.0f} s "
        f"(search {out['search_time_s']:.1f} s, measure {out['measure_time_s']:.1f} s)")
    return result


def threads_of(op_args):
    """The --threads of a task's `autotune op` arguments (1 when absent)."""
    words = shlex.split(op_args)
    return words[words.index("--threads") + 1] if "--threads" in words[:-1] else "1"


def incumbent_keys(args, task, run):
    """The trace key of the run's incumbent (fastest recorded ok trial so far) after each trial;
    None before its first ok trial. Trials in log order are the run's --json trials."""
    db = os.path.join(args.out, f"{task}_{run['strategy']}_s{run['seed']}.db")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT trace_key, median_s FROM trial WHERE strategy != 'default' ORDER BY id").fetchall()
    if len(rows) != len(run["gflops"]):
        raise BenchError(f"{db}: {len(rows)} trials in the log, {len(run['gflops'])} in the run's summary")
    keys, best_key, best_s = [], None, float("inf")
    for key, median_s in rows:
        if median_s is not None and median_s < best_s:
            best_key, best_s = key, median_s
        keys.append(best_key)
    return db, keys


def remeasure(args, task, op_args, runs):
    """Times every run's incumbents again and stores each run's re-measured incumbent curve as
    run['remeasured']: --remeasure-rounds passes, each one `autotune best` per run with the runs in
    a new shuffled order; a kernel's speed is the median over the passes. Every pass is a fresh
    process (fresh memory placement) at another moment of the machine, so one lucky or unlucky
    window neither crowns nor buries a kernel, and the best known kernel of the task is not simply
    the luckiest single timing among hundreds."""
    jobs = []
    for rs in runs.values():
        for run in rs:
            db, keys = incumbent_keys(args, task, run)
            jobs.append((run, db, keys, {}))
    log(f"{task}: re-measuring the incumbents of {len(jobs)} runs, {args.remeasure_rounds} passes ...")
    for rnd in range(args.remeasure_rounds):
        order = list(range(len(jobs)))
        random.Random(rnd).shuffle(order)
        for j in order:
            run, db, keys, speeds = jobs[j]
            distinct = sorted({k for k in keys if k is not None})
            cmd = [args.autotune, "best", "--db", db, "--threads", threads_of(op_args), "--min-time-s",
                   str(args.remeasure_time_s), "--json"]
            for key in distinct:
                cmd += ["--trace-key", key]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
            if proc.returncode != 0:
                raise BenchError(f"re-measuring {db}: {proc.stderr.strip()[-300:]}")
            for k in json.loads(proc.stdout)["kernels"]:
                speeds.setdefault(k["trace_key"], []).append(k["gflops"])
    for run, db, keys, speeds in jobs:
        run["remeasured"] = [statistics.median(speeds[k]) if k is not None else 0.0 for k in keys]


def best_so_far(gflops):
    curve, best = [], 0.0
    for g in gflops:
        best = max(best, g)
        curve.append(best)
    return curve


def curve_of(run, remeasured):
    """GFLOP/s of the run's incumbent after each trial: as re-measured, or as recorded."""
    return run["remeasured"] if remeasured else best_so_far(run["gflops"])


def best_after(run, n, remeasured=False):
    """The incumbent's GFLOP/s after n trials; None if the run had fewer."""
    curve = curve_of(run, remeasured)
    return curve[n - 1] if len(curve) >= n else None


def trials_to(run, threshold, remeasured=False):
    for i, best in enumerate(curve_of(run, remeasured)):
        if best >= threshold:
            return i + 1
    return None


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def median_trials_to(runs, threshold, remeasured=False):
    """Median over runs of trials to reach the threshold; a run that never did counts as infinite."""
    values = [trials_to(r, threshold, remeasured) or float("inf") for r in runs]
    m = statistics.median(values) if values else None
    return None if m is None or m == float("inf") else m


def model_quality(args, task, runs):
    """Mean cross-validated ranking quality over the random-search logs of a task."""
    if not os.path.exists(args.model_quality):
        return None
    rows = []
    for run in runs:
        db = os.path.join(args.out, f"{task}_random_s{run['seed']}.db")
        proc = subprocess.run([args.model_quality, db], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise BenchError(f"model_quality {db}: {proc.stderr.strip()[-300:]}")
        rows += [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if not rows:
        return None
    return {"pairwise_accuracy": statistics.mean(r["pairwise_accuracy"] for r in rows),
            "top_k_recall": statistics.mean(r["top_k_recall"] for r in rows),
            "k": rows[0]["k"], "n_trials": rows[0]["n_trials"], "n_logs": len(rows)}


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_table(headers, lines):
    widths = [max(len(h), *(len(ln[i]) for ln in lines)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for ln in lines:
        print("  ".join(c.ljust(w) for c, w in zip(ln, widths)).rstrip())


def main():
    args = parse_args()
    if not (os.path.isfile(args.autotune) and os.access(args.autotune, os.X_OK)):
        raise BenchError(f"{args.autotune} is not an executable file; build it first (cargo build --release)")
    os.makedirs(args.out, exist_ok=True)

    results = {"config": {"tasks": args.tasks, "strategies": args.strategies, "seeds": args.seeds,
                          "trials": args.trials, "random_trials": args.random_trials},
               "tasks": {}, "checks": []}
    for task, op_args in args.tasks:
        runs = {s: [run_tuning(args, task, op_args, s, seed) for seed in args.seeds] for s in args.strategies}
        judged_remeasured = not args.no_remeasure
        if judged_remeasured:
            remeasure(args, task, op_args, runs)
        tables = {}
        for remeasured in ([False, True] if judged_remeasured else [False]):
            best_known = max(max(curve_of(r, remeasured), default=0.0) for rs in runs.values() for r in rs)
            threshold = 0.9 * best_known
            rows = {}
            for strategy, rs in runs.items():
                overhead = [r["search_time_s"] / r["wall_s"] for r in rs if r["wall_s"] > 0]
                rows[strategy] = {
                    "best_after": {n: median_or_none([best_after(r, n, remeasured) for r in rs]) for n in CHECKPOINTS},
                    "trials_to_90": median_trials_to(rs, threshold, remeasured),
                    "trials_to_90_per_seed": [trials_to(r, threshold, remeasured) for r in rs],
                    "search_s": statistics.median(r["search_time_s"] for r in rs),
                    "measure_s": statistics.median(r["measure_time_s"] for r in rs),
                    "wall_s": statistics.median(r["wall_s"] for r in rs),
                    "search_share_of_wall": statistics.median(overhead) if overhead else None,
                }
            tables["remeasured" if remeasured else "recorded"] = {
                "best_known_gflops": best_known, "threshold_gflops": threshold, "strategies": rows}
        # The checks judge the kernels the runs would hand over: re-measured unless asked not to.
        judged = tables["remeasured" if judged_remeasured else "recorded"]
        rows = judged["strategies"]
        quality = model_quality(args, task, runs["random"]) if "random" in runs else None
        results["tasks"][task] = {"op": op_args, "judged_on": "remeasured" if judged_remeasured else "recorded",
                                  "tables": tables, "model_quality": quality, "runs": runs}

        headers = ["strategy"] + [f"@{n}" for n in CHECKPOINTS] + ["trials to 90%", "per seed", "search s",
                                                                   "measure s", "search % of wall"]
        for name, table in tables.items():
            print(f"\n{task} ({op_args}), {name}: best known {table['best_known_gflops']:.1f} GFLOP/s, "
                  f"90% = {table['threshold_gflops']:.1f}")
            lines = []
            for strategy, row in table["strategies"].items():
                lines.append([strategy] + [fmt(row["best_after"][n], ".1f") for n in CHECKPOINTS]
                             + [fmt(row["trials_to_90"], "g"),
                                ",".join(fmt(t, "d") for t in row["trials_to_90_per_seed"]),
                                fmt(row["search_s"], ".1f"), fmt(row["measure_s"], ".1f"),
                                fmt(None if row["search_share_of_wall"] is None
                                    else 100 * row["search_share_of_wall"], ".1f")])
            print_table(headers, lines)
        if quality:
            print(f"cost model on held-out random trials (5-fold CV, {quality['n_logs']} logs of {quality['n_trials']}): "
                  f"pairwise accuracy {quality['pairwise_accuracy']:.3f}, top-{quality['k']} recall {quality['top_k_recall']:.3f}")

        def check(name, ok, detail):
            results["checks"].append({"task": task, "check": name, "pass": bool(ok), "detail": detail})
            print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")

        if "auto" in rows and "random" in rows:
            auto_t, random_t = rows["auto"]["trials_to_90"], rows["random"]["trials_to_90"]
            limit = max(16, (random_t if random_t is not None else float("inf")) / 3)
            check("auto reaches 90% in <= max(16, random/3) and <= 64 trials",
                  auto_t is not None and auto_t <= limit and auto_t <= 64,
                  f"auto {fmt(auto_t, 'g')}, random {fmt(random_t, 'g')} (limit {min(limit, 64):g})")
            auto128 = rows["auto"]["best_after"][128]
            random512 = rows["random"]["best_after"][512] or max(
                (v for v in rows["random"]["best_after"].values() if v is not None), default=None)
            check("auto at 128 >= random at 512", auto128 is not None and random512 is not None and auto128 >= random512,
                  f"auto@128 {fmt(auto128, '.1f')}, random@{'512' if rows['random']['best_after'][512] else 'max'} "
                  f"{fmt(random512, '.1f')} GFLOP/s")
        if "auto" in rows:
            share = rows["auto"]["search_share_of_wall"]
            check("auto search overhead < 10% of tuning wall time", share is not None and share < 0.10,
                  f"{fmt(None if share is None else 100 * share, '.1f')}%")
        if "auto-warm" in rows and "auto" in rows:
            worse = [n for n in CHECKPOINTS
                     if rows["auto"]["best_after"][n] is not None and rows["auto-warm"]["best_after"][n] is not None
                     and rows["auto-warm"]["best_after"][n] < 0.97 * rows["auto"]["best_after"][n]]
            check("warm start never worse than a cold start (within 3% noise)", not worse,
                  ", ".join(f"@{n}: warm {fmt(rows['auto-warm']['best_after'][n], '.1f')} vs cold "
                            f"{fmt(rows['auto']['best_after'][n], '.1f')}" for n in CHECKPOINTS
                            if rows["auto"]["best_after"][n] is not None))
        if quality:
            check("cost model pairwise ranking accuracy >= 0.8", quality["pairwise_accuracy"] >= 0.8,
                  f"{quality['pairwise_accuracy']:.3f}")

    out = os.path.join(args.out, "search_bench.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        sys.exit(f"search.py: error: {e}")
    except KeyboardInterrupt:
        sys.exit("search.py: interrupted")
