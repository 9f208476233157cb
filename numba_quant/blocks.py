"""Block-wise affine quantization with torchao's functions, names and argument order.

``choose_qparams_affine``, ``quantize_affine`` and ``dequantize_affine`` give torchao
0.18's results bit for bit (scale, int32 zero point, codes and values, with its output
shapes and dtypes), taking numpy dtypes instead of torch dtypes: integer numpy dtypes or
the names ``"uint1"``..``"uint7"``, ``"int1"``..``"int7"`` for the codes, and
``ml_dtypes.bfloat16`` arrays for bfloat16.  ``choose_qparams_and_quantize_affine`` does
both steps in one pass over the data.  Unlike torchao, a block size need not divide its
axis: the last block along that axis is shorter (a "ragged" block).

A Dask array gives lazy results: it is rechunked so that no chunk boundary cuts a block
(each boundary moved up to the next multiple of the block size along its axis), and each
chunk is computed by these functions.  A NaN in ``choose_qparams_affine``'s input raises
the whole array's count of blocks at ``.compute()``; the codes' errors count the failing
chunk.
"""
import numpy as np

from numba_quant._host import blocks_plan as plan
from numba_quant._host import checks as _checks
from numba_quant._dispatch import backend, is_dask, on_device
from numba_quant._dispatch.views import block_views, write_back


_SMALLEST_NORMAL = {"bfloat16": 2.0 ** -126, "float16": 2.0 ** -14, "float32": 2.0 ** -126,
                    "float64": 2.0 ** -1022}


def _dtype_of(kind):
    return plan.bfloat16_dtype() if kind == "bfloat16" else np.dtype(kind)


def _storage(kind):
    """The dtype the kernels read and write for a float kind (uint16 bits for 16-bit)."""
    return np.dtype(np.uint16) if kind in ("bfloat16", "float16") else np.dtype(kind)


def _in_kind(value, kind, T):
    """A Python number rounded to ``kind`` (as torch casts a scalar), as a T scalar."""
    return T.type(np.asarray(value, np.float64).astype(_dtype_of(kind)).astype(T))


def _grid4(block4, view):
    return plan.grid_shape(view.shape, block4)


def _params_in(ops, values, name, shape, block_size, dtype):
    """A parameter array (any side) as a C-contiguous array of ``dtype`` on ``ops``'s side,
    with its shape checked; returns (host values, backend array)."""
    host = np.asarray(ops.to_host(values) if on_device(values) else values)
    _checks.parameter_shape(name, host.shape, plan.torchao_shape(shape, block_size),
                            plan.grid_shape(shape, block_size))
    if host.dtype.kind not in "fiu" and not plan.is_bfloat16(host.dtype):
        raise TypeError(f"{name} must hold real numbers; got dtype {host.dtype}")
    return host, host


def _check_scale(scale_host):
    s = scale_host.astype(np.float64)
    if not (np.isfinite(s) & (s > 0)).all():
        raise ValueError(f"scale must be finite and positive; got {scale_host.reshape(-1)[:8]}"
                         f"{' ...' if scale_host.size > 8 else ''}")


def _zero_points(ops, zero_point, shape, block_size):
    if zero_point is None:
        return np.zeros(plan.grid_shape(shape, block_size), np.int32)
    host, _ = _params_in(ops, zero_point, "zero_point", shape, block_size, np.int32)
    values = host.astype(np.float64)
    if not (np.isfinite(values).all() and (values == np.round(values)).all()):
        raise ValueError("zero_point must hold integers")
    if (np.abs(values) > 2 ** 31 - 1).any():
        raise ValueError("zero_point values must fit in int32")
    return values.astype(np.int32)


def _output(ops, out, shape, dtype, like, name="out"):
    if out is None:
        return ops.empty(shape, dtype, like)
    view = ops.as_output(out)
    _checks.output_matches(view.shape, view.dtype, shape, dtype, name)
    return out


def _qparams_setup(x, mapping_type, block_size, target_dtype, quant_min, quant_max, eps,
                   scale_dtype, zero_point_dtype):
    mapping = _checks.mapping_type(mapping_type)
    codes_dtype, lowest, highest = _checks.target_dtype(target_dtype)
    qmin, qmax = _checks.quant_range(quant_min, quant_max, lowest, highest,
                                     f"target_dtype {target_dtype!r}")
    ops = backend(x)
    data, kind = ops.blocks.as_input(x)
    sizes = _checks.block_size(block_size, data.shape)
    skind = kind if scale_dtype is None else _checks.float_dtype_arg(scale_dtype, "scale_dtype")
    zdtype = np.dtype(np.int32 if zero_point_dtype is None else zero_point_dtype)
    if zdtype.kind not in "iuf":
        raise TypeError(f"zero_point_dtype must be an integer or float dtype; got {zdtype}")
    if eps is None:
        eps = _SMALLEST_NORMAL[kind]
    if not (isinstance(eps, (int, float, np.floating, np.integer)) and 0 < eps < np.inf):
        raise ValueError(f"eps must be a positive finite number; got {eps!r}")
    T = plan.compute_type(kind, skind)
    pkind = plan.promote(kind, skind)
    setup = dict(mapping=mapping, qmin=qmin, qmax=qmax, sym_zp=int((qmax + qmin + 1) / 2),
                 eps=_in_kind(eps, kind, T), xfmt=plan.fmt(kind, T) if kind in
                 ("bfloat16", "float16") else plan.NATIVE, afmt=plan.fmt(kind, T),
                 sfmt=plan.fmt(skind, T), pfmt=plan.fmt(pkind, T))
    return ops, data, sizes, codes_dtype, skind, zdtype, T, setup


def _finish_qparams(ops, x, data, sizes, scale, zp, skind, zdtype):
    shape = plan.torchao_shape(data.shape, sizes)
    scale = ops.blocks.cast_params(scale, _dtype_of(skind), shape, x)
    zp = ops.blocks.cast_params(zp, zdtype, shape, x)
    return ops.wrap(scale, x), ops.wrap(zp, x)


def _observe(x, mapping_type, block_size, target_dtype, quant_min, quant_max, eps,
             scale_dtype, zero_point_dtype, codes, out, checked=True):
    """``(codes or None, scale, zero_point)``; with ``checked`` False, the number of
    blocks holding NaN or infinity follows instead of raising (their values are then
    meaningless)."""
    ops, data, sizes, codes_dtype, skind, zdtype, T, s = _qparams_setup(
        x, mapping_type, block_size, target_dtype, quant_min, quant_max, eps, scale_dtype,
        zero_point_dtype)
    result = target = None
    if codes:
        result = _output(ops, out, data.shape, codes_dtype, x)
        target = ops.as_output(result) if out is not None else result
    block4, x4, codes4, temp = block_views(ops, data.shape, sizes, data,
                                      data if target is None else target)
    grid = _grid4(block4, x4)
    scale = ops.empty(grid, T, x)
    zp = ops.empty(grid, np.int32, x)
    bad = ops.blocks.run_observe(x4, s["xfmt"], block4, s["mapping"], s["qmin"], s["qmax"],
                          s["sym_zp"], s["eps"], s["afmt"], s["sfmt"], s["pfmt"], scale, zp,
                          codes4 if codes else None)
    if codes:
        write_back(ops, temp, target)
        result = result if out is not None else ops.wrap(result, x)
    if bad and checked:
        raise _checks.block_nonfinite_error(bad)
    scale, zp = _finish_qparams(ops, x, data, sizes, scale, zp, skind, zdtype)
    return (result, scale, zp) if checked else (result, scale, zp, bad)


def choose_qparams_affine(x, mapping_type, block_size, target_dtype, quant_min=None,
                          quant_max=None, eps=None, scale_dtype=None, zero_point_dtype=None):
    """Scale and zero point of every block of ``x`` (torchao's ``choose_qparams_affine``).

    Parameters
    ----------
    x : array_like or GPU array
        float32, float64, float16 or bfloat16 (``ml_dtypes.bfloat16``) values, finite.
    mapping_type : {"asymmetric", "symmetric", "symmetric_no_clipping_err"}
        torchao's ``MappingType`` (a member's name, any case, or the member itself).
    block_size : tuple of int
        One entry per axis of ``x``, each in ``[1, x.shape[axis]]``; an entry equal to
        the axis length takes the whole axis.  An entry that does not divide its axis
        leaves a shorter last block.
    target_dtype : numpy integer dtype or str
        The codes' type: ``np.uint8``, ``np.int8``, ``np.int16``, ... or ``"uint4"``,
        ``"int4"`` (any of ``"uint1"``..``"uint7"``, ``"int1"``..``"int7"``).
    quant_min, quant_max : int, optional
        The code range; default the target's full range.
    eps : float, optional
        Smallest scale; default the smallest normal number of x's type (2**-126 for
        float32 and bfloat16, 2**-14 for float16).  Cast to x's type as torch does.
    scale_dtype : dtype, optional
        The scale's type; default x's.
    zero_point_dtype : dtype, optional
        Default int32.

    Returns
    -------
    scale, zero_point : arrays
        Shape: per axis ``ceil(d / b)``, except that an axis blocked whole (``b == d > 1``)
        is dropped, as torchao does.

    Notes
    -----
    The arithmetic runs in x's type (bfloat16/float16 arithmetic for those inputs), then
    the scale is cast to ``scale_dtype``.  ASYMMETRIC: ``scale = (max(hi, 0) - min(lo, 0))
    / (qmax - qmin)`` clamped below at eps, ``zp = clamp(qmin - rint(min(lo, 0) / scale))``.
    SYMMETRIC: ``scale = max(-min(lo, 0), max(hi, 0)) / ((qmax - qmin) / 2)``;
    SYMMETRIC_NO_CLIPPING_ERR: ``max(min(lo, 0) / qmin, max(hi, 0) / qmax)``; both with
    ``zp = int((qmin + qmax + 1) / 2)``.  NaN or infinity in x raises ``ValueError``.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> w = np.array([[-1.0, 0.5, 2.0, 3.0], [0.25, 0.5, -0.5, 1.0]], np.float32)
    >>> scale, zp = nq.choose_qparams_affine(w, "asymmetric", (1, 2), "uint4")
    >>> scale
    array([[0.1       , 0.2       ],
           [0.03333334, 0.1       ]], dtype=float32)
    >>> zp
    array([[10,  0],
           [ 0,  5]], dtype=int32)
    """
    if is_dask(x):
        from numba_quant._dask import formats as _dask_formats
        return _dask_formats.choose_qparams_affine(
            x, mapping_type, block_size, target_dtype, quant_min, quant_max, eps,
            scale_dtype, zero_point_dtype, codes=False, functions=_dask_functions(_dask_formats))
    _, scale, zp = _observe(x, mapping_type, block_size, target_dtype, quant_min, quant_max,
                            eps, scale_dtype, zero_point_dtype, False, None)
    return scale, zp


def choose_qparams_and_quantize_affine(x, mapping_type, block_size, target_dtype,
                                       quant_min=None, quant_max=None, eps=None,
                                       scale_dtype=None, zero_point_dtype=None, *, out=None):
    """``choose_qparams_affine`` and ``quantize_affine`` in one pass over ``x``.

    Each block is reduced and then quantized while it is still in cache.  Same arguments
    as :func:`choose_qparams_affine`, plus ``out`` for the codes (shape of x, dtype of
    ``target_dtype``'s storage: int8/uint8 for the sub-byte names).

    Returns
    -------
    codes, scale, zero_point : arrays
        Equal to ``quantize_affine(x, block_size, *choose_qparams_affine(...), ...)``.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> w = np.array([[-1.0, 0.5, 2.0, 3.0]], np.float32)
    >>> codes, scale, zp = nq.choose_qparams_and_quantize_affine(w, "symmetric", (1, 4), "int4")
    >>> codes
    array([[-2,  1,  5,  7]], dtype=int8)
    >>> scale, zp
    (array([0.4], dtype=float32), array([0], dtype=int32))
    """
    if is_dask(x):
        from numba_quant._dask import formats as _dask_formats
        _checks.dask_no_out(out)
        return _dask_formats.choose_qparams_affine(
            x, mapping_type, block_size, target_dtype, quant_min, quant_max, eps,
            scale_dtype, zero_point_dtype, codes=True, functions=_dask_functions(_dask_formats))
    return _observe(x, mapping_type, block_size, target_dtype, quant_min, quant_max, eps,
                    scale_dtype, zero_point_dtype, True, out)


def quantize_affine(x, block_size, scale, zero_point, output_dtype, quant_min=None,
                    quant_max=None, *, out=None):
    """Codes of ``x`` with one scale and zero point per block (torchao's ``quantize_affine``).

    ``codes = clamp(rint(x * (1 / scale)) + zero_point, quant_min, quant_max)``: a
    multiply by the reciprocal (computed in the scale's type), ties to even, in torch's
    promoted type of x and scale.  ``scale`` and ``zero_point`` have torchao's shape (see
    :func:`choose_qparams_affine`) or the full-rank ``ceil(x.shape / block_size)``;
    ``zero_point`` may be None (zero).  ``output_dtype`` is a target dtype as in
    :func:`choose_qparams_affine`.  NaN in x raises ``ValueError``; ±inf clamps.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> x = np.array([[0.1, -0.3, 0.25, 0.7]], np.float32)
    >>> nq.quantize_affine(x, (1, 2), np.array([[0.1, 0.5]], np.float32),
    ...                    np.array([[8, 8]], np.int32), "uint4")
    array([[9, 5, 8, 9]], dtype=uint8)
    """
    if is_dask(x):
        from numba_quant._dask import formats as _dask_formats
        _checks.dask_no_out(out)
        return _dask_formats.quantize_affine(x, block_size, scale, zero_point, output_dtype,
                                             quant_min, quant_max,
                                             _dask_functions(_dask_formats))
    codes_dtype, lowest, highest = _checks.target_dtype(output_dtype)
    qmin, qmax = _checks.quant_range(quant_min, quant_max, lowest, highest,
                                     f"output_dtype {output_dtype!r}")
    ops = backend(x, scale if on_device(scale) else None)
    data, kind = ops.blocks.as_input(x)
    sizes = _checks.block_size(block_size, data.shape)
    scale_host, _ = _params_in(ops, scale, "scale", data.shape, sizes, None)
    skind = _checks.block_input_kind(scale_host.dtype, "scale")
    _check_scale(scale_host)
    zp_host = _zero_points(ops, zero_point, data.shape, sizes)
    T = plan.compute_type(kind, skind)
    pfmt = plan.fmt(plan.promote(kind, skind), T)
    xfmt = plan.fmt(kind, T) if kind in ("bfloat16", "float16") else plan.NATIVE
    result = _output(ops, out, data.shape, codes_dtype, x)
    target = ops.as_output(result) if out is not None else result
    block4, x4, codes4, temp = block_views(ops, data.shape, sizes, data, target)
    grid = _grid4(block4, x4)
    scale4 = ops.from_host(np.ascontiguousarray(scale_host.astype(T).reshape(grid)), x)
    zp4 = ops.from_host(np.ascontiguousarray(zp_host.reshape(grid)), x)
    nan = ops.blocks.run_quantize(x4, xfmt, block4, scale4, plan.fmt(skind, T), zp4, qmin, qmax,
                           pfmt, codes4)
    write_back(ops, temp, target)
    if nan:
        raise ValueError(f"input contains {nan} NaN value(s); they have no code")
    return result if out is not None else ops.wrap(result, x)


def dequantize_affine(codes, block_size, scale, zero_point, input_dtype, quant_min=None,
                      quant_max=None, *, output_dtype=np.float32, out=None):
    """Values of block-wise codes (torchao's ``dequantize_affine``).

    ``value = (codes - zero_point)`` (int32, then cast to ``output_dtype``) ``* scale``,
    in torch's promoted type of ``output_dtype`` and the scale, cast to ``output_dtype``.
    ``input_dtype`` is the codes' target dtype (``np.uint8``, ``"uint4"``, ...); codes
    outside ``[quant_min, quant_max]`` raise ``ValueError``.  ``output_dtype`` may be
    float32, float64, float16 or ``ml_dtypes.bfloat16``.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> codes = np.array([[9, 5, 8, 9]], np.uint8)
    >>> nq.dequantize_affine(codes, (1, 2), np.array([[0.1, 0.5]], np.float32),
    ...                      np.array([[8, 8]], np.int32), "uint4")
    array([[ 0.1, -0.3,  0. ,  0.5]], dtype=float32)
    """
    if is_dask(codes):
        from numba_quant._dask import formats as _dask_formats
        _checks.dask_no_out(out)
        return _dask_formats.dequantize_affine(codes, block_size, scale, zero_point,
                                               input_dtype, quant_min, quant_max,
                                               output_dtype, _dask_functions(_dask_formats))
    codes_dtype, lowest, highest = _checks.target_dtype(input_dtype)
    qmin, qmax = _checks.quant_range(quant_min, quant_max, lowest, highest,
                                     f"input_dtype {input_dtype!r}")
    okind = _checks.float_dtype_arg(output_dtype, "output_dtype")
    ops = backend(codes, scale if on_device(scale) else None)
    data = ops.blocks.as_codes(codes)
    if data.dtype != codes_dtype:
        raise TypeError(f"codes have dtype {data.dtype} but input_dtype {input_dtype!r} "
                        f"is stored as {codes_dtype}")
    sizes = _checks.block_size(block_size, data.shape)
    scale_host, _ = _params_in(ops, scale, "scale", data.shape, sizes, None)
    skind = _checks.block_input_kind(scale_host.dtype, "scale")
    _check_scale(scale_host)
    zp_host = _zero_points(ops, zero_point, data.shape, sizes)
    T = plan.compute_type(okind, skind)
    result = _output(ops, out, data.shape, _dtype_of(okind), codes)
    target = ops.as_output(result) if out is not None else result
    if okind in ("bfloat16", "float16"):
        target = ops.blocks.bits_view(target)
    block4, c4, out4, temp = block_views(ops, data.shape, sizes, data, target)
    grid = _grid4(block4, c4)
    scale4 = ops.from_host(np.ascontiguousarray(scale_host.astype(T).reshape(grid)), codes)
    zp4 = ops.from_host(np.ascontiguousarray(zp_host.reshape(grid)), codes)
    outside = ops.blocks.run_dequantize(c4, block4, scale4, zp4, qmin, qmax, plan.fmt(okind, T),
                                 plan.fmt(plan.promote(okind, skind), T), out4)
    write_back(ops, temp, target)
    if outside:
        raise ValueError(f"{outside} code(s) lie outside [quant_min, quant_max] = "
                         f"[{qmin}, {qmax}]")
    return result if out is not None else ops.wrap(result, codes)


def _dask_functions(dask_formats):
    """What a Dask graph of these functions runs on each chunk (functions of this
    module)."""
    return dask_formats.BlockFunctions(_observe, quantize_affine, dequantize_affine,
                                       _check_scale, _zero_points, _dtype_of)
