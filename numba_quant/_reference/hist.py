"""Histogram bins, written once for the CPU and the GPU kernels.

Two grids, both with ``bins = 2 * half`` bins per channel:

* the power-of-two grid of exponent ``e`` covers ``[-2**e, 2**e)``; ``x`` falls in bin
  ``floor(x * half / 2**e) + half``.  The product is exact (a power-of-two factor, in
  float64), so the bin is exact too.  Doubling the range (``e + 1``) sends bin ``k`` to
  ``(k + half) >> 1`` (:func:`coarser_bin`), which is where every value of bin ``k``
  falls on the wider grid: counts made at any exponent move to a wider one without
  loss, so partial histograms of any split of the data merge into exactly the counts
  of the whole.  ``e`` is the smallest exponent with ``max|x| < 2**e``.
* the linear grid ``[lo, hi]`` is ``torch.histc``'s: bin ``trunc((x - lo) * bins /
  (hi - lo))`` in the input's float type, ``x == hi`` in the last bin, values outside
  dropped.  It serves only PyTorch's L2 search on one batch.
"""
import math

import numpy as np
from numba import njit

from numba_quant._host.codes import BOTH_GRIDS, LINEAR_GRID, POW2_GRID, ZERO_EXPONENT  # noqa: F401
from numba_quant._reference.primitives import trunc


@njit(cache=True)
def grid_exponent(amax):
    """The smallest ``e`` with ``amax < 2**e`` (``ZERO_EXPONENT`` for 0)."""
    if amax == 0:
        return ZERO_EXPONENT
    return math.frexp(amax)[1]


@njit(cache=True)
def grid_factor(exponent, half):
    """``half / 2**exponent`` in float64: a value times it is its position in bins."""
    if exponent == ZERO_EXPONENT:
        return 0.0
    return math.ldexp(np.float64(half), -exponent)


@njit(cache=True)
def single_factor(factor, half):
    """Whether float32 arithmetic bins as float64 does: ``factor`` (from
    :func:`grid_factor`) a power of two in float32's normal range (``half`` a power of
    two), so that a float32 ``x`` times it is exact unless it underflows."""
    return ((half & (half - 1)) == 0) & (factor >= 2.0 ** -126) & (factor <= 2.0 ** 127)


@njit(cache=True)
def pow2_bin(x, factor, half):
    """Bin of a finite ``x`` inside a power-of-two grid (``factor`` from :func:`grid_factor`).

    ``|x| < 2**e`` puts the bin in ``[0, 2 * half)``.  ``factor`` is float64, whose
    product with a float32 or float64 ``x`` is exact, or float32 where
    :func:`single_factor` says that the float32 product is exact too (it is computed in
    the wider of the two types).  A negative ``x`` whose product underflows to -0.0
    (float64 data spanning more than ~2000 binades) still belongs below zero, in bin
    ``half - 1``; a product that underflows otherwise is below 1 in magnitude, and its
    sign alone decides the bin.  The floor is taken as ``trunc`` minus one below
    a negative non-integer and the bin is an int32 (``|x * factor| < half``, and bins
    stay under 2**31): without branches or 64-bit integers, so the CPU kernels bin whole
    runs of elements in vector registers.
    """
    p = x * factor
    t = trunc(p)
    # floor(p): t - 1 below a negative non-integer, and -1 for a negative x whose
    # product is zero (-0.0 after an underflow: the bin below zero).  Written so that
    # scalar code has no branch on the sign of x (random data mispredicts it: 5x
    # slower); p == 0 is tested first, rare and predictable.  (A bool made a float, or
    # the two tests joined by ``&``, compiled to a slow conversion or that branch.)
    floor = t - type(p)(1) if p < t else t
    floor = (type(p)(-1) if x < 0 else floor) if p == 0 else floor
    return np.int32(floor + type(p)(half))  # (< 2**31: exact)


@njit(cache=True)
def linear_bin(x, lo, hi, bins):
    """``torch.histc``'s bin of ``x`` on ``[lo, hi]`` (-1 outside), in ``x``'s type.

    Bin ``trunc((x - lo) * bins / (hi - lo))``, ``x == hi`` in the last bin.  Where that
    position (of another ``x``) is not a number below 2**31 (a range wider than the
    type's largest value divided by ``bins`` makes it infinite or NaN) the value is
    dropped (-1), on every device.  An int32, without branches in the CPU kernels'
    binning loops (see :func:`pow2_bin`).
    """
    q = trunc(((x - lo) * type(x)(bins)) / (hi - lo))
    last = np.int32(bins - 1)
    k = min(np.int32(q), last) if (q >= 0) & (q < type(x)(2.0 ** 31)) else np.int32(-1)
    k = last if x == hi else k
    return k if (x >= lo) & (x <= hi) else np.int32(-1)


@njit(cache=True)
def coarser_bin(k, half):
    """Where bin ``k`` lands when the power-of-two grid doubles its range."""
    return (k + half) >> 1


@njit(cache=True)
def widen_row(row, steps, out):
    """Counts of ``row`` on a grid ``steps`` doublings wider, added into ``out``."""
    half = row.size // 2
    steps = min(steps, 64)
    for k in range(row.size):
        if row[k] == 0:
            continue
        j = k
        for _ in range(steps):
            j = coarser_bin(j, half)
            if j == half or j == half - 1:
                break  # the two middle bins are fixed points
        out[j] += row[k]
