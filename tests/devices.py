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


def hypothesis_on_both_devices(cpu_examples, gpu_examples):
    """A decorator for ``check_<name>(device, data)`` functions: it registers, in the
    function's module, ``test_<name>_cpu`` and ``test_<name>_gpu`` (marked ``gpu``), each
    a Hypothesis test drawing ``data`` with its number of examples."""
    import sys

    import pytest
    from hypothesis import given, settings
    from hypothesis import strategies as st

    def register(fn):
        module = sys.modules[fn.__module__]
        name = fn.__name__[len("check_"):]
        for dev_name, n in (("cpu", cpu_examples), ("gpu", gpu_examples)):
            def make(device=Device(dev_name)):
                def test(data):
                    fn(device, data)
                return test
            t = settings(max_examples=n)(given(data=st.data())(make()))
            t.__name__ = t.__qualname__ = f"test_{name}_{dev_name}"
            if dev_name == "gpu":
                t = pytest.mark.gpu(t)
            setattr(module, t.__name__, t)
        return fn
    return register
