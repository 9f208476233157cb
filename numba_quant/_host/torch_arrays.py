"""PyTorch CPU tensors on the host backend, without importing torch until one arrives.

A CPU tensor is read through a numpy array over its memory (``detach()`` first, so that
parameters with ``requires_grad`` need no copy); results go back as tensors over the
result arrays (``torch.from_numpy``, no copy).  bfloat16 has no numpy dtype: the host
backend reads its bit patterns as ``uint16`` over the tensor's memory
(:func:`bfloat16_bits`) and converts them to float32 a chunk at a time
(:mod:`numba_quant._host.chunks`); :func:`to_numpy` widens them whole.  CUDA tensors never
come here: they carry ``__cuda_array_interface__`` and go to the GPU backend.
"""
import sys

import numpy as np

from numba_quant._host.storage import bfloat16_to_float32


def is_tensor(x):
    """True for a ``torch.Tensor`` (parameters included); never imports torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _cpu(tensor, what):
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        raise TypeError(f"{what} is a torch tensor on {tensor.device}; numba_quant reads "
                        "CPU tensors and CUDA tensors (through __cuda_array_interface__)")
    return tensor


def is_bfloat16(tensor):
    """True for a bfloat16 tensor."""
    import torch
    return tensor.dtype == torch.bfloat16


def bfloat16_bits(tensor, what="input"):
    """The ``uint16`` bit patterns of a bfloat16 CPU tensor, over its memory (no copy)."""
    import torch
    tensor = _cpu(tensor, what)
    if tensor.is_neg():  # a lazily negated view: its stored bits are not its values
        tensor = tensor.resolve_neg()
    return tensor.view(torch.int16).numpy().view(np.uint16)


def to_numpy(tensor, what="input"):
    """A numpy array over a CPU tensor's memory (bfloat16: its float32 values, a copy)."""
    import torch
    if tensor.dtype == torch.bfloat16:
        return bfloat16_to_float32(bfloat16_bits(tensor, what))
    tensor = _cpu(tensor, what)
    if tensor.is_conj() or tensor.is_neg():
        tensor = tensor.resolve_conj().resolve_neg()
    return tensor.numpy()


def bits_numpy(tensor, what="codes"):
    """A numpy array over a CPU tensor's memory; one-byte float tensors (torch's float8
    types: codes) as their ``uint8`` bit patterns."""
    import torch
    tensor = _cpu(tensor, what)
    if tensor.is_floating_point() and tensor.element_size() == 1:
        return tensor.view(torch.uint8).numpy()
    return to_numpy(tensor, what)


def writable_numpy(tensor, what):
    """A numpy array sharing a CPU tensor's memory, for results written in place."""
    import torch
    tensor = _cpu(tensor, what)
    if tensor.dtype == torch.bfloat16:
        raise TypeError(f"{what} is a bfloat16 tensor; results are written as float32 "
                        "(or the input's float type)")
    return tensor.numpy()


def from_numpy(a, element=None):
    """A CPU tensor over the memory of a result array; ``element`` (a torch dtype's
    name, e.g. ``"float8_e4m3fn"``) views its bits as that type."""
    import torch
    if a.dtype.kind == "V" or a.dtype.name in _ML_DTYPES:
        # an ml_dtypes array (bfloat16, float8): torch's type of that name over its bits
        element = element or a.dtype.name
        a = a.view(np.dtype(f"u{a.dtype.itemsize}"))
    tensor = torch.from_numpy(a)
    return tensor if element is None else tensor.view(getattr(torch, element))


# ml_dtypes' types that torch has under the same name.
_ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu")
