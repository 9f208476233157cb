"""CPU kernels compiled once per dtype and layout class, not once per array flavour.

Numba compiles a function anew for every distinct tuple of argument types, and its array
types tell apart C-contiguous, Fortran-contiguous and other layouts, and writable from
read-only arrays.  A kernel that only reads its inputs and walks its arrays by their
strides gives the same bits for all of them, so compiling each flavour separately only
costs time: with a cold cache, each parallel kernel signature takes seconds.

:class:`Kernel` types every array argument as either C-contiguous (the layout the loops
vectorise for) or any-layout, and always as writable: a read-only input is passed to the
writable-typed code, which never writes its inputs (the tests check that the inputs keep
their bits).  Arguments named together in ``joint`` share one class: C-contiguous only
when all of them are (an element-wise map then has two variants per dtype pair, not
four).  Each class of arguments is compiled once, through Numba's on-disk cache, and its
compiled entry point is then called directly.
"""
import numpy as np
from numba import typeof, types
from numba.np.numpy_support import from_dtype

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)

_ndarray = np.ndarray
# Python scalars as Numba types them; numpy scalars keep their own type (typeof).
_SCALARS = {int: types.int64, float: types.float64, bool: types.boolean}


def _numba_type(value, contiguous):
    if isinstance(value, np.ndarray):  # subclasses (np.memmap) too
        return types.Array(from_dtype(value.dtype), value.ndim, "C" if contiguous else "A",
                           aligned=value.flags.aligned)
    scalar = _SCALARS.get(type(value))
    return scalar if scalar is not None else typeof(value)


class Kernel:
    """A ``numba.njit`` dispatcher called with one signature per class of arguments.

    ``kernel(*args)`` runs the compiled code for the arguments' dtypes, dimensions and
    layout class (C-contiguous or not), compiling it on first use.  The array arguments
    at the positions in ``joint`` are typed C-contiguous only when all of them are.
    ``py_func`` is the Python function, as on a dispatcher.
    """

    __slots__ = ("dispatcher", "py_func", "__name__", "_entries", "_joint")

    def __init__(self, dispatcher, joint=()):
        self.dispatcher = dispatcher
        self.py_func = dispatcher.py_func
        self.__name__ = dispatcher.py_func.__name__
        self._entries = {}
        self._joint = tuple(joint)

    def __call__(self, *args):
        # The dtype itself, not its number: a byte-swapped dtype must not share an entry.
        # Any ndarray subclass (np.memmap) is keyed, and typed, as an ndarray.
        key = tuple([(a.dtype, a.ndim, a.flags.c_contiguous, a.flags.aligned)
                     if isinstance(a, _ndarray) else type(a) for a in args])
        if self._joint:
            key = self._joined(key)
        entry = self._entries.get(key)
        if entry is None:
            # compile() loads from the on-disk cache when it can; concurrent first calls
            # may both get here and receive the same compiled function.
            entry = self.dispatcher.compile(tuple(
                _numba_type(a, k[2] if type(k) is tuple else False)
                for a, k in zip(args, key)))
            self._entries[key] = entry
        return entry(*args)

    def _joined(self, key):
        """``key`` with the ``joint`` arrays' contiguity replaced by that of all of them."""
        together = all([key[i][2] for i in self._joint])
        if together:
            return key
        key = list(key)
        for i in self._joint:
            dtype, ndim, _, aligned = key[i]
            key[i] = (dtype, ndim, False, aligned)
        return tuple(key)

    def __repr__(self):
        return f"<numba_quant kernel {self.__name__}>"
