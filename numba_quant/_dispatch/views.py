"""4-D views of block-wise work, on either backend.

The block kernels walk a 4-D view of the input and of the output (axes of length one
dropped, neighbours merged where memory and blocks allow, padded to 4: the plan of
:func:`numba_quant._host.blocks_plan.canonical`).  Shared by torchao's functions
(:mod:`numba_quant.blocks`), ``block_size=`` on OneFlow's functions and the block
histograms.
"""
from numba_quant._host import blocks_plan as plan


def block_views(ops, shape, block_size, data, target):
    """4-D views of the input ``data`` and the output ``target`` (same shape), the 4-D
    block size, and the array to copy into ``target`` afterwards (None: written in place).

    Where no 4-D view describes both, the input is copied contiguous, and so is the
    output (computed into a new contiguous array, then copied into ``target``).
    """
    planned = plan.canonical(shape, block_size, [data.strides, target.strides])
    temp = None
    same = target is data
    if planned is None:
        data = ops.contiguous(data)
        target = data if same else target
        planned = plan.canonical(shape, block_size, [data.strides, target.strides])
    if planned is None:
        temp = ops.empty(shape, target.dtype, None)
        planned = plan.canonical(shape, block_size, [data.strides, temp.strides])
        if planned is None:
            raise ValueError(f"block_size {tuple(block_size)} on shape {tuple(shape)} needs "
                             f"more than {plan.AXES} axes after merging")
    shape4, block4, (xs, ts) = planned
    return (block4, ops.view4(data, shape4, xs),
            ops.view4(target if temp is None else temp, shape4, ts), temp)


def write_back(ops, temp, target):
    """Copy a result computed into ``temp`` (see :func:`block_views`) into ``target``."""
    if temp is not None:
        ops.copy_into(target, temp)
