"""An independent numpy oracle of ggml's GGUF types F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
Q5_1, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 and MXFP4 (with importance matrices where ggml uses
them), written from ggml's C semantics and sharing no code with numba_quant.

Arithmetic is float32 numpy, one rounding per operation (numpy never fuses), vectorised
across blocks; sums that ggml accumulates element by element are accumulated here in the
same order by looping over the position inside the block.  The oracle assumes finite
inputs whose blocks are not all subnormal (no infinite reciprocal scales).

``quantize(name, x, imatrix=None)`` -> uint8 (rows, row_size);
``dequantize(name, data, n_per_row)`` -> float32 (rows, n_per_row).
"""
import numpy as np

F = np.float32
LEVELS_IQ4 = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69,
                       89, 113], np.float32)
LEVELS_FP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.float32)
BLOCK = {"F16": (1, 2), "BF16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18),
         "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24), "IQ4_NL": (32, 18),
         "IQ4_XS": (256, 136), "TQ1_0": (256, 54), "TQ2_0": (256, 66), "MXFP4": (32, 17)}
USES_IMATRIX = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS"}


# --------------------------------------------------------------------------- helpers
def _inv(d):
    """1/d where d != 0, else 0 (float32)."""
    with np.errstate(divide="ignore"):
        return np.where(d != 0, F(1) / d, F(0)).astype(F)


def _half_bytes(v):
    return np.ascontiguousarray(np.asarray(v, F).astype("<f2")).view(np.uint8).reshape(
        v.shape + (2,))


def _from_half(b):
    return np.ascontiguousarray(b).view("<f2")[..., 0].astype(F)


def _round_away(v):
    t = np.trunc(v)
    return t + np.sign(v) * (np.abs(v - t) >= F(0.5))


def _rne(v):
    return np.rint(v).astype(np.int64)


def _signed_absmax(xb):
    # the element of largest magnitude, the first on ties; +0 for a block of zeros
    # (ggml's search starts from +0 and moves only on a strictly larger magnitude)
    v = np.take_along_axis(xb, np.argmax(np.abs(xb), axis=-1)[..., None], -1)[..., 0]
    return np.where(v == 0, F(0), v)


def _first_min(xb):
    # the smallest element, the first of equal ones (a zero minimum: the first zero's
    # sign), as a running ``v < min`` search finds it
    return np.take_along_axis(xb, np.argmin(xb, axis=-1)[..., None], -1)[..., 0]


def _first_max(xb):
    return np.take_along_axis(xb, np.argmax(xb, axis=-1)[..., None], -1)[..., 0]


def _seq_sum(terms):
    """Sum along the last axis one element after another (float32)."""
    s = np.zeros(terms.shape[:-1], F)
    for j in range(terms.shape[-1]):
        s = s + terms[..., j]
    return s


def _nibbles(codes):
    # (..., 32) codes -> (..., 16) bytes: value j low, value j + 16 high
    c = codes.astype(np.uint8)
    return (c[..., :16] & 15) | ((c[..., 16:] & 15) << 4)


def _qh(codes):
    bits = ((codes.astype(np.uint64) >> 4) & 1) << np.arange(32, dtype=np.uint64)
    return np.ascontiguousarray(bits.sum(axis=-1).astype("<u4")).view(np.uint8).reshape(
        codes.shape[:-1] + (4,))


def _qh_codes(b, qh):
    bits = (qh.astype(np.uint32)[..., :, None] >> np.arange(8, dtype=np.uint32)) & 1
    bits = bits.reshape(qh.shape[:-1] + (32,))
    lo = np.concatenate([b & 15, b >> 4], axis=-1).astype(np.int64)
    return lo | (bits.astype(np.int64) << 4)


def _sigma2_row(x):
    return _seq_sum(x * x) / F(x.shape[-1])


# --------------------------------------------------------------------------- searches
def _make_qx(xb, nmax, w):
    """ggml's make_qx_quants with weights (rmse_type 1): codes + nmax and the scale."""
    vmax = _signed_absmax(xb)
    zero = np.abs(vmax) < F(1e-15)
    vmax = np.where(zero, F(1), vmax)

    def codes(iscale):
        return np.clip(_rne(iscale[:, None] * xb), -nmax, nmax - 1)

    def sums(lv):
        fl = lv.astype(F)
        return _seq_sum((w * xb) * fl), _seq_sum((w * fl) * fl)

    iscale = F(-nmax) / vmax
    L = codes(iscale)
    sumlx, suml2 = sums(L)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 != 0, sumlx / suml2, F(0)).astype(F)
    best = scale * sumlx
    for k in range(-9, 10):
        if k == 0:
            continue
        iscale = -(F(nmax) + F(0.1) * F(k)) / vmax
        Lk = codes(iscale)
        sumlx, suml2 = sums(Lk)
        take = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        with np.errstate(divide="ignore", invalid="ignore"):
            new_scale = (sumlx / suml2).astype(F)
        L = np.where(take[:, None], Lk, L)
        scale = np.where(take, new_scale, scale)
        best = np.where(take, scale * sumlx, best)
    L = np.where(zero[:, None], 0, L + nmax)
    return L, np.where(zero, F(0), scale).astype(F)


def _make_qkx3(xb, nmax, w):
    """ggml's make_qkx3_quants (rmin -0.9, rdelta 0.05, 36 steps, squared error):
    codes, scale and the_min."""
    rmin, rdelta, nstep = F(-0.9), F(0.05), 36
    lo = _first_min(xb)
    lo = np.where(lo > 0, F(0), lo)
    hi = _first_max(xb)
    sum_w = _seq_sum(w)
    sum_x = _seq_sum(w * xb)
    flat = hi <= lo
    rng = np.where(flat, F(1), hi - lo)  # no fit for a constant non-negative block

    def err(L, scale, vmin):
        diff = (scale[:, None] * L.astype(F) + vmin[:, None]) - xb
        return _seq_sum(w * (diff * diff))

    iscale = F(nmax) / rng
    scale = F(1) / iscale
    L = np.clip(_rne(iscale[:, None] * (xb - lo[:, None])), 0, nmax)
    best = err(L, scale, lo)
    vmin = lo
    for k in range(nstep + 1):
        # ggml moves the minimum to each better fit, and later trials start from it
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            iscale = (rmin + rdelta * F(k) + F(nmax)) / np.where(flat, F(1), hi - vmin)
            v = iscale[:, None] * (xb - vmin[:, None])
        La = np.where(v > 0, _rne(np.minimum(v, F(nmax))), 0)
        fl = La.astype(F)
        sum_l = _seq_sum(w * fl)
        sum_l2 = _seq_sum((w * fl) * fl)
        sum_xl = _seq_sum((w * fl) * xb)
        D = sum_w * sum_l2 - sum_l * sum_l
        with np.errstate(divide="ignore", invalid="ignore"):
            t_scale = ((sum_w * sum_xl - sum_x * sum_l) / D).astype(F)
            t_min = ((sum_l2 * sum_x - sum_l * sum_xl) / D).astype(F)
            clipped = t_min > 0
            t_scale = np.where(clipped, sum_xl / sum_l2, t_scale).astype(F)
            t_min = np.where(clipped, F(0), t_min).astype(F)
            cur = err(La, t_scale, t_min)
        take = (D > 0) & (cur < best)
        L = np.where(take[:, None], La, L)
        best = np.where(take, cur, best)
        scale = np.where(take, t_scale, scale)
        vmin = np.where(take, t_min, vmin)
    L = np.where(flat[:, None], 0, L)
    return L, np.where(flat, F(0), scale).astype(F), np.where(flat, -lo, -vmin).astype(F)


def _iq4_index(v):
    """Index of the IQ4 level nearest to v with ggml's bisection tie rule."""
    hi = np.clip(np.searchsorted(LEVELS_IQ4, v, side="right"), 1, 15)
    lower = (v - LEVELS_IQ4[hi - 1]) < (LEVELS_IQ4[hi] - v)
    idx = np.where(lower, hi - 1, hi)
    idx = np.where(v <= LEVELS_IQ4[0], 0, idx)
    return np.where(v >= LEVELS_IQ4[15], 15, idx)


def _iq4_scales(xg, w):
    """Fitted scales of 32-value groups xg (G, 32) with weights w."""
    vmax = _signed_absmax(xg)
    zero = np.abs(vmax) < F(1e-15)
    vmax = np.where(zero, F(1), vmax)

    def sums(inv):
        q = LEVELS_IQ4[_iq4_index(inv[:, None] * xg)]
        return _seq_sum((w * q) * xg), _seq_sum((w * q) * q)

    sumqx, sumq2 = sums(F(1) / ((-vmax) / F(-127)))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(sumq2 > 0, sumqx / sumq2, F(0)).astype(F)
    best = d * sumqx
    for itry in range(-7, 8):
        sumqx, sumq2 = sums(F(itry - 127) / vmax)
        take = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(take, sumqx / sumq2, d).astype(F)
        best = np.where(take, d * sumqx, best)
    return np.where(zero, F(0), d).astype(F)


def _iq4_weights(xg, qw, sigma2):
    if qw is None:
        return xg * xg
    return qw * np.sqrt(sigma2[:, None] + xg * xg)


# --------------------------------------------------------------------------- quantize
def quantize(name, x, imatrix=None):
    x = np.ascontiguousarray(x, F)
    rows, n = x.shape
    bs, ts = BLOCK[name]
    nb = n // bs
    qw = imatrix if (imatrix is not None and name in USES_IMATRIX) else None
    if name == "F16":
        return _half_bytes(x).reshape(rows, 2 * n)
    if name == "BF16":
        b = x.view(np.uint32).astype(np.uint64)
        h = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype("<u2")
        return np.ascontiguousarray(h).view(np.uint8).reshape(rows, 2 * n)
    xb = x.reshape(rows * nb, bs)
    out = np.zeros((rows * nb, ts), np.uint8)
    if name == "Q8_0":
        d = np.max(np.abs(xb), axis=-1) / F(127)
        q = _round_away(xb * _inv(d)[:, None]).astype(np.int64)
        out[:, :2] = _half_bytes(d)
        out[:, 2:] = (q & 0xFF).astype(np.uint8)
    elif name in ("Q4_0", "Q5_0"):
        nmax = 8 if name == "Q4_0" else 16
        if qw is None:
            d = _signed_absmax(xb) / F(-nmax)
            c = np.trunc(xb * _inv(d)[:, None] + F(nmax + 0.5)).astype(np.int64)
            c = np.minimum(2 * nmax - 1, c)
        else:
            sig = np.repeat(_sigma2_row(x), nb)
            w = np.tile(qw.reshape(nb, bs), (rows, 1)) * np.sqrt(sig[:, None] + xb * xb)
            c, d = _make_qx(xb, nmax, w)
        out[:, :2] = _half_bytes(d)
        if name == "Q4_0":
            out[:, 2:] = _nibbles(c)
        else:
            out[:, 2:6] = _qh(c)
            out[:, 6:] = _nibbles(c)
    elif name in ("Q4_1", "Q5_1"):
        top = 15 if name == "Q4_1" else 31
        if qw is None:
            lo = _first_min(xb)
            d = (_first_max(xb) - lo) / F(top)
            c = np.trunc((xb - lo[:, None]) * _inv(d)[:, None] + F(0.5)).astype(np.int64)
            c = np.minimum(top, c)
            m = lo
        else:
            sig = np.repeat(_sigma2_row(x), nb)
            w = np.tile(qw.reshape(nb, bs), (rows, 1)) * np.sqrt(sig[:, None] + xb * xb)
            c, d, the_min = _make_qkx3(xb, top, w)
            m = -the_min
        out[:, :2] = _half_bytes(d)
        out[:, 2:4] = _half_bytes(m)
        if name == "Q4_1":
            out[:, 4:] = _nibbles(c)
        else:
            out[:, 4:8] = _qh(c)
            out[:, 8:] = _nibbles(c)
    elif name == "IQ4_NL":
        sigma2 = _seq_sum(xb * xb) * F(0.0625)
        w = _iq4_weights(xb, None if qw is None else np.tile(qw.reshape(nb, 32), (rows, 1)),
                         sigma2)
        d = _iq4_scales(xb, w)
        out[:, :2] = _half_bytes(d)
        out[:, 2:] = _nibbles(_iq4_index(_inv(d)[:, None] * xb))
    elif name == "IQ4_XS":
        nsb = rows * nb
        sigma2 = _seq_sum(xb * xb) * F(0.0078125)
        xg = xb.reshape(nsb * 8, 32)
        qg = None if qw is None else np.tile(qw.reshape(nb * 8, 32), (rows, 1))
        w = _iq4_weights(xg, qg, np.repeat(sigma2, 8))
        scales = _iq4_scales(xg, w).reshape(nsb, 8)
        first = np.argmax(np.abs(scales), axis=-1)
        max_scale = scales[np.arange(nsb), first]
        d = -max_scale / F(32)
        ls = np.clip(_rne(_inv(d)[:, None] * scales), -32, 31)
        dl = (d[:, None] * ls.astype(F)).reshape(-1)
        codes = _iq4_index(_inv(dl)[:, None] * xg)
        ls = ls + 32
        out[:, :2] = _half_bytes(d)
        sh = ((ls >> 4) << (2 * np.arange(8))).sum(axis=-1)
        out[:, 2] = sh & 0xFF
        out[:, 3] = sh >> 8
        out[:, 4:8] = (ls[:, 0::2] & 15) | ((ls[:, 1::2] & 15) << 4)
        out[:, 8:] = _nibbles(codes).reshape(nsb, 128)
    elif name in ("TQ1_0", "TQ2_0"):
        d = np.max(np.abs(xb), axis=-1)
        t = (_round_away(xb * _inv(d)[:, None]).astype(np.int64) + 1)
        if name == "TQ2_0":
            t = t.reshape(-1, 2, 4, 32)
            q = (t << (2 * np.arange(4))[None, None, :, None]).sum(axis=2)
            out[:, :64] = q.reshape(-1, 64)
            out[:, 64:66] = _half_bytes(d)
        else:
            p5 = np.array([81, 27, 9, 3, 1])
            q1 = (t[:, :160].reshape(-1, 5, 32) * p5[None, :, None]).sum(axis=1)
            q2 = (t[:, 160:240].reshape(-1, 5, 16) * p5[None, :, None]).sum(axis=1)
            q3 = (t[:, 240:].reshape(-1, 4, 4) * np.array([81, 27, 9, 3])[None, :, None]).sum(1)
            q = np.concatenate([q1, q2, q3], axis=-1)
            out[:, :52] = (q * 256 + 242) // 243
            out[:, 52:54] = _half_bytes(d)
    elif name == "MXFP4":
        amax = np.max(np.abs(xb), axis=-1)
        # floor(log2f(amax)): glibc's log2f rounds up to the next integer just below a
        # power of two, as the float64 logarithm rounded to float32 does
        lg = np.floor(np.log2(np.where(amax > 0, amax, F(1)).astype(np.float64)).astype(F))
        e = np.where(amax > 0, lg.astype(np.int64) + 125, 0) & 0xFF
        d = np.ldexp(F(1), (e - 128).astype(np.int32)).astype(F)
        err = np.abs(LEVELS_FP4[None, None, :] * d[:, None, None] - xb[:, :, None])
        out[:, 0] = e
        out[:, 1:] = _nibbles(np.argmin(err, axis=-1))
    else:
        raise ValueError(name)
    return out.reshape(rows, nb * ts)


# --------------------------------------------------------------------------- dequantize
def dequantize(name, data, n_per_row):
    rows = data.shape[0]
    bs, ts = BLOCK[name]
    if name == "F16":
        return _from_half(data.reshape(rows, n_per_row, 2))
    if name == "BF16":
        h = np.ascontiguousarray(data).view("<u2").astype(np.uint32) << 16
        return h.view(F).reshape(rows, n_per_row)
    b = np.ascontiguousarray(data).reshape(-1, ts)
    if name == "Q8_0":
        y = b[:, 2:].view(np.int8).astype(F) * _from_half(b[:, :2])[:, None]
    elif name == "Q4_0":
        c = np.concatenate([b[:, 2:] & 15, b[:, 2:] >> 4], axis=-1).astype(np.int64)
        y = (c - 8).astype(F) * _from_half(b[:, :2])[:, None]
    elif name == "Q4_1":
        c = np.concatenate([b[:, 4:] & 15, b[:, 4:] >> 4], axis=-1).astype(F)
        y = c * _from_half(b[:, :2])[:, None] + _from_half(b[:, 2:4])[:, None]
    elif name == "Q5_0":
        c = _qh_codes(b[:, 6:], b[:, 2:6])
        y = (c - 16).astype(F) * _from_half(b[:, :2])[:, None]
    elif name == "Q5_1":
        c = _qh_codes(b[:, 8:], b[:, 4:8]).astype(F)
        y = c * _from_half(b[:, :2])[:, None] + _from_half(b[:, 2:4])[:, None]
    elif name == "IQ4_NL":
        c = np.concatenate([b[:, 2:] & 15, b[:, 2:] >> 4], axis=-1)
        y = _from_half(b[:, :2])[:, None] * LEVELS_IQ4[c]
    elif name == "IQ4_XS":
        d = _from_half(b[:, :2])
        sh = b[:, 2].astype(np.int64) | (b[:, 3].astype(np.int64) << 8)
        lo = np.stack([b[:, 4:8] & 15, b[:, 4:8] >> 4], axis=-1).reshape(-1, 8)
        ls = lo.astype(np.int64) | (((sh[:, None] >> (2 * np.arange(8))) & 3) << 4)
        dl = d[:, None] * (ls - 32).astype(F)
        qs = b[:, 8:].reshape(-1, 8, 16)
        c = np.concatenate([qs & 15, qs >> 4], axis=-1)
        y = dl[:, :, None] * LEVELS_IQ4[c]
    elif name == "TQ2_0":
        q = b[:, :64].reshape(-1, 2, 1, 32).astype(np.int64)
        t = (q >> (2 * np.arange(4))[None, None, :, None]) & 3
        y = (t - 1).astype(F).reshape(-1, 256) * _from_half(b[:, 64:66])[:, None]
    elif name == "TQ1_0":
        def trits(byts, count):
            p = np.array([1, 3, 9, 27, 81])[:count]
            q = (byts.astype(np.int64)[:, None, :] * p[None, :, None]) & 0xFF
            return ((q * 3) >> 8).reshape(byts.shape[0], -1)
        t = np.concatenate([trits(b[:, :32], 5), trits(b[:, 32:48], 5),
                            trits(b[:, 48:52], 4)], axis=-1)
        y = (t - 1).astype(F) * _from_half(b[:, 52:54])[:, None]
    elif name == "MXFP4":
        e = b[:, 0].astype(np.int32)
        d = np.ldexp(F(1), e - 128).astype(F)
        c = np.concatenate([b[:, 1:] & 15, b[:, 1:] >> 4], axis=-1)
        y = LEVELS_FP4[c] * d[:, None]
    else:
        raise ValueError(name)
    return np.ascontiguousarray(y, F).reshape(rows, n_per_row)
