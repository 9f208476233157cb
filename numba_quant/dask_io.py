"""``open_dask``: a tensor stored in a file as a lazy Dask array, for inputs larger than
memory."""
import numpy as np

from numba_quant import _checks


class _NpyFile:
    """An ``.npy`` file as an array-like for ``dask.array.from_array``.

    Pickles as its path, not its data, so that each worker maps the file itself and
    reads only the chunks it is given.
    """

    def __init__(self, path):
        self.path = str(path)
        mapped = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype, self.ndim = mapped.shape, mapped.dtype, mapped.ndim

    def __getitem__(self, key):
        # Copied out of the map, which is then released: a chunk is an ordinary array.
        return np.array(np.load(self.path, mmap_mode="r")[key])


def open_dask(path, chunks="auto"):
    """Open an array stored in a ``.npy`` file as a lazy Dask array.

    Nothing is read until the graph runs; then each task maps the file and reads its own
    chunk, so a file larger than memory (or than any one worker's memory) goes through
    every numba_quant function chunk by chunk.

    Parameters
    ----------
    path : str or path-like
        An ``.npy`` file (any dtype, C or Fortran order).
    chunks : int, tuple, dict or "auto"
        Dask chunk sizes, as for ``dask.array.from_array``.  For per-channel work, chunks
        that hold whole channels along the reduced axes keep the partial results small.

    Returns
    -------
    dask.array.Array
        With numpy chunks of the file's dtype and shape.

    Raises
    ------
    ImportError
        Dask is not installed (``pip install "numba_quant[dask]"``).
    ValueError
        A path that does not end in ``.npy``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npy")
    >>> np.save(path, np.array([[-1.0, 0.5], [2.0, -0.25]], dtype=np.float32))
    >>> w = nq.open_dask(path, chunks=1)
    >>> scale, zero_point = nq.min_max_observer(w, per_layer_quantization=False)
    >>> scale.compute() * 127
    array([1., 2.], dtype=float32)
    """
    try:
        import dask.array as da
    except ImportError:
        raise _checks.dask_needs_dask() from None
    _checks.npy_path(path)
    source = _NpyFile(path)
    return da.from_array(source, chunks=chunks,
                         meta=np.empty((0,) * source.ndim, source.dtype))
