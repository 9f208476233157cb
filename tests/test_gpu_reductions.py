"""The GPU reductions: each kernel plan against the oracle, the kept key array, the
status word, and recovery from a reduction cut short."""
import numpy as np
import pytest

import oracle
from numba_quant._host import tuning as _tuning
from devices import Device
from golden import assert_same

nq = pytest.importorskip("numba_quant")
pytestmark = pytest.mark.gpu

# (shape, axis) that send a reduction to each kernel under the simulator's launch sizes
# (16 threads, 2 blocks; with a real GPU's sizes other kernels may run, equally checked).
PLANS = [((3, 40), 0), ((40, 3), 1), ((200, 3), 1), ((2, 40), 1), ((40, 4), 0),
         ((5, 7, 9), 1), ((300,), None)]


def _data(shape, seed, nonfinite=False):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    if nonfinite:
        flat = x.reshape(-1)
        flat[rng.choice(flat.size, max(1, flat.size // 5), replace=False)] = np.nan
        flat[rng.choice(flat.size, max(1, flat.size // 9), replace=False)] = -np.inf
    return x


def _observe(x, axis, scheme, **kw):
    per_layer = axis is None
    return nq.min_max_observer(x, "google", 8, scheme, per_layer, axis=axis or 0, **kw)


@pytest.mark.parametrize("shape, axis", PLANS)
@pytest.mark.parametrize("scheme", ["symmetric", "affine"])
def test_each_plan_matches_oracle(shape, axis, scheme):
    gpu = Device("gpu")
    x = _data(shape, len(shape) + (axis or 0))
    expected = oracle.min_max_observer(x, "google", 8, scheme, axis is None, axis=axis or 0)
    scale, zero_point = (gpu.get(a) for a in _observe(gpu.put(x), axis, scheme))
    assert_same(scale, expected[0], f"{shape} axis {axis} scale")
    assert_same(zero_point, expected[1], f"{shape} axis {axis} zero_point")


def test_plans_cover_every_kernel(monkeypatch):
    from numba_quant._cuda import launch as _cuda_launch
    from numba_quant._host.layout import channel_view
    monkeypatch.setitem(_tuning.LAUNCH, "threads", 16)  # the simulator's sizes, on any device
    monkeypatch.setitem(_tuning.LAUNCH, "max_blocks", 2)
    used = set()
    for shape, axis in PLANS:
        x3 = channel_view(np.empty(shape, np.float32), axis)
        used.add(_cuda_launch.plan_minmax(*x3.shape, x3.strides[2] == 4)[0].py_func.__name__)
    assert used == {"minmax_flat", "minmax_rows", "minmax_cols", "minmax_each"}


@pytest.mark.parametrize("shape, axis", PLANS)
def test_omit_and_raise(shape, axis):
    gpu = Device("gpu")
    x = _data(shape, 7, nonfinite=True)
    if axis is not None:  # every channel keeps a finite value (see test_empty_channel_named)
        np.moveaxis(x, axis, 0)[(slice(None),) + (0,) * (x.ndim - 1)] = 1.5
    with pytest.raises(ValueError, match="non-finite value"):
        _observe(gpu.put(x), axis, "affine")
    finite = np.where(np.isfinite(x), x, np.nan)
    expected = oracle.min_max_observer(finite, "google", 8, "affine", axis is None,
                                       axis=axis or 0, nonfinite="omit")
    got = _observe(gpu.put(x), axis, "affine", nonfinite="omit")
    assert_same(gpu.get(got[0]), expected[0], "omit scale")
    assert_same(gpu.get(got[1]), expected[1], "omit zero_point")


@pytest.mark.parametrize("shape, axis", [((40, 3), 1), ((2, 40), 1), ((3, 40), 0)])
def test_empty_channel_named(shape, axis):
    gpu = Device("gpu")
    x = _data(shape, 3)
    np.moveaxis(x, axis, 0)[1] = np.nan
    with pytest.raises(ValueError, match=r"1 channel\(s\) have no finite value \(channels 1\)"):
        _observe(gpu.put(x), axis, "symmetric", nonfinite="omit")
    # the status word is back to OK for the next call
    x[np.isnan(x)] = 0.5
    expected = oracle.min_max_observer(x, "google", 8, "symmetric", False, axis=axis)
    assert_same(Device("gpu").get(_observe(gpu.put(x), axis, "symmetric")[0]), expected[0],
                "after the error")


def test_more_channels_than_the_kept_keys(monkeypatch):
    import numba_quant._cuda.channels as C
    monkeypatch.setattr(_tuning, "KEPT_KEYS", 2)
    gpu = Device("gpu")
    for shape, axis in [((3, 40), 0), ((40, 3), 1), ((200, 3), 1)]:
        x = _data(shape, 5)
        expected = oracle.min_max_observer(x, "google", 8, "affine", False, axis=axis)
        got = _observe(gpu.put(x), axis, "affine")
        assert_same(gpu.get(got[0]), expected[0], f"{shape} fresh keys scale")
        assert_same(gpu.get(got[1]), expected[1], f"{shape} fresh keys zero_point")


def test_reduction_cut_short_leaves_no_stale_keys(monkeypatch):
    import numba_quant._cuda.channels as C
    gpu = Device("gpu")
    big = _data((40, 3), 11) * 100   # leaves keys wider than the next input's range
    small = _data((40, 3), 12)

    class Interrupted(Exception):
        pass

    class FailingKernel:  # stands in for the settling kernel: raises when launched
        def __getitem__(self, launch_config):
            def launch(*args):
                raise Interrupted("settle_keys launched")
            return launch

    real_settle = C.kernels.settle_keys
    monkeypatch.setattr(C.kernels, "settle_keys", FailingKernel())
    with pytest.raises(Interrupted, match="settle_keys launched"):
        _observe(gpu.put(big), 1, "affine")
    monkeypatch.setattr(C.kernels, "settle_keys", real_settle)
    expected = oracle.min_max_observer(small, "google", 8, "affine", False, axis=1)
    got = _observe(gpu.put(small), 1, "affine")
    assert_same(gpu.get(got[0]), expected[0], "after an interrupted reduction")
