"""CPU kernels of the quantization-error report: sums over a chunk in one pass.

For a chunk ``x`` of rows and its fake-quantized values ``xq`` they accumulate, in
float64, the signal energy, the error energy, the largest absolute error, the number of
clipped values and the number of finite values, skipping non-finite ``x`` (present only
when the report omits them).  Rows run in parallel; the caller sums the rows' results.
"""
import numpy as np
from numba import njit, prange

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)

# Columns of the per-row result.
SIGNAL, NOISE, MAX_ERROR, CLIPPED, COUNT = range(5)


@njit(parallel=True, cache=True, fastmath={"reassoc", "nsz"})
def error_sums(x, xq, steps, group, factor, skip_nonfinite, out):
    """Per row ``r``: ``out[r] = (sum x^2, sum (xq - x)^2, max |xq - x|, clipped, n)``.

    ``steps`` holds the quantization step of each group of ``group`` values (shape
    ``(rows or 1, groups)``); a value is clipped when its error exceeds
    ``factor * step`` (``factor`` < 0: no clipping count).  ``skip_nonfinite``: leave out
    non-finite ``x`` (otherwise there are none, and the loop has no branch).  The sums
    may be reassociated (vectorised): these are measurements, not quantized values.
    """
    rows, columns = x.shape
    step_rows = np.int64(steps.shape[0])
    n_groups = (columns + group - 1) // group
    for r in prange(rows):
        srow = np.int64(r) % step_rows
        xr = x[r]
        xqr = xq[r]
        signal = 0.0
        noise = 0.0
        largest = 0.0
        clipped = 0
        count = 0
        for g in range(n_groups):
            first = g * group
            last = min(columns, first + group)
            limit = factor * steps[srow, g] if factor >= 0.0 else np.inf
            # Unsigned indices: no negative-index wraparound, so the loops vectorise.
            if skip_nonfinite:
                for c in range(np.uint64(first), np.uint64(last)):
                    v = np.float64(xr[c])
                    if not np.isfinite(v):
                        continue
                    e = np.float64(xqr[c]) - v
                    signal += v * v
                    noise += e * e
                    a = abs(e)
                    largest = max(largest, a)
                    clipped += a > limit
                    count += 1
            else:
                for c in range(np.uint64(first), np.uint64(last)):
                    v = np.float64(xr[c])
                    e = np.float64(xqr[c]) - v
                    signal += v * v
                    noise += e * e
                    a = abs(e)
                    largest = max(largest, a)
                    clipped += a > limit
                count += last - first
        out[r, SIGNAL] = signal
        out[r, NOISE] = noise
        out[r, MAX_ERROR] = largest
        out[r, CLIPPED] = clipped
        out[r, COUNT] = count
