#!/usr/bin/env python3
"""numpy's float32 GEMM (its bundled BLAS, OpenBLAS for pip wheels) at a given size and thread count.

    python3 bench/numpy_gemm.py --size 1024 --threads 1

Prints one JSON object:
    {"size", "threads", "median_s", "min_s", "gflops", "blas", "blas_core", "blas_threads"}
gflops = 2*n^3 / median_s / 1e9. The BLAS thread count is fixed through the environment before
numpy is imported, so run one process per thread count.
"""

import argparse
import ctypes
import glob
import json
import os
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=1024, help="n for an n x n x n matmul (default 1024)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--seed", type=int, default=1, help="seed for the random inputs (default 1)")
    p.add_argument("--min-time", type=float, default=0.5, help="least total timed seconds (default 0.5)")
    p.add_argument("--min-repeats", type=int, default=5, help="least timed repeats (default 5)")
    args = p.parse_args()
    if args.size < 1 or args.threads < 1 or args.min_repeats < 1:
        p.error("--size, --threads and --min-repeats must be positive")
    return args


def blas_info(np):
    """(name, runtime core, runtime threads) of numpy's BLAS; cheap and best effort."""
    name = "unknown"
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = blas.get("name", "unknown")
        if blas.get("version"):
            name = f"{name} {blas['version']}"
    except Exception:  # older numpy: no mode="dicts"
        pass
    core, threads = None, None
    # pip wheels bundle OpenBLAS in numpy.libs/; ask it which kernel set it picked at run time
    # (DYNAMIC_ARCH) and how many threads it runs, to check that the environment took effect.
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*"))
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "")):
            try:
                get_core = getattr(lib, f"{prefix}get_corename{suffix}")
                get_threads = getattr(lib, f"{prefix}get_num_threads{suffix}")
            except AttributeError:
                continue
            get_core.restype = ctypes.c_char_p
            get_threads.restype = ctypes.c_int
            core = get_core().decode(errors="replace")
            threads = int(get_threads())
            break
        if core is not None:
            break
    return name, core, threads


def main():
    args = parse_args()
    n = str(args.threads)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = n
    import numpy as np  # after the thread variables: BLAS reads them when it loads

    rng = np.random.default_rng(args.seed)
    s = args.size
    a = np.ascontiguousarray(rng.standard_normal((s, s), dtype=np.float32))
    b = np.ascontiguousarray(rng.standard_normal((s, s), dtype=np.float32))
    c = np.empty((s, s), dtype=np.float32)

    # Warm up: page in C, start the BLAS thread pool, settle the clocks (at least ~0.1 s).
    warm_start = time.perf_counter()
    for i in range(100):
        np.matmul(a, b, out=c)
        if i >= 1 and time.perf_counter() - warm_start >= 0.1:
            break

    times = []
    total = 0.0
    while total < args.min_time or len(times) < args.min_repeats:
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt

    # Sanity check one entry against a float64 dot product, so a broken BLAS can't look fast.
    ref = float(np.dot(a[0].astype(np.float64), b[:, 0].astype(np.float64)))
    if abs(float(c[0, 0]) - ref) > 1e-3 * max(1.0, abs(ref)) * max(1.0, s ** 0.5):
        sys.exit(f"numpy_gemm.py: wrong result: C[0,0]={c[0, 0]} expected {ref}")

    median = statistics.median(times)
    name, core, blas_threads = blas_info(np)
    print(json.dumps({
        "size": s,
        "threads": args.threads,
        "median_s": median,
        "min_s": min(times),
        "gflops": 2.0 * s ** 3 / median / 1e9,
        "blas": name,
        "blas_core": core,
        "blas_threads": blas_threads,
        "n_repeats": len(times),
    }))


if __name__ == "__main__":
    main()
