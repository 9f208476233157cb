"""The GPU backend: device arrays in, device arrays out.

The same functions as :mod:`numba_quant._cpu.backend` (the "backend interface"), for arrays with
``__cuda_array_interface__`` (CuPy, Numba device arrays, PyTorch CUDA tensors) and the
CUDA simulator's device arrays.  :mod:`numba_quant._dispatch` imports this module only
when such an array first arrives.

This module only computes: it turns arguments into device arrays
(:mod:`numba_quant._cuda.arrays`; large float16/bfloat16 inputs into the chunked inputs of
:mod:`numba_quant._cuda.chunks`, which run the functions here chunk by chunk), plans launches (:mod:`numba_quant._cuda.launch`) and
runs the kernels of :mod:`numba_quant._cuda.kernels` on the default stream.  Problems the
kernels find (non-finite values, empty channels, bad scales) come back as a status word
in host-mapped memory, read after the call's one synchronisation, and are raised by the
public layer with the messages of :mod:`numba_quant._host.checks`.
"""
import functools
import threading

import numpy as np
from numba import cuda

from numba_quant._host import checks as _checks
from numba_quant._host import codes
from numba_quant._cuda import arrays
from numba_quant._cuda import kernels
from numba_quant._cuda import launch
from numba_quant._host import tuning as _tuning
from numba_quant._cuda.arrays import empty, from_host, wrap  # noqa: F401  (the interface)
from numba_quant._dispatch import on_device
from numba_quant._host.layout import aligned_views


# --------------------------------------------------------------------------- arguments
def as_array(x):
    """``x`` as a float32/float64 device array.  float16 and bfloat16 become float32: a
    copy up to ``_tuning.DEVICE_WIDEN_CHUNK`` elements, else a
    :class:`~numba_quant._cuda.chunks.DeviceChunkedInput` over their memory, whose values
    the functions below read chunk by chunk."""
    if type(x) is chunked.DeviceChunkedInput:
        return x
    d = arrays.device(x)
    bits = chunked.bfloat16_bits(x, d)
    if bits is not None:
        return chunked.converted(bits, np.float32, bfloat16=True)
    dtype = _checks.compute_dtype(d.dtype)
    _checks.device_array_dtype(d.dtype)
    if d.dtype != dtype:
        return chunked.converted(d, dtype)
    return d


def as_output(out):
    """A caller's ``out`` as a device array over the same memory, checked writable."""
    d = arrays.device(out)
    _checks.output_array(d.dtype, arrays.info(d).readonly)
    return d


def store(target, values):
    """``target[...] = values`` on the device (``target`` from :func:`as_output`)."""
    source = arrays.device(values)
    arrays.copy(arrays.info(source), arrays.info(target), target.shape)


def shares_memory(a, b):
    """Whether two device arrays' extents overlap."""
    return arrays.overlap(arrays.info(a), arrays.info(b))


def as_codes(q, dtype):
    """Codes of any real type as values of the float ``dtype``: ``q`` itself when it has
    that type, else converted (:func:`~numba_quant._cuda.chunks.converted`: in chunks
    when large)."""
    d = arrays.device(q)
    _checks.codes_dtype(d.dtype)
    _checks.device_array_dtype(d.dtype)
    if d.dtype == dtype:
        return d
    return chunked.converted(d, dtype)


def as_state(a, dtype, name):
    """A caller's moving_max/moving_min as a 1-D device view, checked (updated in place)."""
    d = arrays.device(a)
    d_info = arrays.info(d)
    _checks.state_array(name, d.dtype, dtype, d_info.readonly, d.size)
    flat = arrays.flat_view(d_info)
    if flat is None:
        raise _checks.state_not_contiguous(name)
    return flat


def parameter_values(values):
    """Scale or zero point values as given: a device array (GPU values stay there), or a
    1-D numpy array (host values)."""
    if on_device(values):
        return arrays.device(values)
    return np.asarray(values).reshape(-1)


# --------------------------------------------------------------------------- status word
class _Scratch:
    """What the kernels keep between calls: a ``(2, KEPT_KEYS)`` int64 key array at its
    start values, and the status word in host-mapped memory (read after a sync without
    a copy)."""

    def __init__(self):
        keys = np.empty((2, _tuning.KEPT_KEYS), np.int64)
        keys[0] = kernels.START_LO
        keys[1] = kernels.START_HI
        self.keys = cuda.to_device(keys)
        self.status = cuda.mapped_array(1, np.int32)
        self.status[0] = codes.OK


_scratch = {}  # device id -> _Scratch
# One call at a time uses the scratch: they share the kept keys and the status word.
_SCRATCH_LOCK = threading.Lock()


def _current_scratch():
    """This device's :class:`_Scratch` (call with ``_SCRATCH_LOCK`` held)."""
    device = 0 if arrays.SIMULATOR else cuda.get_current_device().id
    scratch = _scratch.get(device)
    if scratch is None:
        scratch = _scratch[device] = _Scratch()
    return device, scratch


def _take_status(scratch):
    """The status word (read after a synchronisation), put back to OK for the next call."""
    status = int(scratch.status[0])
    scratch.status[0] = codes.OK
    return status


# --------------------------------------------------------------------------- reductions
def _int_type(dtype):
    """The signed integer type of a float type's bits."""
    return np.dtype(np.int32 if np.dtype(dtype).itemsize == 4 else np.int64)


@functools.lru_cache(maxsize=None)
def _key_constants(dtype):
    """``(mask, inf_bits)`` for a float type, in the integer type of its bits: the bits
    below the sign, and the bits of +inf (also its key)."""
    itype = _int_type(dtype)
    return itype.type(np.iinfo(itype).max), np.array(np.inf, dtype).view(itype)[()]


def _reduce(x, axis, omit, what, scheme=0, bits=0, like=None):
    """``(out, status)``: per-channel results of ``x`` along ``axis`` (None: the whole
    array) as ``out[0]``/``out[1]`` (min and max, or scale and zero point: see
    ``kernels.MINMAX``/``kernels.QPARAMS``), and the reduction's status.  ``out`` is in
    ``like``'s array type (default: Numba)."""
    dtype = np.dtype(x.dtype)
    x3 = arrays.reduction_view(x, axis, _int_type(dtype))
    n_outer, n_channels, n_inner = (int(n) for n in x3.shape)
    mask, inf_bits = _key_constants(dtype)
    out = empty((2, n_channels), dtype, like)
    out_device = arrays.device(out)
    settle = (bool(omit), mask, inf_bits, dtype.type(0), what, int(scheme), int(bits),
              out_device)
    unit_stride = x3.strides[2] == x3.dtype.itemsize
    kernel, blocks, threads, plan = launch.plan_minmax(n_outer, n_channels, n_inner,
                                                       unit_stride)
    with _SCRATCH_LOCK:
        device, scratch = _current_scratch()
        try:
            if kernel is kernels.minmax_each:
                kernel[blocks, threads](x3, *settle, scratch.status)
            else:
                keys = scratch.keys
                # (the kept array's own length: KEPT_KEYS may have changed since)
                if n_channels > min(_tuning.KEPT_KEYS, keys.shape[1]):
                    keys = cuda.device_array((2, n_channels), np.int64)
                    kernels.fill_keys[launch.small_grid(n_channels)](keys)
                kernel[blocks, threads](x3, bool(omit), mask, inf_bits, keys, *plan)
                kernels.settle_keys[launch.small_grid(n_channels)](keys, *settle,
                                                                    scratch.status)
            cuda.synchronize()
        except BaseException:
            _scratch.pop(device, None)  # the kept keys may be half used: start afresh
            raise
        status = _take_status(scratch)
    return out, status


def channel_minmax(x, axis, omit):
    """Per-channel ``(lo, hi, status)`` of ``x`` along ``axis`` (None: the whole array)."""
    if type(x) is chunked.DeviceChunkedInput:
        return chunked.channel_minmax(x, axis, omit)
    out, status = _reduce(x, axis, omit, kernels.MINMAX)
    return out[0], out[1], status


def observe(x, axis, omit, scheme, bits, like=None, out=None):
    """``min_max_observer``'s per-channel ``(scale, zero_point, status)``, the scale and
    zero point computed where the reduction ends (no extra launch), in ``like``'s array
    type.  (``out``: for the interface; the caller copies the results there.)"""
    if type(x) is chunked.DeviceChunkedInput:
        return chunked.observe(x, axis, omit, scheme, bits, like)
    out, status = _reduce(x, axis, omit, kernels.QPARAMS, scheme, bits, like)
    return out[0], out[1], status


def count_nonfinite(x, nan_only=False):
    """Number of NaN (and, unless ``nan_only``, infinite) elements of ``x``."""
    if type(x) is chunked.DeviceChunkedInput:
        return chunked.count_nonfinite(x, nan_only)
    x3 = arrays.reduction_view(x, None, _int_type(x.dtype))
    mask, inf_bits = _key_constants(np.dtype(x.dtype))
    count = cuda.to_device(np.zeros(1, np.int64))
    blocks, threads = launch.grid(x3.size, _tuning.UNROLL)
    kernels.count_nonfinite[blocks, threads](x3, bool(nan_only), mask, inf_bits, count)
    return int(count.copy_to_host()[0])


def moving_observe(lo, hi, moving_max, moving_min, update, momentum, scheme, bits):
    """The moving-average observer's step per channel; the state is updated in place."""
    n = moving_max.size
    scale = cuda.device_array(n, moving_max.dtype)
    zero_point = cuda.device_array(n, moving_max.dtype)
    blocks, threads = launch.small_grid(n)
    kernels.moving_observe[blocks, threads](lo, hi, moving_max, moving_min, bool(update),
                                            np.float32(momentum), int(scheme), int(bits),
                                            scale, zero_point)
    return scale, zero_point


# --------------------------------------------------------------------------- element-wise
class CodeParams:
    """What :func:`quantize_map` needs: per-channel ``(divisor, offset)`` on the device
    (``params``, shape ``(2, channels)``), the scheme and the bits."""

    __slots__ = ("params", "scheme", "bits")

    def __init__(self, params, scheme, bits):
        self.params = params
        self.scheme = scheme
        self.bits = bits


def _device_values(values, dtype):
    """Parameter values (device or host) as a contiguous 1-D device array of ``dtype``."""
    if isinstance(values, np.ndarray):
        return cuda.to_device(np.ascontiguousarray(values.reshape(-1), dtype))
    return arrays.values(values, dtype)


def code_params(scale, zero_point, dtype, scheme, bits, checked, like=None):
    """Per-channel quantization constants made on the device from ``scale`` and
    ``zero_point`` (see :func:`parameter_values`), in the compute ``dtype``.

    Unless ``checked`` (all values came from the host and were checked there), the
    kernel checks every value on the device; a bad one is found by the status word,
    read after one synchronisation, and raised with the message the host check gives.
    (``like``: the array type whose memory pool the constants come from.)
    """
    if isinstance(scale, np.ndarray) and isinstance(zero_point, np.ndarray):
        both = cuda.to_device(np.stack((scale.reshape(-1), zero_point.reshape(-1))).astype(
            dtype, copy=False))  # one copy for both
        scale, zero_point = both[0], both[1]
    else:
        scale = _device_values(scale, dtype)
        zero_point = _device_values(zero_point, dtype)
    params = arrays.device(empty((2, scale.size), dtype, like))
    blocks, threads = launch.small_grid(scale.size)
    with _SCRATCH_LOCK:
        _, scratch = _current_scratch()
        kernels.code_params[blocks, threads](scale, zero_point, int(scheme), int(bits),
                                             not checked, params, scratch.status)
        status = codes.OK
        if not checked:
            cuda.synchronize()
            status = _take_status(scratch)
    if status == codes.BAD_PARAMETERS:
        raise _checks.device_parameter_error(arrays.to_host(scale), arrays.to_host(zero_point),
                                             scheme)
    return CodeParams(params, int(scheme), int(bits))


def quantize_map(x, params, axis, what, out):
    """Write codes (``CODE``), fake-quantized values (``FAKE``) or decoded codes
    (``DECODE``) of ``x`` to ``out`` (same shape; may be ``x`` itself), with the
    constants of :func:`code_params`."""
    if type(x) is chunked.DeviceChunkedInput:
        return chunked.quantize_map(x, params, axis, what, out)
    _map(x, out, params, int(what), axis)
    return out


def _map(x, out, params, what, axis):
    x_info, out_info = arrays.info(x), arrays.info(out)
    if x.size and arrays.overlaps_differently(x_info, out_info):
        # As numpy's ufuncs do: the result is as if all of x were read first.
        buffer = cuda.device_array(x_info.shape, out_info.dtype)
        _map(x, buffer, params, what, axis)
        arrays.copy(arrays.info(buffer), out_info)
        return
    views = aligned_views((arrays.stand_in(x_info), arrays.stand_in(out_info)), axis)
    if views is None:
        # No common strided view: map a contiguous copy into a buffer, then scatter it.
        source = arrays.contiguous_copy(x_info)
        buffer = cuda.device_array(x_info.shape, out_info.dtype)
        _map(source, buffer, params, what, axis)
        arrays.copy(arrays.info(buffer), out_info)
        return
    x3 = arrays.from_stand_in(views[0], x_info)
    out3 = arrays.from_stand_in(views[1], out_info)
    blocks, threads = launch.grid(x3.size, _tuning.UNROLL)
    kernels.map_values[blocks, threads](x3, out3, params.params, params.scheme, params.bits,
                                        what)


# (At the end: the chunked inputs run the functions above on each chunk.)
from numba_quant._cuda import chunks as chunked# noqa: E402
