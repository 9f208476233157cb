"""Inputs chosen where a careless kernel gives other bits: floor(log2) just below powers of
two (a GPU's log2f may round differently from the CPU's; docs/semantics.md §3.4), moving
averages whose ``m * momentum + a * (1 - momentum)`` differs when fused into one
multiply-add (a real GPU contracts it unless told not to; §4.2), and the signs of zeros
(§7): zero bounds in either order through every CPU reduction route, zero ranges, -0.0
inputs. In the simulator the GPU tests run the CPU's math; on a real GPU they are the
checks that matter. Each runs many cases at once, one per channel."""
import numpy as np
import pytest

import oracle
from golden import assert_same, bits

nq = pytest.importorskip("numba_quant")


def _near_powers_of_two(T):
    """Per-channel amax values around every power of two of T (normal range)."""
    info = np.finfo(T)
    lo_e, hi_e = int(info.minexp), int(info.maxexp) - 1
    vals = []
    for k in range(lo_e, hi_e + 1, 1 if T == np.float32 else 7):
        p = T(np.ldexp(1.0, k))
        below = np.nextafter(p, T(0))
        vals += [p, below, np.nextafter(below, T(0)), np.nextafter(p, T(np.inf))]
    v = np.array(vals, T)
    return v[np.isfinite(v) & (v > 0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cambricon_floor_log2_near_powers_of_two(device, dtype):
    """§3.4: floor(log2(amax)) with log2 rounded to T."""
    amax = _near_powers_of_two(dtype)
    # channel c holds (amax_c, -amax_c / 2): its amax is amax_c
    x = np.stack([amax, -amax / dtype(2)], axis=1).astype(dtype)
    for bit in (2, 8, 16):
        s, zp = (device.get(a) for a in nq.min_max_observer(device.put(x), "cambricon", bit,
                                                             "symmetric", False))
        exp = oracle.min_max_observer(x, "cambricon", bit, "symmetric", False)
        assert_same(s, exp[0], f"shift, {bit} bits")
        assert_same(zp, exp[1], "zero_point")
    # by hand: 7.9999995f (the float32 just below 8) has log2f == 3.0, so floor 3, and
    # shift 3 - (8 - 2) = -3; in float64 log2 is 2.99999991..., floor 2, shift -4
    if dtype == np.float32:
        x1 = np.array([np.nextafter(np.float32(8), np.float32(0))], np.float32)
        s = device.get(nq.min_max_observer(device.put(x1), "cambricon", 8)[0])
        assert s[0] == -3


def test_cambricon_float64_log2_rounding_up_to_a_power_of_two():
    """§3.4 in float64: a value ``k`` ulps below ``2**E`` has ``log2`` rounded up to ``E``
    while ``k`` stays below about half the spacing of float64 at ``E`` (in units of
    ``2**-53``, growing with ``|E|``): values from 1 to 4097 ulps below powers of two from
    2**-1000 to 2**1000, so that each exponent's boundary lies among them."""
    ks = sorted({k + d for j in range(13) for k in (1 << j,) for d in (-1, 0, 1)} - {0})
    amax = np.array([np.ldexp(1.0 - k * 2.0 ** -53, e) for e in range(-1000, 1001, 37)
                     for k in ks])
    x = np.stack([amax, -amax / 2], axis=1)
    s, zp = nq.min_max_observer(x, "cambricon", 8, "symmetric", False)
    exp = oracle.min_max_observer(x, "cambricon", 8, "symmetric", False)
    assert_same(s, exp[0], "shift")
    assert_same(zp, exp[1], "zero_point")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moving_average_cambricon_log2_near_powers_of_two(device, dtype):
    """§4.3: the moving-average shift from a zero state (the state becomes amax)."""
    amax = _near_powers_of_two(dtype)
    n = amax.size
    x = np.stack([amax, -amax / dtype(2)], axis=1)
    mm, mn = device.put(np.zeros(n, dtype)), device.put(np.zeros(n, dtype))
    # zero state: the state becomes amax itself; shift = floor(log2(amax)) - (b - 2)
    s, zp = nq.moving_average_min_max_observer(device.put(x), 0, mm, mn, True, 1, "cambricon",
                                               8, "symmetric", 0.9)
    exp = oracle.moving_average_min_max_observer(x, 0, np.zeros(n, dtype), np.zeros(n, dtype),
                                                 True, 1, "cambricon", 8, "symmetric", 0.9)
    assert_same(device.get(mm), amax, "state = amax")
    assert_same(device.get(s), exp[0], "shift")


def _fma_sensitive(T, momentum, n, seed):
    """(state, a) pairs where round(round(s*m) + round(a*(1-m))) differs from a fused
    round(s*m + round(a*(1-m))) or round(round(s*m) + a*(1-m))."""
    rng = np.random.default_rng(seed)
    m = T(np.float32(momentum))
    om = T(np.float32(1) - np.float32(momentum))
    wide = np.longdouble if np.finfo(np.longdouble).nmant > 52 else None
    states, news = [], []
    while len(states) < n:
        s_ = T(rng.uniform(0.5, 4.0))
        a_ = T(rng.uniform(0.5, 4.0))
        separate = (s_ * m) + (a_ * om)
        if T == np.float32:
            f1 = T(np.float64(s_) * np.float64(m) + np.float64(a_ * om))
            f2 = T(np.float64(s_ * m) + np.float64(a_) * np.float64(om))
        elif wide is not None:
            f1 = T(wide(s_) * wide(m) + wide(a_ * om))
            f2 = T(wide(s_ * m) + wide(a_) * wide(om))
        else:
            return None
        if f1 != separate or f2 != separate:
            states.append(s_)
            news.append(a_)
    return np.array(states, T), np.array(news, T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum", [0.9, 0.95, 0.3])
def test_moving_average_not_fused(device, dtype, momentum):
    """§4.2: the two products of the update rounded separately."""
    found = _fma_sensitive(dtype, momentum, 64, seed=int(momentum * 100))
    if found is None:
        pytest.skip("no extended precision here to find float64 cases")
    state, a = found
    x = np.stack([a, -a / dtype(4)], axis=1)   # channel c: max(|max|, |min|) = a_c
    for scheme in ("symmetric", "affine"):
        st_min = state if scheme == "symmetric" else -state
        mm, mn = device.put(state.copy()), device.put(st_min.copy())
        s, zp = nq.moving_average_min_max_observer(device.put(x), 0, mm, mn, True, 1,
                                                   "google", 8, scheme, momentum)
        exp = oracle.moving_average_min_max_observer(x, 0, state, st_min, True, 1, "google", 8,
                                                     scheme, momentum)
        assert_same(device.get(mm), exp[2], f"{scheme} moving_max")
        assert_same(device.get(mn), exp[3], f"{scheme} moving_min")
        assert_same(device.get(s), exp[0], f"{scheme} scale")
        assert_same(device.get(zp), exp[1], f"{scheme} zero_point")


# --------------------------------------------------------------------------- signed zeros
NEG_ZERO = {np.float32: 0x80000000, np.float64: 0x8000000000000000}


def _zero_bound_channels(T):
    """(x, expected zero point bits) for 8 channels along axis 1 of a (3, 8, 5) array.

    Channels 0-3 have the minimum 0 as -0.0 then +0.0, +0.0 then -0.0, -0.0 only and
    +0.0 only; 4 has a minimum a little above 0 and 5 one a little below (affine 8 bits,
    range about [0, 2]: the scale is about 1/127); 6 and 7 are all zeros of both signs
    (a zero range). The zero point is -rint(min / scale) with a zero min taken as +0.0,
    so -0.0 for channels 0-4 and +0.0 for 5; a zero range gives +0.0 (§7.1).
    """
    x = np.tile(np.linspace(0.25, 2.0, 15, dtype=T).reshape(3, 1, 5), (1, 8, 1))
    x[0, 0, 1], x[2, 0, 3] = T(-0.0), T(0.0)
    x[0, 1, 1], x[2, 1, 3] = T(0.0), T(-0.0)
    x[1, 2, 2] = T(-0.0)
    x[1, 3, 2] = T(0.0)
    x[1, 4, 2] = T(0.001)
    x[1, 5, 2] = T(-0.001)
    x[:, 6:, :] = T(0.0)
    x[0, 6:, ::2] = T(-0.0)
    neg = NEG_ZERO[T]
    return x, [neg] * 5 + [0, 0, 0]


# Settings of numba_quant._host.tuning that send a (3, 8, 5) per-channel reduction (and a
# 120-element per-layer one) down each CPU kernel; see numba_quant/_cpu.py.
CPU_ROUTES = {
    "one_call": {},
    "periodic": {"SMALL": 0},
    "short_runs": {"SMALL": 0, "SHORT_RUNS_PERIOD": 0},
    "by_channel": {"SMALL": 0, "LONG_INNER": 0},
    "parallel": {"SMALL": 0, "LONG_INNER": 0, "PARALLEL_THRESHOLD": 0, "MIN_TASK_ELEMENTS": 1,
                 "PARALLEL_CHANNELS": 0},
}


def _zero_point_checks(device, T, nonfinite):
    x, expected = _zero_bound_channels(T)
    if nonfinite == "omit":   # a NaN sends the reduction through its second pass
        x[2, :, 4] = T(np.nan)
    for formula, scheme in (("google", "affine"), ("google", "symmetric"),
                            ("cambricon", "symmetric")):
        s, zp = (device.get(a) for a in nq.min_max_observer(
            device.put(x), formula, 8, scheme, False, axis=1, nonfinite=nonfinite))
        exp_s, exp_zp = oracle.min_max_observer(x, formula, 8, scheme, False, axis=1,
                                                nonfinite=nonfinite)
        assert_same(s, exp_s, f"{formula} {scheme} scale")
        assert_same(zp, exp_zp, f"{formula} {scheme} zero_point")
        # by hand: every zero scale and zero point is +0.0 except the affine zero points
        assert bits(s[6:]).tolist() == [0, 0], "zero range: scale +0.0"
        assert bits(zp).tolist() == (expected if scheme == "affine" else [0] * 8)
    # per layer: the minimum is a zero of either sign (channels 0-3), so -0.0
    s, zp = (device.get(a) for a in nq.min_max_observer(
        device.put(x[:, :4]), "google", 8, "affine", nonfinite=nonfinite))
    assert bits(zp).tolist() == [NEG_ZERO[T]]


@pytest.mark.parametrize("route", list(CPU_ROUTES))
def test_zero_point_sign_cpu_routes(monkeypatch, route):
    """§7.1: a zero min gives the zero point -0.0 whichever zero a CPU route keeps."""
    from numba_quant._host import tuning as _tuning
    for name, value in CPU_ROUTES[route].items():
        monkeypatch.setattr(_tuning, name, value)
    from devices import Device
    for nonfinite in ("raise", "omit"):
        _zero_point_checks(Device("cpu"), np.float32, nonfinite)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_point_sign(device, dtype):
    """§7.1-7.2 on both devices and both float types (default routes)."""
    _zero_point_checks(device, dtype, "raise")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moving_average_zero_signs(device, dtype):
    """§7.1-7.2: a zero bound enters the state as +0.0; a caller's -0.0 state is read as
    +0.0 (scale +0.0) and, when not updating, left as it is."""
    T = dtype
    x, expected = _zero_bound_channels(T)
    n = x.shape[1]
    mm, mn = device.put(np.zeros(n, T)), device.put(np.zeros(n, T))
    s, zp = nq.moving_average_min_max_observer(device.put(x), 0, mm, mn, True, 5, "google",
                                               8, "affine", 0.9, axis=1)
    exp = oracle.moving_average_min_max_observer(x, 0, np.zeros(n, T), np.zeros(n, T), True,
                                                 5, "google", 8, "affine", 0.9, axis=1)
    for got, want, name in zip((s, zp, mm, mn), exp, ("scale", "zero_point", "max", "min")):
        assert_same(device.get(got), want, name)
    assert bits(device.get(mn)).tolist()[:4] == [0] * 4, "state min of a zero bound: +0.0"
    assert bits(device.get(zp)).tolist() == expected
    # A caller's state of -0.0 (and a mixed one), read in evaluation mode.
    state = np.array([-0.0, -0.0, 0.0], T), np.array([-0.0, 0.0, -0.0], T)
    for scheme in ("affine", "symmetric"):
        mm, mn = device.put(state[0].copy()), device.put(state[1].copy())
        s, zp = nq.moving_average_min_max_observer(device.put(x[:, :3]), 9, mm, mn, False, 5,
                                                   "google", 8, scheme, axis=1)
        assert bits(device.get(s)).tolist() == [0, 0, 0], f"{scheme} scale"
        assert bits(device.get(zp)).tolist() == [0, 0, 0], f"{scheme} zero_point"
        assert_same(device.get(mm), state[0], "moving_max untouched")
        assert_same(device.get(mn), state[1], "moving_min untouched")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_element_wise_zero_signs(device, dtype):
    """§7.3: the codes and values of -0.0, +0.0 and values that round to a zero code keep
    OneFlow's signs: symmetric and cambricon add no zero point, affine adds it."""
    T = dtype
    x = np.array([-0.0, 0.0, -0.1, 0.1, -0.5, 0.5, -0.7, 1.0, -1e-30], T)
    neg = NEG_ZERO[T]
    for formula, scheme, s, zp, codes_by_hand in (
            # rint(x / 1): -0.0 +0.0 -0.0 +0.0 -0.0 +0.0 -1 1 -0.0
            ("google", "symmetric", 1.0, 0.0, [neg, 0, neg, 0, neg, 0, None, None, neg]),
            # shift 0 is the step 1: the same codes
            ("cambricon", "symmetric", 0.0, 0.0, [neg, 0, neg, 0, neg, 0, None, None, neg]),
            # rint(x + 0.0): the -0.0 input gives +0.0; the clamp keeps the other -0.0 codes
            ("google", "affine", 1.0, 0.0, [0, 0, neg, 0, neg, 0, 0, None, neg]),
            # rint(x + -0.0) keeps every sign
            ("google", "affine", 1.0, -0.0, [neg, 0, neg, 0, neg, 0, 0, None, neg])):
        args = (np.array([s], T), np.array([zp], T), formula, 4, scheme)
        dargs = tuple(device.put(a) for a in args[:2]) + args[2:]
        q = device.get(nq.quantization(device.put(x), *dargs))
        assert_same(q, oracle.quantization(x, *args), f"{formula} {scheme} {zp} codes")
        shown = [b for b, want in zip(bits(q).tolist(), codes_by_hand) if want is not None]
        assert shown == [w for w in codes_by_hand if w is not None], (formula, scheme, zp)
        f = device.get(nq.fake_quantization(device.put(x), *dargs))
        assert_same(f, oracle.fake_quantization(x, *args), f"{formula} {scheme} {zp} fake")
        # integer codes have no -0.0: decoding gives +0.0 where fake quantization has -0.0
        codes = nq.quantize(device.put(x), *dargs)
        back = device.get(nq.dequantize(codes, *dargs))
        assert_same(back, np.where(f == 0, T(0), f), f"{formula} {scheme} {zp} round trip")
    # scale 0: code +0.0, and the value (0 - zp) * 0: -0.0 for a positive zero point
    x = np.array([-1.0, -0.0, np.nan, 2.0], T)
    for zp, value_bits in ((0.0, 0), (3.0, neg)):
        args = (np.zeros(1, T), np.array([zp], T), "google", 8, "affine")
        dargs = tuple(device.put(a) for a in args[:2]) + args[2:]
        q = device.get(nq.quantization(device.put(x), *dargs))
        f = device.get(nq.fake_quantization(device.put(x), *dargs))
        assert_same(q, oracle.quantization(x, *args), "scale 0 codes")
        assert_same(f, oracle.fake_quantization(x, *args), "scale 0 fake")
        assert bits(q[[0, 1, 3]]).tolist() == [0, 0, 0] and np.isnan(q[2])
        assert bits(f[[0, 1, 3]]).tolist() == [value_bits] * 3 and np.isnan(f[2])
