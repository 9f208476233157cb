"""Range selection from one histogram row: percentile, entropy (KL), MSE and L2 search.

Each function here is a serial ``numba.njit`` function over one row of counts; the
parallel kernels of :mod:`numba_quant._cpu.hist` run them row by row.  The histograms
are small (channels x bins) and live on the host, so the GPU path copies them there
and uses the same functions.

The arithmetic follows the calibrators it reproduces operation by operation, because
their choices are arg-min searches in which one rounding can move the result:

* percentile and entropy: NVIDIA modelopt 0.47 (``HistogramCalibrator.compute_amax``),
  which runs in float64 numpy and scipy;  numpy's ``sum`` adds pairwise
  (:func:`pairwise_sum`), ``cumsum`` left to right;
* mse: modelopt's procedure with the quantizer called as intended (float32 torch);
* l2: PyTorch's ``HistogramObserver._non_linear_param_search`` (float32 tensors mixed
  with Python floats).
"""
import math

import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)

# The entropy search keeps the logarithms of group counts below this.
_LOG_CACHE = 1 << 15

# The entropy search keeps the table offsets of at most this many groups at once.
_OFFSET_ENTRIES = 1 << 14

# numpy adds blocks of up to this many elements with eight accumulators.
_PAIRWISE_BLOCK = 128


@njit(cache=True)
def pairwise_sum(a, start, n):
    """numpy's ``np.sum`` of the float64 ``a[start:start+n]``, in numpy's order.

    numpy adds fewer than 8 values left to right, up to 128 with eight interleaved
    accumulators combined as a tree, and splits longer runs in two halves (the first a
    multiple of 8 long).  ``np.sum`` starts from 0.0, so the result is ``0.0 + that``.
    """
    total = 0.0
    # An explicit stack of (start, length) runs replaces numpy's recursion; runs are
    # added in the order numpy's recursion returns them, combining as it does.
    stack_start = np.empty(64, np.int64)
    stack_len = np.empty(64, np.int64)
    partial = np.empty(64, np.float64)
    state = np.zeros(64, np.int64)  # 0: not split yet, 1: first half done
    top = 0
    stack_start[0] = start
    stack_len[0] = n
    state[0] = 0
    result = 0.0
    while top >= 0:
        s = stack_start[top]
        m = stack_len[top]
        if m <= _PAIRWISE_BLOCK and state[top] == 0:
            value = _block_sum(a, s, m)
            top -= 1
            result = value
            # hand the value to the parent
            while top >= 0:
                if state[top] == 1:
                    partial[top] = result
                    state[top] = 2
                    # descend into the second half
                    half = stack_len[top] // 2
                    half -= half % 8
                    top += 1
                    stack_start[top] = stack_start[top - 1] + half
                    stack_len[top] = stack_len[top - 1] - half
                    state[top] = 0
                    break
                # state 2: both halves done
                result = partial[top] + result
                top -= 1
            continue
        # split: first half
        half = m // 2
        half -= half % 8
        state[top] = 1
        top += 1
        stack_start[top] = s
        stack_len[top] = half
        state[top] = 0
    total = 0.0 + result
    return total


@njit(cache=True)
def _block_sum(a, s, n):
    if n < 8:
        r = 0.0
        for i in range(n):
            r += a[s + i]
        return r
    r0 = a[s]
    r1 = a[s + 1]
    r2 = a[s + 2]
    r3 = a[s + 3]
    r4 = a[s + 4]
    r5 = a[s + 5]
    r6 = a[s + 6]
    r7 = a[s + 7]
    i = 8
    last = n - n % 8
    while i < last:
        r0 += a[s + i]
        r1 += a[s + i + 1]
        r2 += a[s + i + 2]
        r3 += a[s + i + 3]
        r4 += a[s + i + 4]
        r5 += a[s + i + 5]
        r6 += a[s + i + 6]
        r7 += a[s + i + 7]
        i += 8
    r = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        r += a[s + i]
        i += 1
    return r


# --------------------------------------------------------------------------- percentile
@njit(cache=True)
def percentile_index(counts, fraction):
    """Index of the first bin where the cumulative share reaches ``fraction``.

    The cumulative share is ``cumsum(counts / total)`` in float64, added left to right;
    when rounding keeps it below ``fraction`` everywhere the result is ``len(counts)``
    (the right edge of the last bin).  Requires a positive total.
    """
    total = np.int64(0)
    for k in range(counts.size):
        total += counts[k]
    denominator = np.float64(total)
    cdf = 0.0
    for k in range(counts.size):
        cdf += np.float64(counts[k]) / denominator
        if cdf >= fraction:
            return k
    return counts.size


# --------------------------------------------------------------------------- entropy
@njit(cache=True)
def _group_terms(prefix, nonzero, quantized, smallest, largest, n):
    """``G * log(G / m)`` of every run of bins that can be a group, as a table.

    A group of candidate ``i`` starts at bin ``ceil(g * i / quantized)`` and is
    ``floor(i / quantized)`` or one more bins wide; row ``w - smallest`` of the table
    holds, for each start ``lo``, the term of the run ``[lo, lo + w)`` (``G`` its count,
    ``m`` its non-empty bins; 0 when empty), for the widths ``smallest..largest``.  The
    candidates then add table entries (no logarithm, no division) and the logarithms
    are taken once per run, not once per candidate and group.
    """
    table = np.zeros((largest - smallest + 1, n + 1), np.float64)
    log_count = np.zeros(largest + 2, np.float64)  # log m for m non-empty bins
    for m in range(1, largest + 2):
        log_count[m] = math.log(m)
    # Groups repeat the same few counts: their logarithms are kept (NaN: not yet).
    log_group = np.full(min(prefix[n], _LOG_CACHE) + 1, np.nan)
    cached = log_group.size
    flat = table.reshape(-1)
    one = np.uint64(1)
    for w in range(max(smallest, 1), largest + 1):
        # (unsigned indices: no wrap-around test for negative ones)
        row = np.uint64((w - smallest) * (n + 1))
        width = np.uint64(w)
        # width w serves the candidates i < (w + 1) * quantized only
        stop = np.uint64(min(n - w, (w + 1) * quantized) + 1)
        lo = np.uint64(0)
        while lo < stop:
            group = prefix[lo + width] - prefix[lo]
            if group != 0:
                if group < cached:
                    log = log_group[np.uint64(group)]
                    if log != log:
                        log = math.log(group)
                        log_group[np.uint64(group)] = log
                else:
                    log = math.log(group)
                used = np.uint64(nonzero[lo + width] - nonzero[lo])
                flat[row + lo] = group * (log - log_count[used])
            lo += one
    return table


@njit(cache=True)
def _group_offsets(r, quantized, shift, stride, offsets):
    """Where the groups of a candidate ``i = width * quantized + r`` read the table.

    Group ``g`` is ``[b_g, b_{g+1})`` with ``b_g = g * width + ceil(g r / quantized)``,
    so its width is ``width`` or one more (table row ``base`` or ``base + 1``) and its
    entry is ``base * stride + g * width + offsets[g]`` with
    ``offsets[g] = (b_{g+1} - b_g - width) * stride + ceil(g r / quantized)``: the part
    that depends on ``r`` alone, computed once for every candidate sharing ``r``.
    ``quantized`` is ``1 << shift`` (a power of two: no division).
    """
    up = quantized - 1
    ceil_lo = 0
    for g in range(quantized):
        ceil_hi = ((g + 1) * r + up) >> shift
        offsets[g] = np.uint32((ceil_hi - ceil_lo) * stride + ceil_lo)
        ceil_lo = ceil_hi


@njit(cache=True)
def _kl_fast(c, i, quantized, shift, prefix, nonzero, clogc, total, log_total, flat, stride,
             smallest, offsets, row):
    """KL divergence of candidate ``i`` rearranged to O(quantized) work (rounding differs).

    With p the reference distribution (the first ``i`` bins, the tail added to the last)
    and q the quantized one (each group of source bins replaced by the mean of its
    non-empty bins): KL = (sum c' log c' - sum_g G'_g log(G_g / n_g)) / T - log T + log P,
    the group terms ``G_g log(G_g / n_g)`` read from :func:`_group_terms`'s table
    (``flat``: its rows one after the other, ``stride`` apart; ``quantized`` is
    ``1 << shift``) at the places :func:`_group_offsets` gives (``offsets[row:row +
    quantized]``, for ``i``'s remainder modulo ``quantized``).
    """
    tail = total - prefix[i]
    last = c[i - 1] + tail
    if c[i - 1] == 0 and tail > 0:
        return math.inf
    part = clogc[i - 1]
    if last > 0:
        part += last * math.log(last)
    width = i >> shift
    base = (width - smallest) * stride  # (row 0 holds zeros when width 0 is possible)
    # Four partial sums (one would wait for each addition to finish); ``quantized`` is
    # 2 or a multiple of 4.  Unsigned indices: a signed one costs a wrap-around test
    # per read (Python's negative indices), about as much as the rest of the loop.
    at = np.uint64(base)
    step = np.uint64(width)
    g = np.uint64(row)
    if quantized == 2:
        cross = flat[at + offsets[g]] + flat[at + step + offsets[g + np.uint64(1)]]
    else:
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        one = np.uint64(1)
        two = np.uint64(2)
        three = np.uint64(3)
        end = g + np.uint64(quantized)
        while g < end:
            s0 += flat[at + offsets[g]]
            s1 += flat[at + step + offsets[g + one]]
            s2 += flat[at + two * step + offsets[g + two]]
            s3 += flat[at + three * step + offsets[g + three]]
            at += np.uint64(4) * step
            g += np.uint64(4)
        cross = (s0 + s1) + (s2 + s3)
    if tail > 0:
        # the tail joins the reference weight of the group of bin i - 1 (its mean is
        # unchanged; it is not empty, as c[i - 1] is not: checked above)
        # bin i - 1 is in group floor((i - 1) * quantized / i): quantized - 1 when
        # i >= quantized (no division), and that group starts at ceil(group * i / quantized)
        last_group = quantized - 1 if i >= quantized else (i - 1) * quantized // i
        first = (last_group * i + quantized - 1) >> shift
        group = prefix[i] - prefix[first]
        cross += tail * math.log(group / (nonzero[i] - nonzero[first]))
    kept = prefix[i]
    return (part - cross) / total - log_total + math.log(kept)


@njit(cache=True)
def rel_entr(x, y):
    """scipy's ``special.rel_entr(x, y)`` = ``x * log(x / y)`` as scipy 1.17 rounds it.

    Near ``x == y`` it uses ``log1p``, and ``log(x) - log(y)`` where the ratio would
    underflow or overflow.  0 for ``x == 0 <= y``, infinity for other non-positives.
    """
    if x != x or y != y:
        return math.nan
    if x <= 0.0 or y <= 0.0:
        if x == 0.0 and y >= 0.0:
            return 0.0
        return math.inf
    ratio = x / y
    if 0.5 < ratio < 2.0:
        return x * math.log1p((x - y) / y)
    if 2.2250738585072014e-308 < ratio < math.inf:
        return x * math.log(ratio)
    return x * (math.log(x) - math.log(y))


@njit(cache=True)
def _kl_exact(c, i, quantized, total, p, q):
    """KL divergence of candidate ``i`` exactly as modelopt 0.47 with scipy computes it.

    The quantized density is built as modelopt builds it (group means of the non-empty
    bins, float64); scipy's ``entropy`` then normalises both with numpy sums and adds
    :func:`rel_entr` with numpy's pairwise sum.
    """
    group_sum = np.zeros(quantized, np.float64)
    group_n = np.zeros(quantized, np.int64)
    # bin k is in group floor(k * quantized / i): followed step by step, no division
    g = 0
    for k in range(i):
        while (g + 1) * i <= k * quantized:
            g += 1
        if c[k] != 0:
            group_sum[g] += c[k]
            group_n[g] += 1
    g = 0
    for k in range(i):
        while (g + 1) * i <= k * quantized:
            g += 1
        if c[k] != 0:
            q[k] = group_sum[g] / group_n[g]
        else:
            q[k] = 0.0
        p[k] = np.float64(c[k])
    tail = total - np.sum(c[:i])
    p[i - 1] += tail
    p_total = pairwise_sum(p, 0, i)
    q_total = pairwise_sum(q, 0, i)
    for k in range(i):
        pk = p[k] / p_total
        qk = q[k] / q_total
        p[k] = rel_entr(pk, qk)
    return pairwise_sum(p, 0, i)


@njit(cache=True)
def entropy_index(row, quantized, start_bin, stride, tolerance):
    """The edge index that modelopt's entropy (TensorRT KL) calibration picks.

    ``row`` holds integer counts (int64); ``quantized`` (the levels) is a power of two,
    at least 2.  Bin 0 takes bin 1's count first (modelopt
    does so to ignore a spike of zeros).  Every candidate ``i`` in ``start_bin, ...,
    len(row)`` (step ``stride``) is scored by the KL divergence between the clipped
    histogram and its ``quantized``-level version; the last minimum wins.  A fast
    rearranged formula scores all candidates; those within ``tolerance`` of the
    smallest score are re-scored exactly as modelopt does, so the choice is modelopt's.
    Returns -1 when there is no candidate (fewer than ``start_bin`` bins).
    """
    n = row.size
    if n < start_bin or start_bin < 1:
        return -1
    c = row.copy()
    c[0] = c[1]
    prefix = np.zeros(n + 1, np.int64)
    nonzero = np.zeros(n + 1, np.int64)
    clogc = np.zeros(n + 1, np.float64)
    for k in range(n):
        prefix[k + 1] = prefix[k] + c[k]
        nonzero[k + 1] = nonzero[k] + (1 if c[k] != 0 else 0)
        clogc[k + 1] = clogc[k] + (c[k] * math.log(c[k]) if c[k] > 0 else 0.0)
    total = prefix[n]
    count = (n - start_bin) // stride + 1
    if total == 0:
        # modelopt divides 0 by 0: every divergence is NaN and numpy's argmin picks the
        # first, which its reversed search turns into the last candidate.
        return start_bin + (count - 1) * stride
    log_total = math.log(total)
    smallest = start_bin // quantized
    table = _group_terms(prefix, nonzero, quantized, smallest, -(-n // quantized), n)
    flat = table.reshape(-1)
    shift = 0
    while (1 << shift) < quantized:
        shift += 1
    scores = np.empty(count, np.float64)
    # Candidates j and j + period have the same remainder modulo ``quantized``, and so
    # the same table offsets (:func:`_group_offsets`); the first ``period`` candidates
    # have different ones.  The offsets of a block of remainders are made first, then
    # the block's candidates are scored in ascending order (width by width), so that
    # neighbouring candidates read neighbouring table entries.
    period = quantized // math.gcd(stride % quantized, quantized)
    block = max(1, min(period, _OFFSET_ENTRIES // quantized))
    offsets = np.empty(block * quantized, np.uint32)
    for first in range(0, min(count, period), block):
        last = min(first + block, count, period)
        for b in range(last - first):
            _group_offsets((start_bin + (first + b) * stride) & (quantized - 1), quantized,
                           shift, table.shape[1], offsets[b * quantized:(b + 1) * quantized])
        for j0 in range(first, count, period):
            for b in range(min(last - first, count - j0)):
                scores[j0 + b] = _kl_fast(c, start_bin + (j0 + b) * stride, quantized,
                                          shift, prefix, nonzero, clogc, total, log_total,
                                          flat, table.shape[1], smallest, offsets,
                                          b * quantized)
    best = math.inf
    for j in range(count):
        if scores[j] < best:
            best = scores[j]
    if best == math.inf:
        return start_bin + (count - 1) * stride  # all infinite: numpy picks the last
    p = np.empty(n, np.float64)
    q = np.empty(n, np.float64)
    chosen = -1
    chosen_score = math.inf
    limit = best + tolerance * (1.0 + abs(best))
    close = 0
    for j in range(count):
        if scores[j] <= limit:
            close += 1
            chosen = start_bin + j * stride
    if close == 1:
        return chosen  # (the only candidate near the minimum: no exact score needed)
    chosen = -1
    for j in range(count - 1, -1, -1):  # the last minimum wins: scan from the end
        if scores[j] <= limit:
            i = start_bin + j * stride
            s = _kl_exact(c, i, quantized, total, p, q)
            if chosen < 0 or s < chosen_score:
                chosen = i
                chosen_score = s
    return chosen


# --------------------------------------------------------------------------- mse
@njit(cache=True)
def _mse_score(centers, weights, i, bound, lowest, sorted_from_zero, terms):
    """The float32 score of candidate ``i`` exactly as :func:`mse_index` defines it."""
    n = centers.size
    amax = centers[i]
    if amax <= np.float32(1.0 / (1 << 24)):
        # modelopt quantizes everything to 0 for a zero-like amax
        for k in range(n):
            d = np.float32(0) - centers[k]
            terms[k] = np.float64(np.float32(np.float32(d * d) * weights[k]))
    elif sorted_from_zero:
        # Up to the candidate no clamp can bite (c * scale <= amax * scale, which rounds
        # to ``bound`` at most), beyond it every centre clamps to ``bound``: both halves
        # are branch-free.
        scale = bound / amax
        for k in range(i + 1):
            d = np.float32(np.rint(centers[k] * scale) / scale) - centers[k]
            terms[k] = np.float64(np.float32(np.float32(d * d) * weights[k]))
        top = np.float32(bound / scale)
        for k in range(i + 1, n):
            d = top - centers[k]
            terms[k] = np.float64(np.float32(np.float32(d * d) * weights[k]))
    else:
        scale = bound / amax
        for k in range(n):
            v = np.rint(centers[k] * scale)
            if v > bound:
                v = bound
            if v < lowest:
                v = lowest
            d = np.float32(v / scale) - centers[k]
            terms[k] = np.float64(np.float32(np.float32(d * d) * weights[k]))
    return np.float32(np.float32(pairwise_sum(terms, 0, n)) / np.float32(n))


@njit(cache=True)
def _range_moments(p0, p1, p2, a, b):
    """``(sum W, sum W (k - a), sum W (k - a)**2)`` over bins ``a..b-1``, from the prefix
    sums of ``W``, ``W k`` and ``W k**2`` (exact integers)."""
    q0 = p0[b] - p0[a]
    r1 = p1[b] - p1[a]
    q1 = r1 - a * q0
    q2 = (p2[b] - p2[a]) - 2 * a * r1 + a * a * q0
    return np.float64(q0), np.float64(q1), np.float64(q2)


@njit(cache=True)
def _mse_estimates(centers, weights, bound, start_bin, stride, estimate, margin):
    """Each candidate's score estimated in O(levels), with a bound on its distance from
    the exact score; False where the estimate does not apply (then none is made).

    It applies to centres that ascend from 0 and lie within ``eps`` of a uniform grid
    ``c0 + k h`` (``h > 4 eps``).  On that grid the centres that round to one level form
    a run of bins, whose squared distances to the level add up from prefix sums of
    ``W``, ``W k`` and ``W k**2`` (the float32 weights as exact integers): O(1) per level
    instead of per bin.  ``margin`` bounds everything the estimate leaves out: the
    distance of the centres from the grid, float32 rounding of the products, the
    division and the level choice near ties, the float32 sums and the mean (see
    docs/semantics.md §13.1).
    """
    n = centers.size
    c0 = np.float64(centers[0])
    top_center = np.float64(centers[n - 1])
    if n < 4 or c0 < 0 or top_center <= c0 or top_center > 1e18 or 4 * (bound + 1) > n:
        return False
    h = (top_center - c0) / (n - 1)
    eps = 0.0
    for k in range(n):
        if k > 0 and centers[k] < centers[k - 1]:
            return False
        eps = max(eps, abs(np.float64(centers[k]) - (c0 + k * h)))
    eps = eps * (1 + 1e-9) + 1e-300
    if eps * 4 > h:
        return False
    p0 = np.zeros(n + 1, np.int64)
    p1 = np.zeros(n + 1, np.int64)
    p2 = np.zeros(n + 1, np.int64)
    for k in range(n):
        w = np.int64(weights[k])  # float32 counts are whole numbers
        p0[k + 1] = p0[k] + w
        p1[k + 1] = p1[k] + w * k
        p2[k + 1] = p2[k] + w * k * k
    total = p0[n]
    if np.float64(total) * n * n > 2.0 ** 60:
        return False  # (the prefix sums would leave int64)
    u32 = 2.0 ** -24
    count = estimate.size
    # First the clamped part of each candidate (O(1)) and the bounds it gives: the part
    # below the candidate is at least 0 and at most (step / 2 + e)**2 per count.  Only
    # the candidates whose lower bound is under the least upper bound are estimated.
    clamped = np.empty(count, np.float64)
    clamped_error = np.empty(count, np.float64)
    lower = np.empty(count, np.float64)
    least_upper = np.inf
    first = -1
    for j in range(count):
        i = start_bin + j * stride
        amax = centers[i]
        if amax <= np.float32(1.0 / (1 << 24)):
            lower[j] = -np.inf  # (always scored exactly)
            continue
        scale = bound / amax
        step = 1.0 / np.float64(scale)
        top = np.float64(np.float32(bound / scale))
        q0, q1, q2 = _range_moments(p0, p1, p2, i + 1, n)
        u = (top - c0) / h - (i + 1)
        part = max(0.0, (q2 - 2 * u * q1 + u * u * q0) * h * h)
        above = np.float64(total - p0[i + 1])
        e_top = eps + 2 * u32 * max(top, top_center)
        slop = 1e-9 * (part + np.float64(total) * (step + h) ** 2) + 2.0 ** -148 * (total + n)
        error = (4 * u32 * part + 3 * e_top * math.sqrt(above * part)
                 + 2 * e_top * e_top * above + slop)
        clamped[j] = part
        clamped_error[j] = error
        e = 3 * eps + 4 * u32 * (np.float64(amax) + step)
        inner_most = np.float64(p0[i + 1]) * (step / 2 + e) ** 2 * (1 + 4 * u32)
        lower[j] = (part - error) * (1 - 4 * u32) / n
        upper = (part + error + inner_most) * (1 + 4 * u32) / n
        if upper < least_upper:
            least_upper = upper
            first = j
    # The candidate of the least upper bound first: its estimate (plus margin) bounds
    # the least exact score much more tightly than any upper bound, and every candidate
    # whose lower bound is above the least such bound so far is left out unestimated.
    ceiling = least_upper
    for visit in range(-1, count):
        if visit == first:
            continue  # (estimated first)
        j = first if visit < 0 else visit
        if j < 0:
            continue  # (no candidate with an upper bound)
        i = start_bin + j * stride
        amax = centers[i]
        if lower[j] == -np.inf:
            estimate[j] = 0.0
            margin[j] = np.inf
            continue
        if lower[j] > ceiling:
            estimate[j] = np.inf  # (its exact score is above another's)
            margin[j] = 0.0
            continue
        scale = bound / amax
        step = 1.0 / np.float64(scale)
        # levels 0, 1, ...: the bins whose grid centre is nearest to level * step
        inner = 0.0
        first = 0
        level = 0
        while first <= i:
            last = min(i + 1, max(first, np.int64(math.ceil(((level + 0.5) * step - c0) / h))))
            if last > first:
                q0, q1, q2 = _range_moments(p0, p1, p2, first, last)
                u = (level * step - c0) / h - first
                inner += q2 - 2 * u * q1 + u * u * q0
            first = last
            level += 1
        inner *= h * h
        approx = inner + clamped[j]
        below = np.float64(p0[i + 1])
        # |computed - grid difference| for a centre below the candidate: its distance
        # from the grid, the float32 level value and difference, and a level chosen on
        # the other side of a near-tie (both then lie about step / 2 away)
        e = 3 * eps + 4 * u32 * (np.float64(amax) + step)
        bound_inner = below * ((step + e) * e + 2 * u32 * (step / 2 + e) ** 2)
        slop = 1e-9 * (inner + below * (step + h) ** 2)
        error = bound_inner + clamped_error[j] + slop + 4 * u32 * approx
        estimate[j] = approx / n
        margin[j] = (error + 4 * u32 * (approx + error)) / n
        ceiling = min(ceiling, estimate[j] + margin[j])
    return True


@njit(cache=True)
def mse_inputs(counts, edges, num_bits, unsigned):
    """``(centers, weights, bound, lowest, sorted_from_zero)`` of :func:`mse_index`: the
    float32 bin centres and counts, the code range ``[lowest, bound]``, and whether the
    centres ascend from 0 (see :func:`_mse_score`)."""
    n = counts.size
    two = np.float32(2)
    centers = np.empty(n, np.float32)
    for k in range(n):
        centers[k] = (edges[k] + edges[k + 1]) / two
    weights = counts.astype(np.float32)
    bound = np.float32(2.0 ** (num_bits - 1 + (1 if unsigned else 0)) - 1.0)
    lowest = np.float32(0) if unsigned else -bound
    sorted_from_zero = centers[0] >= 0
    for k in range(1, n):
        if centers[k] < centers[k - 1]:
            sorted_from_zero = False
    return centers, weights, bound, lowest, sorted_from_zero


@njit(cache=True)
def mse_index(counts, edges, num_bits, unsigned, start_bin, stride):
    """Index of the bin centre that minimises the histogram's quantization error.

    modelopt 0.47's MSE procedure with its quantizer called as intended: centres
    ``(edges[k] + edges[k+1]) / 2`` (float32); for each candidate centre ``a`` (from
    ``start_bin``, step ``stride``) the centres are fake-quantized with
    ``scale = bound / a`` (bound ``2**(bits-1) - 1`` narrow range, or ``2**bits - 1``
    unsigned), ``clamp(rint(c * scale), -bound or 0, bound) / scale`` in float32, and
    scored by ``mean((q - c)**2 * count)`` (float32 terms added in float64, then rounded
    to float32); the first minimum wins.  Where :func:`_mse_estimates` applies, only the
    candidates whose estimate could be the minimum are scored exactly.
    Returns -1 when there is no candidate.
    """
    n = counts.size
    if start_bin >= n:
        return -1
    centers, weights, bound, lowest, sorted_from_zero = mse_inputs(counts, edges, num_bits,
                                                                   unsigned)
    terms = np.empty(n, np.float64)
    count = (n - 1 - start_bin) // stride + 1
    estimate = np.empty(count, np.float64)
    margin = np.empty(count, np.float64)
    screened = _mse_estimates(centers, weights, bound, start_bin, stride, estimate, margin)
    threshold = np.inf
    if screened:
        for j in range(count):
            if estimate[j] < np.inf:
                threshold = min(threshold, estimate[j] + margin[j])
    best = -1
    best_score = np.float32(np.inf)
    for j in range(count):
        if screened and estimate[j] - margin[j] > threshold:
            continue  # its exact score is above another candidate's
        i = start_bin + j * stride
        mean = _mse_score(centers, weights, i, bound, lowest, sorted_from_zero, terms)
        if best < 0 or mean < best_score:
            best = i
            best_score = mean
    return best


# --------------------------------------------------------------------------- l2
@njit(cache=True)
def _floor_divide32(a, b):
    """``torch.div(a, b, rounding_mode="floor")`` for float32 ``a`` and ``b``."""
    mod = np.float32(np.fmod(np.float64(a), np.float64(b)))  # exact in either type
    div = np.float32(np.float32(a - mod) / b)
    if mod != 0 and (b < 0) != (mod < 0):
        div = np.float32(div - np.float32(1))
    if div != 0:
        result = np.float32(math.floor(div))
        if np.float32(div - result) > np.float32(0.5):
            result = np.float32(result + np.float32(1))
        return result
    return np.float32(0.0)


@njit(cache=True)
def _cube_difference(end, begin):
    """``(end**3 - begin**3) / 3`` as PyTorch's ``_get_norm`` rounds it (float32)."""
    three = np.float32(3)
    return np.float32(np.float32(np.float32(end * end) * end)
                      - np.float32(np.float32(begin * begin) * begin)) / three


@njit(cache=True)
def l2_error(hist, min_val, max_val, start, end, dst_bins):
    """PyTorch's ``_compute_quantization_error`` for clipping to bins [start, end].

    The L2 error of quantizing the histogram (values uniform inside each bin) to
    ``dst_bins`` levels spread over the clipped range.  Widths are Python floats
    (float64) that the float32 tensor arithmetic rounds to float32; the final sum is
    accumulated in float64 and rounded to float32.
    """
    bins = hist.size
    width = (np.float64(max_val) - np.float64(min_val)) / bins
    dst_width = width * (end - start + 1) / dst_bins
    if dst_width == 0.0:
        return 0.0
    w = np.float32(width)
    dw = np.float32(dst_width)
    half = np.float32(dst_width / 2)
    minus_half = np.float32(-dst_width / 2)
    middle = _cube_difference(half, minus_half)
    top = np.float32(dst_bins - 1)
    zero = np.float32(0)
    total = 0.0
    for k in range(bins):
        begin = np.float32(np.float32(k - start) * w)
        stop = np.float32(begin + w)
        first = min(max(_floor_divide32(begin, dw), zero), top)
        last = min(max(_floor_divide32(stop, dw), zero), top)
        first_center = np.float32(np.float32(first + np.float32(0.5)) * dw)
        density = np.float32(hist[k] / w)
        norm = np.float32(density * _cube_difference(half, np.float32(begin - first_center)))
        inner = np.float32(np.float32(last - first) - np.float32(1))
        norm = np.float32(norm + np.float32(inner * np.float32(density * middle)))
        last_center = np.float32(np.float32(last * dw) + half)
        tail = _cube_difference(np.float32(stop - last_center), minus_half)
        norm = np.float32(norm + np.float32(density * tail))
        total += norm
    return np.float64(np.float32(total))


@njit(cache=True)
def l2_search(hist, min_val, max_val, dst_bins):
    """PyTorch's ``HistogramObserver._non_linear_param_search``: ``(new_min, new_max)``.

    ``hist`` (float32 counts over ``[min_val, max_val]``, float32 bounds) is clipped
    greedily from either end in steps of 1e-5 of the total count while the L2
    quantization error (:func:`l2_error`) does not grow.
    """
    bins = hist.size
    width = np.float32(np.float32(max_val - min_val) / np.float32(bins))
    cumulative = np.empty(bins, np.float32)
    running = 0.0
    for k in range(bins):
        running += np.float64(hist[k])  # (torch's CPU cumsum adds in double)
        cumulative[k] = np.float32(running)
    total = np.float64(np.float32(running))
    step = 1e-5
    alpha = 0.0
    beta = 1.0
    start = 0
    end = bins - 1
    norm_min = math.inf
    while alpha < beta:
        next_alpha = alpha + step
        next_beta = beta - step
        low_bound = np.float32(next_alpha * total)
        high_bound = np.float32(next_beta * total)
        left = start
        right = end
        while left < end and cumulative[left] < low_bound:
            left += 1
        while right > start and cumulative[right] > high_bound:
            right -= 1
        next_start = start
        next_end = end
        if (left - start) > (end - right):
            next_start = left
            alpha = next_alpha
        else:
            next_end = right
            beta = next_beta
        if next_start == start and next_end == end:
            continue
        norm = l2_error(hist, min_val, max_val, next_start, next_end, dst_bins)
        if norm > norm_min:
            break
        norm_min = norm
        start = next_start
        end = next_end
    new_min = np.float32(min_val + np.float32(width * np.float32(start)))
    new_max = np.float32(min_val + np.float32(width * np.float32(end + 1)))
    return new_min, new_max
