#!/usr/bin/env python
"""Every case of tests/data/blocks_torchao.npz on the CPU path and the GPU path.

tests/test_blocks.py runs every case on the CPU but only a subset on the GPU, because the
CUDA simulator runs each GPU thread in Python; this runs all of them on both (about 7
minutes in the simulator with 16 threads x 2 blocks).  Prints failing cases and a count.

Usage: NUMBA_ENABLE_CUDASIM=1 python tools/check_blocks_golden.py [cpu|gpu ...] [case ids]
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, os.pardir), os.path.join(HERE, os.pardir, "tests")]

import conftest  # noqa: E402,F401  (chooses the simulator without a GPU)
import test_blocks  # noqa: E402
from devices import SIMULATOR, Device  # noqa: E402

from numba_quant._host import tuning as _tuning  # noqa: E402


def main(argv):
    sides = [a for a in argv if a in ("cpu", "gpu")] or ["cpu", "gpu"]
    ids = [a for a in argv if a not in ("cpu", "gpu")]
    if SIMULATOR:
        _tuning.LAUNCH.update(conftest.SIM_LAUNCH)
    failures = 0
    for side in sides:
        start = time.time()
        passed = 0
        for case in test_blocks.CASES:
            if ids and case["id"] not in ids:
                continue
            try:
                test_blocks._run(Device(side), case)
                passed += 1
            except Exception as e:  # noqa: BLE001 - report every case
                failures += 1
                print(f"FAIL {side} {case['id']}: {type(e).__name__}: {e}")
        print(f"{side}{' (simulator)' if side == 'gpu' and SIMULATOR else ''}: {passed} "
              f"case(s) pass in {time.time() - start:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
