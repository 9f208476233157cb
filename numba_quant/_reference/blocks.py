"""The arithmetic of block-wise affine quantization (torchao's formulas), written once.

Scalar ``numba.njit`` functions called by the CPU kernels (:mod:`numba_quant._cpu.blocks`)
and the CUDA kernels (:mod:`numba_quant._cuda.blocks`).  Values are held in the kernel's
compute type T (float32, or float64 where a float64 array is involved); narrower formats
(bfloat16, float16, and float32 under a float64 T) are emulated by :func:`round_to` after
every operation, which is what torch's CPU arithmetic in those types gives: each
operation computed in float32 and rounded once to the narrow type (for +, -, *, / the
float32 result rounded again equals the correctly rounded narrow result, since float32
carries more than twice the narrow precision plus two bits).

bfloat16 and float16 inputs arrive as their uint16 bit patterns and are widened here,
element by element (bfloat16: a 16-bit shift), so no float32 copy of the input is made.
"""
import math

import numpy as np
from numba import njit, types
from numba.core.extending import overload

from numba_quant._host.blocks_plan import (  # noqa: F401  (the kernels read them as rb.NAME)
    ASYMMETRIC,
    BF16,
    F16,
    F32,
    NATIVE,
    SYMMETRIC,
    SYMMETRIC_NO_CLIPPING_ERR,
)
from numba_quant._reference.primitives import rint
from numba_quant._reference.bits import bitcast


# --------------------------------------------------------------------------- bit casts
def f32_from_bits(bits):
    """The float32 whose bit pattern is the uint32 ``bits`` (a stub; compiled versions below)."""
    return np.array(bits, np.uint32).view(np.float32)[()]


def bits_from_f32(v):
    """The uint32 bit pattern of the float32 ``v`` (a stub; compiled versions below)."""
    return np.array(v, np.float32).view(np.uint32)[()]


_bitcast_u32_f32 = bitcast(types.uint32, types.float32)
_bitcast_f32_u32 = bitcast(types.float32, types.uint32)


@overload(f32_from_bits, target="cpu")
def _f32_from_bits_cpu(bits):
    return lambda bits: _bitcast_u32_f32(np.uint32(bits))


@overload(bits_from_f32, target="cpu")
def _bits_from_f32_cpu(v):
    return lambda v: _bitcast_f32_u32(np.float32(v))


# --------------------------------------------------------------------------- formats
def round_bf16(v):
    """``v`` rounded to bfloat16, ties to even, in v's type (stub; compiled versions below)."""
    return v


@overload(round_bf16, target="generic")
def _round_bf16_any(v):
    if v == types.float32:
        def by_bits(v):
            # Round the float32 bits at bit 16, ties to even; a carry moves into the
            # exponent (up to infinity), subnormals round on the same grid.
            b = bits_from_f32(v)
            if (b & np.uint32(0x7F800000)) == np.uint32(0x7F800000):
                return v  # inf or NaN
            b = b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))
            return f32_from_bits(b & np.uint32(0xFFFF0000))
        return by_bits
    if v == types.float64:
        return lambda v: _round_generic(v, 8, -133, 3.4028234663852886e38)
    return None


@njit(cache=True)
def _round_generic(v, p, lowest, largest):
    """``v`` rounded to ``p`` significant bits, quantum at least 2**lowest, infinity beyond
    ``largest``; computed in float64, where scaling by powers of two is exact."""
    a = np.float64(v)
    if a == 0 or a != a or a - a != 0:
        return v
    e = math.frexp(a)[1]
    q = max(e - p, lowest)
    r = math.ldexp(rint(math.ldexp(a, -q)), q)
    if abs(r) > largest:
        r = math.copysign(math.inf, a)
    return type(v)(r)


@njit(cache=True)
def round_to(v, fmt):
    """``v`` (float32 or float64) rounded to the format ``fmt``, ties to even, in v's type.

    NATIVE returns ``v``.  The quantum is 2**(e - p) for a value in [2**(e-1), 2**e) with
    p significant bits, never below the format's smallest subnormal; float16 overflows to
    infinity beyond 65504 (values from 65520 up), bfloat16 and float32 where float32 does.
    """
    if fmt == NATIVE:
        return v
    if fmt == BF16:
        return round_bf16(v)
    if fmt == F16:
        return _round_generic(v, 11, -24, 65504.0)
    return _round_generic(v, 24, -149, 3.4028234663852886e38)


@njit(cache=True)
def f16_bits_to_f32(u):
    """The float32 value of the float16 bit pattern ``u`` (exact)."""
    u = np.uint32(u)
    e = (u >> np.uint32(10)) & np.uint32(31)
    m = u & np.uint32(1023)
    if e == 0:
        v = np.float32(m) * np.float32(5.960464477539063e-08)  # m * 2**-24, exact
    elif e == 31:
        v = np.float32(np.inf) if m == 0 else np.float32(np.nan)
    else:
        v = f32_from_bits(((e + np.uint32(112)) << np.uint32(23)) | (m << np.uint32(13)))
    return -v if (u >> np.uint32(15)) != 0 else v


@njit(cache=True)
def f32_to_f16_bits(v):
    """The float16 bit pattern of a float32 ``v`` that float16 holds exactly (or ±inf)."""
    b = bits_from_f32(v)
    sign = np.uint16((b >> np.uint32(16)) & np.uint32(0x8000))
    e = (b >> np.uint32(23)) & np.uint32(255)
    if e == 255:
        return np.uint16(sign | np.uint16(0x7C00))
    if e >= 113:
        return np.uint16(sign | np.uint16(((e - np.uint32(112)) << np.uint32(10))
                                          | ((b >> np.uint32(13)) & np.uint32(1023))))
    return np.uint16(sign | np.uint16(abs(np.float32(v)) * np.float32(16777216.0)))


def load(raw, fmt):
    """An input element as a float: uint16 bit patterns widened per ``fmt`` (stub)."""
    return raw


@overload(load, target="generic")
def _load_any(raw, fmt):
    if isinstance(raw, types.Float):
        return lambda raw, fmt: raw
    if raw == types.uint16:
        def widen(raw, fmt):
            if fmt == BF16:
                return f32_from_bits(np.uint32(raw) << np.uint32(16))
            return f16_bits_to_f32(raw)
        return widen
    return None


def store(v, fmt, like):
    """``v`` as a value of the type of ``like`` (an element of the output) (stub)."""
    return v


@overload(store, target="generic")
def _store_any(v, fmt, like):
    if isinstance(like, types.Float):
        return lambda v, fmt, like: v
    if like == types.uint16:
        def narrow(v, fmt, like):
            w = np.float32(v)
            if fmt == BF16:
                return np.uint16(bits_from_f32(w) >> np.uint32(16))
            return f32_to_f16_bits(w)
        return narrow
    return None


# --------------------------------------------------------------------------- reductions
@njit(cache=True)
def nan_min(a, b):
    """The smaller of two floats; NaN if either is NaN."""
    return a if (a < b or a != a) else b


@njit(cache=True)
def nan_max(a, b):
    """The larger of two floats; NaN if either is NaN."""
    return a if (a > b or a != a) else b


# --------------------------------------------------------------------------- formulas
@njit(cache=True)
def block_qparams(lo, hi, mapping, quant_min, quant_max, sym_zero_point, eps, afmt):
    """Scale and zero point of one block from its min ``lo`` and max ``hi`` (torchao 0.18).

    Every operation is rounded to ``afmt`` (the input's format).  ``eps`` is the clamp of
    the scale, already in that format.  The zero point comes back as a float holding an
    integer in [quant_min, quant_max].
    """
    zero = type(lo)(0)
    min_neg = lo if lo < zero else zero
    max_pos = hi if hi > zero else zero
    if mapping == ASYMMETRIC:
        width = round_to(max_pos - min_neg, afmt)
        scale = round_to(width / type(lo)(quant_max - quant_min), afmt)
        scale = scale if scale > eps else eps
        ratio = round_to(min_neg / scale, afmt)
        zp = round_to(type(lo)(quant_min) - rint(ratio), afmt)
        zp = min(max(zp, type(lo)(quant_min)), type(lo)(quant_max))
        return scale, zp
    if mapping == SYMMETRIC:
        amax = -min_neg if -min_neg > max_pos else max_pos
        scale = round_to(amax / type(lo)((quant_max - quant_min) / 2), afmt)
    else:
        # torchao also divides min_neg by quant_min; with quant_min == 0 that is -inf or
        # NaN, which never wins the comparison below.
        scale = round_to(max_pos / type(lo)(quant_max), afmt)
        if quant_min != 0:
            from_min = round_to(min_neg / type(lo)(quant_min), afmt)
            scale = from_min if from_min > scale else scale
    scale = scale if scale > eps else eps
    return scale, type(lo)(sym_zero_point)


@njit(cache=True)
def reciprocal(scale, sfmt):
    """``1 / scale`` in the scale's format, as torchao's quantize_affine computes it."""
    return round_to(type(scale)(1) / scale, sfmt)


@njit(cache=True)
def code_of(v, recip, zp, quant_min, quant_max, pfmt):
    """The code of ``v``: ``clamp(rint(v * recip) + zp, quant_min, quant_max)`` in format pfmt.

    ``v * (1/scale)`` is a multiply, not a division, and may overflow to ±inf (then it
    clamps).  NaN input gives ``quant_min`` (the callers count NaN and raise); a zero input
    times an infinite reciprocal gives the zero point.
    """
    p = round_to(v * recip, pfmt)
    if p != p:
        return zp if v == 0 else type(p)(quant_min)
    q = round_to(rint(p) + zp, pfmt)
    lo = type(q)(quant_min)
    hi = type(q)(quant_max)
    return lo if q < lo else (hi if q > hi else q)


@njit(cache=True, inline="always")
def code_of_native(v, recip, zp, lowest, highest):
    """:func:`code_of` for a product in the compute type and a finite reciprocal, on
    finite ``v`` (NaN gives an unspecified code; the callers count NaN and raise)."""
    q = rint(v * recip) + zp
    q = q if q > lowest else lowest
    return q if q < highest else highest


@njit(cache=True, inline="always")
def code_of_bf16(v, recip, zp, lowest, highest):
    """:func:`code_of` for a bfloat16 product and a finite reciprocal, on finite ``v``."""
    q = round_bf16(rint(round_bf16(v * recip)) + zp)
    q = q if q > lowest else lowest
    return q if q < highest else highest


@njit(cache=True)
def value_of(code, zp, scale, ofmt, pfmt):
    """The value of a code: ``(code - zp)`` cast to the output format, times the scale
    in the product's format, then rounded to the output format."""
    diff = round_to(type(scale)(np.int64(code) - np.int64(zp)), ofmt)
    return round_to(round_to(diff * scale, pfmt), ofmt)


# The CUDA kernels call these compiled wrappers rather than the stubs: under the CUDA
# simulator a kernel runs as Python, where a stub is plain Python and would not widen.
@njit(cache=True)
def load_value(raw, fmt):
    """:func:`load` as a compiled function."""
    return load(raw, fmt)


@njit(cache=True)
def store_value(v, fmt, like):
    """:func:`store` as a compiled function."""
    return store(v, fmt, like)
