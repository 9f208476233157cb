"""The scale searches of :mod:`gguf_search` over many groups at once, for the CPU and
GPU kernels.

The groups are the lanes of a transposed array (element ``i`` of group ``j`` at
``[i * nl + j]``), so that every loop over the lanes is a vector loop, while each lane
performs its group's operations in ggml's order, bit for bit the scalar search's.
"""
import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._reference.gguf_search import GROUP_MAX_EPS, _clamp, nearest_int
from numba_quant._reference.primitives import mul_rn

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_TENTH = np.float32(0.1)


@njit(cache=True, error_model="numpy", inline="always")
def _alternating(step, a, b, alt_a, alt_b):
    """``(src_a, src_b, dst_a, dst_b)`` of step ``step`` of a per-lane running state kept
    in two pairs of arrays: even steps read ``a``/``b`` and write ``alt_a``/``alt_b``,
    odd steps the other way.  A select stored back to the array it was read from
    (``a[j] = v if c else a[j]``) compiles to a masked store, several times slower on
    this hardware than a plain store to another array."""
    if step % 2 == 0:
        return a, b, alt_a, alt_b
    return alt_a, alt_b, a, b


@njit(cache=True, error_model="numpy", inline="always")
def _settle(steps, nl, a, b, alt_a, alt_b):
    # After ``steps`` steps of _alternating, the state back in a/b.
    if steps % 2 == 1:
        for j in range(nl):
            a[j] = alt_a[j]
            b[j] = alt_b[j]


@njit(cache=True, error_model="numpy")
def _lane_largest_magnitude(nl, n, xt, amax, vmax, alt_amax, alt_vmax):
    """Per lane, ggml's running ``amax < |x[i]|`` search: ``amax[j]`` and ``vmax[j]``
    (the first value of that magnitude; 0 and 0 for zeros).  The running values
    alternate between the two pairs of arrays (:func:`_alternating`)."""
    for j in range(nl):
        amax[j] = _F0
        vmax[j] = _F0
    for i in range(n):
        src_a, src_v, dst_a, dst_v = _alternating(i, amax, vmax, alt_amax, alt_vmax)
        for j in range(nl):
            xv = xt[i * nl + j]
            ax = abs(xv)
            a = src_a[j]
            v = src_v[j]
            dst_a[j] = ax if ax > a else a
            dst_v[j] = xv if ax > a else v
    _settle(n, nl, amax, vmax, alt_amax, alt_vmax)


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
    _lane_largest_magnitude(nl, n, xt, amax, vmax, slx, sl2)
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
    # The running minimum and maximum alternate between (vmin, vmax) and (ts, tm), free
    # until the trials (_alternating).
    for i in range(1, n):
        src_lo, src_hi, dst_lo, dst_hi = _alternating(i - 1, vmin, vmax, ts, tm)
        for j in range(nl):
            xv = xt[i * nl + j]
            w = wt[i * nl + j]
            lo = src_lo[j]
            hi = src_hi[j]
            dst_lo[j] = xv if xv < lo else lo
            dst_hi[j] = xv if xv > hi else hi
            sum_w[j] = sum_w[j] + w
            sum_x[j] = sum_x[j] + mul_rn(w, xv)
    _settle(n - 1, nl, vmin, vmax, ts, tm)
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


@njit(cache=True, error_model="numpy", inline="always")
def _q3_move(x, l, sumlx, suml2, nmax):
    # One step of make_q3_quants' coordinate descent for the value x with code l (of
    # [-nmax, nmax)), branch-free: (whether the move is taken, the new code, sums).
    w = mul_rn(x, x)
    wx = mul_rn(w, x)
    fl = np.float32(l)
    slx0 = sumlx - mul_rn(wx, fl)
    sl20 = suml2 - mul_rn(mul_rn(w, fl), fl)
    new_l = _clamp(nearest_int(mul_rn(x, sl20) / slx0), -nmax, nmax - 1)
    fnl = np.float32(new_l)
    slx = slx0 + mul_rn(wx, fnl)
    sl2 = sl20 + mul_rn(mul_rn(w, fnl), fnl)
    take = (slx0 > _F0) & (new_l != l) & (sl2 > _F0) & (
        mul_rn(mul_rn(slx, slx), suml2) > mul_rn(mul_rn(sumlx, sumlx), sl2))
    return take, new_l, slx, sl2


@njit(cache=True, error_model="numpy")
def _q3_sweep(nl, n, nmax, xt, L_in, L_out, sumlx, suml2, alt_lx, alt_l2, changed):
    # One sweep over the n values of each of the nl lanes, codes from L_in to L_out, the
    # lanes' sums in sumlx/suml2 (alt_lx/alt_l2: scratch); changed[j]: the moves lane j
    # made.  Returns the number of lanes that moved.  Every store is a select written
    # to another array than the one read: codes from L_in to L_out, the sums
    # alternating between the two pairs (_alternating).
    for j in range(nl):
        changed[j] = 0
    for i in range(n):
        src_lx, src_l2, dst_lx, dst_l2 = _alternating(i, sumlx, suml2, alt_lx, alt_l2)
        for j in range(nl):
            k = i * nl + j
            l = L_in[k]
            lx = src_lx[j]
            l2 = src_l2[j]
            take, new_l, slx, sl2 = _q3_move(xt[k], l, lx, l2, nmax)
            L_out[k] = new_l if take else l
            dst_lx[j] = slx if take else lx
            dst_l2[j] = sl2 if take else l2
            changed[j] += np.int32(take)
    _settle(n, nl, sumlx, suml2, alt_lx, alt_l2)
    moved = 0
    for j in range(nl):
        moved += 1 if changed[j] != 0 else 0
    return moved


@njit(cache=True, error_model="numpy")
def make_q3_quants_lanes(nl, n, nmax, xt, Lt, scales, fscratch, cx, cL, Laux, changed,
                         lane, kept):
    """ggml's ``make_q3_quants`` with ``do_rmse`` for ``nl`` groups of ``n`` at once,
    bit for bit the same per group.

    ``xt``: the groups' values transposed (element ``i`` of group ``j`` at
    ``[i * nl + j]``); ``Lt`` receives the codes (of ``[0, 2*nmax)``, 0 for an all-zero
    group) in the same layout and ``scales[j]`` each group's scale.  Scratch:
    ``fscratch`` at least ``10 * nl`` floats; ``cx``, ``cL`` and ``Laux`` as large as
    ``xt``; ``changed``, ``lane``, ``kept``: ``nl`` integers each.

    A group's sweeps stop at the first that moves no code, after one for most groups:
    the groups still moving after a sweep are copied together (``cx``, ``cL``) and
    swept on their own, so that the vector loops only carry groups that still move.
    """
    vmax = fscratch[0:nl]
    amax = fscratch[nl:2 * nl]
    sumlx = fscratch[2 * nl:3 * nl]
    suml2 = fscratch[3 * nl:4 * nl]
    alt_lx = fscratch[4 * nl:5 * nl]
    alt_l2 = fscratch[5 * nl:6 * nl]
    csx = fscratch[6 * nl:7 * nl]
    cs2 = fscratch[7 * nl:8 * nl]
    alt_csx = fscratch[8 * nl:9 * nl]
    alt_cs2 = fscratch[9 * nl:10 * nl]
    _lane_largest_magnitude(nl, n, xt, amax, vmax, alt_lx, alt_l2)
    for j in range(nl):
        vmax[j] = np.float32(-nmax) / vmax[j]
        sumlx[j] = _F0
        suml2[j] = _F0
    for i in range(n):
        for j in range(nl):
            k = i * nl + j
            xv = xt[k]
            l = _clamp(nearest_int(mul_rn(vmax[j], xv)), -nmax, nmax - 1)
            Lt[k] = l
            w = mul_rn(xv, xv)
            fl = np.float32(l)
            sumlx[j] = sumlx[j] + mul_rn(mul_rn(w, xv), fl)
            suml2[j] = suml2[j] + mul_rn(mul_rn(w, fl), fl)
    # Sweep 1 over every group, codes into Laux (their place from now on).  The groups
    # that moved go on in cx and cL/Lt (alternating, stride na); lane[a]: the group of
    # column a.
    na = 0
    if _q3_sweep(nl, n, nmax, xt, Lt, Laux, sumlx, suml2, alt_lx, alt_l2, changed) > 0:
        for j in range(nl):
            if changed[j] != 0:
                lane[na] = j
                na += 1
        for i in range(n):
            for a in range(na):
                cx[i * na + a] = xt[i * nl + lane[a]]
                cL[i * na + a] = Laux[i * nl + lane[a]]
        for a in range(na):
            csx[a] = sumlx[lane[a]]
            cs2[a] = suml2[lane[a]]
    c_in = cL
    c_out = Lt
    for _ in range(4):
        # c_in: the current codes (a sweep that moves none leaves c_out equal to it).
        if na == 0 or _q3_sweep(na, n, nmax, cx, c_in, c_out, csx, cs2, alt_csx, alt_cs2,
                                changed) == 0:
            break
        c_in, c_out = c_out, c_in
        # Groups that stopped moving are done: back to Laux; the others close up.
        nk = 0
        for a in range(na):
            if changed[a] != 0:
                kept[nk] = a
                nk += 1
            else:
                _q3_done(n, nl, na, a, lane[a], c_in, csx, cs2, Laux, sumlx, suml2)
        for i in range(n):
            for b in range(nk):
                cx[i * nk + b] = cx[i * na + kept[b]]
                c_in[i * nk + b] = c_in[i * na + kept[b]]
        for b in range(nk):
            lane[b] = lane[kept[b]]
            csx[b] = csx[kept[b]]
            cs2[b] = cs2[kept[b]]
        na = nk
    for a in range(na):
        _q3_done(n, nl, na, a, lane[a], c_in, csx, cs2, Laux, sumlx, suml2)
    for j in range(nl):
        zero = amax[j] < GROUP_MAX_EPS
        scales[j] = _F0 if zero or not suml2[j] > _F0 else sumlx[j] / suml2[j]
    for i in range(n):
        for j in range(nl):
            k = i * nl + j
            Lt[k] = 0 if amax[j] < GROUP_MAX_EPS else Laux[k] + np.int32(nmax)


@njit(cache=True, error_model="numpy", inline="always")
def _q3_done(n, nl, na, a, j, cL, csx, cs2, Laux, sumlx, suml2):
    # Column a of the moving groups (group j) back to its place.
    for i in range(n):
        Laux[i * nl + j] = cL[i * na + a]
    sumlx[j] = csx[a]
    suml2[j] = cs2[a]
