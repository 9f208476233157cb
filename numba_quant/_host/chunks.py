"""Inputs converted a chunk at a time: 16-bit floats, and the codes of ``dequantize``.

The OneFlow functions compute float16 and bfloat16 input in float32 (exactly: every such
value is a float32 value), and ``dequantize`` computes its codes (integers, or floats of
another type) in the float type of the result.  Rather than converting the whole input
first, which for a 16-bit input costs a float32 copy twice its size, the host backend
keeps such an input, when it has more than ``_tuning.WIDEN_CHUNK`` elements, in its own
storage (:class:`ChunkedInput`) and converts it that many elements at a time into one
reused buffer (smaller inputs are converted whole, as before); each chunk goes
through the functions of :mod:`numba_quant._cpu.channels` (the same compiled kernels as a float32
or float64 input), and the chunks' results are combined exactly:

* min and max per channel: the min of the chunks' mins, the max of their maxima;
* status: under ``nonfinite="raise"`` the first chunk with a non-finite value decides
  (only the status is used then); under ``"omit"`` a channel is empty when no chunk found
  a finite value in it (its min stays +inf, its max -inf);
* counts of non-finite values: their sum;
* element-wise maps: each chunk is written to its own part of the output.

Chunks are boxes of the input (leading axes one index at a time, one axis cut into runs,
the trailing axes whole) taken in the memory order of the input (reductions) or of the
output (maps), converted into a C-contiguous buffer, so the kernels always see
C-contiguous chunks.  Since the combinations are exact and the
per-element maps do not depend on the chunk, results are those of the whole input
converted at once.

The GPU backend reads large 16-bit device arrays the same way: its
:class:`~numba_quant._cuda.chunks.DeviceChunkedInput` subclasses :class:`ChunkedInput` and
gives the loops below device storage (planned on host stand-ins), so the planning and the
combinations are this module's on both sides.

Kept free of numba: the caller passes the functions to apply to each chunk.
"""
import numpy as np

from numba_quant._host import codes
from numba_quant._host import tuning as _tuning
from numba_quant._host.storage import bfloat16_to_float32


class ChunkedInput:
    """An input of the host backend kept in its own storage, read as values of the
    compute type ``dtype`` (float32 or float64) a chunk at a time.

    ``raw`` holds the data as it was given (any strides, any byte order): float16 data,
    integer or float codes for ``dequantize``, or with ``bfloat16`` the ``uint16`` bit
    patterns of bfloat16 data (an ``ml_dtypes.bfloat16`` array or a torch tensor viewed
    as integers, no copy; ``dtype`` is then float32).  ``shape``, ``ndim``, ``size`` and
    ``dtype`` are those of the values.

    The reductions and maps of :mod:`numba_quant._cpu.channels` read it chunk by chunk.  Any other
    use (``np.asarray``, or an ndarray attribute such as ``strides``) converts it whole,
    once (:meth:`dense`), as code that needs one array of the values expects.
    """

    def __init__(self, raw, dtype, bfloat16=False):
        self.raw = raw
        self.dtype = np.dtype(dtype)
        self.bfloat16 = bool(bfloat16)
        self.shape = raw.shape
        self.ndim = raw.ndim
        self.size = raw.size
        self._dense = None

    def dense(self):
        """All values as one array (in the input's memory order), converted once."""
        if self._dense is None:
            out = np.empty_like(self.raw, dtype=self.dtype)
            _convert(self.raw, self.bfloat16, out)
            self._dense = out
        return self._dense

    def __array__(self, dtype=None, copy=None):
        a = self.dense()
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def __getattr__(self, name):
        # Only reached for names not set above: ndarray attributes of the whole values.
        # Names that ndarray lacks (``__cuda_array_interface__``, probed by the
        # dispatcher) fail at once, without converting anything.
        if name.startswith("_dense") or not hasattr(np.ndarray, name):
            raise AttributeError(name)
        return getattr(self.dense(), name)

    def __repr__(self):
        stored = "bfloat16" if self.bfloat16 else self.raw.dtype.name
        return f"{type(self).__name__}({stored} as {self.dtype.name}, shape={self.shape})"

    # What the chunk loops below need from the storage; the GPU backend's subclass
    # (:mod:`numba_quant._cuda.chunks`) gives the same for device memory, so both sides
    # share the planning and the combinations.
    def chunk_limit(self):
        """Elements per chunk."""
        return _tuning.WIDEN_CHUNK

    def planned(self, a):
        """The array that chunks of ``a`` (the raw data or an output) are planned on,
        by numpy's view operations (here ``a`` itself)."""
        return a

    def storage(self, view, of):
        """The array over the memory that the planned ``view`` of ``of`` describes."""
        return view

    def new_buffer(self, n):
        """The buffer that chunks are converted into (reused)."""
        return np.empty(n, self.dtype)

    def convert(self, part, values):
        """The values of ``part`` (a planned box of the raw data) into ``values``."""
        _convert(part, self.bfloat16, values)

    def readable(self, out):
        """The raw data, or a copy of it when writing ``out`` could change input not yet
        read (it shares memory with the input other than element for element)."""
        raw = self.raw
        if np.may_share_memory(raw, out) and not _same_place(raw, out):
            return raw.copy(order="K")
        return raw

    def channel_params(self, params, channels):
        """The constants of :func:`quantize_map` for the channels ``channels`` (a slice)."""
        divisor, offset, lowest, highest = params
        return divisor[channels], offset[channels], lowest, highest


def _convert(raw, bfloat16, out):
    """``raw``'s values into ``out`` (same shape): exact for float16 and bfloat16; as
    ``astype`` for other types."""
    if bfloat16:
        bfloat16_to_float32(raw, out=out)
    else:
        np.copyto(out, raw, casting="unsafe")


def converted(raw, dtype, bfloat16=False):
    """The values of ``raw`` (``bfloat16``: its bit patterns) as ``dtype``: converted
    whole, in its memory order, when it has at most ``_tuning.WIDEN_CHUNK`` elements (no
    more memory than one chunk's buffer, and the kernels see the whole array as before);
    a :class:`ChunkedInput` otherwise."""
    if raw.size <= _tuning.WIDEN_CHUNK:
        out = np.empty_like(raw, dtype=dtype)
        _convert(raw, bfloat16, out)
        return out
    return ChunkedInput(raw, dtype, bfloat16)


def float32_values(x):
    """The float32 values of ``x`` (a numpy array) when it is float16 or
    ``ml_dtypes.bfloat16`` (see :func:`converted`); None for any other dtype."""
    dtype = x.dtype
    if dtype.kind == "f" and dtype.itemsize == 2:
        return converted(x, np.float32)
    if dtype.kind == "V" and dtype.name == "bfloat16" and dtype.itemsize == 2:
        return converted(x.view(np.uint16), np.float32, bfloat16=True)
    return None


def _memory_order(a):
    """The axes of ``a`` from the largest stride to the smallest (ties keep their order)."""
    return sorted(range(a.ndim), key=lambda axis: -abs(a.strides[axis]))


def _boxes(shape, limit):
    """Tuples of slices cutting an array of ``shape`` into boxes of at most ``limit``
    elements, in C order: leading axes one index at a time, one axis cut into runs of
    about equal length, the trailing axes whole (one box when everything fits)."""
    n = len(shape)
    cut = 0 if 0 in shape else n  # the axes from ``cut`` on are taken whole
    tail = 1
    while cut > 0 and tail * shape[cut - 1] <= limit:
        cut -= 1
        tail *= shape[cut]
    whole = (slice(None),) * (n - cut)
    if cut == 0:
        yield whole or (Ellipsis,)   # (of a 0-d array, ``a[()]`` is a scalar, not a view)
        return
    cut -= 1  # the axis cut into runs
    length = shape[cut]
    runs = -(-length // max(1, limit // tail))
    run = -(-length // runs)
    for lead in np.ndindex(*shape[:cut]):
        head = tuple(slice(i, i + 1) for i in lead)
        for start in range(0, length, run):
            yield head + (slice(start, min(start + run, length)),) + whole


class _Chunks:
    """The chunks of a :class:`ChunkedInput`: boxes of its raw data in the memory order
    of ``like`` (the raw data itself, or the output being written), each converted in
    one reused C-contiguous buffer.  (Planned on ``x.planned`` arrays: for device
    memory, host stand-ins with the same shape and strides.)"""

    def __init__(self, x, raw=None, like=None):
        raw = x.planned(x.raw if raw is None else raw)
        self.x = x
        self.order = _memory_order(raw if like is None else x.planned(like))
        self.raw = raw.transpose(self.order)
        self.limit = max(1, int(x.chunk_limit()))
        self.buffer = x.new_buffer(min(raw.size, self.limit))

    def axis(self, axis):
        """Where the input's ``axis`` is in the chunks (None stays None)."""
        return None if axis is None else self.order.index(axis)

    def transposed(self, a):
        """An array of the input's shape with its axes in the chunks' order."""
        return a.transpose(self.order)

    def __iter__(self):
        """``(box, values)``: each box (slices of the transposed input) and its values,
        a C-contiguous array valid until the next chunk."""
        for box in _boxes(self.raw.shape, self.limit):
            part = self.raw[box]
            values = self.buffer[:part.size].reshape(part.shape)
            self.x.convert(part, values)
            yield box, values


def _fold_min(lo, part):
    """``lo`` lowered to ``part`` where that is smaller, -0.0 below +0.0 (as the
    kernels order them; ``np.minimum`` keeps either zero)."""
    lower = (part < lo) | ((part == lo) & np.signbit(part))
    np.copyto(lo, part, where=lower)


def _fold_max(hi, part):
    """``hi`` raised to ``part`` where that is larger, +0.0 above -0.0."""
    higher = (part > hi) | ((part == hi) & ~np.signbit(part))
    np.copyto(hi, part, where=higher)


def channel_minmax(x, axis, omit, reduce):
    """Per-channel ``(lo, hi, status)`` of ``x`` along ``axis`` (None: the whole array),
    ``reduce(chunk, axis, omit)`` being the reduction of one chunk (host arrays: the
    combination runs here, on the host, for the GPU backend's chunks too).

    Under ``omit`` a channel without finite values keeps (+inf, -inf), as in the
    kernels; without it, the first chunk with a non-finite value ends the pass (its
    status is all that is used).
    """
    chunks = _Chunks(x)
    along = chunks.axis(axis)
    n_channels = 1 if axis is None or x.shape[axis] == 1 else x.shape[axis]
    lo = np.full(n_channels, np.inf, x.dtype)
    hi = np.full(n_channels, -np.inf, x.dtype)
    for box, values in chunks:
        part_lo, part_hi, status = reduce(values, along, omit)
        if status == codes.HAS_NONFINITE and not omit:
            return lo, hi, status
        where = slice(None) if n_channels == 1 else box[along]
        _fold_min(lo[where], part_lo)
        _fold_max(hi[where], part_hi)
    if omit and (lo > hi).any():
        return lo, hi, codes.EMPTY_CHANNEL
    return lo, hi, codes.OK


def count_nonfinite(x, nan_only, count):
    """The number of NaN (and, unless ``nan_only``, infinite) values of ``x``;
    ``count(chunk, nan_only)`` counts one chunk."""
    return sum(count(values, nan_only) for _, values in _Chunks(x))


def _same_place(a, b):
    """True when ``a`` and ``b`` have their elements at the same addresses."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.strides == b.strides and a.itemsize == b.itemsize)


def quantize_map(x, params, axis, what, out, map_chunk):
    """Write the map ``what`` of ``x`` into ``out`` (an array of its shape), chunk by
    chunk: ``map_chunk(chunk, params, axis, what, out_part)`` maps one chunk of values with
    ``params`` cut to the chunk's channels (per channel along ``axis``)."""
    # (Writing a chunk must not change input not yet read: see ChunkedInput.readable.
    # Element for element in place, each chunk is read before it is written.)
    raw = x.readable(out)
    # Chunks in the output's memory order: each part of it written is C-contiguous like
    # the chunk, as when a float32 input and its output share a layout.
    chunks = _Chunks(x, raw, like=out)
    along = chunks.axis(axis)
    target = chunks.transposed(x.planned(out))
    for box, values in chunks:
        part = params if along is None else x.channel_params(params, box[along])
        map_chunk(values, part, along, what, x.storage(target[box], out))
    return out
