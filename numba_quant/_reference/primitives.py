"""Rounding and multiplication primitives with one meaning on every target.

The shared reference functions in :mod:`numba_quant._reference.integer` are compiled both for
the CPU (``numba.njit``) and for the GPU (called from ``numba.cuda.jit`` kernels).  A few
operations need a different spelling on each target:

* numpy's ``np.rint``/``np.trunc`` are not available in CUDA kernels, and
  ``math.trunc`` returns integers (which overflow and cannot hold NaN);
* a GPU contracts ``a * b + c`` into one fused multiply-add, whose single rounding gives
  different bits from the CPU's two roundings;
* reading an integer's bits as a float is a libdevice call on the GPU, and GPU kernels
  keep 32-bit keys 32-bit only with an explicit cast (numba widens integer arithmetic to
  64 bits); only GPU kernels use these two (the CPU reductions compare floats directly).

Each function below is a plain Python stub (so it also works when called from Python).
This module registers the CPU implementations; :mod:`numba_quant._cuda.channels` registers the
CUDA ones (libdevice) when the GPU path is first used.
"""
import numpy as np
from numba import types
from numba.core.extending import overload

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)


def rint(v):
    """Round to the nearest integer, ties to even, in ``v``'s own float type."""
    return np.rint(v)


def trunc(v):
    """``v`` rounded toward zero, in ``v``'s own float type."""
    return np.trunc(v)


def mul_rn(a, b):
    """``a * b`` rounded once, never fused with a following addition."""
    return a * b


@overload(rint, target="cpu")
def _rint_cpu(v):
    return lambda v: np.rint(v)


@overload(trunc, target="cpu")
def _trunc_cpu(v):
    return lambda v: np.trunc(v)


@overload(mul_rn, target="cpu")
def _mul_rn_cpu(a, b):
    # The CPU kernels are compiled without fastmath, so LLVM never contracts.
    return lambda a, b: a * b


def float_from_bits(bits, like):
    """The float of ``like``'s type (float32 or float64) whose bit pattern is ``bits``."""
    dtype = np.asarray(like).dtype
    return np.array(bits, dtype=np.int32 if dtype.itemsize == 4 else np.int64).view(dtype)[()]


def narrow(v, like):
    """The integer ``v`` as ``like``'s integer type (int32 or int64), wrapping."""
    return np.asarray(v).astype(np.asarray(like).dtype)[()]


def mantissa_bits(v):
    """Significand precision of ``v``'s float type: 24 for float32, 53 for float64."""
    return 24 if np.asarray(v).dtype == np.float32 else 53


@overload(mantissa_bits, target="generic")
def _mantissa_bits_any(v):
    bits = 24 if v == types.float32 else 53
    return lambda v: bits


def stored(value, out):
    """``value`` as it is written into the array ``out``.

    Float results are written as they are.  Integer codes (already rounded and clamped
    into their range) go through int32, whose conversion to the narrower element type
    keeps the low bits: the two's-complement code.  So one unsigned array type per width
    holds the codes of both signednesses, and the host passes int8/int16 outputs viewed
    as uint8/uint16 (one compiled map per width instead of two).  A float converted
    straight to an integer type it does not fit is undefined in LLVM.
    """
    return np.asarray(value).astype(np.int32)[()] if np.asarray(out).dtype.kind in "iu" \
        else value


@overload(stored, target="generic", inline="always")
def _stored_any(value, out):
    if isinstance(out, types.Array) and isinstance(out.dtype, types.Integer):
        return lambda value, out: np.int32(value)
    return lambda value, out: value
