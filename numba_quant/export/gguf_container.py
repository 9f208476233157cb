"""The GGUF container: reading a file's header and writing one, without decoding what
is only copied.

A GGUF file (version 2 or 3, little-endian) is: the magic ``GGUF``, the version
(uint32), the tensor and key counts (uint64), the key-value pairs, the tensor infos
(name, dimension count, ``ne``, ggml type, offset in the data section), padding to the
alignment (``general.alignment``, default 32), then the data, each tensor at an offset
that is a multiple of the alignment.

:func:`read_header` keeps each key-value pair's bytes as they are and decodes only
scalars and numeric arrays (what the type rules read): a tokenizer's hundreds of
thousands of strings are skipped over, not turned into Python objects, and written back
as the same bytes.  :class:`GGUFOutput` writes a header from such pairs and new ones,
then the tensors' data with the padding ggml writes (after every tensor, to the
alignment).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numba_quant.export.report import ExportError

__all__ = ["KeyValue", "TensorInfo", "GGUFHeader", "read_header", "GGUFOutput",
           "key_value", "TYPE_SIZES"]

MAGIC = b"GGUF"
VERSION = 3
DEFAULT_ALIGNMENT = 32

# GGUF value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = range(10)
UINT64, INT64, FLOAT64 = 10, 11, 12
# Arrays of at most this many strings are decoded (others only skipped over).
_DECODED_STRINGS = 1024
# struct's (and numpy's) format of each scalar type.
_SCALARS = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I",
            INT32: "<i", FLOAT32: "<f", BOOL: "<B", UINT64: "<Q", INT64: "<q",
            FLOAT64: "<d"}

#: ggml's (values per block, bytes per block) of every type a GGUF file may hold, by id.
TYPE_SIZES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
              8: (32, 34), 9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144),
              13: (256, 176), 14: (256, 210), 15: (256, 292), 16: (256, 66),
              17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
              22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4),
              27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54),
              35: (256, 66), 39: (32, 17)}


@dataclass
class KeyValue:
    """One metadata pair: its key, value type, its bytes in the file (key, type and
    value), and the value decoded when it is a scalar, a string, a numeric array or a
    short array of strings (None for longer arrays of strings and arrays of arrays)."""
    key: str
    vtype: int
    raw: bytes
    value: object = None


@dataclass
class TensorInfo:
    name: str
    ne: tuple           # as stored: the row length first
    ggml_type: int
    offset: int         # from the start of the data section

    @property
    def nbytes(self):
        block, size = TYPE_SIZES[self.ggml_type]
        return int(np.prod(self.ne, dtype=np.int64)) // block * size


@dataclass
class GGUFHeader:
    path: Path
    version: int
    kvs: list = field(default_factory=list)
    tensors: list = field(default_factory=list)
    alignment: int = DEFAULT_ALIGNMENT
    data_offset: int = 0

    def value(self, key, default=None):
        for kv in self.kvs:
            if kv.key == key:
                return kv.value
        return default


class _Cursor:
    def __init__(self, path, data):
        self.path, self.data, self.pos = path, data, 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ExportError(f"{self.path}: malformed GGUF file: it ends at byte "
                              f"{len(self.data)}, inside the header (byte {self.pos})")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out if len(out) > 1 else out[0]

    def string(self):
        n = self.take("<Q")
        if n > len(self.data) - self.pos:
            raise ExportError(f"{self.path}: malformed GGUF file: a string of {n} bytes at "
                              f"byte {self.pos - 8} runs past the end of the file")
        raw = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return raw


def _value(cur, vtype, decode=True):
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        v = cur.take(fmt)
        return bool(v) if vtype == BOOL else v
    if vtype == STRING:
        raw = cur.string()
        return raw.decode("utf-8", "replace") if decode else None
    if vtype == ARRAY:
        sub, n = cur.take("<IQ")
        if sub in _SCALARS:
            width = np.dtype(_SCALARS[sub]).itemsize
            if n * width > len(cur.data) - cur.pos:
                raise ExportError(f"{cur.path}: malformed GGUF file: an array of {n} values "
                                  f"at byte {cur.pos} runs past the end of the file")
            arr = np.frombuffer(cur.data, _SCALARS[sub], n, cur.pos)
            cur.pos += n * width
            return arr.copy()
        # Strings are decoded for short arrays (dataset names); a vocabulary is skipped.
        keep = decode and sub == STRING and n <= _DECODED_STRINGS
        items = [_value(cur, sub, decode=keep) for _ in range(n)]
        return items if keep else None
    raise ExportError(f"{cur.path}: malformed GGUF file: unknown value type {vtype} at "
                      f"byte {cur.pos - 4}")


def read_header(path) -> GGUFHeader:
    """The header of the GGUF file at ``path`` (an ExportError naming the file when it is
    not one, or is cut short or inconsistent)."""
    path = Path(path)
    with open(path, "rb") as fh:
        data = fh.read(8)
        if data[:4] != MAGIC:
            raise ExportError(f"{path}: not a GGUF file (no GGUF magic)")
    size = path.stat().st_size
    mm = np.memmap(path, np.uint8, "r") if size else np.zeros(0, np.uint8)
    cur = _Cursor(path, memoryview(mm))
    cur.take("<4s")
    version = cur.take("<I")
    if version not in (2, 3):
        raise ExportError(f"{path}: GGUF version {version} is not supported (2 and 3 are; "
                          "a big-endian file reads as a huge version)")
    n_tensors, n_kv = cur.take("<QQ")
    header = GGUFHeader(path, version)
    for _ in range(n_kv):
        start = cur.pos
        key = cur.string().decode("utf-8", "replace")
        vtype = cur.take("<I")
        value = _value(cur, vtype)
        header.kvs.append(KeyValue(key, vtype, bytes(cur.data[start:cur.pos]), value))
    alignment = header.value("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ExportError(f"{path}: general.alignment {alignment!r} is not a power of 2")
    header.alignment = alignment
    for _ in range(n_tensors):
        name = cur.string().decode("utf-8", "replace")
        n_dims = cur.take("<I")
        if not 1 <= n_dims <= 4:
            raise ExportError(f"{path}: tensor {name!r} has {n_dims} dimensions")
        ne = cur.take(f"<{n_dims}Q")
        ne = (ne,) if n_dims == 1 else tuple(ne)
        ggml_type, offset = cur.take("<IQ")
        if ggml_type not in TYPE_SIZES:
            raise ExportError(f"{path}: tensor {name!r} has an unknown ggml type "
                              f"{ggml_type}")
        if ne[0] % TYPE_SIZES[ggml_type][0]:
            raise ExportError(f"{path}: tensor {name!r}: rows of {ne[0]} values are not "
                              f"whole blocks of its type")
        header.tensors.append(TensorInfo(name, tuple(int(n) for n in ne), ggml_type,
                                         int(offset)))
    header.data_offset = -(-cur.pos // alignment) * alignment
    names = set()
    for t in header.tensors:
        if t.name in names:
            raise ExportError(f"{path}: tensor {t.name!r} appears twice")
        names.add(t.name)
        if header.data_offset + t.offset + t.nbytes > size:
            raise ExportError(f"{path}: tensor {t.name!r} ({t.nbytes} bytes at data offset "
                              f"{t.offset}) runs past the end of the file (cut short?)")
    del cur, mm
    return header


def key_value(key, vtype, value) -> bytes:
    """The bytes of a new pair: a UINT32 or a STRING value."""
    raw = key.encode("utf-8")
    out = struct.pack("<Q", len(raw)) + raw + struct.pack("<I", vtype)
    if vtype == UINT32:
        return out + struct.pack("<I", value)
    if vtype == STRING:
        text = value.encode("utf-8")
        return out + struct.pack("<Q", len(text)) + text
    raise ValueError(f"key_value: value type {vtype} is not written here")


class GGUFOutput:
    """Writes a GGUF file: :meth:`write_header` with the pairs' bytes and the tensors'
    (name, ne, ggml type, bytes), then :meth:`write_tensor` for each tensor in that
    order."""

    def __init__(self, fh, kv_bytes, tensors, alignment=DEFAULT_ALIGNMENT):
        self.fh, self.kv_bytes, self.tensors = fh, list(kv_bytes), list(tensors)
        self.alignment = alignment
        self._next = 0

    def _pad(self, n):
        return -n % self.alignment

    def write_header(self):
        self.fh.write(self._header())

    def file_size(self) -> int:
        """The size of the whole file, header and padded tensors."""
        return len(self._header()) + sum(n + self._pad(n) for *_, n in self.tensors)

    def _header(self) -> bytes:
        out = bytearray(MAGIC + struct.pack("<IQQ", VERSION, len(self.tensors),
                                            len(self.kv_bytes)))
        for raw in self.kv_bytes:
            out += raw
        offset = 0
        for name, ne, ggml_type, nbytes in self.tensors:
            raw = name.encode("utf-8")
            out += struct.pack("<Q", len(raw)) + raw + struct.pack("<I", len(ne))
            out += struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", ggml_type, offset)
            offset += nbytes + self._pad(nbytes)
        out += bytes(self._pad(len(out)))
        return bytes(out)

    def write_tensor(self, data):
        """The next tensor's bytes (any C-contiguous array), then the padding."""
        name, _, _, nbytes = self.tensors[self._next]
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        if data.size != nbytes:
            raise ValueError(f"{name}: {data.size} bytes written, {nbytes} declared")
        self.fh.write(memoryview(data))
        self.fh.write(bytes(self._pad(nbytes)))
        self._next += 1
