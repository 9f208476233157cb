"""``to_compressed_tensors``: a Hugging Face model directory written in compressed-tensors,
as llmcompressor 0.14 writes it data-free.

Which modules are quantized (``targets``, ``ignore``, the model's Linear layers from its
class), the tensors of each shard written one run of rows at a time, the config and
recipe, the copied files, and the report measured from the written bytes.  The arithmetic
of each scheme is in :mod:`numba_quant.export.compressed_tensors`.
"""
from __future__ import annotations

import json
import mmap
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from numba_quant._host import storage as _storage
from numba_quant._host import tuning as _tuning
from numba_quant.reporting.checkpoint import (
    SAFETENSORS_INDEX,
    open_checkpoint,
    safetensors_shards,
)
from numba_quant.export.compressed_tensors import (
    FUSED_GROUPS,
    check_weight,
    global_scale_of,
    output_specs,
    pack_zero_points,
    quantization_config,
    quantize_rows,
    recipe_yaml,
    row_multiple,
    scheme_named,
)
from numba_quant.export.chunks import chunk_buffers, release_chunk_buffers, widen_rows
from numba_quant.export.cluster import results_in_order
from numba_quant.export.report import ExportError, ExportReport, TensorRow
from numba_quant.export.report import sqnr_db as _sqnr
from numba_quant.export.safetensors_out import (
    OutputExistsError,
    SafetensorsWriter,
    TensorSpec,
    staged_directory,
)

__all__ = ["to_compressed_tensors"]


# ------------------------------------------------------------------ which modules

def _is_linear_class(cls) -> bool:
    return any(c.__name__ in ("Linear", "LinearBase") for c in cls.__mro__)


def _matches(name, target, module_class=None) -> bool:
    """compressed-tensors' matching: ``re:`` followed by a regex matched at the start of
    the module name, else the exact module name (or a class name in its MRO)."""
    if target.startswith("re:"):
        return re.match(target[3:], name) is not None
    if target == name:
        return True
    return module_class is not None and any(c.__name__ == target
                                            for c in module_class.__mro__)


def _model_structure(model_dir):
    """``(linear modules (name, class) in module order, saved tensor names, tied weights
    {name: source name})`` from the model's class built on the meta device with
    transformers; None without transformers."""
    try:
        import torch
        import transformers
    except ImportError:
        return None
    config = transformers.AutoConfig.from_pretrained(model_dir)
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    with torch.device("meta"):
        if cls is not None:
            model = cls._from_config(config)
        else:
            model = transformers.AutoModel.from_config(config)
    linear = [(name, type(m)) for name, m in model.named_modules()
              if name and _is_linear_class(type(m))]
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    return linear, set(model.state_dict().keys()), dict(tied)


def _select(model_dir, names, targets, ignore):
    """``(quantized modules, ignored Linear modules, all Linear modules, the tensor
    names the model saves or None, {module: the tensor its weight is read from})``."""
    if targets is None:
        structure = _model_structure(model_dir)
        if structure is None:
            raise ExportError(
                "finding the Linear layers needs transformers (pip install transformers "
                "torch); without it name the layers to quantize with targets=REGEX "
                "(command line: --targets REGEX), a regex matched against whole module "
                "names such as 'encoder\\.layer\\.\\d+\\..*dense'")
        linear, saved, tied = structure
        classes = dict(linear)
        names = set(names)
        # a Linear weight tied to another tensor (lm_head to the embeddings) is not in
        # the checkpoint: llmcompressor unties it and quantizes a copy of its source
        sources = {n: (f"{n}.weight" if f"{n}.weight" in names
                       else tied.get(f"{n}.weight")) for n, _ in linear}
        modules = [n for n, _ in linear if sources[n] in names]
    else:
        patterns = [targets] if isinstance(targets, str) else list(targets)
        try:
            compiled = [re.compile(p) for p in patterns]
        except re.error as exc:
            raise ExportError(f"targets={patterns!r}: not a regular expression ({exc})"
                              ) from None
        modules = [n[:-len(".weight")] for n in names if n.endswith(".weight")
                   and any(c.fullmatch(n[:-len(".weight")]) for c in compiled)]
        classes, saved = {}, None
        sources = {m: f"{m}.weight" for m in modules}
    if not modules:
        raise ExportError(f"{model_dir}: no Linear layer found to quantize"
                          + (f" (targets={targets!r})" if targets is not None else ""))
    ignore = [ignore] if isinstance(ignore, str) else list(ignore)
    for pattern in ignore:
        if pattern.startswith("re:"):
            try:
                re.compile(pattern[3:])
            except re.error as exc:
                raise ExportError(f"ignore={pattern!r}: not a regular expression ({exc})"
                                  ) from None
    quantized, ignored = [], []
    for m in modules:
        if any(_matches(m, p, classes.get(m)) for p in ignore):
            ignored.append(m)
        else:
            quantized.append(m)
    return quantized, ignored, modules, saved, {m: sources[m] for m in modules}


def _fused_groups(quantized, modules):
    """NVFP4's global-scale groups: module -> the modules sharing its global scale."""
    present = set(modules)
    chosen = set(quantized)
    groups = {m: (m,) for m in quantized}
    for m in quantized:
        parent, _, leaf = m.rpartition(".")
        for names in FUSED_GROUPS:
            if leaf not in names:
                continue
            members = tuple(f"{parent}.{n}" if parent else n for n in names)
            if not all(x in present for x in members):
                continue
            left_out = [x for x in members if x not in chosen]
            if left_out:
                raise ExportError(
                    f"NVFP4 gives {', '.join(members)} one global scale (they are fused "
                    f"in vLLM), but {', '.join(left_out)} is ignored: ignore all of them "
                    "or none")
            groups[m] = members
    return groups


# ------------------------------------------------------------------ the export

def _decode_rows(entry, raw, r0, r1):
    # float32, float16 and bfloat16 widened into this thread's kept buffer (valid until
    # the next run of rows)
    if raw.ndim == 2 and entry.dtype in ("float32", "float16", "bfloat16"):
        x = widen_rows(raw[r0:r1], chunk_buffers(1, r1 - r0, raw.shape[1])[0])
        _release(raw)
        return x
    x = _storage.decode(raw[r0:r1], entry.dtype)
    # float32 input decodes to a view of the map: copy it before its pages are dropped
    x = np.array(x, dtype=np.float32, order="C", copy=np.may_share_memory(x, raw) or None)
    _release(raw)
    return x


def _release(raw):
    """Give back the pages of a memory-mapped input read so far: they would otherwise
    stay in this process's resident memory until the end (the page cache keeps them)."""
    mapping = getattr(raw, "_mmap", None)
    if mapping is not None and hasattr(mapping, "madvise") and hasattr(mmap,
                                                                       "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


def _chunk_rows(cols, multiple):
    rows = max(1, _tuning.EXPORT_CHUNK_BYTES // max(1, 4 * cols))
    return max(multiple, rows // multiple * multiple)


def _absmax(entry):
    raw = entry.raw()
    rows, cols = entry.shape
    step = _chunk_rows(cols, 1)
    best = 0.0
    for r0 in range(0, rows, step):
        x = _decode_rows(entry, raw, r0, min(rows, r0 + step))
        if not np.isfinite(x).all():
            raise ExportError(f"{entry.name}: {int((~np.isfinite(x)).sum())} non-finite "
                              "value(s); a weight must be finite to be quantized")
        if x.size:
            best = max(best, float(np.abs(x).max()))
    return best


def _quantized_chunks(entry, scheme, global_scale):
    """``(first row, QuantizedTensor)`` for each run of rows of a weight, read a run at a
    time (on the client, or on a Dask worker from the file)."""
    raw = entry.raw()
    rows, cols = entry.shape
    step = _chunk_rows(cols, row_multiple(scheme))
    for r0 in range(0, rows, step):
        x = _decode_rows(entry, raw, r0, min(rows, r0 + step))
        if not np.isfinite(x).all():
            raise ExportError(f"{entry.name}: {int((~np.isfinite(x)).sum())} non-finite "
                              "value(s); a weight must be finite to be quantized")
        yield r0, quantize_rows(x, entry.dtype, scheme, global_scale)


def _module_on_worker(shard_path, name, scheme_name, global_scale):
    """A Dask task: all the runs of rows of one weight, read from its file."""
    entry = next(e for e in open_checkpoint(shard_path).tensors if e.name == name)
    return list(_quantized_chunks(entry, scheme_named(scheme_name), global_scale))


def _write_quantized(writer, module, entry, scheme, global_scale, chunks=None):
    """Write one weight's tensors from its quantized runs of rows (computed here unless
    ``chunks`` brings them from a worker)."""
    rows, cols = entry.shape
    specs = {n: (d, s) for n, d, s in output_specs(module, (rows, cols), entry.dtype,
                                                   scheme)}
    codes_name = (f"{module}.weight" if scheme.kind == "fp8" else f"{module}.weight_packed")
    row_bytes = int(np.prod(specs[codes_name][1][1:])) * (4 if specs[codes_name][0] ==
                                                          "int32" else 1)
    scales, zps = [], []
    if chunks is None:
        chunks = _quantized_chunks(entry, scheme, global_scale)
    for r0, out in chunks:
        writer.write(codes_name, out.codes, start=r0 * row_bytes)
        scales.append(out.scale)
        if out.zero_point is not None:
            zps.append(out.zero_point)
    writer.write(f"{module}.weight_scale", np.concatenate(scales, axis=0))
    if scheme.kind == "int":
        writer.write(f"{module}.weight_shape", np.array([rows, cols], dtype="<i8"))
        if zps:
            writer.write(f"{module}.weight_zero_point",
                         pack_zero_points(np.concatenate(zps, axis=0), scheme.num_bits))
    if scheme.kind == "nvfp4":
        writer.write(f"{module}.weight_global_scale", np.array([global_scale], "<f4"))


def _copy_tensor(writer, entry):
    raw = entry.raw()
    flat = raw.reshape(-1)
    itemsize = raw.dtype.itemsize
    step = max(1, _tuning.EXPORT_CHUNK_BYTES // max(1, itemsize))
    for i in range(0, flat.size, step):
        writer.write(entry.name, np.ascontiguousarray(flat[i:i + step]), start=i * itemsize)
        _release(raw)


def _model_config(model_dir):
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: missing (a Hugging Face model directory has a "
                          "config.json)") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(config, dict):
        raise ExportError(f"{path}: not a JSON object")
    if "quantization_config" in config:
        given = config["quantization_config"]
        method = given.get("quant_method", "?") if isinstance(given, dict) else "?"
        raise ExportError(f"{path}: the model is already quantized (quantization_config "
                          f"with quant_method {method})")
    return config


def to_compressed_tensors(model_dir, out_dir, scheme, *, ignore=(), targets=None,
                          force=False, report=True, client=None):
    """Quantize a Hugging Face model directory to compressed-tensors, as llmcompressor
    does without calibration data.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A directory with ``config.json`` and ``model.safetensors`` (or shards listed in
        ``model.safetensors.index.json``), float32 or bfloat16 weights.
    out_dir : str or os.PathLike
        The directory to write (made next to it under a temporary name, renamed at the
        end); it must not exist unless ``force``.
    scheme : str
        W8A16, W4A16, W4A16_ASYM, FP8_DYNAMIC, FP8_BLOCK, NVFP4A16 or MXFP4A16.
    ignore : sequence of str
        Linear modules to leave unquantized, as llmcompressor's ``ignore``: a module
        name, ``"re:REGEX"`` (matched at the start of module names) or a class name.
    targets : str or sequence of str, optional
        Regexes matched against whole module names naming the layers to quantize.
        Default: the model's ``torch.nn.Linear`` modules (llmcompressor's
        ``targets="Linear"``), found by building the model on PyTorch's meta device,
        which needs transformers and torch.
    force : bool
        Replace an existing ``out_dir``.
    report : bool
        Measure every quantized weight from the written bytes (SQNR).
    client : distributed.Client, optional
        Quantize the weights on the workers of this Dask cluster (each reads its weight
        from the model's files, so the directory must be readable there); the client
        writes them.  The bytes are the same.

    Returns
    -------
    ExportReport

    Raises
    ------
    ExportError, CheckpointError
        Bad input (naming the file or tensor); nothing is left at ``out_dir``.
    OutputExistsError
        ``out_dir`` exists and ``force`` is False.

    Examples
    --------
    >>> import json, os, tempfile
    >>> import numpy as np
    >>> from numba_quant.export import to_compressed_tensors
    >>> from numba_quant.export.safetensors_out import SafetensorsWriter, TensorSpec
    >>> d = tempfile.mkdtemp()
    >>> w = np.linspace(-1, 1, 256 * 128, dtype=np.float32).reshape(256, 128)
    >>> with SafetensorsWriter(os.path.join(d, "model.safetensors"),
    ...                        [TensorSpec("fc.weight", "float32", w.shape)]) as f:
    ...     f.write("fc.weight", w)
    >>> with open(os.path.join(d, "config.json"), "w") as f:
    ...     _ = f.write(json.dumps({"model_type": "toy"}))
    >>> rep = to_compressed_tensors(d, os.path.join(d, "out"), "W4A16", targets="fc")
    >>> [t.name for t in rep.tensors], round(rep.bits_per_weight, 2)
    (['fc.weight'], 4.25)
    """
    started = time.perf_counter()
    s = scheme_named(scheme)
    model_dir = Path(model_dir)
    out_dir = Path(out_dir)
    if not model_dir.is_dir():
        raise ExportError(f"{model_dir}: not a directory (expected a Hugging Face model "
                          "directory)")
    if out_dir.exists() and not force:
        raise OutputExistsError(f"{out_dir}: the output exists (use force=True / --force "
                                "to replace it)")
    if out_dir.resolve() == model_dir.resolve():
        raise ExportError(f"{out_dir}: the output directory is the model directory")
    config = _model_config(model_dir)
    if not (model_dir / SAFETENSORS_INDEX).is_file() and not any(
            model_dir.glob("*.safetensors")):
        raise ExportError(f"{model_dir}: no .safetensors weights (model.safetensors or "
                          f"{SAFETENSORS_INDEX}); convert .bin weights first")
    shards = safetensors_shards(model_dir)
    entries = {e.name: e for _, es in shards for e in es}
    quantized, ignored, modules, saved, source = _select(model_dir, list(entries),
                                                          targets, ignore)
    weight_of = {m: entries[source[m]] for m in quantized}
    untied = [m for m in quantized if source[m] != f"{m}.weight"]
    for m in quantized:
        e = weight_of[m]
        check_weight(e.name, e.shape, e.dtype, s)

    try:
        global_scales = {}
        if s.kind == "nvfp4":
            groups = _fused_groups(quantized, modules)
            absmax = {m: _absmax(weight_of[m]) for m in quantized}
            for m in quantized:
                dtype = weight_of[groups[m][0]].dtype
                global_scales[m] = global_scale_of(max(absmax[x] for x in groups[m]), dtype)

        chosen = set(quantized)
        dropped = [n for n in entries if saved is not None and n not in saved]
        rep = ExportReport(s.name, model_dir, out_dir, ignored=ignored, dropped=dropped)
        rep.input_bytes = sum(os.path.getsize(p) for p, _ in shards)
        indexed = (model_dir / SAFETENSORS_INDEX).is_file()
        weight_map = {}
        with staged_directory(out_dir, force=force) as stage:
            written = []
            for shard_path, shard_entries in shards:
                jobs = []           # (module or None, entry): quantize, or copy as it is
                for e in shard_entries:
                    module = e.name[:-len(".weight")] if e.name.endswith(".weight") else None
                    if module in chosen and weight_of[module] is e:
                        jobs.append((module, e))
                    elif saved is None or e.name in saved:
                        jobs.append((None, e))
                    jobs += [(m, e) for m in untied if weight_of[m] is e]
                specs = []
                for module, e in jobs:
                    if module is None:
                        specs.append(TensorSpec(e.name, e.dtype, tuple(e.shape)))
                    else:
                        specs += [TensorSpec(n, d, tuple(sh)) for n, d, sh in
                                  output_specs(module, e.shape, e.dtype, s)]
                if not specs:
                    continue
                target = stage / shard_path.name
                remote = (None if client is None else results_in_order(
                    client, _module_on_worker,
                    [None if module is None else (str(shard_path), e.name, s.name,
                                                  global_scales.get(module))
                     for module, e in jobs]))
                with SafetensorsWriter(target, specs, {"format": "pt"}) as writer:
                    for module, e in jobs:
                        chunks = None if remote is None else next(remote)
                        if module is None:
                            _copy_tensor(writer, e)
                        else:
                            _write_quantized(writer, module, e, s, global_scales.get(module),
                                             chunks)
                written.append(target)
                weight_map.update({sp.name: shard_path.name for sp in specs})
            if indexed:
                total = sum(os.path.getsize(p) - 8 - int.from_bytes(open(p, "rb").read(8),
                                                                      "little")
                            for p in written)
                (stage / SAFETENSORS_INDEX).write_text(json.dumps(
                    {"metadata": {"total_size": total},
                     "weight_map": dict(sorted(weight_map.items()))}, indent=2) + "\n")
            out_config = dict(config)
            if "dtype" not in out_config and "torch_dtype" not in out_config and quantized:
                out_config["dtype"] = weight_of[quantized[0]].dtype
            if untied:
                out_config["tie_word_embeddings"] = False
            out_config["quantization_config"] = quantization_config(s, ignored)
            (stage / "config.json").write_text(json.dumps(out_config, indent=2,
                                                          sort_keys=True) + "\n")
            (stage / "recipe.yaml").write_text(recipe_yaml(s, ignore))
            _copy_other_files(model_dir, stage)
            rep.output_bytes = sum(os.path.getsize(p) for p in written)
            if report:
                _measure(rep, stage, quantized, weight_of, s)
    finally:
        release_chunk_buffers()     # this thread's, kept between weights
    rep.seconds = time.perf_counter() - started
    return rep


def _copy_other_files(model_dir, stage):
    """The tokenizer, generation config, sentence-transformers files...: everything but
    the weights, config.json and recipe.yaml, which the export writes itself."""
    skip = {"config.json", "recipe.yaml", SAFETENSORS_INDEX}
    for src in sorted(Path(model_dir).rglob("*")):
        rel = src.relative_to(model_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if src.is_dir():
            continue
        if len(rel.parts) == 1 and (rel.name in skip or rel.suffix == ".safetensors"
                                    or rel.suffix in (".bin", ".pt", ".pth")):
            continue
        dest = stage / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


# ------------------------------------------------------------------ the report

def _fp4_table():
    return np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6],
                    np.float64)


def _unpack_nibbles(packed, cols):
    low = packed & 0x0F
    high = packed >> 4
    return np.stack([low, high], axis=-1).reshape(packed.shape[0], -1)[:, :cols]


def _dequantized_rows(tensors, module, shape, dtype, s, r0, r1):
    """float64 weights decoded from the written tensors (rows r0:r1)."""
    rows, cols = shape

    def floats(name, raw):
        return _storage.decode(raw, tensors[name].dtype).astype(np.float64)

    scale_entry = tensors[f"{module}.weight_scale"]
    if s.kind == "int":
        packed = tensors[f"{module}.weight_packed"].raw()[r0:r1]
        b = packed.view(np.uint8).reshape(r1 - r0, -1)
        codes = (_unpack_nibbles(b, cols) if s.num_bits == 4 else b[:, :cols]).astype(
            np.float64) - (1 << (s.num_bits - 1))
        scale = floats(scale_entry.name, scale_entry.raw()[r0:r1])
        zp = 0.0
        if not s.symmetric:
            zpp = tensors[f"{module}.weight_zero_point"].raw()
            unpacked = _unpack_nibbles(np.ascontiguousarray(zpp.T).view(np.uint8)
                                       .reshape(zpp.shape[1], -1), rows)
            zp = (unpacked.T[r0:r1].astype(np.float64) - 8)[:, :, None]
        g = scale.shape[1]
        return ((codes.reshape(r1 - r0, g, -1) - zp) * scale[:, :, None]).reshape(
            r1 - r0, cols)
    if s.kind == "fp8":
        codes = _storage.fp8_to_float32(tensors[f"{module}.weight"].raw()[r0:r1],
                                         "float8_e4m3fn").astype(np.float64)
        scale = floats(scale_entry.name, scale_entry.raw())
        if s.strategy == "channel":
            return codes * scale[r0:r1]
        bh, bw = s.block
        full = np.repeat(np.repeat(scale, bh, axis=0), bw, axis=1)
        return codes * full[r0:r1, :cols]
    packed = tensors[f"{module}.weight_packed"].raw()[r0:r1]
    values = _fp4_table()[_unpack_nibbles(packed, cols)]
    if s.kind == "nvfp4":
        gs = float(tensors[f"{module}.weight_global_scale"].raw()[0])
        scale = _storage.fp8_to_float32(scale_entry.raw()[r0:r1],
                                        "float8_e4m3fn").astype(np.float64) / gs
        return (values.reshape(r1 - r0, -1, 16) * scale[:, :, None]).reshape(r1 - r0, cols)
    scale = np.ldexp(1.0, scale_entry.raw()[r0:r1].astype(np.int64) - 127)
    return (values.reshape(r1 - r0, -1, 32) * scale[:, :, None]).reshape(r1 - r0, cols)


def _measure(rep, stage, quantized, weight_of, s):
    tensors = {}
    for _, es in safetensors_shards(stage):
        tensors.update({e.name: e for e in es})
    for m in quantized:
        e = weight_of[m]
        rows, cols = e.shape
        raw = e.raw()
        signal = noise = 0.0
        step = _chunk_rows(cols, row_multiple(s))
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            x = _decode_rows(e, raw, r0, r1).astype(np.float64)
            q = _dequantized_rows(tensors, m, (rows, cols), e.dtype, s, r0, r1)
            signal += float(np.sum(x * x))
            noise += float(np.sum((q - x) ** 2))
        out_bytes = sum(t.nbytes for n, t in tensors.items()
                        if n.startswith(m + ".weight"))
        rep.tensors.append(TensorRow(f"{m}.weight", tuple(e.shape), e.dtype, e.nbytes,
                                     out_bytes, _sqnr(signal, noise), signal, noise))
        rep.quantized_weights += rows * cols

