#!/usr/bin/env python
"""Golden cases of PyTorch's L2 range search (``HistogramObserver._non_linear_param_search``)
on random 2048-bin histograms, for ``tests/test_rounding_steps.py``.

Histograms of several kinds: sparse small integer counts, flat runs of equal counts, a
smooth bell with outliers, a few spikes, Poisson noise; bounds ``lo < hi`` that are not
short binary fractions.  PyTorch's search is run as its observer runs it (float32 tensors,
the histogram, ``min_val`` and ``max_val`` set, 8-bit ``dst_nbins``); the cases are written
with the torch version to ``tests/data/l2_search_torch.npz``.

    python tools/make_l2_golden.py [--cases 240] [--seed 2026]
"""
import argparse
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINS = 2048


def torch_search(torch, hist, lo, hi):
    from torch.ao.quantization.observer import HistogramObserver
    obs = HistogramObserver(bins=BINS)
    obs.histogram = torch.from_numpy(hist)
    obs.min_val = torch.tensor(lo, dtype=torch.float32)
    obs.max_val = torch.tensor(hi, dtype=torch.float32)
    new_min, new_max = obs._non_linear_param_search()
    return np.float32(new_min), np.float32(new_max)


def histogram(rng, kind):
    k = np.arange(BINS)
    if kind == "sparse":
        h = np.zeros(BINS)
        used = rng.choice(BINS, int(rng.integers(2, 40)), replace=False)
        h[used] = rng.integers(1, 6, used.size)
    elif kind == "flat":
        h = np.zeros(BINS)
        a = int(rng.integers(0, BINS // 2))
        b = int(rng.integers(a + 1, BINS))
        h[a:b] = rng.integers(1, 4)
    elif kind == "bell":
        c, w = rng.uniform(300, 1700), rng.uniform(20, 300)
        h = np.round(rng.uniform(50, 5000) * np.exp(-0.5 * ((k - c) / w) ** 2))
        h[rng.choice(BINS, 3)] += rng.integers(1, 3, 3)
    elif kind == "spikes":
        h = np.zeros(BINS)
        h[rng.choice(BINS, int(rng.integers(1, 6)), replace=False)] = rng.integers(1, 10000)
        h[rng.integers(0, BINS)] += 1
    else:
        h = rng.poisson(rng.uniform(0.05, 20), BINS)
    if h.sum() == 0:
        h[rng.integers(0, BINS)] = 1
    return h.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=240)
    ap.add_argument("--tiny-cases", type=int, default=24)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    import torch
    rng = np.random.default_rng(args.seed)
    kinds = ("sparse", "flat", "bell", "spikes", "poisson")
    hists, bounds, results, names = [], [], [], []
    for i in range(args.cases):
        kind = kinds[i % len(kinds)]
        lo = np.float32(-rng.uniform(0, 10) if rng.random() < 0.8 else rng.uniform(0, 1))
        hi = np.float32(lo + rng.uniform(0.01, 20))
        h = histogram(rng, kind)
        hists.append(h)
        bounds.append((lo, hi))
        results.append(torch_search(torch, h, lo, hi))
        names.append(kind)
    # A generator of their own, so that the cases above stay as they were.
    rng = np.random.default_rng(args.seed + 1)
    for i in range(args.tiny_cases):
        kind = kinds[i % len(kinds)]
        scale = np.float32(10.0 ** rng.uniform(-25, -13))
        lo = np.float32(-rng.uniform(0, 1) * scale)
        hi = np.float32(lo + rng.uniform(0.05, 1) * scale)
        h = histogram(rng, kind)
        hists.append(h)
        bounds.append((lo, hi))
        results.append(torch_search(torch, h, lo, hi))
        names.append("tiny-" + kind)
    path = os.path.join(ROOT, "tests", "data", "l2_search_torch.npz")
    np.savez_compressed(path, histograms=np.array(hists, np.float32),
                        bounds=np.array(bounds, np.float32),
                        results=np.array(results, np.float32), kinds=np.array(names),
                        torch_version=np.array(torch.__version__))
    print(f"{path}: {len(hists)} cases, torch {torch.__version__}")


if __name__ == "__main__":
    main()
