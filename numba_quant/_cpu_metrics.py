"""CPU kernels of the quantization-error report: sums over a chunk in one pass.

For a chunk ``x`` of rows and its fake-quantized values ``xq`` they accumulate, in
float64, the signal energy, the error energy, the largest absolute error, the number of
clipped values and the number of finite values, skipping non-finite ``x`` (present only
when the report omits them).  Rows run in parallel; the caller sums the rows' results.
"""
import numpy as np
from numba import njit, prange

# Columns of the per-row result.
SIGNAL, NOISE, MAX_ERROR, CLIPPED, COUNT = range(5)


@njit(parallel=True, cache=True)
def error_sums(x, xq, steps, group, factor, out):
    """Per row ``r``: ``out[r] = (sum x^2, sum (xq - x)^2, max |xq - x|, clipped, n)``.

    ``steps`` holds the quantization step of each group of ``group`` values (shape
    ``(rows or 1, groups)``); a value is clipped when its error exceeds
    ``factor * step`` (``factor`` < 0: no clipping count).
    """
    rows, columns = x.shape
    step_rows = np.int64(steps.shape[0])
    for r in prange(rows):
        srow = np.int64(r) % step_rows
        signal = 0.0
        noise = 0.0
        largest = 0.0
        clipped = 0
        count = 0
        for c in range(columns):
            v = np.float64(x[r, c])
            if not np.isfinite(v):
                continue
            e = np.float64(xq[r, c]) - v
            signal += v * v
            noise += e * e
            a = abs(e)
            if a > largest or a != a:
                largest = a
            if factor >= 0.0 and a > factor * steps[srow, np.int64(c) // group]:
                clipped += 1
            count += 1
        out[r, SIGNAL] = signal
        out[r, NOISE] = noise
        out[r, MAX_ERROR] = largest
        out[r, CLIPPED] = clipped
        out[r, COUNT] = count
