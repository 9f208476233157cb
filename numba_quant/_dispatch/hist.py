"""Per-channel histograms on either backend, returned to the host.

The histograms (channels x bins counts) are small, so they always come back to the
host, where merging and range selection run; only the pass over the data runs where
the data lives.
"""
import numpy as np

from numba_quant._host import tuning as _tuning


def channel_histogram(ops, data, axis, grid, a, b, bins):
    """``(channels, bins)`` int64 counts of ``data`` along ``axis`` (None: one row).

    ``grid`` is ``POW2_GRID`` (``a``: per-channel bin factors) or ``LINEAR_GRID`` (``a``,
    ``b``: per-channel lo and hi); see :mod:`numba_quant._reference.hist`.
    """
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    if ops.__name__.startswith("numba_quant._cuda."):
        return _gpu_histogram(ops, data, axis, grid, a, b, bins)
    from numba_quant._reference import hist as hist_ref
    if grid == hist_ref.POW2_GRID:
        return _cpu_histogram(ops, data, axis, grid, a, a, a, bins)[0]
    return _cpu_histogram(ops, data, axis, grid, a, a, b, bins)[0]


def channel_histogram_pair(ops, data, axis, factor, lo, hi, bins):
    """``(power-of-two counts, linear counts)``, each ``(channels, bins)`` int64: the
    two grids of :func:`channel_histogram` (``factor``; ``lo`` and ``hi``), on the CPU
    in one pass over the data."""
    from numba_quant._reference import hist as hist_ref
    factor = np.ascontiguousarray(factor, dtype=np.float64)
    lo = np.ascontiguousarray(lo, dtype=np.float64)
    hi = np.ascontiguousarray(hi, dtype=np.float64)
    if ops.__name__.startswith("numba_quant._cuda."):
        return (_gpu_histogram(ops, data, axis, hist_ref.POW2_GRID, factor, factor, bins),
                _gpu_histogram(ops, data, axis, hist_ref.LINEAR_GRID, lo, hi, bins))
    counts = _cpu_histogram(ops, data, axis, hist_ref.BOTH_GRIDS, factor, lo, hi, bins)
    return counts[0], counts[1]


def _cpu_histogram(ops, data, axis, grid, factor, lo, hi, bins):
    """``(grids, channels, bins)`` counts from :func:`numba_quant._cpu.hist.histogram`."""
    from numba_quant._cpu import hist as _cpu_hist
    from numba_quant._reference import hist as hist_ref
    if axis is not None and data.shape[axis] == 1:
        axis = None  # one channel: the per-layer view is the better one
    x3 = ops.channel_view(data, axis)
    parallel, most = ops._tasks(x3)
    n_channels = x3.shape[1]
    # (one compiled kernel: small inputs run it with one piece per channel)
    pieces = max(1, -(-most // n_channels)) if parallel else 1
    pieces = min(pieces, max(1, max(x3.shape[0], x3.shape[2])))
    grids = 2 if grid == hist_ref.BOTH_GRIDS else 1
    counts = np.zeros((grids, n_channels, bins), np.int64)
    partial = np.zeros((grids, n_channels * pieces if pieces > 1 else 1, bins), np.int64)
    with ops._one_at_a_time(parallel):
        _cpu_hist.histogram(x3, grid, factor, lo, hi, pieces, partial, counts)
    return counts


def _gpu_histogram(ops, data, axis, grid, a, b, bins):
    from numba import cuda

    from numba_quant._cuda import arrays as _cuda_arrays
    from numba_quant._cuda import hist as _cuda_hist
    from numba_quant._cuda import launch as _cuda_launch
    x3 = _cuda_arrays.reduction_view(data, axis)
    n_outer, n_channels, n_inner = x3.shape
    threads = _cuda_launch.threads()
    max_blocks = int(_tuning.LAUNCH["max_blocks"])
    pieces = _cuda_hist.pieces_for(n_channels, n_outer * n_inner, threads, max_blocks,
                                   _tuning.MIN_PER_THREAD)
    counts = cuda.to_device(np.zeros((n_channels, bins), np.int64))
    blocks = max(1, min(max_blocks, n_channels * pieces))
    _cuda_hist.histogram[blocks, threads](x3, grid, cuda.to_device(a), cuda.to_device(b),
                                          pieces, counts)
    return counts.copy_to_host()


# --------------------------------------------------------------------------- blocks
def _block_view(ops, data, sizes):
    """``(kernels, x4, block4, n_blocks)``: the 4-D view that the block-wise quantizing
    functions plan (:func:`numba_quant.blocks._views`), and the block kernels' module."""
    import math

    from numba_quant._host import blocks_plan as plan
    from numba_quant._dispatch.blockwise import _drivers
    from numba_quant.blocks import _views
    views, kernels = _drivers(ops)
    block4, x4, _, _ = _views(views, data.shape, sizes, data, data)
    return kernels, x4, block4, math.prod(plan.grid_shape(data.shape, sizes))


def block_minmax(ops, data, sizes, omit):
    """``(lo, hi)`` host arrays of each block's min and max (blocks in C order over the
    grid), checked as ``min_max_observer(..., block_size=sizes)`` checks them."""
    from numba_quant._host import checks as _checks
    from numba_quant._host import codes
    from numba_quant._host import blocks_plan as plan
    kernels, x4, block4, n_blocks = _block_view(ops, data, sizes)
    lo, hi, state = kernels.run_minmax(x4, block4, omit, n_blocks)
    if state is not None:
        if (state == codes.HAS_NONFINITE).any():
            raise _checks.nonfinite_error(ops.count_nonfinite(data))
        raise _checks.empty_block_error(np.flatnonzero(state == codes.EMPTY_CHANNEL),
                                        plan.grid_shape(data.shape, sizes))
    return lo, hi


def block_histogram(ops, data, sizes, grid, a, b, bins):
    """``(blocks, bins)`` int64 counts of each block of ``data`` (C order over the grid);
    ``grid``, ``a`` and ``b`` (one per block) as in :func:`channel_histogram`."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    kernels, x4, block4, n_blocks = _block_view(ops, data, sizes)
    if ops.__name__.startswith("numba_quant._cuda."):
        from numba import cuda

        from numba_quant._cuda import hist as _cuda_hist
        from numba_quant._cuda import launch as _cuda_launch
        threads = _cuda_launch.threads()
        max_blocks = int(_tuning.LAUNCH["max_blocks"])
        pieces = _cuda_hist.pieces_for(n_blocks, int(np.prod(block4)), threads,
                                       max_blocks, _tuning.MIN_PER_THREAD)
        counts = cuda.to_device(np.zeros((n_blocks, bins), np.int64))
        _cuda_hist.histogram_blocks[max(1, min(max_blocks, n_blocks * pieces)), threads](
            x4, block4, grid, cuda.to_device(a), cuda.to_device(b), pieces, counts)
        return counts.copy_to_host()
    from numba_quant._cpu import blocks as _cpu_blocks
    from numba_quant._cpu import hist as _cpu_hist
    from numba_quant._cpu.signatures import Kernel
    global _HISTOGRAM_BLOCKS
    if _HISTOGRAM_BLOCKS is None:
        _HISTOGRAM_BLOCKS = Kernel(_cpu_hist.histogram_blocks)
    x, off, st = _cpu_blocks.flat(x4)
    counts = np.zeros((n_blocks, bins), np.int64)
    _cpu_blocks._run(_HISTOGRAM_BLOCKS, n_blocks, x4.size, (x, off, st, x4.shape, block4),
                     (grid, a, b, counts))
    return counts


_HISTOGRAM_BLOCKS = None
