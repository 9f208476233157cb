"""The host backend: numpy arrays in, numpy arrays out.

It turns arrays into ``(outer, channels, inner)`` views, sizes the parallel work and
calls the kernels of :mod:`numba_quant._cpu.kernels`.  :mod:`numba_quant._cuda.channels` offers
the same functions for device arrays; the public functions only talk to this interface.
"""

import numba
import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._host import compile_notice as _compile_notice
from numba_quant._host import chunks
from numba_quant._host import codes
from numba_quant._host import tuning as _tuning
from numba_quant._cpu import kernels
from numba_quant._cpu import layer
from numba_quant._cpu import threads
from numba_quant._cpu import rows
from numba_quant._host import torch_arrays as _torch
from numba_quant._cpu.arrays import to_host
from numba_quant._host.layout import aligned_views, channel_view


_compile_notice.install()

def _split(n_channels, n_inner, most):
    """``(blocks, pieces)``: channel blocks and inner pieces giving about ``most`` tasks."""
    if n_channels >= most:
        return most, 1
    return n_channels, max(1, min(n_inner, -(-most // n_channels)))


_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def as_array(x):
    """``x`` as a native-endian float32/float64 ndarray; a torch CPU tensor is read in
    place.  float16 and bfloat16 (``ml_dtypes`` arrays, torch tensors) become float32:
    a copy up to ``_tuning.WIDEN_CHUNK`` elements, else a
    :class:`~numba_quant._host.chunks.ChunkedInput` over their storage, whose values the
    functions below read chunk by chunk."""
    if type(x) is np.ndarray and x.dtype in _NATIVE_FLOATS:
        return x  # the common case, quickly
    if type(x) is chunks.ChunkedInput:
        return x
    if _torch.is_tensor(x):
        if _torch.is_bfloat16(x):
            return chunks.converted(_torch.bfloat16_bits(x), np.float32, bfloat16=True)
        x = _torch.to_numpy(x)
    else:
        x = np.asarray(x)
    values = chunks.float32_values(x)
    if values is not None:
        return values
    dtype = _checks.compute_dtype(x.dtype)
    if x.dtype != dtype:  # a byte order other than the machine's
        x = x.astype(dtype)
    return x


def _plan(x, axis):
    """``(x3, parallel, most)``: the reduction's view, and its parallel task budget."""
    if axis is not None and x.shape[axis] == 1:
        axis = None  # one channel: the per-layer view is the better one
    x3 = channel_view(x, axis)
    return (x3,) + threads.tasks(x3.size)


def _flat(x, axis):
    """``x`` as one flat view for per-layer work (``axis`` None, or a channel axis of
    length 1) when it is contiguous; None otherwise."""
    if axis is not None and x.shape[axis] != 1:
        return None
    if _tuning.PARALLEL_THRESHOLD <= x.size < _tuning.LONG_INNER:
        return None  # (reached only with shrunk thresholds: the general route's periodic
        # reduction, whose fold order gives zeros their sign, as before)
    flags = x.flags
    if flags.c_contiguous:
        if x.ndim == 1:
            return x
        return x.reshape(-1)
    if flags.f_contiguous:
        return x.T.reshape(-1)
    return None


def _reduce_layer(flat, omit, scheme, bits):
    """``(lo, hi, status)`` (``scheme`` -1) or ``(scale, zero_point, status)`` of a flat
    array: one serial compiled call below the parallel threshold, else parallel pieces."""
    first = np.empty(1, flat.dtype)
    second = np.empty(1, flat.dtype)
    parallel, most = threads.tasks(flat.size)
    if not parallel:
        return first, second, layer.reduce_small(flat, omit, scheme, bits, first, second)
    pieces = _split(1, flat.size, most)[1]
    lows = np.empty(pieces, flat.dtype)
    highs = np.empty(pieces, flat.dtype)
    status = layer.reduce[False](flat, lows, highs, scheme, bits, first, second)
    if omit and status == codes.HAS_NONFINITE:
        status = layer.reduce[True](flat, lows, highs, scheme, bits, first, second)
    return first, second, status


def _one_call(x3, parallel):
    """Whether a reduction is one compiled call with its own small outputs.

    Per layer that call runs the same kernel as larger inputs; per channel, larger serial
    inputs with short inner runs go to the periodic kernel, which vectorises them.
    """
    return not parallel and (x3.size <= _tuning.SMALL or x3.shape[1] == 1)


def channel_minmax(x, axis, omit):
    """Per-channel ``(lo, hi, status)`` of ``x`` along ``axis`` (None: the whole array).

    The first pass propagates NaN and vectorises; only when it meets a non-finite value
    and ``omit`` is set does a second, slower pass skip them.
    """
    if type(x) is chunks.ChunkedInput:
        with threads.one_thread():
            return chunks.channel_minmax(x, axis, omit, channel_minmax)
    flat = _flat(x, axis)
    if flat is not None:
        return _reduce_layer(flat, omit, -1, 0)
    return _channel_minmax(*_plan(x, axis), omit)


def _short_runs(x3, omit):
    """Whether a planned view goes to the short-run reduction: many channels of short
    contiguous runs, reduced by windows over blocks of channels."""
    n_outer, n_channels, n_inner = x3.shape
    return (n_inner < _tuning.SHORT_ROW and x3.flags.c_contiguous and not omit
            and n_channels * n_inner > _tuning.SHORT_RUNS_PERIOD)


def _reduce_short_runs(x3, parallel, most, first, second, scheme, bits):
    """The short-run reduction into ``first``/``second``: min and max (``scheme`` -1), or
    scale and zero point; returns the status."""
    n_outer, n_channels, n_inner = x3.shape
    return kernels.reduce_short_runs[parallel](
        x3.reshape(-1), n_outer, n_channels, n_inner, max(1, min(most, n_channels)),
        first, second, scheme, bits)


def _channel_minmax(x3, parallel, most, omit):
    """:func:`channel_minmax` of a planned view (see :func:`_plan`)."""
    if _one_call(x3, parallel):
        return kernels.small_channel_minmax(x3, omit)
    n_outer, n_channels, n_inner = x3.shape
    lo = np.empty(n_channels, x3.dtype)
    hi = np.empty(n_channels, x3.dtype)
    if _short_runs(x3, omit):
        # (On HAS_NONFINITE its lo/hi are not NaN-propagated; under "raise" only the
        # status is used.)
        return lo, hi, _reduce_short_runs(x3, parallel, most, lo, hi, -1, 0)
    if (n_inner < _tuning.LONG_INNER and n_channels * n_inner <= _tuning.MAX_PERIOD
            and x3.flags.c_contiguous):
        # Short inner runs: lanes of whole periods (see reduce_periodic).
        reduce = kernels.reduce_periodic[parallel]
        data = (x3.reshape(-1), n_channels, n_inner)
        tasks = (max(1, min(most, n_outer)),)
        partial_shape = (n_channels, 1)
    else:
        reduce = kernels.reduce_by_channel[parallel]
        data = (x3,)
        blocks, pieces = _split(n_channels, n_inner, most)
        tasks = (blocks, pieces)
        # With one piece per channel the kernel writes lo/hi directly: no partials.
        partial_shape = (n_channels, pieces) if pieces > 1 else (1, 1)
    lows = np.empty(partial_shape, x3.dtype)
    highs = np.empty(partial_shape, x3.dtype)
    status = reduce(*data, False, *tasks, lows, highs, lo, hi)
    if omit and status == codes.HAS_NONFINITE:
        status = reduce(*data, True, *tasks, lows, highs, lo, hi)
    return lo, hi, status


def count_nonfinite(x, nan_only=False):
    if type(x) is chunks.ChunkedInput:
        with threads.one_thread():
            return chunks.count_nonfinite(x, nan_only, count_nonfinite)
    return int(kernels.count_nonfinite(channel_view(x, None), nan_only))


def _into(out, n, dtype):
    """``out`` (a caller's pair of checked numpy arrays, or None) if the kernels can
    write into them (contiguous), else a new pair of ``n`` elements."""
    if out is not None and out[0].flags.c_contiguous and out[1].flags.c_contiguous:
        return out
    return np.empty(n, dtype), np.empty(n, dtype)


def observe(x, axis, omit, scheme, bits, like=None, out=None):
    """``min_max_observer``'s per-channel ``(scale, zero_point, status)``; on a status
    other than OK the scale and zero point are None.  (``like``: for the interface.)
    ``out``: a pair of arrays of the result's shape and dtype that the many-channel
    routes write into (the caller copies what is returned elsewhere)."""
    if type(x) is chunks.ChunkedInput:  # the (min, max) of the chunks, then the formulas
        lo, hi, status = channel_minmax(x, axis, omit)
        if status != codes.OK:
            return None, None, status
        return qparams(lo, hi, scheme, bits, out) + (status,)
    flat = _flat(x, axis)
    if flat is not None:
        scale, zero_point, status = _reduce_layer(flat, omit, scheme, bits)
        return (scale, zero_point, status) if status == codes.OK else (None, None, status)
    x3, parallel, most = _plan(x, axis)
    if _one_call(x3, parallel):  # small inputs: the formulas in the same compiled call
        scale, zero_point, status = kernels.small_observe(x3, omit, scheme, bits)
        return (scale, zero_point, status) if status == codes.OK else (None, None, status)
    if _short_runs(x3, omit):  # the formulas inside the reduction
        scale, zero_point = _into(out, x3.shape[1], x3.dtype)
        status = _reduce_short_runs(x3, parallel, most, scale, zero_point, scheme, bits)
        return (scale, zero_point, status) if status == codes.OK else (None, None, status)
    lo, hi, status = _channel_minmax(x3, parallel, most, omit)
    if status != codes.OK:
        return None, None, status
    return qparams(lo, hi, scheme, bits, out) + (status,)


def observe_layer(x, omit, scheme, bits):
    """Per-layer ``(scale, zero_point)`` of a numpy array in fewer Python steps, or None
    when ``x`` needs the general route (:func:`as_array`, :func:`observe`): another
    dtype or byte order, no flat view, an empty array, or a status other than OK (the
    general route then raises the error that the status names).  The same kernels as
    :func:`observe`, so the same bits; for the per-call cost of small observer calls."""
    if x.dtype not in _NATIVE_FLOATS or x.size == 0:
        return None
    flat = _flat(x, None)
    if flat is None:
        return None
    scale, zero_point, status = _reduce_layer(flat, omit, scheme, bits)
    return (scale, zero_point) if status == codes.OK else None


def qparams(lo, hi, scheme, bits, out=None):
    """Per-channel ``(scale, zero_point)`` from per-channel ``(lo, hi)`` (1-D arrays of
    the compute dtype, every lo <= hi); into ``out`` when possible (see :func:`_into`)."""
    scale, zero_point = _into(out, lo.size, lo.dtype)
    parallel = lo.size >= _tuning.PARALLEL_CHANNELS and numba.get_num_threads() > 1
    kernels.qparams[parallel](lo, hi, scheme, bits, scale, zero_point)
    return scale, zero_point


def moving_observe(lo, hi, moving_max, moving_min, update, momentum, scheme, bits):
    scale = np.empty_like(moving_max)
    zero_point = np.empty_like(moving_max)
    kernels.moving_observe(lo, hi, moving_max, moving_min, update, np.float32(momentum),
                           scheme, bits, scale, zero_point)
    return scale, zero_point


def _overlaps_differently(x, out):
    """True when ``out`` shares memory with ``x`` other than element for element."""
    if x is out or not np.may_share_memory(x, out):
        return False
    same_place = (x.__array_interface__["data"][0] == out.__array_interface__["data"][0]
                  and x.strides == out.strides and x.itemsize == out.itemsize)
    return not same_place


def _same_order(x, out):
    """True when ``x`` and ``out`` are both C-contiguous or both Fortran-contiguous."""
    if x.flags.c_contiguous:
        return out.flags.c_contiguous
    return x.flags.f_contiguous and out.flags.f_contiguous


# Signed codes are written through an unsigned view of the same width (see
# numba_quant._reference.primitives.stored): one compiled map per code width.
_UNSIGNED_VIEW = {np.dtype(np.int8): np.uint8, np.dtype(np.int16): np.uint16}


def _unsigned_codes(out):
    """``out`` as the kernels write it: int8/int16 (native order) viewed as unsigned."""
    unsigned = _UNSIGNED_VIEW.get(out.dtype)
    return out if unsigned is None else out.view(unsigned)


def parameter_values(values):
    """Scale or zero point values as a 1-D numpy array (GPU values are copied here)."""
    return to_host(values).reshape(-1)


def code_params(scale, zero_point, dtype, scheme, bits, checked=True, like=None):
    """Per-channel ``(divisor, offset, lowest, highest)`` of quantization from ``scale``
    and ``zero_point`` (host values the public layer has checked).  (``like``: for the
    interface.)"""
    scale = np.ascontiguousarray(scale, dtype)
    zero_point = np.ascontiguousarray(zero_point, dtype)
    divisor = np.empty_like(scale)
    offset = np.empty_like(scale)
    lowest, highest = kernels.code_params(scale, zero_point, scheme, bits, divisor, offset)
    return divisor, offset, lowest, highest


def quantize_map(x, params, axis, what, out):
    """Write codes (``what=CODE``) or fake-quantized values (``FAKE``) of ``x`` to ``out``.

    ``out`` has ``x``'s shape; it may be ``x`` itself.  ``params`` comes from
    :func:`code_params`: one channel (per-layer, ``axis`` None) or one per channel along
    ``axis``.
    """
    if type(x) is chunks.ChunkedInput:
        with threads.one_thread():
            return chunks.quantize_map(x, params, axis, what, out, quantize_map)
    divisor, offset, lowest, highest = params
    if _overlaps_differently(x, out):
        # As numpy's ufuncs do: the result is as if all of x were read first.
        out[...] = quantize_map(x, params, axis, what, np.empty(x.shape, out.dtype))
        return out
    target = _unsigned_codes(out)
    flat = _flat(x, None) if axis is None and _same_order(x, out) else None
    if flat is not None:
        flat_out = _flat(target, None)
        parallel, most = threads.tasks(flat.size)
        layer.map_values[what][parallel](flat, flat_out, divisor[0], offset[0], lowest,
                                         highest, _split(1, flat.size, most)[1])
        return out
    views = aligned_views((x, target), axis)
    if views is None:
        # No common strided view: compute into a contiguous buffer, then copy over.
        buffer = np.empty(x.shape, out.dtype)
        quantize_map(np.ascontiguousarray(x), params, axis, what, buffer)
        out[...] = buffer
        return out
    x3, out3 = views
    parallel, most = threads.tasks(x3.size)
    n_outer, n_channels, n_inner = x3.shape
    if n_inner >= _tuning.LONG_INNER or n_outer == 1:
        blocks, pieces = _split(n_channels, n_inner, most)
        kernels.map_by_channel[parallel](x3, out3, divisor, offset, lowest, highest,
                                         what, blocks, pieces)
    elif (x3.flags.c_contiguous and out3.flags.c_contiguous
          and n_channels * n_inner <= _tuning.MAX_PERIOD):
        # Rows of whole periods, with the constants spread over their lanes.
        width = n_channels * n_inner
        rows.map_rows[what][parallel](
            x3.reshape(n_outer, width), out3.reshape(n_outer, width),
            np.repeat(divisor, n_inner), np.repeat(offset, n_inner), lowest, highest,
            max(1, min(most, n_outer)))
    else:
        kernels.map_by_outer[parallel](x3, out3, divisor, offset, lowest, highest, what,
                                       max(1, min(most, n_outer)))
    return out


def store(target, values):
    """``target[...] = values`` (``target`` from :func:`as_output`)."""
    np.copyto(target, np.asarray(values).reshape(target.shape))


def shares_memory(a, b):
    return np.may_share_memory(a, b)


def as_codes(q, dtype):
    """Codes of any real type as values of the float ``dtype``: ``q`` itself when it has
    that type, else converted (:func:`~numba_quant._host.chunks.converted`: in chunks
    when large, no converted copy of the whole)."""
    if _torch.is_tensor(q) and _torch.is_bfloat16(q) and dtype == np.float32:
        return chunks.converted(_torch.bfloat16_bits(q, "codes"), dtype, bfloat16=True)
    q = _torch.to_numpy(q, "codes") if _torch.is_tensor(q) else np.asarray(q)
    _checks.codes_dtype(q.dtype)
    if q.dtype == dtype:
        return q
    return chunks.converted(q, dtype)


def as_state(a, dtype, name):
    """A caller's state array (moving_max or moving_min), checked, as a 1-D view."""
    if _torch.is_tensor(a):
        a = _torch.writable_numpy(a, name)
    _checks.numpy_array(name, a)
    _checks.state_array(name, a.dtype, dtype, not a.flags.writeable, a.size)
    flat = a.reshape(-1)
    if not np.shares_memory(flat, a):
        raise _checks.state_not_contiguous(name)
    return flat

