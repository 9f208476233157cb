"""CPU kernels of block-wise quantization: ``@njit(parallel=True)`` loops over 4-D views.

Every kernel runs one parallel loop over the blocks of a 4-D view (see
:mod:`numba_quant._blocks_plan`); a block is reduced (and quantized) by one thread, its
innermost axis walked as a contiguous run where the memory is contiguous.  The
arithmetic per block and per element comes from :mod:`numba_quant._reference_blocks`.
"""
import numpy as np
import numba
from numba import njit, prange

from numba_quant import _reference_blocks as rb
from numba_quant import _tuning
from numba_quant._cpu import _one_at_a_time
from numba_quant._cpu_kernels import _index, _parallel_and_serial, maximum, minimum


@njit(cache=True, inline="always")
def _block_origin(k, grid, block):
    """Index ranges ``(start, stop)`` per axis of block number ``k`` (C order over grid)."""
    g0, g1, g2, g3 = grid
    j3 = k % g3
    t = k // g3
    j2 = t % g2
    t = t // g2
    j1 = t % g1
    j0 = t // g1
    return j0, j1, j2, j3


@njit(cache=True, inline="always")
def _bounds(j, b, d):
    s = j * b
    return s, min(s + b, d)


@njit(cache=True, inline="always")
def _block_minmax(x, xfmt, a0, e0, a1, e1, a2, e2, a3, e3):
    """(min, max) of one block, NaN-propagating (LLVM minimum/maximum vectorise)."""
    first = rb.load(x[a0, a1, a2, a3], xfmt)
    lo = first
    hi = first
    for i0 in range(a0, e0):
        for i1 in range(a1, e1):
            for i2 in range(a2, e2):
                row = x[i0, i1, i2]
                for i3 in range(_index(a3), _index(e3)):
                    v = rb.load(row[i3], xfmt)
                    lo = minimum(lo, v)
                    hi = maximum(hi, v)
    return lo, hi


@njit(cache=True, inline="always")
def _quantize_block(x, xfmt, codes, a0, e0, a1, e1, a2, e2, a3, e3, recip, z, quant_min,
                    quant_max, pfmt):
    """Codes of one block; returns its count of NaN inputs.

    A product in the compute type with a finite reciprocal (every float32 and float64
    case but tiny user scales) takes a loop free of format rounding, which vectorises;
    a bfloat16 product rounds with bit operations.
    """
    nan = 0
    lowest = type(z)(quant_min)
    highest = type(z)(quant_max)
    finite = recip - recip == 0
    fast = pfmt == rb.NATIVE and finite
    fast_bf16 = pfmt == rb.BF16 and finite
    for i0 in range(a0, e0):
        for i1 in range(a1, e1):
            for i2 in range(a2, e2):
                row = x[i0, i1, i2]
                out = codes[i0, i1, i2]
                if fast:
                    for i3 in range(_index(a3), _index(e3)):
                        v = rb.load(row[i3], xfmt)
                        nan += v != v
                        out[i3] = rb.code_of_native(v, recip, z, lowest, highest)
                elif fast_bf16:
                    for i3 in range(_index(a3), _index(e3)):
                        v = rb.load(row[i3], xfmt)
                        nan += v != v
                        out[i3] = rb.code_of_bf16(v, recip, z, lowest, highest)
                else:
                    for i3 in range(_index(a3), _index(e3)):
                        v = rb.load(row[i3], xfmt)
                        nan += v != v
                        out[i3] = rb.code_of(v, recip, z, quant_min, quant_max, pfmt)
    return nan


def _observe_impl(x, xfmt, block, mapping, quant_min, quant_max, sym_zero_point, eps, afmt, sfmt,
            pfmt, scale, zero_point, codes, fused):
    """Scale and zero point of every block, and with ``fused`` its codes in the same pass.

    ``scale`` (compute type T) and ``zero_point`` (int32) are the 4-D parameter grid;
    ``codes`` has x's 4-D shape (ignored unless ``fused``).  Returns the number of blocks
    holding NaN or ±inf (their parameters are meaningless; the caller raises).
    """
    d0, d1, d2, d3 = x.shape
    b0, b1, b2, b3 = block
    grid = scale.shape
    n = grid[0] * grid[1] * grid[2] * grid[3]
    bad = 0
    for k in prange(n):
        j0, j1, j2, j3 = _block_origin(k, grid, block)
        a0, e0 = _bounds(j0, b0, d0)
        a1, e1 = _bounds(j1, b1, d1)
        a2, e2 = _bounds(j2, b2, d2)
        a3, e3 = _bounds(j3, b3, d3)
        lo, hi = _block_minmax(x, xfmt, a0, e0, a1, e1, a2, e2, a3, e3)
        lo = type(eps)(lo)
        hi = type(eps)(hi)
        if lo - lo != 0 or hi - hi != 0:
            bad += 1
            scale[j0, j1, j2, j3] = eps
            zero_point[j0, j1, j2, j3] = np.int32(sym_zero_point)
        else:
            s, z = rb.block_qparams(lo, hi, mapping, quant_min, quant_max, sym_zero_point,
                                    eps, afmt)
            s = rb.round_to(s, sfmt)
            scale[j0, j1, j2, j3] = s
            zero_point[j0, j1, j2, j3] = np.int32(z)
            if fused:
                _quantize_block(x, xfmt, codes, a0, e0, a1, e1, a2, e2, a3, e3,
                                rb.reciprocal(s, sfmt), z, quant_min, quant_max, pfmt)
    return bad


def _quantize_impl(x, xfmt, block, scale, sfmt, zero_point, quant_min, quant_max, pfmt, codes):
    """Codes of every element with its block's parameters; returns the count of NaN inputs."""
    d0, d1, d2, d3 = x.shape
    b0, b1, b2, b3 = block
    grid = scale.shape
    n = grid[0] * grid[1] * grid[2] * grid[3]
    nan = 0
    for k in prange(n):
        j0, j1, j2, j3 = _block_origin(k, grid, block)
        a0, e0 = _bounds(j0, b0, d0)
        a1, e1 = _bounds(j1, b1, d1)
        a2, e2 = _bounds(j2, b2, d2)
        a3, e3 = _bounds(j3, b3, d3)
        recip = rb.reciprocal(scale[j0, j1, j2, j3], sfmt)
        z = type(recip)(zero_point[j0, j1, j2, j3])
        nan += _quantize_block(x, xfmt, codes, a0, e0, a1, e1, a2, e2, a3, e3, recip, z,
                               quant_min, quant_max, pfmt)
    return nan


def _dequantize_impl(codes, block, scale, zero_point, quant_min, quant_max, ofmt, pfmt, out):
    """Values of every code with its block's parameters; returns the count of codes outside
    [quant_min, quant_max] (their values are computed all the same)."""
    d0, d1, d2, d3 = codes.shape
    b0, b1, b2, b3 = block
    grid = scale.shape
    n = grid[0] * grid[1] * grid[2] * grid[3]
    outside = 0
    for k in prange(n):
        j0, j1, j2, j3 = _block_origin(k, grid, block)
        a0, e0 = _bounds(j0, b0, d0)
        a1, e1 = _bounds(j1, b1, d1)
        a2, e2 = _bounds(j2, b2, d2)
        a3, e3 = _bounds(j3, b3, d3)
        s = scale[j0, j1, j2, j3]
        z = zero_point[j0, j1, j2, j3]
        count = 0
        for i0 in range(a0, e0):
            for i1 in range(a1, e1):
                for i2 in range(a2, e2):
                    row = codes[i0, i1, i2]
                    dst = out[i0, i1, i2]
                    for i3 in range(_index(a3), _index(e3)):
                        c = row[i3]
                        count += (c < quant_min) or (c > quant_max)
                        dst[i3] = rb.store(rb.value_of(c, z, s, ofmt, pfmt), ofmt, dst[i3])
        outside += count
    return outside


observe = _parallel_and_serial(_observe_impl)
quantize = _parallel_and_serial(_quantize_impl)
dequantize = _parallel_and_serial(_dequantize_impl)


# --------------------------------------------------------------------------- host side
def _parallel(a):
    """Run in parallel from PARALLEL_THRESHOLD elements (a parallel region costs more below)."""
    return a.size >= _tuning.PARALLEL_THRESHOLD and numba.get_num_threads() > 1

def as_input(x):
    """``(array, kind)``: x as a native-endian array the kernels read (bfloat16 and
    float16 as their uint16 bit patterns, no copy)."""
    from numba_quant import _checks
    x = np.asarray(x)
    kind = _checks.block_input_kind(x.dtype)
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if kind in ("bfloat16", "float16"):
        x = x.view(np.uint16)
    return x, kind


def to_host(a):
    return np.asarray(a)


def from_host(a, like):
    return np.asarray(a)


def wrap(a, like):
    return a


def empty(shape, dtype, like):
    return np.empty(shape, dtype)


def as_output(out):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array for numpy input; got {type(out).__name__}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    return out


def view4(a, shape4, strides4):
    """The 4-D view of ``a`` planned by :func:`numba_quant._blocks_plan.canonical`."""
    return np.lib.stride_tricks.as_strided(a, shape4, strides4,
                                           writeable=a.flags.writeable)


def contiguous(a):
    return np.ascontiguousarray(a)


def run_observe(x4, xfmt, block4, mapping, qmin, qmax, sym_zp, eps, afmt, sfmt, pfmt,
                scale4, zp4, codes4):
    fused = codes4 is not None
    if codes4 is None:
        codes4 = np.empty((1, 1, 1, 1), np.uint8)
    parallel = _parallel(x4)
    with _one_at_a_time(parallel):
        return observe[parallel](x4, xfmt, block4, mapping, qmin, qmax, sym_zp, eps, afmt,
                                 sfmt, pfmt, scale4, zp4, codes4, fused)


def run_quantize(x4, xfmt, block4, scale4, sfmt, zp4, qmin, qmax, pfmt, codes4):
    parallel = _parallel(x4)
    with _one_at_a_time(parallel):
        return quantize[parallel](x4, xfmt, block4, scale4, sfmt, zp4, qmin, qmax, pfmt, codes4)


def run_dequantize(codes4, block4, scale4, zp4, qmin, qmax, ofmt, pfmt, out4):
    parallel = _parallel(codes4)
    with _one_at_a_time(parallel):
        return dequantize[parallel](codes4, block4, scale4, zp4, qmin, qmax, ofmt, pfmt, out4)


def as_codes(codes):
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"codes must be integers; got dtype {codes.dtype}")
    if not codes.dtype.isnative:
        codes = codes.astype(codes.dtype.newbyteorder("="))
    return codes


def bits_view(a):
    """A float16/bfloat16 array as its uint16 bit patterns (same memory)."""
    return a.view(np.uint16)


def copy_into(target, source):
    target[...] = source.reshape(target.shape) if source.shape != target.shape else source


def cast_params(values, dtype, shape, like):
    """Kernel parameters (compute type or int32, 4-D) in the caller's dtype and shape."""
    return np.asarray(values).astype(dtype).reshape(shape)
