#!/usr/bin/env python
"""Compile the CUDA kernels of the low-precision float formats to PTX (cc 9.0), no GPU.

Companion of ``tools/check_ptx.py`` for ``numba_quant._cuda.formats``: compiles every
kernel for the argument types the backend passes, and checks the PTX for

* no approximate division (``div.approx``/``div.full``): the MX, NVFP4 and FP8 divisions
  must round like the CPU's;
* no fused multiply-add (``fma``) in the block kernels: every product the formulas round
  (``x * multiplier``, ``decode * factor``, ``pts * e4m3``) is rounded on its own;
* the bit casts lowered to moves (``mov.b32``/``mov.b64``), not memory round trips.

Also prints per kernel the global loads/stores (``ld.global``/``st.global``) and, with
-v, other instruction counts.  Exits non-zero on any failure.  Run with the venv that has
numba-cuda and the CUDA toolkit packages, without NUMBA_ENABLE_CUDASIM:

    /work/venv-ptx/bin/python tools/check_ptx_float.py [-v]
"""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from check_ptx import CC  # noqa: E402  (patches the device lookup; refuses the simulator)
from numba import cuda, types  # noqa: E402

from numba_quant._cuda import formats as K# noqa: E402  (registers the bit casts)

i64, b1, f32, f64 = types.int64, types.boolean, types.float32, types.float64


def arr(dtype, ndim, layout="C"):
    return types.Array(dtype, ndim, layout)


def signatures():
    """(kernel, label, argument types, fma allowed) for every kernel the backend launches."""
    u8_1, u8_2 = arr(types.uint8, 1), arr(types.uint8, 2)
    for T in (f32, f64):
        yield K.encode_kernel, f"{T}", (arr(T, 1), i64, b1, b1, u8_1)
    yield K.decode_kernel, "", (u8_1, i64, b1, arr(f32, 1))
    yield K.group_abs_max_kernel, "", (arr(f32, 2), i64, arr(f32, 2), arr(i64, 1))
    yield (K.quantize_blocks_kernel, "",
           (i64, arr(f32, 2), i64, i64, i64, i64, i64, f64, b1, f32, u8_2, arr(f32, 2),
            u8_2, arr(f32, 2), b1, b1, arr(i64, 1)))
    yield (K.dequantize_blocks_kernel, "",
           (i64, u8_2, arr(f32, 2), u8_2, i64, i64, f32, arr(f32, 2)))


def count(ptx, pattern):
    return len(re.findall(pattern, ptx))


def main():
    verbose = "-v" in sys.argv[1:]
    failures = 0
    start = time.time()
    for kernel, label, argtypes in signatures():
        name = kernel.py_func.__name__
        t0 = time.time()
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, argtypes, cc=CC)
        except Exception as e:  # noqa: BLE001 - report every failure, go on
            failures += 1
            first = str(e).strip().splitlines()
            print(f"FAIL {name:26s} {label}: {type(e).__name__}: {first[0] if first else ''}")
            if verbose:
                print(e)
            continue
        problems = []
        if count(ptx, r"div\.(approx|full)"):
            problems.append("approximate division")
        if count(ptx, r"\bfma\.rn\.f32"):
            problems.append(f"{count(ptx, r'fma.rn.f32')} fused multiply-adds")
        if count(ptx, r"\blocal\b") and count(ptx, r"st\.local"):
            problems.append("local memory (a bit cast through memory?)")
        failures += bool(problems)
        counts = {k: count(ptx, pat) for k, pat in (
            ("ld.global", r"ld\.global"), ("st.global", r"st\.global"),
            ("div.rn", r"div\.rn"), ("mov.b32", r"mov\.b32"), ("atom", r"atom\."))}
        extra = " ".join(f"{k}={v}" for k, v in counts.items()) if verbose else \
            f"ld.global={counts['ld.global']} st.global={counts['st.global']}"
        status = "FAIL " + ", ".join(problems) if problems else "ok"
        print(f"{status:4s} {name:26s} {label:8s} {len(ptx):7d} chars {time.time() - t0:5.2f} s "
              f"{extra}")
    print(f"compiled for cc {CC[0]}.{CC[1]} in {time.time() - start:.1f} s; "
          f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
