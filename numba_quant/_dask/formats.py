"""torchao's block functions and the low-precision float formats on Dask arrays.

Blocks are kept whole in chunks as :mod:`numba_quant._dask.blocks` describes (chunk
boundaries moved up to block boundaries), and every chunk is computed by the in-memory
function, so that the values equal the in-memory call's bit for bit.  Formats scaled by
the whole tensor or channel (``to_float8`` per tensor or per channel, NVFP4's per-tensor
scale) take two passes: each chunk's maximum of ``|x|`` (merged exactly: the maximum of
maxima, NaN winning as in memory), then the chunks encoded with the scales.

Errors that depend on the values: the small results (scales, zero points, the per-tensor
scale) raise the whole array's error when computed; the element-wise results raise from
the first failing chunk, counting that chunk (the chunk results are not held back until
the whole array has been seen, so that a larger-than-memory array streams through).

Imported only when a Dask array reaches one of these functions.
"""
import collections
import functools

import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._host import blocks_plan as plan
from numba_quant._host.float_formats import FORMATS
from numba_quant._dask.channels import _checked, _dask_array, _meta, per_channel
from numba_quant._dask.blocks import (
    Scalar,
    align,
    grid_chunks,
    map_aligned,
    on_grid,
)
from numba_quant._dispatch import backend, cpu, is_dask, to_host


# The in-memory functions a format's graph runs on each chunk, handed over by the public
# module (which imports this one only for a Dask array): the graph never imports the
# public layer back.  Module-level functions, so that tasks pickle by reference.
Float8Functions = collections.namedtuple(
    "Float8Functions", "to_float8 from_float8 amax_of_chunk encode_chunk")
Nvfp4Functions = collections.namedtuple(
    "Nvfp4Functions", "to_nvfp4_chunk fake_quantize_chunk abs_max_of_chunk "
    "per_tensor_scale_of smallest_per_tensor block")
BlockFunctions = collections.namedtuple(
    "BlockFunctions", "observe quantize dequantize check_scale zero_points dtype_of")


def _dtypes(result):
    return [np.asarray(r).dtype for r in (result if isinstance(result, tuple) else (result,))]


def _tiny(ndim, dtype, fill=0):
    return np.full((1,) * ndim, fill, dtype)


# --------------------------------------------------------------------------- along an axis
def along_axis(function, x, block_size, axis, outputs, *, scale_grid=None, scale_name="scale",
               scalar=None, settings):
    """``function(chunk, [scale chunk], [scalar], **settings)`` on the chunks of ``x``
    moved to multiples of ``block_size`` along ``axis`` (MX, NVFP4 and FP8 blocks).

    ``outputs``: the kind of each result ("elements" or "grid"); their dtypes are those
    of the in-memory call on a one-element array (which also checks the settings now).
    """
    x = _checked(x)
    ax = _checks.block_axis(axis, x.ndim)
    block = _checks.format_block_size(block_size)
    sizes = tuple(block if i == ax else 1 for i in range(x.ndim))
    grid = tuple(-(-d // s) for d, s in zip(x.shape, sizes))
    probe = [_tiny(x.ndim, x.dtype)]
    params = []
    x = align(x, sizes)
    if scale_grid is not None:
        _checks.scale_shape(np.shape(scale_grid), grid, scale_name)
        probe.append(_tiny(x.ndim, scale_grid.dtype, 1))
        params.append(on_grid(scale_grid, grid, grid_chunks(x.chunks, sizes)))
    if scalar is not None:
        probe.append(np.float32(1.0) if is_dask(scalar) else scalar)
        params.append(Scalar(scalar))
    dtypes = _dtypes(function(*probe, **settings))
    return map_aligned(function, x, sizes, params, list(zip(outputs, dtypes)), settings,
                       size_name=None)


# --------------------------------------------------------------------------- maxima
def _maxima_of_chunk(block, chunk_maxima, axis):
    """``(max |x|, non-finite count)`` of a chunk per channel of ``axis`` (None: one),
    float64, in the chunk's shape reduced to 1 but along ``axis``, plus a trailing 2."""
    keep = [1] * block.ndim
    if axis is not None:
        keep[axis] = block.shape[axis]
    amax, bad = chunk_maxima(block)
    state = np.empty((int(np.prod(keep)), 2), np.float64)
    state[:, 0] = np.asarray(amax, np.float32).reshape(-1)
    state[:, 1] = 0
    state[0, 1] = bad
    return state.reshape(keep + [2])


def _merge_maxima(state, axis, keepdims):
    amax = state[..., 0].max(axis=axis, keepdims=keepdims)  # NaN wins, as in memory
    return np.stack([amax, state[..., 1].sum(axis=axis, keepdims=keepdims)], axis=-1)


def _maxima(x, chunk_maxima, axis):
    """Lazy merged ``(max |x|, non-finite count)`` per channel: shape ``(channels, 2)``,
    one chunk."""
    return per_channel(x, _maxima_of_chunk, (chunk_maxima, axis), axis, 2, _merge_maxima)


def _raise_nonfinite(state, propagate):
    bad = int(state[:, 1].sum())
    if bad and not propagate:
        raise _checks.nonfinite_blocks_error(bad, "element(s)")
    return state[:, 0].astype(np.float32)


# --------------------------------------------------------------------------- FP8
def _fp8_scales(state, fp8_max, propagate):
    return cpu().formats.fp8_scales(_raise_nonfinite(state, propagate), fp8_max)


def _to_device(values, like):
    return backend(like).from_host(to_host(values), like=like)


def to_float8(x, name, per_layer, axis, block_size, nonfinite, functions):
    """``to_float8`` of a Dask array: lazy ``(elements, scale)``; ``functions``: the
    in-memory functions each chunk runs (:class:`Float8Functions`)."""
    if block_size is not None:
        return along_axis(functions.to_float8, x, block_size, -1, ("elements", "grid"),
                          settings=dict(dtype=name, block_size=block_size,
                                        nonfinite=nonfinite))
    da = _dask_array()
    x = _checked(x)
    propagate = _checks.format_nonfinite(nonfinite)
    functions.to_float8(_tiny(x.ndim, x.dtype), name, per_layer_quantization=per_layer,
                        axis=axis, nonfinite=nonfinite)  # the settings, checked now
    ax = None if per_layer else _checks.channel_axis(axis, x.ndim, False)
    state = _maxima(x, _Fp8Maxima(per_layer, ax, functions.amax_of_chunk), ax)
    scale = state.map_blocks(_fp8_scales, FORMATS[name].max, propagate, dtype=np.float32,
                             chunks=(state.chunks[0],), drop_axis=1,
                             meta=np.empty((0,), np.float32))
    index = tuple(range(x.ndim))
    if ax is None:
        scale_arg = [scale, (x.ndim,)]
    else:
        scale_arg = [scale.rechunk((x.chunks[ax],)), (ax,)]
    encode = functools.partial(functions.encode_chunk, fmt_name=name,
                               per_layer_quantization=per_layer,
                               axis=0 if ax is None else ax, nonfinite=nonfinite)
    codes = da.blockwise(encode, index, x, index, *scale_arg, concatenate=True,
                         dtype=np.uint8, meta=_meta(x, x.ndim, np.uint8))
    meta = _meta(x, 1, np.float32)
    return codes, scale.map_blocks(_to_device, meta, dtype=np.float32, meta=meta)


class _Fp8Maxima:
    """A chunk's FP8 group maxima (a picklable callable for the workers)."""

    def __init__(self, per_layer, axis, amax_of_chunk):
        self.per_layer, self.axis, self.amax_of_chunk = per_layer, axis, amax_of_chunk

    def __call__(self, block):
        return self.amax_of_chunk(block, self.per_layer, 0 if self.axis is None
                                  else self.axis)


def from_float8(elements, scale, name, axis, block_size, output_dtype, functions):
    """``from_float8`` of a Dask array of codes: lazy float values."""
    settings = dict(dtype=name, output_dtype=output_dtype)
    if block_size is not None:
        return along_axis(functions.from_float8, elements, block_size, -1, ("elements",),
                          scale_grid=scale, settings=dict(settings, block_size=block_size))
    elements = _checked(elements)
    functions.from_float8(_tiny(elements.ndim, elements.dtype), np.ones(1, np.float32),
                          **settings)  # the settings, checked now
    if not is_dask(scale):
        scale = np.asarray(to_host(scale) if not isinstance(scale, (int, float)) else
                           np.float32(scale))
        if scale.dtype != np.float32:
            raise TypeError(f"scale must be float32 (what to_float8 returns); got dtype "
                            f"{scale.dtype}")
    size = int(np.prod(np.shape(scale)))
    ax = None if size == 1 else _checks.parameter_axis(axis, elements.shape, size, "scale")
    da = _dask_array()
    index = tuple(range(elements.ndim))
    flat = scale.reshape(-1)
    if ax is None:
        scale_arg = [flat.rechunk(-1), (elements.ndim,)] if is_dask(flat) else [flat, None]
    else:
        chunks = (elements.chunks[ax],)
        flat = flat.rechunk(chunks) if is_dask(flat) else da.from_array(flat, chunks=chunks)
        scale_arg = [flat, (ax,)]
    decode = functools.partial(functions.from_float8, axis=0 if ax is None else ax,
                               **settings)
    return da.blockwise(decode, index, elements, index, *scale_arg, concatenate=True,
                        dtype=output_dtype, meta=_meta(elements, elements.ndim, output_dtype))


# --------------------------------------------------------------------------- NVFP4
def _nvfp4_scale(state, propagate, per_tensor_scale_of):
    return np.asarray(per_tensor_scale_of(_raise_nonfinite(state, propagate)[0]), np.float32)


def _per_tensor_scale(x, per_tensor_scale, nonfinite, functions):
    """The NVFP4 per-tensor scale: checked now when given, else a lazy 0-d float32 from
    the whole tensor's maximum."""
    propagate = _checks.format_nonfinite(nonfinite)
    if per_tensor_scale is not None:
        return _checks.per_tensor_scale(per_tensor_scale, functions.smallest_per_tensor)
    state = _maxima(x, functions.abs_max_of_chunk, None)
    return state.map_blocks(_nvfp4_scale, propagate, functions.per_tensor_scale_of,
                            dtype=np.float32, drop_axis=[0, 1], chunks=(),
                            meta=np.empty((), np.float32))


def to_nvfp4(x, per_tensor_scale, nonfinite, ml_dtypes, functions):
    """``to_nvfp4`` of a Dask array: lazy ``(block_scale, elements, per_tensor_scale)``
    (the per-tensor scale a 0-d Dask array when it is computed from ``x``);
    ``functions``: :class:`Nvfp4Functions`."""
    x = _checked(x)
    _checks.block_axis(-1, x.ndim)
    pts = _per_tensor_scale(x, per_tensor_scale, nonfinite, functions)
    scale, elements = along_axis(functions.to_nvfp4_chunk, x, functions.block, -1,
                                 ("grid", "elements"),
                                 scalar=pts,
                                 settings=dict(nonfinite=nonfinite, ml_dtypes=ml_dtypes))
    return scale, elements, pts


def nvfp4_fake_quantize(x, per_tensor_scale, nonfinite, functions):
    """``nvfp4_fake_quantize`` of a Dask array (lazy float32 values)."""
    x = _checked(x)
    _checks.block_axis(-1, x.ndim)
    pts = _per_tensor_scale(x, per_tensor_scale, nonfinite, functions)
    return along_axis(functions.fake_quantize_chunk, x, functions.block, -1, ("elements",),
                      scalar=pts, settings=dict(nonfinite=nonfinite))


# --------------------------------------------------------------------------- torchao
def _choose_chunk(x, *, block_size, settings, codes, observe):
    """``(codes?, scale, zero_point, bad blocks)`` of one chunk, grid-shaped."""
    result, scale, zp, bad = observe(x, block_size=block_size, codes=codes, out=None,
                                     checked=False, **settings)
    grid = tuple(-(-d // b) for d, b in zip(np.shape(x), block_size))
    found = (scale.reshape(grid), zp.reshape(grid), np.full((1,) * len(grid), bad, np.int64))
    return ((result,) if codes else ()) + found


def _checked_small(values, bad):
    """A chunk of the scales or zero points, or the whole array's error."""
    bad = int(np.asarray(bad).sum())
    if bad:
        raise _checks.block_nonfinite_error(bad)
    return values


def choose_qparams_affine(x, mapping_type, block_size, target_dtype, quant_min, quant_max,
                          eps, scale_dtype, zero_point_dtype, *, codes, functions):
    """``choose_qparams_affine`` (``codes``: ``choose_qparams_and_quantize_affine``) of a
    Dask array: lazy results of the in-memory shapes and dtypes; ``functions``:
    :class:`BlockFunctions`."""
    da = _dask_array()
    x = _checked(x)
    _checks.block_input_kind(x.dtype)
    sizes = _checks.block_size(block_size, x.shape)
    settings = dict(mapping_type=mapping_type, target_dtype=target_dtype,
                    quant_min=quant_min, quant_max=quant_max, eps=eps,
                    scale_dtype=scale_dtype, zero_point_dtype=zero_point_dtype)
    probe = functions.observe(_tiny(x.ndim, x.dtype), block_size=(1,) * x.ndim, codes=True,
                              out=None, **settings)  # the settings, checked now
    dtypes = _dtypes(probe if codes else probe[1:])
    x = align(x, sizes)
    kinds = (("elements",) if codes else ()) + ("grid", "grid", "one")
    results = map_aligned(_choose_chunk, x, sizes, [],
                          list(zip(kinds, dtypes + [np.dtype(np.int64)])),
                          dict(settings=settings, codes=codes, observe=functions.observe))
    bad_per_chunk = results[-1]
    total = bad_per_chunk.sum()
    index = tuple(range(x.ndim))
    shape = plan.torchao_shape(x.shape, sizes)
    small = tuple(da.blockwise(_checked_small, index, r, index, total, (), dtype=r.dtype,
                               meta=r._meta).reshape(shape)
                  for r in results[-3:-1])
    if not codes:
        return small
    code_values = da.blockwise(_checked_small, index, results[0], index, bad_per_chunk,
                               index, dtype=results[0].dtype, meta=results[0]._meta,
                               align_arrays=False)
    return (code_values,) + small


def _grid_parameters(x, sizes, scale, zero_point, functions):
    """Checks now what host parameters allow; returns them on the grid's chunks."""
    grid = plan.grid_shape(x.shape, sizes)
    torchao = plan.torchao_shape(x.shape, sizes)
    for name, p in (("scale", scale), ("zero_point", zero_point)):
        if p is not None:
            _checks.parameter_shape(name, np.shape(p), torchao, grid)
    if not is_dask(scale):
        functions.check_scale(np.asarray(to_host(scale)))
    if zero_point is not None and not is_dask(zero_point):
        functions.zero_points(None, to_host(zero_point), x.shape, sizes)
    chunks = grid_chunks(x.chunks, sizes)
    return [on_grid(scale, grid, chunks),
            None if zero_point is None else on_grid(zero_point, grid, chunks)]


def _in_block_order(x, scale, zero_point, *, block_size, function, **settings):
    """``function(x, block_size, scale, zero_point, ...)`` of one chunk (torchao's order)."""
    return function(x, block_size, scale, zero_point, **settings)


def quantize_affine(x, block_size, scale, zero_point, output_dtype, quant_min, quant_max,
                    functions):
    """``quantize_affine`` of a Dask array: lazy codes."""
    x = _checked(x)
    _checks.block_input_kind(x.dtype)
    sizes = _checks.block_size(block_size, x.shape)
    codes_dtype, lowest, highest = _checks.target_dtype(output_dtype)
    _checks.quant_range(quant_min, quant_max, lowest, highest, f"output_dtype {output_dtype!r}")
    x = align(x, sizes)
    params = _grid_parameters(x, sizes, scale, zero_point, functions)
    return map_aligned(_in_block_order, x, sizes, params, [("elements", codes_dtype)],
                       dict(output_dtype=output_dtype, quant_min=quant_min,
                            quant_max=quant_max, function=functions.quantize))


def dequantize_affine(codes, block_size, scale, zero_point, input_dtype, quant_min,
                      quant_max, output_dtype, functions):
    """``dequantize_affine`` of a Dask array of codes: lazy values."""
    codes = _checked(codes)
    sizes = _checks.block_size(block_size, codes.shape)
    codes_dtype, lowest, highest = _checks.target_dtype(input_dtype)
    _checks.quant_range(quant_min, quant_max, lowest, highest, f"input_dtype {input_dtype!r}")
    if codes.dtype != codes_dtype:
        raise TypeError(f"codes have dtype {codes.dtype} but input_dtype {input_dtype!r} "
                        f"is stored as {codes_dtype}")
    out_dtype = functions.dtype_of(_checks.float_dtype_arg(output_dtype, "output_dtype"))
    codes = align(codes, sizes)
    params = _grid_parameters(codes, sizes, scale, zero_point, functions)
    return map_aligned(_in_block_order, codes, sizes, params, [("elements", out_dtype)],
                       dict(input_dtype=input_dtype, quant_min=quant_min,
                            quant_max=quant_max, output_dtype=output_dtype,
                            function=functions.dequantize))
