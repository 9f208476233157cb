"""The GGUF export's single pass (``numba_quant._cpu.gguf_export``): rows as the file
stores them (F32, F16, BF16) to ggml's bytes and each row's error sums, against the numpy
oracle of tests/gguf_oracle.py (bytes, decoded values) and numpy's float64 sums; the
chunked route's sums (``error_rows``) equal the single pass's bit for bit; bad rows are
named as ``gguf.quantize`` names them, in whichever range of rows they fall.

The default profile runs the types the default profile compiles anyway (and Q5_0, the
export's fallback type); the thorough profile all of them.
"""
import numpy as np
import pytest

import gguf_oracle as oracle
from profiles import GGUF_DEFAULT_TYPES, THOROUGH
from numba_quant import gguf
from numba_quant._cpu import gguf_export, threads
from numba_quant._host import tuning as _tuning

TYPES = [t for t in gguf_export.MEASURED if THOROUGH or t in {*GGUF_DEFAULT_TYPES, "Q5_0"}]
STORED = ("F32", "F16", "BF16")


@pytest.fixture
def several_ranges(monkeypatch):
    """Rows split over several tasks of the pool, as on 2 cores with large tensors."""
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(_tuning, "PARALLEL_THRESHOLD", 0)
    monkeypatch.setattr(_tuning, "MIN_TASK_ELEMENTS", 1)


def _stored_rows(x, stored):
    """``x`` (float32) as a file stores it, and the float32 values that holds."""
    if stored == "F32":
        raw = x.copy()
    elif stored == "F16":
        raw = x.astype(np.float16)
    else:                                   # bfloat16 by truncation of the bits
        raw = (x.view(np.uint32) >> 16).astype(np.uint16)
        return raw, (raw.astype(np.uint32) << 16).view(np.float32)
    return raw, raw.astype(np.float32)


def _run(raw, stored, qtype, imatrix=None):
    rows = raw.shape[0]
    out = np.full((rows, gguf.row_size(qtype, raw.shape[1])), 0xAB, np.uint8)
    sums = np.full((rows, 2), np.nan)
    gguf.quantize_stored(raw, stored, qtype, imatrix, out, sums)
    return out, sums


@pytest.mark.parametrize("stored", STORED)
@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_one_pass_equals_the_oracle(qtype, stored, weighted, several_ranges):
    rng = np.random.default_rng(sum(map(ord, qtype + stored)) + weighted)
    x = (rng.standard_normal((24, 96)) * np.exp(rng.uniform(-4, 2, (24, 1)))).astype(
        np.float32)
    x[3, :32] = 0.0                                    # a zero block
    x[5] = np.float32(0.25) * rng.integers(-8, 8, 96)  # exact quarter steps
    raw, values = _stored_rows(x, stored)
    raw.flags.writeable = False                        # as a memory map of the file
    qw = rng.uniform(0, 2, 96).astype(np.float32) if weighted else None
    out, sums = _run(raw, stored, qtype, qw)
    want = oracle.quantize(qtype, values, qw if qtype in oracle.USES_IMATRIX else None)
    np.testing.assert_array_equal(out, want)
    back = oracle.dequantize(qtype, want, 96).astype(np.float64)
    v = values.astype(np.float64)
    np.testing.assert_allclose(sums[:, 0], (v * v).sum(axis=1), rtol=1e-13)
    np.testing.assert_allclose(sums[:, 1], ((back - v) ** 2).sum(axis=1), rtol=1e-13)
    # The chunked route (other types, the GPU) sums the same way, bit for bit.
    again = np.full_like(sums, np.nan)
    gguf_export.error_rows(values, back.astype(np.float32), again)
    np.testing.assert_array_equal(again, sums)


@pytest.mark.parametrize("stored", ["F32", "F16"])
@pytest.mark.parametrize("weighted", [False, True])
def test_a_bad_row_is_named(stored, weighted, several_ranges):
    qtype = TYPES[-1]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 64)).astype(np.float32)
    x[29, 7] = np.nan                  # in a later range of rows than the first
    raw, _ = _stored_rows(x, stored)
    qw = rng.uniform(0, 1, 64).astype(np.float32) if weighted else None
    assert len(threads.ranges(40, x.size)) > 1
    with pytest.raises(ValueError, match=r"row \[29\] holds NaN or infinite"):
        _run(raw, stored, qtype, qw)


@pytest.mark.parametrize("qtype", TYPES)
def test_a_scale_overflow_is_named(qtype, several_ranges):
    x = np.random.default_rng(4).standard_normal((12, 64)).astype(np.float32)
    x[8, 40] = 1e7                     # a block whose float16 scale is infinite
    x[8, 41] = -1e7
    with pytest.raises(ValueError, match=rf"row \[8\]: a block scale overflows {qtype}"):
        _run(x, "F32", qtype)


def test_the_one_pass_types_are_the_kernels():
    assert set(gguf.ONE_PASS_TYPES) == set(gguf_export.MEASURED)
    with pytest.raises(ValueError, match="Q4_K has no one-pass kernel"):
        _run(np.zeros((1, 256), np.float32), "F32", "Q4_K")


def test_bad_shapes_and_weights():
    x = np.zeros((2, 48), np.float32)
    with pytest.raises(ValueError, match="48"):
        _run(x, "F32", "Q8_0")
    with pytest.raises(ValueError, match="imatrix"):
        _run(np.zeros((2, 64), np.float32), "F32", "Q4_0", -np.ones(64, np.float32))
