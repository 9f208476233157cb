"""CPU kernels of the low-precision float formats, and their launches.

Every kernel works on C-contiguous arrays that the public layer prepares and calls the
shared scalar reference :mod:`numba_quant._reference.formats` per element and per block.
Each kernel is a thin ``@njit(parallel=True)`` loop over tasks (``_tuning.FLOAT_TASK``
elements, or whole blocks of about that many) that calls a serial task function: every
thread walks contiguous memory, and the parallel part stays small, which keeps the
first-call compile time of the parallel kernels down.  One block kernel serves MX, NVFP4
and FP8 with per-group scales (``kind``), so few kernels are compiled at all.
"""
import numpy as np
from numba import njit, prange

from numba_quant._reference import formats as ref
from numba_quant._host import tuning as _tuning


# --------------------------------------------------------------------------- elements
# Task loops run over slices indexed from 0 with the format's parameters read once, so
# that the element loops vectorise.
@njit(cache=True)
def _encode_task(x, fmt, saturate, packed, out, lo, hi):
    p = ref.params(fmt)
    os = out[lo:hi]
    if packed:
        xs = x[2 * lo:2 * hi]
        for i in range(hi - lo):
            os[i] = (ref.encode_p(xs[2 * i], p, saturate)
                     | (ref.encode_p(xs[2 * i + 1], p, saturate) << 4))
    else:
        xs = x[lo:hi]
        for i in range(hi - lo):
            os[i] = ref.encode_p(xs[i], p, saturate)


@njit(cache=True, parallel=True)
def encode_kernel(x, fmt, saturate, packed, out, task):
    """``out[i]`` = code of ``x[i]`` (1-D); ``packed``: codes of ``x[2i]`` (low nibble)
    and ``x[2i + 1]`` (high nibble)."""
    n = out.size
    for u in prange((n + task - 1) // task):
        t = np.int64(u)  # prange's index is unsigned in the parallel body
        _encode_task(x, fmt, saturate, packed, out, t * task, min(n, (t + 1) * task))


@njit(cache=True)
def _decode_task(codes, fmt, packed, out, lo, hi):
    p = ref.params(fmt)
    os = out[lo:hi]
    if packed:
        # Element lo + i is nibble (lo + i) & 1 of byte (lo + i) >> 1.
        cs = codes[lo >> 1:(hi + 1) >> 1]
        o = lo & 1
        for i in range(hi - lo):
            os[i] = ref.decode_p((cs[(i + o) >> 1] >> (4 * ((i + o) & 1))) & 0xF, p)
    else:
        cs = codes[lo:hi]
        for i in range(hi - lo):
            os[i] = ref.decode_p(cs[i], p)


@njit(cache=True, parallel=True)
def decode_kernel(codes, fmt, packed, out, task):
    """``out[i]`` = float32 value of code ``i`` (``packed``: two codes per byte)."""
    n = out.size
    for u in prange((n + task - 1) // task):
        t = np.int64(u)
        _decode_task(codes, fmt, packed, out, t * task, min(n, (t + 1) * task))


# --------------------------------------------------------------------------- blocks
@njit(cache=True)
def _abs_max_task(x, block, out, t, task_blocks):
    rows, k = x.shape
    nb = (k + block - 1) // block
    bad = 0
    for b in range(t * task_blocks, min(rows * nb, (t + 1) * task_blocks)):
        r = b // nb
        lo = (b - r * nb) * block
        xs = x[r, lo:min(k, lo + block)]
        # Integer maximum of the magnitudes' bit patterns (ordered like the values, NaN
        # above infinity), and the count of non-finite ones.
        m = np.int64(0)
        for j in range(xs.size):
            a = ref.f32_bits(xs[j]) & 0x7FFFFFFF
            m = max(m, a)
            bad += np.int64(a >= 0x7F800000)
        if m > 0x7F800000:  # a NaN: the one the running maximum keeps
            amax = np.float32(0)
            for j in range(xs.size):
                amax = ref.nan_max_abs(amax, xs[j])
            out[r, b - r * nb] = amax
        else:
            out[r, b - r * nb] = ref.f32_from_bits(m)
    return bad


@njit(cache=True, parallel=True)
def group_abs_max_kernel(x, block, out, task_blocks, bad):
    """Per (row, block) ``max |x|`` of ``x`` (rows, K), NaN winning; ``bad[t]``: the
    non-finite elements task ``t`` saw."""
    for u in prange(bad.size):
        t = np.int64(u)
        bad[t] = _abs_max_task(x, block, out, t, task_blocks)


@njit(cache=True)
def _quantize_task(kind, x, block, fmt, mode, emax, mbits, elem_max, propagate, pts,
                   byte_scales, float_scales, codes, values, write_codes, write_values, t,
                   task_blocks):
    rows, k = x.shape
    nb = (k + block - 1) // block
    inv_pts = np.float32(np.float32(1) / pts)
    bad = 0
    b = t * task_blocks
    end = min(rows * nb, (t + 1) * task_blocks)
    while b < end:  # the task's blocks, a stretch of a row at a time
        r = b // nb
        c0 = b - r * nb
        c1 = min(nb, c0 + end - b)
        bad += ref.quantize_blocks_of_row(kind, x, r, c0, c1, block, fmt, mode, emax, mbits,
                                          elem_max, propagate, pts, inv_pts, byte_scales,
                                          float_scales, codes, values, write_codes,
                                          write_values)
        b += c1 - c0
    return bad


@njit(cache=True, parallel=True)
def quantize_blocks_kernel(kind, x, block, fmt, mode, emax, mbits, elem_max, propagate, pts,
                           byte_scales, float_scales, codes, values, write_codes, write_values,
                           task_blocks, bad):
    """Blocks of ``block`` elements along each row of ``x`` (rows, K), float32; the last
    block of a row may be shorter.

    ``kind`` MX: E8M0 bytes into ``byte_scales`` (rows, nb), ``bad[t]`` counts the blocks
    holding NaN or infinity (NaN scale 255 with ``propagate``); NVFP4: E4M3 block scale
    codes into ``byte_scales`` with the per-tensor scale ``pts``; FP8: the float32 scales
    ``float_scales`` (rows, nb) are given.  Element codes go to ``codes`` and/or the
    dequantized values to ``values`` (rows, K).
    """
    for u in prange(bad.size):
        t = np.int64(u)
        bad[t] = _quantize_task(kind, x, block, fmt, mode, emax, mbits, elem_max, propagate,
                                pts, byte_scales, float_scales, codes, values, write_codes,
                                write_values, t, task_blocks)


@njit(cache=True)
def _dequantize_task(kind, byte_scales, float_scales, codes, block, fmt, pts, out, t,
                     task_blocks):
    rows, k = codes.shape
    nb = (k + block - 1) // block
    b = t * task_blocks
    end = min(rows * nb, (t + 1) * task_blocks)
    while b < end:
        r = b // nb
        c0 = b - r * nb
        c1 = min(nb, c0 + end - b)
        ref.dequantize_blocks_of_row(kind, byte_scales, float_scales, codes, r, c0, c1, block,
                                     fmt, pts, out)
        b += c1 - c0


@njit(cache=True, parallel=True)
def dequantize_blocks_kernel(kind, byte_scales, float_scales, codes, block, fmt, pts, out,
                             task_blocks, ntasks):
    """Values of blocks (the inverse of :func:`quantize_blocks_kernel`): MX
    ``decode * 2**(byte - 127)``, NVFP4 ``fp4 * float32(pts * e4m3)``, FP8
    ``decode / scale``."""
    for u in prange(ntasks):
        t = np.int64(u)
        _dequantize_task(kind, byte_scales, float_scales, codes, block, fmt, pts, out, t,
                         task_blocks)


@njit(cache=True)
def fp8_scales_kernel(amax, fp8_max, out):
    """Current scaling's scales of the maxima ``amax`` (serial: one value per group)."""
    for i in range(amax.size):
        out[i] = ref.fp8_scale(amax[i], fp8_max)


# --------------------------------------------------------------------------- launches
# The same interface as numba_quant._cuda.formats's launches, for numpy arrays.
def _tasks(rows, k, block):
    """``(blocks per task, tasks)`` for blocks of ``block`` over (rows, k)."""
    per = max(1, _tuning.FLOAT_TASK // block)
    total = rows * (-(-k // block))
    return per, -(-total // per)


def encode(x, fmt, saturate, packed, out):
    encode_kernel(x, fmt, saturate, packed, out, _tuning.FLOAT_TASK)


def decode(codes, fmt, packed, out):
    decode_kernel(codes, fmt, packed, out, _tuning.FLOAT_TASK)


def group_abs_max(x, block, out):
    """Per-block maxima into ``out`` (rows, nb); the number of non-finite elements."""
    per, ntasks = _tasks(*x.shape, block)
    bad = np.empty(ntasks, np.int64)
    group_abs_max_kernel(x, block, out, per, bad)
    return int(bad.sum())


def quantize_blocks(kind, x, block, fmt, mode, emax, mbits, elem_max, propagate, pts,
                    byte_scales, float_scales, codes, values, write_codes, write_values):
    # FP8 (given scales) writes codes only: there is no fused FP8 fake quantization.
    assert not (kind == ref.FP8 and write_values)
    per, ntasks = _tasks(*x.shape, block)
    bad = np.empty(ntasks, np.int64)
    quantize_blocks_kernel(kind, x, block, fmt, mode, emax, mbits, float(elem_max), propagate,
                           np.float32(pts), byte_scales, float_scales, codes, values,
                           write_codes, write_values, per, bad)
    return int(bad.sum())


def dequantize_blocks(kind, byte_scales, float_scales, codes, block, fmt, pts, out):
    per, ntasks = _tasks(*codes.shape, block)
    dequantize_blocks_kernel(kind, byte_scales, float_scales, codes, block, fmt,
                             np.float32(pts), out, per, ntasks)


def fp8_scales(amax, fp8_max):
    """Scales (float32, host) of the maxima ``amax`` (float32, host)."""
    out = np.empty(amax.shape, np.float32)
    fp8_scales_kernel(amax.reshape(-1), float(fp8_max), out.reshape(-1))
    return out


# --------------------------------------------------------------------------- arrays


def scale_run():
    """Elements sharing one materialised float scale in FP8 per-tensor and per-channel
    scaling (a task of the block kernel)."""
    return _tuning.FLOAT_TASK
