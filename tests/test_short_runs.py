"""The CPU reduction for many channels with short contiguous runs (rows of a few
elements, channels last): every run length and block boundary, serial and parallel,
against the oracle."""
import numpy as np
import pytest

import oracle
from numba_quant._host import tuning as _tuning
from golden import assert_same

nq = pytest.importorskip("numba_quant")


@pytest.fixture
def short_runs_everywhere(monkeypatch):
    """Send every contiguous short-run layout to the short-run kernel, however small."""
    import numba_quant._cpu.channels as C
    monkeypatch.setattr(_tuning, "SHORT_RUNS_PERIOD", 0)
    return C


def _data(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * np.exp(rng.uniform(-2, 2, size=shape))
    return x.astype(np.float32)


# (shape, axis): runs of k = 1..9 and 17 elements, one or several rows, channels spanning
# several blocks of the kernel, and sizes on both sides of the parallel threshold.
CASES = [((5, 7), 1), ((40, 1), 0), ((3, 4), 0), ((2, 3, 5), 1), ((9000, 2), 0),
         ((3000, 3), 0), ((2, 2500, 4), 1), ((7, 1100, 9), 1), ((600, 17), 0),
         ((4, 20000), 1), ((25000, 4), 0), ((3, 9000, 5), 1), ((70001,), 0)]


@pytest.mark.parametrize("shape, axis", CASES)
@pytest.mark.parametrize("scheme", ["symmetric", "affine"])
def test_matches_oracle(short_runs_everywhere, shape, axis, scheme):
    x = _data(shape, sum(shape))
    got = nq.min_max_observer(x, "google", 8, scheme, False, axis=axis)
    expected = oracle.min_max_observer(x, "google", 8, scheme, False, axis=axis)
    assert_same(got[0], expected[0], f"{shape} axis {axis} scale")
    assert_same(got[1], expected[1], f"{shape} axis {axis} zero_point")


@pytest.mark.parametrize("shape, axis", [((3000, 3), 0), ((4, 20000), 1), ((25000, 4), 0)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, -1, 5003])
def test_nonfinite_anywhere(short_runs_everywhere, shape, axis, bad, where):
    x = _data(shape, 3)
    x.reshape(-1)[where] = bad  # (where < 9000: inside every shape)
    with pytest.raises(ValueError, match="1 non-finite value"):
        nq.min_max_observer(x, per_layer_quantization=False, axis=axis)
    # "omit" skips it (the general kernel's second pass)
    got = nq.min_max_observer(x, "google", 8, "affine", False, axis=axis, nonfinite="omit")
    expected = oracle.min_max_observer(x, "google", 8, "affine", False, axis=axis,
                                       nonfinite="omit")
    assert_same(got[0], expected[0], "omit scale")
    assert_same(got[1], expected[1], "omit zero_point")


def test_default_threshold_routes_large_layouts():
    import numba_quant._cpu.channels as C
    x = _data((30000, 4), 5)   # 30,000 channels of 4: beyond the periodic kernel
    assert x.size > _tuning.SHORT_RUNS_PERIOD
    got = nq.min_max_observer(x, "google", 8, "affine", False, axis=0)
    expected = oracle.min_max_observer(x, "google", 8, "affine", False, axis=0)
    assert_same(got[0], expected[0], "scale")
    assert_same(got[1], expected[1], "zero_point")
