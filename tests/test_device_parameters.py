"""Scale and zero point that live on the GPU are checked there.

The kernel that makes the quantization constants checks every value and reports a bad
one through the status word; only then are the values brought to the host, to raise the
same error, with the same message, as the host check of the CPU path.
"""
import re

import numpy as np
import pytest

import oracle
from devices import Device
from golden import assert_same

import numba_quant as nq

F32 = np.float32
CPU, GPU = Device("cpu"), Device("gpu")

BAD = [  # (scale, zero_point, formula, scheme)
    ([0.1, -0.5, 0.2], [0.0, 0.0, 0.0], "google", "symmetric"),
    ([0.1, np.nan, 0.2], [0.0, 0.0, 0.0], "google", "affine"),
    ([-3.0, np.inf, -5.0], [0.0, 0.0, 0.0], "cambricon", "symmetric"),
    ([0.1, 0.1, 0.1], [0.0, -np.inf, 1.0], "google", "affine"),
    ([0.1, -0.5, 0.2], [np.nan, 0.0, 0.0], "google", "affine"),  # scale named first
]
FUNCTIONS = [nq.fake_quantization, nq.quantization, nq.quantize]


def _x():
    return np.random.default_rng(0).standard_normal((3, 4)).astype(F32)


def _message(fn, device, x, scale, zero_point, formula, scheme):
    with pytest.raises(ValueError, match="scale|shift|zero_point") as info:
        fn(device.put(x), device.put(scale), device.put(zero_point), formula, 8, scheme)
    return str(info.value)


@pytest.mark.parametrize("scale, zero_point, formula, scheme", BAD)
def test_same_error_as_the_host_check(scale, zero_point, formula, scheme):
    scale, zero_point = np.array(scale, F32), np.array(zero_point, F32)
    codes = np.zeros((3, 4), np.int8)
    for fn, x in [(f, _x()) for f in FUNCTIONS] + [(nq.dequantize, codes)]:
        expected = _message(fn, CPU, x, scale, zero_point, formula, scheme)
        assert _message(fn, GPU, x, scale, zero_point, formula, scheme) == expected
        # one array on the device, the other on the host: still checked on the device
        with pytest.raises(ValueError, match=re.escape(expected)):
            fn(GPU.put(x), GPU.put(scale), zero_point, formula, 8, scheme)


def test_valid_device_values_stay_on_the_device(monkeypatch):
    from numba_quant._cuda import arrays as _cuda_arrays

    def no_copy(a):
        raise AssertionError("parameters were copied to the host")

    monkeypatch.setattr(_cuda_arrays, "to_host", no_copy)
    x = _x()
    scale = np.array([0.05, 0.0, 0.02], F32)
    zero_point = np.array([3.0, 0.0, -7.0], F32)
    for fn, ofn in [(nq.fake_quantization, oracle.fake_quantization),
                    (nq.quantization, oracle.quantization)]:
        got = fn(GPU.put(x), GPU.put(scale), GPU.put(zero_point), "google", 8, "affine")
        assert_same(GPU.get(got), ofn(x, scale, zero_point, "google", 8, "affine"),
                    fn.__name__)


def test_status_word_clean_after_a_bad_parameter():
    x = _x()
    with pytest.raises(ValueError, match="scale must not be negative"):
        nq.fake_quantization(GPU.put(x), GPU.put(np.array([-1.0], F32)),
                             GPU.put(np.zeros(1, F32)))
    scale, zero_point = nq.min_max_observer(GPU.put(x), per_layer_quantization=False)
    expected = oracle.min_max_observer(x, "google", 8, "symmetric", False)
    assert_same(GPU.get(scale), expected[0], "observer after the error")
    got = nq.fake_quantization(GPU.put(x), scale, zero_point)
    assert_same(GPU.get(got), oracle.fake_quantization(x, expected[0], expected[1]), "fake")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_device_values_of_other_types_are_converted():
    # float64 and integer device values for float32 data: converted on the device as
    # numpy's astype converts them (1e-300 underflows to 0 in float32: scale 0)
    x = _x()
    scale = np.array([0.1, 1e-300, 0.25])
    zero_point = np.array([2, 0, -1], np.int16)
    expected = oracle.fake_quantization(x, scale.astype(F32), zero_point.astype(F32),
                                        "google", 8, "affine")
    got = nq.fake_quantization(GPU.put(x), GPU.put(scale), GPU.put(zero_point), "google", 8,
                               "affine")
    assert_same(GPU.get(got), expected, "converted parameters")
    # a strided device view, and host values (sent in one copy) for device data
    from numba import cuda
    strided = cuda.to_device(np.repeat(scale, 2))[::2]
    got = nq.fake_quantization(GPU.put(x), strided, GPU.put(zero_point), "google", 8, "affine")
    assert_same(GPU.get(got), expected, "strided parameters")
    got = nq.fake_quantization(GPU.put(x), scale, zero_point, "google", 8, "affine")
    assert_same(GPU.get(got), expected, "host parameters")
    with pytest.raises(ValueError, match=r"every scale must be finite; got \[0\.1 +inf"):
        nq.fake_quantization(GPU.put(x), GPU.put(np.array([0.1, 1e300, 0.2])),
                             GPU.put(np.zeros(3)))
