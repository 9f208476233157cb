#!/usr/bin/env python
"""Benchmark of the histogram calibration (numba_quant.HistogramObserver, compute_amax).

    python benchmarks/calibrate.py [--sizes 1e7,1e8] [--repeats 5] [--stat min]
                                   [--rows histogram,tensor,select] [--threads N]

Rows: the histogram pass of ``HistogramObserver.observe`` (per-channel min/max pass plus
the counting pass; per channel, and per block with ``block_size``) against BW, the
parallel read-only pass over the same bytes (``benchmarks/timing.py``); a per-tensor pass
against PyTorch's ``HistogramObserver`` forward (when importable); and range selection on
64 channels x 2048 bins per method (wall time, and the CPU time of all threads, which a
loaded machine changes less).  Times are the median (or with ``--stat min``, the least)
of ``--repeats`` runs after one warm-up run; the implementations of a row alternate
within each repeat, and each run's wall and CPU time (``time.process_time``, all threads)
are taken together.
"""
import argparse
import os
import sys

import numpy as np
from numba import get_num_threads, set_num_threads

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numba_quant as nq  # noqa: E402
from timing import bandwidth_probe, interleave  # noqa: E402

STAT = "median"


def measure(impls, repeats):
    """``({name: wall}, {name: cpu})`` seconds: ``STAT`` of ``repeats`` runs each."""
    times = interleave(impls, repeats, cpu=True)
    return ({k: t.stat(STAT) for k, t in times.items()},
            {k: t.cpu_stat(STAT) for k, t in times.items()})


def row(title, times, base):
    t, cpu = times
    parts = "  ".join(f"{k} {v * 1e3:9.2f} ms (CPU {cpu[k] * 1e3:8.2f})" for k, v in t.items())
    ratios = "  ".join(f"{k}/{base} {v / t[base]:6.2f}" for k, v in t.items() if k != base)
    print(f"{title:38s} {parts}  |  {ratios}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1e7,1e8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stat", choices=("median", "min"), default="median")
    parser.add_argument("--rows", default="histogram,tensor,select")
    parser.add_argument("--threads", type=int, default=0,
                        help="numba (and torch) threads; 0: numba's default")
    args = parser.parse_args()
    if args.threads:
        set_num_threads(args.threads)
    global STAT
    STAT = args.stat
    rows = args.rows.split(",")
    rng = np.random.default_rng(0)
    print(f"threads {get_num_threads()}, numpy {np.__version__}")
    for size in (int(float(s)) for s in args.sizes.split(",") if "histogram" in rows):
        x = rng.standard_normal((64, size // 64), dtype=np.float32)
        bw = bandwidth_probe(x)
        obs = nq.HistogramObserver(bins=2048, per_layer_quantization=False, axis=0)

        def ours():
            obs.reset()
            obs.observe(x)
        t = measure({"nq": ours, "BW": bw}, args.repeats)
        row(f"histogram 64ch x 2048 bins, n={size:.0e}", t, "BW")
        # the same data as 8 x 8 blocks of a 2-D array: 64 block histograms
        x2 = x.reshape(1000, size // 1000)
        blocks = nq.HistogramObserver(bins=2048, block_size=(125, size // 8000))

        def ours_blocks():
            blocks.reset()
            blocks.observe(x2)
        t = measure({"nq": ours_blocks, "BW": bw}, args.repeats)
        row(f"  64 blocks (8 x 8) x 2048 bins", t, "BW")
    if "tensor" in rows:
        per_tensor(args)
    if "select" in rows:
        selection(args)


def per_tensor(args):
    try:
        import torch
        from torch.ao.quantization import HistogramObserver
    except ImportError:
        torch = None
    n = int(float(args.sizes.split(",")[0]))
    x = np.random.default_rng(1).standard_normal(n, dtype=np.float32)
    ours_obs = nq.HistogramObserver(bins=2048, method="l2")

    def ours_tensor():
        ours_obs.reset()
        ours_obs.observe(x)
    impls = {"nq": ours_tensor}
    if torch is not None:
        torch.set_num_threads(get_num_threads())
        t_x = torch.from_numpy(x)

        def theirs():
            HistogramObserver(bins=2048)(t_x)
        impls["torch"] = theirs
    t = measure(impls, args.repeats)
    row(f"per-tensor forward n={n:.0e}", t, "nq")
    for method in ("percentile", "entropy"):
        other = nq.HistogramObserver(bins=2048, method=method)

        def observe(o=other):
            o.reset()
            o.observe(x)
        row(f"  observe, method={method}", measure({"nq": observe}, args.repeats), "nq")
    ours_obs.observe(x)
    row("l2 search (one batch, 2048 bins)", measure({"nq": ours_obs.range}, args.repeats), "nq")


def selection(args):
    rng = np.random.default_rng(2)
    hist = rng.poisson(rng.exponential(100, (64, 2048))).astype(np.int64)
    edges = np.tile(np.linspace(0, 1, 2049, dtype=np.float32), (64, 1))
    for method in ("percentile", "entropy", "mse"):
        t = measure({"nq": lambda m=method: nq.compute_amax(hist, edges, m)}, args.repeats)
        row(f"compute_amax {method} 64 x 2048", t, "nq")


if __name__ == "__main__":
    main()
