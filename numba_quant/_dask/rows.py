"""Dask graphs over whole rows: a function of rows applied to each chunk of a Dask array
whose last axis is one chunk (the GGUF types: a row is quantized as a whole)."""
import numpy as np

from numba_quant._dask.channels import _checked


def _call_on_rows(block, function, settings, block_info=None):
    # Where the chunk starts in the array's leading axes, for messages naming a row.
    location = block_info[0]["array-location"] if block_info else ()
    origin = tuple(start for start, _ in location[:-1])
    return function(block, origin=origin, **settings)


def by_rows(function, x, width, dtype, **settings):
    """Lazy ``function(chunk, origin=..., **settings)`` on chunks of whole rows of ``x``
    (its last axis rechunked to one chunk), each giving ``(..., width)`` values of
    ``dtype``; ``origin`` is the chunk's first index along the leading axes."""
    import dask.array as da

    x = _checked(x)
    x = x.rechunk({x.ndim - 1: -1})
    return da.map_blocks(_call_on_rows, x, function=function, settings=settings,
                         chunks=x.chunks[:-1] + ((width,),), dtype=np.dtype(dtype),
                         meta=np.empty((0,) * x.ndim, np.dtype(dtype)))
