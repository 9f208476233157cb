"""Histogram calibration: golden cases (modelopt, PyTorch), numpy oracle, merge property."""
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import numba_quant as nq
from numba_quant._host import tuning as _tuning
import calib_oracle as oracle

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "calibrators.npz")
with np.load(PATH) as _f:
    DATA = {k: _f[k] for k in _f.files}
CASES = json.loads(str(DATA["manifest"]))
CALIBRATOR = [c for c in CASES if c["op"] == "histogram_calibrator"]
OBSERVER = [c for c in CASES if c["op"] == "histogram_observer"]
SINGLE = [c for c in OBSERVER if c["batches"] == 1]


def bits(a):
    a = np.asarray(a)
    return a.view(np.uint32 if a.dtype.itemsize == 4 else np.uint64)


def same(actual, expected):
    np.testing.assert_array_equal(bits(actual), bits(np.asarray(expected, np.asarray(actual).dtype)))


def get(case, name):
    return DATA[f"{case['id']}/{name}"]


# --------------------------------------------------------------------------- golden
@pytest.mark.parametrize("case", CALIBRATOR, ids=lambda c: c["id"])
def test_compute_amax_golden(case):
    hist, edges = get(case, "hist"), get(case, "edges")
    for p in case["percentiles"]:
        same(nq.compute_amax(hist, edges, "percentile", percentile=p),
             get(case, f"amax_percentile_{p:g}"))
    same(nq.compute_amax(hist, edges, "mse"), get(case, "amax_mse_fixed"))
    if case["entropy"]:
        same(nq.compute_amax(hist, edges, "entropy"), get(case, "amax_entropy"))


def test_compute_amax_golden_rows_together():
    """All 2048-bin cases of one final size as rows of one call (the per-channel path)."""
    cases = [c for c in CALIBRATOR if c["final_num_bins"] == 2048 and c["entropy"]]
    hist = np.stack([get(c, "hist") for c in cases])
    edges = np.stack([get(c, "edges") for c in cases])
    same(nq.compute_amax(hist, edges, "entropy"), [get(c, "amax_entropy") for c in cases])
    same(nq.compute_amax(hist, edges, "percentile", percentile=99.9),
         [get(c, "amax_percentile_99.9") for c in cases])


@pytest.mark.parametrize("case", OBSERVER, ids=lambda c: c["id"])
def test_l2_search_golden_on_file_histograms(case):
    """PyTorch's search on PyTorch's own histogram (every case, multi-batch included)."""
    from numba_quant._reference.select import l2_search
    lo, hi = l2_search(get(case, "histogram"), get(case, "min_val")[()],
                       get(case, "max_val")[()], 256)
    scale, zp = oracle.torch_qparams(lo, hi, case["qscheme"] == "per_tensor_affine")
    same(np.float32(scale), get(case, "scale")[0])
    assert zp == get(case, "zero_point")[0]


@pytest.mark.parametrize("case", SINGLE, ids=lambda c: c["id"])
def test_histogram_observer_l2_single_batch_golden(case, device):
    if device.gpu and case is not SINGLE[0]:
        pytest.skip("simulator: one case is enough to run the GPU kernels")
    x = DATA[case["input"]][0]
    observer = nq.HistogramObserver(bins=2048, method="l2")
    observer.observe(device.put(x))
    np.testing.assert_array_equal(observer.first_counts[0], get(case, "histogram"))
    lo, hi = observer.range()
    scale, zp = oracle.torch_qparams(lo[0], hi[0], case["qscheme"] == "per_tensor_affine")
    same(np.float32(scale), get(case, "scale")[0])
    assert zp == get(case, "zero_point")[0]


# --------------------------------------------------------------------------- oracle
def _random_hist(rng, bins):
    shape = rng.exponential(1.0)
    counts = rng.poisson(2000 * np.exp(-np.arange(bins) / (bins * shape / 4 + 1)))
    counts[rng.integers(0, bins, 3)] = rng.integers(0, 5, 3)  # a few sparse bins
    counts[0] += rng.integers(0, 3000)
    return counts.astype(np.int64), np.linspace(0, rng.uniform(0.1, 10), bins + 1,
                                                dtype=np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_methods_against_oracle(seed):
    pytest.importorskip("scipy")
    rng = np.random.default_rng(seed)
    bins = int(rng.integers(48, 160))
    hist, edges = _random_hist(rng, bins)
    num_bits, unsigned = int(rng.integers(4, 7)), bool(seed % 2)
    start_bin, stride = int(rng.integers(8, 40)), int(rng.integers(1, 4))
    kw = dict(num_bits=num_bits, unsigned=unsigned, start_bin=start_bin, stride=stride)
    same(nq.compute_amax(hist, edges, "entropy", **kw), oracle.entropy_amax(hist, edges, **kw))
    same(nq.compute_amax(hist, edges, "mse", **kw), oracle.mse_amax(hist, edges, **kw))
    for p in (50, 99, 99.99, 100):
        same(nq.compute_amax(hist, edges, "percentile", percentile=p),
             oracle.percentile_amax(hist, edges, p))


def test_exact_amax_percentile(device):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 37)).astype(np.float32)
    got = nq.exact_amax_percentile(device.put(x), 90, per_layer_quantization=False, axis=1)
    k = int(np.ceil(0.9 * 5))
    np.testing.assert_array_equal(got, np.sort(np.abs(x), axis=0)[k - 1])


# --------------------------------------------------------------------------- histograms
def _rows(x, axis):
    return [np.take(x, c, axis=axis).ravel() for c in range(x.shape[axis])]


@pytest.mark.parametrize("shape, axis", [((6, 40, 9), 1), ((300, 5), 1), ((7, 50), 0)])
def test_histogram_counts_match_oracle_on_both_devices(device, shape, axis, monkeypatch):
    monkeypatch.setattr(_tuning, "PARALLEL_THRESHOLD", 0)  # CPU: parallel, several pieces
    monkeypatch.setattr(_tuning, "MIN_TASK_ELEMENTS", 16)
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape)).astype(np.float32)
    x[0] = 0  # exact zeros, and one all-zero channel when axis is 0
    # l2: the first batch is counted on both grids (on the CPU in one pass)
    observer = nq.HistogramObserver(bins=64, method="l2", per_layer_quantization=False,
                                    axis=axis)
    observer.observe(device.put(x))
    expected, _ = oracle.pow2_histogram(_rows(x, axis), 64)
    np.testing.assert_array_equal(observer.counts, expected)
    np.testing.assert_array_equal(observer.first_counts,
                                  [oracle.histc(r, 64, r.min(), r.max()) for r in _rows(x, axis)])


def test_histogram_wide_rows_on_gpu(device):
    """More bins than the GPU's shared-memory histogram holds: global atomics."""
    x = np.random.default_rng(5).standard_normal(3000).astype(np.float32)
    observer = nq.HistogramObserver(bins=8192)
    observer.observe(device.put(x))
    np.testing.assert_array_equal(observer.counts, oracle.pow2_histogram([x], 8192)[0])


@settings(max_examples=15)
@given(st.data())
def test_merge_is_exact_for_any_split(data):
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = data.draw(st.integers(2, 400))
    x = (rng.standard_normal((n, 3)) * 10.0 ** rng.uniform(-4, 4, (n, 3))).astype(np.float32)
    x[:, 2] *= rng.integers(0, 2)  # sometimes an all-zero channel
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=4))))
    parts = np.split(x, cuts)
    method = data.draw(st.sampled_from(["percentile", "entropy", "mse"]))
    settings = dict(bins=256, method=method, per_layer_quantization=False, axis=1,
                    start_bin=16)
    whole = nq.HistogramObserver(**settings)
    whole.observe(x)
    streamed = nq.HistogramObserver(**settings)
    merged = nq.HistogramObserver(**settings)
    for part in parts:
        streamed.observe(part)
        piece = nq.HistogramObserver(**settings)
        piece.observe(part)
        merged.merge(piece)
    expected, _ = oracle.pow2_histogram(_rows(x, 1), 256)
    for obs in (whole, streamed, merged):
        np.testing.assert_array_equal(obs.counts, expected)
        for a, b in zip(obs.range(), whole.range()):
            same(a, b)


def test_observer_methods_and_state():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2000, 2)).astype(np.float32)
    x[0, 0] = 80.0  # one outlier
    for method in ("percentile", "entropy", "mse", "l2"):
        for scheme in ("symmetric", "affine"):
            obs = nq.HistogramObserver(bins=512, method=method, quantization_scheme=scheme, percentile=99, start_bin=16,
                                       per_layer_quantization=False, axis=1)
            scale, zp = obs(x)
            lo, hi = obs.range()
            if method == "percentile":  # (KL, MSE and L2 rightly keep a lone 80 here)
                assert np.all(hi < 10) and np.all(lo > -10), (method, scheme, lo, hi)
            copy = nq.HistogramObserver()
            copy.load_state_dict(obs.state_dict())
            for a, b in zip(copy.calculate_qparams(), (scale, zp)):
                same(a, b)
    # percentile on |x| equals compute_amax on the folded histogram
    obs = nq.HistogramObserver(bins=512, percentile=99.0)
    obs.observe(x)
    half = 256
    folded = obs.counts[0, half:] + obs.counts[0, half - 1::-1]
    same(obs.range()[1][0], np.float32(nq.compute_amax(
        folded, obs.edges()[0, half:], "percentile", percentile=99.0)))
    obs.reset()
    with pytest.raises(ValueError, match="needs data"):
        obs.range()


def test_zero_channel_and_constant():
    x = np.zeros((10, 2), np.float32)
    x[:, 1] = 3.0
    obs = nq.HistogramObserver(bins=16, per_layer_quantization=False, axis=1)
    lo, hi = obs.range() if obs.observe(x) is None else None
    np.testing.assert_array_equal(hi, [0.0, 3.0])  # 3 starts a bin of width 0.5
    assert obs.calculate_qparams()[0][0] == 0


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(percentile=0), ValueError, r"percentile must be in \(0, 100\]"),
    (dict(percentile=100.5), ValueError, r"percentile must be in \(0, 100\]"),
    (dict(bins=1), ValueError, "bins must be an even integer of at least 2"),
    (dict(bins=3), ValueError, "bins must be an even integer of at least 2"),
    (dict(bins=2**30 + 2), ValueError, r"bins must be at most 2\*\*30"),
    (dict(method="kl"), ValueError, "method must be one of"),
    (dict(start_bin=0), ValueError, "start_bin must be at least 1"),
    (dict(bins=200, method="mse"), ValueError, "only 100 bins"),
])
def test_observer_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        nq.HistogramObserver(**kwargs)


def test_data_errors(device):
    obs = nq.HistogramObserver(bins=16)
    with pytest.raises(ValueError, match="empty"):
        obs.observe(device.put(np.zeros((0, 3), np.float32)))
    with pytest.raises(ValueError, match="non-finite"):
        obs.observe(device.put(np.array([1.0, np.nan], np.float32)))
    omit = nq.HistogramObserver(bins=16, nonfinite="omit")
    with pytest.raises(ValueError, match="no finite value"):
        omit.observe(device.put(np.full(4, np.nan, np.float32)))
    omit.observe(device.put(np.array([1.0, np.nan, -np.inf, 0.5], np.float32)))
    assert omit.counts.sum() == 2
    # a run long enough to be binned in chunks, on both grids
    x = np.linspace(-1, 2, 40, dtype=np.float32)
    x[[3, 17, 30]] = np.nan, np.inf, -np.inf
    l2 = nq.HistogramObserver(bins=16, method="l2", nonfinite="omit")
    l2.observe(device.put(x))
    finite = x[np.isfinite(x)]
    np.testing.assert_array_equal(l2.counts[0], oracle.pow2_histogram([finite], 16)[0][0])
    np.testing.assert_array_equal(l2.first_counts[0],
                                  oracle.histc(finite, 16, finite.min(), finite.max()))
    # bins in float64: half not a power of two, or a bin factor beyond float32's range
    for bins, scale in ((12, 1.0), (16, 1e-39)):
        y = (x * np.float32(scale)).astype(np.float32)
        other = nq.HistogramObserver(bins=bins, nonfinite="omit")
        other.observe(device.put(y))
        np.testing.assert_array_equal(other.counts,
                                      oracle.pow2_histogram([y[np.isfinite(y)]], bins)[0])


def test_pow2_bin_below_zero_after_underflow():
    """float64 data spanning more binades than the product keeps: a negative value whose
    product underflows to -0.0 still counts below zero (the scalar bin function, without
    compiling the float64 kernels)."""
    from numba_quant._reference import hist as hist_ref
    factor = hist_ref.grid_factor(hist_ref.grid_exponent(1e300), 8)  # 8 / 2**997
    assert hist_ref.pow2_bin(-1e-320, factor, 8) == 7
    assert hist_ref.pow2_bin(-0.0, factor, 8) == 8
    assert hist_ref.pow2_bin(1e300, factor, 8) == 13  # 1e300 / 2**997 = 0.75
    assert hist_ref.pow2_bin(-1e300, factor, 8) == 2


def test_compute_amax_errors():
    edges = np.linspace(0, 1, 6, dtype=np.float32)
    with pytest.raises(ValueError, match="one more entry per row"):
        nq.compute_amax(np.ones(5), edges[:-1], "percentile")
    with pytest.raises(ValueError, match="has no counts"):
        nq.compute_amax(np.zeros(5), edges, "percentile")
    with pytest.raises(ValueError, match="only 5 bins"):
        nq.compute_amax(np.ones(5), edges, "entropy")
    with pytest.raises(ValueError, match="method must be one of"):
        nq.compute_amax(np.ones(5), edges, "l2")
    with pytest.raises(ValueError, match="negative counts"):
        nq.compute_amax(-np.ones(5), edges, "percentile")


def test_merge_errors():
    a = nq.HistogramObserver(bins=16, per_layer_quantization=False, axis=0)
    a.observe(np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="different bins"):
        a.merge(nq.HistogramObserver(bins=32))
    b = nq.HistogramObserver(bins=16, per_layer_quantization=False, axis=0)
    b.observe(np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="different channel counts"):
        a.merge(b)
    with pytest.raises(TypeError, match="can only merge a HistogramObserver"):
        a.merge(nq.MinMaxObserver())


def test_histogram_observer_takes_dask_batches():
    """A Dask batch: per-chunk histograms on the batch's grid, merged exactly; the state
    (counts, grid, range, torch.histc's first counts) equals the in-memory observer's."""
    from dask_checks import CHUNKINGS, compare, dask_modules
    dask, da = dask_modules()
    rng = np.random.default_rng(8)
    for settings in (dict(bins=64), dict(bins=32, method="l2", per_layer_quantization=False,
                                         axis=1, quantization_scheme="affine")):
        lazy, in_memory = (nq.HistogramObserver(**settings) for _ in range(2))
        for step, chunking in enumerate(CHUNKINGS):
            x = (rng.standard_normal((13, 66)) * (step + 1)).astype(np.float32)
            with dask.config.set(scheduler="synchronous"):
                got = lazy(da.from_array(x, chunks=chunking))
            expected = in_memory(x)
            state, reference = lazy.state_dict(), in_memory.state_dict()
            assert state.keys() == reference.keys()
            arrays = [k for k, v in reference.items() if isinstance(v, np.ndarray)]
            compare(list(got) + [state[k] for k in arrays],
                    list(expected) + [reference[k] for k in arrays])
            assert {k: v for k, v in state.items() if k not in arrays} == \
                {k: v for k, v in reference.items() if k not in arrays}
    x = rng.standard_normal((13, 66)).astype(np.float32)
    x[2, 3] = x[11, 60] = np.nan
    with pytest.raises(ValueError, match=r"input contains 2 non-finite value"):
        nq.HistogramObserver(bins=64).observe(da.from_array(x, chunks=(5, 25)))
    blocks = nq.HistogramObserver(bins=64, block_size=(13, 33))
    with pytest.raises(ValueError, match=r"with block_size does not take Dask arrays"):
        blocks.observe(da.from_array(x, chunks=(5, 25)))
    assert blocks.counts is None  # nothing was added


# --------------------------------------------------------------------------- blocks
def test_block_histograms_match_oracle(device, monkeypatch):
    """Ragged blocks of a strided view, two batches (the grids widen per block), "omit"
    with a NaN; counts, min/max, percentile ranges and scales per block; merge, state
    and reset per block."""
    monkeypatch.setattr(_tuning, "PARALLEL_THRESHOLD", 0)  # CPU: several block ranges
    monkeypatch.setattr(_tuning, "MIN_TASK_ELEMENTS", 16)
    rng = np.random.default_rng(11)
    shape, block = (7, 5, 6), (3, 2, 6)  # grid (3, 3, 1): ragged along axes 0 and 1
    batches = [(rng.standard_normal((6, 5, 7)) * 10.0 ** rng.uniform(-2, 2, (6, 5, 7)))
               .astype(np.float32).transpose(2, 1, 0) for _ in range(2)]  # strided views
    batches[1][:, :2] *= 40  # later batches widen some blocks' grids
    batches[0][0, 0, 0] = np.nan
    settings = dict(bins=64, percentile=99, nonfinite="omit", block_size=block)
    observer = nq.HistogramObserver(**settings)
    merged = nq.HistogramObserver(**settings)
    for x in batches:
        observer.observe(device.put(x))
        part = nq.HistogramObserver(**settings)
        part.observe(device.put(x))
        merged.merge(part)
    rows, grid = oracle.block_rows(np.concatenate(batches, axis=2), (3, 2, 12))
    # (two batches side by side along the last axis: each block holds both batches' share)
    expected, exps = oracle.pow2_histogram(rows, 64)
    np.testing.assert_array_equal(observer.counts, expected)
    np.testing.assert_array_equal(merged.counts, expected)
    np.testing.assert_array_equal(observer.min_val, [np.nanmin(r) for r in rows])
    np.testing.assert_array_equal(observer.max_val, [np.nanmax(r) for r in rows])
    amax = [oracle.percentile_amax(*oracle.folded(c, e, 64), 99) for c, e in zip(expected, exps)]
    lo, hi = observer.range()
    assert hi.shape == grid == (3, 3, 1)
    same(hi.reshape(-1), amax)
    scale, zero_point = observer.calculate_qparams()
    same(scale.reshape(-1), np.float32(amax) / np.float32(127))
    assert zero_point.shape == grid and not zero_point.any()
    copy = nq.HistogramObserver()
    copy.load_state_dict(dict(np.load(_saved(merged.state_dict()))))
    for a, b in zip(copy.calculate_qparams(), (scale, zero_point)):
        same(a, b)
    with pytest.raises(ValueError, match="different block grids"):
        observer.observe(device.put(batches[0][:4]))
    observer.reset()
    assert observer.grid is None and "grid" not in observer.state_dict()


def test_block_histograms_l2_first_batch(device):
    """l2 keeps torch.histc's [min, max] counts of one batch, per block too."""
    x = np.random.default_rng(4).standard_normal((5, 6)).astype(np.float32)
    x[4, 4:] = 2.0  # a constant ragged block: histc widens it to [1, 3]
    observer = nq.HistogramObserver(bins=16, method="l2", block_size=(2, 4))
    observer.observe(device.put(x))
    rows, grid = oracle.block_rows(x, (2, 4))
    np.testing.assert_array_equal(observer.first_counts,
                                  [oracle.histc(r, 16, r.min(), r.max()) for r in rows])
    assert observer.range()[0].shape == grid == (3, 2)
    # rows of blocks long enough to be binned in chunks on the CPU, a NaN omitted
    y = np.random.default_rng(5).standard_normal((4, 45)).astype(np.float32)
    y[1, 7] = np.nan
    observer = nq.HistogramObserver(bins=16, method="l2", block_size=(2, 20), nonfinite="omit")
    observer.observe(device.put(y))
    rows = [r[np.isfinite(r)] for r in oracle.block_rows(y, (2, 20))[0]]
    np.testing.assert_array_equal(observer.counts, oracle.pow2_histogram(rows, 16)[0])
    np.testing.assert_array_equal(observer.first_counts,
                                  [oracle.histc(r, 16, r.min(), r.max()) for r in rows])


def _saved(state):
    import io
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    return buffer


def test_block_size_layer_and_channel_are_the_old_slices():
    """A grid of one block, or of blocks one channel wide, is the per-layer or
    per-channel observer (same counts, results in the grid's shape)."""
    x = np.random.default_rng(2).standard_normal((40, 3)).astype(np.float32)
    channel = nq.HistogramObserver(bins=64, per_layer_quantization=False, axis=1)
    channel.observe(x)
    blocks = nq.HistogramObserver(bins=64, block_size=(40, 1))
    blocks.observe(x)
    np.testing.assert_array_equal(blocks.counts, channel.counts)
    same(blocks.calculate_qparams()[0], channel.calculate_qparams()[0].reshape(1, 3))
    layer = nq.HistogramObserver(bins=64, block_size=(40, 3))
    layer.observe(x)
    assert layer.range()[1].shape == (1, 1)
    assert "block_size=(40, 3)" in repr(layer) and "block_size" not in repr(channel)


def test_block_size_errors(device):
    with pytest.raises(ValueError, match="has 1 entries but the input has shape"):
        nq.HistogramObserver(block_size=(2,)).observe(device.put(np.ones((2, 2), np.float32)))
    with pytest.raises(ValueError, match="disagrees with per_layer_quantization=False"):
        nq.HistogramObserver(block_size=(1, 2), per_layer_quantization=False).observe(
            np.ones((2, 4), np.float32))
    x = np.ones(8, np.float32)  # (1-D: the non-finite count compiles nothing new)
    x[2:4] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        nq.HistogramObserver(bins=16, block_size=(2,)).observe(device.put(x))
    with pytest.raises(ValueError, match=r"1 block\(s\) have no finite value \(block index "
                                         r"\(1,\)"):
        nq.HistogramObserver(bins=16, block_size=(2,), nonfinite="omit").observe(
            device.put(x))
    a = nq.HistogramObserver(bins=16, block_size=(2, 2))
    a.observe(np.ones((4, 4), np.float32))
    b = nq.HistogramObserver(bins=16, block_size=(2, 2))
    b.observe(np.ones((4, 2), np.float32))  # grid (2, 1)
    with pytest.raises(ValueError, match="different block grids"):
        a.merge(b)
