"""Inputs chosen where a careless kernel gives other bits: floor(log2) just below powers of
two (a GPU's log2f may round differently from the CPU's), and moving averages whose
``m * momentum + a * (1 - momentum)`` differs when fused into one multiply-add (a real GPU
contracts it unless told not to). In the simulator these run the CPU's math; on a real GPU
they are the checks that matter. Each runs many cases at once, one per channel."""
import numpy as np
import pytest

import oracle
from golden import assert_same

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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moving_average_cambricon_log2_near_powers_of_two(device, dtype):
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
    found = _fma_sensitive(dtype, momentum, 64, seed=int(momentum * 100))
    if found is None:
        pytest.skip("no extended precision here to find float64 cases")
    state, a = found
    n = state.size
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
