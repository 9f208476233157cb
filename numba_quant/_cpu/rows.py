"""CPU element-wise maps over contiguous rows that hold every channel (channels last).

With short inner runs (shape ``(outer, channels, inner)``, ``inner`` small) the general
map walks channel by channel and element by element, too short to vectorise.  Here each
outer row of ``channels * inner`` contiguous elements is mapped in one loop, with the
per-channel constants spread over the row's lanes beforehand, so the loop vectorises.
Each element goes through the same ``ref.map_value`` with the same arguments as in the
general map, so the bits are the same.
"""
from numba import prange

from numba_quant._host import codes
from numba_quant._reference import integer as ref
from numba_quant._cpu.kernels import _index
from numba_quant._cpu.layer import _variant
from numba_quant._reference.primitives import stored

WHAT = codes.FAKE  # what to write; replaced in the compiled variants (see _variant)


def _map_rows_impl(rows, out, divisors, offsets, lowest, highest, pieces):
    """``out[o, j] = ref.map_value(rows[o, j], divisors[j], offsets[j], ...)`` for 2-D
    contiguous ``rows`` and ``out``; tasks are ``pieces`` blocks of rows."""
    n_rows, width = rows.shape
    step = (n_rows + pieces - 1) // pieces
    for k in prange(pieces):
        for o in range(_index(k * step), _index(min(k * step + step, n_rows))):
            source = rows[o]
            target = out[o]
            for j in range(width):
                v = ref.map_value(source[j], divisors[j], offsets[j], lowest, highest, WHAT)
                target[j] = stored(v, target)


# map_rows[what][parallel], each compiled on first use.
map_rows = {what: {parallel: _variant(_map_rows_impl, parallel, WHAT=what)
                   for parallel in (True, False)}
            for what in (codes.FAKE, codes.CODE, codes.DECODE)}
