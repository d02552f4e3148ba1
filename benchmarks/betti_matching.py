"""Benchmark of ``medloss.topology.betti_matching`` against Betti-Matching-3D (when importable).

Inputs: the reference generator of ``shared/reference/betti/README.md`` (seed 0). Reports per size the CPU time
(``time.process_time``: user+sys of the whole process, all threads; median over repeats), wall time, and peak
memory: one extra call in a forked child, reporting the child's peak RSS (``resource.getrusage(...).ru_maxrss``)
after the call minus before it (memory added by the call on top of the inputs; JIT already loaded).
Betti-Matching-3D is the compiled ``betti_matching`` module, imported directly or from topolosses' wheel by file
path; its input is ``1 - pred``, ``1 - gt`` (the same filtration).

``--profile SHAPE`` (e.g. ``128x128x128``) prints where the CPU time of one call goes instead: exclusive time of
every kernel stage called by the driver (``medloss.topology._matching``) and of the ranking, on one thread.

``--threads N`` adds the wall time of one call on ``N`` threads (``num_workers=N``: the parts of one matching
in parallel) and its ratio to the one-thread wall time (goal on 2 cores at 128^3: <= 0.6).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/betti_matching.py [--skip-128] [--repeats N] [--threads N]
[--profile SHAPE]``. The CPU-time columns and ratios are measured on one thread (``num_workers=1``), as
Betti-Matching-3D runs.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's devtools/

from devtools.generators import noisy_prediction_pair as make_pair
from devtools.oracles import load_betti_matching_3d
from medloss.topology.api import betti_matching, betti_matching_batch


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_rss_delta_mb(fn):
    """Peak resident memory added by ``fn()``, measured in a forked child (``ru_maxrss`` after minus before),
    so the value is not masked by the parent's earlier high-water mark. Returns -1 where fork is unavailable."""
    if not hasattr(os, "fork"):
        return -1.0
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        before = maxrss_mb()
        fn()
        os.write(w, f"{maxrss_mb() - before:.1f}".encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    return float(out) if out else -1.0


def timed(fn, repeats):
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return float(np.median(cpu)), float(np.median(wall))


def profile(shape, repeats):
    """Exclusive CPU time per kernel stage (functions the driver calls), median call of ``repeats``."""
    from medloss.topology import _matching, api

    stack, acc = [], collections.defaultdict(float)

    def timed_stage(name, fn):
        def run(*args, **kwargs):
            stack.append(0.0)
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                total = time.process_time() - t0
                child = stack.pop()
                acc[name] += total - child
                if stack:
                    stack[-1] += total
        return run

    names = [n for n, f in vars(_matching).items() if callable(f) and n not in ("match_grids", "barcode_grid")
             and getattr(f, "__module__", "").startswith("medloss.topology")]
    for n in names:
        setattr(_matching, n, timed_stage(n, getattr(_matching, n)))
    api.dense_rank = timed_stage("dense_rank", api.dense_rank)
    api.comparison_ranks = timed_stage("comparison_ranks", api.comparison_ranks)
    pred, gt = make_pair(shape)
    betti_matching(pred, gt, num_workers=1)  # one thread: exclusive times of nested stages add up
    totals = []
    per_run = []
    for _ in range(repeats):
        acc.clear()
        t0 = time.process_time()
        betti_matching(pred, gt, num_workers=1)
        totals.append(time.process_time() - t0)
        per_run.append(dict(acc))
    k = int(np.argsort(totals)[len(totals) // 2])
    print(f"profile of betti_matching at {'x'.join(map(str, shape))}: {totals[k]:.3f} CPU s (median of {repeats})")
    for name, sec in sorted(per_run[k].items(), key=lambda kv: -kv[1]):
        print(f"  {name:28s} {sec:8.3f} s  {100 * sec / totals[k]:5.1f} %")
    rest = totals[k] - sum(per_run[k].values())
    print(f"  {'(input checks, assembly)':28s} {rest:8.3f} s  {100 * rest / totals[k]:5.1f} %")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-128", action="store_true", help="skip the 128^3 case")
    ap.add_argument("--skip-bm3d", action="store_true", help="do not run Betti-Matching-3D")
    ap.add_argument("--batch", action="store_true", help="also time a parallel batch of 64^3 samples")
    ap.add_argument("--repeats", type=int, default=0, help="runs per size (default: 21/11/7/5/5/3 by size)")
    ap.add_argument("--profile", metavar="SHAPE", help="print a per-stage CPU profile for one shape, e.g. 64x64x64")
    ap.add_argument("--threads", type=int, default=0,
                    help="also time one call on this many threads (intra-sample parallelism), wall ratio to 1 thread")
    args = ap.parse_args()
    if args.profile:
        profile(tuple(int(a) for a in args.profile.lower().split("x")), args.repeats or 3)
        return
    bm3d = None if args.skip_bm3d else load_betti_matching_3d()
    betti_matching(*make_pair((8, 8)))  # JIT / cache load outside the timings
    betti_matching(*make_pair((6, 6, 6)))
    sizes = [((64, 64), 21), ((256, 256), 11), ((512, 512), 7), ((1024, 1024), 5), ((64, 64, 64), 5),
             ((128, 128, 128), 3)]
    if args.skip_128:
        sizes = sizes[:-1]
    head = (f"{'shape':>14} {'medloss CPU s':>14} {'wall s':>9} {'peak RSS +MB':>12} | {'BM3D CPU s':>10} "
            f"{'wall s':>9} {'peak RSS +MB':>12} | {'CPU ratio':>9}")
    if args.threads > 1:
        head += f" | {f'wall {args.threads} thr':>11} {'ratio':>6} {'+MB':>6}"
    print(head)
    for shape, reps in sizes:
        reps = args.repeats or reps
        pred, gt = make_pair(shape)
        cpu, wall = timed(lambda pred=pred, gt=gt: betti_matching(pred, gt, num_workers=1), reps)
        mem = peak_rss_delta_mb(lambda pred=pred, gt=gt: betti_matching(pred, gt, num_workers=1))
        line = f"{'x'.join(map(str, shape)):>14} {cpu:14.4f} {wall:9.4f} {mem:12.1f} |"
        if bm3d is not None:
            a, b = np.ascontiguousarray(1.0 - pred), np.ascontiguousarray(1.0 - gt)
            breps = reps if len(shape) == 2 else min(reps, 3)
            bcpu, bwall = timed(lambda a=a, b=b: bm3d.compute_matching(a, b), breps)
            bmem = peak_rss_delta_mb(lambda a=a, b=b: bm3d.compute_matching(a, b))
            line += f" {bcpu:10.4f} {bwall:9.4f} {bmem:12.1f} | {bcpu / cpu:8.2f}x"
        else:
            line += " (Betti-Matching-3D not importable)"
        if args.threads > 1:
            # memory first: after threaded runs, freed blocks cached in the threads' malloc arenas would be reused
            # by the child's threads and hide its peak
            mem_n = peak_rss_delta_mb(lambda pred=pred, gt=gt: betti_matching(pred, gt, num_workers=args.threads))
            _, wall_n = timed(lambda pred=pred, gt=gt: betti_matching(pred, gt, num_workers=args.threads), reps)
            line += f" | {wall_n:11.4f} {wall_n / wall:6.2f} {mem_n:6.0f}"
        print(line, flush=True)
    if args.batch:
        # batch parallelism: B samples on B threads (numba kernels release the GIL) vs one sample
        workers = os.cpu_count() or 1
        preds, gts = zip(*(make_pair((64, 64, 64), seed) for seed in range(workers)))
        _, w1 = timed(lambda: betti_matching(preds[0], gts[0], num_workers=1), 3)
        cpu_b, w_b = timed(lambda: betti_matching_batch(preds, gts, num_workers=workers), 3)
        print(f"batch of {workers} x 64^3 on {workers} threads: wall {w_b:.3f} s (one sample {w1:.3f} s), "
              f"CPU {cpu_b:.3f} s")


if __name__ == "__main__":
    main()
