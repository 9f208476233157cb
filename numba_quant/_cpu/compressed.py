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
        if bits == 8:
            for c in range(cols):
                g = c // group
                code = ref.int_code(x[r, c], scale[r, g], zero_point[r, g], qmin, qmax,
                                    bf16)
                out[r, c] = np.uint8(np.int64(code) + offset)
        else:
            for c in range(0, cols, 2):
                g = c // group
                lo = ref.int_code(x[r, c], scale[r, g], zero_point[r, g], qmin, qmax, bf16)
                g = (c + 1) // group
                hi = ref.int_code(x[r, c + 1], scale[r, g], zero_point[r, g], qmin, qmax,
                                  bf16)
                out[r, c // 2] = np.uint8((np.int64(lo) + offset)
                                          | ((np.int64(hi) + offset) << 4))
    return out
