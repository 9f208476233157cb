"""What the CUDA kernels keep between calls, and the constants they share with the host.

One call at a time uses the scratch (:data:`LOCK`): the reductions' kept key array and
the status word in host-mapped memory, read after the call's one synchronisation.
"""
import functools
import threading

import numpy as np
from numba import cuda

from numba_quant._cuda import arrays
from numba_quant._cuda import kernels
from numba_quant._host import codes
from numba_quant._host import tuning as _tuning


class Scratch:
    """What the kernels keep between calls: a ``(2, KEPT_KEYS)`` int64 key array at its
    start values, and the status word in host-mapped memory (read after a sync without
    a copy)."""

    def __init__(self):
        keys = np.empty((2, _tuning.KEPT_KEYS), np.int64)
        keys[0] = kernels.START_LO
        keys[1] = kernels.START_HI
        self.keys = cuda.to_device(keys)
        self.status = cuda.mapped_array(1, np.int32)
        self.status[0] = codes.OK


_scratch = {}  # device id -> Scratch
# One call at a time uses the scratch: they share the kept keys and the status word.
LOCK = threading.Lock()


def current():
    """This device's :class:`Scratch` (call with ``LOCK`` held)."""
    device = 0 if arrays.SIMULATOR else cuda.get_current_device().id
    scratch = _scratch.get(device)
    if scratch is None:
        scratch = _scratch[device] = Scratch()
    return device, scratch


def forget(device):
    """Drop ``device``'s scratch (after a failed call: its kept keys may be half used)."""
    _scratch.pop(device, None)


def take_status(scratch):
    """The status word (read after a synchronisation), put back to OK for the next call."""
    status = int(scratch.status[0])
    scratch.status[0] = codes.OK
    return status


def int_type(dtype):
    """The signed integer type of a float type's bits."""
    return np.dtype(np.int32 if np.dtype(dtype).itemsize == 4 else np.int64)


@functools.lru_cache(maxsize=None)
def key_constants(dtype):
    """``(mask, inf_bits)`` for a float type, in the integer type of its bits: the bits
    below the sign, and the bits of +inf (also its key)."""
    itype = int_type(dtype)
    return itype.type(np.iinfo(itype).max), np.array(np.inf, dtype).view(itype)[()]


class CodeParams:
    """What :func:`quantize_map` needs: per-channel ``(divisor, offset)`` on the device
    (``params``, shape ``(2, channels)``), the scheme and the bits."""

    __slots__ = ("params", "scheme", "bits")

    def __init__(self, params, scheme, bits):
        self.params = params
        self.scheme = scheme
        self.bits = bits
