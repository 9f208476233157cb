#!/usr/bin/env python
"""Where the time of the many-short-channels rows goes, at 1e8 float32 elements.

Rows of 4 (``C = N/4`` channels along axis 0): the whole ``min_max_observer`` call (new
results, and ``out=`` arrays kept between calls), the same short-run kernel into outputs that were allocated and touched before (no page
faults), the kernel with no formulas (min and max only, also into touched outputs), the
formulas alone (``qparams`` over 25 million channels), allocating and first touching two
fresh 100 MB arrays, and the read-only yardstick ``BW``.

Channels last (``(N/64, 64)``, axis -1, ``out=`` given): fake quantization against ``BW``
and a parallel copy (read 400 MB, write 400 MB into an array written before).

Each row: the best of ``--repeats`` calls (wall) and the process CPU time of that call.
Usage: ``python benchmarks/rows_breakdown.py [--repeats 7] [--size 1e8]``.
"""
import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

import numba_quant as nq  # noqa: E402
from numba_quant._cpu import channels as _cpu  # noqa: E402
from numba_quant._cpu import kernels  # noqa: E402
from numba_quant._cpu import threads as cpu_threads  # noqa: E402
from numba_quant._host.layout import channel_view  # noqa: E402
from timing import bandwidth_probe, copy_probe, time_one  # noqa: E402


@njit(parallel=True)
def _parallel_fill(a):
    for i in prange(a.size):
        a[i] = 1.0


def best(fn, repeats):
    """(wall, CPU) seconds of the fastest of ``repeats`` calls, after one warm-up call."""
    times = time_one(fn, repeats, cpu=True)
    return times.min, times.cpu_of_fastest


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=float, default=1e8)
    parser.add_argument("--only", default="rows,last")
    args = parser.parse_args()
    n = int(args.size)
    data = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    print(f"# {n:.0e} float32, {numba.get_num_threads()} threads, best of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'row':60s} {'wall':>9s} {'cpu':>9s} {'/BW':>6s}")
    rows = []
    if "rows" in args.only:
        x = data.reshape(n // 4, 4)
        x3 = channel_view(x, 0)
        parallel, most = cpu_threads.tasks(x3)
        assert _cpu._short_runs(x3, False) and parallel
        c = x3.shape[1]
        lo = -np.abs(data[:c])  # per-channel (min, max) for the formulas alone
        hi = np.abs(data[c:2 * c])
        s_t = np.ones(c, np.float32)
        z_t = np.ones(c, np.float32)
        bw = best(bandwidth_probe(x), args.repeats)
        rows += [
            ("rows of 4: BW (parallel read-only pass over the input)", bw),
            ("rows of 4: min_max_observer (fresh scale, zero point)",
             best(lambda: nq.min_max_observer(x, per_layer_quantization=False),
                  args.repeats)),
            ("rows of 4: min_max_observer, out= (arrays kept between calls)",
             best(lambda: nq.min_max_observer(x, per_layer_quantization=False,
                                              out=(s_t, z_t)), args.repeats)),
            ("rows of 4: kernel with formulas into touched outputs",
             best(lambda: _cpu._reduce_short_runs(x3, parallel, most, s_t, z_t, 0, 8),
                  args.repeats)),
            ("rows of 4: kernel, min/max only, into touched outputs",
             best(lambda: _cpu._reduce_short_runs(x3, parallel, most, s_t, z_t, -1, 0),
                  args.repeats)),
            ("rows of 4: formulas alone (qparams kernel, 25M channels)",
             best(lambda: kernels.qparams[True](lo, hi, 0, 8, s_t, z_t), args.repeats)),
            ("rows of 4: 2 x np.empty(25M) + parallel first touch",
             best(lambda: [_parallel_fill(np.empty(c, np.float32)) for _ in range(2)],
                  args.repeats)),
            ("rows of 4: 2 x np.empty(25M) + serial first touch (fill)",
             best(lambda: [np.empty(c, np.float32).fill(1.0) for _ in range(2)],
                  args.repeats)),
        ]
        for name, (w, cp) in rows:
            print(f"{name:60s} {w * 1e3:7.1f}ms {cp * 1e3:7.1f}ms {w / bw[0]:6.2f}", flush=True)
    if "last" in args.only:
        x = data.reshape(n // 64, 64)
        scale, zero_point = nq.min_max_observer(x, per_layer_quantization=False, axis=-1)
        out = np.empty_like(x)
        out.fill(0)
        bw = best(bandwidth_probe(x), args.repeats)
        last = [
            ("channels last: BW (parallel read-only pass)", bw),
            ("channels last: parallel copy into a touched array",
             best(copy_probe(data, out), args.repeats)),
            ("channels last: numpy copy (np.copyto) into a touched array",
             best(lambda: np.copyto(out, x), args.repeats)),
            ("channels last: fake_quantization out=",
             best(lambda: nq.fake_quantization(x, scale, zero_point, axis=-1, out=out),
                  args.repeats)),
        ]
        for name, (w, cp) in last:
            print(f"{name:60s} {w * 1e3:7.1f}ms {cp * 1e3:7.1f}ms {w / bw[0]:6.2f}", flush=True)


if __name__ == "__main__":
    main()
