"""compressed-tensors export: byte equality with llmcompressor, the report, bad input.

The golden digests (tests/data/ct_tiny_golden.json) were made by llmcompressor 0.14.0.1
(compressed-tensors 0.19) itself from the tiny model of tests/ct_tiny.py, by
``tools/make_ct_golden.py --tiny``; nothing here needs torch, transformers or
llmcompressor (the Linear layers are named with ``targets=``).
"""
import hashlib
import json
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest

import ct_tiny
from numba_quant.reporting import checkpoint
from numba_quant import export as ex
from numba_quant.export import cli
from numba_quant.export import compressed_export
from numba_quant.export import compressed_tensors as ctmod
from numba_quant.export.safetensors_out import SafetensorsWriter, TensorSpec

GOLDEN = json.loads((Path(__file__).parent / "data" / "ct_tiny_golden.json").read_text())
CASES = GOLDEN["cases"]
TARGETS = [r".*_proj", "lm_head"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct_models")
    return {dtype: Path(ct_tiny.write_model(root / dtype, dtype))
            for dtype in ("float32", "bfloat16")}


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _read(path):
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    return header, raw[8 + n:], raw


@pytest.mark.parametrize("key", sorted(CASES))
def test_bytes_equal_llmcompressor(key, models, tmp_path):
    case = CASES[key]
    model = models[case["dtype"]]
    assert _sha((model / "model.safetensors").read_bytes()) == case["input_sha256"]
    out = tmp_path / "out"
    ex.to_compressed_tensors(model, out, case["scheme"], ignore=case["ignore"],
                             targets=TARGETS, report=False)
    header, data, raw = _read(out / "model.safetensors")
    got = {k: [v["dtype"], v["shape"],
               _sha(data[v["data_offsets"][0]:v["data_offsets"][1]])]
           for k, v in header.items()}
    wrong = sorted(k for k in set(got) | set(case["tensors"])
                   if got.get(k) != case["tensors"].get(k))
    assert wrong == []
    assert _sha(raw) == case["file_sha256"]
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    want = dict(case["quantization_config"])
    # without transformers the module order is unknown: the ignore list is compared as
    # a set (tools/make_ct_golden.py's MiniLM runs check the order with transformers)
    assert sorted(config.pop("ignore")) == sorted(want.pop("ignore"))
    assert config == want
    assert (out / "recipe.yaml").read_text() == case["recipe"]
    assert (out / "tokenizer_config.json").is_file()


# --------------------------------------------------------------------- the report

def _unpack_words(words, bits, count):
    """Independent unpacking: element i of each row from bit i*bits of the row's words."""
    w = words.astype(np.uint64) & 0xFFFFFFFF
    out = np.zeros((w.shape[0], count), np.int64)
    for i in range(count):
        word = w[:, (i * bits) // 32] >> np.uint64((i * bits) % 32)
        out[:, i] = word & ((1 << bits) - 1)
    return out - (1 << (bits - 1))


def test_report_numbers(models, tmp_path):
    model = models["float32"]
    out = tmp_path / "out"
    rep = ex.to_compressed_tensors(model, out, "W4A16_ASYM", targets=TARGETS)
    header, data, _ = _read(out / "model.safetensors")
    src, sdata, _ = _read(model / "model.safetensors")

    def arr(h, d, name, dtype):
        b, e = h[name]["data_offsets"]
        return np.frombuffer(d[b:e], dtype).reshape(h[name]["shape"])

    total_signal = total_noise = 0.0
    assert len(rep.tensors) == 8
    for row in rep.tensors:
        m = row.name[:-len(".weight")]
        x = arr(src, sdata, row.name, "<f4").astype(np.float64)
        rows, cols = x.shape
        codes = _unpack_words(arr(header, data, m + ".weight_packed", "<i4"), 4, cols)
        scale = arr(header, data, m + ".weight_scale", "<f4").astype(np.float64)
        zpw = arr(header, data, m + ".weight_zero_point", "<i4")
        zp = _unpack_words(np.ascontiguousarray(zpw.T), 4, rows).T
        q = (codes.reshape(rows, -1, 128) - zp[:, :, None]) * scale[:, :, None]
        noise = float(((q.reshape(rows, cols) - x) ** 2).sum())
        signal = float((x * x).sum())
        total_signal += signal
        total_noise += noise
        assert row.sqnr_db == pytest.approx(10 * math.log10(signal / noise), rel=1e-9)
        out_bytes = sum(header[n]["data_offsets"][1] - header[n]["data_offsets"][0]
                        for n in header if n.startswith(m + ".weight"))
        assert row.output_bytes == out_bytes
        assert row.bits_per_weight == pytest.approx(8 * out_bytes / x.size)
    assert rep.sqnr_db == pytest.approx(10 * math.log10(total_signal / total_noise),
                                        rel=1e-9)
    assert rep.input_bytes == os.path.getsize(model / "model.safetensors")
    assert rep.output_bytes == os.path.getsize(out / "model.safetensors")
    doc = json.loads(rep.to_json())
    assert doc["tensors"][0]["sqnr_db"] == pytest.approx(rep.tensors[0].sqnr_db)


def test_cli_prints_and_saves_report(models, tmp_path, capsys):
    out = tmp_path / "out"
    report = tmp_path / "rep.json"
    code = cli.main([str(models["bfloat16"]), str(out), "--scheme", "w4a16",
                     "--targets", r".*_proj", "--targets", "lm_head", "--ignore",
                     "lm_head", "--json", "-o", str(report)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(report.read_text())
    assert printed["tensors"] == saved["tensors"]
    assert saved["ignored"] == ["lm_head"]
    assert len(saved["tensors"]) == 7 and saved["scheme"] == "W4A16"


# --------------------------------------------------------------------- bad input

def _cli_error(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _no_leftovers(parent):
    return [p.name for p in Path(parent).iterdir() if ".partial" in p.name
            or ".old" in p.name]


def test_output_exists_needs_force(models, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = _cli_error(capsys, [str(models["float32"]), str(out), "--scheme",
                                    "W8A16", "--targets", ".*_proj"])
    assert code == 1 and "exists" in err and "--force" in err
    assert (out / "keep.txt").read_text() == "mine"
    assert cli.main([str(models["float32"]), str(out), "--scheme", "W8A16",
                     "--targets", ".*_proj", "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert _no_leftovers(tmp_path) == []
    # The directory has the mode of one made directly (not a temporary one's 0o700).
    made = tmp_path / "made"
    made.mkdir()
    assert out.stat().st_mode == made.stat().st_mode


def test_unknown_scheme(models, tmp_path, capsys):
    code = cli.main([str(models["float32"]), str(tmp_path / "o"), "--scheme", "W3A5"])
    assert code == 2 and "W4A16" in capsys.readouterr().err
    with pytest.raises(ValueError, match="scheme='int3'.*W8A16"):
        ex.to_compressed_tensors(models["float32"], tmp_path / "o", "int3")
    assert not (tmp_path / "o").exists()


def test_missing_and_malformed_model_dir(tmp_path, capsys):
    code, err = _cli_error(capsys, [str(tmp_path / "nope"), str(tmp_path / "o"),
                                    "--scheme", "W4A16", "--targets", ".*"])
    assert code == 1 and "nope" in err
    d = tmp_path / "m"
    d.mkdir()
    code, err = _cli_error(capsys, [str(d), str(tmp_path / "o"), "--scheme", "W4A16",
                                    "--targets", ".*"])
    assert code == 1 and "config.json" in err
    (d / "config.json").write_text("{not json")
    code, err = _cli_error(capsys, [str(d), str(tmp_path / "o"), "--scheme", "W4A16",
                                    "--targets", ".*"])
    assert code == 1 and "config.json" in err and "JSON" in err
    (d / "config.json").write_text("{}")
    code, err = _cli_error(capsys, [str(d), str(tmp_path / "o"), "--scheme", "W4A16",
                                    "--targets", ".*"])
    assert code == 1 and "no .safetensors" in err
    assert not (tmp_path / "o").exists() and _no_leftovers(tmp_path) == []


def _model_with_header(directory, header, data_len):
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    (directory / "model.safetensors").write_bytes(
        struct.pack("<Q", len(text)) + text + bytes(data_len))
    return directory


BROKEN = {
    "negative dimension": ({"w.weight": {"dtype": "F32", "shape": [-1, 4],
                                         "data_offsets": [0, 16]}}, 16, "shape"),
    "non-integer dimension": ({"w.weight": {"dtype": "F32", "shape": [2.5, 4],
                                            "data_offsets": [0, 40]}}, 40, "shape"),
    "unknown dtype": ({"w.weight": {"dtype": "F7", "shape": [2, 4],
                                    "data_offsets": [0, 32]}}, 32, "dtype 'F7'"),
    "offsets outside the data": ({"w.weight": {"dtype": "F32", "shape": [2, 4],
                                               "data_offsets": [0, 32]}}, 16,
                                 "data offsets"),
    "overlapping tensors": ({"a.weight": {"dtype": "F32", "shape": [2, 4],
                                          "data_offsets": [0, 32]},
                             "w.weight": {"dtype": "F32", "shape": [2, 4],
                                          "data_offsets": [16, 48]}}, 48, "overlaps"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_safetensors_header(case, tmp_path, capsys):
    header, size, words = BROKEN[case]
    d = _model_with_header(tmp_path / "m", header, size)
    code, err = _cli_error(capsys, [str(d), str(tmp_path / "o"), "--scheme", "W4A16",
                                    "--targets", "w"])
    assert code == 1
    assert "model.safetensors" in err and "w.weight" in err and words in err
    assert not (tmp_path / "o").exists() and _no_leftovers(tmp_path) == []
    # the report reads with the same reader
    with pytest.raises(checkpoint.CheckpointError, match="w.weight"):
        checkpoint.open_checkpoint(d)


def test_shard_outside_model_dir(tmp_path, capsys):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"w.weight": "../elsewhere.safetensors"}}))
    code, err = _cli_error(capsys, [str(d), str(tmp_path / "o"), "--scheme", "W4A16",
                                    "--targets", "w"])
    assert code == 1 and "outside the model directory" in err and "w.weight" in err


def test_crash_midway_leaves_nothing(models, tmp_path, monkeypatch):
    calls = []
    real = ctmod.quantize_rows

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(compressed_export, "quantize_rows", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        ex.to_compressed_tensors(models["float32"], tmp_path / "o", "W4A16",
                                 targets=TARGETS)
    assert not (tmp_path / "o").exists() and _no_leftovers(tmp_path) == []


def test_without_transformers_names_the_option(models, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(compressed_export, "_model_structure", lambda model_dir: None)
    code, err = _cli_error(capsys, [str(models["float32"]), str(tmp_path / "o"),
                                    "--scheme", "W4A16"])
    assert code == 1 and "transformers" in err and "--targets" in err


def test_weight_errors(tmp_path, capsys):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    w = np.ones((4, 96), np.float32)
    with SafetensorsWriter(d / "model.safetensors",
                           [TensorSpec("fc.weight", "float32", w.shape)]) as f:
        f.write("fc.weight", w)
    code, err = _cli_error(capsys, [str(d), str(tmp_path / "o"), "--scheme", "W4A16",
                                    "--targets", "fc"])
    assert code == 1 and "fc.weight" in err and "128" in err and "--ignore fc" in err
    w[1, 2] = np.nan
    os.remove(d / "model.safetensors")
    with SafetensorsWriter(d / "model.safetensors",
                           [TensorSpec("fc.weight", "float32", w.shape)]) as f:
        f.write("fc.weight", w)
    code, err = _cli_error(capsys, [str(d), str(tmp_path / "o"), "--scheme", "FP8_DYNAMIC",
                                    "--targets", "fc"])
    assert code == 1 and "fc.weight" in err and "non-finite" in err
    assert not (tmp_path / "o").exists() and _no_leftovers(tmp_path) == []


def test_nvfp4_fused_layers_ignored_together(models, tmp_path):
    with pytest.raises(ex.ExportError, match="k_proj.*ignore all of them"):
        ex.to_compressed_tensors(models["float32"], tmp_path / "o", "NVFP4A16",
                                 targets=TARGETS, ignore=["re:.*k_proj"])
    assert not (tmp_path / "o").exists()


def test_writer_refuses_incomplete_tensor(tmp_path):
    w = SafetensorsWriter(tmp_path / "t.safetensors",
                          [TensorSpec("a", "float32", (4,)), TensorSpec("b", "int8", (2,))])
    w.write("a", np.zeros(4, np.float32))
    with pytest.raises(RuntimeError, match="not completely written: b"):
        w.close()


def test_report_command_refuses_broken_header(tmp_path, capsys):
    from numba_quant.reporting import cli as report_cli
    header, size, _ = BROKEN["negative dimension"]
    d = _model_with_header(tmp_path / "m", header, size)
    code = report_cli.main([str(d / "model.safetensors")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "model.safetensors" in err and "w.weight" in err and "shape" in err


def test_sharded_input_gives_the_same_shards(models, tmp_path):
    """Shards listed in an index are written as the same shards, each tensor's bytes
    those of the single-file golden output."""
    src = models["float32"]
    header, data, _ = _read(src / "model.safetensors")
    d = tmp_path / "sharded"
    d.mkdir()
    (d / "config.json").write_text((src / "config.json").read_text())
    names = sorted(header)
    weight_map = {}
    for shard, part in (("a.safetensors", names[:5]), ("b.safetensors", names[5:])):
        specs = [TensorSpec(n, "float32", tuple(header[n]["shape"])) for n in part]
        with SafetensorsWriter(d / shard, specs, {"format": "pt"}) as w:
            for n in part:
                b, e = header[n]["data_offsets"]
                w.write(n, np.frombuffer(data[b:e], np.float32))
        weight_map.update({n: shard for n in part})
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": weight_map}))
    out = tmp_path / "out"
    ex.to_compressed_tensors(d, out, "W4A16", targets=TARGETS)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    golden = CASES["float32/W4A16"]["tensors"]
    assert sorted(index["weight_map"]) == sorted(golden)
    seen = {}
    for shard in ("a.safetensors", "b.safetensors"):
        h, dd, _ = _read(out / shard)
        assert all(index["weight_map"][k] == shard for k in h)
        seen.update({k: [v["dtype"], v["shape"],
                         _sha(dd[v["data_offsets"][0]:v["data_offsets"][1]])]
                     for k, v in h.items()})
    assert seen == golden
    assert index["metadata"]["total_size"] == sum(
        v["data_offsets"][1] - v["data_offsets"][0]
        for s in ("a.safetensors", "b.safetensors")
        for v in _read(out / s)[0].values())


def test_unsupported_inputs(tmp_path, capsys):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    w = np.ones((4, 128), np.float16)
    with SafetensorsWriter(d / "model.safetensors",
                           [TensorSpec("fc.weight", "float16", w.shape)]) as f:
        f.write("fc.weight", w)
    code, err = _cli_error(capsys, [str(d), str(tmp_path / "o"), "--scheme", "W8A16",
                                    "--targets", "fc"])
    assert code == 1 and "fc.weight" in err and "float16" in err
    (d / "config.json").write_text(json.dumps(
        {"quantization_config": {"quant_method": "compressed-tensors"}}))
    code, err = _cli_error(capsys, [str(d), str(tmp_path / "o"), "--scheme", "W8A16",
                                    "--targets", "fc"])
    assert code == 1 and "already quantized" in err and "compressed-tensors" in err
    (d / "config.json").write_text("{}")
    code, err = _cli_error(capsys, [str(d), str(tmp_path / "o"), "--scheme", "W8A16",
                                    "--targets", "nothing"])
    assert code == 1 and "no Linear layer" in err
    assert not (tmp_path / "o").exists() and _no_leftovers(tmp_path) == []
