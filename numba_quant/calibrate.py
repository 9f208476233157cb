"""Calibrated ranges: ``compute_amax`` on given histograms, ``HistogramObserver`` on data,
``exact_amax_percentile`` without histograms."""
import math

import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._host import codes
from numba_quant._host import tuning as _tuning
from numba_quant._dispatch import backend, cpu, is_dask, to_host
from numba_quant._dispatch import blockwise as _blockwise
from numba_quant._dispatch import hist as _hist_backend
from numba_quant._dispatch.minmax import observe_minmax
from numba_quant._host import blocks_plan as plan
from numba_quant.observer import min_max_observer

# Scores within this relative distance of the best fast entropy score are recomputed
# exactly (the fast and exact scores differ by rounding only: about 1e-13).
_ENTROPY_TOLERANCE = 1e-9


def _quantized_levels(num_bits, unsigned):
    return 1 << (num_bits - 1 + int(bool(unsigned)))


def compute_amax(hist, edges, method, *, percentile=99.99, num_bits=8, unsigned=False,
                 start_bin=128, stride=1):
    """The calibrated ``amax`` of histograms of ``|x|``, one per row.

    The methods are NVIDIA modelopt 0.47's ``HistogramCalibrator.compute_amax``, value
    for value: "percentile" and "entropy" as modelopt computes them, "mse" as its
    procedure computes it with the quantizer called as intended (modelopt 0.47 passes
    the bit count into the wrong parameter of its quantizer there).

    Parameters
    ----------
    hist : array_like
        Counts, shape ``(bins,)`` or ``(channels, bins)`` (truncated to integers, as
        modelopt does).  Every row needs a positive total.
    edges : array_like
        Bin edges, shape ``(bins + 1,)`` or ``(channels, bins + 1)``.
    method : {"percentile", "entropy", "mse"}
        "percentile": the left edge of the bin where the cumulative share (float64,
        added left to right) reaches ``percentile / 100``.  "entropy": TensorRT's KL
        search (bin 0 takes bin 1's count; candidates ``start_bin, ..., bins`` step
        ``stride``; ``2**(num_bits - 1 + unsigned)`` quantized levels; the last
        minimum wins); the result is ``edges[i]``.  "mse": the bin centre (from
        ``start_bin``, step ``stride``) whose narrow-range fake quantization of the
        centres gives the least count-weighted squared error (float32; the first
        minimum wins).
    percentile : float
        In (0, 100].
    num_bits : int
        Bits of the quantized integers, 2 to 16.
    unsigned : bool
        Unsigned quantization (one level more for entropy; ``[0, 2**bits - 1]`` for mse).
    start_bin, stride : int
        The first candidate and the step of the entropy and mse searches.

    Returns
    -------
    numpy.ndarray
        One amax per row, in the edges' dtype: shape ``()`` for 1-D input, else
        ``(channels,)``.

    Raises
    ------
    ValueError
        Unknown method, percentile outside (0, 100], shapes that do not match, a row
        without counts, negative counts, fewer bins than the search needs.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> counts = np.array([5, 3, 1, 0, 1])
    >>> edges = np.linspace(0, 5, 6, dtype=np.float32)
    >>> nq.compute_amax(counts, edges, "percentile", percentile=80)
    array(1., dtype=float32)
    >>> nq.compute_amax(counts, edges, "mse", num_bits=2, start_bin=1)
    array(2.5, dtype=float32)
    """
    method = _checks.method(method, _checks.AMAX_METHODS)
    p = _checks.percentile(percentile)
    bits = _checks.bits(num_bits)
    start_bin = _checks.positive("start_bin", start_bin)
    stride = _checks.positive("stride", stride)
    shape = np.shape(hist)[:-1]
    counts, edge_rows = _checks.histogram_rows(hist, edges)
    rows, bins = counts.shape
    if method != "percentile":
        _checks.candidate_range(start_bin, bins, method)
    edges32 = np.ascontiguousarray(edge_rows, dtype=np.float32)
    index = _select(method, counts, edges32, p / 100, bits, unsigned, start_bin, stride)
    if method == "mse":
        centers = (edges32[:, 1:] + edges32[:, :-1]) / np.float32(2)
        amax = centers[np.arange(rows), index].astype(edge_rows.dtype).reshape(shape)
    else:
        amax = edge_rows[np.arange(rows), index].reshape(shape)
    return backend(hist).host_result(amax, hist)


def _select(method, counts, edges32, fraction, bits, unsigned, start_bin, stride):
    """Each row's chosen index (see :func:`numba_quant._cpu.hist.select_rows`), on the
    host, where the histograms are."""
    hist = cpu().hist
    code = {"percentile": hist.PERCENTILE, "entropy": hist.ENTROPY, "mse": hist.MSE}[method]
    return hist.select(code, counts, edges32, fraction, _quantized_levels(bits, unsigned),
                       bits, unsigned, start_bin, stride, _ENTROPY_TOLERANCE,
                       _selection_threads(counts.shape[0], counts.shape[1], method))


def _selection_threads(rows, bins, method):
    """Threads for the row selection: one for cheap work (percentile, few rows)."""
    import numba
    work = rows * bins * (1 if method == "percentile" else bins)
    if rows < 2 or work < _tuning.SELECTION_WORK:
        return 1
    return max(1, min(rows, numba.get_num_threads()))


def exact_amax_percentile(x, percentile=99.99, *, per_layer_quantization=True, axis=0):
    """The exact ``percentile`` of ``|x|`` per channel, without a histogram.

    The k-th smallest ``|x|`` of each channel (n values), with
    ``k = ceil(percentile / 100 * n)`` (1-based; at least 1): the smallest value that
    at least ``percentile`` percent of the channel do not exceed.  It sorts partially
    (``numpy.partition``) on the host, so it suits small inputs (weights, a few
    batches); device arrays are copied to the host.

    Parameters
    ----------
    x : array_like or GPU array
        float16/32/64 data; NaN and infinities are an error.
    percentile : float
        In (0, 100].
    per_layer_quantization : bool
        True: one value for the whole array; False: one per slice along ``axis``.
    axis : int
        The channel axis.

    Returns
    -------
    numpy.ndarray
        Shape ``(1,)`` per layer or ``(channels,)``, in the computation's float type.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> nq.exact_amax_percentile(np.arange(-10.0, 10.0), 90)
    array([9.])
    """
    p = _checks.percentile(percentile)
    ops = backend(x)
    data = to_host(ops.channels.as_array(x))
    axis = _checks.channel_axis(axis, data.ndim, per_layer_quantization)
    _checks.not_empty(data.shape, axis)
    if not np.all(np.isfinite(data)):
        raise _checks.nonfinite_error(int(np.count_nonzero(~np.isfinite(data))))
    rows = (data.reshape(1, -1) if axis is None
            else np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1))
    n = rows.shape[1]
    k = max(1, math.ceil(p / 100 * n))
    amax = np.partition(np.abs(rows), k - 1, axis=1)[:, k - 1].copy()
    return ops.host_result(amax, x)


class HistogramObserver:
    """Calibrated scale and zero point from per-channel histograms, merged exactly.

    Call the observer on batches; each call adds the batch to one histogram per slice
    (the whole array, or each slice along ``axis``).  The histograms have a fixed
    number of bins on a power-of-two grid ``[-2**e, 2**e)`` per channel, with ``e`` the
    smallest exponent above the largest ``|x|`` seen: a larger value doubles the range
    by adding adjacent bins together, which loses nothing, so any split of the data
    into batches, any thread count and either device give identical counts, and
    :meth:`merge` of partial observers equals one observer over all the data.  Memory
    is ``channels x bins`` counts whatever the data.

    Parameters
    ----------
    bins : int
        Bins per channel (even, 2 to 2**30; half for negative values, half for the rest).
    method : {"percentile", "entropy", "mse", "l2"}
        How :meth:`range` picks each channel's range:

        * "percentile": symmetric scheme: ``amax`` = the left edge of the ``|x|`` bin
          where the cumulative share reaches ``percentile``; range ``(-amax, amax)``.
          Affine: the same from both ends of the signed histogram.
        * "entropy" / "mse": :func:`compute_amax`'s methods on the ``|x|`` histogram
          (``bins / 2`` bins); range ``(-amax, amax)``, cut to the observed min/max for
          the affine scheme.
        * "l2": PyTorch's ``HistogramObserver`` search (greedy L2 clipping towards
          ``2**quantization_bit`` levels).  After exactly one call it searches a
          histogram over the batch's own ``[min, max]`` (``torch.histc``'s bins), and
          so equals PyTorch; merged or multi-batch states search the power-of-two
          histogram, which PyTorch does not have (its own multi-batch merge is lossy
          and order-dependent).
    percentile : float
        In (0, 100], for "percentile".
    quantization_formula, quantization_bit, quantization_scheme, per_layer_quantization
        As :func:`min_max_observer`; :meth:`calculate_qparams` applies its formulas to
        the chosen range.
    axis : int
        The channel axis when ``per_layer_quantization`` is False.
    block_size : tuple of int, optional
        One histogram per block, as :func:`min_max_observer`'s ``block_size``: one entry
        per axis of the input, each in ``[1, length]``; a size that does not divide its
        axis leaves a shorter last block.  Blocks are numbered in C order over the grid
        ``ceil(x.shape / block_size)``, which every batch must share; :meth:`range` and
        :meth:`calculate_qparams` return arrays of the grid's shape.  It takes the place
        of ``per_layer_quantization`` (with False it must be the per-channel block of
        ``axis``).  A grid of one block, or split along one axis in blocks of one
        element, gives the per-layer or per-channel histograms (same counts).
    nonfinite : {"raise", "omit"}
        NaN and infinities: an error, or left out of the min/max and the counts.
    start_bin, stride : int
        The entropy and mse searches' first candidate and step (on the ``|x|`` bins).

    Notes
    -----
    The ``|x|`` histogram folds the signed one: a negative value exactly on a bin edge
    counts in the bin below the one its absolute value would enter.  With
    ``block_size`` every block is a slice of its own: ``counts`` has one row per block
    (C order over the grid) and the merge rule applies per block.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> x = np.concatenate([np.linspace(-1, 1, 1001), [50.0]]).astype(np.float32)
    >>> observer = nq.HistogramObserver(bins=256, percentile=99.9)
    >>> scale, zero_point = observer(x)
    >>> observer.range()
    (array([-1.], dtype=float32), array([1.], dtype=float32))
    >>> nq.MinMaxObserver()(x)[0] * 127  # the outlier would set min/max's range
    array([50.], dtype=float32)

    Per block of 2 x 3 (the last column of blocks is ragged, one column wide):

    >>> w = np.arange(28, dtype=np.float32).reshape(4, 7)
    >>> blocks = nq.HistogramObserver(bins=64, percentile=99, block_size=(2, 3))
    >>> scale, zero_point = blocks(w)
    >>> scale.shape
    (2, 3)
    >>> blocks.range()[1]  # each block's largest value starts its bin here
    array([[ 9., 12., 13.],
           [23., 26., 27.]], dtype=float32)
    """

    _settings = ("bins", "method", "percentile", "quantization_formula", "quantization_bit",
                 "quantization_scheme", "per_layer_quantization", "axis", "nonfinite",
                 "start_bin", "stride", "block_size")

    def __init__(self, bins=2048, method="percentile", percentile=99.99,
                 quantization_formula="google", quantization_bit=8,
                 quantization_scheme="symmetric", per_layer_quantization=True, *, axis=0,
                 nonfinite="raise", start_bin=128, stride=1, block_size=None):
        self.bins = _checks.bin_count(bins)
        self.method = _checks.method(method, _checks.OBSERVER_METHODS)
        self.percentile = _checks.percentile(percentile)
        settings, self._scheme = _checks.observer_class_settings(
            quantization_formula, quantization_bit, quantization_scheme,
            per_layer_quantization, axis, nonfinite)
        vars(self).update(settings)
        self.start_bin = _checks.positive("start_bin", start_bin)
        self.stride = _checks.positive("stride", stride)
        self.block_size = _checks.block_size_setting(block_size)
        if self.method in ("entropy", "mse"):  # they search the |x| histogram's bins / 2
            _checks.candidate_range(self.start_bin, self.bins // 2, self.method)
        self.reset()

    def reset(self):
        """Forget all data (the settings stay)."""
        self.counts = None        # (channels, bins) int64
        self.exponent = None      # (channels,) int64: the grid is [-2**e, 2**e)
        self.min_val = None       # (channels,) running min and max
        self.max_val = None
        self.batches = 0
        self.grid = None          # with block_size: the grid's shape (one row per block)
        self._like = None         # an empty array of the last batch's kind: the results'
        # After exactly one call with method "l2": torch.histc's counts over each
        # channel's [min, max] (float32 lo/hi kept in min_val/max_val).
        self.first_counts = None

    def __repr__(self):
        # block_size shown only when set, as MinMaxObserver does
        return _checks.settings_repr(self).replace(", block_size=None)", ")")

    # ----------------------------------------------------------------- collecting
    def __call__(self, x):
        """Add ``x`` to the histograms; returns :meth:`calculate_qparams`'s result."""
        self.observe(x)
        return self.calculate_qparams()

    def observe(self, x):
        """Add ``x`` to the histograms (the work of a call, without the qparams).

        A Dask array is one batch, counted chunk by chunk (:mod:`numba_quant._dask.hist`).
        """
        if is_dask(x):
            if self.block_size is not None:
                raise _checks.histogram_blocks_for_dask()
            from numba_quant._dask import hist as _dask_hist
            _dask_hist.observe(self, x, _histc_bounds)
            return
        from numba_quant._reference import hist as hist_ref
        omit = _checks.nonfinite_policy(self.nonfinite)
        ops = backend(x)
        data = ops.channels.as_array(x)
        self._like = ops.placeholder(x)
        lo, hi, histogram, pair, grid = self._slices(ops, data, omit)
        lo = np.asarray(to_host(lo)).reshape(-1)
        hi = np.asarray(to_host(hi)).reshape(-1)
        if self.counts is not None:
            if grid != self.grid:
                raise _checks.merge_mismatch("block grids", self.grid, grid)
            if lo.size != self.counts.shape[0]:
                raise _checks.merge_mismatch("channel counts", self.counts.shape[0], lo.size)
            if lo.dtype != self.min_val.dtype:
                raise _checks.merge_mismatch("dtypes", self.min_val.dtype, lo.dtype)
        amax = np.maximum(-lo, hi)
        exponent = np.array([hist_ref.grid_exponent(a) for a in amax.tolist()], np.int64)
        if self.counts is not None:
            exponent = np.maximum(exponent, self.exponent)
        factor = np.array([hist_ref.grid_factor(e, self.bins // 2) for e in exponent.tolist()])
        if self.method == "l2" and self.counts is None:
            # both grids in one pass where the backend can
            counts, self.first_counts = pair(factor, *_histc_bounds(lo, hi))
        else:
            counts = histogram(hist_ref.POW2_GRID, factor, factor)
            self.first_counts = None
        if self.counts is None:
            self.counts, self.exponent, self.min_val, self.max_val = counts, exponent, lo, hi
        else:
            self.counts = _widened(self.counts, self.exponent, exponent) + counts
            self.exponent = exponent
            self.min_val = np.minimum(self.min_val, lo)
            self.max_val = np.maximum(self.max_val, hi)
        self.grid = grid
        self.batches += 1

    def _slices(self, ops, data, omit):
        """``(lo, hi, histogram, pair, grid)`` of ``data``'s slices: their min and max, a
        function ``histogram(grid, a, b)`` that counts them, a function
        ``pair(factor, lo, hi)`` that counts them on both grids (power-of-two, linear),
        and the block grid (None without ``block_size``)."""
        grid = None
        if self.block_size is None:
            axis = _checks.channel_axis(self.axis, data.ndim, self.per_layer_quantization)
        else:
            sizes = _checks.observer_block_size(self.block_size, data.shape,
                                                self.per_layer_quantization, self.axis)
            grid = plan.grid_shape(data.shape, sizes)
            kind, axis = _blockwise.layout(data.shape, sizes)
            if kind == "blocks":
                lo, hi = _hist_backend.block_minmax(ops, data, sizes, omit)

                def blocks(g, a, b):
                    return _hist_backend.block_histogram(ops, data, sizes, g, a, b, self.bins)
                return lo, hi, blocks, _two_passes(blocks), grid
            # One block, or one block per channel: the per-layer or per-channel slices
            # (the grid's C order is the channels' order).
        lo, hi = observe_minmax(ops, data, axis, omit)
        return lo, hi, (lambda g, a, b: _hist_backend.channel_histogram(
            ops, data, axis, g, a, b, self.bins)), (
            lambda factor, a, b: _hist_backend.channel_histogram_pair(
                ops, data, axis, factor, a, b, self.bins)), grid

    def merge(self, other):
        """Add another observer's data to this one (exact: as if it had seen it too)."""
        _checks.mergeable(other, HistogramObserver)
        if other.bins != self.bins:
            raise _checks.merge_mismatch("bins", self.bins, other.bins)
        if other.counts is None:
            return self
        if self.counts is None:
            self.load_state_dict({**other.state_dict(), **self._settings_dict()})
            return self
        if other.grid != self.grid:
            raise _checks.merge_mismatch("block grids", self.grid, other.grid)
        if other.counts.shape != self.counts.shape:
            raise _checks.merge_mismatch("channel counts", self.counts.shape[0],
                                         other.counts.shape[0])
        if other.min_val.dtype != self.min_val.dtype:
            raise _checks.merge_mismatch("dtypes", self.min_val.dtype, other.min_val.dtype)
        exponent = np.maximum(self.exponent, other.exponent)
        self.counts = (_widened(self.counts, self.exponent, exponent)
                       + _widened(other.counts, other.exponent, exponent))
        self.exponent = exponent
        self.min_val = np.minimum(self.min_val, other.min_val)
        self.max_val = np.maximum(self.max_val, other.max_val)
        self.batches += other.batches
        self.first_counts = None
        return self

    # ----------------------------------------------------------------- results
    def edges(self):
        """The power-of-two grid's bin edges per channel, ``(channels, bins + 1)`` float64."""
        self._need_data("edges")
        half = self.bins // 2
        steps = np.arange(-half, half + 1, dtype=np.float64)
        return np.stack([_bin_width(e, half) * steps for e in self.exponent.tolist()])

    def range(self):
        """The chosen ``(lo, hi)`` per channel, in the data's float type.

        Shape ``(channels,)``; with ``block_size``, the grid's shape.
        """
        self._need_data("range")
        lo, hi = self._row_range()
        if self.grid is not None:
            return lo.reshape(self.grid), hi.reshape(self.grid)
        return lo, hi

    def _row_range(self):
        half = self.bins // 2
        dtype = self.min_val.dtype
        channels = self.counts.shape[0]
        width = np.array([_bin_width(e, half) for e in self.exponent.tolist()])
        affine = self._scheme == codes.AFFINE
        if self.method == "l2":
            return self._l2_range()
        folded = self.counts[:, half:] + self.counts[:, half - 1::-1]
        rows = np.arange(channels)
        if self.method == "percentile":
            fraction = self.percentile / 100
            no_edges = np.zeros((channels, 1), np.float32)
            settings = (self.quantization_bit, False, 1, 1)
            if affine:
                top = _select("percentile", self.counts, no_edges, fraction, *settings)
                bottom = _select("percentile", np.ascontiguousarray(self.counts[:, ::-1]),
                                 no_edges, fraction, *settings)
                hi = (top - half) * width
                lo = (half - bottom) * width
                return lo.astype(dtype), hi.astype(dtype)
            amax = _select("percentile", np.ascontiguousarray(folded), no_edges, fraction,
                           *settings) * width
        else:
            abs_edges = width[:, None] * np.arange(half + 1, dtype=np.float64)
            empty = folded.sum(axis=1) == folded[:, 0]  # all in the first bin: zeros
            amax = np.zeros(channels)
            live = ~empty
            if np.any(live):
                amax[live] = compute_amax(
                    folded[live], abs_edges[live].astype(dtype), self.method,
                    num_bits=self.quantization_bit, start_bin=self.start_bin,
                    stride=self.stride)
            amax = amax[rows]
        amax = amax.astype(dtype)
        if affine:
            return np.maximum(-amax, self.min_val), np.minimum(amax, self.max_val)
        return -amax, amax

    def _l2_range(self):
        from numba_quant._reference import select as select_ref
        dtype = self.min_val.dtype
        levels = 1 << self.quantization_bit
        lo = np.empty(self.counts.shape[0], dtype)
        hi = np.empty(self.counts.shape[0], dtype)
        for c in range(self.counts.shape[0]):
            if self.first_counts is not None:
                # one batch: PyTorch's histogram over the batch's own [min, max]
                a, b = _histc_bounds(self.min_val[c:c + 1], self.max_val[c:c + 1])
                a, b, row = a[0], b[0], self.first_counts[c]
            else:
                w = _bin_width(self.exponent[c], self.bins // 2) * (self.bins // 2)
                a, b, row = -w, w, self.counts[c]
            lo[c], hi[c] = select_ref.l2_search(row.astype(np.float32), np.float32(a),
                                                np.float32(b), levels)
        return lo, hi

    def calculate_qparams(self):
        """Scale and zero point of :meth:`range` with :func:`min_max_observer`'s formulas.

        Returns numpy arrays of shape ``(1,)`` per layer or ``(channels,)``; with
        ``block_size``, the grid's shape.
        """
        self._need_data("calculate_qparams")
        lo, hi = self._row_range()
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        pair = np.stack([lo, hi])  # each channel's min and max are its range
        per_layer = self.per_layer_quantization and self.grid is None
        scale, zero_point = min_max_observer(pair.reshape(2) if per_layer else pair,
                                             self.quantization_formula,
                                             self.quantization_bit,
                                             self.quantization_scheme, per_layer, axis=1)
        if self.grid is not None:
            scale, zero_point = scale.reshape(self.grid), zero_point.reshape(self.grid)
        like = self._like if self._like is not None else scale
        bk = backend(like)
        return bk.host_result(scale, like), bk.host_result(zero_point, like)

    # ----------------------------------------------------------------- state
    def _settings_dict(self):
        return {name: getattr(self, name) for name in self._settings}

    def state_dict(self):
        """Settings (plain Python values) and data (numpy arrays; absent before any data).

        ``block_size`` is left out when None (so that the state of an observer without
        it is as before); with it, ``grid`` (the block grid's shape) joins the data.
        """
        state = self._settings_dict()
        if self.block_size is None:
            del state["block_size"]
        state["batches"] = self.batches
        if self.grid is not None:
            state["grid"] = self.grid
        if self.counts is not None:
            state.update(counts=self.counts.copy(), exponent=self.exponent.copy(),
                         min_val=self.min_val.copy(), max_val=self.max_val.copy())
            if self.first_counts is not None:
                state["first_counts"] = self.first_counts.copy()
        return state

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` saved (checked; no ``block_size``: None)."""
        state = dict(state)
        state.setdefault("block_size", None)
        self.__init__(**_checks.settings_from(state, self._settings))
        if state.get("grid") is not None:
            self.grid = tuple(int(g) for g in np.asarray(state["grid"]).reshape(-1))
        self.batches = int(_checks.settings_from(state, ("batches",))["batches"])
        if "counts" in state:
            counts = _checks.state_counts(state["counts"], self.bins)
            parts = [np.asarray(state[k]).reshape(-1) for k in ("exponent", "min_val",
                                                                "max_val")]
            _checks.state_per_channel([p.size for p in parts], counts.shape[0])
            if self.grid is not None:
                _checks.state_grid(self.grid, counts.shape[0])
            self.counts = counts.copy()
            self.exponent = parts[0].astype(np.int64)
            self.min_val = parts[1].copy()
            self.max_val = parts[2].copy()
            if "first_counts" in state:
                self.first_counts = np.asarray(state["first_counts"], np.int64).copy()

    def _need_data(self, what):
        if self.counts is None:
            raise _checks.not_observed(f"HistogramObserver.{what}()")


def _bin_width(exponent, half):
    from numba_quant._reference.hist import ZERO_EXPONENT
    if exponent == ZERO_EXPONENT:
        return 0.0
    return math.ldexp(1.0, int(exponent)) / half


def _two_passes(histogram):
    """``pair(factor, lo, hi)`` from a one-grid ``histogram(grid, a, b)``."""
    from numba_quant._reference import hist as hist_ref

    def pair(factor, lo, hi):
        return (histogram(hist_ref.POW2_GRID, factor, factor),
                histogram(hist_ref.LINEAR_GRID, lo, hi))
    return pair


def _histc_bounds(lo, hi):
    """``torch.histc``'s range: ``[lo, hi]``, widened to ``[lo - 1, hi + 1]`` when equal."""
    lo = np.asarray(lo).copy()
    hi = np.asarray(hi).copy()
    same = lo == hi
    lo[same] -= 1
    hi[same] += 1
    return lo, hi


def _widened(counts, exponent, target):
    """``counts`` (rows at ``exponent``) moved onto the grids of exponents ``target``."""
    steps = np.where(exponent == codes.ZERO_EXPONENT, 64, target - exponent).astype(np.int64)
    if not np.any(steps):
        return counts
    return cpu().hist.widen(counts, np.minimum(steps, 64))

