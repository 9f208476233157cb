#!/usr/bin/env python
"""Check numba_quant.to_bits against ml_dtypes on all 2**32 float32 bit patterns.

For every format (FP8 E4M3FN/E5M2, FP6 E3M2/E2M3, FP4 E2M1, E8M0) and every float32 bit
pattern, the code from ``numba_quant.to_bits(x, fmt)`` (saturate=False) must equal
``x.astype(ml_dtypes.<fmt>).view(uint8)``; with --saturate, ``to_bits(...,
saturate=True)`` must equal the same code except where ml_dtypes overflows (NaN or
infinity from a non-NaN input), which becomes the largest finite value of the input's
sign.  Runs chunk by chunk (2**24 patterns, in bit-reversed order so that a shorter run
samples every exponent), prints progress per chunk; exits non-zero on a mismatch.

``--stratified STRIDE`` checks a subset instead, in chunks of 2**23: every float32 whose
exponent field is one where some format has a boundary (0-3: zero, float32 subnormals and
E8M0's smallest values; 101-145: every element format's subnormals, rounding to zero,
largest values and overflow; 252-255: E8M0's largest values, infinity, NaN), both signs
and every mantissa, plus every STRIDE-th pattern of all 2**32 (an odd stride reaches
every residue of the low bits).

Usage: python tools/check_float_conversions.py [--chunks N | --stratified STRIDE]
       [--saturate]
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


def bit_reversed(i, bits=8):
    return int(f"{i:0{bits}b}"[::-1], 2)


BOUNDARY_EXPONENTS = tuple(range(0, 4)) + tuple(range(101, 146)) + tuple(range(252, 256))


def stratified_chunks(stride):
    """The uint32 patterns of ``--stratified``, in chunks of 2**23, with a label each."""
    for e in BOUNDARY_EXPONENTS:
        for sign in (0, 1):
            base = (sign << 31) | (e << 23)
            yield f"exponent field {e}, sign {sign}", (
                np.arange(base, base + (1 << 23), dtype=np.uint64).astype(np.uint32))
    step = (1 << 23) * stride
    for start in range(0, 1 << 32, step):
        yield f"every {stride}th from {start:#010x}", np.arange(
            start, min(1 << 32, start + step), stride, dtype=np.uint64).astype(np.uint32)


def all_chunks(count):
    chunk = 1 << 24
    # Bit-reversed chunk order: a run stopped early has still sampled every exponent.
    for c in sorted(range(256), key=bit_reversed)[:count]:
        yield f"chunk {c}", np.arange(c * chunk, (c + 1) * chunk,
                                      dtype=np.uint64).astype(np.uint32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=256, help="chunks of 2**24 (256: all)")
    parser.add_argument("--stratified", type=int, metavar="STRIDE",
                        help="boundary exponents in full plus every STRIDE-th pattern")
    parser.add_argument("--saturate", action="store_true",
                        help="also check saturate=True (about twice the time)")
    args = parser.parse_args()
    start = time.perf_counter()
    mismatches = {name: 0 for name in FORMATS}
    tops = {name: np.array([MAX[name]], np.float32).astype(getattr(ml_dtypes, name))
            .view(np.uint8)[0] for name in FORMATS}
    ours_time = 0.0
    checked = 0
    chunks = (stratified_chunks(args.stratified) if args.stratified
              else all_chunks(args.chunks))
    for done, (label, bits) in enumerate(chunks, 1):
        x = bits.view(np.float32)
        checked += x.size
        for name in FORMATS:
            mtype = getattr(ml_dtypes, name)
            t0 = time.perf_counter()
            ours = nq.to_bits(x, name)
            ours_time += time.perf_counter() - t0
            with np.errstate(invalid="ignore", over="ignore"):
                ref = x.astype(mtype).view(np.uint8)
            wrong = np.flatnonzero(ours != ref)
            if args.saturate:
                ours_sat = nq.to_bits(x, name, saturate=True)
                back = ref.view(mtype).astype(np.float32)
                over = ~np.isnan(x) & ~np.isfinite(back)
                if name == "float8_e8m0fnu":
                    over &= x > 0
                ref_sat = np.where(over, np.where(np.signbit(x), tops[name] | SIGN[name],
                                                  tops[name]), ref).astype(np.uint8)
                wrong = np.union1d(wrong, np.flatnonzero(ours_sat != ref_sat))
            if wrong.size:
                mismatches[name] += wrong.size
                i = wrong[0]
                print(f"  {name}: bits {x.view(np.uint32)[i]:#010x}: ours {ours[i]:#04x}, "
                      f"ml_dtypes {ref[i]:#04x}")
        print(f"{done:3d} {label} ({checked:,} patterns), "
              f"{sum(mismatches.values())} mismatches, {time.perf_counter() - start:.0f} s",
              flush=True)
    total = time.perf_counter() - start
    for name in FORMATS:
        print(f"{name:16s} {checked:>14,d} patterns: {mismatches[name]} mismatches")
    print(f"total {total:.1f} s (numba_quant.to_bits: {ours_time:.1f} s; the rest is "
          f"ml_dtypes and the comparison)")
    return 1 if any(mismatches.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
