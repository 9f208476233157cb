"""The oracle itself reproduces every golden case (this is what makes it an oracle)."""
import numpy as np
import pytest

import golden
import oracle
from golden import assert_same


def _id(c):
    return c["id"]


@pytest.mark.parametrize("case", golden.MIN_MAX, ids=_id)
def test_oracle_min_max_observer(case):
    x = golden.inp(case)
    assert x.dtype == np.dtype(case["dtype"])
    scale, zp = oracle.min_max_observer(x, case["formula"], case["bit"], case["scheme"],
                                        case["per_layer"])
    assert_same(scale, golden.get(case, "scale"), "scale")
    assert_same(zp, golden.get(case, "zero_point"), "zero_point")
    for suffix, sname in (("", "scale_used"), ("_tight", "scale_tight_used")):
        s = golden.get(case, sname)
        if s is None:
            continue
        args = (x, s, golden.get(case, "zero_point"), case["formula"], case["bit"],
                case["scheme"])
        assert_same(oracle.fake_quantization(*args), golden.get(case, "fake" + suffix),
                    "fake" + suffix)
        assert_same(oracle.quantization(*args), golden.get(case, "quant" + suffix),
                    "quant" + suffix)


@pytest.mark.parametrize("case", golden.USER_SHIFT, ids=_id)
def test_oracle_cambricon_user_shift(case):
    x = golden.inp(case)
    shift = golden.get(case, "scale")
    assert shift != np.trunc(shift)  # a fractional shift: truncation toward zero matters
    args = (x, shift, np.zeros_like(shift), "cambricon", case["bit"], "symmetric")
    assert_same(oracle.fake_quantization(*args), golden.get(case, "fake"), "fake")
    assert_same(oracle.quantization(*args), golden.get(case, "quant"), "quant")


@pytest.mark.parametrize("case", golden.MOVING, ids=_id)
def test_oracle_moving_average(case):
    xs = golden.inp(case)
    T = np.dtype(case["dtype"])
    assert xs.dtype == T
    mmax = np.zeros(1, T)
    mmin = np.zeros(1, T)
    for i, (step, training) in enumerate(zip(case["steps"], case["training"])):
        scale, zp, mmax, mmin = oracle.moving_average_min_max_observer(
            xs[i], step, mmax, mmin, training, case["stop_update_after_iters"],
            case["formula"], case["bit"], case["scheme"], case["momentum"])
        for name, val in (("scale", scale), ("zero_point", zp), ("moving_max", mmax),
                          ("moving_min", mmin)):
            assert_same(val, golden.get(case, name)[i:i + 1], f"step {i} {name}")


def test_golden_file_covers_the_contract():
    """The golden file exercises the cases the oracle's exactness rules are about."""
    formulas = {(c["formula"], c["scheme"], c["per_layer"], c["dtype"]) for c in golden.MIN_MAX}
    for dt in ("float32", "float64"):
        for key in (("google", "symmetric", True), ("google", "symmetric", False),
                    ("google", "affine", True), ("google", "affine", False),
                    ("cambricon", "symmetric", True)):
            assert key + (dt,) in formulas
    # 7.9999995f (just below 8) must give floor(log2) == 3 in float32: log2f rounds to 3.
    assert oracle.log2_floor(np.float32(7.9999995)) == np.float32(3)
    assert oracle.log2_floor(np.float64(np.float32(7.9999995))) == 2.0
    # round_away differs from rint on ties: -2.5 -> -3 (rint -2); 0.49999997f -> 0.
    assert oracle.round_away(np.float32(-2.5)) == -3 and np.rint(np.float32(-2.5)) == -2
    assert oracle.round_away(np.float32(0.49999997)) == 0
