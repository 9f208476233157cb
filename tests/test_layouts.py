"""Memory layouts: any strides, Fortran order, negative strides, read-only, big-endian,
np.memmap; per-channel along any axis; the input is never written; ``out=``."""
import numpy as np
import pytest

import oracle
from devices import Device, is_device_array
from golden import assert_same

nq = pytest.importorskip("numba_quant")

CONFIGS = [("google", 8, "symmetric"), ("google", 5, "affine"), ("cambricon", 6, "symmetric")]
AXES = [0, 1, 2, -1, -2, -3]


def _base(dtype=np.float32, shape=(4, 6, 10), seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    x[1, 2, 3] = 7.0   # one clear maximum, away from the others
    return x.astype(dtype)


def _host_layouts(tmp_path, dtype=np.float32):
    """(name, array) with the values of _base(dtype)[..., ::2] in varied layouts."""
    full = _base(dtype)
    ref = full[:, :, ::2].copy()
    out = [
        ("c", np.ascontiguousarray(ref)),
        ("strided", full[:, :, ::2]),                            # non-contiguous
        ("fortran", np.asfortranarray(ref)),
        ("negative", np.ascontiguousarray(ref[::-1, :, ::-1])[::-1, :, ::-1]),
        ("transposed", np.ascontiguousarray(ref.transpose(2, 0, 1)).transpose(1, 2, 0)),
    ]
    ro = np.array(ref)
    ro.setflags(write=False)
    out.append(("readonly", ro))
    be = ref.astype(ref.dtype.newbyteorder(">"))
    out.append(("bigendian", be))
    out.append(("bigendian_strided", np.asfortranarray(be)[:, ::1, :]))
    mm = np.memmap(tmp_path / f"x_{np.dtype(dtype).name}.dat", dtype=dtype, mode="w+",
                   shape=ref.shape)
    mm[...] = ref
    mm.flush()
    out.append(("memmap", mm))
    ro_mm = np.memmap(tmp_path / f"x_{np.dtype(dtype).name}.dat", dtype=dtype, mode="r",
                      shape=ref.shape)
    out.append(("memmap_readonly", ro_mm))
    for name, a in out:
        assert np.array_equal(a, ref), name
    return ref, out


LAYOUT_NAMES = ["c", "strided", "fortran", "negative", "transposed", "readonly", "bigendian",
                "bigendian_strided", "memmap", "memmap_readonly"]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_host_layouts_min_max_observer(tmp_path, layout, dtype):
    ref, layouts = _host_layouts(tmp_path, dtype)
    x = dict(layouts)[layout]
    before = np.array(x, copy=True)
    for formula, bit, scheme in CONFIGS:
        s, zp = nq.min_max_observer(x, formula, bit, scheme)
        exp = oracle.min_max_observer(ref, formula, bit, scheme)
        assert_same(s, exp[0], f"{formula} {scheme} scale")
        assert_same(zp, exp[1], f"{formula} {scheme} zp")
        for axis in AXES:
            if formula == "cambricon" and axis not in (0, -1):
                continue
            s, zp = nq.min_max_observer(x, formula, bit, scheme, False, axis=axis)
            exp = oracle.min_max_observer(ref, formula, bit, scheme, False, axis=axis)
            assert_same(s, exp[0], f"axis {axis} scale")
            assert_same(zp, exp[1], f"axis {axis} zp")
    assert np.array_equal(x, before)   # never written
    assert x.dtype == before.dtype


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_host_layouts_fake_quantization(tmp_path, layout, dtype):
    ref, layouts = _host_layouts(tmp_path, dtype)
    x = dict(layouts)[layout]
    before = np.array(x, copy=True)
    for formula, bit, scheme in CONFIGS:
        for axis in (0, -1, 1):
            s, zp = oracle.min_max_observer(ref, formula, bit, scheme, False, axis=axis)
            if formula == "google":
                s = s / s.dtype.type(3)   # tighter: some values clamp
            for fn, ofn in ((nq.fake_quantization, oracle.fake_quantization),
                            (nq.quantization, oracle.quantization),
                            (nq.quantize, oracle.quantize)):
                got = fn(x, s, zp, formula, bit, scheme, axis=axis)
                assert_same(got, ofn(ref, s, zp, formula, bit, scheme, axis=axis),
                            f"{fn.__name__} {formula} {scheme} axis {axis}")
            # integer codes with strides map back too
            q = oracle.quantize(ref, s, zp, formula, bit, scheme, axis=axis)
            qv = np.asfortranarray(q) if layout == "fortran" else q
            # (not fake_quantization's bits: a -0.0 there decodes from the code 0 as +0.0,
            # docs/semantics.md §5.7)
            assert_same(nq.dequantize(qv, s, zp, formula, bit, scheme, axis=axis),
                        oracle.dequantize(q, s, zp, formula, bit, scheme, axis=axis),
                        "dequantize")
    assert np.array_equal(x, before)


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_host_layouts_moving_average(tmp_path, layout):
    ref, layouts = _host_layouts(tmp_path, np.float32)
    x = dict(layouts)[layout]
    before = np.array(x, copy=True)
    for axis in (None, 0, -1):
        n = 1 if axis is None else ref.shape[axis]
        state = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
        exp_state = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
        for step in range(2):
            got = nq.moving_average_min_max_observer(x, step, state[0], state[1], True, 5,
                                                     "google", 8, "affine", 0.9,
                                                     axis=0 if axis is None else axis)
            exp = oracle.moving_average_min_max_observer(
                ref, step, exp_state[0], exp_state[1], True, 5, "google", 8, "affine", 0.9,
                axis=0 if axis is None else axis)
            exp_state = list(exp[2:])
            assert_same(got[0], exp[0], "scale")
            assert_same(got[1], exp[1], "zero_point")
            assert_same(state[0], exp[2], "moving_max")
            assert_same(state[1], exp[3], "moving_min")
    assert np.array_equal(x, before)


def test_broadcast_zero_strides():
    # a read-only view with zero strides: every row is the same
    row = np.array([1.0, -4.0, 2.0, 0.5], np.float32)
    x = np.broadcast_to(row, (3, 4))
    assert x.strides[0] == 0 and not x.flags.writeable
    ref = np.array(x)
    for axis in (0, 1):
        got = nq.min_max_observer(x, "google", 8, "affine", False, axis=axis)
        exp = oracle.min_max_observer(ref, "google", 8, "affine", False, axis=axis)
        assert_same(got[0], exp[0], "scale")
        assert_same(got[1], exp[1], "zp")
    s, zp = np.array([0.1], np.float32), np.zeros(1, np.float32)
    assert_same(nq.fake_quantization(x, s, zp), oracle.fake_quantization(ref, s, zp), "fake")


# --------------------------------------------------------------------------- out=
def _fq_args(ref, axis=0):
    s, zp = oracle.min_max_observer(ref, "google", 6, "affine", False, axis=axis)
    return s / np.float32(2), zp   # tight: clamps at both ends


@pytest.mark.parametrize("fn_name", ["fake_quantization", "quantization"])
def test_out_contiguous_and_strided(fn_name):
    fn, ofn = getattr(nq, fn_name), getattr(oracle, fn_name)
    ref = _base()[:, :, :5].copy()
    s, zp = _fq_args(ref)
    exp = ofn(ref, s, zp, "google", 6, "affine")
    out = np.full(ref.shape, -99.0, np.float32)
    res = fn(ref, s, zp, "google", 6, "affine", out=out)
    assert np.shares_memory(res, out)
    assert_same(out, exp, "out contiguous")
    big = np.full((4, 6, 10), -99.0, np.float32)
    out2 = big[:, :, ::2]                       # non-contiguous out
    fn(ref, s, zp, "google", 6, "affine", out=out2)
    assert_same(out2, exp, "out strided")
    assert np.all(big[:, :, 1::2] == -99.0)    # the gaps are untouched
    out3 = np.full(ref.shape[::-1], -99.0, np.float32).T   # Fortran-order out
    fn(ref, s, zp, "google", 6, "affine", out=out3)
    assert_same(out3, exp, "out fortran")


def test_out_quantize_integer():
    ref = _base()[:, :, :5].copy()
    s, zp = _fq_args(ref)
    exp = oracle.quantize(ref, s, zp, "google", 6, "affine")
    out = np.zeros((4, 6, 10), np.uint8)[:, :, 1::2]
    nq.quantize(ref, s, zp, "google", 6, "affine", out=out)
    assert_same(out, exp, "codes into a strided out")
    back = np.zeros(ref.shape, np.float32)
    nq.dequantize(out, s, zp, "google", 6, "affine", out=back)
    assert_same(back, oracle.fake_quantization(ref, s, zp, "google", 6, "affine"), "deq out")


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("fn_name", ["fake_quantization", "quantization"])
def test_out_aliases_input(fn_name, axis):
    """In-place fake quantization: out is x itself."""
    fn, ofn = getattr(nq, fn_name), getattr(oracle, fn_name)
    ref = _base()
    s, zp = _fq_args(ref, axis)
    exp = ofn(ref, s, zp, "google", 6, "affine", axis=axis)
    x = ref.copy()
    res = fn(x, s, zp, "google", 6, "affine", axis=axis, out=x)
    assert np.shares_memory(res, x)
    assert_same(x, exp, "in place")
    xs = _base().copy()
    view = xs[:, ::2, :]                  # in place on a non-contiguous view
    sv, zpv = _fq_args(np.ascontiguousarray(view), axis)
    exp_v = ofn(np.ascontiguousarray(view), sv, zpv, "google", 6, "affine", axis=axis)
    fn(view, sv, zpv, "google", 6, "affine", axis=axis, out=view)
    assert_same(view, exp_v, "in place strided")
    assert np.array_equal(xs[:, 1::2, :], _base()[:, 1::2, :])   # the rest untouched


def test_out_overlaps_input_differently():
    """out shares memory with x in another order (reversed): the result is as if x were
    read first, as numpy's ufuncs do."""
    ref = _base()[0, 0, :].copy()
    s, zp = np.array([0.25], np.float32), np.zeros(1, np.float32)
    exp = oracle.fake_quantization(ref, s, zp)[::-1]
    x = ref.copy()
    nq.fake_quantization(x, s, zp, out=x[::-1])
    assert_same(x, exp, "reversed alias")


def test_out_errors():
    ref = _base()[:, :, :5].copy()
    s, zp = _fq_args(ref)
    with pytest.raises(ValueError, match=r"(?s)\(4, 6, 5\)"):     # wrong shape
        nq.fake_quantization(ref, s, zp, out=np.zeros((4, 6, 4), np.float32))
    with pytest.raises(TypeError, match="out has dtype float64; expected float32"):
        nq.fake_quantization(ref, s, zp, out=np.zeros(ref.shape, np.float64))
    ro = np.zeros(ref.shape, np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="out is read-only"):
        nq.fake_quantization(ref, s, zp, out=ro)
    with pytest.raises(TypeError, match="out has dtype float32; expected uint8"):  # codes
        nq.quantize(ref, s, zp, "google", 6, "affine", out=np.zeros(ref.shape, np.float32))


def test_out_float16_input_is_float32():
    x16 = _base(np.float16)
    s, zp = np.array([0.1], np.float32), np.zeros(1, np.float32)
    out = np.zeros(x16.shape, np.float32)
    nq.fake_quantization(x16, s, zp, out=out)
    assert_same(out, oracle.fake_quantization(x16, s, zp), "f16 in, f32 out")
    with pytest.raises(TypeError, match="out has dtype float16; expected float32"):
        nq.fake_quantization(x16, s, zp, out=np.zeros(x16.shape, np.float16))


# --------------------------------------------------------------------------- GPU layouts
def _gpu_layouts():
    """Device arrays: contiguous, strided slice, Fortran, negative strides (tiny)."""
    from numba import cuda
    full = _base(shape=(3, 4, 6))
    ref = full[:, :, ::2].copy()
    d_full = cuda.to_device(full)
    reversed_base = cuda.to_device(np.ascontiguousarray(ref[::-1, ::-1]))
    layouts = [
        ("c", cuda.to_device(ref)),
        ("strided", d_full[:, :, ::2]),
        ("fortran", cuda.to_device(np.asfortranarray(ref))),
        ("negative", reversed_base[::-1, ::-1]),
    ]
    # what each layout's memory must still hold afterwards (numba-cuda cannot copy a
    # negative-stride view to the host: its contiguous base is checked instead)
    memory = {"c": (layouts[0][1], ref), "strided": (d_full, full),
              "fortran": (layouts[2][1], ref),
              "negative": (reversed_base, np.ascontiguousarray(ref[::-1, ::-1]))}
    return ref, layouts, memory


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["c", "strided", "fortran", "negative"])
def test_gpu_layouts(layout):
    gpu = Device("gpu")
    ref, layouts, memory = _gpu_layouts()
    x = dict(layouts)[layout]
    base, base_values = memory[layout]
    assert np.array_equal(base.copy_to_host(), base_values)
    for formula, bit, scheme in CONFIGS:
        for per_layer, axis in ((True, 0), (False, 0), (False, -1), (False, 1)):
            s, zp = (gpu.get(a) for a in nq.min_max_observer(x, formula, bit, scheme,
                                                             per_layer, axis=axis))
            exp = oracle.min_max_observer(ref, formula, bit, scheme, per_layer, axis=axis)
            assert_same(s, exp[0], f"{formula} {scheme} {per_layer} {axis} scale")
            assert_same(zp, exp[1], "zp")
            f = gpu.get(nq.fake_quantization(x, gpu.put(s), gpu.put(zp), formula, bit, scheme,
                                             axis=axis))
            assert_same(f, oracle.fake_quantization(ref, s, zp, formula, bit, scheme,
                                                    axis=axis), "fake")
    assert np.array_equal(base.copy_to_host(), base_values)   # never written


@pytest.mark.gpu
def test_gpu_out_strided_and_in_place():
    from numba import cuda
    gpu = Device("gpu")
    ref = _base(shape=(3, 4, 6))
    s, zp = _fq_args(ref, 1)
    exp = oracle.fake_quantization(ref, s, zp, "google", 6, "affine", axis=1)
    big = cuda.to_device(np.full((3, 4, 12), -99.0, np.float32))
    out = big[:, :, ::2]
    res = nq.fake_quantization(gpu.put(ref), gpu.put(s), gpu.put(zp), "google", 6, "affine",
                               axis=1, out=out)
    assert is_device_array(res)
    assert_same(out.copy_to_host(), exp, "strided out")
    host_big = big.copy_to_host()
    assert np.all(host_big[:, :, 1::2] == -99.0)
    x = gpu.put(ref)
    nq.fake_quantization(x, gpu.put(s), gpu.put(zp), "google", 6, "affine", axis=1, out=x)
    assert_same(x.copy_to_host(), exp, "in place")
    q = gpu.put(np.zeros(ref.shape, np.uint8))
    nq.quantize(gpu.put(ref), gpu.put(s), gpu.put(zp), "google", 6, "affine", axis=1, out=q)
    assert_same(q.copy_to_host(), oracle.quantize(ref, s, zp, "google", 6, "affine", axis=1),
                "codes out")


def test_layouts_share_compiled_kernels(tmp_path):
    """Every host layout runs one compiled kernel per layout class: C-contiguous, or any
    strides (read-only, Fortran, strided, memmap, ... share them), so a cold cache
    compiles two signatures per kernel and dtype, not one per array flavour."""
    from numba_quant._cpu import kernels

    dtype = np.float64   # a dtype the other tests reach through few layouts
    ref, layouts = _host_layouts(tmp_path, dtype)
    for name, x in layouts:
        for axis in (0, -1):
            scale, zp = nq.min_max_observer(x, "google", 8, "affine", False, axis=axis)
            expected = oracle.min_max_observer(ref, "google", 8, "affine", False, axis)
            assert_same(scale, expected[0], f"{name} scale axis {axis}")
            assert_same(zp, expected[1], f"{name} zero point axis {axis}")
    compiled = [sig for sig in kernels.small_observe.dispatcher.signatures
                if str(sig[0].dtype) == "float64"]
    assert sorted(sig[0].layout for sig in compiled) in (["C"], ["A"], ["A", "C"])
    assert all(sig[0].mutable for sig in compiled)
