"""OCP Microscaling (MX) formats: MXFP8, MXFP6, MXFP4 and MXINT8.

A block of ``block_size`` elements (32 in the OCP spec) along one axis shares a
power-of-two scale stored as an E8M0 byte; each element is stored in FP8 E4M3/E5M2,
FP6 E3M2/E2M3, FP4 E2M1 or INT8.  The scale rules and element arithmetic are torchao
0.18's ``to_mx``/``to_dtype``, bit for bit (see docs/semantics.md, "Low-precision float
formats", for its corner cases, kept on purpose).

A Dask array gives lazy results, rechunked so that no chunk boundary cuts a block along
``axis`` (each boundary moved up to the next multiple of ``block_size``); a failing chunk
raises with its own count at ``.compute()``.
"""
import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._dispatch import backend, is_dask, on_device
from numba_quant._dispatch import formats as common
from numba_quant._host.float_formats import MX_FORMATS, by_name

_MODES = {"floor": 0, "ceil": 1, "even": 2, "rceil": 3}
KIND_MX = 0  # numba_quant._reference.formats.MX (that module imports numba)


def _settings(elem_dtype, block_size, scaling_mode, nonfinite="raise"):
    name = _checks.float_format(elem_dtype, MX_FORMATS, "elem_dtype")
    return (name, by_name(name), _checks.format_block_size(block_size),
            _MODES[_checks.scaling_mode(scaling_mode)], _checks.format_nonfinite(nonfinite))


def _quantize(x, elem_dtype, block_size, scaling_mode, axis, nonfinite, codes_wanted):
    name, fmt, block, mode, propagate = _settings(elem_dtype, block_size, scaling_mode,
                                                  nonfinite)
    bk = backend(x)
    a, shape = common.as_input(bk, x, allow_float64=False)
    ax = _checks.block_axis(axis, len(shape))
    rows = common.as_rows(common.move_last(bk, a, ax))
    nb = -(-rows.shape[1] // block)
    scales = bk.empty((rows.shape[0], nb), np.uint8, x)
    if codes_wanted:
        codes, values = bk.empty(rows.shape, np.uint8, x), common.unused(bk, np.float32)
    else:
        codes, values = common.unused(bk, np.uint8), bk.empty(rows.shape, np.float32, x)
    bad = bk.formats.quantize_blocks(KIND_MX, rows, block, fmt.code, mode, fmt.emax, fmt.mbits,
                             fmt.max, propagate, 1.0, scales, common.unused(bk, np.float32),
                             codes, values, codes_wanted, not codes_wanted)
    if bad and not propagate:
        raise _checks.nonfinite_blocks_error(bad, "block(s)")
    moved = tuple(shape[i] for i in range(len(shape)) if i != ax)
    return bk, name, ax, moved, nb, scales, codes, values, rows.shape[1]


def to_mx(x, elem_dtype, block_size=32, scaling_mode="floor", *, axis=-1, nonfinite="raise",
          ml_dtypes=False):
    """Quantize ``x`` to an MX format: E8M0 block scales and element codes.

    Parameters
    ----------
    x : array_like or GPU array
        float16, bfloat16 or float32 values (float64 is refused: these formats compute in
        float32).
    elem_dtype : str
        ``"float8_e4m3fn"``, ``"float8_e5m2"``, ``"float6_e3m2fn"``, ``"float6_e2m3fn"``,
        ``"float4_e2m1fn"`` or ``"int8"`` (MXINT8).
    block_size : int, optional
        Elements per block along ``axis`` (32); the last block may be shorter.
    scaling_mode : {"floor", "ceil", "even", "rceil"}, optional
        torchao's ScaleCalculationMode (any case).  "floor" is OCP v1.0's
        ``floor(log2(amax)) - emax_elem`` (elements beyond the format's range saturate);
        "ceil" never saturates; "even" rounds amax to the element precision first;
        "rceil" is ``ceil(log2(amax / max_elem))`` as NVIDIA's hardware.
    axis : int, optional
        The axis the blocks run along (the last by default).
    nonfinite : {"raise", "propagate"}, optional
        A block holding NaN or infinity raises ValueError (default), or gets the NaN scale
        255 (OCP: all its values are NaN).
    ml_dtypes : bool, optional
        Return ml_dtypes views (``float8_e8m0fnu`` scales, element dtype codes).

    Returns
    -------
    scale_e8m0 : uint8 array, ``x``'s shape with ``ceil(n / block_size)`` along ``axis``.
    elements : uint8 codes of ``x``'s shape (int8 for MXINT8: two's complement, value
        ``code / 64``, within [-127, 127]).

    Examples
    --------
    >>> import numpy as np, numba_quant as nq
    >>> x = np.linspace(-1, 1, 32, dtype=np.float32)
    >>> scale, el = nq.to_mx(x, "float4_e2m1fn")
    >>> scale, el[:4]
    (array([125], dtype=uint8), array([14, 14, 13, 13], dtype=uint8))
    >>> nq.from_mx(scale, el, "float4_e2m1fn")[:4]
    array([-1.  , -1.  , -0.75, -0.75], dtype=float32)
    """
    if is_dask(x):
        from numba_quant._dask import formats as _dask_formats
        _settings(elem_dtype, block_size, scaling_mode, nonfinite)
        return _dask_formats.along_axis(
            to_mx, x, block_size, axis, ("grid", "elements"),
            settings=dict(elem_dtype=elem_dtype, block_size=block_size,
                          scaling_mode=scaling_mode, axis=axis, nonfinite=nonfinite,
                          ml_dtypes=ml_dtypes))
    bk, name, ax, moved, nb, scales, codes, _, k = _quantize(
        x, elem_dtype, block_size, scaling_mode, axis, nonfinite, True)
    scales = common.move_back(bk, scales.reshape(moved + (nb,)), ax)
    codes = common.move_back(bk, codes.reshape(moved + (k,)), ax)
    return (common.output(bk, scales, x, "float8_e8m0fnu", ml_dtypes),
            common.output(bk, codes, x, name, ml_dtypes))


def mx_fake_quantize(x, elem_dtype, block_size=32, scaling_mode="floor", *, axis=-1,
                     nonfinite="raise"):
    """``from_mx(*to_mx(x, ...))`` in one pass: the float32 values ``x`` becomes in MX.

    Same parameters as :func:`to_mx`; the element codes are never stored.

    Examples
    --------
    >>> import numpy as np, numba_quant as nq
    >>> nq.mx_fake_quantize(np.array([0.1, 0.2, 0.3, 3.0], np.float32), "float4_e2m1fn")
    array([0.  , 0.25, 0.25, 3.  ], dtype=float32)
    """
    if is_dask(x):
        from numba_quant._dask import formats as _dask_formats
        _settings(elem_dtype, block_size, scaling_mode, nonfinite)
        return _dask_formats.along_axis(
            mx_fake_quantize, x, block_size, axis, ("elements",),
            settings=dict(elem_dtype=elem_dtype, block_size=block_size,
                          scaling_mode=scaling_mode, axis=axis, nonfinite=nonfinite))
    bk, name, ax, moved, nb, scales, codes, values, k = _quantize(
        x, elem_dtype, block_size, scaling_mode, axis, nonfinite, False)
    values = common.move_back(bk, values.reshape(moved + (k,)), ax)
    return bk.wrap(values, x)


def from_mx(scale_e8m0, elements, elem_dtype, block_size=32, *, axis=-1,
            output_dtype=np.float32):
    """MX blocks back to values: ``decode(element) * 2**(scale - 127)`` in float32.

    Scale 0 is 2**-127 (a float32 subnormal) and 255 is NaN.  Takes what :func:`to_mx`
    returns (uint8 or ml_dtypes views; int8 or uint8 for MXINT8).

    Examples
    --------
    >>> import numpy as np, numba_quant as nq
    >>> nq.from_mx(np.array([128], np.uint8), np.array([56, 184], np.uint8), "float8_e4m3fn")
    array([ 2., -2.], dtype=float32)
    """
    name, fmt, block, _, _ = _settings(elem_dtype, block_size, "floor")
    output_dtype = _checks.float_output(output_dtype)
    if is_dask(elements):
        from numba_quant._dask import formats as _dask_formats
        return _dask_formats.along_axis(
            _from_mx_first, elements, block_size, axis, ("elements",), scale_grid=scale_e8m0,
            settings=dict(elem_dtype=elem_dtype, block_size=block_size, axis=axis,
                          output_dtype=output_dtype))
    bk = backend(elements, scale_e8m0)
    c = common.as_codes(bk, elements, name, "elements")
    s = common.as_codes(bk, scale_e8m0, "float8_e8m0fnu", "scale_e8m0")
    shape = tuple(c.shape)
    _checks.not_empty_input(shape)
    ax = _checks.block_axis(axis, len(shape))
    nb = -(-shape[ax] // block)
    _checks.scale_shape(s.shape, shape[:ax] + (nb,) + shape[ax + 1:], "scale_e8m0")
    c = common.as_rows(common.move_last(bk, c, ax))
    s = common.as_rows(common.move_last(bk, s, ax))
    out = bk.empty(c.shape, np.float32, elements)
    bk.formats.dequantize_blocks(KIND_MX, s, common.unused(bk, np.float32), c, block, fmt.code, 1.0,
                         out)
    moved = tuple(shape[i] for i in range(len(shape)) if i != ax)
    out = common.move_back(bk, out.reshape(moved + (shape[ax],)), ax)
    return bk.wrap(common.widen(bk, out, output_dtype), elements)


def _from_mx_first(elements, scale_e8m0, **settings):
    """:func:`from_mx` with the elements first (the order of the Dask chunk calls)."""
    return from_mx(scale_e8m0, elements, **settings)
