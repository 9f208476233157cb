"""Every case of the golden file (real OneFlow 0.9.0 output) on the CPU and the GPU path.

What the file holds and how it was made: docs/semantics.md §10.  Outputs are compared bit
for bit, dtype and shape included (NaN-ness only for NaN; §10.3), and every input and
parameter array given to the library must come back with the bits it had (§8.2).  Each
test is parametrized by the case id so that a failure names the case.
"""
import numpy as np
import pytest

import golden
from devices import Device
from devices import to_numpy as _to_np
from golden import assert_same

nq = pytest.importorskip("numba_quant")


def _id(c):
    return c["id"]


class Unwritten:
    """Arrays given to the library, with copies of them taken before any call (§8.2).

    On the CPU path the library receives the golden arrays themselves; on the GPU path
    device copies of them, brought back at the end.
    """

    def __init__(self, device):
        self.device = device
        self.given = []

    def put(self, a, what):
        on_device = self.device.put(a)
        self.given.append((on_device, np.array(a, copy=True), what))
        return on_device

    def check(self):
        for on_device, before, what in self.given:
            assert_same(_to_np(on_device), before, f"{what} written")


@pytest.mark.parametrize("case", golden.MIN_MAX, ids=_id)
def test_min_max_observer_golden(device, case):
    """§3.2-3.4 (scale, zero point), §5.4-5.5 (fake quantization, quantization)."""
    given = Unwritten(device)
    x = golden.inp(case)
    xd = given.put(x, "input")
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
        args = (xd, given.put(s, sname), given.put(golden.get(case, "zero_point"), "zero_point"),
                case["formula"], case["bit"], case["scheme"])
        assert_same(device.get(nq.fake_quantization(*args)), golden.get(case, "fake" + suffix),
                    "fake" + suffix)
        assert_same(device.get(nq.quantization(*args)), golden.get(case, "quant" + suffix),
                    "quant" + suffix)
        checked += 1
    # The golden file drops fake/quant only for affine cases whose zero point is out of range.
    assert checked == 2 or case["scheme"] == "affine"
    given.check()


@pytest.mark.parametrize("case", golden.USER_SHIFT, ids=_id)
def test_cambricon_user_shift_golden(device, case):
    """§5.8: a fractional shift is truncated toward zero."""
    given = Unwritten(device)
    shift = golden.get(case, "scale")
    args = (given.put(golden.inp(case), "input"), given.put(shift, "shift"),
            given.put(np.zeros_like(shift), "zero_point"), "cambricon", case["bit"], "symmetric")
    assert_same(device.get(nq.fake_quantization(*args)), golden.get(case, "fake"), "fake")
    assert_same(device.get(nq.quantization(*args)), golden.get(case, "quant"), "quant")
    given.check()


def _expected_step(case, i):
    return {n: golden.get(case, n)[i:i + 1]
            for n in ("scale", "zero_point", "moving_max", "moving_min")}


@pytest.mark.parametrize("case", golden.MOVING, ids=_id)
def test_moving_average_functional_golden(device, case):
    """§4: the state updated in place, step by step, and the parameters from it."""
    given = Unwritten(device)
    xs = golden.inp(case)
    T = np.dtype(case["dtype"])
    mmax = device.put(np.zeros(1, T))
    mmin = device.put(np.zeros(1, T))
    for i, (step, training) in enumerate(zip(case["steps"], case["training"])):
        scale, zp = nq.moving_average_min_max_observer(
            given.put(xs[i], f"batch {i}"), step, mmax, mmin, training,
            case["stop_update_after_iters"],
            case["formula"], case["bit"], case["scheme"], case["momentum"])
        exp = _expected_step(case, i)
        assert_same(device.get(scale), exp["scale"], f"step {i} scale")
        assert_same(device.get(zp), exp["zero_point"], f"step {i} zero_point")
        # the state arrays are updated in place
        assert_same(device.get(mmax), exp["moving_max"], f"step {i} moving_max")
        assert_same(device.get(mmin), exp["moving_min"], f"step {i} moving_min")
    given.check()


@pytest.mark.parametrize("case", golden.MOVING, ids=_id)
def test_moving_average_class_golden(device, case):
    """§4.4: the class keeps the state and counts its training calls."""
    given = Unwritten(device)
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
        scale, zp = obs(given.put(xs[i], f"batch {i}"))
        exp = _expected_step(case, i)
        assert_same(device.get(scale), exp["scale"], f"step {i} scale")
        assert_same(device.get(zp), exp["zero_point"], f"step {i} zero_point")
        assert_same(_to_np(obs.moving_max).reshape(-1), exp["moving_max"], f"step {i} max")
        assert_same(_to_np(obs.moving_min).reshape(-1), exp["moving_min"], f"step {i} min")
    if all_training:
        assert obs.current_train_step == len(case["steps"])
    given.check()


def _check_codes(device, case):
    """quantize gives the golden codes as integers; dequantize turns them back into the
    golden fake-quantized values, except that a -0.0 comes back as +0.0: an integer code
    has no sign of zero (§5.6, §5.7).  With the smaller scale, where some values clamp."""
    given = Unwritten(device)
    x = golden.inp(case)
    settings = (case["formula"], case["bit"], case["scheme"])
    affine = case["formula"] == "google" and case["scheme"] == "affine"
    code_type = np.dtype(("u" if affine else "i") + ("1" if case["bit"] <= 8 else "2"))
    s = golden.get(case, "scale_tight_used")
    zp = golden.get(case, "zero_point")
    codes = device.get(nq.quantize(given.put(x, "input"), given.put(s, "scale"),
                                   given.put(zp, "zero_point"), *settings))
    assert_same(codes, golden.get(case, "quant_tight").astype(code_type), f"{case['id']} codes")
    fake = golden.get(case, "fake_tight")
    values = nq.dequantize(given.put(codes, "codes"), given.put(s, "scale"),
                           given.put(zp, "zero_point"), *settings)
    assert_same(device.get(values), np.where(fake == 0, fake.dtype.type(0), fake),
                f"{case['id']} dequantized")
    given.check()


CODE_CASES = [c for c in golden.MIN_MAX if golden.has(c, "scale_tight_used")]


def _one_case_per_kind(*settings):
    """The first case with codes for each combination of the given settings.

    quantize and dequantize share their kernels with quantization and fake quantization,
    which every case checks; here one case of each kind is enough."""
    first = {}
    for c in CODE_CASES:
        first.setdefault(tuple(c[name] for name in settings), c)
    return list(first.values())


@pytest.mark.parametrize("case", _one_case_per_kind("formula", "scheme", "per_layer", "dtype",
                                                    "bit"), ids=_id)
def test_integer_codes_golden_cpu(case):
    _check_codes(Device("cpu"), case)


@pytest.mark.gpu
@pytest.mark.parametrize("case", _one_case_per_kind("formula", "scheme", "per_layer", "dtype"),
                         ids=_id)
def test_integer_codes_golden_gpu(case):
    _check_codes(Device("gpu"), case)
