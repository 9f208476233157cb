"""numba_quant.gguf: ggml's GGUF types F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL,
IQ4_XS, TQ1_0, TQ2_0 and MXFP4 against ggml's own bytes (the golden file made by ggml
0.20.2's C library) and an independent numpy oracle (tests/gguf_oracle.py); the errors.
"""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numba_quant import gguf
from numba_quant._host import tuning as _tuning
from tests import gguf_oracle as oracle
from profiles import GGUF_DEFAULT_TYPES, THOROUGH
from tests.devices import is_device_array
from tests.golden import GoldenFile

MY_TYPES = ("F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS",
            "TQ1_0", "TQ2_0", "MXFP4")
GOLDEN = GoldenFile("ggml_quants.npz")
CASES = [c for c in GOLDEN.cases if c["type"] in MY_TYPES]
# The types of the random comparisons: every one under the thorough profile, else those
# the default run compiles anyway (tests/profiles.py).
RANDOM_TYPES = MY_TYPES if THOROUGH else tuple(t for t in MY_TYPES if t in GGUF_DEFAULT_TYPES)


def _case_arrays(case):
    i = case["id"]
    names = [f"inputs/{i}", f"bytes/{i}", f"dequant/{i}"]
    if case["imatrix"]:
        names.append(f"imatrix/{i}")
    a = GOLDEN.arrays(names)
    return (a[names[0]], a.get(f"imatrix/{i}"), a[names[1]].reshape(case["rows"], -1),
            a[names[2]])


def _same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_golden_covers_every_type():
    assert {c["type"] for c in CASES} == set(MY_TYPES)
    assert len(CASES) == 100


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['id']}-{c['type']}-{c['kind']}"
                         + ("-imatrix" if c["imatrix"] else ""))
def test_golden(case):
    x, imatrix, want, dequant = _case_arrays(case)
    got = gguf.quantize(x, case["type"], imatrix=imatrix)
    assert got.shape == want.shape == (case["rows"], case["row_size"])
    assert np.array_equal(got, want)
    assert _same_bits(gguf.dequantize(want, case["type"]), dequant)


@pytest.mark.parametrize("case", CASES[::3], ids=lambda c: c["id"])
def test_oracle_reproduces_golden(case):
    # The oracle that the random tests below trust agrees with ggml on its own cases.
    x, imatrix, want, dequant = _case_arrays(case)
    assert np.array_equal(oracle.quantize(case["type"], x, imatrix), want)
    assert _same_bits(oracle.dequantize(case["type"], want, x.shape[1]), dequant)


@st.composite
def _rows(draw):
    name = draw(st.sampled_from(RANDOM_TYPES))
    block = 256 if name in ("IQ4_XS", "TQ1_0", "TQ2_0") else 32
    rows = draw(st.integers(1, 3))
    n = block * draw(st.integers(1, 2 if block == 256 else 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "scaled", "positive", "sparse", "steps"]))
    x = rng.standard_normal((rows, n))
    if kind == "scaled":
        x *= 10.0 ** rng.uniform(-20, 3, (rows, n // 32, 1)).repeat(32, 1).reshape(rows, n)
    elif kind == "positive":
        x = np.abs(x) + 0.5
    elif kind == "sparse":
        x *= rng.random((rows, n)) < 0.3
    elif kind == "steps":
        x = np.round(x * 8) / 8
    imatrix = None
    if draw(st.booleans()):
        imatrix = rng.lognormal(0, 1.5, n).astype(np.float32)
        imatrix[rng.random(n) < 0.05] = 0
    return name, x.astype(np.float32), imatrix


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows())
def test_random_rows_match_oracle(case):
    name, x, imatrix = case
    got = gguf.quantize(x, name, imatrix=imatrix)
    assert np.array_equal(got, oracle.quantize(name, x, imatrix))
    assert _same_bits(gguf.dequantize(got, name), oracle.dequantize(name, got, x.shape[1]))


def _signed_zero_and_tie_blocks():
    # Blocks of 32 where ggml's running searches decide by the order of the values:
    # zeros of both signs (the scale and minimum keep the first zero's sign, +0 for a
    # block of -0s) and magnitudes tied between a positive and a negative value.
    blocks = []
    for first, second in ((-0.0, 0.0), (0.0, -0.0)):
        zeros = np.full(32, second)
        zeros[::2] = first
        blocks.append(zeros)
        above = np.linspace(0.25, 3.0, 32)
        above[3], above[7] = first, second
        blocks.append(above)
        tie = np.linspace(-0.5, 0.5, 32)
        tie[4], tie[9] = 2.5 * np.copysign(1, first), 2.5 * np.copysign(1, second)
        blocks.append(tie)
    blocks.append(np.full(32, -0.0))
    lone = np.full(32, -0.0)
    lone[17] = -1.5
    blocks.append(lone)
    row = np.concatenate(blocks)                      # 8 blocks: 256 values
    return np.stack([row, row[::-1].copy()]).astype(np.float32)


@pytest.mark.parametrize("name", RANDOM_TYPES)
def test_signed_zeros_and_ties_match_oracle(name):
    x = _signed_zero_and_tie_blocks()
    for imatrix in (None, np.linspace(0.5, 2.0, 256, dtype=np.float32)):
        got = gguf.quantize(x, name, imatrix=imatrix)
        assert np.array_equal(got, oracle.quantize(name, x, imatrix))


# --------------------------------------------------------------------------- inputs
def test_other_float_dtypes_and_shapes(monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 64)).astype(np.float32)
    want = oracle.quantize("Q5_1", x.reshape(6, 64))
    got = gguf.quantize(x, "Q5_1")
    assert got.shape == (2, 3, 48)
    assert np.array_equal(got.reshape(6, 48), want)
    # several conversion chunks, float64 / float16 / bfloat16 converted as float32
    monkeypatch.setattr(_tuning, "WIDEN_CHUNK", 64)
    for dtype in (np.float64, np.float16, ml_dtypes.bfloat16):
        xd = x.astype(dtype)
        ref = oracle.quantize("Q5_1", xd.astype(np.float32).reshape(6, 64))
        assert np.array_equal(gguf.quantize(xd, "Q5_1").reshape(6, 48), ref)
    # a strided float32 view
    assert np.array_equal(gguf.quantize(x[:, ::2], "Q5_1").reshape(-1, 48),
                          oracle.quantize("Q5_1", x[:, ::2].reshape(-1, 64)))
    back = gguf.dequantize(got, "Q5_1")
    assert back.shape == (2, 3, 64) and back.dtype == np.float32


def test_qtype_spellings_and_row_size():
    x = np.ones((1, 256), np.float32)
    ref = gguf.quantize(x, "IQ4_NL")
    assert np.array_equal(gguf.quantize(x, "iq4_nl"), ref)
    assert np.array_equal(gguf.quantize(x, 20), ref)
    assert np.array_equal(gguf.quantize(x, np.int32(20)), ref)
    assert gguf.row_size("TQ1_0", 512) == 108
    assert gguf.quantize(np.zeros((0, 32), np.float32), "Q8_0").shape == (0, 34)


def test_imatrix_ignored_where_ggml_ignores_it():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 256)).astype(np.float32)
    w = rng.random(256).astype(np.float32)
    for name in ("F16", "BF16", "Q8_0", "TQ1_0", "TQ2_0", "MXFP4"):
        if not THOROUGH and name not in GGUF_DEFAULT_TYPES:
            continue  # (each type's kernels compile on first use)
        assert np.array_equal(gguf.quantize(x, name, imatrix=w), gguf.quantize(x, name))
    assert not np.array_equal(gguf.quantize(x, "Q4_0", imatrix=w), gguf.quantize(x, "Q4_0"))


def test_out_is_written_and_returned():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 64)).astype(np.float32)
    out = np.full((2, 3, 48), 0xAB, np.uint8)
    got = gguf.quantize(x, "Q5_1", out=out)
    assert got is out
    assert np.array_equal(out.reshape(6, 48), oracle.quantize("Q5_1", x.reshape(6, 64)))
    values = np.full((2, 3, 64), np.nan, np.float32)
    assert gguf.dequantize(out, "Q5_1", out=values) is values
    assert _same_bits(values, gguf.dequantize(out, "Q5_1"))
    with pytest.raises(ValueError, match=r"out has shape \(2, 3, 40\); expected \(2, 3, 48\)"):
        gguf.quantize(x, "Q5_1", out=np.empty((2, 3, 40), np.uint8))
    with pytest.raises(TypeError, match="out has dtype int8; expected uint8"):
        gguf.quantize(x, "Q5_1", out=np.empty((2, 3, 48), np.int8))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        gguf.quantize(x, "Q5_1", out=np.empty((2, 3, 96), np.uint8)[..., ::2])
    with pytest.raises(ValueError, match="out is read-only"):
        readonly = np.empty((2, 3, 48), np.uint8)
        readonly.flags.writeable = False
        gguf.quantize(x, "Q5_1", out=readonly)


# --------------------------------------------------------------------------- errors
def test_row_length_not_a_multiple_of_the_block():
    with pytest.raises(ValueError, match=r"n_per_row = 48.*Q4_0's block size 32"):
        gguf.quantize(np.zeros((2, 48), np.float32), "Q4_0")
    with pytest.raises(ValueError, match=r"n_per_row = 64.*IQ4_XS's block size 256"):
        gguf.quantize(np.zeros((2, 64), np.float32), "IQ4_XS")


def _from_bits(bits):
    return np.array([bits], np.uint32).view(np.float32)[0]


# NaNs with every significand bit set too: rounding such a pattern's significand carries
# out of it.
@pytest.mark.parametrize("bad", [np.nan, -np.nan, np.inf, -np.inf, _from_bits(0x7FFFFFFF),
                                 _from_bits(0xFFFFFFFF)])
def test_nonfinite_names_the_first_bad_row(bad, monkeypatch):
    x = np.zeros((5, 64), np.float32)
    x[3, 7] = bad
    x[4, 0] = bad
    # (F16 and BF16 convert first and look at the input when the output shows a bad
    # value, the legacy types and Q8_0 find it in the blocks' extremes: still named as
    # non-finite, not as out of range)
    names = ("Q5_1", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0")
    for name in [t for t in names if THOROUGH or t in GGUF_DEFAULT_TYPES]:
        with pytest.raises(ValueError, match=r"row \[3\] holds NaN or infinite"):
            gguf.quantize(x, name)
    monkeypatch.setattr(_tuning, "WIDEN_CHUNK", 64)  # one row per chunk
    with pytest.raises(ValueError, match=r"row \[3, 0\] holds NaN or infinite"):
        gguf.quantize(x.reshape(5, 1, 64).astype(np.float64), "Q5_1")


def test_scale_overflow_is_refused():
    x = np.zeros((3, 32), np.float32)
    x[2, 5] = 1e6  # Q4_0: d = 1e6 / -8 beyond float16's 65504; ggml stores -inf
    with pytest.raises(ValueError, match=r"row \[2\]: a block scale overflows Q4_0"):
        gguf.quantize(x, "Q4_0")
    with pytest.raises(ValueError, match=r"row \[0\]: a value overflows F16"):
        gguf.quantize(np.full((1, 4), 70000.0, np.float32), "F16")
    with pytest.raises(ValueError, match="overflows BF16"):
        gguf.quantize(np.full((1, 4), 3.4e38, np.float32), "BF16")
    # just inside the range is fine: 65504 * 8
    ok = gguf.quantize(np.full((1, 32), -65504.0 * 8, np.float32), "Q4_0")
    assert np.isfinite(gguf.dequantize(ok, "Q4_0")).all()


def test_bad_imatrix():
    x = np.ones((1, 64), np.float32)
    with pytest.raises(ValueError, match=r"imatrix: expected shape \(64,\)"):
        gguf.quantize(x, "Q4_0", imatrix=np.ones(32, np.float32))
    with pytest.raises(ValueError, match=r"non-negative; imatrix\[3\] = -1"):
        gguf.quantize(x, "Q4_0", imatrix=np.where(np.arange(64) == 3, -1, 1).astype(np.float32))
    with pytest.raises(ValueError, match=r"finite; imatrix\[0\] = nan"):
        gguf.quantize(x, "Q4_0", imatrix=np.full(64, np.nan, np.float32))
    with pytest.raises(TypeError, match="imatrix: expected a float array"):
        gguf.quantize(x, "Q4_0", imatrix=np.ones(64, np.int32))


def test_bad_types_and_data():
    with pytest.raises(ValueError, match="unknown GGUF type 'Q9_0'; known types: F16"):
        gguf.quantize(np.ones((1, 32), np.float32), "Q9_0")
    with pytest.raises(ValueError, match=r"GGUF type id 99 is not supported"):
        gguf.quantize(np.ones((1, 32), np.float32), 99)
    with pytest.raises(TypeError, match="x: expected float32, float16, bfloat16 or float64"):
        gguf.quantize(np.ones((1, 32), np.int32), "Q8_0")
    with pytest.raises(TypeError, match="expected a numpy array"):
        gguf.quantize([[1.0] * 32], "Q8_0")
    with pytest.raises(ValueError, match=r"data: the last dimension \(35 bytes\).*34 bytes"):
        gguf.dequantize(np.zeros((2, 35), np.uint8), "Q8_0")
    with pytest.raises(TypeError, match="data: expected uint8 bytes"):
        gguf.dequantize(np.zeros((2, 34), np.int8), "Q8_0")


# --------------------------------------------------------------------------- GPU
# The CUDA kernels (one thread per run of blocks, the same row functions), in the simulator here;
# the default run keeps the default types' cases (tests/profiles.py).
@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['id']}-{c['type']}-{c['kind']}"
                         + ("-imatrix" if c["imatrix"] else ""))
def test_golden_gpu(case):
    from numba import cuda
    x, imatrix, want, dequant = _case_arrays(case)
    got = gguf.quantize(cuda.to_device(x), case["type"],
                        imatrix=None if imatrix is None else cuda.to_device(imatrix))
    assert is_device_array(got), type(got)
    assert np.array_equal(got.copy_to_host(), want)
    back = gguf.dequantize(cuda.to_device(want), case["type"])
    assert is_device_array(back), type(back)
    assert _same_bits(back.copy_to_host(), dequant)


@pytest.mark.gpu
def test_gpu_other_dtypes_shapes_and_chunks(monkeypatch):
    """float16, float64 and bfloat16 device arrays converted on the device a chunk of rows
    at a time; 3-D and strided device arrays; the oracle's bytes."""
    from numba import cuda
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 64)).astype(np.float32)
    want = oracle.quantize("Q5_1", x.reshape(6, 64))
    got = gguf.quantize(cuda.to_device(x), "Q5_1")
    assert got.shape == (2, 3, 48)
    assert np.array_equal(got.copy_to_host().reshape(6, 48), want)
    monkeypatch.setattr(_tuning, "DEVICE_WIDEN_CHUNK", 128)  # two rows per chunk
    for dtype in (np.float64, np.float16, ml_dtypes.bfloat16):
        xd = x.astype(dtype)
        ref = oracle.quantize("Q5_1", xd.astype(np.float32).reshape(6, 64))
        got = gguf.quantize(cuda.to_device(xd), "Q5_1").copy_to_host()
        assert np.array_equal(got.reshape(6, 48), ref), dtype
    out = cuda.device_array((2, 3, 48), np.uint8)
    assert gguf.quantize(cuda.to_device(x), "Q5_1", out=out) is out
    assert np.array_equal(out.copy_to_host().reshape(6, 48), want)
    values = cuda.device_array((2, 3, 64), np.float32)
    assert gguf.dequantize(out, "Q5_1", out=values) is values
    assert _same_bits(values.copy_to_host(), gguf.dequantize(want, "Q5_1").reshape(2, 3, 64))
    with pytest.raises(ValueError, match="out must be on the same device"):
        gguf.quantize(cuda.to_device(x), "Q5_1", out=np.empty((2, 3, 48), np.uint8))
    strided = cuda.to_device(x)[:, ::2]
    assert np.array_equal(gguf.quantize(strided, "Q5_1").copy_to_host().reshape(-1, 48),
                          oracle.quantize("Q5_1", x[:, ::2].reshape(-1, 64)))
    assert gguf.quantize(cuda.to_device(np.zeros((0, 32), np.float32)), "Q8_0").shape == (0, 34)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["Q4_0", "Q5_1", "IQ4_NL", "F16"])
def test_gpu_one_block_per_thread(name, monkeypatch):
    """With one block per thread (F16: 32 values), every run boundary inside a row: the
    CPU's bytes and values, with and without an importance matrix (Q4_0 and Q5_1 with
    one read the whole row: one thread per row)."""
    from numba import cuda
    monkeypatch.setattr(_tuning, "GGUF_GPU_TASK_VALUES", 32)
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((3, 160)) * [[1.0], [1e-3], [40.0]]).astype(np.float32)
    w = rng.random(160).astype(np.float32) + 0.1
    for imatrix in (None, w):
        want = gguf.quantize(x, name, imatrix=imatrix)
        got = gguf.quantize(cuda.to_device(x), name,
                            imatrix=None if imatrix is None else cuda.to_device(imatrix))
        assert np.array_equal(got.copy_to_host(), want)
        assert _same_bits(gguf.dequantize(cuda.to_device(want), name).copy_to_host(),
                          gguf.dequantize(want, name))


@pytest.mark.gpu
def test_gpu_errors_name_the_row():
    from numba import cuda
    x = np.zeros((5, 64), np.float32)
    x[3, 7] = np.nan
    with pytest.raises(ValueError, match=r"row \[3\] holds NaN or infinite"):
        gguf.quantize(cuda.to_device(x), "Q5_1")
    big = np.zeros((3, 32), np.float32)
    big[2, 5] = 1e6
    with pytest.raises(ValueError, match=r"row \[2\]: a block scale overflows Q4_0"):
        gguf.quantize(cuda.to_device(big), "Q4_0")
    with pytest.raises(ValueError, match="overflows BF16"):
        gguf.quantize(cuda.to_device(np.full((1, 4), 3.4e38, np.float32)), "BF16")
    # A NaN in one run of blocks and an overflowing scale in another: the NaN is named,
    # as on the CPU (which does not quantize such a row at all).
    both = np.zeros((2, 512), np.float32)
    both[1, 3] = np.nan
    both[1, 300] = 1e6
    with pytest.raises(ValueError, match=r"row \[1\] holds NaN or infinite"):
        gguf.quantize(cuda.to_device(both), "Q4_0")
    with pytest.raises(ValueError, match="same device"):
        gguf.quantize(np.ones((1, 32), np.float32), "Q4_0",
                      imatrix=cuda.to_device(np.ones(32, np.float32)))
    with pytest.raises(ValueError, match=r"data: the last dimension \(35 bytes\)"):
        gguf.dequantize(cuda.to_device(np.zeros((2, 35), np.uint8)), "Q8_0")


# --------------------------------------------------------------------------- Dask
def test_dask_arrays_by_rows():
    da = pytest.importorskip("dask.array")
    import dask
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 6, 64)).astype(np.float32)
    imatrix = rng.lognormal(0, 1, 64).astype(np.float32)
    dx = da.from_array(x, chunks=(3, 4, 32))      # the rows split along their length too
    for name, qw in (("Q8_0", None), ("Q4_0", imatrix)):
        lazy = gguf.quantize(dx, name, imatrix=qw)
        assert isinstance(lazy, da.Array) and lazy.dtype == np.uint8
        want = oracle.quantize(name, x.reshape(24, 64), qw).reshape(4, 6, -1)
        got = lazy.compute(scheduler="synchronous")
        assert np.array_equal(got, want)
        back = gguf.dequantize(da.from_array(got, chunks=(1, 5, -1)), name)
        assert _same_bits(back.compute(scheduler="synchronous"),
                          oracle.dequantize(name, want.reshape(24, -1), 64).reshape(4, 6, 64))
    bad = x.copy()
    bad[3, 5, 7] = np.nan
    lazy = gguf.quantize(da.from_array(bad, chunks=(2, 3, 64)), "Q8_0")   # no error yet
    with pytest.raises(ValueError, match=r"row \[3, 5\] holds NaN"):
        dask.compute(lazy, scheduler="synchronous")
    with pytest.raises(ValueError, match="multiple of"):
        gguf.quantize(da.ones((2, 48), chunks=1, dtype=np.float32), "Q8_0")
    with pytest.raises(ValueError, match="34 bytes"):
        gguf.dequantize(da.ones((2, 50), chunks=1, dtype=np.uint8), "Q8_0")
