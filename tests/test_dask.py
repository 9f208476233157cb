"""Dask arrays: every result equal, bit for bit, to the in-memory numpy call (and to the
numpy oracle), under the synchronous scheduler and on a two-process LocalCluster.

One cluster for the whole module (the ``cluster`` fixture: its start, a few seconds,
and the workers' first kernel loads are the slow part); the tests that use it are
marked ``cluster`` (``-m "not cluster"`` leaves them out) and compute many arrays in
one call.
"""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import numba_quant as nq  # noqa: E402
import oracle  # noqa: E402
from devices import Device  # noqa: E402

# (shape, chunkings): rows of one, chunks aligned to nothing, one chunk.
SHAPE = (13, 11, 6)
CHUNKINGS = {
    "rows": (1, -1, -1),
    "unaligned": (5, 4, 5),
    "single": -1,
}
# (observer settings, axis); axis None: per layer.
CONFIGS = [
    (dict(), None),
    (dict(quantization_scheme="affine"), 0),
    (dict(quantization_formula="cambricon", quantization_bit=5), -1),
    (dict(quantization_bit=4), 1),
]


def bits(a):
    """An array's bytes as unsigned integers, with its dtype and shape."""
    a = np.asarray(a)
    return a.dtype, a.shape, np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")


def assert_same(got, expected):
    g, e = bits(got), bits(expected)
    assert g[:2] == e[:2]
    np.testing.assert_array_equal(g[2], e[2])


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of two worker processes (one thread each), and its client."""
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, silence_logs=logging.ERROR,
                                  env={"NUMBA_NUM_THREADS": "1"}) as local, \
            distributed.Client(local, set_as_default=False) as client:
        yield client


def synchronous(*arrays):
    return dask.compute(*arrays, scheduler="synchronous")


def data(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE) * rng.uniform(0.1, 3.0, SHAPE[1])[:, None]
    x[0, 0, 0] = 7.5  # an exact tie for rounding at some scales
    return x.astype(dtype)


def observer_settings(settings, axis):
    return dict(settings, per_layer_quantization=axis is None,
                axis=0 if axis is None else axis)


def map_settings(settings, axis):
    return dict(settings, axis=0 if axis is None else axis)


def cases(settings, axis, chunking):
    """``(lazy, expected)``: every operation on a Dask array (parameters from the Dask
    observer, and host parameters) and the in-memory numpy call's result."""
    x = data(np.float64 if axis == 1 else np.float32)
    dx = da.from_array(x, chunks=CHUNKINGS[chunking])
    observe, apply = observer_settings(settings, axis), map_settings(settings, axis)

    scale, zero_point = nq.min_max_observer(dx, **observe)
    assert isinstance(scale, da.Array) and isinstance(scale._meta, np.ndarray)
    s, z = nq.min_max_observer(x, **observe)
    q = nq.quantize(x, s, z, **apply)
    dq = da.from_array(q, chunks=CHUNKINGS["unaligned"])
    lazy = [
        scale, zero_point,
        # parameters from the Dask observer (Dask arrays) ...
        nq.fake_quantization(dx, scale, zero_point, **apply),
        nq.quantize(dx, scale, zero_point, **apply),
        nq.dequantize(dq, scale, zero_point, **apply),
        # ... and host parameters
        nq.fake_quantization(dx, s, z, **apply),
        nq.quantization(dx, s, z, **apply),
        nq.dequantize(dq, s, z, **apply),
    ]
    assert all(isinstance(a, da.Array) for a in lazy)
    expected = [
        s, z,
        nq.fake_quantization(x, s, z, **apply), q, nq.dequantize(q, s, z, **apply),
        nq.fake_quantization(x, s, z, **apply), nq.quantization(x, s, z, **apply),
        nq.dequantize(q, s, z, **apply),
    ]
    # the in-memory call against the independent oracle
    os_, oz = oracle.min_max_observer(x, **observe)
    assert_same(s, os_)
    assert_same(z, oz)
    assert_same(expected[2], oracle.fake_quantization(x, os_, oz, **apply))
    return lazy, expected


def check(got, lazy, expected):
    assert len(got) == len(expected)
    for g, a, e in zip(got, lazy, expected):
        assert_same(g, e)
        assert g.dtype == a.dtype and g.shape == a.shape  # the lazy array's promise


@pytest.mark.parametrize("settings,axis", CONFIGS)
def test_everything_equals_in_memory(settings, axis):
    lazy, expected = [], []
    for chunking in CHUNKINGS:
        more_lazy, more_expected = cases(settings, axis, chunking)
        lazy += more_lazy
        expected += more_expected
    check(synchronous(*lazy), lazy, expected)


# On the cluster, one configuration per chunking (each task costs milliseconds there),
# float32 only (each kernel signature is loaded by each worker once, which is slow).
CLUSTER_CASES = [(CONFIGS[0], "rows"), (CONFIGS[1], "unaligned"), (CONFIGS[2], "single")]


@pytest.mark.cluster
def test_everything_equals_in_memory_on_a_cluster(cluster):
    """Configurations and chunkings (and blocks, moved to chunk boundaries) in one
    computation on the two workers."""
    lazy, expected = [], []
    for (settings, axis), chunking in CLUSTER_CASES:
        more_lazy, more_expected = cases(settings, axis, chunking)
        lazy += more_lazy
        expected += more_expected
    more_lazy, more_expected = block_cases(CHUNKINGS["unaligned"])  # observer, fake
    check(dask.compute(*lazy, *more_lazy[:3], scheduler=cluster), lazy + more_lazy[:3],
          expected + more_expected[:3])



def nonfinite_data():
    x = data()
    x[2, 3, 1] = np.nan
    x[12, 3, 5] = -np.inf
    x[7, 9, :] = np.inf
    return x


@pytest.mark.parametrize("axis,where", [(None, "synchronous"), (1, "synchronous"),
                                        pytest.param(1, "cluster",
                                                     marks=pytest.mark.cluster)])
def test_nonfinite_raise_names_the_whole_count_at_compute(request, axis, where):
    compute = synchronous
    if where == "cluster":
        client = request.getfixturevalue("cluster")
        compute = lambda *arrays: dask.compute(*arrays, scheduler=client)  # noqa: E731
    dx = da.from_array(nonfinite_data(), chunks=CHUNKINGS["unaligned"])
    scale, _ = nq.min_max_observer(dx, **observer_settings({}, axis))  # lazy: no error
    with pytest.raises(ValueError, match=r"input contains 8 non-finite value\(s\)"):
        compute(scale)


def test_nonfinite_omit_equals_in_memory():
    x = nonfinite_data()
    dx = da.from_array(x, chunks=CHUNKINGS["rows"])
    for axis in (None, 1, 2):
        settings = observer_settings({}, axis)
        got = synchronous(*nq.min_max_observer(dx, nonfinite="omit", **settings))
        expected = nq.min_max_observer(x, nonfinite="omit", **settings)
        assert_same(got[0], expected[0])
        assert_same(got[1], expected[1])


def test_omit_with_a_channel_without_finite_values_raises_at_compute():
    x = data()
    x[:, 4, :] = np.nan  # channel 4 of axis 1, spread over every chunk
    dx = da.from_array(x, chunks=CHUNKINGS["unaligned"])
    scale, _ = nq.min_max_observer(dx, per_layer_quantization=False, axis=1,
                                   nonfinite="omit")
    with pytest.raises(ValueError, match=r"1 channel\(s\) have no finite value "
                                         r"\(channels 4\)"):
        synchronous(scale)
    scale, _ = nq.min_max_observer(da.full((4, 4), np.nan, chunks=2, dtype=np.float32),
                                   nonfinite="omit")
    with pytest.raises(ValueError, match="input has no finite value"):
        synchronous(scale)


def test_moving_average_observer_takes_dask_batches():
    settings = dict(stop_update_after_iters=2, per_layer_quantization=False, axis=2,
                    quantization_scheme="affine", momentum=0.75)
    lazy, in_memory = (nq.MovingAverageMinMaxObserver(**settings) for _ in range(2))
    for step in range(4):  # updates on steps 0..2, then only reads the state
        x = data(seed=step)
        with dask.config.set(scheduler="synchronous"):
            got = lazy(da.from_array(x, chunks=CHUNKINGS["unaligned"]))
        expected = in_memory(x)
        assert isinstance(got[0], np.ndarray)  # computed: the state needed the range
        assert_same(got[0], expected[0])
        assert_same(got[1], expected[1])
        assert_same(lazy.moving_max, in_memory.moving_max)
        assert_same(lazy.moving_min, in_memory.moving_min)
    moving_max, moving_min = np.zeros(1, np.float32), np.zeros(1, np.float32)
    x = nonfinite_data()
    with pytest.raises(ValueError, match=r"input contains 8 non-finite"):
        nq.moving_average_min_max_observer(da.from_array(x, chunks=4), 0, moving_max,
                                           moving_min, True, 10)
    assert moving_max[0] == 0  # the state is left alone


@pytest.mark.cluster
def test_open_dask_reads_an_npy_file_in_chunks_on_a_cluster(tmp_path, cluster):
    x = np.asfortranarray(data())
    path = tmp_path / "tensor.npy"
    np.save(path, x)
    dx = nq.open_dask(path, chunks=(4, 11, 6))
    assert dx.dtype == x.dtype and dx.chunks[0] == (4, 4, 4, 1)
    scale, zero_point = nq.min_max_observer(dx, per_layer_quantization=False, axis=0)
    fake = nq.fake_quantization(dx, scale, zero_point, axis=0)
    got = dask.compute(scale, fake, scheduler=cluster)  # workers read the file
    s, z = nq.min_max_observer(x, per_layer_quantization=False, axis=0)
    assert_same(got[0], s)
    assert_same(got[1], nq.fake_quantization(x, s, z, axis=0))
    with pytest.raises(ValueError, match=r"open_dask reads \.npy files, or a checkpoint's "
                                         r"tensor=; got 'w\.npz'"):
        nq.open_dask("w.npz")


def test_errors_at_call_time():
    dx = da.from_array(data(), chunks=5)
    with pytest.raises(TypeError, match="out= is not supported for Dask arrays"):
        nq.fake_quantization(dx, 0.1, 0, out=np.empty(SHAPE, np.float32))
    with pytest.raises(ValueError, match="scale must not be negative"):
        nq.fake_quantization(dx, -0.1, 0)
    with pytest.raises(ValueError, match="per-channel scale has 3 values but axis 0"):
        nq.quantize(dx, np.ones(3), np.zeros(3))
    with pytest.raises(TypeError, match="needs a float16, float32 or float64 array"):
        nq.min_max_observer(dx.astype(np.int32))
    with pytest.raises(ValueError, match="cannot observe an empty array"):
        nq.min_max_observer(da.zeros((0, 3), chunks=2))
    unknown = dx[dx[:, 0, 0] > 0]  # boolean indexing: chunk sizes unknown
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        nq.min_max_observer(unknown)


def test_quantize_nan_raises_at_compute():
    x = data()
    x[6, 0, 0] = np.nan
    codes = nq.quantize(da.from_array(x, chunks=5), 0.1, 0)
    with pytest.raises(ValueError, match=r"input contains 1 NaN value\(s\)"):
        codes.compute(scheduler="synchronous")


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_chunk_tasks_on_either_backend(device):
    """The observer's chunk and finishing tasks dispatch by the chunk's type (a GPU chunk
    reduces on the GPU; the parameters come back in its array type)."""
    from numba_quant._dask import channels as _dask
    on = Device(device)
    x = data()
    state = _dask._chunk_state(on.put(x), 2, False)
    assert state.shape == (1, 1, 6, 3)
    np.testing.assert_array_equal(state[0, 0, :, 0], x.min(axis=(0, 1)))
    np.testing.assert_array_equal(state[0, 0, :, 1], x.max(axis=(0, 1)))
    params = _dask._finish_observe(state.reshape(6, 3), np.dtype(np.float32), False, 0, 8,
                                   on.put(np.empty(0, np.float32)))
    s, z = nq.min_max_observer(x, per_layer_quantization=False, axis=2)
    params = on.get(params)
    assert_same(params[:, 0], s)
    assert_same(params[:, 1], z)
    # a chunk's blocks (OneFlow's block_size) by the block kernels of its side
    from numba_quant._dask import blocks as _dask_blocks
    states = _dask_blocks._observe_chunk(on.put(x), BLOCK, False, 0, 8)
    s, z = nq.min_max_observer(x, block_size=BLOCK)
    assert states.shape == s.shape + (4,) and not states[..., 2:].any()
    assert_same(states[..., 0].astype(np.float32), s)
    assert_same(states[..., 1].astype(np.float32), z)


def test_import_does_not_import_dask():
    code = ("import sys, numpy, numba_quant\n"
            "from numba_quant._dispatch import is_dask\n"
            "assert not is_dask(numpy.zeros(2)) and not is_dask(object())\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'numba')]\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


@pytest.mark.cupy
def test_cupy_chunks_stay_cupy():
    cupy = pytest.importorskip("cupy")
    x = data()
    dx = da.from_array(cupy.asarray(x), chunks=CHUNKINGS["unaligned"])
    scale, zero_point = nq.min_max_observer(dx, per_layer_quantization=False, axis=1)
    fake = nq.fake_quantization(dx, scale, zero_point, axis=1)
    codes = nq.quantize(dx, scale, zero_point, axis=1)
    assert all(isinstance(a._meta, cupy.ndarray) for a in (scale, fake, codes))
    got = synchronous(scale, zero_point, fake, codes)
    assert all(isinstance(a, cupy.ndarray) for a in got)
    s, z = nq.min_max_observer(x, per_layer_quantization=False, axis=1)
    for g, e in zip(got, (s, z, nq.fake_quantization(x, s, z, axis=1),
                          nq.quantize(x, s, z, axis=1))):
        assert_same(g.get(), e)



def test_signed_zeros_merge_as_the_kernels_order_them():
    """-0.0 below +0.0 whichever chunk holds which (the affine zero point's sign shows)."""
    from numba_quant._dask import channels as _dask
    lows = np.array([[0.0, 2.0, 0], [-0.0, 3.0, 0], [0.0, 1.0, 0]])
    for order in ([0, 1, 2], [1, 0, 2], [2, 0, 1]):
        merged = _dask._merge_states(lows[order], 0, False)
        assert np.signbit(merged[0]) and merged[1] == 3.0
    highs = np.array([[-1.0, -0.0, 0], [-2.0, 0.0, 0]])
    for order in ([0, 1], [1, 0]):
        merged = _dask._merge_states(highs[order], 0, False)
        assert merged[0] == -2.0 and not np.signbit(merged[1])


def test_open_dask_reads_a_safetensors_tensor(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    x = data()
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file({"a.weight": x, "b.half": x.astype(np.float16)}, str(path))
    for name, values in (("a.weight", x), ("b.half", x.astype(np.float16))):
        dx = nq.open_dask(path, chunks=(5, 4, 6), tensor=name)
        # decoded as the checkpoint reader does: float16 (and bfloat16, FP8) as float32
        assert dx.dtype == np.float32 and dx.shape == SHAPE
        scale, zero_point = nq.min_max_observer(dx, per_layer_quantization=False, axis=1)
        s, z = nq.min_max_observer(values, per_layer_quantization=False, axis=1)
        got = synchronous(scale, zero_point,
                          nq.fake_quantization(dx, scale, zero_point, axis=1))
        assert_same(got[0], s)
        assert_same(got[1], z)
        assert_same(got[2], nq.fake_quantization(values, s, z, axis=1))
    with pytest.raises(ValueError, match=r"has no float tensor named 'c' \(it has "
                                         r"'a\.weight', 'b\.half'\)"):
        nq.open_dask(path, tensor="c")


# --------------------------------------------------------------------------- blocks
# Chunkings that cut blocks: rows of one, and chunks aligned to nothing; each is moved
# to block boundaries before the chunks are computed.
BLOCK_CHUNKINGS = [CHUNKINGS["rows"], CHUNKINGS["unaligned"]]
BLOCK = (4, 3, 6)  # ragged along both split axes: 13 = 3*4 + 1, 11 = 3*3 + 2


def block_cases(chunking):
    """OneFlow's functions with block_size= on a Dask array, and the in-memory calls."""
    x = data()
    dx = da.from_array(x, chunks=chunking)
    kw = dict(quantization_scheme="affine", quantization_bit=5, block_size=BLOCK)
    scale, zero_point = nq.min_max_observer(dx, **kw)
    s, z = nq.min_max_observer(x, **kw)
    q = nq.quantize(x, s, z, **kw)
    lazy = [scale, zero_point, nq.fake_quantization(dx, scale, zero_point, **kw),
            nq.quantize(dx, s, z, **kw),
            nq.dequantize(da.from_array(q, chunks=chunking), scale, zero_point, **kw)]
    expected = [s, z, nq.fake_quantization(x, s, z, **kw), q, nq.dequantize(q, s, z, **kw)]
    return lazy, expected


def test_blocks_equal_in_memory():
    x = data()
    lazy, expected = [], []
    for chunking in BLOCK_CHUNKINGS:
        more_lazy, more_expected = block_cases(chunking)
        lazy += more_lazy
        expected += more_expected
    # a block size that is per channel goes through the per-channel graph
    dx = da.from_array(x, chunks=CHUNKINGS["unaligned"])
    lazy += list(nq.min_max_observer(dx, block_size=(13, 1, 6)))
    expected += list(nq.min_max_observer(x, block_size=(13, 1, 6)))
    check(synchronous(*lazy), lazy, expected)
    os_, oz = oracle.block_min_max_observer(x, quantization_scheme="affine",
                                            quantization_bit=5, block_size=BLOCK)
    assert_same(expected[0], os_)
    assert_same(expected[1], oz)
    # chunk boundaries moved up to block boundaries (the last chunk: the ragged block)
    assert lazy[2].chunks == ((4, 4, 4, 1), (11,), (6,))
    assert lazy[7].chunks == ((8, 4, 1), (6, 3, 2), (6,))


def test_block_errors_are_the_whole_arrays():
    x = nonfinite_data()
    dx = da.from_array(x, chunks=CHUNKINGS["unaligned"])
    scale, _ = nq.min_max_observer(dx, block_size=BLOCK)
    with pytest.raises(ValueError, match=r"input contains 8 non-finite value\(s\)"):
        synchronous(scale)
    x = data()
    x[0:4, 0:3] = np.nan
    x[12, 9:] = np.nan
    scale, _ = nq.min_max_observer(da.from_array(x, chunks=CHUNKINGS["rows"]),
                                   block_size=BLOCK, nonfinite="omit")
    with pytest.raises(ValueError, match=r"2 block\(s\) have no finite value \(block index "
                                         r"\(0, 0, 0\), \(3, 3, 0\) of the grid "
                                         r"\(4, 4, 1\)\)"):
        synchronous(scale)
    with pytest.raises(ValueError, match="scale must not be negative"):
        nq.fake_quantization(dx, -np.ones((4, 4, 1)), np.zeros((4, 4, 1)), block_size=BLOCK)


@pytest.mark.cluster
def test_gguf_export_on_a_cluster(tmp_path, cluster):
    """numba-quant quantize's GGUF export with the tensors quantized by the workers
    (each reads its tensor from the file): the file llama-quantize writes."""
    gguf = pytest.importorskip("gguf")  # noqa: F841  (the exporter's reader and writer)
    import hashlib
    import json
    from pathlib import Path

    import gguf_tiny_model
    from numba_quant.export import to_gguf
    golden = json.loads((Path(__file__).parent / "data" / "gguf_export_golden.json")
                        .read_text())
    case = next(c for c in golden["cases"] if c["case"] == "f16-Q8_0")
    src = gguf_tiny_model.write_tiny_llama(tmp_path / "tiny-f16.gguf", "f16")
    rep = to_gguf(src, tmp_path / "out.gguf", "Q8_0", client=cluster)
    assert hashlib.sha256((tmp_path / "out.gguf").read_bytes()).hexdigest() \
        == case["file_sha256"]
    assert len(rep.tensors) == case["type_counts"]["Q8_0"]


@pytest.mark.cluster
def test_compressed_tensors_export_on_a_cluster(tmp_path, cluster):
    """numba-quant quantize --scheme with the weights quantized by the workers (each
    reads its weight from the model's file): llmcompressor's bytes, for a scheme with a
    shared global scale (NVFP4A16, bfloat16) and an integer one with zero points."""
    import hashlib
    import json
    from pathlib import Path

    import ct_tiny
    from numba_quant.export import to_compressed_tensors
    golden = json.loads((Path(__file__).parent / "data" / "ct_tiny_golden.json")
                        .read_text())["cases"]
    for key in ("bfloat16/NVFP4A16", "float32/W4A16_ASYM"):
        case = golden[key]
        model = ct_tiny.write_model(tmp_path / case["dtype"], case["dtype"])
        out = tmp_path / key.replace("/", "-")
        to_compressed_tensors(model, out, case["scheme"], targets=[r".*_proj", "lm_head"],
                              report=False, client=cluster)
        got = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
        assert got == case["file_sha256"], key
