"""Dask arrays: numba_quant's operations as Dask graphs whose tasks are numba_quant calls.

Imported only when a Dask array reaches a public function (``_dispatch.is_dask``), so
that Dask stays optional.  Every task works on one chunk (a numpy or CuPy array) with
the same backends as an in-memory call, so results are bit-identical to that call:

* The observers reduce each chunk to a partial state per channel, ``(min, max,
  non-finite count)`` as float64 (every float16/32/64 value and every count below 2**53
  is exact there), merge the states in a tree (min of mins, max of maxes, sum of
  counts: exact in any order), and finish with the host backend's scale and zero point
  (``_reference.qparams``).  The non-finite policy is checked in the finishing task, so
  its errors surface when the result is computed.
* The element-wise operations map each chunk through the in-memory function with the
  parameters of the chunk's channels (``blockwise`` slices per-channel parameters, numpy
  or Dask, to the chunk's slice of the channel axis).
"""
import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._host import codes
from numba_quant._dispatch import backend, cpu, is_dask, to_host

# Positions in a partial state's trailing axis.
_LO, _HI, _NONFINITE = 0, 1, 2


def _dask_array():
    import dask.array
    return dask.array


def _meta(x, ndim, dtype):
    """An empty array of ``x``'s chunk type (numpy or CuPy) for the result's ``meta``."""
    from dask.array.utils import meta_from_array
    return meta_from_array(x._meta, ndim=ndim, dtype=dtype)


def _checked(x):
    _checks.dask_known_shape(x.shape)
    return x


# --------------------------------------------------------------------------- observers
def _chunk_state(block, axis, omit):
    """The partial state of one chunk: float64, the chunk's shape with every axis but the
    channel axis reduced to 1, and a trailing axis ``(min, max, non-finite count)``.

    Channels without a finite element (``omit``) hold ``(+inf, -inf)``, which leave other
    chunks' values unchanged when merged; the chunk's non-finite count (``raise``) is
    held by its first channel, so that the sum over all states is the array's count.
    """
    keep = [1] * block.ndim
    if axis is not None:
        keep[axis] = block.shape[axis]
    channels = 1 if axis is None else block.shape[axis]
    state = np.zeros((channels, 3), np.float64)
    state[:, _LO], state[:, _HI] = np.inf, -np.inf
    if block.size:
        ops = backend(block)
        data = ops.channels.as_array(block)
        lo, hi, status = ops.channels.channel_minmax(data, axis, omit)
        if status == codes.HAS_NONFINITE:  # "raise": only the count matters
            state[0, _NONFINITE] = ops.channels.count_nonfinite(data)
        else:
            state[:, _LO] = to_host(lo).reshape(-1)
            state[:, _HI] = to_host(hi).reshape(-1)
    return state.reshape(keep + [3])


def _merge_states(state, axis, keepdims):
    """Merge partial states along ``axis`` (the reduced axes): exact in any order.

    -0.0 orders below +0.0, as in the kernels' reductions (numpy's min and max return
    either zero, depending on the order).
    """
    lows, highs = state[..., _LO], state[..., _HI]
    lo = lows.min(axis=axis, keepdims=keepdims)
    negative_zero = ((lows == 0) & np.signbit(lows)).any(axis=axis, keepdims=keepdims)
    lo = np.where((lo == 0) & negative_zero, -0.0, lo)
    hi = highs.max(axis=axis, keepdims=keepdims)
    positive_zero = ((highs == 0) & ~np.signbit(highs)).any(axis=axis, keepdims=keepdims)
    hi = np.where((hi == 0) & positive_zero, 0.0, hi)
    count = state[..., _NONFINITE].sum(axis=axis, keepdims=keepdims)
    return np.stack([lo, hi, count], axis=-1)


def per_channel(x, chunk_state, args, axis, width, merge):
    """Lazy per-channel states of the Dask array ``x``: ``chunk_state(block, *args)``
    gives each chunk's ``(channels of the chunk, width)`` float64 states (the chunk's
    other axes kept with length 1), ``merge(states, axis, keepdims)`` combines states
    along ``axis``.  Shape ``(channels, width)`` (one channel per layer, ``axis``
    None), one chunk."""
    da = _dask_array()
    partial = x.map_blocks(
        chunk_state, *args, new_axis=x.ndim, dtype=np.float64,
        chunks=tuple(x.chunks[i] if i == axis else (1,) * len(x.chunks[i])
                     for i in range(x.ndim)) + ((width,),),
        meta=np.empty((0,) * (x.ndim + 1), np.float64))
    reduced = tuple(i for i in range(x.ndim) if i != axis)
    merged = da.reduction(partial, merge, merge, axis=reduced, combine=merge,
                          dtype=np.float64,
                          meta=np.empty((0,) * (x.ndim + 1 - len(reduced)), np.float64))
    return merged.reshape(-1, width).rechunk(-1)


def channel_states(x, axis, omit):
    """Lazy merged states of a Dask array: shape ``(channels, 3)`` (``(1, 3)`` per layer,
    ``axis`` None), one chunk along the channels."""
    x = _checked(x)
    if x.ndim == 0:
        x = x.reshape(1)
    return per_channel(x, _chunk_state, (axis, omit), axis, 3, _merge_states)


def settled_range(state, dtype, per_layer):
    """``(lo, hi)`` in ``dtype`` from merged states, or the error the in-memory call
    raises: the non-finite count (``raise``) or the channels with no finite value."""
    count = int(state[:, _NONFINITE].sum())
    if count:
        raise _checks.nonfinite_error(count)
    lo = state[:, _LO].astype(dtype)  # exact: these are values of dtype
    hi = state[:, _HI].astype(dtype)
    if (lo > hi).any():
        raise _checks.empty_channel_error(lo, hi, per_layer)
    return lo, hi


def _finish_observe(state, dtype, per_layer, scheme, bits, like):
    """Scale and zero point (``(channels, 2)``, in ``like``'s array type) from states."""
    lo, hi = settled_range(state, dtype, per_layer)
    scale, zero_point = cpu().channels.qparams(lo, hi, scheme, bits)  # (on the host)
    return backend(like).from_host(np.stack([scale, zero_point], axis=-1), like=like)


def min_max_observer(x, axis, omit, scheme, bits):
    """``min_max_observer`` of a Dask array: lazy ``(scale, zero_point)``."""
    dtype = _checks.compute_dtype(x.dtype)
    _checks.not_empty(_checked(x).shape, axis)
    states = channel_states(x, axis, omit)
    meta = _meta(x, 2, dtype)
    params = states.map_blocks(_finish_observe, dtype, axis is None, scheme, bits, meta,
                               chunks=(states.chunks[0], (2,)), dtype=dtype, meta=meta)
    return params[:, 0], params[:, 1]


def channel_minmax(x, axis, omit, ops):
    """Computed, checked per-channel ``(lo, hi)`` of a Dask array, as ``ops`` arrays.

    For the moving-average observer, whose state update needs the values now.
    """
    dtype = _checks.compute_dtype(x.dtype)
    _checks.not_empty(_checked(x).shape, axis)
    state = to_host(channel_states(x, axis, omit).compute())
    lo, hi = settled_range(state, dtype, axis is None)
    return ops.from_host(lo, like=x._meta), ops.from_host(hi, like=x._meta)


def host_side(x, *others):
    """``(ops, data, like)`` for the moving-average observer: the backend of ``x``'s
    chunks, ``x`` lazily in its compute dtype, and an empty array of the chunk type."""
    dtype = _checks.compute_dtype(x.dtype)
    ops = backend(x._meta, *others)
    return ops, _checked(x).astype(dtype), x._meta


# --------------------------------------------------------------------------- element-wise
def _parameter(values):
    """A scale or zero point as a 1-D Dask array, or a 1-D host array."""
    if is_dask(values):
        return _checked(values).reshape(-1)
    return to_host(values).reshape(-1)


def _apply_block(block, scale, zero_point, function, kwargs):
    return function(block, scale, zero_point, **kwargs)


def apply(function, x, scale, zero_point, scheme, axis, dtype, parameter_dtype, kwargs):
    """``function`` (an in-memory public function) mapped over a Dask array's chunks.

    ``scale`` and ``zero_point`` are checked here when both are host values (so that bad
    values raise at once, as in memory, in ``parameter_dtype``), else by each chunk's
    call when the graph runs.  ``dtype`` is the result's; ``kwargs`` the settings
    ``function`` takes.
    """
    da = _dask_array()
    x = _checked(x)
    scale, zero_point = _parameter(scale), _parameter(zero_point)
    axis = _checks.parameter_arrays(scale, zero_point, x.shape, axis)
    if not (is_dask(scale) or is_dask(zero_point)):
        _checks.parameter_values(scale.astype(parameter_dtype),
                                 zero_point.astype(parameter_dtype), scheme)
    index = tuple(range(x.ndim))
    args = [x, index]
    for p in (scale, zero_point):
        if axis is None:
            # One value for every chunk: a plain host array, or the one Dask chunk.
            args += [p.rechunk(-1), (x.ndim,)] if is_dask(p) else [p, None]
        else:
            # The chunk's slice of the channels, cut by blockwise.
            chunks = (x.chunks[axis],)
            p = p.rechunk(chunks) if is_dask(p) else da.from_array(p, chunks=chunks)
            args += [p, (axis,)]
    kwargs = dict(kwargs, axis=0 if axis is None else axis)
    return da.blockwise(_apply_block, index, *args, function=function, kwargs=kwargs,
                        concatenate=True, dtype=dtype, meta=_meta(x, x.ndim, dtype))
