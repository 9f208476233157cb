"""The moving-average min-max observer (OneFlow's ``MovingAverageMinMaxObserver``)."""
import operator

import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._dispatch import backend, is_dask, on_device, to_host
from numba_quant._dispatch.minmax import observe_minmax


def _backend_data(x, *others):
    """``(ops, data, like)``: the backend, ``x`` as its array (a Dask array stays lazy,
    in its compute dtype), and the array whose type the results take."""
    if is_dask(x):
        from numba_quant._dask import channels as _dask
        return _dask.host_side(x, *others)
    ops = backend(x, *others)
    return ops, ops.channels.as_array(x), x


def moving_average_min_max_observer(x, current_train_step, moving_max, moving_min, training,
                                    stop_update_after_iters, quantization_formula="google",
                                    quantization_bit=8, quantization_scheme="symmetric",
                                    momentum=0.95, *, axis=0, nonfinite="raise"):
    """Scale and zero point from a moving average of the range, as OneFlow computes them.

    When ``training`` and ``current_train_step <= stop_update_after_iters``, the state is
    updated in place from ``x``::

        symmetric, cambricon:  a = max(|max(x)|, |min(x)|)
                               moving_max = a if moving_max == 0 else
                                            moving_max * momentum + a * (1 - momentum)
                               moving_min = moving_max
        affine:                the same blend for max(x) and min(x) separately

    A stored 0 means "not yet initialised" and is replaced, not blended.  Then, from the
    state: symmetric ``scale = moving_max / (2**(b-1) - 1)``; affine ``scale = (moving_max
    - moving_min) / (2**b - 1)`` and ``zero_point = -round_half_away(moving_min / scale)``;
    cambricon ``floor(log2(moving_max)) - (b - 2)``.

    Parameters
    ----------
    x : array_like, GPU array or Dask array
        float16, float32 or float64 batch.  A Dask batch's range is computed at once
        (through the same tree of partial results as :func:`min_max_observer`), because
        the state is updated in place; the results are then computed arrays of the
        chunks' type (numpy or CuPy), not lazy ones.
    current_train_step : int or one-element integer array
    moving_max, moving_min : arrays
        The state, in the input's float type (float32 for float16) and on its device:
        one element (per layer) or one per slice along ``axis`` (per channel, an
        extension of OneFlow).  Updated in place.
    training : bool
    stop_update_after_iters : int
        The last step that updates the state.
    quantization_formula, quantization_bit, quantization_scheme
        As for :func:`min_max_observer`.
    momentum : float
        Weight of the old state, used as a float32 value (``1 - momentum`` in float32).
    axis : int, optional
        Channel axis when the state has more than one element.
    nonfinite : {"raise", "omit"}
        As for :func:`min_max_observer`.

    Returns
    -------
    scale, zero_point : arrays
        Shaped like the state, on the input's device.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> moving_max = np.zeros(1, np.float32)
    >>> moving_min = np.zeros(1, np.float32)
    >>> for step, batch in enumerate([[-2.0, 1.0], [4.0, 0.5]]):
    ...     scale, zp = nq.moving_average_min_max_observer(
    ...         np.array(batch, np.float32), step, moving_max, moving_min, True, 100,
    ...         momentum=0.5)
    >>> moving_max  # 2, then 2 * 0.5 + 4 * 0.5
    array([3.], dtype=float32)
    """
    scheme = _checks.scheme_code(quantization_formula, quantization_scheme)
    bits = _checks.bits(quantization_bit)
    omit = _checks.nonfinite_policy(nonfinite)
    momentum = _checks.momentum(momentum)
    step = _checks.train_step(current_train_step, to_host(current_train_step))
    ops, data, like = _backend_data(x, moving_max, moving_min)
    return _observe(ops, data, like, step, moving_max, moving_min, training,
                    stop_update_after_iters, scheme, bits, momentum, axis, omit)


def _observe(ops, data, like, step, moving_max, moving_min, training,
             stop_update_after_iters, scheme, bits, momentum, axis, omit):
    """The observer's step on a backend array ``data``; results in ``like``'s array type."""
    state_max = ops.channels.as_state(moving_max, data.dtype, "moving_max")
    state_min = ops.channels.as_state(moving_min, data.dtype, "moving_min")
    _checks.same_length(state_max.size, state_min.size, ("moving_max", "moving_min"))
    axis = _checks.parameter_axis(axis, data.shape, state_max.size, "state")
    update = bool(training) and step <= stop_update_after_iters
    if update:
        if is_dask(data):  # a lazy batch: reduced by its graph, computed here
            from numba_quant._dask import channels as _dask
            lo, hi = _dask.channel_minmax(data, axis, omit, ops)
        else:
            lo, hi = observe_minmax(ops, data, axis, omit)
    else:
        # The state alone decides the result; the batch is not read.
        lo, hi = state_min, state_max
    scale, zero_point = ops.channels.moving_observe(lo, hi, state_max, state_min, update, momentum,
                                           scheme, bits)
    return ops.wrap(scale, like), ops.wrap(zero_point, like)


class MovingAverageMinMaxObserver:
    """The moving-average observer with its own state and step counter.

    Each call in training mode uses the current step, then increments it; calls in
    evaluation mode (after :meth:`eval`) read the state without changing it.  With
    ``per_layer_quantization=False`` it keeps one moving range per slice along ``axis``
    (OneFlow has only the per-layer form).  The state lives where the data does: it
    moves to the GPU with the first GPU batch.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> observer = nq.MovingAverageMinMaxObserver(stop_update_after_iters=100, momentum=0.5)
    >>> for batch in ([-2.0, 1.0], [4.0, 0.5]):
    ...     scale, zero_point = observer(np.array(batch, np.float32))
    >>> observer.current_train_step, observer.moving_max
    (2, array([3.], dtype=float32))
    >>> state = observer.state_dict()
    >>> restored = nq.MovingAverageMinMaxObserver(stop_update_after_iters=100, momentum=0.5)
    >>> restored.load_state_dict(state)
    >>> restored.eval()(np.zeros(2, np.float32))[0] == scale
    array([ True])
    """

    _settings = ("stop_update_after_iters", "quantization_formula", "quantization_bit",
                 "quantization_scheme", "momentum", "per_layer_quantization", "axis",
                 "nonfinite")

    def __init__(self, stop_update_after_iters=1, quantization_formula="google",
                 quantization_bit=8, quantization_scheme="symmetric", momentum=0.95, *,
                 per_layer_quantization=True, axis=0, nonfinite="raise"):
        settings, _ = _checks.observer_class_settings(
            quantization_formula, quantization_bit, quantization_scheme,
            per_layer_quantization, axis, nonfinite)
        self.stop_update_after_iters = _checks.integer("stop_update_after_iters",
                                                       stop_update_after_iters)
        vars(self).update(settings)
        _checks.momentum(momentum)  # checked here, used as float32 on each call
        self.momentum = float(momentum)
        self.training = True
        self.reset()

    def reset(self):
        """Forget the moving range and restart the step counter at 0."""
        self.current_train_step = 0
        self.moving_max = None
        self.moving_min = None

    def train(self, mode=True):
        """Switch to training mode (the state updates); returns the observer."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Switch to evaluation mode (the state is only read); returns the observer."""
        return self.train(False)

    def _prepare_state(self, ops, data, x):
        """Create the state, or move it to where ``x`` lives, for the backend array ``data``."""
        if self.per_layer_quantization:
            size = 1
        else:
            axis = _checks.channel_axis(self.axis, data.ndim, per_layer=False)
            size = data.shape[axis]
        if self.moving_max is None:
            zeros = np.zeros(size, data.dtype)
            self.moving_max, self.moving_min = zeros, zeros.copy()
        if on_device(self.moving_max) != on_device(x):
            # Move the state to the data's side (its values are kept exactly).
            state = [to_host(a) for a in (self.moving_max, self.moving_min)]
            self.moving_max, self.moving_min = (ops.from_host(a, like=x) for a in state)
        _checks.state_dtype(self.moving_max.dtype, data.dtype)

    def __call__(self, x):
        """Observe a batch: ``(scale, zero_point)``, updating the state when training."""
        # converted once (float16 -> float32), for both steps
        ops, data, like = _backend_data(x)
        self._prepare_state(ops, data, like)
        result = _observe(
            ops, data, like, self.current_train_step, self.moving_max, self.moving_min,
            self.training, self.stop_update_after_iters,
            _checks.scheme_code(self.quantization_formula, self.quantization_scheme),
            self.quantization_bit, _checks.momentum(self.momentum),
            None if self.per_layer_quantization else self.axis,
            _checks.nonfinite_policy(self.nonfinite))
        if self.training:
            self.current_train_step += 1
        return result

    def __repr__(self):
        return _checks.settings_repr(self)

    def state_dict(self):
        """Settings, step counter, mode and moving range as plain Python and numpy values.

        Saves to ``.npz`` with ``np.savez(path, **observer.state_dict())``.  A state not
        yet created is stored as empty arrays.
        """
        state = {name: getattr(self, name) for name in self._settings}
        state["current_train_step"] = self.current_train_step
        state["training"] = self.training
        for name in ("moving_max", "moving_min"):
            value = getattr(self, name)
            if value is None:
                state[name] = np.zeros(0, np.float32)
            else:
                state[name] = np.array(to_host(value))
        return state

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` saved (also after ``np.load``)."""
        names = self._settings + ("current_train_step", "training")
        values = _checks.settings_from(state, names)
        self.__init__(**{name: values[name] for name in self._settings})
        self.current_train_step = operator.index(values["current_train_step"])
        self.training = bool(values["training"])
        moving_max = np.array(state["moving_max"]).reshape(-1)
        moving_min = np.array(state["moving_min"]).reshape(-1)
        if moving_max.size:
            self.moving_max, self.moving_min = moving_max, moving_min
