"""Argument checks shared by the public functions: clear errors before any kernel runs."""
import operator

import numpy as np

from numba_quant import _codes as ref

FORMULAS = ("google", "cambricon")
SCHEMES = ("symmetric", "affine")
NONFINITE_POLICIES = ("raise", "omit")
MIN_BITS = 2
MAX_BITS = 16


def _choice(name, value, valid):
    if not isinstance(value, str) or value not in valid:
        listed = ", ".join(repr(v) for v in valid)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def scheme_code(formula, scheme):
    """The kernel code of a (formula, scheme) pair, after checking both."""
    formula = _choice("quantization_formula", formula, FORMULAS)
    scheme = _choice("quantization_scheme", scheme, SCHEMES)
    if formula == "cambricon":
        return ref.CAMBRICON
    return ref.AFFINE if scheme == "affine" else ref.SYMMETRIC


def bits(value):
    """``quantization_bit`` as an int in [MIN_BITS, MAX_BITS]."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"quantization_bit must be an integer from {MIN_BITS} to {MAX_BITS}; "
                         f"got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"quantization_bit must be an integer from {MIN_BITS} to {MAX_BITS}; "
                         f"got {value!r}") from None
    if not MIN_BITS <= value <= MAX_BITS:
        raise ValueError(f"quantization_bit must be an integer from {MIN_BITS} to {MAX_BITS}; "
                         f"got {value}")
    return value


def nonfinite_policy(value):
    """``nonfinite`` after checking it: True to omit non-finite elements."""
    return _choice("nonfinite", value, NONFINITE_POLICIES) == "omit"


def compute_dtype(dtype):
    """The float type the arithmetic runs in for an input of ``dtype``.

    float32 and float64 compute in their own type; float16 computes in float32.
    Everything else is a TypeError.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return np.dtype(np.float64) if dtype.itemsize == 8 else np.dtype(np.float32)
    raise TypeError(f"numba_quant needs a float16, float32 or float64 array; got dtype {dtype}")


def channel_axis(axis, ndim, per_layer):
    """The channel axis normalised to [0, ndim), or None for per-layer work."""
    if per_layer:
        return None
    if ndim == 0:
        raise ValueError("per-channel quantization needs an array with at least one axis; "
                         "got a 0-d array")
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer; got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim


def not_empty(shape, axis):
    """Reject an empty array: it has no min or max (nor does an empty channel)."""
    if 0 in shape:
        what = "array" if axis is None else "array (every channel needs an element)"
        raise ValueError(f"cannot observe an empty {what} of shape {tuple(shape)}")


def nonfinite_error(count):
    return ValueError(
        f"input contains {count} non-finite value(s) (NaN or infinity); "
        "pass nonfinite='omit' to ignore them")


def empty_channel_error(lo, hi, per_layer):
    if per_layer:
        return ValueError("input has no finite value (nonfinite='omit' ignored them all)")
    bad = np.flatnonzero(np.asarray(lo) > np.asarray(hi))
    shown = ", ".join(str(i) for i in bad[:8]) + (", ..." if bad.size > 8 else "")
    return ValueError(f"{bad.size} channel(s) have no finite value (channels {shown}); "
                      "nonfinite='omit' ignored them all")


def integer(name, value):
    """An integer argument as a Python int."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer; got {value!r}") from None


def settings_repr(obj):
    """``Name(setting=value, ...)`` from an object's ``_settings`` attribute names."""
    args = ", ".join(f"{name}={getattr(obj, name)!r}" for name in obj._settings)
    return f"{type(obj).__name__}({args})"


def settings_from(state, names):
    """The settings among a saved state's entries, as plain Python values."""
    missing = [name for name in names if name not in state]
    if missing:
        raise ValueError(f"state is missing {', '.join(missing)}")
    return {name: _plain(state[name]) for name in names}


def _plain(value):
    """numpy scalars and 0-d arrays (as np.load gives them) as Python values."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic):
        value = value.item()
    return value


def parameter_axis(axis, shape, size, what):
    """The channel axis for ``size`` parameters (None for one: per layer), checked."""
    if size == 1:
        return None
    axis = channel_axis(axis, len(shape), per_layer=False)
    if shape[axis] != size:
        raise ValueError(f"per-channel {what} has {size} values but axis {axis} of the "
                         f"input has length {shape[axis]}")
    return axis


def same_length(first, second, names):
    """Two parameter arrays that go together must have one length."""
    if first != second:
        raise ValueError(f"{names[0]} and {names[1]} must have the same length; got "
                         f"{first} and {second}")


# --------------------------------------------------------------------------- float formats
FORMAT_NONFINITE_POLICIES = ("raise", "propagate")
SCALING_MODES = ("floor", "ceil", "even", "rceil")
FLOAT_OUTPUT_DTYPES = ("float32", "float64")


def float_format(value, allowed, what):
    """A format name (str, or an ml_dtypes dtype/type of that name) among ``allowed``."""
    name = value
    if not isinstance(value, str):
        try:
            name = np.dtype(value).name
        except TypeError:
            name = None
    if name not in allowed:
        listed = ", ".join(repr(v) for v in allowed)
        raise ValueError(f"{what} must be one of {listed}; got {value!r}")
    return name


def format_nonfinite(value):
    """``nonfinite`` of the scaled formats: True to propagate NaN/inf (OCP's NaN scale)."""
    return _choice("nonfinite", value, FORMAT_NONFINITE_POLICIES) == "propagate"


def scaling_mode(value):
    """An MX scaling mode name (any case) as its lower-case name."""
    if isinstance(value, str) and value.lower() in SCALING_MODES:
        return value.lower()
    raise ValueError(f"scaling_mode must be one of {', '.join(map(repr, SCALING_MODES))} "
                     f"(any case); got {value!r}")


def block_size(value):
    """A block size: a positive integer."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"block_size must be a positive integer; got {value!r}")
    value = integer("block_size", value)
    if value < 1:
        raise ValueError(f"block_size must be a positive integer; got {value}")
    return value


def float_input(dtype, allow_float64):
    """The compute dtype of a low-precision format input of ``dtype``.

    float16 and bfloat16 become float32 (exactly); float64 is accepted only by the
    element conversions, which round it once (scaled formats compute in float32, and a
    float64 input would be rounded twice).
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize in (2, 4):
        return np.dtype(np.float32)
    if dtype.name == "bfloat16":
        return np.dtype(np.float32)
    if dtype.kind == "f" and dtype.itemsize == 8:
        if allow_float64:
            return np.dtype(np.float64)
        raise TypeError("this format computes in float32 and takes float16, bfloat16 or "
                        "float32 input; got float64 (convert it explicitly with "
                        ".astype(np.float32) if that rounding is intended)")
    raise TypeError(f"input must be a float16, bfloat16, float32 or float64 array; got "
                    f"dtype {dtype}")


def float_output(value):
    """``output_dtype`` of the decoders: float32 or float64."""
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in FLOAT_OUTPUT_DTYPES:
        raise ValueError(f"output_dtype must be float32 or float64; got {value!r}")
    return dtype


def not_empty_input(shape):
    if 0 in tuple(shape):
        raise ValueError(f"cannot quantize an empty array of shape {tuple(shape)}")


def block_axis(axis, ndim):
    """The axis the blocks run along, normalised; 0-d input has none."""
    if ndim == 0:
        raise ValueError("block formats need an array with at least one axis; got a 0-d "
                         "array")
    return channel_axis(axis, ndim, per_layer=False)


def codes_dtype(dtype, fmt, what):
    """Codes must be uint8 (or int8 for MXINT8, or the format's own ml_dtypes dtype)."""
    dtype = np.dtype(dtype)
    ok = dtype == np.uint8 or dtype.name == fmt or (fmt == "int8" and dtype == np.int8)
    if not ok:
        expect = "int8 or uint8" if fmt == "int8" else f"uint8 or {fmt}"
        raise TypeError(f"{what} must be {expect} codes; got dtype {dtype}")


def nonfinite_blocks_error(count, unit):
    return ValueError(f"input contains NaN or infinity ({count} {unit}); pass "
                      "nonfinite='propagate' to give such blocks a NaN scale")


def scale_shape(actual, expected, what):
    if tuple(actual) != tuple(expected):
        raise ValueError(f"{what} has shape {tuple(actual)} but the elements need "
                         f"{tuple(expected)}")


def packed_length(n):
    if n % 2:
        raise ValueError(f"packed FP4 needs an even number of elements along the last axis; "
                         f"got {n}")


def ml_dtypes_view():
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError("ml_dtypes=True needs the ml_dtypes package "
                          "(pip install ml_dtypes)") from None
    return ml_dtypes


def per_tensor_scale(value, smallest):
    """An NVFP4 per-tensor scale: a finite float32 of at least ``smallest``."""
    try:
        pts = np.float32(value)
    except (TypeError, ValueError):
        raise TypeError(f"per_tensor_scale must be a number; got {value!r}") from None
    if not (np.isfinite(pts) and pts >= smallest):
        raise ValueError(f"per_tensor_scale must be finite and at least {float(smallest)!r} "
                         f"(2**-120); got {value!r}")
    return pts
