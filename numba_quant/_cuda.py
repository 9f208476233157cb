"""The GPU backend: device arrays in, device arrays out.

The same functions as :mod:`numba_quant._cpu` (the "backend interface"), for arrays with
``__cuda_array_interface__`` (CuPy, Numba device arrays, PyTorch CUDA tensors) and the
CUDA simulator's device arrays.  :mod:`numba_quant._dispatch` imports this module only
when such an array first arrives.

Internally every array is a Numba device array.  Layouts are worked out on the host from
shape, strides and data pointer alone: a stand-in numpy array with the same description
(its memory is never touched) goes through :mod:`numba_quant._layout`, and the views it
gives become Numba device arrays over the caller's memory.  Layouts that no 3-D view
describes are copied on the device.  The kernels live in
:mod:`numba_quant._cuda_kernels`; they run on the default stream.
"""
import functools
import threading

import numpy as np
from numba import config, cuda

from numba_quant import _checks
from numba_quant import _tuning
from numba_quant import _primitives
from numba_quant import _reference as ref
from numba_quant._layout import aligned_views

SIMULATOR = bool(config.ENABLE_CUDASIM)

# The launch configuration, the same dict as _tuning.LAUNCH (tests shrink it in place).
LAUNCH = _tuning.LAUNCH
# CUDA array interface "stream" values that need no wait before launching on the legacy
# default stream: none given, the legacy default stream, the per-thread default stream.
_ORDERED_STREAMS = (None, 1, 2)


# --------------------------------------------------------------------------- primitives
def _register_cuda_primitives():
    """CUDA versions of the target-neutral primitives of :mod:`numba_quant._primitives`."""
    from numba import types
    from numba.core.extending import overload
    from numba.cuda import libdevice

    def unary(stub, f32, f64):
        @overload(stub, target="cuda")
        def impl(v):
            if v == types.float32:
                return lambda v: f32(v)
            if v == types.float64:
                return lambda v: f64(v)
            return None

    unary(_primitives.rint, libdevice.rintf, libdevice.rint)
    unary(_primitives.trunc, libdevice.truncf, libdevice.trunc)

    @overload(_primitives.float_from_bits, target="cuda")
    def _float_from_bits(bits, like):
        if like == types.float32:
            return lambda bits, like: libdevice.int_as_float(np.int32(bits))
        if like == types.float64:
            return lambda bits, like: libdevice.longlong_as_double(np.int64(bits))
        return None

    @overload(_primitives.narrow, target="cuda")
    def _narrow(v, like):
        if like == types.int32:
            return lambda v, like: np.int32(v)
        if like == types.int64:
            return lambda v, like: np.int64(v)
        return None

    @overload(_primitives.mul_rn, target="cuda")
    def _mul_rn(a, b):
        if a == types.float32 and b == types.float32:
            return lambda a, b: libdevice.fmul_rn(a, b)
        if a == types.float64 and b == types.float64:
            return lambda a, b: libdevice.dmul_rn(a, b)
        return None


if not SIMULATOR:
    # In the simulator the kernels run as Python and call the CPU-compiled functions.
    _register_cuda_primitives()

from numba_quant import _cuda_kernels as kernels  # noqa: E402  (after the overloads)


# --------------------------------------------------------------------------- launch
def _threads():
    """Threads per block: LAUNCH["threads"] rounded down to a power of two."""
    t = max(1, min(int(_tuning.LAUNCH["threads"]), kernels.SHARED))
    return 1 << (t.bit_length() - 1)


def _grid(n, per_thread=1):
    """``(blocks, threads)`` of a grid-stride launch over ``n`` items."""
    threads = _threads()
    blocks = -(-max(1, n) // (threads * per_thread))
    return max(1, min(int(_tuning.LAUNCH["max_blocks"]), blocks)), threads


def _small_grid(n):
    """``(blocks, threads)`` for one thread per channel (no more threads than items)."""
    threads = max(1, min(_threads(), n))
    return max(1, min(int(_tuning.LAUNCH["max_blocks"]), -(-n // threads))), threads


# --------------------------------------------------------------------------- arrays
class _Info:
    """Shape, byte strides, data pointer and dtype of a device array, and who owns it."""

    __slots__ = ("ptr", "shape", "strides", "dtype", "readonly", "owner")

    def __init__(self, ptr, shape, strides, dtype, readonly, owner):
        self.ptr = int(ptr)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        if strides is None:
            strides = _c_strides(self.shape, self.dtype.itemsize)
        self.strides = tuple(int(s) for s in strides)
        self.readonly = bool(readonly)
        self.owner = owner


def _c_strides(shape, itemsize):
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


def _device(x):
    """``x`` as a Numba device array over the same memory (no copy)."""
    if _is_numba_array(x):
        return x
    if SIMULATOR:
        raise TypeError(f"the CUDA simulator only takes its own device arrays; got "
                        f"{type(x).__name__}")
    if getattr(x, "requires_grad", False) and hasattr(x, "detach"):
        x = x.detach()  # torch refuses __cuda_array_interface__ on tensors needing grad
    desc = dict(x.__cuda_array_interface__)
    stream = desc.pop("stream", None)
    if stream not in _ORDERED_STREAMS:
        # The producer's stream may still be writing: wait for it, as the protocol asks.
        cuda.external_stream(stream).synchronize()
    return cuda.from_cuda_array_interface(desc, owner=x, sync=False)


def _info(a):
    """The :class:`_Info` of a device array (of any kind the backend accepts)."""
    if SIMULATOR:
        host = a._ary
        data_ptr, readonly = host.__array_interface__["data"]
        return _Info(data_ptr, host.shape, host.strides, host.dtype,
                     readonly or not host.flags.writeable, host)
    desc = a.__cuda_array_interface__
    data_ptr, readonly = desc["data"]
    return _Info(data_ptr or 0, desc["shape"], desc.get("strides"), desc["typestr"],
                 readonly, a)


def _view(ptr, shape, strides, dtype, owner):
    """A device array over existing memory: element 0 at ``ptr``, byte ``strides``."""
    if SIMULATOR:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        return FakeCUDAArray(np.asarray(_HostInterface(ptr, shape, strides, dtype, False,
                                                       owner)))
    desc = {"shape": tuple(shape), "strides": tuple(strides),
            "typestr": np.dtype(dtype).str, "data": (int(ptr), False), "version": 3}
    return cuda.from_cuda_array_interface(desc, owner=owner, sync=False)


def _stand_in(info):
    """A read-only numpy array with ``info``'s description; its memory is never read.

    numpy's view operations (transpose, flips, reshapes without copy) only do arithmetic
    on the pointer and strides, so :mod:`numba_quant._layout` can plan device layouts.
    """
    return np.asarray(_HostInterface(info.ptr, info.shape, info.strides, info.dtype, True,
                                     None))


def _from_stand_in(v, info, dtype=None):
    """The device view described by the stand-in view ``v`` of ``info``'s array."""
    return _view(v.__array_interface__["data"][0], v.shape, v.strides,
                 info.dtype if dtype is None else dtype, info.owner)


def _int_type(dtype):
    """The signed integer type of a float type's bits."""
    return np.dtype(np.int32 if np.dtype(dtype).itemsize == 4 else np.int64)


@functools.lru_cache(maxsize=None)
def _key_constants(dtype):
    """``(mask, inf_bits)`` for a float type, in the integer type of its bits: the bits
    below the sign, and the bits of +inf (also its key)."""
    itype = _int_type(dtype)
    return itype.type(np.iinfo(itype).max), np.array(np.inf, dtype).view(itype)[()]


def _flat(info):
    """``(flat, offset, strides)``: a 1-D device array over the memory of ``info``'s array
    starting at its lowest element, the position of element 0, and strides in elements."""
    itemsize = info.dtype.itemsize
    shape = info.shape or (1,)
    strides = info.strides or (itemsize,)
    if any(s % itemsize for s in strides):
        raise ValueError(f"device array strides {info.strides} are not multiples of the "
                         f"item size {itemsize}")
    el_strides = tuple(s // itemsize for s in strides)
    low = sum((n - 1) * s for n, s in zip(shape, el_strides) if s < 0)
    high = sum((n - 1) * s for n, s in zip(shape, el_strides) if s > 0)
    flat = _view(info.ptr + low * itemsize, (high - low + 1,), (itemsize,), info.dtype,
                 info.owner)
    return flat, -low, el_strides


def _copy(src_info, dst_info, shape=None, src_strides=None):
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
        src = _Info(src_info.ptr, shape, src_strides, src_info.dtype, True, src_info.owner)
    src_flat, src_off, src_el = _flat(src)
    dst_flat, dst_off, dst_el = _flat(dst_info)
    full = tuple(shape) or (1,)
    blocks, threads = _grid(n)
    kernels.copy_strided[blocks, threads](src_flat, src_off, src_el, dst_flat, dst_off,
                                          dst_el, full)


def _contiguous_copy(info, dtype=None, axes=None):
    """A new C-contiguous device array with ``info``'s values (cast to ``dtype``), its
    axes in the order ``axes`` (default: unchanged)."""
    shape, strides = info.shape, info.strides
    if axes is not None:
        shape = tuple(info.shape[a] for a in axes)
        strides = tuple(info.strides[a] for a in axes)
    out = cuda.device_array(shape, info.dtype if dtype is None else dtype)
    _copy(info, _info(out), shape, strides)
    return out


# --------------------------------------------------------------------------- interface
def as_array(x):
    """``x`` as a float32/float64 device array (float16 becomes a float32 copy)."""
    d = _device(x)
    dtype = _checks.compute_dtype(d.dtype)
    if not d.dtype.isnative:
        raise TypeError(f"device arrays must have the machine's byte order; got {d.dtype}")
    if d.dtype != dtype:
        d = _contiguous_copy(_info(d), dtype)
    return d


def as_params(values, dtype):
    """Scale or zero point values (host): kept on the host as a 1-D array of ``dtype``.

    :func:`quantize_map` turns them into per-channel divisors and offsets on the host and
    sends those to the device in one copy.
    """
    return np.ascontiguousarray(np.asarray(values, dtype=dtype).reshape(-1))


def as_output(out):
    """A caller's ``out`` as a device array over the same memory, checked writable."""
    d = _device(out)
    info = _info(d)
    if info.readonly:
        raise ValueError("out is read-only")
    if not d.dtype.isnative:
        raise TypeError(f"out must have the machine's byte order; got {d.dtype}")
    return d


def as_codes(q, dtype):
    """Codes of any real type as a device array of the float ``dtype``."""
    d = _device(q)
    if d.dtype.kind not in "fiu":
        raise TypeError(f"codes must be integers or floats; got dtype {d.dtype}")
    if not d.dtype.isnative:
        raise TypeError(f"device arrays must have the machine's byte order; got {d.dtype}")
    if d.dtype == dtype:
        return d
    return _contiguous_copy(_info(d), dtype)


def as_state(a, dtype, name):
    """A caller's moving_max/moving_min as a 1-D device view, checked (updated in place)."""
    d = _device(a)
    if d.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} like the computation; got {d.dtype}")
    info = _info(d)
    if info.readonly:
        raise ValueError(f"{name} is read-only but is updated in place")
    if d.size == 0:
        raise ValueError(f"{name} is empty")
    try:
        flat = np.reshape(_stand_in(info), -1, copy=False)
    except ValueError:
        raise ValueError(f"{name} must be contiguous: it is updated in place") from None
    return _from_stand_in(flat, info)


def from_host(a, like):
    """A host array copied to the device, in the caller's array type where that is safe.

    CuPy in gives CuPy, anything else a Numba device array (a torch tensor's dtype is not
    a numpy dtype, which the observers' state checks need).
    """
    d = cuda.to_device(np.ascontiguousarray(a))
    if type(like).__module__.split(".")[0] == "cupy":
        return wrap(d, like)
    return d


def to_host(a):
    """Any device array (Numba, CuPy, torch) as a numpy array."""
    kind = _kind(a)
    if kind == "cupy":
        return a.get()  # (CuPy's own copy: no conversion to a Numba array first)
    if kind == "torch":
        return a.detach().cpu().numpy()
    d = _device(a)
    info = _info(d)
    if info.strides != _c_strides(info.shape, info.dtype.itemsize) and d.size > 1:
        d = _contiguous_copy(info)
    return np.asarray(d.copy_to_host())


def _kind(a):
    """The library an array comes from: "cupy", "torch", "numba", ..."""
    return type(a).__module__.split(".")[0]


def wrap(a, like):
    """Results in the caller's array type: CuPy, torch or Numba (no copy)."""
    kind = _kind(like)
    if kind == "cupy":
        import cupy
        return cupy.asarray(a)
    if kind == "torch":
        import torch
        return torch.as_tensor(a, device=like.device)
    return a


def empty(shape, dtype, like):
    """A new device array in ``like``'s array type (CuPy and torch allocate from their
    memory pools, much faster than a fresh device allocation); else a Numba one."""
    kind = _kind(like)
    if kind == "cupy":
        import cupy
        return cupy.empty(tuple(shape), dtype)
    if kind == "torch":
        import torch
        torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
        return torch.empty(tuple(shape), dtype=torch_dtype, device=like.device)
    return cuda.device_array(tuple(shape), dtype)


def _reduction_view(x, axis, dtype=None):
    """An ``(outer, channels, inner)`` device view of ``x`` (a copy if no view exists),
    read as ``dtype`` (same item size)."""
    info = _info(x)
    views = aligned_views((_stand_in(info),), axis)
    if views is not None:
        return _from_stand_in(views[0], info, dtype)
    # No strided view: a contiguous copy with the channel axis first.
    axes = None if axis is None else [axis] + [a for a in range(len(info.shape)) if a != axis]
    copy = _contiguous_copy(info, axes=axes)
    n_channels = 1 if axis is None else info.shape[axis]
    copy_info = _info(copy)
    shape = (1, n_channels, x.size // n_channels)
    itemsize = info.dtype.itemsize
    return _view(copy_info.ptr, shape, (x.size * itemsize, shape[2] * itemsize, itemsize),
                 info.dtype if dtype is None else dtype, copy)


def _plan_minmax(n_outer, n_channels, n_inner, unit_stride=False):
    """Which reduction kernel runs, and its arguments after the data ones.

    ``unit_stride``: the inner axis is contiguous (a ``(1, 1, n)`` view of such data
    goes to the flat kernel).
    """
    threads = _threads()
    max_blocks = int(_tuning.LAUNCH["max_blocks"])
    if n_outer == 1 and n_channels == 1 and unit_stride:
        blocks, threads = _grid(n_inner, _tuning.UNROLL * _tuning.MIN_PER_THREAD)
        return kernels.minmax_flat, blocks, threads, ()
    if n_inner >= min(_tuning.WARP, threads):
        group = min(threads, 1 << (n_inner.bit_length() - 1))
        per_block = threads // group
        n_cgroups = -(-n_channels // per_block)
        pieces = max(1, min(-(-max_blocks // n_cgroups),
                            n_outer * n_inner // (group * _tuning.MIN_PER_THREAD)))
        split_outer = n_outer >= pieces
        if not split_outer:
            pieces = max(1, min(pieces, n_inner // group))
        blocks = min(max_blocks, n_cgroups * pieces)
        return kernels.minmax_rows, blocks, threads, (group, pieces, split_outer)
    width = n_channels * n_inner
    if width <= threads:
        rows_per, chunks = threads // width, 1
    else:
        rows_per, chunks = 1, -(-width // threads)
    pieces = max(1, min(-(-max_blocks // chunks),
                        n_outer // (rows_per * _tuning.MIN_PER_THREAD)))
    if pieces == 1 and n_channels >= threads:
        # Enough channels to occupy the GPU one thread each, and no split of the outer
        # axis to gain: reduce and settle each channel in one thread.
        blocks, threads = _grid(n_channels)
        return kernels.minmax_each, blocks, threads, ()
    blocks = min(max_blocks, chunks * pieces)
    return kernels.minmax_cols, blocks, threads, (rows_per, chunks, pieces)


class _Scratch:
    """What the reductions keep between calls: a ``(2, KEPT_KEYS)`` int64 key array at
    its start values, and the status word in host-mapped memory (read after a sync
    without a copy)."""

    def __init__(self):
        keys = np.empty((2, _tuning.KEPT_KEYS), np.int64)
        keys[0] = kernels.START_LO
        keys[1] = kernels.START_HI
        self.keys = cuda.to_device(keys)
        self.status = cuda.mapped_array(1, np.int32)
        self.status[0] = ref.OK


_scratch = {}  # device id -> _Scratch
# One reduction at a time: they share the kept keys and the status word.
_SCRATCH_LOCK = threading.Lock()


def _reduce(x, axis, omit, what, scheme=0, bits=0, like=None):
    """``(out, status)``: per-channel results of ``x`` along ``axis`` (None: the whole
    array) as ``out[0]``/``out[1]`` (min and max, or scale and zero point: see
    ``kernels.MINMAX``/``kernels.QPARAMS``), and the reduction's status.  ``out`` is in
    ``like``'s array type (default: Numba)."""
    dtype = np.dtype(x.dtype)
    x3 = _reduction_view(x, axis, _int_type(dtype))
    n_outer, n_channels, n_inner = (int(n) for n in x3.shape)
    mask, inf_bits = _key_constants(dtype)
    out = empty((2, n_channels), dtype, like)
    out_device = _device(out)
    settle = (bool(omit), mask, inf_bits, dtype.type(0), what, int(scheme), int(bits),
              out_device)
    unit_stride = x3.strides[2] == x3.dtype.itemsize
    kernel, blocks, threads, plan = _plan_minmax(n_outer, n_channels, n_inner, unit_stride)
    with _SCRATCH_LOCK:
        device = 0 if SIMULATOR else cuda.get_current_device().id
        scratch = _scratch.get(device)
        if scratch is None:
            scratch = _scratch[device] = _Scratch()
        try:
            if kernel is kernels.minmax_each:
                kernel[blocks, threads](x3, *settle, scratch.status)
            else:
                keys = scratch.keys
                # (the kept array's own length: KEPT_KEYS may have changed since)
                if n_channels > min(_tuning.KEPT_KEYS, keys.shape[1]):
                    keys = cuda.device_array((2, n_channels), np.int64)
                    kernels.fill_keys[_small_grid(n_channels)](keys)
                kernel[blocks, threads](x3, bool(omit), mask, inf_bits, keys, *plan)
                kernels.settle_keys[_small_grid(n_channels)](keys, *settle, scratch.status)
            cuda.synchronize()
        except BaseException:
            _scratch.pop(device, None)  # the kept keys may be half used: start afresh
            raise
        status = int(scratch.status[0])
        scratch.status[0] = ref.OK
    return out, status


def channel_minmax(x, axis, omit):
    """Per-channel ``(lo, hi, status)`` of ``x`` along ``axis`` (None: the whole array)."""
    out, status = _reduce(x, axis, omit, kernels.MINMAX)
    return out[0], out[1], status


def observe(x, axis, omit, scheme, bits, like=None):
    """``min_max_observer``'s per-channel ``(scale, zero_point, status)``, the scale and
    zero point computed where the reduction ends (no extra launch), in ``like``'s array
    type."""
    out, status = _reduce(x, axis, omit, kernels.QPARAMS, scheme, bits, like)
    return out[0], out[1], status


def count_nonfinite(x, nan_only=False):
    """Number of NaN (and, unless ``nan_only``, infinite) elements of ``x``."""
    x3 = _reduction_view(x, None, _int_type(x.dtype))
    mask, inf_bits = _key_constants(np.dtype(x.dtype))
    count = cuda.to_device(np.zeros(1, np.int64))
    blocks, threads = _grid(x3.size, _tuning.UNROLL)
    kernels.count_nonfinite[blocks, threads](x3, bool(nan_only), mask, inf_bits, count)
    return int(count.copy_to_host()[0])


def moving_observe(lo, hi, moving_max, moving_min, update, momentum, scheme, bits):
    """The moving-average observer's step per channel; the state is updated in place."""
    n = moving_max.size
    scale = cuda.device_array(n, moving_max.dtype)
    zero_point = cuda.device_array(n, moving_max.dtype)
    blocks, threads = _small_grid(n)
    kernels.moving_observe[blocks, threads](lo, hi, moving_max, moving_min, bool(update),
                                            np.float32(momentum), int(scheme), int(bits),
                                            scale, zero_point)
    return scale, zero_point


def quantize_map(x, scale, zero_point, scheme, bits, axis, what, out):
    """Write codes (``CODE``), fake-quantized values (``FAKE``) or decoded codes
    (``DECODE``) of ``x`` to ``out`` (same shape; may be ``x`` itself).

    ``scale`` and ``zero_point`` are host arrays (see :func:`as_params`): the host's
    compiled ``code_params`` makes the per-channel divisors and offsets, which go to the
    device in one copy.
    """
    from numba_quant import _cpu_kernels

    dtype = np.dtype(x.dtype)
    divisor, offset, lowest, highest = _cpu_kernels.code_params(scale, zero_point,
                                                                int(scheme), int(bits))
    params = cuda.to_device(np.stack((divisor, offset)))
    # (numba hands float32 scalars back as Python floats: the kernel needs x's type)
    _map(x, out, params, dtype.type(lowest), dtype.type(highest), int(what), axis)
    return out


def _extent(info):
    """Byte range ``[start, stop)`` that ``info``'s elements occupy."""
    start = stop = info.ptr
    for n, s in zip(info.shape, info.strides):
        if n > 1:
            if s < 0:
                start += (n - 1) * s
            else:
                stop += (n - 1) * s
    return start, stop + info.dtype.itemsize


def _overlaps_differently(x_info, out_info):
    """True when ``out`` shares memory with ``x`` other than element for element."""
    x_start, x_stop = _extent(x_info)
    out_start, out_stop = _extent(out_info)
    if x_stop <= out_start or out_stop <= x_start:
        return False
    return not (x_info.ptr == out_info.ptr and x_info.strides == out_info.strides
                and x_info.dtype.itemsize == out_info.dtype.itemsize)


def _map(x, out, params, lowest, highest, what, axis):
    x_info, out_info = _info(x), _info(out)
    if x.size and _overlaps_differently(x_info, out_info):
        # As numpy's ufuncs do: the result is as if all of x were read first.
        buffer = cuda.device_array(x_info.shape, out_info.dtype)
        _map(x, buffer, params, lowest, highest, what, axis)
        _copy(_info(buffer), out_info)
        return
    views = aligned_views((_stand_in(x_info), _stand_in(out_info)), axis)
    if views is None:
        # No common strided view: map a contiguous copy into a buffer, then scatter it.
        source = _contiguous_copy(x_info)
        buffer = cuda.device_array(x_info.shape, out_info.dtype)
        _map(source, buffer, params, lowest, highest, what, axis)
        _copy(_info(buffer), out_info)
        return
    x3 = _from_stand_in(views[0], x_info)
    out3 = _from_stand_in(views[1], out_info)
    blocks, threads = _grid(x3.size, _tuning.UNROLL)
    kernels.map_values[blocks, threads](x3, out3, params, lowest, highest, what)
