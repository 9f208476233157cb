"""CUDA kernels of the OneFlow functions with ``block_size=``, and their launches.

The same host interface as :mod:`numba_quant._cpu.blockwise` (``run_observe``,
``run_map``), for the 4-D device views of :mod:`numba_quant._cuda.blocks`.  Imported
only when a GPU array arrives.

* ``observe_blocks``: one thread block per parameter block at a time (grid-stride over
  blocks); its threads walk the block's elements in C order (neighbouring threads read
  neighbouring addresses along a contiguous innermost axis), reduce min and max in
  shared memory, and thread 0 applies OneFlow's formulas (``_reference.qparams``).
* ``map_blocks``: one element per thread (grid-stride, coalesced), with its block's
  constants from ``_reference.code_params`` (made by the GPU backend's ``code_params``
  kernel) and the element formula ``_reference.map_value``.
"""
import math

import numpy as np
from numba import cuda

from numba_quant._host import codes
from numba_quant._cuda import primitives  # noqa: F401  (registers the CUDA primitives first)
from numba_quant._cuda import arrays
from numba_quant._cuda import launch
from numba_quant._reference import integer as ref
from numba_quant._host import tuning as _tuning
# The C-order index arithmetic of the block kernels.
from numba_quant._cuda.blocks import _block_spans, _element_and_block, _split4

# Threads per block of the block reduction (shared arrays of this many float64 pairs).
SHARED = 1024


@cuda.jit(device=True)
def _block_range(x, k, block, omit, lo_sh, hi_sh):
    """``(lo, hi)`` of block ``k`` of the 4-D view ``x``, for every thread of the thread
    block (all of which must call it): the min and max of its finite values, a NaN
    ``lo`` when it holds a non-finite value and ``omit`` is False, ``lo > hi`` when it
    has no finite value.  The threads walk the block's elements in C order and reduce
    in the shared arrays ``lo_sh`` and ``hi_sh`` (one pair per thread)."""
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    g1 = -(-x.shape[1] // block[1])
    g2 = -(-x.shape[2] // block[2])
    g3 = -(-x.shape[3] // block[3])
    a0, w0, a1, w1, a2, w2, a3, w3 = _block_spans(k, x.shape, block, g1, g2, g3)
    count = w0 * w1 * w2 * w3
    lo = np.float64(np.inf)
    hi = np.float64(-np.inf)
    poisoned = False
    for t in range(tid, count, nthreads):
        i0, i1, i2, i3 = _split4(t, w1, w2, w3)
        v = np.float64(x[a0 + i0, a1 + i1, a2 + i2, a3 + i3])
        if math.isfinite(v):
            lo = min(lo, v)
            hi = max(hi, v)
        else:
            poisoned = True
    # A non-finite value under "raise" poisons the block: a NaN minimum, which the
    # merges below keep.
    lo_sh[tid] = np.float64(np.nan) if poisoned and not omit else lo
    hi_sh[tid] = hi
    cuda.syncthreads()
    step = nthreads // 2
    while step > 0:
        if tid < step:
            a = lo_sh[tid]
            b = lo_sh[tid + step]
            lo_sh[tid] = a if (a < b or a != a) else b
            hi_sh[tid] = max(hi_sh[tid], hi_sh[tid + step])
        cuda.syncthreads()
        step //= 2
    blo = lo_sh[0]
    bhi = hi_sh[0]
    cuda.syncthreads()  # (read by every thread before the next block's writes)
    return blo, bhi


@cuda.jit(device=True)
def _status(blo, bhi, k, state, bad):
    """Block ``k``'s status from its :func:`_block_range`; True when OK."""
    if blo != blo:
        state[k] = codes.HAS_NONFINITE
    elif blo > bhi:
        state[k] = codes.EMPTY_CHANNEL
    else:
        state[k] = codes.OK
        return True
    cuda.atomic.add(bad, 0, 1)
    return False


@cuda.jit
def observe_blocks(x, block, omit, scheme, bits, zero, scale, zero_point, state, bad):
    """Scale, zero point and status (OK, HAS_NONFINITE, EMPTY_CHANNEL) of every block of
    the 4-D view ``x``; ``bad[0]`` counts the blocks whose status is not OK.  ``zero`` is
    0 in the compute type (results are cast to its type)."""
    lo_sh = cuda.shared.array(SHARED, np.float64)
    hi_sh = cuda.shared.array(SHARED, np.float64)
    for k in range(cuda.blockIdx.x, scale.size, cuda.gridDim.x):
        blo, bhi = _block_range(x, k, block, omit, lo_sh, hi_sh)
        if cuda.threadIdx.x == 0 and _status(blo, bhi, k, state, bad):
            s, z = ref.qparams(type(zero)(blo), type(zero)(bhi), scheme, bits)
            scale[k] = type(zero)(s)
            zero_point[k] = type(zero)(z)


@cuda.jit
def minmax_blocks(x, block, omit, lo, hi, state, bad):
    """Each block's (min, max) into ``lo`` and ``hi`` (the compute type) and its status
    into ``state``, as :func:`observe_blocks` without the formulas."""
    lo_sh = cuda.shared.array(SHARED, np.float64)
    hi_sh = cuda.shared.array(SHARED, np.float64)
    for k in range(cuda.blockIdx.x, lo.size, cuda.gridDim.x):
        blo, bhi = _block_range(x, k, block, omit, lo_sh, hi_sh)
        if cuda.threadIdx.x == 0 and _status(blo, bhi, k, state, bad):
            lo[k] = type(lo[k])(blo)
            hi[k] = type(hi[k])(bhi)


@cuda.jit
def map_blocks(x, out, block, params, scheme, bits, what):
    """``out[i] = ref.map_value(x[i], divisor, offset, ...)`` over the 4-D view ``x``,
    with the divisor and offset of element ``i``'s block in ``params[0, k]`` and
    ``params[1, k]`` (blocks numbered in C order over the grid)."""
    d0, d1, d2, d3 = x.shape
    g1 = -(-d1 // block[1])
    g2 = -(-d2 // block[2])
    g3 = -(-d3 // block[3])
    lowest, highest = ref.code_range(params[0, 0], scheme, bits)
    for t in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        i0, i1, i2, i3, j0, j1, j2, j3 = _element_and_block(t, x.shape, block)
        k = ((j0 * g1 + j1) * g2 + j2) * g3 + j3
        out[i0, i1, i2, i3] = ref.map_value(x[i0, i1, i2, i3], params[0, k], params[1, k],
                                            lowest, highest, what)


# --------------------------------------------------------------------------- host side
def native(a):
    """A device array of any library as a Numba device array over the same memory."""
    return arrays.device(a)


def _threads():
    t = max(1, min(int(_tuning.LAUNCH["threads"]), SHARED))
    return 1 << (t.bit_length() - 1)


def run_observe(x4, block4, omit, scheme, bits, n_blocks, like):
    """``(scale, zero_point, state)``: flat arrays of ``n_blocks`` values in ``like``'s
    array type (state: a host array, None when every block is OK)."""
    dtype = np.dtype(x4.dtype)
    scale = arrays.empty((n_blocks,), dtype, like)
    zero_point = arrays.empty((n_blocks,), dtype, like)
    state = cuda.device_array(n_blocks, np.uint8)
    bad = cuda.to_device(np.zeros(1, np.int64))
    blocks = max(1, min(int(_tuning.LAUNCH["max_blocks"]), n_blocks))
    observe_blocks[blocks, _threads()](x4, block4, bool(omit), int(scheme), int(bits),
                                       dtype.type(0), native(scale), native(zero_point),
                                       state, bad)
    return scale, zero_point, (state.copy_to_host() if bad.copy_to_host()[0] else None)


def run_minmax(x4, block4, omit, n_blocks):
    """``(lo, hi, state)``: flat host arrays of the blocks' min and max (compute type),
    and the per-block status (None when every block is OK)."""
    dtype = np.dtype(x4.dtype)
    lo = cuda.device_array(n_blocks, dtype)
    hi = cuda.device_array(n_blocks, dtype)
    state = cuda.device_array(n_blocks, np.uint8)
    bad = cuda.to_device(np.zeros(1, np.int64))
    blocks = max(1, min(int(_tuning.LAUNCH["max_blocks"]), n_blocks))
    minmax_blocks[blocks, _threads()](x4, block4, bool(omit), lo, hi, state, bad)
    return (lo.copy_to_host(), hi.copy_to_host(),
            state.copy_to_host() if bad.copy_to_host()[0] else None)


def run_map(x4, block4, params, what, out4):
    """Write the map ``what`` of the 4-D view ``x4`` into ``out4`` with the per-block
    constants ``params`` (the GPU backend's ``CodeParams``)."""
    blocks, threads = launch.grid(x4.size, _tuning.UNROLL)
    map_blocks[blocks, threads](x4, out4, block4, params.params, params.scheme, params.bits,
                                int(what))


def overlaps_differently(x, out):
    return arrays.overlaps_differently(arrays.info(native(x)), arrays.info(native(out)))


def scratch(shape, dtype):
    return cuda.device_array(tuple(shape), dtype)
