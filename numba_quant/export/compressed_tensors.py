"""compressed-tensors' data-free schemes: the arithmetic, the tensors, the config.

What llmcompressor 0.14 (compressed-tensors 0.19) computes for ``QuantizationModifier(
targets="Linear", scheme=NAME)`` without calibration data, run on the CPU, restated
here step by step with the rounding of every step:

* the observer ("memoryless_minmax") takes each group's minimum and maximum in the
  weight's dtype, widened to include 0;
* the parameter arithmetic runs in the weight's dtype: for a bfloat16 model every
  operation (a float32 operation in torch's CPU kernels) is rounded to bfloat16;
* quantization divides (``x / scale``, never a multiplication by a reciprocal), in the
  weight's dtype for the integer and FP8 schemes, in float32 for NVFP4 (its scale is a
  float32 quotient by the global scale), adds the zero point (0 for symmetric schemes,
  which turns -0.0 into +0.0), then clamps, then rounds (integers: half to even;
  FP8/FP4: to nearest even, FP4 keeping the sign of a negative value that rounds to
  zero but not of a zero quotient);
* a scale of 0 (an all-zero group) becomes the scale dtype's epsilon (float32 2**-23,
  bfloat16 2**-7, E4M3 0.125) after the zero point was computed from it (an
  asymmetric all-zero group's zero point is NaN, stored as 0).

=============  =====================  ======================================================
scheme         format                 weights
=============  =====================  ======================================================
W8A16          pack-quantized         int8 symmetric, groups of 128: scale = amax / 127.5
W4A16          pack-quantized         int4 symmetric, groups of 128: scale = amax / 7.5
W4A16_ASYM     pack-quantized         int4 asymmetric, groups of 128: scale = (max-min)/15,
                                      zero point = clamp(-8 - min/scale), rounded
FP8_DYNAMIC    float-quantized        E4M3 per output channel: scale = amax / 448
FP8_BLOCK      float-quantized        E4M3 per 128x128 block: scale = amax / 448
NVFP4A16       nvfp4-pack-quantized   E2M1 in groups of 16: global scale 2688 / amax
                                      (shared by fused q/k/v and gate/up), group scale
                                      E4M3(global * (amax16 / 6))
MXFP4A16       mxfp4-pack-quantized   E2M1 in groups of 32, E8M0 scale from amax's
                                      significand rounded to one bit, minus 2
=============  =====================  ======================================================

Integer codes are packed densely into int32 words (``pack-quantized``): code + 2**(b-1),
element ``i`` of each run of 32 at bit ``i*b``; 4-bit zero points are packed the same way
along the output channels.  FP4 codes are packed two per byte, the even element in the
low nibble.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from numba_quant._dispatch import cpu
from numba_quant._host.storage import fp8_to_float32
from numba_quant.float8 import to_bits
from numba_quant.mx import to_mx
from numba_quant.packing import pack_int4

__all__ = ["SCHEMES", "Scheme", "scheme_named", "output_specs", "quantization_config",
           "recipe_yaml", "QuantizedTensor", "quantize_rows", "global_scale_of",
           "row_multiple", "check_weight", "FUSED_GROUPS", "COMPRESSED_TENSORS_VERSION"]

COMPRESSED_TENSORS_VERSION = "0.19.0"

# Parent modules whose children share NVFP4's global scale (llmcompressor's
# FUSED_LAYER_NAMES: what vLLM loads as one fused matrix).
FUSED_GROUPS = (("gate_proj", "up_proj"), ("q_proj", "k_proj", "v_proj"),
                ("q_a_proj", "kv_a_proj_with_mqa"), ("w1", "w3"))

_FP8_MAX = 448.0
_FP4_MAX = 6.0
_EPS = {"float32": np.float32(2.0 ** -23), "bfloat16": np.float32(2.0 ** -7)}


@dataclass(frozen=True)
class Scheme:
    """One preset: how weights are quantized and how they are stored."""
    name: str
    kind: str                  # "int", "fp8", "nvfp4", "mxfp4"
    num_bits: int
    symmetric: bool
    strategy: str              # "group", "channel", "block", "tensor_group"
    group_size: int | None
    block: tuple | None
    format: str
    scale_dtype: str | None = None        # as compressed-tensors writes it in the config
    input_activations: dict | None = field(default=None, hash=False, compare=False)

    def weights_config(self) -> dict:
        return {
            "actorder": None,
            "block_structure": list(self.block) if self.block else None,
            "dynamic": False,
            "group_size": self.group_size,
            "num_bits": self.num_bits,
            "observer": "memoryless_minmax",
            "observer_kwargs": {},
            "scale_dtype": self.scale_dtype,
            "strategy": self.strategy,
            "symmetric": self.symmetric,
            "type": "int" if self.kind == "int" else "float",
            "zp_dtype": None if self.symmetric else "torch.int8",
        }


def _dynamic_fp8(strategy, group_size=None):
    return {"actorder": None, "block_structure": None, "dynamic": True,
            "group_size": group_size, "num_bits": 8, "observer": None,
            "observer_kwargs": {}, "scale_dtype": None, "strategy": strategy,
            "symmetric": True, "type": "float", "zp_dtype": None}


SCHEMES = {
    "W8A16": Scheme("W8A16", "int", 8, True, "group", 128, None, "pack-quantized"),
    "W4A16": Scheme("W4A16", "int", 4, True, "group", 128, None, "pack-quantized"),
    "W4A16_ASYM": Scheme("W4A16_ASYM", "int", 4, False, "group", 128, None,
                         "pack-quantized"),
    "FP8_DYNAMIC": Scheme("FP8_DYNAMIC", "fp8", 8, True, "channel", None, None,
                          "float-quantized", input_activations=_dynamic_fp8("token")),
    "FP8_BLOCK": Scheme("FP8_BLOCK", "fp8", 8, True, "block", None, (128, 128),
                        "float-quantized", input_activations=_dynamic_fp8("group", 128)),
    "NVFP4A16": Scheme("NVFP4A16", "nvfp4", 4, True, "tensor_group", 16, None,
                       "nvfp4-pack-quantized", scale_dtype="torch.float8_e4m3fn"),
    "MXFP4A16": Scheme("MXFP4A16", "mxfp4", 4, True, "group", 32, None,
                       "mxfp4-pack-quantized", scale_dtype="torch.uint8"),
}


def scheme_named(name) -> Scheme:
    """The :class:`Scheme` of a preset name (case-insensitive), or a ValueError."""
    if isinstance(name, Scheme):
        return name
    key = str(name).upper()
    if key not in SCHEMES:
        raise ValueError(f"scheme={name!r}: unknown scheme; expected one of "
                         f"{', '.join(SCHEMES)}")
    return SCHEMES[key]


# ------------------------------------------------------------------ rounding helpers

def _round_bf16(a):
    """float32 values (finite) rounded to the nearest bfloat16 (ties to even), as
    float32 (a new array)."""
    out = np.array(a, dtype=np.float32, order="C")
    bits = out.view(np.uint32)
    lsb = bits >> np.uint32(16)
    lsb &= np.uint32(1)
    bits += np.uint32(0x7FFF)
    bits += lsb
    bits &= np.uint32(0xFFFF0000)
    return out


def _rounder(dtype):
    """The rounding of one torch operation's float32 result to the weight's dtype."""
    if dtype == "bfloat16":
        return _round_bf16
    return lambda a: np.asarray(a, dtype=np.float32)


def _bf16_bits(a):
    return (np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
            >> np.uint32(16)).astype(np.uint16)


def _in_dtype(values, dtype):
    """The bytes of float32 values (already representable) stored as ``dtype``."""
    if dtype == "bfloat16":
        return _bf16_bits(values)
    return np.ascontiguousarray(values, dtype=np.float32)


def _fp4_codes(q):
    """E2M1 codes of the float32 quotients ``q`` clamped to [-6, 6], to nearest even; a
    quotient that is exactly zero gets code 0 (compressed-tensors takes the sign from
    ``sign(q)``, which is 0 for -0.0)."""
    codes = to_bits(np.clip(q, -_FP4_MAX, _FP4_MAX), "float4_e2m1fn", saturate=True)
    codes[q == 0] = 0
    return codes


def _fp8_codes(q):
    """E4M3 codes of the quotients ``q`` clamped to [-448, 448], to nearest even.  The
    (zero) zero point compressed-tensors adds before rounding turns -0.0 into +0.0."""
    q = q + np.float32(0)
    return to_bits(np.clip(q, -_FP8_MAX, _FP8_MAX), "float8_e4m3fn", saturate=True)


def _fp8_values(codes):
    return fp8_to_float32(codes, "float8_e4m3fn")


# ------------------------------------------------------------------ tensors written

def _ceil_div(a, b):
    return -(-a // b)


def check_weight(name, shape, dtype, scheme):
    """A ValueError when a weight cannot take ``scheme`` (its shape or dtype)."""
    if len(shape) != 2:
        raise ValueError(f"{name}: a Linear weight must have 2 dimensions, got shape "
                         f"{tuple(shape)}")
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"{name}: dtype {dtype} is not supported (float32 and "
                         "bfloat16 models are)")
    rows, cols = shape
    if scheme.group_size and cols % scheme.group_size:
        raise ValueError(
            f"{name}: {cols} columns are not a multiple of {scheme.name}'s group size "
            f"{scheme.group_size} (llmcompressor refuses this layer too); leave it "
            f"unquantized with --ignore {name.rsplit('.', 1)[0]}")


def output_specs(module, shape, dtype, scheme):
    """``[(name, storage dtype, shape)]``: what replaces ``module.weight``."""
    rows, cols = shape
    s = scheme
    if s.kind == "int":
        groups = cols // s.group_size
        words = _ceil_div(cols * s.num_bits, 32)
        out = [(f"{module}.weight_packed", "int32", (rows, words)),
               (f"{module}.weight_scale", dtype, (rows, groups)),
               (f"{module}.weight_shape", "int64", (2,))]
        if not s.symmetric:
            out.append((f"{module}.weight_zero_point", "int32",
                        (_ceil_div(rows * s.num_bits, 32), groups)))
        return out
    if s.kind == "fp8":
        if s.strategy == "channel":
            scale_shape = (rows, 1)
        else:
            scale_shape = (_ceil_div(rows, s.block[0]), _ceil_div(cols, s.block[1]))
        return [(f"{module}.weight", "float8_e4m3fn", (rows, cols)),
                (f"{module}.weight_scale", dtype, scale_shape)]
    if s.kind == "nvfp4":
        return [(f"{module}.weight_packed", "uint8", (rows, cols // 2)),
                (f"{module}.weight_scale", "float8_e4m3fn", (rows, cols // 16)),
                (f"{module}.weight_global_scale", "float32", (1,))]
    return [(f"{module}.weight_packed", "uint8", (rows, cols // 2)),
            (f"{module}.weight_scale", "uint8", (rows, cols // 32))]


def row_multiple(scheme) -> int:
    """Rows are quantized in runs of a multiple of this (FP8_BLOCK's 128-row blocks,
    the zero points' 32-row packing)."""
    if scheme.kind == "fp8" and scheme.strategy == "block":
        return scheme.block[0]
    return 32


# ------------------------------------------------------------------ the arithmetic

def global_scale_of(absmax, dtype) -> np.float32:
    """NVFP4's global scale from the largest magnitude of a (fused) weight group:
    ``(1 / max(absmax, 2**-126)) * 2688`` in the weight's dtype, 1.0 when that
    overflows."""
    rnd = _rounder(dtype)
    a = np.float32(max(float(absmax), 2.0 ** -126))
    # torch evaluates ``number / tensor`` as ``tensor.reciprocal() * number``: two
    # roundings, each to the weight's dtype
    with np.errstate(over="ignore", divide="ignore"):
        g = rnd(rnd(np.float32(1) / np.array([a], np.float32))
                * np.float32(_FP8_MAX * _FP4_MAX))[0]
    if not np.isfinite(g):
        return np.float32(1.0)
    return np.float32(g)


@dataclass
class QuantizedTensor:
    """One run of rows of one weight, quantized: the arrays to write at their place.

    ``codes``: the rows of the packed or FP8 weight (bytes); ``scale``: its rows of the
    scale (in storage form); ``zero_point``: int8 zero points (unpacked, asymmetric
    only)."""
    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray | None = None


def _group_bounds(x, size):
    rows, cols = x.shape
    lo = np.empty((rows, cols // size), np.float32)
    hi = np.empty((rows, cols // size), np.float32)
    return cpu().compressed.group_bounds(x, size, lo, hi)


def _pack_dense(codes, bits):
    """compressed-tensors' int32 packing of int8 codes along the last axis, as bytes
    (rows, 4 * words)."""
    rows, cols = codes.shape
    words = _ceil_div(cols * bits, 32)
    offset = 1 << (bits - 1)
    unsigned = (codes.astype(np.int16) + offset).astype(np.uint8)
    if bits == 8:
        out = np.zeros((rows, words * 4), np.uint8)
        out[:, :cols] = unsigned
        return out
    if bits == 4:
        padded = np.zeros((rows, words * 8), np.uint8)
        padded[:, :cols] = unsigned
        return pack_int4(padded)
    raise ValueError(f"packing {bits}-bit codes is not supported")


def pack_zero_points(zp, bits):
    """4-bit zero points (rows, groups) packed along the rows: int32 (words, groups)."""
    packed = _pack_dense(np.ascontiguousarray(zp.T), bits)        # (groups, 4 * words)
    return np.ascontiguousarray(packed.view("<i4").T)


def quantize_rows(x, dtype, scheme, global_scale=None) -> QuantizedTensor:
    """Quantize a run of whole rows ``x`` (float32 values of a ``dtype`` weight).

    For FP8_BLOCK the run must start on a block boundary; NVFP4 needs the tensor's
    ``global_scale`` (:func:`global_scale_of`).
    """
    rnd = _rounder(dtype)
    s = scheme
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, cols = x.shape
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if s.kind == "int":
            qmin, qmax = -(1 << (s.num_bits - 1)), (1 << (s.num_bits - 1)) - 1
            size = s.group_size
            lo, hi = _group_bounds(x, size)
            zp = None
            if s.symmetric:
                half = np.float32((qmax - qmin) / 2)
                scale = rnd(np.maximum(-lo, hi) / half)
            else:
                scale = rnd(rnd(hi - lo) / np.float32(qmax - qmin))
                zp_f = rnd(np.float32(qmin) - rnd(lo / scale))
                zp_f = np.clip(zp_f, qmin, qmax)
                # torch turns the NaN of an all-zero group (0 / 0) into int8 0
                zp = np.where(np.isnan(zp_f), 0, np.rint(zp_f)).astype(np.int8)
            scale = np.where(scale == 0, _EPS[dtype], scale).astype(np.float32)
            zp_f = (np.zeros(scale.shape, np.float32) if zp is None
                    else zp.astype(np.float32))
            packed = cpu().compressed.int_group_packed(x, scale, zp_f, size, qmin, qmax,
                                      dtype == "bfloat16", s.num_bits,
                                      np.empty((rows, cols * s.num_bits // 8), np.uint8))
            return QuantizedTensor(packed, _in_dtype(scale, dtype), zp)
        if s.kind == "fp8":
            if s.strategy == "channel":
                amax = np.maximum(-np.minimum(x.min(axis=1), 0),
                                  np.maximum(x.max(axis=1), 0))[:, None]
                scale = rnd(amax / np.float32(_FP8_MAX))
                scale = np.where(scale == 0, _EPS[dtype], scale).astype(np.float32)
                q = rnd(x / scale)
            else:
                bh, bw = s.block
                brows, bcols = _ceil_div(rows, bh), _ceil_div(cols, bw)
                padded = np.zeros((brows * bh, bcols * bw), np.float32)
                padded[:rows, :cols] = x
                blocks = padded.reshape(brows, bh, bcols, bw)
                amax = np.maximum(-np.minimum(blocks.min(axis=(1, 3)), 0),
                                  np.maximum(blocks.max(axis=(1, 3)), 0))
                scale = rnd(amax / np.float32(_FP8_MAX))
                scale = np.where(scale == 0, _EPS[dtype], scale).astype(np.float32)
                q = rnd(blocks / scale[:, None, :, None]).reshape(padded.shape)
                q = q[:rows, :cols]
            return QuantizedTensor(_fp8_codes(np.ascontiguousarray(q)),
                                   _in_dtype(scale, dtype))
        if s.kind == "nvfp4":
            if global_scale is None:
                raise ValueError("NVFP4 needs the tensor's global scale")
            gs = np.float32(global_scale)
            lo, hi = _group_bounds(x, 16)
            local = rnd(np.maximum(-lo, hi) / np.float32(_FP4_MAX))
            scaled = (gs * local).astype(np.float32)
            scale_codes = _fp8_codes(scaled)
            scale_codes[_fp8_values(scale_codes) == 0] = 0x20      # E4M3 0.125
            effective = (_fp8_values(scale_codes) / gs).astype(np.float32)
            q = (x.reshape(rows, -1, 16) / effective[:, :, None]).reshape(rows, cols)
            codes = _fp4_codes(q)
            return QuantizedTensor(pack_int4(codes), scale_codes)
        # MXFP4: E8M0 exponents of the groups' maxima (to_mx's "even" rule on one-value
        # blocks), elements divided by the power of two in the weight's dtype
        lo, hi = _group_bounds(x, 32)
        amax = np.maximum(-lo, hi)
        scale_bytes, _ = to_mx(amax.reshape(-1, 1), "float4_e2m1fn", block_size=1,
                               scaling_mode="even")
        scale_bytes = scale_bytes.reshape(amax.shape)
        exps = scale_bytes.astype(np.int32) - 127
        factor = np.ldexp(np.float32(1), exps).astype(np.float32)
        q = rnd(x.reshape(rows, -1, 32) / factor[:, :, None]).reshape(rows, cols)
        codes = _fp4_codes(q)
        return QuantizedTensor(pack_int4(codes), scale_bytes)


# ------------------------------------------------------------------ config files

def quantization_config(scheme, ignored=()) -> dict:
    """``config.json``'s ``quantization_config`` as compressed-tensors 0.19 writes it;
    ``ignored``: the Linear modules left unquantized, in module order."""
    s = scheme_named(scheme)
    return {
        "config_groups": {
            "group_0": {
                "format": s.format,
                "input_activations": s.input_activations,
                "output_activations": None,
                "targets": ["Linear"],
                "weights": s.weights_config(),
            }
        },
        "format": s.format,
        "global_compression_ratio": None,
        "ignore": list(ignored),
        "kv_cache_scheme": None,
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
        "sparsity_config": {},
        "transform_config": {},
        "version": COMPRESSED_TENSORS_VERSION,
    }


def _yaml_item(value):
    text = str(value)
    if any(c in text for c in ":#[]{},'\"") or text != text.strip() or not text:
        return "'" + text.replace("'", "''") + "'"
    return text


def recipe_yaml(scheme, ignore=()) -> str:
    """The ``recipe.yaml`` llmcompressor saves next to the model."""
    s = scheme_named(scheme)
    ignore_text = "[" + ", ".join(_yaml_item(i) for i in ignore) + "]"
    return ("default_stage:\n"
            "  default_modifiers:\n"
            "    QuantizationModifier:\n"
            "      targets: [Linear]\n"
            f"      ignore: {ignore_text}\n"
            f"      scheme: {s.name}\n"
            "      bypass_divisibility_checks: false\n"
            "      requires_calibration_data: false\n")
