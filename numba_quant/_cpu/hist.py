"""CPU kernels of the histogram calibration: histograms per channel and range selection.

The bins come from :mod:`numba_quant._reference.hist` and the per-row selections from
:mod:`numba_quant._reference.select`, the same functions the GPU path uses.
"""
import math

import numpy as np

from numba import njit, prange

from numba_quant._cpu import blocks as cb
from numba_quant._reference import hist as hist_ref
from numba_quant._reference import select as select_ref
from numba_quant._cpu import threads
from numba_quant._cpu.threads import run_ranges, split
from numba_quant._cpu.kernels import _index
from numba_quant._cpu.signatures import Kernel
from numba_quant._host.layout import channel_view


# Elements binned at once (a loop without branches, in vector registers) before they
# are counted; inner runs shorter than SHORT_RUN are counted element by element.
CHUNK = 256
SHORT_RUN = 16


@njit(cache=True)
def _pow2_slot(v, factor, half, bins):
    """:func:`~numba_quant._reference.hist.pow2_bin` of a finite ``v``, ``bins`` (the
    slot of dropped values) for NaN and infinities."""
    k = hist_ref.pow2_bin(v, factor, half)
    return k if math.isfinite(v) else np.int32(bins)


@njit(cache=True)
def _linear_slot(v, lo, hi, bins):
    """:func:`~numba_quant._reference.hist.linear_bin` of a finite ``v`` inside
    ``[lo, hi]`` (float64, taken in ``v``'s type), else ``bins``."""
    k = hist_ref.linear_bin(v, type(v)(lo), type(v)(hi), bins)
    return k if math.isfinite(v) & (k >= 0) else np.int32(bins)


@njit(cache=True)
def _count_run(run, pow2, linear, factor32, lo, hi, local, chunk_p, chunk_l):
    """Counts of the 1-D ``run`` added into ``local``: the power-of-two grid
    (``factor32``, a factor that passes
    :func:`~numba_quant._reference.hist.single_factor`, as float32) in slots
    ``0..bins`` when ``pow2``, the linear one (``lo``, ``hi``) in the next ``bins + 1``
    when ``linear`` (or the first, alone); slot ``bins`` of each takes the dropped
    values.  Runs of ``CHUNK`` elements are binned into ``chunk_p`` and ``chunk_l``
    (int32, ``bins <= 2**30``) first; float32 data is binned in float32, eight elements
    per vector register."""
    bins = local.size // 2 - 1
    half = bins // 2
    second = np.uint64(bins + 1) if pow2 else np.uint64(0)
    for s in range(0, run.size, CHUNK):
        m = min(CHUNK, run.size - s)
        part = run[s:s + m]
        if pow2:
            for j in range(m):
                chunk_p[j] = _pow2_slot(part[j], factor32, half, bins)
            for j in range(m):
                local[np.uint64(chunk_p[j])] += 1
        if linear:
            for j in range(m):
                chunk_l[j] = _linear_slot(part[j], lo, hi, bins)
            for j in range(m):
                local[second + np.uint64(chunk_l[j])] += 1


@njit(cache=True)
def _count_piece(x3, c, o0, o1, i0, i1, pow2, linear, factor, lo, hi, local):
    """Counts of ``x3[o0:o1, c, i0:i1]`` added into ``local`` (slots as in
    :func:`_count_run`)."""
    bins = local.size // 2 - 1
    half = bins // 2
    second = np.uint64(bins + 1) if pow2 else np.uint64(0)
    # (short runs, and power-of-two factors that float32 cannot take: element by element)
    if i1 - i0 < SHORT_RUN or (pow2 and not hist_ref.single_factor(factor, half)):
        for o in range(o0, o1):
            for i in range(i0, i1):
                v = x3[o, c, i]
                if pow2:
                    local[np.uint64(_pow2_slot(v, factor, half, bins))] += 1
                if linear:
                    local[second + np.uint64(_linear_slot(v, lo, hi, bins))] += 1
        return
    chunk_p = np.empty(CHUNK, np.int32)
    chunk_l = np.empty(CHUNK, np.int32)
    for o in range(o0, o1):
        _count_run(x3[o, c, i0:i1], pow2, linear, np.float32(factor), lo, hi, local,
                   chunk_p, chunk_l)


@threads.parallel_njit(cache=True)
def histogram(x3, grid, factor, lo, hi, pieces, partial, counts):
    """Counts of ``x3`` (outer, channels, inner) per channel; non-finite values skipped.

    ``grid`` is POW2_GRID (``factor[c]``: the channel's bin factor; counts in
    ``counts[0]``), LINEAR_GRID (``lo[c]``, ``hi[c]``: the channel's range; counts in
    ``counts[0]``) or BOTH_GRIDS (both in one pass over the data, each element read
    once: power-of-two counts in ``counts[0]``, linear ones in ``counts[1]``).
    Task ``t`` covers piece ``t % pieces`` of channel ``t // pieces`` (a range of outer
    rows, or of inner positions when there are fewer rows than pieces) and counts into
    row ``t`` of ``partial[g]`` (``counts[g]`` itself when there is one piece per
    channel).

    Each task counts into its own histograms with one more slot, where dropped values
    go (no branch per element), and bins runs of ``CHUNK`` elements first: the binning
    loop has no branches and stores, so it runs in vector registers; the counting loop
    is left with a load and an increment per element.
    """
    n_outer, n_channels, n_inner = x3.shape
    bins = counts.shape[2]
    pow2 = grid != hist_ref.LINEAR_GRID
    linear = grid != hist_ref.POW2_GRID
    for task in prange(n_channels * pieces):
        c = task // pieces
        piece = task % pieces
        # a piece is a range of outer rows, or of the inner run when there are few rows
        o0, o1, i0, i1 = 0, n_outer, 0, n_inner
        if n_outer >= pieces:
            o0, o1 = piece * n_outer // pieces, (piece + 1) * n_outer // pieces
        else:
            i0, i1 = piece * n_inner // pieces, (piece + 1) * n_inner // pieces
        local = np.zeros(2 * (bins + 1), np.int64)
        _count_piece(x3, c, o0, o1, i0, i1, pow2, linear, factor[c], lo[c], hi[c], local)
        g = 0
        for used in (pow2, linear):
            if used:
                start = g * (bins + 1)
                if pieces == 1:
                    counts[g, c, :] = local[start:start + bins]
                else:
                    partial[g, task, :] = local[start:start + bins]
                g += 1
    if pieces > 1:
        for gc in prange(counts.shape[0] * n_channels):
            g = gc // n_channels
            c = gc % n_channels
            for piece in range(pieces):
                counts[g, c] += partial[g, c * pieces + piece]


@njit(cache=True, nogil=True)
def histogram_blocks(x, off, st, shape, block, k_start, k_stop, grid, a, b, counts):
    """Counts of blocks ``k_start..k_stop`` (C order over the grid) of the 4-D view
    ``(x, off, st)`` of ``shape`` into rows ``k`` of ``counts``; non-finite values are
    skipped.  The blocks are those of :mod:`numba_quant._cpu.blockwise` (same split,
    same ragged last blocks); ``grid`` (POW2_GRID or LINEAR_GRID), ``a[k]`` and ``b[k]``
    as ``factor`` or ``lo`` and ``hi`` in :func:`histogram`.  Contiguous runs of at
    least ``SHORT_RUN`` elements are binned in chunks (:func:`_count_run`).
    Returns 0 (the launcher sums task results)."""
    blocks = cb._grid(shape, block)
    s0, s1, s2, s3 = st
    bins = counts.shape[1]
    half = bins // 2
    pow2 = grid == hist_ref.POW2_GRID
    local = np.zeros(2 * (bins + 1), np.int64)  # (the second half stays unused)
    chunk = np.empty(CHUNK, np.int32)
    for k in range(k_start, k_stop):
        a0, e0, a1, e1, a2, e2, a3, e3 = cb._block_box(k, shape, block, blocks)
        chunked = not pow2 or hist_ref.single_factor(a[k], half)
        local[:] = 0
        for i0 in range(a0, e0):
            for i1 in range(a1, e1):
                for i2 in range(a2, e2):
                    base = off + i0 * s0 + i1 * s1 + i2 * s2
                    if chunked and s3 == 1 and e3 - a3 >= SHORT_RUN:
                        start = _index(base + a3)
                        _count_run(x[start:start + _index(e3 - a3)], pow2, not pow2,
                                   np.float32(a[k]), a[k], b[k], local, chunk, chunk)
                        continue
                    for i3 in range(a3, e3):
                        v = x[_index(base + i3 * s3)]
                        if pow2:
                            local[np.uint64(_pow2_slot(v, a[k], half, bins))] += 1
                        else:
                            local[np.uint64(_linear_slot(v, a[k], b[k], bins))] += 1
        counts[k] += local[:bins]
    return 0


PERCENTILE = 0
ENTROPY = 1
MSE = 2


@njit(cache=True, nogil=True)
def select_rows(method, counts, edges, fraction, quantized, num_bits, unsigned, start_bin,
                stride, tolerance, first, last, out):
    """Rows ``first`` to ``last - 1`` of ``counts``: the index that ``method`` picks.

    One serial kernel for the three methods (one compilation, without a parallel
    region's); it releases the GIL, so the caller runs row ranges on several threads.
    ``edges`` (float32) is read by MSE only.
    """
    for r in range(first, last):
        if method == PERCENTILE:
            out[r] = select_ref.percentile_index(counts[r], fraction)
        elif method == ENTROPY:
            out[r] = select_ref.entropy_index(counts[r], quantized, start_bin, stride,
                                              tolerance)
        else:
            out[r] = select_ref.mse_index(counts[r], edges[r], num_bits, unsigned,
                                          start_bin, stride)


@njit(cache=True)
def widen_rows(counts, steps, out):
    """Row ``r`` of ``counts`` moved ``steps[r]`` doublings wider, added into ``out[r]``."""
    for r in range(counts.shape[0]):
        hist_ref.widen_row(counts[r], steps[r], out[r])


# --------------------------------------------------------------------------- entry points
def channel_histograms(data, axis, grid, factor, lo, hi, bins):
    """``(grids, channels, bins)`` int64 counts of ``data`` along ``axis`` (None: one
    row) on the grid ``grid`` (``BOTH_GRIDS``: both, in one pass)."""
    if axis is not None and data.shape[axis] == 1:
        axis = None  # one channel: the per-layer view is the better one
    x3 = channel_view(data, axis)
    parallel, most = threads.tasks(x3.size)
    n_channels = x3.shape[1]
    # (one compiled kernel: small inputs run it with one piece per channel)
    pieces = max(1, -(-most // n_channels)) if parallel else 1
    pieces = min(pieces, max(1, max(x3.shape[0], x3.shape[2])))
    grids = 2 if grid == hist_ref.BOTH_GRIDS else 1
    counts = np.zeros((grids, n_channels, bins), np.int64)
    partial = np.zeros((grids, n_channels * pieces if pieces > 1 else 1, bins), np.int64)
    histogram(x3, grid, factor, lo, hi, pieces, partial, counts)
    return counts


_HISTOGRAM_BLOCKS = []


def block_histograms(x4, block4, n_blocks, grid, a, b, bins):
    """``(blocks, bins)`` int64 counts of each block of the 4-D view ``x4`` (blocks of
    ``block4``, in C order over the grid); ``a`` and ``b`` one per block."""
    if not _HISTOGRAM_BLOCKS:
        _HISTOGRAM_BLOCKS.append(Kernel(histogram_blocks))
    x, off, st = cb.flat(x4)
    counts = np.zeros((n_blocks, bins), np.int64)
    cb.run_blocks(_HISTOGRAM_BLOCKS[0], n_blocks, x4.size, (x, off, st, x4.shape, block4),
            (grid, a, b, counts))
    return counts


def select(method, counts, edges32, fraction, levels, bits, unsigned, start_bin, stride,
           tolerance, threads):
    """Each row's chosen index by ``method`` (:data:`PERCENTILE`, :data:`ENTROPY` or
    :data:`MSE`; see :func:`select_rows`), rows split over ``threads`` threads of the
    kept pool."""
    rows = counts.shape[0]
    index = np.empty(rows, np.int64)
    args = (method, counts, edges32, fraction, levels, bits, bool(unsigned), start_bin,
            stride, tolerance)
    run_ranges(select_rows, split(rows, max(1, threads)),
               args, (index,), workers=threads)
    return index


def widen(counts, steps):
    """``counts`` moved ``steps`` (one per row, at most 64) grids coarser."""
    out = np.zeros_like(counts)
    widen_rows(counts, steps, out)
    return out
