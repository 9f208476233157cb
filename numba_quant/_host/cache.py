"""Numba's on-disk cache, invalidated when any of the package's kernel sources changes,
and safe when several processes fill it at once.

Numba keys a cached kernel on its own source file only.  numba_quant's kernels inline
functions from other modules (the shared reference, the primitives, the tuning
constants frozen in at compile time), so after an edit to one of those a cache would hand
back machine code built from the old source.  Importing this module (every module that
defines kernels does, before its first decorator) extends the key of every function
defined in the package's private subpackages (``numba_quant/_*/``, where every kernel and
everything they inline lives) with the size and modification time of all the modules
there.  An
installed package never changes, so its cache stays valid; a working copy recompiles
after any edit to a private module.

Numba names a new entry's data file after the lowest number its index does not use yet,
and does not check on loading that a data file holds the signature asked for.  Two
processes compiling two signatures of one kernel at the same moment (test workers, Dask
workers on one machine, parallel jobs sharing a cache) can therefore pick the same file,
and one signature's index entry then points at the other's machine code: called with
its own arguments, that code fails to unbox them or, worse, reads them with the wrong
layout.  The package's entries are written here under a random file name with their
index key inside, and an entry whose key differs from the one asked for is treated as
missing (compiled again).
"""
import os

from numba.core import caching

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STAMP = []


def _private_folders():
    """The package's private subpackages (``_reference``, ``_cpu``, ``_cuda``, ...)."""
    return sorted(os.path.join(_PACKAGE, name) for name in os.listdir(_PACKAGE)
                  if name.startswith("_") and os.path.isfile(
                      os.path.join(_PACKAGE, name, "__init__.py")))


_FOLDERS = tuple(_private_folders())


def package_stamp():
    """``(path, mtime_ns, size)`` of every module of the private subpackages, read once
    per process."""
    if not _STAMP:
        entries = []
        for folder in _FOLDERS:
            for name in sorted(os.listdir(folder)):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(folder, name))
                    entries.append((os.path.relpath(os.path.join(folder, name), _PACKAGE),
                                    st.st_mtime_ns, st.st_size))
        _STAMP.append(tuple(entries))
    return _STAMP[0]


def _install():
    mixin = caching._SourceFileBackedLocatorMixin
    original = mixin.get_source_stamp
    if getattr(original, "numba_quant", False):
        return

    def get_source_stamp(self):
        stamp = original(self)
        if os.path.dirname(os.path.abspath(self._py_file)) in _FOLDERS:
            return (stamp, package_stamp())
        return stamp

    get_source_stamp.numba_quant = True
    mixin.get_source_stamp = get_source_stamp


def _is_package_entry(cache_file):
    """Whether a cache file belongs to one of the package's functions (its source stamp
    is the one :func:`_install`'s ``get_source_stamp`` gives them)."""
    stamp = cache_file._source_stamp
    return (type(stamp) is tuple and len(stamp) == 2 and bool(_STAMP)
            and stamp[1] is _STAMP[0])


_KEYED = "numba_quant keyed cache entry"


def _install_keyed_entries():
    cache_file = caching.IndexDataCacheFile
    original_save, original_load = cache_file.save, cache_file.load
    if getattr(original_save, "numba_quant", False):
        return

    def save(self, key, data):
        if not _is_package_entry(self):
            return original_save(self, key, data)
        overloads = self._load_index()
        name = overloads.get(key)
        if name is None:
            # A name no other process picks at the same moment.
            name = self._data_name(int.from_bytes(os.urandom(6), "big"))
            overloads[key] = name
            self._save_index(overloads)
        self._save_data(name, (_KEYED, key, data))

    def load(self, key):
        data = original_load(self, key)
        if data is None or not _is_package_entry(self):
            return data
        if type(data) is tuple and len(data) == 3 and data[0] == _KEYED and data[1] == key:
            return data[2]
        return None  # another signature's code, or an entry without its key

    save.numba_quant = True
    cache_file.save, cache_file.load = save, load


_install()
_install_keyed_entries()
