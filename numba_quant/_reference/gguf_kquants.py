"""GGUF's K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), one row at a time, bit-exact with
ggml's C: ``quantize_row_<t>_ref`` without an importance matrix, the ``_impl`` variants
with one (what ``ggml_quantize_chunk`` calls), and each type's ``to_float``.

Every type provides ``quantize_row_<t>(x, qw, has_qw, out, fscratch, iscratch)`` (``x``
float32 of a multiple of 256 values, ``qw`` the importance weights of the row, used when
``has_qw``, ``out`` the row's uint8 blocks, float32 and int32 scratch arrays of at least
``K_SCRATCH_PER_BLOCK`` (1024) elements each: every further 1024 lets one more
super-block join the batches whose sub-blocks are searched side by side) and
``dequantize_row_<t>(data, out)``.  Q2_K and Q3_K live in
:mod:`numba_quant._reference.gguf_k_low`; this module re-exports them.
"""
import math

import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._reference.gguf_k_low import (  # noqa: F401  (re-exported)
    QK_K, batch_capacity, batch_views, dequantize_row_q2_k, dequantize_row_q3_k,
    imatrix_weights, load_f16, quantize_row_q2_k, quantize_row_q3_k, search_qkx,
    search_qx, store_f16, sum_squares)
from numba_quant._reference.gguf_rows import trips
from numba_quant._reference.gguf_search import (
    GROUP_MAX_EPS, make_qp_quants, nearest_int, wrap_i8, wrap_u8)
from numba_quant._reference.primitives import mul_rn

Q4_K_BYTES = 144
Q5_K_BYTES = 176
Q6_K_BYTES = 210

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_F63 = np.float32(63.0)


# ------------------------------------------------------------ Q4_K and Q5_K (shared)
# Block: d, dmin (float16), scales[12] (8 6-bit scales and 8 6-bit minimums), qs.
# Sub-blocks 0-3: scale in bits 0-5 of byte j, minimum in bits 0-5 of byte j+4;
# sub-blocks 4-7: low nibbles of scale and minimum in byte j+4, their top two bits in
# bits 6-7 of bytes j-4 (scale) and j (minimum).
@njit(cache=True, error_model="numpy")
def scale_min_k4(j, sb):
    """The 6-bit scale and minimum codes of sub-block ``j`` (ggml's get_scale_min_k4)."""
    if j < 4:
        return np.int64(sb[j]) & 63, np.int64(sb[j + 4]) & 63
    return ((np.int64(sb[j + 4]) & 0xF) | ((np.int64(sb[j - 4]) >> 6) << 4),
            (np.int64(sb[j + 4]) >> 4) | ((np.int64(sb[j]) >> 6) << 4))


@njit(cache=True, error_model="numpy")
def _put_scale_min_k4(sb, j, ls, lm):
    # ls, lm hold the values of C's uint8 variables.
    if j < 4:
        sb[j] = np.uint8(ls)
        sb[j + 4] = np.uint8(lm)
    else:
        sb[j + 4] = np.uint8(wrap_u8((ls & 0xF) | ((lm & 0xF) << 4)))
        sb[j - 4] = np.uint8(wrap_u8(np.int64(sb[j - 4]) | ((ls >> 4) << 6)))
        sb[j] = np.uint8(wrap_u8(np.int64(sb[j]) | ((lm >> 4) << 6)))


@njit(cache=True, error_model="numpy")
def _q45_k_batch(x, qw, has_qw, out, nb, v, nmax, nbytes):
    # The nb super-blocks of x into out as Q4_K (nmax 15, 144 bytes) or Q5_K (nmax 31,
    # 176 bytes): element weights, the search of all their sub-blocks, then each block.
    w, _, _, _, scales, mins, sw, L, _, _, _, Ls, Lm = v
    for s in range(nb):
        x0 = QK_K * s
        if has_qw:
            sigma2 = np.float32(2.0) * sum_squares(x[x0:x0 + QK_K]) / np.float32(QK_K)
            for j in range(8):
                k = x0 + 32 * j
                sw[8 * s + j] = imatrix_weights(qw[k:k + 32], x[k:k + 32], sigma2,
                                                w[k:k + 32])
        else:
            for j in range(8):
                k = x0 + 32 * j
                av_x = np.float32(math.sqrt(sum_squares(x[k:k + 32]) / np.float32(32.0)))
                for i in range(k, k + 32):
                    w[i] = av_x + abs(x[i])
    m = QK_K * nb
    if has_qw:
        search_qkx(8 * nb, 32, nmax, x[:m], w[:m], v, -0.9, 0.05, 36, False, True)
    elif nmax == 15:
        search_qkx(8 * nb, 32, nmax, x[:m], w[:m], v, -1.0, 0.1, 20, False, False)
    else:
        search_qkx(8 * nb, 32, nmax, x[:m], w[:m], v, -0.5, 0.1, 15, False, False)
    for s in range(nb):
        ob = out[nbytes * s:nbytes * (s + 1)]
        Lb = L[QK_K * s:QK_K * (s + 1)]
        _q45_k_codes(x[QK_K * s:QK_K * (s + 1)], has_qw, ob, scales[8 * s:8 * s + 8],
                     mins[8 * s:8 * s + 8], sw[8 * s:8 * s + 8], Lb, Ls[:8], Lm[:8], nmax)
        if nmax == 15:
            _pack_q4_k(Lb, ob)
        else:
            _pack_q5_k(Lb, ob)


@njit(cache=True, error_model="numpy")
def _q45_k_codes(x, has_qw, ob, scales, mins, sw, L, Ls, Lm, nmax):
    # One block's scale and minimum codes (d and dmin at ob[0:4], the 6-bit codes at
    # ob[4:16]) from its sub-blocks' fits, and its final codes into L.
    sb = ob[4:16]
    if has_qw:
        d_block = make_qp_quants(8, 63, scales, Ls, sw)
        m_block = make_qp_quants(8, 63, mins, Lm, sw)
        for j in range(8):
            ls = Ls[j]
            lm = Lm[j]
            if nmax == 31:
                # Only Q5_K's imatrix path clamps the codes again.
                ls = min(63, ls)
                lm = min(63, lm)
            _put_scale_min_k4(sb, j, ls, lm)
        dd = store_f16(ob, 0, d_block)
        dm = store_f16(ob, 2, m_block)
    else:
        max_scale = _F0
        max_min = _F0
        for j in range(8):
            if scales[j] > max_scale:
                max_scale = scales[j]
            if mins[j] > max_min:
                max_min = mins[j]
        inv_scale = _F63 / max_scale if max_scale > _F0 else _F0
        inv_min = _F63 / max_min if max_min > _F0 else _F0
        for j in range(8):
            ls = min(63, wrap_u8(nearest_int(mul_rn(inv_scale, scales[j]))))
            lm = min(63, wrap_u8(nearest_int(mul_rn(inv_min, mins[j]))))
            _put_scale_min_k4(sb, j, ls, lm)
        dd = store_f16(ob, 0, max_scale / _F63)
        dm = store_f16(ob, 2, max_min / _F63)
    for j in range(8):
        sc, m = scale_min_k4(j, sb)
        d = mul_rn(dd, np.float32(sc))
        if d == _F0:
            continue
        dmj = mul_rn(dm, np.float32(m))
        for i in range(32):
            L[32 * j + i] = max(0, min(nmax, nearest_int((x[32 * j + i] + dmj) / d)))


@njit(cache=True, error_model="numpy")
def _pack_q4_k(L, ob):
    # Byte 32*c + l: code 64*c + l in the low nibble, code 64*c + 32 + l in the high.
    for c in range(4):
        for l in range(32):
            ob[16 + 32 * c + l] = np.uint8(L[64 * c + l] | (L[64 * c + 32 + l] << 4))


@njit(cache=True, error_model="numpy")
def _pack_q5_k(L, ob):
    # qh[32] at 16: bit 2c of byte l is the fifth bit of code 64*c + l, bit 2c+1 that
    # of code 64*c + 32 + l; the low nibbles as in Q4_K, at 48.
    for l in range(32):
        ob[16 + l] = 0
    for c in range(4):
        for l in range(32):
            l1 = L[64 * c + l]
            l2 = L[64 * c + 32 + l]
            hi = 0
            if l1 > 15:
                l1 -= 16
                hi |= 1 << (2 * c)
            if l2 > 15:
                l2 -= 16
                hi |= 2 << (2 * c)
            ob[16 + l] = np.uint8(np.int64(ob[16 + l]) | hi)
            ob[48 + 32 * c + l] = np.uint8(l1 | (l2 << 4))


@njit(cache=True, error_model="numpy", inline="always")
def _quantize_row_q45_k(x, qw, has_qw, out, fscratch, iscratch, nmax):
    # The row's super-blocks a batch at a time (as many as the scratch has room for).
    nbytes = Q4_K_BYTES if nmax == 15 else Q5_K_BYTES
    cap = batch_capacity(fscratch, iscratch)
    v = batch_views(fscratch, iscratch, cap)
    blocks = x.size // QK_K
    for b0 in range(0, blocks, cap):
        b1 = min(blocks, b0 + cap)
        _q45_k_batch(x[QK_K * b0:QK_K * b1], qw[QK_K * b0:QK_K * b1], has_qw,
                     out[nbytes * b0:nbytes * b1], b1 - b0, v, nmax, nbytes)


@njit(cache=True, error_model="numpy", inline="always")
def quantize_row_q4_k(x, qw, has_qw, out, fscratch, iscratch):
    """Q4_K of one row ``x`` (float32, a multiple of 256) into ``out`` (144 bytes per
    256), with importance weights ``qw`` when ``has_qw``."""
    _quantize_row_q45_k(x, qw, has_qw, out, fscratch, iscratch, 15)


@njit(cache=True, error_model="numpy", inline="always")
def quantize_row_q5_k(x, qw, has_qw, out, fscratch, iscratch):
    """Q5_K of one row ``x`` (float32, a multiple of 256) into ``out`` (176 bytes per
    256), with importance weights ``qw`` when ``has_qw``."""
    _quantize_row_q45_k(x, qw, has_qw, out, fscratch, iscratch, 31)


@njit(cache=True, error_model="numpy")
def _dequantize_q45_k(data, out, nbytes, qs0, high):
    # Per 64 values: the low nibbles are sub-block 2c, the high ones 2c + 1 (Q5_K: plus
    # 16 where bit 2c, resp. 2c + 1, of qh[l] is set).  Unsigned offsets, a run-time
    # bound (gguf_rows.trips) and no branch in the inner loop, which then vectorises.
    # (Q4_K reads its code bytes 16..48 as qh and shifts them out of reach.)
    n = trips(out, 32)
    for b in range(out.size // QK_K):
        blk = data[nbytes * b:nbytes * (b + 1)]
        y = out[QK_K * b:QK_K * (b + 1)]
        d = load_f16(blk, 0)
        dmin = load_f16(blk, 2)
        sb = blk[4:16]
        qh = blk[16:48]
        for c in range(4):
            sc0, m0 = scale_min_k4(2 * c, sb)
            sc1, m1 = scale_min_k4(2 * c + 1, sb)
            dl0 = mul_rn(d, np.float32(sc0))
            ml0 = mul_rn(dmin, np.float32(m0))
            dl1 = mul_rn(d, np.float32(sc1))
            ml1 = mul_rn(dmin, np.float32(m1))
            y0 = np.uint64(64 * c)
            q = np.uint64(qs0 + 32 * c)
            # (int32 codes: an int64 one has no packed conversion to float32)
            shift = np.int32(2 * c) if high else np.int32(8)   # Q4_K: bits above the byte, 0
            for l in range(n):
                v = np.int32(blk[q + l])
                h = np.int32(np.int32(qh[l]) >> shift)
                lo = np.int32((v & 0xF) | ((h & 1) << 4))
                hi = np.int32((v >> 4) | (((h >> 1) & 1) << 4))
                y[y0 + l] = mul_rn(dl0, np.float32(lo)) - ml0
                y[y0 + np.uint64(32) + l] = mul_rn(dl1, np.float32(hi)) - ml1


@njit(cache=True, error_model="numpy", inline="always")
def dequantize_row_q4_k(data, out):
    """float32 values of the Q4_K row ``data`` (ggml's ``dequantize_row_q4_K``)."""
    _dequantize_q45_k(data, out, Q4_K_BYTES, 16, False)


@njit(cache=True, error_model="numpy", inline="always")
def dequantize_row_q5_k(data, out):
    """float32 values of the Q5_K row ``data`` (ggml's ``dequantize_row_q5_K``)."""
    _dequantize_q45_k(data, out, Q5_K_BYTES, 48, True)


# --------------------------------------------------------------------------- Q6_K
# Block: ql[128] (low nibbles), qh[64] (top two bits), scales[16] (int8), d.
# Per 128 values (half h): ql bytes 64h + l and 64h + 32 + l hold codes l, 32+l in their
# low nibbles and 64+l, 96+l in their high nibbles; qh byte 32h + l holds the top bits of
# codes l, 32+l, 64+l, 96+l in bits 0-1, 2-3, 4-5, 6-7.
@njit(cache=True, error_model="numpy")
def _q6_k_batch(x, qw, has_qw, out, nb, v):
    # The nb super-blocks of x into out: the search of all their sub-blocks (weights
    # qw, or ggml's built-in x*x of rmse_type 1), then each block.
    w, _, _, _, scales, _, _, L, _, _, _, _, _ = v
    m = QK_K * nb
    if has_qw:
        search_qx(16 * nb, 16, 32, x[:m], qw[:m], v)
    else:
        for i in range(m):
            w[i] = mul_rn(x[i], x[i])
        search_qx(16 * nb, 16, 32, x[:m], w[:m], v)
    for s in range(nb):
        _q6_k_block(x[QK_K * s:QK_K * (s + 1)], out[Q6_K_BYTES * s:Q6_K_BYTES * (s + 1)],
                    scales[16 * s:16 * s + 16], L[QK_K * s:QK_K * (s + 1)])


@njit(cache=True, error_model="numpy")
def _q6_k_block(x, ob, scales, L):
    # One block's scales and codes from its sub-blocks' fits.
    max_scale = _F0
    max_abs_scale = _F0
    for ib in range(16):
        scale = scales[ib]
        a = abs(scale)
        if a > max_abs_scale:
            max_abs_scale = a
            max_scale = scale
    if max_abs_scale < GROUP_MAX_EPS:
        for k in range(Q6_K_BYTES):
            ob[k] = 0
        return
    iscale = np.float32(-128.0) / max_scale
    dd = store_f16(ob, 208, _F1 / iscale)
    for ib in range(16):
        ob[192 + ib] = np.uint8(wrap_u8(min(127, nearest_int(mul_rn(iscale, scales[ib])))))
    for j in range(16):
        d = mul_rn(dd, np.float32(wrap_i8(np.int64(ob[192 + j]))))
        if d == _F0:
            continue
        for i in range(16):
            L[16 * j + i] = max(-32, min(31, nearest_int(x[16 * j + i] / d))) + 32
    for h in range(2):
        for l in range(32):
            j = 128 * h + l
            ob[64 * h + l] = np.uint8((L[j] & 0xF) | ((L[j + 64] & 0xF) << 4))
            ob[64 * h + 32 + l] = np.uint8((L[j + 32] & 0xF) | ((L[j + 96] & 0xF) << 4))
            ob[128 + 32 * h + l] = np.uint8((L[j] >> 4) | ((L[j + 32] >> 4) << 2)
                                            | ((L[j + 64] >> 4) << 4) | ((L[j + 96] >> 4) << 6))


@njit(cache=True, error_model="numpy", inline="always")
def quantize_row_q6_k(x, qw, has_qw, out, fscratch, iscratch):
    """Q6_K of one row ``x`` (float32, a multiple of 256) into ``out`` (210 bytes per
    256), with importance weights ``qw`` when ``has_qw``."""
    cap = batch_capacity(fscratch, iscratch)
    v = batch_views(fscratch, iscratch, cap)
    blocks = x.size // QK_K
    for b0 in range(0, blocks, cap):
        b1 = min(blocks, b0 + cap)
        _q6_k_batch(x[QK_K * b0:QK_K * b1], qw[QK_K * b0:QK_K * b1], has_qw,
                    out[Q6_K_BYTES * b0:Q6_K_BYTES * b1], b1 - b0, v)


@njit(cache=True, error_model="numpy", inline="always")
def dequantize_row_q6_k(data, out):
    """float32 values of the Q6_K row ``data`` (ggml's ``dequantize_row_q6_K``)."""
    n = trips(out, 16)
    for b in range(out.size // QK_K):
        blk = data[Q6_K_BYTES * b:Q6_K_BYTES * (b + 1)]
        y = out[QK_K * b:QK_K * (b + 1)]
        d = load_f16(blk, 208)
        for h in range(2):
            for k in range(2):
                # values 128h + 32i + 16k + l (i = 0..3, l = 0..15) share scale 8h + k + 2i;
                # unsigned offsets, a run-time bound (trips) and int32 codes: the loop
                # vectorises
                s0 = 192 + 8 * h + k
                d1 = mul_rn(d, np.float32(wrap_i8(np.int64(blk[s0]))))
                d2 = mul_rn(d, np.float32(wrap_i8(np.int64(blk[s0 + 2]))))
                d3 = mul_rn(d, np.float32(wrap_i8(np.int64(blk[s0 + 4]))))
                d4 = mul_rn(d, np.float32(wrap_i8(np.int64(blk[s0 + 6]))))
                y1 = np.uint64(128 * h + 16 * k)
                hb = np.uint64(128 + 32 * h + 16 * k)
                lb = np.uint64(64 * h + 16 * k)
                for l in range(n):
                    qh = np.int32(blk[hb + l])
                    lo0 = np.int32(blk[lb + l])
                    lo1 = np.int32(blk[lb + np.uint64(32) + l])
                    q1 = np.int32(((lo0 & 0xF) | ((qh & 3) << 4)) - 32)
                    q2 = np.int32(((lo1 & 0xF) | (((qh >> 2) & 3) << 4)) - 32)
                    q3 = np.int32(((lo0 >> 4) | (((qh >> 4) & 3) << 4)) - 32)
                    q4 = np.int32(((lo1 >> 4) | (((qh >> 6) & 3) << 4)) - 32)
                    y[y1 + l] = d1 * np.float32(q1)
                    y[y1 + np.uint64(32) + l] = d2 * np.float32(q2)
                    y[y1 + np.uint64(64) + l] = d3 * np.float32(q3)
                    y[y1 + np.uint64(96) + l] = d4 * np.float32(q4)
