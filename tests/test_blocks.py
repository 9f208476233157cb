"""Block-wise affine quantization: torchao 0.18's golden file, the numpy oracle, errors.

Floats are compared by bit pattern, with dtype and shape.  Every golden case runs on the
CPU path; the GPU (simulator) path runs a subset here (one case per combination of
dtypes and mapping type; ``tools/check_blocks_golden.py`` runs all of them).
"""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracle_blocks as ob
from golden import GoldenFile

nq = pytest.importorskip("numba_quant")

TORCHAO = GoldenFile("blocks_torchao.npz")
DATA = TORCHAO.data()
CASES = TORCHAO.cases
assert len(CASES) == 161


def _dtype(name):
    return ob.BF16 if name == "bfloat16" else np.dtype(name)


def _target(case):
    name = case["target_dtype"]
    return {"int8": np.int8, "uint8": np.uint8}.get(name, name)


def _input(case):
    x = DATA[case["input"]]
    return x.view(ob.BF16) if case["dtype"] == "bfloat16" else x


def _bits(a):
    a = np.asarray(a)
    if a.dtype.kind in "fV" or a.dtype == ob.BF16:
        return a.view(f"u{a.dtype.itemsize}")
    return a


def assert_bits(actual, expected, what):
    """Same shape, same dtype (bfloat16 stored as uint16 in the file), same bits."""
    actual = np.asarray(actual)
    if actual.dtype == ob.BF16 and expected.dtype == np.uint16:
        actual = actual.view(np.uint16)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    a, e = _bits(actual), _bits(expected)
    bad = np.argwhere(a != e)
    assert bad.size == 0, (f"{what}: {len(bad)} of {a.size} differ; first at "
                           f"{tuple(bad[0])}: {actual[tuple(bad[0])]!r} != "
                           f"{expected[tuple(bad[0])]!r}")


def _run(device, case):
    x = device.put(_input(case))
    args = (case["mapping_type"], tuple(case["block_size"]), _target(case),
            case["quant_min"], case["quant_max"], case["eps_arg"], _dtype(case["scale_dtype"]),
            np.int32)
    scale, zp = nq.choose_qparams_affine(x, *args)
    codes = nq.quantize_affine(x, tuple(case["block_size"]), scale, zp, _target(case),
                               case["quant_min"], case["quant_max"])
    fused = nq.choose_qparams_and_quantize_affine(x, *args)
    deq = nq.dequantize_affine(codes, tuple(case["block_size"]), scale, zp, _target(case),
                               case["quant_min"], case["quant_max"],
                               output_dtype=_dtype(case["dequant_dtype"]))
    got = dict(scale=device.get(scale), zero_point=device.get(zp), codes=device.get(codes),
               dequant=device.get(deq))
    for name, value in got.items():
        assert_bits(value, DATA[f"{case['id']}/{name}"], name)
    for name, value in zip(("codes", "scale", "zero_point"), fused):
        assert_bits(device.get(value), DATA[f"{case['id']}/{name}"], f"fused {name}")


def _gpu_subset():
    """For each combination of dtypes, and for float32 each mapping type, its case with the
    smallest input, whole-tensor kinds last (the simulator runs each GPU thread in Python)."""
    chosen = {}
    for c in CASES:
        key = (c["dtype"], c["scale_dtype"], c["dequant_dtype"],
               c["mapping_type"] if c["dtype"] == "float32" else "")
        rank = (c["input_kind"].startswith("tensor"), int(np.prod(c["shape"])))
        if key not in chosen or rank < chosen[key][0]:
            chosen[key] = (rank, c)
    return [c for _, c in chosen.values()]


GPU_CASES = _gpu_subset()


@contextlib.contextmanager
def _few_threads():
    """In the simulator, 4 threads per block (2 blocks): each barrier of the block
    reduction costs a hand-over between all simulated threads of the block."""
    from devices import SIMULATOR
    with pytest.MonkeyPatch.context() as mp:
        if SIMULATOR:
            from numba_quant._host import tuning as _tuning
            mp.setitem(_tuning.LAUNCH, "threads", 4)
            mp.setitem(_tuning.LAUNCH, "max_blocks", 2)
        yield


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_golden_cpu(case):
    from devices import Device
    _run(Device("cpu"), case)


@pytest.mark.gpu
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: c["id"])
def test_golden_gpu(case):
    from devices import Device
    with _few_threads():
        _run(Device("gpu"), case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_oracle_reproduces_golden(case):
    """The oracle used by the property tests is itself checked against torchao."""
    scale, zp, codes, deq = ob.round_trip(
        _input(case), case["mapping_type"].lower(), tuple(case["block_size"]),
        case["quant_min"], case["quant_max"], np.dtype(case["codes_dtype"]), case["eps_arg"],
        _dtype(case["scale_dtype"]), _dtype(case["dequant_dtype"]))
    for name, value in dict(scale=scale, zero_point=zp, codes=codes, dequant=deq).items():
        assert_bits(value, DATA[f"{case['id']}/{name}"], name)


# --------------------------------------------------------------------------- properties
RANGES = {"uint4": (np.uint8, 0, 15), "int4": (np.int8, -8, 7), "uint8": (np.uint8, 0, 255),
          "int8": (np.int8, -128, 127), "uint2": (np.uint8, 0, 3)}
MAPPINGS = ("asymmetric", "symmetric", "symmetric_no_clipping_err")


@st.composite
def block_cases(draw, max_ndim=3, max_len=12, strided=True):
    ndim = draw(st.integers(1, max_ndim))
    shape = tuple(draw(st.lists(st.integers(1, max_len), min_size=ndim, max_size=ndim)))
    block = tuple(draw(st.integers(1, d)) for d in shape)
    kind = draw(st.sampled_from(["float32", "bfloat16", "float16"]))
    mapping = draw(st.sampled_from(MAPPINGS))
    rname = draw(st.sampled_from(sorted(RANGES)))
    scale_kind = draw(st.sampled_from([None, "float32"]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    steps = tuple(draw(st.sampled_from([1, 2, -1])) for _ in shape) if strided else (1,) * ndim
    perm = tuple(draw(st.permutations(range(ndim)))) if strided else tuple(range(ndim))
    rng = np.random.default_rng(seed)
    base_shape = tuple(shape[p] * abs(steps[p]) for p in perm)
    base = rng.standard_normal(base_shape) * 10.0 ** rng.uniform(-3, 3, base_shape[-1:])
    if draw(st.booleans()):
        base[rng.random(base_shape) < 0.2] = 0.0  # zero runs and whole zero blocks
    base = base.astype(_dtype(kind))
    x = base.transpose(np.argsort(perm))
    x = x[tuple(slice(None, None, s) for s in steps)]
    assert x.shape == shape
    return dict(x=x, block=block, mapping=mapping, range=rname,
                scale_dtype=None if scale_kind is None else _dtype(scale_kind))


def _check_against_oracle(device, c, out_dtype=np.float32):
    x, block = c["x"], c["block"]
    codes_dtype, qmin, qmax = RANGES[c["range"]]
    exp = ob.round_trip(x, c["mapping"], block, qmin, qmax, codes_dtype,
                        scale_dtype=c["scale_dtype"], dequant_dtype=out_dtype)
    xd = device.put(x) if device.gpu else x
    scale, zp = nq.choose_qparams_affine(xd, c["mapping"], block, c["range"],
                                         scale_dtype=c["scale_dtype"])
    codes = nq.quantize_affine(xd, block, scale, zp, c["range"])
    fused = nq.choose_qparams_and_quantize_affine(xd, c["mapping"], block, c["range"],
                                                  scale_dtype=c["scale_dtype"])
    deq = nq.dequantize_affine(codes, block, scale, zp, c["range"], output_dtype=out_dtype)
    names = ("scale", "zero_point", "codes", "dequant")
    for name, got, want in zip(names, (scale, zp, codes, deq), exp):
        assert_bits(device.get(got), np.asarray(want).view(np.uint16)
                    if np.asarray(want).dtype == ob.BF16 else want, name)
    for name, got, want in zip(("codes", "scale", "zero_point"), fused,
                               (exp[2], exp[0], exp[1])):
        assert_bits(device.get(got), np.asarray(want).view(np.uint16)
                    if np.asarray(want).dtype == ob.BF16 else want, f"fused {name}")


@given(c=block_cases())
def test_cpu_matches_oracle(c):
    from devices import Device
    _check_against_oracle(Device("cpu"), c)


@pytest.mark.gpu
@settings(max_examples=6)
@given(c=block_cases(max_ndim=2, max_len=9, strided=False))
def test_gpu_matches_oracle(c):
    from devices import Device
    with _few_threads():
        _check_against_oracle(Device("gpu"), c)


def test_parallel_route_matches_serial(monkeypatch):
    """The parallel kernels (reached by shrinking the threshold) give the serial results."""
    from numba_quant._host import tuning as _tuning
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((24, 200)) * 3).astype(np.float32)
    exp = ob.round_trip(x, "asymmetric", (3, 64), 0, 15, np.uint8)
    monkeypatch.setattr(_tuning, "PARALLEL_THRESHOLD", 0)
    codes, scale, zp = nq.choose_qparams_and_quantize_affine(x, "asymmetric", (3, 64), "uint4")
    deq = nq.dequantize_affine(nq.quantize_affine(x, (3, 64), scale, zp, "uint4"), (3, 64),
                               scale, zp, "uint4")
    for name, got, want in zip(("scale", "zero_point", "codes", "dequant"),
                               (scale, zp, codes, deq), exp):
        assert_bits(got, want, name)


def test_out_and_layouts_that_need_copies():
    """Five axes that merge only once the input is copied contiguous, and a strided ``out``
    that has no 4-D view with the input (codes computed into a new array, then copied)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3, 5, 4, 3)).astype(np.float32).transpose(1, 0, 2, 4, 3)
    block = (3, 2, 5, 1, 4)  # x.shape == (3, 4, 5, 3, 4)
    exp = ob.round_trip(x, "symmetric", block, -8, 7, np.int8)
    holder = np.zeros((4, 3, 5, 4, 3), np.int8)
    out = holder.transpose(1, 0, 2, 4, 3)
    codes, scale, zp = nq.choose_qparams_and_quantize_affine(x, "symmetric", block, "int4",
                                                             out=out)
    assert codes is out
    assert_bits(out, exp[2], "codes")
    assert_bits(scale, exp[0], "scale")
    deq = np.empty(x.shape + (2,), np.float32)[..., 1]
    nq.dequantize_affine(out, block, scale, zp, "int4", out=deq)
    assert_bits(deq, exp[3], "dequant")
    with pytest.raises(ValueError, match=r"needs more than 4 axes after merging"):
        nq.choose_qparams_affine(np.zeros((3, 4, 5, 3, 4), np.float32), "symmetric",
                                 (2, 3, 2, 2, 3), np.int8)


def test_float64_input():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 10))
    exp = ob.round_trip(x, "asymmetric", (2, 4), 0, 255, np.uint8, dequant_dtype=np.float64)
    scale, zp = nq.choose_qparams_affine(x, "asymmetric", (2, 4), np.uint8)
    codes = nq.quantize_affine(x, (2, 4), scale, zp, np.uint8)
    deq = nq.dequantize_affine(codes, (2, 4), scale, zp, np.uint8, output_dtype=np.float64)
    for name, got, want in zip(("scale", "zero_point", "codes", "dequant"),
                               (scale, zp, codes, deq), exp):
        assert_bits(got, want, name)


def test_full_rank_parameters_and_no_zero_point():
    x = np.array([[1.0, -2.0, 3.0, 0.5]], np.float32)
    scale = np.array([[0.5, 0.25]], np.float32)  # full rank (1, 2) == torchao's shape here
    codes = nq.quantize_affine(x, (1, 2), scale, None, np.int8)
    assert codes.tolist() == [[2, -4, 12, 2]]
    scale3 = np.array([[[0.5]]], np.float32)
    codes3 = nq.quantize_affine(x[None], (1, 1, 4), scale3, None, np.int8)
    assert codes3.tolist() == [[[2, -4, 6, 1]]]


# --------------------------------------------------------------------------- errors
X = np.zeros((4, 8), np.float32)


@pytest.mark.parametrize("block, match", [
    ((1,), r"block_size \(1,\) has 1 entries but the input has shape \(4, 8\)"),
    ((0, 4), r"entry 0 on axis 0 must be positive"),
    ((1, -2), r"entry -2 on axis 1 must be positive"),
    ((1, 9), r"entry 9 on axis 1 exceeds the input's length 8"),
])
def test_bad_block_size(block, match):
    with pytest.raises(ValueError, match=match):
        nq.choose_qparams_affine(X, "symmetric", block, np.int8)


def test_bad_arguments():
    with pytest.raises(TypeError, match="block_size must be a sequence of integers"):
        nq.choose_qparams_affine(X, "symmetric", (1.5, 2), np.int8)
    with pytest.raises(ValueError, match="mapping_type must be one of 'asymmetric'"):
        nq.choose_qparams_affine(X, "affine", (1, 8), np.int8)
    with pytest.raises(TypeError, match="target_dtype must be an integer dtype"):
        nq.choose_qparams_affine(X, "symmetric", (1, 8), np.float32)
    with pytest.raises(ValueError, match=r"quant_min 0 and quant_max 300 must satisfy"):
        nq.choose_qparams_affine(X, "symmetric", (1, 8), np.uint8, 0, 300)
    with pytest.raises(TypeError, match="x must be a float16, bfloat16"):
        nq.choose_qparams_affine(X.astype(np.int32), "symmetric", (1, 8), np.int8)
    with pytest.raises(ValueError, match="eps must be a positive finite number"):
        nq.choose_qparams_affine(X, "symmetric", (1, 8), np.int8, eps=0.0)
    with pytest.raises(ValueError, match="the input of shape \\(0, 8\\) is empty"):
        nq.choose_qparams_affine(np.zeros((0, 8), np.float32), "symmetric", (1, 8), np.int8)


def test_parameters_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"scale has shape \(4, 3\); expected \(4, 2\) "
                                         r"\(or \(4, 2\), one value per block"):
        nq.quantize_affine(X, (1, 4), np.ones((4, 3), np.float32), None, np.int8)
    with pytest.raises(ValueError, match=r"zero_point has shape \(8,\); expected \(4,\)"):
        nq.quantize_affine(X, (1, 8), np.ones(4, np.float32), np.zeros(8, np.int32), np.int8)
    with pytest.raises(ValueError, match="scale must be finite and positive"):
        nq.quantize_affine(X, (1, 8), np.zeros(4, np.float32), None, np.int8)
    with pytest.raises(ValueError, match="zero_point must hold integers"):
        nq.quantize_affine(X, (1, 8), np.ones(4, np.float32), np.full(4, 0.5), np.int8)


def test_nonfinite_input_and_codes_out_of_range():
    x = X.copy()
    x[1, 3] = np.nan
    x[2, 0] = np.inf
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or infinity\) in 2 block"):
        nq.choose_qparams_affine(x, "asymmetric", (1, 8), np.uint8)
    with pytest.raises(ValueError, match=r"input contains 1 NaN value\(s\)"):
        nq.quantize_affine(x, (1, 8), np.ones(4, np.float32), None, np.int8)
    codes = np.full((4, 8), 3, np.uint8)
    codes[0, 0] = 16
    with pytest.raises(ValueError, match=r"1 code\(s\) lie outside \[quant_min, quant_max\] = "
                                         r"\[0, 15\]"):
        nq.dequantize_affine(codes, (1, 8), np.ones(4, np.float32), None, "uint4")
    with pytest.raises(TypeError, match="codes have dtype int8 but input_dtype"):
        nq.dequantize_affine(codes.astype(np.int8), (1, 8), np.ones(4, np.float32), None,
                             np.uint8)


def test_out_checks():
    with pytest.raises(ValueError, match=r"out has shape \(4, 4\); expected \(4, 8\)"):
        nq.quantize_affine(X, (1, 8), np.ones(4, np.float32), None, np.int8,
                           out=np.empty((4, 4), np.int8))
    with pytest.raises(TypeError, match="out has dtype uint8; expected int8"):
        nq.quantize_affine(X, (1, 8), np.ones(4, np.float32), None, np.int8,
                           out=np.empty((4, 8), np.uint8))


# --------------------------------------------------------------------------- packing
@given(n=st.integers(1, 9), rows=st.integers(1, 3), signed=st.booleans(),
       seed=st.integers(0, 2 ** 32 - 1))
def test_pack_int4_round_trip_and_nibble_order(n, rows, signed, seed):
    rng = np.random.default_rng(seed)
    lo, hi, dtype = (-8, 7, np.int8) if signed else (0, 15, np.uint8)
    codes = rng.integers(lo, hi + 1, (rows, n)).astype(dtype)
    packed = nq.pack_int4(codes)
    assert packed.dtype == np.uint8 and packed.shape == (rows, (n + 1) // 2)
    for i in range(n):  # code 2k in the low nibble of byte k, code 2k+1 in the high one
        nibble = (packed[:, i // 2] >> (4 * (i % 2))) & 0xF
        np.testing.assert_array_equal(nibble, codes[:, i].astype(np.int16) & 0xF)
    if n % 2:
        assert (packed[:, -1] >> 4 == 0).all()
    back = nq.unpack_int4(packed, n, signed=signed)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, codes)


def test_pack_int4_errors():
    with pytest.raises(ValueError, match=r"uint4 codes must lie in \[0, 15\]; got values "
                                         r"from 0 to 16"):
        nq.pack_int4(np.array([0, 16], np.uint8))
    with pytest.raises(ValueError, match=r"int4 codes must lie in \[-8, 7\]"):
        nq.pack_int4(np.array([-9, 0], np.int8))
    with pytest.raises(TypeError, match="codes must be integers"):
        nq.pack_int4(np.array([0.5]))
    with pytest.raises(ValueError, match=r"5 codes do not fit packed bytes of shape \(2,\)"):
        nq.unpack_int4(np.zeros(2, np.uint8), 5)
    with pytest.raises(TypeError, match="packed codes must be uint8"):
        nq.unpack_int4(np.zeros(2, np.int8), 4)


# --------------------------------------------------------------------------- Dask
def test_dask_arrays_equal_in_memory():
    """torchao's functions on Dask arrays whose chunks cut blocks: moved to block
    boundaries, values, shapes and dtypes equal to the in-memory call's."""
    from dask_checks import CHUNKINGS, compare, dask_modules
    _, da = dask_modules()
    x = (np.random.default_rng(6).standard_normal((13, 66)) * 3).astype(np.float32)
    block = (4, 16)  # ragged on both axes
    lazy, expected = [], []
    for chunking in CHUNKINGS:
        dx = da.from_array(x, chunks=chunking)
        s, z = nq.choose_qparams_affine(x, "asymmetric", block, "uint4")
        codes = nq.quantize_affine(x, block, s, z, "uint4")
        ds, dz = nq.choose_qparams_affine(dx, "asymmetric", block, "uint4")
        lazy += [ds, dz, nq.quantize_affine(dx, block, s, z, "uint4"),
                 nq.dequantize_affine(da.from_array(codes, chunks=chunking), block, ds, dz,
                                      "uint4"),
                 *nq.choose_qparams_and_quantize_affine(dx, "symmetric", (1, 66), "int8")]
        expected += [s, z, codes, nq.dequantize_affine(codes, block, s, z, "uint4"),
                     *nq.choose_qparams_and_quantize_affine(x, "symmetric", (1, 66), "int8")]
    compare(lazy, expected)
    bad = x.copy()
    bad[0, 0] = bad[12, 65] = np.nan
    scale, _ = nq.choose_qparams_affine(da.from_array(bad, chunks=(5, 25)), "asymmetric",
                                        block, "uint4")
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or infinity\) in 2 "
                                         r"block\(s\)"):
        compare([scale], [scale])  # the whole array's count of blocks
