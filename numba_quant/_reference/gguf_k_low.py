"""GGUF's 2- and 3-bit K-quants (Q2_K, Q3_K), one row at a time, bit-exact with
ggml's C (``quantize_row_q2_K_ref`` / ``quantize_row_q3_K_ref`` without an importance
matrix, the ``_impl`` variants with one), and the helpers the K-quant rows share.

Row functions follow the GGUF contract: ``quantize_row_<t>(x, qw, has_qw, out,
fscratch, iscratch)`` writes the row's blocks into the uint8 ``out``; nothing is
allocated (the searches work in views of the two scratch arrays);
``dequantize_row_<t>(data, out)`` writes float32 values as ggml's ``to_float``.
"""
import math

import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._host.blocks_plan import F16
from numba_quant._reference.blocks import f16_bits_to_f32, f32_to_f16_bits, round_to
from numba_quant._reference.gguf_rows import trips
from numba_quant._reference.gguf_lanes import (
    make_q3_quants_lanes, make_qkx_lanes, make_qx_quants_lanes)
from numba_quant._reference.gguf_search import (
    _clamp, _largest_magnitude, make_qp_quants, make_qx_quants, nearest_int, wrap_i8,
    wrap_u8)
from numba_quant._reference.primitives import mul_rn

QK_K = 256
Q2_K_BYTES = 84
Q3_K_BYTES = 110

# Scratch of the K-quant rows.  A row is quantized a batch of super-blocks at a time:
# the sub-blocks of the whole batch are searched side by side (the *_lanes searches of
# gguf_lanes, on transposed copies), so that the searches' loops over lanes are long
# enough to vectorise, while each sub-block keeps ggml's order of operations.  A batch
# holds as many super-blocks as the scratch has room for (batch_capacity): the CPU
# kernels give each task room for GGUF_CPU_SUPER_BLOCKS, the GPU's local arrays
# (GGUF_FSCRATCH, GGUF_ISCRATCH) room for two.  Elements per super-block of the batch:
# float32 element weights, values and weights in lane order (256 each), the lanes'
# search state (13 per sub-block), sub-block scales, minimums and weight sums; int32
# codes, lane-order codes, trial codes (256 each), lane flags (2 per sub-block), scale
# and minimum codes.  Up to 16 sub-blocks per super-block.
K_SCRATCH_PER_BLOCK = 1024
_SUB = 16

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


@njit(cache=True, error_model="numpy")
def store_f16(out, pos, v):
    """Write float32 ``v`` rounded to float16 (ties to even, as ggml's FP32_TO_FP16)
    little-endian at ``out[pos:pos+2]``; return the float16's value as float32."""
    bits = f32_to_f16_bits(round_to(np.float32(v), F16))
    out[pos] = np.uint8(bits & 0xFF)
    out[pos + 1] = np.uint8(bits >> 8)
    return f16_bits_to_f32(bits)


@njit(cache=True, error_model="numpy")
def load_f16(data, pos):
    """The float16 stored little-endian at ``data[pos:pos+2]``, as float32."""
    return f16_bits_to_f32(np.uint16(data[pos]) | (np.uint16(data[pos + 1]) << np.uint16(8)))


@njit(cache=True, error_model="numpy")
def pack_2bit(L, out, pos, k0=0):
    """ggml's 2-bit packing of the 256 codes from ``L[k0]``: byte ``pos + 32*h + l``
    holds codes ``128*h + l``, ``+32``, ``+64``, ``+96`` in bits 0-1, 2-3, 4-5, 6-7."""
    n = trips(L, 32)
    for h in range(2):
        j0 = np.uint64(k0 + 128 * h)
        p0 = np.uint64(pos + 32 * h)
        for l in range(n):
            j = j0 + l
            out[p0 + l] = np.uint8(L[j] | (L[j + np.uint64(32)] << 2)
                                   | (L[j + np.uint64(64)] << 4) | (L[j + np.uint64(96)] << 6))


@njit(cache=True, error_model="numpy")
def sum_squares(x):
    """Sum of ``x[i]*x[i]`` in index order, float32."""
    s = _F0
    for i in range(x.size):
        s = s + mul_rn(x[i], x[i])
    return s


@njit(cache=True, error_model="numpy")
def imatrix_weights(qw, x, sigma2, w):
    """``w[i] = qw[i] * sqrt(sigma2 + x[i]*x[i])`` (ggml's imatrix weighting); returns
    their sum in index order."""
    sw = _F0
    for i in range(x.size):
        w[i] = mul_rn(qw[i], np.float32(math.sqrt(sigma2 + mul_rn(x[i], x[i]))))
    for i in range(x.size):
        sw = sw + w[i]
    return sw


@njit(cache=True, error_model="numpy")
def batch_capacity(fscratch, iscratch):
    """Super-blocks per batch that the scratch arrays have room for (at least one)."""
    return max(1, min(fscratch.size, iscratch.size) // K_SCRATCH_PER_BLOCK)


@njit(cache=True, error_model="numpy", inline="always")
def batch_views(fscratch, iscratch, cap):
    """The views of a batch of ``cap`` super-blocks: ``(w, xt, wt, lanes, scales, mins,
    sw, L, Lt, Laux, flags, Ls, Lm)`` (the layout above; per sub-block fields hold 16 per
    super-block)."""
    q = QK_K * cap
    s = _SUB * cap
    f = 3 * q + 13 * s
    i = 3 * q + 2 * s
    return (fscratch[0:q], fscratch[q:2 * q], fscratch[2 * q:3 * q], fscratch[3 * q:f],
            fscratch[f:f + s], fscratch[f + s:f + 2 * s], fscratch[f + 2 * s:f + 3 * s],
            iscratch[0:q], iscratch[q:2 * q], iscratch[2 * q:3 * q], iscratch[3 * q:i],
            iscratch[i:i + s], iscratch[i + s:i + 2 * s])


@njit(cache=True, error_model="numpy")
def _values_to_lanes(nl, n, x, xt):
    # Sub-block j's element i at [i * nl + j].
    for j in range(nl):
        for i in range(n):
            xt[i * nl + j] = x[n * j + i]


@njit(cache=True, error_model="numpy")
def _to_lanes(nl, n, x, w, xt, wt):
    # Values and weights in lane order.
    _values_to_lanes(nl, n, x, xt)
    _values_to_lanes(nl, n, w, wt)


@njit(cache=True, error_model="numpy")
def _from_lanes(nl, n, Lt, L):
    for j in range(nl):
        for i in range(n):
            L[n * j + i] = Lt[i * nl + j]


@njit(cache=True, error_model="numpy")
def search_qx(nl, n, nmax, x, w, v):
    """:func:`make_qx_quants` (rmse_type 1, weights ``w``) of the ``nl`` sub-blocks of
    ``n`` consecutive values in ``x``, searched side by side: scales into the batch's
    ``scales[:nl]``, codes into ``L[:nl * n]`` (``v``: :func:`batch_views`)."""
    _, xt, wt, lanes, scales, _, _, L, Lt, _, flags, _, _ = v
    m = nl * n
    _to_lanes(nl, n, x, w, xt, wt)
    make_qx_quants_lanes(nl, n, nmax, xt[:m], wt[:m], Lt[:m], scales[:nl], lanes[:6 * nl],
                         flags[:nl])
    _from_lanes(nl, n, Lt, L)


@njit(cache=True, error_model="numpy")
def search_qkx(nl, n, nmax, x, w, v, rmin, rdelta, nstep, use_mad, guarded):
    """ggml's make_qkx2_quants (``guarded`` False) or make_qkx3_quants of the ``nl``
    sub-blocks of ``n`` consecutive values in ``x`` with element weights ``w``, searched
    side by side: scales and minimums into the batch's ``scales[:nl]`` / ``mins[:nl]``,
    codes into ``L[:nl * n]`` (``v``: :func:`batch_views`)."""
    _, xt, wt, lanes, scales, mins, _, L, Lt, Laux, flags, _, _ = v
    m = nl * n
    _to_lanes(nl, n, x, w, xt, wt)
    make_qkx_lanes(nl, n, nmax, xt[:m], wt[:m], Lt[:m], Laux[:m], scales[:nl], mins[:nl],
                   lanes[:13 * nl], flags[:2 * nl], rmin, rdelta, nstep, use_mad, guarded)
    _from_lanes(nl, n, Lt, L)


# --------------------------------------------------------------------------- Q2_K
# Block: scales[16] (low nibble scale, high nibble minimum), qs[64] (2-bit codes), d, dmin.
@njit(cache=True, error_model="numpy")
def _q2_k_batch(x, qw, has_qw, out, nb, v):
    # The nb super-blocks of x into out: their element weights, the search of all their
    # sub-blocks, then each block's scales and codes.
    w, _, _, _, scales, mins, sw, L, _, _, _, Ls, Lm = v
    for s in range(nb):
        x0 = QK_K * s
        if has_qw:
            sigma2 = sum_squares(x[x0:x0 + QK_K]) / np.float32(QK_K)
            for j in range(16):
                k = x0 + 16 * j
                sw[16 * s + j] = imatrix_weights(qw[k:k + 16], x[k:k + 16], sigma2,
                                                 w[k:k + 16])
        else:
            for i in range(x0, x0 + QK_K):
                w[i] = abs(x[i])
    m = QK_K * nb
    if has_qw:
        search_qkx(16 * nb, 16, 3, x[:m], w[:m], v, -0.9, 0.05, 36, False, True)
    else:
        search_qkx(16 * nb, 16, 3, x[:m], w[:m], v, -0.5, 0.1, 15, True, False)
    for s in range(nb):
        _q2_k_block(x[QK_K * s:QK_K * (s + 1)], has_qw,
                    out[Q2_K_BYTES * s:Q2_K_BYTES * (s + 1)], scales[16 * s:16 * s + 16],
                    mins[16 * s:16 * s + 16], sw[16 * s:16 * s + 16],
                    L[QK_K * s:QK_K * (s + 1)], Ls[:16], Lm[:16])


@njit(cache=True, error_model="numpy")
def _q2_k_block(x, has_qw, ob, scales, mins, sw, L, Ls, Lm):
    # One block's scales and codes from its sub-blocks' fits.
    if has_qw:
        dm = make_qp_quants(16, 15, scales, Ls, sw)
        mm = make_qp_quants(16, 15, mins, Lm, sw)
        dm = store_f16(ob, 80, dm)
        mm = store_f16(ob, 82, mm)
        for j in range(16):
            ob[j] = np.uint8(wrap_u8(Ls[j] | (Lm[j] << 4)))
    else:
        max_scale = _F0
        max_min = _F0
        for j in range(16):
            if scales[j] > max_scale:
                max_scale = scales[j]
            if mins[j] > max_min:
                max_min = mins[j]
        q4scale = np.float32(15.0)
        if max_scale > _F0:
            iscale = q4scale / max_scale
            for j in range(16):
                ob[j] = np.uint8(wrap_u8(nearest_int(mul_rn(iscale, scales[j]))))
            dm = store_f16(ob, 80, max_scale / q4scale)
        else:
            for j in range(16):
                ob[j] = 0
            dm = store_f16(ob, 80, _F0)
        if max_min > _F0:
            iscale = q4scale / max_min
            for j in range(16):
                lm = nearest_int(mul_rn(iscale, mins[j]))
                ob[j] = np.uint8(wrap_u8(np.int64(ob[j]) | (lm << 4)))
            mm = store_f16(ob, 82, max_min / q4scale)
        else:
            mm = store_f16(ob, 82, _F0)
    for j in range(16):
        d = dm * np.float32(np.int64(ob[j]) & 0xF)
        if d == _F0:
            continue
        m = mul_rn(mm, np.float32(np.int64(ob[j]) >> 4))
        for i in range(16):
            L[16 * j + i] = max(0, min(3, nearest_int((x[16 * j + i] + m) / d)))
    pack_2bit(L, ob, 16)


@njit(cache=True, error_model="numpy", inline="always")
def quantize_row_q2_k(x, qw, has_qw, out, fscratch, iscratch):
    """Q2_K of one row ``x`` (float32, a multiple of 256) into ``out`` (84 bytes per
    256), with importance weights ``qw`` when ``has_qw``."""
    cap = batch_capacity(fscratch, iscratch)
    v = batch_views(fscratch, iscratch, cap)
    blocks = x.size // QK_K
    for b0 in range(0, blocks, cap):
        b1 = min(blocks, b0 + cap)
        _q2_k_batch(x[QK_K * b0:QK_K * b1], qw[QK_K * b0:QK_K * b1], has_qw,
                    out[Q2_K_BYTES * b0:Q2_K_BYTES * b1], b1 - b0, v)


@njit(cache=True, error_model="numpy", inline="always")
def dequantize_row_q2_k(data, out):
    """float32 values of the Q2_K row ``data`` (ggml's ``dequantize_row_q2_K``)."""
    n = trips(out, 16)
    for b in range(out.size // QK_K):
        blk = data[Q2_K_BYTES * b:Q2_K_BYTES * (b + 1)]
        y = out[QK_K * b:QK_K * (b + 1)]
        d = load_f16(blk, 80)
        dmin = load_f16(blk, 82)
        for h in range(2):
            for g in range(8):
                sc = np.int64(blk[8 * h + g])
                dl = d * np.float32(sc & 0xF)
                ml = dmin * np.float32(sc >> 4)
                shift = np.int32(2 * (g >> 1))
                # (unsigned offsets, a run-time bound and int32 codes: the loop vectorises)
                yl = np.uint64(128 * h + 16 * g)
                ql = np.uint64(16 + 32 * h + 16 * (g & 1))
                for l in range(n):
                    q = np.int32((np.int32(blk[ql + l]) >> shift) & np.int32(3))
                    y[yl + l] = mul_rn(dl, np.float32(q)) - ml


# --------------------------------------------------------------------------- Q3_K
# Block: hmask[32] (third bit of each code), qs[64] (low 2 bits), scales[12] (16 6-bit
# scales biased by 32: low nibbles in bytes 0-7, high pairs in bytes 8-11), d.
@njit(cache=True, error_model="numpy")
def _q3_scale_code(sb, j, o=0):
    # Sub-block j's scale code (-32 .. 31) of the block whose scales start at sb[o].
    lo = (np.int64(sb[o + j]) & 0xF) if j < 8 else (np.int64(sb[o + j - 8]) >> 4)
    return (lo | (((np.int64(sb[o + 8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)) - 32


@njit(cache=True, error_model="numpy")
def _q3_put_scale(sb, j, l, o):
    if j < 8:
        sb[o + j] = np.uint8(l & 0xF)
    else:
        sb[o + j - 8] = np.uint8(np.int64(sb[o + j - 8]) | ((l & 0xF) << 4))
    k = o + j % 4 + 8
    sb[k] = np.uint8(wrap_u8(np.int64(sb[k]) | ((l >> 4) << (2 * (j // 4)))))


@njit(cache=True, error_model="numpy")
def _search_q3(nl, x, v):
    # make_q3_quants of the nl sub-blocks of 16 in x, side by side: scales into the
    # batch's scales[:nl], codes into L[:16 * nl] (which holds the moving groups' codes
    # during the search).
    _, xt, wt, lanes, scales, _, _, L, Lt, Laux, flags, Ls, _ = v
    m = 16 * nl
    _values_to_lanes(nl, 16, x, xt)
    make_q3_quants_lanes(nl, 16, 4, xt[:m], Lt[:m], scales[:nl], lanes[:10 * nl], wt[:m],
                         L[:m], Laux[:m], flags[:nl], flags[nl:2 * nl], Ls[:nl])
    _from_lanes(nl, 16, Lt, L)


@njit(cache=True, error_model="numpy")
def _q3_k_batch(x, qw, has_qw, out, nb, v):
    # The nb super-blocks of x into out, in phases over the whole batch: the sub-blocks'
    # searches side by side, each super-block's scale codes, every value's final code
    # from its sub-block's coded scale, the packing.
    w, _, _, _, scales, dsub, sw, L, Lq, _, _, Ls, _ = v
    if has_qw:
        for s in range(nb):
            x0 = QK_K * s
            sigma2 = np.float32(2.0) * sum_squares(x[x0:x0 + QK_K]) / np.float32(QK_K)
            for j in range(16):
                k = x0 + 16 * j
                sw[16 * s + j] = imatrix_weights(qw[k:k + 16], x[k:k + 16], sigma2,
                                                 w[k:k + 16])
        search_qx(16 * nb, 16, 4, x[:QK_K * nb], w[:QK_K * nb], v)
    else:
        _search_q3(16 * nb, x[:QK_K * nb], v)
    for s in range(nb):
        _q3_k_scales(s, has_qw, out, scales, sw, Ls, dsub)
    # A sub-block whose coded scale is 0 keeps its search's codes.
    n = trips(x, 16)
    for j in range(16 * nb):
        d = dsub[j]
        k0 = np.uint64(16 * j)
        for i in range(n):
            code = _clamp(nearest_int(x[k0 + i] / d), -4, 3) + np.int32(4)
            Lq[k0 + i] = code if d != _F0 else L[k0 + i]
    for s in range(nb):
        _q3_k_pack(Lq, QK_K * s, out, Q3_K_BYTES * s)


@njit(cache=True, error_model="numpy")
def _q3_k_scales(s, has_qw, out, scales, sw, Ls, dsub):
    # Super-block s's 16 sub-block scales as 6-bit codes under one float16 d, into its
    # bytes 96-109; each sub-block's coded scale (d times its code) into dsub[16 s:].
    o = Q3_K_BYTES * s + 96
    for j in range(12):
        out[o + j] = 0
    if has_qw:
        d_block = make_qx_quants(16, 32, scales[16 * s:16 * s + 16], Ls, 1,
                                 sw[16 * s:16 * s + 16], True)
        for j in range(16):
            _q3_put_scale(out, j, Ls[j], o)
        dd = store_f16(out, o + 12, d_block)
    else:
        _, max_scale = _largest_magnitude(16, scales[16 * s:16 * s + 16])
        if max_scale != _F0:
            iscale = np.float32(-32.0) / max_scale
            for j in range(16):
                l = wrap_i8(nearest_int(mul_rn(iscale, scales[16 * s + j])))
                _q3_put_scale(out, j, max(-32, min(31, l)) + 32, o)
            dd = store_f16(out, o + 12, _F1 / iscale)
        else:
            dd = store_f16(out, o + 12, _F0)
    for j in range(16):
        dsub[16 * s + j] = dd * np.float32(_q3_scale_code(out, j, o))


@njit(cache=True, error_model="numpy")
def _q3_k_pack(L, k0, out, o):
    # The 256 codes (0-7) from L[k0] into the block at out[o]: hmask, then the low bits.
    # hmask: bit k of byte m is the third bit of code 32*k + m, which then loses it.
    # Without branches: on codes that come out either way, a branch per value cost more
    # than the rest of the block's packing.
    n = trips(L, 32)
    for m in range(n):
        h = np.int32(0)
        for k in range(8):
            j = np.uint64(k0 + 32 * k) + m
            high = np.int32(1) if L[j] > 3 else np.int32(0)
            h |= high << k
            L[j] -= 4 * high
        out[np.uint64(o) + m] = np.uint8(h)
    pack_2bit(L, out, o + 32, k0)


@njit(cache=True, error_model="numpy", inline="always")
def quantize_row_q3_k(x, qw, has_qw, out, fscratch, iscratch):
    """Q3_K of one row ``x`` (float32, a multiple of 256) into ``out`` (110 bytes per
    256), with importance weights ``qw`` when ``has_qw``."""
    cap = batch_capacity(fscratch, iscratch)
    v = batch_views(fscratch, iscratch, cap)
    blocks = x.size // QK_K
    for b0 in range(0, blocks, cap):
        b1 = min(blocks, b0 + cap)
        _q3_k_batch(x[QK_K * b0:QK_K * b1], qw[QK_K * b0:QK_K * b1], has_qw,
                    out[Q3_K_BYTES * b0:Q3_K_BYTES * b1], b1 - b0, v)


@njit(cache=True, error_model="numpy", inline="always")
def dequantize_row_q3_k(data, out):
    """float32 values of the Q3_K row ``data`` (ggml's ``dequantize_row_q3_K``)."""
    n = trips(out, 16)
    for b in range(out.size // QK_K):
        blk = data[Q3_K_BYTES * b:Q3_K_BYTES * (b + 1)]
        y = out[QK_K * b:QK_K * (b + 1)]
        d_all = load_f16(blk, 108)
        sb = blk[96:108]
        for h in range(2):
            for g in range(8):
                dl = d_all * np.float32(_q3_scale_code(sb, 8 * h + g))
                shift = np.int32(2 * (g >> 1))
                bit = np.int32(1 << (4 * h + (g >> 1)))
                off = 16 * (g & 1)
                yl = np.uint64(128 * h + 16 * g)
                ql = np.uint64(32 + 32 * h + off)
                hm = np.uint64(off)
                for l in range(n):
                    q = np.int32((np.int32(blk[ql + l]) >> shift) & np.int32(3))
                    q = np.int32(q - (np.int32(0) if (np.int32(blk[hm + l]) & bit) != 0
                                      else np.int32(4)))
                    y[yl + l] = dl * np.float32(q)
