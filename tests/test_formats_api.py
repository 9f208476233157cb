"""Low-precision format functions: argument errors, non-finite policies, ml_dtypes views,
ragged blocks, axes, and the docstring examples."""
import doctest

import ml_dtypes
import numpy as np
import pytest

import numba_quant as nq
import oracle_formats as orc
from test_formats_golden import assert_bits

X = np.linspace(-3, 3, 64, dtype=np.float32).reshape(2, 32)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("call,error,match", [
    (lambda: nq.to_bits(X, "float8_e4m3"), ValueError, "dtype must be one of"),
    (lambda: nq.to_bits(X, 8), ValueError, "dtype must be one of"),
    (lambda: nq.to_bits(X, "float8_e5m2", packed=True), ValueError, "float4_e2m1fn only"),
    (lambda: nq.to_bits(X[:, :3], "float4_e2m1fn", packed=True), ValueError,
     "even number of elements"),
    (lambda: nq.to_bits(np.arange(4), "float8_e5m2"), TypeError, "got dtype int64"),
    (lambda: nq.to_bits(np.zeros((2, 0), np.float32), "float8_e5m2"), ValueError,
     "empty array of shape \\(2, 0\\)"),
    (lambda: nq.from_bits(np.zeros(3, np.int16), "float8_e5m2"), TypeError,
     "uint8 or float8_e5m2 codes"),
    (lambda: nq.from_bits(np.zeros(3, np.uint8), "float8_e5m2", output_dtype=np.int32),
     ValueError, "output_dtype must be float32 or float64"),
    (lambda: nq.to_mx(X, "float8"), ValueError, "elem_dtype must be one of"),
    (lambda: nq.to_mx(X, "float8_e4m3fn", 0), ValueError, "block_size must be a positive"),
    (lambda: nq.to_mx(X, "float8_e4m3fn", 2.5), TypeError, "block_size must be an integer"),
    (lambda: nq.to_mx(X, "float8_e4m3fn", scaling_mode="round"), ValueError,
     "scaling_mode must be one of"),
    (lambda: nq.to_mx(X, "float8_e4m3fn", axis=2), np.exceptions.AxisError, "axis 2"),
    (lambda: nq.to_mx(np.float32(1), "float8_e4m3fn"), ValueError, "0-d array"),
    (lambda: nq.to_mx(X.astype(np.float64), "float8_e4m3fn"), TypeError, "got float64"),
    (lambda: nq.to_mx(X, "float8_e4m3fn", nonfinite="omit"), ValueError,
     "nonfinite must be one of"),
    (lambda: nq.from_mx(np.zeros((2, 2), np.uint8), np.zeros((2, 32), np.uint8),
                        "float8_e4m3fn"), ValueError, "scale_e8m0 has shape \\(2, 2\\)"),
    (lambda: nq.to_nvfp4(X, per_tensor_scale=0.0), ValueError, "at least"),
    (lambda: nq.to_nvfp4(X, per_tensor_scale="a"), TypeError, "must be a number"),
    (lambda: nq.from_nvfp4(np.zeros((2, 3), np.uint8), np.zeros((2, 32), np.uint8), 1.0),
     ValueError, "block_scale has shape \\(2, 3\\)"),
    (lambda: nq.to_float8(X, "float8_e4m3fnuz"), ValueError, "dtype must be one of"),
    (lambda: nq.from_float8(np.zeros((2, 32), np.uint8), np.ones(3, np.float32)),
     ValueError, "per-channel scale has 3 values"),
    (lambda: nq.from_float8(np.zeros((2, 32), np.uint8), np.ones(2)), TypeError,
     "scale must be float32"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------- non-finite
def test_nonfinite_raise_and_propagate(device):
    x = X.copy()
    x[1, 5] = np.nan
    x[0, 0] = np.inf
    with pytest.raises(ValueError, match="2 block\\(s\\).*nonfinite='propagate'"):
        nq.to_mx(device.put(x), "float8_e4m3fn")
    with pytest.raises(ValueError, match="2 element\\(s\\)"):
        nq.to_nvfp4(device.put(x))
    with pytest.raises(ValueError, match="2 element\\(s\\)"):
        nq.to_float8(device.put(x))
    scale, el = nq.to_mx(device.put(x), "float8_e4m3fn", nonfinite="propagate")
    scale = device.get(scale)
    assert_bits(scale, np.array([[255], [255]], np.uint8), "OCP NaN scale")
    back = device.get(nq.from_mx(device.put(scale), el, "float8_e4m3fn"))
    assert np.isnan(back).all()
    # Blocks without NaN keep their scale: 3 blocks of 16, one of them non-finite.
    scale, _ = nq.to_mx(device.put(x[1]), "float8_e4m3fn", 16, nonfinite="propagate")
    s, _, _ = orc.mx_quantize(X[1], "float8_e4m3fn", 16, "floor")
    assert_bits(device.get(scale), np.array([255, s[1]], np.uint8), "per block")


# --------------------------------------------------------------------------- layouts
def test_ragged_last_block_and_any_axis(device):
    x = np.random.default_rng(4).standard_normal((3, 50, 2)).astype(np.float32)
    scale, el = nq.to_mx(device.put(x), "float6_e2m3fn", 32, "even", axis=1)
    scale, el = device.get(scale), device.get(el)
    assert scale.shape == (3, 2, 2)
    moved = np.moveaxis(x, 1, -1)
    s, e, deq = orc.mx_quantize(moved, "float6_e2m3fn", 32, "even")
    assert_bits(scale, np.moveaxis(s, -1, 1), "scale")
    assert_bits(el, np.moveaxis(e, -1, 1), "elements")
    fq = nq.mx_fake_quantize(device.put(x), "float6_e2m3fn", 32, "even", axis=1)
    assert_bits(device.get(fq), np.moveaxis(deq, -1, 1), "fake quantization")


def test_inputs_of_other_types(device):
    """float16 and strided input convert exactly; to_bits rounds float64 once."""
    x16 = X.astype(np.float16)
    got = device.get(nq.to_mx(device.put(x16), "float4_e2m1fn")[1])
    assert_bits(got, orc.mx_quantize(x16.astype(np.float32), "float4_e2m1fn", 32,
                                     "floor")[1], "float16")
    strided = np.asfortranarray(X)
    got = nq.to_float8(strided, "float8_e5m2", block_size=8)[0]
    assert_bits(got, orc.fp8_quantize(X, "float8_e5m2", 8)[0], "Fortran order")


def test_bfloat16_input():
    xb = X.astype(ml_dtypes.bfloat16)
    got = nq.to_nvfp4(xb)[1]
    assert_bits(got, orc.nvfp4_quantize(xb.astype(np.float32))[1], "bfloat16")


# --------------------------------------------------------------------------- ml_dtypes
def test_ml_dtypes_views():
    scale, el = nq.to_mx(X, "float8_e5m2", ml_dtypes=True)
    assert scale.dtype == ml_dtypes.float8_e8m0fnu and el.dtype == ml_dtypes.float8_e5m2
    back = nq.from_mx(scale, el, "float8_e5m2")   # views are accepted back
    expected = el.astype(np.float32) * scale.astype(np.float32).repeat(32, axis=1)
    assert_bits(back, expected, "ml_dtypes arithmetic")
    codes = nq.to_bits(X, "float4_e2m1fn", ml_dtypes=True)
    assert codes.dtype == ml_dtypes.float4_e2m1fn
    assert_bits(nq.from_bits(codes, ml_dtypes.float4_e2m1fn),
                codes.astype(np.float32), "float4 view")
    bs, el, _ = nq.to_nvfp4(X, ml_dtypes=True)
    assert bs.dtype == ml_dtypes.float8_e4m3fn and el.dtype == ml_dtypes.float4_e2m1fn
    q = nq.to_mx(X, "int8", ml_dtypes=True)[1]
    assert q.dtype == np.int8


def test_mxint8_codes():
    """MXINT8: int8 codes k meaning k / 64 times the scale, within [-127, 127]."""
    x = np.array([1.999, -1.5, 1.0, 0.5 + 1 / 128, 0.0], np.float32)
    scale, q = nq.to_mx(x, "int8", 32)
    assert q.dtype == np.int8 and scale[0] == 127
    assert q.tolist() == [127, -96, 64, 32, 0]   # 127.9 clamps to 127, 32.5 rounds to even
    assert_bits(nq.from_mx(scale, q, "int8"),
                np.array([127, -96, 64, 32, 0], np.float32) / 64, "values")


@pytest.mark.parametrize("module", ["float8", "mx", "nvfp4"])
def test_docstring_examples(module):
    mod = __import__(f"numba_quant.{module}", fromlist=["_"])
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------- Dask
def test_dask_arrays_equal_in_memory():
    """MX, NVFP4 and FP8 on Dask arrays whose chunks cut blocks (MX: rows of one and
    chunks aligned to nothing; the others: the latter): moved to block boundaries, values
    equal to the in-memory call's; FP8 per tensor and per channel, and NVFP4's
    per-tensor scale, from the merged maxima."""
    from dask_checks import CHUNKINGS, compare, dask_modules
    _, da = dask_modules()
    x = np.random.default_rng(5).standard_normal((13, 66)).astype(np.float32)
    lazy, expected = [], []
    mx_scale, mx_codes = nq.to_mx(x, "float4_e2m1fn")
    for chunking in CHUNKINGS:
        dx = da.from_array(x, chunks=chunking)
        lazy += [*nq.to_mx(dx, "float4_e2m1fn"), nq.mx_fake_quantize(dx, "float8_e4m3fn",
                                                                     axis=0),
                 nq.from_mx(mx_scale, da.from_array(mx_codes, chunks=chunking),
                            "float4_e2m1fn")]
        expected += [mx_scale, mx_codes, nq.mx_fake_quantize(x, "float8_e4m3fn", axis=0),
                     nq.from_mx(mx_scale, mx_codes, "float4_e2m1fn")]
    # chunk boundaries moved up to MX blocks of 32 (the last chunk: the ragged block)
    assert lazy[4].chunks == ((5, 5, 3), (1, 1, 1))
    assert lazy[5].chunks == ((5, 5, 3), (32, 32, 2))
    chunking = CHUNKINGS[1]
    dx = da.from_array(x, chunks=chunking)
    nv_scale, nv_codes, pts = nq.to_nvfp4(x)
    lazy += [*nq.to_nvfp4(dx), nq.nvfp4_fake_quantize(dx, 0.5),
             nq.from_nvfp4(nv_scale, da.from_array(nv_codes, chunks=chunking), pts)]
    expected += [nv_scale, nv_codes, pts, nq.nvfp4_fake_quantize(x, 0.5),
                 nq.from_nvfp4(nv_scale, nv_codes, pts)]
    for settings in (dict(), dict(per_layer_quantization=False, axis=1), dict(block_size=16)):
        f8_codes, f8_scale = nq.to_float8(x, **settings)
        lazy += list(nq.to_float8(dx, **settings))
        expected += [f8_codes, f8_scale]
        settings.pop("per_layer_quantization", None)
        lazy.append(nq.from_float8(da.from_array(f8_codes, chunks=chunking), f8_scale,
                                   **settings))
        expected.append(nq.from_float8(f8_codes, f8_scale, **settings))
    compare(lazy, expected)
    bad = x.copy()
    bad[3, 5], bad[9, 60] = np.nan, -np.inf
    codes = nq.to_float8(da.from_array(bad, chunks=(5, 25)))[0]
    with pytest.raises(ValueError, match=r"input contains NaN or infinity \(2 element"):
        compare([codes], [codes])  # the whole tensor's count: its scale needs the maximum
