"""One test per row of SEMANTICS.md §5 and per error of the team spec, on both paths.

Messages are checked with ``match=``. Expected values are derived by hand in comments.
"""
import re

import numpy as np
import pytest

import oracle
from golden import assert_same

nq = pytest.importorskip("numba_quant")

F32 = np.float32


def _x(shape=(3, 4), dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _params(n=1, T=np.float32):
    return np.full(n, 0.05, T), np.zeros(n, T)


def _fake_fns():
    return (nq.fake_quantization, nq.quantization, nq.quantize)


def _both(a, b):
    """A regex that needs both numbers, in either order."""
    return rf"(?s)(\b{a}\b.*\b{b}\b|\b{b}\b.*\b{a}\b)"


def _moving(device, x, n=1, **kw):
    T = oracle.compute_dtype(np.asarray(x).dtype)
    args = dict(training=True, stop_update_after_iters=10)
    args.update(kw)
    return nq.moving_average_min_max_observer(
        device.put(x), 0, device.put(np.zeros(n, T)), device.put(np.zeros(n, T)),
        args.pop("training"), args.pop("stop_update_after_iters"), **args)


# --------------------------------------------------------------------------- §5 row 1: empty
@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 2)])
def test_empty_array_min_max_observer(device, shape):
    x = device.put(np.zeros(shape, F32))
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        nq.min_max_observer(x)
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        nq.MinMaxObserver()(x)


def test_empty_channel_min_max_observer(device):
    # axis 0 has 3 channels, each with 0 elements
    x = device.put(np.zeros((3, 0), F32))
    with pytest.raises(ValueError, match=re.escape("(3, 0)")):
        nq.min_max_observer(x, per_layer_quantization=False, axis=0)


def test_empty_array_moving_average(device):
    with pytest.raises(ValueError, match=re.escape("(0, 5)")):
        _moving(device, np.zeros((0, 5), F32))


# --------------------------------------------------------------------------- §5 row 2: NaN/inf
def _with_nonfinite():
    x = _x((4, 5))
    x[0, 0] = np.nan
    x[1, 2] = np.inf
    x[3, 4] = -np.inf
    x[2, 2] = np.nan
    x[2, 3] = np.nan
    return x   # 5 non-finite elements


@pytest.mark.parametrize("per_layer", [True, False])
def test_nonfinite_raise_counts(device, per_layer):
    x = device.put(_with_nonfinite())
    with pytest.raises(ValueError, match=r"\b5\b"):
        nq.min_max_observer(x, per_layer_quantization=per_layer)   # default: raise
    with pytest.raises(ValueError, match=r"\b5\b"):
        nq.min_max_observer(x, per_layer_quantization=per_layer, nonfinite="raise")
    with pytest.raises(ValueError, match=r"\b5\b"):
        nq.MinMaxObserver(per_layer_quantization=per_layer)(x)


def test_nonfinite_raise_counts_moving_average(device):
    with pytest.raises(ValueError, match=r"\b5\b"):
        _moving(device, _with_nonfinite())


@pytest.mark.parametrize("per_layer", [True, False])
def test_nonfinite_omit_ignores(device, per_layer):
    x = _with_nonfinite()
    got = nq.min_max_observer(device.put(x), per_layer_quantization=per_layer, nonfinite="omit")
    exp = oracle.min_max_observer(x, per_layer_quantization=per_layer, nonfinite="omit")
    assert_same(device.get(got[0]), exp[0], "scale")
    assert_same(device.get(got[1]), exp[1], "zero_point")


def test_nonfinite_omit_no_finite_element(device):
    x = np.full((2, 3), np.nan, F32)
    x[0, 1] = np.inf
    with pytest.raises(ValueError, match=re.escape("input has no finite value")):
        nq.min_max_observer(device.put(x), nonfinite="omit")
    y = _x((2, 3))
    y[1, :] = [np.nan, np.inf, -np.inf]   # channel 1 has no finite element
    nq.min_max_observer(device.put(y), nonfinite="omit")        # per-layer: fine
    with pytest.raises(ValueError, match=re.escape("1 channel(s) have no finite value "
                                                   "(channels 1)")):
        nq.min_max_observer(device.put(y), per_layer_quantization=False, nonfinite="omit")
    with pytest.raises(ValueError, match=re.escape("input has no finite value")):
        _moving(device, np.full(4, np.nan, F32), nonfinite="omit")


def test_fake_quantization_nan_stays_nan_inf_clamps(device):
    # scale 0.5, 8 bits symmetric: codes in [-128, 127]; inf -> 127 * 0.5 = 63.5, -inf -> -64
    x = np.array([np.nan, np.inf, -np.inf, 1.0], F32)
    s, zp = np.array([0.5], F32), np.zeros(1, F32)
    out = device.get(nq.fake_quantization(device.put(x), device.put(s), device.put(zp)))
    assert np.isnan(out[0]) and out[1] == 63.5 and out[2] == -64.0 and out[3] == 1.0
    q = device.get(nq.quantization(device.put(x), device.put(s), device.put(zp)))
    assert np.isnan(q[0]) and list(q[1:]) == [127, -128, 2]


def test_quantize_nan_raises(device):
    x = np.array([np.nan, 1.0, np.nan], F32)
    s, zp = _params()
    with pytest.raises(ValueError, match=r"NaN|nan"):
        nq.quantize(device.put(x), device.put(s), device.put(zp))
    # infinities have codes: the clamped ends
    q = device.get(nq.quantize(device.put(np.array([np.inf, -np.inf], F32)), device.put(s),
                               device.put(zp)))
    assert q.dtype == np.int8 and list(q) == [127, -128]


# --------------------------------------------------------------------------- §5 row 3: zero range
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_range_min_max_observer(device, dtype):
    T = dtype
    zeros = device.put(np.zeros((2, 3), T))
    const = device.put(np.full((2, 3), 3.0, T))
    # google symmetric, all zeros: amax 0 -> scale 0, zp 0
    for x, scheme, formula in ((zeros, "symmetric", "google"), (zeros, "affine", "google"),
                               (const, "affine", "google"), (zeros, "symmetric", "cambricon")):
        for per_layer in (True, False):
            s, zp = (device.get(a) for a in nq.min_max_observer(x, formula, 8, scheme,
                                                                 per_layer))
            n = 1 if per_layer else 2
            assert_same(s, np.zeros(n, T), f"{formula} {scheme} scale")
            assert_same(zp, np.zeros(n, T), f"{formula} {scheme} zero_point")


def test_zero_range_affine_underflow(device):
    # range = one float32 subnormal step (1.4e-45); / 255 underflows to 0: scale 0, zp 0
    tiny = np.nextafter(F32(0), F32(1))
    x = device.put(np.array([0, tiny], F32))
    s, zp = (device.get(a) for a in nq.min_max_observer(x, "google", 8, "affine"))
    assert s[0] == 0 and zp[0] == 0 and np.isfinite(zp).all()


def test_zero_range_per_channel_constant_slice(device):
    # channel 0 constant (affine scale 0, zp 0); channel 1 spans [0, 255] -> scale 1, zp 0
    x = np.array([[2.0, 2.0, 2.0], [0.0, 100.0, 255.0]], F32)
    s, zp = (device.get(a) for a in nq.min_max_observer(device.put(x), "google", 8, "affine",
                                                         False))
    assert list(s) == [0.0, 1.0] and list(zp) == [0.0, 0.0]


@pytest.mark.parametrize("formula,scheme", [("google", "symmetric"), ("google", "affine"),
                                            ("cambricon", "symmetric")])
def test_zero_range_moving_average(device, formula, scheme):
    # all-zero batch into a zero state: the state stays 0 -> scale 0 (shift 0), zp 0
    s, zp = _moving(device, np.zeros(5, F32), quantization_formula=formula,
                    quantization_scheme=scheme)
    assert device.get(s)[0] == 0 and device.get(zp)[0] == 0


def test_fake_quantization_scale_zero(device):
    # scale 0: code 0 and fake 0, never NaN; NaN input stays NaN
    x = np.array([1.0, -3.0, 0.0, np.inf, np.nan], F32)
    z = np.zeros(1, F32)
    for scheme in ("symmetric", "affine"):
        args = (device.put(x), device.put(z), device.put(z), "google", 8, scheme)
        f = device.get(nq.fake_quantization(*args))
        q = device.get(nq.quantization(*args))
        assert list(f[:4]) == [0, 0, 0, 0] and np.isnan(f[4])
        assert list(q[:4]) == [0, 0, 0, 0] and np.isnan(q[4])
        codes = device.get(nq.quantize(device.put(x[:4]), device.put(z), device.put(z),
                                       "google", 8, scheme))
        assert list(codes) == [0, 0, 0, 0]
        assert list(device.get(nq.dequantize(device.put(codes), device.put(z), device.put(z),
                                             "google", 8, scheme))) == [0, 0, 0, 0]


# --------------------------------------------------------------------------- §5 row 4: strings
BAD_STRINGS = [
    ("quantization_formula", "tensorrt", ("google", "cambricon")),
    ("quantization_scheme", "asymmetric", ("symmetric", "affine")),
]


def _valid_listed(valid):
    return "".join(f"(?=.*{v})" for v in valid)


@pytest.mark.parametrize("name,bad,valid", BAD_STRINGS)
def test_unknown_string_functions(device, name, bad, valid):
    x = device.put(_x())
    s, zp = (device.put(a) for a in _params())
    match = "(?s)" + _valid_listed(valid)
    with pytest.raises(ValueError, match=match):
        nq.min_max_observer(x, **{name: bad})
    with pytest.raises(ValueError, match=match):
        _moving(device, _x(), **{name: bad})
    for fn in _fake_fns():
        with pytest.raises(ValueError, match=match):
            fn(x, s, zp, **{name: bad})
    q = device.put(np.zeros(3, np.int8))
    with pytest.raises(ValueError, match=match):
        nq.dequantize(q, s, zp, **{name: bad})


@pytest.mark.parametrize("name,bad,valid", BAD_STRINGS + [("nonfinite", "ignore",
                                                           ("raise", "omit"))])
def test_unknown_string_classes(name, bad, valid):
    match = "(?s)" + _valid_listed(valid)
    classes = [nq.MinMaxObserver, nq.MovingAverageMinMaxObserver]
    if name != "nonfinite":
        classes += [nq.FakeQuantization, nq.Quantization]
    for cls in classes:
        with pytest.raises(ValueError, match=match):
            cls(**{name: bad})


def test_unknown_nonfinite_policy(device):
    match = "(?s)" + _valid_listed(("raise", "omit"))
    with pytest.raises(ValueError, match=match):
        nq.min_max_observer(device.put(_x()), nonfinite="skip")
    with pytest.raises(ValueError, match=match):
        _moving(device, _x(), nonfinite="skip")


def test_cambricon_ignores_scheme_but_checks_it(device):
    # cambricon ignores the scheme: both valid schemes give the same shift
    x = device.put(np.array([5.0, -1.0], F32))   # amax 5: floor(log2 5) = 2; 2 - (8 - 2) = -4
    for scheme in ("symmetric", "affine"):
        s, zp = (device.get(a) for a in nq.min_max_observer(x, "cambricon", 8, scheme))
        assert s[0] == -4 and zp[0] == 0


# --------------------------------------------------------------------------- §5 row 5: bits
BAD_BITS = [0, 1, 17, 32, -8, True, False, 8.0, "8", None]


@pytest.mark.parametrize("bits", BAD_BITS, ids=repr)
def test_bad_bits(device, bits):
    x = device.put(_x())
    s, zp = (device.put(a) for a in _params())
    match = r"(?s)\b2\b.*\b16\b"   # names the supported range
    with pytest.raises(ValueError, match=match):
        nq.min_max_observer(x, "google", bits)
    with pytest.raises(ValueError, match=match):
        _moving(device, _x(), quantization_bit=bits)
    for fn in _fake_fns():
        with pytest.raises(ValueError, match=match):
            fn(x, s, zp, "google", bits)
    with pytest.raises(ValueError, match=match):
        nq.dequantize(device.put(np.zeros(2, np.int8)), s, zp, "google", bits)


@pytest.mark.parametrize("bits", BAD_BITS, ids=repr)
def test_bad_bits_classes(bits):
    for cls in (nq.MinMaxObserver, nq.MovingAverageMinMaxObserver, nq.FakeQuantization,
                nq.Quantization):
        with pytest.raises(ValueError, match=r"(?s)\b2\b.*\b16\b"):
            cls(quantization_bit=bits)


@pytest.mark.parametrize("bits", [2, 16, np.int64(9), np.uint8(3)], ids=repr)
def test_good_bits(device, bits):
    x = _x()
    s, zp = (device.get(a) for a in nq.min_max_observer(device.put(x), "google", bits))
    assert_same(s, oracle.min_max_observer(x, "google", int(bits))[0], "scale")


# --------------------------------------------------------------------------- §5 row 6: dtypes
def _bad_dtype_message(dtype):
    return re.escape("numba_quant needs a float16, float32 or float64 array; got dtype "
                     f"{np.dtype(dtype)}")


BAD_DTYPES = [np.int8, np.int32, np.int64, np.uint8, np.bool_, np.complex64, np.complex128,
              object]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
def test_bad_input_dtype(dtype):
    x = np.ones((2, 3), dtype)
    s, zp = _params()
    match = _bad_dtype_message(dtype)
    with pytest.raises(TypeError, match=match):
        nq.min_max_observer(x)
    with pytest.raises(TypeError, match=match):
        nq.MinMaxObserver()(x)
    with pytest.raises(TypeError, match=match):
        nq.moving_average_min_max_observer(x, 0, np.zeros(1, F32), np.zeros(1, F32), True, 1)
    for fn in _fake_fns():
        with pytest.raises(TypeError, match=match):
            fn(x, s, zp)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.complex64],
                         ids=lambda d: np.dtype(d).name)
def test_bad_input_dtype_gpu(dtype):
    from devices import Device
    gpu = Device("gpu")
    x = gpu.put(np.ones((2, 3), dtype))
    with pytest.raises(TypeError, match=_bad_dtype_message(dtype)):
        nq.min_max_observer(x)
    with pytest.raises(TypeError, match=_bad_dtype_message(dtype)):
        nq.fake_quantization(x, *(gpu.put(a) for a in _params()))


def test_python_lists_are_arrays():
    # anything np.asarray accepts runs on the CPU: a list of floats is float64
    s, zp = nq.min_max_observer([[1.0, -2.0], [0.5, 4.0]])
    assert isinstance(s, np.ndarray) and s.dtype == np.float64 and s.shape == (1,)
    assert s[0] == np.float64(4.0) / np.float64(127)
    with pytest.raises(TypeError, match=_bad_dtype_message(np.asarray([1, 2, 3]).dtype)):
        nq.min_max_observer([1, 2, 3])      # integers


# --------------------------------------------------------------------------- §5 row 7: float16
def test_float16_computed_in_float32(device):
    x16 = _x((3, 5), np.float16)
    for per_layer in (True, False):
        s, zp = (device.get(a) for a in nq.min_max_observer(device.put(x16),
                                                             per_layer_quantization=per_layer))
        assert s.dtype == np.float32 and zp.dtype == np.float32
        exp = oracle.min_max_observer(x16.astype(np.float32), per_layer_quantization=per_layer)
        assert_same(s, exp[0], "scale")
    s, zp = (a.astype(np.float32) for a in _params())
    f = device.get(nq.fake_quantization(device.put(x16), device.put(s), device.put(zp)))
    assert f.dtype == np.float32 and f.shape == x16.shape
    assert_same(f, oracle.fake_quantization(x16.astype(np.float32), s, zp), "fake")


def test_float16_dequantize_dtype(device):
    # dtype None -> the float dtype of scale; float16 scale -> float32
    # symmetric: code * scale, so [1, -2, 3] * 0.5 = [0.5, -1, 1.5]; * 0.25 = [0.25, -0.5, 0.75]
    q = np.array([1, -2, 3], np.int8)
    s16 = np.array([0.5], np.float16)
    out = device.get(nq.dequantize(device.put(q), device.put(s16),
                                   device.put(np.zeros(1, np.float16))))
    assert out.dtype == np.float32 and list(out) == [0.5, -1.0, 1.5]
    s64 = np.array([0.25], np.float64)
    out = device.get(nq.dequantize(device.put(q), device.put(s64),
                                   device.put(np.zeros(1, np.float64))))
    assert out.dtype == np.float64 and list(out) == [0.25, -0.5, 0.75]
    out = device.get(nq.dequantize(device.put(q), device.put(s64),
                                   device.put(np.zeros(1, np.float64)), dtype=np.float32))
    assert out.dtype == np.float32


# --------------------------------------------------------------------------- §5 row 8: 0-d
def test_zero_d(device):
    x = np.array(-2.5, F32)
    s, zp = (device.get(a) for a in nq.min_max_observer(device.put(x)))
    # amax 2.5 -> scale 2.5 / 127
    assert s.shape == (1,) and s[0] == F32(2.5) / F32(127) and zp[0] == 0
    zero_d = "per-channel quantization needs an array with at least one axis; got a 0-d array"
    with pytest.raises(ValueError, match=re.escape(zero_d)):
        nq.min_max_observer(device.put(x), per_layer_quantization=False)
    with pytest.raises(ValueError, match=re.escape(zero_d)):
        nq.MinMaxObserver(per_layer_quantization=False)(device.put(x))
    f = device.get(nq.fake_quantization(device.put(x), device.put(s), device.put(zp)))
    assert f.shape == () and f.dtype == np.float32
    assert_same(f, oracle.fake_quantization(x, s, zp), "fake")
    with pytest.raises(ValueError, match=re.escape(zero_d)):   # per-channel parameters
        nq.fake_quantization(device.put(x), device.put(np.ones(3, F32)),
                             device.put(np.zeros(3, F32)))


# --------------------------------------------------------------------------- spec: parameters
@pytest.mark.parametrize("bad", [-0.5, np.nan, np.inf, -np.inf])
def test_bad_scale_google(device, bad):
    x = device.put(_x((3, 4)))
    s = device.put(np.array([0.1, bad, 0.2], F32))
    zp = device.put(np.zeros(3, F32))
    for fn in _fake_fns():
        with pytest.raises(ValueError, match="scale"):
            fn(x, s, zp)
    with pytest.raises(ValueError, match="scale"):
        nq.dequantize(device.put(np.zeros((3, 4), np.int8)), s, zp)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_bad_shift_cambricon(device, bad):
    x = device.put(_x((3, 4)))
    s = device.put(np.array([-3.0, bad, -5.0], F32))
    zp = device.put(np.zeros(3, F32))
    for fn in _fake_fns():
        with pytest.raises(ValueError, match="shift|scale"):
            fn(x, s, zp, "cambricon")


@pytest.mark.parametrize("dtype, limit", [(np.float32, 128.0), (np.float64, 1024.0)])
def test_shift_with_an_infinite_step_cambricon(device, dtype, limit):
    # 2**trunc(shift) overflows the dtype from its largest exponent + 1 on (semantics
    # §5.8): refused rather than NaN results; the largest finite step still works.
    x = device.put(np.array([[1.0, -2.0], [0.5, 3.0]], dtype))
    zp = device.put(np.zeros(2, dtype))
    for shift in (limit, limit + 0.5, 1e30):
        s = device.put(np.array([-3.0, shift], dtype))
        for fn in _fake_fns():
            with pytest.raises(ValueError, match=f"shift .* must be below {int(limit)}"):
                fn(x, s, zp, "cambricon")
    s = device.put(np.array([limit - 1, limit - 0.5], dtype))
    f = device.get(nq.fake_quantization(x, s, zp, "cambricon"))
    # steps 2**(limit-1): every |x| here is below half a step, so every code is a zero of
    # x's sign, and so is its value
    expected = np.array([[0.0, -0.0], [0.0, 0.0]], dtype)
    assert np.array_equal(f.view(np.uint8), expected.view(np.uint8))


def test_negative_shift_cambricon_is_fine(device):
    # a cambricon shift is an exponent: negative is normal (2^-3 = 0.125 here)
    x = np.array([0.3, -0.05, 1.0], F32)
    s = np.array([-3.0], F32)
    zp = np.zeros(1, F32)
    f = device.get(nq.fake_quantization(device.put(x), device.put(s), device.put(zp),
                                        "cambricon"))
    # 0.3 / 0.125 = 2.4 -> 2 -> 0.25; -0.05 / 0.125 = -0.4 -> -0 -> 0; 1.0 -> 8 -> 1.0
    assert list(f) == [0.25, 0.0, 1.0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_bad_zero_point(device, bad):
    x = device.put(_x((3, 4)))
    s = device.put(np.full(3, 0.1, F32))
    zp = device.put(np.array([0.0, bad, 1.0], F32))
    for fn in _fake_fns():
        with pytest.raises(ValueError, match="zero_point"):
            fn(x, s, zp, "google", 8, "affine")


def test_scale_zero_point_length_mismatch(device):
    x = device.put(_x((3, 5)))
    s = device.put(np.full(3, 0.1, F32))
    zp = device.put(np.zeros(5, F32))
    for fn in _fake_fns():
        with pytest.raises(ValueError, match=_both(3, 5)):
            fn(x, s, zp, axis=0)
    with pytest.raises(ValueError, match=_both(3, 5)):
        nq.dequantize(device.put(np.zeros((3, 5), np.int8)), s, zp)


def test_per_channel_scale_size_mismatch(device):
    x = device.put(_x((3, 5)))
    s = device.put(np.full(4, 0.1, F32))
    zp = device.put(np.zeros(4, F32))
    for axis in (0, 1, -1):
        n = (3, 5)[axis]
        for fn in _fake_fns():
            with pytest.raises(ValueError, match=_both(4, n)):
                fn(x, s, zp, axis=axis)
        with pytest.raises(ValueError, match=_both(4, n)):
            nq.dequantize(device.put(np.zeros((3, 5), np.int8)), s, zp, axis=axis)


def test_moving_average_state_size_mismatch(device):
    x = _x((3, 5))
    T = F32
    with pytest.raises(ValueError, match=_both(2, 3)):
        nq.moving_average_min_max_observer(device.put(x), 0, device.put(np.zeros(2, T)),
                                           device.put(np.zeros(3, T)), True, 1)
    with pytest.raises(ValueError, match=_both(4, 3)):   # per-channel state vs axis 0
        nq.moving_average_min_max_observer(device.put(x), 0, device.put(np.zeros(4, T)),
                                           device.put(np.zeros(4, T)), True, 1)


@pytest.mark.parametrize("axis", [2, -3, 10])
def test_axis_out_of_range(device, axis):
    # numpy's AxisError (a ValueError and an IndexError), with numpy's message
    x = device.put(_x((3, 5)))
    match = rf"axis {axis} is out of bounds for array of dimension 2"
    with pytest.raises(np.exceptions.AxisError, match=match):
        nq.min_max_observer(x, per_layer_quantization=False, axis=axis)
    s = device.put(np.full(3, 0.1, F32))
    zp = device.put(np.zeros(3, F32))
    with pytest.raises(np.exceptions.AxisError, match=match):
        nq.fake_quantization(x, s, zp, axis=axis)


@pytest.mark.gpu
def test_moving_average_state_on_another_device():
    # the state must be on the same device as x (it is updated in place there)
    from devices import Device
    gpu = Device("gpu")
    x = _x((3, 4))
    with pytest.raises(ValueError, match="all arrays must be on the same device: the input "
                                         "is a GPU array but ndarray is not"):
        nq.moving_average_min_max_observer(gpu.put(x), 0, np.zeros(1, F32), np.zeros(1, F32),
                                           True, 1)


# --------------------------------------------------------------------------- arguments of
# the moving average, codes and saved state (errors the coverage run found untested)
@pytest.mark.parametrize("momentum", [1.5, -0.1])
def test_momentum_outside_0_1(momentum):
    match = re.escape(f"momentum must be between 0 and 1; got {momentum}")
    with pytest.raises(ValueError, match=match):
        nq.MovingAverageMinMaxObserver(momentum=momentum)
    with pytest.raises(ValueError, match=match):
        nq.moving_average_min_max_observer(_x(), 0, np.zeros(1, F32), np.zeros(1, F32), True,
                                           1, momentum=momentum)


def test_moving_average_state_and_step_types():
    x = _x()
    with pytest.raises(TypeError, match=re.escape(
            "moving_max must have dtype float32 like the computation; got float64")):
        nq.moving_average_min_max_observer(x, 0, np.zeros(1, np.float64),
                                           np.zeros(1, np.float64), True, 1)
    with pytest.raises(TypeError, match=re.escape(
            "current_train_step must be an int or a one-element integer array; got 0.5")):
        nq.moving_average_min_max_observer(x, 0.5, np.zeros(1, F32), np.zeros(1, F32), True, 1)


def test_dequantize_complex_codes():
    with pytest.raises(TypeError,
                       match=re.escape("codes must be integers or floats; got dtype complex64")):
        nq.dequantize(np.ones(3, np.complex64), np.full(1, 0.5, F32), np.zeros(1, F32))


def test_state_dict_missing_key():
    state = nq.MinMaxObserver().state_dict()
    del state["quantization_bit"]
    with pytest.raises(ValueError, match=re.escape("state is missing quantization_bit")):
        nq.MinMaxObserver().load_state_dict(state)
