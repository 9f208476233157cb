"""``HistogramObserver`` on a Dask batch: per-chunk histograms summed, exactly.

The batch's per-channel range comes first (the observers' reduction graph of
:mod:`numba_quant._dask.channels`, which raises the whole batch's non-finite errors as the
in-memory call does); it fixes each channel's power-of-two grid, on which every chunk's
histogram is counted by the host or GPU histogram kernels.  Counts are integers, so
their sum over chunks (in any order) is the batch's histogram, and the batch enters the
observer through :meth:`HistogramObserver.merge`, whose widening onto a larger grid is
exact: the result equals the in-memory call on the computed batch.  (Two passes over
the data: the range, then the counts.)
"""
import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._dask.channels import _checked, channel_states, settled_range
from numba_quant._dispatch import backend, to_host
from numba_quant._dispatch.hist import channel_histogram


def _chunk_counts(block, a, b, axis, grid, bins):
    """One chunk's ``(channels, bins)`` counts, shaped as the chunk reduced to 1 but along
    ``axis``, plus the bins axis."""
    keep = [1] * block.ndim
    if axis is not None:
        keep[axis] = block.shape[axis]
    channels = 1 if axis is None else block.shape[axis]
    if not block.size:
        return np.zeros(keep + [bins], np.int64)
    ops = backend(block)
    counts = channel_histogram(ops, ops.channels.as_array(block), axis, grid, a.reshape(-1),
                               b.reshape(-1), bins)
    return np.asarray(counts).reshape(channels, bins).reshape(keep + [bins])


def _counts(x, axis, grid, a, b, bins):
    """Lazy ``(channels, bins)`` int64 counts of ``x`` on the per-channel grid ``a, b``."""
    import dask.array as da
    index = tuple(range(x.ndim))
    if axis is None:
        args = [np.asarray(a), None, np.asarray(b), None]
    else:
        chunks = (x.chunks[axis],)
        args = [da.from_array(np.asarray(a), chunks=chunks), (axis,),
                da.from_array(np.asarray(b), chunks=chunks), (axis,)]
    partial = da.blockwise(
        _chunk_counts, index + (x.ndim,), x, index, *args, axis=axis, grid=grid, bins=bins,
        new_axes={x.ndim: bins}, concatenate=True, dtype=np.int64,
        adjust_chunks={i: (lambda n: 1) for i in index if i != axis},
        meta=np.empty((0,) * (x.ndim + 1), np.int64))
    reduced = tuple(i for i in index if i != axis)
    return partial.sum(axis=reduced, dtype=np.int64).reshape(-1, bins)


def observe(observer, x, histc_bounds):
    """Add the Dask array ``x`` to ``observer`` (a ``HistogramObserver``) as one batch;
    ``histc_bounds(lo, hi)``: the linear grid's bounds of PyTorch's first batch."""
    import dask
    from numba_quant._reference import hist as hist_ref
    x = _checked(x)
    dtype = _checks.compute_dtype(x.dtype)
    omit = _checks.nonfinite_policy(observer.nonfinite)
    axis = _checks.channel_axis(observer.axis, x.ndim, observer.per_layer_quantization)
    _checks.not_empty(x.shape, axis)
    if x.ndim == 0:
        x = x.reshape(1)
    lo, hi = settled_range(to_host(channel_states(x, axis, omit).compute()), dtype,
                           axis is None)
    amax = np.maximum(-lo, hi)
    exponent = np.array([hist_ref.grid_exponent(v) for v in amax.tolist()], np.int64)
    half = observer.bins // 2
    factor = np.array([hist_ref.grid_factor(e, half) for e in exponent.tolist()])
    lazy = [_counts(x, axis, hist_ref.POW2_GRID, factor, factor, observer.bins)]
    if observer.method == "l2" and observer.counts is None:  # torch.histc's first batch
        lazy.append(_counts(x, axis, hist_ref.LINEAR_GRID, *histc_bounds(lo, hi),
                            observer.bins))
    found = dask.compute(*lazy)
    state = dict(observer.state_dict(), batches=1, counts=found[0], exponent=exponent,
                 min_val=lo, max_val=hi)
    state.pop("first_counts", None)
    if len(found) > 1:
        state["first_counts"] = found[1]
    batch = type(observer)()
    batch.load_state_dict(state)
    return observer.merge(batch)
