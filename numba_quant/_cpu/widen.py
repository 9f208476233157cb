"""float16 rows widened to float32 by table lookup, and bfloat16 rows by a shift, on the
kept thread pool.

numpy's float16-to-float32 cast runs at about 1.9 ns a value on this package's test
machines (no hardware conversion in its loop there); a lookup in a table of the 65,536
float32 values, which stays in the L2 cache, takes about 0.6 ns.  The table is numpy's
own conversion of every bit pattern, so the results are numpy's, NaN payloads included.
"""
import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._cpu.threads import ranges, run_ranges

# The float32 value of each float16 bit pattern.
F16_TABLE = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(
    np.float32)


@njit(cache=True)
def widen_f16_row(src, table, dst):
    """``dst[:] =`` the float16 bit patterns ``src`` (uint16, 1-D) as float32."""
    for i in range(src.size):
        dst[i] = table[src[i]]


@njit(cache=True)
def widen_bf16_row(src, dst):
    """``dst[:] =`` the bfloat16 bit patterns ``src`` (uint16, 1-D) as float32: each
    shifted into the high half of a float32's bits."""
    wide = dst.view(np.uint32)
    for i in range(src.size):
        wide[i] = np.uint32(src[i]) << np.uint32(16)


@njit(nogil=True, cache=True)
def _widen_f16(bits, table, out, r0, r1):
    for r in range(r0, r1):
        widen_f16_row(bits[r], table, out[r])


@njit(nogil=True, cache=True)
def _widen_bf16(bits, out, r0, r1):
    for r in range(r0, r1):
        widen_bf16_row(bits[r], out[r])


def widen_bf16_rows(bits, out):
    """``out[...] =`` the bfloat16 rows ``bits`` (uint16 bit patterns, 2-D, C order) as
    float32 (the bits shifted into the high half: exact), ranges of rows on the kept
    thread pool (numpy's shift runs on one thread)."""
    run_ranges(_widen_bf16, ranges(bits.shape[0], bits.size), (bits, out))


def widen_f16_rows(bits, out):
    """``out[...] =`` the float16 rows ``bits`` (their uint16 bit patterns, 2-D, C order)
    as float32, ranges of rows on the kept thread pool."""
    run_ranges(_widen_f16, ranges(bits.shape[0], bits.size), (bits, F16_TABLE, out))
