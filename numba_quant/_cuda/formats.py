"""CUDA kernels of the low-precision float formats, and their launches.

The kernels call the same scalar reference as the CPU kernels
(:mod:`numba_quant._reference.formats`).  Element-wise kernels (conversions, FP8 scaling)
give consecutive threads consecutive elements, so loads and stores coalesce; the block
kernels (MX, NVFP4, per-block maxima) give each thread whole blocks of 16 to 128
contiguous elements, a grid-stride loop over blocks.  Maxima over a whole tensor combine
per-thread maxima with one integer atomic max each on the float bits (magnitudes are
non-negative, so their bits order like the values, NaN above infinity).

Imported only when a GPU array arrives; :mod:`numba_quant._cuda.primitives` registers
the shared primitives, this module the bit casts.
"""
import numpy as np
from numba import cuda

from numba_quant._cuda import arrays
from numba_quant._cuda import launch
from numba_quant._cuda import primitives as _cuda_primitives  # noqa: F401  (CUDA primitives before any kernel)
from numba_quant._reference import bits as _primitives_float
from numba_quant._reference import formats as ref

SIMULATOR = arrays.SIMULATOR


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
# The per-block steps shared with the CPU kernels take arrays.  A real GPU compiles them
# as device functions; the simulator passes its own array objects, which compiled CPU
# code cannot take, so there the kernels call their Python bodies.
if SIMULATOR:
    _quantize_blocks = ref.quantize_blocks_of_row.py_func
    _dequantize_blocks = ref.dequantize_blocks_of_row.py_func
else:
    _quantize_blocks = ref.quantize_blocks_of_row
    _dequantize_blocks = ref.dequantize_blocks_of_row
@cuda.jit
def encode_kernel(x, fmt, saturate, packed, out):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < out.size:
        if packed:
            out[i] = (ref.encode(x[2 * i], fmt, saturate)
                      | (ref.encode(x[2 * i + 1], fmt, saturate) << 4))
        else:
            out[i] = ref.encode(x[i], fmt, saturate)
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
        out[i] = ref.decode_f32(np.int64(c), fmt)
        i += stride


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
            if not (abs(v) <= np.float32(ref.FLT_MAX)):
                count += 1
        out[r, b - r * nb] = m
        if count:
            cuda.atomic.add(bad, 0, count)
        b += stride


@cuda.jit
def quantize_blocks_kernel(kind, x, block, fmt, mode, emax, mbits, elem_max, propagate, pts,
                           byte_scales, float_scales, codes, values, write_codes, write_values,
                           bad):
    """One thread per block (grid-stride), each running ``ref.quantize_blocks_of_row``
    on its block."""
    rows, k = x.shape
    nb = (k + block - 1) // block
    inv_pts = np.float32(np.float32(1) / pts)
    b = cuda.grid(1)
    stride = cuda.gridsize(1)
    while b < rows * nb:
        r = b // nb
        c = b - r * nb
        if _quantize_blocks(kind, x, r, c, c + 1, block, fmt, mode, emax, mbits, elem_max,
                            propagate, pts, inv_pts, byte_scales, float_scales, codes,
                            values, write_codes, write_values):
            cuda.atomic.add(bad, 0, 1)
        b += stride


@cuda.jit
def dequantize_blocks_kernel(kind, byte_scales, float_scales, codes, block, fmt, pts, out):
    rows, k = codes.shape
    nb = (k + block - 1) // block
    b = cuda.grid(1)
    stride = cuda.gridsize(1)
    while b < rows * nb:
        r = b // nb
        c = b - r * nb
        _dequantize_blocks(kind, byte_scales, float_scales, codes, r, c, c + 1, block, fmt,
                           pts, out)
        b += stride


# --------------------------------------------------------------------------- launches
def _blocks_grid(rows, k, block):
    return launch.grid(rows * (-(-k // block)))


def encode(x, fmt, saturate, packed, out):
    blocks, threads = launch.grid(out.size)
    encode_kernel[blocks, threads](x, fmt, saturate, packed, out)


def decode(codes, fmt, packed, out):
    blocks, threads = launch.grid(out.size)
    decode_kernel[blocks, threads](codes, fmt, packed, out)


def group_abs_max(x, block, out):
    bad = cuda.to_device(np.zeros(1, np.int64))
    blocks, threads = _blocks_grid(*x.shape, block)
    group_abs_max_kernel[blocks, threads](x, block, out, bad)
    return int(bad.copy_to_host()[0])


def quantize_blocks(kind, x, block, fmt, mode, emax, mbits, elem_max, propagate, pts,
                    byte_scales, float_scales, codes, values, write_codes, write_values):
    # FP8 (given scales) writes codes only: there is no fused FP8 fake quantization.
    assert not (kind == ref.FP8 and write_values)
    bad = cuda.to_device(np.zeros(1, np.int64))
    blocks, threads = _blocks_grid(*x.shape, block)
    quantize_blocks_kernel[blocks, threads](kind, x, block, fmt, mode, emax, mbits,
                                            float(elem_max), propagate, np.float32(pts),
                                            byte_scales, float_scales, codes, values,
                                            write_codes, write_values, bad)
    return int(bad.copy_to_host()[0])


def dequantize_blocks(kind, byte_scales, float_scales, codes, block, fmt, pts, out):
    blocks, threads = _blocks_grid(*codes.shape, block)
    dequantize_blocks_kernel[blocks, threads](kind, byte_scales, float_scales, codes, block,
                                              fmt, np.float32(pts), out)


def fp8_scales(amax, fp8_max):
    """Scales (float32, host) of the maxima ``amax`` (float32, host): few values, on the
    host with the CPU's compiled formula."""
    from numba_quant._cpu import formats as _cpu_float
    return _cpu_float.fp8_scales(amax, fp8_max)


# --------------------------------------------------------------------------- arrays


# Elements sharing one materialised float scale in FP8 per-tensor and per-channel
# scaling (a thread's run in the block kernel).
SCALE_RUN = 32


def scale_run():
    return SCALE_RUN
