"""Every argument check and its error message, for the public functions and both backends.

The public functions and both backends call these with what they know about an argument
(its value, or a device array's dtype, size and flags) and raise on bad arguments only
through them.
Kept free of numba so that ``import numba_quant`` does not import it.
"""
import math
import operator

import numpy as np

from numba_quant import _codes as codes

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
        return codes.CAMBRICON
    return codes.AFFINE if scheme == "affine" else codes.SYMMETRIC


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


# --------------------------------------------------------------------------- arrays
def same_device(input_on_device, other):
    """An array that goes with the input must live on the input's side."""
    where = "a GPU" if input_on_device else "a host"
    raise ValueError(f"all arrays must be on the same device: the input is {where} array but "
                     f"{type(other).__name__} is not")


def numpy_array(name, value):
    """With numpy input, ``name`` (an array the call writes into) must be a numpy array."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array for numpy input; got "
                        f"{type(value).__name__}")


def native_byte_order(name, dtype):
    """Arrays the kernels read or write in place must have the machine's byte order."""
    if not np.dtype(dtype).isnative:
        raise TypeError(f"{name} must have the machine's byte order; got {dtype}")


def device_array_dtype(dtype):
    """A device array's dtype must be native: the GPU cannot byte-swap while it reads."""
    native_byte_order("device arrays", dtype)


def output_array(dtype, readonly):
    """A caller's ``out``: writable, in the machine's byte order."""
    if readonly:
        raise ValueError("out is read-only")
    native_byte_order("out", dtype)


def output_matches(shape, dtype, expected_shape, expected_dtype):
    """A caller's ``out`` must have the result's shape and dtype."""
    if tuple(shape) != tuple(expected_shape):
        raise ValueError(f"out has shape {tuple(shape)}; expected {tuple(expected_shape)}")
    if np.dtype(dtype) != np.dtype(expected_dtype):
        raise TypeError(f"out has dtype {dtype}; expected {np.dtype(expected_dtype)}")


def output_on_input_side(same):
    if not same:
        raise ValueError("out must be on the same device as the input")


def codes_dtype(dtype):
    """Codes given to ``dequantize``: any integer or float type."""
    if np.dtype(dtype).kind not in "fiu":
        raise TypeError(f"codes must be integers or floats; got dtype {dtype}")


def no_nan_for_codes(nan_count):
    """``quantize``: NaN has no integer code."""
    if nan_count:
        raise ValueError(f"input contains {nan_count} NaN value(s), which have no integer "
                         "code")


def state_array(name, dtype, compute_dtype, readonly, size):
    """A caller's moving_max/moving_min: the compute dtype, writable, not empty."""
    if np.dtype(dtype) != np.dtype(compute_dtype):
        raise TypeError(f"{name} must have dtype {compute_dtype} like the computation; got "
                        f"{dtype}")
    if readonly:
        raise ValueError(f"{name} is read-only but is updated in place")
    if size == 0:
        raise ValueError(f"{name} is empty")


def state_not_contiguous(name):
    return ValueError(f"{name} must be contiguous: it is updated in place")


def state_dtype(state_dtype, compute_dtype):
    """An observer's own state must compute in the input's float type."""
    if np.dtype(state_dtype) != np.dtype(compute_dtype):
        raise TypeError(f"this observer's state is {np.dtype(state_dtype)} but the input "
                        f"computes in {np.dtype(compute_dtype)}; call reset() first")


def simulator_array(value):
    raise TypeError(f"the CUDA simulator only takes its own device arrays; got "
                    f"{type(value).__name__}")


def item_strides(strides, itemsize):
    """Device array strides must be whole elements."""
    if any(s % itemsize for s in strides):
        raise ValueError(f"device array strides {tuple(strides)} are not multiples of the "
                         f"item size {itemsize}")


# --------------------------------------------------------------------------- moving average
def momentum(value):
    """Momentum as the float32 value the moving-average update uses."""
    number = float(value)
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ValueError(f"momentum must be between 0 and 1; got {value!r}")
    return np.float32(number)


def train_step(value, host_value):
    """The training step as an int, from ``host_value`` (``value`` as a host array)."""
    host_value = np.asarray(host_value)
    if host_value.dtype.kind not in "iu" or host_value.size != 1:
        raise TypeError("current_train_step must be an int or a one-element integer array; "
                        f"got {value!r}")
    return int(host_value.reshape(-1)[0])


# --------------------------------------------------------------------------- scale, zero point
def parameter_arrays(scale, zero_point, shape, axis):
    """The channel axis (None: per layer) for ``scale`` and ``zero_point``, after checking
    their types and lengths (any objects with ``dtype`` and ``size``: host or device)."""
    for name, values in (("scale", scale), ("zero_point", zero_point)):
        if np.dtype(values.dtype).kind not in "fiu" or values.size == 0:
            raise TypeError(f"{name} must hold real numbers; got {values.dtype} of size "
                            f"{values.size}")
    same_length(scale.size, zero_point.size, ("scale", "zero_point"))
    return parameter_axis(axis, shape, scale.size, "scale")


def parameter_values(scale, zero_point, scheme):
    """Raise for scale or zero point values that quantization does not take.

    ``scale`` and ``zero_point`` are host arrays in the compute dtype.  The scale (a
    shift for cambricon) must be finite, and not negative unless it is a shift; the zero
    point must be finite.  (The GPU checks device values with the same rule,
    ``_reference.valid_code_params``, and calls this to name the problem.)
    """
    if not np.isfinite(scale).all():
        what = "shift (cambricon scale)" if scheme == codes.CAMBRICON else "scale"
        raise ValueError(f"every {what} must be finite; got {scale}")
    if scheme != codes.CAMBRICON and (scale < 0).any():
        raise ValueError(f"scale must not be negative; got {scale}")
    if not np.isfinite(zero_point).all():
        raise ValueError(f"zero_point must be finite; got {zero_point}")


def device_parameter_error(scale, zero_point, scheme):
    """Raise the error for values the GPU's check rejected (brought to the host as
    ``scale``, ``zero_point``): the one :func:`parameter_values` names."""
    parameter_values(scale, zero_point, scheme)
    return RuntimeError("the GPU rejected a scale or zero point that the host check accepts")


# --------------------------------------------------------------------------- Dask arrays
def dask_known_shape(shape):
    """A Dask array's graph is planned from its chunk sizes, which must be known."""
    if any(math.isnan(n) for n in shape):
        raise ValueError(f"Dask array has unknown chunk sizes (shape {tuple(shape)}); call "
                         "compute_chunk_sizes() first")


def dask_no_out(out):
    """Dask arrays are not written in place: their operations return new (lazy) arrays."""
    if out is not None:
        raise TypeError("out= is not supported for Dask arrays: the result is a new "
                        "Dask array")


def dask_needs_dask():
    return ImportError("numba_quant.open_dask needs Dask: pip install 'numba_quant[dask]'")


def npy_path(path):
    """``open_dask`` reads ``.npy`` files."""
    if not str(path).endswith(".npy"):
        raise ValueError(f"open_dask reads .npy files; got {str(path)!r}")
