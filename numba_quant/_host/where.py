"""Where an array lives: on a GPU, in a Dask graph, or (anything else) on the host.

These only recognise; :mod:`numba_quant._dispatch` decides which backend runs.  Neither
CUDA nor Dask is imported here: their arrays can only exist once their modules have been.
"""
import sys

import numpy as np


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
