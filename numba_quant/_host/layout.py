"""Views of any strided array as ``(outer, channels, inner)``.

The reduction and element-wise kernels see every input as a 3-D array whose middle axis
is the channel axis (length 1 for per-layer work).  This module builds that view without
copying whenever the strides allow it: C order, Fortran order, transposes, negative
strides and most slices.  Only layouts that no 3-D strided view can describe (such as
``x[:, ::2, ::2]`` reduced along axis 0) are copied.
"""
import numpy as np


def _reshape_view(y, shape):
    """``y`` reshaped to ``shape`` as a view, or None when that needs a copy."""
    try:
        return np.reshape(y, shape, copy=False)
    except ValueError:
        return None
    except TypeError:  # numpy < 2.1 has no copy argument
        view = y.view()
        try:
            view.shape = shape
        except AttributeError:
            return None
        return view


def _candidate_shapes(shape, position):
    """3-D shapes to try, given the memory-ordered shape and the channel's position."""
    size = int(np.prod(shape, dtype=np.int64))
    if position is None:
        # Per-layer: a virtual channel axis of length 1, first before everything, then
        # before the fastest axis (which lets two strided axes merge into a 3-D view).
        shapes = [(1, 1, size)]
        if shape[-1]:
            shapes.append((size // shape[-1], 1, shape[-1]))
        return shapes
    outer = int(np.prod(shape[:position], dtype=np.int64))
    inner = int(np.prod(shape[position + 1:], dtype=np.int64))
    return [(outer, shape[position], inner)]


def aligned_views(arrays, axis):
    """3-D views of same-shaped arrays that pair up element for element.

    The first array decides the order: its negative strides are flipped (except along
    the channel axis) and its axes sorted from slowest to fastest in memory, and every array is viewed through the same
    flips and permutation, so ``a3[o, c, i]`` and ``b3[o, c, i]`` are the same element.
    ``axis`` is the channel axis (``0 <= axis < ndim``) or None for per-layer work.
    Returns a tuple of views, or None when one of them would need a copy.
    """
    first = arrays[0]
    if first.ndim == 0:
        return tuple(a.reshape(1, 1, 1) for a in arrays)
    # The channel axis keeps its direction: channel c must stay channel c.
    flips = tuple(slice(None, None, -1) if s < 0 and k != axis else slice(None)
                  for k, s in enumerate(first.strides))
    flipped = [a[flips] for a in arrays]
    order = sorted(range(first.ndim), key=lambda k: -abs(flipped[0].strides[k]))
    ordered = [a.transpose(order) for a in flipped]
    position = None if axis is None else order.index(axis)
    for shape in _candidate_shapes(ordered[0].shape, position):
        views = tuple(_reshape_view(a, shape) for a in ordered)
        if all(v is not None for v in views):
            return views
    return None


def channel_view(x, axis):
    """A 3-D ``(outer, channels, inner)`` view of ``x`` for reductions.

    Element order inside a channel is not kept, which reductions do not need.  Falls back
    to a contiguous copy (in memory order) when no strided view exists.
    """
    if x.flags.c_contiguous and x.ndim:
        # The common case, without the general machinery.
        if axis is None:
            return x.reshape(1, 1, x.size)
        return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), x.shape[axis], -1)
    views = aligned_views((x,), axis)
    if views is not None:
        return views[0]
    if axis is None:
        return np.ascontiguousarray(x).reshape(1, 1, x.size)
    moved = np.ascontiguousarray(np.moveaxis(x, axis, 0))
    return moved.reshape(1, moved.shape[0], -1)
