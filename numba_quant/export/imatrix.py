"""Importance matrices from llama-imatrix's files, as llama-quantize reads them.

Two formats:

* GGUF: per weight ``NAME.in_sum2`` (the sums of squared activations, one run of
  ``n_per_row`` values per expert) and ``NAME.counts`` (tokens seen, one per expert),
  both F32, and the keys ``imatrix.datasets``, ``imatrix.chunk_count`` and
  ``imatrix.chunk_size``.  The importance of a column is ``in_sum2 / count`` in float32,
  with the count rounded to an integer first; an expert that saw no token gets 1.0.
* the legacy ``.dat``: little-endian int32 entry count, then per entry an int32 name
  length, the name, int32 call count, int32 value count and the float32 values (already
  averaged, times the call count), optionally followed by the chunk count and a dataset
  name.  The importance is ``value / calls`` (the stored value when calls is 0).

llama-quantize also records the file in the output's metadata (:meth:`ImportanceMatrix.
metadata`).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numba_quant.export.gguf_container import read_header
from numba_quant.export.gguf_rules import TOKEN_EMBEDDINGS
from numba_quant.export.report import ExportError

__all__ = ["ImportanceMatrix", "read_imatrix"]

_GGUF_MAGIC = b"GGUF"
# llama-quantize copies the file name into a 128-byte field.
_MAX_STRING = 127


@dataclass
class ImportanceMatrix:
    """The importance of each weight's columns (``values[name]``: float32, one run of
    ``n_per_row`` per expert), with what llama-quantize records about the file."""
    path_text: str
    values: dict = field(default_factory=dict)
    datasets: list = field(default_factory=list)
    chunk_count: int = 0

    def metadata(self):
        """The keys llama-quantize adds to the output: ``[(key, kind, value)]`` with kind
        ``"str"`` or ``"u32"``, in its order."""
        out = [("quantize.imatrix.file", "str", _clip(self.path_text))]
        if self.datasets:
            out.append(("quantize.imatrix.dataset", "str", _clip(self.datasets[0])))
        out.append(("quantize.imatrix.entries_count", "u32", len(self.values)))
        if self.chunk_count > 0:
            out.append(("quantize.imatrix.chunks_count", "u32", self.chunk_count))
        return out

    def for_tensor(self, name, n_per_row, n_experts):
        """The importance rows of tensor ``name`` as a float32 ``(n_experts, n_per_row)``
        array, None without an entry; an ExportError when the sizes differ (except for
        the token embeddings, quantized without, as llama-quantize does)."""
        v = self.values.get(name)
        if v is None:
            return None
        if v.size != n_per_row * n_experts:
            if name in TOKEN_EMBEDDINGS:
                return None
            raise ExportError(f"{self.path_text}: the importance matrix of {name} has "
                              f"{v.size} values; the tensor needs {n_per_row * n_experts} "
                              f"({n_experts} x {n_per_row})")
        return v.reshape(n_experts, n_per_row)


def _clip(text):
    raw = text.encode("utf-8")[:_MAX_STRING]
    return raw.decode("utf-8", errors="ignore")


def read_imatrix(path) -> ImportanceMatrix:
    """Read a GGUF or legacy ``.dat`` importance matrix (``path`` is recorded in the
    output as given)."""
    path_text = str(path)
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ExportError(f"{path_text}: cannot read the importance matrix: "
                          f"{exc.strerror or exc}") from None
    im = _read_gguf(p) if magic == _GGUF_MAGIC else _read_dat(p)
    im.path_text = path_text
    for name, v in im.values.items():
        if not np.isfinite(v).all():
            raise ExportError(f"{path_text}: the importance matrix of {name} has a "
                              f"non-finite value")
        if (v < 0).any():
            raise ExportError(f"{path_text}: the importance matrix of {name} has a "
                              f"negative value")
    return im


def _read_gguf(p) -> ImportanceMatrix:
    header = read_header(p)
    keys = {kv.key: kv.value for kv in header.kvs}
    missing = [k for k in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size")
               if k not in keys]
    if missing:
        raise ExportError(f"{p}: missing importance-matrix metadata: {', '.join(missing)}")
    datasets = [str(d) for d in keys["imatrix.datasets"] or ()]
    chunk_count = int(keys["imatrix.chunk_count"])
    sums, counts = {}, {}
    for t in header.tensors:
        for suffix, into in ((".in_sum2", sums), (".counts", counts)):
            if t.name.endswith(suffix):
                if t.ggml_type != 0:
                    raise ExportError(f"{p}: {t.name} must be F32 (type 0), not type "
                                      f"{t.ggml_type}")
                n = int(np.prod(t.ne, dtype=np.int64))
                into[t.name[:-len(suffix)]] = np.array(np.memmap(
                    p, "<f4", "r", offset=header.data_offset + t.offset, shape=(n,)))
    if not sums and not counts:
        raise ExportError(f"{p}: no importance-matrix entries")
    values = {}
    for name in sorted(set(sums) | set(counts)):
        if name not in sums or name not in counts:
            raise ExportError(f"{p}: {name} has {'sums' if name in sums else 'counts'} "
                              f"but no {'counts' if name in sums else 'sums'}")
        s, c = sums[name], counts[name]
        if c.size == 0 or s.size % c.size:
            raise ExportError(f"{p}: {name}: {s.size} sums do not split into {c.size} "
                              f"experts")
        per = s.reshape(c.size, -1)
        out = np.ones_like(per)
        for j, count in enumerate(c.tolist()):
            n = float(_round_half_away(count))
            if n > 0:
                out[j] = per[j] / np.float32(n)
        values[name] = out.reshape(-1)
    return ImportanceMatrix("", values, datasets, chunk_count)


def _round_half_away(x):
    # C's lround: halves away from zero.
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def _read_dat(p) -> ImportanceMatrix:
    data = p.read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise ExportError(f"{p}: the importance matrix ends early (at byte {pos}); "
                              "neither GGUF nor llama-imatrix's .dat format")
        out = struct.unpack_from(fmt, data, pos)
        pos += size
        return out

    (n_entries,) = take("<i")
    if n_entries < 1:
        raise ExportError(f"{p}: no importance-matrix entries (not GGUF, and as .dat it "
                          f"declares {n_entries})")
    values = {}
    for _ in range(n_entries):
        (length,) = take("<i")
        if length < 0:
            raise ExportError(f"{p}: a negative name length at byte {pos - 4}")
        name = take(f"<{length}s")[0].split(b"\0", 1)[0].decode("utf-8", "replace")
        ncall, nval = take("<ii")
        if nval < 1:
            raise ExportError(f"{p}: {name}: {nval} values")
        v = np.frombuffer(data, "<f4", nval, pos).astype(np.float32)
        take(f"<{4 * nval}x")
        values[name] = v / np.float32(ncall) if ncall > 0 else v
    chunk_count, datasets = 0, []
    if pos < len(data):
        if pos + 4 <= len(data):
            (chunk_count,) = take("<i")
        if pos + 4 <= len(data):
            (length,) = take("<i")
            if 0 < length <= len(data) - pos:
                datasets.append(take(f"<{length}s")[0].split(b"\0", 1)[0]
                                .decode("utf-8", "replace"))
    return ImportanceMatrix("", values, datasets, chunk_count)
