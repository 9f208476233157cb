"""The numba-quant command line, in-process and as a subprocess.

Expected values come from the numpy oracle (tests/oracle.py), which shares no code with
the package.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numba_quant
import oracle
from numba_quant import examples
from numba_quant.reporting import cli

# ----------------------------------------------------------------------- the oracle


def oracle_qparams(x, bits, scheme, formula="google", axis=None, nonfinite="raise"):
    """Scale and zero point from tests/oracle.py (per layer when ``axis`` is None)."""
    return oracle.min_max_observer(x, formula, bits, scheme, axis is None,
                                   axis=0 if axis is None else axis, nonfinite=nonfinite)


def simple_array(dtype=np.float32, shape=(4, 6, 5), seed=7):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * rng.uniform(0.1, 3.0, size=(shape[0],) + (1,) * (len(shape) - 1))
    x[(0,) * len(shape)] = 4.75  # a clear layer maximum
    return x.astype(dtype)


def run_cli(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def run_json(argv, capsys):
    rc, out, err = run_cli(list(argv) + ["--json"], capsys)
    return rc, json.loads(out), err


# -------------------------------------------------------------- in-process: values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scheme", ["symmetric", "affine"])
@pytest.mark.parametrize("bits", [8, 4])
def test_json_per_layer_matches_formulas(tmp_path, capsys, dtype, scheme, bits):
    x = simple_array(dtype)
    path = tmp_path / "w.npy"
    np.save(path, x)
    rc, doc, err = run_json([path, "--scheme", scheme, "--bits", bits], capsys)
    assert rc == 0, err
    assert err == ""
    (rec,) = doc["arrays"]
    scale, zp = oracle_qparams(x, bits, scheme)
    assert rec["name"] == str(path)
    assert rec["shape"] == list(x.shape)
    assert rec["dtype"] == np.dtype(dtype).name
    assert rec["scale_dtype"] == np.dtype(dtype).name
    assert rec["min"] == float(x.min())
    assert rec["max"] == float(x.max())
    assert rec["scale"] == [float(v) for v in scale]
    assert rec["zero_point"] == [float(v) for v in zp]
    assert doc["settings"]["quantization_scheme"] == scheme
    assert doc["settings"]["quantization_bit"] == bits
    assert doc["settings"]["per_layer_quantization"] is True
    assert doc["errors"] == []


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("scheme", ["symmetric", "affine"])
def test_json_per_channel_matches_formulas(tmp_path, capsys, axis, scheme):
    x = simple_array(np.float32)
    path = tmp_path / "w.npy"
    np.save(path, x)
    rc, doc, err = run_json([path, "--per-channel", "--axis", axis, "--scheme", scheme], capsys)
    assert rc == 0, err
    (rec,) = doc["arrays"]
    scale, zp = oracle_qparams(x, 8, scheme, axis=axis)
    assert rec["channels"] == x.shape[axis]
    assert rec["scale"] == [float(v) for v in scale]
    assert rec["zero_point"] == [float(v) for v in zp]
    assert rec["scale_min"] == float(scale.min())
    assert rec["scale_max"] == float(scale.max())
    assert rec["scale_median"] == pytest.approx(float(np.median(scale)))
    assert rec["zero_point_min"] == float(zp.min())
    assert rec["zero_point_max"] == float(zp.max())


def test_json_cambricon(tmp_path, capsys):
    x = simple_array(np.float64)  # amax 4.75: floor(log2) = 2, far from a power of two
    path = tmp_path / "w.npy"
    np.save(path, x)
    rc, doc, _ = run_json([path, "--formula", "cambricon", "--bits", 8], capsys)
    assert rc == 0
    # A shift exponent, named as such (no "scale" key).
    assert doc["arrays"][0]["shift"] == [2.0 - 6.0]
    assert "scale" not in doc["arrays"][0]
    assert doc["arrays"][0]["zero_point"] == [0.0]


def test_npz_reports_every_array(tmp_path, capsys):
    a = simple_array(np.float32, (3, 4), seed=1)
    b = simple_array(np.float64, (5, 2, 2), seed=2)
    h = simple_array(np.float16, (2, 8), seed=3)
    path = tmp_path / "model.npz"
    np.savez(path, a=a, b=b, h=h)
    rc, doc, err = run_json([path, "--scheme", "affine"], capsys)
    assert rc == 0, err
    by_name = {r["name"]: r for r in doc["arrays"]}
    assert set(by_name) == {f"{path}:a", f"{path}:b", f"{path}:h"}
    for key, arr in (("a", a), ("b", b), ("h", h)):
        rec = by_name[f"{path}:{key}"]
        scale, zp = oracle_qparams(arr, 8, "affine")
        assert rec["scale"] == [float(v) for v in scale]
        assert rec["zero_point"] == [float(v) for v in zp]
    assert by_name[f"{path}:h"]["dtype"] == "float16"
    assert by_name[f"{path}:h"]["scale_dtype"] == "float32"


def test_json_matches_the_oracle_on_the_builtin_set(capsys):
    rc, doc, _ = run_json(["--per-channel"], capsys)
    assert rc == 0
    weights = examples.example_weights()
    assert [r["name"] for r in doc["arrays"]] == list(weights)
    for rec in doc["arrays"]:
        scale, zp = oracle_qparams(weights[rec["name"]], 8, "symmetric", axis=0)
        assert rec["scale"] == scale.tolist()
        assert rec["zero_point"] == zp.tolist()


# ---------------------------------------------------------------- in-process: text


def test_no_file_runs_the_builtin_example_and_says_so(capsys):
    rc, out, err = run_cli([], capsys)
    assert rc == 0, err
    assert "built-in example set" in out
    for name, w in examples.example_weights().items():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert "float32" in line
        assert str(w.shape).replace(" ", "") in line.replace(" ", "")


def test_text_table_columns(tmp_path, capsys):
    x = np.array([[-1.5, 0.25], [3.0, 0.5]], dtype=np.float32)
    path = tmp_path / "small.npy"
    np.save(path, x)
    rc, out, err = run_cli([path, "--scheme", "affine", "--scales"], capsys)
    assert rc == 0, err
    header = next(line for line in out.splitlines() if line.startswith("name"))
    assert header.split() == ["name", "shape", "dtype", "min", "max", "scale", "zero_point"]
    row = next(line for line in out.splitlines() if line.startswith(str(path)))
    scale, zp = oracle_qparams(x, 8, "affine")
    assert row.split()[-2:] == [f"{scale[0]:.6g}", str(int(zp[0]))]
    assert "-1.5" in row and "3" in row and "(2, 2)" in row


def test_per_channel_summary(tmp_path, capsys):
    x = simple_array(np.float32)
    path = tmp_path / "w.npy"
    np.save(path, x)
    rc, out, _ = run_cli([path, "--per-channel", "--axis", "2", "--scales"], capsys)
    assert rc == 0
    assert "channels" in out and "scale min / median / max" in out
    row = next(line for line in out.splitlines() if line.startswith(str(path)))
    assert " 5 " in row  # five channels along axis 2
    assert "per-channel (axis 2)" in out


def test_nonfinite_raise_and_omit(tmp_path, capsys):
    x = simple_array(np.float32, (3, 4))
    x[1, 2] = np.nan
    x[2, 0] = np.inf
    path = tmp_path / "nan.npy"
    np.save(path, x)
    rc, out, err = run_cli([path], capsys)
    assert rc == 1
    assert err.count("\n") == 1 and "2" in err and "Traceback" not in err
    rc, doc, err = run_json([path, "--nonfinite", "omit", "--scales"], capsys)
    assert rc == 0, err
    finite = x[np.isfinite(x)]
    rec = doc["arrays"][0]
    assert rec["nonfinite"] == 2
    assert rec["min"] == float(finite.min()) and rec["max"] == float(finite.max())
    assert rec["scale"] == [float(oracle_qparams(x, 8, "symmetric", nonfinite="omit")[0][0])]


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("argv, needle", [
    (["--bits", "1"], "quantization_bit"),
    (["--bits", "17"], "quantization_bit"),
    (["{missing}"], "No such file"),
    (["{text}"], "not a .safetensors, .npy, .npz or PyTorch file"),
    (["{empty}"], "shape (0, 3)"),
    (["{empty}", "--scales"], "shape (0, 3)"),
    (["{scalar}", "--per-channel", "--scales"], "0-d"),
    (["{small}", "--per-channel", "--axis", "3"], "axis 3"),
    (["{small}", "--per-channel", "--axis", "3", "--scales"], "axis 3"),
    (["{small}", "--recipes", "int8,nope"], "unknown recipe 'nope'"),
])
def test_errors_are_one_line(tmp_path, capsys, argv, needle):
    files = {
        "missing": tmp_path / "missing.npy",
        "text": tmp_path / "notes.txt",
        "ints": tmp_path / "ints.npy",
        "empty": tmp_path / "empty.npy",
        "scalar": tmp_path / "scalar.npy",
        "small": tmp_path / "small.npy",
    }
    files["text"].write_text("not an array\n")
    np.save(files["ints"], np.arange(6).reshape(2, 3))
    np.save(files["empty"], np.zeros((0, 3), np.float32))
    np.save(files["scalar"], np.float32(2.5))
    np.save(files["small"], np.ones((2, 3), np.float32))
    argv = [a.format(**files) for a in argv]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 1
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("numba-quant: error: ")
    assert needle in lines[0]


def test_integer_arrays_are_skipped_with_a_note(tmp_path, capsys):
    path = tmp_path / "mixed.npz"
    np.savez(path, ids=np.arange(4), w=np.ones((2, 2), np.float32))
    rc, doc, err = run_json([path], capsys)
    assert rc == 0, err
    assert err == ""
    assert [t["name"] for t in doc["tensors"]] == [f"{path}:w"]
    assert doc["skipped"] == [{"name": f"{path}:ids",
                               "reason": "int64 tensor (not floating point)"}]
    assert doc["errors"] == []
    rc, out, err = run_cli([path, "--scales"], capsys)
    assert rc == 0 and err == ""
    assert f"skipped {path}:ids: int64 tensor" in out


def test_bad_array_does_not_stop_the_others(tmp_path, capsys):
    path = tmp_path / "mixed.npz"
    bad = np.ones((2, 2), np.float32)
    bad[0, 1] = np.nan
    np.savez(path, bad=bad, w=np.ones((2, 2), np.float32))
    rc, doc, err = run_json([path, "--bits", "8"], capsys)
    assert rc == 1
    assert [r["name"] for r in doc["arrays"]] == [f"{path}:w"]
    assert [t["name"] for t in doc["tensors"]] == [f"{path}:w"]
    assert {e["name"] for e in doc["errors"]} == {f"{path}:bad"}
    assert err.count("\n") == 1


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit, match="^2$") as info:
        cli.main(["--scheme", "nonsense"])
    assert info.value.code == 2


def test_files_and_example_together(tmp_path, capsys):
    rc, _, err = run_cli(["--example", "builtin", tmp_path / "x.npy"], capsys)
    assert rc == 1 and "either files or --example" in err


def test_minilm_missing_gives_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(examples, "MINILM_PACKAGE", "no_such_package_for_numba_quant")
    assert not examples.minilm_available()
    rc, out, err = run_cli(["--example", "minilm"], capsys)
    assert rc == 1
    assert len(err.splitlines()) == 1
    assert "examples" in err and "pip install" in err


@pytest.mark.skipif(not examples.minilm_available(), reason="examples extra not installed")
def test_minilm_example(capsys):
    rc, doc, err = run_json(["--example", "minilm", "--per-channel", "--scales"], capsys)
    assert rc == 0, err
    assert doc["source"] == "minilm"
    names = [r["name"] for r in doc["arrays"]]
    assert "encoder.layer.0.attention.self.query.weight" in names
    assert "embeddings.position_ids" not in names  # integer buffer left out
    rec = doc["arrays"][names.index("encoder.layer.0.attention.self.query.weight")]
    w = examples.minilm_weights()["encoder.layer.0.attention.self.query.weight"]
    assert rec["shape"] == [384, 384]
    scale, zp = oracle_qparams(w, 8, "symmetric", axis=0)
    assert rec["scale"] == [float(v) for v in scale]


# ------------------------------------------------------------------ examples module


def test_example_weights_are_deterministic():
    a = examples.example_weights()
    b = examples.example_weights()
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == np.float32
        np.testing.assert_array_equal(a[name], b[name])
    assert a["conv1.weight"].shape == (64, 3, 7, 7)
    assert a["layer3.0.conv2.weight"].shape == (256, 128, 3, 3)
    assert a["attention.query.weight"].shape == (384, 384)
    c = examples.example_weights(seed=1)
    assert not np.array_equal(a["conv1.weight"], c["conv1.weight"])


def test_example_weights_look_like_weights():
    for name, w in examples.example_weights().items():
        assert np.isfinite(w).all()
        if w.ndim < 2:
            continue
        amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        # Channels differ in range, and the largest is well above the typical one.
        assert amax.max() > 3 * np.median(amax), name
        assert amax.min() > 0, name


def test_load_example_names():
    assert set(examples.load_example("builtin")) == set(examples.example_weights())
    with pytest.raises(ValueError, match="builtin"):
        examples.load_example("nope")


# ------------------------------------------------------------------ subprocesses


def _subprocess_env():
    # Run the same numba_quant the tests import (installed or from the source tree).
    env = dict(os.environ)
    root = str(Path(numba_quant.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get(
        "PYTHONPATH") else root
    return env


def test_python_m_numba_quant(tmp_path):
    x = simple_array(np.float32, (6, 5))
    path = tmp_path / "w.npz"
    np.savez(path, weight=x)
    proc = subprocess.run([sys.executable, "-m", "numba_quant", str(path), "--json",
                           "--scheme", "affine", "--bits", "6"],
                          capture_output=True, text=True, env=_subprocess_env(),
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    scale, zp = oracle_qparams(x, 6, "affine")
    assert doc["arrays"][0]["scale"] == [float(scale[0])]
    assert doc["arrays"][0]["zero_point"] == [float(zp[0])]


def test_subprocess_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "numba_quant", str(tmp_path / "nope.npz")],
                          capture_output=True, text=True, env=_subprocess_env(),
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def _console_script():
    bindir = Path(sys.executable).parent
    for name in ("numba-quant", "numba-quant.exe"):
        if (bindir / name).exists():
            return bindir / name
    return None


@pytest.mark.skipif(_console_script() is None,
                    reason="numba-quant console script not installed next to this Python")
def test_console_script_runs_builtin_example(tmp_path):
    # The installed entry point, running the numba_quant under test (as the other
    # subprocesses do): the same source files, so the compiled kernels come from the
    # cache that the in-process tests filled.
    proc = subprocess.run([str(_console_script())], capture_output=True, text=True,
                          env=_subprocess_env(), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "built-in example set" in proc.stdout
    assert "conv1.weight" in proc.stdout


# ------------------------------------------------------------------ GPU path


def _gpu_usable():
    if importlib.util.find_spec("numba_quant._cuda.channels") is None:
        return False  # the CUDA backend module is not part of this tree
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True
    try:
        from numba import cuda
        return cuda.is_available()
    except Exception:
        return False


@pytest.mark.skipif(not _gpu_usable(), reason="no CUDA backend, or no GPU and not in the CUDA simulator")
@pytest.mark.parametrize("per_channel", [False, True])
def test_gpu_option_matches_cpu(tmp_path, capsys, per_channel):
    x = simple_array(np.float32, (3, 4, 2))
    path = tmp_path / "w.npy"
    np.save(path, x)
    extra = ["--per-channel"] if per_channel else []
    rc, cpu, err = run_json([path, "--scheme", "affine"] + extra, capsys)
    assert rc == 0, err
    rc, gpu, err = run_json([path, "--scheme", "affine", "--gpu"] + extra, capsys)
    assert rc == 0, err
    assert gpu["settings"]["device"] == "gpu"
    scale, zp = oracle_qparams(x, 8, "affine", axis=0 if per_channel else None)
    for doc in (cpu, gpu):
        assert doc["arrays"][0]["scale"] == scale.tolist()
        assert doc["arrays"][0]["zero_point"] == zp.tolist()


def test_gpu_option_without_a_gpu_is_one_line(tmp_path):
    np.save(tmp_path / "w.npy", np.ones((2, 2), np.float32))
    env = _subprocess_env()
    env["NUMBA_ENABLE_CUDASIM"] = "0"
    proc = subprocess.run([sys.executable, "-m", "numba_quant", "w.npy", "--gpu"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    if proc.returncode == 0:
        pytest.skip("a usable GPU is present")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "--gpu needs a CUDA GPU" in proc.stderr


def test_dask_option_gives_the_same_report(tmp_path, capsys, monkeypatch):
    """--dask ADDRESS: the report's tensors as Dask tasks, each read again from its file
    by a locator that pickles as the path and the name.  The client is replaced by one on
    the synchronous scheduler (tests/test_dask.py starts the only real cluster)."""
    import pickle
    distributed = pytest.importorskip("distributed")
    from numba_quant.reporting import dask_report as _dask_report
    x = simple_array(shape=(6, 40))
    first, second = tmp_path / "a.npy", tmp_path / "b.npz"
    np.save(first, x)
    np.savez(second, w=x[:, :8].astype(np.float16), b=x[0])
    addresses = []

    class Synchronous:
        def __init__(self, address, timeout):
            addresses.append(address)

        def __enter__(self):
            return "synchronous"  # what dask.compute takes as the scheduler

        def __exit__(self, *exc):
            return False

        @staticmethod
        def current(*args, **kwargs):  # as distributed.Client without a client
            raise ValueError("no client")

    monkeypatch.setattr(distributed, "Client", Synchronous)
    reports = []
    for extra in ([], ["--dask", "tcp://scheduler:8786"]):
        rc, out, err = run_cli([first, second, "--recipes", "int8,int4-g128", "--json"]
                               + extra, capsys)
        assert rc == 0, err
        report = json.loads(out)
        report.pop("seconds")
        reports.append(report)
    assert addresses == ["tcp://scheduler:8786"]
    assert reports[0] == reports[1] and len(reports[0]["tensors"]) == 3
    locator = _dask_report.FileTensor(second, f"{second}:w", True)
    entry = pickle.loads(pickle.dumps(locator)).entry()
    assert entry.shape == (6, 8) and entry.dtype == "float16"
    rc, _, err = run_cli([first, "--scales", "--dask", "local"], capsys)
    assert rc == 1 and "--dask runs the report; it does not apply to --scales" in err
