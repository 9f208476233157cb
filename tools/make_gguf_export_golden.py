"""Record what llama.cpp's quantizer writes for the tiny llama models of the tests.

Writes the models of ``tests/gguf_tiny_model.py`` and their importance matrices into a
temporary directory: every input of ``tiny.SOURCES`` (the dense model in F32 and F16,
keys "f32" and "f16"; the 4-expert MoE model, "moe-f32", written by
``write_tiny_moe(path, "f32")``; the 8-expert one, "moe8-f32", by
``write_tiny_moe8(path, "f32")``; a 16-layer Falcon model, "falcon-f32", by
``write_tiny_falcon``; an 80-layer llama that llama.cpp takes for a 70B one,
"llama80-f32", by ``write_tiny_llama80``) and of ``tiny.IMATRIX_WRITERS`` (the dense model's
importance matrix in GGUF and legacy ``.dat``, "gguf" and "dat"; the 4-expert model's
per-expert one in GGUF, "moe-gguf", by ``write_imatrix_moe_gguf``).  It quantizes them
with ``llama_model_quantize`` (llama-cpp-python's ctypes binding, 2 threads) for each
case of :func:`cases`, and writes ``tests/data/gguf_export_golden.json``: per case the
return
code, the sha256 and size of the whole file, every tensor ([name, ggml type, ne, the
first 32 hex digits of the sha256 of its data bytes] in file order; only the first
``TENSOR_ROWS_MAX`` of a larger file, with "tensor_count"), every metadata key
([key, value type, value] in file order; arrays as ``{"array_of", "length", "sha256"}``
of their elements exactly as the file stores them, strings as uint64 length + UTF-8
bytes, with ``"values"`` added when there are at most 16), the type counts, the number
of tensors llama.cpp reported as needing a fallback type and, for imatrix cases, the
key overrides passed and the tensors it found no imatrix entry for.  The header holds
the sha256 of every input file (so a test can tell that what it wrote differs), the
versions and the sha256 of ``llama-quant.cpp``; its "sources" and "imatrix_files" are
keyed as ``tiny.SOURCES`` and ``tiny.IMATRIX_WRITERS`` are, and each case's "source"
(and option "imatrix") is one of those keys.  The tests, which run without llama.cpp,
write the same inputs again and compare numba_quant's GGUF exporter with these records.

Cases that use an importance matrix do what the llama-quantize command line does with
``--imatrix FILE``: read the file (``in_sum2 / counts`` per entry, or ``values / ncall``
for ``.dat``), hand the values to the library, and add the four ``quantize.imatrix.*``
key overrides, with the file named as it would be on the command line (its base name,
recorded as ``imatrix_name``).  A case whose return code is not 0 is recorded with the
log's error line.

Run from the repository root with the llama-cpp-python environment, which also needs
gguf-py (``/work/venv-llama/bin/pip install gguf==0.19.0``)::

    nice -n 19 /work/venv-llama/bin/python tools/make_gguf_export_golden.py \
        [--output tests/data/gguf_export_golden.json] [--keep-dir DIR]

``--keep-dir`` keeps the inputs and quantized files in DIR (for
``tools/check_gguf_loads.py``).  About 30 s on 2 cores.
"""
import argparse
import contextlib
import ctypes
import hashlib
import importlib.metadata
import io
import json
import os
import struct
import sys
import tempfile
import time

import numpy as np

import gguf
import llama_cpp
import llama_cpp._logger as llama_logger

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import gguf_tiny_model as tiny  # noqa: E402

DEFAULT_OUTPUT = os.path.join(ROOT, "tests", "data", "gguf_export_golden.json")
VENDOR = "/work/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp"
NTHREAD = 2
SHORT_ARRAY = 16
TENSOR_DIGEST_HEX = 32
IMATRIX_FILES = {"gguf": "tiny.imatrix.gguf", "dat": "tiny.imatrix.dat",
                 "moe-gguf": "tiny-moe.imatrix.gguf"}
SOURCE_FILES = {"f32": "tiny-llama-f32.gguf", "f16": "tiny-llama-f16.gguf",
                "moe-f32": "tiny-moe-f32.gguf", "moe8-f32": "tiny-moe8-f32.gguf",
                "falcon-f32": "tiny-falcon-f32.gguf", "llama80-f32": "tiny-llama80-f32.gguf"}
# A case records at most this many tensor rows (the first ones, in file order) and,
# when it has more, "tensor_count"; only the 80-layer llama's 723 tensors are cut, which
# keeps the record under 500 kB (the whole file is still pinned by file_sha256).
TENSOR_ROWS_MAX = 100

ALL_FTYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
              "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0",
              "TQ2_0", "F16", "BF16"]
F16_SOURCE_FTYPES = ["Q8_0", "Q4_K_M", "Q6_K", "F16", "BF16"]
IMATRIX_GGUF_FTYPES = ["Q4_K_M", "Q4_0", "Q5_0", "Q3_K_S", "Q2_K", "IQ4_XS", "IQ4_NL", "Q6_K"]
# The mixture-of-experts models: MXFP4_MOE (experts MXFP4, the rest Q8_0) and the types
# whose rules differ for experts or for n_gqa = 1; a few with the per-expert imatrix;
# on the 8-expert model the n_expert == 8 rules.
MOE_FTYPES = ["MXFP4_MOE", "Q4_K_M", "Q8_0", "Q2_K", "Q3_K_M", "IQ4_XS", "Q4_0"]
MOE_IMATRIX_FTYPES = ["Q4_K_M", "Q2_K", "IQ4_XS"]
MOE8_FTYPES = ["Q4_K_M", "MXFP4_MOE"]
# Falcon: the ftypes whose ffn_down, attn_output or output rules differ for Falcon.
FALCON_FTYPES = ["Q3_K_M", "Q3_K_L", "Q4_K_M", "Q4_K_S", "Q5_K_M", "Q2_K", "Q8_0"]
# The 80-layer llama (model type 70B): the ftypes whose attn_v is Q3_K or Q4_K before
# the 70B bump to Q5_K, and IQ4_XS (attn_v Q5_K anyway, as n_gqa = 4).
LLAMA80_FTYPES = ["Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q2_K", "IQ4_XS"]


# --------------------------------------------------------------------------- cases
def _case(case_id, source, ftype, **options):
    return {"case": case_id, "source": source, "ftype": ftype, "options": options}


def cases():
    """The quantizations to record: ids, sources, ftypes and command-line options."""
    out = [_case(f"f32-{f}", "f32", f) for f in ALL_FTYPES]
    out += [_case(f"f16-{f}", "f16", f) for f in F16_SOURCE_FTYPES]
    out += [
        _case("f32-Q4_K_M-pure", "f32", "Q4_K_M", pure=True),
        _case("f32-Q4_K_M-leave-output", "f32", "Q4_K_M", leave_output_tensor=True),
        _case("f32-Q4_K_M-output-q8_0-embd-q4_0", "f32", "Q4_K_M",
              output_tensor_type="Q8_0", token_embedding_type="Q4_0"),
        _case("f32-Q4_K_M-tensor-types", "f32", "Q4_K_M",
              tensor_types=["attn_q=Q8_0", "ffn_up=q5_k"]),
    ]
    out += [_case(f"f32-{f}-imatrix-gguf", "f32", f, imatrix="gguf",
                  imatrix_name=IMATRIX_FILES["gguf"]) for f in IMATRIX_GGUF_FTYPES]
    out.append(_case("f32-Q4_K_M-imatrix-dat", "f32", "Q4_K_M", imatrix="dat",
                     imatrix_name=IMATRIX_FILES["dat"]))
    out += [_case(f"moe-f32-{f}", "moe-f32", f) for f in MOE_FTYPES]
    out += [_case(f"moe-f32-{f}-imatrix-gguf", "moe-f32", f, imatrix="moe-gguf",
                  imatrix_name=IMATRIX_FILES["moe-gguf"]) for f in MOE_IMATRIX_FTYPES]
    out += [_case(f"moe8-f32-{f}", "moe8-f32", f) for f in MOE8_FTYPES]
    out += [_case(f"falcon-f32-{f}", "falcon-f32", f) for f in FALCON_FTYPES]
    out += [_case(f"llama80-f32-{f}", "llama80-f32", f) for f in LLAMA80_FTYPES]
    return out


# --------------------------------------------------------------------------- hashing
def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path):
    return {"file": os.path.basename(path), "sha256": sha256_file(path),
            "size": os.path.getsize(path)}


# --------------------------------------------------------------------------- reading GGUF
def _array_value(field):
    """An array field as {"array_of", "length", "sha256"[, "values"]}.

    The digest covers the elements as stored (parts after the key, value type, element
    type and count), so it pins down the exact bytes of e.g. the token list.
    """
    packed = b"".join(np.ascontiguousarray(p).tobytes() for p in field.parts[5:])
    value = {"array_of": field.types[-1].name, "length": len(field.data),
             "sha256": hashlib.sha256(packed).hexdigest()}
    if len(field.data) <= SHORT_ARRAY:
        value["values"] = field.contents()
    return value


def metadata_list(reader):
    """[[key, value type name, value]] in file order, without the reader's GGUF.* fields."""
    rows = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        kind = field.types[0]
        value = _array_value(field) if kind == gguf.GGUFValueType.ARRAY else field.contents()
        rows.append([key, kind.name, value])
    return rows


def tensor_digest(data):
    """The first TENSOR_DIGEST_HEX hex digits of the sha256 of a tensor's data bytes.

    128 bits tell tensors apart as well as the whole digest would, and keep the record
    of 38 cases x 75 tensors and 12 MoE cases x 43 tensors under 400 kB; whole files
    are compared by full sha256.
    """
    return hashlib.sha256(data).hexdigest()[:TENSOR_DIGEST_HEX]


def tensor_list(reader):
    """[[name, ggml type name, ne, tensor_digest of the data bytes]] in file order."""
    rows = []
    for t in reader.tensors:
        data = np.ascontiguousarray(t.data).tobytes()
        assert len(data) == t.n_bytes, t.name
        rows.append([t.name, t.tensor_type.name, [int(n) for n in t.shape],
                     tensor_digest(data)])
    return rows


def type_counts(tensors):
    counts = {}
    for _, type_name, _, _ in tensors:
        counts[type_name] = counts.get(type_name, 0) + 1
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------- imatrix
def _read_gguf_imatrix(path):
    """(name -> float32 values, datasets, chunk count) as llama-quantize reads a GGUF file."""
    reader = gguf.GGUFReader(path)
    fields = reader.fields
    if not all(k in fields for k in ("imatrix.datasets", "imatrix.chunk_count",
                                      "imatrix.chunk_size")):
        raise ValueError(f"{path}: missing imatrix metadata (llama-quantize refuses it)")
    tensors = {t.name: np.asarray(t.data, np.float32).reshape(-1) for t in reader.tensors}
    values = {}
    for name in sorted(n[: -len(".in_sum2")] for n in tensors if n.endswith(".in_sum2")):
        sums, counts = tensors[name + ".in_sum2"], tensors[name + ".counts"]
        per_expert = sums.reshape(len(counts), -1)
        # counts are rounded to integers first; an expert with no tokens gets 1.0
        rounded = np.floor(counts.astype(np.float64) + 0.5).astype(np.float32)
        safe = np.where(rounded > 0, rounded, np.float32(1))
        scaled = per_expert / safe[:, None]
        values[name] = np.where(rounded[:, None] > 0, scaled, np.float32(1)).reshape(-1)
    datasets = fields["imatrix.datasets"].contents()
    return values, datasets, int(fields["imatrix.chunk_count"].contents())


def _read_dat_imatrix(path):
    """(name -> float32 values, datasets, chunk count) of a legacy .dat file."""
    with open(path, "rb") as fh:
        raw = fh.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        out = struct.unpack_from(fmt, raw, pos)
        pos += struct.calcsize(fmt)
        return out

    (n_entries,) = take("<i")
    values = {}
    for _ in range(n_entries):
        (name_len,) = take("<i")
        name = raw[pos:pos + name_len].decode("utf-8")
        pos += name_len
        ncall, nval = take("<ii")
        stored = np.frombuffer(raw, "<f4", nval, pos).astype(np.float32)
        pos += 4 * nval
        values[name] = stored / np.float32(ncall) if ncall > 0 else stored
    chunk_count, datasets = 0, []
    if pos < len(raw):
        chunk_count, name_len = take("<ii")
        if name_len > 0:
            datasets.append(raw[pos:pos + name_len].decode("utf-8"))
    return values, datasets, chunk_count


def read_imatrix(path):
    """Read either importance-matrix format; GGUF is recognised by its magic."""
    with open(path, "rb") as fh:
        is_gguf = fh.read(4) == b"GGUF"
    return _read_gguf_imatrix(path) if is_gguf else _read_dat_imatrix(path)


def imatrix_kv_overrides(file_name, values, datasets, chunk_count):
    """The key overrides llama-quantize adds for an imatrix: [[key, tag, value]].

    INT overrides end up as uint32 keys in the output (llama-quant.cpp stores integer
    overrides that way); the dataset and chunk-count keys are only added when known.
    """
    overrides = [["quantize.imatrix.file", "STR", file_name]]
    if datasets:
        overrides.append(["quantize.imatrix.dataset", "STR", datasets[0]])
    overrides.append(["quantize.imatrix.entries_count", "INT", len(values)])
    if chunk_count > 0:
        overrides.append(["quantize.imatrix.chunks_count", "INT", chunk_count])
    return overrides


# --------------------------------------------------------------------------- ctypes arrays
def _kv_override_array(overrides):
    """A zero-terminated llama_model_kv_override array."""
    array = (llama_cpp.llama_model_kv_override * (len(overrides) + 1))()
    for slot, (key, tag, value) in zip(array, overrides):
        slot.key = key.encode("utf-8")
        if tag == "STR":
            slot.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
            slot.value.val_str = value.encode("utf-8")[:127]
        else:
            slot.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
            slot.value.val_i64 = value
    return array


def _imatrix_array(values):
    """A null-name-terminated llama_model_imatrix_data array (values must stay alive)."""
    array = (llama_cpp.llama_model_imatrix_data * (len(values) + 1))()
    for slot, (name, data) in zip(array, sorted(values.items())):
        slot.name = name.encode("utf-8")
        slot.data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        slot.size = data.size
    return array


def _ggml_type(name):
    """ggml type id of a type name, case-insensitive as llama-quantize parses it."""
    return int(gguf.GGMLQuantizationType[name.upper()])


def _tensor_type_array(specs):
    """tt_overrides for "pattern=type" strings: pattern lower-cased, null-terminated."""
    array = (llama_cpp.llama_model_tensor_override * (len(specs) + 1))()
    for slot, spec in zip(array, specs):
        pattern, type_name = spec.split("=", 1)
        slot.pattern = pattern.lower().encode("utf-8")
        slot.type = _ggml_type(type_name)
    array[len(specs)].pattern = None
    array[len(specs)].type = llama_cpp.GGML_TYPE_COUNT
    return array


# --------------------------------------------------------------------------- quantizing
def quantize_params(case, imatrix):
    """(params, objects to keep alive) for a case; ``imatrix`` is (values, overrides)."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = NTHREAD
    params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + case["ftype"])
    options = case["options"]
    params.pure = bool(options.get("pure", False))
    params.quantize_output_tensor = not options.get("leave_output_tensor", False)
    if "output_tensor_type" in options:
        params.output_tensor_type = _ggml_type(options["output_tensor_type"])
    if "token_embedding_type" in options:
        params.token_embedding_type = _ggml_type(options["token_embedding_type"])
    keep = []
    if "tensor_types" in options:
        keep.append(_tensor_type_array(options["tensor_types"]))
        params.tt_overrides = ctypes.cast(keep[-1], ctypes.POINTER(
            llama_cpp.llama_model_tensor_override))
    if imatrix is not None:
        values, overrides = imatrix
        keep += [values, _imatrix_array(values), _kv_override_array(overrides)]
        params.imatrix = ctypes.cast(keep[-2], ctypes.POINTER(
            llama_cpp.llama_model_imatrix_data))
        params.kv_overrides = ctypes.cast(keep[-1], ctypes.POINTER(
            llama_cpp.llama_model_kv_override))
    return params, keep


def run_quantize(source, output, params):
    """(return code, log text) of one llama_model_quantize call."""
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        rc = llama_cpp.llama_model_quantize(source.encode(), output.encode(),
                                            ctypes.byref(params))
    return int(rc), log.getvalue()


def _error_line(log):
    lines = [ln.strip() for ln in log.splitlines()
             if "failed" in ln.lower() or "error" in ln.lower()]
    return lines[0] if lines else ""


def _imatrix_missing(log):
    """Tensors llama-quantize quantized without an imatrix entry ("did not find weights")."""
    marker = "did not find weights for "
    return [ln.split(marker, 1)[1].strip() for ln in log.splitlines() if marker in ln]


def _fallback_count(log):
    """k of llama-quantize's closing "k of N tensor(s) required fallback" warning, else 0."""
    for line in log.splitlines():
        if "required fallback quantization" in line:
            return int(line.split("WARNING:")[-1].split()[0])
    return 0


def record_case(case, source, output, imatrix):
    """Quantize one case and describe the result."""
    params, keep = quantize_params(case, imatrix)
    rc, log = run_quantize(source, output, params)
    del keep
    record = dict(case)
    record.update(ftype_id=int(params.ftype), rc=rc)
    if imatrix is not None:
        record["kv_overrides"] = imatrix[1]
        record["imatrix_missing"] = _imatrix_missing(log)
    if rc != 0 or not os.path.exists(output):
        record["error"] = _error_line(log)
        return record
    reader = gguf.GGUFReader(output)
    tensors = tensor_list(reader)
    record.update(file_sha256=sha256_file(output), file_size=os.path.getsize(output),
                  fallback_tensors=_fallback_count(log), type_counts=type_counts(tensors))
    if len(tensors) > TENSOR_ROWS_MAX:
        record["tensor_count"] = len(tensors)
    record.update(tensors=tensors[:TENSOR_ROWS_MAX], metadata=metadata_list(reader))
    return record


# --------------------------------------------------------------------------- inputs
def write_inputs(directory):
    """Write the sources and importance matrices; returns {role: path}.

    Sources are keyed as ``tiny.SOURCES`` ("f32", "moe-f32", ...), importance matrices
    as "imatrix_" + their ``tiny.IMATRIX_WRITERS`` key; each importance matrix is written
    from the model file it is for.
    """
    paths = {}
    for src, name in SOURCE_FILES.items():
        write, dtype = tiny.SOURCES[src]
        paths[src] = write(os.path.join(directory, name), dtype)
    for kind, name in IMATRIX_FILES.items():
        write, src = tiny.IMATRIX_WRITERS[kind]
        paths["imatrix_" + kind] = write(os.path.join(directory, name), paths[src])
    return paths


def load_imatrices(paths):
    """{imatrix key: (values, kv overrides)} read as llama-quantize reads them."""
    loaded = {}
    for kind, name in IMATRIX_FILES.items():
        values, datasets, chunks = read_imatrix(paths["imatrix_" + kind])
        loaded[kind] = (values, imatrix_kv_overrides(name, values, datasets, chunks))
    return loaded


def header(paths):
    sources = {}
    for src in SOURCE_FILES:
        sources[src] = file_record(paths[src])
        sources[src]["metadata"] = metadata_list(gguf.GGUFReader(paths[src]))
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "llama_quant_cpp_sha256": sha256_file(os.path.join(VENDOR, "src", "llama-quant.cpp")),
        "quantize_cpp_sha256": sha256_file(
            os.path.join(VENDOR, "tools", "quantize", "quantize.cpp")),
        "gguf_py": importlib.metadata.version("gguf"),
        "nthread": NTHREAD,
        "tensor_digest": f"first {TENSOR_DIGEST_HEX} hex digits of sha256 of the data bytes",
        "sources": sources,
        "imatrix_files": {kind: file_record(paths["imatrix_" + kind]) for kind in IMATRIX_FILES},
    }


def generate(directory, output_json):
    paths = write_inputs(directory)
    imatrices = load_imatrices(paths)
    golden = header(paths)
    golden["cases"] = []
    for case in cases():
        started = time.time()
        out_path = os.path.join(directory, case["case"] + ".gguf")
        imatrix = imatrices.get(case["options"].get("imatrix"))
        record = record_case(case, paths[case["source"]], out_path, imatrix)
        golden["cases"].append(record)
        print(f"{case['case']:36s} rc {record['rc']}  {time.time() - started:5.2f} s  "
              f"{record.get('type_counts', record.get('error'))}", flush=True)
    with open(output_json, "w") as fh:
        fh.write(golden_json_text(golden))
    return golden


def golden_json_text(golden):
    """Compact JSON with one line per top-level key and per case, for readable diffs."""
    def compact(value):
        return json.dumps(value, separators=(",", ":"))

    lines = [f"{compact(key)}:{compact(value)}" for key, value in golden.items()
             if key != "cases"]
    cases_text = ",\n".join(compact(case) for case in golden["cases"])
    lines.append(f'"cases":[\n{cases_text}\n]')
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--keep-dir", help="keep inputs and quantized files here")
    args = parser.parse_args(argv)
    llama_logger.set_verbose(True)  # llama.cpp's log goes to sys.stderr, captured per case
    llama_cpp.llama_backend_init()
    started = time.time()
    if args.keep_dir:
        os.makedirs(args.keep_dir, exist_ok=True)
        generate(args.keep_dir, args.output)
    else:
        with tempfile.TemporaryDirectory() as directory:
            generate(directory, args.output)
    print(f"wrote {args.output} ({os.path.getsize(args.output)} bytes) "
          f"in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
