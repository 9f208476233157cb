"""``block_size=`` for OneFlow's functions: which blocks, and where they are computed.

A block size has one entry per axis of the input; the parameters have one value per
block, shape ``ceil(x.shape / block_size)`` (the "grid"), and a last block may be shorter
("ragged").  Two block sizes are the layouts of before: a grid of one block is per-layer
quantization, and a grid with one split axis, in blocks of one element there, is
per-channel quantization along that axis.  Those go to the per-layer and per-channel
kernels (same results as without ``block_size``, reshaped to the grid); every other block
size goes to the block kernels of :mod:`numba_quant._cpu.blockwise` or
:mod:`numba_quant._cuda.blockwise`, which apply the same formulas per block.

Kept free of numba so that it imports with ``numba_quant``.
"""
import math

import numpy as np

from numba_quant._host import blocks_plan as plan
from numba_quant._host import checks as _checks
from numba_quant._host import codes
from numba_quant._dispatch.minmax import raise_for_status
from numba_quant._dispatch.views import block_views, write_back


def layout(shape, sizes):
    """``(kind, axis)``: ("layer", None), ("channel", axis) or ("blocks", None)."""
    grid = plan.grid_shape(shape, sizes)
    split = [i for i, g in enumerate(grid) if g > 1]
    if not split:
        return "layer", None
    if len(split) == 1 and sizes[split[0]] == 1:
        return "channel", split[0]
    return "blocks", None


def resolve(x_shape, scale_shape, zero_point_shape, block_size, axis):
    """The block size of a quantizing call, or None for today's per-layer/per-channel
    reading of the parameters (then ``axis``, None meaning 0, is the channel axis).

    ``block_size`` given: checked, and the parameters must have the grid's shape.  Not
    given, but a scale with one axis per axis of the input and more than one value: the
    block size is read from the shapes (:func:`_checks.inferred_block_size`).  With a
    block size, an ``axis`` given too must agree (it must be per-channel along it).
    """
    if block_size is not None:
        sizes = _checks.block_size(block_size, x_shape)
        what = "block_size"
    elif len(scale_shape) == len(x_shape) and math.prod(scale_shape) > 1:
        sizes = _checks.inferred_block_size(x_shape, scale_shape)
        what = f"scale of shape {tuple(scale_shape)}"
    else:
        return None
    grid = plan.grid_shape(x_shape, sizes)
    _checks.block_parameter_shape("scale", scale_shape, grid, sizes, x_shape)
    _checks.block_parameter_shape("zero_point", zero_point_shape, grid, sizes, x_shape)
    if axis is not None:
        _checks.block_size_with_axis(sizes, x_shape, axis, what)
    return sizes


def _grid_shaped(a, grid):
    return a.reshape(tuple(grid))


# Per-block states of :func:`observe_blocks`.
NONFINITE, EMPTY = codes.HAS_NONFINITE, codes.EMPTY_CHANNEL


def observe_blocks(ops, x, data, sizes, omit, scheme, bits):
    """``(scale, zero_point, state)`` of every block of ``data`` by the block kernels:
    flat arrays in the grid's C order, and the per-block status (None when every block
    is OK; then :data:`NONFINITE` or :data:`EMPTY` mark the blocks in trouble)."""
    block4, x4, _, _ = block_views(ops, data.shape, sizes, data, data)
    n_blocks = math.prod(plan.grid_shape(data.shape, sizes))
    return ops.blockwise.run_observe(x4, block4, omit, scheme, bits, n_blocks, x)


def observe(ops, x, data, sizes, omit, scheme, bits):
    """``min_max_observer``'s ``(scale, zero_point)`` per block of ``data`` (a backend
    array of the compute type), in the grid's shape and ``x``'s array type."""
    grid = plan.grid_shape(data.shape, sizes)
    kind, axis = layout(data.shape, sizes)
    if kind != "blocks":
        scale, zero_point, status = ops.channels.observe(data, axis, omit, scheme, bits, like=x)
        raise_for_status(status, ops, data, axis, omit)
        return _grid_shaped(scale, grid), _grid_shaped(zero_point, grid)
    scale, zero_point, state = observe_blocks(ops, x, data, sizes, omit, scheme, bits)
    if state is not None:
        if (state == NONFINITE).any():
            raise _checks.nonfinite_error(ops.channels.count_nonfinite(data))
        raise _checks.empty_block_error(np.flatnonzero(state == EMPTY), grid)
    return _grid_shaped(scale, grid), _grid_shaped(zero_point, grid)


def apply(ops, data, params, sizes, what, out):
    """Write the map ``what`` (FAKE, CODE, DECODE) of ``data`` into ``out`` (a backend
    array of ``data``'s shape; may be ``data`` itself), block by block, with the
    constants of ``ops.channels.code_params`` (one per block, in C order over the grid)."""
    target = ops.blockwise.native(out)
    if target is not data and ops.blockwise.overlaps_differently(data, target):
        # As numpy's ufuncs do: the result is as if all of the input were read first.
        buffer = ops.empty(data.shape, target.dtype, None)
        apply(ops, data, params, sizes, what, buffer)
        ops.copy_into(target, buffer)
        return
    block4, x4, out4, temp = block_views(ops, data.shape, sizes, ops.blockwise.native(data), target)
    ops.blockwise.run_map(x4, block4, params, what, out4)
    write_back(ops, temp, target)
