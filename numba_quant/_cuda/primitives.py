"""CUDA implementations of the target-neutral primitives of :mod:`numba_quant._reference.primitives`
and of the bit casts of :mod:`numba_quant._reference.bits`.

The shared reference functions call ``rint``, ``trunc``, ``mul_rn``, ``narrow`` and the
bit casts; on the GPU these become libdevice calls (``rintf``/``rint``, ``fmul_rn`` so
that no multiply-add is fused, ``float_as_int`` and its kin) and explicit integer casts.
Importing this module registers them; every CUDA kernel module imports it first, so
every kernel sees them.  In the CUDA simulator kernels run as Python and call the CPU-compiled
functions, so nothing is registered there.
"""
import numpy as np
from numba import config

from numba_quant._reference import bits as _bits
from numba_quant._reference import primitives as _primitives

SIMULATOR = bool(config.ENABLE_CUDASIM)


def _register():
    from numba import types
    from numba.core.extending import overload
    from numba.cuda import libdevice

    def unary(stub, f32, f64):
        @overload(stub, target="cuda")
        def impl(v):
            if v == types.float32:
                return lambda v: f32(v)
            if v == types.float64:
                return lambda v: f64(v)
            return None

    unary(_primitives.rint, libdevice.rintf, libdevice.rint)
    unary(_primitives.trunc, libdevice.truncf, libdevice.trunc)

    @overload(_bits.float_from_bits, target="cuda")
    def _float_from_bits(bits, like):
        if like == types.float32:
            return lambda bits, like: libdevice.int_as_float(np.int32(bits))
        if like == types.float64:
            return lambda bits, like: libdevice.longlong_as_double(np.int64(bits))
        return None

    @overload(_bits.f32_bits, target="cuda")
    def _f32_bits(v):
        if v in (types.float32, types.float64):
            return lambda v: np.int64(libdevice.float_as_int(np.float32(v))) & 0xFFFFFFFF
        return None

    @overload(_bits.f64_bits, target="cuda")
    def _f64_bits(v):
        if v in (types.float32, types.float64):
            return lambda v: np.int64(libdevice.double_as_longlong(np.float64(v)))
        return None

    @overload(_bits.f32_from_bits, target="cuda")
    def _f32_from_bits(u):
        return lambda u: libdevice.int_as_float(np.int32(np.uint32(u & 0xFFFFFFFF)))

    @overload(_bits.bits_from_f32, target="cuda")
    def _bits_from_f32(v):
        if v == types.float32:
            return lambda v: np.uint32(libdevice.float_as_int(v))
        return None

    @overload(_primitives.narrow, target="cuda")
    def _narrow(v, like):
        if like == types.int32:
            return lambda v, like: np.int32(v)
        if like == types.int64:
            return lambda v, like: np.int64(v)
        return None

    @overload(_primitives.mul_rn, target="cuda")
    def _mul_rn(a, b):
        if a == types.float32 and b == types.float32:
            return lambda a, b: libdevice.fmul_rn(a, b)
        if a == types.float64 and b == types.float64:
            return lambda a, b: libdevice.dmul_rn(a, b)
        return None


if not SIMULATOR:
    _register()
