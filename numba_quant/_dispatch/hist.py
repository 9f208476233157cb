"""Per-channel and per-block histograms on either backend, returned to the host.

The histograms (channels x bins counts) are small, so they always come back to the
host, where merging and range selection run; only the pass over the data runs where
the data lives (the backend's ``hist.channel_histograms`` and ``hist.block_histograms``).
"""
import math

import numpy as np

from numba_quant._host import blocks_plan as plan
from numba_quant._host import checks as _checks
from numba_quant._host import codes
from numba_quant._dispatch.views import block_views


def _float64(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def channel_histogram(ops, data, axis, grid, a, b, bins):
    """``(channels, bins)`` int64 counts of ``data`` along ``axis`` (None: one row).

    ``grid`` is ``POW2_GRID`` (``a``: per-channel bin factors) or ``LINEAR_GRID`` (``a``,
    ``b``: per-channel lo and hi); see :mod:`numba_quant._reference.hist`.
    """
    a, b = _float64(a), _float64(b)
    if grid == codes.POW2_GRID:
        return ops.hist.channel_histograms(data, axis, grid, a, a, a, bins)[0]
    return ops.hist.channel_histograms(data, axis, grid, a, a, b, bins)[0]


def channel_histogram_pair(ops, data, axis, factor, lo, hi, bins):
    """``(power-of-two counts, linear counts)``, each ``(channels, bins)`` int64: the
    two grids of :func:`channel_histogram` (``factor``; ``lo`` and ``hi``), on the CPU
    in one pass over the data."""
    counts = ops.hist.channel_histograms(data, axis, codes.BOTH_GRIDS, _float64(factor),
                                         _float64(lo), _float64(hi), bins)
    return counts[0], counts[1]


# --------------------------------------------------------------------------- blocks
def _block_view(ops, data, sizes):
    """``(x4, block4, n_blocks)``: the 4-D view that the block-wise quantizing functions
    plan (:func:`numba_quant._dispatch.views.block_views`)."""
    block4, x4, _, _ = block_views(ops, data.shape, sizes, data, data)
    return x4, block4, math.prod(plan.grid_shape(data.shape, sizes))


def block_minmax(ops, data, sizes, omit):
    """``(lo, hi)`` host arrays of each block's min and max (blocks in C order over the
    grid), checked as ``min_max_observer(..., block_size=sizes)`` checks them."""
    x4, block4, n_blocks = _block_view(ops, data, sizes)
    lo, hi, state = ops.blockwise.run_minmax(x4, block4, omit, n_blocks)
    if state is not None:
        if (state == codes.HAS_NONFINITE).any():
            raise _checks.nonfinite_error(ops.channels.count_nonfinite(data))
        raise _checks.empty_block_error(np.flatnonzero(state == codes.EMPTY_CHANNEL),
                                        plan.grid_shape(data.shape, sizes))
    return lo, hi


def block_histogram(ops, data, sizes, grid, a, b, bins):
    """``(blocks, bins)`` int64 counts of each block of ``data`` (C order over the grid);
    ``grid``, ``a`` and ``b`` (one per block) as in :func:`channel_histogram`."""
    x4, block4, n_blocks = _block_view(ops, data, sizes)
    return ops.hist.block_histograms(x4, block4, n_blocks, grid, _float64(a), _float64(b),
                                     bins)
