"""Every argument check and its error message, for the public functions and both backends.

The public functions and both backends call these with what they know about an argument
(its value, or a device array's dtype, size and flags) and raise on bad arguments only
through them.
Kept free of numba so that ``import numba_quant`` does not import it.
"""
import math
import operator

import numpy as np

from numba_quant._host import codes
from numba_quant._host.blocks_plan import float_kind, grid_shape
from numba_quant._host.blocks_plan import MAPPING_TYPES

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


def observer_class_settings(formula, bit, scheme, per_layer, axis, nonfinite):
    """The OneFlow settings every observer class keeps, checked: ``(attributes, scheme
    code)``, the attributes a dict of ``quantization_formula``, ``quantization_bit``,
    ``quantization_scheme``, ``per_layer_quantization``, ``axis`` and ``nonfinite``."""
    code = scheme_code(formula, scheme)
    nonfinite_policy(nonfinite)
    return {"quantization_formula": formula, "quantization_bit": bits(bit),
            "quantization_scheme": scheme, "per_layer_quantization": bool(per_layer),
            "axis": integer("axis", axis), "nonfinite": nonfinite}, code


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


DEVICES = ("cpu", "cuda")


def device_name(value):
    """A ``device=`` setting: ``"cpu"`` or ``"cuda"``."""
    return _choice("device", value, DEVICES)


_CHECKED_SETTINGS = {}


def observer_settings(formula, scheme, quantization_bit, nonfinite):
    """``(scheme code, bits, omit)`` after :func:`scheme_code`, :func:`bits` and
    :func:`nonfinite_policy`; settings that passed once are remembered (a per-call cost
    of small observer calls).  The type of ``quantization_bit`` is part of the key: 8.0
    equals 8 but is refused."""
    key = (formula, scheme, quantization_bit, type(quantization_bit), nonfinite)
    try:
        return _CHECKED_SETTINGS[key]
    except (KeyError, TypeError):  # not seen yet, or unhashable (checked below)
        pass
    settings = (scheme_code(formula, scheme), bits(quantization_bit),
                nonfinite_policy(nonfinite))
    try:
        _CHECKED_SETTINGS[key] = settings
    except TypeError:
        pass
    return settings


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


def cpu_only(capability):
    """A GPU array given to work that has CPU kernels only."""
    return TypeError(f"the {capability} kernels run on the CPU only in this version: pass a "
                     f"host array (numpy, or a CPU tensor: cupy_array.get(), tensor.cpu())")


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


def output_matches(shape, dtype, expected_shape, expected_dtype, name="out"):
    """A caller's ``out`` must have the result's shape and dtype."""
    if tuple(shape) != tuple(expected_shape):
        raise ValueError(f"{name} has shape {tuple(shape)}; expected "
                         f"{tuple(expected_shape)}")
    if np.dtype(dtype) != np.dtype(expected_dtype):
        raise TypeError(f"{name} has dtype {dtype}; expected {np.dtype(expected_dtype)}")


def observer_out(out):
    """``min_max_observer``'s ``out``: a pair ``(scale, zero_point)`` of two arrays."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError("out must be a pair of arrays (scale, zero_point); got "
                        f"{type(out).__name__}"
                        + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
    if out[0] is out[1]:
        raise ValueError("out[0] and out[1] must be two different arrays")
    return tuple(out)


def outputs_overlap():
    return ValueError("out[0] and out[1] must not share memory")


def c_contiguous_output(contiguous):
    """An ``out`` written row after row must be C-contiguous."""
    if not contiguous:
        raise ValueError("out must be C-contiguous (the result is written row after row)")


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
def parameter_types(scale, zero_point):
    """``scale`` and ``zero_point`` hold real numbers, as many of one as of the other
    (any objects with ``dtype`` and ``size``: host or device)."""
    for name, values in (("scale", scale), ("zero_point", zero_point)):
        if np.dtype(values.dtype).kind not in "fiu" or values.size == 0:
            raise TypeError(f"{name} must hold real numbers; got {values.dtype} of size "
                            f"{values.size}")
    same_length(scale.size, zero_point.size, ("scale", "zero_point"))


def parameter_arrays(scale, zero_point, shape, axis):
    """The channel axis (None: per layer) for ``scale`` and ``zero_point``, after checking
    their types and lengths."""
    parameter_types(scale, zero_point)
    return parameter_axis(axis, shape, scale.size, "scale")


def parameter_values(scale, zero_point, scheme):
    """Raise for scale or zero point values that quantization does not take.

    ``scale`` and ``zero_point`` are host arrays in the compute dtype.  The scale (a
    shift for cambricon) must be finite, and not negative unless it is a shift, and a
    shift must be below the dtype's largest exponent + 1; the zero point must be finite.  (The GPU checks device values with the same rule,
    ``_reference.valid_code_params``, and calls this to name the problem.)
    """
    if not np.isfinite(scale).all():
        what = "shift (cambricon scale)" if scheme == codes.CAMBRICON else "scale"
        raise ValueError(f"every {what} must be finite; got {scale}")
    if scheme != codes.CAMBRICON and (scale < 0).any():
        raise ValueError(f"scale must not be negative; got {scale}")
    if scheme == codes.CAMBRICON:
        # The step 2**trunc(shift) must be finite in the compute dtype.
        limit = np.finfo(scale.dtype).maxexp
        if (scale >= limit).any():
            raise ValueError(f"every shift (cambricon scale) must be below {limit} in "
                             f"{scale.dtype} (the step 2**trunc(shift) overflows); "
                             f"got {scale}")
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
    """``open_dask`` without a tensor name reads ``.npy`` files."""
    if not str(path).endswith(".npy"):
        raise ValueError(f"open_dask reads .npy files, or a checkpoint's tensor=; got "
                         f"{str(path)!r}")


def dask_tensor_not_found(path, name, names):
    shown = ", ".join(repr(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
    return ValueError(f"{path} has no float tensor named {name!r} (it has {shown})")
# --------------------------------------------------------------------------- block-wise
# torchao's target dtypes and their code ranges; sub-byte ranges are stored in int8/uint8.
_SUB_BYTE = {**{f"uint{b}": (0, (1 << b) - 1, "uint8") for b in range(1, 8)},
             **{f"int{b}": (-(1 << (b - 1)), (1 << (b - 1)) - 1, "int8") for b in range(1, 8)}}


def mapping_type(value):
    """torchao's mapping type name (case-insensitive; MappingType members too) as a code."""
    name = getattr(value, "name", value)
    if isinstance(name, str) and name.lower() in MAPPING_TYPES:
        return MAPPING_TYPES[name.lower()]
    listed = ", ".join(repr(v) for v in MAPPING_TYPES)
    raise ValueError(f"mapping_type must be one of {listed}; got {value!r}")


def target_dtype(value):
    """``(codes dtype, lowest, highest)`` of a target dtype: a numpy integer dtype up to 32
    bits, or a sub-byte name "uint1".."uint7", "int1".."int7"."""
    if isinstance(value, str) and value in _SUB_BYTE:
        lowest, highest, store = _SUB_BYTE[value]
        return np.dtype(store), lowest, highest
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "iu" or dtype.itemsize > 4:
        raise TypeError(f"target_dtype must be an integer dtype of at most 32 bits or one of "
                        f"'uint1'..'uint7', 'int1'..'int7'; got {value!r}")
    info = np.iinfo(dtype)
    return dtype, int(info.min), int(info.max)


def quant_range(quant_min, quant_max, lowest, highest, what):
    """``(quant_min, quant_max)`` defaulting to the target's range, checked inside it."""
    qmin = lowest if quant_min is None else integer("quant_min", quant_min)
    qmax = highest if quant_max is None else integer("quant_max", quant_max)
    if not lowest <= qmin < qmax <= highest:
        raise ValueError(f"quant_min {qmin} and quant_max {qmax} must satisfy "
                         f"{lowest} <= quant_min < quant_max <= {highest} for {what}")
    return qmin, qmax


_FLOAT_KINDS = "float16, bfloat16 (ml_dtypes), float32 or float64"


def _float_kind(value):
    """The float kind ("bfloat16", "float16", "float32", "float64") of a dtype-like
    ``value``, or None."""
    try:
        return float_kind(np.dtype(value))
    except TypeError:
        return None


def block_input_kind(dtype, what="x"):
    """The float kind of a block-wise input ("bfloat16", "float16", "float32", "float64")."""
    kind = _float_kind(dtype)
    if kind is None:
        raise TypeError(f"{what} must be a {_FLOAT_KINDS} array; got dtype {np.dtype(dtype)}")
    return kind


def float_dtype_arg(value, name):
    """A float dtype argument (numpy or ml_dtypes.bfloat16) as its kind."""
    kind = _float_kind(value)
    if kind is None:
        raise TypeError(f"{name} must be {_FLOAT_KINDS}; got {value!r}")
    return kind


def block_size(block_size, shape):
    """``block_size`` checked against ``shape``: a tuple of ints in [1, d]."""
    try:
        sizes = tuple(operator.index(b) for b in block_size)
    except TypeError:
        raise TypeError(f"block_size must be a sequence of integers; got {block_size!r}") \
            from None
    if len(sizes) != len(shape):
        raise ValueError(f"block_size {sizes} has {len(sizes)} entries but the input has "
                         f"shape {tuple(shape)} ({len(shape)} axes)")
    for axis, (b, d) in enumerate(zip(sizes, shape)):
        if b < 1:
            raise ValueError(f"block_size {sizes}: entry {b} on axis {axis} must be positive")
        if d == 0:
            raise ValueError(f"the input of shape {tuple(shape)} is empty")
        if b > d:
            raise ValueError(f"block_size {sizes}: entry {b} on axis {axis} exceeds the "
                             f"input's length {d} there (shape {tuple(shape)})")
    return sizes


def parameter_shape(name, shape, expected, also):
    """A block parameter array must have ``expected`` (torchao's) or ``also`` (full rank)."""
    if tuple(shape) not in (tuple(expected), tuple(also)):
        raise ValueError(f"{name} has shape {tuple(shape)}; expected {tuple(expected)} (or "
                         f"{tuple(also)}, one value per block on every axis)")


# --------------------------------------------------------------------------- block_size= on the
# OneFlow functions (min_max_observer, fake_quantization, quantization, quantize, dequantize)
def block_size_setting(value):
    """A block size kept by an observer before any input is seen: None, or a tuple of
    positive ints (checked against the input's shape at each call)."""
    if value is None:
        return None
    try:
        sizes = tuple(operator.index(b) for b in value)
    except TypeError:
        raise TypeError(f"block_size must be a sequence of integers; got {value!r}") from None
    if any(b < 1 for b in sizes):
        raise ValueError(f"block_size {sizes}: every entry must be positive")
    return sizes


def per_channel_block(shape, axis):
    """The block size of per-channel quantization along ``axis``: 1 there, whole elsewhere."""
    return tuple(1 if i == axis else d for i, d in enumerate(shape))


def _other_than_channel_block(sizes, shape, axis):
    """``(axis, the per-channel block of axis)`` when ``sizes`` gives another block grid
    on ``shape`` than one block per channel of ``axis``, else None."""
    axis = channel_axis(axis, len(shape), per_layer=False)
    expected = per_channel_block(shape, axis)
    same = grid_shape(shape, sizes) == grid_shape(shape, expected)
    return None if same else (axis, expected)


def block_size_with_axis(sizes, shape, axis, what):
    """A block size (``what``: "block_size", or the parameters' shape it was read from)
    given together with a channel ``axis`` must be that axis's per-channel block."""
    other = _other_than_channel_block(sizes, shape, axis)
    if other is not None:
        raise ValueError(f"{what} gives block size {tuple(sizes)} on the input of shape "
                         f"{tuple(shape)}, not the per-channel block {other[1]} of axis "
                         f"{other[0]}; leave out axis (or block_size)")
    return sizes


def observer_block_size(block_size_value, shape, per_layer, axis):
    """``min_max_observer``'s ``block_size`` checked against ``shape``; with
    ``per_layer_quantization=False`` it must be the per-channel block of ``axis``."""
    sizes = block_size(block_size_value, shape)
    other = None if per_layer else _other_than_channel_block(sizes, shape, axis)
    if other is not None:
        raise ValueError(f"block_size {sizes} on the input of shape {tuple(shape)} "
                         f"disagrees with per_layer_quantization=False, axis={other[0]} "
                         f"(block {other[1]}); pass one or the other")
    return sizes


def _without_ones(shape):
    return tuple(n for n in shape if n != 1)


def block_parameter_shape(name, shape, grid, sizes, x_shape):
    """A parameter array for ``block_size``: one value per block, in the grid's shape
    (axes of length one may be missing or added: ``(C,)`` stands for ``(C, 1)``)."""
    if tuple(shape) != tuple(grid) and _without_ones(shape) != _without_ones(grid):
        raise ValueError(f"{name} has shape {tuple(shape)}; block_size {tuple(sizes)} on the "
                         f"input of shape {tuple(x_shape)} needs one value per block, shape "
                         f"{tuple(grid)}")


def inferred_block_size(x_shape, scale_shape):
    """The block size whose grid ``ceil(x_shape / block_size)`` is ``scale_shape``.

    Per axis with ``g`` blocks over length ``d``: an even split ``d / g`` when ``g``
    divides ``d``; else the one block size ``b`` with ``ceil(d / b) == g``, where only one
    exists.  Anything else (no such ``b``, or several) raises ``ValueError``.
    """
    sizes = []
    for axis, (d, g) in enumerate(zip(x_shape, scale_shape)):
        where = (f"scale of shape {tuple(scale_shape)} on the input of shape "
                 f"{tuple(x_shape)}: axis {axis}")
        if g < 1 or g > d:
            raise ValueError(f"{where} of length {d} cannot hold {g} block(s)")
        if d % g == 0:
            sizes.append(d // g)
            continue
        fits = [b for b in range(-(-d // g), d + 1) if -(-d // b) == g]
        if not fits:
            raise ValueError(f"{where}: no block size splits length {d} into {g} blocks; "
                             "pass block_size")
        if len(fits) > 1:
            raise ValueError(f"{where}: block sizes {fits[0]} to {fits[-1]} all split length "
                             f"{d} into {g} blocks; pass block_size")
        sizes.append(fits[0])
    return tuple(sizes)


def histogram_blocks_for_dask():
    return ValueError("HistogramObserver with block_size does not take Dask arrays; "
                      "compute the batch first (x.compute()) or observe it without "
                      "block_size")


def empty_block_error(indices, grid, count=None):
    """``nonfinite="omit"`` and some blocks have no finite value (``indices``: flat; the
    first of them when ``count``, their number, is given)."""
    count = len(indices) if count is None else count
    shown = ", ".join(str(tuple(int(i) for i in np.unravel_index(k, grid)))
                      for k in indices[:8]) + (", ..." if count > 8 else "")
    return ValueError(f"{count} block(s) have no finite value (block index {shown} "
                      f"of the grid {tuple(grid)}); nonfinite='omit' ignored them all")


def block_nonfinite_error(count, what="block(s)"):
    return ValueError(f"input contains non-finite values (NaN or infinity) in {count} {what}; "
                      "block-wise quantization needs finite input")

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
    """``bins`` as an int of at least 2 (and even: the histogram is split at zero), at
    most 2**30 (the kernels compute bins through int32)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"bins must be an integer; got {value!r}")
    value = integer("bins", value)
    if value < 2 or value % 2:
        raise ValueError(f"bins must be an even integer of at least 2; got {value}")
    if value > 1 << 30:
        raise ValueError(f"bins must be at most 2**30; got {value}")
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


# --------------------------------------------------------------------------- arrays


def mergeable(other, cls):
    if not isinstance(other, cls):
        raise TypeError(f"can only merge a {cls.__name__}; got {type(other).__name__}")


def state_counts(counts, bins):
    """Saved histogram counts as a (channels, bins) int64 array of non-negative values."""
    counts = np.asarray(counts)
    if (counts.ndim != 2 or counts.shape[1] != bins or counts.dtype.kind not in "iu"
            or np.any(counts < 0)):
        raise ValueError(f"state counts must be (channels, {bins}) non-negative integers; "
                         f"got shape {counts.shape} and dtype {counts.dtype}")
    return counts.astype(np.int64)


def state_grid(grid, channels):
    """A saved block grid must have one block per row of the counts."""
    if int(np.prod(grid)) != channels:
        raise ValueError(f"state grid {tuple(grid)} has {int(np.prod(grid))} blocks but "
                         f"counts has {channels} rows")


def state_per_channel(sizes, channels):
    if any(size != channels for size in sizes):
        raise ValueError("state exponent, min_val and max_val need one value per channel "
                         f"of counts ({channels}); got {sizes}")


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


def format_block_size(value):
    """A block size of the float formats: a positive integer."""
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


def format_codes_dtype(dtype, fmt, what):
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
