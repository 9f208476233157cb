"""16-bit float device arrays (and ``dequantize``'s codes) converted a chunk at a time.

The GPU side of :mod:`numba_quant._host.chunks`: float16 and bfloat16 device arrays are
computed in float32, and ``dequantize`` computes its codes in the float type of the
result.  An input of more than ``_tuning.DEVICE_WIDEN_CHUNK`` elements is kept in its
own memory (:class:`DeviceChunkedInput`) and converted that many elements at a time into
one reused float32 buffer on the device; smaller ones are converted whole, as before.
The chunks are planned, and their results combined, by the same code as on the host
(``_cpu_chunks``: boxes in memory order, exact combinations), on host stand-ins that
describe the device memory; each chunk goes through the kernels of a float32 input
(:mod:`numba_quant._cuda.channels`), so no other kernel is compiled for 16-bit inputs but the
conversion.  Extra device memory: the buffer, and per chunk its channels' min and max.

float16 is converted by the strided copy kernel (a cast); bfloat16, which has no CUDA
type in Numba, is read as its ``uint16`` bit patterns and widened by
:func:`widen_bfloat16` (the bits moved to the top of a float32: exact).  torch describes
a bfloat16 tensor as ``"<V2"`` in its ``__cuda_array_interface__``; ``ml_dtypes.bfloat16``
device arrays carry their own dtype.
"""
import numpy as np
from numba import cuda

from numba_quant._host import codes
from numba_quant._host import chunks as host_chunks
from numba_quant._cuda import scratch
from numba_quant._cuda import arrays
from numba_quant._cuda import kernels
from numba_quant._cuda import launch
from numba_quant._host import tuning as _tuning
from numba_quant._reference.primitives import float_from_bits, narrow


# --------------------------------------------------------------------------- kernel
@cuda.jit
def widen_bfloat16(src, src_offset, src_strides, dst, shape):
    """``dst[k]`` = the float32 value of the bfloat16 bit pattern at position ``k`` (in
    C order over ``shape``) of a strided N-D view of ``src``.

    ``src`` is a 1-D ``uint16`` array over the view's memory; offset and strides are in
    elements, every position non-negative (see ``_cuda_arrays._flat``); ``dst`` is 1-D
    and contiguous.
    """
    for k in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        rest = k
        s = src_offset
        for d in range(len(shape) - 1, -1, -1):
            q = rest // shape[d]
            s += (rest - q * shape[d]) * src_strides[d]
            rest = q
        bits = narrow(np.uint32(src[s]) << np.uint32(16), np.int32(0))
        dst[k] = float_from_bits(bits, np.float32(0))


def _widen_into(src_info, dst):
    """The bfloat16 values whose bits ``src_info`` describes into the contiguous ``dst``
    (a float32 device array of the same shape)."""
    n = int(np.prod(src_info.shape, dtype=np.int64))
    if n == 0:
        return
    flat, offset, strides = arrays._flat(src_info)
    blocks, threads = launch.grid(n)
    widen_bfloat16[blocks, threads](flat, offset, strides, dst.reshape(n),
                                    tuple(src_info.shape) or (1,))


# --------------------------------------------------------------------------- inputs
def bfloat16_bits(x, d):
    """The ``uint16`` bit patterns of a bfloat16 device array (``d``: ``x`` as a Numba
    device array), over its memory; None when ``x`` is not bfloat16."""
    dtype = np.dtype(d.dtype)
    if dtype.itemsize != 2 or dtype.kind != "V":
        return None
    if dtype.name != "bfloat16" and str(getattr(x, "dtype", "")) != "torch.bfloat16":
        return None
    d_info = arrays.info(d)
    return arrays.view(d_info.ptr, d_info.shape, d_info.strides, np.uint16, d_info.owner)


def _convert(src, bfloat16, dst):
    """The values of the device array ``src`` (``bfloat16``: its bit patterns) into the
    C-contiguous device array ``dst`` of the same shape."""
    if bfloat16:
        _widen_into(arrays.info(src), dst)
    else:
        arrays.copy(arrays.info(src), arrays.info(dst))


def converted(raw, dtype, bfloat16=False):
    """The values of the device array ``raw`` as ``dtype``: converted whole (C order)
    up to ``_tuning.DEVICE_WIDEN_CHUNK`` elements, a :class:`DeviceChunkedInput` over it
    otherwise."""
    if raw.size <= _tuning.DEVICE_WIDEN_CHUNK:
        out = cuda.device_array(raw.shape, dtype)
        _convert(raw, bfloat16, out)
        return out
    return DeviceChunkedInput(raw, dtype, bfloat16)


class DeviceChunkedInput(host_chunks.ChunkedInput):
    """A device input read as values of ``dtype`` a chunk at a time (see the module).

    ``raw`` is a Numba device array: float16 data, codes, or with ``bfloat16`` the
    ``uint16`` bit patterns.  Code that needs one device array of the values (the block
    kernels of ``block_size=``) gets them converted whole, once (:meth:`dense`, through
    :func:`numba_quant._cuda.arrays.device`); ``np.asarray`` gives them on the host.
    """

    def dense(self):
        if self._dense is None:
            self._dense = cuda.device_array(self.shape, self.dtype)
            _convert(self.raw, self.bfloat16, self._dense)
        return self._dense

    def __array__(self, dtype=None, copy=None):
        a = arrays.to_host(self.dense())
        return a if dtype is None else a.astype(dtype, copy=False)

    def __getattr__(self, name):
        if name.startswith("_"):   # (no device interface: arrays.device converts)
            raise AttributeError(name)
        return getattr(self.dense(), name)

    # The hooks of the shared chunk loops.
    def chunk_limit(self):
        return _tuning.DEVICE_WIDEN_CHUNK

    def planned(self, a):
        return arrays.stand_in(arrays.info(arrays.device(a)))

    def storage(self, view, of):
        return arrays.from_stand_in(view, arrays.info(arrays.device(of)))

    def new_buffer(self, n):
        return cuda.device_array(n, self.dtype)

    def convert(self, part, values):
        # (the dtype of ``raw``: ``part`` may also describe a copy of it)
        _convert(arrays.from_stand_in(part, arrays.info(self.raw)), self.bfloat16, values)

    def readable(self, out):
        raw_info = arrays.info(self.raw)
        if arrays.overlaps_differently(raw_info, arrays.info(arrays.device(out))):
            return arrays.contiguous_copy(raw_info)
        return self.raw

    def channel_params(self, params, channels):
        # The constants of the chunk's channels, contiguous (the map kernel's signature
        # stays that of a whole input): sliced on the host, where they are small.
        if getattr(self, "_params", (None,))[0] is not params:
            self._params = (params, params.params.copy_to_host())
        part = np.ascontiguousarray(self._params[1][:, channels])
        return scratch.CodeParams(cuda.to_device(part), params.scheme, params.bits)


# --------------------------------------------------------------------------- the interface
def _host_ranges(reduce):
    """One chunk's ``(lo, hi, status)`` on the host (combined there), by ``reduce`` (the
    backend's ``channel_minmax`` of a float32 device array)."""
    def reduce_chunk(values, axis, omit):
        lo, hi, status = reduce(values, axis, omit)
        return lo.copy_to_host(), hi.copy_to_host(), status
    return reduce_chunk


def channel_minmax(x, axis, omit, reduce):
    """``channel_minmax`` of a :class:`DeviceChunkedInput`, each chunk by ``reduce``:
    device arrays."""
    lo, hi, status = host_chunks.channel_minmax(x, axis, omit, _host_ranges(reduce))
    return cuda.to_device(lo), cuda.to_device(hi), status


def observe(x, axis, omit, scheme, bits, like, reduce):
    """``observe`` of a :class:`DeviceChunkedInput`: the chunks' combined min and max
    (each chunk by ``reduce``), then the formulas by the kernel that ends every reduction
    (``settle_keys``, given the keys of those min and max)."""
    lo, hi, status = host_chunks.channel_minmax(x, axis, omit, _host_ranges(reduce))
    if status != codes.OK:
        return None, None, status
    dtype = np.dtype(x.dtype)
    mask, inf_bits = scratch.key_constants(dtype)
    keys = np.empty((2, lo.size), np.int64)
    for row, values in enumerate((lo, hi)):
        key = values.view(scratch.int_type(dtype)).astype(np.int64)
        keys[row] = np.where(key < 0, key ^ np.int64(mask), key)
    out = arrays.empty((2, lo.size), dtype, like)
    blocks, threads = launch.small_grid(lo.size)
    with scratch.LOCK:
        _, kept = scratch.current()
        kernels.settle_keys[blocks, threads](cuda.to_device(keys), bool(omit), mask,
                                             inf_bits, dtype.type(0), kernels.QPARAMS,
                                             int(scheme), int(bits), arrays.device(out),
                                             kept.status)
        cuda.synchronize()
        scratch.take_status(kept)   # (OK: the range had no problem)
    return out[0], out[1], status


def count_nonfinite(x, nan_only, count):
    return host_chunks.count_nonfinite(x, nan_only, count)


def quantize_map(x, params, axis, what, out, apply):
    return host_chunks.quantize_map(x, params, axis, what, out, apply)
