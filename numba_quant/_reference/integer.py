"""The arithmetic of quantization, written once for the CPU and the GPU.

Every function here is a scalar ``numba.njit`` function.  The CPU kernels in
:mod:`numba_quant._cpu.channels` call them from ``@njit(parallel=True)`` loops and the GPU
kernels in :mod:`numba_quant._cuda.channels` call them from ``@cuda.jit`` kernels, so each
formula of the contract (``docs/semantics.md``) exists in exactly one place.

All arithmetic stays in the input's float type ``T``: constants are built with
``type(x)(...)`` because a Python float literal would promote float32 to float64.
"""
import math

import numpy as np
from numba import njit

from numba_quant._host.codes import AFFINE, CAMBRICON, DECODE, FAKE
from numba_quant._reference.primitives import mantissa_bits, mul_rn, rint, trunc

_LN2 = math.log(2.0)


@njit(cache=True)
def round_half_away(v):
    """Round to the nearest integer, ties away from zero (C's ``round``), in ``v``'s type.

    ``floor(abs(v) + 0.5)`` would be wrong at 0.49999997f (the addition rounds up).
    ``v - trunc(v)`` is exact, so the comparison with one half is too.
    """
    t = trunc(v)
    one = type(v)(1)
    if abs(v - t) >= type(v)(0.5):
        return t + one if v > 0 else t - one
    return t


@njit(cache=True)
def floor_log2(a):
    """``floor(log2(a))`` where ``log2(a)`` is first rounded to ``a``'s float type.

    This is what ``std::floor(std::log2(a))`` gives with a correctly rounded ``log2``:
    for float32 input 7.9999995f the rounded logarithm is 3.0, so the result is 3, not 2.
    It is derived from the exponent instead of calling ``log2``, because the CPU's and
    the GPU's ``log2`` need not round alike.  Requires ``0 < a < inf``.
    """
    m, e = math.frexp(a)  # a = m * 2**e with 0.5 <= m < 1, exact
    below = e - 1  # floor of the exact logarithm
    if e == 0:
        # log2(a) lies in [-1, 0) and never rounds up to 0 (tiny negatives exist).
        return below
    # Exact log2(a) = e - t with t = -log2(m) > 0.  It rounds up to the integer e when t
    # is at most half the spacing of T just below e.  t is tiny there, and log1p of the
    # exact m - 1 gives it to double precision, far finer than that spacing.
    t = -math.log1p(np.float64(m) - 1.0) / _LN2
    me, xe = math.frexp(np.float64(e))  # |e| = me * 2**xe
    spacing_exponent = xe - mantissa_bits(a)
    if e > 0 and me == 0.5:
        # Just below a power of two the spacing halves.
        spacing_exponent -= 1
    if t <= math.ldexp(0.5, spacing_exponent):
        return e
    return below


@njit(cache=True)
def symmetric_levels(like, bits):
    """``2**(bits-1) - 1`` in the type of ``like``: the largest symmetric code."""
    return type(like)((1 << (bits - 1)) - 1)


@njit(cache=True)
def affine_levels(like, bits):
    """``2**bits - 1`` in the type of ``like``: the largest affine code."""
    return type(like)((1 << bits) - 1)


@njit(cache=True)
def cambricon_shift(amax, bits):
    """Shift exponent ``floor(log2(amax)) - (bits - 2)``; 0 for an all-zero range."""
    if amax == 0:
        return type(amax)(0)
    return type(amax)(floor_log2(amax) - (bits - 2))


@njit(cache=True)
def _scale_and_zero_point(lo, hi, amax, scheme, bits, ties_away):
    """The scale formulas of every scheme, from a range and its largest magnitude.

    A zero range gives a zero scale (cambricon: a zero shift) and a zero zero point, both
    +0.0, never NaN or infinity.  The affine zero point rounds ties to even, or away from
    zero with ``ties_away`` (the moving-average observer's rounding).
    """
    zero = type(lo)(0)
    # A zero bound counts as +0.0 (adding +0.0 turns -0.0 into +0.0 and changes nothing
    # else): which zero a reduction keeps from a slice holding both depends on its order,
    # and the sign would reach the zero point as -rint(-0.0 / scale) = +0.0.
    lo = lo + zero
    hi = hi + zero
    if scheme == CAMBRICON:
        return cambricon_shift(amax, bits), zero
    if scheme == AFFINE:
        scale = (hi - lo) / affine_levels(lo, bits)
    else:
        scale = amax / symmetric_levels(lo, bits)
    if scale == 0:
        return zero, zero
    if scheme != AFFINE:
        return scale, zero
    ratio = lo / scale
    return scale, -(round_half_away(ratio) if ties_away else rint(ratio))


@njit(cache=True)
def qparams(lo, hi, scheme, bits):
    """Scale and zero point of ``min_max_observer`` from a slice's min ``lo`` and max ``hi``."""
    return _scale_and_zero_point(lo, hi, max(abs(hi), abs(lo)), scheme, bits, False)


@njit(cache=True)
def moving_update(moving, new, momentum):
    """One step of the moving average; a stored 0 means "not yet initialised".

    ``momentum`` is a float32 and ``1 - momentum`` is computed in float32.  The two
    products are rounded separately (no fused multiply-add) on every target.
    """
    if moving == 0:
        return new
    keep = type(moving)(momentum)
    take = type(moving)(np.float32(1) - momentum)
    return mul_rn(moving, keep) + mul_rn(new, take)


@njit(cache=True)
def moving_qparams(moving_max, moving_min, scheme, bits):
    """Scale and zero point from the moving-average state.

    Unlike :func:`qparams`, the affine zero point rounds half away from zero, and the
    symmetric state already holds the largest magnitude.
    """
    return _scale_and_zero_point(moving_min, moving_max, moving_max, scheme, bits, True)


@njit(cache=True)
def code_range(like, scheme, bits):
    """``(lowest, highest)``: the smallest and largest code, in the type of ``like``."""
    if scheme == AFFINE:
        return type(like)(0), affine_levels(like, bits)
    highest = symmetric_levels(like, bits)
    return -highest - type(like)(1), highest


@njit(cache=True)
def code_params(scale, zero_point, scheme, bits):
    """Per-slice constants of quantization: ``(divisor, offset, lowest, highest)``.

    An affine code is ``clamp(rint(x / divisor + offset), lowest, highest)``, a symmetric
    or cambricon one ``clamp(rint(x / divisor), lowest, highest)`` (offset 0, not added);
    a code's value is ``(code - offset) * divisor``, where subtracting +0.0 changes no bit.
    """
    zero = type(scale)(0)
    lowest, highest = code_range(scale, scheme, bits)
    if scheme == AFFINE:
        return scale, zero_point, lowest, highest
    if scheme == CAMBRICON:
        # The scale holds a shift; the step is 2**trunc(shift), exact in T.  Shifts far
        # below T's smallest exponent give 0 as any of them would; the clamp keeps the
        # conversion to an integer in range.
        shift = max(trunc(scale), type(scale)(-2048))
        return math.ldexp(type(scale)(1), int(shift)), zero, lowest, highest
    return scale, zero, lowest, highest


@njit(cache=True)
def valid_code_params(scale, zero_point, scheme):
    """Whether quantization takes a slice's scale and zero point: both finite, and the
    scale not negative unless it is a cambricon shift (an exponent), which must give a
    finite step ``2**trunc(shift)``: below 128 in float32, 1024 in float64."""
    if not (math.isfinite(scale) and math.isfinite(zero_point)):
        return False
    if scheme == CAMBRICON:
        return scale < (128 if mantissa_bits(scale) == 24 else 1024)
    return scale >= 0


@njit(cache=True)
def quantize_value(x, divisor, offset, lowest, highest):
    """The code of ``x`` as a float of ``x``'s type (OneFlow's ``quantization``).

    The clamp compares twice in OneFlow's order, so NaN passes through unchanged.  A zero
    divisor (zero-range slice) gives code 0 instead of infinity or NaN.
    """
    if divisor == 0:
        return x if x != x else type(x)(0)
    v = x / divisor
    if lowest == 0:
        # Affine, the only scheme whose codes start at 0, adds the zero point.  The others
        # add nothing: adding an offset of +0.0 would turn a quotient of -0.0 into +0.0,
        # where OneFlow's code keeps the sign.
        v = v + offset
    q = rint(v)
    q = highest if q > highest else q
    q = lowest if q < lowest else q
    return q


@njit(cache=True)
def dequantize_value(q, divisor, offset):
    """The real value a code stands for."""
    return (q - offset) * divisor


@njit(cache=True)
def map_value(x, divisor, offset, lowest, highest, what):
    """One element of an element-wise kernel: a code, a fake-quantized value or a decoded code."""
    if what == DECODE:
        return dequantize_value(x, divisor, offset)
    q = quantize_value(x, divisor, offset, lowest, highest)
    if what == FAKE:
        return dequantize_value(q, divisor, offset)
    return q


@njit(cache=True)
def moving_observe(lo, hi, moving_max, moving_min, update, momentum, scheme, bits):
    """One call of the moving-average observer for one slice.

    Returns ``(moving_max, moving_min, scale, zero_point)`` after the optional update.
    Symmetric and cambricon track ``max(|max|, |min|)`` in both state slots.
    """
    if update:
        if scheme == AFFINE:
            # A zero bound enters the state as +0.0, whichever zero the reduction kept.
            zero = type(lo)(0)
            moving_max = moving_update(moving_max, hi + zero, momentum)
            moving_min = moving_update(moving_min, lo + zero, momentum)
        else:
            moving_max = moving_update(moving_max, max(abs(hi), abs(lo)), momentum)
            moving_min = moving_max
    scale, zero_point = moving_qparams(moving_max, moving_min, scheme, bits)
    return moving_max, moving_min, scale, zero_point
