"""ggml's F16, BF16 and legacy block types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1), one row at a
time, as scalar Numba functions shared by the CPU and GPU kernels.

Every type provides ``quantize_row_<t>(x, qw, has_qw, out, fscratch, iscratch)`` (float32
row ``x`` -> the row's bytes in ``out``; ``qw`` the importance weights, read only when
``has_qw``) and ``dequantize_row_<t>(data, out)``; nothing here allocates.

The arithmetic is ggml's (``ggml-quants.c``, ggml 0.20.2) operation by operation, in
float32: the same comparisons and order of sums, a product that feeds an addition
rounded on its own (``mul_rn``: a GPU would fuse the two), the scales rounded to float16
to nearest even when stored.  Where C converts an out-of-range float to a small integer
(which only a block of subnormal magnitudes, whose reciprocal scale is infinite, can
cause) the x86-64 result is reproduced: the float is truncated to a 32-bit integer, an
invalid conversion giving -2**31, and the low byte is kept.

Shared helpers used by the other GGUF reference modules live here too: float16 fields
in a byte row, the C conversions, ``roundf``.
"""
import math

import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._reference.primitives import mul_rn, trunc
from numba_quant._reference.blocks import (
    bits_from_f32,
    f16_bits_to_f32,
    f32_from_bits,
    round_bf16,
)
from numba_quant._reference.gguf_rows import trips
from numba_quant._reference.gguf_lanes import make_qkx_lanes, make_qx_quants_lanes
from numba_quant._reference.gguf_search import make_qkx3_quants

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_HALF = np.float32(0.5)
_FLT_MAX = np.float32(3.4028234663852886e38)
_I32_LIMIT = np.float32(2147483648.0)
_I15 = np.int32(15)
_I31 = np.int32(0x7FFFFFFF)
_I32_MIN = np.int32(-0x80000000)
_IBYTE = np.int32(0xFF)
_F16_EXPONENT = np.uint16(0x7C00)
_U31 = np.uint32(0x7FFFFFFF)
_F16_REBIAS = np.uint32(112 << 23)       # float32's exponent bias minus float16's
_F16_NORMAL_BITS = np.uint32(113 << 23)  # 2**-14, float16's smallest normal
_HALF_BITS = np.uint32(0x3F000000)
_BELOW_HALF = np.float32(0.49999997)     # the float32 just below 0.5
_F32_EXPONENT = np.uint32(0x7F800000)
# Without an importance matrix Q5_0 and Q5_1 quantize a row this many blocks at a time:
# first every block's scale and codes (the codes into the 2,048 int32 of scratch,
# GGUF_ISCRATCH), then the packing of the codes, each a loop that vectorises (Q4_0 and
# Q4_1 write each block's codes straight into its nibbles).  The legacy types' row
# functions (and Q8_0's) return whether every value was finite, known from the blocks'
# extremes, so that the kernels need no separate pass over the row for it (with an
# importance matrix they return True: the kernels check those rows first).
_RUN = 64


# --------------------------------------------------------------------------- helpers
@njit(cache=True)
def f16_bits_rne(v):
    """The float16 bit pattern nearest to the float32 ``v`` (ties to even; infinity from
    65520 up), as ggml's ``GGML_FP32_TO_FP16`` gives for finite ``v``; an infinite or
    NaN ``v`` gives an infinity.

    Without branches, so that loops over many values vectorise: both roundings are
    computed and one is chosen."""
    b = bits_from_f32(v)
    a = b & _U31
    # Normal results: round the significand at bit 13, ties to even, and rebias the
    # exponent; a carry moves into the exponent, up to infinity (and beyond for inf and
    # NaN, which the minimum brings back to infinity).
    normal = min((a + np.uint32(0x0FFF) + ((a >> np.uint32(13)) & np.uint32(1))
                  - _F16_REBIAS) >> np.uint32(13), np.uint32(0x7C00))
    # Subnormal results (|v| < 2**-14): adding 0.5 rounds |v| to a multiple of 2**-24
    # (ties to even, in the float addition); the bits above 0.5's count those steps.
    sub = bits_from_f32(f32_from_bits(a) + _HALF) - _HALF_BITS
    r = sub if a < _F16_NORMAL_BITS else normal
    return np.uint16(r | ((b >> np.uint32(16)) & np.uint32(0x8000)))


@njit(cache=True)
def store_f16(out, pos, v):
    """Write ``v`` rounded to float16 at byte ``pos`` of ``out`` (little-endian)."""
    bits = f16_bits_rne(v)
    out[pos] = np.uint8(bits & np.uint16(0xFF))
    out[pos + 1] = np.uint8(bits >> np.uint16(8))


@njit(cache=True)
def load_f16(data, pos):
    """The float16 at byte ``pos`` of ``data`` as float32."""
    return f16_bits_to_f32(np.uint32(data[pos]) | (np.uint32(data[pos + 1]) << np.uint32(8)))


@njit(cache=True)
def c_int(v):
    """A float32 converted to a 32-bit integer as x86-64 C does: truncation toward zero,
    -2**31 for NaN and values out of range."""
    if abs(v) < _I32_LIMIT:
        return np.int64(trunc(v))
    return np.int64(-2147483648)


@njit(cache=True)
def c_int8(v):
    """A float32 converted to C's ``int8_t`` on x86-64 (the low byte of :func:`c_int`)."""
    return ((c_int(v) + 128) & 0xFF) - 128


@njit(cache=True)
def code_int(v, bounded):
    """:func:`c_int8` of ``v`` as an int32, by a plain 32-bit conversion when the caller
    knows ``v`` small (``bounded``: a finite scale and reciprocal, so that every scaled
    value of the block lies within a few codes).  32-bit lanes: AVX2 converts floats to
    int32 eight at a time and has no packed conversion to int64."""
    if bounded:
        return np.int32(v)
    return np.int32(c_int8(v))


@njit(cache=True)
def _bounded(d, inv):
    # Both finite (x - x is 0 for a finite x, NaN otherwise; the GPU has no np.isfinite).
    return d - d == 0 and inv - inv == 0


@njit(cache=True)
def c_roundf(v):
    """C's ``roundf``: nearest integer, ties away from zero (float32).

    ``v`` plus the float just below one half (with v's sign), truncated: the sum rounds
    up to the next integer exactly when ``v``'s fraction is at least one half, and
    without a branch (equal to the rounding by cases on every non-NaN float32; the sign
    restored for -0)."""
    return math.copysign(trunc(v + (_BELOW_HALF if v >= _F0 else -_BELOW_HALF)), v)


@njit(cache=True)
def row_sigma2(x):
    """ggml's mean square of the row, ``sum(x*x) / n`` (float32, in order), used to
    turn importance weights into the legacy types' element weights."""
    s = _F0
    for j in range(x.size):
        s = s + mul_rn(x[j], x[j])
    return s / np.float32(x.size)


@njit(cache=True)
def _weighted_min_fit(x, s, weight, nmax, L, Laux):
    """ggml's make_qkx3_quants fit of the 32 values from ``s``: (scale, minus the
    minimum).  A block whose range overflows float32 gets ggml's outcome without the
    search (its reciprocal scale is 0, so its scale is infinite, every code 0 and no
    trial improves on it), which also keeps the search from dividing by zero."""
    lo, hi = _min_max(x, np.uint64(s), np.uint64(32))
    if hi - min(lo, _F0) == np.float32(np.inf):
        for j in range(32):
            L[j] = 0
        return np.float32(np.inf), -min(lo, _F0)
    return make_qkx3_quants(32, nmax, x[s:s + 32], weight, True, L, Laux, -0.9, 0.05, 36,
                            False)


# Importance-matrix fits of 8 blocks side by side (the searches' lane versions, bit for
# bit ggml's per-block search): scratch layout in fscratch / iscratch.
_LANES = 8
_F_XT, _F_WT, _F_SC, _F_MN, _F_WORK = 0, 256, 512, 520, 528
_I_LT, _I_LAUX, _I_FLAGS, _I_L = 0, 256, 512, 528


@njit(cache=True)
def _transpose_group(x, ib0, nl, qw, sigma2, fscratch):
    # Values and weights qw * sqrt(sigma2 + x*x) of blocks ib0 .. ib0+nl-1, element i of
    # block j at [i * nl + j] (the lane layout of the searches).
    xt = fscratch[_F_XT:_F_XT + 256]
    wt = fscratch[_F_WT:_F_WT + 256]
    for j in range(nl):
        s = (ib0 + j) * 32
        for i in range(32):
            v = x[s + i]
            xt[i * nl + j] = v
            wt[i * nl + j] = qw[s + i] * np.float32(math.sqrt(sigma2 + mul_rn(v, v)))


@njit(cache=True)
def _codes_back(nl, iscratch):
    # Block j's 32 codes from the lane layout to iscratch[_I_L + 32*j:].
    for j in range(nl):
        for i in range(32):
            iscratch[_I_L + 32 * j + i] = iscratch[_I_LT + i * nl + j]


@njit(cache=True)
def _fit_group_sym(x, ib0, nl, qw, sigma2, nmax, fscratch, iscratch):
    """ggml's make_qx_quants (weighted) of blocks ib0 .. ib0+nl-1 (nl <= 8): block j's
    scale at fscratch[_F_SC + j], its 32 codes at iscratch[_I_L + 32*j:]."""
    _transpose_group(x, ib0, nl, qw, sigma2, fscratch)
    make_qx_quants_lanes(nl, 32, nmax, fscratch[_F_XT:_F_XT + 256],
                         fscratch[_F_WT:_F_WT + 256], iscratch[_I_LT:_I_LT + 256],
                         fscratch[_F_SC:_F_SC + _LANES], fscratch[_F_WORK:_F_WORK + 6 * _LANES],
                         iscratch[_I_FLAGS:_I_FLAGS + _LANES])
    _codes_back(nl, iscratch)


@njit(cache=True)
def _fit_group_affine(x, ib0, nl, qw, sigma2, nmax, fscratch, iscratch):
    """ggml's make_qkx3_quants (weighted; rmin -0.9, rdelta 0.05, 36 steps) of blocks
    ib0 .. ib0+nl-1: scales at fscratch[_F_SC + j], ggml's ``the_min`` at
    fscratch[_F_MN + j], codes at iscratch[_I_L + 32*j:]."""
    _transpose_group(x, ib0, nl, qw, sigma2, fscratch)
    wide = False
    for j in range(nl):
        lo, hi = _min_max(x, np.uint64((ib0 + j) * 32), np.uint64(32))
        if hi - min(lo, _F0) == np.float32(np.inf):
            wide = True
    if wide:
        # A range beyond float32 (the row is refused as a scale overflow): the scalar
        # search per block, whose guard gives ggml's infinite scale.
        w = fscratch[_F_WORK:_F_WORK + 32]
        for j in range(nl):
            for i in range(32):
                w[i] = fscratch[_F_WT + i * nl + j]
            d, m = _weighted_min_fit(x, (ib0 + j) * 32, w, nmax,
                                     iscratch[_I_L + 32 * j:_I_L + 32 * j + 32],
                                     iscratch[_I_LAUX:_I_LAUX + 32])
            fscratch[_F_SC + j] = d
            fscratch[_F_MN + j] = m
        return
    make_qkx_lanes(nl, 32, nmax, fscratch[_F_XT:_F_XT + 256], fscratch[_F_WT:_F_WT + 256],
                   iscratch[_I_LT:_I_LT + 256], iscratch[_I_LAUX:_I_LAUX + 256],
                   fscratch[_F_SC:_F_SC + _LANES], fscratch[_F_MN:_F_MN + _LANES],
                   fscratch[_F_WORK:_F_WORK + 13 * _LANES],
                   iscratch[_I_FLAGS:_I_FLAGS + 2 * _LANES], -0.9, 0.05, 36, False, True)
    _codes_back(nl, iscratch)


@njit(cache=True)
def _store_u32(out, pos, v):
    for k in range(4):
        out[pos + k] = np.uint8((v >> (8 * k)) & 0xFF)


@njit(cache=True)
def _load_u32(data, pos):
    v = np.int64(0)
    for k in range(4):
        v |= np.int64(data[pos + k]) << (8 * k)
    return v


# --------------------------------------------------------------------------- F16 / BF16
@njit(cache=True, inline="always")
def quantize_row_f16(x, qw, has_qw, out, fscratch, iscratch):
    # Returns False when an output value is infinite or NaN (its exponent field all
    # ones), found in the same pass: the kernels then look at the input.
    # The bits go out as whole little-endian uint16s: a loop storing byte pairs does not
    # vectorise (1.35 against 0.91 ms for (256, 4096) on one thread).
    out16 = out.view(np.uint16)
    top = np.uint16(0)
    for j in range(x.size):
        bits = f16_bits_rne(x[j])
        top = max(top, bits & _F16_EXPONENT)
        out16[j] = bits
    return top != _F16_EXPONENT


@njit(cache=True, inline="always")
def dequantize_row_f16(data, out):
    data16 = data.view(np.uint16)   # (whole little-endian uint16s, as quantize_row_f16)
    for j in range(out.size):
        out[j] = f16_bits_to_f32(data16[j])


@njit(cache=True, inline="always")
def quantize_row_bf16(x, qw, has_qw, out, fscratch, iscratch):
    # Returns False when an output value is infinite or NaN, as quantize_row_f16.
    top = np.uint32(0)
    for j in range(x.size):
        b = bits_from_f32(round_bf16(x[j]))
        top = max(top, b & _F32_EXPONENT)
        out[2 * j] = np.uint8((b >> np.uint32(16)) & np.uint32(0xFF))
        out[2 * j + 1] = np.uint8(b >> np.uint32(24))
    return top != _F32_EXPONENT


@njit(cache=True, inline="always")
def dequantize_row_bf16(data, out):
    for j in range(out.size):
        hi = (np.uint32(data[2 * j]) | (np.uint32(data[2 * j + 1]) << np.uint32(8)))
        out[j] = f32_from_bits(hi << np.uint32(16))


# --------------------------------------------------------------------------- Q8_0
@njit(cache=True, inline="always")
def quantize_row_q8_0(x, qw, has_qw, out, fscratch, iscratch):
    # Block of 34 bytes: d (f16), then 32 int8 codes round(x / d), d = amax / 127.
    # Returns whether every value was finite (from the blocks' extremes).
    finite = True
    qk = trips(x, 32)
    for ib in range(x.size // 32):
        s = np.uint64(ib * 32)
        amax = _block_amax(x, s, qk)
        finite &= amax <= _FLT_MAX
        d = amax / np.float32(127)   # (+0 for a block of -0s, as ggml's)
        inv = _F1 / d if d != _F0 else _F0
        ok = _bounded(d, inv)
        store_f16(out, ib * 34, d)
        q = np.uint64(ib * 34 + 2)
        for j in range(qk):
            out[q + j] = np.uint8(code_int(c_roundf(x[s + j] * inv), ok))
    return finite


@njit(cache=True, inline="always")
def dequantize_row_q8_0(data, out):
    # (unsigned offsets and a bound the compiler cannot fold, gguf_rows.trips: the inner
    # loop vectorises)
    n = trips(out, 32)
    for ib in range(out.size // 32):
        d = load_f16(data, ib * 34)
        v = np.uint64(ib * 32)
        q = np.uint64(ib * 34 + 2)
        for j in range(n):
            out[v + j] = np.float32(np.int8(data[q + j])) * d


# --------------------------------------------------------------------------- Q4_0
@njit(cache=True, inline="always")
def _order_key(v):
    # An int32 that orders float32 values as the floats do (-0 just below +0): int32
    # minimum and maximum vectorise, float ones do not (their NaN rules).
    # (each result cast back: Numba widens int32 arithmetic to int64, half the lanes)
    b = np.int32(bits_from_f32(v))
    return np.int32(b ^ ((b >> np.int32(31)) & _I31))


@njit(cache=True, inline="always")
def _from_order_key(k):
    return f32_from_bits(np.uint32(k ^ ((k >> np.int32(31)) & _I31)))


# The block helpers below address a block as (row, start, qk): its values are
# x[start + j] for j < qk, with start an unsigned offset and qk the block length as a
# bound the compiler cannot fold (gguf_rows.trips), so that their loops vectorise
# without making a view per block.

@njit(cache=True, inline="always")
def _extremes(x, s, qk):
    """The smallest and largest value of a block (-0 counts below +0); a NaN comes out
    as one of them (its key lies beyond infinity's), so :func:`_finite` of the two says
    whether the whole block is finite."""
    lo = _I31
    hi = _I32_MIN
    for j in range(qk):
        k = _order_key(x[s + j])
        lo = np.int32(min(lo, k))
        hi = np.int32(max(hi, k))
    return _from_order_key(lo), _from_order_key(hi)


@njit(cache=True, inline="always")
def _block_amax(x, s, qk):
    """The largest ``|v|`` of a block (+0 for zeros of either sign), found as the largest
    int32 of the magnitudes' bits (one integer maximum, which vectorises); a NaN comes
    out as a NaN (its bits lie beyond infinity's)."""
    m = np.int32(0)
    for j in range(qk):
        m = np.int32(max(m, np.int32(bits_from_f32(x[s + j]) & _U31)))
    return f32_from_bits(np.uint32(m))


@njit(cache=True, inline="always")
def _finite(lo, hi):
    return (lo >= -_FLT_MAX) & (hi <= _FLT_MAX)


@njit(cache=True, inline="always")
def _signed_max(x, s, qk, lo, hi):
    """The value of largest magnitude in the block, the first one on ties, and +0 for a
    block of zeros (ggml's running ``amax < |v|`` search).

    From the block's extremes ``lo``, ``hi`` (:func:`_extremes`): the larger magnitude
    of the two is the answer unless both have it (a tie of +a and -a, or a block of
    zeros), when the first value of that magnitude is."""
    if hi != -lo:
        # (a select, not a branch: which of the two wins is a coin toss on real data)
        return hi if hi > -lo else lo
    if hi == _F0:
        return _F0
    for j in range(qk):
        if abs(x[s + j]) == hi:
            return x[s + j]
    return hi


@njit(cache=True, inline="always")
def _min_max(x, s, qk):
    """ggml's block minimum and maximum (running ``v < min``, ``v > max``), from
    :func:`_extremes`; a zero minimum keeps the sign of the block's first zero, as
    ggml's search does, and a zero maximum is +0, so that ``max - min`` of a block of
    zeros is +0 as in ggml (the sign of a zero maximum shows nowhere else)."""
    vlo, vhi = _extremes(x, s, qk)
    if vlo == _F0:
        for j in range(qk):
            if x[s + j] == _F0:
                vlo = x[s + j]
                break
    if vhi == _F0:
        vhi = _F0
    return vlo, vhi


@njit(cache=True, inline="always")
def _pack_nibbles(out, pos, L, l0):
    """The 32 four-bit codes ``L[l0:l0 + 32]`` as 16 bytes from ``pos``: byte j holds
    code j in its low nibble and code j + 16 in its high nibble."""
    p = np.uint64(pos)
    k = np.uint64(l0)
    for j in range(trips(L, 16)):
        out[p + j] = np.uint8(L[k + j] | (L[k + np.uint64(16) + j] << 4))   # (the low byte)


@njit(cache=True, inline="always")
def _scale_sym(x, s, qk, nmax):
    """A Q4_0 (nmax 8) or Q5_0 (16) block without an importance matrix: its scale ``d`` =
    its signed maximum / -nmax, ``1/d`` (0 for d = 0), whether both are finite (then
    every code is a plain 32-bit conversion) and whether the block is."""
    lo, hi = _extremes(x, s, qk)
    d = _signed_max(x, s, qk, lo, hi) / np.float32(-nmax)
    inv = _F1 / d if d != _F0 else _F0
    return d, inv, _bounded(d, inv), _finite(lo, hi)


@njit(cache=True, inline="always")
def _code_sym(v, inv, ok, nmax):
    # min(2 nmax - 1, v / d + nmax + 0.5), C's conversions, low byte.
    return min(np.int32(2 * nmax - 1),
               code_int(mul_rn(v, inv) + (np.float32(nmax) + _HALF), ok)) & _IBYTE


@njit(cache=True, inline="always")
def _scale_min(x, s, qk, nmax):
    """A Q4_1 (nmax 15) or Q5_1 (31) block without an importance matrix: its minimum
    ``m``, ``d`` = (max - m) / nmax, ``1/d`` (0 for d = 0), whether both are finite and
    whether the block is."""
    lo, hi = _min_max(x, s, qk)
    d = (hi - lo) / np.float32(nmax)
    inv = _F1 / d if d != _F0 else _F0
    return lo, d, inv, _bounded(d, inv), _finite(lo, hi)


@njit(cache=True, inline="always")
def _code_min(v, lo, inv, ok, top):
    # min(top, (v - m) / d + 0.5), C's conversions, low byte (top: 15 for Q4_1, 255 for
    # Q5_1, whose codes ggml does not bound).
    return min(top, code_int(mul_rn(v - lo, inv) + _HALF, ok)) & _IBYTE


@njit(cache=True, inline="always")
def _codes_sym(x, out, iscratch, b0, n, qk, block_bytes, nmax):
    """Blocks b0 .. b0+n-1 of Q5_0: each block's scale as float16 at its first byte, its
    codes into ``iscratch[32 k:]``.  Returns whether every value was finite."""
    finite = True
    for k in range(n):
        s = np.uint64((b0 + k) * 32)
        d, inv, ok, block_finite = _scale_sym(x, s, qk, nmax)
        finite &= block_finite
        store_f16(out, (b0 + k) * block_bytes, d)
        t = np.uint64(k * 32)
        for j in range(qk):
            iscratch[t + j] = _code_sym(x[s + j], inv, ok, nmax)
    return finite


@njit(cache=True, inline="always")
def _codes_min(x, out, iscratch, b0, n, qk, block_bytes, nmax, top):
    """Blocks b0 .. b0+n-1 of Q5_1: ``d`` and the minimum as float16 at each block's
    first bytes, its codes into ``iscratch[32 k:]``.  Returns whether every value was
    finite."""
    finite = True
    for k in range(n):
        s = np.uint64((b0 + k) * 32)
        lo, d, inv, ok, block_finite = _scale_min(x, s, qk, nmax)
        finite &= block_finite
        store_f16(out, (b0 + k) * block_bytes, d)
        store_f16(out, (b0 + k) * block_bytes + 2, lo)
        t = np.uint64(k * 32)
        for j in range(qk):
            iscratch[t + j] = _code_min(x[s + j], lo, inv, ok, top)
    return finite


@njit(cache=True, inline="always")
def quantize_row_q4_0(x, qw, has_qw, out, fscratch, iscratch):
    # Block of 18 bytes: d (f16), 16 bytes of codes; byte j holds value j in its low
    # nibble and value j + 16 in its high nibble; value = (code - 8) * d.
    if has_qw:
        sigma2 = row_sigma2(x)
        nb = x.size // 32
        for ib in range(nb):
            g = ib % _LANES
            if g == 0:
                _fit_group_sym(x, ib, min(_LANES, nb - ib), qw, sigma2, 8, fscratch,
                               iscratch)
            store_f16(out, ib * 18, fscratch[_F_SC + g])
            _pack_nibbles(out, ib * 18 + 2, iscratch, _I_L + 32 * g)
        return True   # (rows with an importance matrix are checked before)
    # Without one, each block's codes go straight into its nibbles: values j and j + 16
    # in one pass over a block's first half.
    finite = True
    qk = trips(x, 32)
    h = trips(x, 16)
    for ib in range(x.size // 32):
        s = np.uint64(ib * 32)
        d, inv, ok, block_finite = _scale_sym(x, s, qk, 8)
        finite &= block_finite
        store_f16(out, ib * 18, d)
        p = np.uint64(ib * 18 + 2)
        for j in range(h):
            out[p + j] = np.uint8(_code_sym(x[s + j], inv, ok, 8)
                                  | (_code_sym(x[s + h + j], inv, ok, 8) << 4))
    return finite


@njit(cache=True, inline="always")
def dequantize_row_q4_0(data, out):
    h = trips(out, 16)
    for ib in range(out.size // 32):
        d = load_f16(data, ib * 18)
        v = np.uint64(ib * 32)
        q = np.uint64(ib * 18 + 2)
        for j in range(h):
            b = np.int32(data[q + j])
            out[v + j] = np.float32((b & 15) - 8) * d
            out[v + h + j] = np.float32((b >> 4) - 8) * d


# --------------------------------------------------------------------------- Q4_1
@njit(cache=True, inline="always")
def quantize_row_q4_1(x, qw, has_qw, out, fscratch, iscratch):
    # Block of 20 bytes: d (f16), m (f16), 16 bytes of codes (nibbles as in Q4_0);
    # value = code * d + m, with m the block minimum (or the fitted offset).
    if has_qw:
        sigma2 = row_sigma2(x)
        nb = x.size // 32
        for ib in range(nb):
            g = ib % _LANES
            if g == 0:
                _fit_group_affine(x, ib, min(_LANES, nb - ib), qw, sigma2, 15, fscratch,
                                  iscratch)
            store_f16(out, ib * 20, fscratch[_F_SC + g])
            store_f16(out, ib * 20 + 2, -fscratch[_F_MN + g])
            _pack_nibbles(out, ib * 20 + 4, iscratch, _I_L + 32 * g)
        return True
    finite = True   # (codes straight into nibbles, as Q4_0)
    qk = trips(x, 32)
    h = trips(x, 16)
    for ib in range(x.size // 32):
        s = np.uint64(ib * 32)
        lo, d, inv, ok, block_finite = _scale_min(x, s, qk, 15)
        finite &= block_finite
        store_f16(out, ib * 20, d)
        store_f16(out, ib * 20 + 2, lo)
        p = np.uint64(ib * 20 + 4)
        for j in range(h):
            out[p + j] = np.uint8(_code_min(x[s + j], lo, inv, ok, _I15)
                                  | (_code_min(x[s + h + j], lo, inv, ok, _I15) << 4))
    return finite


@njit(cache=True, inline="always")
def dequantize_row_q4_1(data, out):
    h = trips(out, 16)
    for ib in range(out.size // 32):
        d = load_f16(data, ib * 20)
        m = load_f16(data, ib * 20 + 2)
        v = np.uint64(ib * 32)
        q = np.uint64(ib * 20 + 4)
        for j in range(h):
            b = np.int32(data[q + j])
            out[v + j] = mul_rn(np.float32(b & 15), d) + m
            out[v + h + j] = mul_rn(np.float32(b >> 4), d) + m


# --------------------------------------------------------------------------- Q5_0 / Q5_1
@njit(cache=True)
def _store_5bit(out, qs_pos, qh_pos, c0, c1, j, qh):
    # Low nibbles as in Q4_0; bit 4 of value j goes to bit j of the 32-bit qh, bit 4 of
    # value j + 16 to bit j + 16.
    out[qs_pos + j] = np.uint8((c0 & 0x0F) | ((c1 & 0x0F) << 4))
    return qh | (((c0 & 0x10) >> 4) << j) | (((c1 & 0x10) >> 4) << (j + 16))


@njit(cache=True, inline="always")
def _store_5bit_codes(out, qs_pos, qh_pos, L, l0):
    """The 32 five-bit codes ``L[l0:l0 + 32]`` of a block: low nibbles from ``qs_pos``
    (values j and j + 16 in byte j), the fifth bits as the little-endian u32 at
    ``qh_pos``."""
    qh = np.int64(0)
    for j in range(16):
        qh = _store_5bit(out, qs_pos, qh_pos, L[l0 + j], L[l0 + j + 16], j, qh)
    _store_u32(out, qh_pos, qh)


@njit(cache=True, inline="always")
def _load_5bit(data, q, qh, j, h):
    """The codes of values ``j`` and ``j + h`` (``h`` = 16) that :func:`_store_5bit`
    wrote, as int32: low nibbles from the bytes at ``q``, fifth bits from the 32-bit
    ``qh``."""
    b = np.int64(data[q + j])
    s = np.int64(j)
    return (np.int32((b & 15) | (((qh >> s) & 1) << 4)),
            np.int32((b >> 4) | (((qh >> (s + np.int64(h))) & 1) << 4)))


@njit(cache=True, inline="always")
def quantize_row_q5_0(x, qw, has_qw, out, fscratch, iscratch):
    # Block of 22 bytes: d (f16), qh (4 bytes, little-endian), 16 bytes of low nibbles;
    # value = (code - 16) * d.
    nb = x.size // 32
    if has_qw:
        sigma2 = row_sigma2(x)
        for ib in range(nb):
            g = ib % _LANES
            if g == 0:
                _fit_group_sym(x, ib, min(_LANES, nb - ib), qw, sigma2, 16, fscratch,
                               iscratch)
            store_f16(out, ib * 22, fscratch[_F_SC + g])
            _store_5bit_codes(out, ib * 22 + 6, ib * 22 + 2, iscratch, _I_L + 32 * g)
        return True
    finite = True
    qk = trips(x, 32)
    for b0 in range(0, nb, _RUN):
        n = min(_RUN, nb - b0)
        finite &= _codes_sym(x, out, iscratch, b0, n, qk, 22, 16)
        for k in range(n):
            o = (b0 + k) * 22
            _store_5bit_codes(out, o + 6, o + 2, iscratch, k * 32)
    return finite


@njit(cache=True, inline="always")
def dequantize_row_q5_0(data, out):
    h = trips(out, 16)
    for ib in range(out.size // 32):
        o = ib * 22
        d = load_f16(data, o)
        qh = _load_u32(data, o + 2)
        v = np.uint64(ib * 32)
        q = np.uint64(o + 6)
        for j in range(h):
            c0, c1 = _load_5bit(data, q, qh, j, h)
            out[v + j] = np.float32(np.int32(c0 - 16)) * d
            out[v + h + j] = np.float32(np.int32(c1 - 16)) * d


@njit(cache=True, inline="always")
def quantize_row_q5_1(x, qw, has_qw, out, fscratch, iscratch):
    # Block of 24 bytes: d (f16), m (f16), qh (4 bytes), 16 bytes of low nibbles;
    # value = code * d + m.
    nb = x.size // 32
    if has_qw:
        sigma2 = row_sigma2(x)
        for ib in range(nb):
            g = ib % _LANES
            if g == 0:
                _fit_group_affine(x, ib, min(_LANES, nb - ib), qw, sigma2, 31, fscratch,
                                  iscratch)
            store_f16(out, ib * 24, fscratch[_F_SC + g])
            store_f16(out, ib * 24 + 2, -fscratch[_F_MN + g])
            _store_5bit_codes(out, ib * 24 + 8, ib * 24 + 4, iscratch, _I_L + 32 * g)
        return True
    finite = True
    qk = trips(x, 32)
    for b0 in range(0, nb, _RUN):
        n = min(_RUN, nb - b0)
        finite &= _codes_min(x, out, iscratch, b0, n, qk, 24, 31, _IBYTE)
        for k in range(n):
            o = (b0 + k) * 24
            _store_5bit_codes(out, o + 8, o + 4, iscratch, k * 32)
    return finite


@njit(cache=True, inline="always")
def dequantize_row_q5_1(data, out):
    h = trips(out, 16)
    for ib in range(out.size // 32):
        o = ib * 24
        d = load_f16(data, o)
        m = load_f16(data, o + 2)
        qh = _load_u32(data, o + 4)
        v = np.uint64(ib * 32)
        q = np.uint64(o + 8)
        for j in range(h):
            c0, c1 = _load_5bit(data, q, qh, j, h)
            out[v + j] = mul_rn(np.float32(c0), d) + m
            out[v + h + j] = mul_rn(np.float32(c1), d) + m
