"""Every public function gives its results as the kind of array it was given.

numpy in, numpy out; a PyTorch CPU tensor in, tensors out (float8 codes as torch's
float8 dtypes, E8M0 scales as ``float8_e8m0fnu``, packed fp4/int4 codes as ``uint8``);
a Numba device array in (the CUDA simulator here), Numba device arrays out; CuPy and
PyTorch CUDA tensors (real GPU only) the same.  Each call's values are the numpy call's,
bit for bit.  The table in docs/semantics.md ("Input and output kinds") says the same
per function; :data:`CASES` walks them all.
"""
import numpy as np
import pytest

import numba_quant as nq

RNG = np.random.default_rng(20261207)
X = RNG.standard_normal((8, 64)).astype(np.float32)
X[0, :4] = [0.0, 1.5, -2.25, 7.0]
SCALE, ZERO = nq.min_max_observer(X, per_layer_quantization=False)
CODES = nq.quantize(X, SCALE, ZERO, axis=0)
HIST = np.abs(RNG.standard_normal((3, 256))).astype(np.float64) * 10
EDGES = np.tile(np.linspace(0, 4, 257), (3, 1))


def _call(name, fn):
    return pytest.param(fn, id=name)


def _observer_class(put):
    obs = nq.MinMaxObserver(per_layer_quantization=False)
    return obs(put(X))


def _moving_class(put):
    obs = nq.MovingAverageMinMaxObserver()
    obs(put(X))
    return obs(put(X * 2))


def _moving(put):
    state = (put(np.array([1.0], np.float32)), put(np.array([-1.0], np.float32)))
    return nq.moving_average_min_max_observer(put(X), 1, *state, True, 10) + state


def _histogram(put):
    obs = nq.HistogramObserver(method="entropy", per_layer_quantization=False)
    obs(put(X))
    return obs.calculate_qparams()


def _fake_class(put):
    return nq.FakeQuantization(axis=0)(put(X), put(SCALE), put(ZERO))


def _quantization_class(put):
    return nq.Quantization(axis=0)(put(X), put(SCALE), put(ZERO))


def _mx_round_trip(put):
    scale, elements = nq.to_mx(put(X), "float8_e4m3fn")
    return scale, elements, nq.from_mx(scale, elements, "float8_e4m3fn")


def _mxfp4_round_trip(put):
    scale, elements = nq.to_mx(put(X), "float4_e2m1fn")
    return scale, elements, nq.from_mx(scale, elements, "float4_e2m1fn")


def _nvfp4_round_trip(put):
    block_scale, elements, tensor_scale = nq.to_nvfp4(put(X))
    return (block_scale, elements, tensor_scale,
            nq.from_nvfp4(block_scale, elements, tensor_scale))


def _float8_round_trip(put):
    elements, scale = nq.to_float8(put(X), per_layer_quantization=False)
    return elements, scale, nq.from_float8(elements, scale, axis=0)


def _e5m2_round_trip(put):
    elements, scale = nq.to_float8(put(X), "float8_e5m2")
    return elements, scale, nq.from_float8(elements, scale, "float8_e5m2")


def _bits_round_trip(put):
    codes = nq.to_bits(put(X), "float8_e4m3fn")
    return codes, nq.from_bits(codes, "float8_e4m3fn")


def _e8m0_bits(put):
    codes = nq.to_bits(put(np.abs(X) + 1), "float8_e8m0fnu")
    return codes, nq.from_bits(codes, "float8_e8m0fnu")


def _fp4_bits(put):
    codes = nq.to_bits(put(X), "float4_e2m1fn", packed=True)
    return codes, nq.from_bits(codes, "float4_e2m1fn", packed=True)


def _affine(put):
    scale, zero = nq.choose_qparams_affine(put(X), "ASYMMETRIC", (1, 16), np.uint8)
    codes = nq.quantize_affine(put(X), (1, 16), scale, zero, np.uint8)
    return scale, zero, codes, nq.dequantize_affine(codes, (1, 16), scale, zero, np.uint8)


def _affine_fused(put):
    return nq.choose_qparams_and_quantize_affine(put(X), "SYMMETRIC", (2, 32), np.int8)


def _int4_packing(put):
    codes = put(np.arange(16, dtype=np.uint8).reshape(2, 8))
    packed = nq.pack_int4(codes)
    return packed, nq.unpack_int4(packed, 8)


def _gguf_round_trip(put):
    from numba_quant import gguf
    data = gguf.quantize(put(X), "Q4_0", imatrix=put(np.abs(X[1]) + 1))
    return data, gguf.dequantize(data, "Q4_0")


# (name, call, {output position: torch dtype name where numpy has no dtype})
CASES = [
    ("min_max_observer", lambda put: nq.min_max_observer(put(X), per_layer_quantization=False), {}),
    ("min_max_observer block_size",
     lambda put: nq.min_max_observer(put(X), block_size=(2, 32)), {}),
    ("MinMaxObserver", _observer_class, {}),
    ("moving_average_min_max_observer", _moving, {}),
    ("MovingAverageMinMaxObserver", _moving_class, {}),
    ("fake_quantization", lambda put: nq.fake_quantization(put(X), put(SCALE), put(ZERO), axis=0), {}),
    ("quantization", lambda put: nq.quantization(put(X), put(SCALE), put(ZERO), axis=0), {}),
    ("quantize", lambda put: nq.quantize(put(X), put(SCALE), put(ZERO), axis=0), {}),
    ("dequantize", lambda put: nq.dequantize(put(CODES), put(SCALE), put(ZERO), axis=0), {}),
    ("FakeQuantization", _fake_class, {}),
    ("Quantization", _quantization_class, {}),
    ("choose_qparams_affine, quantize_affine, dequantize_affine", _affine, {}),
    ("choose_qparams_and_quantize_affine", _affine_fused, {}),
    ("pack_int4, unpack_int4", _int4_packing, {}),
    ("to_bits, from_bits", _bits_round_trip, {0: "float8_e4m3fn"}),
    ("to_bits e8m0", _e8m0_bits, {0: "float8_e8m0fnu"}),
    ("to_bits fp4 packed", _fp4_bits, {}),
    ("to_float8, from_float8", _float8_round_trip, {0: "float8_e4m3fn"}),
    ("to_float8 e5m2", _e5m2_round_trip, {0: "float8_e5m2"}),
    ("to_mx, from_mx", _mx_round_trip, {0: "float8_e8m0fnu", 1: "float8_e4m3fn"}),
    ("to_mx fp4", _mxfp4_round_trip, {0: "float8_e8m0fnu"}),
    ("mx_fake_quantize", lambda put: nq.mx_fake_quantize(put(X), "float6_e3m2fn"), {}),
    ("to_nvfp4, from_nvfp4", _nvfp4_round_trip, {0: "float8_e4m3fn"}),
    ("nvfp4_fake_quantize", lambda put: nq.nvfp4_fake_quantize(put(X)), {}),
    ("HistogramObserver", _histogram, {}),
    ("compute_amax", lambda put: nq.compute_amax(put(HIST), put(EDGES), "percentile"), {}),
    ("exact_amax_percentile",
     lambda put: nq.exact_amax_percentile(put(X), per_layer_quantization=False), {}),
    ("gguf.quantize, gguf.dequantize", _gguf_round_trip, {}),
]


def _outputs(result):
    return result if isinstance(result, tuple) else (result,)


# --------------------------------------------------------------------------- kinds
def _torch():
    return pytest.importorskip("torch")


class Kind:
    """How a caller of one kind passes arrays, and what it must get back."""

    def __init__(self, name):
        self.name = name

    def put(self, a):
        a = np.asarray(a)
        if self.name == "numpy":
            return a.copy()
        if self.name == "torch":
            return _torch().from_numpy(a.copy())
        if self.name == "numba":
            from numba import cuda
            return cuda.to_device(np.ascontiguousarray(a))
        raise AssertionError(self.name)

    def check(self, out, element):
        """``out`` as numpy bits, after checking its kind (and torch dtype)."""
        if self.name == "numpy":
            assert type(out) is np.ndarray, f"numpy in gave {type(out).__name__}"
            return out
        if self.name == "torch":
            torch = _torch()
            assert isinstance(out, torch.Tensor), f"a tensor in gave {type(out).__name__}"
            assert out.device.type == "cpu"
            if element is not None:
                assert out.dtype == getattr(torch, element), (out.dtype, element)
                return out.view(torch.uint8).numpy()
            return out.numpy()
        from numba.cuda import devicearray
        assert devicearray.is_cuda_ndarray(out), f"a device array in gave {type(out).__name__}"
        return out.copy_to_host()


def _bits(a):
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return a.view(np.dtype(f"u{a.dtype.itemsize}"))
    return a


def _expected_dtype(reference, element):
    """The numpy dtype whose bits a result of another kind holds."""
    if element is not None:
        return np.dtype(np.uint8)
    return np.asarray(reference).dtype


@pytest.mark.parametrize("kind", ["torch", pytest.param("numba", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("call, elements",
                         [pytest.param(fn, el, id=name) for name, fn, el in CASES])
def test_results_come_back_as_the_input_kind(kind, call, elements):
    expected = _outputs(call(Kind("numpy").put))
    got = _outputs(call(Kind(kind).put))
    assert len(got) == len(expected)
    for i, (out, ref) in enumerate(zip(got, expected)):
        if isinstance(ref, np.generic):  # a scalar (NVFP4's per-tensor scale): numpy's
            assert type(out) is type(ref) and _bits(out) == _bits(ref), (i, out, ref)
            continue
        ref_bits = _bits(Kind("numpy").check(ref, None))
        values = Kind(kind).check(out, elements.get(i))
        assert values.dtype == _expected_dtype(ref, elements.get(i)), (i, values.dtype)
        np.testing.assert_array_equal(_bits(values), ref_bits.reshape(values.shape)
                                      if ref_bits.size == values.size else ref_bits)


def test_every_public_function_has_a_case():
    """A new public function must join :data:`CASES` (or be named here with why not)."""
    covered = {word for name, _, _ in CASES for word in name.replace(",", " ").split()}
    # Not array functions: a Dask array from a file, and the report (a Report object).
    not_arrays = {"open_dask", "report", "Report"}
    missing = [n for n in nq.__all__ if n not in not_arrays and n not in covered]
    assert not missing, missing


def test_gguf_converts_half_precision_tensors():
    """``numba_quant.gguf`` converts float16 and bfloat16 tensors as numpy's float16 and
    ml_dtypes' bfloat16 (the round trip of every kind is in :data:`CASES`)."""
    import ml_dtypes

    from numba_quant import gguf
    torch = _torch()
    for tensor, host in ((torch.from_numpy(X.astype(np.float16)), X.astype(np.float16)),
                         (torch.from_numpy(X).to(torch.bfloat16),
                          X.astype(ml_dtypes.bfloat16))):
        np.testing.assert_array_equal(gguf.quantize(tensor, "Q8_0").numpy(),
                                      gguf.quantize(host, "Q8_0"))
