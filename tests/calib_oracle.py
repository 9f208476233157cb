"""Plain numpy models of the calibration methods (never imports numba_quant).

Written from the published behaviour of modelopt 0.47's HistogramCalibrator, PyTorch's
HistogramObserver qparams and the power-of-two histogram contract of docs/semantics.md,
vectorised where the originals loop.
"""
import math

import numpy as np


def percentile_amax(hist, edges, p):
    counts = np.asarray(hist).astype(np.int32)
    cdf = np.cumsum(counts / counts.sum())
    return edges[np.searchsorted(cdf, p / 100)]


def entropy_amax(hist, edges, num_bits=8, unsigned=False, stride=1, start_bin=128):
    """modelopt's KL search with numpy/scipy doing the sums (scipy's rel_entr)."""
    from scipy.special import rel_entr
    bins = np.asarray(hist).astype(np.int32).copy()
    bins[0] = bins[1]
    levels = 1 << (num_bits - 1 + int(unsigned))
    scores = []
    for i in range(start_bin, len(bins) + 1, stride):
        group = (np.arange(i) * levels) // i
        used = bins[:i] != 0
        sums = np.bincount(group[used], weights=bins[:i][used].astype(np.float64),
                           minlength=levels)
        numbers = np.bincount(group[used], minlength=levels)
        q = np.zeros(i)
        q[used] = sums[group[used]] / numbers[group[used]]
        p = bins[:i].astype(np.float64)
        p[-1] += bins[i:].sum()
        p = p / np.sum(p)
        q = q / np.sum(q)
        scores.append(np.sum(rel_entr(p, q)))
    scores = np.array(scores)
    last = len(scores) - 1 - np.argmin(scores[::-1])
    return edges[last * stride + start_bin]


def mse_amax(hist, edges, num_bits=8, unsigned=False, stride=1, start_bin=128):
    """The fixed mse procedure, float32 element-wise, float64 sums rounded to float32."""
    counts = np.asarray(hist).astype(np.int32).astype(np.float32)
    e = np.asarray(edges, np.float32)
    centers = (e[1:] + e[:-1]) / np.float32(2)
    bound = np.float32(2.0 ** (num_bits - 1 + int(unsigned)) - 1)
    low = np.float32(0) if unsigned else -bound
    scores = []
    for i in range(start_bin, len(centers), stride):
        amax = centers[i]
        if amax <= np.float32(2.0 ** -24):
            q = np.zeros_like(centers)
        else:
            scale = bound / amax
            q = np.clip(np.rint(centers * scale), low, bound) / scale
        err = ((q - centers) ** 2) * counts
        scores.append(np.float32(np.float32(err.astype(np.float64).sum()) / np.float32(len(centers))))
    return centers[start_bin + stride * int(np.argmin(scores))]


def pow2_histogram(rows, bins):
    """Counts of each row on [-2**e, 2**e) with e the smallest exponent above max|x|."""
    half = bins // 2
    out = np.zeros((len(rows), bins), np.int64)
    exps = []
    for r, x in enumerate(rows):
        x = np.asarray(x, np.float64)
        x = x[np.isfinite(x)]
        amax = np.max(np.abs(x)) if x.size else 0.0
        if amax == 0:
            out[r, half] = x.size
            exps.append(None)
            continue
        e = math.frexp(amax)[1]
        k = np.floor(np.ldexp(x, -e) * half).astype(np.int64) + half
        out[r] = np.bincount(k, minlength=bins)
        exps.append(e)
    return out, exps


def histc(x, bins, lo, hi):
    """torch.histc's CPU bins in x's float type."""
    x = np.asarray(x)
    T = x.dtype.type
    lo, hi = T(lo), T(hi)
    if lo == hi:
        lo, hi = lo - T(1), hi + T(1)
    inside = (x >= lo) & (x <= hi)
    k = np.trunc(((x[inside] - lo) * T(bins)) / (hi - lo)).astype(np.int64)
    k[x[inside] == hi] = bins - 1
    return np.bincount(np.minimum(k, bins - 1), minlength=bins)


def torch_qparams(lo, hi, affine, eps=np.float32(1.1920928955078125e-07)):
    """MinMaxObserver's quint8-affine / qint8-symmetric formulas on a float32 range."""
    zero = np.float32(0)
    lo, hi = min(np.float32(lo), zero), max(np.float32(hi), zero)
    if affine:
        scale = np.float32(max(np.float32(hi - lo) / np.float32(255), eps))
        return scale, int(np.clip(-np.round(lo / scale), 0, 255))
    return np.float32(max(max(-lo, hi) / np.float32(127.5), eps)), 0


def block_rows(x, block_size):
    """The blocks of ``x`` (shorter last blocks included), raveled, in C order over the
    grid ``ceil(x.shape / block_size)``; and that grid."""
    import itertools
    grid = tuple(-(-d // b) for d, b in zip(x.shape, block_size))
    rows = [x[tuple(slice(j * b, (j + 1) * b) for j, b in zip(index, block_size))].ravel()
            for index in itertools.product(*(range(g) for g in grid))]
    return rows, grid


def folded(counts, exponent, bins):
    """The |x| histogram of a power-of-two row and its float32 edges."""
    half = bins // 2
    fold = counts[half:] + counts[half - 1::-1]
    return fold, (np.arange(half + 1) * (2.0 ** exponent / half)).astype(np.float32)
