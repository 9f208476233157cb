"""CPU kernel of compressed-tensors' integer weight codes (see
:mod:`numba_quant._reference.compressed`): one pass over a run of rows, one scale and zero
point per group of ``group`` columns, the codes packed as ``pack-quantized`` stores them."""
import numpy as np
from numba import prange

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._cpu.threads import parallel_njit
from numba_quant._reference import compressed as ref


@parallel_njit(cache=True)
def int_group_packed(x, scale, zero_point, group, qmin, qmax, bf16, bits, out):
    """The codes of ``x[r, c]`` with ``scale[r, c // group]`` and ``zero_point[r, c //
    group]`` (float32), offset by ``2**(bits-1)`` and packed into the bytes of ``out``:
    8 bits one code per byte, 4 bits two per byte (the even column in the low nibble),
    which is compressed-tensors' little-endian int32 packing when a row's codes fill
    whole words (the columns are a multiple of the group of 128)."""
    rows, cols = x.shape
    offset = 1 << (bits - 1)
    for r in prange(rows):
        # A row's codes group by group (one scale per loop, no division of the column
        # index per value: the loops vectorise), then packed.
        codes = np.empty(cols, np.uint8)
        xr = x[r]
        for g in range((cols + group - 1) // group):
            s = scale[r, g]
            z = zero_point[r, g]
            for c in range(g * group, min(cols, (g + 1) * group)):
                codes[c] = np.uint8(np.int64(ref.int_code(xr[c], s, z, qmin, qmax, bf16))
                                    + offset)
        o = out[r]
        if bits == 8:
            for c in range(cols):
                o[c] = codes[c]
        else:
            for c in range(cols // 2):
                o[c] = codes[2 * c] | (codes[2 * c + 1] << np.uint8(4))
    return out


# nnan, nsz: x is finite (checked first), and a zero bound's sign does not matter: the
# min and max reductions then vectorise.
@parallel_njit(cache=True, fastmath={"nnan", "nsz"})
def group_bounds(x, group, lo, hi):
    """``lo[r, g] = min(0, smallest of x[r, g*group:(g+1)*group])`` and ``hi[r, g] =
    max(0, largest)``: the range each group's scale covers (finite ``x``; the columns
    a multiple of ``group``).  Exact; a zero bound is +0 (its sign reaches no code or
    scale: it is only negated, subtracted from, or divided into a zero)."""
    rows, cols = x.shape
    for r in prange(rows):
        xr = x[r]
        for g in range(cols // group):
            low = np.float32(0)
            high = np.float32(0)
            for c in range(g * group, (g + 1) * group):
                low = min(low, xr[c])
                high = max(high, xr[c])
            lo[r, g] = low
            hi[r, g] = high
    return lo, hi
