"""CPU kernel of compressed-tensors' integer weight codes (see
:mod:`numba_quant._reference.compressed`): one pass over a run of rows, one scale and zero
point per group of ``group`` columns."""
import numpy as np
from numba import njit, prange

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._reference import compressed as ref


@njit(parallel=True, cache=True)
def int_group_codes(x, scale, zero_point, group, qmin, qmax, bf16, out):
    """``out[r, c]`` (int8) = the code of ``x[r, c]`` with ``scale[r, c // group]`` and
    ``zero_point[r, c // group]`` (float32)."""
    rows, cols = x.shape
    for r in prange(rows):
        for c in range(cols):
            g = c // group
            out[r, c] = np.int8(ref.int_code(x[r, c], scale[r, g], zero_point[r, g],
                                             qmin, qmax, bf16))
    return out
