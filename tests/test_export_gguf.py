"""GGUF export: the files llama-quantize writes, byte for byte; the report; bad input.

The golden record (tests/data/gguf_export_golden.json) was made by llama.cpp's own
quantizer (``llama_model_quantize`` of llama-cpp-python 0.3.36) from the tiny llama
models of tests/gguf_tiny_model.py, by ``tools/make_gguf_export_golden.py``: 63 cases
(a dense llama with grouped-query attention in every file type, from F32 and F16, with
--pure, --leave-output-tensor, the type options, --tensor-type, GGUF and legacy
importance matrices; llamas with 4 and 8 experts: MXFP4_MOE, the K mixes, the 8-expert
rules, per-expert importance matrices, an expert that saw no token; a 16-layer Falcon
with fused attn_qkv and its own ffn_down rules; an 80-layer llama with grouped-query
attention, which llama.cpp types as 70B).  The tests write
the same inputs again (their sha256 is in the record) and compare whole output files.

Every case's plan (each tensor's type and shape, the file's size) is checked by a dry
run, which quantizes nothing.  The whole files are compared for the cases whose types
the default run compiles anyway (tests/profiles.py's GGUF_DEFAULT_TYPES, and Q5_0, the
fallback of 384-wide rows in the K mixes: 36 of the 63, every model among them);
the thorough profile compares all 63 (the other types' kernels take minutes to compile,
and tests/test_gguf.py checks their bytes there too).
"""
import hashlib
import json
import math
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import gguf_tiny_model as tiny
from profiles import GGUF_DEFAULT_TYPES, THOROUGH
from numba_quant._host import tuning as _tuning
from numba_quant.export import cli, to_gguf
from numba_quant.export import chunks, gguf_file
from numba_quant.export.imatrix import read_imatrix

gguf = pytest.importorskip("gguf")

GOLDEN = json.loads((Path(__file__).parent / "data" / "gguf_export_golden.json")
                    .read_text())
CASES = {c["case"]: c for c in GOLDEN["cases"]}


def _types_written(case):
    return {t for _, t, _, _ in case["tensors"]} - {"F32"}


BYTE_CASES = sorted(name for name, case in CASES.items()
                    if THOROUGH or _types_written(case) <= {*GGUF_DEFAULT_TYPES, "Q5_0"})


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The tiny model (F32 and F16) and its two importance matrices, checked against
    the files llama.cpp quantized."""
    root = tmp_path_factory.mktemp("gguf_inputs")
    paths = {}
    for key, (write, dtype) in tiny.SOURCES.items():
        paths[key] = write(root / GOLDEN["sources"][key]["file"], dtype)
        assert _sha(paths[key]) == GOLDEN["sources"][key]["sha256"], key
    for kind, (write, src) in tiny.IMATRIX_WRITERS.items():
        info = GOLDEN["imatrix_files"][kind]
        paths[kind] = write(root / info["file"], paths[src])
        assert _sha(paths[kind]) == info["sha256"], kind
    return root, paths


def _kwargs(case, root):
    opts = dict(case["options"])
    kw = {k: opts[k] for k in ("pure", "leave_output_tensor", "output_tensor_type",
                               "token_embedding_type", "tensor_types") if k in opts}
    if "imatrix" in opts:
        kw["imatrix"] = opts["imatrix_name"]      # recorded in the file as given
    return kw


def _tensor_digests(path):
    reader = gguf.GGUFReader(path)
    return [(t.name, t.tensor_type.name,
             hashlib.sha256(np.asarray(t.data).tobytes()).hexdigest()[:32])
            for t in reader.tensors]


@pytest.mark.parametrize("name", sorted(CASES))
def test_dry_run_plans_what_llama_quantize_wrote(name, inputs, monkeypatch):
    """Each converted tensor's type and shape, and the size of the whole file (header,
    metadata, every tensor's bytes and padding), without quantizing."""
    case = CASES[name]
    root, paths = inputs
    monkeypatch.chdir(root)
    rep = to_gguf(paths[case["source"]], None, case["ftype"], dry_run=True,
                  **_kwargs(case, root))
    planned = {row.name: (row.dtype.split("->")[1], list(row.shape)) for row in rep.tensors}
    for tname, ttype, shape, _ in case["tensors"]:      # the first 100 in file order
        if tname in planned:
            assert planned[tname] == (ttype, shape[::-1]), tname
        else:                               # copied as stored
            assert ttype in ("F32", "F16", "BF16"), tname
    # All tensors: the types llama.cpp wrote, less the planned ones, are copied floats.
    copied = Counter(case["type_counts"])
    copied.subtract(Counter(t for t, _ in planned.values()))
    assert set(copied.elements()) <= {"F32", "F16", "BF16"} and min(copied.values()) >= 0
    assert copied.total() == case.get("tensor_count", len(case["tensors"])) - len(planned)
    assert rep.output_bytes == case["file_size"]
    assert rep.dry_run and not rep.notes and all(math.isnan(r.sqnr_db) for r in rep.tensors)


def test_default_byte_cases_cover_every_model():
    """The default run's whole-file cases hold every model and both importance-matrix
    formats (the dry runs check every case's plan)."""
    assert {CASES[n]["source"] for n in BYTE_CASES} == {c["source"] for c in CASES.values()}
    imatrix = {CASES[n]["options"].get("imatrix") for n in BYTE_CASES}
    assert imatrix >= set(GOLDEN["imatrix_files"])


@pytest.mark.parametrize("name", BYTE_CASES)
def test_file_equals_llama_quantize(name, inputs, tmp_path, monkeypatch):
    case = CASES[name]
    root, paths = inputs
    monkeypatch.chdir(root)            # the imatrix path as llama-quantize was given it
    out = tmp_path / "out.gguf"
    to_gguf(paths[case["source"]], out, case["ftype"], **_kwargs(case, root))
    if _sha(out) != case["file_sha256"]:
        want = [(n, t, h) for n, t, _, h in case["tensors"]]
        got = _tensor_digests(out)
        diff = [g for g, w in zip(got, want) if g != w]
        pytest.fail(f"{name}: the file differs; tensors that differ: {diff[:5]} "
                    f"(of {len(got)}, {len(want)} expected)")


def test_chunks_and_devices_give_the_same_file(inputs, tmp_path, monkeypatch):
    """Rows quantized a few at a time (chunks that split tensors) give the same bytes."""
    case = CASES["f32-Q4_K_M-imatrix-gguf"]
    root, paths = inputs
    monkeypatch.chdir(root)
    monkeypatch.setattr(_tuning, "EXPORT_CHUNK_BYTES", 3 * 4 * 384)
    out = tmp_path / "out.gguf"
    to_gguf(paths["f32"], out, "Q4_K_M", **_kwargs(case, root))
    assert _sha(out) == case["file_sha256"]


def _small_model(path, dtype=np.float32, extra=()):
    """A two-tensor llama-like GGUF (small enough for the CUDA simulator)."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", 1)
    rng = np.random.default_rng(5)
    w.add_tensor("blk.0.attn_q.weight", rng.normal(0, 0.02, (2, 256)).astype(dtype))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(256, np.float32))
    for name, array in extra:
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q8_0"])   # chunks on both; one pass on the CPU
def test_gpu_writes_the_cpu_file(tmp_path, ftype):
    src = _small_model(tmp_path / "in.gguf")
    cpu = to_gguf(src, tmp_path / "cpu.gguf", ftype)
    gpu = to_gguf(src, tmp_path / "gpu.gguf", ftype, device="gpu")
    assert _sha(tmp_path / "cpu.gguf") == _sha(tmp_path / "gpu.gguf")
    assert [t.sqnr_db for t in cpu.tensors] == [t.sqnr_db for t in gpu.tensors]


def _sqnr(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    return 10 * math.log10(float((x * x).sum()) / float(((y - x) ** 2).sum()))


def test_report_measures_the_written_file(inputs, tmp_path):
    """Each row's sizes and SQNR against the file read back with gguf-py's reader and
    its numpy dequantizers (no code shared with the exporter's)."""
    root, paths = inputs
    out = tmp_path / "out.gguf"
    rep = to_gguf(paths["f16"], out, "Q4_K_M")
    src = {t.name: t for t in gguf.GGUFReader(paths["f16"]).tensors}
    written = {t.name: t for t in gguf.GGUFReader(out).tensors}
    changed = {n for n, t in written.items()
               if t.tensor_type.name != src[n].tensor_type.name}
    assert {r.name for r in rep.tensors} == changed
    for row in rep.tensors:
        t = written[row.name]
        x = np.asarray(src[row.name].data, np.float32)
        y = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(x.shape)
        assert row.output_bytes == t.n_bytes
        assert row.input_bytes == src[row.name].n_bytes
        assert row.dtype == f"F16->{t.tensor_type.name}"
        assert math.isclose(row.sqnr_db, _sqnr(x, y), rel_tol=1e-9), row.name
    assert rep.output_bytes == out.stat().st_size
    assert rep.input_bytes == Path(paths["f16"]).stat().st_size
    total = sum(r.output_bytes for r in rep.tensors)
    assert math.isclose(rep.bits_per_weight, 8 * total / rep.quantized_weights)
    text = rep.to_text()
    assert "blk.7.ffn_down.weight" in text and "Q4_K_M" in text
    assert json.loads(rep.to_json())["tensors"][0]["name"] == rep.tensors[0].name


# ------------------------------------------------------------------ the command

def test_command_writes_the_file_and_the_report(inputs, tmp_path, monkeypatch, capsys):
    root, paths = inputs
    monkeypatch.chdir(root)
    case = CASES["f32-Q4_K_M-output-q8_0-embd-q4_0"]
    out = tmp_path / "out.gguf"
    argv = [paths["f32"], str(out), "--type", "q4_k", "--threads", "1",
            "--output-tensor-type", "q8_0", "--token-embedding-type", "Q4_0",
            "-o", str(tmp_path / "rep.json")]
    assert cli.main(argv) == 0
    assert _sha(out) == case["file_sha256"]
    printed = capsys.readouterr().out
    assert printed.startswith("Q4_K_M: ") and "blk.0.attn_q.weight" in printed
    saved = json.loads((tmp_path / "rep.json").read_text())
    assert saved["output_bytes"] == out.stat().st_size and not saved["dry_run"]


def test_command_dry_run(inputs, tmp_path, monkeypatch, capsys):
    """--dry-run (no OUTPUT): the plan and the file's size; nothing quantized or written."""
    root, paths = inputs
    monkeypatch.chdir(tmp_path)
    case = CASES["f32-Q4_K_M-tensor-types"]
    argv = [paths["f32"], "--type", "Q4_K_M", "--dry-run", "--json"]
    for item in case["options"]["tensor_types"]:
        argv += ["--tensor-type", item]
    assert cli.main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["dry_run"] and rep["output_bytes"] == case["file_size"]
    types = {t["name"]: t["dtype"] for t in rep["tensors"]}
    assert types["blk.0.attn_q.weight"] == "F32->Q8_0"
    assert types["blk.0.ffn_up.weight"] == "F32->Q5_K"
    assert all(t["sqnr_db"] is None for t in rep["tensors"])
    assert list(tmp_path.iterdir()) == []
    # Q2_K_S without an importance matrix: the plan, and a note of what is missing.
    assert cli.main([paths["f32"], "--type", "Q2_K_S", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "dry run, nothing written" in printed
    assert "note: Q2_K_S: " in printed and "needs its importance matrix" in printed
    # OUTPUT is needed without --dry-run.
    assert cli.main([paths["f32"], "--type", "Q8_0"]) == 2
    assert "OUTPUT is needed" in capsys.readouterr().err


def _fails(argv, capsys, *needles):
    """The command exits 1 with one line naming the problem, no traceback."""
    assert cli.main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _left_over(directory):
    return sorted(p.name for p in Path(directory).iterdir()
                  if p.name.startswith(".") or p.name.startswith("out"))


def test_bad_inputs_are_refused_with_nothing_written(inputs, tmp_path, capsys):
    root, paths = inputs
    out = tmp_path / "out.gguf"
    _fails([tmp_path / "missing.gguf", out, "--type", "Q8_0"], capsys, "missing.gguf",
           "no such file")
    (tmp_path / "text.gguf").write_text("hello")
    _fails([tmp_path / "text.gguf", out, "--type", "Q8_0"], capsys, "text.gguf",
           "not a GGUF file")
    head = Path(paths["f32"]).read_bytes()[:4096]
    (tmp_path / "cut.gguf").write_bytes(head)
    _fails([tmp_path / "cut.gguf", out, "--type", "Q8_0"], capsys, "cut.gguf",
           "malformed GGUF")
    _fails([paths["f32"], out, "--type", "Q7_K"], capsys, "unknown file type 'Q7_K'",
           "Q4_K_M")
    _fails([paths["f32"], out, "--type", "IQ2_XXS"], capsys, "IQ2_XXS", "not implemented")
    _fails([paths["f32"], out, "--type", "Q8_0", "--tensor-type", "attn_q"], capsys,
           "NAME_OR_REGEX=TYPE")
    _fails([paths["f32"], out, "--type", "Q8_0", "--tensor-type", "attn_q=IQ2_XXS"],
           capsys, "IQ2_XXS", "cannot be written")
    _fails([paths["f32"], out, "--type", "Q8_0", "--tensor-type", "attn_(q=Q8_0"],
           capsys, "not a regular expression")
    _fails([paths["f32"], out, "--type", "Q2_K_S"], capsys, "needs its importance matrix")
    _fails([paths["f32"], out, "--type", "Q8_0", "--threads", "0"], capsys, "--threads 0")
    _fails([paths["f32"], out, "--type", "Q8_0", "--ignore", "lm_head"], capsys,
           "--tensor-type")
    assert _left_over(tmp_path) == []


def test_already_quantized_input_names_its_tensors(inputs, tmp_path, capsys):
    root, paths = inputs
    q8 = tmp_path / "q8.gguf"
    to_gguf(paths["f32"], q8, "Q8_0")
    err = _fails([q8, tmp_path / "out.gguf", "--type", "Q4_K_M"], capsys,
                 "already quantized", "blk.0.attn_q.weight (Q8_0)")
    assert "attn_norm" not in err                 # F32 tensors are not named
    assert not (tmp_path / "out.gguf").exists()


def test_existing_output_needs_force(inputs, tmp_path, capsys):
    root, paths = inputs
    out = tmp_path / "out.gguf"
    out.write_bytes(b"keep me")
    _fails([paths["f32"], out, "--type", "Q8_0"], capsys, "exists", "--force")
    assert out.read_bytes() == b"keep me"
    assert cli.main([paths["f32"], str(out), "--type", "Q8_0", "--force", "--json"]) == 0
    assert _sha(out) == CASES["f32-Q8_0"]["file_sha256"]
    # The file has the mode of one made directly (not a temporary one's 0o600).
    made = tmp_path / "made.gguf"
    made.write_bytes(b"")
    assert out.stat().st_mode == made.stat().st_mode
    assert json.loads(capsys.readouterr().out)["scheme"] == "Q8_0"


@pytest.mark.parametrize("ftype, route", [("Q8_0", "quantize_stored"),   # one pass
                                           ("Q6_K", "quantize")])           # chunks
def test_a_crash_midway_leaves_no_file(inputs, tmp_path, monkeypatch, ftype, route):
    root, paths = inputs
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("disk on fire")
        return original(*args, **kwargs)
    original = getattr(gguf_file._gguf, route)
    monkeypatch.setattr(gguf_file._gguf, route, failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        to_gguf(paths["f32"], tmp_path / "out.gguf", ftype)
    assert len(calls) == 5
    assert list(tmp_path.iterdir()) == []
    # The chunk buffers kept between tensors are given back, on failure too.
    assert getattr(chunks._KEPT, "buffers", None) is None


def test_a_failed_write_leaves_no_file(inputs, tmp_path, monkeypatch):
    # Tensors are written by a writer thread: its error reaches the caller all the same.
    root, paths = inputs
    calls = []
    original = gguf_file.GGUFOutput.write_tensor

    def failing(self, data):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("no space left on device")
        return original(self, data)
    monkeypatch.setattr(gguf_file.GGUFOutput, "write_tensor", failing)
    with pytest.raises(OSError, match="no space left"):
        to_gguf(paths["f32"], tmp_path / "out.gguf", "Q8_0")
    assert list(tmp_path.iterdir()) == []


def _f16_to_f32_bits(h):
    """float32 bit patterns of the float16 bit patterns ``h`` from IEEE 754's fields."""
    h = h.astype(np.uint32)
    sign, exp, mant = (h >> 15) << 31, (h >> 10) & 0x1F, h & 0x3FF
    normal = sign | ((exp + 112) << 23) | (mant << 13)
    special = sign | (0xFF << 23) | (mant << 13)            # inf, NaN (payload kept)
    tiny = np.ldexp(mant.astype(np.float64), -24).astype(np.float32).view(np.uint32)
    return np.where(exp == 0x1F, special, np.where(exp == 0, sign | tiny, normal))


def test_bf16_input_widens_exactly(tmp_path, monkeypatch):
    # BF16 tensors written as F32: each value's bits shifted into the high half, checked
    # against the input read back with gguf-py; chunks that split tensors.
    monkeypatch.setattr(_tuning, "EXPORT_CHUNK_BYTES", 3 * 4 * 384)
    src = tiny.write_tiny_llama(tmp_path / "bf16.gguf", "bf16")
    out = tmp_path / "f32.gguf"
    rep = to_gguf(src, out, "F32")
    stored = {t.name: t for t in gguf.GGUFReader(src).tensors}
    written = {t.name: t for t in gguf.GGUFReader(out).tensors}
    widened = [row.name for row in rep.tensors if row.dtype == "BF16->F32"]
    assert widened
    for name in widened:
        bits = np.asarray(stored[name].data).view(np.uint16).astype(np.uint32) << 16
        np.testing.assert_array_equal(np.asarray(written[name].data).view(np.uint32).ravel(),
                                      bits.ravel(), err_msg=name)


def test_f16_rows_widen_exactly(monkeypatch):
    # Every float16 bit pattern, rows spread over several tasks of the pool.
    from numba_quant._cpu import threads
    from numba_quant._cpu.widen import widen_f16_rows
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)  # as on 2 cores
    monkeypatch.setattr(_tuning, "PARALLEL_THRESHOLD", 0)
    monkeypatch.setattr(_tuning, "MIN_TASK_ELEMENTS", 1)
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).reshape(512, 128)
    assert len(threads.ranges(bits.shape[0], bits.size)) > 1
    bits.flags.writeable = False            # as the rows of a memory-mapped file
    out = np.full(bits.shape, np.nan, np.float32)
    widen_f16_rows(bits, out)
    np.testing.assert_array_equal(out.view(np.uint32), _f16_to_f32_bits(bits))


def _imatrix_gguf(path, entries, keys=("imatrix.datasets", "imatrix.chunk_count",
                                       "imatrix.chunk_size")):
    w = gguf.GGUFWriter(str(path), "")
    w.kv_data[0].clear()
    if "imatrix.datasets" in keys:
        w.add_array("imatrix.datasets", ["d.txt"])
    if "imatrix.chunk_count" in keys:
        w.add_uint32("imatrix.chunk_count", 3)
    if "imatrix.chunk_size" in keys:
        w.add_uint32("imatrix.chunk_size", 512)
    for name, (sums, counts) in entries.items():
        w.add_tensor(f"{name}.in_sum2", np.asarray(sums, np.float32).reshape(1, -1))
        w.add_tensor(f"{name}.counts", np.asarray(counts, np.float32).reshape(1, -1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_importance_matrix_errors(inputs, tmp_path, capsys):
    root, paths = inputs
    out = tmp_path / "out.gguf"
    good = np.ones(256, np.float32)
    short = _imatrix_gguf(tmp_path / "short.gguf",
                          {"blk.0.attn_q.weight": (good[:100], [2.0])})
    _fails([paths["f32"], out, "--type", "Q4_K_M", "--imatrix", short], capsys,
           "short.gguf", "blk.0.attn_q.weight", "100 values", "256")
    nan = good.copy()
    nan[3] = np.nan
    bad = _imatrix_gguf(tmp_path / "nan.gguf", {"blk.0.attn_q.weight": (nan, [2.0])})
    _fails([paths["f32"], out, "--type", "Q4_K_M", "--imatrix", bad], capsys,
           "non-finite", "blk.0.attn_q.weight")
    bare = _imatrix_gguf(tmp_path / "bare.gguf", {"blk.0.attn_q.weight": (good, [2.0])},
                         keys=("imatrix.datasets",))
    _fails([paths["f32"], out, "--type", "Q4_K_M", "--imatrix", bare], capsys,
           "missing importance-matrix metadata", "imatrix.chunk_count")
    (tmp_path / "junk.dat").write_bytes(struct.pack("<i", 3) + b"\x05\x00")
    _fails([paths["f32"], out, "--type", "Q4_K_M", "--imatrix", tmp_path / "junk.dat"],
           capsys, "junk.dat", "ends early")
    _fails([paths["f32"], out, "--type", "Q4_K_M", "--imatrix", tmp_path / "none.dat"],
           capsys, "none.dat", "cannot read")
    assert not out.exists()


def test_importance_matrix_values(tmp_path):
    """in_sum2 / round(count) in float32, 1.0 for an expert that saw nothing; .dat
    values divided by their call count."""
    sums = np.arange(1, 9, dtype=np.float32) / np.float32(3)
    path = _imatrix_gguf(tmp_path / "m.gguf", {"w": (sums, [2.5, 0.0])})
    im = read_imatrix(path)
    want = np.concatenate([sums[:4] / np.float32(3), np.ones(4, np.float32)])
    np.testing.assert_array_equal(im.values["w"], want)
    assert im.metadata() == [("quantize.imatrix.file", "str", str(path)),
                             ("quantize.imatrix.dataset", "str", "d.txt"),
                             ("quantize.imatrix.entries_count", "u32", 1),
                             ("quantize.imatrix.chunks_count", "u32", 3)]
    raw = (struct.pack("<i", 1) + struct.pack("<i", 1) + b"w" + struct.pack("<ii", 7, 4)
           + sums[:4].tobytes())
    (tmp_path / "m.dat").write_bytes(raw)
    im = read_imatrix(tmp_path / "m.dat")
    np.testing.assert_array_equal(im.values["w"], sums[:4] / np.float32(7))
    assert [k for k, _, _ in im.metadata()] == ["quantize.imatrix.file",
                                                "quantize.imatrix.entries_count"]


def test_experts_take_their_own_importance_rows(tmp_path):
    """A 3-D expert tensor: each expert's rows are quantized with its slice of the
    importance matrix (compared with quantizing each expert's matrix alone)."""
    from numba_quant import gguf as nq_gguf
    rng = np.random.default_rng(9)
    experts = rng.normal(0, 0.02, (3, 4, 256)).astype(np.float32)
    src = _small_model(tmp_path / "in.gguf",
                       extra=[("blk.0.ffn_up_exps.weight", experts)])
    weights = rng.uniform(0.1, 2.0, (3, 256)).astype(np.float32)
    im = _imatrix_gguf(tmp_path / "im.gguf", {"blk.0.ffn_up_exps.weight":
                                              (weights.ravel(), [1.0, 1.0, 1.0])})
    out = tmp_path / "out.gguf"
    to_gguf(src, out, "Q4_K_S", imatrix=im, tensor_types=["exps=Q4_0"])
    t = {t.name: t for t in gguf.GGUFReader(out).tensors}["blk.0.ffn_up_exps.weight"]
    got = np.asarray(t.data).reshape(3, 4, -1)
    for e in range(3):
        np.testing.assert_array_equal(got[e], nq_gguf.quantize(experts[e], "Q4_0",
                                                               imatrix=weights[e]))


def test_each_format_takes_its_own_options(inputs, tmp_path, capsys):
    root, paths = inputs
    out = tmp_path / "out"
    _fails([paths["f32"], out, "--scheme", "W4A16"], capsys, "--scheme takes a model "
           "directory", "--type")
    _fails([root, out, "--scheme", "W4A16", "--imatrix", "x.dat", "--pure"], capsys,
           "--imatrix, --pure: GGUF options")
    _fails([root, out, "--scheme", "W4A16", "--dry-run"], capsys, "--dry-run: GGUF options")
    assert cli.main([paths["f32"], str(out), "--type", "Q8_0", "--scheme", "W4A16"]) == 2
    assert "give --scheme SCHEME" in capsys.readouterr().err
    _fails([paths["f32"], out, "--type", "Q8_0", "--gpu", "--dask", "local"], capsys,
           "--gpu and --dask")
    assert not out.exists()


# ------------------------------------------------------------------ the container

def test_header_reader_agrees_with_gguf_py(inputs):
    """Keys, value types, decoded scalars and tensor infos as gguf-py's reader sees
    them; every ggml type's block and byte sizes as gguf-py's table has them."""
    from numba_quant.export import gguf_container as gc
    root, paths = inputs
    for path in (paths["f32"], paths["gguf"]):
        ours = gc.read_header(path)
        ref = gguf.GGUFReader(path)
        fields = [f for name, f in ref.fields.items() if not name.startswith("GGUF.")]
        assert [kv.key for kv in ours.kvs] == [f.name for f in fields]
        for kv, f in zip(ours.kvs, fields):
            assert kv.vtype == int(f.types[0]), kv.key
            if f.types[0] not in (gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING):
                assert kv.value == f.contents(), kv.key
        assert [(t.name, t.ne, t.ggml_type, ours.data_offset + t.offset, t.nbytes)
                for t in ours.tensors] == \
            [(t.name, tuple(int(n) for n in t.shape), int(t.tensor_type), t.data_offset,
              t.n_bytes) for t in ref.tensors]
    for qtype, sizes in gguf.GGML_QUANT_SIZES.items():
        # gguf-py 0.19 gives Q8_1 40 bytes; ggml's block_q8_1 is 36 (two halves and 32
        # int8), and Q8_1 is an activation type no file stores.
        if int(qtype) in gc.TYPE_SIZES and qtype.name != "Q8_1":
            assert gc.TYPE_SIZES[int(qtype)] == sizes, qtype.name


def test_malformed_headers_name_the_file(tmp_path):
    from numba_quant.export import ExportError
    from numba_quant.export import gguf_container as gc
    good = _small_model(tmp_path / "in.gguf")
    data = good.read_bytes()
    header = gc.read_header(good)
    cases = {
        "version": data[:4] + struct.pack("<I", 1) + data[8:],
        "cut-header": data[:60],
        "cut-data": data[:header.data_offset + 100],
        "value-type": None,
    }
    # An unknown value type in the first key (its type follows the key's string).
    key_len = struct.unpack_from("<Q", data, 24)[0]
    at = 24 + 8 + key_len
    cases["value-type"] = data[:at] + struct.pack("<I", 77) + data[at + 4:]
    expected = {"version": "GGUF version 1", "cut-header": "inside the header",
                "cut-data": "runs past the end of the file", "value-type": "value type 77"}
    for name, raw in cases.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(raw)
        with pytest.raises(ExportError, match=expected[name]) as info:
            gc.read_header(path)
        assert str(path) in str(info.value)
