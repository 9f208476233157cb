"""Writing safetensors files tensor by tensor, and output directories all at once.

:class:`SafetensorsWriter` lays a file out the way the ``safetensors`` library (0.8, the
one transformers' ``save_pretrained`` calls) lays it out, so that a file written here can
equal one written there byte for byte:

* tensors sorted by dtype, widest alignment class first (U64, I64, F64, F32, U32, I32,
  BF16, F16, U16, I16, F8_E4M3, F8_E5M2, I8, U8, BOOL), then by name (byte order);
* the header: compact JSON, ``__metadata__`` first, each tensor as
  ``{"dtype":..,"shape":[..],"data_offsets":[begin,end]}``, padded with spaces to a
  multiple of 8 bytes;
* the data back to back in that order.

Every offset follows from the names, dtypes and shapes alone, so the header is written
first and each tensor's bytes (or a run of its rows) are written at their place as soon
as they are computed: nothing but the tensor at hand is held in memory.

:func:`staged_directory` gives a temporary directory next to the output directory and
renames it into place only when everything was written; on any error it is removed, so
no half-written output is ever left under the output's name.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TensorSpec", "SafetensorsWriter", "staged_directory", "staged_file",
           "OutputExistsError", "DTYPE_CODES"]

#: storage dtype name -> (safetensors code, bytes per element)
DTYPE_CODES = {
    "uint64": ("U64", 8), "int64": ("I64", 8), "float64": ("F64", 8),
    "float32": ("F32", 4), "uint32": ("U32", 4), "int32": ("I32", 4),
    "bfloat16": ("BF16", 2), "float16": ("F16", 2), "uint16": ("U16", 2),
    "int16": ("I16", 2), "float8_e4m3fn": ("F8_E4M3", 1), "float8_e5m2": ("F8_E5M2", 1),
    "int8": ("I8", 1), "uint8": ("U8", 1), "bool": ("BOOL", 1),
}
# The order safetensors sorts dtypes in (its Dtype enum, descending), checked against
# safetensors 0.8 with one tensor of each dtype.
_DTYPE_ORDER = ("U64", "I64", "F64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16",
                "F8_E4M3", "F8_E5M2", "I8", "U8", "BOOL")
_RANK = {code: i for i, code in enumerate(_DTYPE_ORDER)}


class OutputExistsError(FileExistsError):
    """The output path exists and overwriting was not asked for."""


@dataclass(frozen=True)
class TensorSpec:
    """A tensor to be written: its name, storage dtype name and shape."""
    name: str
    dtype: str
    shape: tuple

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * DTYPE_CODES[self.dtype][1]


def layout(specs, metadata=None):
    """``(header_bytes, {name: (begin, end)})``: the header and every tensor's byte range
    within the data section, in safetensors' order."""
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("tensor names must be unique")
    for s in specs:
        if s.dtype not in DTYPE_CODES:
            raise ValueError(f"tensor {s.name!r}: dtype {s.dtype!r} cannot be written "
                             f"(expected one of {sorted(DTYPE_CODES)})")
    ordered = sorted(specs, key=lambda s: (_RANK[DTYPE_CODES[s.dtype][0]],
                                           s.name.encode("utf-8")))
    header = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    ranges = {}
    offset = 0
    for s in ordered:
        end = offset + s.nbytes
        header[s.name] = {"dtype": DTYPE_CODES[s.dtype][0],
                          "shape": [int(n) for n in s.shape],
                          "data_offsets": [offset, end]}
        ranges[s.name] = (offset, end)
        offset = end
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return text, ranges


class SafetensorsWriter:
    """A safetensors file whose tensors are written one at a time, in any order.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create (it must not exist).
    specs : sequence of TensorSpec
        Every tensor the file will hold.
    metadata : dict, optional
        The header's ``__metadata__`` (transformers writes ``{"format": "pt"}``).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from numba_quant.export.safetensors_out import SafetensorsWriter, TensorSpec
    >>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
    >>> with SafetensorsWriter(path, [TensorSpec("b", "int64", (2,)),
    ...                               TensorSpec("a", "float32", (2, 2))]) as w:
    ...     w.write("a", np.ones((2, 2), np.float32))
    ...     w.write("b", np.array([2, 2]))
    >>> w.ranges                    # I64 before F32, whatever the order given
    {'b': (0, 16), 'a': (16, 32)}
    >>> os.path.getsize(path)       # 8 + a header of 112 bytes + 32 bytes of data
    152
    """

    def __init__(self, path, specs, metadata=None):
        self.path = Path(path)
        self.specs = {s.name: s for s in specs}
        self.header, self.ranges = layout(specs, metadata)
        self.data_start = 8 + len(self.header)
        self._written = {name: 0 for name in self.specs}
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(self._fd, len(self.header).to_bytes(8, "little") + self.header)
            total = self.data_start + (max(e for _, e in self.ranges.values())
                                       if self.ranges else 0)
            os.ftruncate(self._fd, total)
        except BaseException:
            os.close(self._fd)
            raise

    def write(self, name, array, start=0):
        """Write ``array``'s bytes (C order) at byte ``start`` of tensor ``name``'s data.

        The array's dtype must have the tensor's element size; bfloat16 and FP8 are
        written from their bit patterns (uint16, uint8).
        """
        spec = self.specs.get(name)
        if spec is None:
            raise KeyError(f"{self.path}: no tensor {name!r} in this file")
        data = np.ascontiguousarray(array)
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("<"))
        if data.dtype.itemsize != DTYPE_CODES[spec.dtype][1] and data.dtype != np.uint8:
            raise TypeError(f"tensor {name!r} ({spec.dtype}): got {data.dtype} data")
        begin, end = self.ranges[name]
        raw = memoryview(data.reshape(-1).view(np.uint8))
        if start < 0 or begin + start + len(raw) > end:
            raise ValueError(f"tensor {name!r}: bytes [{start}, {start + len(raw)}) are "
                             f"outside its {end - begin} bytes")
        position = self.data_start + begin + start
        while len(raw):
            n = os.pwrite(self._fd, raw, position)
            raw = raw[n:]
            position += n
        self._written[name] += data.nbytes

    def close(self):
        """Close the file; a tensor whose bytes were not all written is an error."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)
        missing = [n for n, count in self._written.items()
                   if count != self.ranges[n][1] - self.ranges[n][0]]
        if missing:
            raise RuntimeError(f"{self.path}: tensors not completely written: "
                               f"{', '.join(missing[:5])}")

    def abort(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.close()
        else:
            self.abort()
        return False


def _umask():
    """The process's umask: the output gets the mode a file or directory created
    directly would have."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_directory(out_dir, force=False):
    """A temporary directory, renamed to ``out_dir`` when the ``with`` block succeeds.

    The temporary directory is made in ``out_dir``'s parent (the same file system, so
    the rename is atomic). An existing ``out_dir`` is refused unless ``force``; with
    ``force`` it is replaced only once the new output is complete. On any error the
    temporary directory is removed and ``out_dir`` is left as it was.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise OutputExistsError(f"{out_dir}: the output exists (use force=True / --force "
                                "to replace it)")
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial",
                                  dir=parent))
    try:
        os.chmod(stage, 0o777 & ~_umask())     # mkdtemp's 0o700 is for temporary files
        yield stage
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old",
                                        dir=parent))
            os.rmdir(old)
            os.rename(out_dir, old)
            os.rename(stage, out_dir)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            os.rename(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_file(path, force=False):
    """A temporary file name next to ``path``, renamed to ``path`` when the ``with``
    block succeeds; removed on any error.  An existing ``path`` is refused unless
    ``force`` (then replaced only once the new file is complete)."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: the output exists (use force=True / --force "
                                "to replace it)")
    if path.is_dir():
        raise OutputExistsError(f"{path}: is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                dir=path.parent)
    os.close(fd)
    stage = Path(name)
    try:
        os.chmod(stage, 0o666 & ~_umask())     # mkstemp's 0o600 is for temporary files
        yield stage
        os.replace(stage, path)
    except BaseException:
        stage.unlink(missing_ok=True)
        raise
