"""CPU kernels of the low-precision float formats (``@njit(parallel=True)``, cached).

Every kernel works on C-contiguous arrays that the public layer prepares and calls the
shared scalar reference :mod:`numba_quant._reference_float` per element and per block.
Parallel loops run over tasks of ``_tuning.FLOAT_TASK`` elements (or whole blocks of
about that many), so that each thread walks contiguous memory.
"""
import numpy as np
from numba import njit, prange

from numba_quant import _reference_float as ref
from numba_quant import _tuning


@njit(cache=True, parallel=True)
def encode_kernel(x, fmt, saturate, out, task):
    """``out[i] = code of x[i]`` (1-D, float32 or float64 in, uint8 out)."""
    n = x.size
    for t in prange((n + task - 1) // task):
        for i in range(t * task, min(n, (t + 1) * task)):
            out[i] = ref.encode(x[i], fmt, saturate)


@njit(cache=True, parallel=True)
def encode_packed_kernel(x, fmt, saturate, out, task):
    """Two FP4 codes per byte: ``x[2i]`` in the low nibble, ``x[2i + 1]`` in the high."""
    n = out.size
    for t in prange((n + task - 1) // task):
        for i in range(t * task, min(n, (t + 1) * task)):
            lo = ref.encode(x[2 * i], fmt, saturate)
            hi = ref.encode(x[2 * i + 1], fmt, saturate)
            out[i] = lo | (hi << 4)


@njit(cache=True, parallel=True)
def decode_kernel(codes, fmt, packed, out, task):
    """``out[i] = value of code i`` (float32 or float64 out); ``packed``: two per byte."""
    n = out.size
    for t in prange((n + task - 1) // task):
        for i in range(t * task, min(n, (t + 1) * task)):
            if packed:
                c = (codes[i >> 1] >> (4 * (i & 1))) & 0xF
            else:
                c = codes[i]
            out[i] = ref.decode_f32(c, fmt)


@njit(cache=True, parallel=True)
def abs_max_kernel(x, task):
    """``(max |x|, number of non-finite elements)`` of a 1-D float32 array (NaN wins)."""
    n = x.size
    ntasks = (n + task - 1) // task
    part = np.zeros(ntasks, np.float32)
    bad = np.zeros(ntasks, np.int64)
    for t in prange(ntasks):
        m = np.float32(0)
        k = 0
        for i in range(t * task, min(n, (t + 1) * task)):
            v = x[i]
            m = ref.nan_max_abs(m, v)
            if not np.isfinite(v):
                k += 1
        part[t] = m
        bad[t] = k
    m = np.float32(0)
    for t in range(ntasks):
        m = ref.nan_max_abs(m, part[t])
    return m, bad.sum()


@njit(cache=True, parallel=True)
def mx_quantize_kernel(x, block, fmt, mode, emax, mbits, elem_max, propagate,
                scales, codes, values, write_codes, write_values, task_blocks):
    """MX blocks of ``block`` elements along each row of ``x`` (rows, K), float32.

    Writes the E8M0 scale bytes ``scales`` (rows, ceil(K / block)), and the element
    codes ``codes`` and/or the dequantized values ``values`` (rows, K).  The last block
    of a row may be shorter.  Returns the number of blocks holding NaN or infinity; with
    ``propagate`` they get scale 255 (NaN), else they are left for the caller to raise.
    """
    rows, k = x.shape
    nb = (k + block - 1) // block
    total = rows * nb
    ntasks = (total + task_blocks - 1) // task_blocks
    bad = np.zeros(ntasks, np.int64)
    for t in prange(ntasks):
        for b in range(t * task_blocks, min(total, (t + 1) * task_blocks)):
            r = b // nb
            lo = (b - r * nb) * block
            hi = min(k, lo + block)
            amax = np.float32(0)
            for j in range(lo, hi):
                amax = ref.nan_max_abs(amax, x[r, j])
            if np.isfinite(amax):
                byte = ref.mx_scale_byte(amax, mode, emax, mbits, elem_max)
            else:
                bad[t] += 1
                byte = ref.E8M0_NAN if propagate else 0
            scales[r, b - r * nb] = byte
            divisor = ref.mx_divisor(byte, mode)
            for j in range(lo, hi):
                if byte == ref.E8M0_NAN:
                    c = np.uint8(ref.encode_f32(x[r, j], fmt, True)) if fmt != ref.INT8 \
                        else np.uint8(0)
                else:
                    c = ref.mx_element(x[r, j], fmt, divisor, mode, elem_max)
                if write_codes:
                    codes[r, j] = c
                if write_values:
                    values[r, j] = ref.mx_value(c, fmt, byte)
    return bad.sum()


@njit(cache=True, parallel=True)
def mx_dequantize_kernel(scales, codes, block, fmt, out, task_blocks):
    """Values of MX blocks: ``decode(code) * 2**(scale - 127)`` (rows, K)."""
    rows, k = codes.shape
    nb = (k + block - 1) // block
    total = rows * nb
    for t in prange((total + task_blocks - 1) // task_blocks):
        for b in range(t * task_blocks, min(total, (t + 1) * task_blocks)):
            r = b // nb
            lo = (b - r * nb) * block
            byte = scales[r, b - r * nb]
            for j in range(lo, min(k, lo + block)):
                out[r, j] = ref.mx_value(codes[r, j], fmt, byte)


@njit(cache=True, parallel=True)
def nvfp4_quantize_kernel(x, per_tensor_scale, scales, codes, values, write_codes, write_values,
                   task_blocks):
    """NVFP4 blocks of 16 along each row of ``x`` (rows, K), float32."""
    rows, k = x.shape
    nb = (k + 15) // 16
    total = rows * nb
    inv = np.float32(np.float32(1) / per_tensor_scale)
    for t in prange((total + task_blocks - 1) // task_blocks):
        for b in range(t * task_blocks, min(total, (t + 1) * task_blocks)):
            r = b // nb
            lo = (b - r * nb) * 16
            hi = min(k, lo + 16)
            amax = np.float32(0)
            for j in range(lo, hi):
                amax = ref.nan_max_abs(amax, x[r, j])
            sc = ref.nvfp4_scale_code(amax, per_tensor_scale)
            scales[r, b - r * nb] = sc
            mult = ref.nvfp4_multiplier(sc, inv)
            factor = ref.nvfp4_block_factor(sc, per_tensor_scale)
            for j in range(lo, hi):
                c = ref.nvfp4_element(x[r, j], mult)
                if write_codes:
                    codes[r, j] = c
                if write_values:
                    values[r, j] = ref.decode_f32(c, ref.E2M1FN) * factor


@njit(cache=True, parallel=True)
def nvfp4_dequantize_kernel(scales, codes, per_tensor_scale, out, task_blocks):
    rows, k = codes.shape
    nb = (k + 15) // 16
    total = rows * nb
    for t in prange((total + task_blocks - 1) // task_blocks):
        for b in range(t * task_blocks, min(total, (t + 1) * task_blocks)):
            r = b // nb
            lo = (b - r * nb) * 16
            factor = ref.nvfp4_block_factor(scales[r, b - r * nb], per_tensor_scale)
            for j in range(lo, min(k, lo + 16)):
                out[r, j] = ref.decode_f32(codes[r, j], ref.E2M1FN) * factor


@njit(cache=True, parallel=True)
def group_abs_max_kernel(x, block, out, task_blocks):
    """Per (row, block) ``max |x|`` of ``x`` (rows, K), NaN winning; the number of
    non-finite elements."""
    rows, k = x.shape
    nb = (k + block - 1) // block
    total = rows * nb
    ntasks = (total + task_blocks - 1) // task_blocks
    bad = np.zeros(ntasks, np.int64)
    for t in prange(ntasks):
        for b in range(t * task_blocks, min(total, (t + 1) * task_blocks)):
            r = b // nb
            lo = (b - r * nb) * block
            m = np.float32(0)
            for j in range(lo, min(k, lo + block)):
                v = x[r, j]
                m = ref.nan_max_abs(m, v)
                if not np.isfinite(v):
                    bad[t] += 1
            out[r, b - r * nb] = m
    return bad.sum()


@njit(cache=True, parallel=True)
def channel_abs_max_kernel(x, out):
    """Per channel ``max |x|`` of ``x`` (outer, C, inner), NaN winning; non-finite count."""
    outer, channels, inner = x.shape
    bad = np.zeros(channels, np.int64)
    for c in prange(channels):
        m = np.float32(0)
        for o in range(outer):
            for i in range(inner):
                v = x[o, c, i]
                m = ref.nan_max_abs(m, v)
                if not np.isfinite(v):
                    bad[c] += 1
        out[c] = m
    return bad.sum()


@njit(cache=True, parallel=True)
def fp8_scales_kernel(amax, fp8_max, out):
    for i in prange(amax.size):
        out[i] = ref.fp8_scale(amax[i], fp8_max)


@njit(cache=True, parallel=True)
def fp8_quantize_kernel(x, scales, inner, block, fmt, fp8_max, codes, values, write_codes,
                 write_values, task):
    """FP8 codes of ``x`` (rows, K) with one scale per group.

    Groups: ``block > 0``, blocks of ``block`` along each row (``scales`` (rows, nb));
    else channels of a (outer, C, inner) layout flattened into rows of ``inner``
    elements, row r in channel ``r % C`` (``scales`` (1, C)).
    """
    rows, k = x.shape
    n = rows * k
    channels = scales.shape[1]
    for t in prange((n + task - 1) // task):
        for i in range(t * task, min(n, (t + 1) * task)):
            r = i // k
            j = i - r * k
            if block > 0:
                s = scales[r, j // block]
            else:
                s = scales[0, (i // inner) % channels]
            c = ref.fp8_element(x[r, j], s, fmt, fp8_max)
            if write_codes:
                codes[r, j] = c
            if write_values:
                values[r, j] = ref.decode_f32(c, fmt) / s


@njit(cache=True, parallel=True)
def fp8_dequantize_kernel(codes, scales, inner, block, fmt, out, task):
    rows, k = codes.shape
    n = rows * k
    channels = scales.shape[1]
    for t in prange((n + task - 1) // task):
        for i in range(t * task, min(n, (t + 1) * task)):
            r = i // k
            j = i - r * k
            if block > 0:
                s = scales[r, j // block]
            else:
                s = scales[0, (i // inner) % channels]
            out[r, j] = ref.decode_f32(codes[r, j], fmt) / s


# --------------------------------------------------------------------------- launches
# The same interface as numba_quant._cuda_float's launches, for numpy arrays.
def _task_blocks(block):
    return max(1, _tuning.FLOAT_TASK // block)


def encode(x, fmt, saturate, out):
    kernel = encode_packed_kernel if out.size != x.size else encode_kernel
    kernel(x, fmt, saturate, out, _tuning.FLOAT_TASK)


def decode(codes, fmt, packed, out):
    decode_kernel(codes, fmt, packed, out, _tuning.FLOAT_TASK)


def abs_max(x):
    m, bad = abs_max_kernel(x, _tuning.FLOAT_TASK)
    return np.float32(m), int(bad)


def mx_quantize(x, block, fmt, mode, emax, mbits, elem_max, propagate, scales, codes, values,
                write_codes, write_values):
    return int(mx_quantize_kernel(x, block, fmt, mode, emax, mbits, elem_max, propagate,
                                  scales, codes, values, write_codes, write_values,
                                  _task_blocks(block)))


def mx_dequantize(scales, codes, block, fmt, out):
    mx_dequantize_kernel(scales, codes, block, fmt, out, _task_blocks(block))


def nvfp4_quantize(x, per_tensor_scale, scales, codes, values, write_codes, write_values):
    nvfp4_quantize_kernel(x, per_tensor_scale, scales, codes, values, write_codes,
                          write_values, _task_blocks(16))


def nvfp4_dequantize(scales, codes, per_tensor_scale, out):
    nvfp4_dequantize_kernel(scales, codes, per_tensor_scale, out, _task_blocks(16))


def group_abs_max(x, block, out):
    return int(group_abs_max_kernel(x, block, out, _task_blocks(block)))


def channel_abs_max(x, out):
    return int(channel_abs_max_kernel(x, out))


def fp8_scales(amax, fp8_max, out):
    fp8_scales_kernel(amax, fp8_max, out)


def fp8_quantize(x, scales, inner, block, fmt, fp8_max, codes, values, write_codes,
                 write_values):
    fp8_quantize_kernel(x, scales, inner, block, fmt, fp8_max, codes, values, write_codes,
                        write_values, _tuning.FLOAT_TASK)


def fp8_dequantize(codes, scales, inner, block, fmt, out):
    fp8_dequantize_kernel(codes, scales, inner, block, fmt, out, _tuning.FLOAT_TASK)


# --------------------------------------------------------------------------- arrays
def contiguous(a, dtype=None, axes=None):
    """``a`` as a C-contiguous array of ``dtype`` with axes ``axes`` (copy if needed)."""
    if axes is not None:
        a = np.transpose(a, axes)
    return np.ascontiguousarray(a, dtype=dtype)


def empty(shape, dtype, like):
    return np.empty(shape, dtype)


def wrap(a, like):
    return a
