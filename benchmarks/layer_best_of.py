#!/usr/bin/env python
"""Per-layer ``min_max_observer`` against ``torch.aminmax``, best of many short repeats.

On a shared, busy machine the median of a few long repeats (``run.py``) measures the other
processes; the fastest of many short repeats comes closer to the undisturbed time.  Both
implementations are timed in the same process, taking turns, so their ratio comes from
the same moments.  Usage: ``python benchmarks/layer_best_of.py [--repeats N]``.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import numba_quant as nq  # noqa: E402
from timing import time_one  # noqa: E402

try:
    import torch
except ImportError:  # compared with numpy's x.min(), x.max() instead
    torch = None


def best(fn, repeats, number):
    """Seconds per call: the fastest of ``repeats`` loops of ``number`` calls, after one
    warm-up call."""
    return time_one(fn, repeats, number=number).min


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--sizes", default="1e4,1e6,1e7,1e8")
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    x = np.random.default_rng(0).standard_normal(max(sizes), dtype=np.float32)
    other = "torch.aminmax" if torch is not None else "numpy x.min(), x.max()"
    print(f"# best of {args.repeats} repeats; other = {other}"
          + (f" ({torch.get_num_threads()} threads)" if torch is not None else ""))
    print(f"{'size':>6} {'nq':>12} {'other':>12} {'nq/other':>9}")
    for n in sizes:
        y = x[:n]
        number = max(1, int(1e5 // n))
        repeats = args.repeats if n <= 10**6 else max(10, args.repeats // 10)
        if torch is not None:
            t = torch.from_numpy(y)
            other_fn = lambda: torch.aminmax(t)  # noqa: E731
        else:
            other_fn = lambda: (y.min(), y.max())  # noqa: E731
        nq_fn = lambda: nq.min_max_observer(y)  # noqa: E731
        times = {"nq": float("inf"), "other": float("inf")}
        for _ in range(5):  # interleaved rounds
            times["nq"] = min(times["nq"], best(nq_fn, repeats // 5 or 1, number))
            times["other"] = min(times["other"], best(other_fn, repeats // 5 or 1, number))
        print(f"{n:>6.0e} {times['nq'] * 1e6:>9.2f} us {times['other'] * 1e6:>9.2f} us "
              f"{times['nq'] / times['other']:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
