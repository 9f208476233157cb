"""float16 and bfloat16 device arrays, converted in chunks on the GPU (simulator or GPU).

The GPU backend converts 16-bit device inputs (and ``dequantize``'s integer codes) to
float32 ``_tuning.DEVICE_WIDEN_CHUNK`` elements at a time.  Here that size is shrunk so
that a small input spans several chunks (cut along an inner axis, in the memory order of
a C-ordered and a Fortran-ordered input), and every result is compared bit for bit with
the numpy oracle on the input widened by numpy / ml_dtypes.  Few calls, each checking
much: every simulated kernel launch costs time.
"""
import re

import numpy as np
import oracle
import pytest
from golden import assert_same

nq = pytest.importorskip("numba_quant")
ml_dtypes = pytest.importorskip("ml_dtypes")
cuda = pytest.importorskip("numba.cuda")
from numba_quant._host import tuning as _tuning

pytestmark = pytest.mark.gpu

BF16 = np.dtype(ml_dtypes.bfloat16)
SHAPE = (3, 10, 4)
AFFINE = ("google", 5, "affine")


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 40 elements: a (3, 10, 4) input in 3 (C order: slabs along axis 0) or
    4 chunks (Fortran order: slabs along axis 2)."""
    monkeypatch.setattr(_tuning, "DEVICE_WIDEN_CHUNK", 40)


def _values(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(SHAPE) * 3).astype(np.float32)
    x[:, 2] = np.abs(x[:, 2])
    x[0, 2, 1] = 0.0      # channel 2 of axis 1: its minimum a zero, +0.0 then -0.0
    x[2, 2, 3] = -0.0
    return x.astype(dtype)


def _wide(x):
    return np.asarray(x).astype(np.float32)


def _host(a):
    return a.copy_to_host()


@pytest.mark.parametrize("dtype, order, cut", [(np.dtype(np.float16), "C", 0), (BF16, "F", 2)],
                         ids=["float16-C", "bfloat16-F"])
def test_observe_and_maps_by_chunks(small_chunks, dtype, order, cut):
    """Per layer, and per channel along the axis the chunks cut (each chunk's min and
    max go to its own channels; each chunk is mapped with its channels' constants)."""
    from numba_quant._cuda import backend as _cuda
    x = np.asarray(_values(dtype), order=order)
    wide = _wide(x)
    d = cuda.to_device(x)
    data = _cuda.as_array(d)
    assert type(data).__name__ == "DeviceChunkedInput"
    # other uses get the values whole (converted once): on the host, for example
    from numba_quant._dispatch import on_device, to_host
    assert on_device(data) and to_host(data).flags.c_contiguous
    assert_same(to_host(data), np.ascontiguousarray(wide), "values whole")
    for axis in (None, cut):
        kw = {"quantization_formula": "google", "quantization_bit": 5,
              "quantization_scheme": "affine", "per_layer_quantization": axis is None,
              "axis": axis or 0}
        scale, zero_point = nq.min_max_observer(d, **kw)
        s, z = oracle.min_max_observer(wide, **kw)
        assert_same(_host(scale), s, f"scale, axis {axis}")
        assert_same(_host(zero_point), z, f"zero point, axis {axis}")
    fq = nq.fake_quantization(d, s, z, *AFFINE, axis=cut)
    assert_same(_host(fq), oracle.fake_quantization(wide, s, z, *AFFINE, axis=cut), "fake")
    codes = oracle.quantize(wide, s, z, *AFFINE, axis=cut)
    assert_same(_host(nq.quantize(d, s, z, *AFFINE, axis=cut)), codes, "codes")
    if dtype == BF16:
        # integer codes decoded chunk by chunk too
        decoded = nq.dequantize(cuda.to_device(np.asarray(codes, order=order)), s, z,
                                *AFFINE, axis=cut, dtype=np.float32)
        assert_same(_host(decoded), oracle.dequantize(codes, s, z, *AFFINE, axis=cut,
                                                      dtype=np.float32), "dequantize")
        return
    # the moving-average observer reads the chunks' min and max as device arrays
    n = SHAPE[cut]
    state = cuda.to_device(np.zeros(n, np.float32)), cuda.to_device(np.zeros(n, np.float32))
    got = nq.moving_average_min_max_observer(d, 0, *state, True, 5, "google", 8,
                                             "symmetric", momentum=0.9, axis=cut)
    expected = oracle.moving_average_min_max_observer(
        wide, 0, np.zeros(n, np.float32), np.zeros(n, np.float32), True, 5, "google", 8,
        "symmetric", momentum=0.9, axis=cut)
    assert_same(_host(got[0]), expected[0], "moving scale")
    assert_same(_host(state[0]), expected[2], "moving_max")
    assert_same(_host(state[1]), expected[3], "moving_min")


def test_nonfinite_and_block_sizes(small_chunks):
    x = _values(np.float32)
    x[0, 0, 0] = np.nan
    x[2, 9, 3] = np.inf
    x[1, 4, :] = np.nan            # channel 4 of axis 1 is NaN in one chunk (of 3) ...
    x = x.astype(BF16)
    d = cuda.to_device(x)
    with pytest.raises(ValueError, match=re.escape("input contains 6 non-finite value(s)")):
        nq.min_max_observer(d)
    kw = {"quantization_scheme": "affine", "per_layer_quantization": False, "axis": 1}
    scale, zero_point = nq.min_max_observer(d, nonfinite="omit", **kw)
    s, z = oracle.min_max_observer(_wide(x), nonfinite="omit", **kw)
    assert_same(_host(scale), s, "scale under omit")
    assert_same(_host(zero_point), z, "zero point under omit")
    # ... and has no finite value at all when its other chunks are NaN too
    y = x.copy()
    y[:, 4, :] = np.nan
    with pytest.raises(ValueError, match=re.escape("1 channel(s) have no finite value "
                                                   "(channels 4)")):
        nq.min_max_observer(cuda.to_device(y), nonfinite="omit", **kw)
    with pytest.raises(ValueError, match=re.escape("input contains 5 NaN value(s)")):
        nq.quantize(d, s, z, "google", 8, "affine", axis=1)
    # block_size= reads the input converted whole (the block kernels take one array)
    wide = _wide(_values(BF16))
    sb, zb = nq.min_max_observer(cuda.to_device(_values(BF16)), block_size=(1, 5, 4))
    eb, ezb = oracle.block_min_max_observer(wide, block_size=(1, 5, 4))
    assert_same(_host(sb), eb, "block scale")
    assert_same(_host(zb), ezb, "block zero point")


def test_bfloat16_bits_of_torch_tensors():
    """torch describes bfloat16 CUDA tensors as "<V2": read as their bit patterns."""
    from numba_quant._cuda import arrays as _cuda_arrays
    from numba_quant._cuda import chunks as _cuda_chunks

    class TorchBfloat16:   # what the check reads of a torch tensor: its dtype's name
        dtype = "torch.bfloat16"

    bits = np.array([0x3F80, 0xC040, 0x0000, 0x8000], np.uint16)
    d = cuda.to_device(bits.view("V2"))
    got = _cuda_chunks.bfloat16_bits(TorchBfloat16(), d)
    assert got.dtype == np.uint16 and _cuda_arrays.info(got).ptr == _cuda_arrays.info(d).ptr
    assert _cuda_chunks.bfloat16_bits(object(), d) is None   # other void data: not bf16
    assert_same(_host(nq.min_max_observer(cuda.to_device(bits.view(BF16)))[0]),
                np.array([3.0 / 127], np.float32), "bfloat16 device array, whole")
