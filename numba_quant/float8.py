"""Element conversions to and from the low-precision float formats, and FP8 scaling.

* :func:`to_bits` / :func:`from_bits`: float32/float64 to and from the bit patterns of
  FP8 E4M3FN and E5M2, FP6 E3M2 and E2M3, FP4 E2M1 and E8M0 (one ``uint8`` per element,
  FP4 optionally two per byte), rounding to nearest, ties to even;
* :func:`to_float8` / :func:`from_float8`: FP8 with a float32 scale per tensor, per
  channel or per block, Transformer Engine's "current scaling".

``to_float8``/``from_float8`` take Dask arrays: per tensor and per channel, the scales
come from the maximum of the chunks' maxima (two passes, the whole tensor's errors); per
block, the array is rechunked so that no chunk boundary cuts a block along the last axis.
"""
import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._dispatch import backend, is_dask, on_device
from numba_quant._dispatch import formats as common
from numba_quant._host.float_formats import ELEMENT_FORMATS, FORMATS, FP8_FORMATS

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
    bk = backend(x)
    a, shape = common.as_input(bk, x, allow_float64=True)
    flat = a.reshape(-1)
    if packed:
        _checks.packed_length(shape[-1] if shape else 1)
        out = bk.empty((flat.size // 2,), np.uint8, x)
        bk.formats.encode(flat, fmt.code, bool(saturate), True, out)
        out = out.reshape(shape[:-1] + (shape[-1] // 2,))
        return common.output(bk, out, x, None, False)
    out = bk.empty((flat.size,), np.uint8, x)
    bk.formats.encode(flat, fmt.code, bool(saturate), False, out)
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
    bk = backend(codes)
    c = common.as_codes(bk, codes, name, "codes")
    shape = tuple(c.shape)
    if packed:
        shape = shape[:-1] + (2 * shape[-1],) if shape else (2,)
    out = bk.empty((int(np.prod(shape, dtype=np.int64)),), np.float32, codes)
    bk.formats.decode(c.reshape(-1), FORMATS[name].code, bool(packed), out)
    out = common.widen(bk, out.reshape(shape), output_dtype)
    return bk.wrap(out, codes)


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
    if is_dask(x):
        from numba_quant._dask import formats as _dask_formats
        return _dask_formats.to_float8(x, name, per_layer_quantization, axis, block_size,
                                       nonfinite, _dask_functions(_dask_formats))
    bk = backend(x)
    a, shape = common.as_input(bk, x, allow_float64=False)
    groups = _Groups(bk, shape, per_layer_quantization, axis, block_size)
    amax, bad = groups.abs_max(a)
    if bad and not propagate:
        raise _checks.nonfinite_blocks_error(bad, "element(s)")
    scale = bk.formats.fp8_scales(amax, fmt.max)
    return (_encode(bk, x, a, shape, groups, scale, fmt, propagate),
            bk.wrap(bk.from_host(scale.reshape(groups.scale_shape), x), x))


def _encode(bk, x, a, shape, groups, scale, fmt, propagate):
    """The FP8 codes of ``a`` (``x`` as the kernels read it) with the groups' float32
    scales ``scale`` (host), in ``x``'s array type."""
    codes = bk.empty(groups.rows_shape, np.uint8, x)
    bk.formats.quantize_blocks(KIND_FP8, a.reshape(groups.rows_shape), groups.run, fmt.code, 0, 0, 0,
                       fmt.max, propagate, 1.0, common.unused(bk, np.uint8),
                       groups.run_scales(scale), codes, common.unused(bk, np.float32), True,
                       False)
    return bk.wrap(codes.reshape(shape), x, fmt.name)


def amax_of_chunk(x, per_layer_quantization, axis):
    """``(max |x| per group, non-finite count)`` of a per-tensor or per-channel chunk
    (for Dask: maxima merge exactly in any order)."""
    bk = backend(x)
    a, shape = common.as_input(bk, x, allow_float64=False)
    return _Groups(bk, shape, per_layer_quantization, axis, None).abs_max(a)


def encode_chunk(x, scale, fmt_name, per_layer_quantization, axis, nonfinite):
    """The FP8 codes of a chunk with given per-tensor or per-channel scales (host
    float32, the chunk's channels)."""
    bk = backend(x)
    a, shape = common.as_input(bk, x, allow_float64=False)
    groups = _Groups(bk, shape, per_layer_quantization, axis, None)
    return _encode(bk, x, a, shape, groups, np.asarray(scale, np.float32), FORMATS[fmt_name],
                   _checks.format_nonfinite(nonfinite))


KIND_FP8 = 2  # numba_quant._reference.formats.FP8 (that module imports numba)


class _Groups:
    """How elements share FP8 scales, and the block kernel's view of them.

    The block kernel sees rows of ``rows_shape`` cut in runs of ``run`` elements with one
    float scale per run (``run_scales``): per block, a run is a block; per tensor and per
    channel, runs are short pieces of the tensor or of a channel's inner stretch, so that
    the work splits into many tasks.
    """

    def __init__(self, bk, shape, per_layer_quantization, axis, block_size):
        self.bk = bk
        n = int(np.prod(shape, dtype=np.int64))
        if block_size is not None:
            _checks.block_axis(-1, len(shape))
            self.mode = "block"
            self.run = _checks.format_block_size(block_size)
            k = shape[-1]
            self.rows_shape = (n // k, k)
            self.scale_shape = shape[:-1] + (-(-k // self.run),)
        elif per_layer_quantization:
            self.mode = "tensor"
            self.rows_shape = (1, n)
            self.run = max(1, min(n, bk.formats.scale_run()))
            self.scale_shape = (1,)
        else:
            self.mode = "channel"
            ax = _checks.channel_axis(axis, len(shape), False)
            self.outer = int(np.prod(shape[:ax], dtype=np.int64))
            self.channels = shape[ax]
            inner = int(np.prod(shape[ax + 1:], dtype=np.int64))
            self.rows_shape = (self.outer * self.channels, inner)
            self.run = max(1, min(inner, bk.formats.scale_run()))
            self.scale_shape = (self.channels,)
        self.runs = -(-self.rows_shape[1] // self.run)

    def abs_max(self, a):
        """Each group's ``max |x|`` (float32, host, of ``scale_shape``), non-finite count."""
        bk = self.bk
        parts = bk.empty((self.rows_shape[0], self.runs), np.float32, None)
        bad = bk.formats.group_abs_max(a.reshape(self.rows_shape), self.run, parts)
        parts = np.asarray(bk.to_host(parts))
        if self.mode == "block":
            return parts.reshape(self.scale_shape), bad
        if self.mode == "tensor":
            return np.array([np.max(parts)], np.float32), bad
        parts = parts.reshape(self.outer, self.channels, self.runs)
        return np.max(parts, axis=(0, 2)).astype(np.float32), bad

    def run_scales(self, scale):
        """The scale of every run, (rows, runs) float32, on the backend."""
        scale = np.asarray(scale, np.float32)
        if self.mode == "block":
            runs = scale.reshape(self.rows_shape[0], self.runs)
        elif self.mode == "tensor":
            runs = np.full((1, self.runs), scale.reshape(-1)[0], np.float32)
        else:
            runs = np.broadcast_to(scale.reshape(1, self.channels, 1),
                                   (self.outer, self.channels, self.runs))
            runs = runs.reshape(self.rows_shape[0], self.runs)
        return self.bk.from_host(np.array(runs, np.float32, order="C", copy=True), None)


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
    if is_dask(elements):
        from numba_quant._dask import formats as _dask_formats
        return _dask_formats.from_float8(elements, scale, name, axis, block_size,
                                         output_dtype, _dask_functions(_dask_formats))
    bk = backend(elements, scale)
    c = common.as_codes(bk, elements, name, "elements")
    shape = tuple(c.shape)
    _checks.not_empty_input(shape)
    if isinstance(scale, (int, float, list, tuple)):
        scale = np.asarray(scale, np.float32)
    s = np.asarray(bk.to_host(scale) if on_device(scale) else scale)
    if s.dtype != np.float32:
        raise TypeError(f"scale must be float32 (what to_float8 returns); got dtype {s.dtype}")
    if block_size is not None:
        groups = _Groups(bk, shape, True, 0, block_size)
    elif s.size == 1:
        groups = _Groups(bk, shape, True, 0, None)
    else:
        ax = _checks.parameter_axis(axis, shape, s.size, "scale")
        groups = _Groups(bk, shape, False, ax, None)
    _checks.scale_shape(s.shape if s.size != 1 or block_size is not None else (1,),
                        groups.scale_shape, "scale")
    out = bk.empty(groups.rows_shape, np.float32, elements)
    bk.formats.dequantize_blocks(KIND_FP8, common.unused(bk, np.uint8), groups.run_scales(s),
                         c.reshape(groups.rows_shape), groups.run, fmt.code, 1.0, out)
    return bk.wrap(common.widen(bk, out.reshape(shape), output_dtype), elements)


def _dask_functions(dask_formats):
    """What a Dask graph of FP8 runs on each chunk (functions of this module)."""
    return dask_formats.Float8Functions(to_float8, from_float8, amax_of_chunk, encode_chunk)
