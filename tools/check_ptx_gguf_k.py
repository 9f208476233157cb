#!/usr/bin/env python
"""Compile the GGUF K-quant row functions (Q2_K..Q6_K, quantize and dequantize) inside a
one-thread-per-row CUDA kernel to PTX for an H100 (cc 9.0), without a GPU.

Catches what the CUDA simulator lets through (it runs kernels as Python: numpy ufuncs
the GPU lacks, returned views, CPU-only bit casts) and checks the PTX for fused
multiply-adds (``fma.``: none may appear, since ggml's C rounds every product) and
approximate division (``div.approx``/``div.full``).  Prints one line per function with
its PTX size and counts; exits non-zero on any failure.

Needs numba-cuda with the CUDA toolkit packages (e.g. ``numba-cuda[cu12]``; here
/work/venv-ptx), no driver::

    /work/venv-ptx/bin/python tools/check_ptx_gguf_k.py
"""
import os
import re
import sys
import types as pytypes

if os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0"):
    sys.exit("check_ptx_gguf_k.py compiles real PTX: unset NUMBA_ENABLE_CUDASIM")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

CC = (9, 0)

import numba.cuda.dispatcher as _dispatcher  # noqa: E402

# The device's compute capability, supplied here only (no driver on this machine).
_dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=CC,
                                                                  name="check (cc 9.0)")

from numba import cuda, float32, int32, types  # noqa: E402

from numba_quant._cuda import blocks as _cuda_blocks  # noqa: E402,F401  (CUDA bit casts)
from numba_quant._cuda import formats as _cuda_formats  # noqa: E402,F401  (CUDA bit casts)
from numba_quant._cuda import kernels as _cuda_kernels  # noqa: E402,F401  (CUDA primitives)
from numba_quant._host.gguf_types import GGUF_FSCRATCH, GGUF_ISCRATCH  # noqa: E402
from numba_quant._reference import gguf_kquants as kq  # noqa: E402

TYPES = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")


def quantize_kernel(row_function):
    def kernel(x, qw, has_qw, out):
        r = cuda.grid(1)
        if r < x.shape[0]:
            fs = cuda.local.array(GGUF_FSCRATCH, float32)
            iscr = cuda.local.array(GGUF_ISCRATCH, int32)
            row_function(x[r], qw, has_qw, out[r], fs, iscr)
    return kernel


def dequantize_kernel(row_function):
    def kernel(data, out):
        r = cuda.grid(1)
        if r < data.shape[0]:
            row_function(data[r], out[r])
    return kernel


def main():
    f2 = types.Array(types.float32, 2, "C")
    f1 = types.Array(types.float32, 1, "C")
    u2 = types.Array(types.uint8, 2, "C")
    failures = 0
    for t in TYPES:
        jobs = ((f"quantize_row_{t}", quantize_kernel(getattr(kq, f"quantize_row_{t}")),
                 (f2, f1, types.boolean, u2)),
                (f"dequantize_row_{t}", dequantize_kernel(getattr(kq, f"dequantize_row_{t}")),
                 (u2, f2)))
        for label, kernel, sig in jobs:
            try:
                ptx, _ = cuda.compile_ptx(kernel, sig, cc=CC)
            except Exception as e:  # report every function, then fail
                failures += 1
                print(f"{label}: FAILED to compile: {type(e).__name__}: "
                      f"{str(e).splitlines()[0]}")
                continue
            n_fma = len(re.findall(r"\bfma\.", ptx))
            n_approx = len(re.findall(r"\bdiv\.(approx|full)\.", ptx))
            n_mul_rn = len(re.findall(r"\bmul\.rn\.f32\b", ptx))
            ok = n_fma == 0 and n_approx == 0
            failures += not ok
            print(f"{label}: {ptx.count(chr(10))} PTX lines, {n_mul_rn} mul.rn.f32, "
                  f"{n_fma} fma, {n_approx} approximate divisions: "
                  f"{'OK' if ok else 'FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
