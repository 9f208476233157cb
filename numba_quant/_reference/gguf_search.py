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
