"""float16 and bfloat16 inputs of the OneFlow functions on the host, converted in chunks.

The host backend converts 16-bit inputs (and ``dequantize``'s integer codes) to float32
``_tuning.WIDEN_CHUNK`` elements at a time.  Here that size is shrunk so that every
input spans many chunks (cut along every axis, per-channel along each axis), and every
result is compared bit for bit with the numpy oracle on the input widened by numpy /
ml_dtypes.  A last group measures the memory a call allocates on a large input.
"""
import re
import tracemalloc

import numpy as np
import oracle
import pytest
from golden import assert_same

nq = pytest.importorskip("numba_quant")
ml_dtypes = pytest.importorskip("ml_dtypes")
from numba_quant._host import tuning as _tuning

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.float16), BF16]
CONFIGS = [("google", 8, "symmetric"), ("google", 5, "affine"), ("cambricon", 6, "symmetric")]
CODES = ("google", 5, "affine")   # uint8 codes
SHAPE = (6, 14, 9)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 40 elements: a (6, 14, 9) input is cut into dozens, along every axis.

    (SMALL 0: the chunks' per-channel reductions take the periodic kernel, one compiled
    signature for every layout here, rather than the one-call route.)
    """
    monkeypatch.setattr(_tuning, "WIDEN_CHUNK", 40)
    monkeypatch.setattr(_tuning, "SMALL", 0)


def _values(dtype, shape=SHAPE, seed=0):
    """Values exact in ``dtype``, with +-0.0 minima in some slices (semantics.md §7.1)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    x[1] = np.abs(x[1])
    x[1, 3, 4] = -0.0     # a slice whose minimum is a zero, with a -0.0 in it
    x[1, 5, 2] = 0.0
    x[2, :, 7] = np.abs(x[2, :, 7])
    x[2, 0, 7] = 0.0
    return x.astype(dtype)


def _layouts(x):
    """(name, array) with the values of ``x`` in C order, Fortran order, and as a
    non-contiguous transposed view."""
    strided = np.repeat(x.transpose(2, 0, 1), 2, axis=2)[:, :, ::2].transpose(1, 2, 0)
    return [("c", np.ascontiguousarray(x)), ("fortran", np.asfortranarray(x)),
            ("strided", strided)]


def _wide(x):
    """The float32 values, converted by numpy / ml_dtypes."""
    return np.asarray(x).astype(np.float32)


def _layout_cases():
    return [(dtype, name) for dtype in DTYPES for name, _ in _layouts(_values(dtype))]


def _case(dtype, layout):
    return dict(_layouts(_values(dtype)))[layout]


def _ids(case):
    dtype, layout = case
    return f"{dtype.name}-{layout}"


# --------------------------------------------------------------------------- observers
@pytest.mark.parametrize("case", _layout_cases(), ids=_ids)
@pytest.mark.parametrize("axis", [None, 0, 1, 2])
def test_min_max_observer(small_chunks, case, axis):
    x = _case(*case)
    per_layer = axis is None
    for formula, bits, scheme in CONFIGS:
        kw = {"quantization_formula": formula, "quantization_bit": bits,
              "quantization_scheme": scheme, "per_layer_quantization": per_layer,
              "axis": 0 if per_layer else axis}
        scale, zero_point = nq.min_max_observer(x, **kw)
        s, z = oracle.min_max_observer(_wide(x), **kw)
        assert_same(scale, s, f"scale {kw}")
        assert_same(zero_point, z, f"zero point {kw}")


def _with_nonfinite(dtype, layout):
    x = _values(np.float32)
    x[0, 0, 0] = np.nan
    x[3, 13, 8] = np.inf
    x[5, 7, 1] = -np.inf
    x[4, 2, 6] = np.nan
    return dict(_layouts(x.astype(dtype)))[layout]


@pytest.mark.parametrize("case", _layout_cases(), ids=_ids)
@pytest.mark.parametrize("axis", [None, 0, 2])
def test_nonfinite_policies(small_chunks, case, axis):
    x = _with_nonfinite(*case)
    kw = {"quantization_scheme": "affine", "per_layer_quantization": axis is None,
          "axis": axis or 0}
    # "raise": the count is the sum over the chunks
    with pytest.raises(ValueError, match=re.escape("input contains 4 non-finite value(s)")):
        nq.min_max_observer(x, **kw)
    scale, zero_point = nq.min_max_observer(x, nonfinite="omit", **kw)
    s, z = oracle.min_max_observer(_wide(x), nonfinite="omit", **kw)
    assert_same(scale, s, "scale")
    assert_same(zero_point, z, "zero point")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_channel_without_finite_values(small_chunks, dtype):
    x = _values(np.float32)
    x[:, 4, :] = np.nan
    x[0, 4, 0] = -np.inf      # channel 4 of axis 1: nothing finite, over many chunks
    x = x.astype(dtype)
    with pytest.raises(ValueError, match=re.escape("1 channel(s) have no finite value "
                                                   "(channels 4)")):
        nq.min_max_observer(x, per_layer_quantization=False, axis=1, nonfinite="omit")
    # the other channels still combine over their chunks
    s, z = oracle.min_max_observer(_wide(x)[:, 5:], per_layer_quantization=False, axis=1,
                                   nonfinite="omit")
    got = nq.min_max_observer(x[:, 5:], per_layer_quantization=False, axis=1,
                              nonfinite="omit")
    assert_same(got[0], s, "scale")
    assert_same(got[1], z, "zero point")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("axis", [None, 2])
def test_moving_average(small_chunks, dtype, axis):
    n = 1 if axis is None else SHAPE[axis]
    state = np.zeros(n, np.float32), np.zeros(n, np.float32)
    expected = state[0].copy(), state[1].copy()
    for step, seed in enumerate((3, 4)):
        x = np.asfortranarray(_values(dtype, seed=seed))
        for formula, bits, scheme in CONFIGS[:2]:
            got = nq.moving_average_min_max_observer(
                x, step, *state, True, 10, formula, bits, scheme, momentum=0.9,
                axis=axis or 0)
            s, z, *expected = oracle.moving_average_min_max_observer(
                _wide(x), step, *expected, True, 10, formula, bits, scheme, momentum=0.9,
                axis=axis or 0)
            assert_same(got[0], s, "scale")
            assert_same(got[1], z, "zero point")
            assert_same(state[0], expected[0], "moving_max")
            assert_same(state[1], expected[1], "moving_min")


# --------------------------------------------------------------------------- maps
def _params(x, axis, formula, bits, scheme):
    """The oracle's scale and zero point of ``x``."""
    return oracle.min_max_observer(_wide(x), formula, bits, scheme, axis is None,
                                   axis=axis or 0)


# Each code type and map is a compiled signature: fake quantization runs every route of
# the chunked map (per layer, per channel); the codes run per channel only.
@pytest.mark.parametrize("case", _layout_cases(), ids=_ids)
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_fake_quantization(small_chunks, case, axis):
    x = _case(*case)
    for formula, bits, scheme in CONFIGS:
        args = _params(x, axis, formula, bits, scheme) + (formula, bits, scheme)
        assert_same(nq.fake_quantization(x, *args, axis=axis or 0),
                    oracle.fake_quantization(_wide(x), *args, axis=axis or 0),
                    f"{formula} {bits} {scheme}")


@pytest.mark.parametrize("case", _layout_cases(), ids=_ids)
def test_codes(small_chunks, case):
    x = _case(*case)
    wide = _wide(x)
    args = _params(x, 1, *CODES) + CODES
    assert_same(nq.quantization(x, *args, axis=1), oracle.quantization(wide, *args, axis=1),
                "quantization")
    codes = oracle.quantize(wide, *args, axis=1)
    assert_same(nq.quantize(x, *args, axis=1), codes, "quantize")
    # codes of another type than the result, converted chunk by chunk too
    assert_same(nq.dequantize(dict(_layouts(codes))[case[1]], *args, axis=1),
                oracle.dequantize(codes, *args, axis=1), "dequantize")


def test_zero_dimensional(small_chunks):
    x = np.array(-0.75, np.float16)
    s, z = oracle.min_max_observer(_wide(x))
    assert_same(nq.min_max_observer(x)[0], s, "scale")
    assert_same(nq.fake_quantization(x, s, z), oracle.fake_quantization(_wide(x), s, z),
                "fake_quantization")


def test_maps_nonfinite(small_chunks):
    x = _with_nonfinite(np.float16, "fortran")
    s, z = oracle.min_max_observer(_wide(x), nonfinite="omit")
    assert_same(nq.fake_quantization(x, s, z), oracle.fake_quantization(_wide(x), s, z),
                "fake_quantization")
    with pytest.raises(ValueError, match=re.escape("input contains 2 NaN value(s)")):
        nq.quantize(x, s, z)


def test_out_arrays(small_chunks):
    x = _values(np.float16)
    args = _params(x, 1, *CODES) + CODES
    expected = oracle.quantize(_wide(x), *args, axis=1)
    out = np.zeros(SHAPE, np.uint8, order="F")
    assert nq.quantize(x, *args, axis=1, out=out) is out
    assert_same(out, expected, "Fortran out")
    memory = np.zeros(x.size + 8, np.float16)
    shifted_in = memory[8:].reshape(SHAPE)
    shifted_in[...] = x
    shifted_out = memory.view(np.uint8)[3:3 + x.size].reshape(SHAPE)   # over the input
    nq.quantize(shifted_in, *args, axis=1, out=shifted_out)   # as if it were read first
    assert_same(shifted_out, expected, "overlapping out")


def test_other_uses_see_the_float32_values(small_chunks):
    """Code that needs one array (np.asarray, ndarray attributes) gets the values whole."""
    from numba_quant._cpu import backend as _cpu
    for dtype in DTYPES:
        x = np.asfortranarray(_values(dtype))
        data = _cpu.as_array(x)
        assert type(data).__name__ == "ChunkedInput"
        assert data.dtype == np.float32 and data.shape == SHAPE
        assert_same(np.asarray(data), _wide(x), dtype.name)
        assert data.strides == np.asfortranarray(_wide(x)).strides
        assert not hasattr(data, "__cuda_array_interface__")


# --------------------------------------------------------------------------- torch
def test_torch_bfloat16_tensors(small_chunks):
    torch = pytest.importorskip("torch")
    w = _values(np.float32, seed=7)
    t = torch.from_numpy(w).to(torch.bfloat16).permute(2, 0, 1)   # not contiguous
    p = torch.nn.Parameter(t, requires_grad=True)
    values = _wide(w.astype(BF16).transpose(2, 0, 1))
    for axis in (None, 1):
        kw = {"per_layer_quantization": axis is None, "axis": axis or 0,
              "quantization_scheme": "affine"}
        scale, zero_point = nq.min_max_observer(p, **kw)
        s, z = oracle.min_max_observer(values, **kw)
        assert isinstance(scale, torch.Tensor)
        assert_same(scale.numpy(), s, "scale")
        assert_same(zero_point.numpy(), z, "zero point")
        fq = nq.fake_quantization(p, scale, zero_point, quantization_scheme="affine",
                                  axis=axis or 0)
        assert isinstance(fq, torch.Tensor) and fq.dtype == torch.float32
        assert_same(fq.numpy(), oracle.fake_quantization(values, s, z, "google", 8, "affine",
                                                         axis=axis or 0), "fake")
    q = nq.quantize(p, scale, zero_point, quantization_scheme="affine", axis=1)
    assert_same(q.numpy(), oracle.quantize(values, s, z, "google", 8, "affine", axis=1),
                "codes")
    with torch.no_grad():
        p[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=re.escape("input contains 1 non-finite value(s)")):
        nq.min_max_observer(p)


# --------------------------------------------------------------------------- memory
# 4e6 values (8 MB in 16 bits; a float32 copy would be 16 MB) in chunks of 2**15 (a
# 128 KiB buffer, below the parallel threshold: the serial kernels of the tests above).
BIG = (4, 1_000_000)
CHUNK = 1 << 15
BOUND = 8 * CHUNK * 4   # 1 MiB: a few chunk buffers


def _peak(call):
    """The peak of memory traced by tracemalloc (numpy's arrays among it) during ``call``."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def big_inputs():
    x = np.random.default_rng(5).standard_normal(BIG, dtype=np.float32) * np.float32(2)
    return {"float16": x.astype(np.float16), "bfloat16": x.astype(BF16)}


@pytest.mark.parametrize("name", ["float16", "bfloat16", "torch"])
def test_memory_bounded(monkeypatch, big_inputs, name):
    monkeypatch.setattr(_tuning, "WIDEN_CHUNK", CHUNK)
    if name == "torch":
        torch = pytest.importorskip("torch")
        x = torch.from_numpy(big_inputs["bfloat16"].view(np.int16)).view(torch.bfloat16)
    else:
        x = big_inputs[name]
    small = x[:, :2 * CHUNK]   # the same chunks (one channel each), compiled first
    calls = {
        "per layer": lambda a: nq.min_max_observer(a),
        "per channel": lambda a: nq.min_max_observer(a, per_layer_quantization=False),
        "moving average": lambda a: nq.moving_average_min_max_observer(
            a, 0, np.zeros(1, np.float32), np.zeros(1, np.float32), True, 1),
    }
    for what, call in calls.items():
        call(small)   # compiled before the measurement
        peak = _peak(lambda call=call: call(x))
        assert peak < BOUND, f"{what}: {peak} bytes traced"
    # Element-wise: the float32 result itself, and a few chunk buffers.
    result = 4 * np.prod(BIG)
    nq.fake_quantization(small, 0.05, 0)
    peak = _peak(lambda: nq.fake_quantization(x, 0.05, 0))
    assert peak < result + BOUND, f"fake_quantization: {peak} bytes traced"
