"""Observer state: state_dict/load_state_dict through .npz, train/eval/reset, attributes and
repr; modules; dispatch (numpy in, numpy out; device array in, device array out; CuPy)."""
import numpy as np
import pytest

import oracle
from devices import Device, is_device_array, to_numpy
from golden import assert_same

nq = pytest.importorskip("numba_quant")


def _batches(n, shape=(3, 4), dtype=np.float32, seed=3):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * (1 + i)).astype(dtype) for i in range(n)]


def _save_load(tmp_path, state, name="state.npz"):
    path = tmp_path / name
    np.savez(path, **state)
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


# --------------------------------------------------------------------------- MinMaxObserver
def test_min_max_observer_defaults_attributes_repr():
    obs = nq.MinMaxObserver()
    assert (obs.quantization_formula, obs.quantization_bit, obs.quantization_scheme,
            obs.per_layer_quantization, obs.axis, obs.nonfinite) == (
        "google", 8, "symmetric", True, 0, "raise")
    obs = nq.MinMaxObserver("google", 5, "affine", False, axis=-1, nonfinite="omit")
    assert (obs.quantization_formula, obs.quantization_bit, obs.quantization_scheme,
            obs.per_layer_quantization, obs.axis, obs.nonfinite) == (
        "google", 5, "affine", False, -1, "omit")
    assert repr(obs) == ("MinMaxObserver(quantization_formula='google', quantization_bit=5, "
                         "quantization_scheme='affine', per_layer_quantization=False, "
                         "axis=-1, nonfinite='omit')")


def test_min_max_observer_state_round_trip(tmp_path, device):
    obs = nq.MinMaxObserver("google", 6, "affine", False, axis=1, nonfinite="omit")
    state = _save_load(tmp_path, obs.state_dict())
    restored = nq.MinMaxObserver()
    restored.load_state_dict(state)
    assert (restored.quantization_formula, restored.quantization_bit,
            restored.quantization_scheme, restored.per_layer_quantization, restored.axis,
            restored.nonfinite) == ("google", 6, "affine", False, 1, "omit")
    x = _batches(1)[0]
    x[0, 1] = np.nan
    exp = oracle.min_max_observer(x, "google", 6, "affine", False, axis=1, nonfinite="omit")
    for o in (obs, restored):
        s, zp = (device.get(a) for a in o(device.put(x)))
        assert_same(s, exp[0], "scale")
        assert_same(zp, exp[1], "zero_point")


def test_min_max_observer_load_checks():
    obs = nq.MinMaxObserver()
    bad = obs.state_dict()
    bad["quantization_bit"] = 40
    with pytest.raises(ValueError,
                       match="quantization_bit must be an integer from 2 to 16; got 40"):
        obs.load_state_dict(bad)


# --------------------------------------------------------------------------- moving average
def test_moving_average_defaults_attributes_repr():
    obs = nq.MovingAverageMinMaxObserver()
    assert (obs.stop_update_after_iters, obs.quantization_formula, obs.quantization_bit,
            obs.quantization_scheme, obs.per_layer_quantization, obs.axis,
            obs.nonfinite) == (1, "google", 8, "symmetric", True, 0, "raise")
    assert np.float32(obs.momentum) == np.float32(0.95)
    assert obs.training is True and obs.current_train_step == 0
    obs = nq.MovingAverageMinMaxObserver(7, "cambricon", 4, "symmetric", 0.5,
                                         per_layer_quantization=False, axis=1)
    assert (obs.stop_update_after_iters, obs.quantization_formula, obs.quantization_bit,
            obs.momentum, obs.per_layer_quantization, obs.axis) == (7, "cambricon", 4, 0.5,
                                                                     False, 1)
    assert repr(obs) == ("MovingAverageMinMaxObserver(stop_update_after_iters=7, "
                         "quantization_formula='cambricon', quantization_bit=4, "
                         "quantization_scheme='symmetric', momentum=0.5, "
                         "per_layer_quantization=False, axis=1, nonfinite='raise')")


class _OracleMoving:
    """The oracle's moving-average observer with a step counter (training calls only)."""

    def __init__(self, stop, formula, bit, scheme, momentum, n=1, axis=0, T=np.float32):
        self.args = (stop, formula, bit, scheme, momentum)
        self.axis = axis
        self.mmax = np.zeros(n, T)
        self.mmin = np.zeros(n, T)
        self.step = 0

    def __call__(self, x, training=True):
        stop, formula, bit, scheme, momentum = self.args
        s, zp, self.mmax, self.mmin = oracle.moving_average_min_max_observer(
            x, self.step, self.mmax, self.mmin, training, stop, formula, bit, scheme, momentum,
            axis=self.axis)
        if training:
            self.step += 1
        return s, zp


def _check_call(obs, ref, device, x, training, what):
    s, zp = (device.get(a) for a in obs(device.put(x)))
    es, ezp = ref(x, training)
    assert_same(s, es, f"{what} scale")
    assert_same(zp, ezp, f"{what} zero_point")
    assert_same(to_numpy(obs.moving_max).reshape(-1), ref.mmax, f"{what} moving_max")
    assert_same(to_numpy(obs.moving_min).reshape(-1), ref.mmin, f"{what} moving_min")
    assert obs.current_train_step == ref.step


@pytest.mark.parametrize("per_layer", [True, False])
def test_moving_average_train_eval_reset(device, per_layer):
    settings = (3, "google", 8, "affine", 0.9)
    obs = nq.MovingAverageMinMaxObserver(*settings, per_layer_quantization=per_layer, axis=-1)
    n = 1 if per_layer else 4
    ref = _OracleMoving(*settings, n=n, axis=-1)
    xs = _batches(6)
    _check_call(obs, ref, device, xs[0], True, "train 0")
    _check_call(obs, ref, device, xs[1], True, "train 1")
    obs.eval()
    assert obs.training is False
    before = to_numpy(obs.moving_max).copy()
    _check_call(obs, ref, device, xs[2], False, "eval")          # no update, no step
    assert_same(to_numpy(obs.moving_max), before, "eval keeps the state")
    assert obs.current_train_step == 2
    obs.train()
    assert obs.training is True
    for i in range(3, 6):   # steps 2, 3 update (<= 3); step 4 does not
        _check_call(obs, ref, device, xs[i], True, f"train {i}")
    obs.reset()
    assert obs.current_train_step == 0
    ref = _OracleMoving(*settings, n=n, axis=-1)
    _check_call(obs, ref, device, xs[5], True, "after reset")


@pytest.mark.parametrize("formula,scheme", [("google", "symmetric"), ("google", "affine"),
                                            ("cambricon", "symmetric")])
@pytest.mark.parametrize("per_layer", [True, False])
def test_moving_average_state_round_trip(tmp_path, device, formula, scheme, per_layer):
    settings = (10, formula, 7, scheme, 0.7)
    obs = nq.MovingAverageMinMaxObserver(*settings, per_layer_quantization=per_layer)
    ref = _OracleMoving(*settings, n=1 if per_layer else 3)
    xs = _batches(6, dtype=np.float64)
    ref.mmax = ref.mmax.astype(np.float64)
    ref.mmin = ref.mmin.astype(np.float64)
    for i in range(3):
        _check_call(obs, ref, device, xs[i], True, f"step {i}")
    state = obs.state_dict()
    for k, v in state.items():   # plain numpy arrays and Python values, also after a GPU run
        assert isinstance(v, (np.ndarray, np.generic, int, float, str, bool)), (k, type(v))
    loaded = _save_load(tmp_path, state)
    restored = nq.MovingAverageMinMaxObserver()
    restored.load_state_dict(loaded)
    assert restored.current_train_step == 3 and restored.training is True
    assert (restored.quantization_formula, restored.quantization_bit,
            restored.quantization_scheme, restored.per_layer_quantization) == (
        formula, 7, scheme, per_layer)
    # Both continue identically: each matches the oracle continued from the same state.
    for other in (Device("cpu"), device):
        r = _OracleMoving(*settings)
        r.mmax, r.mmin, r.step = ref.mmax.copy(), ref.mmin.copy(), ref.step
        o = nq.MovingAverageMinMaxObserver()
        o.load_state_dict(loaded)
        for i in range(3, 6):
            _check_call(o, r, other, xs[i], True, f"restored on {other.name}, step {i}")
    for i in range(3, 6):
        _check_call(obs, ref, device, xs[i], True, f"original step {i}")


def test_moving_average_state_round_trip_eval_mode(tmp_path):
    obs = nq.MovingAverageMinMaxObserver(5, "google", 8, "symmetric", 0.9)
    for x in _batches(2):
        obs(x)
    obs.eval()
    restored = nq.MovingAverageMinMaxObserver()
    restored.load_state_dict(_save_load(tmp_path, obs.state_dict()))
    assert restored.training is False and restored.current_train_step == 2
    x = _batches(1, seed=9)[0]
    # eval: the scale comes from the saved state alone: moving_max / 127
    s, zp = restored(x)
    assert s[0] == np.float32(obs.moving_max[0]) / np.float32(127) and zp[0] == 0
    assert restored.current_train_step == 2


def test_moving_average_fresh_state_dict(tmp_path):
    """A state_dict saved before any call restores to a fresh observer."""
    obs = nq.MovingAverageMinMaxObserver(2, "google", 4, "affine", 0.5)
    restored = nq.MovingAverageMinMaxObserver()
    restored.load_state_dict(_save_load(tmp_path, obs.state_dict()))
    ref = _OracleMoving(2, "google", 4, "affine", 0.5)
    _check_call(restored, ref, Device("cpu"), _batches(1)[0], True, "first call")


# --------------------------------------------------------------------------- modules
@pytest.mark.parametrize("cls_name,fn_name", [("FakeQuantization", "fake_quantization"),
                                              ("Quantization", "quantization")])
def test_fake_quant_modules(device, cls_name, fn_name):
    cls = getattr(nq, cls_name)
    mod = cls("google", 5, "affine", axis=1)
    assert (mod.quantization_formula, mod.quantization_bit, mod.quantization_scheme,
            mod.axis) == ("google", 5, "affine", 1)
    assert repr(mod) == (f"{cls_name}(quantization_formula='google', quantization_bit=5, "
                         "quantization_scheme='affine', axis=1)")
    x = _batches(1)[0]
    s, zp = oracle.min_max_observer(x, "google", 5, "affine", False, axis=1)
    s = s / np.float32(2)
    exp = getattr(oracle, fn_name)(x, s, zp, "google", 5, "affine", axis=1)
    got = device.get(mod(device.put(x), device.put(s), device.put(zp)))
    assert_same(got, exp, cls_name)
    out = device.put(np.zeros(x.shape, np.float32))
    mod(device.put(x), device.put(s), device.put(zp), out=out)
    assert_same(to_numpy(out), exp, cls_name + " out=")


# --------------------------------------------------------------------------- dispatch
def test_dispatch_numpy_in_numpy_out():
    x = _batches(1)[0]
    s, zp = nq.min_max_observer(x)
    assert type(s) is np.ndarray and type(zp) is np.ndarray
    for fn in (nq.fake_quantization, nq.quantization, nq.quantize):
        assert type(fn(x, s, zp)) is np.ndarray
    assert type(nq.dequantize(nq.quantize(x, s, zp), s, zp)) is np.ndarray
    mm, mn = np.zeros(1, np.float32), np.zeros(1, np.float32)
    r = nq.moving_average_min_max_observer(x, 0, mm, mn, True, 1)
    assert all(type(a) is np.ndarray for a in r)
    r = nq.MovingAverageMinMaxObserver()(x)
    assert all(type(a) is np.ndarray for a in r)


@pytest.mark.gpu
def test_dispatch_device_array_in_device_array_out():
    gpu = Device("gpu")
    x = _batches(1)[0]
    xd = gpu.put(x)
    s, zp = nq.min_max_observer(xd)
    assert is_device_array(s) and is_device_array(zp)
    exp = oracle.min_max_observer(x)
    assert_same(s.copy_to_host(), exp[0], "scale")
    for fn, ofn in ((nq.fake_quantization, oracle.fake_quantization),
                    (nq.quantization, oracle.quantization), (nq.quantize, oracle.quantize)):
        r = fn(xd, s, zp)
        assert is_device_array(r)
        assert_same(r.copy_to_host(), ofn(x, *exp), fn.__name__)
    q = nq.quantize(xd, s, zp)
    d = nq.dequantize(q, s, zp)
    assert is_device_array(d)
    assert_same(d.copy_to_host(), oracle.fake_quantization(x, *exp), "dequantize")
    mm, mn = gpu.put(np.zeros(1, np.float32)), gpu.put(np.zeros(1, np.float32))
    r = nq.moving_average_min_max_observer(xd, 0, mm, mn, True, 1)
    assert all(is_device_array(a) for a in r)
    # the device state was updated in place: a = max(|max|, |min|)
    assert mm.copy_to_host()[0] == np.abs(x).max() and mn.copy_to_host()[0] == np.abs(x).max()
    obs = nq.MovingAverageMinMaxObserver()
    r = obs(xd)
    assert all(is_device_array(a) for a in r)


@pytest.mark.cupy
def test_dispatch_cupy_in_cupy_out():
    import cupy
    x = _batches(1)[0]
    xc = cupy.asarray(x)
    for per_layer in (True, False):
        s, zp = nq.min_max_observer(xc, "google", 8, "affine", per_layer)
        assert isinstance(s, cupy.ndarray) and isinstance(zp, cupy.ndarray)
        exp = oracle.min_max_observer(x, "google", 8, "affine", per_layer)
        assert_same(cupy.asnumpy(s), exp[0], "scale")
        assert_same(cupy.asnumpy(zp), exp[1], "zero_point")
        for fn, ofn in ((nq.fake_quantization, oracle.fake_quantization),
                        (nq.quantization, oracle.quantization), (nq.quantize, oracle.quantize)):
            r = fn(xc, s, zp, "google", 8, "affine")
            assert isinstance(r, cupy.ndarray)
            assert_same(cupy.asnumpy(r), ofn(x, *exp, "google", 8, "affine"), fn.__name__)
    mm, mn = cupy.zeros(1, cupy.float32), cupy.zeros(1, cupy.float32)
    r = nq.moving_average_min_max_observer(xc, 0, mm, mn, True, 1, "google", 8, "affine")
    assert all(isinstance(a, cupy.ndarray) for a in r)
    exp = oracle.moving_average_min_max_observer(x, 0, np.zeros(1, np.float32),
                                                 np.zeros(1, np.float32), True, 1, "google", 8,
                                                 "affine")
    assert_same(cupy.asnumpy(mm), exp[2], "moving_max in place")
    assert_same(cupy.asnumpy(mn), exp[3], "moving_min in place")
    out = cupy.empty(x.shape, cupy.float32)
    nq.fake_quantization(xc, *(cupy.asarray(a) for a in exp[:2]), "google", 8, "affine",
                         out=out)
    assert_same(cupy.asnumpy(out), oracle.fake_quantization(x, *exp[:2], "google", 8, "affine"),
                "out")


@pytest.mark.cupy
def test_cupy_layouts_not_written():
    import cupy
    x = _batches(1, shape=(4, 6))[0]
    xc = cupy.asarray(x)
    view = xc[:, ::-2]
    before = cupy.asnumpy(view).copy()
    s, zp = nq.min_max_observer(view, "google", 8, "symmetric", False, axis=1)
    exp = oracle.min_max_observer(before, "google", 8, "symmetric", False, axis=1)
    assert_same(cupy.asnumpy(s), exp[0], "scale")
    assert np.array_equal(cupy.asnumpy(view), before)


@pytest.mark.real_gpu
def test_dispatch_torch_in_torch_out():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    x = _batches(1)[0]
    xt = torch.as_tensor(x).cuda()
    for per_layer in (True, False):
        s, zp = nq.min_max_observer(xt, "google", 8, "affine", per_layer)
        assert isinstance(s, torch.Tensor) and s.is_cuda and s.dtype == torch.float32
        exp = oracle.min_max_observer(x, "google", 8, "affine", per_layer)
        assert_same(s.cpu().numpy(), exp[0], "scale")
        assert_same(zp.cpu().numpy(), exp[1], "zero_point")
        f = nq.fake_quantization(xt, s, zp, "google", 8, "affine")
        assert isinstance(f, torch.Tensor) and f.is_cuda and f.dtype == torch.float32
        assert_same(f.cpu().numpy(), oracle.fake_quantization(x, *exp, "google", 8, "affine"),
                    "fake")
        q = nq.quantize(xt, s, zp, "google", 8, "affine")
        assert isinstance(q, torch.Tensor) and q.dtype == torch.uint8
        assert_same(q.cpu().numpy(), oracle.quantize(x, *exp, "google", 8, "affine"), "codes")
