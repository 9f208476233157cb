"""CUDA implementations of the target-neutral primitives of :mod:`numba_quant._reference.primitives`.

The shared reference functions call ``rint``, ``trunc``, ``mul_rn``, ``float_from_bits``
and ``narrow``; on the GPU these become libdevice calls (``rintf``/``rint``, ``fmul_rn``
so that no multiply-add is fused, the bit casts) and explicit integer casts.  Importing
this module registers them; :mod:`numba_quant._cuda.kernels` imports it first, so every
kernel sees them.  In the CUDA simulator kernels run as Python and call the CPU-compiled
functions, so nothing is registered there.
"""
import numpy as np
from numba import config

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

    @overload(_primitives.float_from_bits, target="cuda")
    def _float_from_bits(bits, like):
        if like == types.float32:
            return lambda bits, like: libdevice.int_as_float(np.int32(bits))
        if like == types.float64:
            return lambda bits, like: libdevice.longlong_as_double(np.int64(bits))
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
