"""Bit casts between floats and integers, with one meaning on every target: the one home
of every bit cast the kernels use.

The element conversions of :mod:`numba_quant._reference.formats`, the narrow formats of
:mod:`numba_quant._reference.blocks` and the integer-key reductions of the CPU and CUDA
kernels work on the bit patterns of float32/float64 values computed in registers.  The
CPU spells a bit cast as an LLVM ``bitcast`` (registered here); the GPU as a libdevice
call (registered by :mod:`numba_quant._cuda.primitives`, which every CUDA kernel module
imports first).  The stubs also run as plain Python (the CUDA simulator calls them so).
"""
import numpy as np
from numba import types
from numba.core.extending import intrinsic, overload

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)


def f32_bits(v):
    """The bit pattern of the float32 ``v`` as a non-negative int64."""
    return int(np.array(v, np.float32).view(np.uint32))


def f64_bits(v):
    """The bit pattern of the float64 ``v`` as an int64 (negative when the sign is set)."""
    return int(np.array(v, np.float64).view(np.int64))


def f32_from_bits(u):
    """The float32 whose bit pattern is the low 32 bits of ``u``."""
    return np.array(u & 0xFFFFFFFF, np.uint32).view(np.float32)[()]


def bits_from_f32(v):
    """The bit pattern of the float32 ``v`` as a uint32 (32-bit lanes where the callers
    vectorise, where :func:`f32_bits`'s int64 would halve them)."""
    return np.array(v, np.float32).view(np.uint32)[()]


def int_bits(v):
    """The bit pattern of a float32/float64 ``v`` as a signed integer of the same width
    (int32/int64)."""
    dtype = np.asarray(v).dtype
    return np.array(v, dtype).view(np.int32 if dtype.itemsize == 4 else np.int64)[()]


def float_from_bits(bits, like):
    """The float of ``like``'s type (float32 or float64) whose bit pattern is ``bits``."""
    dtype = np.asarray(like).dtype
    return np.array(bits, dtype=np.int32 if dtype.itemsize == 4 else np.int64).view(dtype)[()]


def bitcast(source, target):
    """An intrinsic reinterpreting the bits of a ``source`` value (a Numba type) as
    ``target`` (of the same width), for the CPU."""

    @intrinsic
    def cast(typingctx, value):
        if value != source:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(target))

        return target(source), codegen

    return cast


_bitcast_f32_i32 = bitcast(types.float32, types.int32)
_bitcast_f64_i64 = bitcast(types.float64, types.int64)
_bitcast_i32_f32 = bitcast(types.int32, types.float32)
_bitcast_i64_f64 = bitcast(types.int64, types.float64)
_bitcast_f32_u32 = bitcast(types.float32, types.uint32)


@overload(f32_bits, target="cpu")
def _f32_bits_cpu(v):
    return lambda v: np.int64(_bitcast_f32_i32(np.float32(v))) & 0xFFFFFFFF


@overload(f64_bits, target="cpu")
def _f64_bits_cpu(v):
    return lambda v: np.int64(_bitcast_f64_i64(np.float64(v)))


@overload(f32_from_bits, target="cpu")
def _f32_from_bits_cpu(u):
    return lambda u: _bitcast_i32_f32(np.int32(np.uint32(u & 0xFFFFFFFF)))


@overload(bits_from_f32, target="cpu")
def _bits_from_f32_cpu(v):
    return lambda v: _bitcast_f32_u32(np.float32(v))


@overload(int_bits, target="cpu")
def _int_bits_cpu(v):
    if v == types.float32:
        return lambda v: _bitcast_f32_i32(v)
    if v == types.float64:
        return lambda v: _bitcast_f64_i64(v)
    return None


@overload(float_from_bits, target="cpu")
def _float_from_bits_cpu(bits, like):
    if like == types.float32:
        return lambda bits, like: _bitcast_i32_f32(np.int32(bits))
    if like == types.float64:
        return lambda bits, like: _bitcast_i64_f64(np.int64(bits))
    return None
