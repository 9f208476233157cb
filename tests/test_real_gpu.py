"""Checks that need a real GPU: arrays large enough for many blocks and the full launch
configuration (the simulator runs only tiny grids). Skipped in the CUDA simulator."""
import numpy as np
import pytest

import oracle
from devices import Device
from golden import assert_same

nq = pytest.importorskip("numba_quant")

pytestmark = [pytest.mark.real_gpu, pytest.mark.gpu]

CONFIGS = [("google", 8, "symmetric"), ("google", 4, "affine"), ("cambricon", 8, "symmetric"),
           ("google", 16, "affine")]


def _big(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * np.exp(rng.uniform(-3, 3, size=shape[:1]).reshape(
        (-1,) + (1,) * (len(shape) - 1)))
    return x.astype(dtype)


# (262147, 4): rows of 4, one thread per channel; (70001, 64) along axis 0: more channels
# than the kept key array holds.
@pytest.mark.parametrize("shape", [(1024, 1024), (3, 200001), (100003, 7), (64, 3, 3, 3, 32),
                                   (262147, 4), (70001, 64)])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_large_arrays_match_oracle(shape, dtype):
    gpu = Device("gpu")
    x = _big(shape, dtype)
    xd = gpu.put(x)
    for formula, bit, scheme in CONFIGS:
        for per_layer, axis in [(True, 0)] + [(False, a) for a in range(-len(shape), 0)]:
            if formula == "cambricon" and not per_layer and axis != -len(shape):
                continue
            got = [gpu.get(a) for a in nq.min_max_observer(xd, formula, bit, scheme, per_layer,
                                                           axis=axis)]
            exp = oracle.min_max_observer(x, formula, bit, scheme, per_layer, axis=axis)
            assert_same(got[0], exp[0], f"{formula} {scheme} {per_layer} {axis} scale")
            assert_same(got[1], exp[1], "zero_point")
            s, zp = exp
            f = gpu.get(nq.fake_quantization(xd, gpu.put(s), gpu.put(zp), formula, bit, scheme,
                                             axis=axis))
            assert_same(f, oracle.fake_quantization(x, s, zp, formula, bit, scheme, axis=axis),
                        "fake")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_nonfinite(dtype):
    gpu = Device("gpu")
    x = _big((512, 2048), dtype, seed=1)
    rng = np.random.default_rng(2)
    idx = rng.choice(x.size, 12345, replace=False)
    x.reshape(-1)[idx[:5000]] = np.nan
    x.reshape(-1)[idx[5000:9000]] = np.inf
    x.reshape(-1)[idx[9000:]] = -np.inf
    with pytest.raises(ValueError, match=r"\b12345\b"):
        nq.min_max_observer(gpu.put(x))
    for per_layer in (True, False):
        got = [gpu.get(a) for a in nq.min_max_observer(gpu.put(x), "google", 8, "affine",
                                                       per_layer, nonfinite="omit")]
        exp = oracle.min_max_observer(x, "google", 8, "affine", per_layer, nonfinite="omit")
        assert_same(got[0], exp[0], "scale")
        assert_same(got[1], exp[1], "zero_point")


def test_large_moving_average():
    gpu = Device("gpu")
    xs = [_big((256, 4096), np.float32, seed=s) for s in range(4)]
    for per_channel in (False, True):
        n = 256 if per_channel else 1
        mm, mn = gpu.put(np.zeros(n, np.float32)), gpu.put(np.zeros(n, np.float32))
        emm, emn = np.zeros(n, np.float32), np.zeros(n, np.float32)
        for step, x in enumerate(xs):
            got = nq.moving_average_min_max_observer(gpu.put(x), step, mm, mn, True, 10,
                                                     "google", 8, "affine", 0.9)
            exp = oracle.moving_average_min_max_observer(x, step, emm, emn, True, 10, "google",
                                                         8, "affine", 0.9)
            emm, emn = exp[2], exp[3]
            assert_same(gpu.get(got[0]), exp[0], f"step {step} scale")
            assert_same(gpu.get(got[1]), exp[1], f"step {step} zero_point")
            assert_same(gpu.get(mm), emm, f"step {step} moving_max")
            assert_same(gpu.get(mn), emn, f"step {step} moving_min")
