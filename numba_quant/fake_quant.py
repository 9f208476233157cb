"""Applying quantization parameters: fake quantization, codes, and back."""
import numpy as np

from numba_quant._dispatch import blockwise as _blockwise
from numba_quant._host import checks as _checks
from numba_quant._host import codes
from numba_quant._dispatch import backend, is_dask, on_device, to_host


def _parameters(ops, like, shape, scale, zero_point, scheme, bits, axis, dtype,
                blocks=False):
    """The backend's quantization constants for ``scale`` and ``zero_point`` (checked),
    and the channel axis (None: per layer).  With ``blocks`` the parameters are one per
    block (their shapes checked already) and the axis returned is None.

    Host values are checked here; values that live on the GPU are checked there, by the
    kernel that makes the constants (no copy to the host unless one is bad).
    """
    if ops.device == "cpu":  # GPU values given with host data are read on the host
        scale, zero_point = (to_host(v) if on_device(v) else v for v in (scale, zero_point))
    scale = ops.channels.parameter_values(scale)
    zero_point = ops.channels.parameter_values(zero_point)
    if blocks:
        _checks.parameter_types(scale, zero_point)
        axis = None
    else:
        axis = _checks.parameter_arrays(scale, zero_point, shape, axis)
    on_host = not (on_device(scale) or on_device(zero_point))
    if on_host:
        scale = scale.astype(dtype)
        zero_point = zero_point.astype(dtype)
        _checks.parameter_values(scale, zero_point, scheme)
    return ops.channels.code_params(scale, zero_point, dtype, scheme, bits, checked=on_host,
                           like=like), axis


def _layout(shape, scale, zero_point, block_size, axis):
    """``(axis, sizes)``: the channel axis (None: per layer) and, for block-wise work, the
    block size (None otherwise).  A block size that is per layer or per channel goes to
    that layout's kernels."""
    sizes = _blockwise.resolve(shape, np.shape(scale), np.shape(zero_point), block_size, axis)
    if sizes is None:
        return (0 if axis is None else axis), None
    kind, axis = _blockwise.layout(shape, sizes)
    return (axis if axis is not None else 0), (sizes if kind == "blocks" else None)


def _write(ops, data, params, axis, sizes, what, view):
    """The map ``what`` of ``data`` into ``view``: per block with ``sizes``, else per
    layer or per channel along ``axis``."""
    if not data.size:
        return
    if sizes is not None:
        _blockwise.apply(ops, data, params, sizes, what, view)
    else:
        ops.channels.quantize_map(data, params, axis, what, view)


def _output(ops, x, out, shape, dtype):
    """The array to write into (``out`` checked, or a new one) and its backend view."""
    if out is None:
        fresh = ops.empty(shape, dtype, like=x)
        return fresh, fresh
    return out, ops.output_view(out, shape, dtype)


def _dask_apply(function, x, scale, zero_point, scheme, axis, block_size, dtype,
                parameter_dtype, kwargs):
    """``function`` on a Dask array: per layer or per channel as ``_dask.apply``; per
    block (a block size given or read from the scale's shape) on chunks moved to block
    boundaries (``_dask_blocks.apply``)."""
    from numba_quant._dask import channels as _dask
    _checks.dask_known_shape(x.shape)
    sizes = _blockwise.resolve(x.shape, np.shape(scale), np.shape(zero_point), block_size,
                               axis)
    if sizes is not None:
        kind, block_axis = _blockwise.layout(x.shape, sizes)
        if kind == "blocks":
            from numba_quant._dask import blocks as _dask_blocks
            return _dask_blocks.apply(function, x, scale, zero_point, sizes,
                                      parameter_dtype, scheme, dtype, kwargs)
        axis = block_axis  # the per-layer or per-channel reading of the grid
    return _dask.apply(function, x, scale, zero_point, scheme, 0 if axis is None else axis,
                       dtype, parameter_dtype, kwargs)


def _apply(x, scale, zero_point, formula, bits, scheme, axis, out, what, code_dtype=None,
           function=None, block_size=None):
    scheme_code = _checks.scheme_code(formula, scheme)
    bits = _checks.bits(bits)
    if is_dask(x):
        _checks.dask_no_out(out)
        dtype = _checks.compute_dtype(x.dtype)
        return _dask_apply(function, x, scale, zero_point, scheme_code, axis, block_size,
                           dtype if code_dtype is None else code_dtype(scheme_code, bits),
                           dtype, dict(quantization_formula=formula, quantization_bit=bits,
                                       quantization_scheme=scheme))
    scheme = scheme_code
    ops = backend(x)
    data = ops.channels.as_array(x)
    axis, sizes = _layout(data.shape, scale, zero_point, block_size, axis)
    params, axis = _parameters(ops, x, data.shape, scale, zero_point, scheme, bits, axis,
                               data.dtype, sizes is not None)
    if code_dtype is not None:
        _checks.no_nan_for_codes(ops.channels.count_nonfinite(data, nan_only=True) if data.size else 0)
    result, view = _output(ops, x, out, data.shape,
                           data.dtype if code_dtype is None else code_dtype(scheme, bits))
    _write(ops, data, params, axis, sizes, what, view)
    return result if out is not None else ops.wrap(result, x)


_PARAMETERS_DOC = """
    Parameters
    ----------
    x : array_like, GPU array or Dask array
        float16, float32 or float64 data (float16 is computed in float32).  A Dask array
        (numpy or CuPy chunks) gives a lazy Dask array: each chunk is mapped with the
        parameters of its slice of channels, values equal to the in-memory call's; the
        errors that depend on the data (``quantize`` and NaN) are raised by
        ``.compute()``, naming the first failing chunk's count.
    scale : array_like
        One value (per layer), one per slice along ``axis`` (per channel), or one per
        block (see ``block_size``).  Google formula: the non-negative scale; cambricon:
        the shift exponent (truncated toward zero, the step is ``2**trunc(shift)``).  A
        scale of 0 maps every value to 0.  A scale with as many axes as ``x`` and more
        than one value is read as one value per block, its block size inferred from the
        shapes: per axis, ``d / g`` for ``g`` values on an axis of length ``d`` when
        ``g`` divides ``d``, else the one block size ``b`` with ``ceil(d / b) == g``
        (several, or none, raise ``ValueError``: pass ``block_size``).
    zero_point : array_like
        As many values as ``scale``; used by the affine scheme only.
    quantization_formula : {"google", "cambricon"}
    quantization_bit : int
        Bits per code, 2 to 16.
    quantization_scheme : {"symmetric", "affine"}
        Codes in ``[-2**(b-1), 2**(b-1) - 1]`` (symmetric, cambricon) or ``[0, 2**b - 1]``
        (affine).
    axis : int, optional
        The channel axis when ``scale`` has more than one value (default None: axis 0).
        Given together with a block size (``block_size`` or a scale with ``x``'s number
        of axes), the blocks must be that axis's channels.
    out : array, optional
        Where to write the result (same shape, the dtype returned); may be ``x`` itself.
        Not for Dask arrays.
    block_size : tuple of int, optional
        One scale and zero point per block of ``x``: one entry per axis, each in ``[1,
        x.shape[axis]]`` (the axis length: the whole axis); the last block along an axis
        may be shorter.  ``scale`` and ``zero_point`` then have shape
        ``ceil(x.shape / block_size)`` (axes of length one may be left out: ``(C,)``
        stands for ``(C, 1)``), and each block is mapped with its own.  A Dask array
        is first rechunked so that no chunk boundary cuts a block (each boundary moved
        up to the next multiple of the block size along its axis).
"""


def fake_quantization(x, scale, zero_point, quantization_formula="google",
                      quantization_bit=8, quantization_scheme="symmetric", *, axis=None,
                      out=None, block_size=None):
    """Quantize and de-quantize: each value replaced by the value of its code.

    Per element, in the input's float type: ``q = clamp(rint(x / scale + zp), lo, hi)``
    and the result is ``(q - zp) * scale`` (symmetric: ``zp`` is 0; cambricon: the step
    ``2**trunc(shift)`` stands for the scale).  Equal to OneFlow's ``fake_quantization``.
    NaN stays NaN; infinities clamp to the end codes.
    """ + _PARAMETERS_DOC + """
    Returns
    -------
    array
        The input's shape and float type (float32 for float16), on the input's device.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> x = np.array([-1.0, -0.3, 0.26, 0.9], dtype=np.float32)
    >>> nq.fake_quantization(x, 0.25, 0, quantization_bit=3)
    array([-1.  , -0.25,  0.25,  0.75], dtype=float32)
    """
    return _apply(x, scale, zero_point, quantization_formula, quantization_bit,
                  quantization_scheme, axis, out, codes.FAKE, function=fake_quantization,
                  block_size=block_size)


def quantization(x, scale, zero_point, quantization_formula="google", quantization_bit=8,
                 quantization_scheme="symmetric", *, axis=None, out=None, block_size=None):
    """The codes of ``x`` as floats, as OneFlow's ``quantization`` returns them.

    Per element ``clamp(rint(x / scale + zp), lo, hi)``; the affine zero point is not
    subtracted.  See :func:`quantize` for integer codes.
    """ + _PARAMETERS_DOC + """
    Returns
    -------
    array
        Codes with integer values, in the input's shape and float type.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> x = np.array([-1.0, 0.1, 0.5, 2.0], dtype=np.float32)
    >>> nq.quantization(x, 0.01, 100, quantization_scheme="affine")
    array([  0., 110., 150., 255.], dtype=float32)
    """
    return _apply(x, scale, zero_point, quantization_formula, quantization_bit,
                  quantization_scheme, axis, out, codes.CODE, function=quantization,
                  block_size=block_size)


def code_dtype(scheme, bits):
    """The integer type of codes: signed for symmetric/cambricon, unsigned for affine."""
    signed = scheme != codes.AFFINE
    if bits <= 8:
        return np.dtype(np.int8 if signed else np.uint8)
    return np.dtype(np.int16 if signed else np.uint16)


def quantize(x, scale, zero_point, quantization_formula="google", quantization_bit=8,
             quantization_scheme="symmetric", *, axis=None, out=None, block_size=None):
    """Integer codes of ``x``: int8/int16 (symmetric, cambricon) or uint8/uint16 (affine).

    The same codes as :func:`quantization`, stored in the smallest integer type that
    holds ``quantization_bit`` bits.  NaN has no code and raises ``ValueError``.
    """ + _PARAMETERS_DOC + """
    Returns
    -------
    array
        Integer codes in the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> x = np.array([-1.0, -0.3, 0.26, 0.9], dtype=np.float32)
    >>> nq.quantize(x, 0.25, 0, quantization_bit=3)
    array([-4, -1,  1,  3], dtype=int8)

    One scale per block of four values along the row (the second block is ragged):

    >>> w = np.array([[-1.0, -0.3, 0.26, 0.9, 2.0]], dtype=np.float32)
    >>> scale = np.array([[0.25, 1.0]], dtype=np.float32)
    >>> nq.quantize(w, scale, np.zeros((1, 2)), quantization_bit=3, block_size=(1, 4))
    array([[-4, -1,  1,  3,  2]], dtype=int8)
    """
    return _apply(x, scale, zero_point, quantization_formula, quantization_bit,
                  quantization_scheme, axis, out, codes.CODE, code_dtype, function=quantize,
                  block_size=block_size)


def dequantize(q, scale, zero_point, quantization_formula="google", quantization_bit=8,
               quantization_scheme="symmetric", *, axis=None, dtype=None, out=None,
               block_size=None):
    """The values that codes stand for: ``(q - zero_point) * scale``.

    ``dequantize(quantize(x, s, zp, ...), s, zp, ...)`` equals
    ``fake_quantization(x, s, zp, ...)`` when ``dtype`` is ``x``'s float type, bit for bit
    except that a -0.0 of fake quantization comes back as +0.0 (an integer code has no
    sign).

    Parameters
    ----------
    q : array_like, GPU array or Dask array
        Codes (any integer or float type); a Dask array gives a lazy Dask array.
    scale, zero_point, quantization_formula, quantization_bit, quantization_scheme, axis
        As for :func:`quantize`.
    block_size : tuple of int, optional
        As for :func:`quantize`: one scale and zero point per block of ``q``.
    dtype : {None, float32, float64}
        The result's type; None takes the float type of ``scale`` (float64 for Python
        numbers, float32 for float16).
    out : array, optional
        Where to write the result.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> q = np.array([0, 128, 255], dtype=np.uint8)
    >>> scale = np.float32(0.5)
    >>> nq.dequantize(q, scale, 128, quantization_scheme="affine")
    array([-64. ,   0. ,  63.5], dtype=float32)
    >>> codes = np.array([[-4, -1, 1, 3, 2]], dtype=np.int8)
    >>> nq.dequantize(codes, np.array([[0.25, 1.0]], np.float32), np.zeros((1, 2)),
    ...               quantization_bit=3, block_size=(1, 4))
    array([[-1.  , -0.25,  0.25,  0.75,  2.  ]], dtype=float32)
    """
    scheme = _checks.scheme_code(quantization_formula, quantization_scheme)
    bits = _checks.bits(quantization_bit)
    ops = backend(q._meta if is_dask(q) else q)
    if dtype is None:
        scale_type = np.dtype(scale.dtype if is_dask(scale)
                              else ops.channels.parameter_values(scale).dtype)
        dtype = scale_type if scale_type.kind == "f" else np.float64
    dtype = _checks.compute_dtype(dtype)
    if is_dask(q):
        _checks.dask_no_out(out)
        _checks.codes_dtype(q.dtype)
        return _dask_apply(dequantize, q, scale, zero_point, scheme, axis, block_size,
                           dtype, dtype, dict(quantization_formula=quantization_formula,
                                              quantization_bit=bits,
                                              quantization_scheme=quantization_scheme,
                                              dtype=dtype))
    codes_array = ops.channels.as_codes(q, dtype)
    axis, sizes = _layout(codes_array.shape, scale, zero_point, block_size, axis)
    params, axis = _parameters(ops, q, codes_array.shape, scale, zero_point, scheme, bits, axis,
                               dtype, sizes is not None)
    result, view = _output(ops, q, out, codes_array.shape, dtype)
    _write(ops, codes_array, params, axis, sizes, codes.DECODE, view)
    return result if out is not None else ops.wrap(result, q)


class _Applier:
    """Shared body of the operator classes: settings checked once, applied on call."""

    _settings = ("quantization_formula", "quantization_bit", "quantization_scheme", "axis")
    _function = None

    def __init__(self, quantization_formula="google", quantization_bit=8,
                 quantization_scheme="symmetric", *, axis=None):
        _checks.scheme_code(quantization_formula, quantization_scheme)
        self.quantization_formula = quantization_formula
        self.quantization_bit = _checks.bits(quantization_bit)
        self.quantization_scheme = quantization_scheme
        # None, as for the functions: axis 0 per channel, and a scale with x's number of
        # axes read per block.
        self.axis = None if axis is None else _checks.integer("axis", axis)

    def __call__(self, x, scale, zero_point, *, out=None):
        return type(self)._function(x, scale, zero_point, self.quantization_formula,
                                    self.quantization_bit, self.quantization_scheme,
                                    axis=self.axis, out=out)

    def __repr__(self):
        return _checks.settings_repr(self)


class FakeQuantization(_Applier):
    """OneFlow's ``nn.FakeQuantization``: :func:`fake_quantization` with fixed settings.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> fake = nq.FakeQuantization(quantization_bit=4)
    >>> fake(np.array([0.3, -0.8]), 0.1, 0)
    array([ 0.3, -0.8])
    """

    _function = staticmethod(fake_quantization)


class Quantization(_Applier):
    """OneFlow's ``nn.Quantization``: :func:`quantization` with fixed settings.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> quant = nq.Quantization(quantization_bit=4)
    >>> quant(np.array([0.3, -0.8, 2.0]), 0.1, 0)
    array([ 3., -8.,  7.])
    """

    _function = staticmethod(quantization)
