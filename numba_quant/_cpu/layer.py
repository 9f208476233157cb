"""CPU kernels for per-layer work on contiguous data, seen as one flat array.

Per layer, the general kernels of :mod:`numba_quant._cpu.kernels` carry routes for every
layout (channels, strides, short rows); compiling them costs seconds on a first call.
The common case, a contiguous array reduced or mapped as a whole, gets the small kernels
here, each compiled only for the route a call takes: the non-finite-skipping pass of the
reduction and each kind of element-wise map (fake quantization, codes, decoding) are
separate compiled variants of one body (see :func:`_variant`), compiled on first use.

They give the same bits as the general kernels: the same pieces, the same folds of the
partial results, and for pieces of at least ``SHORT_ROW`` elements the same ordering of
values (IEEE minimum/maximum, ``-0 < +0``), computed on integer keys of the float bits,
which cost fewer instructions per element than the NaN and signed-zero fix-ups of
``llvm.minimum`` on x86.  A NaN or an infinity leaves a non-finite ``lo`` or ``hi`` and so
the same status; the values are then not used (as in the short-run reduction).
"""
from types import FunctionType

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from numba_quant._host import codes
from numba_quant._reference import integer as ref
from numba_quant._cpu.kernels import _fold, _fold_scalar, _index, _status
from numba_quant._reference.primitives import stored
from numba_quant._host.tuning import SHORT_ROW

# Compile-time switches of the variants (see _variant); these defaults are never compiled.
OMIT = False  # reduction: skip non-finite elements
WHAT = codes.FAKE  # map: what to write


def _variant(impl, parallel, **constants):
    """``impl`` compiled (on first call) with module constants replaced by ``constants``.

    Each variant is a renamed copy of the function: Numba's on-disk cache is keyed on the
    function's name and line, so variants of one body need names of their own.  The
    constants are globals, which Numba freezes: branches on them are pruned before
    typing, so a variant compiles only its own route.
    """
    name = impl.__name__ + "".join(f"_{k.lower()}{int(v)}" for k, v in constants.items())
    if not parallel:
        name += "_serial"
    namespace = dict(impl.__globals__)
    namespace.update(constants)
    copy = FunctionType(impl.__code__, namespace, name, impl.__defaults__, impl.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = impl.__doc__
    copy.__module__ = impl.__module__
    return njit(parallel=parallel, cache=True)(copy)


# ---------------------------------------------------------------------------- integer keys

def _llvm_integer_binary(name):
    """An intrinsic calling LLVM's ``llvm.<name>`` on two integers of one type."""

    @intrinsic
    def call(typingctx, a, b):
        if not (isinstance(a, types.Integer) and a == b):
            return None

        def codegen(context, builder, signature, args):
            fnty = ir.FunctionType(args[0].type, [args[0].type, args[1].type])
            fn = cgutils.get_or_insert_function(builder.module, fnty,
                                                f"llvm.{name}.i{a.bitwidth}")
            return builder.call(fn, args)

        return a(a, b), codegen

    return call


_smin = _llvm_integer_binary("smin")
_smax = _llvm_integer_binary("smax")


@intrinsic
def _bits(typingctx, v):
    """The bit pattern of a float as a signed integer of the same width."""
    if v not in (types.float32, types.float64):
        return None
    int_type = types.int32 if v == types.float32 else types.int64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(int_type))

    return int_type(v), codegen


def _key(bits):
    """Signed-integer key of a float's bits, ordered as the floats (``-0 < +0``; NaN
    beyond the infinities on its sign's side).  Its own inverse."""


@overload(_key)
def _key_cpu(bits):
    if bits == types.int32:
        # Explicit casts keep the arithmetic 32-bit (Numba widens integers to 64 bits).
        return lambda bits: np.int32(bits ^ ((bits >> np.int32(31)) & np.int32(0x7FFFFFFF)))
    return lambda bits: bits ^ ((bits >> np.int64(63)) & np.int64(0x7FFFFFFFFFFFFFFF))


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float of the same width whose bit pattern is the integer ``bits``."""
    if not isinstance(bits, types.Integer) or bits.bitwidth not in (32, 64):
        return None
    float_type = types.float32 if bits.bitwidth == 32 else types.float64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(float_type))

    return float_type(bits), codegen


@njit(cache=True, inline="always")
def _minmax(flat, start, stop):
    """``(min, max)`` of ``flat[start:stop]``, NaN-propagating as far as the status needs
    (see the module docstring)."""
    if stop - start >= SHORT_ROW:
        lo = hi = _key(_bits(flat[start]))
        for i in range(_index(start + 1), _index(stop)):
            v = _key(_bits(flat[i]))
            lo = _smin(lo, v)
            hi = _smax(hi, v)
        return _float_from_bits(_key(lo)), _float_from_bits(_key(hi))
    a = flat.dtype.type(np.inf)  # as the general kernel folds short rows
    b = flat.dtype.type(-np.inf)
    for i in range(_index(start), _index(stop)):
        a, b = _fold_scalar(a, b, flat[i], False)
    return a, b


@njit(cache=True, inline="always")
def _omit_minmax(flat, start, stop):
    """``(min, max)`` of the finite elements of ``flat[start:stop]`` (+inf and -inf when
    there are none)."""
    a = flat.dtype.type(np.inf)
    b = flat.dtype.type(-np.inf)
    if stop - start >= SHORT_ROW:
        for i in range(_index(start), _index(stop)):
            a, b = _fold(a, b, flat[i], True)
    else:
        for i in range(_index(start), _index(stop)):
            a, b = _fold_scalar(a, b, flat[i], True)
    return a, b


@njit(cache=True, inline="always")
def _fold_partials(lows, highs):
    """The partials folded in order, as the general kernels fold them: ``(lo, hi)``."""
    lo = lows[0]
    hi = highs[0]
    for k in range(1, lows.size):
        lo, _ = _fold_scalar(lo, lo, lows[k], False)
        _, hi = _fold_scalar(hi, hi, highs[k], False)
    return lo, hi


@njit(cache=True, inline="always")
def _settle(lo, hi, omit, scheme, bits, first, second):
    """A reduction's end: its status, and min and max into ``first[0]``/``second[0]``
    (``scheme`` -1), else the scale and zero point (only when the status is OK)."""
    status = _status(lo, hi, omit)
    if scheme < 0:
        first[0] = lo
        second[0] = hi
    elif status == codes.OK:
        first[0], second[0] = ref.qparams(lo, hi, scheme, bits)
    return status


@njit(cache=True)
def reduce_small(flat, omit, scheme, bits, first, second):
    """One serial compiled call: the min and max of the whole of ``flat`` into ``first[0]``
    and ``second[0]`` (``scheme`` -1), else the scale and zero point (the formulas run
    only when the status is OK); returns the status.  The non-finite-skipping pass runs
    only when needed.  (Outputs come from the caller: arrays returned from compiled code
    cost about 0.5 us each to hand over, more than allocating them in Python.)
    """
    lo, hi = _minmax(flat, 0, flat.size)
    if omit and _status(lo, hi, False) == codes.HAS_NONFINITE:
        lo, hi = _omit_minmax(flat, 0, flat.size)
    return _settle(lo, hi, omit, scheme, bits, first, second)


def _reduce_impl(flat, lows, highs, scheme, bits, first, second):
    """The reduction of :func:`reduce_small` in ``lows.size`` parallel pieces
    (partials in ``lows``/``highs``) into ``first``/``second``; returns the status.
    ``OMIT`` (a compile-time constant) chooses the pass."""
    n = flat.size
    pieces = lows.size
    step = (n + pieces - 1) // pieces
    for k in prange(pieces):
        start = k * step
        stop = min(start + step, n)
        if OMIT:
            lows[k], highs[k] = _omit_minmax(flat, start, stop)
        else:
            lows[k], highs[k] = _minmax(flat, start, stop)
    lo, hi = _fold_partials(lows, highs)
    return _settle(lo, hi, OMIT, scheme, bits, first, second)


# reduce[omit]: the parallel reduction, each pass compiled on first use.
reduce = {omit: _variant(_reduce_impl, True, OMIT=omit) for omit in (False, True)}


def _map_impl(flat, out, divisor, offset, lowest, highest, pieces):
    """``out[i] = ref.map_value(flat[i], ...)`` in ``pieces`` tasks; ``WHAT`` (a
    compile-time constant) is what to write.  One loop: a second copy for a zero divisor
    was no faster (float32, 2**14 to 1e7 values) and cost 0.1 s more compile."""
    n = flat.size
    step = (n + pieces - 1) // pieces
    for k in prange(pieces):
        start = _index(k * step)
        stop = _index(min(k * step + step, n))
        for i in range(start, stop):
            out[i] = stored(ref.map_value(flat[i], divisor, offset, lowest, highest, WHAT),
                            out)


# map_values[what][parallel], each compiled on first use.
map_values = {what: {parallel: _variant(_map_impl, parallel, WHAT=what)
                     for parallel in (True, False)}
              for what in (codes.FAKE, codes.CODE, codes.DECODE)}
