#!/usr/bin/env python
"""Compile every CUDA kernel of numba_quant to PTX for an H100 (cc 9.0), without a GPU.

Catches typing and lowering errors that the CUDA simulator lets through (it runs kernels
as Python).  Compiles each kernel of ``numba_quant._cuda.kernels``, ``_cuda_hist``,
``_cuda_blockwise`` and ``_cuda_chunks`` (the block-wise histograms included) for float32
and float64 and for the array layouts the backend passes
(contiguous "C" and strided "A" views, every output type of the element-wise kernels),
prints one line per kernel and signature, and checks the PTX for:

* the moving-average update (``ref.moving_update``): products rounded on their own
  (``mul.rn``) and no fused multiply-add, so that GPU and CPU round alike;
* no approximate division anywhere (``div.approx``/``div.full``).

Exits non-zero on any failure.  Needs numba-cuda with the CUDA toolkit packages (e.g.
``numba-cuda[cu12]``), no driver: the device's compute capability is supplied by
patching ``numba.cuda.dispatcher.get_current_device`` in this tool only.

Usage: python tools/check_ptx.py [-v]   (-v also prints the instruction counts)
"""
import os
import re
import sys
import time
import types as pytypes

if os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0"):
    sys.exit("check_ptx.py compiles real PTX: unset NUMBA_ENABLE_CUDASIM")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

CC = (9, 0)

import numba.cuda.dispatcher as _dispatcher  # noqa: E402

_fake_device = pytypes.SimpleNamespace(compute_capability=CC, name="check_ptx (cc 9.0)")
_dispatcher.get_current_device = lambda: _fake_device

from numba import cuda, types  # noqa: E402

from numba_quant._cuda import kernels as K# noqa: E402  (registers the CUDA primitives)
from numba_quant._cuda import hist as H# noqa: E402
from numba_quant._cuda import blockwise as BW# noqa: E402
from numba_quant._cuda import chunks as CH# noqa: E402
from numba_quant._reference import integer as ref# noqa: E402

i64, b1, f32 = types.int64, types.boolean, types.float32
FLOATS = (types.float32, types.float64)
BITS = {types.float32: types.int32, types.float64: types.int64}


def arr(dtype, ndim, layout="C"):
    return types.Array(dtype, ndim, layout)


def signatures():
    """(kernel, label, argument types) for every kernel and the layouts used."""
    keys = arr(i64, 2)
    count = arr(i64, 1)
    status = arr(types.int32, 1)
    for T in FLOATS:
        bits = BITS[T]
        vec = arr(T, 1)
        settle = (b1, bits, bits, T, i64, i64, i64, arr(T, 2), status)
        for layout in ("C", "A"):
            x3 = arr(bits, 3, layout)
            yield (K.minmax_flat, f"{T} bits {layout}", (x3, b1, bits, bits, keys))
            yield (K.minmax_rows, f"{T} bits {layout}",
                   (x3, b1, bits, bits, keys, i64, i64, b1))
            yield (K.minmax_cols, f"{T} bits {layout}",
                   (x3, b1, bits, bits, keys, i64, i64, i64))
            yield (K.minmax_each, f"{T} bits {layout}", (x3,) + settle)
            yield (K.count_nonfinite, f"{T} bits {layout}", (x3, b1, bits, bits, count))
        yield (K.settle_keys, f"{T}", (keys,) + settle)
        for layout in ("C", "A"):
            state = arr(T, 1, layout)
            yield (K.moving_observe, f"{T} state {layout}",
                   (vec, vec, state, state, b1, f32, i64, i64, vec, vec))
            yield (K.moving_observe, f"{T} no update, state {layout}",
                   (state, state, state, state, b1, f32, i64, i64, vec, vec))
        yield (K.code_params, f"{T}", (vec, vec, i64, i64, b1, arr(T, 2), status))
        outs = (T, types.int8, types.uint8, types.int16, types.uint16)
        for in_layout in ("C", "A"):
            for out in outs:
                for out_layout in ("C", "A"):
                    yield (K.map_values, f"{T} {in_layout} -> {out} {out_layout}",
                           (arr(T, 3, in_layout), arr(out, 3, out_layout), arr(T, 2), i64,
                            i64, i64))
    yield (K.fill_keys, "", (keys,))
    block4 = types.UniTuple(i64, 4)
    for T in FLOATS:  # block_size= on the OneFlow functions (4-D strided views)
        yield (BW.observe_blocks, f"{T} A",
               (arr(T, 4, "A"), block4, b1, i64, i64, T, arr(T, 1), arr(T, 1),
                arr(types.uint8, 1), count))
        yield (BW.minmax_blocks, f"{T} A",
               (arr(T, 4, "A"), block4, b1, arr(T, 1), arr(T, 1), arr(types.uint8, 1),
                count))
        yield (H.histogram_blocks, f"{T} A",
               (arr(T, 4, "A"), block4, i64, arr(types.float64, 1), arr(types.float64, 1),
                i64, arr(i64, 2)))
        for out in (T, types.int8, types.uint8, types.int16, types.uint16):
            yield (BW.map_blocks, f"{T} A -> {out} A",
                   (arr(T, 4, "A"), arr(out, 4, "A"), block4, arr(T, 2), i64, i64, i64))
    for T in FLOATS:  # the histogram kernel (both grids: the grid is a run-time argument)
        for layout in ("C", "A"):
            yield (H.histogram, f"{T} {layout}",
                   (arr(T, 3, layout), i64, arr(types.float64, 1), arr(types.float64, 1),
                    i64, arr(i64, 2)))
    copies = [(types.float16, types.float32), (types.float32, types.float32),
              (types.float64, types.float64), (types.int8, types.float32),
              (types.uint16, types.float64), (types.int16, types.int16),
              (types.uint8, types.uint8), (types.int32, types.float32),
              (types.float16, types.float64)]
    for src, dst in copies:
        for ndim in (1, 2, 5):
            tup = types.UniTuple(i64, ndim)
            yield (K.copy_strided, f"{src} -> {dst} ndim {ndim}",
                   (arr(src, 1), i64, tup, arr(dst, 1), i64, tup, tup))
    for ndim in (1, 2, 5):  # bfloat16 bits widened into a chunk's float32 buffer
        tup = types.UniTuple(i64, ndim)
        yield (CH.widen_bfloat16, f"uint16 -> float32 ndim {ndim}",
               (arr(types.uint16, 1), i64, tup, arr(f32, 1), tup))


def _update_probe(moving, new, momentum, out):
    out[0] = ref.moving_update(moving[0], new[0], momentum)


def compile_one(kernel, argtypes):
    ptx, _ = cuda.compile_ptx(kernel.py_func, argtypes, cc=CC)
    return ptx


def count(ptx, pattern):
    return len(re.findall(pattern, ptx))


def main():
    verbose = "-v" in sys.argv[1:]
    failures = 0
    n = 0
    start = time.time()
    for kernel, label, argtypes in signatures():
        name = kernel.py_func.__name__
        t0 = time.time()
        try:
            ptx = compile_one(kernel, argtypes)
        except Exception as e:  # noqa: BLE001 - report every failure, go on
            failures += 1
            first = str(e).strip().splitlines()
            print(f"FAIL {name:16s} {label}: {type(e).__name__}: {first[0] if first else ''}")
            if verbose:
                print(e)
            continue
        n += 1
        approx = count(ptx, r"div\.(approx|full)")
        status = "ok"
        if approx:
            status = f"FAIL ({approx} approximate divisions)"
            failures += 1
        extra = ""
        if verbose:
            counts = {k: count(ptx, pat) for k, pat in (
                ("fma", r"fma\.rn"), ("mul.rn", r"mul\.rn\.f"), ("div.rn", r"div\.rn"),
                ("atom", r"atom\."), ("ld.global", r"ld\.global"))}
            extra = " " + " ".join(f"{k}={v}" for k, v in counts.items())
        print(f"{status:4s} {name:16s} {label:40s} {len(ptx):7d} chars "
              f"{time.time() - t0:5.2f} s{extra}")

    # The moving-average update must round both products (mul.rn) and fuse nothing.
    for T in FLOATS:
        label = f"{T} moving_update"
        try:
            ptx = compile_one(cuda.jit(_update_probe),
                              (arr(T, 1), arr(T, 1), f32, arr(T, 1)))
        except Exception as e:  # noqa: BLE001
            failures += 1
            print(f"FAIL {'update probe':16s} {label}: {type(e).__name__}: {e}")
            continue
        suffix = "f32" if T == types.float32 else "f64"
        muls = count(ptx, rf"mul\.rn\.{suffix}")
        fmas = count(ptx, r"\bfma\.")
        ok = muls >= 2 and fmas == 0
        failures += not ok
        print(f"{'ok' if ok else 'FAIL':4s} {'update probe':16s} {label:40s} "
              f"mul.rn.{suffix}={muls} fma={fmas}")
    print(f"{n} kernels compiled for cc {CC[0]}.{CC[1]} in {time.time() - start:.1f} s; "
          f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
