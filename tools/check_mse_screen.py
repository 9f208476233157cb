#!/usr/bin/env python
"""The screened MSE search against scoring every candidate exactly, on random histograms.

``_reference.select.mse_index`` scores exactly only the candidates whose estimate
(:func:`_mse_estimates`) could be the minimum.  This script draws histograms of many
shapes (half-normal, exponential, uniform, spikes, sparse, huge counts), edges (the
observer's power-of-two grids, float32 ``linspace`` over ranges from 1e-30 to 1e10) and
settings (bits 2 to 8, signed/unsigned, start bins, strides) and checks that the chosen
index equals the first minimum of all exact scores.

    python tools/check_mse_screen.py [--cases 2000] [--seed 0]
"""
import argparse
import os
import sys
import time

import numpy as np
from numba import njit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from numba_quant._reference import select  # noqa: E402


@njit(cache=True)
def every_candidate(counts, edges, num_bits, unsigned, start_bin, stride):
    """The first minimum of the exact scores of all candidates (no screening)."""
    n = counts.size
    centers, weights, bound, lowest, ordered = select.mse_inputs(counts, edges, num_bits,
                                                                 unsigned)
    terms = np.empty(n, np.float64)
    best = -1
    best_score = np.float32(np.inf)
    for i in range(start_bin, n, stride):
        score = select._mse_score(centers, weights, i, bound, lowest, ordered, terms)
        if best < 0 or score < best_score:
            best = i
            best_score = score
    return best


def applies(counts, edges, bits, unsigned, start, stride):
    """Whether the estimates apply (else every candidate is scored exactly anyway)."""
    centers, weights, bound, _, _ = select.mse_inputs(counts, edges, bits, unsigned)
    count = (counts.size - 1 - start) // stride + 1
    return select._mse_estimates(centers, weights, bound, start, stride,
                                 np.empty(count), np.empty(count))


def random_counts(rng, bins, kind):
    """Random histogram counts of one of seven shapes (``kind`` 0-6): half-normal,
    exponential, uniform, five spikes, sparse, huge counts (beyond float32's 2**24), an
    empty head (the first bins hold nothing); one count added at a random bin."""
    x = np.arange(bins)
    if kind == 0:
        mean = rng.uniform(2, 2000) * np.exp(-(x / (bins * rng.uniform(0.05, 0.6))) ** 2)
    elif kind == 1:
        mean = rng.uniform(2, 2000) * np.exp(-x / (bins * rng.uniform(0.01, 0.5)))
    elif kind == 2:
        mean = np.full(bins, rng.uniform(0.5, 500))
    elif kind == 3:
        mean = np.zeros(bins)
        mean[rng.integers(0, bins, 5)] = rng.uniform(1, 1e4, 5)
    elif kind == 4:
        mean = rng.uniform(0, 3, bins) * (rng.random(bins) < 0.2)
    elif kind == 5:
        mean = 1e7 * np.exp(-x / (bins * 0.1))
    else:
        mean = rng.uniform(1, 100, bins) * (x > rng.integers(0, bins))
    counts = rng.poisson(mean).astype(np.int64)
    counts[rng.integers(0, bins)] += 1
    return counts


def draw(rng):
    bins = int(rng.choice([64, 100, 256, 1000, 1024, 2048]))
    counts = random_counts(rng, bins, rng.integers(0, 6))
    top = 10.0 ** rng.uniform(-30, 10)
    if rng.random() < 0.5:  # the observer's power-of-two grid (exact float32 edges)
        width = np.float32(2.0 ** np.floor(np.log2(top / bins)))
        edges = (np.arange(bins + 1) * width).astype(np.float32)
    else:
        edges = np.linspace(0, top, bins + 1, dtype=np.float32)
    bits = int(rng.integers(2, 9))
    unsigned = bool(rng.integers(0, 2))
    start = int(rng.integers(1, bins // 2))
    stride = int(rng.choice([1, 1, 1, 2, 3]))
    return counts, edges, bits, unsigned, start, stride


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    bad = 0
    screened = 0
    t0 = time.time()
    for case in range(args.cases):
        counts, edges, bits, unsigned, start, stride = draw(rng)
        got = select.mse_index(counts, edges, bits, unsigned, start, stride)
        want = every_candidate(counts, edges, bits, unsigned, start, stride)
        screened += applies(counts, edges, bits, unsigned, start, stride)
        if got != want:
            bad += 1
            print(f"case {case}: screened {got}, every candidate {want} (bins {counts.size}, "
                  f"bits {bits}, unsigned {unsigned}, start {start}, stride {stride}, "
                  f"top edge {edges[-1]:g})")
    print(f"{args.cases} cases ({screened} screened), {bad} mismatches, "
          f"{time.time() - t0:.1f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
