"""Scalar arithmetic of compressed-tensors' integer weight quantization (CPU and GPU).

compressed-tensors 0.19 quantizes ``x`` with scale ``s`` and zero point ``z`` as
``round(clamp(x / s + z, qmin, qmax))``, every operation in the weight's dtype: for a
bfloat16 weight torch computes each operation in float32 and rounds the result to
bfloat16, so the quotient and the sum are rounded to bfloat16 before the clamp and the
final rounding (half to even).
"""
import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._reference.bits import f32_bits, f32_from_bits
from numba_quant._reference.primitives import rint


@njit(cache=True)
def round_bfloat16(v):
    """The float32 ``v`` (finite) rounded to the nearest bfloat16, ties to even, returned
    as a float32."""
    bits = np.int64(f32_bits(v))
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return f32_from_bits(bits)


@njit(cache=True)
def int_code(x, scale, zero_point, qmin, qmax, bf16):
    """The integer code of the float32 ``x``: ``x / scale``, plus ``zero_point`` (float32
    values of integers), each rounded to bfloat16 when ``bf16``, clamped to
    ``[qmin, qmax]``, rounded half to even."""
    q = np.float32(x / scale)
    if bf16:
        q = round_bfloat16(q)
    q = np.float32(q + zero_point)
    if bf16:
        q = round_bfloat16(q)
    if q < qmin:
        q = np.float32(qmin)
    elif q > qmax:
        q = np.float32(qmax)
    return rint(q)
