"""Arrays on the CPU backend: allocate, view, move, and hand results back as the caller's kind.

The same functions, with the same meanings, are in :mod:`numba_quant._cuda.arrays` for
device arrays; the dispatcher hands one of the two modules to the public functions as
part of a :class:`numba_quant._dispatch.Backend`.  No numba here.
"""
import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._host import torch_arrays


def empty(shape, dtype, like):
    """A new array of ``shape`` and ``dtype`` (``like`` only matters on the GPU)."""
    return np.empty(tuple(shape), dtype)


def wrap(a, like, element=None):
    """The result ``a`` as the caller's kind of array: numpy for numpy, a tensor over
    ``a``'s memory for a PyTorch CPU tensor (no copy).

    ``element`` names the element type the result stands for where numpy has none
    (``"float8_e4m3fn"``, ``"float8_e5m2"``, ``"float8_e8m0fnu"``, ``"bfloat16"``): a
    tensor result is viewed as torch's dtype of that name (same bits).
    """
    if type(like) is np.ndarray or not torch_arrays.is_tensor(like):
        return a
    return torch_arrays.from_numpy(a, element)


def to_host(a):
    """``a`` as a numpy array (a CPU tensor is read over its memory)."""
    if torch_arrays.is_tensor(a):
        return torch_arrays.to_numpy(a)
    return np.asarray(a)


def from_host(a, like):
    """A host array as the backend's array (here: itself, as numpy)."""
    return np.asarray(a)


def contiguous(a, dtype=None, axes=None):
    """``a`` as a C-contiguous array of ``dtype`` with axes ``axes`` (copied if needed)."""
    if axes is not None:
        a = np.transpose(a, axes)
    return np.ascontiguousarray(a, dtype=dtype)


def view4(a, shape4, strides4):
    """The 4-D view of ``a`` planned by :func:`numba_quant._host.blocks_plan.canonical`."""
    return np.lib.stride_tricks.as_strided(a, shape4, strides4,
                                           writeable=a.flags.writeable)


def copy_into(target, source):
    """Write ``source`` (same size) into ``target``."""
    target[...] = source.reshape(target.shape) if source.shape != target.shape else source


def as_output(out):
    """A caller's ``out=`` array (numpy, or a PyTorch CPU tensor read over its memory),
    checked writable and native, as the kernels will see it."""
    if torch_arrays.is_tensor(out):
        out = torch_arrays.writable_numpy(out, "out")
    _checks.numpy_array("out", out)
    _checks.output_array(out.dtype, not out.flags.writeable)
    return out


def placeholder(x):
    """An empty array of ``x``'s kind (numpy, or a PyTorch CPU tensor), to give later
    results that kind without keeping ``x`` alive."""
    empty_values = np.empty(0, np.float32)
    return torch_arrays.from_numpy(empty_values) if torch_arrays.is_tensor(x) else empty_values
