"""Reading model checkpoints tensor by tensor.

:func:`open_checkpoint` lists the tensors of

* a ``.safetensors`` file, or a directory of shards with ``model.safetensors.index.json``
  (or any directory of ``.safetensors`` files): the header is parsed here and every
  tensor is a view of one read-only memory map of its file, so nothing is read before a
  tensor's turn and a model larger than memory can be reported on.  float64, float32,
  float16, bfloat16 and FP8 (E4M3, E5M2) tensors are read; bfloat16 and FP8, which numpy
  has no dtype for, are read as raw bits and widened to float32 chunk by chunk;
* ``.npy`` (memory-mapped) and ``.npz`` files (one member loaded at a time);
* PyTorch ``.pt``/``.pth``/``.bin`` state dicts, when torch is installed (loaded with
  ``weights_only=True`` and memory-mapped where torch can);
* a mapping of names to arrays (numpy arrays, torch tensors, anything ``np.asarray``
  takes).

Tensors that are not floating point (integer buffers, masks) are listed in
:attr:`Checkpoint.skipped` with the reason, never an error.  ``include``/``exclude`` take
shell-style patterns (``fnmatch``) matched against tensor names.
"""
from __future__ import annotations

import fnmatch
import json
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numba_quant._host import storage as _storage
from numba_quant._host import torch_arrays as _torch

__all__ = ["Checkpoint", "CheckpointError", "TensorEntry", "open_checkpoint"]

SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")

# safetensors dtype code -> storage dtype name
_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
}
_NUMPY_STORAGE = {"float64": "<f8", "float32": "<f4", "float16": "<f2",
                  "int64": "<i8", "int32": "<i4", "int16": "<i2", "int8": "i1",
                  "uint64": "<u8", "uint32": "<u4", "uint16": "<u2", "uint8": "u1",
                  "bool": "?"}
FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16", "float8_e4m3fn",
                "float8_e5m2")
# A header larger than this is not a safetensors header (the format caps it at 100 MB).
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(ValueError):
    """A file that cannot be read as a checkpoint; the message names the file."""


@dataclass
class TensorEntry:
    """One tensor of a checkpoint, not read yet.

    ``dtype`` is the storage type's name (``"bfloat16"``, ``"float8_e4m3fn"``, or a numpy
    dtype name); :meth:`raw` returns the stored values (bfloat16 and FP8 as unsigned
    integer bits) and :meth:`decode` turns a slice of them into float values.
    """
    name: str
    shape: tuple
    dtype: str
    _load: object = field(repr=False, default=None)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def nbytes(self) -> int:
        return self.size * _itemsize(self.dtype)

    def raw(self) -> np.ndarray:
        """The stored values: a memory map or array of this tensor's shape."""
        return self._load()

    def decode(self, raw) -> np.ndarray:
        """float32 values of a slice of :meth:`raw` (float64 stays float64)."""
        return _storage.decode(raw, self.dtype)

    def numpy(self) -> np.ndarray:
        """The whole tensor as float32 (float64 stays float64)."""
        return self.decode(self.raw())


def _itemsize(dtype: str) -> int:
    if dtype in _storage.RAW_FLOATS:
        return _storage.RAW_FLOATS[dtype].itemsize
    return np.dtype(dtype).itemsize


@dataclass
class Checkpoint:
    """The tensors of a checkpoint (float tensors to report on) and what was skipped."""
    description: str
    tensors: list = field(default_factory=list)    # TensorEntry, in file order
    skipped: list = field(default_factory=list)    # (name, reason)


# ------------------------------------------------------------------------ safetensors

def _safetensors_entries(path: Path) -> list:
    """Entries of one .safetensors file, in the order of their data in the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: too short for a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length > _MAX_HEADER:
                raise CheckpointError(f"{path}: not a safetensors file (header length "
                                      f"{length})")
            text = f.read(length)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read file: {exc.strerror or exc}") from None
    try:
        header = json.loads(text)
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file ({exc})") from None
    header.pop("__metadata__", None)
    data_start = 8 + length
    file_size = os.path.getsize(path)
    mapped = {}

    def whole_file():
        # One read-only map per file, made when its first tensor is read.
        if "map" not in mapped:
            mapped["map"] = np.memmap(path, dtype=np.uint8, mode="r")
        return mapped["map"]

    entries = []
    for name, info in header.items():
        try:
            code = info["dtype"]
            shape = tuple(int(n) for n in info["shape"])
            begin, end = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed header "
                                  f"entry {info!r}") from None
        dtype = _SAFETENSORS_DTYPES.get(code, code)
        entry = TensorEntry(name, shape, dtype)
        if dtype in _NUMPY_STORAGE or dtype in _storage.RAW_FLOATS:
            expected = entry.nbytes
            if end - begin != expected or begin < 0 or data_start + end > file_size:
                raise CheckpointError(
                    f"{path}: tensor {name!r} ({code}, shape {shape}) has data offsets "
                    f"[{begin}, {end}) that do not fit its size ({expected} bytes) or "
                    f"the file ({file_size - data_start} bytes of data)")
            storage = (_storage.RAW_FLOATS.get(dtype) or np.dtype(_NUMPY_STORAGE[dtype]))

            def load(begin=begin, end=end, storage=storage, shape=shape):
                raw = whole_file()[data_start + begin:data_start + end].view(storage)
                raw = raw.reshape(shape)
                if not raw.flags.aligned:  # (safetensors aligns data; older writers may not)
                    raw = np.array(raw)
                return raw

            entry._load = load
        entries.append((begin, entry))
    entries.sort(key=lambda item: item[0])
    return [entry for _, entry in entries]


def _safetensors_directory(path: Path):
    index = path / SAFETENSORS_INDEX if path.is_dir() else path
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: not a safetensors index with a weight_map "
                                  f"({type(exc).__name__}: {exc})") from None
        shards = sorted(set(weight_map.values()))
        wanted = set(weight_map)
        entries = []
        for shard in shards:
            shard_path = index.parent / shard
            if not shard_path.is_file():
                raise CheckpointError(f"{index}: shard {shard} is missing")
            entries += [e for e in _safetensors_entries(shard_path)
                        if e.name in wanted and weight_map[e.name] == shard]
        return entries, f"{len(shards)} safetensors shard(s) listed in {index}"
    shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise CheckpointError(f"{path}: a directory without {SAFETENSORS_INDEX} or "
                              ".safetensors files")
    entries = []
    for shard in shards:
        entries += _safetensors_entries(shard)
    return entries, f"{len(shards)} safetensors file(s) in {path}"


# ------------------------------------------------------------------------ numpy files

def _array_entry(name, array):
    """An entry over an array already in memory (or memory-mapped)."""
    if _torch.is_tensor(array):
        return _tensor_entry(name, array)
    array = np.asarray(array)
    dtype = array.dtype.name
    if array.dtype.kind == "f" and not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return TensorEntry(name, tuple(array.shape), dtype, lambda: array)


def _npz_entries(path: Path, prefix: str):
    entries = []
    archive = np.load(path, allow_pickle=False)
    members = set(archive.zip.namelist())
    for key in archive.files:
        info = archive.zip.getinfo(key + ".npy") if key + ".npy" in members else None
        shape, dtype = None, None
        if info is not None:
            with archive.zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                shape, _, dtype = reader(f)

        def load(key=key):
            array = archive[key]
            if array.dtype.kind == "f" and not array.dtype.isnative:
                array = array.astype(array.dtype.newbyteorder("="))
            return array

        if dtype is None:
            array = load()
            shape, dtype = array.shape, array.dtype
        entries.append(TensorEntry(f"{prefix}{key}", tuple(shape), np.dtype(dtype).name,
                                   load))
    return entries


# ------------------------------------------------------------------------ torch files

def _tensor_entry(name, tensor):
    import torch
    tensor = tensor.detach()
    names = {torch.bfloat16: "bfloat16", torch.float16: "float16",
             torch.float32: "float32", torch.float64: "float64"}
    for attr, fp8 in (("float8_e4m3fn", "float8_e4m3fn"), ("float8_e5m2", "float8_e5m2")):
        if hasattr(torch, attr):
            names[getattr(torch, attr)] = fp8
    dtype = names.get(tensor.dtype, str(tensor.dtype).replace("torch.", ""))

    def load():
        t = tensor.cpu()
        if dtype == "bfloat16":
            return t.view(torch.int16).numpy().view(np.uint16)
        if dtype.startswith("float8"):
            return t.view(torch.uint8).numpy()
        if dtype in FLOAT_DTYPES:
            return t.numpy()
        return None

    return TensorEntry(name, tuple(tensor.shape), dtype, load)


def _flatten_state(obj, prefix, out, skipped):
    """Tensors of a (possibly nested) state dict, with dotted names."""
    import torch
    if isinstance(obj, torch.Tensor):
        out.append(_tensor_entry(prefix, obj))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _flatten_state(value, f"{prefix}.{key}" if prefix else str(key), out, skipped)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _flatten_state(value, f"{prefix}.{i}" if prefix else str(i), out, skipped)
    else:
        skipped.append((prefix or "<root>", f"not a tensor ({type(obj).__name__})"))


def _torch_entries(path: Path, skipped):
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{path}: reading PyTorch files needs torch, which is not "
                              "installed (pip install torch)") from None
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError)
        text = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{path}: cannot load as a PyTorch state dict "
                              f"({type(exc).__name__}: {text})") from None
    entries = []
    _flatten_state(state, "", entries, skipped)
    return entries


# ------------------------------------------------------------------------------ open

def detect_kind(path) -> str:
    """What a path holds: "safetensors", "safetensors-dir", "npy", "npz" or "torch"."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: cannot read file: No such file or directory")
    if path.is_dir():
        return "safetensors-dir"
    suffix = path.suffix.lower()
    if path.name.endswith(".safetensors.index.json"):
        return "safetensors-dir"
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read file: {exc.strerror or exc}") from None
    if magic.startswith(b"\x93NUMPY"):
        return "npy"
    if suffix == ".safetensors":
        return "safetensors"
    if magic.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile:
            names = []
        if not names or all(n.endswith(".npy") for n in names):
            return "npz"
        return "torch"
    if suffix in TORCH_SUFFIXES or magic[:1] == b"\x80":  # a pickle (legacy torch.save)
        return "torch"
    if len(magic) == 8 and struct.unpack("<Q", magic)[0] < _MAX_HEADER:
        with open(path, "rb") as f:
            f.seek(8)
            if f.read(1) == b"{":
                return "safetensors"
    raise CheckpointError(f"{path}: not a .safetensors, .npy, .npz or PyTorch file")


def _matches(name, include, exclude):
    if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not (exclude and any(fnmatch.fnmatchcase(name, p) for p in exclude))


def _patterns(value):
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(p for p in value.split(",") if p)
    return tuple(value)


def open_checkpoint(source, include=None, exclude=None, *, prefix_names=False) -> Checkpoint:
    """List the tensors of a checkpoint file, a directory of shards, or a mapping.

    Parameters
    ----------
    source : str, os.PathLike or mapping
        A ``.safetensors`` file, a directory holding ``model.safetensors.index.json``
        (or ``.safetensors`` files), the index file itself, an ``.npy``/``.npz`` file, a
        PyTorch ``.pt``/``.pth``/``.bin`` file (needs torch), or a mapping of names to
        arrays or tensors.
    include, exclude : str or sequence of str, optional
        Shell-style patterns (``*``, ``?``, ``[...]``; a string may list several,
        comma-separated): only tensors whose name matches an ``include`` pattern (all
        when none is given) and no ``exclude`` pattern are listed.
    prefix_names : bool
        Name the arrays of ``.npy``/``.npz`` files ``"<path>:<key>"`` (as the command
        line does when given several files) instead of ``"<key>"``.

    Returns
    -------
    Checkpoint
        ``tensors``: the float tensors, in file order, not read yet; ``skipped``:
        ``(name, reason)`` for the others.

    Raises
    ------
    CheckpointError
        A file that cannot be read, naming the file and the reason.

    Examples
    --------
    >>> import numpy as np
    >>> from numba_quant.reporting.checkpoint import open_checkpoint
    >>> ckpt = open_checkpoint({"w": np.ones((2, 3), np.float32), "ids": np.arange(3)})
    >>> [(t.name, t.shape, t.dtype) for t in ckpt.tensors], ckpt.skipped
    ([('w', (2, 3), 'float32')], [('ids', 'int64 tensor (not floating point)')])
    """
    include, exclude = _patterns(include), _patterns(exclude)
    skipped = []
    if hasattr(source, "items") and not isinstance(source, (str, os.PathLike)):
        entries = [_array_entry(str(name), array) for name, array in source.items()]
        description = f"{len(entries)} array(s) given in Python"
    else:
        path = Path(source)
        if not path.exists():
            raise CheckpointError(f"{path}: cannot read file: No such file or directory")
        kind = detect_kind(path)
        prefix = f"{path}:" if prefix_names else ""
        if kind == "safetensors":
            entries = _safetensors_entries(path)
            description = f"safetensors file {path}"
        elif kind == "safetensors-dir":
            entries, description = _safetensors_directory(path)
        elif kind == "npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            entries = [_array_entry(str(path) if prefix_names else path.stem, array)]
            description = f".npy file {path}"
        elif kind == "npz":
            try:
                entries = _npz_entries(path, prefix)
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise CheckpointError(f"{path}: cannot load: {exc}") from None
            if not entries:
                raise CheckpointError(f"{path}: the .npz file holds no arrays")
            description = f".npz file {path}"
        else:
            entries = _torch_entries(path, skipped)
            description = f"PyTorch file {path}"
    checkpoint = Checkpoint(description)
    for entry in entries:
        if not _matches(entry.name, include, exclude):
            continue
        if entry.is_float:
            checkpoint.tensors.append(entry)
        else:
            checkpoint.skipped.append((entry.name,
                                       f"{entry.dtype} tensor (not floating point)"))
    checkpoint.skipped += [s for s in skipped if _matches(s[0], include, exclude)]
    return checkpoint
