"""``min_max_observer``: scale and zero point from an array's range."""
import numpy as np

from numba_quant._dispatch import blockwise as _blockwise
from numba_quant._host import checks as _checks
from numba_quant._host.blocks_plan import grid_shape
from numba_quant._dispatch import backend, is_dask
from numba_quant._dispatch.minmax import raise_for_status


def min_max_observer(x, quantization_formula="google", quantization_bit=8,
                     quantization_scheme="symmetric", per_layer_quantization=True, *,
                     axis=0, nonfinite="raise", block_size=None, out=None):
    """Scale and zero point from the minimum and maximum of an array.

    The formulas are OneFlow's ``nn.MinMaxObserver``; results equal OneFlow's by value.

    Parameters
    ----------
    x : array_like or GPU array
        float16, float32 or float64 data of any shape and strides.  numpy input runs on
        the CPU; an array with ``__cuda_array_interface__`` (CuPy, Numba, PyTorch CUDA)
        runs on its GPU and the results stay there, in the same array type.
    quantization_formula : {"google", "cambricon"}
        ``"google"`` gives a scale (and zero point); ``"cambricon"`` gives a power-of-two
        shift exponent ``floor(log2(amax)) - (bits - 2)`` in place of the scale.
    quantization_bit : int
        Bits per code, 2 to 16.
    quantization_scheme : {"symmetric", "affine"}
        Symmetric: ``scale = amax / (2**(bits-1) - 1)`` and zero point 0.  Affine:
        ``scale = (max - min) / (2**bits - 1)`` and ``zero_point = -rint(min / scale)``.
        Ignored by cambricon.
    per_layer_quantization : bool
        True: one scale for the whole array.  False: one per slice along ``axis``.
    axis : int, optional
        The channel axis for per-channel quantization (default 0; negative counts from
        the end).
    nonfinite : {"raise", "omit"}
        What to do with NaN and infinities: raise ``ValueError`` (default) or ignore them.
    block_size : tuple of int, optional
        One scale and zero point per block: one entry per axis of ``x``, each in
        ``[1, x.shape[axis]]``; an entry equal to the axis length takes the whole axis,
        one that does not divide it leaves a shorter last block.  The formulas are
        applied to each block's minimum and maximum.  Takes the place of
        ``per_layer_quantization`` (the default True gives way); with
        ``per_layer_quantization=False`` it must be the per-channel block of ``axis``
        (1 there, whole elsewhere).  A Dask array is rechunked so that no chunk
        boundary cuts a block (each boundary moved up to the next multiple of the
        block size along its axis), then observed chunk by chunk.
    out : (array, array), optional
        Where to write the scale and the zero point, as numpy's ``out=``: two different,
        writable arrays of the result's shape and dtype, on the input's side (numpy for
        numpy input, GPU arrays for GPU input); they are returned.  Reusing them saves
        allocating (and, for millions of channels, first touching) new results in every
        call.  Not for Dask arrays.

    Returns
    -------
    scale, zero_point : arrays
        With ``block_size``: shape ``ceil(x.shape / block_size)``, one value per block.
        Otherwise shape ``(1,)`` per layer or ``(channels,)`` per channel, in the input's float type
        (float32 for float16 input).  The zero point holds integer values.  A zero range
        gives scale 0 and zero point 0 (cambricon: shift 0).  For a Dask array, lazy
        Dask arrays (one chunk, of the input's chunk type): each chunk is reduced to
        per-channel (min, max, non-finite count), the partial results are merged in a
        tree and finished into the same values as the in-memory call.  The errors that
        depend on the values (non-finite input, a channel with no finite value) are then
        raised by ``.compute()``.

    Raises
    ------
    ValueError
        Unknown formula, scheme or policy; bits outside 2..16; an empty array or channel;
        non-finite values under ``nonfinite="raise"``; per-channel on a 0-d array; a
        block size of the wrong length, with entries outside ``[1, length]`` or against
        ``per_layer_quantization=False``; under ``nonfinite="omit"``, a block with no
        finite value (named by its index in the grid).
    TypeError
        Input that is not float16/32/64 (integers, bools, complex numbers); ``out`` that
        is not a pair of arrays, or of the wrong dtype, or given with a Dask array.
    ValueError
        ``out`` arrays of the wrong shape, read-only, on the other side from the input,
        or sharing memory.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> w = np.array([[-1.0, 0.5], [2.0, -0.25]], dtype=np.float32)
    >>> scale, zero_point = nq.min_max_observer(w)
    >>> scale * 127
    array([2.], dtype=float32)
    >>> nq.min_max_observer(w, per_layer_quantization=False, quantization_scheme="affine")
    (array([0.00588235, 0.00882353], dtype=float32), array([170.,  28.], dtype=float32))

    One scale per block of two columns (the last block, one column, is ragged):

    >>> x = np.array([[1.0, -2.0, 4.0], [0.5, 0.25, -8.0]], dtype=np.float32)
    >>> scale, zero_point = nq.min_max_observer(x, quantization_bit=4, block_size=(2, 2))
    >>> scale * 7
    array([[2., 8.]], dtype=float32)

    Results written into arrays kept between calls:

    >>> params = (np.empty(2, np.float32), np.empty(2, np.float32))
    >>> scale, zero_point = nq.min_max_observer(w, per_layer_quantization=False, out=params)
    >>> scale is params[0], scale * 127
    (True, array([1., 2.], dtype=float32))
    """
    scheme, bits, omit = _checks.observer_settings(quantization_formula, quantization_scheme,
                                                   quantization_bit, nonfinite)
    if out is not None:
        return _observe_into(out, x, scheme, bits, omit, per_layer_quantization, axis,
                             block_size)
    if block_size is not None and is_dask(x):
        from numba_quant._dask import blocks as _dask_blocks
        sizes = _checks.observer_block_size(block_size, x.shape, per_layer_quantization,
                                            axis)
        _checks.compute_dtype(x.dtype)
        return _dask_blocks.min_max_observer(x, sizes, omit, scheme, bits)
    if block_size is not None:
        ops = backend(x)
        data = ops.channels.as_array(x)
        sizes = _checks.observer_block_size(block_size, data.shape, per_layer_quantization,
                                            axis)
        scale, zero_point = _blockwise.observe(ops, x, data, sizes, omit, scheme, bits)
        return ops.wrap(scale, x), ops.wrap(zero_point, x)
    if type(x) is np.ndarray and per_layer_quantization:
        # The common case, per layer on a numpy array, in one backend step (a few
        # microseconds per call matter for small layers); None: the general route below.
        result = backend(x).channels.observe_layer(x, omit, scheme, bits)
        if result is not None:
            return result
    if is_dask(x):
        from numba_quant._dask import channels as _dask
        axis = _checks.channel_axis(axis, x.ndim, per_layer_quantization)
        return _dask.min_max_observer(x, axis, omit, scheme, bits)
    ops = backend(x)
    data = ops.channels.as_array(x)
    axis = _checks.channel_axis(axis, data.ndim, per_layer_quantization)
    _checks.not_empty(data.shape, axis)
    scale, zero_point, status = ops.channels.observe(data, axis, omit, scheme, bits, like=x)
    raise_for_status(status, ops, data, axis, omit)
    return ops.wrap(scale, x), ops.wrap(zero_point, x)


def _observe_into(out, x, scheme, bits, omit, per_layer, axis, block_size):
    """:func:`min_max_observer` with ``out=(scale, zero_point)``: the results written
    there (directly by the kernels where they can), and ``out`` returned."""
    if is_dask(x):
        _checks.dask_no_out(out)
    targets = _checks.observer_out(out)
    ops = backend(x)
    data = ops.channels.as_array(x)
    if block_size is not None:
        sizes = _checks.observer_block_size(block_size, data.shape, per_layer, axis)
        shape = grid_shape(data.shape, sizes)
    else:
        axis = _checks.channel_axis(axis, data.ndim, per_layer)
        _checks.not_empty(data.shape, axis)
        shape = (1,) if axis is None else (data.shape[axis],)
    dtype = _checks.compute_dtype(data.dtype)
    views = []
    for k, target in enumerate(targets):
        views.append(ops.output_view(target, shape, dtype, f"out[{k}]"))
    if ops.channels.shares_memory(*views):
        raise _checks.outputs_overlap()
    if block_size is not None:
        results = _blockwise.observe(ops, x, data, sizes, omit, scheme, bits)
    else:
        scale, zero_point, status = ops.channels.observe(data, axis, omit, scheme, bits, like=x,
                                                out=views)
        raise_for_status(status, ops, data, axis, omit)
        results = (scale, zero_point)
    for view, result in zip(views, results):
        if result is not view:
            ops.channels.store(view, result)
    return targets


class MinMaxObserver:
    """Callable holder of ``min_max_observer`` settings (OneFlow's ``nn.MinMaxObserver``).

    The settings are checked when the observer is made and kept as attributes of the
    same names as :func:`min_max_observer`'s arguments.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> observer = nq.MinMaxObserver(quantization_bit=4, per_layer_quantization=False)
    >>> observer
    MinMaxObserver(quantization_formula='google', quantization_bit=4, quantization_scheme='symmetric', per_layer_quantization=False, axis=0, nonfinite='raise')
    >>> scale, zero_point = observer(np.array([[1.0, -7.0], [0.5, 3.5]]))
    >>> scale
    array([1. , 0.5])
    >>> blocks = nq.MinMaxObserver(quantization_bit=4, block_size=(1, 2))
    >>> blocks(np.array([[1.0, -7.0, 0.5, 3.5]]))[0]
    array([[1. , 0.5]])
    """

    _settings = ("quantization_formula", "quantization_bit", "quantization_scheme",
                 "per_layer_quantization", "axis", "nonfinite", "block_size")

    def __init__(self, quantization_formula="google", quantization_bit=8,
                 quantization_scheme="symmetric", per_layer_quantization=True, *, axis=0,
                 nonfinite="raise", block_size=None):
        settings, _ = _checks.observer_class_settings(
            quantization_formula, quantization_bit, quantization_scheme,
            per_layer_quantization, axis, nonfinite)
        vars(self).update(settings)
        self.block_size = _checks.block_size_setting(block_size)

    def __call__(self, x):
        """Scale and zero point of ``x`` (see :func:`min_max_observer`)."""
        return min_max_observer(x, self.quantization_formula, self.quantization_bit,
                                self.quantization_scheme, self.per_layer_quantization,
                                axis=self.axis, nonfinite=self.nonfinite,
                                block_size=self.block_size)

    def __repr__(self):
        text = _checks.settings_repr(self)
        # block_size shown only when set: the observers of before print as they did.
        return text.replace(", block_size=None)", ")")

    def state_dict(self):
        """The settings as a dict of plain Python values (the observer keeps no data).

        ``block_size`` is left out when None, so that the state saves with ``np.savez``
        (no object arrays) as before it existed."""
        return {name: getattr(self, name) for name in self._settings
                if not (name == "block_size" and self.block_size is None)}

    def load_state_dict(self, state):
        """Restore settings saved by :meth:`state_dict` (checked as in the constructor).

        A state without a ``block_size`` entry means None."""
        state = dict(state)
        state.setdefault("block_size", None)
        self.__init__(**_checks.settings_from(state, self._settings))
