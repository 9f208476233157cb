"""CPU kernels of the OneFlow functions with ``block_size=``, and their launches.

The arrays arrive as the 4-D views of :mod:`numba_quant._host.blocks_plan` and are read as
flat buffers with an offset and four element strides (:func:`numba_quant._cpu.blocks.flat`),
so one compiled kernel serves every layout.  Work is split into ranges of blocks run by
the thread pool of :mod:`numba_quant._cpu.blocks`.  The block's (min, max) comes from
the block-wise reduction of :mod:`numba_quant._cpu.blocks`; the formulas per block and
per element are OneFlow's, from :mod:`numba_quant._reference.integer` (``qparams``,
``map_value``), as in the per-layer and per-channel kernels.
"""
import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._host import codes
from numba_quant._cpu import blocks as cb
from numba_quant._reference import integer as ref
from numba_quant._host.blocks_plan import NATIVE
from numba_quant._cpu.kernels import _index
from numba_quant._cpu.signatures import Kernel


@njit(cache=True)
def _finite_minmax(x, off, st, a0, e0, a1, e1, a2, e2, a3, e3):
    """(min, max) of a block's finite values; (+inf, -inf) when it has none."""
    s0, s1, s2, s3 = st
    lo = x.dtype.type(np.inf)
    hi = x.dtype.type(-np.inf)
    for i0 in range(a0, e0):
        for i1 in range(a1, e1):
            for i2 in range(a2, e2):
                base = off + i0 * s0 + i1 * s1 + i2 * s2
                for i3 in range(a3, e3):
                    v = x[_index(base + i3 * s3)]
                    if v - v == 0:
                        lo = v if v < lo else lo
                        hi = v if v > hi else hi
    return lo, hi


@njit(cache=True)
def _block_range(x, off, st, a0, e0, a1, e1, a2, e2, a3, e3, omit):
    """``(lo, hi, status)`` of one block: its (min, max) and OK, HAS_NONFINITE or
    EMPTY_CHANNEL.

    The NaN-propagating reduction runs first (it vectorises); a block with a non-finite
    value is reduced again over its finite values only under ``omit``.
    """
    lo, hi = cb._block_minmax(x, off, st, NATIVE, a0, e0, a1, e1, a2, e2, a3, e3)
    if lo - lo != 0 or hi - hi != 0:
        if not omit:
            return lo, hi, codes.HAS_NONFINITE
        lo, hi = _finite_minmax(x, off, st, a0, e0, a1, e1, a2, e2, a3, e3)
        if lo > hi:
            return lo, hi, codes.EMPTY_CHANNEL
    return lo, hi, codes.OK


@njit(cache=True, nogil=True)
def observe_blocks(x, off, st, shape, block, k_start, k_stop, omit, scheme, bits, scale,
                   zero_point, state):
    """``min_max_observer`` for blocks ``k_start..k_stop`` (C order over the grid) of the
    4-D view ``(x, off, st)`` of ``shape``: scale and zero point per block, and the
    block's status (OK, HAS_NONFINITE, EMPTY_CHANNEL) in ``state``.  Returns the number
    of blocks whose status is not OK.
    """
    grid = cb._grid(shape, block)
    bad = 0
    for k in range(k_start, k_stop):
        a0, e0, a1, e1, a2, e2, a3, e3 = cb._block_box(k, shape, block, grid)
        lo, hi, status = _block_range(x, off, st, a0, e0, a1, e1, a2, e2, a3, e3, omit)
        state[k] = status
        if status != codes.OK:
            bad += 1
            continue
        s, z = ref.qparams(lo, hi, scheme, bits)
        scale[k] = s
        zero_point[k] = z
    return bad


@njit(cache=True, nogil=True)
def minmax_blocks(x, off, st, shape, block, k_start, k_stop, omit, lo, hi, state):
    """Each block's (min, max) into ``lo`` and ``hi`` and its status into ``state``, for
    blocks ``k_start..k_stop`` (as :func:`observe_blocks`, without the formulas).
    Returns the number of blocks whose status is not OK."""
    grid = cb._grid(shape, block)
    bad = 0
    for k in range(k_start, k_stop):
        a0, e0, a1, e1, a2, e2, a3, e3 = cb._block_box(k, shape, block, grid)
        lo[k], hi[k], state[k] = _block_range(x, off, st, a0, e0, a1, e1, a2, e2, a3, e3,
                                              omit)
        if state[k] != codes.OK:
            bad += 1
    return bad


@njit(cache=True, nogil=True)
def map_blocks(x, off, st, shape, block, k_start, k_stop, divisor, offset, lowest, highest,
               what, out, ooff, ost):
    """Codes, fake-quantized values or decoded codes (``what``) of blocks
    ``k_start..k_stop``, each with its own ``divisor[k]`` and ``offset[k]``
    (``_reference.code_params``), into ``out`` of ``x``'s float type.  Returns 0 (the
    launcher sums task results)."""
    grid = cb._grid(shape, block)
    s0, s1, s2, s3 = st
    o0, o1, o2, o3 = ost
    for k in range(k_start, k_stop):
        a0, e0, a1, e1, a2, e2, a3, e3 = cb._block_box(k, shape, block, grid)
        d = divisor[k]
        z = offset[k]
        for i0 in range(a0, e0):
            for i1 in range(a1, e1):
                for i2 in range(a2, e2):
                    base = off + i0 * s0 + i1 * s1 + i2 * s2
                    obase = ooff + i0 * o0 + i1 * o1 + i2 * o2
                    for i3 in range(a3, e3):
                        o = _index(obase + i3 * o3)
                        out[o] = ref.map_value(x[_index(base + i3 * s3)], d, z, lowest,
                                               highest, what)
    return 0


# --------------------------------------------------------------------------- host side
# Called through _signatures.Kernel: a read-only input (typed as writable; never written)
# shares the compiled code of a writable one.
_OBSERVE = Kernel(observe_blocks)
_MAP = Kernel(map_blocks)
_MINMAX = Kernel(minmax_blocks)


def native(a):
    """The array the kernels take (numpy arrays as they are)."""
    return a


def overlaps_differently(x, out):
    """True when ``out`` shares memory with ``x`` other than element for element."""
    if x is out or not np.may_share_memory(x, out):
        return False
    return not (x.__array_interface__["data"][0] == out.__array_interface__["data"][0]
                and x.strides == out.strides and x.itemsize == out.itemsize)


def run_observe(x4, block4, omit, scheme, bits, n_blocks, like=None):
    """``(scale, zero_point, state)`` of the blocks of the 4-D view ``x4``: flat arrays,
    and the per-block status (None when every block is OK).  (``like``: for the
    interface.)"""
    x, off, st = cb.flat(x4)
    scale = np.empty(n_blocks, x4.dtype)
    zero_point = np.empty(n_blocks, x4.dtype)
    state = np.empty(n_blocks, np.uint8)
    bad = cb.run_blocks(_OBSERVE, n_blocks, x4.size, (x, off, st, x4.shape, block4),
                  (bool(omit), int(scheme), int(bits), scale, zero_point, state))
    return scale, zero_point, (state if bad else None)


def run_minmax(x4, block4, omit, n_blocks):
    """``(lo, hi, state)`` of the blocks of the 4-D view ``x4``: flat host arrays of the
    blocks' min and max, and the per-block status (None when every block is OK)."""
    x, off, st = cb.flat(x4)
    lo = np.empty(n_blocks, x4.dtype)
    hi = np.empty(n_blocks, x4.dtype)
    state = np.empty(n_blocks, np.uint8)
    bad = cb.run_blocks(_MINMAX, n_blocks, x4.size, (x, off, st, x4.shape, block4),
                  (bool(omit), lo, hi, state))
    return lo, hi, (state if bad else None)


def run_map(x4, block4, params, what, out4):
    """Write the map ``what`` of the 4-D view ``x4`` into ``out4`` with the per-block
    constants ``params`` (from the host backend's ``code_params``).

    Integer codes are computed as floats in a buffer, then stored: one compiled kernel
    per float type instead of one per float type and code width (compile time).
    """
    divisor, offset, lowest, highest = params
    x, off, st = cb.flat(x4)
    target = out4 if out4.dtype == x4.dtype else np.empty(out4.shape, x4.dtype)
    out, ooff, ost = cb.flat(target)
    cb.run_blocks(_MAP, divisor.size, x4.size, (x, off, st, x4.shape, block4),
            (divisor, offset, lowest, highest, int(what), out, ooff, ost))
    if target is not out4:
        out4[...] = target
