#!/usr/bin/env python
"""Exhaustive checks behind the mutants that tools/mutate.py marks ``equivalent``.

Each check loads the reference module twice, as it is and with the mutant's edit
applied (the mutated source written to a temporary file and imported under another
name), and compares the two compiled functions on every input of the domain in which
the mutant differs in its source:

* ``mx_int8_decode_divide``: ``decode_int8`` on all 256 int8 codes;
* ``mx_int8_asymmetric_clamp``: ``int8_element(v, 1, 127/64)`` for every float32 ``v``
  with exponent field 120-139 (|v| in [2**-7, 2**13)), both signs, and every inf/NaN;
* ``element_no_upper_clamp``: ``element_code(w, 1, max, p)`` on every float32 ``w``
  above the format's largest value, +inf included (at or below it the two sources are
  the same), for FP8 E4M3FN/E5M2, FP6 E3M2/E2M3 and FP4 E2M1;
* ``nvfp4_scale_not_saturating``: the E4M3 cast with and without saturation on every
  value it can receive there (the clamped block scale: every float32 in [2**-6, 448],
  every NaN), and the two whole functions on block maxima around the clamp's ends;
* ``nvfp4_factor_float64``: ``nvfp4_block_factor`` for every finite E4M3 code and
  per-tensor scales from all 254 normal exponents (4 significands each), the 4,095
  smallest subnormals and 10**6 random normal ones (the reason in words covers the rest);
* ``oneflow_floor_log2_tie_boundary``: ``floor_log2`` on every significand that can
  bring the logarithm within the threshold, with an exponent of every threshold class
  (see :func:`check_floor_log2_tie`).

``control`` runs the same machinery on a mutant that changes results (NVFP4's element
multiplier through a reciprocal) and must find differences: it shows that the loaded
copies really differ.  The other equivalent mutants are argued in words in their
``equivalent=`` text.  Prints one line per check; exits non-zero if a pair that must
agree differs somewhere.

``--quick`` takes every 97th value of the large domains.

Usage: python tools/check_mutant_equivalence.py [--quick] [--only NAME]
"""
import argparse
import atexit
import importlib.util
import shutil
import os
import sys
import tempfile
import time

import numpy as np
from numba import njit, prange

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import mutate  # noqa: E402

from numba_quant._host import float_formats as ff  # noqa: E402


def load(file, mutant_name=None):
    """The reference module ``file`` compiled from its source, or from the source with
    ``mutant_name`` applied; imported under a private name from a temporary file."""
    path = os.path.join(mutate.ROOT, mutate.REF, file)
    with open(path) as f:
        source = f.read()
    if mutant_name is not None:
        m = next(m for m in mutate.MUTANTS if m.name == mutant_name)
        source = mutate.check_mutant(m)[1]
    folder = tempfile.mkdtemp(prefix="nq-equivalence-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    tag = "original" if mutant_name is None else mutant_name
    name = f"_nq_{tag}_{file[:-3]}"
    with open(os.path.join(folder, name + ".py"), "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _bits_range(lo, hi):
    """float32 values with bit patterns lo..hi inclusive, in chunks of 2**24."""
    for start in range(lo, hi + 1, 1 << 24):
        yield np.arange(start, min(hi, start + (1 << 24) - 1) + 1,
                        dtype=np.uint64).astype(np.uint32).view(np.float32)


def check_int8_decode(quick):
    a, b = load("formats.py"), load("formats.py", "mx_int8_decode_divide")
    codes = np.arange(-128, 128, dtype=np.int64)
    bad = sum(np.float32(a.decode_int8(np.int8(c))).view(np.uint32)
              != np.float32(b.decode_int8(np.int8(c))).view(np.uint32) for c in codes)
    return bad, codes.size


def check_int8_clamp(quick):
    """int8_element(v, 1, 127/64) (encode_int8's only caller, as the block kernels call
    it) for every float32 v of exponent field 120-139 (|v| in [2**-7, 2**13): around
    the clamp at 127/64 and far beyond), both signs, and inf/NaN patterns."""
    a, b = load("formats.py"), load("formats.py", "mx_int8_asymmetric_clamp")
    fa, fb = a.int8_element, b.int8_element

    @njit(parallel=True, cache=False)
    def differ(v, lim):
        n = 0
        for i in prange(v.size):
            if fa(v[i], np.float32(1), lim) != fb(v[i], np.float32(1), lim):
                n += 1
        return n

    lim = np.float32(127.0 / 64.0)
    bad = total = 0
    step = 97 if quick else 1
    for sign in (0, 1):
        for field in list(range(120, 140)) + [255]:
            base = (sign << 31) | (field << 23)
            for v in _bits_range(base, base + (1 << 23) - 1):
                v = v[::step]
                bad += differ(v, lim)
                total += v.size
    return bad, total


def check_element_clamp(quick):
    a, b = load("formats.py"), load("formats.py", "element_no_upper_clamp")
    fa, fb = a.element_code, b.element_code

    @njit(parallel=True, cache=False)
    def differ(w, lim, p):
        n = 0
        for i in prange(w.size):
            if fa(w[i], np.float32(1), lim, p) != fb(w[i], np.float32(1), lim, p):
                n += 1
        return n

    bad = total = 0
    step = 97 if quick else 1
    for fmt in (ff.E4M3FN, ff.E5M2, ff.E3M2FN, ff.E2M3FN, ff.E2M1FN):
        p = ff.PARAMS[fmt]
        # the format's largest value, as the public modules pass it (Format.max)
        lim = np.float32(next(f.max for f in ff.FORMATS.values() if f.code == fmt))
        lo = int(np.float32(lim).view(np.uint32)) + 1
        for w in _bits_range(lo, 0x7F800000):
            w = w[::step]
            bad += differ(w, lim, p)
            total += w.size
    return bad, total


def check_nvfp4_saturate(quick):
    """The mutant changes only the ``saturate`` flag of nvfp4_scale_code's cast, whose
    input is the clamped block scale: a float32 in [2**-6, 448] or a NaN.  The cast
    (encode_f32 to E4M3FN) of every such value is compared with both flags."""
    a = load("formats.py")
    b = load("formats.py", "nvfp4_scale_not_saturating")   # (the mutant source compiles)
    enc = a.encode_f32
    fmt = np.int64(ff.E4M3FN)

    @njit(parallel=True, cache=False)
    def differ(bs):
        n = 0
        for i in prange(bs.size):
            if enc(bs[i], fmt, np.bool_(True)) != enc(bs[i], fmt, np.bool_(False)):
                n += 1
        return n

    bad = total = 0
    step = 97 if quick else 1
    lo = int(np.float32(2.0 ** -6).view(np.uint32))
    hi = int(np.float32(448.0).view(np.uint32))
    ranges = [(lo, hi), (0x7F800001, 0x7FFFFFFF), (0xFF800001, 0xFFFFFFFF)]  # + NaNs
    for first, last in ranges:
        for bs in _bits_range(first, last):
            bs = bs[::step]
            bad += differ(bs)
            total += bs.size
    # and the mutant's whole function on block maxima around the clamp's ends (pts 1)
    edge = np.concatenate([np.arange(lo - 4096, lo + 4096), np.arange(hi - 4096, hi + 4096)])
    amax = (edge.astype(np.uint32).view(np.float32).astype(np.float64) * 6).astype(np.float32)
    for v in amax:
        bad += a.nvfp4_scale_code(v, np.float32(1)) != b.nvfp4_scale_code(v, np.float32(1))
    return bad, total + amax.size


def check_nvfp4_factor(quick):
    a, b = load("formats.py"), load("formats.py", "nvfp4_factor_float64")
    fa, fb = a.nvfp4_block_factor, b.nvfp4_block_factor

    @njit(parallel=True, cache=False)
    def differ(pts):
        n = 0
        for i in prange(pts.size):
            for code in range(0x7F):  # every finite non-negative E4M3 code
                x = fa(np.int64(code), pts[i])
                y = fb(np.int64(code), pts[i])
                if x != y and not (x != x and y != y):
                    n += 1
        return n

    strata = [(e << 23) | m for e in range(1, 255) for m in (0, 1, 0x400001, 0x7FFFFF)]
    rng = np.random.default_rng(0)
    random = rng.integers(0x00800000, 0x7F800000, 10 ** (5 if quick else 6), dtype=np.uint32)
    pts = np.concatenate([np.array(strata, np.uint32), random,
                          np.arange(1, 1 << 12, dtype=np.uint32)]).view(np.float32)
    return differ(pts), pts.size * 0x7F


def check_control(quick):
    """Not an equivalence: the same machinery on a mutant that does change results
    (NVFP4's multiplier through a reciprocal), which must be seen to differ."""
    a, b = load("formats.py"), load("formats.py", "nvfp4_multiplier_reciprocal")
    pts = np.random.default_rng(1).uniform(0.01, 100, 1000).astype(np.float32)
    bad = 0
    for inv in (np.float32(1) / pts).astype(np.float32):
        for code in range(0x08, 0x7F):
            bad += a.nvfp4_multiplier(np.int64(code), inv) != b.nvfp4_multiplier(
                np.int64(code), inv)
    return bad, pts.size * (0x7F - 0x08)


def check_floor_log2_tie(quick):
    """``floor_log2(a)`` with ``a = m * 2**e`` (frexp) depends on ``m`` only through ``t =
    -log1p(m - 1) / ln 2`` and on ``e`` only through the threshold ``2**(s - 1)`` (s from
    e's own exponent, one less for e a power of two above 0), and the mutant differs only
    where t equals the threshold.  The thresholds are at most 2**-17 (float32: e <= 128)
    and 2**-43 (float64: e <= 1024), while t >= (1 - m) / ln 2 exceeds them for 1 - m
    above 2**-14 and 2**-40 (k = (1 - m) * 2**p above 2**10 and 2**13).  So every m with
    k <= 2**12 (float32) or 2**15 (float64) is combined with a representative exponent of
    every threshold class (each power of two up to 2**11, one above, one below, their
    negatives, 0, 1, -1 and the ends of the range) and the compiled originals and
    mutants compared; the remaining m give t above every threshold (both return e - 1)."""
    a, b = load("integer.py"), load("integer.py", "oneflow_floor_log2_tie_boundary")
    fa, fb = a.floor_log2, b.floor_log2

    @njit(cache=False)
    def differ(values):
        n = 0
        for v in values:
            if fa(v) != fb(v):
                n += 1
        return n

    bad = total = 0
    for dtype, p, kmax, emin, emax in ((np.float32, 24, 1 << 12, -148, 128),
                                       (np.float64, 53, 1 << 15, -1073, 1024)):
        exps = {0, 1, -1, emin, emax, emin + 1, emax - 1}
        for j in range(12):
            for e in (1 << j, (1 << j) + 1, (1 << j) - 1):
                exps.update({e, -e})
        exps = np.array(sorted(e for e in exps if emin <= e <= emax))
        k = np.arange(1, kmax + 1, dtype=np.float64)
        m = 1.0 - k * 2.0 ** -p                      # m in [0.5, 1), exact
        for e in exps:
            v = np.ldexp(m, e - 0).astype(dtype)     # a = m * 2**e (frexp gives m, e)
            v = v[(v > 0) & np.isfinite(v)]
            bad += differ(v)
            total += v.size
    return bad, total


# name -> (check, whether the two must agree everywhere)
CHECKS = {"control": (check_control, False),
          "mx_int8_decode_divide": (check_int8_decode, True),
          "oneflow_floor_log2_tie_boundary": (check_floor_log2_tie, True),
          "mx_int8_asymmetric_clamp": (check_int8_clamp, True),
          "element_no_upper_clamp": (check_element_clamp, True),
          "nvfp4_scale_not_saturating": (check_nvfp4_saturate, True),
          "nvfp4_factor_float64": (check_nvfp4_factor, True)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a strided subset (minutes less)")
    ap.add_argument("--only", choices=sorted(CHECKS), metavar="NAME")
    args = ap.parse_args()
    failed = False
    for name, (check, same) in CHECKS.items():
        if args.only and name != args.only:
            continue
        t = time.time()
        bad, total = check(args.quick)
        ok = (bad == 0) if same else (bad > 0)
        failed |= not ok
        verdict = ("SAME" if bad == 0 else "DIFFERS") + ("" if ok else "  <-- UNEXPECTED")
        print(f"{name:28s} {verdict}: {bad} of {total} inputs differ "
              f"({time.time() - t:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
