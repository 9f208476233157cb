#!/usr/bin/env python
"""Mutation testing of the shared arithmetic (numba_quant/_reference/*.py).

Each mutant below is a hand-written edit that a careless change could make to one
rounding step: a division turned into a multiplication by a reciprocal, ties to even
turned into ties away or up, floor into trunc, ``<`` into ``<=``, a float32 intermediate
into a float64 one, another order of a sum, a clamp left out, an exponent or bias off by
one, saturation dropped.  For each mutant the tool copies the repository into a
temporary folder once (never touching the working tree), writes the mutated file there,
runs the test modules of that format (``TESTS``: reference file or function -> modules)
with a fresh ``NUMBA_CACHE_DIR`` and ``-p no:xdist -x -q``, records whether a test
failed (killed) or none did (survived), and puts the original file back.

A mutant marked ``equivalent="why"`` gives the same bits as the original for every input;
it is listed but not run (``--run-equivalent`` runs it anyway).  The reason says how that
was shown (``tools/check_mutant_equivalence.py`` checks the exhaustive ones).

Usage (from the repository root):
    python tools/mutate.py --list
    python tools/mutate.py [--only NAME ...] [--report FILE] [--state FILE] [--jobs 1]

``--only`` takes names or shell patterns (``--only 'nvfp4*'``); ``--state FILE`` keeps
each mutant's latest outcome in a JSON file across runs, and the report then covers
every mutant run so far.  By default the CUDA simulator tests (marker ``gpu``) and the
Dask cluster tests are left out (``--gpu`` keeps the simulator ones): the GPU kernels
call the same reference functions, and the simulator costs minutes per module.
"""
import argparse
import ast
import datetime
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = "numba_quant/_reference"

# What the tool copies into its temporary repository.
COPIED = ("numba_quant", "tests", "pyproject.toml", "setup.cfg")

# --------------------------------------------------------------------------- tests per format
# The boundary tests of tests/test_rounding_steps.py run first, each format only its own
# (a test of another format would compile that format's kernels for nothing).
ROUNDING = "tests/test_rounding_steps.py::"
ONEFLOW = ["tests/test_exactness.py", "tests/test_golden.py"]
ONEFLOW_TIES = [ROUNDING + "test_oneflow_affine_zero_point_ties", *ONEFLOW]
ONEFLOW_MOVING = [ROUNDING + "test_oneflow_moving_average_float64_small_momentum", *ONEFLOW]
TORCHAO_BLOCKS = [ROUNDING + "test_blocks_ties_float32",
                  ROUNDING + "test_blocks_every_16bit_value", "tests/test_blocks.py"]
FORMATS = ["tests/test_formats_golden.py", "tests/test_formats_properties.py",
           "tests/test_formats_api.py"]
NVFP4 = [ROUNDING + "test_nvfp4_two_level_boundaries_given_scale",
         ROUNDING + "test_nvfp4_two_level_boundaries_computed_scale", *FORMATS]
MXINT8 = [ROUNDING + "test_mxint8_ties_and_clamp", *FORMATS]
MX_SCALES = [ROUNDING + "test_mx_scale_boundaries", ROUNDING + "test_mxint8_ties_and_clamp",
             *FORMATS]
CALIBRATION = ["tests/test_calibrate.py"]
SELECTION = [ROUNDING + "test_percentile_on_exact_shares",
             ROUNDING + "test_calibration_searches_with_near_ties",
             ROUNDING + "test_l2_search_on_torch_cases", *CALIBRATION]

# Functions only the CUDA kernels call: their mutants run the simulator tests too.
GPU_ONLY = {("integer.py", "valid_code_params")}

# Reference file -> test modules; (file, function) entries override the file's.
TESTS = {
    "integer.py": ONEFLOW,
    ("integer.py", "_scale_and_zero_point"): ONEFLOW_TIES,
    ("integer.py", "round_half_away"): ONEFLOW_TIES,
    ("integer.py", "moving_update"): ONEFLOW_MOVING,
    ("integer.py", "valid_code_params"): [ROUNDING + "test_oneflow_zero_scale_channels",
                                          *ONEFLOW],
    "blocks.py": TORCHAO_BLOCKS,
    "formats.py": FORMATS,
    ("formats.py", "encode_int8"): MXINT8,
    ("formats.py", "decode_int8"): MXINT8,
    ("formats.py", "mx_scale_byte"): MX_SCALES,
    ("formats.py", "mx_multiplier"): MX_SCALES,
    ("formats.py", "nvfp4_scale_code"): NVFP4,
    ("formats.py", "nvfp4_multiplier"): NVFP4,
    ("formats.py", "nvfp4_block_factor"): NVFP4,
    "hist.py": CALIBRATION,
    ("hist.py", "linear_bin"): [ROUNDING + "test_histc_bins_at_edges", *CALIBRATION],
    "select.py": SELECTION,
    "primitives.py": ONEFLOW + TORCHAO_BLOCKS,
    ("primitives.py", "_trunc_cpu"): ONEFLOW + CALIBRATION,
    ("primitives.py", "_mantissa_bits_any"): ONEFLOW + FORMATS,
}


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str          # under numba_quant/_reference/
    function: str      # the function whose body holds the snippet
    find: str          # exact source text, found exactly once in the file
    replace: str
    reason: str        # the careless edit it stands for
    equivalent: str = ""   # why it gives the same bits for every input ("" : it does not)


M = Mutant
MUTANTS = [
    # ------------------------------------------------------------------ OneFlow (integer.py)
    M("oneflow_affine_scale_reciprocal", "integer.py", "_scale_and_zero_point",
      "scale = (hi - lo) / affine_levels(lo, bits)",
      "scale = (hi - lo) * (type(lo)(1) / affine_levels(lo, bits))",
      "affine scale: range times 1/levels instead of range / levels"),
    M("oneflow_symmetric_scale_reciprocal", "integer.py", "_scale_and_zero_point",
      "scale = amax / symmetric_levels(lo, bits)",
      "scale = amax * (type(lo)(1) / symmetric_levels(lo, bits))",
      "symmetric scale: amax times 1/levels instead of amax / levels"),
    M("oneflow_zero_point_half_away", "integer.py", "_scale_and_zero_point",
      "-(round_half_away(ratio) if ties_away else rint(ratio))",
      "-(round_half_away(ratio) if ties_away else round_half_away(ratio))",
      "min_max_observer's zero point rounded half away instead of half to even"),
    M("oneflow_zero_bound_sign", "integer.py", "_scale_and_zero_point",
      "    lo = lo + zero\n    hi = hi + zero\n",
      "",
      "the zero bounds' sign not normalised (-0.0 kept)"),
    M("oneflow_half_away_ties_down", "integer.py", "round_half_away",
      "if abs(v - t) >= type(v)(0.5):",
      "if abs(v - t) > type(v)(0.5):",
      "moving-average zero point: ties toward zero instead of away (>= made >)"),
    M("oneflow_floor_log2_tie_boundary", "integer.py", "floor_log2",
      "if t <= math.ldexp(0.5, spacing_exponent):",
      "if t < math.ldexp(0.5, spacing_exponent):",
      "floor_log2: a logarithm exactly half a spacing below e rounds down (<= made <)",
      equivalent="the two differ only where the computed t = -log1p(m - 1) / ln 2 equals the "
                 "threshold 2**(s - 1) exactly; t depends on the significand m alone and "
                 "exceeds every threshold unless 1 - m is tiny, so all such m (float32 and "
                 "float64) times a representative exponent of every threshold class were "
                 "compared, compiled, in tools/check_mutant_equivalence.py: no input hits "
                 "equality"),
    M("oneflow_floor_log2_spacing", "integer.py", "floor_log2",
      "        spacing_exponent -= 1\n",
      "        pass\n",
      "floor_log2: the halved spacing just below a power-of-two exponent forgotten"),
    M("oneflow_cambricon_shift_off_by_one", "integer.py", "cambricon_shift",
      "floor_log2(amax) - (bits - 2)",
      "floor_log2(amax) - (bits - 1)",
      "cambricon shift: bits - 1 instead of bits - 2"),
    M("oneflow_cambricon_step_rint", "integer.py", "code_params",
      "shift = max(trunc(scale), type(scale)(-2048))",
      "shift = max(rint(scale), type(scale)(-2048))",
      "cambricon step 2**shift: a given shift rounded instead of truncated"),
    M("oneflow_divide_by_reciprocal", "integer.py", "quantize_value",
      "v = x / divisor",
      "v = x * (type(x)(1) / divisor)",
      "quantization: x times 1/scale instead of x / scale"),
    M("oneflow_code_half_away", "integer.py", "quantize_value",
      "q = rint(v)",
      "q = round_half_away(v)",
      "quantization: codes rounded half away instead of half to even"),
    M("oneflow_no_upper_clamp", "integer.py", "quantize_value",
      "    q = highest if q > highest else q\n",
      "",
      "quantization: the clamp to the highest code left out"),
    M("oneflow_narrow_range", "integer.py", "code_range",
      "return -highest - type(like)(1), highest",
      "return -highest, highest",
      "symmetric codes: narrow range [-(2**(b-1)-1), ...] instead of [-2**(b-1), ...]"),
    M("oneflow_dequantize_distributed", "integer.py", "dequantize_value",
      "return (q - offset) * divisor",
      "return q * divisor - offset * divisor",
      "dequantization: (q - zp) * s distributed into q*s - zp*s (two roundings)"),
    M("oneflow_momentum_float64", "integer.py", "moving_update",
      "take = type(moving)(np.float32(1) - momentum)",
      "take = type(moving)(1) - type(moving)(momentum)",
      "moving average: 1 - momentum in the state's type instead of float32"),
    M("oneflow_moving_sum_order", "integer.py", "moving_update",
      "return mul_rn(moving, keep) + mul_rn(new, take)",
      "return mul_rn(new, take) + mul_rn(moving, keep)",
      "moving average: the two products added in the other order",
      equivalent="IEEE 754 addition is commutative: a + b and b + a are the same correctly "
                 "rounded value for all a, b (NaN-ness too); the two products are rounded "
                 "separately in both orders, so every state gets the same bits"),
    M("oneflow_zero_scale_rejected", "integer.py", "valid_code_params",
      "return scale >= 0",
      "return scale > 0",
      "a zero scale (a zero-range slice) rejected by the check of given parameters"),
    # ------------------------------------------------------------------ torchao blocks
    M("blocks_asym_scale_reciprocal", "blocks.py", "block_qparams",
      "scale = round_to(width / type(lo)(quant_max - quant_min), afmt)",
      "scale = round_to(width * round_to(type(lo)(1) / type(lo)(quant_max - quant_min), afmt),"
      " afmt)",
      "asymmetric scale: width times 1/(qmax - qmin) instead of width / (qmax - qmin)"),
    M("blocks_zero_point_half_up", "blocks.py", "block_qparams",
      "zp = round_to(type(lo)(quant_min) - rint(ratio), afmt)",
      "zp = round_to(type(lo)(quant_min) - math.floor(ratio + 0.5), afmt)",
      "asymmetric zero point: round half up instead of half to even"),
    M("blocks_zero_point_no_clamp", "blocks.py", "block_qparams",
      "        zp = min(max(zp, type(lo)(quant_min)), type(lo)(quant_max))\n",
      "",
      "asymmetric zero point: the clamp to [quant_min, quant_max] left out"),
    M("blocks_asym_no_eps", "blocks.py", "block_qparams",
      "        scale = scale if scale > eps else eps\n        ratio",
      "        ratio",
      "asymmetric scale: the clamp at eps left out"),
    M("blocks_sym_divisor_floor", "blocks.py", "block_qparams",
      "type(lo)((quant_max - quant_min) / 2)",
      "type(lo)((quant_max - quant_min) // 2)",
      "symmetric divisor: (qmax - qmin) // 2 (127) instead of / 2 (127.5)"),
    M("blocks_sym_amax_tie", "blocks.py", "block_qparams",
      "amax = -min_neg if -min_neg > max_pos else max_pos",
      "amax = -min_neg if -min_neg >= max_pos else max_pos",
      "symmetric amax: >= instead of >",
      equivalent="the two operands differ only when they compare unequal; at equality both "
                 "are the same value except -0.0 vs +0.0 (min_neg = +0.0 so -min_neg = "
                 "-0.0, max_pos = +0.0), where the scale 0 / d is +-0.0, not above eps, "
                 "and becomes eps in both versions"),
    M("blocks_reciprocal_not_rounded", "blocks.py", "reciprocal",
      "return round_to(type(scale)(1) / scale, sfmt)",
      "return type(scale)(1) / scale",
      "1/scale not rounded to the scale's format (bfloat16/float16 scales)"),
    M("blocks_code_half_up", "blocks.py", "code_of",
      "q = round_to(rint(p) + zp, pfmt)",
      "q = round_to(np.floor(p + type(p)(0.5)) + zp, pfmt)",
      "codes: round half up instead of half to even"),
    M("blocks_code_no_low_clamp", "blocks.py", "code_of",
      "code = q if q > lo else lo  # a NaN product gives quant_min",
      "code = q",
      "codes: the clamp to quant_min left out"),
    M("blocks_code_bf16_one_rounding", "blocks.py", "code_of",
      "p = round_to(v * recip, pfmt)",
      "p = v * recip",
      "codes (bfloat16/float16 path): the product not rounded to the product's format "
      "before rint"),
    M("blocks_dequant_one_rounding", "blocks.py", "value_of",
      "return round_to(round_to(diff * scale, pfmt), ofmt)",
      "return round_to(diff * scale, ofmt)",
      "dequantization: the product not rounded to the product's format first",
      equivalent="the callers (blocks.dequantize_affine) pass ofmt = fmt(output kind, T) and "
                 "pfmt = fmt(promote(output kind, scale kind), T): with T float32 pfmt is "
                 "NATIVE (the product is already one float32 rounding) or, with a "
                 "bfloat16/float16 scale and output alike, the same format as ofmt (two "
                 "roundings to one format are one); with T float64 the promoted kind is "
                 "float64, pfmt NATIVE.  So round_to(., pfmt) never changes the product"),
    M("blocks_bf16_half_up", "blocks.py", "_round_bf16_any",
      "b = b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))",
      "b = b + np.uint32(0x8000)",
      "bfloat16 rounding: ties up instead of to even"),
    M("blocks_f16_subnormal_quantum", "blocks.py", "round_to",
      "return _round_generic(v, 11, -24, 65504.0)",
      "return _round_generic(v, 11, -25, 65504.0)",
      "float16 rounding: smallest quantum 2**-25 instead of 2**-24"),
    M("blocks_f16_widen_bias", "blocks.py", "f16_bits_to_f32",
      "((e + np.uint32(112)) << np.uint32(23))",
      "((e + np.uint32(111)) << np.uint32(23))",
      "float16 input widened with bias 111 instead of 112"),
    # ------------------------------------------------------------------ element casts
    M("cast_ties_down", "formats.py", "encode_with",
      "q = (sig + ((one << (shift - 1)) - 1) + ((sig >> shift) & 1)) >> shift",
      "q = (sig + ((one << (shift - 1)) - 1)) >> shift",
      "element cast: ties toward zero instead of to even"),
    M("cast_ties_away", "formats.py", "encode_with",
      "q = (sig + ((one << (shift - 1)) - 1) + ((sig >> shift) & 1)) >> shift",
      "q = (sig + (one << (shift - 1))) >> shift",
      "element cast: ties away from zero instead of to even"),
    M("cast_emin_off_by_one", "formats.py", "encode_with",
      "emin = 1 - bias",
      "emin = -bias",
      "element cast: smallest normal exponent -bias instead of 1 - bias"),
    M("cast_overflow_at_max", "formats.py", "encode_with",
      "res = (over_code if (inf_or_nan or code > max_code) else code) | sign_bit",
      "res = (over_code if (inf_or_nan or code >= max_code) else code) | sign_bit",
      "element cast: the largest finite code itself treated as overflow"),
    M("decode_subnormal_exponent", "formats.py", "decode_p",
      "pow2_f32(1 - bias - mbits)",
      "pow2_f32(-bias - mbits)",
      "decoding: subnormal codes scaled by 2**(-bias-mbits), off by one"),
    M("pow2_subnormal_bound", "formats.py", "pow2_f32",
      "if k < -126:",
      "if k < -127:",
      "2**k: 2**-127 built from the normal formula (gives 0)"),
    # ------------------------------------------------------------------ MX
    M("mx_int8_trunc", "formats.py", "encode_int8",
      "w = rint(v * np.float32(64.0))",
      "w = np.trunc(v * np.float32(64.0))",
      "MXINT8 codes truncated instead of rounded to even"),
    M("mx_int8_asymmetric_clamp", "formats.py", "encode_int8",
      "elif w < np.float32(-127.0):\n        w = np.float32(-127.0)",
      "elif w < np.float32(-128.0):\n        w = np.float32(-128.0)",
      "MXINT8 codes clamped to [-128, 127] instead of [-127, 127]",
      equivalent="encode_int8's only caller, int8_element, first clamps w to [-lim, lim] "
                 "with lim = 127/64 (MXINT8's Format.max) or gives it s = 0 (lim = inf, "
                 "NaN blocks: w is 0 or NaN); w * 64 is then exact and >= -127, so "
                 "rint(w * 64) < -127 never holds and neither lower clamp bites (NaN "
                 "returns 0 before them); checked for every float32 v with |v| in "
                 "[2**-7, 2**13), NaN and inf in tools/check_mutant_equivalence.py"),
    M("mx_int8_decode_divide", "formats.py", "decode_int8",
      "return np.float32(code) * np.float32(1.0 / 64.0)",
      "return np.float32(code) / np.float32(64.0)",
      "MXINT8 decoding: divide by 64 instead of multiply by 1/64",
      equivalent="1/64 = 2**-6 is exact in float32 and code is an integer in [-128, 127]: "
                 "code / 64 and code * 2**-6 are the same exact float32 (no rounding in "
                 "either); checked for all 256 codes in tools/check_mutant_equivalence.py"),
    M("mx_floor_bias", "formats.py", "mx_scale_byte",
      "e = (bits >> 23) - 127 - emax",
      "e = (bits >> 23) - 126 - emax",
      "MX scale: exponent bias 126 instead of 127"),
    M("mx_ceil_always", "formats.py", "mx_scale_byte",
      "if mode == CEIL and (bits & 0x7FFFFF) != 0:",
      "if mode == CEIL:",
      "MX CEIL: adds one even when amax is a power of two"),
    M("mx_even_round_position", "formats.py", "mx_scale_byte",
      "bits = (bits + (np.int64(1) << (22 - mbits))) & ~np.int64(0x7FFFFF)",
      "bits = (bits + (np.int64(1) << (23 - mbits))) & ~np.int64(0x7FFFFF)",
      "MX EVEN: amax rounded at the wrong bit (23 - mbits instead of 22 - mbits)"),
    M("mx_clamp_127", "formats.py", "mx_scale_byte",
      "    elif e > 128:\n        e = 128\n    return e + 127",
      "    elif e > 127:\n        e = 127\n    return e + 127",
      "MX FLOOR/CEIL/EVEN: exponent clamped at 127 instead of 128"),
    M("mx_rceil_log2_float64", "formats.py", "mx_scale_byte",
      "lg = np.float32(math.log2(np.float64(ratio)))",
      "lg = math.log2(np.float64(ratio))",
      "MX RCEIL: log2 kept in float64 instead of rounded to float32"),
    M("mx_rceil_ratio_reciprocal", "formats.py", "mx_scale_byte",
      "ratio = np.float32(amax / np.float32(elem_max))",
      "ratio = np.float32(amax * np.float32(1.0 / elem_max))",
      "MX RCEIL: amax times 1/max instead of amax / max"),
    M("mx_multiplier_byte0", "formats.py", "mx_multiplier",
      "    if e < -126:\n        e = -126\n    return pow2_f32(-e)",
      "    return pow2_f32(-e)",
      "MX FLOOR/CEIL/EVEN: byte 0 divides by 2**-127 (torchao divides by 2**-126)"),
    M("mx_rceil_byte0", "formats.py", "mx_multiplier",
      "        if byte == 0:\n            return np.float32(1.0)\n",
      "",
      "MX RCEIL: byte 0 multiplies by 2**127 (torchao multiplies by 1.0)"),
    M("element_no_upper_clamp", "formats.py", "element_code",
      "    if w > lim:\n        w = lim\n    elif w < -lim:\n        w = -lim\n    w = v if",
      "    if w < -lim:\n        w = -lim\n    w = v if",
      "scaled elements: the clamp at +max left out (the cast saturates)",
      equivalent="every caller passes lim = the element format's largest finite value "
                 "(Format.max) or inf (then w = v anyway), and the cast saturates: a "
                 "finite w > max rounds to nearest (monotone) to a code >= max_code, and "
                 "+inf overflows, both giving max_code as w = lim does (the saturating "
                 "cast equals ml_dtypes' on all 2**32 float32, tools/"
                 "check_float_conversions.py --saturate); compiled original and mutant "
                 "compared on all 5.1e9 float32 w > max of the five formats by "
                 "tools/check_mutant_equivalence.py"),
    M("element_scale_reciprocal", "formats.py", "element_code",
      "    w = v * s\n    if w > lim:\n        w = lim\n    elif w < -lim:\n        w = -lim\n"
      "    w = v if",
      "    w = v / (np.float32(1) / s)\n    if w > lim:\n        w = lim\n    elif w < -lim:\n"
      "        w = -lim\n    w = v if",
      "scaled elements: v / (1/s) instead of v * s"),
    M("fp8_dequant_reciprocal", "formats.py", "element_value",
      "return d / f if divide else d * f",
      "return d * (np.float32(1) / f) if divide else d * f",
      "FP8 dequantization: times 1/scale (TE's scale_inv) instead of / scale"),
    # ------------------------------------------------------------------ NVFP4
    M("nvfp4_scale_times_inverse", "formats.py", "nvfp4_scale_code",
      "bs = np.float32(amax / np.float32(NVFP4_ELEM_MAX)) / per_tensor_scale",
      "bs = np.float32(amax / np.float32(NVFP4_ELEM_MAX)) * np.float32(np.float32(1) / "
      "per_tensor_scale)",
      "NVFP4 block scale: float32(amax/6) * float32(1/pts) instead of / pts (issue 19)"),
    M("nvfp4_scale_one_rounding", "formats.py", "nvfp4_scale_code",
      "bs = np.float32(amax / np.float32(NVFP4_ELEM_MAX)) / per_tensor_scale",
      "bs = np.float32(np.float64(amax) / 6.0 / np.float64(per_tensor_scale))",
      "NVFP4 block scale: amax / 6 / pts in float64, rounded once"),
    M("nvfp4_scale_sixth", "formats.py", "nvfp4_scale_code",
      "bs = np.float32(amax / np.float32(NVFP4_ELEM_MAX)) / per_tensor_scale",
      "bs = np.float32(amax * np.float32(1.0 / NVFP4_ELEM_MAX)) / per_tensor_scale",
      "NVFP4 block scale: amax times float32(1/6) instead of amax / 6"),
    M("nvfp4_scale_no_floor", "formats.py", "nvfp4_scale_code",
      "    if bs < np.float32(E4M3_MIN_NORMAL):\n        bs = np.float32(E4M3_MIN_NORMAL)\n"
      "    elif bs > np.float32(E4M3_MAX):",
      "    if bs > np.float32(E4M3_MAX):",
      "NVFP4 block scale: no clamp at 2**-6 (subnormal block scales)"),
    M("nvfp4_scale_not_saturating", "formats.py", "nvfp4_scale_code",
      "return encode_f32(bs, np.int64(E4M3FN), np.bool_(True))",
      "return encode_f32(bs, np.int64(E4M3FN), np.bool_(False))",
      "NVFP4 block scale: cast without saturation",
      equivalent="bs is clamped to [2**-6, 448] just before (a NaN stays NaN), and 448 is "
                 "E4M3FN's largest finite value: no input reaches the overflow branch, "
                 "where alone `saturate` matters; checked for every float32 bs in "
                 "[2**-6, 448] and NaN in tools/check_mutant_equivalence.py"),
    M("nvfp4_multiplier_reciprocal", "formats.py", "nvfp4_multiplier",
      "return np.float32(inv_per_tensor / decode_f32(np.int64(scale_code), np.int64(E4M3FN)))",
      "return np.float32(inv_per_tensor * np.float32(np.float32(1) / "
      "decode_f32(np.int64(scale_code), np.int64(E4M3FN))))",
      "NVFP4 element multiplier: (1/pts) * (1/e4m3) instead of (1/pts) / e4m3"),
    M("nvfp4_factor_float64", "formats.py", "nvfp4_block_factor",
      "return np.float32(per_tensor_scale * decode_f32(np.int64(scale_code), np.int64(E4M3FN)))",
      "return np.float32(np.float64(per_tensor_scale) * np.float64(decode_f32(np.int64("
      "scale_code), np.int64(E4M3FN))))",
      "NVFP4 dequantization factor: pts * e4m3 in float64, then rounded to float32",
      equivalent="pts and e4m3(scale) are float32 (24 and 4 significant bits): their exact "
                 "product has at most 28 significant bits and is exact in float64, so "
                 "rounding it once to float32 is the float32 product (the exponent range "
                 "of float64 also holds it, so no early overflow or underflow)"),
    # ------------------------------------------------------------------ FP8
    M("fp8_scale_reciprocal", "formats.py", "fp8_scale",
      "s = np.float32(np.float32(fp8_max) / amax)",
      "s = np.float32(np.float32(fp8_max) * np.float32(np.float32(1) / amax))",
      "FP8 scale: max * (1/amax) instead of max / amax"),
    M("fp8_scale_no_flt_max", "formats.py", "fp8_scale",
      "    if s == np.inf:\n        return np.float32(FLT_MAX)\n",
      "",
      "FP8 scale: an infinite quotient kept instead of FLT_MAX"),
    # ------------------------------------------------------------------ histograms
    M("hist_pow2_trunc", "hist.py", "pow2_bin",
      "floor = t - type(p)(1) if p < t else t",
      "floor = t",
      "power-of-two bins: trunc instead of floor for negative values"),
    M("hist_exponent_off_by_one", "hist.py", "grid_exponent",
      "return math.frexp(amax)[1]",
      "return math.frexp(amax)[1] + 1",
      "power-of-two grid: one exponent too wide"),
    M("hist_coarser_round_up", "hist.py", "coarser_bin",
      "return (k + half) >> 1",
      "return (k + half + 1) >> 1",
      "merging grids: bin k sent to ceil((k + half) / 2)"),
    M("hist_linear_order", "hist.py", "linear_bin",
      "q = trunc(((x - lo) * type(x)(bins)) / (hi - lo))",
      "q = trunc((x - lo) * (type(x)(bins) / (hi - lo)))",
      "histc bins: (x - lo) * (bins / width) instead of ((x - lo) * bins) / width"),
    M("hist_linear_top_open", "hist.py", "linear_bin",
      "return k if (x >= lo) & (x <= hi) else np.int32(-1)",
      "return k if (x >= lo) & (x < hi) else np.int32(-1)",
      "histc bins: x == hi dropped (<= made <)"),
    # ------------------------------------------------------------------ range selection
    M("percentile_strict", "select.py", "percentile_index",
      "if cdf >= fraction:",
      "if cdf > fraction:",
      "percentile: the first bin where the cdf exceeds p instead of reaches it"),
    M("percentile_divide_late", "select.py", "percentile_index",
      "        cdf += np.float64(counts[k]) / denominator\n",
      "        cdf = np.float64(np.sum(counts[:k + 1])) / denominator\n",
      "percentile: cumulative count divided once instead of summing count/total"),
    M("pairwise_sum_sequential", "select.py", "_block_sum",
      "r = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))",
      "r = r0 + r1 + r2 + r3 + r4 + r5 + r6 + r7",
      "numpy's pairwise sum: the eight accumulators added left to right"),
    M("rel_entr_no_log1p", "select.py", "rel_entr",
      "return x * math.log1p((x - y) / y)",
      "return x * math.log(ratio)",
      "rel_entr near x == y: log(x/y) instead of log1p((x - y)/y)"),
    M("entropy_first_minimum", "select.py", "entropy_index",
      "if chosen < 0 or s < chosen_score:",
      "if chosen < 0 or s <= chosen_score:",
      "entropy: among equal exact scores the first candidate wins instead of the last"),
    M("mse_last_minimum", "select.py", "mse_index",
      "if best < 0 or mean < best_score:",
      "if best < 0 or mean <= best_score:",
      "mse: among equal scores the last candidate wins instead of the first"),
    M("mse_centers_formula", "select.py", "mse_inputs",
      "centers[k] = (edges[k] + edges[k + 1]) / two",
      "centers[k] = edges[k] + (edges[k + 1] - edges[k]) / two",
      "mse: bin centres as lo + width/2 instead of (lo + hi) / 2"),
    M("mse_bound_off_by_one", "select.py", "mse_inputs",
      "bound = np.float32(2.0 ** (num_bits - 1 + (1 if unsigned else 0)) - 1.0)",
      "bound = np.float32(2.0 ** (num_bits - 1 + (1 if unsigned else 0)))",
      "mse: largest code 2**(b-1) instead of 2**(b-1) - 1"),
    M("l2_total_float32", "select.py", "l2_error",
      "        total += norm\n",
      "        total = np.float64(np.float32(total + norm))\n",
      "L2 error: the sum over bins kept in float32 instead of float64"),
    M("l2_stop_on_equal", "select.py", "l2_search",
      "if norm > norm_min:",
      "if norm >= norm_min:",
      "L2 search: stops when the error does not fall instead of when it grows"),
    M("l2_new_max_off_by_one", "select.py", "l2_search",
      "new_max = np.float32(min_val + np.float32(width * np.float32(end + 1)))",
      "new_max = np.float32(min_val + np.float32(width * np.float32(end)))",
      "L2 search: new max at the left edge of the last kept bin"),
    M("l2_floor_divide_tie", "select.py", "_floor_divide32",
      "if np.float32(div - result) > np.float32(0.5):",
      "if np.float32(div - result) >= np.float32(0.5):",
      "torch's floor division: the half-way correction at >= instead of >",
      equivalent="the two differ only where the float32 quotient (a - fmod(a, b)) / b lies "
                 "exactly half-way between integers. a - fmod(a, b) is n * b for the integer "
                 "n = trunc(a / b), and rounding it and the division moves the quotient at "
                 "most |n| * 2**-23 from n, so a half-way quotient needs |n| >= 2**22. "
                 "l2_error, the only caller, clamps the result to [0, dst_bins - 1] with "
                 "dst_bins <= 2**16 (quantization_bit <= 16): both results clamp alike"),
    # ------------------------------------------------------------------ primitives
    M("rint_half_up", "primitives.py", "_rint_cpu",
      "return lambda v: np.rint(v)",
      "return lambda v: np.floor(v + type(v)(0.5))",
      "rint (CPU): floor(v + 0.5) instead of round half to even"),
    M("trunc_is_floor", "primitives.py", "_trunc_cpu",
      "return lambda v: np.trunc(v)",
      "return lambda v: np.floor(v)",
      "trunc (CPU): floor instead of toward zero"),
    M("mantissa_bits_off_by_one", "primitives.py", "_mantissa_bits_any",
      "bits = 24 if v == types.float32 else 53",
      "bits = 24 if v == types.float32 else 52",
      "float64 significand taken as 52 bits (the stored field) instead of 53"),
]


# --------------------------------------------------------------------------- helpers
def tests_for(m):
    return TESTS.get((m.file, m.function), TESTS[m.file])


def _function_spans(source):
    """{function name: (first line, last line)} of every def in ``source`` (any depth)."""
    spans = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            spans.setdefault(node.name, (node.lineno, node.end_lineno))
    return spans


def check_mutant(m, root=ROOT):
    """The mutated source of ``m``'s file; raises ValueError if the snippet is not found
    exactly once, or not inside the named function."""
    path = os.path.join(root, REF, m.file)
    with open(path) as f:
        source = f.read()
    n = source.count(m.find)
    if n != 1:
        raise ValueError(f"mutant {m.name}: snippet found {n} times in {REF}/{m.file} "
                         f"(expected exactly once): {m.find!r}")
    spans = _function_spans(source)
    if m.function not in spans:
        raise ValueError(f"mutant {m.name}: no function {m.function!r} in {REF}/{m.file}")
    line = source[:source.index(m.find)].count("\n") + 1
    first, last = spans[m.function]
    if not first <= line <= last:
        raise ValueError(f"mutant {m.name}: snippet at line {line} is outside "
                         f"{m.function} (lines {first}-{last})")
    mutated = source.replace(m.find, m.replace)
    try:
        ast.parse(mutated)
    except SyntaxError as e:
        raise ValueError(f"mutant {m.name}: the mutated file is not valid Python: {e}") from e
    return source, mutated


def make_copy(dest):
    """A copy of the repository's package, tests and settings under ``dest``."""
    for name in COPIED:
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif os.path.exists(src):
            shutil.copy2(src, os.path.join(dest, name))
    return dest


def pytest_command(modules, gpu):
    marker = "not cluster" if gpu else "not gpu and not cluster"
    # addopts cleared: the project's own adds -n (xdist) and the doctests of the package
    return [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:xdist",
            "-p", "no:cacheprovider", "-x", "-q", "-m", marker, *modules]


def _first_failure(output):
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line[:200]
    return ""


def run_mutant(m, copy_root, gpu, timeout, baseline=False, tests=None):
    """Apply ``m`` in ``copy_root``, run its tests (``tests``, or the format's), restore;
    a result dict."""
    path = os.path.join(copy_root, REF, m.file)
    original, mutated = check_mutant(m, copy_root)
    modules = [t for t in (tests or tests_for(m))
               if os.path.exists(os.path.join(copy_root, t.split("::")[0]))]
    cache = tempfile.mkdtemp(prefix="nq-mutant-cache-")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    start = time.time()
    try:
        if not baseline:
            with open(path, "w") as f:
                f.write(mutated)
        try:
            gpu = gpu or (m.file, m.function) in GPU_ONLY
            proc = subprocess.run(pytest_command(modules, gpu), cwd=copy_root, env=env,
                                  capture_output=True, text=True, timeout=timeout)
            rc, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            rc, output = None, (e.stdout or b"").decode(errors="replace") if isinstance(
                e.stdout, bytes) else (e.stdout or "")
    finally:
        with open(path, "w") as f:
            f.write(original)
        shutil.rmtree(cache, ignore_errors=True)
    seconds = round(time.time() - start, 1)
    tail = output.strip().splitlines()[-1] if output.strip() else ""
    if rc == 0:
        status = "survived"
    elif rc == 1:
        status = "killed"
    elif rc is None:
        status = "timeout"
    elif rc == 5:
        status = "no tests"
    else:
        status = "error"   # collection or import failed: the mutant breaks the package
    return {"name": m.name, "status": status, "seconds": seconds,
            "failure": _first_failure(output), "summary": tail[:200], "modules": modules,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")}


def _imports_copy(copy_root):
    """Whether ``python -m`` from the copy imports the copy's numba_quant."""
    out = subprocess.run([sys.executable, "-c", "import numba_quant, os; "
                          "print(os.path.realpath(numba_quant.__file__))"],
                         cwd=copy_root, capture_output=True, text=True)
    return out.stdout.strip().startswith(os.path.realpath(copy_root))


# --------------------------------------------------------------------------- report
def render_report(results, command):
    by_name = {m.name: m for m in MUTANTS}
    rows = []
    counts = {}
    for m in MUTANTS:
        r = results.get(m.name)
        if m.equivalent and (r is None or r.get("status") in ("equivalent", "survived")):
            status = "equivalent"   # (a run of it can only survive)
        elif r is None:
            status = "not run"
        else:
            status = r["status"]
        counts[status] = counts.get(status, 0) + 1
        detail = ""
        if status == "killed" and r:
            detail = re.sub(r"\s+-\s.*$", "", r["failure"].replace("FAILED ", ""))
        elif status == "equivalent":
            detail = "equivalent: " + m.equivalent
        elif r:
            detail = r.get("summary", "")
        secs = f"{r['seconds']:.0f}" if r and "seconds" in r else ""
        earlier = ", ".join(f"{h['status']} ({h['date']})" for h in (r or {}).get("history", []))
        rows.append(f"| {m.name} | {m.file}:{m.function} | {status} | {secs} | "
                    f"{m.reason} | {detail.replace('|', '/')} | {earlier} |")
    surviving = [n for n in by_name if results.get(n, {}).get("status") == "survived"
                 and not by_name[n].equivalent]
    lines = ["# Mutants of numba_quant/_reference", "",
             f"Command: `{command}`  ",
             f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             "| status | mutants |", "| --- | --- |"]
    for status in ("killed", "survived", "equivalent", "error", "timeout", "no tests",
                   "not run"):
        if counts.get(status):
            lines.append(f"| {status} | {counts[status]} |")
    lines.append(f"| total | {len(MUTANTS)} |")
    lines += ["", "Surviving: " + (", ".join(surviving) if surviving else "none"), "",
              "| mutant | where | status | s | the careless edit | killed by / why equivalent "
              "| earlier runs |",
              "| --- | --- | --- | --- | --- | --- | --- |", *rows, ""]
    return "\n".join(lines)


def _stop(signum, frame):
    # SIGTERM as an exception, so that the temporary copies and caches are removed
    raise SystemExit(f"stopped by signal {signum}")


def main(argv=None):
    signal.signal(signal.SIGTERM, _stop)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only these mutants (names or shell patterns; repeatable), "
                         "in the order given")
    ap.add_argument("--jobs", type=int, default=1,
                    help="mutants run at once, each in its own copy (default 1: the "
                         "machine is shared)")
    ap.add_argument("--report", metavar="FILE", help="write the summary as markdown")
    ap.add_argument("--state", metavar="FILE",
                    help="JSON file of outcomes kept across runs (read, updated, written)")
    ap.add_argument("--gpu", action="store_true",
                    help="also run the CUDA simulator tests (marker gpu)")
    ap.add_argument("--run-equivalent", action="store_true",
                    help="also run the mutants marked equivalent")
    ap.add_argument("--baseline", action="store_true",
                    help="run each selected mutant's tests on the unmutated copy instead "
                         "(all must pass)")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: write --report from --state")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per mutant")
    ap.add_argument("--tests", action="append", default=[], metavar="MODULE",
                    help="run these test modules instead of the format's (a quick check "
                         "of a new test; only kills are kept in --state)")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs must be at least 1, got {args.jobs}")

    names = [m.name for m in MUTANTS]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SystemExit(f"duplicate mutant names: {sorted(dupes)}")
    for m in MUTANTS:      # every snippet must still match the working tree
        check_mutant(m)

    if args.report_only:
        if not (args.state and args.report):
            ap.error("--report-only needs --state and --report")
        with open(args.state) as f:
            results = json.load(f)
        with open(args.report, "w") as f:
            f.write(render_report(results, "python tools/mutate.py --state "
                                  f"{args.state} (runs merged)"))
        return 0

    if args.list:
        for m in MUTANTS:
            eq = "  [equivalent]" if m.equivalent else ""
            print(f"{m.name:38s} {m.file}:{m.function}{eq}\n    {m.reason}")
        print(f"{len(MUTANTS)} mutants, {sum(bool(m.equivalent) for m in MUTANTS)} "
              "marked equivalent")
        return 0

    if args.only:   # in the order of the patterns given
        chosen = []
        for pattern in args.only:
            chosen += [m for m in MUTANTS
                       if fnmatch.fnmatchcase(m.name, pattern) and m not in chosen]
    else:
        chosen = list(MUTANTS)
    if args.only and not chosen:
        ap.error(f"--only {args.only}: no mutant of that name (see --list)")
    to_run = [m for m in chosen if args.run_equivalent or args.baseline or not m.equivalent]

    results = {}
    if args.state and os.path.exists(args.state):
        with open(args.state) as f:
            results = json.load(f)

    copies = [make_copy(tempfile.mkdtemp(prefix="nq-mutants-")) for _ in
              range(min(args.jobs, max(1, len(to_run))))]
    try:
        if not _imports_copy(copies[0]):
            raise SystemExit("python run from the temporary copy does not import the copy's "
                             "numba_quant; the mutants would not be tested")
        free = list(copies)

        def work(m):
            root = free.pop()
            try:
                return run_mutant(m, root, args.gpu, args.timeout, args.baseline,
                                  args.tests)
            finally:
                free.append(root)

        print(f"{len(to_run)} mutants to run ({'baseline, ' if args.baseline else ''}"
              f"{args.jobs} at a time)", flush=True)
        if len(copies) == 1:   # in this thread: a signal stops the run at once
            outcomes = map(work, to_run)
        else:
            pool = ThreadPoolExecutor(max_workers=len(copies))
            outcomes = pool.map(work, to_run)
        try:
            for m, r in zip(to_run, outcomes):
                print(f"{r['status']:9s} {m.name:38s} {r['seconds']:7.1f}s  "
                      f"{r['failure'] or r['summary']}", flush=True)
                if args.baseline:
                    if r["status"] != "survived":
                        print(f"  BASELINE FAILS for {m.name}'s modules", flush=True)
                    continue
                if r["status"] != "killed" and args.tests:
                    continue   # (other modules than the format's: only a kill counts)
                old = results.get(m.name)
                if old and "status" in old and old["status"] != "equivalent":
                    earlier = {k: v for k, v in old.items() if k != "history"}
                    r["history"] = old.get("history", []) + [earlier]
                results[m.name] = r
                if args.state:   # kept after each mutant: a run cut short loses none
                    with open(args.state, "w") as f:
                        json.dump(results, f, indent=1, sort_keys=True)
        finally:
            if len(copies) > 1:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        for c in copies:
            shutil.rmtree(c, ignore_errors=True)

    for m in chosen:
        if m.equivalent and not args.run_equivalent:
            results.setdefault(m.name, {"name": m.name, "status": "equivalent"})
    if args.state:
        with open(args.state, "w") as f:
            json.dump(results, f, indent=1, sort_keys=True)
    command = "python tools/mutate.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = render_report(results, command)
    counts = {}
    for m in MUTANTS:
        s = results.get(m.name, {}).get("status", "equivalent" if m.equivalent else "not run")
        s = "equivalent" if m.equivalent and s == "survived" else s
        counts[s] = counts.get(s, 0) + 1
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    surviving = [m.name for m in MUTANTS if results.get(m.name, {}).get("status") == "survived"
                 and not m.equivalent]
    print("surviving: " + (", ".join(surviving) if surviving else "none"))
    if args.report:
        with open(args.report, "w") as f:
            f.write(report)
    return 1 if surviving else 0


if __name__ == "__main__":
    sys.exit(main())
