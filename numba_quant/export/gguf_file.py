"""``to_gguf``: a GGUF model quantized to one of llama-quantize's file types.

The output is what llama.cpp's ``llama-quantize IN OUT TYPE`` writes for the same input
and options, byte for byte: the same tensors in the same order (llama-quantize's, see
:func:`numba_quant.export.gguf_rules.tensor_order`), each with the type its rules
choose, quantized by :func:`numba_quant.gguf.quantize` (ggml's bytes); the input's
metadata in its order, less the split keys, then ``general.quantization_version`` and
``general.file_type``, then the importance matrix's keys; 32-byte alignment.

The container (header, metadata, tensor infos, alignment) is read and written by
:mod:`numba_quant.export.gguf_container`, which copies the input's metadata as bytes.

Memory: the input is a memory map; each tensor is converted to float32 and quantized a
run of rows at a time (:data:`numba_quant._host.tuning.EXPORT_CHUNK_BYTES` of float32,
in two chunk buffers kept from tensor to tensor), into the tensor's output buffer,
which is written before the next tensor is read.
"""
from __future__ import annotations

import concurrent.futures
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numba_quant import gguf as _gguf
from numba_quant._host import tuning as _tuning
from numba_quant.export import gguf_rules as rules
from numba_quant.export.cluster import results_in_order
from numba_quant.export.gguf_container import (
    STRING,
    TYPE_SIZES,
    UINT32,
    GGUFOutput,
    key_value,
    read_header,
)
from numba_quant.export.chunks import chunk_buffers, release_chunk_buffers, widen_rows
from numba_quant.export.direct_file import DirectFile
from numba_quant.export.imatrix import read_imatrix
from numba_quant.export.report import ExportError, ExportReport, TensorRow, sqnr_db
from numba_quant.export.safetensors_out import staged_file

__all__ = ["to_gguf", "parse_tensor_type", "SOURCE_TYPES"]

#: Stored types of the tensors that can be converted (what convert_hf_to_gguf writes).
SOURCE_TYPES = ("F32", "F16", "BF16")
# Types this package writes: its GGUF quantizers, and plain float32.
_WRITABLE = ("F32",) + tuple(_gguf.TYPES)
_SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")


def parse_tensor_type(item):
    """``"PATTERN=TYPE"`` (or a ``(pattern, type)`` pair) as llama-quantize's
    ``--tensor-type`` reads it: the pattern lower-cased, searched anywhere in the name
    (a regular expression), the type by name in any case."""
    if isinstance(item, str):
        pattern, sep, qtype = item.partition("=")
        if not sep or not pattern or not qtype:
            raise ValueError(f"--tensor-type {item!r}: expected NAME_OR_REGEX=TYPE")
    else:
        pattern, qtype = item
    try:
        rx = re.compile(pattern.lower())
    except re.error as exc:
        raise ValueError(f"--tensor-type {pattern!r}: not a regular expression "
                         f"({exc})") from None
    return rx, _writable_type(qtype, "--tensor-type")


def _writable_type(qtype, option):
    try:
        name = rules.ggml_type_named(qtype)
    except ValueError:
        name = None
    if name not in _WRITABLE:
        raise ValueError(f"{option}: type {qtype!r} cannot be written; types: "
                         f"{', '.join(_WRITABLE)}")
    return name


@dataclass
class _Tensor:
    name: str
    ne: tuple          # ggml's shape: the row length first
    stored: str        # the input's type name
    offset: int        # of its data in the file
    nbytes: int
    target: str = ""
    converted: bool = False

    @property
    def rows(self):
        return int(np.prod(self.ne[1:], dtype=np.int64))

    @property
    def experts(self):
        return int(np.prod(self.ne[2:], dtype=np.int64))


def _ggml_shape(shape):
    # ggml counts dimensions up to the last one that is not 1 (ggml_n_dims).
    ne = [int(n) for n in shape]
    while len(ne) > 1 and ne[-1] == 1:
        ne.pop()
    return tuple(ne)


def _facts(header):
    values = {kv.key: kv.value for kv in header.kvs if kv.value is not None}
    return rules.ModelFacts.from_metadata(values)


def _tensors(header):
    out = []
    for t in header.tensors:
        out.append(_Tensor(t.name, _ggml_shape(t.ne), rules.ggml_type_named(t.ggml_type),
                           header.data_offset + t.offset, t.nbytes))
    out.sort(key=lambda t: rules.tensor_order(t.name))
    return out


def _plan(tensors, ft, facts, options, path, imatrix):
    """Set each tensor's target type; raise for what cannot be written.  Returns the
    messages for tensors whose type needs an importance matrix that is not given."""
    planned = rules.plan([(t.name, t.ne, t.stored) for t in tensors], ft, facts, options)
    requantized, unwritable, needs_imatrix = [], [], []
    for t, (target, allowed) in zip(tensors, planned):
        t.target = target
        t.converted = allowed and target != t.stored
        if t.converted and t.ne[0] % rules.BLOCK_SIZES[target]:
            # Only a type option can get here: the rules fall back to a type that fits.
            raise ExportError(f"{t.name}: rows of {t.ne[0]} values are not whole {target} "
                              f"blocks of {rules.BLOCK_SIZES[target]} (from "
                              "--output-tensor-type or --token-embedding-type)")
        if t.converted and t.stored not in SOURCE_TYPES:
            requantized.append(f"{t.name} ({t.stored})")
        elif t.converted and target not in _WRITABLE:
            unwritable.append(f"{t.name} ({target})")
        elif (t.converted and rules.requires_imatrix(t.name, target, ft)
              and (imatrix is None or imatrix.for_tensor(t.name, t.ne[0], t.experts)
                   is None)):
            needs_imatrix.append(f"{ft.name}: {t.name} becomes {target}, which needs its "
                                 "importance matrix (--imatrix)")
    if requantized:
        raise ExportError(f"{path}: already quantized; only F32, F16 and BF16 tensors "
                          f"are converted: {', '.join(requantized)}")
    if unwritable:
        raise ExportError(f"{ft.name}: the rules choose types that are not implemented: "
                          f"{', '.join(unwritable)}")
    return needs_imatrix


def _row_bytes(t, qtype):
    """Bytes of one row of ``t`` stored as ``qtype``."""
    block, size = TYPE_SIZES[rules.GGML_IDS[qtype]]
    return t.ne[0] // block * size


def _metadata(header, ft, imatrix):
    """The output's pairs: the input's in order, less the split keys and the keys set
    here, which go last (as ggml's setters append a key they replace)."""
    new = [key_value("general.quantization_version", UINT32, rules.QUANTIZATION_VERSION),
           key_value("general.file_type", UINT32, ft.ftype)]
    set_here = ["general.quantization_version", "general.file_type"]
    if imatrix is not None:
        for key, kind, value in imatrix.metadata():
            new.append(key_value(key, STRING if kind == "str" else UINT32, value))
            set_here.append(key)
    dropped = set(set_here) | set(_SPLIT_KEYS)
    return [kv.raw for kv in header.kvs if kv.key not in dropped] + new


@dataclass(frozen=True)
class TensorJob:
    """One tensor to convert, self-contained so that a Dask worker can run it from the
    input file's path: where its data lies, its types and shape, its importance rows."""
    path: str
    offset: int                 # of the tensor's data in the file
    stored: str                 # F32, F16 or BF16
    ne: tuple                   # ggml's shape: the row length first
    target: str
    row_bytes: int
    imatrix_rows: object = None     # float32 (experts, n_per_row) or None
    chunk_bytes: int = 64 << 20

    @property
    def rows(self):
        return int(np.prod(self.ne[1:], dtype=np.int64))


_STORED_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def run_job(job, to_device=None):
    """Quantize one tensor: returns (uint8 rows of ggml's blocks, signal, noise), the
    sums of x**2 and of the squared error of the values decoded from the bytes (the
    report's measure, on the host).  The types that quantize in a single pass go row by
    row from the file to their bytes and sums in one pass (``_cpu.gguf_export``); the
    others, and every type on the GPU, in chunks of rows widened to float32, quantized,
    decoded, then measured.  Both sum each row the same way, and the rows' sums are added
    once at the end, so every route reports the same numbers."""
    # Imported here: importing numba_quant (whose report reads gguf_rules) loads no numba.
    from numba_quant._cpu import gguf_export as _measured
    n = job.ne[0]
    raw = np.memmap(job.path, _STORED_DTYPES[job.stored], "r", offset=job.offset,
                    shape=(job.rows, n))
    out = np.empty((job.rows, job.row_bytes), np.uint8)
    sums = np.empty((job.rows, 2), np.float64)
    one_pass = to_device is None and job.target in _gguf.ONE_PASS_TYPES
    if one_pass:            # no float32 copy of the rows: a chunk may be a whole tensor
        step = job.rows
    else:
        step = max(1, min(job.rows, job.chunk_bytes // (4 * n)))
        values, decoded = chunk_buffers(2, step, n)    # a chunk's rows, decoded values
    rows_per_expert = job.ne[1] if len(job.ne) > 1 else 1
    r0 = 0
    while r0 < job.rows:
        expert = r0 // rows_per_expert
        # A chunk never crosses an expert: each has its own importance row.
        r1 = min(job.rows, r0 + step, (expert + 1) * rows_per_expert)
        dest = out[r0:r1]
        w = None if job.imatrix_rows is None else job.imatrix_rows[expert]
        if one_pass:
            _gguf.quantize_stored(raw[r0:r1], job.stored, job.target, w, dest,
                                  sums[r0:r1])
            r0 = r1
            continue
        x = widen_rows(raw[r0:r1], values[:r1 - r0])
        if job.target == "F32":            # F16/BF16 widened: exact
            dest[...] = x.view(np.uint8).reshape(r1 - r0, -1)
            back = x
        else:
            if to_device is None:
                _gguf.quantize(x, job.target, imatrix=w, out=dest)
            else:
                dest[...] = to_device(_gguf.quantize(to_device(x), job.target, imatrix=w))
            back = _gguf.dequantize(dest, job.target, out=decoded[:r1 - r0])
        _measured.error_rows(x, back, sums[r0:r1])
        r0 = r1
    del raw
    return out, float(sums[:, _measured.SIGNAL].sum()), float(sums[:, _measured.NOISE].sum())


def to_gguf(source, destination, file_type, *, imatrix=None, tensor_types=(),
            output_tensor_type=None, token_embedding_type=None, pure=False,
            leave_output_tensor=False, force=False, device="cpu",
            client=None, dry_run=False) -> ExportReport:
    """Write ``source`` (a GGUF of F32/F16/BF16 tensors, as ``convert_hf_to_gguf.py``
    writes it) quantized to ``file_type``, as ``llama-quantize`` does.

    Parameters
    ----------
    source, destination : str or path
        ``destination`` may be None with ``dry_run``.
    file_type : str
        One of llama-quantize's file types: ``Q8_0``, ``Q4_0``, ``Q4_1``, ``Q5_0``,
        ``Q5_1``, ``Q2_K``, ``Q2_K_S``, ``Q3_K_S``/``_M``/``_L``, ``Q4_K_S``/``_M``,
        ``Q5_K_S``/``_M``, ``Q6_K``, ``IQ4_NL``, ``IQ4_XS``, ``TQ1_0``, ``TQ2_0``,
        ``MXFP4_MOE``, ``F16``, ``BF16``, ``F32`` (``Q4_K`` means ``Q4_K_M``).
    imatrix : str or path, optional
        llama-imatrix's output (GGUF or legacy ``.dat``): per-tensor column weights for
        the quantizers that use them.  Recorded in the metadata with the path as given.
    tensor_types : sequence of str
        ``"PATTERN=TYPE"`` overrides (``--tensor-type``): the first pattern found in a
        tensor's name decides its type (before the row-length fallback).
    output_tensor_type, token_embedding_type : str, optional
        Types for ``output.weight`` and ``token_embd.weight`` (no fallback).
    pure : bool
        Every converted tensor gets the file type's default type (and the fallback).
    leave_output_tensor : bool
        Copy ``output.weight`` as it is.
    force : bool
        Replace an existing ``destination``.
    device : {"cpu", "gpu"}
        Where the quantizers run (the bytes are the same).
    client : distributed.Client, optional
        Quantize on the workers of this Dask cluster (a few tensors in flight per
        worker; each reads its tensor from ``source``, so the path must be readable
        there).  The bytes are the same.
    dry_run : bool
        Plan only (``--dry-run``): the report's rows give each converted tensor's type
        and size and ``output_bytes`` the size the file would have; nothing is quantized
        or written, the SQNR is NaN, and a missing importance matrix is a note in
        ``report.notes`` instead of an error.

    Returns
    -------
    ExportReport
        One row per converted tensor (``dtype`` is ``STORED->TYPE``), SQNR from the
        written bytes, the file sizes, bits per converted weight.

    Raises
    ------
    ExportError
        Bad input (missing, malformed, already quantized, an importance matrix that
        does not fit); nothing is left at ``destination``.
    OutputExistsError
        ``destination`` exists and ``force`` is False.
    ValueError
        An unknown file type or type.
    """
    started = time.perf_counter()
    ft = rules.file_type_named(file_type)
    patterns = tuple(parse_tensor_type(item) for item in tensor_types)
    out_type = (None if output_tensor_type is None
                else _writable_type(output_tensor_type, "--output-tensor-type"))
    embd_type = (None if token_embedding_type is None
                 else _writable_type(token_embedding_type, "--token-embedding-type"))
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device: expected 'cpu' or 'gpu', got {device!r}")
    if client is not None and device != "cpu":
        raise ValueError("device='gpu' and a Dask client cannot be combined")
    to_device = _device_copier() if device == "gpu" else None
    if destination is None and not dry_run:
        raise ValueError("destination: a path is needed unless dry_run=True")
    source = Path(source)
    destination = None if destination is None else Path(destination)
    if not source.is_file():
        raise ExportError(f"{source}: no such file")
    header = read_header(source)
    split = header.value("split.count")
    if split is not None and int(split) > 1:
        raise ExportError(f"{source}: one shard of a split model ({int(split)} files); "
                          "merge it first (llama-gguf-split --merge)")
    im = None if imatrix is None else read_imatrix(imatrix)
    options = rules.PlanOptions(pure=pure, quantize_output_tensor=not leave_output_tensor,
                                output_tensor_type=out_type,
                                token_embedding_type=embd_type, tensor_types=patterns,
                                has_imatrix=im is not None)
    tensors = _tensors(header)
    needs_imatrix = _plan(tensors, ft, _facts(header), options, source, im)
    if needs_imatrix and not dry_run:
        raise ExportError(needs_imatrix[0])
    rep = ExportReport(ft.name, source, destination, dry_run=dry_run, notes=needs_imatrix)
    rep.input_bytes = source.stat().st_size
    infos = [(t.name, t.ne, rules.GGML_IDS[t.target], t.rows * _row_bytes(t, t.target))
             if t.converted else (t.name, t.ne, rules.GGML_IDS[t.stored], t.nbytes)
             for t in tensors]
    if dry_run:
        for t, (*_, nbytes) in zip(tensors, infos):
            if t.converted:
                rep.tensors.append(_row(t, nbytes, math.nan, 0.0, 0.0))
                rep.quantized_weights += t.rows * t.ne[0]
        rep.output_bytes = GGUFOutput(None, _metadata(header, ft, im), infos).file_size()
        rep.seconds = time.perf_counter() - started
        return rep
    jobs = [_job(t, source, im) for t in tensors]
    try:
        _write(source, destination, force, header, ft, im, infos, tensors, jobs, client,
               to_device, rep)
    finally:
        release_chunk_buffers()
    rep.output_bytes = destination.stat().st_size
    rep.seconds = time.perf_counter() - started
    return rep


def _write(source, destination, force, header, ft, im, infos, tensors, jobs, client,
           to_device, rep):
    # Each tensor's bytes are written by a writer thread while the next tensor is
    # quantized (the kernel's writeback throttling then waits beside the work, not
    # before it); one write at a time, so at most one finished tensor waits in memory.
    writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gguf-writer")
    # The writer innermost: it has finished its last write before the file is closed.
    with staged_file(destination, force=force) as stage, DirectFile(stage) as fh, writer:
        out_file = GGUFOutput(fh, _metadata(header, ft, im), infos)
        out_file.write_header()
        results = (results_in_order(client, run_job,
                                    ((job,) if job is not None else None for job in jobs))
                   if client is not None
                   else (None if job is None else run_job(job, to_device) for job in jobs))
        written = None
        for t, job, result in zip(tensors, jobs, results):
            if job is None:         # copied as it is
                data = np.memmap(source, np.uint8, "r", offset=t.offset, shape=(t.nbytes,))
            else:
                data, signal, noise = result
                rep.tensors.append(_row(t, data.nbytes, sqnr_db(signal, noise), signal,
                                        noise))
                rep.quantized_weights += t.rows * t.ne[0]
            if written is not None:
                written.result()
            written = writer.submit(out_file.write_tensor, data)
            del data, result
        if written is not None:
            written.result()


def _row(t, output_bytes, sqnr, signal, noise):
    return TensorRow(t.name, tuple(reversed(t.ne)), f"{t.stored}->{t.target}", t.nbytes,
                     output_bytes, sqnr, signal, noise)


def _job(t, source, im):
    if not t.converted:
        return None
    return TensorJob(str(source), t.offset, t.stored, t.ne, t.target,
                     _row_bytes(t, t.target),
                     None if im is None else im.for_tensor(t.name, t.ne[0], t.experts),
                     _tuning.EXPORT_CHUNK_BYTES)


def _device_copier():
    """Moves a host array to the GPU and a device array back (for ``device="gpu"``)."""
    from numba import cuda

    if not cuda.is_available():
        raise ExportError("device='gpu': no CUDA GPU is available")

    def copy(a):
        if isinstance(a, np.ndarray):
            return cuda.to_device(a)
        return a.copy_to_host()
    return copy
