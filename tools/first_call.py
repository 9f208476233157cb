#!/usr/bin/env python
"""First-call times of numba_quant with a cold and a warm Numba cache, in fresh processes.

For each case, each repeat makes an empty cache folder (``NUMBA_CACHE_DIR``) and runs two
fresh Python processes on it: the first compiles (cold), the second loads what the first
left (warm).  Each process imports numba, then numba_quant, then times its first call and
a second one.  Printed: the best of the repeats of each column, wall-clock and CPU
seconds (the CPU time of the process, less disturbed by other work on a shared machine),
and whether the compile notice (``CompileNotice``) appeared on stderr.

Usage::

    python tools/first_call.py                  # every case, 3 repeats
    python tools/first_call.py --repeats 5 --cases "observer layer"

numba_quant is imported from this checkout (the folder above ``tools/``).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
case, size = sys.argv[1], int(sys.argv[2])
w0, c0 = time.perf_counter(), time.process_time()
import numba
w1, c1 = time.perf_counter(), time.process_time()
import numpy as np
import numba_quant as nq
w2, c2 = time.perf_counter(), time.process_time()
x = np.random.default_rng(0).standard_normal(size, dtype=np.float32)
s = np.array([0.03], np.float32)
z = np.array([0.0], np.float32)
if case == "observer layer":
    call = lambda: nq.min_max_observer(x)
elif case == "observer channel":
    x4 = x.reshape(4, -1)
    call = lambda: nq.min_max_observer(x4, per_layer_quantization=False)
elif case == "fake layer":
    call = lambda: nq.fake_quantization(x, s, z)
else:
    raise SystemExit("unknown case " + case)
w3, c3 = time.perf_counter(), time.process_time()
call()
w4, c4 = time.perf_counter(), time.process_time()
call()
w5 = time.perf_counter()
print(json.dumps({"import numba": w1 - w0, "import numba_quant": w2 - w1,
                  "first call": w4 - w3, "first call cpu": c4 - c3, "second call": w5 - w4}))
"""

CASES = ("observer layer", "observer channel", "fake layer")
SIZES = {"small": 100, "large": 1 << 20}


def run_child(case, size, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    env.pop("NUMBA_DISABLE_JIT", None)
    done = subprocess.run([sys.executable, "-c", CHILD, case, str(size)], env=env,
                          capture_output=True, text=True, cwd=str(ROOT))
    if done.returncode:
        raise RuntimeError(done.stderr.strip()[-2000:])
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["notice"] = "CompileNotice" in done.stderr
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES),
                        help="comma-separated, from: " + ", ".join(CASES))
    parser.add_argument("--sizes", default="small,large", help="small (100), large (2**20)")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    print(f"# first calls, best of {args.repeats} (seconds; cold: empty cache, warm: the "
          f"cache the cold process left); load average {os.getloadavg()[0]:.2f}")
    header = ["case", "size", "cold call", "cold cpu", "warm call", "warm cpu",
              "warm import numba", "warm import nq", "notices"]
    print("  ".join(header))
    for case in cases:
        for label in sizes:
            cold, warm = [], []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory(prefix="nq-first-call-") as cache:
                    cold.append(run_child(case, SIZES[label], cache))
                    warm.append(run_child(case, SIZES[label], cache))

            def best(rows, key):
                return min(r[key] for r in rows)

            notice = (f"{sum(r['notice'] for r in cold)}/{len(cold)} cold, "
                      f"{sum(r['notice'] for r in warm)}/{len(warm)} warm")
            cells = [case, f"{label} ({SIZES[label]})",
                     f"{best(cold, 'first call'):.3f}", f"{best(cold, 'first call cpu'):.3f}",
                     f"{best(warm, 'first call'):.3f}", f"{best(warm, 'first call cpu'):.3f}",
                     f"{best(warm, 'import numba'):.3f}",
                     f"{best(warm, 'import numba_quant'):.3f}", notice]
            print("  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
