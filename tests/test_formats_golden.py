"""Every case of tests/data/mx_formats.npz (torchao 0.18 / torch current scaling), bit for
bit, through the public functions on the CPU and GPU paths.

In the CUDA simulator every case runs too, with a small launch (each simulated thread
costs milliseconds), so the test groups the cases of one input into one test.
"""

import numpy as np
import pytest

import numba_quant as nq
from devices import SIMULATOR
from golden import GoldenFile

MX = GoldenFile("mx_formats.npz")
CASES = MX.cases
data = MX.data


def case_input(case):
    """The stored input as float32 (bfloat16 inputs are stored as their uint16 bits, and
    convert exactly; float16 inputs are passed as float16)."""
    a = data()[case["input"]]
    if case["dtype"] == "bfloat16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a


def assert_bits(actual, expected, what):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind == "f":
        bits = np.dtype(f"u{expected.dtype.itemsize}")
        actual, expected = actual.view(bits), expected.view(bits)
    bad = np.flatnonzero(actual.ravel() != expected.ravel())
    assert bad.size == 0, (f"{what}: {bad.size} of {actual.size} differ; first at {bad[0]}: "
                           f"{actual.ravel()[bad[0]]!r} != {expected.ravel()[bad[0]]!r}")


def run_case(case, device):
    """{output name: numpy result} of one golden case through the public functions."""
    x = device.put(case_input(case))
    if case["op"] == "mx_quant":
        args = (case["elem_dtype"], case["block_size"], case["scaling_mode"])
        scale, el = nq.to_mx(x, *args)
        deq = nq.from_mx(scale, el, case["elem_dtype"], case["block_size"])
        return {"scale_e8m0": device.get(scale), "elements": device.get(el),
                "dequant": device.get(deq)}
    if case["op"] == "nvfp4_quant":
        pts = 1.0 if case["scaling"] == "single_level" else None
        bs, el, pts = nq.to_nvfp4(x, pts)
        deq = nq.from_nvfp4(bs, el, pts)
        return {"block_scale": device.get(bs), "elements": device.get(el),
                "per_tensor_scale": np.float32(pts), "dequant": device.get(deq)}
    fmt = case["fp8_dtype"]
    block = None if case["granularity"] == "tensor" else case["shape"][-1]
    el, scale = nq.to_float8(x, fmt, block_size=block)
    deq = nq.from_float8(el, scale, fmt, block_size=block)
    scale = device.get(scale)
    return {"elements": device.get(el), "dequant": device.get(deq),
            "scale": scale.reshape(()) if block is None else scale}


OUTPUTS = {"mx_quant": ("scale_e8m0", "elements", "dequant"),
           "nvfp4_quant": ("block_scale", "elements", "per_tensor_scale", "dequant"),
           "fp8_current_scaling": ("elements", "dequant", "scale")}


def check_case(case, device):
    got = run_case(case, device)
    for name in OUTPUTS[case["op"]]:
        expected = data()[f"{case['id']}/{name}"]
        if name == "scale" and expected.ndim:
            expected = expected.reshape(got[name].shape)
        assert_bits(got[name], expected, f"{case['id']} {name}")


def _by_input():
    groups = {}
    for c in CASES:
        groups.setdefault(c["input"], []).append(c)
    return sorted(groups.items(), key=lambda kv: int(kv[0].split("/")[1]))


def test_case_count():
    ops = [c["op"] for c in CASES]
    assert (ops.count("mx_quant"), ops.count("nvfp4_quant"),
            ops.count("fp8_current_scaling")) == (86, 20, 60)


@pytest.fixture
def few_threads(device, monkeypatch):
    """In the simulator each thread costs time: 4 threads in 2 blocks still run every
    grid-stride loop more than once."""
    if device.gpu and SIMULATOR:
        from numba_quant._host import tuning as _tuning
        monkeypatch.setitem(_tuning.LAUNCH, "threads", 4)
        monkeypatch.setitem(_tuning.LAUNCH, "max_blocks", 2)


@pytest.mark.parametrize("key,cases", _by_input(), ids=[k for k, _ in _by_input()])
def test_golden(key, cases, device, few_threads):
    for case in cases:
        check_case(case, device)


def test_fake_quantize_matches_dequant(device):
    """The fused fake quantizations give the golden dequantized values too."""
    for c in CASES:
        if c["op"] == "mx_quant" and c["input"] in ("inputs/3", "inputs/5"):
            got = nq.mx_fake_quantize(device.put(case_input(c)), c["elem_dtype"],
                                      c["block_size"], c["scaling_mode"])
            assert_bits(device.get(got), data()[f"{c['id']}/dequant"], c["id"])
        if c["op"] == "nvfp4_quant" and c["input"] in ("inputs/11", "inputs/17"):
            pts = 1.0 if c["scaling"] == "single_level" else None
            got = nq.nvfp4_fake_quantize(device.put(case_input(c)), pts)
            assert_bits(device.get(got), data()[f"{c['id']}/dequant"], c["id"])
