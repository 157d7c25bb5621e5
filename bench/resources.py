#!/usr/bin/env python3
"""Resource benchmark of model tuning: peak memory and log growth.

    cargo build --release && python3 bench/resources.py [--model resnet50] [--trials-per-task 8]

Tunes a light model of the onnx package (ResNet-50 by default) into a fresh log, sampling every
0.1 s the resident memory (VmRSS in /proc) of the `autotune` process and of its measurement
worker, and reports each one's peak and the peak of their sum (what the machine must hold).
It tunes to --trials-per-task N, then resumes to 2N, and reports the log's growth per trial
between the two (file size after a checkpoint, over the added trial rows) and what a 24-hour run
at this run's trial rate would write. Writes
{out}/resources_bench.json.
"""
import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--autotune", default=os.path.join(ROOT, "target/release/autotune"))
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--trials-per-task", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="/tmp/autotune_resources_bench")
    args = ap.parse_args()
    import onnx
    model = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                         f"light_{args.model}.onnx")
    if not os.path.exists(model):
        sys.exit(f"bench/resources.py: no light model {model}")
    os.makedirs(args.out, exist_ok=True)
    db = os.path.join(args.out, f"{args.model}.tuning.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    peak = {"autotune": 0.0, "worker": 0.0, "sum": 0.0}
    steps = []
    wall_s = 0.0
    # Twice: to N trials per task, then resumed to 2N, so the log's growth per trial is measured
    # as a slope, apart from its fixed part (schema, tasks, targets, machine ceilings).
    for cap in (args.trials_per_task, 2 * args.trials_per_task):
        cmd = [args.autotune, model, "--trials-per-task", str(cap), "--threads", str(args.threads),
               "--db", db, "--report", os.path.join(args.out, "report.html"), "--json"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            main_rss = rss_mib(proc.pid)
            worker_rss = sum(rss_mib(c) for c in children(proc.pid))
            peak["autotune"] = max(peak["autotune"], main_rss)
            peak["worker"] = max(peak["worker"], worker_rss)
            peak["sum"] = max(peak["sum"], main_rss + worker_rss)
            time.sleep(0.1)
        stdout, stderr = proc.communicate()
        wall_s += time.monotonic() - t0
        if proc.returncode != 0:
            sys.exit(f"bench/resources.py: tuning failed: {stderr.strip()[-300:]}")
        summary = json.loads(stdout)
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            trials = conn.execute("SELECT COUNT(*) FROM trial").fetchone()[0]
        steps.append({"trials_per_task": cap, "trials": trials, "log_bytes": os.path.getsize(db)})
    (a, b) = steps
    per_trial = (b["log_bytes"] - a["log_bytes"]) / max(1, b["trials"] - a["trials"])
    per_day = per_trial * b["trials"] / wall_s * 86400
    result = {"model": args.model, "tasks": summary["n_tasks"], "steps": steps, "wall_s": wall_s,
              "peak_rss_mib": peak, "log_bytes_per_trial": per_trial, "log_bytes_per_24h": per_day}
    print(f"{args.model}: {summary['n_tasks']} tasks, {b['trials']} trials in {wall_s:.0f} s")
    print(f"  peak RSS: autotune {peak['autotune']:.0f} MiB, worker {peak['worker']:.0f} MiB, "
          f"both at once {peak['sum']:.0f} MiB")
    print(f"  log: {a['log_bytes'] / 1024:.0f} KiB at {a['trials']} trials, {b['log_bytes'] / 1024:.0f} KiB "
          f"at {b['trials']}: {per_trial:.0f} bytes per added trial; 24 h at this run's rate: "
          f"{per_day / 2**20:.0f} MiB")
    with open(os.path.join(args.out, "resources_bench.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
