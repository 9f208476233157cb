"""GPU array interop: any GPU array as a Numba device array, layouts, copies, results.

Every array the GPU backend works on is a Numba device array over the caller's memory,
made from its ``__cuda_array_interface__`` (CuPy, Numba, PyTorch CUDA tensors) or, under
the CUDA simulator, the simulator's own device arrays.  Layouts are worked out on the
host from shape, strides and data pointer alone: a stand-in numpy array with the same
description (its memory is never touched) goes through :mod:`numba_quant._host.layout`, and
the views it gives become device arrays over the same memory.  Layouts that no view
describes are copied on the device (``copy_strided``).  Results go back to the caller in
its own array type (:func:`wrap`, :func:`empty`).
"""
import numpy as np
from numba import config, cuda

from numba_quant._host import checks as _checks
from numba_quant._cuda import kernels
from numba_quant._cuda import launch
from numba_quant._host.chunks import ChunkedInput
from numba_quant._host.layout import aligned_views

SIMULATOR = bool(config.ENABLE_CUDASIM)

# CUDA array interface "stream" values that need no wait before launching on the legacy
# default stream: none given, the legacy default stream, the per-thread default stream.
_ORDERED_STREAMS = (None, 1, 2)


class Info:
    """Shape, byte strides, data pointer and dtype of a device array, and who owns it."""

    __slots__ = ("ptr", "shape", "strides", "dtype", "readonly", "owner")

    def __init__(self, ptr, shape, strides, dtype, readonly, owner):
        self.ptr = int(ptr)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        if strides is None:
            strides = c_strides(self.shape, self.dtype.itemsize)
        self.strides = tuple(int(s) for s in strides)
        self.readonly = bool(readonly)
        self.owner = owner


def c_strides(shape, itemsize):
    """Byte strides of a C-contiguous array."""
    strides = []
    step = itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


class _HostInterface:
    """An ``__array_interface__`` holder: numpy arrays described by pointer and strides."""

    def __init__(self, ptr, shape, strides, dtype, readonly, owner):
        self.__array_interface__ = {"shape": tuple(shape), "strides": tuple(strides),
                                    "typestr": np.dtype(dtype).str,
                                    "data": (int(ptr), bool(readonly)), "version": 3}
        self._owner = owner


def _is_numba_array(a):
    return bool(getattr(a, "__cuda_ndarray__", False))


def kind(a):
    """The library an array comes from: "cupy", "torch", "numba", ..."""
    return type(a).__module__.split(".")[0]


def device(x):
    """``x`` as a Numba device array over the same memory (no copy); a 16-bit input
    kept for conversion by chunks (``_cuda_chunks``) converted whole, once."""
    if _is_numba_array(x):
        return x
    if isinstance(x, ChunkedInput):
        return x.dense()
    if SIMULATOR:
        _checks.simulator_array(x)
    if getattr(x, "requires_grad", False) and hasattr(x, "detach"):
        x = x.detach()  # torch refuses __cuda_array_interface__ on tensors needing grad
    desc = dict(x.__cuda_array_interface__)
    stream = desc.pop("stream", None)
    if stream not in _ORDERED_STREAMS:
        # The producer's stream may still be writing: wait for it, as the protocol asks.
        cuda.external_stream(stream).synchronize()
    return cuda.from_cuda_array_interface(desc, owner=x, sync=False)


def info(a):
    """The :class:`Info` of a Numba device array."""
    if SIMULATOR:
        host = a._ary
        data_ptr, readonly = host.__array_interface__["data"]
        return Info(data_ptr, host.shape, host.strides, host.dtype,
                    readonly or not host.flags.writeable, host)
    desc = a.__cuda_array_interface__
    data_ptr, readonly = desc["data"]
    return Info(data_ptr or 0, desc["shape"], desc.get("strides"), desc["typestr"],
                readonly, a)


def view(ptr, shape, strides, dtype, owner):
    """A device array over existing memory: element 0 at ``ptr``, byte ``strides``."""
    if SIMULATOR:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        return FakeCUDAArray(np.asarray(_HostInterface(ptr, shape, strides, dtype, False,
                                                       owner)))
    desc = {"shape": tuple(shape), "strides": tuple(strides),
            "typestr": np.dtype(dtype).str, "data": (int(ptr), False), "version": 3}
    return cuda.from_cuda_array_interface(desc, owner=owner, sync=False)


def stand_in(a_info):
    """A read-only numpy array with ``a_info``'s description; its memory is never read.

    numpy's view operations (transpose, flips, reshapes without copy) only do arithmetic
    on the pointer and strides, so :mod:`numba_quant._host.layout` can plan device layouts.
    """
    return np.asarray(_HostInterface(a_info.ptr, a_info.shape, a_info.strides, a_info.dtype,
                                     True, None))


def from_stand_in(v, a_info, dtype=None):
    """The device view described by the stand-in view ``v`` of ``a_info``'s array."""
    return view(v.__array_interface__["data"][0], v.shape, v.strides,
                a_info.dtype if dtype is None else dtype, a_info.owner)


def flat_view(a_info):
    """A 1-D view of all elements of ``a_info``'s array in C order, or None if none exists."""
    try:
        flat = np.reshape(stand_in(a_info), -1, copy=False)
    except ValueError:
        return None
    return from_stand_in(flat, a_info)


def _flat(a_info):
    """``(flat, offset, strides)``: a 1-D device array over the memory of ``a_info``'s
    array starting at its lowest element, the position of element 0, and strides in
    elements."""
    itemsize = a_info.dtype.itemsize
    shape = a_info.shape or (1,)
    strides = a_info.strides or (itemsize,)
    _checks.item_strides(strides, itemsize)
    el_strides = tuple(s // itemsize for s in strides)
    low = sum((n - 1) * s for n, s in zip(shape, el_strides) if s < 0)
    high = sum((n - 1) * s for n, s in zip(shape, el_strides) if s > 0)
    flat = view(a_info.ptr + low * itemsize, (high - low + 1,), (itemsize,), a_info.dtype,
                a_info.owner)
    return flat, -low, el_strides


def copy(src_info, dst_info, shape=None, src_strides=None):
    """Copy (and cast) element by element between two device arrays of one shape.

    ``shape``/``src_strides`` (bytes) may give ``src`` a permuted description.
    """
    if shape is None:
        shape = src_info.shape
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        return
    src = src_info
    if src_strides is not None:
        src = Info(src_info.ptr, shape, src_strides, src_info.dtype, True, src_info.owner)
    src_flat, src_off, src_el = _flat(src)
    dst_flat, dst_off, dst_el = _flat(dst_info)
    full = tuple(shape) or (1,)
    blocks, threads = launch.grid(n)
    kernels.copy_strided[blocks, threads](src_flat, src_off, src_el, dst_flat, dst_off,
                                          dst_el, full)


def contiguous_copy(a_info, dtype=None, axes=None):
    """A new C-contiguous device array with ``a_info``'s values (cast to ``dtype``), its
    axes in the order ``axes`` (default: unchanged)."""
    shape, strides = a_info.shape, a_info.strides
    if axes is not None:
        shape = tuple(a_info.shape[a] for a in axes)
        strides = tuple(a_info.strides[a] for a in axes)
    out = cuda.device_array(shape, a_info.dtype if dtype is None else dtype)
    copy(a_info, info(out), shape, strides)
    return out


def values(a, dtype):
    """A device array's values as a 1-D contiguous device array of ``dtype`` (a view
    when the array already is one)."""
    d = device(a)
    a_info = info(d)
    if a_info.dtype == np.dtype(dtype):
        flat = flat_view(a_info)
        if flat is not None and (flat.size <= 1 or flat.strides[0] == a_info.dtype.itemsize):
            return flat
    return flat_view(info(contiguous_copy(a_info, dtype)))


def reduction_view(x, axis, dtype=None):
    """An ``(outer, channels, inner)`` device view of ``x`` (a copy if no view exists),
    read as ``dtype`` (same item size)."""
    x_info = info(x)
    views = aligned_views((stand_in(x_info),), axis)
    if views is not None:
        return from_stand_in(views[0], x_info, dtype)
    # No strided view: a contiguous copy with the channel axis first.
    axes = None if axis is None else [axis] + [a for a in range(len(x_info.shape))
                                               if a != axis]
    copied = contiguous_copy(x_info, axes=axes)
    n_channels = 1 if axis is None else x_info.shape[axis]
    copy_info = info(copied)
    shape = (1, n_channels, x.size // n_channels)
    itemsize = x_info.dtype.itemsize
    return view(copy_info.ptr, shape, (x.size * itemsize, shape[2] * itemsize, itemsize),
                x_info.dtype if dtype is None else dtype, copied)


def _extent(a_info):
    """Byte range ``[start, stop)`` that ``a_info``'s elements occupy."""
    start = stop = a_info.ptr
    for n, s in zip(a_info.shape, a_info.strides):
        if n > 1:
            if s < 0:
                start += (n - 1) * s
            else:
                stop += (n - 1) * s
    return start, stop + a_info.dtype.itemsize


def overlap(a_info, b_info):
    """True when the byte ranges of two device arrays' elements overlap."""
    a_start, a_stop = _extent(a_info)
    b_start, b_stop = _extent(b_info)
    return a_start < b_stop and b_start < a_stop


def overlaps_differently(x_info, out_info):
    """True when ``out`` shares memory with ``x`` other than element for element."""
    x_start, x_stop = _extent(x_info)
    out_start, out_stop = _extent(out_info)
    if x_stop <= out_start or out_stop <= x_start:
        return False
    return not (x_info.ptr == out_info.ptr and x_info.strides == out_info.strides
                and x_info.dtype.itemsize == out_info.dtype.itemsize)


# --------------------------------------------------------------------------- to and from the caller
def to_host(a):
    """Any device array (Numba, CuPy, torch) as a numpy array."""
    library = kind(a)
    if library == "cupy":
        return a.get()  # (CuPy's own copy: no conversion to a Numba array first)
    if library == "torch":
        return a.detach().cpu().numpy()
    d = device(a)
    d_info = info(d)
    if d_info.strides != c_strides(d_info.shape, d_info.dtype.itemsize) and d.size > 1:
        d = contiguous_copy(d_info)
    return np.asarray(d.copy_to_host())


def from_host(a, like):
    """A host array copied to the device, in the caller's array type where that is safe.

    CuPy in gives CuPy, anything else a Numba device array (a torch tensor's dtype is not
    a numpy dtype, which the observers' state checks need).
    """
    d = cuda.to_device(np.ascontiguousarray(a))
    if kind(like) == "cupy":
        return wrap(d, like)
    return d


def wrap(a, like, element=None):
    """Results in the caller's array type: CuPy, torch or Numba (no copy).

    ``element`` names the element type a torch result stands for where numpy has none
    (``"float8_e4m3fn"``, ``"float8_e5m2"``, ``"float8_e8m0fnu"``, ``"bfloat16"``): the
    tensor is viewed as torch's dtype of that name (same bits).
    """
    library = kind(like)
    if library == "cupy":
        import cupy
        return cupy.asarray(a)
    if library == "torch":
        import torch
        tensor = torch.as_tensor(a, device=like.device)
        return tensor if element is None else tensor.view(getattr(torch, element))
    return a


def empty(shape, dtype, like):
    """A new device array in ``like``'s array type (CuPy and torch allocate from their
    memory pools, much faster than a fresh device allocation); else a Numba one."""
    library = kind(like)
    if library == "cupy":
        import cupy
        return cupy.empty(tuple(shape), dtype)
    if library == "torch":
        import torch
        torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
        return torch.empty(tuple(shape), dtype=torch_dtype, device=like.device)
    return cuda.device_array(tuple(shape), dtype)


def contiguous(a, dtype=None, axes=None):
    """``a`` as a C-contiguous device array of ``dtype`` with axes ``axes`` (copied if
    needed)."""
    d = device(a)
    d_info = info(d)
    same = (dtype is None or np.dtype(dtype) == d_info.dtype) and (
        axes is None or tuple(axes) == tuple(range(len(d_info.shape))))
    if same and d_info.strides == c_strides(d_info.shape, d_info.dtype.itemsize):
        return d
    return contiguous_copy(d_info, dtype, axes)


def view4(a, shape4, strides4):
    """The 4-D view of ``a`` planned by :func:`numba_quant._host.blocks_plan.canonical`."""
    a_info = info(device(a))
    planned = np.lib.stride_tricks.as_strided(stand_in(a_info), shape4, strides4)
    return from_stand_in(planned, a_info)


def copy_into(target, source):
    """Write ``source`` (same size) into ``target`` on the device."""
    copy(info(device(source)), info(device(target)))


def as_output(out):
    """A caller's ``out`` as a device array over the same memory, checked writable."""
    d = device(out)
    _checks.output_array(d.dtype, info(d).readonly)
    return d


def placeholder(x):
    """An empty device array of ``x``'s kind (CuPy, torch, Numba), to give later results
    that kind without keeping ``x`` alive."""
    return empty((0,), np.float32, x)
