"""Every case of the golden file (real OneFlow 0.9.0 output) on the CPU and the GPU path.

Compared by value (==), dtype and shape included. Each test is parametrized by the case id
so that a failure names the case.
"""
import numpy as np
import pytest

import golden
from devices import to_numpy as _to_np
from golden import assert_same

nq = pytest.importorskip("numba_quant")


def _id(c):
    return c["id"]


@pytest.mark.parametrize("case", golden.MIN_MAX, ids=_id)
def test_min_max_observer_golden(device, case):
    x = golden.inp(case)
    xd = device.put(x)
    scale, zp = nq.min_max_observer(xd, case["formula"], case["bit"], case["scheme"],
                                    case["per_layer"])
    scale, zp = device.get(scale), device.get(zp)
    assert_same(scale, golden.get(case, "scale"), "scale")
    assert_same(zp, golden.get(case, "zero_point"), "zero_point")
    checked = 0
    for suffix, sname in (("", "scale_used"), ("_tight", "scale_tight_used")):
        s = golden.get(case, sname)
        if s is None:
            continue
        args = (xd, device.put(s), device.put(golden.get(case, "zero_point")),
                case["formula"], case["bit"], case["scheme"])
        assert_same(device.get(nq.fake_quantization(*args)), golden.get(case, "fake" + suffix),
                    "fake" + suffix)
        assert_same(device.get(nq.quantization(*args)), golden.get(case, "quant" + suffix),
                    "quant" + suffix)
        checked += 1
    # The golden file drops fake/quant only for affine cases whose zero point is out of range.
    assert checked == 2 or case["scheme"] == "affine"
    np.testing.assert_array_equal(xd if isinstance(xd, np.ndarray) else xd.copy_to_host(), x)


@pytest.mark.parametrize("case", golden.USER_SHIFT, ids=_id)
def test_cambricon_user_shift_golden(device, case):
    x = golden.inp(case)
    shift = golden.get(case, "scale")
    args = (device.put(x), device.put(shift), device.put(np.zeros_like(shift)), "cambricon",
            case["bit"], "symmetric")
    assert_same(device.get(nq.fake_quantization(*args)), golden.get(case, "fake"), "fake")
    assert_same(device.get(nq.quantization(*args)), golden.get(case, "quant"), "quant")


def _expected_step(case, i):
    return {n: golden.get(case, n)[i:i + 1]
            for n in ("scale", "zero_point", "moving_max", "moving_min")}


@pytest.mark.parametrize("case", golden.MOVING, ids=_id)
def test_moving_average_functional_golden(device, case):
    xs = golden.inp(case)
    T = np.dtype(case["dtype"])
    mmax = device.put(np.zeros(1, T))
    mmin = device.put(np.zeros(1, T))
    for i, (step, training) in enumerate(zip(case["steps"], case["training"])):
        scale, zp = nq.moving_average_min_max_observer(
            device.put(xs[i]), step, mmax, mmin, training, case["stop_update_after_iters"],
            case["formula"], case["bit"], case["scheme"], case["momentum"])
        exp = _expected_step(case, i)
        assert_same(device.get(scale), exp["scale"], f"step {i} scale")
        assert_same(device.get(zp), exp["zero_point"], f"step {i} zero_point")
        # the state arrays are updated in place
        assert_same(device.get(mmax), exp["moving_max"], f"step {i} moving_max")
        assert_same(device.get(mmin), exp["moving_min"], f"step {i} moving_min")


@pytest.mark.parametrize("case", golden.MOVING, ids=_id)
def test_moving_average_class_golden(device, case):
    xs = golden.inp(case)
    obs = nq.MovingAverageMinMaxObserver(case["stop_update_after_iters"], case["formula"],
                                         case["bit"], case["scheme"], case["momentum"])
    assert obs.current_train_step == 0
    all_training = all(case["training"])
    for i, (step, training) in enumerate(zip(case["steps"], case["training"])):
        if training:
            obs.train()
        else:
            obs.eval()
        assert obs.training is training
        if obs.current_train_step != step:
            # OneFlow's module takes the step as an argument; the golden steps count every
            # call, while this class counts training calls only.
            assert not all_training, (
                f"step {i}: counter {obs.current_train_step} should follow training calls")
            obs.current_train_step = step
        scale, zp = obs(device.put(xs[i]))
        exp = _expected_step(case, i)
        assert_same(device.get(scale), exp["scale"], f"step {i} scale")
        assert_same(device.get(zp), exp["zero_point"], f"step {i} zero_point")
        assert_same(_to_np(obs.moving_max).reshape(-1), exp["moving_max"], f"step {i} max")
        assert_same(_to_np(obs.moving_min).reshape(-1), exp["moving_min"], f"step {i} min")
    if all_training:
        assert obs.current_train_step == len(case["steps"])
