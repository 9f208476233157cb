"""CUDA kernel of the histogram calibration: per-channel counts in one pass.

Each block counts one piece of one channel into a shared-memory histogram (int32
atomics, which stay on the chip) and then adds its non-zero bins to the channel's row in
global memory with 64-bit atomics.  The bins come from
:mod:`numba_quant._reference.hist`, the functions the CPU kernel calls, so the counts
are the same on both devices.  Histograms wider than ``SHARED_BINS`` count straight
into global memory.
"""
import math

import numpy as np

from numba import cuda, int32, int64

from numba_quant._cuda import primitives as _cuda_primitives  # noqa: F401  (CUDA primitives before any kernel)
from numba_quant._cuda import arrays
from numba_quant._cuda import launch
from numba_quant._host import tuning as _tuning
from numba_quant._reference import hist as hist_ref
# the C-order index arithmetic of the block kernels
from numba_quant._cuda.blocks import _block_spans, _split4

# Bins of the shared-memory histogram (16 KiB of int32).
SHARED_BINS = 4096
# The most elements one block counts per piece: its int32 bins cannot overflow.
MAX_PIECE = 1 << 30


@cuda.jit(device=True, inline=True)
def _clear(shared, bins, tid, step):
    """Zero the first ``bins`` bins of the block's shared histogram."""
    k = tid
    while k < bins:
        shared[k] = 0
        k += step


@cuda.jit(device=True, inline=True)
def _count(v, grid, a, b, bins, half, in_shared, shared, counts, row):
    """Count the value ``v`` (skipped when not finite, or outside a linear grid) into the
    shared histogram, or into ``counts[row]`` when the bins do not fit there."""
    if not math.isfinite(v):
        return
    if grid == hist_ref.POW2_GRID:
        k = hist_ref.pow2_bin(v, a, half)
    else:
        k = hist_ref.linear_bin(v, type(v)(a), type(v)(b), bins)
        if k < 0:
            return
    if in_shared:
        cuda.atomic.add(shared, k, 1)
    else:
        cuda.atomic.add(counts, (row, k), int64(1))


@cuda.jit(device=True, inline=True)
def _flush(shared, counts, row, bins, tid, step):
    """Add the shared histogram's non-zero bins to ``counts[row]``."""
    k = tid
    while k < bins:
        if shared[k] != 0:
            cuda.atomic.add(counts, (row, k), int64(shared[k]))
        k += step


@cuda.jit
def histogram(x3, grid, a, b, pieces, counts):
    """Counts of ``x3`` (outer, channels, inner) per channel into ``counts`` (int64, zeroed).

    ``grid``, ``a`` and ``b`` as in :func:`numba_quant._cpu.hist.histogram`; block
    ``t`` (grid-stride) counts piece ``t % pieces`` of channel ``t // pieces``.
    """
    n_outer, n_channels, n_inner = x3.shape
    bins = counts.shape[1]
    half = bins // 2
    n = n_outer * n_inner
    shared = cuda.shared.array(SHARED_BINS, int32)
    in_shared = bins <= SHARED_BINS
    tid = cuda.threadIdx.x
    step = cuda.blockDim.x
    task = cuda.blockIdx.x
    while task < n_channels * pieces:
        c = task // pieces
        piece = task - c * pieces
        if in_shared:
            _clear(shared, bins, tid, step)
        cuda.syncthreads()
        start = piece * n // pieces
        stop = (piece + 1) * n // pieces
        j = start + tid
        while j < stop:
            o = j // n_inner
            _count(x3[o, c, j - o * n_inner], grid, a[c], b[c], bins, half, in_shared,
                   shared, counts, c)
            j += step
        cuda.syncthreads()
        if in_shared:
            _flush(shared, counts, c, bins, tid, step)
        cuda.syncthreads()
        task += cuda.gridDim.x


@cuda.jit
def histogram_blocks(x, block, grid, a, b, pieces, counts):
    """Counts of every block of the 4-D view ``x`` into row ``k`` of ``counts`` (int64,
    zeroed); the blocks are those of :mod:`numba_quant._cuda.blockwise` (C order over
    the grid, ragged last blocks).  Thread block ``t`` (grid-stride) counts piece
    ``t % pieces`` of block ``t // pieces``: a range of the block's elements in C
    order, walked by neighbouring threads at neighbouring positions, into a
    shared-memory histogram as :func:`histogram` does.  ``grid``, ``a[k]``, ``b[k]`` as
    there."""
    g1 = -(-x.shape[1] // block[1])
    g2 = -(-x.shape[2] // block[2])
    g3 = -(-x.shape[3] // block[3])
    bins = counts.shape[1]
    half = bins // 2
    shared = cuda.shared.array(SHARED_BINS, int32)
    in_shared = bins <= SHARED_BINS
    tid = cuda.threadIdx.x
    step = cuda.blockDim.x
    task = cuda.blockIdx.x
    while task < counts.shape[0] * pieces:
        k = task // pieces
        piece = task - k * pieces
        a0, w0, a1, w1, a2, w2, a3, w3 = _block_spans(k, x.shape, block, g1, g2, g3)
        n = w0 * w1 * w2 * w3
        if in_shared:
            _clear(shared, bins, tid, step)
        cuda.syncthreads()
        t = piece * n // pieces + tid
        stop = (piece + 1) * n // pieces
        while t < stop:
            i0, i1, i2, i3 = _split4(t, w1, w2, w3)
            _count(x[a0 + i0, a1 + i1, a2 + i2, a3 + i3], grid, a[k], b[k], bins, half,
                   in_shared, shared, counts, k)
            t += step
        cuda.syncthreads()
        if in_shared:
            _flush(shared, counts, k, bins, tid, step)
        cuda.syncthreads()
        task += cuda.gridDim.x


def pieces_for(n_channels, n_per_channel, threads, max_blocks, min_per_thread):
    """Pieces per channel: enough blocks to fill the grid, none longer than MAX_PIECE."""
    wanted = max(1, min(-(-max_blocks // n_channels), n_per_channel // (threads * min_per_thread)))
    return max(wanted, -(-n_per_channel // MAX_PIECE))




# --------------------------------------------------------------------------- entry points
def _launch_width(n_rows, per_row):
    """``(threads, pieces, blocks)`` of a histogram launch over ``n_rows`` rows."""
    threads = launch.threads()
    max_blocks = int(_tuning.LAUNCH["max_blocks"])
    pieces = pieces_for(n_rows, per_row, threads, max_blocks, _tuning.MIN_PER_THREAD)
    return threads, pieces, max(1, min(max_blocks, n_rows * pieces))


def _one_grid(x3, grid, a, b, bins):
    n_outer, n_channels, n_inner = x3.shape
    threads, pieces, blocks = _launch_width(n_channels, n_outer * n_inner)
    counts = cuda.to_device(np.zeros((n_channels, bins), np.int64))
    histogram[blocks, threads](x3, grid, cuda.to_device(a), cuda.to_device(b), pieces,
                               counts)
    return counts.copy_to_host()


def channel_histograms(data, axis, grid, factor, lo, hi, bins):
    """``(grids, channels, bins)`` int64 host counts of ``data`` along ``axis`` (None:
    one row) on the grid ``grid`` (``BOTH_GRIDS``: both, one pass each)."""
    x3 = arrays.reduction_view(data, axis)
    if grid == hist_ref.BOTH_GRIDS:
        return np.stack([_one_grid(x3, hist_ref.POW2_GRID, factor, factor, bins),
                         _one_grid(x3, hist_ref.LINEAR_GRID, lo, hi, bins)])
    if grid == hist_ref.POW2_GRID:
        return _one_grid(x3, grid, factor, factor, bins)[None]
    return _one_grid(x3, grid, lo, hi, bins)[None]


def block_histograms(x4, block4, n_blocks, grid, a, b, bins):
    """``(blocks, bins)`` int64 host counts of each block of the 4-D view ``x4``."""
    threads, pieces, blocks = _launch_width(n_blocks, int(np.prod(block4)))
    counts = cuda.to_device(np.zeros((n_blocks, bins), np.int64))
    histogram_blocks[blocks, threads](x4, block4, grid, cuda.to_device(a),
                                      cuda.to_device(b), pieces, counts)
    return counts.copy_to_host()
