"""Test configuration: CUDA simulator when no GPU is usable, devices, Hypothesis profiles.

This file runs before any test module imports numba, so it can still choose the CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``) when no real GPU can be used.
"""
import ctypes
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # the helpers (oracle, golden, ...) work under any import mode
    sys.path.insert(0, HERE)


def _real_gpu_usable():
    """True where the CUDA driver loads, initialises and sees at least one device."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:
                return False
            count = ctypes.c_int(0)
            return lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
        except Exception:  # noqa: BLE001 - any driver trouble means "no GPU"
            return False
    return False


if "numba" not in sys.modules and os.environ.get("NUMBA_ENABLE_CUDASIM", "") in ("", "0"):
    if not _real_gpu_usable():
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0")

# Launch configuration for the simulator: a few threads, two blocks (so that the
# combination of block results is exercised too); each simulated thread costs time.
SIM_LAUNCH = {"threads": 16, "max_blocks": 2}


def _patch_simulator_shared_arrays():
    """Make the simulator's ``cuda.shared.array`` allocation thread-safe.

    numba-cuda's simulator (0.30) looks up a block's shared array by the calling source
    line and creates it when missing, without a lock: two simulated threads can both
    create one, and the block's threads then write to different arrays and read
    ``np.empty`` garbage from the other (seen as random counts and min/max keys in the
    kernels' shared-memory reductions, more often with a short GIL switch interval).
    This replacement does the same lookup under a lock.
    """
    import threading

    import numpy as np
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    original = kernelapi.FakeCUDAShared.array
    if getattr(original, "_locked", False):
        return
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:   # dynamic shared memory: no lookup
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = np.empty(shape, dtype)
                self._allocations[caller] = res
        return res

    array._locked = True
    kernelapi.FakeCUDAShared.array = array


if SIMULATOR:
    # The simulator runs each GPU thread as a Python thread that waits on the others at
    # every barrier; with the default 5 ms GIL switch interval most of the wall time is
    # spent waiting for hand-overs. A short interval makes the GPU tests 2-5x faster.
    sys.setswitchinterval(5e-5)
    _patch_simulator_shared_arrays()

# --------------------------------------------------------------------------- Hypothesis
from hypothesis import HealthCheck, settings  # noqa: E402

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=40, derandomize=True, print_blob=True, **_common)
settings.register_profile("dev", max_examples=15, **_common)
settings.register_profile("thorough", max_examples=400, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# --------------------------------------------------------------------------- CuPy
def _cupy_usable():
    try:
        import cupy
    except Exception:  # noqa: BLE001 - ImportError or a broken install
        return False
    try:
        if not cupy.cuda.is_available():
            return False
        cupy.zeros(1)  # an allocation is the real test
        return True
    except Exception:  # noqa: BLE001
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "cupy: needs CuPy with a usable GPU")
    config.addinivalue_line("markers", "real_gpu: needs a real GPU (not the CUDA simulator)")
    config.addinivalue_line("markers", "gpu: runs the CUDA kernels (real GPU or simulator)")
    config.addinivalue_line("markers", "cluster: uses a Dask LocalCluster of worker "
                                       "processes (started once per module; slow)")


_CUPY = None


def cupy_usable():
    global _CUPY
    if _CUPY is None:
        _CUPY = (not SIMULATOR) and _cupy_usable()
    return _CUPY


def pytest_collection_modifyitems(config, items):
    skip_cupy = pytest.mark.skip(reason="CuPy not usable: no GPU (cupy.cuda.is_available() "
                                        "is False, or allocation fails)")
    skip_real = pytest.mark.skip(reason="needs a real GPU; running in the CUDA simulator")
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("device") == "gpu":
            item.add_marker(pytest.mark.gpu)
        if "cupy" in item.keywords and not cupy_usable():
            item.add_marker(skip_cupy)
        if "real_gpu" in item.keywords and SIMULATOR:
            item.add_marker(skip_real)


# --------------------------------------------------------------------------- devices
from devices import DEVICES, Device  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _small_gpu_launch():
    """In the simulator, shrink numba_quant._tuning.LAUNCH (threads 16, max_blocks 2)."""
    if not SIMULATOR:
        yield None
        return
    from numba_quant import _tuning
    mp = pytest.MonkeyPatch()
    for k, v in SIM_LAUNCH.items():
        mp.setitem(_tuning.LAUNCH, k, v)
    yield _tuning.LAUNCH
    mp.undo()


@pytest.fixture(scope="session", params=DEVICES)
def device(request):
    """Each test using it runs on the CPU path and on the GPU path."""
    return Device(request.param)
