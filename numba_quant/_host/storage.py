"""Storage formats that numpy has no dtype for: bfloat16 and FP8, read as raw bits.

Checkpoints store bfloat16 and FP8 tensors; numpy reads them as unsigned integers of the
same width, and these functions turn such bits into float32 values.  bfloat16 is the top
half of a float32, so widening is a shift; FP8 has 256 values, decoded through a table.
Kept free of numba so that readers can use them without compiling anything.
"""
import numpy as np

#: Storage dtype name -> (raw numpy dtype of the bits, description).
RAW_FLOATS = {
    "bfloat16": np.dtype("<u2"),
    "float8_e4m3fn": np.dtype("u1"),
    "float8_e5m2": np.dtype("u1"),
}


def bfloat16_to_float32(bits, out=None):
    """float32 values of bfloat16 bit patterns (uint16), exactly: ``bits << 16``."""
    bits = np.asarray(bits)
    if out is None:
        out = np.empty(bits.shape, np.float32)
    wide = out.view(np.uint32)
    np.left_shift(bits, 16, out=wide, dtype=np.uint32)
    return out


def _fp8_table(exponent_bits, mantissa_bits, finite_top):
    """The 256 float32 values of an FP8 format (sign, exponent, mantissa bit fields).

    ``finite_top``: True for e4m3fn (no infinities; only S.1111.111 is NaN), False for
    IEEE-like formats (e5m2: the top exponent holds inf and NaN).
    """
    codes = np.arange(256, dtype=np.int64)
    sign = np.where(codes >> 7, -1.0, 1.0)
    exponent = (codes >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = codes & ((1 << mantissa_bits) - 1)
    bias = (1 << (exponent_bits - 1)) - 1
    fraction = mantissa / float(1 << mantissa_bits)
    normal = (1.0 + fraction) * np.exp2(exponent - bias)
    subnormal = fraction * np.exp2(1 - bias)
    values = sign * np.where(exponent == 0, subnormal, normal)
    top = (1 << exponent_bits) - 1
    if finite_top:
        values[(exponent == top) & (mantissa == (1 << mantissa_bits) - 1)] = np.nan
    else:
        values[(exponent == top) & (mantissa == 0)] = sign[(exponent == top) & (mantissa == 0)] * np.inf
        values[(exponent == top) & (mantissa != 0)] = np.nan
    return values.astype(np.float32)


_FP8_TABLES = {}


def fp8_to_float32(bits, name):
    """float32 values of FP8 bit patterns (uint8) of format ``name``."""
    table = _FP8_TABLES.get(name)
    if table is None:
        if name == "float8_e4m3fn":
            table = _fp8_table(4, 3, finite_top=True)
        elif name == "float8_e5m2":
            table = _fp8_table(5, 2, finite_top=False)
        else:
            raise ValueError(f"unknown FP8 format {name!r}")
        _FP8_TABLES[name] = table
    return table[np.asarray(bits)]


def decode(raw, name):
    """float values of a raw chunk of storage dtype ``name`` (float16 widens to float32;
    float32 and float64 are returned as they are)."""
    if name == "bfloat16":
        return bfloat16_to_float32(raw)
    if name.startswith("float8"):
        return fp8_to_float32(raw, name)
    if name == "float16":
        return raw.astype(np.float32)
    return raw
