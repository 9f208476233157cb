"""Model checkpoints, recipes and the quantization-error report.

Checkpoint files are written here with the ``safetensors`` package (and torch, where
installed); expected values come from tests/oracle.py (numpy, no numba_quant) and from
the metrics' definitions computed here in float64.
"""
import html.parser
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import oracle
import numba_quant as nq
from numba_quant import examples
from numba_quant._host import tuning as _tuning
from numba_quant.reporting import cli
from numba_quant.reporting import recipes
from numba_quant.reporting.checkpoint import CheckpointError, open_checkpoint

safetensors = pytest.importorskip("safetensors")

HAVE_TORCH = __import__("importlib").util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")


# ------------------------------------------------------------------------ helpers

def write_safetensors(path, tensors):
    """Write {name: (safetensors dtype name, numpy array of the stored bits)}."""
    keep = {}
    specs = {}
    for name, (dtype, array) in tensors.items():
        array = np.ascontiguousarray(array)
        keep[name] = array
        specs[name] = safetensors.TensorSpec(dtype=dtype, shape=list(array.shape),
                                             data_ptr=array.ctypes.data,
                                             data_len=array.nbytes)
    safetensors.serialize_file(specs, str(path))


def bf16_bits(x):
    """bfloat16 bits of float32 values, rounded to nearest even (independent of the
    package)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_values(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def weights(shape, seed=0, scale_per_row=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_t(5, size=shape)
    if scale_per_row and len(shape) >= 2:
        x *= rng.lognormal(0, 0.7, size=(shape[0],) + (1,) * (len(shape) - 1))
    return x.astype(np.float32)


def metrics(x, xq):
    """Expected metrics from their definitions, in float64."""
    x = np.asarray(x, np.float64).reshape(-1)
    xq = np.asarray(xq, np.float64).reshape(-1)
    finite = np.isfinite(x)
    x, xq = x[finite], xq[finite]
    err = xq - x
    signal, noise = float(np.sum(x * x)), float(np.sum(err * err))
    return {"sqnr_db": 10 * math.log10(signal / noise) if noise else math.inf,
            "mse": noise / x.size, "max_abs_error": float(np.max(np.abs(err)))}


def oracle_int(x2d, bits=8, scheme="symmetric", per_row=True):
    scale, zp = oracle.min_max_observer(x2d, "google", bits, scheme, not per_row, axis=0)
    return oracle.fake_quantization(x2d, scale, zp, "google", bits, scheme, axis=0)


def oracle_groups(x2d, group=128, bits=4, scheme="affine", nonfinite="raise"):
    """The int4-g128 recipe's values: the per-block oracle, blocks of ``group`` values
    along each row (the whole row when shorter; a shorter last block)."""
    block = (1, min(group, x2d.shape[1]))
    scale, zp = oracle.block_min_max_observer(x2d, "google", bits, scheme, block,
                                              nonfinite=nonfinite)
    return oracle.block_apply(oracle.fake_quantization, x2d, scale, zp, block,
                              quantization_formula="google", quantization_bit=bits,
                              quantization_scheme=scheme)


def check(result, x, xq):
    expected = metrics(x, xq)
    assert result.sqnr_db == pytest.approx(expected["sqnr_db"], rel=1e-9)
    assert result.mse == pytest.approx(expected["mse"], rel=1e-9)
    assert result.max_abs_error == expected["max_abs_error"]


# ------------------------------------------------------------------------ readers

def test_safetensors_every_dtype(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = weights((6, 10))
    codes = np.arange(256, dtype=np.uint8)
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {
        "f32": ("float32", x), "f16": ("float16", x.astype(np.float16)),
        "f64": ("float64", x.astype(np.float64)), "bf16": ("bfloat16", bf16_bits(x)),
        "e4m3": ("float8_e4m3fn", codes), "e5m2": ("float8_e5m2", codes),
        "ids": ("int64", np.arange(5)), "mask": ("bool", np.ones(3, bool)),
    })
    ckpt = open_checkpoint(path)
    got = {t.name: t for t in ckpt.tensors}
    assert set(got) == {"f32", "f16", "f64", "bf16", "e4m3", "e5m2"}
    assert sorted(ckpt.skipped) == [("ids", "int64 tensor (not floating point)"),
                                    ("mask", "bool tensor (not floating point)")]
    assert got["bf16"].dtype == "bfloat16" and got["bf16"].shape == (6, 10)
    # Memory-mapped, read in place: the raw values are a view of the file's map.
    raw = got["f32"].raw()
    base = raw
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    assert np.array_equal(got["f32"].numpy(), x)
    assert got["f64"].numpy().dtype == np.float64
    assert np.array_equal(got["f16"].numpy(), x.astype(np.float16).astype(np.float32))
    expected_bf16 = bf16_bits(x).view(ml_dtypes.bfloat16).astype(np.float32)
    assert np.array_equal(got["bf16"].numpy().view(np.uint32),
                          expected_bf16.view(np.uint32))
    for name, dt in (("e4m3", ml_dtypes.float8_e4m3fn), ("e5m2", ml_dtypes.float8_e5m2)):
        want = codes.view(dt).astype(np.float32)
        have = got[name].numpy()
        nan = np.isnan(want)
        assert np.array_equal(np.isnan(have), nan), name
        assert np.array_equal(have[~nan].view(np.uint32), want[~nan].view(np.uint32)), name


def test_include_exclude_patterns(tmp_path):
    path = tmp_path / "m.safetensors"
    names = ["encoder.0.weight", "encoder.0.bias", "encoder.1.weight", "head.weight"]
    write_safetensors(path, {n: ("float32", weights((2, 3), i)) for i, n in enumerate(names)})
    pick = open_checkpoint(path, include="encoder.*", exclude=["*.bias"])
    assert [t.name for t in pick.tensors] == ["encoder.0.weight", "encoder.1.weight"]
    assert [t.name for t in open_checkpoint(path, include="*.bias,head.*").tensors] == \
        ["encoder.0.bias", "head.weight"]


def test_sharded_directory(tmp_path):
    a, b, c = weights((4, 8), 1), weights((3, 5), 2), weights((7,), 3)
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors",
                      {"a": ("float32", a), "b": ("bfloat16", bf16_bits(b))})
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"c": ("float32", c)})
    index = {"metadata": {"total_size": 0},
             "weight_map": {"a": "model-00001-of-00002.safetensors",
                            "b": "model-00001-of-00002.safetensors",
                            "c": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    for source in (tmp_path, tmp_path / "model.safetensors.index.json"):
        ckpt = open_checkpoint(source)
        got = {t.name: t.numpy() for t in ckpt.tensors}
        assert sorted(got) == ["a", "b", "c"]
        assert np.array_equal(got["a"], a) and np.array_equal(got["c"], c)
        assert np.array_equal(got["b"], bf16_values(bf16_bits(b)))
    os.remove(tmp_path / "model-00002-of-00002.safetensors")
    with pytest.raises(CheckpointError, match="shard model-00002-of-00002.safetensors is "
                                              "missing"):
        open_checkpoint(tmp_path)


def test_bad_files_are_clear_errors(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(CheckpointError, match="broken.safetensors: not a safetensors file"):
        open_checkpoint(bad)
    short = tmp_path / "short.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4],
                               "data_offsets": [0, 64]}}).encode()
    short.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 10)
    with pytest.raises(CheckpointError, match=r"'w' \(F32, shape \(4, 4\)\) has data "
                                              r"offsets \[0, 64\)"):
        open_checkpoint(short)
    with pytest.raises(CheckpointError, match="No such file"):
        open_checkpoint(tmp_path / "missing.safetensors")


def test_npz_float16_and_big_endian(tmp_path):
    x = weights((5, 6))
    path = tmp_path / "w.npz"
    np.savez(path, half=x.astype(np.float16), big=x.astype(">f4"), pos=np.arange(4))
    ckpt = open_checkpoint(path)
    got = {t.name: t for t in ckpt.tensors}
    assert got["half"].dtype == "float16" and got["big"].shape == (5, 6)
    assert np.array_equal(got["big"].numpy(), x)
    assert ckpt.skipped == [("pos", "int64 tensor (not floating point)")]


# ------------------------------------------------------------------------ report values

def test_bf16_safetensors_report_matches_the_oracle(tmp_path, monkeypatch):
    """A bf16 file, read in several chunks of rows, against the numpy oracle."""
    w = weights((48, 300), 5)       # 300 columns: groups of 128, 128 and 44
    bias = weights((48,), 6)
    conv = weights((8, 3, 3, 3), 7)
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {"w": ("bfloat16", bf16_bits(w)), "bias": ("float32", bias),
                             "conv": ("float16", conv.astype(np.float16))})
    monkeypatch.setattr(_tuning, "REPORT_CHUNK", 1000)   # several chunks per tensor
    rep = nq.report(path, recipes=["int8", "int8-layer", "int4-g128", "int6-affine-layer"])
    by = {t.name: t for t in rep.tensors}
    assert set(by) == {"w", "bias", "conv"}
    wv = bf16_values(bf16_bits(w))
    check(by["w"].results["int8"], wv, oracle_int(wv))
    check(by["w"].results["int8-layer"], wv, oracle_int(wv, per_row=False))
    check(by["w"].results["int4-g128"], wv, oracle_groups(wv))
    check(by["w"].results["int6-affine-layer"], wv, oracle_int(wv, 6, "affine", False))
    assert by["w"].dtype == "bfloat16" and by["w"].nbytes == w.size * 2
    assert by["w"].min == float(wv.min()) and by["w"].max == float(wv.max())
    # 1-D tensors: per layer for per-channel recipes, one row of groups for int4-g128.
    check(by["bias"].results["int8"], bias, oracle_int(bias[None], per_row=False))
    check(by["bias"].results["int4-g128"], bias, oracle_groups(bias[None]))
    cv = conv.astype(np.float16).astype(np.float32).reshape(8, 27)
    check(by["conv"].results["int8"], cv, oracle_int(cv))
    # Bytes: packed codes plus float32 scales (and zero points in the code's width).
    assert by["w"].results["int8"].bytes == 48 * 300 + 48 * 4
    assert by["w"].results["int8-layer"].bytes == 48 * 300 + 4
    assert by["w"].results["int4-g128"].bytes == 48 * 300 // 2 + 48 * 3 * (4 + 1)
    assert by["w"].results["int6-affine-layer"].bytes == -(-48 * 300 * 6 // 8) + 4 + 1
    assert by["bias"].results["int8"].bytes == 48 + 4
    summary = rep.summary()["int8"]
    sizes = {n: t.size for n, t in by.items()}
    sq = {n: t.results["int8"].sqnr_db for n, t in by.items()}
    assert summary["sqnr_db_weighted"] == pytest.approx(
        sum(sizes[n] * sq[n] for n in by) / sum(sizes.values()), rel=1e-12)
    assert summary["worst"][0] == min(sq, key=sq.get)
    assert summary["bytes"] == sum(t.results["int8"].bytes for t in rep.tensors)
    assert summary["original_bytes"] == w.size * 2 + bias.size * 4 + conv.size * 2


def test_int4_g128_on_the_example_matches_the_block_oracle():
    """The recipe's fake-quantized values, bit for bit, on the built-in example's tensors
    of each kind of row: a ragged last block (147 columns), rows shorter than a block (9),
    a 1-D tensor (one row of 1000); and under nonfinite="omit" with NaN and inf."""
    from golden import assert_same
    weights = examples.example_weights()
    recipe = recipes.get_recipe("int4-g128")
    for name in ("conv1.weight", "layer4.1.depthwise.weight", "classifier.bias"):
        x = weights[name]
        x2d = x.reshape(x.shape[0], -1) if x.ndim >= 2 else x.reshape(1, -1)
        context = recipes.TensorContext(name, x.shape, float(x.min()), float(x.max()))
        xq, clip = recipe.fake_quantize(np.ascontiguousarray(x2d), context)
        assert_same(xq, oracle_groups(x2d), name)
        assert clip.group == 128 and clip.steps.shape == (x2d.shape[0], -(-x2d.shape[1] // 128))
    x2d = weights["conv1.weight"].reshape(64, -1).copy()
    x2d[3, 5], x2d[7, 140], x2d[9, :] = np.nan, -np.inf, np.nan
    x2d[9, 130] = 1.5     # row 9: its first block has no finite value
    context = recipes.TensorContext("w", x2d.shape, -1.0, 1.0, nonfinite="omit")
    rows = [r for r in range(64) if r != 9]
    xq, _ = recipe.fake_quantize(x2d[rows], context)
    assert_same(xq, oracle_groups(x2d[rows], nonfinite="omit"), "omit")
    with pytest.raises(ValueError, match=r"no finite value"):
        recipe.fake_quantize(x2d, context)


def test_cambricon_and_other_axis(tmp_path):
    x = weights((6, 5, 4), 9)
    rep = nq.report({"x": x}, recipes=["cambricon8", "int8-axis1", "int4-affine"])
    r = rep.tensors[0].results
    x2 = x.reshape(6, 20)
    s, z = oracle.min_max_observer(x2, "cambricon", 8, "symmetric", False, axis=0)
    check(r["cambricon8"], x2, oracle.fake_quantization(x2, s, z, "cambricon", 8, axis=0))
    s, z = oracle.min_max_observer(x, "google", 8, "symmetric", False, axis=1)
    check(r["int8-axis1"], x, oracle.fake_quantization(x, s, z, axis=1))
    check(r["int4-affine"], x2, oracle_int(x2, 4, "affine"))
    assert rep.recipes[0].settings["parameter"] == "shift"


def test_clipping_counted_for_a_custom_recipe():
    x = weights((10, 64), 11)

    def fake(chunk, context):
        amax = max(abs(context.lo), abs(context.hi))
        scale = np.float32(amax / 2 / 127)      # half the range: the tails are clipped
        q = np.clip(np.rint(chunk / scale), -127, 127)
        return (q * scale).astype(chunk.dtype), recipes.ClipSteps(
            np.array([[scale]], np.float64), chunk.shape[1], 8)

    custom = recipes.Recipe("half-range", "int8 with half the range", fake,
                            lambda rows, cols: rows * cols)
    rep = nq.report({"x": x}, recipes=[custom, "int8"])
    amax = np.abs(x).max()
    scale = np.float32(amax / 2 / 127)
    expected = np.count_nonzero(np.abs(x / scale) > 127.5) / x.size
    assert expected > 0
    assert rep.tensors[0].results["half-range"].clipped_fraction == expected
    assert rep.tensors[0].results["int8"].clipped_fraction == 0


def test_nonfinite_raise_and_omit():
    x = weights((4, 16), 12)
    x[1, 3] = np.nan
    x[2, 5] = -np.inf
    good = weights((3, 3), 13)
    rep = nq.report({"x": x, "good": good}, recipes=["int8"])
    assert [t.name for t in rep.tensors] == ["good"]
    assert rep.errors == [("x", "input contains 2 non-finite value(s) (NaN or infinity); "
                                "pass nonfinite='omit' to ignore them")]
    rep = nq.report({"x": x}, recipes=["int8", "int8-layer"], nonfinite="omit")
    t = rep.tensors[0]
    assert t.nonfinite == 2
    finite = np.isfinite(x)
    assert t.min == float(x[finite].min()) and t.max == float(x[finite].max())
    s, z = oracle.min_max_observer(x, "google", 8, "symmetric", False, axis=0,
                                   nonfinite="omit")
    check(t.results["int8"], x, oracle.fake_quantization(x, s, z, axis=0))
    amax = max(abs(t.min), abs(t.max))
    scale = np.float32(amax) / np.float32(127)
    check(t.results["int8-layer"], x, oracle.fake_quantization(x, scale, 0))


def test_empty_tensor_and_unknown_recipe():
    rep = nq.report({"e": np.zeros((0, 3), np.float32)}, recipes=["int8"])
    assert rep.errors == [("e", "cannot quantize an empty tensor of shape (0, 3)")]
    with pytest.raises(ValueError, match="unknown recipe 'int8-foo'; available: int8"):
        nq.report({"x": np.ones(3, np.float32)}, recipes=["int8-foo"])
    with pytest.raises(ValueError, match="cambricon has no affine scheme"):
        recipes.get_recipe("cambricon8-affine")


def test_recipe_registry():
    assert recipes.available_recipes()[:7] == list(recipes.DEFAULT_RECIPES)
    assert recipes.get_recipe("int4-affine-layer").name == "int4-affine-layer"
    assert recipes.oneflow_recipe("cambricon", 8, per_channel=True, axis=1).name == \
        "cambricon8-axis1"
    with pytest.raises(ValueError, match="already registered"):
        recipes.register(recipes.get_recipe("int8"))


# ------------------------------------------------------------------------ outputs

class _Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.rows, self.tags, self.links = [], 0, {}, []
        self.table = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.tags[f"{tag}.{attrs.get('class')}"] = self.tags.get(f"{tag}.{attrs.get('class')}",
                                                                   0) + 1
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])
        if tag == "table":
            self.table = attrs.get("class")
        if tag == "tbody":
            self.stack.append(self.table)
        if tag == "tr" and self.stack and self.stack[-1] == "tensors":
            self.rows += 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self.stack.pop()


def test_html_markdown_json(tmp_path):
    tensors = {f"layer{i}.weight": weights((16, 32), i) for i in range(5)}
    tensors["layer0.bias"] = weights((16,), 9)
    rep = nq.report(tensors, recipes=["int8", "int8-layer", "int4-g128"], histograms=2)
    page = rep.to_html()
    parsed = _Collector()
    parsed.feed(page)
    assert parsed.rows == 6                       # a row per tensor
    assert parsed.tags["svg.sqnr-plot"] == 1
    assert parsed.tags["svg.histogram"] == 2
    assert parsed.tags["circle.point"] == 6 * 3   # SQNR per tensor per recipe
    assert parsed.links == []                     # self-contained: nothing fetched
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    fragment = rep._repr_html_()
    assert "<html" not in fragment and 'class="tensors"' in fragment
    md = rep.to_markdown()
    assert md.count("\n| `layer") == 6 + 6 * 3   # per-tensor table, then tensor x recipe
    doc = json.loads(rep.to_json(), parse_constant=lambda c: pytest.fail(c))
    assert [t["name"] for t in doc["tensors"]] == list(tensors)
    assert doc["tensors"][0]["recipes"]["int8"]["sqnr_db"] == \
        rep.tensors[0].results["int8"].sqnr_db
    assert set(doc["histograms"]) == set(rep.histograms) and len(rep.histograms) == 2
    for suffix in ("html", "md", "json"):
        rep.save(tmp_path / f"r.{suffix}")
    assert (tmp_path / "r.html").read_text() == page


def test_exact_and_zero_tensors_in_json():
    rep = nq.report({"zeros": np.zeros((2, 4), np.float32),
                     "steps": np.array([[0.5, -1.0]], np.float32)}, recipes=["int8"])
    r = {t.name: t.results["int8"] for t in rep.tensors}
    assert math.isnan(r["zeros"].sqnr_db)
    doc = json.loads(rep.to_json(), parse_constant=lambda c: pytest.fail(c))
    assert doc["tensors"][0]["recipes"]["int8"]["sqnr_db"] == "nan"


# ------------------------------------------------------------------------ command line

def run_cli(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_cli_safetensors_table_json_html(tmp_path, capsys):
    w = weights((32, 256), 21)
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {"enc.weight": ("bfloat16", bf16_bits(w)),
                             "enc.bias": ("float32", weights((32,), 22)),
                             "position_ids": ("int64", np.arange(8))})
    rc, out, err = run_cli([path, "--recipes", "int8,int4-g128"], capsys)
    assert rc == 0 and err == ""
    row = next(line for line in out.splitlines() if line.startswith("enc.weight "))
    wv = bf16_values(bf16_bits(w))
    assert f"{metrics(wv, oracle_int(wv))['sqnr_db']:.2f}" in row.split()
    assert "bfloat16" in row and "(32, 256)" in row
    assert "skipped position_ids: int64 tensor (not floating point)" in out
    rc, out, err = run_cli([path, "--json", "--include", "enc.*", "--exclude", "*.bias",
                            "--bits", "4", "-o", tmp_path / "r.html"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    assert [t["name"] for t in doc["tensors"]] == ["enc.weight"]
    assert [r["name"] for r in doc["recipes"]][-1] == "int4-layer"   # from --bits 4
    got = doc["tensors"][0]["recipes"]["int4-layer"]
    assert got["sqnr_db"] == pytest.approx(
        metrics(wv, oracle_int(wv, 4, per_row=False))["sqnr_db"], rel=1e-9)
    scale, _ = oracle.min_max_observer(wv, "google", 4)
    assert doc["arrays"][0]["scale"] == [float(scale[0])]
    assert doc["arrays"][0]["dtype"] == "bfloat16"
    parsed = _Collector()
    parsed.feed((tmp_path / "r.html").read_text())
    assert parsed.rows == 1 and parsed.tags["svg.sqnr-plot"] == 1


def test_cli_builtin_example_shows_the_report(capsys):
    rc, out, err = run_cli([], capsys)
    assert rc == 0, err
    assert "SQNR" in out and "int8-layer" in out and "int4-g128" in out
    summary = next(line for line in out.splitlines() if line.startswith("int8 "))
    assert "x" in summary          # the compression column


def test_cli_prints_the_compile_notice_as_one_line(monkeypatch, capsys):
    import warnings
    from numba_quant._host.compile_notice import CompileNotice

    def run(args):
        warnings.warn("numba_quant: compiling CPU kernels for float32 (first call)",
                      CompileNotice)
        return 0

    monkeypatch.setattr(cli, "run", run)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli.main([]) == 0
    assert capsys.readouterr().err == \
        "numba-quant: compiling CPU kernels for float32 (first call)\n"


def test_cli_list_recipes(capsys):
    rc, out, _ = run_cli(["--list-recipes"], capsys)
    assert rc == 0
    assert out.startswith("int8 ") and "int4-g128" in out and "OneFlow setting" in out


@pytest.mark.skipif(not examples.minilm_available(), reason="examples extra not installed")
def test_cli_minilm_layer(capsys, tmp_path):
    rc, out, err = run_cli(["--example", "minilm", "--include",
                            "encoder.layer.0.attention.self.*", "--json"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    names = [t["name"] for t in doc["tensors"]]
    assert sorted(names) == sorted(f"encoder.layer.0.attention.self.{p}.{k}"
                                   for p in ("query", "key", "value")
                                   for k in ("weight", "bias"))
    w = examples.minilm_weights()["encoder.layer.0.attention.self.query.weight"]
    got = doc["tensors"][names.index("encoder.layer.0.attention.self.query.weight")]
    assert got["recipes"]["int8"]["sqnr_db"] == pytest.approx(
        metrics(w, oracle_int(w))["sqnr_db"], rel=1e-9)


def test_cli_subprocess_markdown(tmp_path):
    path = tmp_path / "m.safetensors"
    w = weights((16, 128), 31)
    write_safetensors(path, {"w": ("float32", w)})
    env = dict(os.environ)
    root = str(Path(nq.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "numba_quant", str(path), "--recipes",
                           "int8", "-o", "report.md"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "report written to report.md" in proc.stdout
    md = (tmp_path / "report.md").read_text()
    sqnr = metrics(w, oracle_int(w))["sqnr_db"]
    assert f"| `w` | int8 | {sqnr:.2f} |" in md


# ------------------------------------------------------------------------ torch

@needs_torch
def test_torch_parameters_through_the_dispatcher():
    import torch
    from numba_quant._cpu import channels as _cpu
    w = weights((8, 12), 41)
    p = torch.nn.Parameter(torch.from_numpy(w.copy()))
    assert np.shares_memory(_cpu.as_array(p), p.detach().numpy())   # no copy
    scale, zp = nq.min_max_observer(p, per_layer_quantization=False)
    assert isinstance(scale, torch.Tensor) and scale.dtype == torch.float32
    s, z = oracle.min_max_observer(w, per_layer_quantization=False)
    assert np.array_equal(scale.numpy().view(np.uint32), s.view(np.uint32))
    fq = nq.fake_quantization(p, scale, zp)
    assert isinstance(fq, torch.Tensor)
    expected = oracle.fake_quantization(w, s, z)
    assert np.array_equal(fq.numpy().view(np.uint32), expected.view(np.uint32))
    out = torch.empty(8, 12)
    assert nq.fake_quantization(p, scale, zp, out=out) is out
    assert torch.equal(out, fq)
    q = nq.quantize(p, scale, zp)
    assert q.dtype == torch.int8
    back = nq.dequantize(q, scale, zp)
    assert isinstance(back, torch.Tensor) and torch.equal(back, fq)


@needs_torch
def test_torch_bfloat16_tensor():
    import torch
    w = weights((6, 40), 42)
    t = torch.from_numpy(w).to(torch.bfloat16)
    values = bf16_values(t.view(torch.int16).numpy().view(np.uint16))
    scale, zp = nq.min_max_observer(t, per_layer_quantization=False)
    s, z = oracle.min_max_observer(values, per_layer_quantization=False)
    assert np.array_equal(scale.numpy().view(np.uint32), s.view(np.uint32))
    fq = nq.fake_quantization(t, scale, zp)
    assert fq.dtype == torch.float32
    assert np.array_equal(fq.numpy().view(np.uint32),
                          oracle.fake_quantization(values, s, z).view(np.uint32))


@needs_torch
def test_torch_state_dict_file(tmp_path):
    import torch
    w = weights((10, 20), 43)
    state = {"fc.weight": torch.from_numpy(w).to(torch.bfloat16),
             "fc.bias": torch.zeros(10), "step": torch.tensor(3),
             "nested": {"scale": torch.ones(2, dtype=torch.float64)}}
    path = tmp_path / "model.pt"
    torch.save(state, path)
    rep = nq.report(path, recipes=["int8"])
    names = [t.name for t in rep.tensors]
    assert names == ["fc.weight", "fc.bias", "nested.scale"]
    assert rep.skipped == [("step", "int64 tensor (not floating point)")]
    wv = bf16_values(state["fc.weight"].view(torch.int16).numpy().view(np.uint16))
    check(rep.tensors[0].results["int8"], wv, oracle_int(wv))
    assert rep.tensors[0].dtype == "bfloat16"
    rep = nq.report({"p": torch.nn.Parameter(torch.from_numpy(w))}, recipes=["int8"])
    check(rep.tensors[0].results["int8"], w, oracle_int(w))


# ------------------------------------------------------------------------ float formats
# The expected values come from ml_dtypes casts of the scaled values (OCP MX "floor"
# scales, current scaling).

def _cast(values, dtype):
    import ml_dtypes
    return values.astype(getattr(ml_dtypes, dtype)).astype(np.float32)


def _mx_oracle(x2d, element, emax, largest, block=32):
    rows, cols = x2d.shape
    out = np.empty_like(x2d)
    clipped = 0
    for start in range(0, cols, block):
        part = x2d[:, start:start + block]
        amax = np.abs(part).max(axis=1, keepdims=True)
        e = np.floor(np.log2(amax)) - emax                     # OCP v1.0 floor scaling
        scaled = (part / np.exp2(e)).astype(np.float32)        # exact: a power of two
        clipped += int(np.count_nonzero(np.abs(scaled) > largest + (1.0 if largest == 6
                                                                     else 16.0)))
        out[:, start:start + block] = _cast(np.clip(scaled, -largest, largest),
                                            element) * np.exp2(e)
    return out, clipped


def test_mx_recipes_match_ml_dtypes_casts():
    pytest.importorskip("ml_dtypes")
    x = weights((24, 96), 51)
    rep = nq.report({"x": x}, recipes=["mxfp8", "mxfp4"])
    r = rep.tensors[0].results
    for name, element, emax, largest in (("mxfp8", "float8_e4m3fn", 8, 448.0),
                                         ("mxfp4", "float4_e2m1fn", 2, 6.0)):
        xq, clipped = _mx_oracle(x, element, emax, largest)
        check(r[name], x, xq)
        assert r[name].clipped == clipped
        assert r[name].bytes == -(-x.size * (8 if name == "mxfp8" else 4) // 8) + 24 * 3


def test_fp8_recipe_matches_ml_dtypes_casts():
    pytest.importorskip("ml_dtypes")
    x = weights((16, 40), 52)
    rep = nq.report({"x": x}, recipes=["fp8"])
    scale = (np.float32(448) / np.abs(x).max(axis=1, keepdims=True)).astype(np.float32)
    elements = _cast(np.clip((x * scale).astype(np.float32), -448, 448), "float8_e4m3fn")
    check(rep.tensors[0].results["fp8"], x, (elements / scale).astype(np.float32))
    assert rep.tensors[0].results["fp8"].clipped == 0


def _nvfp4_oracle(x2d, tensor_amax):
    """NVFP4 with ml_dtypes casts: per-tensor scale amax / 2688, E4M3 block scales of
    blocks of 16, elements scaled in float32 and cast to FP4 E2M1."""
    f32 = np.float32
    pts = max(f32(tensor_amax) / f32(2688), f32(2.0 ** -126))
    out = np.empty_like(x2d)
    clipped = 0
    for start in range(0, x2d.shape[1], 16):
        part = x2d[:, start:start + 16]
        amax = np.abs(part).max(axis=1, keepdims=True).astype(f32)
        bs = np.clip(((amax / f32(6)).astype(f32) / pts).astype(f32), f32(2.0 ** -6), f32(448))
        bs = _cast(bs, "float8_e4m3fn")
        scaled = (part * ((f32(1) / pts) / bs).astype(f32)).astype(f32)
        clipped += int(np.count_nonzero(np.abs(scaled) > 7))
        out[:, start:start + 16] = _cast(np.clip(scaled, -6, 6), "float4_e2m1fn") * \
            (pts * bs).astype(f32)
    return out, clipped


def test_nvfp4_recipe_uses_the_tensors_scale_in_every_chunk(monkeypatch):
    """Chunked or whole, NVFP4's per-tensor scale is the whole tensor's."""
    pytest.importorskip("ml_dtypes")
    x = weights((64, 48), 53)
    xq, clipped = _nvfp4_oracle(x, np.abs(x).max())
    for chunk in (1 << 22, 200):
        monkeypatch.setattr(_tuning, "REPORT_CHUNK", chunk)
        r = nq.report({"x": x}, recipes=["nvfp4"]).tensors[0].results["nvfp4"]
        check(r, x, xq)
        assert r.clipped == clipped
        assert r.bytes == x.size // 2 + 64 * 3 + 4


@pytest.mark.parametrize("where", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_gguf_recipes_match_the_gguf_oracles(where):
    """The GGUF recipes against the numpy models of ggml's quantizers, on either device:
    the type itself, llama-quantize's fallback for rows its blocks do not divide, F16 when
    the fallback's do not either (the 32-value types at once)."""
    from tests import gguf_oracle, gguf_oracle_k
    x = {"w512": weights((8, 512), 61), "w96": weights((6, 96), 62),
         "w100": weights((4, 100), 63)}
    used = {("w512", "q6_k"): "Q6_K", ("w96", "q6_k"): "Q8_0", ("w100", "q6_k"): "F16",
            ("w512", "tq2_0"): "TQ2_0", ("w96", "tq2_0"): "Q4_0", ("w100", "tq2_0"): "F16",
            ("w512", "q4_0"): "Q4_0", ("w96", "q4_0"): "Q4_0", ("w100", "q4_0"): "F16"}
    rep = nq.report(x, recipes=["q6_k", "tq2_0", "q4_0"], device=where)
    for tensor in rep.tensors:
        for recipe, result in tensor.results.items():
            qtype = used[(tensor.name, recipe)]
            model = gguf_oracle_k if qtype.endswith("_K") else gguf_oracle
            data = model.quantize(qtype, x[tensor.name])
            check(result, x[tensor.name], model.dequantize(qtype, data, x[tensor.name].shape[1]))
            assert result.bytes == data.size
    assert not rep.errors
    assert recipes.get_recipe("q4_k").settings["bits_per_weight"] == 4.5
    assert {"q8_0", "q4_k", "q5_k", "q6_k", "iq4_xs"} <= set(recipes.available_recipes())
