"""CUDA kernels of the low-precision float formats, and their launches.

The kernels call the same scalar reference as the CPU kernels
(:mod:`numba_quant._reference_float`).  Element-wise kernels (conversions, FP8 scaling)
give consecutive threads consecutive elements, so loads and stores coalesce; the block
kernels (MX, NVFP4, per-block maxima) give each thread whole blocks of 16 to 128
contiguous elements, a grid-stride loop over blocks.  Maxima over a whole tensor combine
per-thread maxima with one integer atomic max each on the float bits (magnitudes are
non-negative, so their bits order like the values, NaN above infinity).

Imported only when a GPU array arrives; importing :mod:`numba_quant._cuda` first
registers its primitives, this module registers the bit casts.
"""
import numpy as np
from numba import cuda

from numba_quant import _cuda as base
from numba_quant import _primitives_float
from numba_quant import _reference_float as ref
from numba_quant import _tuning

SIMULATOR = base.SIMULATOR


def _register_cuda_bit_casts():
    from numba import types
    from numba.core.extending import overload
    from numba.cuda import libdevice

    @overload(_primitives_float.f32_bits, target="cuda")
    def _f32_bits(v):
        if v in (types.float32, types.float64):
            return lambda v: np.int64(libdevice.float_as_int(np.float32(v))) & 0xFFFFFFFF
        return None

    @overload(_primitives_float.f64_bits, target="cuda")
    def _f64_bits(v):
        if v in (types.float32, types.float64):
            return lambda v: np.int64(libdevice.double_as_longlong(np.float64(v)))
        return None

    @overload(_primitives_float.f32_from_bits, target="cuda")
    def _f32_from_bits(u):
        return lambda u: libdevice.int_as_float(np.int32(np.uint32(u & 0xFFFFFFFF)))


if not SIMULATOR:
    _register_cuda_bit_casts()


# --------------------------------------------------------------------------- kernels
@cuda.jit
def encode_kernel(x, fmt, saturate, out):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < out.size:
        out[i] = ref.encode(x[i], fmt, saturate)
        i += stride


@cuda.jit
def encode_packed_kernel(x, fmt, saturate, out):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < out.size:
        lo = ref.encode(x[2 * i], fmt, saturate)
        hi = ref.encode(x[2 * i + 1], fmt, saturate)
        out[i] = lo | (hi << 4)
        i += stride


@cuda.jit
def decode_kernel(codes, fmt, packed, out):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < out.size:
        if packed:
            c = (codes[i >> 1] >> (4 * (i & 1))) & 0xF
        else:
            c = codes[i]
        out[i] = ref.decode_f32(c, fmt)
        i += stride


@cuda.jit
def abs_max_kernel(x, result):
    """``result[0]``: bits of max |x| (atomic max); ``result[1]``: non-finite count."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    m = np.float32(0)
    bad = 0
    while i < x.size:
        v = x[i]
        m = ref.nan_max_abs(m, v)
        if not (abs(v) <= np.float32(3.4028234663852886e38)):
            bad += 1
        i += stride
    cuda.atomic.max(result, 0, np.uint64(ref.f32_bits(m)))
    if bad:
        cuda.atomic.add(result, 1, np.uint64(bad))


@cuda.jit
def mx_quantize_kernel(x, block, fmt, mode, emax, mbits, elem_max, propagate, scales, codes,
                       values, write_codes, write_values, bad):
    rows, k = x.shape
    nb = (k + block - 1) // block
    b = cuda.grid(1)
    stride = cuda.gridsize(1)
    while b < rows * nb:
        r = b // nb
        lo = (b - r * nb) * block
        hi = min(k, lo + block)
        amax = np.float32(0)
        for j in range(lo, hi):
            amax = ref.nan_max_abs(amax, x[r, j])
        if amax <= np.float32(3.4028234663852886e38):
            byte = ref.mx_scale_byte(amax, mode, emax, mbits, elem_max)
        else:
            cuda.atomic.add(bad, 0, 1)
            byte = ref.E8M0_NAN if propagate else 0
        scales[r, b - r * nb] = byte
        divisor = ref.mx_divisor(byte, mode)
        for j in range(lo, hi):
            if byte == ref.E8M0_NAN:
                c = np.uint8(0)
                if fmt != ref.INT8:
                    c = np.uint8(ref.encode(x[r, j], fmt, True))
            else:
                c = ref.mx_element(x[r, j], fmt, divisor, mode, elem_max)
            if write_codes:
                codes[r, j] = c
            if write_values:
                values[r, j] = ref.mx_value(c, fmt, byte)
        b += stride


@cuda.jit
def mx_dequantize_kernel(scales, codes, block, fmt, out):
    rows, k = codes.shape
    nb = (k + block - 1) // block
    b = cuda.grid(1)
    stride = cuda.gridsize(1)
    while b < rows * nb:
        r = b // nb
        lo = (b - r * nb) * block
        byte = scales[r, b - r * nb]
        for j in range(lo, min(k, lo + block)):
            out[r, j] = ref.mx_value(codes[r, j], fmt, byte)
        b += stride


@cuda.jit
def nvfp4_quantize_kernel(x, per_tensor_scale, scales, codes, values, write_codes,
                          write_values):
    rows, k = x.shape
    nb = (k + 15) // 16
    inv = np.float32(np.float32(1) / per_tensor_scale)
    b = cuda.grid(1)
    stride = cuda.gridsize(1)
    while b < rows * nb:
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
        b += stride


@cuda.jit
def nvfp4_dequantize_kernel(scales, codes, per_tensor_scale, out):
    rows, k = codes.shape
    nb = (k + 15) // 16
    b = cuda.grid(1)
    stride = cuda.gridsize(1)
    while b < rows * nb:
        r = b // nb
        lo = (b - r * nb) * 16
        factor = ref.nvfp4_block_factor(scales[r, b - r * nb], per_tensor_scale)
        for j in range(lo, min(k, lo + 16)):
            out[r, j] = ref.decode_f32(codes[r, j], ref.E2M1FN) * factor
        b += stride


@cuda.jit
def group_abs_max_kernel(x, block, out, bad):
    rows, k = x.shape
    nb = (k + block - 1) // block
    b = cuda.grid(1)
    stride = cuda.gridsize(1)
    while b < rows * nb:
        r = b // nb
        lo = (b - r * nb) * block
        m = np.float32(0)
        count = 0
        for j in range(lo, min(k, lo + block)):
            v = x[r, j]
            m = ref.nan_max_abs(m, v)
            if not (abs(v) <= np.float32(3.4028234663852886e38)):
                count += 1
        out[r, b - r * nb] = m
        if count:
            cuda.atomic.add(bad, 0, count)
        b += stride


@cuda.jit
def channel_abs_max_kernel(x, out, bad):
    outer, channels, inner = x.shape
    c = cuda.grid(1)
    stride = cuda.gridsize(1)
    while c < channels:
        m = np.float32(0)
        count = 0
        for o in range(outer):
            for i in range(inner):
                v = x[o, c, i]
                m = ref.nan_max_abs(m, v)
                if not (abs(v) <= np.float32(3.4028234663852886e38)):
                    count += 1
        out[c] = m
        if count:
            cuda.atomic.add(bad, 0, count)
        c += stride


@cuda.jit
def fp8_scales_kernel(amax, fp8_max, out):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < amax.size:
        out[i] = ref.fp8_scale(amax[i], fp8_max)
        i += stride


@cuda.jit
def fp8_quantize_kernel(x, scales, inner, block, fmt, fp8_max, codes, values, write_codes,
                        write_values):
    rows, k = x.shape
    channels = scales.shape[1]
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < rows * k:
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
        i += stride


@cuda.jit
def fp8_dequantize_kernel(codes, scales, inner, block, fmt, out):
    rows, k = codes.shape
    channels = scales.shape[1]
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < rows * k:
        r = i // k
        j = i - r * k
        if block > 0:
            s = scales[r, j // block]
        else:
            s = scales[0, (i // inner) % channels]
        out[r, j] = ref.decode_f32(codes[r, j], fmt) / s
        i += stride


# --------------------------------------------------------------------------- launches
def _grid(n):
    return base._grid(n)


def encode(x, fmt, saturate, out):
    blocks, threads = _grid(out.size)
    kernel = encode_packed_kernel if out.size != x.size else encode_kernel
    kernel[blocks, threads](x, fmt, saturate, out)


def decode(codes, fmt, packed, out):
    blocks, threads = _grid(out.size)
    decode_kernel[blocks, threads](codes, fmt, packed, out)


def abs_max(x):
    result = cuda.to_device(np.zeros(2, np.uint64))
    blocks, threads = _grid(x.size, )
    abs_max_kernel[blocks, threads](x, result)
    bits, bad = result.copy_to_host()
    return np.array(bits, np.uint32).view(np.float32)[()], int(bad)


def _blocks_grid(rows, k, block):
    return _grid(rows * (-(-k // block)))


def mx_quantize(x, block, fmt, mode, emax, mbits, elem_max, propagate, scales, codes, values,
                write_codes, write_values):
    bad = cuda.to_device(np.zeros(1, np.int64))
    blocks, threads = _blocks_grid(*x.shape, block)
    mx_quantize_kernel[blocks, threads](x, block, fmt, mode, emax, mbits, elem_max, propagate,
                                        scales, codes, values, write_codes, write_values, bad)
    return int(bad.copy_to_host()[0])


def mx_dequantize(scales, codes, block, fmt, out):
    blocks, threads = _blocks_grid(*codes.shape, block)
    mx_dequantize_kernel[blocks, threads](scales, codes, block, fmt, out)


def nvfp4_quantize(x, per_tensor_scale, scales, codes, values, write_codes, write_values):
    blocks, threads = _blocks_grid(*x.shape, 16)
    nvfp4_quantize_kernel[blocks, threads](x, per_tensor_scale, scales, codes, values,
                                           write_codes, write_values)


def nvfp4_dequantize(scales, codes, per_tensor_scale, out):
    blocks, threads = _blocks_grid(*codes.shape, 16)
    nvfp4_dequantize_kernel[blocks, threads](scales, codes, per_tensor_scale, out)


def group_abs_max(x, block, out):
    bad = cuda.to_device(np.zeros(1, np.int64))
    blocks, threads = _blocks_grid(*x.shape, block)
    group_abs_max_kernel[blocks, threads](x, block, out, bad)
    return int(bad.copy_to_host()[0])


def channel_abs_max(x, out):
    bad = cuda.to_device(np.zeros(1, np.int64))
    blocks, threads = base._small_grid(x.shape[1])
    channel_abs_max_kernel[blocks, threads](x, out, bad)
    return int(bad.copy_to_host()[0])


def fp8_scales(amax, fp8_max, out):
    blocks, threads = base._small_grid(amax.size)
    fp8_scales_kernel[blocks, threads](amax, fp8_max, out)


def fp8_quantize(x, scales, inner, block, fmt, fp8_max, codes, values, write_codes,
                 write_values):
    blocks, threads = _grid(x.size)
    fp8_quantize_kernel[blocks, threads](x, scales, inner, block, fmt, fp8_max, codes, values,
                                         write_codes, write_values)


def fp8_dequantize(codes, scales, inner, block, fmt, out):
    blocks, threads = _grid(codes.size)
    fp8_dequantize_kernel[blocks, threads](codes, scales, inner, block, fmt, out)


# --------------------------------------------------------------------------- arrays
def as_input(x, allow_float64):
    """``(array, shape)``: a C-contiguous float32 (or float64) device array of ``x``."""
    d = base._device(x)
    dtype = np.dtype(d.dtype)
    if not dtype.isnative:
        raise TypeError(f"device arrays must have the machine's byte order; got {dtype}")
    return d, dtype


def contiguous(d, dtype=None, axes=None):
    """``d`` as a C-contiguous device array of ``dtype`` with axes ``axes`` (copy if needed)."""
    info = base._info(d)
    same = (dtype is None or np.dtype(dtype) == info.dtype) and (
        axes is None or tuple(axes) == tuple(range(len(info.shape))))
    if same and info.strides == base._c_strides(info.shape, info.dtype.itemsize):
        return d
    return base._contiguous_copy(info, dtype, axes)


def empty(shape, dtype, like):
    return base.empty(shape, dtype, like)


def wrap(a, like):
    return base.wrap(a, like)


def is_output_usable(out):
    return base._device(out)
