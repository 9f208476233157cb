"""Quantization blocks on Dask arrays: chunks moved to block boundaries, then each chunk
computed by the in-memory functions (numba_quant's kernels), exactly.

A block of a block-wise function (``block_size=`` of OneFlow's functions, torchao's
block functions, MX blocks of 32 and NVFP4 blocks of 16 along an axis) must lie in one
chunk: a chunk boundary inside a block would give each piece its own scale.  So the
input is first rechunked (:func:`align`): every chunk boundary along an axis is moved
up to the next multiple of that axis's block size (the last chunk ends with the axis,
where a ragged last block lies whole in it).  Chunks already on block boundaries are
left as they are; a chunking finer than the blocks becomes one block per chunk.  Every
block is then whole in one chunk, and the in-memory call on the chunk computes it with
the same arithmetic as the call on the whole array.  Per-block parameters are sliced
to the chunk's blocks (the grid's chunks, :func:`grid_chunks`).

Imported with :mod:`numba_quant._dask.channels`, when a Dask array arrives.
"""
import operator

import numpy as np

from numba_quant._dispatch import blockwise as _blockwise
from numba_quant._host import checks as _checks
from numba_quant._dask.channels import _checked, _dask_array, _meta
from numba_quant._dispatch import backend, is_dask, on_device, to_host


def aligned_chunks(chunks, size):
    """The chunk lengths of one axis with every boundary moved up to a multiple of
    ``size`` (or to the axis's end)."""
    length = sum(chunks)
    if length == 0:
        return tuple(chunks)
    bounds, position = [0], 0
    for chunk in chunks:
        position += chunk
        bound = min(-(-position // size) * size, length)
        if bound > bounds[-1]:
            bounds.append(bound)
    return tuple(int(b) for b in np.diff(bounds))


def align(x, sizes):
    """``x`` rechunked so that no chunk boundary cuts a block of ``sizes`` (one entry
    per axis; 1 leaves the axis alone)."""
    x = _checked(x)
    chunks = tuple(aligned_chunks(c, s) for c, s in zip(x.chunks, sizes))
    return x if chunks == x.chunks else x.rechunk(chunks)


def grid_chunks(chunks, sizes):
    """The chunks of the block grid of an aligned array: each chunk's number of blocks."""
    return tuple(tuple(-(-c // s) for c in axis_chunks)
                 for axis_chunks, s in zip(chunks, sizes))


def local_sizes(sizes, shape):
    """The block size for one chunk: a chunk shorter than a block (the last, ragged one)
    holds one block."""
    return tuple(min(s, d) for s, d in zip(sizes, shape))


def on_grid(values, grid, chunks):
    """A per-block parameter (host, GPU or Dask; grid-shaped or torchao-shaped) as a Dask
    array of the grid's shape, in the grid's chunks."""
    da = _dask_array()
    if is_dask(values):
        return _checked(values).reshape(grid).rechunk(chunks)
    if not on_device(values):
        values = to_host(values)
    return da.from_array(values.reshape(grid), chunks=chunks)


class Scalar:
    """A value that every chunk's call takes whole (a number, or a 0-d Dask array)."""

    def __init__(self, value):
        self.value = value


def _call_on_chunk(*blocks, function, sizes, kwargs, size_name, wrap):
    """``function`` on one chunk (the first of ``blocks``) with the chunk's block size;
    a single result is wrapped in a tuple when ``wrap``."""
    local = local_sizes(sizes, blocks[0].shape)
    if size_name is not None:
        kwargs = dict(kwargs, **{size_name: local})
    result = function(*blocks, **kwargs)
    return (result,) if wrap else result


def map_aligned(function, x, sizes, params, outputs, kwargs, *, size_name="block_size"):
    """Lazy outputs of ``function(chunk, *param_chunks, **kwargs, block_size=local)``.

    ``x`` must be aligned to ``sizes`` already; ``params`` are Dask arrays on the grid
    (:func:`on_grid`) or None (passed as None).  ``outputs``: per result of ``function``
    (a tuple, or one array when there is one output), ``(kind, dtype)`` with kind
    "elements" (the chunk's shape), "grid" (one value per block) or "one" (one value
    per chunk).  A :class:`Scalar` in ``params`` goes to every chunk whole.  Each chunk is one
    task; the outputs are taken from its tuple.
    """
    da = _dask_array()
    index = tuple(range(x.ndim))
    args = [x, index]
    for p in params:
        if isinstance(p, Scalar):
            args += [p.value, ()] if is_dask(p.value) else [p.value, None]
        else:
            args += [p, index] if p is not None else [None, None]
    chunk_sets = {"elements": x.chunks, "grid": grid_chunks(x.chunks, sizes),
                  "one": tuple((1,) * len(c) for c in x.chunks)}
    wrap = len(outputs) == 1
    results = da.blockwise(
        _call_on_chunk, index, *args, function=function, sizes=tuple(sizes),
        kwargs=kwargs, size_name=size_name, wrap=wrap, concatenate=True,
        align_arrays=False,
        dtype=outputs[0][1], meta=_meta(x, x.ndim, outputs[0][1]))
    lazy = tuple(
        results.map_blocks(operator.getitem, i, chunks=chunk_sets[kind], dtype=dtype,
                           meta=_meta(x, x.ndim, dtype))
        for i, (kind, dtype) in enumerate(outputs))
    return lazy[0] if wrap else lazy


# --------------------------------------------------------------------------- OneFlow
# Fields of an observed block's state: scale, zero point, 1 for a block without a
# finite value (nonfinite="omit"), and the chunk's non-finite count (in its first block).
_SCALE, _ZERO_POINT, _EMPTY, _NONFINITE = range(4)
# Fields of the errors' summary: non-finite count, empty blocks, their first flat indices.
_SHOWN = 8


def _observe_chunk(block, sizes, omit, scheme, bits):
    """The blocks of one chunk: float64 ``(chunk grid) + (4,)`` (float16/32/64 scales
    and integer-valued zero points are exact in float64)."""
    ops = backend(block)
    data = ops.channels.as_array(block)
    local = local_sizes(sizes, data.shape)
    scale, zero_point, state = _blockwise.observe_blocks(ops, block, data, local, omit,
                                                         scheme, bits)
    grid = tuple(-(-d // s) for d, s in zip(data.shape, local))
    result = np.zeros(grid + (4,), np.float64)
    if state is None:
        result[..., _SCALE] = to_host(scale).reshape(grid)
        result[..., _ZERO_POINT] = to_host(zero_point).reshape(grid)
        return result
    empty = state.reshape(grid) == _blockwise.EMPTY
    result[..., _EMPTY] = empty
    if (state == _blockwise.NONFINITE).any():
        result.reshape(-1, 4)[0, _NONFINITE] = ops.channels.count_nonfinite(data)
    return result


def _summary_of_chunk(states, grid, block_info=None):
    """A chunk's part of the errors' summary: ``(count, empties, first flat indices)``,
    with the flat indices in the whole grid (-1 where none)."""
    where = block_info[0]["array-location"][:-1]
    local = np.argwhere(states[..., _EMPTY] > 0)[:_SHOWN]
    flat = np.ravel_multi_index(tuple((local + [lo for lo, _ in where]).T), grid) \
        if local.size else np.empty(0, np.int64)
    summary = np.full(2 + _SHOWN, -1.0)
    summary[0] = states[..., _NONFINITE].sum()
    summary[1] = (states[..., _EMPTY] > 0).sum()
    summary[2:2 + flat.size] = flat
    return summary.reshape((1,) * (states.ndim - 1) + (2 + _SHOWN,))


def _merge_summaries(summaries, axis, keepdims):
    flat = summaries.reshape(-1, 2 + _SHOWN)
    indices = np.sort(flat[:, 2:][flat[:, 2:] >= 0])[:_SHOWN]
    merged = np.full(2 + _SHOWN, -1.0)
    merged[0], merged[1] = flat[:, 0].sum(), flat[:, 1].sum()
    merged[2:2 + indices.size] = indices
    return merged.reshape((1,) * (summaries.ndim - 1) + (2 + _SHOWN,)) if keepdims \
        else merged


def _finish_chunk(states, summary, field, value_dtype, grid, like):
    """One chunk of the scales (or zero points), or the error of the whole array."""
    summary = summary.reshape(-1)
    if summary[0]:
        raise _checks.nonfinite_error(int(summary[0]))
    if summary[1]:
        shown = summary[2:][summary[2:] >= 0].astype(np.int64)
        raise _checks.empty_block_error(shown, grid, count=int(summary[1]))
    values = states[..., field].astype(value_dtype)  # exact: these are values of dtype
    return backend(like).from_host(values, like=like)


def min_max_observer(x, sizes, omit, scheme, bits):
    """``min_max_observer(x, block_size=sizes)`` of a Dask array: lazy grid-shaped
    ``(scale, zero_point)``.

    A block size that is per layer or per channel over the whole array is reduced as
    such (no rechunking); other blocks are observed chunk by chunk after :func:`align`,
    and the errors (non-finite count, empty blocks) are those of the whole array.
    """
    from numba_quant._dask import channels as _dask
    da = _dask_array()
    x = _checked(x)
    dtype = _checks.compute_dtype(x.dtype)
    grid = tuple(-(-d // s) for d, s in zip(x.shape, sizes))
    kind, axis = _blockwise.layout(x.shape, sizes)
    if kind != "blocks":
        scale, zero_point = _dask.min_max_observer(x, axis, omit, scheme, bits)
        return scale.reshape(grid), zero_point.reshape(grid)
    x = align(x, sizes)
    chunks = grid_chunks(x.chunks, sizes)
    states = x.map_blocks(_observe_chunk, sizes, omit, scheme, bits, new_axis=x.ndim,
                          chunks=chunks + ((4,),), dtype=np.float64,
                          meta=np.empty((0,) * (x.ndim + 1), np.float64))
    partial = states.map_blocks(_summary_of_chunk, grid,
                                chunks=tuple((1,) * len(c) for c in chunks)
                                + ((2 + _SHOWN,),), dtype=np.float64)
    summary = da.reduction(partial, _merge_summaries, _merge_summaries,
                           axis=tuple(range(x.ndim)), combine=_merge_summaries,
                           dtype=np.float64, concatenate=True,
                           meta=np.empty((0,), np.float64))
    index = tuple(range(x.ndim + 1))
    meta = _meta(x, x.ndim, dtype)
    return tuple(
        da.blockwise(_finish_chunk, index[:-1], states, index, summary, (x.ndim + 1,),
                     field=field, value_dtype=dtype, grid=grid, like=meta, concatenate=True,
                     dtype=dtype,
                     meta=meta)
        for field in (_SCALE, _ZERO_POINT))


def apply(function, x, scale, zero_point, sizes, parameter_dtype, scheme, dtype, kwargs):
    """``function(x, scale, zero_point, block_size=sizes, **kwargs)`` (an in-memory public
    function) chunk by chunk on the aligned ``x``, lazy.

    Host parameters are checked now (as in memory, in ``parameter_dtype``); Dask ones by
    each chunk's call.
    """
    x = _checked(x)
    grid = tuple(-(-d // s) for d, s in zip(x.shape, sizes))
    if not (is_dask(scale) or is_dask(zero_point)):
        s, z = to_host(scale), to_host(zero_point)
        _checks.parameter_types(s, z)
        _checks.parameter_values(s.astype(parameter_dtype), z.astype(parameter_dtype),
                                 scheme)
    x = align(x, sizes)
    chunks = grid_chunks(x.chunks, sizes)
    params = [on_grid(p, grid, chunks) for p in (scale, zero_point)]
    return map_aligned(function, x, sizes, params, [("elements", dtype)], kwargs)
