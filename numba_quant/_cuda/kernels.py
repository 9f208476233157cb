"""CUDA kernels of the GPU backend (:mod:`numba_quant._cuda.channels`).

Every kernel is a lazily compiled ``numba.cuda.jit`` function (no signature), so this
module imports without a driver and under the CUDA simulator.  The arithmetic per
channel and per element comes from :mod:`numba_quant._reference.integer`, called directly.

Min/max reductions work on the float bits read as integers (an int32 or int64 view of
the same memory) and compare order-preserving integer keys::

    key = bits ^ 0x7FF...F  if bits < 0  else  bits

so that ``-inf < finite < +inf``, ``-0.0 < +0.0`` (as LLVM's ``minimum``/``maximum`` on
the CPU), NaN with a clear sign bit sorts above ``+inf`` and NaN with a set sign bit
below ``-inf``.  Under ``nonfinite="raise"`` any NaN or infinity therefore ends up as the
minimum or the maximum of its channel, where the final pass finds it; under ``"omit"``
non-finite elements are skipped.  Integer atomics (unlike float ones) behave the same
on every GPU and in the simulator, so blocks combine their results with one atomic
min/max per channel into a key array; a settling kernel turns the keys into the results
and puts them back to their start values, so that a kept key array needs no filling
before the next reduction.  Many channels with short runs skip the keys: one thread
reduces and settles each channel.
"""
import numpy as np
from numba import cuda, int64

from numba_quant._host import codes
from numba_quant._cuda import primitives as _cuda_primitives  # noqa: F401  (CUDA primitives before any kernel)
from numba_quant._reference import integer as ref
from numba_quant._reference.primitives import float_from_bits, narrow

# Size of the shared-memory buffers of the block reductions: the most threads per block.
SHARED = 1024


# --------------------------------------------------------------------------- helpers
@cuda.jit(device=True)
def _fold(lo, hi, bits, omit, mask, inf_bits):
    """Fold the float whose bits are ``bits`` into running (min, max) keys.

    Everything is in the integer type of the bits (32-bit for float32: one instruction
    per min or max); ``narrow`` undoes numba's widening of integer arithmetic.
    """
    if omit and narrow(bits & mask, bits) >= inf_bits:
        return lo, hi
    k = narrow(bits ^ mask, bits) if bits < 0 else bits
    return min(lo, k), max(hi, k)


@cuda.jit(device=True)
def _fold_run(lo, hi, x3, o, c, i, step, end, omit, mask, inf_bits):
    """Fold ``x3[o, c, i::step]`` up to ``end`` into running keys, 4 loads in flight.

    All indices are unsigned, which spares every load a negative-index fix-up.
    """
    while i + np.uint64(3) * step < end:
        b0 = x3[o, c, i]
        b1 = x3[o, c, i + step]
        b2 = x3[o, c, i + np.uint64(2) * step]
        b3 = x3[o, c, i + np.uint64(3) * step]
        lo, hi = _fold(lo, hi, b0, omit, mask, inf_bits)
        lo, hi = _fold(lo, hi, b1, omit, mask, inf_bits)
        lo, hi = _fold(lo, hi, b2, omit, mask, inf_bits)
        lo, hi = _fold(lo, hi, b3, omit, mask, inf_bits)
        i += np.uint64(4) * step
    while i < end:
        lo, hi = _fold(lo, hi, x3[o, c, i], omit, mask, inf_bits)
        i += step
    return lo, hi


@cuda.jit(device=True)
def _start_keys(mask):
    """Running (min, max) keys before any element: the largest and the smallest key of
    the type (a channel nothing was folded into ends with min > max)."""
    return mask, narrow(~mask, mask)


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
# Keys a channel starts from: above and below every key, so that a channel nothing was
# folded into (nonfinite="omit" skipped all of it) is the one with lo > hi.
START_LO = np.int64(np.iinfo(np.int64).max)
START_HI = np.int64(np.iinfo(np.int64).min)

# What the last step of a reduction writes per channel (``out[0, c], out[1, c]``).
MINMAX = 0  # the minimum and the maximum
QPARAMS = 1  # min_max_observer's scale and zero point


@cuda.jit(device=True)
def _settle(lo, hi, omit, mask, inf_bits, zero, what, scheme, n_bits, status):
    """A channel's final keys as ``what`` asks, in ``zero``'s float type; problems go to
    ``status[0]`` (see ``codes.OK`` and the others)."""
    if lo > hi:  # no element was folded in: "omit" skipped them all
        status[0] = codes.EMPTY_CHANNEL
        lo = inf_bits  # +inf and -inf, which the error message reports
        hi = ~inf_bits
    if lo < 0:
        lo = lo ^ mask
    if hi < 0:
        hi = hi ^ mask
    if not omit and ((lo & mask) >= inf_bits or (hi & mask) >= inf_bits):
        status[0] = codes.HAS_NONFINITE
    lo_value = float_from_bits(lo, zero)
    hi_value = float_from_bits(hi, zero)
    if what == QPARAMS:
        return ref.qparams(lo_value, hi_value, scheme, n_bits)
    return lo_value, hi_value


@cuda.jit
def fill_keys(keys):
    """Start every channel of ``keys`` (``(2, channels)``) at (START_LO, START_HI)."""
    for c in range(cuda.grid(1), keys.shape[1], cuda.gridsize(1)):
        keys[0, c] = START_LO
        keys[1, c] = START_HI


@cuda.jit
def settle_keys(keys, omit, mask, inf_bits, zero, what, scheme, n_bits, out, status):
    """``out[:, c]`` from the keys of channel ``c`` (see ``_settle``), one thread per
    channel; the keys go back to their start values for the next reduction."""
    for c in range(cuda.grid(1), out.shape[1], cuda.gridsize(1)):
        lo = keys[0, c]
        hi = keys[1, c]
        keys[0, c] = START_LO
        keys[1, c] = START_HI
        a, b = _settle(lo, hi, omit, mask, inf_bits, zero, what, scheme, n_bits, status)
        out[0, c] = a
        out[1, c] = b


@cuda.jit
def minmax_each(x3, omit, mask, inf_bits, zero, what, scheme, n_bits, out, status):
    """Min/max of every channel by one thread, settled at once into ``out[:, c]``.

    For many channels with short inner runs (rows of a few elements, channels last with
    few rows): neighbouring threads read neighbouring channels, and no channel needs
    shared memory, atomics or a second kernel.
    """
    n_outer, n_channels, n_inner = x3.shape
    for c in range(cuda.grid(1), n_channels, cuda.gridsize(1)):
        lo, hi = _start_keys(mask)
        for o in range(n_outer):
            for i in range(n_inner):
                lo, hi = _fold(lo, hi, x3[o, c, i], omit, mask, inf_bits)
        a, b = _settle(lo, hi, omit, mask, inf_bits, zero, what, scheme, n_bits, status)
        out[0, c] = a
        out[1, c] = b


@cuda.jit
def minmax_flat(x3, omit, mask, inf_bits, keys):
    """Min/max keys of a whole ``(1, 1, n)`` array (one channel, unit inner stride).

    The common per-layer case, kept lean: a grid-stride loop with 4 loads in flight,
    unsigned indices (no negative-index fix-ups) and 32-bit keys for float32, then a
    block reduction and one atomic min and max per block into ``keys[:, 0]``.
    """
    sh_lo = cuda.shared.array(SHARED, int64)
    sh_hi = cuda.shared.array(SHARED, int64)
    zero = np.uint64(0)
    n = np.uint64(x3.shape[2])
    step = np.uint64(cuda.gridsize(1))
    i = np.uint64(cuda.grid(1))
    lo, hi = _start_keys(mask)
    lo, hi = _fold_run(lo, hi, x3, zero, zero, i, step, n, omit, mask, inf_bits)
    t = cuda.threadIdx.x
    block_lo, block_hi = _group_minmax(sh_lo, sh_hi, lo, hi, t, cuda.blockDim.x)
    if t == 0:
        cuda.atomic.min(keys, (0, 0), block_lo)
        cuda.atomic.max(keys, (1, 0), block_hi)


@cuda.jit
def minmax_rows(x3, omit, mask, inf_bits, keys, group, pieces, split_outer):
    """Per-channel min/max keys of ``x3`` (integer bits, ``(outer, channels, inner)``).

    For long inner runs.  A block is split into groups of ``group`` threads, one channel
    per group; a task is (a block's worth of channels, one of ``pieces`` pieces of each
    channel's elements, cut along the outer axis when ``split_outer`` else along the
    inner one).  Each group reads its piece with coalesced, 4-way unrolled strided loops,
    reduces in shared memory and makes one atomic min and max per channel into ``keys``.
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
        lo, hi = _start_keys(mask)
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
            uc = np.uint64(c)
            step = np.uint64(group)
            end = np.uint64(i1)
            for o in range(o0, o1):
                lo, hi = _fold_run(lo, hi, x3, np.uint64(o), uc, np.uint64(i0 + lane), step,
                                   end, omit, mask, inf_bits)
        group_lo, group_hi = _group_minmax(sh_lo, sh_hi, lo, hi, t, group)
        if lane == 0 and c < n_channels:
            cuda.atomic.min(keys, (0, c), group_lo)
            cuda.atomic.max(keys, (1, c), group_hi)


@cuda.jit
def minmax_cols(x3, omit, mask, inf_bits, keys, rows_per, chunks, pieces):
    """Per-channel min/max keys of ``x3`` for short inner runs (channels last, ...).

    A row is the ``channels * inner`` elements of one outer index.  Each thread owns one
    column of a row (``rows_per`` rows side by side when a row is narrower than the
    block; else one of ``chunks`` chunks of a row, one column per thread) and walks down
    the outer axis through one of ``pieces`` pieces: loads are coalesced along the row.
    The columns of a channel are then combined in shared memory, with one atomic min and
    max per channel and task into ``keys``.
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
        lo, hi = _start_keys(mask)
        if active:
            # unsigned indices: no negative-index fix-ups in the loads
            c = np.uint64(j // n_inner)
            i = np.uint64(j % n_inner)
            o = np.uint64(o0 + sub)
            step = np.uint64(rows_per)
            end = np.uint64(o1)
            while o + np.uint64(3) * step < end:
                b0 = x3[o, c, i]
                b1 = x3[o + step, c, i]
                b2 = x3[o + np.uint64(2) * step, c, i]
                b3 = x3[o + np.uint64(3) * step, c, i]
                lo, hi = _fold(lo, hi, b0, omit, mask, inf_bits)
                lo, hi = _fold(lo, hi, b1, omit, mask, inf_bits)
                lo, hi = _fold(lo, hi, b2, omit, mask, inf_bits)
                lo, hi = _fold(lo, hi, b3, omit, mask, inf_bits)
                o += np.uint64(4) * step
            while o < end:
                lo, hi = _fold(lo, hi, x3[o, c, i], omit, mask, inf_bits)
                o += step
        sh_lo[t] = lo
        sh_hi[t] = hi
        cuda.syncthreads()
        cc = j0 // n_inner + t
        if cc <= (j1 - 1) // n_inner:
            a = START_LO
            b = START_HI
            jb = max(cc * n_inner, j0)
            je = min(cc * n_inner + n_inner, j1)
            for r in range(rows_per):
                for jj in range(jb, je):
                    tt = r * width + jj - j0
                    a = min(a, sh_lo[tt])
                    b = max(b, sh_hi[tt])
            cuda.atomic.min(keys, (0, cc), a)
            cuda.atomic.max(keys, (1, cc), b)
        cuda.syncthreads()


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
def code_params(scale, zero_point, scheme, bits, check, params, status):
    """Each channel's ``(divisor, offset)`` into ``params[:, c]`` (``ref.code_params``).

    With ``check`` (values that were never on the host) each channel's scale and zero
    point are checked first (``ref.valid_code_params``); a bad pair sets ``status[0]`` to
    ``BAD_PARAMETERS`` and gets divisor and offset 0.
    """
    for c in range(cuda.grid(1), scale.size, cuda.gridsize(1)):
        s = scale[c]
        z = zero_point[c]
        if check and not ref.valid_code_params(s, z, scheme):
            status[0] = codes.BAD_PARAMETERS
            params[0, c] = 0
            params[1, c] = 0
        else:
            d, o, _, _ = ref.code_params(s, z, scheme, bits)
            params[0, c] = d
            params[1, c] = o


# --------------------------------------------------------------------------- element-wise
@cuda.jit
def map_values(x3, out3, params, scheme, bits, what):
    """``out3[o, c, i] = ref.map_value(x3[o, c, i], ...)`` over ``(outer, channels, inner)``
    with channel ``c``'s divisor and offset in ``params[0, c]`` and ``params[1, c]`` (see
    ``code_params``) and the code range of ``scheme`` and ``bits``.

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
    lowest, highest = ref.code_range(params[0, 0], scheme, bits)
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
        out3[o, c, i] = ref.map_value(v0, params[0, c], params[1, c], lowest, highest, what)
        out3[o1, c1, i1] = ref.map_value(v1, params[0, c1], params[1, c1], lowest, highest, what)
        out3[o2, c2, i2] = ref.map_value(v2, params[0, c2], params[1, c2], lowest, highest, what)
        out3[o3, c3, i3] = ref.map_value(v3, params[0, c3], params[1, c3], lowest, highest, what)
        o, c, i = _advance(o3, c3, i3, do, dc, di, n_channels, n_inner)
        k += 4 * step
    while k < n:
        out3[o, c, i] = ref.map_value(x3[o, c, i], params[0, c], params[1, c], lowest,
                                      highest, what)
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
