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
from numba_quant._reference.gguf_search import (
    make_q3_quants, make_qkx_lanes, make_qp_quants, make_qx_quants, make_qx_quants_lanes,
    nearest_int, wrap_i8, wrap_u8)
from numba_quant._reference.primitives import mul_rn

QK_K = 256
Q2_K_BYTES = 84
Q3_K_BYTES = 110

# Scratch layout shared by the K-quant rows (offsets in elements; GGUF_FSCRATCH and
# GGUF_ISCRATCH, 2048 each, hold them).  The sub-blocks of a super-block are searched
# side by side (the *_lanes searches of gguf_search), on transposed copies.
# iscratch: the super-block's codes, sub-block scale codes and minimum codes, the
# transposed codes, lane flags, transposed trial codes.
I_L = 0
I_LS = 288
I_LM = 304
I_LT = 320
I_TAKE = 576
I_LAUXT = 608
# fscratch: sub-block scales, minimums, weight sums; transposed values and weights,
# the searches' lane state, the super-block's element weights.
F_SCALES = 32
F_MINS = 48
F_SW = 64
F_XT = 128
F_WT = 384
F_LANES = 640
F_W2 = 896

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
def pack_2bit(L, out, pos):
    """ggml's 2-bit packing of 256 codes: byte ``32*h + l`` holds codes ``128*h + l``,
    ``+32``, ``+64``, ``+96`` in bits 0-1, 2-3, 4-5, 6-7."""
    for h in range(2):
        for l in range(32):
            j = 128 * h + l
            out[pos + 32 * h + l] = np.uint8(L[j] | (L[j + 32] << 2) | (L[j + 64] << 4)
                                             | (L[j + 96] << 6))


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
def _to_lanes(x, w, nl, n, fscratch):
    # Sub-block j's element i at [i * nl + j], values and weights.
    for j in range(nl):
        for i in range(n):
            fscratch[F_XT + i * nl + j] = x[n * j + i]
            fscratch[F_WT + i * nl + j] = w[n * j + i]


@njit(cache=True, error_model="numpy")
def _codes_from_lanes(nl, n, iscratch):
    for j in range(nl):
        for i in range(n):
            iscratch[I_L + n * j + i] = iscratch[I_LT + i * nl + j]


@njit(cache=True, error_model="numpy")
def qx_sub_blocks_16(x, w, nmax, fscratch, iscratch):
    """:func:`make_qx_quants` (rmse_type 1, weights ``w``) of the 16 sub-blocks of 16
    values of a super-block ``x``, searched side by side: scales into
    ``fscratch[F_SCALES:F_SCALES+16]``, codes into ``iscratch[I_L:I_L+256]``."""
    _to_lanes(x, w, 16, 16, fscratch)
    make_qx_quants_lanes(16, 16, nmax, fscratch[F_XT:F_XT + QK_K], fscratch[F_WT:F_WT + QK_K],
                         iscratch[I_LT:I_LT + QK_K], fscratch[F_SCALES:F_SCALES + 16],
                         fscratch[F_LANES:F_LANES + 96], iscratch[I_TAKE:I_TAKE + 16])
    _codes_from_lanes(16, 16, iscratch)


@njit(cache=True, error_model="numpy")
def qkx_sub_blocks(x, w, nl, nmax, rmin, rdelta, nstep, use_mad, guarded, fscratch,
                   iscratch):
    """ggml's make_qkx2_quants (``guarded`` False) or make_qkx3_quants of the ``nl``
    sub-blocks of a super-block ``x`` with element weights ``w``, searched side by side:
    scales and minimums into ``fscratch[F_SCALES:]`` / ``fscratch[F_MINS:]``, codes into
    ``iscratch[I_L:I_L+256]``."""
    n = QK_K // nl
    _to_lanes(x, w, nl, n, fscratch)
    make_qkx_lanes(nl, n, nmax, fscratch[F_XT:F_XT + QK_K], fscratch[F_WT:F_WT + QK_K],
                   iscratch[I_LT:I_LT + QK_K], iscratch[I_LAUXT:I_LAUXT + QK_K],
                   fscratch[F_SCALES:F_SCALES + nl], fscratch[F_MINS:F_MINS + nl],
                   fscratch[F_LANES:F_LANES + 13 * nl], iscratch[I_TAKE:I_TAKE + 2 * nl],
                   rmin, rdelta, nstep, use_mad, guarded, nl < 16)
    _codes_from_lanes(nl, n, iscratch)


# --------------------------------------------------------------------------- Q2_K
# Block: scales[16] (low nibble scale, high nibble minimum), qs[64] (2-bit codes), d, dmin.
@njit(cache=True, error_model="numpy")
def _q2_k_block(x, qw, has_qw, ob, fscratch, iscratch):
    L = iscratch[I_L:I_L + QK_K]
    w = fscratch[F_W2:F_W2 + QK_K]
    scales = fscratch[F_SCALES:F_SCALES + 16]
    mins = fscratch[F_MINS:F_MINS + 16]
    if has_qw:
        sw = fscratch[F_SW:F_SW + 16]
        Ls = iscratch[I_LS:I_LS + 16]
        Lm = iscratch[I_LM:I_LM + 16]
        sigma2 = sum_squares(x) / np.float32(QK_K)
        for j in range(16):
            sw[j] = imatrix_weights(qw[16 * j:16 * j + 16], x[16 * j:16 * j + 16], sigma2,
                                    w[16 * j:16 * j + 16])
        qkx_sub_blocks(x, w, 16, 3, -0.9, 0.05, 36, False, True, fscratch, iscratch)
        dm = make_qp_quants(16, 15, scales, Ls, sw)
        mm = make_qp_quants(16, 15, mins, Lm, sw)
        dm = store_f16(ob, 80, dm)
        mm = store_f16(ob, 82, mm)
        for j in range(16):
            ob[j] = np.uint8(wrap_u8(Ls[j] | (Lm[j] << 4)))
    else:
        for i in range(QK_K):
            w[i] = abs(x[i])
        qkx_sub_blocks(x, w, 16, 3, -0.5, 0.1, 15, True, False, fscratch, iscratch)
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
    for b in range(x.size // QK_K):
        _q2_k_block(x[QK_K * b:QK_K * (b + 1)], qw[QK_K * b:QK_K * (b + 1)], has_qw,
                    out[Q2_K_BYTES * b:Q2_K_BYTES * (b + 1)], fscratch, iscratch)


@njit(cache=True, error_model="numpy", inline="always")
def dequantize_row_q2_k(data, out):
    """float32 values of the Q2_K row ``data`` (ggml's ``dequantize_row_q2_K``)."""
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
                shift = 2 * (g >> 1)
                q0 = 16 + 32 * h + 16 * (g & 1)
                y0 = 128 * h + 16 * g
                for l in range(16):
                    y[y0 + l] = mul_rn(dl, np.float32((np.int64(blk[q0 + l]) >> shift) & 3)) - ml


# --------------------------------------------------------------------------- Q3_K
# Block: hmask[32] (third bit of each code), qs[64] (low 2 bits), scales[12] (16 6-bit
# scales biased by 32: low nibbles in bytes 0-7, high pairs in bytes 8-11), d.
@njit(cache=True, error_model="numpy")
def _q3_scale_code(sb, j):
    lo = (np.int64(sb[j]) & 0xF) if j < 8 else (np.int64(sb[j - 8]) >> 4)
    return (lo | (((np.int64(sb[8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)) - 32


@njit(cache=True, error_model="numpy")
def _q3_put_scale(sb, j, l):
    if j < 8:
        sb[j] = np.uint8(l & 0xF)
    else:
        sb[j - 8] = np.uint8(np.int64(sb[j - 8]) | ((l & 0xF) << 4))
    sb[j % 4 + 8] = np.uint8(wrap_u8(np.int64(sb[j % 4 + 8]) | ((l >> 4) << (2 * (j // 4)))))


@njit(cache=True, error_model="numpy")
def _q3_k_block(x, qw, has_qw, ob, fscratch, iscratch):
    L = iscratch[I_L:I_L + QK_K]
    scales = fscratch[F_SCALES:F_SCALES + 16]
    sb = ob[96:108]
    for j in range(12):
        sb[j] = 0
    if has_qw:
        sw = fscratch[F_SW:F_SW + 16]
        Ls = iscratch[I_LS:I_LS + 16]
        sigma2 = np.float32(2.0) * sum_squares(x) / np.float32(QK_K)
        # The weights of all 16 sub-blocks, then their 16 searches side by side.
        wall = fscratch[F_W2:F_W2 + QK_K]
        for j in range(16):
            sw[j] = imatrix_weights(qw[16 * j:16 * j + 16], x[16 * j:16 * j + 16], sigma2,
                                    wall[16 * j:16 * j + 16])
        qx_sub_blocks_16(x, wall, 4, fscratch, iscratch)
        d_block = make_qx_quants(16, 32, scales, Ls, 1, sw, True)
        for j in range(16):
            _q3_put_scale(sb, j, Ls[j])
        dd = store_f16(ob, 108, d_block)
    else:
        max_scale = _F0
        amax = _F0
        for j in range(16):
            scales[j] = make_q3_quants(16, 4, x[16 * j:16 * j + 16], L[16 * j:16 * j + 16],
                                       True)
            a = abs(scales[j])
            if a > amax:
                amax = a
                max_scale = scales[j]
        if max_scale != _F0:
            iscale = np.float32(-32.0) / max_scale
            for j in range(16):
                l = wrap_i8(nearest_int(mul_rn(iscale, scales[j])))
                _q3_put_scale(sb, j, max(-32, min(31, l)) + 32)
            dd = store_f16(ob, 108, _F1 / iscale)
        else:
            dd = store_f16(ob, 108, _F0)
    for j in range(16):
        d = dd * np.float32(_q3_scale_code(sb, j))
        if d == _F0:
            continue
        for i in range(16):
            L[16 * j + i] = max(-4, min(3, nearest_int(x[16 * j + i] / d))) + 4
    for m in range(32):
        ob[m] = 0
    for j in range(QK_K):
        if L[j] > 3:
            ob[j % 32] = np.uint8(np.int64(ob[j % 32]) | (1 << (j // 32)))
            L[j] -= 4
    pack_2bit(L, ob, 32)


@njit(cache=True, error_model="numpy", inline="always")
def quantize_row_q3_k(x, qw, has_qw, out, fscratch, iscratch):
    """Q3_K of one row ``x`` (float32, a multiple of 256) into ``out`` (110 bytes per
    256), with importance weights ``qw`` when ``has_qw``."""
    for b in range(x.size // QK_K):
        _q3_k_block(x[QK_K * b:QK_K * (b + 1)], qw[QK_K * b:QK_K * (b + 1)], has_qw,
                    out[Q3_K_BYTES * b:Q3_K_BYTES * (b + 1)], fscratch, iscratch)


@njit(cache=True, error_model="numpy", inline="always")
def dequantize_row_q3_k(data, out):
    """float32 values of the Q3_K row ``data`` (ggml's ``dequantize_row_q3_K``)."""
    for b in range(out.size // QK_K):
        blk = data[Q3_K_BYTES * b:Q3_K_BYTES * (b + 1)]
        y = out[QK_K * b:QK_K * (b + 1)]
        d_all = load_f16(blk, 108)
        sb = blk[96:108]
        for h in range(2):
            for g in range(8):
                dl = d_all * np.float32(_q3_scale_code(sb, 8 * h + g))
                shift = 2 * (g >> 1)
                bit = 1 << (4 * h + (g >> 1))
                off = 16 * (g & 1)
                y0 = 128 * h + 16 * g
                for l in range(16):
                    q = (np.int64(blk[32 + 32 * h + off + l]) >> shift) & 3
                    q -= 0 if (np.int64(blk[off + l]) & bit) != 0 else 4
                    y[y0 + l] = dl * np.float32(q)
