#!/usr/bin/env python3
"""Resume benchmark: is a tuning run that was killed (kill -9) and resumed as good as one that
never stopped, at the same total number of trials?

    cargo build --release
    python3 bench/resume.py [--trials 64] [--seeds 1,2,3] [--kills 2]

For each seed, one task (default: GEMM 512^3 on one thread, `--task` for another `autotune op`
argument list) is tuned twice into fresh logs: once uninterrupted with --trials N, and once killed
with SIGKILL --kills times at random moments (seeded; chosen by the number of committed trials,
polled in the log) and rerun each time with the trials still missing, until the log holds N.
A resumed run rebuilds its search state from the log (the strategy first observes every earlier
trial: cost model and population), so the only loss allowed is the batch in flight at each kill.

Then the winner of every log is re-measured (`autotune best --trace-key`, --remeasure-rounds
passes over the logs in shuffled order, a fresh process each; median per log), and per seed it
prints the uninterrupted and the killed-and-resumed winner's GFLOP/s and their ratio, and the
median ratio over seeds. Writes {out}/resume_bench.json.
"""

import argparse
import json
import os
import random
import shlex
import signal
import sqlite3
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


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--autotune", default=os.path.join(REPO_ROOT, "target/release/autotune"))
    p.add_argument("--task", default="matmul --shape 512x512x512 --threads 1",
                   help="`autotune op` arguments of the task (without --db/--seed/--trials)")
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--kills", type=int, default=2, help="kills per interrupted run")
    p.add_argument("--remeasure-rounds", type=int, default=3)
    p.add_argument("--remeasure-time-s", type=float, default=0.5)
    p.add_argument("--out", default="/tmp/autotune_resume_bench")
    return p.parse_args()


def tuned_trials(db):
    """Committed search trials (the default schedule's row does not count towards --trials)."""
    if not os.path.exists(db):
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM trial WHERE strategy != 'default'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # not created yet, or the schema is being written


def tune_cmd(args, db, seed, trials):
    return [args.autotune, "op", *shlex.split(args.task), "--seed", str(seed), "--trials", str(trials),
            "--db", db, "--json"]


def fresh(db):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)


def uninterrupted(args, seed):
    db = os.path.join(args.out, f"straight_s{seed}.db")
    fresh(db)
    proc = subprocess.run(tune_cmd(args, db, seed, args.trials), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"uninterrupted run, seed {seed}: {proc.stderr.strip()[-300:]}")
    return db


def killed_and_resumed(args, seed):
    db = os.path.join(args.out, f"killed_s{seed}.db")
    fresh(db)
    rng = random.Random(seed)
    kill_points = sorted(rng.sample(range(1, args.trials), args.kills))
    kills = []
    while True:
        done = tuned_trials(db)
        if done >= args.trials:
            break
        pending = [k for k in kill_points if k > done]
        proc = subprocess.Popen(tune_cmd(args, db, seed, args.trials - done),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if pending and len(kills) < args.kills:
            while proc.poll() is None and tuned_trials(db) < pending[0]:
                time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills.append(tuned_trials(db))
                continue
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            raise BenchError(f"resumed run, seed {seed}: exit {proc.returncode}: {stderr.strip()[-300:]}")
    return db, kills


def winner_key(db):
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT trace_key FROM trial WHERE status = 'ok' ORDER BY median_s, id LIMIT 1").fetchone()[0]


def remeasure(args, dbs):
    speeds = {db: [] for db in dbs}
    threads = shlex.split(args.task)
    threads = threads[threads.index("--threads") + 1] if "--threads" in threads else "1"
    for rnd in range(args.remeasure_rounds):
        order = list(dbs)
        random.Random(100 + rnd).shuffle(order)
        for db in order:
            cmd = [args.autotune, "best", "--db", db, "--threads", threads, "--min-time-s",
                   str(args.remeasure_time_s), "--trace-key", winner_key(db), "--json"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BenchError(f"re-measuring {db}: {proc.stderr.strip()[-300:]}")
            speeds[db].append(json.loads(proc.stdout)["kernels"][0]["gflops"])
    return {db: statistics.median(v) for db, v in speeds.items()}


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for seed in seeds:
        log(f"seed {seed}: uninterrupted, {args.trials} trials ...")
        straight = uninterrupted(args, seed)
        log(f"seed {seed}: killed {args.kills} times and resumed ...")
        killed, kills = killed_and_resumed(args, seed)
        for db in (straight, killed):
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    raise BenchError(f"{db}: integrity_check failed")
            if tuned_trials(db) != args.trials:
                raise BenchError(f"{db}: {tuned_trials(db)} trials, expected {args.trials}")
        runs.append({"seed": seed, "straight": straight, "killed": killed, "killed_at_trials": kills})
    speeds = remeasure(args, [db for r in runs for db in (r["straight"], r["killed"])])
    print(f"{'seed':>4}  {'killed at':>12}  {'uninterrupted':>13}  {'killed+resumed':>14}  {'ratio':>6}")
    ratios = []
    for r in runs:
        a, b = speeds[r["straight"]], speeds[r["killed"]]
        r.update(straight_gflops=a, killed_gflops=b, ratio=b / a)
        ratios.append(b / a)
        kills = ",".join(map(str, r["killed_at_trials"]))
        print(f"{r['seed']:>4}  {kills:>12}  {a:>13.1f}  {b:>14.1f}  {b / a:>6.3f}")
    print(f"median ratio (killed+resumed / uninterrupted) over {len(seeds)} seeds: "
          f"{statistics.median(ratios):.3f}; GFLOP/s of the winners re-measured in one run, "
          f"{args.trials} trials each: {args.task}")
    with open(os.path.join(args.out, "resume_bench.json"), "w") as f:
        json.dump({"task": args.task, "trials": args.trials, "runs": runs,
                   "median_ratio": statistics.median(ratios)}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"resume.py: {e}", file=sys.stderr)
        sys.exit(1)
