"""The scale searches that ggml's GGUF quantizers share (``ggml-quants.c``), as scalar
Numba functions for the CPU and GPU kernels.

Each function reproduces ggml's float32 arithmetic operation by operation: the same
order of products and sums, float32 throughout (integer codes converted to float32
where C converts them), and every product that feeds an addition rounded on its own
(``mul_rn``), since a GPU would otherwise fuse it into one multiply-add.  Integers that
ggml keeps in ``uint8_t``/``int8_t`` arrays wrap as they do in C where the value can
leave the type's range.

Division follows IEEE 754 (``error_model="numpy"``): ggml divides by zero where a
fitted minimum reaches the maximum (an infinite trial scale whose codes the search then
rejects), and Numba's default would raise instead.

Nothing here allocates: codes go into caller-provided integer arrays (views of a
scratch buffer) and the functions return scalars (a tuple where ggml writes through a
pointer).
"""
import math

import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._reference.bits import f32_bits
from numba_quant._reference.primitives import mul_rn

# ggml's threshold below which a group counts as all zero (GROUP_MAX_EPS).
GROUP_MAX_EPS = np.float32(1e-15)

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_TENTH = np.float32(0.1)
# 1.5 * 2**23: adding it puts the rounded integer in the low mantissa bits.
_MAGIC = np.float32(12582912.0)


@njit(cache=True, error_model="numpy")
def nearest_int(v):
    """``v`` (float32) rounded to the nearest integer, ties to even, by ggml's trick:
    add 1.5 * 2**23 and read the low 23 bits of the sum.

    Exact for ``|v| <= 4194303``; beyond that (and for inf/NaN) it returns the same
    wrapped value as ggml's C, which later clamps then see.  An int32, as in C: the
    searches' vector loops then work in 32-bit lanes (int64 lanes have no packed
    conversion to float32 on AVX2, which made those loops 2.5 times slower).
    """
    s = np.float32(v) + _MAGIC
    return np.int32((f32_bits(s) & 0x007FFFFF) - 0x00400000)


@njit(cache=True, error_model="numpy")
def wrap_u8(v):
    """``v`` stored into a C ``uint8_t`` (modulo 256)."""
    return v & 0xFF


@njit(cache=True, error_model="numpy")
def wrap_i8(v):
    """``v`` stored into a C ``int8_t`` (two's complement wrap)."""
    return ((v + 128) & 0xFF) - 128


@njit(cache=True, error_model="numpy")
def _clamp(v, lo, hi):
    # v an int32 code; int32 bounds keep the result (and vector loops) in 32-bit lanes.
    return max(np.int32(lo), min(np.int32(hi), v))


@njit(cache=True, error_model="numpy")
def _rmse_weight(x, rmse_type):
    # The weight ggml gives an element when no importance weights are passed.
    if rmse_type == 1:
        return mul_rn(x, x)
    if rmse_type == 2:
        return _F1
    if rmse_type == 3:
        return abs(x)
    return np.float32(math.sqrt(abs(x)))


@njit(cache=True, error_model="numpy")
def _qx_sums(n, nmax, x, qw, has_qw, rmse_type, iscale):
    # Weighted sums of l*x and l*l for the codes that iscale gives (clamped to
    # [-nmax, nmax-1]), accumulated in ggml's order.
    sumlx = _F0
    suml2 = _F0
    for i in range(n):
        l = _clamp(nearest_int(mul_rn(iscale, x[i])), -nmax, nmax - 1)
        w = qw[i] if has_qw else _rmse_weight(x[i], rmse_type)
        fl = np.float32(l)
        sumlx = sumlx + mul_rn(mul_rn(w, x[i]), fl)
        suml2 = suml2 + mul_rn(mul_rn(w, fl), fl)
    return sumlx, suml2


@njit(cache=True, error_model="numpy")
def _largest_magnitude(n, x):
    """ggml's running ``amax < |x[i]|`` search over ``x[:n]``: ``(amax, the value)``, the
    first one on ties, ``(0, 0)`` for zeros."""
    vmax = _F0
    amax = _F0
    for i in range(n):
        ax = abs(x[i])
        if ax > amax:
            amax = ax
            vmax = x[i]
    return amax, vmax


@njit(cache=True, error_model="numpy")
def _codes_of_scale(n, nmax, x, L, iscale):
    """``L[i] = nmax + clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1)`` for ``i < n``."""
    for i in range(n):
        L[i] = nmax + _clamp(nearest_int(mul_rn(iscale, x[i])), -nmax, nmax - 1)


@njit(cache=True, error_model="numpy")
def make_qx_quants(n, nmax, x, L, rmse_type, qw, has_qw):
    """Symmetric codes ``L[i] = nmax + clamp(round(x[i] / scale), -nmax, nmax-1)`` and the
    scale (returned) that ggml's ``make_qx_quants`` chooses for the ``n`` floats ``x``.

    ``rmse_type`` 0 returns the max-based scale; otherwise the least-squares scale of the
    codes is refined over 18 trial reciprocal scales ``-(nmax + 0.1*k)/max``, weighted by
    ``qw`` (when ``has_qw``) or by ggml's built-in weight of ``rmse_type`` (1: x*x, 2: 1,
    3: |x|, 4: sqrt|x|).  A negative ``rmse_type`` returns after the first fit with the
    mean of the fitted and max-based scales.
    """
    amax, vmax = _largest_magnitude(n, x)
    if amax < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return _F0
    iscale = np.float32(-nmax) / vmax
    _codes_of_scale(n, nmax, x, L, iscale)
    if rmse_type == 0:
        return _F1 / iscale
    return_early = rmse_type < 0
    if return_early:
        rmse_type = -rmse_type
    sumlx, suml2 = _qx_sums(n, nmax, x, qw, has_qw, rmse_type, iscale)
    scale = sumlx / suml2 if suml2 != _F0 else _F0
    if return_early:
        if suml2 > _F0:
            return np.float32(0.5) * (scale + _F1 / iscale)
        return _F1 / iscale
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(np.float32(nmax) + mul_rn(_TENTH, np.float32(step))) / vmax
        sumlx, suml2 = _qx_sums(n, nmax, x, qw, has_qw, rmse_type, iscale)
        if suml2 > _F0 and mul_rn(sumlx, sumlx) > mul_rn(best, suml2):
            _codes_of_scale(n, nmax, x, L, iscale)
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


@njit(cache=True, error_model="numpy")
def make_q3_quants(n, nmax, x, L, do_rmse):
    """ggml's ``make_q3_quants``: symmetric codes in ``[0, 2*nmax)`` (stored in ``L``)
    and their scale, with ``do_rmse`` a coordinate descent (weights x*x, up to 5 sweeps)
    that moves single codes while the weighted fit improves."""
    amax, vmax = _largest_magnitude(n, x)
    if amax < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return _F0
    iscale = np.float32(-nmax) / vmax
    if not do_rmse:
        _codes_of_scale(n, nmax, x, L, iscale)
        return _F1 / iscale
    sumlx = _F0
    suml2 = _F0
    for i in range(n):
        l = _clamp(nearest_int(mul_rn(iscale, x[i])), -nmax, nmax - 1)
        L[i] = l
        w = mul_rn(x[i], x[i])
        fl = np.float32(l)
        sumlx = sumlx + mul_rn(mul_rn(w, x[i]), fl)
        suml2 = suml2 + mul_rn(mul_rn(w, fl), fl)
    for _ in range(5):
        n_changed = 0
        for i in range(n):
            w = mul_rn(x[i], x[i])
            fli = np.float32(L[i])
            slx = sumlx - mul_rn(mul_rn(w, x[i]), fli)
            if slx > _F0:
                sl2 = suml2 - mul_rn(mul_rn(w, fli), fli)
                new_l = _clamp(nearest_int(mul_rn(x[i], sl2) / slx), -nmax, nmax - 1)
                if new_l != L[i]:
                    fnl = np.float32(new_l)
                    slx = slx + mul_rn(mul_rn(w, x[i]), fnl)
                    sl2 = sl2 + mul_rn(mul_rn(w, fnl), fnl)
                    if sl2 > _F0 and (mul_rn(mul_rn(slx, slx), suml2)
                                      > mul_rn(mul_rn(sumlx, sumlx), sl2)):
                        L[i] = new_l
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    for i in range(n):
        L[i] += nmax
    return sumlx / suml2 if suml2 > _F0 else _F0


@njit(cache=True, error_model="numpy")
def _qkx_weight(x, weights, has_weights, i):
    return weights[i] if has_weights else mul_rn(x[i], x[i])


@njit(cache=True, error_model="numpy")
def _qkx_error(n, x, weights, has_weights, L, scale, vmin, use_mad):
    # Weighted error of scale * L + vmin against x (absolute or squared).
    err = _F0
    for i in range(n):
        diff = (mul_rn(scale, np.float32(L[i])) + vmin) - x[i]
        diff = abs(diff) if use_mad else mul_rn(diff, diff)
        err = err + mul_rn(_qkx_weight(x, weights, has_weights, i), diff)
    return err


@njit(cache=True, error_model="numpy")
def make_qkx3_quants(n, nmax, x, weights, has_weights, L, Laux, rmin, rdelta, nstep,
                     use_mad):
    """ggml's ``make_qkx3_quants``: codes in ``[0, nmax]`` (into ``L``; ``Laux`` is
    scratch of ``n``) for ``x ~ scale * L - the_min`` with a minimum at most 0, the
    max-based fit refined by a weighted least-squares fit of scale and minimum for each
    of ``nstep + 1`` trial reciprocal scales ``(rmin + rdelta*k + nmax) / (max - min)``,
    keeping the one of least weighted error (absolute when ``use_mad``).  Weights
    ``weights`` (x*x when ``has_weights`` is False); all values equal when ``max <= min``;
    trial codes guarded against a huge/inf/NaN ratio.

    Returns ``(scale, the_min)`` (``the_min`` is ggml's ``*the_min``: minus the minimum).
    """
    rmin = np.float32(rmin)
    rdelta = np.float32(rdelta)
    vmin = x[0]
    vmax = x[0]
    sum_w = _qkx_weight(x, weights, has_weights, 0)
    sum_x = mul_rn(sum_w, x[0])
    for i in range(1, n):
        if x[i] < vmin:
            vmin = x[i]
        if x[i] > vmax:
            vmax = x[i]
        w = _qkx_weight(x, weights, has_weights, i)
        sum_w = sum_w + w
        sum_x = sum_x + mul_rn(w, x[i])
    if vmin > _F0:
        vmin = _F0
    if vmax <= vmin:
        for i in range(n):
            L[i] = 0
        return _F0, -vmin
    iscale = np.float32(nmax) / (vmax - vmin)
    scale = _F1 / iscale
    for i in range(n):
        L[i] = _clamp(nearest_int(mul_rn(iscale, x[i] - vmin)), 0, nmax)
    best_error = _qkx_error(n, x, weights, has_weights, L, scale, vmin, use_mad)
    if nstep < 1:
        return scale, -vmin
    for step in range(nstep + 1):
        iscale = ((rmin + mul_rn(rdelta, np.float32(step))) + np.float32(nmax)) / (vmax - vmin)
        sum_l = _F0
        sum_l2 = _F0
        sum_xl = _F0
        for i in range(n):
            v = mul_rn(iscale, x[i] - vmin)
            # vmin may have moved close to vmax, so v can be huge, inf or NaN.
            l = nearest_int(min(v, np.float32(nmax))) if v > _F0 else 0
            Laux[i] = l
            w = _qkx_weight(x, weights, has_weights, i)
            fl = np.float32(l)
            wl = mul_rn(w, fl)
            sum_l = sum_l + wl
            sum_l2 = sum_l2 + mul_rn(wl, fl)
            sum_xl = sum_xl + mul_rn(wl, x[i])
        D = mul_rn(sum_w, sum_l2) - mul_rn(sum_l, sum_l)
        if D > _F0:
            this_scale = (mul_rn(sum_w, sum_xl) - mul_rn(sum_x, sum_l)) / D
            this_min = (mul_rn(sum_l2, sum_x) - mul_rn(sum_l, sum_xl)) / D
            if this_min > _F0:
                this_min = _F0
                this_scale = sum_xl / sum_l2
            cur_error = _qkx_error(n, x, weights, has_weights, Laux, this_scale, this_min,
                                   use_mad)
            if cur_error < best_error:
                for i in range(n):
                    L[i] = Laux[i]
                best_error = cur_error
                scale = this_scale
                vmin = this_min
    return scale, -vmin


@njit(cache=True, error_model="numpy")
def _qp_mse(n, nmax, x, qw, iscale, clamp):
    scale = _F1 / iscale
    mse = _F0
    for i in range(n):
        l = nearest_int(mul_rn(iscale, x[i]))
        if clamp:
            l = min(nmax, l)
        diff = x[i] - mul_rn(scale, np.float32(l))
        mse = mse + mul_rn(mul_rn(qw[i], diff), diff)
    return mse


@njit(cache=True, error_model="numpy")
def make_qp_quants(n, nmax, x, L, quant_weights):
    """ggml's ``make_qp_quants``: codes in ``[0, nmax]`` (stored as C's ``uint8_t``
    would hold them) for non-negative ``x`` (sub-block scales or minimums) and their
    scale, weighted by ``quant_weights``: the best of 9 trial reciprocal scales
    ``(nmax + 0.1*k) / max``, then up to 5 sweeps of single-code moves."""
    vmax = _F0
    for i in range(n):
        vmax = vmax if vmax > x[i] else x[i]
    if vmax < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return _F0
    iscale = np.float32(nmax) / vmax
    for i in range(n):
        L[i] = wrap_u8(nearest_int(mul_rn(iscale, x[i])))
    # The first error uses the stored (uint8) codes, unclamped.
    scale = _F1 / iscale
    best_mse = _F0
    for i in range(n):
        diff = x[i] - mul_rn(scale, np.float32(L[i]))
        best_mse = best_mse + mul_rn(mul_rn(quant_weights[i], diff), diff)
    for step in range(-4, 5):
        if step == 0:
            continue
        iscale_is = (mul_rn(_TENTH, np.float32(step)) + np.float32(nmax)) / vmax
        mse = _qp_mse(n, nmax, x, quant_weights, iscale_is, True)
        if mse < best_mse:
            best_mse = mse
            iscale = iscale_is
    sumlx = _F0
    suml2 = _F0
    for i in range(n):
        # The sums use the int code; L keeps it as a uint8.
        l = min(nmax, nearest_int(mul_rn(iscale, x[i])))
        L[i] = wrap_u8(l)
        w = quant_weights[i]
        fl = np.float32(l)
        sumlx = sumlx + mul_rn(mul_rn(w, x[i]), fl)
        suml2 = suml2 + mul_rn(mul_rn(w, fl), fl)
    for _ in range(5):
        n_changed = 0
        for i in range(n):
            w = quant_weights[i]
            fli = np.float32(L[i])
            slx = sumlx - mul_rn(mul_rn(w, x[i]), fli)
            sl2 = suml2 - mul_rn(mul_rn(w, fli), fli)
            if slx > _F0 and sl2 > _F0:
                new_l = min(nmax, nearest_int(mul_rn(x[i], sl2) / slx))
                if new_l != L[i]:
                    fnl = np.float32(new_l)
                    slx = slx + mul_rn(mul_rn(w, x[i]), fnl)
                    sl2 = sl2 + mul_rn(mul_rn(w, fnl), fnl)
                    if mul_rn(mul_rn(slx, slx), suml2) > mul_rn(mul_rn(sumlx, sumlx), sl2):
                        L[i] = wrap_u8(new_l)
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    return sumlx / suml2 if suml2 > _F0 else _F0


# ------------------------------------------------------------------ lane-parallel form
# make_qx_quants over many groups at once: the groups are the lanes of a transposed
# array (element i of group j at [i * nl + j]), so that every loop over the lanes is a
# vector loop, while each lane still performs its group's operations in ggml's order.
@njit(cache=True, error_model="numpy")
def _lane_sums(nl, n, nmax, xt, wt, isc, slx, sl2):
    for j in range(nl):
        slx[j] = _F0
        sl2[j] = _F0
    for i in range(n):
        for j in range(nl):
            xv = xt[i * nl + j]
            w = wt[i * nl + j]
            fl = np.float32(_clamp(nearest_int(mul_rn(isc[j], xv)), -nmax, nmax - 1))
            slx[j] = slx[j] + mul_rn(mul_rn(w, xv), fl)
            sl2[j] = sl2[j] + mul_rn(mul_rn(w, fl), fl)


@njit(cache=True, error_model="numpy")
def _lane_codes(nl, n, nmax, xt, isc, Lt, take):
    for i in range(n):
        for j in range(nl):
            k = i * nl + j
            code = _clamp(nearest_int(mul_rn(isc[j], xt[k])), -nmax, nmax - 1) + np.int32(nmax)
            Lt[k] = code if take[j] != 0 else Lt[k]


@njit(cache=True, error_model="numpy")
def make_qx_quants_lanes(nl, n, nmax, xt, wt, Lt, scales, fscratch, take):
    """:func:`make_qx_quants` with ``rmse_type`` 1 and weights for ``nl`` groups of ``n``
    at once, bit for bit the same per group.

    ``xt``, ``wt``: the groups' values and weights transposed (element ``i`` of group
    ``j`` at ``[i * nl + j]``); ``Lt`` receives the codes in the same layout and
    ``scales[j]`` each group's scale.  ``fscratch``: at least ``6 * nl`` floats;
    ``take``: ``nl`` integers.
    """
    vmax = fscratch[0:nl]
    amax = fscratch[nl:2 * nl]
    isc = fscratch[2 * nl:3 * nl]
    slx = fscratch[3 * nl:4 * nl]
    sl2 = fscratch[4 * nl:5 * nl]
    best = fscratch[5 * nl:6 * nl]
    for j in range(nl):
        vmax[j] = _F0
        amax[j] = _F0
    for i in range(n):
        for j in range(nl):
            ax = abs(xt[i * nl + j])
            if ax > amax[j]:
                amax[j] = ax
                vmax[j] = xt[i * nl + j]
    for j in range(nl):
        isc[j] = np.float32(-nmax) / vmax[j]
        take[j] = 1
    _lane_codes(nl, n, nmax, xt, isc, Lt, take)
    _lane_sums(nl, n, nmax, xt, wt, isc, slx, sl2)
    for j in range(nl):
        scales[j] = slx[j] / sl2[j] if sl2[j] != _F0 else _F0
        best[j] = scales[j] * slx[j]
    for step in range(-9, 10):
        if step == 0:
            continue
        num = np.float32(nmax) + mul_rn(_TENTH, np.float32(step))
        for j in range(nl):
            isc[j] = -num / vmax[j]
        _lane_sums(nl, n, nmax, xt, wt, isc, slx, sl2)
        any_better = False
        for j in range(nl):
            better = sl2[j] > _F0 and mul_rn(slx[j], slx[j]) > mul_rn(best[j], sl2[j])
            take[j] = 1 if better else 0
            if better:
                any_better = True
                scales[j] = slx[j] / sl2[j]
                best[j] = scales[j] * slx[j]
        if any_better:
            _lane_codes(nl, n, nmax, xt, isc, Lt, take)
    # Groups below ggml's all-zero threshold: codes 0, scale 0.
    for j in range(nl):
        if amax[j] < GROUP_MAX_EPS:
            scales[j] = _F0
            for i in range(n):
                Lt[i * nl + j] = 0


@njit(cache=True, error_model="numpy")
def _lane_error(nl, n, xt, wt, Lt, scale, vmin, use_mad, err):
    # Weighted error of scale * L + vmin against x, per lane, in element order.
    for j in range(nl):
        err[j] = _F0
    for i in range(n):
        for j in range(nl):
            k = i * nl + j
            err[j] = err[j] + _weighted_error(scale[j], vmin[j], Lt[k], xt[k], wt[k],
                                              use_mad)


@njit(cache=True, error_model="numpy", inline="always")
def _weighted_error(scale, vmin, l, x, w, use_mad):
    diff = (mul_rn(scale, np.float32(l)) + vmin) - x
    diff = abs(diff) if use_mad else mul_rn(diff, diff)
    return mul_rn(w, diff)


@njit(cache=True, error_model="numpy", inline="always")
def _qkx_trial(isc, x, w, vmin, nmax, guarded):
    # One value's trial code in make_qkx_lanes' search and its terms of the three sums:
    # (code, w*l, w*l*l, w*l*x).
    v = mul_rn(isc, x - vmin)
    if guarded:
        l = nearest_int(min(v, np.float32(nmax))) if v > _F0 else np.int32(0)
    else:
        l = _clamp(nearest_int(v), 0, nmax)
    fl = np.float32(l)
    wl = mul_rn(w, fl)
    return l, wl, mul_rn(wl, fl), mul_rn(wl, x)


@njit(cache=True, error_model="numpy")
def make_qkx_lanes(nl, n, nmax, xt, wt, Lt, Laux, scales, mins, fscratch, flags, rmin,
                   rdelta, nstep, use_mad, guarded):
    """ggml's ``make_qkx2_quants`` (``guarded`` False) or :func:`make_qkx3_quants` with
    weights (``guarded`` True) for ``nl`` groups of ``n`` at once, bit for bit ggml's
    per group.

    ``xt``, ``wt``: values and weights transposed (element ``i`` of group ``j`` at
    ``[i * nl + j]``); ``Lt`` receives the codes in that layout (``Laux``: the same
    size, scratch); ``scales[j]`` and ``mins[j]`` (ggml's ``*the_min``) each group's fit.
    ``fscratch``: at least ``13 * nl`` floats; ``flags``: ``2 * nl`` integers.
    Every loop over the lanes is a vector loop: the more lanes, the faster per group.
    """
    rmin = np.float32(rmin)
    rdelta = np.float32(rdelta)
    vmin = fscratch[0:nl]
    vmax = fscratch[nl:2 * nl]
    sum_w = fscratch[2 * nl:3 * nl]
    sum_x = fscratch[3 * nl:4 * nl]
    best = fscratch[4 * nl:5 * nl]
    isc = fscratch[5 * nl:6 * nl]
    sl = fscratch[6 * nl:7 * nl]
    sl2 = fscratch[7 * nl:8 * nl]
    sxl = fscratch[8 * nl:9 * nl]
    ts = fscratch[9 * nl:10 * nl]
    tm = fscratch[10 * nl:11 * nl]
    err = fscratch[11 * nl:12 * nl]
    take = flags[0:nl]
    flat = flags[nl:2 * nl]
    for j in range(nl):
        vmin[j] = xt[j]
        vmax[j] = xt[j]
        sum_w[j] = wt[j]
        sum_x[j] = mul_rn(wt[j], xt[j])
    for i in range(1, n):
        for j in range(nl):
            xv = xt[i * nl + j]
            w = wt[i * nl + j]
            if xv < vmin[j]:
                vmin[j] = xv
            if xv > vmax[j]:
                vmax[j] = xv
            sum_w[j] = sum_w[j] + w
            sum_x[j] = sum_x[j] + mul_rn(w, xv)
    for j in range(nl):
        if vmin[j] > _F0:
            vmin[j] = _F0
        is_flat = (vmax[j] <= vmin[j]) if guarded else (vmax[j] == vmin[j])
        flat[j] = 1 if is_flat else 0
        isc[j] = np.float32(nmax) / (vmax[j] - vmin[j])
        scales[j] = _F1 / isc[j]
    for i in range(n):
        for j in range(nl):
            k = i * nl + j
            Lt[k] = _clamp(nearest_int(mul_rn(isc[j], xt[k] - vmin[j])), 0, nmax)
    _lane_error(nl, n, xt, wt, Lt, scales, vmin, use_mad, best)
    for step in range(nstep + 1 if nstep >= 1 else 0):
        num = (rmin + mul_rn(rdelta, np.float32(step))) + np.float32(nmax)
        for j in range(nl):
            isc[j] = num / (vmax[j] - vmin[j])
        for j in range(nl):
            sl[j] = _F0
            sl2[j] = _F0
            sxl[j] = _F0
        for i in range(n):
            for j in range(nl):
                k = i * nl + j
                Laux[k], wl, wl2, wlx = _qkx_trial(isc[j], xt[k], wt[k], vmin[j], nmax,
                                                  guarded)
                sl[j] = sl[j] + wl
                sl2[j] = sl2[j] + wl2
                sxl[j] = sxl[j] + wlx
        for j in range(nl):
            D = mul_rn(sum_w[j], sl2[j]) - mul_rn(sl[j], sl[j])
            take[j] = 1 if (D > _F0 and flat[j] == 0) else 0
            ts[j] = (mul_rn(sum_w[j], sxl[j]) - mul_rn(sum_x[j], sl[j])) / D
            tm[j] = (mul_rn(sl2[j], sum_x[j]) - mul_rn(sl[j], sxl[j])) / D
            if tm[j] > _F0:
                tm[j] = _F0
                ts[j] = sxl[j] / sl2[j]
        _lane_error(nl, n, xt, wt, Laux, ts, tm, use_mad, err)
        any_better = False
        for j in range(nl):
            if take[j] != 0 and err[j] < best[j]:
                any_better = True
                best[j] = err[j]
                scales[j] = ts[j]
                vmin[j] = tm[j]
            else:
                take[j] = 0
        if any_better:
            for i in range(n):
                for j in range(nl):
                    k = i * nl + j
                    Lt[k] = Laux[k] if take[j] != 0 else Lt[k]
    for j in range(nl):
        mins[j] = -vmin[j]
        if flat[j] != 0:
            scales[j] = _F0
            for i in range(n):
                Lt[i * nl + j] = 0
