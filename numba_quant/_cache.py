"""Numba's on-disk cache, invalidated when any of the package's kernel sources changes.

Numba keys a cached kernel on its own source file only.  numba_quant's kernels inline
functions from other modules (the shared reference, the primitives, the tuning
constants frozen in at compile time), so after an edit to one of those a cache would hand
back machine code built from the old source.  Importing this module (every module that
defines kernels does, before its first decorator) extends the key of every function
defined in the package with the size and modification time of all its private modules
(``numba_quant/_*.py``, where every kernel and everything they inline lives).  An
installed package never changes, so its cache stays valid; a working copy recompiles
after any edit to a private module.
"""
import os

from numba.core import caching

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_STAMP = []


def package_stamp():
    """``(name, mtime_ns, size)`` of every private module, read once per process."""
    if not _STAMP:
        entries = []
        for name in sorted(os.listdir(_PACKAGE)):
            if name.startswith("_") and name.endswith(".py"):
                st = os.stat(os.path.join(_PACKAGE, name))
                entries.append((name, st.st_mtime_ns, st.st_size))
        _STAMP.append(tuple(entries))
    return _STAMP[0]


def _install():
    mixin = caching._SourceFileBackedLocatorMixin
    original = mixin.get_source_stamp
    if getattr(original, "numba_quant", False):
        return

    def get_source_stamp(self):
        stamp = original(self)
        if os.path.dirname(os.path.abspath(self._py_file)) == _PACKAGE:
            return (stamp, package_stamp())
        return stamp

    get_source_stamp.numba_quant = True
    mixin.get_source_stamp = get_source_stamp


_install()
