"""Edge cases of the GGUF types F16..MXFP4 against ggml's C, and two exhaustive checks of
the scalar helpers they rest on.

    python tools/check_gguf_edges.py            # all three parts
    python tools/check_gguf_edges.py --rows     # edge rows against ggml's C only
    python tools/check_gguf_edges.py --f16      # every float32 -> float16 rounding
    python tools/check_gguf_edges.py --log2     # floor(log2f) at every power of two

``--rows``: rows built to hit the corners of ggml's arithmetic (blocks of subnormal
values, whose reciprocal scale is infinite and whose codes come from C's out-of-range
float->int conversions; block maxima at and next to every power of two, and at the
float16 rounding boundaries of the scale; values on rounding ties; equal magnitudes of
both signs; single non-zero values; scales that overflow float16), quantized by
``ggml_quantize_chunk`` (tools/check_gguf_c.py's ctypes wrapper) and by
``numba_quant.gguf`` row by row: the bytes must be equal, except that a row whose C
bytes dequantize to a non-finite value must be refused by numba_quant with a
ValueError.  ``--f16``: the reference's float32 -> float16 rounding
(``gguf_legacy.f16_bits_rne``) against numpy's ``astype(float16)`` for all 2**32 bit
patterns except NaNs.  ``--log2``: MXFP4's ``floor_log2f`` against glibc's ``log2f``
(ctypes) for the 4096 floats below and 16 above every power of two in float32's range.
"""
import argparse
import ctypes
import ctypes.util
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TYPES = ("F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS",
         "TQ1_0", "TQ2_0", "MXFP4")


def edge_rows(n, rng):
    """float32 rows of n values (n a multiple of 256) hitting the corners."""
    rows = []
    sub = np.float32(1.4e-45)
    # subnormal blocks: a few multiples of the smallest subnormal, with zeros and signs
    for k in (1, 3, 1000, 2**20):
        r = rng.integers(-k, k + 1, n).astype(np.float32) * sub
        rows.append(r)
    # block maxima at and next to powers of two (MXFP4's exponent, fp16 scale steps)
    for e in (-140, -126, -100, -30, -24, -14, -1, 0, 1, 3, 12, 15, 16, 19, 20):
        p = np.float32(2.0**e)
        for m in (np.nextafter(p, np.float32(0)), p, np.nextafter(p, np.float32(np.inf))):
            r = rng.standard_normal(n).astype(np.float32) * np.float32(m) * np.float32(0.3)
            r[::32] = m
            r[17::64] = -m
            rows.append(r)
    # float16 boundaries of d = amax / c for the divisors of the types
    for c in (127.0, 8.0, 16.0, 15.0, 31.0, 1.0):
        for edge in (65504.0, 65519.0, 65520.0, 6.103515625e-05, 5.960464477539063e-08,
                     2.9802322387695312e-08):
            a = np.float32(edge * c)
            for m in (np.nextafter(a, np.float32(0)), a, np.nextafter(a, np.float32(np.inf))):
                r = rng.uniform(-1, 1, n).astype(np.float32) * m
                r[5::32] = m
                rows.append(r)
    # ties: values on the half-steps of their block's scale, both signs first
    base = np.tile(np.arange(-16, 16, dtype=np.float32), n // 32)
    rows.append(base + np.float32(0.5))
    rows.append((base + np.float32(0.5)) / np.float32(8))
    rows.append(np.round(rng.standard_normal(n) * 4) / np.float32(4))
    r = np.ones(n, np.float32)
    r[1::2] = -1
    rows.append(r)
    rows.append(-r)
    r = np.zeros(n, np.float32)
    r[::37] = 1.5
    rows.append(r)
    rows.append(np.zeros(n, np.float32))
    rows.append(np.full(n, -0.0, np.float32))
    rows.append(np.full(n, 7.0, np.float32))
    # overflowing scales (ggml writes infinities; numba_quant refuses)
    for big in (1e5, 6e5, 1e6, 3e38):
        r = rng.standard_normal(n).astype(np.float32)
        r[40] = big
        rows.append(r)
    r = np.full(n, 3.0e38, np.float32)
    r[::2] = -3.0e38
    rows.append(r)
    return np.stack(rows).astype(np.float32)


def check_rows(seed):
    from check_gguf_c import GGML

    from numba_quant import gguf

    ggml = GGML()
    rng = np.random.default_rng(seed)
    bad = 0
    for n in (256, 512):
        x = edge_rows(n, rng)
        qw = rng.lognormal(0, 1.5, n).astype(np.float32)
        qw[::7] = 0
        for name in TYPES:
            for imatrix in (None, qw):
                if imatrix is not None and name in ("F16", "BF16", "Q8_0", "MXFP4",
                                                    "TQ1_0", "TQ2_0"):
                    continue
                want = ggml.quantize(name, x, imatrix)
                deq = ggml.dequantize(name, want, n)
                n_ok = n_refused = 0
                for i in range(x.shape[0]):
                    finite = np.isfinite(deq[i]).all()
                    try:
                        got = gguf.quantize(x[i:i + 1], name, imatrix=imatrix)[0]
                    except ValueError as e:
                        if finite:
                            bad += 1
                            print(f"  {name} n={n} imatrix={imatrix is not None} row {i}: "
                                  f"refused ({e}) but ggml's bytes are finite")
                        else:
                            n_refused += 1
                        continue
                    if not finite:
                        bad += 1
                        print(f"  {name} n={n} row {i}: accepted, ggml's bytes dequantize "
                              f"to non-finite values")
                    elif not np.array_equal(got, want[i]):
                        bad += 1
                        diff = np.nonzero(got != want[i])[0]
                        print(f"  {name} n={n} imatrix={imatrix is not None} row {i}: "
                              f"bytes differ at {diff[:8]}")
                    else:
                        n_ok += 1
                ours_deq = gguf.dequantize(want, name)
                same = ours_deq.view(np.uint32) == deq.view(np.uint32)
                both_nan = np.isnan(ours_deq) & np.isnan(deq)
                if not (same | both_nan).all():
                    bad += 1
                    print(f"  {name} n={n}: dequantized bits differ")
                print(f"{name:7} n={n} imatrix={str(imatrix is not None):5}: {n_ok} rows "
                      f"equal, {n_refused} refused (ggml: non-finite)")
    return bad


def check_f16():
    from numba import njit, prange

    from numba_quant._reference.gguf_legacy import f16_bits_rne

    @njit(parallel=True)
    def ours(bits, out):
        for i in prange(bits.size):
            out[i] = f16_bits_rne(bits[i:i + 1].view(np.float32)[0])

    bad = 0
    step = 1 << 24
    out = np.empty(step, np.uint16)
    for start in range(0, 1 << 32, step):
        bits = np.arange(start, start + step, dtype=np.uint64).astype(np.uint32)
        v = bits.view(np.float32)
        keep = ~np.isnan(v)
        ours(bits, out)
        want = v.astype(np.float16).view(np.uint16)
        wrong = keep & (out != want)
        if wrong.any():
            i = int(np.argmax(wrong))
            bad += int(wrong.sum())
            print(f"  f16: {v[i]!r} (bits {bits[i]:#010x}) -> {out[i]:#06x}, "
                  f"numpy {want[i]:#06x}")
    print(f"float32 -> float16: {'OK' if not bad else f'{bad} differ'} (all non-NaN patterns)")
    return bad


def check_log2():
    from numba import njit

    from numba_quant._reference.gguf_iq import floor_log2f

    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.log2f.restype = ctypes.c_float
    libm.log2f.argtypes = [ctypes.c_float]
    floor_many = njit(lambda a: np.array([floor_log2f(v) for v in a]))
    bad = 0
    total = 0
    for e in range(-149, 128):
        p = np.float32(2.0**e)
        below = p.view(np.uint32) - np.arange(1, 4097, dtype=np.uint32)
        above = p.view(np.uint32) + np.arange(0, 16, dtype=np.uint32)
        cand = np.concatenate([below[below > 0], above]).view(np.float32)
        cand = cand[np.isfinite(cand) & (cand > 0)]
        ours = floor_many(cand)
        want = np.array([np.floor(np.float32(libm.log2f(float(c)))) for c in cand])
        total += cand.size
        if not np.array_equal(ours, want):
            i = int(np.argmax(ours != want))
            bad += int((ours != want).sum())
            print(f"  log2: {cand[i]!r}: ours {ours[i]}, glibc {want[i]}")
    print(f"floor(log2f): {'OK' if not bad else f'{bad} differ'} ({total} values)")
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", action="store_true")
    ap.add_argument("--f16", action="store_true")
    ap.add_argument("--log2", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    every = not (args.rows or args.f16 or args.log2)
    bad = 0
    if every or args.log2:
        bad += check_log2()
    if every or args.rows:
        bad += check_rows(args.seed)
    if every or args.f16:
        bad += check_f16()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
