"""CUDA kernels of the GPU backend (:mod:`numba_quant._cuda`).

Every kernel is a lazily compiled ``numba.cuda.jit`` function (no signature), so this
module imports without a driver and under the CUDA simulator.  The arithmetic per
channel and per element comes from :mod:`numba_quant._reference`, called directly.

Min/max reductions work on the float bits read as integers (an int32 or int64 view of
the same memory) and compare order-preserving integer keys::

    key = bits ^ 0x7FF...F  if bits < 0  else  bits

so that ``-inf < finite < +inf``, ``-0.0 < +0.0`` (as LLVM's ``minimum``/``maximum`` on
the CPU), NaN with a clear sign bit sorts above ``+inf`` and NaN with a set sign bit
below ``-inf``.  Under ``nonfinite="raise"`` any NaN or infinity therefore ends up as the
minimum or the maximum of its channel, where the final pass finds it; under ``"omit"``
non-finite elements are skipped.  Integer atomics (unlike float ones) behave the same
on every GPU and in the simulator, so blocks combine their results with one atomic
min/max per channel into a key array that a fill kernel initialised.
"""
import numpy as np
from numba import cuda, int64

from numba_quant import _reference as ref

# Size of the shared-memory buffers of the block reductions: the most threads per block.
SHARED = 1024


# --------------------------------------------------------------------------- helpers
@cuda.jit(device=True)
def _fold(lo, hi, bits, omit, mask, inf_bits):
    """Fold the float whose bits are ``bits`` into running (min, max) keys."""
    k = np.int64(bits)
    if omit and (k & mask) >= inf_bits:
        return lo, hi
    if k < 0:
        k = k ^ mask
    return min(lo, k), max(hi, k)


@cuda.jit(device=True)
def _group_minmax(sh_lo, sh_hi, lo, hi, t, group):
    """Min/max of ``lo``/``hi`` over aligned groups of ``group`` threads (a power of two).

    Every thread of the block must call it.  The result is valid in the group's first
    thread.
    """
    sh_lo[t] = lo
    sh_hi[t] = hi
    cuda.syncthreads()
    lane = t % group
    s = group // 2
    while s > 0:
        if lane < s:
            sh_lo[t] = min(sh_lo[t], sh_lo[t + s])
            sh_hi[t] = max(sh_hi[t], sh_hi[t + s])
        cuda.syncthreads()
        s //= 2
    return sh_lo[t], sh_hi[t]


@cuda.jit(device=True)
def _split3(k, n_channels, n_inner):
    """``(o, c, i)`` of the linear index ``k`` of an ``(outer, channels, inner)`` array."""
    row = k // n_inner
    i = k - row * n_inner
    o = row // n_channels
    c = row - o * n_channels
    return o, c, i


@cuda.jit(device=True)
def _advance(o, c, i, do, dc, di, n_channels, n_inner):
    """``(o, c, i)`` moved on by the step whose own split is ``(do, dc, di)``."""
    i += di
    if i >= n_inner:
        i -= n_inner
        c += 1
    c += dc
    if c >= n_channels:
        c -= n_channels
        o += 1
    return o + do, c, i


# --------------------------------------------------------------------------- min/max
@cuda.jit
def fill_keys(lo_k, hi_k, pinf, ninf, status):
    """Start every channel at (+inf, -inf) and the status at OK."""
    start = cuda.grid(1)
    for c in range(start, lo_k.size, cuda.gridsize(1)):
        lo_k[c] = pinf
        hi_k[c] = ninf
    if start == 0:
        status[0] = ref.OK


@cuda.jit
def minmax_rows(x3, omit, mask, inf_bits, pinf, ninf, lo_k, hi_k, group, pieces,
                split_outer):
    """Per-channel min/max keys of ``x3`` (integer bits, ``(outer, channels, inner)``).

    For long inner runs.  A block is split into groups of ``group`` threads, one channel
    per group; a task is (a block's worth of channels, one of ``pieces`` pieces of each
    channel's elements, cut along the outer axis when ``split_outer`` else along the
    inner one).  Each group reads its piece with coalesced, 4-way unrolled strided loops,
    reduces in shared memory and makes one atomic min and max per channel.
    """
    n_outer, n_channels, n_inner = x3.shape
    t = cuda.threadIdx.x
    per_block = cuda.blockDim.x // group
    g = t // group
    lane = t - g * group
    sh_lo = cuda.shared.array(SHARED, int64)
    sh_hi = cuda.shared.array(SHARED, int64)
    n_cgroups = (n_channels + per_block - 1) // per_block
    for task in range(cuda.blockIdx.x, n_cgroups * pieces, cuda.gridDim.x):
        cb = task // pieces
        p = task - cb * pieces
        c = cb * per_block + g
        lo = pinf
        hi = ninf
        if c < n_channels:
            if split_outer:
                o0 = n_outer * p // pieces
                o1 = n_outer * (p + 1) // pieces
                i0 = 0
                i1 = n_inner
            else:
                o0 = 0
                o1 = n_outer
                i0 = n_inner * p // pieces
                i1 = n_inner * (p + 1) // pieces
            for o in range(o0, o1):
                i = i0 + lane
                while i + 3 * group < i1:
                    b0 = x3[o, c, i]
                    b1 = x3[o, c, i + group]
                    b2 = x3[o, c, i + 2 * group]
                    b3 = x3[o, c, i + 3 * group]
                    lo, hi = _fold(lo, hi, b0, omit, mask, inf_bits)
                    lo, hi = _fold(lo, hi, b1, omit, mask, inf_bits)
                    lo, hi = _fold(lo, hi, b2, omit, mask, inf_bits)
                    lo, hi = _fold(lo, hi, b3, omit, mask, inf_bits)
                    i += 4 * group
                while i < i1:
                    lo, hi = _fold(lo, hi, x3[o, c, i], omit, mask, inf_bits)
                    i += group
        lo, hi = _group_minmax(sh_lo, sh_hi, lo, hi, t, group)
        if lane == 0 and c < n_channels:
            cuda.atomic.min(lo_k, c, lo)
            cuda.atomic.max(hi_k, c, hi)


@cuda.jit
def minmax_cols(x3, omit, mask, inf_bits, pinf, ninf, lo_k, hi_k, rows_per, chunks,
                pieces):
    """Per-channel min/max keys of ``x3`` for short inner runs (channels last, ...).

    A row is the ``channels * inner`` elements of one outer index.  Each thread owns one
    column of a row (``rows_per`` rows side by side when a row is narrower than the
    block; else one of ``chunks`` chunks of a row, one column per thread) and walks down
    the outer axis through one of ``pieces`` pieces: loads are coalesced along the row.
    The columns of a channel are then combined in shared memory, with one atomic min and
    max per channel and task.
    """
    n_outer, n_channels, n_inner = x3.shape
    width = n_channels * n_inner
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    sh_lo = cuda.shared.array(SHARED, int64)
    sh_hi = cuda.shared.array(SHARED, int64)
    for task in range(cuda.blockIdx.x, chunks * pieces, cuda.gridDim.x):
        p = task // chunks
        chunk = task - p * chunks
        if chunks == 1:
            sub = t // width
            j = t - sub * width
            j0 = 0
            j1 = width
            active = sub < rows_per
        else:
            sub = 0
            j0 = chunk * nt
            j1 = min(j0 + nt, width)
            j = j0 + t
            active = j < width
        o0 = n_outer * p // pieces
        o1 = n_outer * (p + 1) // pieces
        lo = pinf
        hi = ninf
        if active:
            c = j // n_inner
            i = j - c * n_inner
            o = o0 + sub
            while o + 3 * rows_per < o1:
                b0 = x3[o, c, i]
                b1 = x3[o + rows_per, c, i]
                b2 = x3[o + 2 * rows_per, c, i]
                b3 = x3[o + 3 * rows_per, c, i]
                lo, hi = _fold(lo, hi, b0, omit, mask, inf_bits)
                lo, hi = _fold(lo, hi, b1, omit, mask, inf_bits)
                lo, hi = _fold(lo, hi, b2, omit, mask, inf_bits)
                lo, hi = _fold(lo, hi, b3, omit, mask, inf_bits)
                o += 4 * rows_per
            while o < o1:
                lo, hi = _fold(lo, hi, x3[o, c, i], omit, mask, inf_bits)
                o += rows_per
        sh_lo[t] = lo
        sh_hi[t] = hi
        cuda.syncthreads()
        cc = j0 // n_inner + t
        if cc <= (j1 - 1) // n_inner:
            a = pinf
            b = ninf
            jb = max(cc * n_inner, j0)
            je = min(cc * n_inner + n_inner, j1)
            for r in range(rows_per):
                for jj in range(jb, je):
                    tt = r * width + jj - j0
                    a = min(a, sh_lo[tt])
                    b = max(b, sh_hi[tt])
            cuda.atomic.min(lo_k, cc, a)
            cuda.atomic.max(hi_k, cc, b)
        cuda.syncthreads()


@cuda.jit
def finish_keys(lo_k, hi_k, lo_bits, hi_bits, status, omit, mask, inf_bits):
    """Keys back to float bits, and the status (see ``ref.OK`` and the others)."""
    for c in range(cuda.grid(1), lo_k.size, cuda.gridsize(1)):
        a = lo_k[c]
        b = hi_k[c]
        if omit:
            if a > b:  # still (+inf, -inf): no finite element in this channel
                status[0] = ref.EMPTY_CHANNEL
        if a < 0:
            a = a ^ mask
        if b < 0:
            b = b ^ mask
        if not omit and ((a & mask) >= inf_bits or (b & mask) >= inf_bits):
            status[0] = ref.HAS_NONFINITE
        lo_bits[c] = a
        hi_bits[c] = b


@cuda.jit
def count_nonfinite(x3, nan_only, mask, inf_bits, count):
    """Add the number of NaN (and, unless ``nan_only``, infinite) elements to ``count[0]``."""
    n_outer, n_channels, n_inner = x3.shape
    n = n_outer * n_channels * n_inner
    t = cuda.threadIdx.x
    k = cuda.grid(1)
    step = cuda.gridsize(1)
    total = np.int64(0)
    if k < n:
        o, c, i = _split3(k, n_channels, n_inner)
        do, dc, di = _split3(step, n_channels, n_inner)
        while k < n:
            a = np.int64(x3[o, c, i]) & mask
            if a > inf_bits or (a == inf_bits and not nan_only):
                total += 1
            o, c, i = _advance(o, c, i, do, dc, di, n_channels, n_inner)
            k += step
    sh = cuda.shared.array(SHARED, int64)
    sh[t] = total
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if t < s:
            sh[t] += sh[t + s]
        cuda.syncthreads()
        s //= 2
    if t == 0 and sh[0] > 0:
        cuda.atomic.add(count, 0, sh[0])


# --------------------------------------------------------------------------- per channel
@cuda.jit
def qparams(lo, hi, scheme, bits, scale, zero_point):
    """``min_max_observer``'s scale and zero point, one thread per channel."""
    for c in range(cuda.grid(1), lo.size, cuda.gridsize(1)):
        s, z = ref.qparams(lo[c], hi[c], scheme, bits)
        scale[c] = s
        zero_point[c] = z


@cuda.jit
def moving_observe(lo, hi, moving_max, moving_min, update, momentum, scheme, bits, scale,
                   zero_point):
    """The moving-average observer's step, one thread per channel; state updated in place."""
    for c in range(cuda.grid(1), lo.size, cuda.gridsize(1)):
        mx, mn, s, z = ref.moving_observe(lo[c], hi[c], moving_max[c], moving_min[c],
                                          update, momentum, scheme, bits)
        moving_max[c] = mx
        moving_min[c] = mn
        scale[c] = s
        zero_point[c] = z


@cuda.jit
def code_params(scale, zero_point, scheme, bits, divisor, offset):
    """Per-channel divisor and offset of the element-wise kernels (``ref.code_params``)."""
    for c in range(cuda.grid(1), scale.size, cuda.gridsize(1)):
        d, z, lowest, highest = ref.code_params(scale[c], zero_point[c], scheme, bits)
        divisor[c] = d
        offset[c] = z


# --------------------------------------------------------------------------- element-wise
@cuda.jit
def map_values(x3, out3, divisor, offset, lowest, highest, what):
    """``out3[o, c, i] = ref.map_value(x3[o, c, i], ...)`` over ``(outer, channels, inner)``.

    A grid-stride loop over the elements in memory order (coalesced), 4-way unrolled;
    each thread keeps its ``(o, c, i)`` up to date with additions only.  ``out3`` may be
    ``x3`` itself, have other strides, or an integer type (codes).
    """
    n_outer, n_channels, n_inner = x3.shape
    n = n_outer * n_channels * n_inner
    k = cuda.grid(1)
    step = cuda.gridsize(1)
    if k >= n:
        return
    o, c, i = _split3(k, n_channels, n_inner)
    do, dc, di = _split3(step, n_channels, n_inner)
    while k + 3 * step < n:
        o1, c1, i1 = _advance(o, c, i, do, dc, di, n_channels, n_inner)
        o2, c2, i2 = _advance(o1, c1, i1, do, dc, di, n_channels, n_inner)
        o3, c3, i3 = _advance(o2, c2, i2, do, dc, di, n_channels, n_inner)
        v0 = x3[o, c, i]
        v1 = x3[o1, c1, i1]
        v2 = x3[o2, c2, i2]
        v3 = x3[o3, c3, i3]
        out3[o, c, i] = ref.map_value(v0, divisor[c], offset[c], lowest, highest, what)
        out3[o1, c1, i1] = ref.map_value(v1, divisor[c1], offset[c1], lowest, highest, what)
        out3[o2, c2, i2] = ref.map_value(v2, divisor[c2], offset[c2], lowest, highest, what)
        out3[o3, c3, i3] = ref.map_value(v3, divisor[c3], offset[c3], lowest, highest, what)
        o, c, i = _advance(o3, c3, i3, do, dc, di, n_channels, n_inner)
        k += 4 * step
    while k < n:
        out3[o, c, i] = ref.map_value(x3[o, c, i], divisor[c], offset[c], lowest, highest,
                                      what)
        o, c, i = _advance(o, c, i, do, dc, di, n_channels, n_inner)
        k += step


@cuda.jit
def copy_strided(src, src_offset, src_strides, dst, dst_offset, dst_strides, shape):
    """``dst[...] = src[...]`` (with a cast) between two N-D strided layouts.

    ``src`` and ``dst`` are 1-D arrays over the memory of the N-D arrays; offsets and
    strides are in elements and every position is non-negative.  Used for float16 and
    integer conversions and for layouts that no 3-D view describes.
    """
    n = 1
    for d in range(len(shape)):
        n *= shape[d]
    for k in range(cuda.grid(1), n, cuda.gridsize(1)):
        rest = k
        s = src_offset
        t = dst_offset
        for d in range(len(shape) - 1, -1, -1):
            q = rest // shape[d]
            r = rest - q * shape[d]
            s += r * src_strides[d]
            t += r * dst_strides[d]
            rest = q
        dst[t] = src[s]
