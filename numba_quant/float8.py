"""Element conversions to and from the low-precision float formats, and FP8 scaling.

* :func:`to_bits` / :func:`from_bits`: float32/float64 to and from the bit patterns of
  FP8 E4M3FN and E5M2, FP6 E3M2 and E2M3, FP4 E2M1 and E8M0 (one ``uint8`` per element,
  FP4 optionally two per byte), rounding to nearest, ties to even;
* :func:`to_float8` / :func:`from_float8`: FP8 with a float32 scale per tensor, per
  channel or per block, Transformer Engine's "current scaling".
"""
import numpy as np

from numba_quant import _checks
from numba_quant import _float_common as common
from numba_quant._float_formats import ELEMENT_FORMATS, FORMATS, FP8_FORMATS

ALL_FORMATS = ELEMENT_FORMATS + ("float8_e8m0fnu",)


def to_bits(x, dtype, *, saturate=False, packed=False, ml_dtypes=False):
    """Round ``x`` to a low-precision float format and return the bit patterns.

    Parameters
    ----------
    x : array_like or GPU array
        float16, bfloat16, float32 or float64 values (rounded once, from their own type).
    dtype : str
        ``"float8_e4m3fn"``, ``"float8_e5m2"``, ``"float6_e3m2fn"``, ``"float6_e2m3fn"``,
        ``"float4_e2m1fn"`` or ``"float8_e8m0fnu"`` (ml_dtypes' names; their dtypes are
        accepted too).
    saturate : bool, optional
        True: values beyond the largest finite value, infinities included, become the
        largest finite value of their sign (torch's e4m3fn cast).  False (default): the
        format's own overflow, as ml_dtypes: NaN for e4m3fn and e8m0, infinity for e5m2;
        fp6 and fp4 have neither and always saturate.  NaN stays NaN where the format has
        one (fp6/fp4 give zero, as ml_dtypes).
    packed : bool, optional
        FP4 only: two codes per byte along the last axis, element ``2i`` in the low
        nibble and ``2i + 1`` in the high one (the last axis must be even).
    ml_dtypes : bool, optional
        Return the codes viewed as ml_dtypes' dtype of the format (numpy input only).

    Returns
    -------
    codes : uint8 array of ``x``'s shape (packed: last axis halved), on ``x``'s device.

    Examples
    --------
    >>> import numpy as np, numba_quant as nq
    >>> nq.to_bits(np.array([1.0, -0.3, 500.0], np.float32), "float8_e4m3fn")
    array([ 56, 170, 127], dtype=uint8)
    >>> nq.to_bits(np.array([500.0], np.float32), "float8_e4m3fn", saturate=True)
    array([126], dtype=uint8)
    """
    name = _checks.float_format(dtype, ALL_FORMATS, "dtype")
    fmt = FORMATS[name]
    if packed and name != "float4_e2m1fn":
        raise ValueError(f"packed=True is for float4_e2m1fn only; got dtype {name!r}")
    bk = common.backend(x)
    a, shape = common.as_input(bk, x, allow_float64=True)
    flat = a.reshape(-1)
    if packed:
        _checks.packed_length(shape[-1] if shape else 1)
        out = bk.empty((flat.size // 2,), np.uint8, x)
        bk.encode(flat, fmt.code, bool(saturate), out)
        out = out.reshape(shape[:-1] + (shape[-1] // 2,))
        return common.output(bk, out, x, None, False)
    out = bk.empty((flat.size,), np.uint8, x)
    bk.encode(flat, fmt.code, bool(saturate), out)
    return common.output(bk, out.reshape(shape), x, name, ml_dtypes)


def from_bits(codes, dtype, *, packed=False, output_dtype=np.float32):
    """The values of low-precision float bit patterns (inverse of :func:`to_bits`).

    Parameters
    ----------
    codes : array_like or GPU array
        ``uint8`` codes (or an array of the format's ml_dtypes dtype).
    dtype : str
        The format, as for :func:`to_bits`.
    packed : bool, optional
        FP4 codes packed two per byte (the last axis doubles).
    output_dtype : float32 or float64, optional
        Every value of these formats is a float32, so both are exact.

    Examples
    --------
    >>> import numpy as np, numba_quant as nq
    >>> nq.from_bits(np.array([56, 170, 127], np.uint8), "float8_e4m3fn")
    array([ 1.    , -0.3125,     nan], dtype=float32)
    """
    name = _checks.float_format(dtype, ALL_FORMATS, "dtype")
    if packed and name != "float4_e2m1fn":
        raise ValueError(f"packed=True is for float4_e2m1fn only; got dtype {name!r}")
    output_dtype = _checks.float_output(output_dtype)
    bk = common.backend(codes)
    c = common.as_codes(bk, codes, name, "codes")
    shape = tuple(c.shape)
    if packed:
        shape = shape[:-1] + (2 * shape[-1],) if shape else (2,)
    out = bk.empty((int(np.prod(shape, dtype=np.int64)),), np.float32, codes)
    bk.decode(c.reshape(-1), FORMATS[name].code, bool(packed), out)
    out = common.widen(bk, out.reshape(shape), output_dtype)
    return bk.wrap(out, codes)


def _fp8_groups(shape, per_layer_quantization, axis, block_size):
    """``(mode, axis)``: "tensor", "channel" (OneFlow-style axis) or "block" (last axis)."""
    if block_size is not None:
        return "block", _checks.block_axis(-1, len(shape)), _checks.block_size(block_size)
    if per_layer_quantization:
        return "tensor", None, 0
    return "channel", _checks.channel_axis(axis, len(shape), False), 0


def to_float8(x, dtype="float8_e4m3fn", *, per_layer_quantization=True, axis=0,
              block_size=None, nonfinite="raise"):
    """FP8 with a float32 scale from the current maximum ("current scaling").

    ``scale = float32(fp8_max / amax)`` (1 where amax is 0, the largest float32 where the
    quotient overflows) and ``elements = RNE(clamp(float32(x) * scale, -fp8_max,
    fp8_max))``, with fp8_max 448 (e4m3fn) or 57344 (e5m2), as Transformer Engine.

    Parameters
    ----------
    x : array_like or GPU array
        float16, bfloat16 or float32 values.
    dtype : {"float8_e4m3fn", "float8_e5m2"}
    per_layer_quantization : bool, optional
        True (default): one scale for the whole tensor; False: one per index of ``axis``.
    axis : int, optional
        The channel axis when ``per_layer_quantization`` is False.
    block_size : int, optional
        One scale per block of this many elements along the last axis (the last block may
        be shorter); overrides the other two.  ``block_size=x.shape[-1]`` is one scale per
        row.
    nonfinite : {"raise", "propagate"}, optional
        NaN or infinity in the input: a ValueError (default), or let them through the
        formulas (an infinite amax gives scale 0, NaN gives a NaN scale).

    Returns
    -------
    elements : uint8 array (FP8 codes) of ``x``'s shape
    scale : float32 array: shape (1,) per tensor, ``(x.shape[axis],)`` per channel,
        ``x.shape[:-1] + (blocks,)`` per block.

    Examples
    --------
    >>> import numpy as np, numba_quant as nq
    >>> q, s = nq.to_float8(np.array([[1.0, -2.0], [0.5, 4.0]], np.float32))
    >>> s
    array([112.], dtype=float32)
    >>> nq.from_float8(q, s)
    array([[ 1. , -2. ],
           [ 0.5,  4. ]], dtype=float32)
    """
    name = _checks.float_format(dtype, FP8_FORMATS, "dtype")
    fmt = FORMATS[name]
    propagate = _checks.format_nonfinite(nonfinite)
    bk = common.backend(x)
    a, shape = common.as_input(bk, x, allow_float64=False)
    mode, ax, block = _fp8_groups(shape, per_layer_quantization, axis, block_size)
    rows, inner, scales, sshape, bad = _fp8_amax(bk, a, shape, mode, ax, block, x)
    if bad and not propagate:
        raise _checks.nonfinite_blocks_error(bad, "element(s)")
    amax = scales
    scales = bk.empty(amax.shape, np.float32, x)
    bk.fp8_scales(amax.reshape(-1), fmt.max, scales.reshape(-1))
    codes = bk.empty(rows.shape, np.uint8, x)
    unused = bk.empty((1, 1), np.float32, x)
    bk.fp8_quantize(rows, scales, inner, block, fmt.code, fmt.max, codes, unused, True, False)
    return (bk.wrap(codes.reshape(shape), x), bk.wrap(scales.reshape(sshape), x))


def _fp8_amax(bk, a, shape, mode, ax, block, like):
    """The rows view, the inner length, the per-group maxima (2-D) and the scale shape."""
    if mode == "block":
        rows = common.as_rows(a)
        nb = -(-rows.shape[1] // block)
        amax = bk.empty((rows.shape[0], nb), np.float32, like)
        bad = bk.group_abs_max(rows, block, amax)
        return rows, 1, amax, shape[:-1] + (nb,), bad
    if mode == "tensor":
        m, bad = bk.abs_max(a.reshape(-1))
        amax = _host_to(bk, np.array([[m]], np.float32), like)
        return a.reshape(1, -1), a.size, amax, (1,), bad
    outer = int(np.prod(shape[:ax], dtype=np.int64))
    channels = shape[ax]
    inner = int(np.prod(shape[ax + 1:], dtype=np.int64))
    amax = bk.empty((1, channels), np.float32, like)
    bad = bk.channel_abs_max(a.reshape(outer, channels, inner), amax.reshape(-1))
    return a.reshape(outer * channels, inner), inner, amax, (channels,), bad


def _host_to(bk, a, like):
    if bk.__name__.endswith("_cpu_float"):
        return a
    from numba import cuda
    return cuda.to_device(a)


def from_float8(elements, scale, dtype="float8_e4m3fn", *, axis=0, block_size=None,
                output_dtype=np.float32):
    """FP8 codes back to values: ``float32(element) / scale`` per group.

    The groups follow the shape of ``scale``: one value (per tensor), ``x.shape[axis]``
    values (per channel), or ``shape[:-1] + (blocks,)`` with ``block_size`` given.

    Examples
    --------
    >>> import numpy as np, numba_quant as nq
    >>> nq.from_float8(np.array([56, 64], np.uint8), np.array([2.0], np.float32))
    array([0.5, 1. ], dtype=float32)
    """
    name = _checks.float_format(dtype, FP8_FORMATS, "dtype")
    fmt = FORMATS[name]
    output_dtype = _checks.float_output(output_dtype)
    bk = common.backend(elements, scale)
    c = common.as_codes(bk, elements, name, "elements")
    shape = tuple(c.shape)
    _checks.not_empty_input(shape)
    if bk.__name__.endswith("_cpu_float"):
        s = np.ascontiguousarray(np.asarray(scale, np.float32))
    else:
        from numba_quant import _cuda
        s = _cuda._device(scale)
        if np.dtype(s.dtype) != np.float32:
            raise TypeError(f"scale must be float32 on the GPU; got dtype {s.dtype}")
        s = bk.contiguous(s)
    if block_size is not None:
        block = _checks.block_size(block_size)
        rows = c.reshape(-1, shape[-1] if shape else 1)
        nb = -(-rows.shape[1] // block)
        _checks.scale_shape(s.shape, shape[:-1] + (nb,), "scale")
        s2, inner = s.reshape(rows.shape[0], nb), 1
    elif s.size == 1:
        block, rows, s2, inner = 0, c.reshape(1, -1), s.reshape(1, 1), c.size
    else:
        ax = _checks.parameter_axis(axis, shape, s.size, "scale")
        outer = int(np.prod(shape[:ax], dtype=np.int64))
        inner = int(np.prod(shape[ax + 1:], dtype=np.int64))
        block, rows, s2 = 0, c.reshape(outer * shape[ax], inner), s.reshape(1, -1)
    out = bk.empty(rows.shape, np.float32, elements)
    bk.fp8_dequantize(rows, s2, inner, block, fmt.code, out)
    return bk.wrap(common.widen(bk, out.reshape(shape), output_dtype), elements)
