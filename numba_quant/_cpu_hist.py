"""CPU kernels of the histogram calibration: histograms per channel and range selection.

The bins come from :mod:`numba_quant._reference_hist` and the per-row selections from
:mod:`numba_quant._reference_select`, the same functions the GPU path uses.
"""
import math

from numba import njit, prange

from numba_quant import _cpu_blocks as cb
from numba_quant import _reference_hist as hist_ref
from numba_quant import _reference_select as select_ref
from numba_quant._cpu_kernels import _index


@njit(cache=True, parallel=True)
def histogram(x3, grid, a, b, pieces, partial, counts):
    """Counts of ``x3`` (outer, channels, inner) per channel; non-finite values skipped.

    ``grid`` is POW2_GRID (``a[c]``: the channel's bin factor) or LINEAR_GRID (``a[c]``,
    ``b[c]``: the channel's lo and hi).  Task ``t`` covers piece ``t % pieces`` of
    channel ``t // pieces`` (a range of outer rows, or of inner positions when there are
    fewer rows than pieces) and counts into row ``t`` of ``partial`` (``counts`` itself
    when there is one piece per channel).
    """
    n_outer, n_channels, n_inner = x3.shape
    bins = counts.shape[1]
    half = bins // 2
    for task in prange(n_channels * pieces):
        c = task // pieces
        piece = task % pieces
        row = counts[c] if pieces == 1 else partial[task]
        # a piece is a range of outer rows, or of the inner run when there are few rows
        o0, o1, i0, i1 = 0, n_outer, 0, n_inner
        if n_outer >= pieces:
            o0, o1 = piece * n_outer // pieces, (piece + 1) * n_outer // pieces
        else:
            i0, i1 = piece * n_inner // pieces, (piece + 1) * n_inner // pieces
        if grid == hist_ref.POW2_GRID:
            factor = a[c]
            for o in range(o0, o1):
                for i in range(i0, i1):
                    v = x3[o, c, i]
                    if math.isfinite(v):
                        row[hist_ref.pow2_bin(v, factor, half)] += 1
        else:
            for o in range(o0, o1):
                for i in range(i0, i1):
                    v = x3[o, c, i]
                    if math.isfinite(v):
                        k = hist_ref.linear_bin(v, type(v)(a[c]), type(v)(b[c]), bins)
                        if k >= 0:
                            row[k] += 1
    if pieces > 1:
        for c in prange(n_channels):
            for piece in range(pieces):
                counts[c] += partial[c * pieces + piece]



@njit(cache=True)
def _bin(v, grid, a, b, half, bins):
    """The bin of a finite ``v`` on the grid ``grid`` (-1: outside a linear grid)."""
    if grid == hist_ref.POW2_GRID:
        return hist_ref.pow2_bin(v, a, half)
    return hist_ref.linear_bin(v, type(v)(a), type(v)(b), bins)


@njit(cache=True, nogil=True)
def histogram_blocks(x, off, st, shape, block, k_start, k_stop, grid, a, b, counts):
    """Counts of blocks ``k_start..k_stop`` (C order over the grid) of the 4-D view
    ``(x, off, st)`` of ``shape`` into rows ``k`` of ``counts``; non-finite values are
    skipped.  The blocks are those of :mod:`numba_quant._cpu_blockwise` (same split,
    same ragged last blocks); ``grid``, ``a[k]`` and ``b[k]`` as in :func:`histogram`.
    Returns 0 (the launcher sums task results)."""
    blocks = cb._grid(shape, block)
    s0, s1, s2, s3 = st
    bins = counts.shape[1]
    half = bins // 2
    for k in range(k_start, k_stop):
        a0, e0, a1, e1, a2, e2, a3, e3 = cb._block_box(k, shape, block, blocks)
        row = counts[k]
        for i0 in range(a0, e0):
            for i1 in range(a1, e1):
                for i2 in range(a2, e2):
                    base = off + i0 * s0 + i1 * s1 + i2 * s2
                    for i3 in range(a3, e3):
                        v = x[_index(base + i3 * s3)]
                        if math.isfinite(v):
                            j = _bin(v, grid, a[k], b[k], half, bins)
                            if j >= 0:
                                row[j] += 1
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
