"""``block_size=`` on OneFlow's functions, against the per-block numpy oracle.

Floats are compared by bit pattern (with dtype and shape), on the CPU path and the GPU
(simulator) path.  The oracle observes and maps each block on its own with its per-layer
formulas (``oracle.block_min_max_observer``, ``oracle.block_apply``).
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import oracle
from devices import Device

nq = pytest.importorskip("numba_quant")

DTYPES = (np.float32, np.float64, np.float16)
SETTINGS = [("google", "symmetric"), ("google", "affine"), ("cambricon", "symmetric")]


def bits_of(a):
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind == "f" else a


def assert_bits(actual, expected, what=""):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    bad = np.argwhere(bits_of(actual) != bits_of(expected))
    assert bad.size == 0, (f"{what}: {len(bad)} of {actual.size} differ; first at "
                           f"{tuple(bad[0])}: {actual[tuple(bad[0])]!r} != "
                           f"{expected[tuple(bad[0])]!r}")


def _is_blocks(shape, block):
    split = [i for i, (d, b) in enumerate(zip(shape, block)) if b < d]
    return bool(split) and not (len(split) == 1 and block[split[0]] == 1)


@st.composite
def blocked_inputs(draw, max_dims=4, nonfinite=False):
    """``(x, block_size)``: 1-4 axes of length 1-6, a block size per axis (whole, one,
    dividing or ragged), values with repeats, zeros of both signs and wide magnitudes."""
    ndim = draw(st.integers(1, max_dims))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    block = tuple(draw(st.integers(1, d)) for d in shape)
    # Per-layer and per-channel block sizes go to those layouts' kernels, checked in
    # test_per_layer_and_per_channel_block_sizes_give_todays_results (float32 only: each
    # float type compiles those kernels again).
    assume(_is_blocks(shape, block))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    scale = 10.0 ** rng.integers(-3, 3, size=shape)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    x[rng.random(shape) < 0.1] = 0.0
    x[rng.random(shape) < 0.05] = -0.0
    if nonfinite:
        x[rng.random(shape) < 0.15] = np.nan
        x[rng.random(shape) < 0.05] = np.inf
    layout = draw(st.sampled_from(["c", "f", "reversed"]))
    if layout == "f":
        x = np.asfortranarray(x)
    elif layout == "reversed":
        x = np.ascontiguousarray(x[(slice(None, None, -1),) * ndim])[(slice(None, None, -1),)
                                                                       * ndim]
    return x, block


def _observe_and_map(device, x, block, kw):
    scale, zp = nq.min_max_observer(device.put(x), block_size=block, **kw)
    scale, zp = device.get(scale), device.get(zp)
    want_scale, want_zp = oracle.block_min_max_observer(x, block_size=block, **kw)
    assert_bits(scale, want_scale, "scale")
    assert_bits(zp, want_zp, "zero_point")
    for name in ("fake_quantization", "quantization", "quantize"):
        got = device.get(getattr(nq, name)(device.put(x), device.put(scale), device.put(zp),
                                           block_size=block, **kw))
        assert_bits(got, oracle.block_apply(getattr(oracle, name), x, scale, zp, block, **kw),
                    name)
    codes = oracle.block_apply(oracle.quantize, x, scale, zp, block, **kw)
    got = device.get(nq.dequantize(device.put(codes), device.put(scale), device.put(zp),
                                   block_size=block, **kw))
    assert_bits(got, oracle.block_apply(oracle.dequantize, codes, scale, zp, block, **kw),
                "dequantize")


def _observe_with_policies(device, x, block, kw):
    for policy in ("raise", "omit"):
        try:
            want = oracle.block_min_max_observer(x, block_size=block, nonfinite=policy, **kw)
        except oracle.OracleError:
            with pytest.raises(ValueError, match="non-finite|no finite value"):
                nq.min_max_observer(device.put(x), block_size=block, nonfinite=policy, **kw)
            continue
        got = nq.min_max_observer(device.put(x), block_size=block, nonfinite=policy, **kw)
        assert_bits(device.get(got[0]), want[0], "scale")
        assert_bits(device.get(got[1]), want[1], "zero_point")


def _settings_kw(draw):
    formula, scheme = draw(st.sampled_from(SETTINGS))
    return dict(quantization_formula=formula, quantization_bit=draw(st.integers(2, 16)),
                quantization_scheme=scheme)


# The simulator runs every GPU thread as a Python thread: the GPU path gets fewer examples
# (the kernels' arithmetic is the CPU's there; what it checks is the indexing).
@settings(max_examples=20)
@given(data=st.data())
def test_observer_and_maps_match_the_oracle_cpu(data):
    x, block = data.draw(blocked_inputs())
    _observe_and_map(Device("cpu"), x, block, _settings_kw(data.draw))


@pytest.mark.gpu
@settings(max_examples=5)
@given(data=st.data())
def test_observer_and_maps_match_the_oracle_gpu(data):
    x, block = data.draw(blocked_inputs(max_dims=3))
    _observe_and_map(Device("gpu"), x, block, _settings_kw(data.draw))


@settings(max_examples=12)
@given(data=st.data())
def test_nonfinite_policies_match_the_oracle_cpu(data):
    x, block = data.draw(blocked_inputs(max_dims=3, nonfinite=True))
    _observe_with_policies(Device("cpu"), x, block, _settings_kw(data.draw))


@pytest.mark.gpu
@settings(max_examples=4)
@given(data=st.data())
def test_nonfinite_policies_match_the_oracle_gpu(data):
    x, block = data.draw(blocked_inputs(max_dims=2, nonfinite=True))
    _observe_with_policies(Device("gpu"), x, block, _settings_kw(data.draw))


def _per_channel_block(shape, axis):
    return tuple(1 if i == axis else d for i, d in enumerate(shape))


@pytest.mark.parametrize("formula, scheme", SETTINGS)
def test_per_layer_and_per_channel_block_sizes_give_todays_results(device, formula, scheme):
    """Those block sizes run the per-layer and per-channel kernels: same values as the
    calls without block_size (in the grid's shape), and as the oracle's blocks.  (One
    float type and fake quantization only: each float type and output type compiles
    those kernels again; their other outputs have their own suites.)"""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((6, 5)) * 3).astype(np.float32)
    kw = dict(quantization_formula=formula, quantization_bit=5, quantization_scheme=scheme)
    layouts = [(x.shape, dict(per_layer_quantization=True), None),
               ((1, 5), dict(per_layer_quantization=False, axis=0), 0),
               ((6, 1), dict(per_layer_quantization=False, axis=1), 1)]
    for block, today, axis in layouts:
        grid = oracle.block_grid(x.shape, block)
        scale, zp = nq.min_max_observer(device.put(x), block_size=block, **kw)
        old_scale, old_zp = nq.min_max_observer(device.put(x), **today, **kw)
        scale, zp = device.get(scale), device.get(zp)
        old_scale, old_zp = device.get(old_scale), device.get(old_zp)
        assert_bits(scale, old_scale.reshape(grid), "scale")
        assert_bits(zp, old_zp.reshape(grid), "zero_point")
        assert_bits(scale, oracle.block_min_max_observer(x, block_size=block, **kw)[0],
                    "scale (oracle)")
        if axis is not None:  # with per_layer_quantization=False and its axis too
            both = nq.min_max_observer(device.put(x), block_size=block, **today, **kw)
            assert_bits(device.get(both[0]), scale, "scale (both)")
        got = device.get(nq.fake_quantization(device.put(x), device.put(scale),
                                              device.put(zp), block_size=block, **kw))
        old = device.get(nq.fake_quantization(device.put(x), device.put(old_scale),
                                              device.put(old_zp), axis=axis, **kw))
        assert_bits(got, old, "fake_quantization")
        assert_bits(got, oracle.block_apply(oracle.fake_quantization, x, scale, zp, block,
                                            **kw), "fake_quantization (oracle)")


def test_block_size_read_from_the_scale_shape(device):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 10)).astype(np.float32)
    kw = dict(quantization_scheme="affine", quantization_bit=4)
    # Scale (2, 2): even splits; (4, 3): 10 into 3 blocks only with b = 4 (ragged).
    for block in ((2, 5), (1, 4)):
        scale, zp = oracle.block_min_max_observer(x, block_size=block, **kw)
        want = oracle.block_apply(oracle.fake_quantization, x, scale, zp, block, **kw)
        got = nq.fake_quantization(device.put(x), device.put(scale), device.put(zp), **kw)
        assert_bits(device.get(got), want, f"inferred {block}")
        got = nq.FakeQuantization(**kw)(device.put(x), device.put(scale), device.put(zp))
        assert_bits(device.get(got), want, f"inferred {block}, class")
    # A scale of shape (C,) given with block_size for blocks (C, 1) stands for (C, 1).
    scale, zp = oracle.block_min_max_observer(x, block_size=(1, 10), **kw)
    got = nq.fake_quantization(device.put(x), device.put(scale.reshape(-1)),
                               device.put(zp.reshape(-1)), block_size=(1, 10), **kw)
    assert_bits(device.get(got), oracle.block_apply(oracle.fake_quantization, x, scale, zp,
                                                    (1, 10), **kw))


def test_strided_input_out_and_in_place(device):
    rng = np.random.default_rng(5)
    base = rng.standard_normal((6, 14)).astype(np.float64)
    x = base[::2, 1::3].T  # (5, 3), strided, transposed and read-only
    x.setflags(write=False)
    block = (2, 2)
    kw = dict(quantization_bit=6)
    scale, zp = oracle.block_min_max_observer(x, block_size=block, **kw)
    got = nq.min_max_observer(device.put(x) if device.gpu else x, block_size=block, **kw)
    assert_bits(device.get(got[0]), scale)
    want = oracle.block_apply(oracle.fake_quantization, x, scale, zp, block, **kw)
    if not device.gpu:
        out = np.empty((3, 5), np.float64).T
        result = nq.fake_quantization(x, scale, zp, block_size=block, out=out, **kw)
        assert result is out
        assert_bits(out, want, "out")
        inplace = x.copy()
        nq.fake_quantization(inplace, scale, zp, block_size=block, out=inplace, **kw)
        assert_bits(inplace, want, "in place")
        # out overlapping x other than element for element: as if x were read first.
        buffer = np.concatenate([x.reshape(-1), np.zeros(1)])
        shifted_in, shifted_out = buffer[:-1].reshape(5, 3), buffer[1:].reshape(5, 3)
        nq.fake_quantization(shifted_in, scale, zp, block_size=block, out=shifted_out, **kw)
        assert_bits(shifted_out, want, "overlapping out")
    else:
        xd = device.put(x)
        nq.fake_quantization(xd, device.put(scale), device.put(zp), block_size=block, out=xd,
                             **kw)
        assert_bits(device.get(xd), want, "in place")


def test_parallel_block_ranges(monkeypatch):
    """Above PARALLEL_THRESHOLD the CPU splits the blocks into ranges run on threads."""
    from numba_quant._host import tuning as _tuning
    monkeypatch.setattr(_tuning, "PARALLEL_THRESHOLD", 16)
    monkeypatch.setattr(_tuning, "MIN_TASK_ELEMENTS", 2)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((9, 20)).astype(np.float32)
    block = (2, 3)
    kw = dict(quantization_scheme="affine", quantization_bit=3)
    scale, zp = nq.min_max_observer(x, block_size=block, nonfinite="omit", **kw)
    want = oracle.block_min_max_observer(x, block_size=block, **kw)
    assert_bits(scale, want[0])
    assert_bits(zp, want[1])
    assert_bits(nq.quantization(x, scale, zp, block_size=block, **kw),
                oracle.block_apply(oracle.quantization, x, scale, zp, block, **kw))


def test_min_max_observer_class(device):
    x = np.array([[1.0, -7.0, 0.5, 3.5, 2.0]], np.float32)
    observer = nq.MinMaxObserver(quantization_bit=4, block_size=[1, 2])
    assert observer.block_size == (1, 2)
    assert "block_size=(1, 2)" in repr(observer)
    scale, _ = observer(device.put(x))
    assert_bits(device.get(scale), oracle.block_min_max_observer(
        x, quantization_bit=4, block_size=(1, 2))[0])
    state = observer.state_dict()
    other = nq.MinMaxObserver()
    other.load_state_dict(dict(state, block_size=np.asarray(state["block_size"])))  # as npz
    assert other.block_size == (1, 2)
    assert "block_size" not in nq.MinMaxObserver().state_dict()  # saves without objects
    other.load_state_dict({k: v for k, v in state.items() if k != "block_size"})
    assert other.block_size is None


def test_int4_groups_with_a_ragged_last_group():
    """int4 with one scale per group of 4 along the rows, ragged last group."""
    w = np.arange(-5, 5, dtype=np.float32).reshape(2, 5)
    scale, zp = nq.min_max_observer(w, quantization_bit=4, quantization_scheme="affine",
                                    block_size=(1, 4))
    assert scale.shape == (2, 2)
    codes = nq.quantize(w, scale, zp, quantization_bit=4, quantization_scheme="affine",
                        block_size=(1, 4))
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, [[0, 5, 10, 15, 0], [0, 5, 10, 15, 0]])


# --------------------------------------------------------------------------- errors
X = np.arange(12, dtype=np.float32).reshape(3, 4)


@pytest.mark.parametrize("block, error, match", [
    ((1,), ValueError, r"block_size \(1,\) has 1 entries but the input has shape \(3, 4\)"),
    ((0, 2), ValueError, r"entry 0 on axis 0 must be positive"),
    ((-1, 2), ValueError, r"entry -1 on axis 0 must be positive"),
    ((1, 5), ValueError, r"entry 5 on axis 1 exceeds the input's length 4"),
    ("ab", TypeError, r"block_size must be a sequence of integers"),
])
def test_bad_block_size(block, error, match):
    with pytest.raises(error, match=match):
        nq.min_max_observer(X, block_size=block)
    with pytest.raises(error, match=match):
        nq.fake_quantization(X, np.ones((3, 2)), np.zeros((3, 2)), block_size=block)


def test_block_size_against_per_channel_settings():
    with pytest.raises(ValueError, match=r"disagrees with per_layer_quantization=False, "
                                         r"axis=1 \(block \(3, 1\)\)"):
        nq.min_max_observer(X, per_layer_quantization=False, axis=1, block_size=(1, 4))
    with pytest.raises(ValueError, match=r"block_size gives block size \(1, 2\) .* not the "
                                         r"per-channel block \(1, 4\) of axis 0"):
        nq.quantize(X, np.ones((3, 2)), np.zeros((3, 2)), axis=0, block_size=(1, 2))
    with pytest.raises(ValueError, match=r"scale of shape \(1, 4\) gives block size \(3, 1\)"):
        nq.quantize(X, np.ones((1, 4)), np.zeros((1, 4)), axis=0)
    # Consistent: the per-channel block of the given axis.
    nq.fake_quantization(X, np.ones((3, 1)), np.zeros((3, 1)), axis=0, block_size=(1, 4))


def test_parameter_shapes():
    with pytest.raises(ValueError, match=r"scale has shape \(3, 3\); block_size \(1, 2\) on "
                                         r"the input of shape \(3, 4\) needs one value per "
                                         r"block, shape \(3, 2\)"):
        nq.quantize(X, np.ones((3, 3)), np.zeros((3, 3)), block_size=(1, 2))
    with pytest.raises(ValueError, match=r"zero_point has shape \(6,\); .* shape \(3, 2\)"):
        nq.dequantize(X.astype(np.int8), np.ones((3, 2)), np.zeros(6), block_size=(1, 2))
    with pytest.raises(ValueError, match=r"axis 1 of length 4 cannot hold 5 block"):
        nq.fake_quantization(X, np.ones((3, 5)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"block sizes 4 to 6 all split length 7 into 2 "
                                         r"blocks; pass block_size"):
        nq.fake_quantization(np.zeros((2, 7)), np.ones((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"no block size splits length 5 into 4 blocks"):
        nq.fake_quantization(np.zeros((2, 5)), np.ones((1, 4)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"scale must not be negative"):
        nq.quantize(X, -np.ones((3, 2)), np.zeros((3, 2)), block_size=(1, 2))


def test_nonfinite_blocks(device):
    x = X.copy()
    x[2, 2:] = np.nan
    with pytest.raises(ValueError, match=r"input contains 2 non-finite value\(s\)"):
        nq.min_max_observer(device.put(x), block_size=(2, 2))
    with pytest.raises(ValueError, match=r"1 block\(s\) have no finite value \(block index "
                                         r"\(1, 1\) of the grid \(2, 2\)\)"):
        nq.min_max_observer(device.put(x), block_size=(2, 2), nonfinite="omit")
    with pytest.raises(ValueError, match=r"NaN"):
        nq.quantize(device.put(x), device.put(np.ones((2, 2), np.float32)),
                    device.put(np.zeros((2, 2), np.float32)), block_size=(2, 2))


def test_observer_setting_errors():
    """(Dask arrays with block_size: tests/test_dask.py.)"""
    with pytest.raises(ValueError, match=r"block_size \(0, 2\): every entry must be positive"):
        nq.MinMaxObserver(block_size=(0, 2))
    with pytest.raises(TypeError, match=r"block_size must be a sequence of integers"):
        nq.MinMaxObserver(block_size=3)


def test_five_axes_merged_to_four(device):
    """Neighbouring axes merge where memory and blocks allow (a whole inner axis here)."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 2, 5, 2)).astype(np.float32)
    block = (1, 2, 2, 3, 2)
    kw = dict(quantization_scheme="affine", quantization_bit=5)
    scale, zp = oracle.block_min_max_observer(x, block_size=block, **kw)
    got = nq.min_max_observer(device.put(x), block_size=block, **kw)
    assert_bits(device.get(got[0]), scale)
    assert_bits(device.get(nq.fake_quantization(device.put(x), device.put(scale),
                                                device.put(zp), block_size=block, **kw)),
                oracle.block_apply(oracle.fake_quantization, x, scale, zp, block, **kw))


def test_too_many_axes():
    x = np.zeros((2, 3, 2, 3, 2), np.float32)
    with pytest.raises(ValueError, match=r"needs more than 4 axes after merging"):
        nq.min_max_observer(x, block_size=(1, 2, 1, 2, 1))
