"""ggml's non-linear 4-bit types IQ4_NL and IQ4_XS and the MXFP4 type, one row at a
time, as scalar Numba functions shared by the CPU and GPU kernels (row interface and
conventions as in :mod:`numba_quant._reference.gguf_legacy`).

IQ4 codes index a fixed table of 16 int8 levels (``IQ4NL_LEVELS``); each 32-value group
gets a scale fitted by weighted least squares over 15 trial scales, exactly in ggml's
float32 order.  MXFP4 codes index the FP4 (E2M1) values doubled, under a power-of-two
scale stored as a biased exponent.
"""
import math

import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._reference.blocks import f32_from_bits
from numba_quant._reference.gguf_legacy import c_int, load_f16, store_f16
from numba_quant._reference.gguf_search import GROUP_MAX_EPS, nearest_int
from numba_quant._reference.primitives import mul_rn

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)

# The 16 levels of IQ4_NL / IQ4_XS (ggml's kvalues_iq4nl), as float32 since C compares
# and subtracts them as floats.
IQ4NL_LEVELS = np.array(
    [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float32)
# The E2M1 values times two (ggml's kvalues_mxfp4): codes 8..15 are the negatives.
MXFP4_LEVELS = np.array(
    [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.float32)

# IQ4 trial scales: reciprocal scales (itry + levels[0]) / max for |itry| <= IQ4_NTRY.
IQ4_NTRY = 7


def _iq4_thresholds(levels):
    """For each pair of neighbouring levels (a, b), the smallest float32 v in (a, b] for
    which ggml's tie rule ``v - a < b - v`` (two float32 subtractions) is false.

    The difference of the two rounded subtractions grows with v (rounding is monotone),
    so the rule holds exactly below this threshold: the bisection's answer is the number
    of thresholds at or below v, which needs no branches.
    """
    out = np.empty(levels.size - 1, np.float32)
    for k in range(1, levels.size):
        a, b = levels[k - 1], levels[k]
        lo, hi = a, b  # the rule holds at lo, fails at hi
        while True:
            mid = np.float32((np.float64(lo) + np.float64(hi)) / 2)
            if mid == lo or mid == hi:
                break
            if np.float32(mid - a) < np.float32(b - mid):
                lo = mid
            else:
                hi = mid
        out[k - 1] = hi
    return out


IQ4NL_THRESHOLDS = _iq4_thresholds(IQ4NL_LEVELS)


# --------------------------------------------------------------------------- IQ4
@njit(cache=True)
def iq4_index(v):
    """The level nearest to ``v`` as ggml's bisection (``best_index_int8``) finds it:
    below the first or above the last level clamps, a tie between two neighbours goes
    up (to the exact float32 rule of :func:`_iq4_thresholds`), NaN gives 15."""
    if v != v:
        return 15
    k = 0
    for t in range(15):
        k += v >= IQ4NL_THRESHOLDS[t]
    return k


@njit(cache=True)
def _iq4_codes(x, s, inv, codes):
    # The level indices of the 32 values from s under the reciprocal scale inv (a
    # loop of its own so that it vectorises).
    for j in range(32):
        codes[j] = iq4_index(mul_rn(inv, x[s + j]))


@njit(cache=True)
def _iq4_sums(x, s, weight, codes):
    # Weighted sums of q*x and q*q over the 32 values from s, in ggml's order.
    sumqx = _F0
    sumq2 = _F0
    for j in range(32):
        v = x[s + j]
        q = IQ4NL_LEVELS[codes[j]]
        wq = mul_rn(weight[j], q)
        sumqx = sumqx + mul_rn(wq, v)
        sumq2 = sumq2 + mul_rn(wq, q)
    return sumqx, sumq2


@njit(cache=True)
def _iq4_group_scale(x, s, qw, has_qw, sigma2, weight, codes):
    """The fitted scale of the 32 values from ``s`` (0 for an all-zero group); ``weight``
    (32 floats) and ``codes`` (32 integers) are scratch."""
    for j in range(32):
        v = x[s + j]
        if has_qw:
            weight[j] = qw[s + j] * np.float32(math.sqrt(sigma2 + mul_rn(v, v)))
        else:
            weight[j] = mul_rn(v, v)
    amax = _F0
    vmax = _F0
    for j in range(32):
        a = abs(x[s + j])
        if a > amax:
            amax = a
            vmax = x[s + j]
    if amax < GROUP_MAX_EPS:
        return _F0
    d = -vmax / IQ4NL_LEVELS[0]
    _iq4_codes(x, s, _F1 / d, codes)
    sumqx, sumq2 = _iq4_sums(x, s, weight, codes)
    d = sumqx / sumq2 if sumq2 > _F0 else _F0
    best = d * sumqx
    for itry in range(-IQ4_NTRY, IQ4_NTRY + 1):
        _iq4_codes(x, s, np.float32(itry - 127) / vmax, codes)
        sumqx, sumq2 = _iq4_sums(x, s, weight, codes)
        if sumq2 > _F0 and sumqx * sumqx > best * sumq2:
            d = sumqx / sumq2
            best = d * sumqx
    return d


@njit(cache=True)
def _iq4_pack(L, s, out, pos, n):
    # Byte j of each 32-value group: value j in the low nibble, value j + 16 high.
    for g in range(n // 32):
        for j in range(16):
            out[pos + 16 * g + j] = np.uint8(L[s + 32 * g + j] | (L[s + 32 * g + 16 + j] << 4))


@njit(cache=True, inline="always")
def quantize_row_iq4_nl(x, qw, has_qw, out, fscratch, iscratch):
    # Block of 18 bytes: d (f16), 16 bytes of 4-bit level indices (nibbles as in Q4_0);
    # value = d * level[code].
    weight = fscratch[:32]
    L = iscratch[:32]
    codes = iscratch[32:64]
    for ib in range(x.size // 32):
        s = ib * 32
        # the mean square over the block (ggml's sigma2 for one 32-value super-block)
        sigma2 = _F0
        for j in range(32):
            sigma2 = sigma2 + mul_rn(x[s + j], x[s + j])
        sigma2 = sigma2 * np.float32(0.0625)
        d = _iq4_group_scale(x, s, qw, has_qw, sigma2, weight, codes)
        store_f16(out, ib * 18, d)
        inv = _F1 / d if d != _F0 else _F0
        for j in range(32):
            L[j] = iq4_index(mul_rn(inv, x[s + j]))
        _iq4_pack(L, 0, out, ib * 18 + 2, 32)


@njit(cache=True, inline="always")
def dequantize_row_iq4_nl(data, out):
    for ib in range(out.size // 32):
        o = ib * 18
        d = load_f16(data, o)
        for j in range(16):
            b = data[o + 2 + j]
            out[ib * 32 + j] = d * IQ4NL_LEVELS[b & 15]
            out[ib * 32 + 16 + j] = d * IQ4NL_LEVELS[b >> 4]


@njit(cache=True, inline="always")
def quantize_row_iq4_xs(x, qw, has_qw, out, fscratch, iscratch):
    # Block of 136 bytes per 256 values: d (f16), scales_h (u16: 2 high bits of each of
    # the 8 group scales), scales_l (4 bytes: low nibbles, group 2k low, 2k+1 high),
    # qs (128 bytes, 16 per group, nibbles as in Q4_0); a group's scale is
    # d * (6-bit code - 32), value = group scale * level[code].
    weight = fscratch[:32]
    scales = fscratch[32:40]
    L = iscratch[:256]
    codes = iscratch[256:288]
    for ibl in range(x.size // 256):
        s0 = ibl * 256
        o = ibl * 136
        xs = x[s0:s0 + 256]
        sigma2 = _F0
        for j in range(256):
            sigma2 = sigma2 + mul_rn(xs[j], xs[j])
        sigma2 = sigma2 * np.float32(0.0078125)
        max_scale = _F0
        amax_scale = _F0
        for ib in range(8):
            d = _iq4_group_scale(x, s0 + ib * 32, qw, has_qw, sigma2, weight, codes)
            scales[ib] = d
            if abs(d) > amax_scale:
                amax_scale = abs(d)
                max_scale = d
        d = -max_scale / np.float32(32)
        store_f16(out, o, d)
        inv = _F1 / d if d != _F0 else _F0
        scales_h = 0
        for ib in range(8):
            l = max(-32, min(31, nearest_int(mul_rn(inv, scales[ib]))))
            dl = d * np.float32(l)
            idl = _F1 / dl if dl != _F0 else _F0
            for j in range(32):
                L[ib * 32 + j] = iq4_index(mul_rn(idl, xs[ib * 32 + j]))
            l += 32
            if ib % 2 == 0:
                out[o + 4 + ib // 2] = np.uint8(l & 15)
            else:
                out[o + 4 + ib // 2] |= np.uint8((l & 15) << 4)
            scales_h |= (l >> 4) << (2 * ib)
        out[o + 2] = np.uint8(scales_h & 0xFF)
        out[o + 3] = np.uint8((scales_h >> 8) & 0xFF)
        _iq4_pack(L, 0, out, o + 8, 256)


@njit(cache=True, inline="always")
def dequantize_row_iq4_xs(data, out):
    for ibl in range(out.size // 256):
        o = ibl * 136
        d = load_f16(data, o)
        scales_h = np.int32(data[o + 2]) | (np.int32(data[o + 3]) << 8)
        for ib in range(8):
            ls = ((np.int32(data[o + 4 + ib // 2]) >> (4 * (ib % 2))) & 15) \
                | (((scales_h >> (2 * ib)) & 3) << 4)
            dl = d * np.float32(ls - 32)
            y = ibl * 256 + ib * 32
            for j in range(16):
                b = data[o + 8 + ib * 16 + j]
                out[y + j] = dl * IQ4NL_LEVELS[b & 15]
                out[y + 16 + j] = dl * IQ4NL_LEVELS[b >> 4]


# --------------------------------------------------------------------------- MXFP4
@njit(cache=True)
def floor_log2f(a):
    """``floor(log2f(a))`` for a positive finite float32 ``a``, as glibc's correctly
    rounded-in-practice ``log2f`` gives it (which rounds up to the next integer just
    below a power of two): the float64 logarithm rounded to float32, then floored.
    (``math`` rather than numpy functions: the GPU has no numpy ufuncs.)"""
    return np.float32(math.floor(np.float32(math.log2(np.float64(a)))))


@njit(cache=True)
def e8m0_half(e):
    """ggml's ``GGML_E8M0_TO_FP32_HALF``: 2**(e - 128) as float32 (subnormal for
    e < 2)."""
    if e < 2:
        return f32_from_bits(np.uint32(0x00200000) << np.uint32(e))
    return f32_from_bits(np.uint32(e - 1) << np.uint32(23))


@njit(cache=True)
def mxfp4_index(v, d):
    """The code whose level times ``d`` is nearest to ``v``, the first on ties, as ggml's
    scan of all 16 codes finds it.

    Only the 8 levels of ``v``'s sign (and 0) can win: for the other sign the rounded
    error ``|L*d + |v||`` is never below code 0's exact ``|v|`` (code 8, -0, only ties
    it), and the error of a level and of its negative are the same numbers.  So the scan
    runs over ``|v|`` and the 8 non-negative levels."""
    a = abs(v)
    best = 0
    best_err = a
    for k in range(1, 8):
        err = abs(mul_rn(MXFP4_LEVELS[k], d) - a)
        better = err < best_err
        best = k if better else best
        best_err = err if better else best_err
    return best + 8 if (v < _F0 and best != 0) else best


@njit(cache=True, inline="always")
def quantize_row_mxfp4(x, qw, has_qw, out, fscratch, iscratch):
    # Block of 17 bytes: e (biased exponent, scale 2**(e - 128) times the doubled E2M1
    # levels), 16 bytes of codes (nibbles as in Q4_0).
    for ib in range(x.size // 32):
        s = ib * 32
        o = ib * 17
        amax = _F0
        for j in range(32):
            a = abs(x[s + j])
            if amax < a:
                amax = a
        e = 0
        if amax > _F0:
            e = c_int(floor_log2f(amax) - np.float32(2) + np.float32(127)) & 0xFF
        d = e8m0_half(e)
        out[o] = np.uint8(e)
        for j in range(16):
            lo = mxfp4_index(x[s + j], d)
            hi = mxfp4_index(x[s + 16 + j], d)
            out[o + 1 + j] = np.uint8(lo | (hi << 4))


@njit(cache=True, inline="always")
def dequantize_row_mxfp4(data, out):
    for ib in range(out.size // 32):
        o = ib * 17
        d = e8m0_half(np.int64(data[o]))
        for j in range(16):
            b = data[o + 1 + j]
            out[ib * 32 + j] = MXFP4_LEVELS[b & 15] * d
            out[ib * 32 + 16 + j] = MXFP4_LEVELS[b >> 4] * d
