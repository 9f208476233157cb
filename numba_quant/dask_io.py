"""``open_dask``: a tensor stored in a file as a lazy Dask array, for inputs larger than
memory."""
import numpy as np

from numba_quant._host import checks as _checks
from numba_quant.reporting.checkpoint import open_checkpoint


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


class _CheckpointTensor:
    """One tensor of a safetensors checkpoint as an array-like for ``from_array``.

    Pickles as the path and the tensor's name; each read maps the file in the process
    that reads (the checkpoint reader of :mod:`numba_quant.reporting.checkpoint`) and decodes only
    the requested slice (float64 stays float64, other float types become float32).
    """

    def __init__(self, path, name):
        self.path, self.name = str(path), name
        entry = self._entry()
        self.shape, self.ndim = tuple(entry.shape), len(entry.shape)
        self.dtype = entry.decode(entry.raw()[(slice(0, 0),) * self.ndim]).dtype

    def _entry(self):
        tensors = open_checkpoint(self.path).tensors
        for entry in tensors:
            if entry.name == self.name:
                return entry
        raise _checks.dask_tensor_not_found(self.path, self.name,
                                            [entry.name for entry in tensors])

    def __getitem__(self, key):
        entry = self._entry()
        return np.array(entry.decode(entry.raw()[key]))


def open_dask(path, chunks="auto", *, tensor=None):
    """Open an array stored in a ``.npy`` file, or a tensor of a safetensors checkpoint,
    as a lazy Dask array.

    Nothing is read until the graph runs; then each task maps the file and reads its own
    chunk, so a file larger than memory (or than any one worker's memory) goes through
    every numba_quant function chunk by chunk.

    Parameters
    ----------
    path : str or path-like
        An ``.npy`` file (any dtype, C or Fortran order), or a ``.safetensors`` file or
        directory of shards (with ``tensor``).
    chunks : int, tuple, dict or "auto"
        Dask chunk sizes, as for ``dask.array.from_array``.  For per-channel work, chunks
        that hold whole channels along the reduced axes keep the partial results small.
    tensor : str, optional
        The name of the tensor to open in a safetensors checkpoint (float tensors only),
        decoded chunk by chunk as :mod:`numba_quant.reporting.checkpoint` decodes it: float64
        stays float64, every other float type (float16, bfloat16, FP8) becomes float32,
        which is exact and is what the functions compute in anyway.

    Returns
    -------
    dask.array.Array
        With numpy chunks of the file's (or the decoded tensor's) dtype and shape.

    Raises
    ------
    ImportError
        Dask is not installed (``pip install "numba_quant[dask]"``).
    ValueError
        A path that is not an ``.npy`` file without ``tensor``; a ``tensor`` the
        checkpoint does not hold (``CheckpointError``, a ``ValueError``, for a file that
        cannot be read).

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
    if tensor is None:
        _checks.npy_path(path)
        source = _NpyFile(path)
    else:
        source = _CheckpointTensor(path, tensor)
    return da.from_array(source, chunks=chunks,
                         meta=np.empty((0,) * source.ndim, source.dtype))
