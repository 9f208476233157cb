"""CPU kernels compiled once per dtype and layout class, not once per array flavour.

Numba compiles a function anew for every distinct tuple of argument types, and its array
types tell apart C-contiguous, Fortran-contiguous and other layouts, and writable from
read-only arrays.  A kernel that only reads its inputs and walks its arrays by their
strides gives the same bits for all of them, so compiling each flavour separately only
costs time: with a cold cache, each parallel kernel signature takes seconds.

:class:`Kernel` types every array argument as either C-contiguous (the layout the loops
vectorise for) or any-layout, and always as writable: a read-only input is passed to the
writable-typed code, which never writes its inputs (the tests check that the inputs keep
their bits).  Each class of arguments is compiled once, through Numba's on-disk cache,
and its compiled entry point is then called directly.
"""
import numpy as np
from numba import typeof, types
from numba.np.numpy_support import from_dtype

from numba_quant import _cache  # noqa: F401  (cache keys cover every kernel source)

_ndarray = np.ndarray
# Python scalars as Numba types them; numpy scalars keep their own type (typeof).
_SCALARS = {int: types.int64, float: types.float64, bool: types.boolean}


def _numba_type(value):
    if isinstance(value, np.ndarray):  # subclasses (np.memmap) too
        layout = "C" if value.flags.c_contiguous else "A"
        return types.Array(from_dtype(value.dtype), value.ndim, layout,
                           aligned=value.flags.aligned)
    scalar = _SCALARS.get(type(value))
    return scalar if scalar is not None else typeof(value)


class Kernel:
    """A ``numba.njit`` dispatcher called with one signature per class of arguments.

    ``kernel(*args)`` runs the compiled code for the arguments' dtypes, dimensions and
    layout class (C-contiguous or not), compiling it on first use.  ``py_func`` is the
    Python function, as on a dispatcher.
    """

    __slots__ = ("dispatcher", "py_func", "__name__", "_entries")

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.py_func = dispatcher.py_func
        self.__name__ = dispatcher.py_func.__name__
        self._entries = {}

    def __call__(self, *args):
        # The dtype itself, not its number: a byte-swapped dtype must not share an entry.
        # Any ndarray subclass (np.memmap) is keyed, and typed, as an ndarray.
        key = tuple([(a.dtype, a.ndim, a.flags.c_contiguous, a.flags.aligned)
                     if isinstance(a, _ndarray) else type(a) for a in args])
        entry = self._entries.get(key)
        if entry is None:
            # compile() loads from the on-disk cache when it can; concurrent first calls
            # may both get here and receive the same compiled function.
            entry = self.dispatcher.compile(tuple(map(_numba_type, args)))
            self._entries[key] = entry
        return entry(*args)

    def __repr__(self):
        return f"<numba_quant kernel {self.__name__}>"
