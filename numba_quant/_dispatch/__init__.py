"""Choosing the backend by where an array lives.

Anything exposing ``__cuda_array_interface__`` (CuPy arrays, Numba device arrays,
PyTorch CUDA tensors), and the simulator's device arrays, runs on the GPU backend,
:mod:`numba_quant._cuda.backend`, which is imported only when such an array first arrives so
that ``import numba_quant`` stays fast and works without CUDA.  Everything else goes
through ``np.asarray`` to the CPU backend, :mod:`numba_quant._cpu.backend`.

Dask arrays (:func:`is_dask`) are recognised before that: the public functions hand
them to :mod:`numba_quant._dask.channels`, which builds a graph whose tasks call the public
functions (and so this dispatcher) on each chunk, a numpy or CuPy array.
"""
import sys

import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._host import torch_arrays as _torch


def on_device(x):
    """True when ``x`` is a GPU array."""
    if type(x) is np.ndarray:  # the common case, without a failing attribute lookup
        return False
    if hasattr(x, "__cuda_array_interface__"):
        return True
    if type(x).__module__ == "numba_quant._cuda.chunks":
        return True   # a 16-bit device input read by chunks (the GPU backend's as_array)
    # The simulator's device arrays carry no interface; they exist only once
    # numba.cuda has been imported, so this costs nothing otherwise.
    # (getattr: a module in sys.modules may still be importing in another thread.)
    devicearray = getattr(sys.modules.get("numba.cuda"), "devicearray", None)
    return devicearray is not None and devicearray.is_cuda_ndarray(x)


def is_dask(x):
    """True when ``x`` is a ``dask.array.Array``.

    Dask is never imported here: a Dask array can only exist once ``dask.array`` has
    been imported, so a type from another module, or no ``dask.array`` in
    ``sys.modules``, answers False at once.
    """
    if type(x) is np.ndarray or not type(x).__module__.startswith("dask."):
        return False
    array_module = sys.modules.get("dask.array")
    return array_module is not None and isinstance(x, array_module.Array)


def backend(x, *others):
    """The backend module for ``x``; ``others`` (array or None) must live on the same side."""
    device = on_device(x)
    for other in others:
        if other is not None and not _is_plain_value(other) and on_device(other) != device:
            _checks.same_device(device, other)
    # Imported here: numba loads with the first computation, not with numba_quant.
    if device:
        from numba_quant._cuda import backend as _cuda
        return _cuda
    return _cpu_backend or _import_cpu()


# The host backend once imported.  Not looked up in sys.modules: there a module appears
# before its import has finished, which another thread could see half-initialised.
_cpu_backend = None


def _import_cpu():
    global _cpu_backend
    from numba_quant._cpu import backend as _cpu# waits for an import under way in another thread
    _cpu_backend = _cpu
    return _cpu


def _is_plain_value(value):
    """Python numbers and sequences of them may go with arrays on either side."""
    return isinstance(value, (int, float, list, tuple))


def to_host(a):
    """Any array (numpy, CuPy, Numba device array, torch CUDA tensor) or value as numpy."""
    if on_device(a):
        from numba_quant._cuda import arrays as _cuda_arrays
        return _cuda_arrays.to_host(a)
    if _torch.is_tensor(a):  # a CPU tensor (parameters too: read without grad)
        return _torch.to_numpy(a)
    return np.asarray(a)
