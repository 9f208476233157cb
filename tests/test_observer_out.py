"""``min_max_observer(..., out=(scale, zero_point))``: the results land in the caller's
arrays, which are returned, with the oracle's bits (docs/semantics.md §3), on the CPU
path and the GPU path; wrong ``out`` arguments raise."""
import numpy as np
import pytest

import oracle
from golden import assert_same
from numba_quant._host import tuning as _tuning

nq = pytest.importorskip("numba_quant")


def _data(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 3).astype(np.float32)


def _observe_into(device, x, shape, **kw):
    targets = (device.empty(shape, np.float32), device.empty(shape, np.float32))
    got = nq.min_max_observer(device.put(x), out=targets, **kw)
    assert got[0] is targets[0] and got[1] is targets[1]
    return device.get(got[0]), device.get(got[1])


# (shape, per layer, axis, scheme): per layer, per channel, and many short rows (on the
# CPU the short-run kernel, SHORT_RUNS_PERIOD shrunk below, writes into out directly).
CASES = [((3, 5), True, 0, "symmetric"), ((3, 5), False, 1, "affine"),
         ((300, 4), False, 0, "symmetric"), ((300, 4), False, 0, "affine")]


@pytest.mark.parametrize("shape, per_layer, axis, scheme", CASES)
def test_out_matches_oracle(device, monkeypatch, shape, per_layer, axis, scheme):
    monkeypatch.setattr(_tuning, "SHORT_RUNS_PERIOD", 0)
    monkeypatch.setattr(_tuning, "SMALL", 0)
    x = _data(shape)
    n = 1 if per_layer else shape[axis]
    got = _observe_into(device, x, (n,), quantization_scheme=scheme,
                        per_layer_quantization=per_layer, axis=axis)
    expected = oracle.min_max_observer(x, "google", 8, scheme, per_layer, axis=axis)
    assert_same(got[0], expected[0], "scale")
    assert_same(got[1], expected[1], "zero_point")


def test_out_with_block_size(device):
    """Blocks of one row each are the per-channel results along axis 0."""
    x = _data((6, 5))
    got = _observe_into(device, x, (6, 1), block_size=(1, 5))
    expected = oracle.min_max_observer(x, "google", 8, "symmetric", False, axis=0)
    assert_same(got[0], expected[0].reshape(6, 1), "scale")
    assert_same(got[1], expected[1].reshape(6, 1), "zero_point")


def test_out_strided_cpu(monkeypatch):
    """Strided numpy outputs (which the kernels do not write directly) get the values."""
    monkeypatch.setattr(_tuning, "SHORT_RUNS_PERIOD", 0)
    monkeypatch.setattr(_tuning, "SMALL", 0)
    x = _data((300, 4))
    scale = np.zeros(600, np.float32)[::2]
    zero_point = np.zeros(600, np.float32)[1::2]
    nq.min_max_observer(x, per_layer_quantization=False, out=(scale, zero_point))
    expected = oracle.min_max_observer(x, "google", 8, "symmetric", False, axis=0)
    assert_same(scale, expected[0], "scale")
    assert_same(zero_point, expected[1], "zero_point")


def test_out_errors(device):
    x = device.put(_data((4, 3)))
    good = device.empty(4, np.float32)
    other = device.empty(4, np.float32)
    call = lambda out: nq.min_max_observer(x, per_layer_quantization=False, out=out)  # noqa: E731
    with pytest.raises(TypeError, match="out must be a pair of arrays"):
        call(good)
    with pytest.raises(TypeError, match="tuple of length 3"):
        call((good, other, other))
    with pytest.raises(ValueError, match="two different arrays"):
        call((good, good))
    with pytest.raises(ValueError, match=r"out\[1\] has shape \(3,\); expected \(4,\)"):
        call((good, device.empty(3, np.float32)))
    with pytest.raises(TypeError, match=r"out\[0\] has dtype float64; expected float32"):
        call((device.empty(4, np.float64), other))
    with pytest.raises(ValueError, match="same device as the input"):
        call((good, _other_side(device)))
    both = device.empty(8, np.float32)
    with pytest.raises(ValueError, match="must not share memory"):
        call((both[:4], both[2:6]))


def _other_side(device):
    if device.gpu:
        return np.empty(4, np.float32)
    from numba import cuda
    return cuda.to_device(np.empty(4, np.float32))


def test_out_read_only_cpu():
    x = _data((4, 3))
    frozen = np.empty(4, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        nq.min_max_observer(x, per_layer_quantization=False,
                            out=(np.empty(4, np.float32), frozen))


def test_out_dask():
    da = pytest.importorskip("dask.array")
    x = da.from_array(_data((4, 3)), chunks=2)
    with pytest.raises(TypeError, match="not supported for Dask arrays"):
        nq.min_max_observer(x, out=(np.empty(1, np.float32), np.empty(1, np.float32)))
