"""The low-precision format functions against the numpy + ml_dtypes oracle, on the CPU
and GPU paths: exhaustive 16-bit element conversions, Hypothesis for the block formats.

GPU examples are small and fewer (milliseconds per simulated thread in the simulator).
"""

import numpy as np
import pytest
from hypothesis import note, settings
from hypothesis import strategies as st

import oracle_formats as orc
from devices import SIMULATOR, Device, hypothesis_on_both_devices
from test_formats_golden import assert_bits

nq = pytest.importorskip("numba_quant")

ELEMENTS = ("float8_e4m3fn", "float8_e5m2", "float6_e3m2fn", "float6_e2m3fn",
            "float4_e2m1fn", "float8_e8m0fnu")
MX = ("float8_e4m3fn", "float8_e5m2", "float6_e3m2fn", "float6_e2m3fn", "float4_e2m1fn",
      "int8")
MODES = ("floor", "ceil", "even", "rceil")
U16 = np.arange(1 << 16, dtype=np.uint32)
# Every float16 and bfloat16 bit pattern, as float32 (both convert exactly).
HALF_PATTERNS = {
    "float16": U16.astype(np.uint16).view(np.float16).astype(np.float32),
    "bfloat16": (U16 << 16).view(np.float32),
}


@pytest.fixture
def small_tasks(monkeypatch):
    """CPU kernels split even small inputs into several parallel tasks."""
    from numba_quant._host import tuning as _tuning
    monkeypatch.setattr(_tuning, "FLOAT_TASK", 64)


# --------------------------------------------------------------------------- elements
@pytest.mark.parametrize("source", ["float16", "bfloat16"])
@pytest.mark.parametrize("saturate", [False, True])
def test_every_16_bit_pattern_cpu(source, saturate, small_tasks):
    """to_bits equals ml_dtypes (saturate=False) on every float16/bfloat16 bit pattern, and
    from_bits gives back the rounded values."""
    x = HALF_PATTERNS[source]
    for name in ELEMENTS:
        got = nq.to_bits(x, name, saturate=saturate)
        assert_bits(got, orc.cast(x, name, saturate), f"{name} from {source}")
        assert_bits(nq.from_bits(got, name), orc.decode(got, name), f"{name} decoded")


@pytest.mark.gpu
def test_16_bit_patterns_gpu():
    """The GPU path on a sample of the patterns (every 251st float16 and bfloat16 one: all
    exponents, both signs, NaN and infinity included)."""
    device = Device("gpu")
    x = np.concatenate([HALF_PATTERNS["float16"][::251], HALF_PATTERNS["bfloat16"][::251],
                        np.array([np.inf, -np.inf, np.nan], np.float32)])
    for name in ELEMENTS:
        for saturate in (False, True):
            got = device.get(nq.to_bits(device.put(x), name, saturate=saturate))
            assert_bits(got, orc.cast(x, name, saturate), f"{name} saturate={saturate}")
        back = device.get(nq.from_bits(device.put(got), name))
        assert_bits(back, orc.decode(got, name), f"{name} decoded")


def test_every_code_decodes(device):
    codes = np.arange(256, dtype=np.uint8)
    for name in ELEMENTS:
        width = {"float6_e3m2fn": 64, "float6_e2m3fn": 64, "float4_e2m1fn": 16}.get(name, 256)
        got = device.get(nq.from_bits(device.put(codes[:width]), name,
                                      output_dtype=np.float64))
        assert_bits(got, orc.decode(codes[:width], name).astype(np.float64), name)


def test_float64_rounds_once(device):
    """float64 input is rounded directly, not through float32 (double rounding would
    differ on these: halfway points in float32 that float64 resolves)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(200) * np.exp2(rng.integers(-20, 20, 200))
    # Just above a tie of e4m3 in float64, exactly a tie once rounded to float32.
    ties = np.array([1.0625 + 2.0 ** -40, -(1.0625 + 2.0 ** -40), 17.0 + 2.0 ** -35])
    x = np.concatenate([x, ties])
    for name in ELEMENTS:
        got = device.get(nq.to_bits(device.put(x), name))
        assert_bits(got, orc.cast(x, name), name)
    assert nq.to_bits(ties[:1], "float8_e4m3fn")[0] == 0x39  # 1.125, not 1.0


def test_packed_fp4(device):
    x = np.linspace(-7, 7, 24, dtype=np.float32).reshape(2, 12)
    packed = device.get(nq.to_bits(device.put(x), "float4_e2m1fn", packed=True))
    expected = orc.pack_fp4(orc.cast(x, "float4_e2m1fn"))
    assert_bits(packed, expected, "packed")
    back = device.get(nq.from_bits(device.put(packed), "float4_e2m1fn", packed=True))
    assert_bits(back, orc.decode(orc.cast(x, "float4_e2m1fn"), "float4_e2m1fn"), "unpacked")


# --------------------------------------------------------------------------- strategies
both_devices = hypothesis_on_both_devices(
    cpu_examples=max(10, settings.default.max_examples // 4),
    gpu_examples=max(3, settings.default.max_examples // 10))


@st.composite
def block_inputs(draw, device, block_choices=(7, 16, 32)):
    """A float32 array (1-3 rows, a ragged last block) of values near the formats'
    decision points: ties of every element grid, powers of two, subnormals, zeros."""
    block = draw(st.sampled_from(block_choices))
    small = device.gpu and SIMULATOR
    rows = draw(st.integers(1, 2 if small else 3))
    k = draw(st.integers(1, 40 if small else 100))
    mant = draw(st.lists(st.integers(-64, 64), min_size=rows * k, max_size=rows * k))
    exps = draw(st.lists(st.integers(-8, 8), min_size=rows * k, max_size=rows * k))
    base_exp = draw(st.sampled_from([-140, -126, -20, 0, 3, 90]))
    x = np.ldexp(np.array(mant, np.float64) / 16, np.array(exps) + base_exp)
    if draw(st.booleans()):
        x[draw(st.integers(0, x.size - 1))] = 0.0
    return x.astype(np.float32).reshape(rows, k), block


@both_devices
def check_mx(device, data):
    x, block = data.draw(block_inputs(device))
    name = data.draw(st.sampled_from(MX))
    mode = data.draw(st.sampled_from(MODES))
    note(f"{name} {mode} block {block} x {x.tolist()}")
    s, el, deq = orc.mx_quantize(x, name, block, mode)
    gs, gel = nq.to_mx(device.put(x), name, block, mode)
    assert_bits(device.get(gs), s, "scale")
    gel = device.get(gel)
    assert_bits(gel.view(np.uint8), el, "elements")
    assert_bits(device.get(nq.from_mx(device.put(device.get(gs)), device.put(gel), name,
                                      block)), deq, "from_mx")
    assert_bits(device.get(nq.mx_fake_quantize(device.put(x), name, block, mode)), deq,
                "fake")


@both_devices
def check_mx_axis(device, data):
    x, block = data.draw(block_inputs(device))
    name = data.draw(st.sampled_from(MX[:3]))
    s, el, deq = orc.mx_quantize(x.T.copy(), name, block, "floor")
    gs, gel = nq.to_mx(device.put(x), name, block, axis=0)
    assert_bits(device.get(gs), s.T, "scale")
    assert_bits(device.get(gel), el.T, "elements")
    back = nq.from_mx(gs, gel, name, block, axis=0)
    assert_bits(device.get(back), deq.T, "from_mx")


@both_devices
def check_nvfp4(device, data):
    x, _ = data.draw(block_inputs(device, (16,)))
    if not np.any(x):
        x[0, 0] = 1.0
    pts = data.draw(st.sampled_from([None, 1.0, 0.01]))
    bs, el, p, deq = orc.nvfp4_quantize(x, pts)
    gbs, gel, gp = nq.to_nvfp4(device.put(x), pts)
    assert_bits(device.get(gbs), bs, "block_scale")
    assert_bits(device.get(gel), el, "elements")
    assert_bits(np.float32(gp), np.float32(p), "per_tensor_scale")
    assert_bits(device.get(nq.from_nvfp4(gbs, gel, gp)), deq, "from_nvfp4")
    assert_bits(device.get(nq.nvfp4_fake_quantize(device.put(x), pts)), deq, "fake")


@both_devices
def check_fp8(device, data):
    x, block = data.draw(block_inputs(device))
    name = data.draw(st.sampled_from(("float8_e4m3fn", "float8_e5m2")))
    per_block = data.draw(st.booleans())
    el, s, deq = orc.fp8_quantize(x, name, block if per_block else None)
    gel, gs = nq.to_float8(device.put(x), name, block_size=block if per_block else None)
    assert_bits(device.get(gel), el, "elements")
    assert_bits(device.get(gs), s.reshape(-1) if not per_block else s, "scale")
    back = nq.from_float8(gel, gs, name, block_size=block if per_block else None)
    assert_bits(device.get(back), deq, "from_float8")


def test_fp8_per_channel(device, small_tasks):
    """Per-channel scales along any axis: the same as per-tensor scaling of each slice."""
    x = np.random.default_rng(2).standard_normal((3, 4, 5)).astype(np.float32)
    x[:, 2, :] *= 1000
    for axis in (0, 1, 2):
        el, s = nq.to_float8(device.put(x), per_layer_quantization=False, axis=axis)
        el, s = device.get(el), device.get(s)
        assert s.shape == (x.shape[axis],)
        for i in range(x.shape[axis]):
            e_el, e_s, _ = orc.fp8_quantize(np.take(x, i, axis=axis), "float8_e4m3fn")
            assert_bits(s[i], e_s, f"axis {axis} scale {i}")
            assert_bits(np.take(el, i, axis=axis), e_el, f"axis {axis} elements {i}")
        back = device.get(nq.from_float8(device.put(el), device.put(s), axis=axis))
        expected = orc.decode(el, "float8_e4m3fn") / np.expand_dims(
            s, tuple(a for a in range(3) if a != axis))
        assert_bits(back, expected.astype(np.float32), f"axis {axis} from_float8")


def test_block_kernels_split_into_tasks(small_tasks):
    """CPU block kernels with many tasks (FLOAT_TASK 64: 2 to 4 blocks per task)."""
    x = np.random.default_rng(3).standard_normal((5, 300)).astype(np.float32)
    s, el, deq = orc.mx_quantize(x, "float8_e4m3fn", 32, "floor")
    gs, gel = nq.to_mx(x, "float8_e4m3fn")
    assert_bits(gs, s, "scale")
    assert_bits(gel, el, "elements")
    bs, el, p, deq = orc.nvfp4_quantize(x)
    assert_bits(nq.nvfp4_fake_quantize(x), deq, "nvfp4")
    el, s, deq = orc.fp8_quantize(x, "float8_e5m2")
    assert_bits(nq.to_float8(x, "float8_e5m2")[0], el, "fp8")
