"""CUDA kernels of block-wise quantization, and their launches for device arrays.

The same driver interface as :mod:`numba_quant._cpu.blocks` (``as_input``, ``view4``,
``run_observe``, ...), for device arrays.  Imported only when a GPU array arrives.

* ``observe``: one thread block per parameter block at a time (grid-stride over blocks).
  Its threads walk the block's elements in C order, so neighbouring threads read
  neighbouring addresses along a contiguous innermost axis (coalesced), reduce min and
  max in shared memory, and thread 0 computes the scale and zero point.  With ``fused``
  the same threads then write the block's codes, reading the block again while it is
  in L2.
* ``quantize`` and ``dequantize``: one element per thread (grid-stride), coalesced.

The arithmetic is :mod:`numba_quant._reference.blocks`, as on the CPU.  Parameters are
small and go through the host (their checks run there anyway).
"""
import numpy as np
from numba import config, cuda

from numba_quant._cuda import primitives  # noqa: F401  (registers the CUDA primitives first)
from numba_quant._cuda import arrays
from numba_quant._reference import blocks as rb
from numba_quant._host import tuning as _tuning
from numba_quant._host import checks as _checks

SIMULATOR = bool(config.ENABLE_CUDASIM)
# Threads per block of the block reduction (shared arrays of this many float64 pairs).
SHARED = 1024


def _register_cuda_bit_casts():
    from numba import types
    from numba.core.extending import overload
    from numba.cuda import libdevice

    @overload(rb.f32_from_bits, target="cuda")
    def _f32_from_bits(bits):
        return lambda bits: libdevice.int_as_float(np.int32(bits))

    @overload(rb.bits_from_f32, target="cuda")
    def _bits_from_f32(v):
        if v == types.float32:
            return lambda v: np.uint32(libdevice.float_as_int(v))
        return None


if not SIMULATOR:
    _register_cuda_bit_casts()


@cuda.jit(device=True, inline=True)
def _split4(k, n1, n2, n3):
    """C-order index ``k`` of a 4-D shape (., n1, n2, n3) as four indices."""
    i3 = k % n3
    t = k // n3
    i2 = t % n2
    t = t // n2
    return t // n1, t % n1, i2, i3


@cuda.jit(device=True, inline=True)
def _span(j, size, length):
    """Start and length, along an axis of ``length``, of block ``j`` of ``size`` (the
    last block of an axis may be shorter)."""
    start = j * size
    return start, min(start + size, length) - start


@cuda.jit(device=True, inline=True)
def _block_spans(k, shape, block, g1, g2, g3):
    """``(a0, w0, a1, w1, a2, w2, a3, w3)``: start and width along each axis of ``shape``
    of block ``k`` (C order over a grid of ``(., g1, g2, g3)`` blocks of ``block``)."""
    j0, j1, j2, j3 = _split4(k, g1, g2, g3)
    a0, w0 = _span(j0, block[0], shape[0])
    a1, w1 = _span(j1, block[1], shape[1])
    a2, w2 = _span(j2, block[2], shape[2])
    a3, w3 = _span(j3, block[3], shape[3])
    return a0, w0, a1, w1, a2, w2, a3, w3


@cuda.jit(device=True, inline=True)
def _element_and_block(k, shape, block):
    """Element ``k`` (C order) of a 4-D ``shape``: its four indices, then the four grid
    indices of its ``block``."""
    i0, i1, i2, i3 = _split4(k, shape[1], shape[2], shape[3])
    return i0, i1, i2, i3, i0 // block[0], i1 // block[1], i2 // block[2], i3 // block[3]


@cuda.jit
def observe(x, xfmt, block, mapping, quant_min, quant_max, sym_zero_point, eps, afmt, sfmt,
            pfmt, scale, zero_point, codes, fused, bad):
    lo_sh = cuda.shared.array(SHARED, np.float64)
    hi_sh = cuda.shared.array(SHARED, np.float64)
    par_sh = cuda.shared.array(2, np.float64)
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    d0, d1, d2, d3 = x.shape
    b0, b1, b2, b3 = block
    g0, g1, g2, g3 = scale.shape
    n = g0 * g1 * g2 * g3
    for k in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        j0, j1, j2, j3 = _split4(k, g1, g2, g3)   # (the parameters' indices, below)
        a0, w0 = _span(j0, b0, d0)
        a1, w1 = _span(j1, b1, d1)
        a2, w2 = _span(j2, b2, d2)
        a3, w3 = _span(j3, b3, d3)
        count = w0 * w1 * w2 * w3
        lo = np.float64(np.inf)
        hi = np.float64(-np.inf)
        for t in range(tid, count, nthreads):
            i0, i1, i2, i3 = _split4(t, w1, w2, w3)
            v = np.float64(rb.load_value(x[a0 + i0, a1 + i1, a2 + i2, a3 + i3], xfmt))
            lo = rb.nan_min(lo, v)
            hi = rb.nan_max(hi, v)
        lo_sh[tid] = lo
        hi_sh[tid] = hi
        cuda.syncthreads()
        step = nthreads // 2
        while step > 0:
            if tid < step:
                lo_sh[tid] = rb.nan_min(lo_sh[tid], lo_sh[tid + step])
                hi_sh[tid] = rb.nan_max(hi_sh[tid], hi_sh[tid + step])
            cuda.syncthreads()
            step //= 2
        if tid == 0:
            blo = type(eps)(lo_sh[0])
            bhi = type(eps)(hi_sh[0])
            if blo - blo != 0 or bhi - bhi != 0:
                cuda.atomic.add(bad, 0, 1)
                s = eps
                z = type(eps)(sym_zero_point)
            else:
                s, z = rb.block_qparams(blo, bhi, mapping, quant_min, quant_max,
                                        sym_zero_point, eps, afmt)
                s = type(eps)(rb.round_to(type(eps)(s), sfmt))
                z = type(eps)(z)
            scale[j0, j1, j2, j3] = s
            zero_point[j0, j1, j2, j3] = np.int32(z)
            par_sh[0] = s
            par_sh[1] = z
        cuda.syncthreads()
        if fused:
            s = type(eps)(par_sh[0])
            z = type(eps)(par_sh[1])
            recip = type(eps)(rb.reciprocal(s, sfmt))
            for t in range(tid, count, nthreads):
                i0, i1, i2, i3 = _split4(t, w1, w2, w3)
                v = type(eps)(rb.load_value(x[a0 + i0, a1 + i1, a2 + i2, a3 + i3], xfmt))
                codes[a0 + i0, a1 + i1, a2 + i2, a3 + i3] = rb.code_of(
                    v, recip, z, quant_min, quant_max, pfmt)
        cuda.syncthreads()


@cuda.jit
def quantize(x, xfmt, block, scale, sfmt, zero_point, quant_min, quant_max, pfmt, codes,
             nan):
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        i0, i1, i2, i3, j0, j1, j2, j3 = _element_and_block(k, x.shape, block)
        s = scale[j0, j1, j2, j3]
        recip = type(s)(rb.reciprocal(s, sfmt))
        z = type(s)(zero_point[j0, j1, j2, j3])
        v = type(s)(rb.load_value(x[i0, i1, i2, i3], xfmt))
        if v != v:
            cuda.atomic.add(nan, 0, 1)
        codes[i0, i1, i2, i3] = rb.code_of(v, recip, z, quant_min, quant_max, pfmt)


@cuda.jit
def dequantize(codes, block, scale, zero_point, quant_min, quant_max, ofmt, pfmt, out,
               outside):
    for k in range(cuda.grid(1), codes.size, cuda.gridsize(1)):
        i0, i1, i2, i3, j0, j1, j2, j3 = _element_and_block(k, codes.shape, block)
        c = codes[i0, i1, i2, i3]
        if c < quant_min or c > quant_max:
            cuda.atomic.add(outside, 0, 1)
        v = rb.value_of(c, zero_point[j0, j1, j2, j3], scale[j0, j1, j2, j3], ofmt, pfmt)
        out[i0, i1, i2, i3] = rb.store_value(v, ofmt, out[i0, i1, i2, i3])


# Under the simulator the compiled reference functions return Python floats (float64):
# the kernels cast every result back to the compute type T (type(eps), type(s)), which
# on a GPU changes nothing (the values are T's already).


# --------------------------------------------------------------------------- host side
def _device_array(x):
    return arrays.device(x)


def as_input(x):
    """``(device array, kind)``: bfloat16/float16 as uint16 views of the same memory."""
    d = _device_array(x)
    kind = _checks.block_input_kind(d.dtype)
    if not d.dtype.isnative:
        raise TypeError(f"device arrays must have the machine's byte order; got {d.dtype}")
    if kind in ("bfloat16", "float16"):
        d = bits_view(d)
    return d, kind


def as_codes(codes):
    d = _device_array(codes)
    if d.dtype.kind not in "iu":
        raise TypeError(f"codes must be integers; got dtype {d.dtype}")
    return d


def bits_view(d):
    """A 16-bit float device array as uint16 (same memory)."""
    info = arrays.info(_device_array(d))
    return arrays.view(info.ptr, info.shape, info.strides, np.uint16, info.owner)


def cast_params(values, dtype, shape, like):
    """Kernel parameters in the caller's dtype and shape, on the device (through the
    host: they are one value per block)."""
    host = np.asarray(values.copy_to_host()).astype(dtype).reshape(shape)
    return cuda.to_device(host)


def _threads():
    t = max(1, min(int(_tuning.LAUNCH["threads"]), SHARED))
    return 1 << (t.bit_length() - 1)


def _blocks(n, per_block):
    return max(1, min(int(_tuning.LAUNCH["max_blocks"]), -(-n // per_block)))


def run_observe(x4, xfmt, block4, mapping, qmin, qmax, sym_zp, eps, afmt, sfmt, pfmt,
                scale4, zp4, codes4):
    fused = codes4 is not None
    if codes4 is None:
        codes4 = cuda.device_array((1, 1, 1, 1), np.uint8)
    bad = cuda.to_device(np.zeros(1, np.int64))
    threads = _threads()
    blocks = _blocks(scale4.size, 1)
    observe[blocks, threads](x4, xfmt, block4, mapping, qmin, qmax, sym_zp, eps, afmt, sfmt,
                             pfmt, scale4, zp4, codes4, fused, bad)
    return int(bad.copy_to_host()[0])


def run_quantize(x4, xfmt, block4, scale4, sfmt, zp4, qmin, qmax, pfmt, codes4):
    nan = cuda.to_device(np.zeros(1, np.int64))
    threads = _threads()
    quantize[_blocks(x4.size, threads * _tuning.UNROLL), threads](
        x4, xfmt, block4, scale4, sfmt, zp4, qmin, qmax, pfmt, codes4, nan)
    return int(nan.copy_to_host()[0])


def run_dequantize(codes4, block4, scale4, zp4, qmin, qmax, ofmt, pfmt, out4):
    outside = cuda.to_device(np.zeros(1, np.int64))
    threads = _threads()
    dequantize[_blocks(codes4.size, threads * _tuning.UNROLL), threads](
        codes4, block4, scale4, zp4, qmin, qmax, ofmt, pfmt, out4, outside)
    return int(outside.copy_to_host()[0])
