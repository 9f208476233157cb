"""llama.cpp's GGUF quantization types, bit for bit as ggml's C library writes them.

:func:`quantize` gives the bytes that ggml's ``ggml_quantize_chunk`` (what
``llama-quantize`` calls per tensor) writes for a float32 matrix, row after row, and
:func:`dequantize` the float32 values of ggml's ``to_float`` for such bytes; the names
mirror gguf-py's ``gguf.quants``.  The arithmetic follows ggml 0.20.2 operation by
operation (float32 sums in ggml's order, scales rounded to float16 to nearest even).

Where ggml is silent this module refuses, with a ValueError naming the row: a NaN or
infinite input (ggml turns it into finite codes), and a block whose float16 scale (or,
for F16 and BF16, a value) overflows to infinity (ggml stores the infinity, so the row
dequantizes to non-finite values).  Nothing is returned half written.

Supported types (:data:`TYPES`): F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K,
Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4.  An importance matrix
(``imatrix``) is used by the Q4/Q5 legacy types, the K-quants, IQ4_NL and IQ4_XS (ggml's
``_impl`` quantizers with ``quant_weights``); F16, BF16, Q8_0, TQ1_0, TQ2_0 and MXFP4
ignore it, as ggml does (it is still checked).  NumPy arrays and PyTorch CPU tensors run
on the CPU; GPU arrays (CuPy, Numba device arrays, PyTorch CUDA tensors) on the GPU, one
thread per run of whole blocks, and the result stays there as the same kind; Dask arrays
by chunks of whole rows on the workers.
"""
import numpy as np

from numba_quant._dispatch import backend, is_dask
from numba_quant._host import checks as _checks
from numba_quant._host import gguf_types as _types
from numba_quant._host import torch_arrays as _torch
from numba_quant._host.codes import GGUF_ROW_NONFINITE, GGUF_ROW_OK

__all__ = ["quantize", "dequantize", "row_size", "block_size", "quantize_stored", "TYPES",
           "ONE_PASS_TYPES"]

# The type names this module handles.
TYPES = tuple(_types.NAMES)
# The types quantize_stored handles (numba_quant._cpu.gguf_export.MEASURED).
ONE_PASS_TYPES = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")

def _gguf_type(qtype):
    return _types.lookup(qtype)


def block_size(qtype):
    """Values per block of the type (ggml's ``ggml_blck_size``): 1, 32 or 256.

    Examples
    --------
    >>> from numba_quant import gguf
    >>> gguf.block_size("Q4_K"), gguf.block_size("Q8_0")
    (256, 32)
    """
    return _gguf_type(qtype).block_size


def row_size(qtype, n_per_row):
    """Bytes of one quantized row of ``n_per_row`` values (ggml's ``ggml_row_size``).

    Parameters
    ----------
    qtype : str, int or gguf.GGMLQuantizationType
        The GGUF type.
    out : array, optional
        Where to write the values: float32 ``(..., n_per_row)``, C-contiguous, on
        ``data``'s device.
    n_per_row : int
        Values per row, a multiple of the type's block size.

    Returns
    -------
    int

    Examples
    --------
    >>> from numba_quant import gguf
    >>> gguf.row_size("Q4_0", 4096)
    2304
    """
    return _types.row_size(qtype, int(n_per_row))


def _is_bfloat16(dtype):
    return dtype.name == "bfloat16" and dtype.itemsize == 2


def _checked_imatrix(imatrix, n_per_row):
    if imatrix is None:
        return None
    if _torch.is_tensor(imatrix):
        imatrix = _torch.to_numpy(imatrix, "imatrix")
    q = np.asarray(imatrix)
    if q.dtype.kind != "f" and not _is_bfloat16(q.dtype):
        raise TypeError(f"imatrix: expected a float array, got dtype {q.dtype}")
    q = np.ascontiguousarray(q, dtype=np.float32)
    if q.shape != (n_per_row,):
        raise ValueError(f"imatrix: expected shape ({n_per_row},) (one weight per column, "
                         f"n_per_row = {n_per_row}), got {q.shape}")
    bad = ~np.isfinite(q)
    if bad.any():
        j = int(np.argmax(bad))
        raise ValueError(f"imatrix: entries must be finite; imatrix[{j}] = {q[j]}")
    if (q < 0).any():
        j = int(np.argmax(q < 0))
        raise ValueError(f"imatrix: entries must be non-negative; imatrix[{j}] = {q[j]}")
    return q


def _raise_bad_row(status, r0, t, shape, origin):
    i = int(np.argmax(status != GGUF_ROW_OK))
    where = np.unravel_index(r0 + i, shape[:-1]) if len(shape) > 2 else (r0 + i,)
    if origin:  # a chunk of a Dask array: the row's index in the whole array
        where = [int(k) + o for k, o in zip(where, origin)]
    index = ", ".join(str(int(k)) for k in where)
    if status[i] == GGUF_ROW_NONFINITE:
        raise ValueError(f"x: row [{index}] holds NaN or infinite values; GGUF types "
                         f"quantize finite values only (ggml would write finite codes "
                         f"for them silently)")
    what = "a value" if t.block_size == 1 else "a block scale"
    raise ValueError(f"x: row [{index}]: {what} overflows {t.name}'s float16/bfloat16 range "
                     f"(ggml would store an infinity, and the row would dequantize to "
                     f"non-finite values); scale the tensor down or choose another type")


def quantize(x, qtype, *, imatrix=None, out=None):
    """Quantize rows of floats to a GGUF type: the bytes ggml's C library writes.

    Parameters
    ----------
    x : numpy.ndarray, torch.Tensor, CuPy or Numba device array, or dask.array.Array
        float32 values ``(..., n_per_row)``, on the CPU or the GPU (where the kernels
        run one thread per run of whole blocks); float16, bfloat16 and float64 are
        converted to float32 a chunk of rows at a time (as llama-quantize converts
        F16/BF16 tensors).  ``n_per_row`` must be a multiple of the type's block size (32 or
        256), every value finite.  A Dask array gives a Dask array, computed by chunks
        of whole rows (the last axis is made one chunk); a bad row raises when computed,
        named by its index in the whole array.
    qtype : str, int or gguf.GGMLQuantizationType
        The GGUF type, by name (``"Q4_0"``) or ggml's id.
    imatrix : array_like, optional
        Importance weights, float ``(n_per_row,)``, non-negative and finite (ggml's
        ``quant_weights``), on the same device as ``x``; ignored by F16, BF16, Q8_0, TQ1_0, TQ2_0 and MXFP4.
        The legacy types with an imatrix weight each value by
        ``imatrix * sqrt(mean(row**2) + x**2)``, as ggml does.
    out : array, optional
        Where to write the bytes: uint8 ``(..., row_size)``, C-contiguous, on ``x``'s
        device (for example a tensor's place in a file being written).  A call that
        raises may leave rows written, the bad one included.

    Returns
    -------
    array of the kind of ``x``
        uint8 ``(..., row_size)``: each row's blocks in ggml's layout (a tensor for a
        tensor, on its device; a Dask array for a Dask array).

    Raises
    ------
    ValueError
        ``n_per_row`` not a multiple of the block size; a NaN or infinite value (the
        first bad row is named); a block scale (F16/BF16: a value) beyond float16's
        (bfloat16's) range; a bad ``imatrix``; ``imatrix`` on another device than ``x``.
    TypeError
        A non-float input, an unsupported ``qtype`` type.

    Examples
    --------
    >>> import numpy as np
    >>> from numba_quant import gguf
    >>> x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
    >>> q = gguf.quantize(x, "Q8_0")
    >>> q.shape, q.dtype
    ((2, 34), dtype('uint8'))
    >>> y = gguf.dequantize(q, "Q8_0")
    >>> float(np.abs(y - x).max()) < 0.01
    True
    """
    t = _gguf_type(qtype)
    if is_dask(x):
        from numba_quant._dask import rows as _dask_rows
        _check_float_dtype(x.dtype)
        size = _row_size_of(t, x.shape)
        _checks.dask_no_out(out)
        return _dask_rows.by_rows(_quantize_chunk, x, size, np.uint8, t=t,
                                  qw=_checked_imatrix(imatrix, x.shape[-1]))
    return _quantize(x, t, imatrix, (), out)


def _check_float_dtype(dtype):
    if dtype not in (np.float32, np.float16, np.float64) and not _is_bfloat16(dtype):
        raise TypeError(f"x: expected float32, float16, bfloat16 or float64 values, got "
                        f"dtype {dtype}")


def _row_size_of(t, shape):
    """Bytes per row of rows ``shape`` (..., n_per_row), with the checks of the shape."""
    if len(shape) == 0:
        raise ValueError("x: expected an array of rows (..., n_per_row), got a scalar")
    _types.check_row_length(t, shape[-1])
    return _types.row_size(t, shape[-1])


def _quantize_chunk(block, origin, t, qw):
    """One chunk of whole rows of a Dask array (``origin``: its first row's index)."""
    return _quantize(block, t, qw, origin)


def _output(bk, like, out, shape, dtype):
    """``(result, rows)``: the array to return (``out`` checked, or a new one) and its
    backend view as 2-D rows."""
    if out is None:
        result = bk.empty(shape, dtype, like)
        view = result
    else:
        view = bk.output_view(out, shape, dtype)
        _checks.c_contiguous_output(view.flags["C_CONTIGUOUS"])
        result = out
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    return result, view.reshape(rows, shape[-1])


def _quantize(x, t, imatrix, origin, out=None):
    bk = backend(x, imatrix)
    a, bf16_bits = bk.gguf.source(x, "x")
    if not bf16_bits:
        _check_float_dtype(a.dtype)
    shape = tuple(a.shape)
    size = _row_size_of(t, shape)
    n_per_row = shape[-1]
    qw = _checked_imatrix(None if imatrix is None else bk.to_host(imatrix), n_per_row)
    result, rows_out = _output(bk, x, out, shape[:-1] + (size,), np.uint8)
    rows = rows_out.shape[0]
    if rows:
        status = bk.gguf.quantize(t.name, a.reshape(rows, n_per_row), bf16_bits,
                                  qw if t.uses_imatrix else None, rows_out, t.type_size,
                                  np.array(t.f16_fields, np.int64))
        if status.any():
            _raise_bad_row(status, 0, t, shape, origin)
    return result if out is not None else bk.wrap(result, x)


def quantize_stored(rows, stored, qtype, imatrix, out, sums):
    """Quantize rows as a GGUF or safetensors file stores them, and measure the error:
    the single pass of ``numba-quant quantize`` for the types that quantize in one pass.

    Each row is widened to float32, quantized, decoded back and compared while it is in
    cache, so no float32 copy of the rows is made.  CPU only; the types of
    :data:`ONE_PASS_TYPES`.

    Parameters
    ----------
    rows : numpy.ndarray
        2-D, C-contiguous: float32 values, float16 values, or bfloat16 bit patterns
        (uint16), as ``stored`` says (a memory map of the file is read as it is).
    stored : {"F32", "F16", "BF16"}
        How ``rows`` holds its values.
    qtype : str, int or gguf.GGMLQuantizationType
        One of :data:`ONE_PASS_TYPES`.
    imatrix : array or None
        As for :func:`quantize`.
    out : numpy.ndarray
        uint8 ``(rows, row_size)``: the bytes, as :func:`quantize` writes them.
    sums : numpy.ndarray
        float64 ``(rows, 2)``: each row's sum of x**2 and sum of the squared error of the
        values decoded from its bytes.

    Raises
    ------
    ValueError
        As :func:`quantize` (the first bad row named), or a type outside
        :data:`ONE_PASS_TYPES`.

    Examples
    --------
    >>> import numpy as np
    >>> from numba_quant import gguf
    >>> x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64)
    >>> out = np.empty((1, gguf.row_size("Q8_0", 64)), np.uint8)
    >>> sums = np.empty((1, 2))
    >>> gguf.quantize_stored(x.astype(np.float16), "F16", "Q8_0", None, out, sums)
    >>> bool((out == gguf.quantize(x.astype(np.float16), "Q8_0")).all())
    True
    """
    t = _gguf_type(qtype)
    if t.name not in ONE_PASS_TYPES:
        raise ValueError(f"qtype: {t.name} has no one-pass kernel; types: "
                         f"{', '.join(ONE_PASS_TYPES)}")
    bk = backend(rows)
    shape = tuple(rows.shape)
    _row_size_of(t, shape)
    qw = _checked_imatrix(imatrix, shape[-1])
    measured = bk.gguf_export
    status = measured.quantize_measured(
        t.name, measured.stored_bits(rows, stored), stored, qw if t.uses_imatrix else None,
        out, t.type_size, np.array(t.f16_fields, np.int64), sums)
    if status.any():
        _raise_bad_row(status, 0, t, shape, ())


def dequantize(data, qtype, *, out=None):
    """The float32 values of GGUF-quantized rows, as ggml's ``to_float`` gives them.

    Parameters
    ----------
    data : numpy.ndarray, torch.Tensor, CuPy or Numba device array, or dask.array.Array
        uint8 ``(..., row_size)``: whole blocks of the type, row after row (a Dask array:
        by chunks of whole rows, lazily).
    qtype : str, int or gguf.GGMLQuantizationType
        The GGUF type.
    out : array, optional
        Where to write the values: float32 ``(..., n_per_row)``, C-contiguous, on
        ``data``'s device.

    Returns
    -------
    array of the kind of ``data``
        float32 ``(..., n_per_row)``, on ``data``'s device.

    Raises
    ------
    ValueError
        The last dimension is not a whole number of blocks.
    TypeError
        ``data`` is not an array of uint8.

    Examples
    --------
    >>> import numpy as np
    >>> from numba_quant import gguf
    >>> q = gguf.quantize(np.full((1, 32), 0.5, np.float32), "Q4_0")
    >>> gguf.dequantize(q, "Q4_0")[0, :4]
    array([0.5, 0.5, 0.5, 0.5], dtype=float32)
    """
    t = _gguf_type(qtype)
    if is_dask(data):
        from numba_quant._dask import rows as _dask_rows
        n_per_row = _values_per_row(t, data.dtype, data.shape)
        _checks.dask_no_out(out)
        return _dask_rows.by_rows(_dequantize_chunk, data, n_per_row, np.float32, t=t)
    return _dequantize(data, t, out)


def _values_per_row(t, dtype, shape):
    """Values per row of rows of bytes ``shape`` (..., row_size), with the checks."""
    if dtype != np.uint8:
        raise TypeError(f"data: expected uint8 bytes, got dtype {dtype}")
    if len(shape) == 0:
        raise ValueError("data: expected an array of rows (..., row_size), got a scalar")
    nbytes = shape[-1]
    if nbytes <= 0 or nbytes % t.type_size:
        raise ValueError(f"data: the last dimension ({nbytes} bytes) must be a positive "
                         f"multiple of {t.name}'s block of {t.type_size} bytes")
    return nbytes // t.type_size * t.block_size


def _dequantize_chunk(block, origin, t):
    """One chunk of whole rows of a Dask array of bytes."""
    return _dequantize(block, t)


def _dequantize(data, t, out=None):
    bk = backend(data)
    a, _ = bk.gguf.source(data, "data")
    shape = tuple(a.shape)
    n_per_row = _values_per_row(t, a.dtype, shape)
    result, rows_out = _output(bk, data, out, shape[:-1] + (n_per_row,), np.float32)
    if rows_out.shape[0]:
        bk.gguf.dequantize(t.name, a.reshape(rows_out.shape[0], shape[-1]), rows_out)
    return result if out is not None else bk.wrap(result, data)
