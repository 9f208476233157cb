"""CPU kernels: ``numba.njit`` loops over ``(outer, channels, inner)`` views.

Each kernel body is written once and compiled twice: with ``parallel=True`` for large
inputs and serially for small ones, where starting a parallel region costs more than the
work.  The arithmetic per slice and per element comes from :mod:`numba_quant._reference`.
"""
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from numba_quant import _reference as ref

def _llvm_binary(name):
    """An intrinsic calling LLVM's ``llvm.<name>`` on two floats of one type."""

    @intrinsic
    def call(typingctx, a, b):
        if not (isinstance(a, types.Float) and a == b):
            return None

        def codegen(context, builder, signature, args):
            fnty = ir.FunctionType(args[0].type, [args[0].type, args[1].type])
            suffix = "f32" if a == types.float32 else "f64"
            fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.{name}.{suffix}")
            return builder.call(fn, args)

        return a(a, b), codegen

    return call


# IEEE 754-2019 minimum/maximum: NaN-propagating, and unlike compare-and-select they
# vectorise (Numba leaves float compares in a reduction scalar).
minimum = _llvm_binary("minimum")
maximum = _llvm_binary("maximum")


@njit(cache=True, inline="always")
def _fold(lo, hi, v, omit):
    """Fold one element into a running (min, max).

    Without ``omit`` this is NaN-propagating and vectorises, so a NaN or infinity shows in
    the result.  With ``omit`` non-finite elements are skipped; plain compares are used
    there because a select feeding llvm.minimum stays scalar and runs several times slower.
    """
    if omit:
        if v - v == 0:  # exactly 0 for finite v, NaN otherwise
            if v < lo:
                lo = v
            if v > hi:
                hi = v
        return lo, hi
    return minimum(lo, v), maximum(hi, v)


@njit(cache=True, inline="always")
def _fold_row(lo, hi, row, omit):
    """Fold a 1-D slice into a running (min, max); the policy test sits outside the loop."""
    if omit:
        for i in range(row.size):
            lo, hi = _fold(lo, hi, row[i], True)
    else:
        for i in range(row.size):
            lo, hi = _fold(lo, hi, row[i], False)
    return lo, hi


@njit(cache=True, inline="always")
def _finish(lows, highs, omit):
    """Per-channel (min, max) from partials of shape (channels, pieces), and a status."""
    n_channels = lows.shape[0]
    lo = np.empty(n_channels, lows.dtype)
    hi = np.empty(n_channels, lows.dtype)
    status = ref.OK
    for c in range(n_channels):
        a = lows[c, 0]
        b = highs[c, 0]
        for k in range(1, lows.shape[1]):
            a = minimum(a, lows[c, k])
            b = maximum(b, highs[c, k])
        lo[c] = a
        hi[c] = b
        if omit:
            if a > b:  # still (+inf, -inf): nothing finite in this channel
                status = ref.EMPTY_CHANNEL
        elif not (a - a == 0 and b - b == 0):
            status = ref.HAS_NONFINITE
    return lo, hi, status


def _reduce_by_channel_impl(x, omit, pieces):
    """Per-channel ``(lo, hi, status)``; tasks are (channel, piece of the inner axis).

    Suits layouts whose inner runs are long (channels outermost, or per layer).  Each
    task walks 1-D row slices: indexing from 0 lets LLVM drop the negative-index
    wraparound and vectorise.
    """
    n_outer, n_channels, n_inner = x.shape
    step = (n_inner + pieces - 1) // pieces
    lows = np.empty((n_channels, pieces), x.dtype)
    highs = np.empty((n_channels, pieces), x.dtype)
    for task in prange(n_channels * pieces):
        c = task // pieces
        k = task % pieces
        lo = x.dtype.type(np.inf)
        hi = x.dtype.type(-np.inf)
        for o in range(n_outer):
            lo, hi = _fold_row(lo, hi, x[o, c, k * step:min(k * step + step, n_inner)], omit)
        lows[c, k] = lo
        highs[c, k] = hi
    return _finish(lows, highs, omit)


def _reduce_by_outer_impl(x, omit, pieces):
    """Per-channel ``(lo, hi, status)``; tasks are pieces of the outer axis.

    Suits layouts with short inner runs (channels last, or in the middle): each task
    keeps a running (min, max) per channel and walks its rows in memory order.
    """
    n_outer, n_channels, n_inner = x.shape
    step = (n_outer + pieces - 1) // pieces
    lows = np.empty((pieces, n_channels), x.dtype)
    highs = np.empty((pieces, n_channels), x.dtype)
    for k in prange(pieces):
        lo = lows[k]
        hi = highs[k]
        lo[:] = np.inf
        hi[:] = -np.inf
        for o in range(k * step, min(k * step + step, n_outer)):
            for i in range(n_inner):
                column = x[o, :, i]
                for c in range(n_channels):
                    lo[c], hi[c] = _fold(lo[c], hi[c], column[c], omit)
    return _finish(lows.T, highs.T, omit)


reduce_by_channel = {
    True: njit(parallel=True, cache=True)(_reduce_by_channel_impl),
    False: njit(cache=True)(_reduce_by_channel_impl),
}
reduce_by_outer = {
    True: njit(parallel=True, cache=True)(_reduce_by_outer_impl),
    False: njit(cache=True)(_reduce_by_outer_impl),
}


@njit(cache=True)
def qparams(lo, hi, scheme, bits):
    """Scale and zero point per channel from per-channel (min, max)."""
    scale = np.empty_like(lo)
    zero_point = np.empty_like(lo)
    for c in range(lo.size):
        scale[c], zero_point[c] = ref.qparams(lo[c], hi[c], scheme, bits)
    return scale, zero_point


@njit(cache=True)
def moving_observe(lo, hi, moving_max, moving_min, update, momentum, scheme, bits):
    """The moving-average observer's step for every channel; updates the state in place."""
    scale = np.empty_like(lo)
    zero_point = np.empty_like(lo)
    for c in range(lo.size):
        moving_max[c], moving_min[c], scale[c], zero_point[c] = ref.moving_observe(
            lo[c], hi[c], moving_max[c], moving_min[c], update, momentum, scheme, bits)
    return scale, zero_point


@njit(cache=True)
def code_params(scale, zero_point, scheme, bits):
    """Per-channel ``(divisor, offset)`` arrays and the code range ``(lowest, highest)``."""
    divisor = np.empty_like(scale)
    offset = np.empty_like(scale)
    lowest = highest = scale.dtype.type(0)
    for c in range(scale.size):
        divisor[c], offset[c], lowest, highest = ref.code_params(
            scale[c], zero_point[c], scheme, bits)
    return divisor, offset, lowest, highest


@njit(cache=True, inline="always")
def _map_row(source, target, d, z, lowest, highest, what):
    """``target[i] = ref.map_value(source[i], ...)`` with the loop-invariant tests hoisted."""
    if d == 0:
        for i in range(source.size):
            target[i] = ref.map_value(source[i], d, z, lowest, highest, what)
    elif what == ref.FAKE:
        for i in range(source.size):
            target[i] = ref.map_value(source[i], d, z, lowest, highest, ref.FAKE)
    elif what == ref.CODE:
        for i in range(source.size):
            target[i] = ref.map_value(source[i], d, z, lowest, highest, ref.CODE)
    else:
        for i in range(source.size):
            target[i] = ref.map_value(source[i], d, z, lowest, highest, ref.DECODE)


def _map_by_channel_impl(x, out, divisor, offset, lowest, highest, what, pieces):
    """Map every element (see ``ref.map_value``); tasks are (channel, piece of the inner axis)."""
    n_outer, n_channels, n_inner = x.shape
    step = (n_inner + pieces - 1) // pieces
    for task in prange(n_channels * pieces):
        c = task // pieces
        start = (task % pieces) * step
        stop = min(start + step, n_inner)
        d = divisor[c]
        z = offset[c]
        for o in range(n_outer):
            _map_row(x[o, c, start:stop], out[o, c, start:stop], d, z, lowest, highest, what)


def _map_by_outer_impl(x, out, divisor, offset, lowest, highest, what, pieces):
    """Map every element (see ``ref.map_value``); tasks are pieces of the outer axis."""
    n_outer, n_channels, n_inner = x.shape
    step = (n_outer + pieces - 1) // pieces
    for task in prange(pieces):
        for o in range(task * step, min(task * step + step, n_outer)):
            for c in range(n_channels):
                d = divisor[c]
                z = offset[c]
                for i in range(n_inner):
                    out[o, c, i] = ref.map_value(x[o, c, i], d, z, lowest, highest, what)


map_by_channel = {
    True: njit(parallel=True, cache=True)(_map_by_channel_impl),
    False: njit(cache=True)(_map_by_channel_impl),
}
map_by_outer = {
    True: njit(parallel=True, cache=True)(_map_by_outer_impl),
    False: njit(cache=True)(_map_by_outer_impl),
}


@njit(cache=True)
def count_nonfinite(x3, nan_only):
    """Number of NaN (and, unless ``nan_only``, infinite) elements, for error messages."""
    n = 0
    for o in range(x3.shape[0]):
        for c in range(x3.shape[1]):
            for i in range(x3.shape[2]):
                v = x3[o, c, i]
                if (v != v) if nan_only else not (v - v == 0):
                    n += 1
    return n
