"""Device-neutral plumbing shared by the low-precision format functions (float8, mx,
nvfp4), on the backend the dispatcher chose (:class:`numba_quant._dispatch.Backend`,
kernels in its ``formats``): inputs as C-contiguous float32 (or float64) arrays with the
block axis last, and results in the caller's array type (and, on request, as ml_dtypes
views).
"""
import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._host import torch_arrays


# The formats whose codes a PyTorch result carries as torch's own dtype of that name.
TORCH_ELEMENTS = ("float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu")


def _dtype(a):
    return np.dtype(a.dtype)


def as_input(bk, x, allow_float64):
    """``(array, shape)``: ``x`` as a C-contiguous array of its compute dtype."""
    if bk.device == "cpu":
        x = torch_arrays.to_numpy(x) if torch_arrays.is_tensor(x) else np.asarray(x)
        if not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="))
    else:
        x = bk.arrays.device(x)
    dtype = _checks.float_input(_dtype(x), allow_float64)
    _checks.not_empty_input(x.shape)
    return bk.contiguous(x, dtype), tuple(x.shape)


def as_codes(bk, codes, fmt, what):
    """Codes (uint8, int8 for MXINT8, or the format's ml_dtypes dtype) as uint8, contiguous."""
    if bk.device == "cpu":
        codes = (torch_arrays.bits_numpy(codes, what) if torch_arrays.is_tensor(codes)
                 else np.asarray(codes))
    else:
        codes = bk.arrays.device(codes)
    _checks.format_codes_dtype(_dtype(codes), fmt, what)
    codes = bk.contiguous(codes)
    if _dtype(codes) != np.uint8:
        codes = codes.view(np.uint8)
    return codes


def last_axis_order(ndim, axis):
    """The axis order that moves ``axis`` last, or None when it already is."""
    if axis == ndim - 1:
        return None
    return tuple(a for a in range(ndim) if a != axis) + (axis,)


def move_last(bk, a, axis):
    order = last_axis_order(len(a.shape), axis)
    return a if order is None else bk.contiguous(a, None, order)


def move_back(bk, a, axis):
    """Undo :func:`move_last` on a result with the block axis last."""
    order = last_axis_order(len(a.shape), axis)
    if order is None:
        return a
    inverse = tuple(int(i) for i in np.argsort(order))
    return bk.contiguous(a, None, inverse)


def as_rows(a):
    """A C-contiguous array as (rows, last axis) without copying."""
    shape = tuple(a.shape)
    k = shape[-1] if shape else 1
    return a.reshape(-1, k)


def output(bk, a, like, fmt=None, ml_dtypes=False):
    """A result for the caller: their array type; an ml_dtypes view when asked."""
    if ml_dtypes:
        if bk.device != "cpu":
            raise TypeError("ml_dtypes=True needs numpy arrays (ml_dtypes types live on "
                            "the host)")
        md = _checks.ml_dtypes_view()
        if fmt == "int8":
            return a.view(np.int8)
        return a.view(getattr(md, fmt))
    if fmt == "int8":
        a = a.view(np.int8)
    return bk.wrap(a, like, fmt if fmt in TORCH_ELEMENTS else None)


def widen(bk, values, output_dtype):
    """float32 results as ``output_dtype`` (float64 values are the same numbers)."""
    if output_dtype == np.float32:
        return values
    return bk.contiguous(values, output_dtype)


def tensor_abs_max(bk, a):
    """``(max |a|, non-finite count)`` of a contiguous array: per-run maxima on the
    backend, their maximum (NaN winning) on the host."""
    flat = a.reshape(1, -1)
    n = flat.shape[1]
    run = max(1, min(n, bk.formats.scale_run()))
    parts = bk.empty((1, -(-n // run)), np.float32, None)
    bad = bk.formats.group_abs_max(flat, run, parts)
    return np.float32(np.max(bk.to_host(parts))), bad


def unused(bk, dtype):
    """A 1x1 stand-in for a kernel output that is not written."""
    return bk.empty((1, 1), dtype, None)
