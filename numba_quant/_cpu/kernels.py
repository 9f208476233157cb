"""CPU kernels: ``numba.njit`` loops over ``(outer, channels, inner)`` views.

Each kernel body is written once and compiled twice: with ``parallel=True`` for large
inputs and serially for small ones, where starting a parallel region costs more than the
work.  The arithmetic per slice and per element comes from :mod:`numba_quant._reference.integer`.
"""
from types import FunctionType

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from numba_quant._host import codes
from numba_quant._reference import integer as ref
from numba_quant._reference.primitives import stored
from numba_quant._cpu.signatures import Kernel as _Kernel
from numba_quant._host.tuning import RUN_BLOCK, SHORT_ROW

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
def _index(i):
    """A loop bound as an unsigned integer.

    Indexing with a signed integer that LLVM cannot prove non-negative adds a
    negative-index wraparound to every access (and stops vectorisation); loops over
    ``range(_index(a), _index(b))`` index with unsigned integers and skip it.
    """
    return np.uint64(i)


def _parallel_and_serial(impl, joint=()):
    """``{True: parallel kernel, False: serial kernel}`` compiled from one body, each a
    :class:`~numba_quant._cpu.signatures.Kernel` (one signature per layout class; ``joint``
    as there).

    The serial kernel is compiled from a renamed copy of the function: Numba's on-disk
    cache is keyed on the function's name and line, not on ``parallel``, so two builds of
    one function would share (and overwrite) one cache entry.
    """
    serial = FunctionType(impl.__code__, impl.__globals__, impl.__name__ + "_serial",
                          impl.__defaults__, impl.__closure__)
    serial.__qualname__ = impl.__qualname__ + "_serial"
    serial.__doc__ = impl.__doc__
    return {True: _Kernel(njit(parallel=True, cache=True)(impl), joint),
            False: _Kernel(njit(cache=True)(serial), joint)}




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
def _fold_scalar(lo, hi, v, omit):
    """:func:`_fold` for loops that do not vectorise: compares, still NaN-propagating.

    Scalar llvm.minimum expands to a long dependency chain; outside vector loops plain
    compares are several times faster.  A NaN, once in ``lo``/``hi``, stays there.
    """
    if omit:
        return _fold(lo, hi, v, True)
    # Selects rather than branches: on short random rows a branch mispredicts half the time.
    nan = v != v
    lo = v if (v < lo) | nan else lo
    hi = v if (v > hi) | nan else hi
    return lo, hi


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
def _status(lo, hi, omit):
    """The status of one channel's final (min, max)."""
    if omit:
        # Still (+inf, -inf): nothing finite in this channel.
        return codes.EMPTY_CHANNEL if lo > hi else codes.OK
    return codes.OK if lo - lo == 0 and hi - hi == 0 else codes.HAS_NONFINITE


@njit(cache=True, inline="always")
def _finish(lows, highs, omit, lo, hi):
    """Fold partials of shape (channels, pieces) into ``lo``/``hi``; return a status."""
    status = codes.OK
    for c in range(lows.shape[0]):
        a = lows[c, 0]
        b = highs[c, 0]
        for k in range(1, lows.shape[1]):
            a, _ = _fold_scalar(a, a, lows[c, k], False)
            _, b = _fold_scalar(b, b, highs[c, k], False)
        lo[c] = a
        hi[c] = b
        status = max(status, _status(a, b, omit))
    return status


def _reduce_by_channel_impl(x, omit, blocks, pieces, lows, highs, lo, hi):
    """Per-channel min and max into ``lo``/``hi``; returns a status.

    Tasks are (block of channels, piece of the inner axis); ``lows``/``highs`` of shape
    (channels, pieces) hold the partials.  All arrays come from the caller: large arrays
    allocated inside compiled code are page-faulted afresh on every call.

    Suits layouts whose inner runs are long (channels outermost, or per layer), and any
    strides.  Rows are walked as 1-D slices: indexing them from 0 lets LLVM drop the
    negative-index wraparound and vectorise.
    """
    n_outer, n_channels, n_inner = x.shape
    channel_step = (n_channels + blocks - 1) // blocks
    inner_step = (n_inner + pieces - 1) // pieces
    statuses = np.zeros(blocks * pieces, np.int64)
    for task in prange(blocks * pieces):
        first = (task // pieces) * channel_step
        k = task % pieces
        start = k * inner_step
        stop = min(start + inner_step, n_inner)
        for c in range(_index(first), _index(min(first + channel_step, n_channels))):
            a = x.dtype.type(np.inf)
            b = x.dtype.type(-np.inf)
            if stop - start >= SHORT_ROW:
                for o in range(n_outer):
                    a, b = _fold_row(a, b, x[o, c, start:stop], omit)
            else:  # a slice per short row would cost more than its elements
                for o in range(n_outer):
                    for i in range(_index(start), _index(stop)):
                        a, b = _fold_scalar(a, b, x[o, c, i], omit)
            if pieces == 1:  # final values: no partials to fold afterwards
                lo[c] = a
                hi[c] = b
                statuses[task] = max(statuses[task], _status(a, b, omit))
            else:
                lows[c, k] = a
                highs[c, k] = b
    if pieces == 1:
        return statuses.max()
    return _finish(lows, highs, omit, lo, hi)


@njit(cache=True, inline="always")
def _fold_lanes(lo, hi, block, omit):
    """Fold a block into per-lane running (min, max) arrays of the block's length."""
    if omit:
        for j in range(block.size):
            lo[j], hi[j] = _fold(lo[j], hi[j], block[j], True)
    else:
        for j in range(block.size):
            lo[j], hi[j] = _fold(lo[j], hi[j], block[j], False)


def _reduce_periodic_impl(flat, n_channels, n_inner, omit, pieces, lows, highs, lo, hi):
    """Per-channel min and max of a contiguous (outer, channels, inner) array; a status.

    For short inner runs (channels last, or in the middle).  The flat data repeats with
    period ``channels * inner``: each task keeps a running (min, max) per lane of a block
    of whole periods (at least 64 lanes, so the lane loop vectorises) and walks its blocks
    in memory order; lanes are folded into channels at the end.
    """
    period = n_channels * n_inner
    width = period * max(1, 64 // period)
    n_blocks = flat.size // width
    step = (n_blocks + pieces - 1) // pieces
    lane_lows = np.empty((pieces, width), flat.dtype)
    lane_highs = np.empty((pieces, width), flat.dtype)
    for k in prange(pieces):
        lane_lo = lane_lows[k]
        lane_hi = lane_highs[k]
        lane_lo[:] = np.inf
        lane_hi[:] = -np.inf
        for b in range(_index(k * step), _index(min(k * step + step, n_blocks))):
            _fold_lanes(lane_lo, lane_hi, flat[b * width:(b + 1) * width], omit)
    # Lanes to channels (``lows``/``highs`` have shape (channels, 1)), then the elements
    # after the last whole block.
    lows[:] = np.inf
    highs[:] = -np.inf
    for k in range(pieces):
        for j in range(width):
            c = (j % period) // n_inner
            lows[c, 0], _ = _fold_scalar(lows[c, 0], lows[c, 0], lane_lows[k, j], False)
            _, highs[c, 0] = _fold_scalar(highs[c, 0], highs[c, 0], lane_highs[k, j], False)
    for f in range(n_blocks * width, flat.size):
        c = (f % period) // n_inner
        lows[c, 0], highs[c, 0] = _fold_scalar(lows[c, 0], highs[c, 0], flat[f], omit)
    return _finish(lows, highs, omit, lo, hi)




@njit(cache=True, inline="always")
def _min_finite(a, b):
    """min for finite values as one compare-and-select (a single vector min instruction);
    callers detect NaN and infinities separately."""
    return b if b < a else a


@njit(cache=True, inline="always")
def _max_finite(a, b):
    """max for finite values (see _min_finite)."""
    return b if b > a else a


@njit(cache=True, inline="always")
def _nonfinite(v):
    """True for NaN and infinities (``v - v`` is 0 only for finite ``v``)."""
    return (v - v) != 0


@njit(cache=True, inline="always")
def _first_windows(lo_out, hi_out, row, n):
    """Min/max of each pair ``row[j], row[j + 1]`` for ``j < n`` (``row`` has ``n + 1``
    elements); True if any element of ``row`` is not finite."""
    seen = _nonfinite(row[n])
    for j in range(_index(0), _index(n)):
        a = row[j]
        b = row[j + 1]
        lo_out[j] = _min_finite(a, b)
        hi_out[j] = _max_finite(a, b)
        seen |= _nonfinite(a)
    return seen


@njit(cache=True, inline="always")
def _wider_windows(lo_out, hi_out, lo_in, hi_in, n, width):
    """``out[j] = min/max(in[j], in[j + width])`` for ``j < n``: windows twice as wide."""
    s = _index(width)
    for j in range(_index(0), _index(n)):
        lo_out[j] = _min_finite(lo_in[j], lo_in[j + s])
        hi_out[j] = _max_finite(hi_in[j], hi_in[j + s])


@njit(cache=True)
def _block_qparams(lo, hi, m, scheme, bits, scale, zero_point):
    """``scale[c], zero_point[c] = ref.qparams(lo[c], hi[c], scheme, bits)`` for ``c < m``.

    One loop per scheme: inside each, ``scheme`` is known to equal a constant, so once
    the formulas are inlined their branches on it fold away and the loop vectorises
    (25 million channels: about 86 ms CPU of scalar formula calls otherwise).  Not
    inlined into the kernels: compiled once for the serial and the parallel kernel."""
    if scheme == codes.SYMMETRIC:
        for c in range(_index(0), _index(m)):
            scale[c], zero_point[c] = ref.qparams(lo[c], hi[c], scheme, bits)
    elif scheme == codes.AFFINE:
        for c in range(_index(0), _index(m)):
            scale[c], zero_point[c] = ref.qparams(lo[c], hi[c], scheme, bits)
    else:
        for c in range(_index(0), _index(m)):
            scale[c], zero_point[c] = ref.qparams(lo[c], hi[c], scheme, bits)


def _reduce_short_runs_impl(flat, n_outer, n_channels, n_inner, tasks, first, second,
                            scheme, bits):
    """Per-channel min and max of a contiguous (outer, channels, inner) array with short
    inner runs and many channels; returns a status (OK or HAS_NONFINITE).

    With ``scheme < 0`` the min and max go to ``first`` and ``second``.  Otherwise those
    receive the scale and zero point (``ref.qparams``), computed block by block while a
    block's min and max are in cache: no per-channel min/max arrays are written and read
    back.  (On HAS_NONFINITE the outputs are not used.)

    A run of ``k`` elements is not worth a loop of its own.  For a block of channels the
    kernel computes the min/max of every window of ``p`` consecutive elements (``p`` the
    largest power of two <= ``k``) in log2(p) vectorised passes, each window twice as wide
    as the last; a run's result is then that of its first and its last window, which
    overlap and cover it.  With ``k == 1`` a row is folded into the results element-wise.
    Min and max are plain compares (exact for finite data); whether any element is NaN or
    infinite is tracked on the side, and then the results are not used.
    """
    k = n_inner
    p = 1
    while p * 2 <= k:
        p *= 2
    block = max(1, RUN_BLOCK // k)  # channels per block
    n_blocks = (n_channels + block - 1) // block
    seen = np.zeros(tasks, np.bool_)
    for task in prange(tasks):
        buffers = np.empty((4 if scheme < 0 else 6, block * k), flat.dtype)
        found = False
        for b in range(task * n_blocks // tasks, (task + 1) * n_blocks // tasks):
            c0 = b * block
            m = min(block, n_channels - c0)
            if scheme < 0:
                out_lo = first[c0:c0 + m]
                out_hi = second[c0:c0 + m]
            else:  # the block's min and max stay in this task's buffers
                out_lo = buffers[4, :m]
                out_hi = buffers[5, :m]
            for o in range(n_outer):
                row = flat[(o * n_channels + c0) * k:(o * n_channels + c0 + m) * k]
                if k == 1:
                    if o == 0:
                        for c in range(_index(0), _index(m)):
                            v = row[c]
                            out_lo[c] = v
                            out_hi[c] = v
                            found |= _nonfinite(v)
                    else:
                        for c in range(_index(0), _index(m)):
                            v = row[c]
                            out_lo[c] = _min_finite(out_lo[c], v)
                            out_hi[c] = _max_finite(out_hi[c], v)
                            found |= _nonfinite(v)
                    continue
                # windows of 2, 4, ..., p elements, alternating between two buffer pairs
                n = m * k - 1
                found |= _first_windows(buffers[0], buffers[1], row, n)
                src = 0
                width = 2
                while width < p:
                    n -= width
                    _wider_windows(buffers[2 - src], buffers[3 - src], buffers[src],
                                   buffers[src + 1], n, width)
                    src = 2 - src
                    width *= 2
                w_lo = buffers[src]
                w_hi = buffers[src + 1]
                last = _index(k - p)
                step = _index(k)
                if o == 0:
                    for c in range(_index(0), _index(m)):
                        j = c * step
                        out_lo[c] = _min_finite(w_lo[j], w_lo[j + last])
                        out_hi[c] = _max_finite(w_hi[j], w_hi[j + last])
                else:
                    for c in range(_index(0), _index(m)):
                        j = c * step
                        out_lo[c] = _min_finite(out_lo[c], _min_finite(w_lo[j], w_lo[j + last]))
                        out_hi[c] = _max_finite(out_hi[c], _max_finite(w_hi[j], w_hi[j + last]))
            if scheme >= 0 and not found:
                _block_qparams(out_lo, out_hi, m, scheme, bits, first[c0:c0 + m],
                               second[c0:c0 + m])
        seen[task] = found
    return codes.HAS_NONFINITE if seen.any() else codes.OK


reduce_by_channel = _parallel_and_serial(_reduce_by_channel_impl)
reduce_periodic = _parallel_and_serial(_reduce_periodic_impl)
reduce_short_runs = _parallel_and_serial(_reduce_short_runs_impl)


# The compiled serial kernels that other compiled kernels call.
_reduce_by_channel_serial = reduce_by_channel[False].dispatcher


@njit(cache=True)
def _small_channel_minmax(x3, omit):
    """``(lo, hi, status)`` of a small input in one compiled call (serial, by channel).

    For inputs below the parallel threshold the per-call cost is what counts: the
    outputs are allocated here rather than in Python, and the second, non-finite-skipping
    pass runs only when needed.
    """
    n_channels = x3.shape[1]
    lo = np.empty(n_channels, x3.dtype)
    hi = np.empty(n_channels, x3.dtype)
    unused = np.empty((1, 1), x3.dtype)  # one piece per channel: no partials
    status = _reduce_by_channel_serial(x3, False, 1, 1, unused, unused, lo, hi)
    if omit and status == codes.HAS_NONFINITE:
        status = _reduce_by_channel_serial(x3, True, 1, 1, unused, unused, lo, hi)
    return lo, hi, status


def _qparams_impl(lo, hi, scheme, bits, scale, zero_point):
    """Scale and zero point per channel from per-channel (min, max), into the last two."""
    for c in prange(lo.size):
        scale[c], zero_point[c] = ref.qparams(lo[c], hi[c], scheme, bits)


qparams = _parallel_and_serial(_qparams_impl)
_qparams_serial = qparams[False].dispatcher
small_channel_minmax = _Kernel(_small_channel_minmax)


@njit(cache=True)
def _small_observe(x3, omit, scheme, bits):
    """``(scale, zero_point, status)`` of a small input in one compiled call: the
    reduction of :func:`small_channel_minmax`, then the formulas per channel (not run
    unless the status is OK)."""
    lo, hi, status = _small_channel_minmax(x3, omit)
    scale = np.empty_like(lo)
    zero_point = np.empty_like(lo)
    if status == codes.OK:
        _qparams_serial(lo, hi, scheme, bits, scale, zero_point)
    return scale, zero_point, status


small_observe = _Kernel(_small_observe)


@njit(cache=True)
def moving_observe(lo, hi, moving_max, moving_min, update, momentum, scheme, bits, scale,
                   zero_point):
    """The moving-average step for every channel: state updated in place, results out."""
    for c in range(lo.size):
        moving_max[c], moving_min[c], scale[c], zero_point[c] = ref.moving_observe(
            lo[c], hi[c], moving_max[c], moving_min[c], update, momentum, scheme, bits)


@njit(cache=True)
def code_params(scale, zero_point, scheme, bits, divisor, offset):
    """Per-channel divisors and offsets into ``divisor`` and ``offset``; returns the code
    range ``(lowest, highest)``.  (The caller allocates: arrays made in compiled code
    cost compile time and about 0.5 us each to hand back.)"""
    lowest = highest = scale.dtype.type(0)
    for c in range(scale.size):
        divisor[c], offset[c], lowest, highest = ref.code_params(
            scale[c], zero_point[c], scheme, bits)
    return lowest, highest


@njit(cache=True, inline="always")
def _map_row(source, target, d, z, lowest, highest, what):
    """``target[i] = ref.map_value(source[i], ...)`` with the loop-invariant tests hoisted
    (written through ``stored``: see :func:`numba_quant._reference.primitives.stored`)."""
    if d == 0:
        for i in range(source.size):
            v = ref.map_value(source[i], d, z, lowest, highest, what)
            target[i] = stored(v, target)
    elif what == codes.FAKE:
        for i in range(source.size):
            v = ref.map_value(source[i], d, z, lowest, highest, codes.FAKE)
            target[i] = stored(v, target)
    elif what == codes.CODE:
        for i in range(source.size):
            v = ref.map_value(source[i], d, z, lowest, highest, codes.CODE)
            target[i] = stored(v, target)
    else:
        for i in range(source.size):
            v = ref.map_value(source[i], d, z, lowest, highest, codes.DECODE)
            target[i] = stored(v, target)


def _map_by_channel_impl(x, out, divisor, offset, lowest, highest, what, blocks, pieces):
    """Map every element (see ``ref.map_value``).

    Tasks are (block of channels, piece of the inner axis), as in the reduction.
    """
    n_outer, n_channels, n_inner = x.shape
    channel_step = (n_channels + blocks - 1) // blocks
    inner_step = (n_inner + pieces - 1) // pieces
    for task in prange(blocks * pieces):
        first = (task // pieces) * channel_step
        start = (task % pieces) * inner_step
        stop = min(start + inner_step, n_inner)
        for c in range(_index(first), _index(min(first + channel_step, n_channels))):
            d = divisor[c]
            z = offset[c]
            if stop - start >= SHORT_ROW:
                for o in range(n_outer):
                    _map_row(x[o, c, start:stop], out[o, c, start:stop], d, z, lowest,
                             highest, what)
            else:
                for o in range(n_outer):
                    for i in range(_index(start), _index(stop)):
                        v = ref.map_value(x[o, c, i], d, z, lowest, highest, what)
                        out[o, c, i] = stored(v, out)


def _map_by_outer_impl(x, out, divisor, offset, lowest, highest, what, pieces):
    """Map every element (see ``ref.map_value``); tasks are pieces of the outer axis."""
    n_outer, n_channels, n_inner = x.shape
    step = (n_outer + pieces - 1) // pieces
    for task in prange(pieces):
        for o in range(_index(task * step), _index(min(task * step + step, n_outer))):
            for c in range(n_channels):
                d = divisor[c]
                z = offset[c]
                for i in range(n_inner):
                    v = ref.map_value(x[o, c, i], d, z, lowest, highest, what)
                    out[o, c, i] = stored(v, out)


# Input and output share a layout class: a strided input with a fresh contiguous output
# runs the any-layout code, which is as fast there (the input's strides decide).
map_by_channel = _parallel_and_serial(_map_by_channel_impl, joint=(0, 1))
map_by_outer = _parallel_and_serial(_map_by_outer_impl, joint=(0, 1))


@_Kernel
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
