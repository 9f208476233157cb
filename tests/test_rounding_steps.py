"""Inputs placed on the rounding boundaries of each step, so that a step rounded another
way (a division made a multiplication by a reciprocal, a float32 intermediate kept in
float64, ties broken otherwise) gives other bits.

Random data almost never lands within an ulp of a boundary: NVFP4's block scale
computed as ``float32(amax / 6) * float32(1 / pts)`` instead of ``float32(amax / 6) /
pts`` passed the whole suite before these tests (issue 19).  Here the inputs are searched so that an
intermediate lands exactly on, or one ulp beside, a point where the next rounding
changes its result.  Expected values come from the numpy oracles (tests/oracle*.py),
never from numba_quant; ``tools/mutate.py`` lists the mutants these tests kill.
"""
import os

import ml_dtypes
import numpy as np
import pytest

import calib_oracle
import oracle
import oracle_blocks as ob
import oracle_formats as orc
from golden import assert_same  # bits, dtype, shape; NaN-ness only for NaN (§7.4)

nq = pytest.importorskip("numba_quant")

F32 = np.float32
# Per-tensor scales that are not powers of two (so that dividing by one differs from
# multiplying by its rounded reciprocal), over a wide range of magnitudes.
PER_TENSOR = (F32(0.3), F32(0.7071068), F32(1.37), F32(3.1e-3), F32(41.5), F32(1.9e-6))


def _ulps(v, k):
    """float32 ``v`` moved ``k`` ulps (k may be negative), elementwise."""
    b = np.asarray(v, F32).view(np.int32).astype(np.int64) + k
    return b.astype(np.int32).view(F32)


def _e4m3_midpoints():
    """The points halfway between neighbouring positive E4M3 values from 2**-6 up (where
    rounding to E4M3 changes), and 448 itself (the top of the clamp)."""
    codes = np.arange(0x08, 0x7F, dtype=np.uint8)  # normal, finite, positive
    v = codes.view(ml_dtypes.float8_e4m3fn).astype(F32)
    return np.append((v[:-1] + v[1:]) / F32(2), F32(448))


FP4_MIDPOINTS = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], F32)


def _nvfp4_boundary_tensor(pts, rng):
    """Rows of 16 (one block each) whose block scale ``float32(float32(amax / 6) / pts)``
    is an E4M3 midpoint or one ulp beside it, and whose other 15 elements, times the
    block's multiplier ``float32(float32(1 / pts) / e4m3(bs))`` (docs/semantics.md §12),
    land on or one ulp beside an FP4 midpoint."""
    mids = _e4m3_midpoints()
    # candidate block maxima around 6 * m * pts, then those whose scale hits a target
    guess = (F32(6) * mids * pts).astype(F32)
    cand = _ulps(guess[:, None], np.arange(-48, 49)[None, :]).ravel()
    cand = cand[np.isfinite(cand) & (cand > 0)]
    bs = ((cand / F32(6)).astype(F32) / pts).astype(F32)
    targets = np.concatenate([mids, _ulps(mids, -1), _ulps(mids, 1)])
    amax = np.unique(cand[np.isin(bs, targets)])
    assert amax.size > 3 * mids.size // 2, "too few boundary blocks found"
    bs = np.clip(((amax / F32(6)).astype(F32) / pts).astype(F32), F32(2.0 ** -6), F32(448))
    scale = bs.astype(ml_dtypes.float8_e4m3fn).astype(F32)
    mult = ((F32(1) / pts).astype(F32) / scale).astype(F32)
    x = np.empty((amax.size, 16), F32)
    x[:, 0] = np.where(rng.random(amax.size) < 0.5, -amax, amax)
    for j in range(1, 16):
        mid = FP4_MIDPOINTS[(j - 1) % FP4_MIDPOINTS.size]
        v = _ulps((mid / mult).astype(F32), (j % 3) - 1)
        v = np.minimum(v, amax)   # (never above the block's maximum)
        x[:, j] = np.where(rng.random(amax.size) < 0.5, -v, v)
    return x


def _nvfp4_check(x, pts):
    ebs, eel, epts, edeq = orc.nvfp4_quantize(x, pts)
    bs, el, got_pts = nq.to_nvfp4(x, pts)
    assert_same(np.asarray(got_pts, F32), np.asarray(epts, F32), "per-tensor scale")
    assert_same(bs, ebs, "block scales")
    assert_same(el, eel, "elements")
    assert_same(nq.from_nvfp4(bs, el, got_pts), edeq, "from_nvfp4")
    assert_same(nq.nvfp4_fake_quantize(x, pts), edeq, "nvfp4_fake_quantize")


@pytest.mark.parametrize("pts", PER_TENSOR, ids=lambda p: f"pts={p:g}")
def test_nvfp4_two_level_boundaries_given_scale(pts):
    """Two-level NVFP4 with a given per-tensor scale that is not a power of two: block
    scales on E4M3 rounding boundaries, elements on FP4 ones."""
    x = _nvfp4_boundary_tensor(pts, np.random.default_rng(1))
    _nvfp4_check(x, pts)


def test_nvfp4_two_level_boundaries_computed_scale():
    """The same with the per-tensor scale computed from the tensor (``float32(amax) /
    2688``): one element sets the tensor's maximum so that the scale is the wanted one."""
    top = F32(1234.567)  # pts = float32(top / 2688), not a power of two
    pts = F32(top / F32(2688))
    x = _nvfp4_boundary_tensor(pts, np.random.default_rng(2))
    x = x[np.abs(x).max(axis=1) <= top]   # (blocks at the 448 clamp may lie above)
    x = np.concatenate([x, np.full((1, 16), top, F32)])
    _nvfp4_check(x, None)


# --------------------------------------------------------------------------- MXINT8
@pytest.mark.parametrize("mode", ["floor", "ceil", "even", "rceil"])
def test_mxint8_ties_and_clamp(mode):
    """MXINT8 elements ``rint(x / 2**e * 64)`` clamped to [-127, 127]: values on the
    half-way points of the 1/64 grid (ties to even) and one ulp beside them, and block
    maxima whose scaled magnitude rounds to 128 (clamped to 127 on both signs)."""
    rng = np.random.default_rng(3)
    rows = []
    for top in (1.0, 1.5, 1.9921875, 1.995, 1.9999999):
        for exp in (-120, -20, 0, 7, 100, 127):
            amax = F32(np.ldexp(top, exp))
            byte = orc.mx_scale(np.array([amax], F32), "int8", mode)[0]
            unit = np.ldexp(1.0, max(int(byte) - 127, -126)) / 64  # one step of the grid
            k = rng.integers(0, 127, 31)
            w = np.minimum((k + 0.5) * unit, np.float64(amax)).astype(F32)
            w = _ulps(w, rng.integers(-1, 2, 31))
            row = np.concatenate([[amax], np.minimum(w, amax)])
            rows.append(np.where(rng.random(32) < 0.5, -row, row).astype(F32))
    x = np.stack(rows)
    es, eel, edeq = orc.mx_quantize(x, "int8", 32, mode)
    s, el = nq.to_mx(x, "int8", 32, mode)
    assert_same(s, es, "scales")
    assert_same(el.view(np.uint8), eel, "elements")
    assert_same(nq.from_mx(s, el, "int8", 32), edeq, "from_mx")
    assert_same(nq.mx_fake_quantize(x, "int8", 32, mode), edeq, "mx_fake_quantize")


# --------------------------------------------------------------------------- OneFlow
def _tie_ranges(T):
    """Per-channel (lo, hi) with hi - lo = 255 s (s a power of two) and lo / s exactly
    k + 1/2 for k of both parities and both signs: the zero point's rounding ties."""
    los, his = [], []
    for j in (-4, 0, 3):
        s = np.ldexp(1.0, j)
        for k in range(-260, 260, 7):
            lo = (k + 0.5) * s
            if lo < 0 < lo + 255 * s or lo > 0 or lo + 255 * s < 0:
                los.append(lo)
                his.append(lo + 255 * s)
    return np.array(los, T), np.array(his, T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_oneflow_affine_zero_point_ties(dtype):
    """Affine zero points ``-round(lo / scale)`` on exact ties: half to even in
    min_max_observer, half away from zero in the moving-average observer (§3, §4.3)."""
    lo, hi = _tie_ranges(dtype)
    x = np.stack([lo, hi], axis=1)
    got = nq.min_max_observer(x, "google", 8, "affine", False)
    exp = oracle.min_max_observer(x, "google", 8, "affine", False)
    assert_same(got[0], exp[0], "scale")
    assert_same(got[1], exp[1], "zero point (ties to even)")
    zeros = np.zeros(lo.size, dtype)
    mm, mn = zeros.copy(), zeros.copy()
    got = nq.moving_average_min_max_observer(x, 0, mm, mn, True, 1, "google", 8, "affine",
                                             0.9)
    exp = oracle.moving_average_min_max_observer(x, 0, zeros, zeros, True, 1, "google", 8,
                                                 "affine", 0.9)
    assert_same(got[0], exp[0], "moving scale")
    assert_same(got[1], exp[1], "moving zero point (ties away)")


@pytest.mark.parametrize("momentum", [0.1, 0.01, 0.2999])
def test_oneflow_moving_average_float64_small_momentum(momentum):
    """``1 - momentum`` is a float32 even for a float64 state (§4.2); below 1/2 it is not
    exact in float32, so a float64 ``1 - momentum`` gives other bits."""
    rng = np.random.default_rng(4)
    n = 64
    state = rng.uniform(0.5, 4.0, n)
    a = rng.uniform(0.5, 4.0, n)
    x = np.stack([a, -a / 4], axis=1)
    for scheme in ("symmetric", "affine"):
        st_min = state if scheme == "symmetric" else -state
        mm, mn = state.copy(), st_min.copy()
        s, zp = nq.moving_average_min_max_observer(x, 0, mm, mn, True, 1, "google", 8, scheme,
                                                   momentum)
        exp = oracle.moving_average_min_max_observer(x, 0, state, st_min, True, 1, "google",
                                                     8, scheme, momentum)
        assert_same(mm, exp[2], f"{scheme} moving_max")
        assert_same(mn, exp[3], f"{scheme} moving_min")
        assert_same(s, exp[0], f"{scheme} scale")
        assert_same(zp, exp[1], f"{scheme} zero point")


# --------------------------------------------------------------------------- MX scales
MX_ELEMENTS = ("float8_e4m3fn", "float8_e5m2", "float6_e3m2fn", "float6_e2m3fn",
               "float4_e2m1fn", "int8")


@pytest.mark.parametrize("mode", ["floor", "ceil", "even", "rceil"])
@pytest.mark.parametrize("name", MX_ELEMENTS)
def test_mx_scale_boundaries(name, mode):
    """Block maxima on and a few ulps beside the points where an MX scale changes: powers
    of two (floor, ceil), the element maximum times powers of two (rceil: there
    ``float32(amax / max)`` is a power of two, and a quotient formed another way can
    land an ulp above it) and the significands that round up a binade (even)."""
    rng = np.random.default_rng(5)
    mbits = orc.MBITS[name]
    points = []
    for k in list(range(-20, 21)) + [-126, -125, 100, 126]:
        for base in (1.0, orc.MAX[name], 2.0 - 2.0 ** -(mbits + 1)):
            points.append(np.ldexp(base, k))
    points = np.array(points, np.float64)
    points = points[points < np.finfo(F32).max].astype(F32)
    amax = _ulps(points[:, None], np.arange(-3, 4)[None, :]).ravel()
    amax = amax[np.isfinite(amax) & (amax > 0)]
    x = (amax[:, None] * rng.uniform(-1, 1, (amax.size, 32))).astype(F32)
    x[:, 0] = amax
    es, eel, edeq = orc.mx_quantize(x, name, 32, mode)
    s, el = nq.to_mx(x, name, 32, mode)
    assert_same(s, es, "scales")
    assert_same(el.view(np.uint8), eel, "elements")
    assert_same(nq.from_mx(s, el, name, 32), edeq, "from_mx")


# --------------------------------------------------------------------------- torchao blocks
def _blocks_round_trip(x, mapping, block, range_name):
    """(scale, zero point, codes, dequantized) of numba_quant and of the oracle."""
    codes_dtype, qmin, qmax = {"uint8": (np.uint8, 0, 255), "int8": (np.int8, -128, 127),
                               "uint4": (np.uint8, 0, 15), "int4": (np.int8, -8, 7),
                               "uint16": (np.uint16, 0, 65535),
                               "int16": (np.int16, -32768, 32767)}[range_name]
    exp = ob.round_trip(x, mapping, block, qmin, qmax, codes_dtype)
    scale, zp = nq.choose_qparams_affine(x, mapping, block, range_name)
    codes = nq.quantize_affine(x, block, scale, zp, range_name)
    deq = nq.dequantize_affine(codes, block, scale, zp, range_name)
    exp = [np.asarray(e).view(np.uint16) if np.asarray(e).dtype == ob.BF16 else e
           for e in exp]
    return (scale, zp, codes, deq), exp


def test_blocks_ties_float32():
    """Asymmetric blocks whose zero point ``qmin - rint(min / scale)`` and whose codes
    ``rint(x * (1 / scale))`` are exact ties (scale a power of two): half to even."""
    rows = []
    for j in (-6, 0, 5):
        s = np.ldexp(1.0, j)
        for k in range(0, 255, 3):
            lo = -(k + 0.5) * s
            inner = lo + (np.arange(6) * 41 + 17 + 0.5) * s   # codes on ties
            rows.append(np.concatenate([[lo, lo + 255 * s], inner]))
    x = np.array(rows, F32)
    got, exp = _blocks_round_trip(x, "asymmetric", (1, 8), "uint8")
    for name, g, e in zip(("scale", "zero_point", "codes", "dequant"), got, exp):
        assert_same(g, e, name)


@pytest.mark.parametrize("kind", ["bfloat16", "float16"])
def test_blocks_every_16bit_value(kind):
    """Every finite bfloat16 / float16 value as a block of its own, each mapping type and
    range: the qparam arithmetic rounded to the 16-bit format after every operation
    (the zero point's clamp included: an all-negative block can round to 256)."""
    dtype = ml_dtypes.bfloat16 if kind == "bfloat16" else np.float16
    x = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)
    x = x[np.isfinite(x.astype(F32))]
    combos = [(m, r, 4) for m in ("asymmetric", "symmetric", "symmetric_no_clipping_err")
              for r in ("uint8", "int8", "uint4", "int4")]
    if kind == "bfloat16":
        # 16-bit codes: min / scale of an all-negative block rounds to -65536 in bfloat16,
        # and the zero point's clamp to quant_max bites.  Only the parameters are
        # compared: for the codes the oracle adds the zero point rounded to bfloat16
        # (65535 -> 65536, torch's promotion of an int32 tensor) where numba_quant adds
        # it exactly, a difference no golden case covers yet.
        combos += [("asymmetric", "uint16", 2), ("asymmetric", "int16", 2)]
    names = ("scale", "zero_point", "codes", "dequant")
    for mapping, range_name, compared in combos:
        got, exp = _blocks_round_trip(x, mapping, (1,), range_name)
        for name, g, e in list(zip(names, got, exp))[:compared]:
            assert_same(g.view(np.uint16) if g.dtype == dtype and kind == "bfloat16"
                        else g, e, f"{mapping} {range_name} {name}")


# --------------------------------------------------------------------------- calibrators
def test_percentile_on_exact_shares():
    """Histograms of equal counts, where the cumulative share ``sum(count / total)``
    (added left to right in float64) meets ``p / 100`` exactly or an ulp away: the first
    bin whose share reaches p (>=), from the sum of the rounded shares."""
    for n in range(2, 101):
        hist = np.ones(n, np.float32)
        edges = np.linspace(0, 1, n + 1, dtype=np.float32)
        for p in (10.0, 12.5, 20.0, 25.0, 30.0, 50.0, 60.0, 70.0, 75.0, 80.0, 90.0):
            got = nq.compute_amax(hist, edges, "percentile", percentile=p)
            exp = calib_oracle.percentile_amax(hist, edges, p)
            # (as 1-element arrays: golden.assert_same's message fails on 0-d ones)
            assert_same(np.asarray(got, F32).reshape(1), np.asarray(exp, F32).reshape(1),
                        f"{n} bins, p={p}")


@pytest.mark.parametrize("method", ["entropy", "mse"])
def test_calibration_searches_with_near_ties(method):
    """Small sparse histograms (a few counts in 64 bins, 2 to 4 bits): many candidates
    score alike, so the last digits of each score (the order of the sums, the logarithm's
    form) and the rule among equal scores (entropy: the last minimum, mse: the first)
    decide the result."""
    pytest.importorskip("scipy")
    rng = np.random.default_rng(6)
    edges = np.linspace(0, 4, 65, dtype=np.float32)
    for num_bits in (2, 3, 4):
        hist = np.zeros((40, 64), np.float32)
        for row in hist:
            used = rng.choice(64, int(rng.integers(2, 12)), replace=False)
            row[used] = rng.integers(1, 6, used.size)
            row[1] = max(row[1], 1)   # (bin 0 takes bin 1's count: a positive total)
        for unsigned in (False, True):
            kw = dict(num_bits=num_bits, unsigned=unsigned, start_bin=8, stride=1)
            got = nq.compute_amax(hist, np.tile(edges, (hist.shape[0], 1)), method, **kw)
            want = (calib_oracle.entropy_amax if method == "entropy" else
                    calib_oracle.mse_amax)
            exp = np.array([want(h, edges, **kw) for h in hist], F32)
            assert_same(np.asarray(got, F32), exp, f"{method} {num_bits} bits")


def test_l2_search_on_torch_cases():
    """The L2 range search against PyTorch's own (``tools/make_l2_golden.py``: 240 random
    2048-bin histograms, sparse, flat, bell-shaped, spiky and Poisson, where the errors
    of neighbouring candidates are close or equal and the float32 divisions fall near
    half-way; 24 more over ranges of 1e-25 to 1e-13, where every candidate's error
    underflows to zero and the search goes on through the ties): the chosen range, bit
    for bit."""
    from numba_quant._reference.select import l2_search
    path = os.path.join(os.path.dirname(__file__), "data", "l2_search_torch.npz")
    with np.load(path) as data:
        hists, bounds, results = data["histograms"], data["bounds"], data["results"]
    got = np.array([l2_search(h, lo, hi, 256) for h, (lo, hi) in zip(hists, bounds)], F32)
    assert_same(got, results, "l2 search (new_min, new_max)")


@pytest.mark.parametrize("lo, hi", [(-1.37, 2.91), (0.1, 7.3), (-1000.3, 3700.0)])
def test_histc_bins_at_edges(lo, hi):
    """``torch.histc``'s bins ``trunc(((x - lo) * bins) / (hi - lo))`` (in that order, in
    float32) for values on and a few ulps beside every bin edge, the ends included."""
    lo, hi, bins = F32(lo), F32(hi), 2048
    k = np.arange(bins + 1)
    edges = (np.float64(lo) + k * (np.float64(hi) - np.float64(lo)) / bins).astype(F32)
    x = _ulps(edges[:, None], np.arange(-2, 3)[None, :]).ravel()
    x = np.concatenate([[lo, hi], x[(x >= lo) & (x <= hi)]])
    observer = nq.HistogramObserver(bins=bins, method="l2")
    observer.observe(x)
    exp = calib_oracle.histc(x, bins, x.min(), x.max())
    assert_same(np.asarray(observer.first_counts[0]).astype(np.int64), exp.astype(np.int64),
                "counts")


@pytest.mark.parametrize("scheme", ["symmetric", "affine"])
def test_oneflow_zero_scale_channels(scheme, device):
    """A zero scale (a zero-range channel, §5.9) is valid: its codes are 0 and its
    values 0 (NaN stays NaN), beside channels with ordinary scales; on the GPU path
    the parameters are checked on the device (``valid_code_params``)."""
    x = np.random.default_rng(8).standard_normal((6, 5)).astype(F32)
    scale = np.array([0.0, 0.05, 0.0, 0.3, 0.0, 0.01], F32)
    zp = np.array([0.0, 3.0, 0.0, 128.0, 0.0, 7.0], F32) if scheme == "affine" \
        else np.zeros(6, F32)
    for fn in ("fake_quantization", "quantization"):
        got = getattr(nq, fn)(device.put(x), device.put(scale), device.put(zp), "google", 8,
                              scheme, axis=0)
        exp = getattr(oracle, fn)(x, scale, zp, "google", 8, scheme, axis=0)
        assert_same(device.get(got), exp, f"{fn} {scheme}")
