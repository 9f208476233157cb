"""Which CPU kernel routes the tests reach, and thresholds that send small inputs down all.

The host backend picks a kernel by the input's size and layout against the thresholds of
``numba_quant._host.tuning``.  With the tuned values nearly every test input is small and takes
the one-call route, so the suites also run with :data:`SHRUNK` thresholds (see
``conftest.py``), and a recorder notes every kernel the backend calls.

The recorder wraps, by name, whatever the backend calls in its kernel module
(:data:`KERNEL_MODULE`): compiled functions, and ``{True: parallel, False: serial}``
pairs.  It replaces the module object inside the backend modules (never the module's
own globals, which compiled kernels read), so no kernel is recompiled.
"""
import inspect
import sys
import threading
from collections import Counter

from profiles import THOROUGH

KERNEL_MODULE = "numba_quant._cpu.kernels"

# Small enough that inputs of a few dozen elements reach every route: serial kernels from
# SMALL + 1 to PARALLEL_THRESHOLD - 1 elements, parallel ones (split into tasks of a few
# elements) from PARALLEL_THRESHOLD on; periodic lanes for periods (channels * inner) up
# to SHORT_RUNS_PERIOD with inner runs below LONG_INNER, the short-run kernel beyond it
# (inner runs below the compiled-in SHORT_ROW), the by-channel kernel for the rest;
# element-wise maps by outer index for inner runs below LONG_INNER.  Only per-layer
# serial reductions take the one-call route (as they do with the tuned values).
SHRUNK = {
    "SMALL": 0,
    "PARALLEL_THRESHOLD": 16,
    "MIN_TASK_ELEMENTS": 2,
    "LONG_INNER": 4,
    "MAX_PERIOD": 32,
    "SHORT_RUNS_PERIOD": 8,
    "PARALLEL_CHANNELS": 3,
    "KEPT_KEYS": 2,
}

# Arguments of the kernels that choose a code path inside them, recorded with the route.
BRANCH_ARGS = ("omit", "scheme", "what", "nan_only")


def _is_kernel(value):
    return hasattr(value, "py_func")


def _is_pair(value):
    return (isinstance(value, dict) and set(value) == {True, False}
            and all(_is_kernel(v) for v in value.values()))


class Recorder:
    """Counts kernel calls as ``(route, dtype, ((argument, value), ...))`` keys."""

    def __init__(self):
        self.hits = Counter()
        self.profile = "tuned"   # set by the thresholds fixture
        self._lock = threading.Lock()

    def routes(self, profile=None):
        """The set of route names reached (in ``profile``, or in any)."""
        return {key[0] for (p, key) in self.hits if profile in (None, p)}

    def keys(self, profile=None):
        return {key for (p, key) in self.hits if profile in (None, p)}

    def record(self, route, kernel, args):
        dtype = next((str(a.dtype) for a in args if hasattr(a, "dtype") and
                      getattr(a, "ndim", 0) > 0), None)
        try:
            bound = inspect.signature(kernel.py_func).bind(*args).arguments
        except TypeError:
            bound = {}
        branches = tuple((name, int(bound[name])) for name in BRANCH_ARGS if name in bound)
        with self._lock:
            self.hits[(self.profile, (route, dtype, branches))] += 1

    def wrap(self, route, kernel):
        def call(*args):
            self.record(route, kernel, args)
            return kernel(*args)
        call.__name__ = route
        call.py_func = kernel.py_func
        return call


class _RecordingModule:
    """Stands in for the kernel module inside the backend: kernels come back wrapped."""

    def __init__(self, module, recorder):
        self._module = module
        self._recorder = recorder
        self._wrapped = {}

    def __getattr__(self, name):
        value = getattr(self._module, name)
        if name.startswith("_") or not (_is_kernel(value) or _is_pair(value)):
            return value
        cached = self._wrapped.get(name)
        if cached is None or cached[0] is not value:
            if _is_pair(value):
                wrapped = {parallel: self._recorder.wrap(
                    f"{name}[{'parallel' if parallel else 'serial'}]", kernel)
                    for parallel, kernel in value.items()}
            else:
                wrapped = self._recorder.wrap(name, value)
            cached = self._wrapped[name] = (value, wrapped)
        return cached[1]


def install(monkeypatch, recorder):
    """Route every backend module's reference to the kernel module through ``recorder``.

    Returns the names of the modules patched (empty when the kernel module is gone)."""
    import importlib

    import numba_quant._cpu.channels  # noqa: F401  (the host backend and its kernels)
    kernels = importlib.import_module(KERNEL_MODULE)
    proxy = _RecordingModule(kernels, recorder)
    patched = []
    for modname, module in list(sys.modules.items()):
        if not modname.startswith("numba_quant.") or modname == KERNEL_MODULE:
            continue
        if hasattr(module, "__path__"):
            continue  # a package: its attribute is the module itself, which callers import

        for attr, value in list(vars(module).items()):
            if value is kernels:
                monkeypatch.setattr(module, attr, proxy)
                patched.append(f"{modname}.{attr}")
    return patched


def all_routes():
    """Every route name of the kernel module: ``name`` or ``name[serial|parallel]``."""
    import importlib
    kernels = importlib.import_module(KERNEL_MODULE)
    names = set()
    for name, value in vars(kernels).items():
        if name.startswith("_"):
            continue
        if _is_pair(value):
            names |= {f"{name}[serial]", f"{name}[parallel]"}
        elif _is_kernel(value):
            names.add(name)
    return names


DTYPES = ("float32", "float64")   # float16 input computes in float32
#: The compute dtypes whose routes the shrunk runs reach: float32, and float64 too in the
#: thorough profile (float64 compiles a second signature of every route, a minute on two
#: cores; the tuned runs still take float64 everywhere).
SHRUNK_DTYPES = DTYPES if THOROUGH else ("float32",)
#: The recorder of the run (installed by conftest.py), whose ``profile`` says which
#: thresholds apply.
RECORDER = Recorder()


def compute_dtype_name(dtype):
    import numpy as np
    return "float32" if np.dtype(dtype).itemsize <= 4 else "float64"


def drawable_dtypes(dtypes):
    """The input dtypes of ``dtypes`` that a test may draw now: under the shrunk
    thresholds, those that compute in one of :data:`SHRUNK_DTYPES`."""
    if RECORDER.profile != "shrunk":
        return tuple(dtypes)
    return tuple(d for d in dtypes if compute_dtype_name(d) in SHRUNK_DTYPES)


BRANCH_VALUES = {"omit": (0, 1), "scheme": (0, 1, 2), "what": (0, 1, 2), "nan_only": (0, 1)}


def missing(keys, dtypes=None):
    """What ``keys`` (from :meth:`Recorder.keys`) lack: every route, with each compute
    dtype (of ``dtypes``, default all) and each value of each of its branch arguments
    (one at a time)."""
    dtypes = DTYPES if dtypes is None else dtypes
    seen = {}
    for route, dtype, branches in keys:
        entry = seen.setdefault(route, set())
        entry.add(("dtype", dtype))
        entry.update(branches)
    out = []
    for route in sorted(all_routes()):
        got = seen.get(route, set())
        if not got:
            out.append(route)
            continue
        out += [f"{route} {d}" for d in dtypes if ("dtype", d) not in got]
        names = {name for name, _ in got if name != "dtype"}
        out += [f"{route} {name}={v}" for name in sorted(names)
                for v in BRANCH_VALUES.get(name, ()) if (name, v) not in got]
    return out
