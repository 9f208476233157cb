"""Sending test inputs to a device and bringing outputs back (numpy or Numba device arrays)."""
import os

import numpy as np

DEVICES = ("cpu", "gpu")
# conftest.py sets NUMBA_ENABLE_CUDASIM before anything imports numba.
SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0")


def is_device_array(a):
    """A Numba device array (real or simulator)."""
    from numba.cuda import devicearray
    return devicearray.is_cuda_ndarray(a)


def to_numpy(a):
    """numpy for a numpy array or a Numba device array (no type check)."""
    if isinstance(a, np.ndarray):
        return a
    return a.copy_to_host()


class Device:
    """How a test sends inputs to a device and brings outputs back.

    ``put`` gives the array as the library's caller would pass it on that device (numpy
    on "cpu", a Numba device array on "gpu"); ``get`` checks the output's array type
    (numpy out for numpy in, Numba device array out for device array in) and returns it
    as numpy.
    """

    def __init__(self, name):
        assert name in DEVICES
        self.name = name
        self.gpu = name == "gpu"

    def __repr__(self):
        return f"Device({self.name!r})"

    def put(self, a):
        a = np.asarray(a)
        if not self.gpu:
            return a
        from numba import cuda
        return cuda.to_device(np.ascontiguousarray(a) if a.ndim else a.copy())

    def get(self, a):
        if self.gpu:
            assert is_device_array(a), f"GPU in must give a Numba device array, got {type(a)}"
            return a.copy_to_host()
        assert isinstance(a, np.ndarray), f"numpy in must give numpy out, got {type(a)}"
        return a

    def empty(self, shape, dtype):
        if not self.gpu:
            return np.empty(shape, dtype)
        from numba import cuda
        return cuda.device_array(shape, dtype)
