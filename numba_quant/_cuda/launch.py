"""Launch planning of the GPU backend: grid sizes, and which reduction kernel runs.

Everything here is arithmetic on shapes and the launch settings of
:mod:`numba_quant._host.tuning` (read at each call, so tests can shrink them); nothing touches
device memory.
"""
from numba_quant._cuda import kernels
from numba_quant._host import tuning as _tuning


def threads():
    """Threads per block: LAUNCH["threads"] rounded down to a power of two."""
    t = max(1, min(int(_tuning.LAUNCH["threads"]), kernels.SHARED))
    return 1 << (t.bit_length() - 1)


def grid(n, per_thread=1):
    """``(blocks, threads)`` of a grid-stride launch over ``n`` items."""
    per_block = threads()
    blocks = -(-max(1, n) // (per_block * per_thread))
    return max(1, min(int(_tuning.LAUNCH["max_blocks"]), blocks)), per_block


def small_grid(n):
    """``(blocks, threads)`` for one thread per channel (no more threads than items)."""
    per_block = max(1, min(threads(), n))
    return max(1, min(int(_tuning.LAUNCH["max_blocks"]), -(-n // per_block))), per_block


def plan_minmax(n_outer, n_channels, n_inner, unit_stride=False):
    """Which reduction kernel runs on an ``(outer, channels, inner)`` view:
    ``(kernel, blocks, threads, arguments after the data ones)``.

    ``unit_stride``: the inner axis is contiguous (a ``(1, 1, n)`` view of such data
    goes to the flat kernel).
    """
    per_block = threads()
    max_blocks = int(_tuning.LAUNCH["max_blocks"])
    if n_outer == 1 and n_channels == 1 and unit_stride:
        blocks, per_block = grid(n_inner, _tuning.UNROLL * _tuning.MIN_PER_THREAD)
        return kernels.minmax_flat, blocks, per_block, ()
    if n_inner >= min(_tuning.WARP, per_block):
        group = min(per_block, 1 << (n_inner.bit_length() - 1))
        groups_per_block = per_block // group
        n_cgroups = -(-n_channels // groups_per_block)
        pieces = max(1, min(-(-max_blocks // n_cgroups),
                            n_outer * n_inner // (group * _tuning.MIN_PER_THREAD)))
        split_outer = n_outer >= pieces
        if not split_outer:
            pieces = max(1, min(pieces, n_inner // group))
        blocks = min(max_blocks, n_cgroups * pieces)
        return kernels.minmax_rows, blocks, per_block, (group, pieces, split_outer)
    width = n_channels * n_inner
    if width <= per_block:
        rows_per, chunks = per_block // width, 1
    else:
        rows_per, chunks = 1, -(-width // per_block)
    pieces = max(1, min(-(-max_blocks // chunks),
                        n_outer // (rows_per * _tuning.MIN_PER_THREAD)))
    if pieces == 1 and n_channels >= per_block:
        # Enough channels to occupy the GPU one thread each, and no split of the outer
        # axis to gain: reduce and settle each channel in one thread.
        blocks, per_block = grid(n_channels)
        return kernels.minmax_each, blocks, per_block, ()
    blocks = min(max_blocks, chunks * pieces)
    return kernels.minmax_cols, blocks, per_block, (rows_per, chunks, pieces)
