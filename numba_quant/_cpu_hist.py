"""CPU kernels of the histogram calibration: histograms per channel and range selection.

The bins come from :mod:`numba_quant._reference_hist` and the per-row selections from
:mod:`numba_quant._reference_select`, the same functions the GPU path uses.
"""
import math

from numba import njit, prange

from numba_quant import _reference_hist as hist_ref
from numba_quant import _reference_select as select_ref


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
