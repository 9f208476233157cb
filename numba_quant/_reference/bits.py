"""Bit casts between floats and integers, with one meaning on every target.

The element conversions of :mod:`numba_quant._reference.formats` work on the bit patterns
of float32/float64 values computed in registers.  The CPU spells a bit cast as an LLVM
``bitcast`` (registered here); the GPU as a libdevice call (registered by
:mod:`numba_quant._cuda.formats` when the GPU path is first used).  The stubs also run as
plain Python.
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


@overload(f32_bits, target="cpu")
def _f32_bits_cpu(v):
    return lambda v: np.int64(_bitcast_f32_i32(np.float32(v))) & 0xFFFFFFFF


@overload(f64_bits, target="cpu")
def _f64_bits_cpu(v):
    return lambda v: np.int64(_bitcast_f64_i64(np.float64(v)))


@overload(f32_from_bits, target="cpu")
def _f32_from_bits_cpu(u):
    return lambda u: _bitcast_i32_f32(np.int32(np.uint32(u & 0xFFFFFFFF)))
