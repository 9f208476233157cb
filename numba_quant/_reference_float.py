"""The arithmetic of the low-precision float formats, written once for the CPU and the GPU.

Scalar ``numba.njit`` functions called by the CPU kernels (:mod:`numba_quant._cpu_float`)
and the CUDA kernels (:mod:`numba_quant._cuda_float`):

* element conversions between float32/float64 and the byte codes of FP8 E4M3FN, FP8 E5M2,
  FP6 E3M2, FP6 E2M3, FP4 E2M1, E8M0 and MXINT8 (:func:`encode`, :func:`decode_f32`);
* the scale rules of OCP MX (torchao's four modes), NVFP4 and FP8 current scaling.

Element conversions are integer arithmetic on the source's bit pattern: the significand
is shifted right to the target's precision and rounded to nearest, ties to even, from the
bits shifted out, so no intermediate float rounding can intervene.  Format parameters
come from :data:`numba_quant._float_formats.PARAMS` by format code.
"""
import math

import numpy as np
from numba import njit

from numba_quant._float_formats import (  # noqa: F401  (kernels read them as ref.NAME)
    E2M1FN,
    E2M3FN,
    E3M2FN,
    E4M3FN,
    E5M2,
    E8M0FNU,
    INT8,
    PARAMS,
)
from numba_quant._primitives_float import f32_bits, f32_from_bits, f64_bits
from numba_quant._primitives import mantissa_bits, rint

# Constants passed between compiled functions go as np.int64(...)/np.bool_(...): a bare
# literal would make Numba compile a separate, literal-specialised copy of the callee.
# Scaling modes of to_mx (torchao's ScaleCalculationMode).
FLOOR, CEIL, EVEN, RCEIL = range(4)
# What a block kernel computes: MX (E8M0 scale from the block maximum), NVFP4 (E4M3
# scale from the block maximum and a per-tensor scale), FP8 (given float32 scales).
MX, NVFP4, FP8 = range(3)

F32_QNAN = 0x7FC00000
E8M0_NAN = 0xFF


@njit(cache=True)
def params(fmt):
    """``(ebits, mbits, bias, max_code, nan_code, inf_code, signed)`` of format ``fmt``."""
    return PARAMS[fmt]


# --------------------------------------------------------------------------- elements
@njit(cache=True)
def encode_bits(u, src_mbits, src_ebits, fmt, saturate):
    """The code of format ``fmt`` nearest (ties to even) to the float with bits ``u``.

    ``u`` is the source's bit pattern as an int64 (float32: 23 mantissa and 8 exponent
    bits; float64: 52 and 11).  Overflow (a magnitude that rounds above the largest
    finite value) gives the largest finite value when ``saturate`` or when the format
    has neither infinity nor NaN (fp6, fp4), else infinity (e5m2) or NaN (e4m3fn, e8m0).
    Infinities follow the same rule.  NaN gives the format's NaN with the input's sign;
    formats without NaN give a zero whose sign is the opposite of the NaN's (what
    ml_dtypes does).  E8M0 (no sign, no zero) gives NaN for zero and negative input.
    """
    ebits, mbits, bias, max_code, nan_code, inf_code, signed = params(fmt)
    sign = (u >> (src_mbits + src_ebits)) & 1
    exp_field = (u >> src_mbits) & ((1 << src_ebits) - 1)
    frac = u & ((np.int64(1) << src_mbits) - 1)
    sign_bit = sign << (ebits + mbits)
    src_emax = (1 << src_ebits) - 1
    if exp_field == src_emax:
        if frac != 0:  # NaN
            if nan_code < 0:
                return (1 - sign) << (ebits + mbits)
            return nan_code | (sign_bit if signed else 0)
        # infinity
        if signed == 0 and sign == 1:
            return nan_code
        if saturate or (inf_code < 0 and nan_code < 0):
            return max_code | sign_bit
        if inf_code >= 0:
            return inf_code | sign_bit
        return nan_code | (sign_bit if signed else 0)
    if signed == 0 and (sign == 1 or (exp_field == 0 and frac == 0)):
        return nan_code  # E8M0: no zero, no negative values
    src_bias = (1 << (src_ebits - 1)) - 1
    if exp_field == 0:
        if frac == 0:
            return sign_bit
        e = 1 - src_bias
        sig = frac
    else:
        e = exp_field - src_bias
        sig = frac | (np.int64(1) << src_mbits)
    emin = 1 - bias
    top = e if e > emin else emin
    shift = (top - mbits) - (e - src_mbits)
    if shift > src_mbits + 2:  # below half the smallest subnormal: rounds to zero
        shift = src_mbits + 2
    q = sig >> shift
    rest = sig & ((np.int64(1) << shift) - 1)
    half = np.int64(1) << (shift - 1)
    if rest > half or (rest == half and (q & 1) == 1):
        q += 1
    code = ((top - emin) << mbits) + q
    if code > max_code:
        if saturate or (nan_code < 0 and inf_code < 0):
            return max_code | sign_bit
        if inf_code >= 0:
            return inf_code | sign_bit
        return nan_code | (sign_bit if signed else 0)
    return code | sign_bit


@njit(cache=True)
def encode_f32(v, fmt, saturate):
    """The code of ``fmt`` nearest to the float32 ``v`` (see :func:`encode_bits`)."""
    return encode_bits(f32_bits(v), np.int64(23), np.int64(8), fmt, saturate)


@njit(cache=True)
def encode_f64(v, fmt, saturate):
    """The code of ``fmt`` nearest to the float64 ``v`` (see :func:`encode_bits`)."""
    return encode_bits(f64_bits(v), np.int64(52), np.int64(11), fmt, saturate)


@njit(cache=True)
def encode(v, fmt, saturate):
    """The code of ``fmt`` nearest to ``v`` (float32 or float64)."""
    if mantissa_bits(v) == 24:
        return encode_bits(f32_bits(v), np.int64(23), np.int64(8), fmt, saturate)
    return encode_bits(f64_bits(v), np.int64(52), np.int64(11), fmt, saturate)


@njit(cache=True)
def decode_f32_bits(code, fmt):
    """The float32 bit pattern (int64) of the value of ``code`` in format ``fmt``.

    Every value of these formats is a float32; NaN codes give the quiet NaN with the
    code's sign.
    """
    ebits, mbits, bias, max_code, nan_code, inf_code, signed = params(fmt)
    if signed == 0:  # E8M0
        if code == E8M0_NAN:
            return F32_QNAN
        if code == 0:
            return np.int64(1) << 22  # 2**-127, a float32 subnormal
        return np.int64(code) << 23
    width = ebits + mbits
    sign32 = np.int64((code >> width) & 1) << 31
    mag = np.int64(code) & ((1 << width) - 1)
    if nan_code >= 0 and mag == nan_code:
        return sign32 | F32_QNAN
    if inf_code >= 0 and mag > max_code:
        return sign32 | (F32_QNAN if mag != inf_code else 0x7F800000)
    exp_field = mag >> mbits
    frac = mag & ((1 << mbits) - 1)
    if exp_field == 0:
        if frac == 0:
            return sign32
        # Subnormal: normalise the fraction's leading bit p into float32's implicit bit.
        p = 0
        while (frac >> (p + 1)) != 0:
            p += 1
        e32 = p + (1 - bias) - mbits + 127
        return sign32 | (e32 << 23) | ((frac - (np.int64(1) << p)) << (23 - p))
    return sign32 | ((exp_field - bias + 127) << 23) | (frac << (23 - mbits))


@njit(cache=True)
def decode_f32(code, fmt):
    """The value of ``code`` in format ``fmt`` as a float32."""
    return f32_from_bits(decode_f32_bits(code, fmt))


# --------------------------------------------------------------------------- MXINT8
@njit(cache=True)
def encode_int8(v):
    """MXINT8 code of the float32 ``v`` (already divided by the block scale).

    ``round(v * 64)``, ties to even, clamped to [-127, 127]: two's complement int8 codes
    whose magnitudes stay symmetric (the OCP spec's largest magnitude 127/64).  NaN
    gives 0.
    """
    w = rint(v * np.float32(64.0))
    if w != w:
        return np.int8(0)
    if w > np.float32(127.0):
        w = np.float32(127.0)
    elif w < np.float32(-127.0):
        w = np.float32(-127.0)
    return np.int8(w)


@njit(cache=True)
def decode_int8(code):
    return np.float32(code) * np.float32(1.0 / 64.0)


# --------------------------------------------------------------------------- scales
@njit(cache=True)
def pow2_f32(k):
    """``2**k`` as a float32 for integer k in [-127, 127] (2**-127 is subnormal)."""
    if k < -126:
        return f32_from_bits(np.int64(1) << 22)
    return f32_from_bits(np.int64(k + 127) << 23)


@njit(cache=True)
def nan_max_abs(m, v):
    """``max(m, |v|)`` that keeps a NaN once seen (the running block maximum)."""
    a = abs(v)
    if a > m or a != a:
        return a
    return m


@njit(cache=True)
def mx_scale_byte(amax, mode, emax, mbits, elem_max):
    """The E8M0 scale byte of a block with maximum magnitude ``amax`` (float32, finite).

    FLOOR (OCP v1.0): ``floor(log2(amax)) - emax``, read from amax's exponent field (a
    subnormal amax counts as exponent -127); CEIL adds one when amax is not a power of
    two; EVEN first rounds amax's significand to ``mbits`` bits.  The three clamp the
    exponent to [-127, 128].  RCEIL: ``ceil(log2(amax / elem_max))`` with the quotient
    and its logarithm rounded to float32 (a quotient an ulp above a power of two can
    keep the lower exponent), clamped to [-127, 127]; a zero block gives byte 0.
    """
    if mode == RCEIL:
        if amax == 0:
            return 0
        ratio = np.float32(amax / np.float32(elem_max))
        # log2 in float64, then rounded to float32: the float32 log2 of a correctly
        # rounding library, the same on every target (no libm log2f needed).
        lg = np.float32(math.log2(np.float64(ratio)))
        e = np.int64(math.ceil(lg))
        if e < -127:
            e = -127
        elif e > 127:
            e = 127
        return e + 127
    bits = f32_bits(amax)
    if mode == EVEN:
        bits = (bits + (np.int64(1) << (22 - mbits))) & ~np.int64(0x7FFFFF)
    e = (bits >> 23) - 127 - emax
    if mode == CEIL and (bits & 0x7FFFFF) != 0:
        e += 1
    if e < -127:
        e = -127
    elif e > 128:
        e = 128
    return e + 127


@njit(cache=True)
def mx_divisor(byte, mode):
    """What the elements of a block with scale ``byte`` are divided by (FLOOR/CEIL/EVEN)
    or multiplied by (RCEIL), as torchao computes it.

    FLOOR/CEIL/EVEN divide by ``max(2**e, 2**-126)`` (so byte 0 divides by 2**-126 but
    dequantizes with 2**-127); RCEIL multiplies by ``2**-e``, by 1.0 for byte 0.
    """
    e = np.int64(byte) - 127
    if mode == RCEIL:
        if byte == 0:
            return np.float32(1.0)
        return pow2_f32(-e)
    if e > 127:
        return np.float32(np.inf)
    if e < -126:
        e = -126
    return pow2_f32(e)


@njit(cache=True)
def mx_element(v, fmt, divisor, mode, elem_max):
    """The element code of ``v`` (float32) in a block scaled by ``divisor``."""
    if mode == RCEIL:
        w = v * divisor
    else:
        w = v / divisor
    lim = np.float32(elem_max)
    if w > lim:
        w = lim
    elif w < -lim:
        w = -lim
    if fmt == INT8:
        return np.uint8(encode_int8(w) & 0xFF)
    return np.uint8(encode_f32(w, fmt, np.bool_(True)))


@njit(cache=True)
def mx_value(code, fmt, byte):
    """The float32 value of element ``code`` in a block with E8M0 scale ``byte``."""
    if byte == E8M0_NAN:
        return np.float32(np.nan)
    if fmt == INT8:
        d = decode_int8(np.int8(code))
    else:
        d = decode_f32(np.int64(code), fmt)
    return d * pow2_f32(np.int64(byte) - 127)


# --------------------------------------------------------------------------- NVFP4
NVFP4_ELEM_MAX = 6.0
E4M3_MAX = 448.0
E4M3_MIN_NORMAL = 2.0 ** -6


@njit(cache=True)
def nvfp4_scale_code(amax, per_tensor_scale):
    """The E4M3 block scale code of a block with maximum magnitude ``amax``.

    ``float32(amax / 6) / per_tensor_scale``, clamped to [2**-6, 448] (no subnormal
    block scales; a zero block gets 2**-6), rounded to E4M3 (ties to even).
    """
    bs = np.float32(amax / np.float32(NVFP4_ELEM_MAX)) / per_tensor_scale
    if bs < np.float32(E4M3_MIN_NORMAL):
        bs = np.float32(E4M3_MIN_NORMAL)
    elif bs > np.float32(E4M3_MAX):
        bs = np.float32(E4M3_MAX)
    return encode_f32(bs, np.int64(E4M3FN), np.bool_(True))


@njit(cache=True)
def nvfp4_multiplier(scale_code, inv_per_tensor):
    """What a block's elements are multiplied by: ``(1 / pts) / e4m3(scale)`` in float32."""
    return np.float32(inv_per_tensor / decode_f32(np.int64(scale_code), np.int64(E4M3FN)))


@njit(cache=True)
def nvfp4_element(v, multiplier):
    """FP4 code of ``v * multiplier`` clamped to [-6, 6] (float32 product)."""
    w = v * multiplier
    lim = np.float32(NVFP4_ELEM_MAX)
    if w > lim:
        w = lim
    elif w < -lim:
        w = -lim
    return np.uint8(encode_f32(w, np.int64(E2M1FN), np.bool_(True)))


@njit(cache=True)
def nvfp4_block_factor(scale_code, per_tensor_scale):
    """A block's dequantization factor ``float32(pts * e4m3(scale))``."""
    return np.float32(per_tensor_scale * decode_f32(np.int64(scale_code), np.int64(E4M3FN)))


# --------------------------------------------------------------------------- FP8 scaling
FLT_MAX = 3.4028234663852886e38


@njit(cache=True)
def fp8_scale(amax, fp8_max):
    """Current scaling's ``float32(fp8_max / amax)``: 1 for amax 0, FLT_MAX for an
    infinite quotient (Transformer Engine's compute_scale_from_amax, epsilon 0)."""
    if amax == 0:
        return np.float32(1.0)
    s = np.float32(np.float32(fp8_max) / amax)
    if s == np.inf:
        return np.float32(FLT_MAX)
    return s


@njit(cache=True)
def fp8_element(v, scale, fmt, fp8_max):
    """FP8 code of ``clamp(v * scale, -fp8_max, fp8_max)`` (float32 product)."""
    w = v * scale
    lim = np.float32(fp8_max)
    if w > lim:
        w = lim
    elif w < -lim:
        w = -lim
    return np.uint8(encode_f32(w, fmt, np.bool_(True)))


# --------------------------------------------------------------------------- one block
# Both backends' block kernels call these per block (the CPU from task loops, the GPU
# from a grid-stride loop over blocks), so a block's steps are written once.
@njit(cache=True)
def quantize_block(kind, x, r, col, block, fmt, mode, emax, mbits, elem_max, propagate,
                   pts, inv_pts, byte_scales, float_scales, codes, values, write_codes,
                   write_values):
    """Quantize block ``col`` of row ``r`` of ``x`` (rows, K); returns 1 when its
    largest magnitude is not finite (MX and NVFP4), else 0.

    MX and NVFP4 write the block's scale byte to ``byte_scales[r, col]``; FP8 reads its
    float scale from ``float_scales[r, col]``.  Element codes go to ``codes`` and/or the
    dequantized values to ``values`` (``write_codes``, ``write_values``).
    """
    k = x.shape[1]
    lo = col * block
    hi = min(k, lo + block)
    byte = 0
    divisor = np.float32(1)
    factor = np.float32(1)
    bad = 0
    if kind != FP8:
        amax = np.float32(0)
        for j in range(lo, hi):
            amax = nan_max_abs(amax, x[r, j])
        finite = amax <= np.float32(FLT_MAX)   # amax is a magnitude or NaN
        if not finite:
            bad = 1
        if kind == MX:
            if finite:
                byte = mx_scale_byte(amax, mode, emax, mbits, elem_max)
            else:
                byte = E8M0_NAN if propagate else 0
            divisor = mx_divisor(byte, mode)
        else:
            byte = nvfp4_scale_code(amax, pts)
            divisor = nvfp4_multiplier(byte, inv_pts)
            factor = nvfp4_block_factor(byte, pts)
        byte_scales[r, col] = byte
    else:
        divisor = float_scales[r, col]
    for j in range(lo, hi):
        v = x[r, j]
        if kind == MX:
            if byte == E8M0_NAN:
                c = np.uint8(0)
                if fmt != INT8:
                    c = np.uint8(encode(v, fmt, np.bool_(True)))
            else:
                c = mx_element(v, fmt, divisor, mode, elem_max)
            if write_values:
                values[r, j] = mx_value(np.int64(c), fmt, np.int64(byte))
        elif kind == NVFP4:
            c = nvfp4_element(v, divisor)
            if write_values:
                values[r, j] = decode_f32(np.int64(c), np.int64(E2M1FN)) * factor
        else:
            c = fp8_element(v, divisor, fmt, elem_max)
            if write_values:
                values[r, j] = decode_f32(np.int64(c), fmt) / divisor
        if write_codes:
            codes[r, j] = c
    return bad


@njit(cache=True)
def dequantize_block(kind, byte_scales, float_scales, codes, r, col, block, fmt, pts, out):
    """Values of block ``col`` of row ``r`` of ``codes`` into ``out`` (the inverse of
    :func:`quantize_block`)."""
    k = codes.shape[1]
    lo = col * block
    if kind == MX:
        byte = np.int64(byte_scales[r, col])
        for j in range(lo, min(k, lo + block)):
            out[r, j] = mx_value(np.int64(codes[r, j]), fmt, byte)
    elif kind == NVFP4:
        factor = nvfp4_block_factor(np.int64(byte_scales[r, col]), pts)
        for j in range(lo, min(k, lo + block)):
            out[r, j] = decode_f32(np.int64(codes[r, j]), np.int64(E2M1FN)) * factor
    else:
        s = float_scales[r, col]
        for j in range(lo, min(k, lo + block)):
            out[r, j] = decode_f32(np.int64(codes[r, j]), fmt) / s
