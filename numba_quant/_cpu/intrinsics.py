"""LLVM intrinsics called from the CPU kernels, declared once.

Numba has no spelling for a few LLVM operations the kernels want in their inner loops
(IEEE ``minimum``/``maximum`` on floats, ``smin``/``smax`` on integers), which LLVM
vectorises where Numba's compare-and-select does not.  :func:`llvm_binary` makes a Numba
intrinsic for one of them.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)


def llvm_binary(name, kind):
    """An intrinsic calling LLVM's ``llvm.<name>`` on two values of one type.

    ``kind`` is ``numba.types.Float`` or ``numba.types.Integer``: the intrinsic types
    only for two arguments of one type of that kind, and names LLVM's overload by it
    (``llvm.minimum.f32``, ``llvm.smax.i64``).
    """
    prefix = {types.Float: "f", types.Integer: "i"}[kind]

    @intrinsic
    def call(typingctx, a, b):
        if not (isinstance(a, kind) and a == b):
            return None

        def codegen(context, builder, signature, args):
            fnty = ir.FunctionType(args[0].type, [args[0].type, args[1].type])
            fn = cgutils.get_or_insert_function(builder.module, fnty,
                                                f"llvm.{name}.{prefix}{a.bitwidth}")
            return builder.call(fn, args)

        return a(a, b), codegen

    return call
