"""The GPU backend: device arrays in, device arrays out.

The same functions as :mod:`numba_quant._cpu.channels` (the "backend interface"), for arrays with
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
import numpy as np
from numba import cuda

from numba_quant._host import checks as _checks
from numba_quant._host import codes
from numba_quant._cuda import arrays
from numba_quant._cuda import kernels
from numba_quant._cuda import chunks as chunked
from numba_quant._cuda import launch
from numba_quant._cuda import scratch
from numba_quant._host import tuning as _tuning
from numba_quant._cuda.arrays import empty
from numba_quant._host.where import on_device
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


# --------------------------------------------------------------------------- reductions
def _reduce(x, axis, omit, what, scheme=0, bits=0, like=None):
    """``(out, status)``: per-channel results of ``x`` along ``axis`` (None: the whole
    array) as ``out[0]``/``out[1]`` (min and max, or scale and zero point: see
    ``kernels.MINMAX``/``kernels.QPARAMS``), and the reduction's status.  ``out`` is in
    ``like``'s array type (default: Numba)."""
    dtype = np.dtype(x.dtype)
    x3 = arrays.reduction_view(x, axis, scratch.int_type(dtype))
    n_outer, n_channels, n_inner = (int(n) for n in x3.shape)
    mask, inf_bits = scratch.key_constants(dtype)
    out = empty((2, n_channels), dtype, like)
    out_device = arrays.device(out)
    settle = (bool(omit), mask, inf_bits, dtype.type(0), what, int(scheme), int(bits),
              out_device)
    unit_stride = x3.strides[2] == x3.dtype.itemsize
    kernel, blocks, threads, plan = launch.plan_minmax(n_outer, n_channels, n_inner,
                                                       unit_stride)
    with scratch.LOCK:
        device, kept = scratch.current()
        try:
            if kernel is kernels.minmax_each:
                kernel[blocks, threads](x3, *settle, kept.status)
            else:
                keys = kept.keys
                # (the kept array's own length: KEPT_KEYS may have changed since)
                if n_channels > min(_tuning.KEPT_KEYS, keys.shape[1]):
                    keys = cuda.device_array((2, n_channels), np.int64)
                    kernels.fill_keys[launch.small_grid(n_channels)](keys)
                kernel[blocks, threads](x3, bool(omit), mask, inf_bits, keys, *plan)
                kernels.settle_keys[launch.small_grid(n_channels)](keys, *settle,
                                                                    kept.status)
            cuda.synchronize()
        except BaseException:
            scratch.forget(device)  # the kept keys may be half used: start afresh
            raise
        status = scratch.take_status(kept)
    return out, status


def channel_minmax(x, axis, omit):
    """Per-channel ``(lo, hi, status)`` of ``x`` along ``axis`` (None: the whole array)."""
    if type(x) is chunked.DeviceChunkedInput:
        return chunked.channel_minmax(x, axis, omit, channel_minmax)
    out, status = _reduce(x, axis, omit, kernels.MINMAX)
    return out[0], out[1], status


def observe(x, axis, omit, scheme, bits, like=None, out=None):
    """``min_max_observer``'s per-channel ``(scale, zero_point, status)``, the scale and
    zero point computed where the reduction ends (no extra launch), in ``like``'s array
    type.  (``out``: for the interface; the caller copies the results there.)"""
    if type(x) is chunked.DeviceChunkedInput:
        return chunked.observe(x, axis, omit, scheme, bits, like, channel_minmax)
    out, status = _reduce(x, axis, omit, kernels.QPARAMS, scheme, bits, like)
    return out[0], out[1], status


def count_nonfinite(x, nan_only=False):
    """Number of NaN (and, unless ``nan_only``, infinite) elements of ``x``."""
    if type(x) is chunked.DeviceChunkedInput:
        return chunked.count_nonfinite(x, nan_only, count_nonfinite)
    x3 = arrays.reduction_view(x, None, scratch.int_type(x.dtype))
    mask, inf_bits = scratch.key_constants(np.dtype(x.dtype))
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
    with scratch.LOCK:
        _, kept = scratch.current()
        kernels.code_params[blocks, threads](scale, zero_point, int(scheme), int(bits),
                                             not checked, params, kept.status)
        status = codes.OK
        if not checked:
            cuda.synchronize()
            status = scratch.take_status(kept)
    if status == codes.BAD_PARAMETERS:
        raise _checks.device_parameter_error(arrays.to_host(scale), arrays.to_host(zero_point),
                                             scheme)
    return scratch.CodeParams(params, int(scheme), int(bits))


def quantize_map(x, params, axis, what, out):
    """Write codes (``CODE``), fake-quantized values (``FAKE``) or decoded codes
    (``DECODE``) of ``x`` to ``out`` (same shape; may be ``x`` itself), with the
    constants of :func:`code_params`."""
    if type(x) is chunked.DeviceChunkedInput:
        return chunked.quantize_map(x, params, axis, what, out, quantize_map)
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

