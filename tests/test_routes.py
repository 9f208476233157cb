"""Every CPU kernel route, reached on small inputs with the shrunk thresholds.

With ``routes.SHRUNK`` in ``numba_quant._host.tuning`` the calls below send inputs of a few
dozen elements down every kernel that the host backend can call (serial and parallel),
for each compute dtype of ``routes.SHRUNK_DTYPES`` (float32; float64 too in the thorough
profile), every formula and scheme, both non-finite policies and every
element-wise mode; the route recorder of ``conftest.py`` shows which kernel ran.  The
results are checked against the oracle, so a route that gives other values fails here.
(The property, layout, golden and error suites also run with these thresholds; after a
full run ``conftest.pytest_sessionfinish`` checks that they reached every route too.)
"""
import os

import numpy as np
import pytest

import oracle
import routes
from golden import assert_same

nq = pytest.importorskip("numba_quant")

pytestmark = pytest.mark.skipif(
    os.environ.get("NUMBA_DISABLE_JIT", "") not in ("", "0"),
    reason="with the JIT disabled the kernels are plain functions: no routes to record")

CONFIGS = (("google", 8, "symmetric"), ("google", 5, "affine"), ("cambricon", 6, "symmetric"))

# (shape, axis, layout) -> the route the reduction takes under routes.SHRUNK (serial below
# 16 elements, parallel from 16); the element-wise map of the same array is noted after.
CASES = [
    ((10,), None, "c"),          # per-layer, serial: the one-call route; map by channel
    ((40,), None, "c"),          # per-layer, parallel: by channel; map by channel
    ((5, 2), 1, "c"),            # period 2: periodic lanes, serial; map by outer
    ((20, 2), 1, "c"),           # the same, parallel
    ((1, 3, 3), 1, "c"),         # 3 channels of runs of 3 (period 9 > 8): short runs, serial
    ((4, 12), 1, "c"),           # 12 channels of runs of 1, parallel
    ((2, 4), 0, "c"),            # 2 channels of 4 (period 8): by channel, serial
    ((3, 5), 0, "fortran"),      # viewed as (5, 3, 1), C-contiguous: periodic, serial
    ((2, 3, 2), 1, "strided"),   # not contiguous: by channel, serial
    ((2, 20), 0, "c"),           # inner runs of 20: by channel, parallel; map by channel
    ((6, 4, 2), 1, "strided"),   # inner runs of 2, strided: by channel; map by outer
    ((2, 5), None, "strided"),   # per-layer, not contiguous: the one-call routes
]


def _layout(x, layout):
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "strided":
        wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    return x


def _data(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 3).astype(dtype)


@pytest.fixture
def shrunk(monkeypatch, route_recorder):
    from numba_quant._host import tuning as _tuning
    for name, value in routes.SHRUNK.items():
        monkeypatch.setattr(_tuning, name, value)
    monkeypatch.setattr(route_recorder, "profile", "route-test")
    return route_recorder


def _observe_both_policies(x, ref, formula, bit, scheme, per_layer, axis):
    got = nq.min_max_observer(x, formula, bit, scheme, per_layer, axis=axis)
    exp = oracle.min_max_observer(ref, formula, bit, scheme, per_layer, axis=axis)
    assert_same(got[0], exp[0], "scale")
    assert_same(got[1], exp[1], "zero_point")
    # One NaN: "raise" counts it, "omit" runs the reduction's second, skipping pass.
    bad = x.copy(order="K")
    bad[np.unravel_index(1, bad.shape)] = np.nan
    if not (x.flags.c_contiguous or x.flags.f_contiguous):
        bad = _layout(bad, "strided")   # keep the layout (and so the route) of x
    with pytest.raises(ValueError, match=r"\b1 non-finite value"):
        nq.min_max_observer(bad, formula, bit, scheme, per_layer, axis=axis)
    got = nq.min_max_observer(bad, formula, bit, scheme, per_layer, axis=axis,
                              nonfinite="omit")
    exp = oracle.min_max_observer(np.array(bad), formula, bit, scheme, per_layer, axis=axis,
                                  nonfinite="omit")
    assert_same(got[0], exp[0], "omit scale")
    assert_same(got[1], exp[1], "omit zero_point")
    return exp


def _maps(x, ref, s, zp, formula, bit, scheme, axis):
    for fn, ofn in ((nq.fake_quantization, oracle.fake_quantization),
                    (nq.quantization, oracle.quantization), (nq.quantize, oracle.quantize)):
        assert_same(fn(x, s, zp, formula, bit, scheme, axis=axis),
                    ofn(ref, s, zp, formula, bit, scheme, axis=axis), fn.__name__)
    q = oracle.quantize(ref, s, zp, formula, bit, scheme, axis=axis)
    expected = oracle.dequantize(q, s, zp, formula, bit, scheme, axis=axis)
    assert_same(nq.dequantize(q, s, zp, formula, bit, scheme, axis=axis), expected,
                "dequantize")
    # Codes laid out like x (contiguous codes take the flat and row routes).
    out = _layout(np.zeros_like(expected), "strided")
    nq.dequantize(_layout(q, "strided"), s, zp, formula, bit, scheme, axis=axis, out=out)
    assert_same(out, expected, "dequantize of strided codes into a strided out")
    bad = x.copy(order="K")
    bad[np.unravel_index(0, bad.shape)] = np.nan
    with pytest.raises(ValueError, match=r"\b1 NaN value"):
        nq.quantize(bad, s, zp, formula, bit, scheme, axis=axis)


# One test per dtype: their kernels are separate compiled signatures, which two pytest-xdist
# workers compile at the same time (conftest.py runs these two first, in units of their own).
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_every_route_reached(shrunk, dtype):
    _run_cases(dtype)
    missing = routes.missing(shrunk.keys("route-test"), dtypes=(np.dtype(dtype).name,))
    assert missing == [], f"kernel routes not reached: {missing}"
    assert len(routes.all_routes()) >= 15   # the recorder found the kernels at all


def _run_cases(dtype):
    for k, (shape, axis, layout) in enumerate(CASES):
        ref = _data(shape, dtype, k)
        x = _layout(ref, layout)
        per_layer = axis is None
        for formula, bit, scheme in CONFIGS:
            s, zp = _observe_both_policies(x, ref, formula, bit, scheme, per_layer, axis or 0)
            _maps(x, ref, s, zp, formula, bit, scheme, None if per_layer else axis)
            n = 1 if per_layer else shape[axis]
            for nonfinite in ("raise", "omit"):
                state = [np.zeros(n, dtype), np.zeros(n, dtype)]
                got = nq.moving_average_min_max_observer(
                    x, 0, state[0], state[1], True, 5, formula, bit, scheme, 0.9,
                    axis=axis or 0, nonfinite=nonfinite)
                exp = oracle.moving_average_min_max_observer(
                    ref, 0, np.zeros(n, dtype), np.zeros(n, dtype), True, 5, formula, bit,
                    scheme, 0.9, axis=axis or 0, nonfinite=nonfinite)
                assert_same(got[0], exp[0], "moving scale")
                assert_same(state[0], exp[2], "moving_max")

