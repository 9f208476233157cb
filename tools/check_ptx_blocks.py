#!/usr/bin/env python
"""Compile the block-wise CUDA kernels of numba_quant to PTX for an H100 (cc 9.0), no GPU.

Like ``tools/check_ptx.py`` (whose compute-capability patch it reuses), for the kernels of
``numba_quant._cuda.blocks``: every input type the backend passes (float32, float64, and
uint16 bit patterns of bfloat16/float16), contiguous and strided 4-D views, the code
types, and the output types of ``dequantize`` (float32, float64, uint16 bits).  Fails on
a compile error, an approximate division, or a fused multiply-add (the CPU rounds every
product on its own).

Usage: /work/venv-ptx/bin/python tools/check_ptx_blocks.py [-v]
"""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import check_ptx  # noqa: E402  (patches the device lookup; refuses the simulator)
from numba import cuda, types  # noqa: E402

from numba_quant._cuda import blocks as K# noqa: E402

i64, b1 = types.int64, types.boolean
BLOCK = types.UniTuple(i64, 4)


def arr(dtype, layout="C", ndim=4):
    return types.Array(dtype, ndim, layout)


def signatures():
    count = arr(i64, ndim=1)
    inputs = ((types.float32, types.float32), (types.uint16, types.float32),
              (types.float64, types.float64))
    for raw, T in inputs:
        for layout in ("C", "A"):
            for code in (types.uint8, types.int8, types.int16):
                label = f"{raw} {layout} -> {code}"
                yield (K.observe, label,
                       (arr(raw, layout), i64, BLOCK, i64, i64, i64, i64, T, i64, i64, i64,
                        arr(T), arr(types.int32), arr(code, layout), b1, count))
                yield (K.quantize, label,
                       (arr(raw, layout), i64, BLOCK, arr(T), i64, arr(types.int32), i64, i64,
                        i64, arr(code, layout), count))
    for T in (types.float32, types.float64):
        for out in (types.float32, types.float64, types.uint16):
            for code in (types.uint8, types.int8):
                yield (K.dequantize, f"{code} -> {out} ({T})",
                       (arr(code), BLOCK, arr(T), arr(types.int32), i64, i64, i64, i64,
                        arr(out), count))


def main():
    verbose = "-v" in sys.argv[1:]
    failures = n = 0
    start = time.time()
    for kernel, label, argtypes in signatures():
        name = kernel.py_func.__name__
        t0 = time.time()
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, argtypes, cc=check_ptx.CC)
        except Exception as e:  # noqa: BLE001 - report every failure, go on
            failures += 1
            first = str(e).strip().splitlines()
            print(f"FAIL {name:12s} {label}: {type(e).__name__}: {first[0] if first else ''}")
            if verbose:
                print(e)
            continue
        n += 1
        approx = len(re.findall(r"div\.(approx|full)", ptx))
        fma = len(re.findall(r"\bfma\.", ptx))
        status = "ok" if not (approx or fma) else f"FAIL (div.approx {approx}, fma {fma})"
        failures += status != "ok"
        print(f"{status:4s} {name:12s} {label:36s} {len(ptx):7d} chars {time.time() - t0:5.2f} s")
    print(f"{n} block kernels compiled for cc {check_ptx.CC[0]}.{check_ptx.CC[1]} in "
          f"{time.time() - start:.1f} s; {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
