#!/usr/bin/env python
"""Check numba_quant.to_bits against ml_dtypes on all 2**32 float32 bit patterns.

For every format (FP8 E4M3FN/E5M2, FP6 E3M2/E2M3, FP4 E2M1, E8M0) and every float32 bit
pattern, the code from ``numba_quant.to_bits(x, fmt)`` (saturate=False) must equal
``x.astype(ml_dtypes.<fmt>).view(uint8)``, and ``to_bits(..., saturate=True)`` must equal
the same code except where ml_dtypes overflows (NaN or infinity from a non-NaN input),
which becomes the largest finite value of the input's sign.  Runs chunk by chunk
(2**24 patterns), prints a line per format and the time; exits non-zero on a mismatch.

Usage: python tools/check_float_conversions.py [--chunks N]   (N < 256 checks a prefix)
"""
import argparse
import os
import sys
import time

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
import numba_quant as nq  # noqa: E402

FORMATS = ("float8_e4m3fn", "float8_e5m2", "float6_e3m2fn", "float6_e2m3fn",
           "float4_e2m1fn", "float8_e8m0fnu")
MAX = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0, "float6_e3m2fn": 28.0,
       "float6_e2m3fn": 7.5, "float4_e2m1fn": 6.0, "float8_e8m0fnu": 2.0 ** 127}
SIGN = {"float8_e4m3fn": 0x80, "float8_e5m2": 0x80, "float6_e3m2fn": 0x20,
        "float6_e2m3fn": 0x20, "float4_e2m1fn": 0x8, "float8_e8m0fnu": 0}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=256, help="chunks of 2**24 (256: all)")
    args = parser.parse_args()
    chunk = 1 << 24
    start = time.perf_counter()
    bad = 0
    ours_time = 0.0
    for name in FORMATS:
        t_format = time.perf_counter()
        mtype = getattr(ml_dtypes, name)
        top = np.array([MAX[name]], np.float32).astype(mtype).view(np.uint8)[0]
        mismatches = 0
        for c in range(args.chunks):
            x = np.arange(c * chunk, (c + 1) * chunk, dtype=np.uint64).astype(np.uint32)
            x = x.view(np.float32)
            t0 = time.perf_counter()
            ours = nq.to_bits(x, name)
            ours_sat = nq.to_bits(x, name, saturate=True)
            ours_time += time.perf_counter() - t0
            with np.errstate(invalid="ignore", over="ignore"):
                ref = x.astype(mtype).view(np.uint8)
                back = ref.view(mtype).astype(np.float32)
            over = ~np.isnan(x) & ~np.isfinite(back)
            if name == "float8_e8m0fnu":
                over &= x > 0
            ref_sat = np.where(over, np.where(np.signbit(x), top | SIGN[name], top), ref)
            wrong = np.flatnonzero((ours != ref) | (ours_sat != ref_sat.astype(np.uint8)))
            if wrong.size:
                mismatches += wrong.size
                i = wrong[0]
                print(f"  {name}: bits {x.view(np.uint32)[i]:#010x}: ours {ours[i]:#04x}/"
                      f"{ours_sat[i]:#04x}, ml_dtypes {ref[i]:#04x}/{ref_sat[i]:#04x}")
        bad += mismatches
        print(f"{name:16s} {args.chunks * chunk:>12,d} patterns x 2 (saturate False/True): "
              f"{mismatches} mismatches, {time.perf_counter() - t_format:.1f} s", flush=True)
    total = time.perf_counter() - start
    print(f"total {total:.1f} s (numba_quant.to_bits: {ours_time:.1f} s; the rest is "
          f"ml_dtypes and the comparison)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
