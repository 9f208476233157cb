"""The arithmetic of the low-precision float formats, written once for the CPU and the GPU.

Scalar ``numba.njit`` functions called by the CPU kernels (:mod:`numba_quant._cpu.formats`)
and the CUDA kernels (:mod:`numba_quant._cuda.formats`):

* element conversions between float32/float64 and the byte codes of FP8 E4M3FN, FP8 E5M2,
  FP6 E3M2, FP6 E2M3, FP4 E2M1, E8M0 and MXINT8 (:func:`encode`, :func:`decode_f32`);
* the scale rules of OCP MX (torchao's four modes), NVFP4 and FP8 current scaling.

Element conversions are integer arithmetic on the source's bit pattern: the significand
is shifted right to the target's precision and rounded to nearest, ties to even, from the
bits shifted out, so no intermediate float rounding can intervene.  Format parameters
come from :data:`numba_quant._host.float_formats.PARAMS` by format code.
"""
import math

import numpy as np
from numba import njit

from numba_quant._host.float_formats import (  # noqa: F401  (kernels read them as ref.NAME)
    E2M1FN,
    E2M3FN,
    E3M2FN,
    E4M3FN,
    E5M2,
    E8M0FNU,
    INT8,
    PARAMS,
)
from numba_quant._reference.bits import f32_bits, f32_from_bits, f64_bits
from numba_quant._reference.primitives import mantissa_bits, rint

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
# The conversions are straight-line integer arithmetic with selects (no data-dependent
# branches and no loops), so that the CPU kernels' element loops vectorise; the format
# parameters ``p`` (see :func:`params`) are loop invariants the kernels read once.
@njit(cache=True)
def encode_with(u, src_mbits, src_ebits, p, saturate):
    """The code of the format with parameters ``p`` nearest (ties to even) to the float
    with bits ``u``.

    ``u`` is the source's bit pattern as an int64 (float32: 23 mantissa and 8 exponent
    bits; float64: 52 and 11).  Overflow (a magnitude that rounds above the largest
    finite value) gives the largest finite value when ``saturate`` or when the format
    has neither infinity nor NaN (fp6, fp4), else infinity (e5m2) or NaN (e4m3fn, e8m0).
    Infinities follow the same rule.  NaN gives the format's NaN with the input's sign;
    formats without NaN give a zero whose sign is the opposite of the NaN's (what
    ml_dtypes does).  E8M0 (no sign, no zero) gives NaN for zero and negative input.

    The significand (implicit bit included) is shifted right to the target's precision
    at the larger of its own exponent and the target's smallest normal exponent (which
    makes subnormal results), rounding to nearest even by adding ``half - 1`` plus the
    lowest kept bit before the shift; the exponent difference then adds on as the code's
    exponent field, so a carry out of the significand moves the exponent up.
    """
    ebits, mbits, bias, max_code, nan_code, inf_code, signed = p
    one = np.int64(1)
    width = ebits + mbits
    sign = (u >> (src_mbits + src_ebits)) & 1
    src_emax = (one << src_ebits) - 1
    exp_field = (u >> src_mbits) & src_emax
    frac = u & ((one << src_mbits) - 1)
    normal = np.int64(exp_field != 0)
    e = max(exp_field, one) - ((one << (src_ebits - 1)) - 1)
    sig = frac | (normal << src_mbits)
    emin = 1 - bias
    top = max(e, emin)
    # Below half the smallest subnormal everything rounds to zero: cap the shift there.
    shift = min((top - mbits) - (e - src_mbits), src_mbits + 2)
    q = (sig + ((one << (shift - 1)) - 1) + ((sig >> shift) & 1)) >> shift
    code = ((top - emin) << mbits) + q
    if saturate or (inf_code < 0 and nan_code < 0):
        over_code = max_code
    elif inf_code >= 0:
        over_code = inf_code
    else:
        over_code = nan_code
    sign_bit = sign << width
    inf_or_nan = exp_field == src_emax
    res = (over_code if (inf_or_nan or code > max_code) else code) | sign_bit
    if nan_code < 0:
        nan_res = (1 - sign) << width
    else:
        nan_res = nan_code | (sign_bit if signed else 0)
    res = nan_res if (inf_or_nan and frac != 0) else res
    if signed == 0:  # E8M0: no zero, no negative values
        magnitude = u & ((one << (src_mbits + src_ebits)) - 1)
        # Below 2**-126 the nearest codes are 0 (2**-127, not zero as the general rule
        # has it) and 1 (2**-126): code 1 from their midpoint 1.5 * 2**-127 up (ties up,
        # as everywhere in E8M0).  Source bits of 2**-126 and of the midpoint:
        if src_mbits == 23:
            smallest_normal, midpoint = np.int64(0x800000), np.int64(0x600000)
        else:
            smallest_normal = np.int64(897) << 52
            midpoint = (np.int64(896) << 52) | (one << 51)
        res = np.int64(magnitude >= midpoint) if magnitude < smallest_normal else res
        res = nan_code if (sign == 1 or magnitude == 0) else res
    return res


@njit(cache=True)
def encode_bits(u, src_mbits, src_ebits, fmt, saturate):
    """The code of format ``fmt`` nearest to the float with bits ``u`` (see
    :func:`encode_with`)."""
    return encode_with(u, src_mbits, src_ebits, params(fmt), saturate)


@njit(cache=True)
def encode_p(v, p, saturate):
    """The code of the format with parameters ``p`` nearest to ``v`` (float32/float64)."""
    if mantissa_bits(v) == 24:
        return encode_with(f32_bits(v), np.int64(23), np.int64(8), p, saturate)
    return encode_with(f64_bits(v), np.int64(52), np.int64(11), p, saturate)


@njit(cache=True)
def encode_f32(v, fmt, saturate):
    """The code of ``fmt`` nearest to the float32 ``v`` (see :func:`encode_with`)."""
    return encode_with(f32_bits(v), np.int64(23), np.int64(8), params(fmt), saturate)


@njit(cache=True)
def encode(v, fmt, saturate):
    """The code of ``fmt`` nearest to ``v`` (float32 or float64)."""
    return encode_p(v, params(fmt), saturate)


@njit(cache=True)
def decode_p(code, p):
    """The value (float32) of ``code`` in the format with parameters ``p``.

    Every value of these formats is a float32: a normal code moves its fields into
    float32's, a subnormal one is its mantissa field times the format's smallest
    subnormal (a power of two: exact).  NaN codes give the quiet NaN with the code's
    sign; E8M0 code 0 is 2**-127 (a float32 subnormal).
    """
    ebits, mbits, bias, max_code, nan_code, inf_code, signed = p
    width = ebits + mbits
    c = np.int64(code)
    sign32 = ((c >> width) & 1) << 31
    mag = c & ((np.int64(1) << width) - 1)
    exp_field = mag >> mbits
    frac = mag & ((np.int64(1) << mbits) - 1)
    normal = sign32 | ((exp_field - bias + 127) << 23) | (frac << (23 - mbits))
    subnormal = sign32 | f32_bits(np.float32(frac) * pow2_f32(1 - bias - mbits))
    bits = normal if exp_field != 0 else subnormal
    if inf_code >= 0:
        bits = (sign32 | (F32_QNAN if mag != inf_code else 0x7F800000)
                if mag > max_code else bits)
    if nan_code >= 0:
        bits = (sign32 | F32_QNAN) if mag == nan_code else bits
    if signed == 0:  # E8M0
        bits = (np.int64(1) << 22) if c == 0 else bits
    return f32_from_bits(bits)


@njit(cache=True)
def decode_f32(code, fmt):
    """The value of ``code`` in format ``fmt`` as a float32 (see :func:`decode_p`)."""
    return decode_p(code, params(fmt))


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
def mx_multiplier(byte, mode):
    """What the elements of a block with scale ``byte`` are multiplied by before rounding,
    as torchao computes it.

    FLOOR/CEIL/EVEN divide by ``max(2**e, 2**-126)`` (so byte 0 divides by 2**-126 but
    dequantizes with 2**-127; byte 255, e = 128, divides by infinity): the product with
    the reciprocal, a power of two from 2**-127 to 2**126 (or 0), rounds to the same
    float32 as the quotient.  RCEIL multiplies by ``2**-e``, by 1.0 for byte 0.
    """
    e = np.int64(byte) - 127
    if mode == RCEIL:
        if byte == 0:
            return np.float32(1.0)
        return pow2_f32(-e)
    if e > 127:
        return np.float32(0.0)
    if e < -126:
        e = -126
    return pow2_f32(-e)


@njit(cache=True)
def element_code(v, s, lim, p):
    """The code (format parameters ``p``) of ``v * s`` (float32) clamped to [-lim, lim],
    rounded to nearest even: an element of a scaled block.  An infinite ``lim`` gives
    the saturating cast of ``v`` itself (unscaled, so that a NaN keeps its sign on every
    target): MX's blocks with the NaN scale."""
    w = v * s
    if w > lim:
        w = lim
    elif w < -lim:
        w = -lim
    w = v if lim == np.float32(np.inf) else w
    return encode_with(f32_bits(w), np.int64(23), np.int64(8), p, np.bool_(True))


@njit(cache=True)
def int8_element(v, s, lim):
    """The MXINT8 code (int8) of ``v * s`` (float32) clamped to [-lim, lim]."""
    w = v * s
    if w > lim:
        w = lim
    elif w < -lim:
        w = -lim
    return encode_int8(w)


@njit(cache=True)
def element_value(code, p, f, divide):
    """The float32 value of element ``code`` (format parameters ``p``) in a block whose
    values are ``decode / f`` (``divide``) or ``decode * f``."""
    d = decode_p(code, p)
    return d / f if divide else d * f


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


# --------------------------------------------------------------------------- blocks
# Both backends' block kernels call these, so a block's steps are written once: the CPU
# for a task's stretch of a row (many blocks per call, so that the call's own costs, the
# reference counts of its array arguments among them, are paid rarely), the GPU for one
# block per thread.  Each step is its own loop over a block's contiguous elements, with
# every choice (kind, format, outputs) made per block, so that the CPU compiler
# vectorises the loops; no array views are made (each would count references).
@njit(cache=True)
def block_factors(kind, m, mode, emax, mbits, elem_max, propagate, pts, inv_pts):
    """``(byte, s, f)`` of an MX or NVFP4 block whose largest magnitude has the float32
    bits ``m`` (NaN bits when it holds a NaN): its scale byte, what its elements are
    multiplied by before rounding, what their decoded values are multiplied by."""
    amax = f32_from_bits(m)
    if kind == MX:
        if m < 0x7F800000:
            byte = np.int64(mx_scale_byte(amax, mode, emax, mbits, elem_max))
        else:
            byte = np.int64(E8M0_NAN if propagate else 0)
        return byte, mx_multiplier(byte, mode), pow2_f32(byte - 127)
    byte = np.int64(nvfp4_scale_code(amax, pts))
    return byte, nvfp4_multiplier(byte, inv_pts), nvfp4_block_factor(byte, pts)


@njit(cache=True)
def quantize_blocks_of_row(kind, x, r, c0, c1, block, fmt, mode, emax, mbits, elem_max,
                           propagate, pts, inv_pts, byte_scales, float_scales, codes,
                           values, write_codes, write_values):
    """Quantize blocks ``c0`` to ``c1 - 1`` of row ``r`` of ``x`` (rows, K); returns how
    many of them have a largest magnitude that is not finite (MX and NVFP4).

    MX and NVFP4 write a block's scale byte to ``byte_scales[r, col]``; FP8 reads its
    float scale from ``float_scales[r, col]``.  Element codes go to ``codes`` and/or, MX
    and NVFP4 only (the fused fake quantizations), the dequantized values to ``values``
    (``write_codes``, ``write_values``).
    """
    k = x.shape[1]
    p = params(fmt)
    bad = 0
    for col in range(c0, c1):
        lo = col * block
        hi = min(k, lo + block)
        byte = np.int64(0)
        if kind == FP8:
            s = float_scales[r, col]
            f = np.float32(1)
        else:
            # The largest magnitude as the integer maximum of the magnitudes' bit
            # patterns: they order like the values, and a NaN's lie above infinity's.
            m = np.int64(0)
            for j in range(lo, hi):
                m = max(m, f32_bits(x[r, j]) & 0x7FFFFFFF)
            if m >= 0x7F800000:
                bad += 1
            byte, s, f = block_factors(kind, m, mode, emax, mbits, elem_max, propagate, pts,
                                       inv_pts)
            byte_scales[r, col] = byte
        nan_block = kind == MX and byte == E8M0_NAN
        lim = np.float32(elem_max)
        if nan_block:
            # OCP: every value of the block is NaN; its codes are the saturating casts of
            # the raw values (an infinite lim), 0 for MXINT8 (x * 0 is 0 or NaN: code 0).
            lim = np.float32(np.inf)
            s = np.float32(0)
        if fmt == INT8:
            if write_codes:
                for j in range(lo, hi):
                    codes[r, j] = np.uint8(int8_element(x[r, j], s, lim) & 0xFF)
            if write_values and not nan_block:
                for j in range(lo, hi):
                    values[r, j] = decode_int8(int8_element(x[r, j], s, lim)) * f
        else:
            if write_codes:
                for j in range(lo, hi):
                    codes[r, j] = element_code(x[r, j], s, lim, p)
            if write_values and not nan_block:
                for j in range(lo, hi):
                    values[r, j] = element_value(element_code(x[r, j], s, lim, p), p, f,
                                                 np.bool_(False))
        if write_values and nan_block:
            for j in range(lo, hi):
                values[r, j] = np.float32(np.nan)
    return bad


@njit(cache=True)
def dequantize_blocks_of_row(kind, byte_scales, float_scales, codes, r, c0, c1, block, fmt,
                             pts, out):
    """Values of blocks ``c0`` to ``c1 - 1`` of row ``r`` of ``codes`` into ``out`` (the
    inverse of :func:`quantize_blocks_of_row`): MX ``decode * 2**(byte - 127)`` (NaN for
    byte 255), NVFP4 ``fp4 * float32(pts * e4m3)``, FP8 ``decode / scale``."""
    k = codes.shape[1]
    p = params(fmt)
    for col in range(c0, c1):
        lo = col * block
        hi = min(k, lo + block)
        if kind == MX:
            byte = np.int64(byte_scales[r, col])
            f = pow2_f32(byte - 127)
        elif kind == NVFP4:
            byte = np.int64(0)
            f = nvfp4_block_factor(np.int64(byte_scales[r, col]), pts)
        else:
            byte = np.int64(0)
            f = float_scales[r, col]
        if kind == MX and byte == E8M0_NAN:
            for j in range(lo, hi):
                out[r, j] = np.float32(np.nan)
        elif kind == MX and fmt == INT8:
            for j in range(lo, hi):
                out[r, j] = decode_int8(np.int8(codes[r, j])) * f
        elif kind == FP8:
            for j in range(lo, hi):
                out[r, j] = element_value(codes[r, j], p, f, np.bool_(True))
        else:
            for j in range(lo, hi):
                out[r, j] = element_value(codes[r, j], p, f, np.bool_(False))
