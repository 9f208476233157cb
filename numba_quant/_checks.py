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


# --------------------------------------------------------------------------- calibration
AMAX_METHODS = ("percentile", "entropy", "mse")
OBSERVER_METHODS = ("percentile", "entropy", "mse", "l2")


def method(value, valid):
    """A calibration method name among ``valid``."""
    return _choice("method", value, valid)


def percentile(value):
    """A percentile in (0, 100] as a float."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"percentile must be a number in (0, 100]; got {value!r}") from None
    if not 0.0 < p <= 100.0:
        raise ValueError(f"percentile must be in (0, 100]; got {value!r}")
    return p


def bin_count(value):
    """``bins`` as an int of at least 2 (and even: the histogram is split at zero)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"bins must be an integer; got {value!r}")
    value = integer("bins", value)
    if value < 2 or value % 2:
        raise ValueError(f"bins must be an even integer of at least 2; got {value}")
    return value


def positive(name, value, smallest=1):
    """An integer argument of at least ``smallest``."""
    value = integer(name, value)
    if value < smallest:
        raise ValueError(f"{name} must be at least {smallest}; got {value}")
    return value


def histogram_rows(hist, edges):
    """``(counts, edges)`` as 2-D int64 and float arrays, one row per channel, checked."""
    hist = np.asarray(hist)
    edges = np.asarray(edges)
    if hist.ndim not in (1, 2) or edges.ndim != hist.ndim:
        raise ValueError(f"hist and edges must both be 1-D (one histogram) or 2-D (one row "
                         f"per channel); got shapes {hist.shape} and {edges.shape}")
    if hist.shape[-1] < 2 or edges.shape != hist.shape[:-1] + (hist.shape[-1] + 1,):
        raise ValueError(f"edges must have one more entry per row than hist (and hist at "
                         f"least 2 bins); got shapes {hist.shape} and {edges.shape}")
    if hist.dtype.kind not in "iuf" or edges.dtype.kind != "f":
        raise TypeError(f"hist must hold numbers and edges floats; got {hist.dtype} and "
                        f"{edges.dtype}")
    if hist.dtype.kind == "f" and not np.all(np.isfinite(hist)):
        raise ValueError("hist contains non-finite counts")
    counts = hist.astype(np.int64)  # modelopt truncates its float counts to integers
    if np.any(counts < 0):
        raise ValueError("hist contains negative counts")
    if np.any(counts.sum(axis=-1) == 0):
        raise ValueError("a histogram row has no counts; its range is undefined")
    return counts.reshape(-1, counts.shape[-1]), edges.reshape(-1, edges.shape[-1])


def candidate_range(start_bin, bins, method):
    """Entropy and MSE search from ``start_bin``; a histogram needs more bins than that."""
    if start_bin >= bins + (method == "entropy"):
        raise ValueError(f"method {method!r} searches bins from start_bin={start_bin} on, "
                         f"but the histogram has only {bins} bins")


def not_observed(what):
    return ValueError(f"{what} needs data: call the observer on an array (or load a "
                      "state) first")


def merge_mismatch(names, mine, theirs):
    return ValueError(f"cannot merge observers with different {names}: {mine} and {theirs}")
