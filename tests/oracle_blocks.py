"""Independent numpy model of block-wise affine quantization (torchao 0.18's formulas).

Never imports numba_quant.  Works on whole arrays with numpy and ml_dtypes: each block is
reduced with ``np.min``/``np.max`` over a padded copy, and every step of the parameter
arithmetic is one numpy operation in the dtype torch would use (bfloat16 and float16
arithmetic round after each operation, as torch's CPU kernels do).  Ragged last blocks
(a dimension not divisible by its block size) are modelled by padding with a copy of the
block's first element, which changes neither its minimum nor its maximum.
"""
import math

import ml_dtypes
import numpy as np

BF16 = np.dtype(ml_dtypes.bfloat16)


def grid_shape(shape, block_size):
    """Blocks per dimension: ceil(d / b)."""
    return tuple(-(-d // b) for d, b in zip(shape, block_size))


def torchao_shape(shape, block_size):
    """torchao's keepdim=False parameter shape: a dimension blocked whole (b == d > 1) is dropped."""
    out = []
    for d, b in zip(shape, block_size):
        if b == d and b > 1:
            continue
        out.append(-(-d // b))
    return tuple(out)


def _expand(params, shape, block_size):
    """A full-rank parameter grid repeated to the shape of x (ragged ends cut off)."""
    for axis, b in enumerate(block_size):
        params = np.repeat(params, b, axis=axis)
    return params[tuple(slice(0, d) for d in shape)]


def block_min_max(x, block_size):
    """Per-block (min, max) on the full-rank grid ceil(shape / block_size)."""
    grid = grid_shape(x.shape, block_size)
    padded_shape = tuple(g * b for g, b in zip(grid, block_size))
    # Pad with each block's first element (repeat the grid of first elements).
    firsts = x[tuple(slice(None, None, b) for b in block_size)]
    padded = _expand(firsts, padded_shape, block_size).copy()
    padded[tuple(slice(0, d) for d in x.shape)] = x
    split = []
    for g, b in zip(grid, block_size):
        split += [g, b]
    view = padded.reshape(split)
    axes = tuple(range(1, 2 * len(grid), 2))
    return view.min(axis=axes), view.max(axis=axes)


def smallest_normal(dtype):
    if np.dtype(dtype) == BF16:
        return float(ml_dtypes.finfo(ml_dtypes.bfloat16).smallest_normal)
    return float(np.finfo(dtype).smallest_normal)


def choose_qparams(x, mapping_type, block_size, quant_min, quant_max, eps=None,
                   scale_dtype=None):
    """(scale, zero_point) on the full-rank grid; zero_point is int32."""
    T = x.dtype
    if eps is None:
        eps = smallest_normal(T)
    scale_dtype = T if scale_dtype is None else np.dtype(scale_dtype)
    lo, hi = block_min_max(x, block_size)
    zero = np.zeros((), T)
    min_neg = np.minimum(lo, zero)
    max_pos = np.maximum(hi, zero)

    def c(v):  # a Python number as torch casts a scalar operand: into the tensor's dtype
        return np.asarray(v).astype(T)

    if mapping_type in ("symmetric", "symmetric_no_clipping_err"):
        if mapping_type == "symmetric":
            amax = np.maximum(-min_neg, max_pos)
            scale = (amax / c((quant_max - quant_min) / 2)).astype(T)
        else:
            # torchao divides min_neg by quant_min too; with quant_min == 0 that gives -inf
            # or NaN, which never wins the comparison, so the scale is max_pos / quant_max.
            smax = (max_pos / c(quant_max)).astype(T)
            if quant_min == 0:
                scale = smax
            else:
                smin = (min_neg / c(quant_min)).astype(T)
                scale = np.where(smin > smax, smin, smax)
        zp = np.full(scale.shape, int((quant_max + quant_min + 1) / 2), np.float64)
        scale = np.maximum(scale, c(eps))
    else:
        scale = ((max_pos - min_neg) / c(quant_max - quant_min)).astype(T)
        scale = np.maximum(scale, c(eps))
        ratio = (min_neg / scale).astype(T)
        zp = (c(quant_min) - np.rint(ratio)).astype(T)
        zp = np.clip(zp.astype(np.float64), quant_min, quant_max)
    return scale.astype(scale_dtype), zp.astype(np.int32)


def _product_dtype(a, b):
    """torch's promotion of two float dtypes (bfloat16 with float16 gives float32)."""
    a, b = np.dtype(a), np.dtype(b)
    if a == b:
        return a
    if {a, b} == {BF16, np.dtype(np.float16)}:
        return np.dtype(np.float32)
    if a == BF16:
        return b
    if b == BF16:
        return a
    return np.promote_types(a, b)


def quantize(x, block_size, scale, zero_point, quant_min, quant_max, codes_dtype):
    """codes = clamp(rint(x * (1 / scale)) + zp, qmin, qmax), in torch's dtypes."""
    S = scale.dtype
    P = _product_dtype(x.dtype, S)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        recip = (np.ones((), S) / scale).astype(S)
        r = _expand(recip, x.shape, block_size)
        prod = (x.astype(P) * r.astype(P)).astype(P)
        q = np.rint(prod).astype(P)
        q = (q + _expand(zero_point, x.shape, block_size).astype(P)).astype(P)
    q = np.clip(q.astype(np.float64), quant_min, quant_max)
    return q.astype(codes_dtype)


def dequantize(codes, block_size, scale, zero_point, output_dtype):
    """(codes - zp) * scale: the int32 difference cast to output_dtype, times the scale."""
    O = np.dtype(output_dtype)
    diff = codes.astype(np.int32) - _expand(zero_point, codes.shape, block_size)
    diff = diff.astype(O)
    P = _product_dtype(O, scale.dtype)
    prod = (diff.astype(P) * _expand(scale, codes.shape, block_size).astype(P)).astype(P)
    return prod.astype(O)


def torchao_reshape(params, shape, block_size):
    return params.reshape(torchao_shape(shape, block_size))


def round_trip(x, mapping_type, block_size, quant_min, quant_max, codes_dtype, eps=None,
               scale_dtype=None, dequant_dtype=np.float32):
    """(scale, zero_point, codes, dequant) with torchao's output shapes."""
    scale, zp = choose_qparams(x, mapping_type, block_size, quant_min, quant_max, eps,
                               scale_dtype)
    codes = quantize(x, block_size, scale, zp, quant_min, quant_max, codes_dtype)
    deq = dequantize(codes, block_size, scale, zp, dequant_dtype)
    return (torchao_reshape(scale, x.shape, block_size),
            torchao_reshape(zp, x.shape, block_size), codes, deq)


__all__ = ["BF16", "grid_shape", "torchao_shape", "block_min_max", "choose_qparams",
           "quantize", "dequantize", "round_trip", "math"]
