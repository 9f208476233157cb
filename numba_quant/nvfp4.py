"""NVIDIA's NVFP4: FP4 E2M1 elements in blocks of 16, an FP8 E4M3 scale per block and an
FP32 scale per tensor, as torchao 0.18's ``NVFP4Tensor`` computes them, bit for bit.

A Dask array gives lazy results, rechunked so that no chunk boundary cuts a block of 16
along the last axis; without ``per_tensor_scale`` the scale is a lazy 0-d Dask array from
the maximum of the chunks' maxima (two passes over the data).
"""
import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._dispatch import backend, is_dask, on_device
from numba_quant._dispatch import formats as common
from numba_quant._host.float_formats import E2M1FN

BLOCK = 16
KIND_NVFP4 = 1  # numba_quant._reference.formats.NVFP4 (that module imports numba)
# amax / (448 * 6): the largest E4M3 block scale times the largest FP4 value.
_PER_TENSOR_DIVISOR = np.float32(448.0 * 6.0)
# Below this, (1 / per_tensor_scale) / 2**-6 (the smallest block scale) would overflow
# float32 and turn elements into infinities.
_SMALLEST_PER_TENSOR = np.float32(2.0 ** -120)


def per_tensor_scale_of(amax):
    """``float32(amax) / 2688``; 1.0 for an all-zero tensor, at least 2**-120."""
    amax = np.float32(amax)
    if amax == 0:
        return np.float32(1.0)
    return max(np.float32(amax / _PER_TENSOR_DIVISOR), _SMALLEST_PER_TENSOR)


def _quantize(x, per_tensor_scale, nonfinite, codes_wanted, resolved=False):
    """The kernels' work; ``resolved``: ``per_tensor_scale`` is the value to use as is
    (the whole tensor's, found by a Dask graph)."""
    propagate = _checks.format_nonfinite(nonfinite)
    bk = backend(x)
    a, shape = common.as_input(bk, x, allow_float64=False)
    _checks.block_axis(-1, len(shape))
    if resolved:
        pts = np.float32(per_tensor_scale)
    elif per_tensor_scale is None:
        amax, bad = common.tensor_abs_max(bk, a)
        if bad and not propagate:
            raise _checks.nonfinite_blocks_error(bad, "element(s)")
        pts = per_tensor_scale_of(amax)
    else:
        pts = _checks.per_tensor_scale(per_tensor_scale, _SMALLEST_PER_TENSOR)
    rows = common.as_rows(a)
    nb = -(-rows.shape[1] // BLOCK)
    scales = bk.empty((rows.shape[0], nb), np.uint8, x)
    if codes_wanted:
        codes, values = bk.empty(rows.shape, np.uint8, x), common.unused(bk, np.float32)
    else:
        codes, values = common.unused(bk, np.uint8), bk.empty(rows.shape, np.float32, x)
    bad = bk.formats.quantize_blocks(KIND_NVFP4, rows, BLOCK, E2M1FN, 0, 0, 0, 6.0, propagate, pts,
                             scales, common.unused(bk, np.float32), codes, values,
                             codes_wanted, not codes_wanted)
    if bad and not propagate:
        raise _checks.nonfinite_blocks_error(bad, "block(s)")
    return bk, shape, nb, scales, codes, values, pts


def to_nvfp4(x, per_tensor_scale=None, *, nonfinite="raise", ml_dtypes=False):
    """Quantize ``x`` to NVFP4 along its last axis.

    Block scale ``bs = float32(amax16 / 6) / per_tensor_scale``, clamped to [2**-6, 448]
    and rounded to E4M3; elements ``RNE_fp4(clamp(x * ((1 / pts) / e4m3(bs)), -6, 6))``.

    Parameters
    ----------
    x : array_like or GPU array
        float16, bfloat16 or float32, at least 1-D; the last block of a row may be
        shorter than 16.
    per_tensor_scale : float, optional
        The FP32 per-tensor scale.  None (default): ``float32(max|x|) / 2688`` (two-level
        scaling); 1.0 for an all-zero tensor and at least 2**-120 (so that the element
        multiplier ``(1 / pts) / 2**-6`` stays finite).  Pass 1.0 for single-level
        scaling.  A given scale must be finite and at least 2**-120.
    nonfinite : {"raise", "propagate"}, optional
        NaN or infinity: ValueError (default), or through the formulas (NaN block scale).
    ml_dtypes : bool, optional
        Return ml_dtypes views (float8_e4m3fn scales, float4_e2m1fn elements).

    Returns
    -------
    block_scale : uint8 E4M3 codes, ``x.shape[:-1] + (ceil(n / 16),)``
    elements : uint8 FP4 codes of ``x``'s shape (one per byte)
    per_tensor_scale : numpy float32

    Examples
    --------
    >>> import numpy as np, numba_quant as nq
    >>> bs, el, pts = nq.to_nvfp4(np.arange(16, dtype=np.float32), per_tensor_scale=1.0)
    >>> bs, el[:4], pts
    (array([66], dtype=uint8), array([0, 1, 2, 2], dtype=uint8), np.float32(1.0))
    """
    if is_dask(x):
        from numba_quant._dask import formats as _dask_formats
        return _dask_formats.to_nvfp4(x, per_tensor_scale, nonfinite, ml_dtypes,
                                      _dask_functions(_dask_formats))
    return _to_nvfp4(x, per_tensor_scale, nonfinite, ml_dtypes)


def _to_nvfp4(x, per_tensor_scale, nonfinite, ml_dtypes, resolved=False):
    bk, shape, nb, scales, codes, _, pts = _quantize(x, per_tensor_scale, nonfinite, True,
                                                     resolved)
    return (common.output(bk, scales.reshape(shape[:-1] + (nb,)), x, "float8_e4m3fn",
                          ml_dtypes),
            common.output(bk, codes.reshape(shape), x, "float4_e2m1fn", ml_dtypes),
            np.float32(pts))


def nvfp4_fake_quantize(x, per_tensor_scale=None, *, nonfinite="raise"):
    """``from_nvfp4(*to_nvfp4(x, ...))`` in one pass (float32 values).

    Examples
    --------
    >>> import numpy as np, numba_quant as nq
    >>> nq.nvfp4_fake_quantize(np.array([0.1, 0.2, 0.3, 3.0], np.float32), 1.0)
    array([0.  , 0.25, 0.25, 3.  ], dtype=float32)
    """
    if is_dask(x):
        from numba_quant._dask import formats as _dask_formats
        return _dask_formats.nvfp4_fake_quantize(x, per_tensor_scale, nonfinite,
                                                 _dask_functions(_dask_formats))
    return _fake_quantize(x, per_tensor_scale, nonfinite)


def _fake_quantize(x, per_tensor_scale, nonfinite, resolved=False):
    bk, shape, nb, scales, codes, values, pts = _quantize(x, per_tensor_scale, nonfinite,
                                                          False, resolved)
    return bk.wrap(values.reshape(shape), x)


def to_nvfp4_chunk(x, per_tensor_scale, *, nonfinite, ml_dtypes):
    """One Dask chunk of :func:`to_nvfp4` with the whole tensor's per-tensor scale."""
    return _to_nvfp4(x, per_tensor_scale, nonfinite, ml_dtypes, resolved=True)[:2]


def fake_quantize_chunk(x, per_tensor_scale, *, nonfinite):
    """One Dask chunk of :func:`nvfp4_fake_quantize` with the whole tensor's scale."""
    return _fake_quantize(x, per_tensor_scale, nonfinite, resolved=True)


def abs_max_of_chunk(x):
    """``(max |x|, non-finite count)`` of a chunk (maxima merge exactly, NaN winning)."""
    bk = backend(x)
    a, _ = common.as_input(bk, x, allow_float64=False)
    return common.tensor_abs_max(bk, a)


def _from_nvfp4_first(elements, block_scale, per_tensor_scale, **settings):
    """:func:`from_nvfp4` with the elements first (the order of the Dask chunk calls)."""
    return from_nvfp4(block_scale, elements, per_tensor_scale, **settings)


def from_nvfp4(block_scale, elements, per_tensor_scale, *, output_dtype=np.float32):
    """NVFP4 back to values: ``fp4 * float32(per_tensor_scale * e4m3(block_scale))``.

    Examples
    --------
    >>> import numpy as np, numba_quant as nq
    >>> nq.from_nvfp4(np.array([56], np.uint8), np.array([2, 11], np.uint8), 1.0)
    array([ 1. , -1.5], dtype=float32)
    """
    output_dtype = _checks.float_output(output_dtype)
    if is_dask(elements):
        from numba_quant._dask import formats as _dask_formats
        if not is_dask(per_tensor_scale):
            per_tensor_scale = _checks.per_tensor_scale(per_tensor_scale,
                                                        _SMALLEST_PER_TENSOR)
        return _dask_formats.along_axis(
            _from_nvfp4_first, elements, BLOCK, -1, ("elements",), scale_grid=block_scale,
            scalar=per_tensor_scale, settings=dict(output_dtype=output_dtype))
    bk = backend(elements, block_scale)
    c = common.as_codes(bk, elements, "float4_e2m1fn", "elements")
    s = common.as_codes(bk, block_scale, "float8_e4m3fn", "block_scale")
    shape = tuple(c.shape)
    _checks.not_empty_input(shape)
    _checks.block_axis(-1, len(shape))
    nb = -(-shape[-1] // BLOCK)
    _checks.scale_shape(s.shape, shape[:-1] + (nb,), "block_scale")
    c = common.as_rows(c)
    out = bk.empty(c.shape, np.float32, elements)
    pts = _checks.per_tensor_scale(per_tensor_scale, _SMALLEST_PER_TENSOR)
    bk.formats.dequantize_blocks(KIND_NVFP4, s.reshape(c.shape[0], nb), common.unused(bk, np.float32),
                         c, BLOCK, E2M1FN, pts, out)
    return bk.wrap(common.widen(bk, out.reshape(shape), output_dtype), elements)


def _dask_functions(dask_formats):
    """What a Dask graph of NVFP4 runs on each chunk (functions of this module)."""
    return dask_formats.Nvfp4Functions(to_nvfp4_chunk, fake_quantize_chunk, abs_max_of_chunk,
                                       per_tensor_scale_of, _SMALLEST_PER_TENSOR, BLOCK)
