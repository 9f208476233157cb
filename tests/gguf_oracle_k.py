"""An independent numpy model of ggml's K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), for
the tests: written from ggml's C semantics, vectorised over all (sub-)blocks of an
array at once, sharing no code with numba_quant.

Every search runs its per-element loop in ggml's order with float32 numpy vectors that
hold one lane per group, so each lane sees exactly the C arithmetic of its group (C's
sequential sums, float32 products, integer codes converted to float32).  Groups whose
search stops early (coordinate descents) are masked out, as C's ``break`` does.

``quantize(name, x, imatrix=None)`` returns uint8 ``(rows, row_size)``;
``dequantize(name, data, n_per_row)`` float32 ``(rows, n_per_row)``.
"""
import numpy as np

F = np.float32
QK = 256
EPS = F(1e-15)
BYTES = {"Q2_K": 84, "Q3_K": 110, "Q4_K": 144, "Q5_K": 176, "Q6_K": 210}


def nint(v):
    """ggml's nearest_int: the low 23 bits of v + 1.5*2**23, as int32."""
    s = np.asarray(v, F) + F(12582912.0)
    return (s.view(np.int32) & 0x7FFFFF) - 0x400000


def f16(v):
    """float32 -> (float16 bits as uint16, float16 value as float32)."""
    h = np.asarray(v, F).astype(np.float16)
    return h.view(np.uint16), h.astype(F)


def _first_absmax(x):
    rows = np.arange(x.shape[0])
    k = np.argmax(np.abs(x), axis=1)
    return x[rows, k], np.abs(x[rows, k])


def _wsums(x, w, l):
    lf = l.astype(F)
    sx = np.zeros(x.shape[0], F)
    s2 = np.zeros(x.shape[0], F)
    for i in range(x.shape[1]):
        sx = sx + (w[:, i] * x[:, i]) * lf[:, i]
        s2 = s2 + (w[:, i] * lf[:, i]) * lf[:, i]
    return sx, s2


def qx(x, nmax, w):
    """make_qx_quants with rmse_type 1 and weights w (per group rows): scale, codes."""
    vmax, amax = _first_absmax(x)
    zero = amax < EPS
    iscale = F(-nmax) / vmax
    l = np.clip(nint(iscale[:, None] * x), -nmax, nmax - 1)
    codes = l + nmax
    sx, s2 = _wsums(x, w, l)
    scale = np.where(s2 != 0, sx / s2, F(0))
    best = scale * sx
    for k in range(-9, 10):
        if k == 0:
            continue
        isc = -(F(nmax) + F(0.1) * F(k)) / vmax
        l = np.clip(nint(isc[:, None] * x), -nmax, nmax - 1)
        tx, t2 = _wsums(x, w, l)
        better = (t2 > 0) & (tx * tx > best * t2)
        codes = np.where(better[:, None], l + nmax, codes)
        scale = np.where(better, tx / t2, scale)
        best = np.where(better, scale * tx, best)
    codes[zero] = 0
    scale[zero] = 0
    return scale.astype(F), codes


def q3(x, nmax):
    """make_q3_quants with do_rmse: scale, codes in [0, 2*nmax)."""
    vmax, amax = _first_absmax(x)
    zero = amax < EPS
    iscale = F(-nmax) / vmax
    L = np.clip(nint(iscale[:, None] * x), -nmax, nmax - 1)
    w = x * x
    sx, s2 = _wsums(x, w, L)
    active = np.ones(x.shape[0], bool)
    for _ in range(5):
        changed = np.zeros(x.shape[0], bool)
        for i in range(x.shape[1]):
            wi, xi, li = w[:, i], x[:, i], L[:, i].astype(F)
            slx = sx - (wi * xi) * li
            sl2 = s2 - (wi * li) * li
            new = np.clip(nint((xi * sl2) / slx), -nmax, nmax - 1)
            nf = new.astype(F)
            slx2 = slx + (wi * xi) * nf
            sl22 = sl2 + (wi * nf) * nf
            ok = (active & (slx > 0) & (new != L[:, i]) & (sl22 > 0)
                  & ((slx2 * slx2) * s2 > (sx * sx) * sl22))
            L[ok, i] = new[ok]
            sx = np.where(ok, slx2, sx)
            s2 = np.where(ok, sl22, s2)
            changed |= ok
        active &= changed
    scale = np.where(s2 > 0, sx / s2, F(0))
    L = L + nmax
    L[zero] = 0
    scale[zero] = 0
    return scale.astype(F), L


def qkx(x, w, nmax, rmin, rdelta, nstep, use_mad, guarded):
    """make_qkx2_quants (guarded False) / make_qkx3_quants (True): scale, -min, codes."""
    vmin = x[:, 0].copy()
    vmax = x[:, 0].copy()
    sum_w = w[:, 0].copy()
    sum_x = sum_w * x[:, 0]
    for i in range(1, x.shape[1]):
        vmin = np.where(x[:, i] < vmin, x[:, i], vmin)
        vmax = np.where(x[:, i] > vmax, x[:, i], vmax)
        sum_w = sum_w + w[:, i]
        sum_x = sum_x + w[:, i] * x[:, i]
    vmin = np.where(vmin > 0, F(0), vmin)
    flat = (vmax <= vmin) if guarded else (vmax == vmin)

    def error(codes, sc, mn):
        lf = codes.astype(F)
        e = np.zeros(x.shape[0], F)
        for i in range(x.shape[1]):
            diff = (sc * lf[:, i] + mn) - x[:, i]
            diff = np.abs(diff) if use_mad else diff * diff
            e = e + w[:, i] * diff
        return e

    iscale = F(nmax) / (vmax - vmin)
    scale = F(1) / iscale
    L = np.clip(nint(iscale[:, None] * (x - vmin[:, None])), 0, nmax)
    best = error(L, scale, vmin)
    for k in range(nstep + 1 if nstep >= 1 else 0):
        isc = ((F(rmin) + F(rdelta) * F(k)) + F(nmax)) / (vmax - vmin)
        v = isc[:, None] * (x - vmin[:, None])
        if guarded:
            l = np.where(v > 0, nint(np.where(v < F(nmax), v, F(nmax))), 0)
        else:
            l = np.clip(nint(v), 0, nmax)
        lf = l.astype(F)
        sl = np.zeros(x.shape[0], F)
        sl2 = np.zeros(x.shape[0], F)
        sxl = np.zeros(x.shape[0], F)
        for i in range(x.shape[1]):
            wl = w[:, i] * lf[:, i]
            sl = sl + wl
            sl2 = sl2 + wl * lf[:, i]
            sxl = sxl + wl * x[:, i]
        D = sum_w * sl2 - sl * sl
        ts = (sum_w * sxl - sum_x * sl) / D
        tm = (sl2 * sum_x - sl * sxl) / D
        pos = tm > 0
        tm = np.where(pos, F(0), tm)
        ts = np.where(pos, sxl / sl2, ts)
        cur = error(l, ts, tm)
        better = (D > 0) & (cur < best) & ~flat
        L = np.where(better[:, None], l, L)
        best = np.where(better, cur, best)
        scale = np.where(better, ts, scale)
        vmin = np.where(better, tm, vmin)
    L[flat] = 0
    scale = np.where(flat, F(0), scale)
    return scale.astype(F), (-vmin).astype(F), L


def qp(x, nmax, w):
    """make_qp_quants: scale, codes (as uint8 values) of non-negative x with weights w."""
    vmax = np.zeros(x.shape[0], F)
    for i in range(x.shape[1]):
        vmax = np.where(vmax > x[:, i], vmax, x[:, i])
    zero = vmax < EPS

    def mse(codes, sc):
        e = np.zeros(x.shape[0], F)
        for i in range(x.shape[1]):
            diff = x[:, i] - sc * codes[:, i].astype(F)
            e = e + (w[:, i] * diff) * diff
        return e

    iscale = F(nmax) / vmax
    best = mse(nint(iscale[:, None] * x) & 0xFF, F(1) / iscale)
    for k in range(-4, 5):
        if k == 0:
            continue
        isc = (F(0.1) * F(k) + F(nmax)) / vmax
        cur = mse(np.minimum(nmax, nint(isc[:, None] * x)), F(1) / isc)
        better = cur < best
        best = np.where(better, cur, best)
        iscale = np.where(better, isc, iscale)
    l = np.minimum(nmax, nint(iscale[:, None] * x))
    sx, s2 = _wsums(x, w, l)
    L = l & 0xFF
    active = np.ones(x.shape[0], bool)
    for _ in range(5):
        changed = np.zeros(x.shape[0], bool)
        for i in range(x.shape[1]):
            wi, xi, li = w[:, i], x[:, i], L[:, i].astype(F)
            slx = sx - (wi * xi) * li
            sl2 = s2 - (wi * li) * li
            new = np.minimum(nmax, nint((xi * sl2) / slx))
            nf = new.astype(F)
            slx2 = slx + (wi * xi) * nf
            sl22 = sl2 + (wi * nf) * nf
            ok = (active & (slx > 0) & (sl2 > 0) & (new != L[:, i])
                  & ((slx2 * slx2) * s2 > (sx * sx) * sl22))
            L[ok, i] = new[ok] & 0xFF
            sx = np.where(ok, slx2, sx)
            s2 = np.where(ok, sl22, s2)
            changed |= ok
        active &= changed
    scale = np.where(s2 > 0, sx / s2, F(0))
    L[zero] = 0
    scale[zero] = 0
    return scale.astype(F), L


# --------------------------------------------------------------------------- helpers
def _blocks(x, imatrix):
    x = np.ascontiguousarray(x, F)
    X = x.reshape(-1, QK)
    QW = None
    if imatrix is not None:
        QW = np.broadcast_to(np.asarray(imatrix, F).reshape(1, -1, QK),
                             (x.shape[0], x.shape[1] // QK, QK)).reshape(-1, QK)
    return X, QW


def _pos_max(a):
    # C's running "if (v > best) best = v" from +0: a -0.0 or negative maximum stays +0.
    m = a.max(1)
    return np.where(m > 0, m, F(0))


def _seq_sum(a):
    s = np.zeros(a.shape[0], F)
    for i in range(a.shape[1]):
        s = s + a[:, i]
    return s


def _imatrix_weights(X, QW, sigma2, group):
    w = QW * np.sqrt(sigma2[:, None] + X * X)
    return w, _seq_sum(w.reshape(-1, group)).reshape(X.shape[0], -1)


def _put16(out, pos, bits):
    out[:, pos] = bits & 0xFF
    out[:, pos + 1] = bits >> 8


def _get16(data, pos):
    bits = data[:, pos].astype(np.uint16) | (data[:, pos + 1].astype(np.uint16) << 8)
    return bits.view(np.float16).astype(F)


def _pack2(L):
    # L (B, 256) codes 0-3 -> (B, 64): byte 32h+l holds codes 128h+l+32k at bits 2k.
    L = L.reshape(-1, 2, 4, 32)
    return (L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4)
            | (L[:, :, 3] << 6)).reshape(-1, 64).astype(np.uint8)


def _unpack2(q):
    q = q.reshape(-1, 2, 1, 32).astype(np.int32)
    return ((q >> (2 * np.arange(4)[None, None, :, None])) & 3).reshape(-1, 256)


def _requant(X, d, m, lo, hi, L, group):
    # Codes of x/d (symmetric, m None) or (x+m)/d where d != 0; L elsewhere.
    B = X.shape[0]
    Xg = X.reshape(B, -1, group)
    num = Xg if m is None else Xg + m[:, :, None]
    with np.errstate(all="ignore"):
        l = np.clip(nint(num / d[:, :, None]), lo, hi)
    return np.where((d != 0)[:, :, None], l, L.reshape(B, -1, group)).reshape(B, QK)


# --------------------------------------------------------------------------- Q2_K
def quantize_q2_k(x, imatrix=None):
    X, QW = _blocks(x, imatrix)
    B = X.shape[0]
    out = np.zeros((B, 84), np.uint8)
    Xs = X.reshape(-1, 16)
    if QW is None:
        sc, mn, L = qkx(Xs, np.abs(Xs), 3, -0.5, 0.1, 15, True, False)
        sc, mn = sc.reshape(B, 16), mn.reshape(B, 16)
        max_scale = _pos_max(sc)
        max_min = _pos_max(mn)
        has_s, has_m = max_scale > 0, max_min > 0
        sb = np.where(has_s[:, None], nint((F(15) / max_scale)[:, None] * sc) & 0xFF, 0)
        sb = np.where(has_m[:, None], (sb | (nint((F(15) / max_min)[:, None] * mn) << 4)) & 0xFF,
                      sb)
        dbits, d = f16(np.where(has_s, max_scale / F(15), F(0)))
        mbits, dm = f16(np.where(has_m, max_min / F(15), F(0)))
    else:
        sigma2 = _seq_sum(X * X) / F(QK)
        w, sw = _imatrix_weights(X, QW, sigma2, 16)
        sc, mn, L = qkx(Xs, w.reshape(-1, 16), 3, -0.9, 0.05, 36, False, True)
        ds, Ls = qp(sc.reshape(B, 16), 15, sw)
        ms, Lm = qp(mn.reshape(B, 16), 15, sw)
        dbits, d = f16(ds)
        mbits, dm = f16(ms)
        sb = (Ls | (Lm << 4)) & 0xFF
    dq = d[:, None] * (sb & 0xF).astype(F)
    mq = dm[:, None] * (sb >> 4).astype(F)
    L = _requant(X, dq, mq, 0, 3, L, 16)
    out[:, :16] = sb
    out[:, 16:80] = _pack2(L)
    _put16(out, 80, dbits)
    _put16(out, 82, mbits)
    return out.reshape(x.shape[0], -1)


def dequantize_q2_k(data, n):
    blk = data.reshape(-1, 84)
    d, dm = _get16(blk, 80), _get16(blk, 82)
    sb = blk[:, :16].astype(np.int32)
    q = _unpack2(blk[:, 16:80]).reshape(-1, 16, 16).astype(F)
    dl = d[:, None] * (sb & 0xF).astype(F)
    ml = dm[:, None] * (sb >> 4).astype(F)
    y = dl[:, :, None] * q - ml[:, :, None]
    return y.reshape(-1, n)


# --------------------------------------------------------------------------- Q3_K
def _q3_pack_scales(l):
    # l (B, 16) 6-bit codes -> 12 bytes.
    sb = np.zeros((l.shape[0], 12), np.int32)
    sb[:, :8] = (l[:, :8] & 0xF) | ((l[:, 8:] & 0xF) << 4)
    hi = l >> 4
    for j in range(16):
        sb[:, 8 + j % 4] |= hi[:, j] << (2 * (j // 4))
    return sb & 0xFF


def _q3_unpack_scales(sb):
    sb = sb.astype(np.int32)
    lo = np.concatenate([sb[:, :8] & 0xF, sb[:, :8] >> 4], axis=1)
    j = np.arange(16)
    hi = (sb[:, 8 + j % 4] >> (2 * (j // 4))) & 3
    return (lo | (hi << 4)) - 32


def quantize_q3_k(x, imatrix=None):
    X, QW = _blocks(x, imatrix)
    B = X.shape[0]
    out = np.zeros((B, 110), np.uint8)
    Xs = X.reshape(-1, 16)
    if QW is None:
        sc, L = q3(Xs, 4)
        sc = sc.reshape(B, 16)
        k = np.argmax(np.abs(sc), axis=1)
        max_scale = sc[np.arange(B), k]
        nz = max_scale != 0
        iscale = F(-32) / max_scale
        l = ((nint(iscale[:, None] * sc) + 128) & 0xFF) - 128
        sb = np.where(nz[:, None], _q3_pack_scales(np.clip(l, -32, 31) + 32), 0)
        dbits, d = f16(np.where(nz, F(1) / iscale, F(0)))
    else:
        sigma2 = F(2) * _seq_sum(X * X) / F(QK)
        w, sw = _imatrix_weights(X, QW, sigma2, 16)
        sc, L = qx(Xs, 4, w.reshape(-1, 16))
        dblk, Ls = qx(sc.reshape(B, 16), 32, sw)
        sb = _q3_pack_scales(Ls)
        dbits, d = f16(dblk)
    dq = d[:, None] * _q3_unpack_scales(sb).astype(F)
    L = _requant(X, dq, None, -4, 3, L - 4, 16) + 4
    high = L > 3
    hmask = np.zeros((B, 32), np.int32)
    for bit in range(8):
        hmask |= high[:, 32 * bit:32 * bit + 32].astype(np.int32) << bit
    out[:, :32] = hmask
    out[:, 32:96] = _pack2(np.where(high, L - 4, L))
    out[:, 96:108] = sb
    _put16(out, 108, dbits)
    return out.reshape(x.shape[0], -1)


def dequantize_q3_k(data, n):
    blk = data.reshape(-1, 110)
    d = _get16(blk, 108)
    sc = _q3_unpack_scales(blk[:, 96:108]).astype(F)
    hm = blk[:, :32].astype(np.int32)
    high = np.concatenate([(hm >> b) & 1 for b in range(8)], axis=1)
    q = (_unpack2(blk[:, 32:96]) - 4 * (1 - high)).astype(F)
    y = (d[:, None] * sc)[:, :, None] * q.reshape(-1, 16, 16)
    return y.reshape(-1, n)


# --------------------------------------------------------------------------- Q4_K / Q5_K
def _k4_pack(ls, lm):
    sb = np.zeros((ls.shape[0], 12), np.int32)
    sb[:, 0:4] = ls[:, 0:4]
    sb[:, 4:8] = lm[:, 0:4]
    sb[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    sb[:, 0:4] |= (ls[:, 4:8] >> 4) << 6
    sb[:, 4:8] |= (lm[:, 4:8] >> 4) << 6
    return sb & 0xFF


def _k4_unpack(sb):
    sb = sb.astype(np.int32)
    sc = np.concatenate([sb[:, 0:4] & 63, (sb[:, 8:12] & 0xF) | ((sb[:, 0:4] >> 6) << 4)], 1)
    mn = np.concatenate([sb[:, 4:8] & 63, (sb[:, 8:12] >> 4) | ((sb[:, 4:8] >> 6) << 4)], 1)
    return sc, mn


def _q45_codes(x, imatrix, nmax, out):
    X, QW = _blocks(x, imatrix)
    B = X.shape[0]
    Xs = X.reshape(-1, 32)
    if QW is None:
        rmin, rdelta, nstep = (-1.0, 0.1, 20) if nmax == 15 else (-0.5, 0.1, 15)
        av = np.sqrt(_seq_sum(Xs * Xs) / F(32))
        sc, mn, L = qkx(Xs, av[:, None] + np.abs(Xs), nmax, rmin, rdelta, nstep, False, False)
        sc, mn = sc.reshape(B, 8), mn.reshape(B, 8)
        max_scale = _pos_max(sc)
        max_min = _pos_max(mn)
        inv_s = np.where(max_scale > 0, F(63) / max_scale, F(0))
        inv_m = np.where(max_min > 0, F(63) / max_min, F(0))
        ls = np.minimum(63, nint(inv_s[:, None] * sc) & 0xFF)
        lm = np.minimum(63, nint(inv_m[:, None] * mn) & 0xFF)
        dbits, d = f16(max_scale / F(63))
        mbits, dm = f16(max_min / F(63))
    else:
        sigma2 = F(2) * _seq_sum(X * X) / F(QK)
        w, sw = _imatrix_weights(X, QW, sigma2, 32)
        sc, mn, L = qkx(Xs, w.reshape(-1, 32), nmax, -0.9, 0.05, 36, False, True)
        ds, ls = qp(sc.reshape(B, 8), 63, sw)
        ms, lm = qp(mn.reshape(B, 8), 63, sw)
        if nmax == 31:
            ls, lm = np.minimum(63, ls), np.minimum(63, lm)
        dbits, d = f16(ds)
        mbits, dm = f16(ms)
    sb = _k4_pack(ls, lm)
    s6, m6 = _k4_unpack(sb)
    L = _requant(X, d[:, None] * s6.astype(F), dm[:, None] * m6.astype(F), 0, nmax, L, 32)
    _put16(out, 0, dbits)
    _put16(out, 2, mbits)
    out[:, 4:16] = sb
    return L


def quantize_q4_k(x, imatrix=None):
    out = np.zeros((x.size // QK, 144), np.uint8)
    L = _q45_codes(x, imatrix, 15, out).reshape(-1, 4, 2, 32)
    out[:, 16:] = (L[:, :, 0] | (L[:, :, 1] << 4)).reshape(-1, 128)
    return out.reshape(x.shape[0], -1)


def quantize_q5_k(x, imatrix=None):
    out = np.zeros((x.size // QK, 176), np.uint8)
    L = _q45_codes(x, imatrix, 31, out).reshape(-1, 4, 2, 32)
    qh = np.zeros((L.shape[0], 32), np.int32)
    for c in range(4):
        for half in range(2):
            qh |= (L[:, c, half] >> 4) << (2 * c + half)
    L = L & 0xF
    out[:, 16:48] = qh
    out[:, 48:] = (L[:, :, 0] | (L[:, :, 1] << 4)).reshape(-1, 128)
    return out.reshape(x.shape[0], -1)


def _dequantize_q45(data, n, size, qs0, with_high):
    blk = data.reshape(-1, size)
    d, dm = _get16(blk, 0), _get16(blk, 2)
    s6, m6 = _k4_unpack(blk[:, 4:16])
    qs = blk[:, qs0:qs0 + 128].reshape(-1, 4, 1, 32).astype(np.int32)
    q = (qs >> np.array([0, 4])[None, None, :, None]) & 0xF
    if with_high:
        qh = blk[:, 16:48].astype(np.int32)[:, None, None, :]
        bit = (2 * np.arange(4)[:, None] + np.arange(2)[None, :])[None, :, :, None]
        q = q + 16 * ((qh >> bit) & 1)
    q = q.reshape(-1, 8, 32).astype(F)
    y = (d[:, None] * s6.astype(F))[:, :, None] * q - (dm[:, None] * m6.astype(F))[:, :, None]
    return y.reshape(-1, n)


def dequantize_q4_k(data, n):
    return _dequantize_q45(data, n, 144, 16, False)


def dequantize_q5_k(data, n):
    return _dequantize_q45(data, n, 176, 48, True)


# --------------------------------------------------------------------------- Q6_K
def quantize_q6_k(x, imatrix=None):
    X, QW = _blocks(x, imatrix)
    B = X.shape[0]
    out = np.zeros((B, 210), np.uint8)
    Xs = X.reshape(-1, 16)
    sc, L = qx(Xs, 32, Xs * Xs if QW is None else QW.reshape(-1, 16))
    sc = sc.reshape(B, 16)
    k = np.argmax(np.abs(sc), axis=1)
    max_scale = sc[np.arange(B), k]
    live = np.abs(max_scale) >= EPS
    with np.errstate(all="ignore"):
        iscale = F(-128) / max_scale
        dbits, d = f16(F(1) / iscale)
        s8 = ((np.minimum(127, nint(iscale[:, None] * sc)) + 128) & 0xFF) - 128
    L = _requant(X, d[:, None] * s8.astype(F), None, -32, 31, L - 32, 16) + 32
    L4 = L.reshape(B, 2, 4, 32)
    lo = L4 & 0xF
    ql = np.concatenate([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)],
                        axis=2)
    hi = L4 >> 4
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)
    out[:, :128] = ql.reshape(B, 128)
    out[:, 128:192] = qh.reshape(B, 64)
    out[:, 192:208] = s8 & 0xFF
    _put16(out, 208, dbits)
    out[~live] = 0
    return out.reshape(x.shape[0], -1)


def dequantize_q6_k(data, n):
    blk = data.reshape(-1, 210)
    d = _get16(blk, 208)
    ql = blk[:, :128].reshape(-1, 2, 2, 32).astype(np.int32)
    qh = blk[:, 128:192].reshape(-1, 2, 1, 32).astype(np.int32)
    lo = np.stack([ql[:, :, 0] & 0xF, ql[:, :, 1] & 0xF, ql[:, :, 0] >> 4, ql[:, :, 1] >> 4], 2)
    hi = (qh >> (2 * np.arange(4)[None, None, :, None])) & 3
    q = ((lo | (hi << 4)) - 32).reshape(-1, 16, 16).astype(F)
    s8 = blk[:, 192:208].view(np.int8).astype(F)
    y = (d[:, None] * s8)[:, :, None] * q
    return y.reshape(-1, n)


QUANTIZE = {"Q2_K": quantize_q2_k, "Q3_K": quantize_q3_k, "Q4_K": quantize_q4_k,
            "Q5_K": quantize_q5_k, "Q6_K": quantize_q6_k}
DEQUANTIZE = {"Q2_K": dequantize_q2_k, "Q3_K": dequantize_q3_k, "Q4_K": dequantize_q4_k,
              "Q5_K": dequantize_q5_k, "Q6_K": dequantize_q6_k}


def quantize(name, x, imatrix=None):
    """uint8 ``(rows, row_size)`` of ggml's ``name`` quantization of float32 ``x``."""
    with np.errstate(all="ignore"):
        return QUANTIZE[name](np.asarray(x, F), imatrix)


def dequantize(name, data, n_per_row):
    """float32 ``(rows, n_per_row)`` of ggml's ``to_float`` for ``name``."""
    with np.errstate(all="ignore"):
        return DEQUANTIZE[name](np.asarray(data, np.uint8), n_per_row)
