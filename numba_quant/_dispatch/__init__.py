"""The dispatcher: the one place that decides where a computation runs.

Anything exposing ``__cuda_array_interface__`` (CuPy arrays, Numba device arrays,
PyTorch CUDA tensors), and the CUDA simulator's device arrays, runs on the CUDA backend;
everything else (numpy arrays, PyTorch CPU tensors, array-likes) on the CPU backend.
:func:`backend` returns a :class:`Backend`: one device's operations, with the same names
on both devices.  The backends' modules are imported when first asked for, so that
``import numba_quant`` imports neither numba (a measured start-up cost) nor CUDA (an
optional dependency).

Dask arrays (:func:`is_dask`) are recognised before that: the public functions hand
them to :mod:`numba_quant._dask`, whose tasks call the public functions (and so this
dispatcher) on each chunk, a numpy or CuPy array.
"""
import importlib
import threading

from numba_quant._host import checks as _checks
from numba_quant._host.where import is_dask, on_device  # noqa: F401  (the public layer's)

# Each capability is a module of the same name in numba_quant._cpu and numba_quant._cuda
# with the same functions (tests/test_backend.py compares them).
CAPABILITIES = ("arrays", "channels", "blocks", "blockwise", "formats", "hist")
# Capabilities imported when first used, on either device: their kernels are many, and
# most calls never need them.
LAZY = ("gguf",)            # llama.cpp's GGUF types (numba_quant.gguf)
# Capabilities with CPU kernels only so far (imported when first used): on the CUDA
# backend their attribute raises the one error that says so (_host.checks.cpu_only).
CPU_ONLY = ("compressed",    # compressed-tensors' integer weight codes (numba_quant.export)
            "gguf_export")   # the GGUF export's measured single pass (numba_quant.export)


class Backend:
    """The operations of one device.

    ``device`` is ``"cpu"`` or ``"cuda"``.  The array operations every public function
    needs are attributes of the backend itself: ``empty(shape, dtype, like)``,
    ``wrap(result, like, element=None)`` (a result as the caller's kind of array),
    ``to_host(a)``, ``from_host(a, like)``, ``contiguous(a, dtype=None, axes=None)``,
    ``view4``, ``copy_into``, ``as_output(out)``, ``placeholder(x)`` (an empty array of
    ``x``'s kind, kept for :meth:`host_result` later) and :meth:`host_result`.  The
    kernels' entry points are grouped by capability: ``channels`` (OneFlow's per-channel and per-layer observers
    and maps), ``blocks`` (torchao's block-wise functions), ``blockwise`` (OneFlow's
    functions with ``block_size=``), ``formats`` (FP8, MX, NVFP4), ``hist`` (the
    calibrators' histograms) and ``gguf`` (llama.cpp's GGUF types).
    """

    def __init__(self, device):
        self.device = device
        package = f"numba_quant._{device}"
        for name in CAPABILITIES:
            setattr(self, name, importlib.import_module(f"{package}.{name}"))
        for name in CPU_ONLY:
            if device != "cpu":
                setattr(self, name, _CpuOnly(name))
        for name in ("empty", "wrap", "to_host", "from_host", "contiguous", "view4",
                     "copy_into", "as_output", "placeholder"):
            setattr(self, name, getattr(self.arrays, name))

    def __getattr__(self, name):
        # A capability imported when first used (LAZY, or CPU_ONLY on the CPU).
        if name in LAZY or (name in CPU_ONLY and self.device == "cpu"):
            module = importlib.import_module(f"numba_quant._{self.device}.{name}")
            setattr(self, name, module)
            return module
        raise AttributeError(name)

    def output_view(self, out, shape, dtype, name="out"):
        """A caller's ``out`` checked (on this backend's device, writable, of ``shape``
        and ``dtype``: the one sequence of these checks) and its view as the kernels
        take it."""
        _checks.output_on_input_side(backend(out) is self)
        view = self.as_output(out)
        _checks.output_matches(view.shape, view.dtype, shape, dtype, name)
        return view

    def host_result(self, a, like, element=None):
        """A result computed on the host (small: parameters, histogram answers) as the
        caller's kind of array, on the caller's device."""
        return self.wrap(self.from_host(a, like), like, element)

    def __repr__(self):
        return f"<numba_quant {self.device} backend>"


class _CpuOnly:
    """A capability the CUDA backend does not have yet: using it raises."""

    def __init__(self, name):
        self.name = name

    def __getattr__(self, attribute):
        raise _checks.cpu_only(self.name)


_BACKENDS = {}
_LOADING = threading.Lock()


def _load(device):
    """The backend of ``device``, imported once (another thread waits for the import)."""
    found = _BACKENDS.get(device)
    if found is None:
        with _LOADING:
            found = _BACKENDS.get(device)
            if found is None:
                found = _BACKENDS[device] = Backend(device)
    return found


def cpu():
    """The CPU backend (for work that always runs on the host: results already there)."""
    return _load("cpu")


def backend(x, *others):
    """The backend of the device where ``x`` lives; ``others`` (arrays, Python values or
    None) must live on the same side."""
    device = on_device(x)
    for other in others:
        if other is not None and not _is_plain_value(other) and on_device(other) != device:
            _checks.same_device(device, other)
    return _load("cuda" if device else "cpu")


def device_backend():
    """The CUDA backend, for a caller that asked for the GPU (``device="cuda"``)."""
    return _load("cuda")


def _is_plain_value(value):
    """Python numbers and sequences of them may go with arrays on either side."""
    return isinstance(value, (int, float, list, tuple))


def to_host(a):
    """Any array (numpy, CuPy, Numba device array, PyTorch tensor) or value as numpy."""
    return backend(a).to_host(a)
