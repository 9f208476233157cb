"""Hypothesis property tests of the CPU and the GPU path against the numpy oracle.

Each property is one function ``check_*(device, data)``; ``both_devices`` turns it into
``test_*_cpu`` and ``test_*_gpu``. The GPU variant (CUDA simulator on a machine without a
GPU: milliseconds per simulated thread) draws tiny arrays and fewer examples.
"""

import numpy as np
import pytest
from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import oracle
import routes
from devices import SIMULATOR, hypothesis_on_both_devices
from golden import assert_same

nq = pytest.importorskip("numba_quant")

DTYPES = (np.float16, np.float32, np.float64)
# (formula, scheme): cambricon ignores the scheme; both spellings are drawn for it.
CONFIGS = (("google", "symmetric"), ("google", "affine"), ("cambricon", "symmetric"),
           ("cambricon", "affine"))
# GPU examples are tiny in the CUDA simulator (milliseconds per simulated thread).
MAX_SIZE = {"cpu": 240, "gpu": 12 if SIMULATOR else 240}
# Largest |value| exponent per dtype, low enough that max - min cannot overflow.
EXP_RANGE = {np.float16: (-24, 14), np.float32: (-149, 125), np.float64: (-1074, 1021)}


# The simulator costs milliseconds per simulated thread: a quarter of the examples there.
both_devices = hypothesis_on_both_devices(
    cpu_examples=settings.default.max_examples,
    gpu_examples=max(4, settings.default.max_examples // 4 if SIMULATOR
                     else settings.default.max_examples))


# --------------------------------------------------------------------------- strategies
@st.composite
def shapes(draw, device, min_dims=0, max_dims=5):
    ndim = draw(st.integers(min_dims, max_dims))
    budget = MAX_SIZE[device.name]
    dims = []
    for _ in range(ndim):
        side = draw(st.integers(1, max(1, min(6, budget))))
        dims.append(side)
        budget //= side
    return tuple(dims)


def _fill(draw, dtype, shape):
    """Finite values of ``dtype``: tiny to huge, ties, duplicates, constants."""
    lo_e, hi_e = EXP_RANGE[dtype]
    e = draw(st.integers(lo_e, hi_e), label="exponent")
    kind = draw(st.sampled_from(["floats", "normal", "halves", "constant", "positive"]),
                label="kind")
    bound = float(np.ldexp(1.0, e))
    width = np.dtype(dtype).itemsize * 8
    if kind == "floats":
        elements = st.floats(-bound, bound, width=width, allow_nan=False, allow_infinity=False)
        return draw(hnp.arrays(dtype, shape, elements=elements))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1), label="seed"))
    if kind == "normal":
        x = rng.standard_normal(shape) * bound / 4
    elif kind == "halves":  # multiples of a power of two / 2: exact ties for power-of-2 scales
        x = rng.integers(-300, 301, size=shape) * np.ldexp(1.0, max(e - 9, lo_e))
    elif kind == "positive":  # all of one sign: affine zero points far from 0
        x = (1 + rng.random(shape)) * bound / 2
        if draw(st.booleans()):
            x = -x
    else:
        x = np.full(shape, draw(st.sampled_from([0.0, bound, -bound / 3])))
    with np.errstate(over="ignore", under="ignore"):
        x = np.asarray(x, dtype=np.float64).astype(dtype)
    if x.size and draw(st.booleans(), label="signed zeros"):
        # -0.0 and +0.0 among the values (one may be the minimum or the maximum)
        x = np.array(x)
        flat = x.reshape(-1)
        for p in draw(st.lists(st.integers(0, x.size - 1), min_size=1, max_size=4)):
            flat[p] = dtype(draw(st.sampled_from([-0.0, 0.0])))
    assert np.isfinite(x).all()
    return x


LAYOUTS = ("c", "fortran", "strided", "negative", "byteswapped", "byteswapped_strided")


def laid_out(data, device, x):
    """``x``'s values in a drawn memory layout (numpy input only: a device array is
    copied contiguous by ``device.put``).

    Strided: a view of every second element along one axis of a larger array; negative:
    a reversed view along one axis; byteswapped: the non-native byte order.
    """
    x = np.asarray(x)
    if device.gpu or x.ndim == 0:
        return x
    layout = data.draw(st.sampled_from(LAYOUTS), label="layout")
    if layout.startswith("byteswapped"):
        x = x.astype(x.dtype.newbyteorder())
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout.endswith("strided"):
        k = data.draw(st.integers(0, x.ndim - 1), label="strided axis")
        shape = list(x.shape)
        shape[k] *= 2
        base = np.zeros(shape, x.dtype)
        idx = [slice(None)] * x.ndim
        idx[k] = slice(None, None, 2)
        base[tuple(idx)] = x
        x = base[tuple(idx)]
    elif layout == "negative":
        k = data.draw(st.integers(0, x.ndim - 1), label="reversed axis")
        idx = [slice(None)] * x.ndim
        idx[k] = slice(None, None, -1)
        x = np.ascontiguousarray(x[tuple(idx)])[tuple(idx)]
    note(f"layout {layout}: strides {x.strides}, dtype {x.dtype.str}")
    return x


@st.composite
def arrays(draw, device, dtype=None, shape=None, min_dims=0):
    dtype = draw(st.sampled_from(routes.drawable_dtypes(DTYPES))) if dtype is None else dtype
    shape = draw(shapes(device, min_dims=min_dims)) if shape is None else shape
    x = _fill(draw, dtype, shape)
    return x


def constant_channel(draw, x, axis):
    """Maybe make one slice along ``axis`` constant (affine: a zero-range channel)."""
    if x.ndim == 0 or not draw(st.booleans(), label="constant channel"):
        return x
    x = x.copy()
    i = draw(st.integers(0, x.shape[axis] - 1))
    idx = [slice(None)] * x.ndim
    idx[axis] = i
    x[tuple(idx)] = x[tuple(idx)].flat[0]
    return x


@st.composite
def qconfig(draw):
    formula, scheme = draw(st.sampled_from(CONFIGS))
    return formula, draw(st.integers(2, 16)), scheme


def _axis(draw, ndim):
    return draw(st.integers(-ndim, ndim - 1)) if ndim else 0


def _oracle_or_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs), None
    except oracle.OracleError as e:
        return None, e


def _same_many(actual, expected, names):
    for a, e, n in zip(actual, expected, names):
        assert_same(a, e, n)


# --------------------------------------------------------------------------- min_max_observer
@both_devices
def check_min_max_observer(device, data):
    x = data.draw(arrays(device))
    formula, bit, scheme = data.draw(qconfig())
    per_layer = x.ndim == 0 or data.draw(st.booleans())
    axis = _axis(data.draw, x.ndim)
    x = constant_channel(data.draw, x, axis)
    x = laid_out(data, device, x)
    note(f"x={x!r} {formula} {bit} {scheme} per_layer={per_layer} axis={axis}")
    exp = oracle.min_max_observer(x, formula, bit, scheme, per_layer, axis=axis)
    got = nq.min_max_observer(device.put(x), formula, bit, scheme, per_layer, axis=axis)
    _same_many([device.get(g) for g in got], exp, ("scale", "zero_point"))
    T = oracle.compute_dtype(x.dtype)
    n = 1 if per_layer else x.shape[axis]
    assert exp[0].dtype == T and exp[0].shape == (n,)


@both_devices
def check_min_max_observer_class(device, data):
    x = data.draw(arrays(device, min_dims=1))
    formula, bit, scheme = data.draw(qconfig())
    per_layer = data.draw(st.booleans())
    axis = _axis(data.draw, x.ndim)
    x = laid_out(data, device, x)
    obs = nq.MinMaxObserver(formula, bit, scheme, per_layer, axis=axis)
    exp = oracle.min_max_observer(x, formula, bit, scheme, per_layer, axis=axis)
    got = obs(device.put(x))
    _same_many([device.get(g) for g in got], exp, ("scale", "zero_point"))


@both_devices
def check_affine_zero_point_ties(device, data):
    """min / scale exactly k + 0.5: the observer rounds the zero point half to even."""
    dtype = data.draw(st.sampled_from(routes.drawable_dtypes(DTYPES)))
    bit = data.draw(st.integers(2, 6 if dtype == np.float16 else 12))  # lo, hi exact in dtype
    e = data.draw(st.integers(-8, 3))
    k = data.draw(st.integers(-40, 40))
    s = np.ldexp(1.0, e)
    lo = (k + 0.5) * s
    hi = lo + (2 ** bit - 1) * s       # scale = (hi - lo) / (2^b - 1) = s exactly
    n = MAX_SIZE[device.name]
    mid = np.linspace(lo, hi, num=min(n, 7))
    x = np.concatenate([[lo, hi], mid]).astype(dtype)
    assert x[0] == lo and x[1] == hi
    exp = oracle.min_max_observer(x, "google", bit, "affine")
    assert exp[0][0] == s and exp[1][0] == -np.rint(k + 0.5)   # -rint(k + 0.5): ties to even
    got = nq.min_max_observer(device.put(x), "google", bit, "affine")
    _same_many([device.get(g) for g in got], exp, ("scale", "zero_point"))


@both_devices
def check_nonfinite(device, data):
    x = data.draw(arrays(device, min_dims=1))
    formula, bit, scheme = data.draw(qconfig())
    per_layer = data.draw(st.booleans())
    axis = _axis(data.draw, x.ndim)
    x = x.copy()
    flat = x.reshape(-1)
    positions = data.draw(st.lists(st.integers(0, x.size - 1), min_size=1, max_size=x.size,
                                   unique=True))
    for p in positions:
        flat[p] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    count = len(positions)
    x = laid_out(data, device, x)
    xd = device.put(x)
    with pytest.raises(ValueError, match=rf"\b{count}\b"):
        nq.min_max_observer(xd, formula, bit, scheme, per_layer, axis=axis)
    exp, err = _oracle_or_error(oracle.min_max_observer, x, formula, bit, scheme, per_layer,
                                axis=axis, nonfinite="omit")
    if err is not None:
        with pytest.raises(ValueError, match="no finite value"):
            nq.min_max_observer(xd, formula, bit, scheme, per_layer, axis=axis,
                                nonfinite="omit")
        return
    got = nq.min_max_observer(xd, formula, bit, scheme, per_layer, axis=axis, nonfinite="omit")
    _same_many([device.get(g) for g in got], exp, ("scale", "zero_point"))


# --------------------------------------------------------------------------- fake quant
def _params(data, x, formula, bit, scheme, per_channel, axis):
    """Scale and zero point: from the observer, tightened, or drawn by a user."""
    T = oracle.compute_dtype(x.dtype).type
    how = data.draw(st.sampled_from(["observer", "tight", "user"]), label="params")
    if how in ("observer", "tight"):
        s, zp = oracle.min_max_observer(np.where(np.isfinite(x), x, 0), formula, bit, scheme,
                                        not per_channel, axis=axis)
        if how == "tight":
            f = T(data.draw(st.sampled_from([2, 3, 4, 8])))
            s = s - T(1) if formula == "cambricon" else s / f   # clamps bite at both ends
            if formula == "google" and scheme == "affine":
                zp = np.rint(zp / f)
        return s.astype(T), zp.astype(T)
    n = x.shape[axis] if per_channel else 1
    if formula == "cambricon":
        s = np.array(data.draw(st.lists(st.floats(-20, 20), min_size=n, max_size=n)), T)
        return s, np.zeros(n, T)
    e = data.draw(st.lists(st.integers(-12, 8), min_size=n, max_size=n))
    m = data.draw(st.lists(st.floats(0.5, 1.0), min_size=n, max_size=n))
    s = (np.array(m) * np.ldexp(1.0, e)).astype(T)
    if data.draw(st.booleans()):
        s[data.draw(st.integers(0, n - 1))] = 0   # a zero-range channel
    if scheme == "affine":
        zp = np.array(data.draw(st.lists(st.integers(-3, 2 ** bit + 2), min_size=n,
                                         max_size=n)), T)
        if data.draw(st.booleans()):
            zp = zp + T(0.25)   # a fractional zero point is used as the float it is
        zp[s == 0] = 0
    else:
        zp = np.zeros(n, T)
    return s, zp


def _code_range(formula, bit, scheme):
    if (formula, scheme) == ("google", "affine"):
        return 0, 2 ** bit - 1
    return -2 ** (bit - 1), 2 ** (bit - 1) - 1


def _cambricon_scale_ok(s, T):
    """The effective scale 2^trunc(shift) neither underflows to 0 nor overflows in T."""
    e = np.trunc(np.asarray(s, np.float64))
    eff = np.ldexp(1.0, e.astype(np.int64)).astype(T)
    return bool(np.all((eff > 0) & np.isfinite(eff)))


def _draw_fake_case(device, data, nonfinite=False):
    x = data.draw(arrays(device))
    formula, bit, scheme = data.draw(qconfig())
    per_channel = x.ndim > 0 and data.draw(st.booleans())
    axis = _axis(data.draw, x.ndim)
    x = constant_channel(data.draw, x, axis)
    if nonfinite and x.size:
        x = x.copy()
        flat = x.reshape(-1)
        for p in data.draw(st.lists(st.integers(0, x.size - 1), min_size=1, max_size=4)):
            flat[p] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    s, zp = _params(data, x, formula, bit, scheme, per_channel, axis)
    T = oracle.compute_dtype(x.dtype).type
    if formula == "cambricon" and not _cambricon_scale_ok(s, T):
        # 2^trunc(shift) is 0 or inf in T: outside the contract's defined cases. Use the
        # nearest defined shift instead of dropping the example.
        s = np.zeros_like(s)
    x = laid_out(data, device, x)
    note(f"x={x!r} s={s!r} zp={zp!r} {formula} {bit} {scheme} axis={axis}")
    return x, s, zp, formula, bit, scheme, axis


def _run_fake(device, x, s, zp, formula, bit, scheme, axis):
    args = (device.put(x), device.put(s), device.put(zp), formula, bit, scheme)
    fake = device.get(nq.fake_quantization(*args, axis=axis))
    quant = device.get(nq.quantization(*args, axis=axis))
    exp_fake = oracle.fake_quantization(x, s, zp, formula, bit, scheme, axis=axis)
    exp_quant = oracle.quantization(x, s, zp, formula, bit, scheme, axis=axis)
    assert_same(fake, exp_fake, "fake")
    assert_same(quant, exp_quant, "quant")
    return exp_quant


@both_devices
def check_fake_quantization(device, data):
    case = _draw_fake_case(device, data)
    q = _run_fake(device, *case)
    x, s, zp, formula, bit, scheme, axis = case
    lo, hi = _code_range(formula, bit, scheme)
    assert np.all((q >= lo) & (q <= hi))


@both_devices
def check_fake_quantization_nonfinite(device, data):
    """NaN in gives NaN out; +-inf clamps like any value (never an error here)."""
    x, s, zp, formula, bit, scheme, axis = _draw_fake_case(device, data, nonfinite=True)
    q = _run_fake(device, x, s, zp, formula, bit, scheme, axis)
    x32 = np.asarray(x)
    assert np.array_equal(np.isnan(q), np.isnan(x32))


@both_devices
def check_fake_quantization_clamps(device, data):
    """Values far beyond the range on both sides clamp to the lowest and highest code."""
    formula, bit, scheme = data.draw(qconfig())
    dtype = data.draw(st.sampled_from(routes.drawable_dtypes(DTYPES)))
    T = oracle.compute_dtype(dtype).type
    if formula == "cambricon":
        s, zp = np.array([data.draw(st.integers(-6, 3))], T), np.zeros(1, T)
        unit = np.ldexp(1.0, int(s[0]))
    else:
        unit = np.ldexp(1.0, data.draw(st.integers(-6, 3)))
        s = np.array([unit], T)
        zp = np.array([data.draw(st.integers(0, 2 ** bit - 1)) if scheme == "affine" else 0],
                      T)
    big = 2.0 ** bit * unit * 4
    x = np.array([-big, -np.inf, big, np.inf, 0.0], dtype=np.float64)
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    q = _run_fake(device, x, s, zp, formula, bit, scheme, 0)
    lo, hi = _code_range(formula, bit, scheme)
    assert list(q[:4]) == [lo, lo, hi, hi]


@both_devices
def check_fake_quantization_ties(device, data):
    """x / s exactly k + 0.5 rounds half to even."""
    formula, bit, scheme = data.draw(qconfig())
    dtype = data.draw(st.sampled_from(routes.drawable_dtypes(DTYPES)))
    T = oracle.compute_dtype(dtype).type
    e = data.draw(st.integers(-6, 3))
    top = 2 ** bit
    ks = data.draw(st.lists(st.integers(-top - 2, top + 2), min_size=1,
                            max_size=MAX_SIZE[device.name]))
    x = ((np.array(ks, np.float64) + 0.5) * np.ldexp(1.0, e)).astype(dtype)
    s = np.array([e if formula == "cambricon" else np.ldexp(1.0, e)], T)
    zp = np.array([data.draw(st.integers(0, 2 ** bit - 1)) if (formula, scheme) ==
                   ("google", "affine") else 0], T)
    if dtype == np.float16:
        x = x[np.isfinite(x)]
        if x.size == 0:
            x = np.array([0.5], dtype)
    q = _run_fake(device, x, s, zp, formula, bit, scheme, 0)
    exact = x.astype(np.float64) / np.ldexp(1.0, e) + float(zp[0])
    tie = (exact - np.floor(exact)) == 0.5
    lo, hi = _code_range(formula, bit, scheme)
    inside = (exact > lo) & (exact < hi)    # not clamped
    assert np.all(q[tie & inside] % 2 == 0)   # ties went to the even neighbour


@both_devices
def check_quantize_dequantize(device, data):
    """Integer codes equal the oracle's; dequantize(quantize(x)) is fake_quantization(x)
    with every -0.0 as +0.0 (integer codes have no sign; docs/semantics.md §5.7)."""
    x, s, zp, formula, bit, scheme, axis = _draw_fake_case(device, data)
    args = (formula, bit, scheme)
    xd, sd, zd = device.put(x), device.put(s), device.put(zp)
    q = nq.quantize(xd, sd, zd, *args, axis=axis)
    qh = device.get(q)
    assert_same(qh, oracle.quantize(x, s, zp, *args, axis=axis), "codes")
    back = device.get(nq.dequantize(q, sd, zd, *args, axis=axis))
    codes = oracle.quantize(x, s, zp, *args, axis=axis)
    assert_same(back, oracle.dequantize(codes, s, zp, *args, axis=axis), "dequantize")
    fake = oracle.fake_quantization(x, s, zp, *args, axis=axis)
    assert_same(back, np.where(fake == 0, fake.dtype.type(0), fake), "round trip")


# --------------------------------------------------------------------------- moving average
MOMENTA = (0.0, 0.3, 0.5, 0.9, 0.95, 0.99)


@both_devices
def check_moving_average(device, data):
    dtype = data.draw(st.sampled_from(routes.drawable_dtypes(DTYPES)))
    shape = data.draw(shapes(device, min_dims=1, max_dims=4))
    formula, bit, scheme = data.draw(qconfig())
    per_channel = data.draw(st.booleans())
    axis = _axis(data.draw, len(shape))
    momentum = data.draw(st.one_of(st.sampled_from(MOMENTA), st.floats(0, 1)))
    stop = data.draw(st.integers(0, 6))
    n = shape[axis] if per_channel else 1
    T = oracle.compute_dtype(dtype)
    if data.draw(st.booleans(), label="zero state"):
        state = (np.zeros(n, T), np.zeros(n, T))
    else:
        a = np.abs(data.draw(arrays(device, dtype=dtype, shape=(n,)))).astype(T)
        state = (a, -a if scheme == "affine" else a.copy())
    mmax_d, mmin_d = device.put(state[0]), device.put(state[1])
    mmax, mmin = state
    step = data.draw(st.integers(0, 3))
    for i in range(data.draw(st.integers(1, 4))):
        x = data.draw(arrays(device, dtype=dtype, shape=shape))
        x = laid_out(data, device, constant_channel(data.draw, x, axis))
        training = data.draw(st.booleans())
        note(f"step {step} training={training} x={x!r}")
        exp = oracle.moving_average_min_max_observer(
            x, step, mmax, mmin, training, stop, formula, bit, scheme, momentum, axis=axis)
        got = nq.moving_average_min_max_observer(
            device.put(x), step, mmax_d, mmin_d, training, stop, formula, bit, scheme,
            momentum, axis=axis)
        _same_many([device.get(g) for g in got], exp[:2], ("scale", "zero_point"))
        _same_many([device.get(mmax_d), device.get(mmin_d)], exp[2:],
                   ("moving_max", "moving_min"))
        mmax, mmin = exp[2], exp[3]
        step += data.draw(st.integers(0, 2))


@both_devices
def check_moving_average_round_half_away(device, data):
    """The moving average rounds the zero point half AWAY from zero (-2.5 gives 3)."""
    dtype = data.draw(st.sampled_from(routes.drawable_dtypes(DTYPES)))
    bit = data.draw(st.integers(2, 8))
    e = data.draw(st.integers(-6, 3))
    k = data.draw(st.integers(-20, 20))
    s = np.ldexp(1.0, e)
    lo = (k + 0.5) * s
    hi = lo + (2 ** bit - 1) * s
    x = np.array([lo, hi, (lo + hi) / 2], dtype)
    assert x[0] == lo and x[1] == hi
    T = oracle.compute_dtype(dtype)
    mmax_d, mmin_d = device.put(np.zeros(1, T)), device.put(np.zeros(1, T))
    got = nq.moving_average_min_max_observer(device.put(x), 0, mmax_d, mmin_d, True, 1,
                                             "google", bit, "affine", 0.9)
    exp = oracle.moving_average_min_max_observer(x, 0, np.zeros(1, T), np.zeros(1, T), True, 1,
                                                 "google", bit, "affine", 0.9)
    # by hand: state = (hi, lo) after the first step, scale = s, zp = -round_away(k + 0.5)
    assert exp[0][0] == s and exp[1][0] == -(k + 1 if k >= 0 else k)
    _same_many([device.get(g) for g in got], exp[:2], ("scale", "zero_point"))


@both_devices
def check_moving_average_nonfinite(device, data):
    dtype = data.draw(st.sampled_from(routes.drawable_dtypes(DTYPES)))
    x = data.draw(arrays(device, dtype=dtype, shape=data.draw(shapes(device, min_dims=1))))
    formula, bit, scheme = data.draw(qconfig())
    x = x.copy()
    flat = x.reshape(-1)
    positions = data.draw(st.lists(st.integers(0, x.size - 1), min_size=1, max_size=x.size,
                                   unique=True))
    for p in positions:
        flat[p] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    x = laid_out(data, device, x)
    T = oracle.compute_dtype(dtype)
    z = np.zeros(1, T)
    with pytest.raises(ValueError, match=rf"\b{len(positions)}\b"):
        nq.moving_average_min_max_observer(device.put(x), 0, device.put(z.copy()),
                                           device.put(z.copy()), True, 1, formula, bit, scheme,
                                           0.9)
    exp, err = _oracle_or_error(oracle.moving_average_min_max_observer, x, 0, z, z, True, 1,
                                formula, bit, scheme, 0.9, nonfinite="omit")
    mmax_d, mmin_d = device.put(z.copy()), device.put(z.copy())   # two distinct arrays
    if err is not None:
        with pytest.raises(ValueError, match="no finite value"):
            nq.moving_average_min_max_observer(device.put(x), 0, mmax_d, mmin_d, True, 1,
                                               formula, bit, scheme, 0.9, nonfinite="omit")
        return
    got = nq.moving_average_min_max_observer(device.put(x), 0, mmax_d, mmin_d, True, 1,
                                             formula, bit, scheme, 0.9, nonfinite="omit")
    _same_many([device.get(g) for g in got] + [device.get(mmax_d), device.get(mmin_d)], exp,
               ("scale", "zero_point", "moving_max", "moving_min"))
