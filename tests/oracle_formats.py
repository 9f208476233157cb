"""A numpy + ml_dtypes oracle of the low-precision float formats (never imports numba_quant).

Element casts are ml_dtypes' (round to nearest even); everything else is written from
the contract in docs/semantics.md ("Low-precision float formats") with numpy float32
arrays: exponents from ``np.frexp`` rather than bit fields, scales as exact powers of two,
torchao's two corner cases (byte 0 under FLOOR/CEIL/EVEN, RCEIL's float32 logarithm and
byte 0) written out where they apply.  It reproduces every case of mx_formats.npz
(test_formats_oracle.py checks that).
"""
import ml_dtypes
import numpy as np

F32 = np.float32
MAX = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0, "float6_e3m2fn": 28.0,
       "float6_e2m3fn": 7.5, "float4_e2m1fn": 6.0, "int8": 127.0 / 64.0}
EMAX = {"float8_e4m3fn": 8, "float8_e5m2": 15, "float6_e3m2fn": 4, "float6_e2m3fn": 2,
        "float4_e2m1fn": 2, "int8": 0}
MBITS = {"float8_e4m3fn": 3, "float8_e5m2": 2, "float6_e3m2fn": 2, "float6_e2m3fn": 3,
         "float4_e2m1fn": 1, "int8": 6}
E8M0_MAX = 2.0 ** 127


def ml_type(name):
    return getattr(ml_dtypes, name)


def round_to_odd_f32(x):
    """float64 ``x`` rounded to float32 with round-to-odd: an inexact result takes the
    neighbour whose last bit is 1.  Rounding that again to a format with at most 22 fewer
    significand bits is the correct single rounding of ``x``."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):
        y = x.astype(F32)
    finite = np.isfinite(x)
    y = np.where(finite & np.isinf(y), np.copysign(np.finfo(F32).max, x).astype(F32), y)
    inexact = finite & (y.astype(np.float64) != x)
    toward = np.where(x > y.astype(np.float64), F32(np.inf), F32(-np.inf))
    other = np.nextafter(y, toward)
    odd = (y.view(np.uint32) & 1) == 1
    return np.where(inexact & ~odd, other, y).astype(F32)


def cast(x, name, saturate=False):
    """uint8 codes of ``x`` (float32/float64) in format ``name``, ml_dtypes' rounding;
    ``saturate`` maps overflow and infinities to the largest finite value.  float64 input
    is first rounded to odd float32 (ml_dtypes itself would round twice)."""
    x = np.asarray(x)
    if x.dtype == np.float64:
        x = round_to_odd_f32(x)
    with np.errstate(invalid="ignore", over="ignore"):
        codes = x.astype(ml_type(name)).view(np.uint8).copy()
    if saturate:
        finite_max = MAX.get(name, E8M0_MAX)
        back = decode(codes, name)
        over = ~np.isnan(x) & (np.isnan(back) | np.isinf(back) | (np.abs(back) > finite_max))
        if name == "float8_e8m0fnu":
            over &= x > 0
        top = cast(np.array(finite_max, x.dtype), name)[()]
        sign_bit = 0x80 if name.startswith("float8_e") and name != "float8_e8m0fnu" else 0
        sign_bit = {"float6_e3m2fn": 0x20, "float6_e2m3fn": 0x20, "float4_e2m1fn": 0x8}.get(
            name, sign_bit)
        codes = np.where(over, np.where(np.signbit(x), top | sign_bit, top), codes)
        codes = codes.astype(np.uint8)
    return codes


def decode(codes, name):
    """float32 values of uint8 codes."""
    return np.asarray(codes, np.uint8).view(ml_type(name)).astype(F32)


def pack_fp4(codes):
    codes = np.asarray(codes, np.uint8)
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


# --------------------------------------------------------------------------- MX
def _blocks(x, block):
    """``x`` (…, K) padded with zeros to whole blocks, as (…, nb, block)."""
    k = x.shape[-1]
    nb = -(-k // block)
    pad = np.zeros(x.shape[:-1] + (nb * block,), x.dtype)
    pad[..., :k] = x
    return pad.reshape(x.shape[:-1] + (nb, block)), k


def _exponent(a):
    """floor(log2 a) of float32 a > 0 read as float32's exponent field: -127 for
    subnormals."""
    m, e = np.frexp(a.astype(np.float64))
    e = (e - 1).astype(np.int64)
    return np.where(a < F32(2.0 ** -126), -127, e)


def mx_scale(amax, name, mode):
    """E8M0 bytes (int64) of block maxima ``amax`` (float32, finite)."""
    mode = mode.lower()
    amax = amax.astype(F32)
    if mode == "rceil":
        with np.errstate(divide="ignore"):
            ratio = (amax / F32(MAX[name])).astype(F32)
            lg = np.log2(ratio.astype(np.float64)).astype(F32)
        e = np.clip(np.ceil(lg), -127, 127)
        e = np.where(amax == 0, -127, e).astype(np.int64)
        return e + 127
    e = _exponent(amax)
    if mode == "ceil":
        e = e + (amax.astype(np.float64) != np.ldexp(1.0, np.maximum(e, -149))).astype(np.int64)
        e = np.where((amax < F32(2.0 ** -126)) & (amax > 0), -126, e)  # subnormal: not a
        # power of two in the exponent-field sense unless its mantissa is zero
        e = np.where(amax == 0, -127, e)
    elif mode == "even":
        # Rounding amax's significand to mbits bits carries into the exponent when its
        # fraction is at least 1 - 2**-(mbits + 1) (also from a subnormal into 2**-126).
        unit = np.ldexp(1.0, e.clip(-126, None))
        frac = amax.astype(np.float64) / unit - np.where(amax < F32(2.0 ** -126), 0.0, 1.0)
        carry = frac >= 1.0 - 2.0 ** -(MBITS[name] + 1)
        e = np.where(carry, np.where(amax < F32(2.0 ** -126), -126, e + 1), e)
    e = np.clip(e - EMAX[name], -127, 128)
    return e + 127


def mx_quantize(x, name, block, mode):
    """(scale bytes uint8 (…, nb), element codes uint8 (…, K), dequantized float32)."""
    x = np.asarray(x, F32)
    xb, k = _blocks(x, block)
    amax = np.abs(xb).max(axis=-1)
    byte = mx_scale(amax, name, mode)
    e = byte - 127
    if mode.lower() == "rceil":
        mult = np.where(byte == 0, 1.0, np.ldexp(1.0, -e)).astype(F32)
        w = xb * mult[..., None]
    else:
        div = np.ldexp(1.0, np.maximum(e, -126)).astype(F32)
        w = xb / div[..., None]
    w = np.clip(w, F32(-MAX[name]), F32(MAX[name])).astype(F32)
    if name == "int8":
        codes = np.clip(np.rint(w * F32(64)), -127, 127).astype(np.int8).view(np.uint8)
        vals = codes.view(np.int8).astype(F32) / F32(64)
    else:
        codes = cast(w, name)
        vals = decode(codes, name)
    scale = np.where(byte == 0, F32(2.0 ** -127), np.ldexp(1.0, e).astype(F32)).astype(F32)
    deq = (vals * scale[..., None]).astype(F32)
    shape = x.shape
    return (byte.astype(np.uint8), codes.reshape(shape[:-1] + (-1,))[..., :k],
            deq.reshape(shape[:-1] + (-1,))[..., :k])


# --------------------------------------------------------------------------- NVFP4
def nvfp4_quantize(x, per_tensor_scale=None):
    """(block scale codes, fp4 codes, per-tensor scale, dequantized), blocks of 16."""
    x = np.asarray(x, F32)
    if per_tensor_scale is None:
        amax = np.abs(x).max()
        pts = F32(1.0) if amax == 0 else max(F32(amax / F32(2688.0)), F32(2.0 ** -120))
    else:
        pts = F32(per_tensor_scale)
    xb, k = _blocks(x, 16)
    amax = np.abs(xb).max(axis=-1)
    bs = ((amax / F32(6)).astype(F32) / pts).astype(F32)
    bs = np.clip(bs, F32(2.0 ** -6), F32(448)).astype(F32)
    bs_codes = cast(bs, "float8_e4m3fn")
    bs_val = decode(bs_codes, "float8_e4m3fn")
    mult = ((F32(1) / pts).astype(F32) / bs_val).astype(F32)
    w = np.clip(xb * mult[..., None], F32(-6), F32(6)).astype(F32)
    codes = cast(w, "float4_e2m1fn")
    deq = decode(codes, "float4_e2m1fn") * (pts * bs_val).astype(F32)[..., None]
    return (bs_codes, codes.reshape(x.shape[:-1] + (-1,))[..., :k], pts,
            deq.astype(F32).reshape(x.shape[:-1] + (-1,))[..., :k])


# --------------------------------------------------------------------------- FP8 scaling
def fp8_scale(amax, name):
    amax = np.asarray(amax, F32)
    with np.errstate(divide="ignore", over="ignore"):
        s = (F32(MAX[name]) / amax).astype(F32)
    s = np.where(np.isinf(s), F32(np.finfo(F32).max), s)
    return np.where(amax == 0, F32(1), s).astype(F32)


def fp8_quantize(x, name, block=None):
    """(codes, scale, dequantized): one scale per tensor, or per block along the last axis."""
    x = np.asarray(x, F32)
    if block is None:
        scale = fp8_scale(np.abs(x).max(), name)
        s = scale
    else:
        xb, k = _blocks(x, block)
        scale = fp8_scale(np.abs(xb).max(axis=-1), name)
        s = np.repeat(scale, block, axis=-1)[..., :x.shape[-1]]
    w = np.clip(x * s, F32(-MAX[name]), F32(MAX[name])).astype(F32)
    codes = cast(w, name)
    deq = (decode(codes, name) / s).astype(F32)
    return codes, np.asarray(scale, F32), deq
