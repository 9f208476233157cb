"""CPU kernels of block-wise quantization, and their launches for numpy arrays.

The kernels see every array as a flat 1-D buffer (from its lowest address) with an
offset and four element strides: the 4-D view of :mod:`numba_quant._host.blocks_plan`.  So
one compiled kernel serves every layout (contiguous, strided, transposed, negative
strides) and, with codes written through an unsigned view of their bytes, every code
type of one width; this keeps first-call compile time low.  The innermost axis is walked
as a contiguous run (a loop that vectorises) where its stride is 1.

Each kernel handles a range of blocks and releases the GIL; large inputs are split into
ranges run by a pool of ``numba.get_num_threads()`` threads (one compiled function per
signature, where ``parallel=True`` would compile a second, slower-to-build one).  The
arithmetic per block and per element comes from :mod:`numba_quant._reference.blocks`.
"""

import numpy as np
from numba import njit
from numba.core.extending import overload

from numba_quant._reference import blocks as rb
from numba_quant._reference.blocks import split4
from numba_quant._host import torch_arrays
from numba_quant._cpu.threads import over_ranges
from numba_quant._cpu.kernels import _index, maximum, minimum
from numba_quant._host import checks as _checks

# Kernel modes.
OBSERVE = 0
OBSERVE_AND_QUANTIZE = 1
QUANTIZE = 2


def _as_code(q, codes):
    """The code ``q`` (an integral float) as the integer stored in ``codes`` (stub)."""
    return int(q)


@overload(_as_code)
def _as_code_cpu(q, codes):
    # Through int32 where the codes are 8 or 16 bits wide: float-to-int32 conversion
    # vectorises, float-to-int64 does not (before AVX-512); storing truncates to the
    # codes' width, which keeps a signed code's bits.
    if codes.dtype.bitwidth <= 16:
        return lambda q, codes: np.int32(q)
    return lambda q, codes: np.int64(q)


@njit(cache=True, inline="always")
def _bounds(j, b, d):
    s = j * b
    return s, min(s + b, d)


@njit(cache=True, inline="always")
def _grid(shape, block):
    """Blocks along axes 1-3 of the 4-D ``shape`` cut into ``block`` (a shorter last
    block where a size does not divide); C order over the grid needs no count along 0."""
    return -(-shape[1] // block[1]), -(-shape[2] // block[2]), -(-shape[3] // block[3])


@njit(cache=True, inline="always")
def _block_box(k, shape, block, grid):
    """``(a0, e0, a1, e1, a2, e2, a3, e3)``: where block ``k`` (C order over ``grid``, from
    :func:`_grid`) starts and ends along each axis of ``shape``."""
    j0, j1, j2, j3 = split4(k, grid[0], grid[1], grid[2])
    a0, e0 = _bounds(j0, block[0], shape[0])
    a1, e1 = _bounds(j1, block[1], shape[1])
    a2, e2 = _bounds(j2, block[2], shape[2])
    a3, e3 = _bounds(j3, block[3], shape[3])
    return a0, e0, a1, e1, a2, e2, a3, e3


@njit(cache=True)
def _block_minmax(x, off, st, xfmt, a0, e0, a1, e1, a2, e2, a3, e3):
    """(min, max) of one block, NaN-propagating (LLVM minimum/maximum vectorise)."""
    s0, s1, s2, s3 = st
    first = rb.load(x[_index(off + a0 * s0 + a1 * s1 + a2 * s2 + a3 * s3)], xfmt)
    lo = first
    hi = first
    for i0 in range(a0, e0):
        for i1 in range(a1, e1):
            for i2 in range(a2, e2):
                base = off + i0 * s0 + i1 * s1 + i2 * s2
                if s3 == 1:
                    for i in range(_index(base + a3), _index(base + e3)):
                        v = rb.load(x[i], xfmt)
                        lo = minimum(lo, v)
                        hi = maximum(hi, v)
                else:
                    for i3 in range(a3, e3):
                        v = rb.load(x[_index(base + i3 * s3)], xfmt)
                        lo = minimum(lo, v)
                        hi = maximum(hi, v)
    return lo, hi


@njit(cache=True)
def _quantize_block(x, off, st, xfmt, codes, coff, cst, a0, e0, a1, e1, a2, e2, a3, e3,
                    recip, z, quant_min, quant_max, pfmt):
    """Codes of one block; returns its count of NaN inputs.

    A product in the compute type with a finite reciprocal (every float32 and float64
    case but tiny user scales) over contiguous runs takes a loop free of format rounding,
    which vectorises; a bfloat16 product rounds with bit operations.
    """
    s0, s1, s2, s3 = st
    c0, c1, c2, c3 = cst
    nan = 0
    finite = recip - recip == 0
    runs = s3 == 1 and c3 == 1
    for i0 in range(a0, e0):
        for i1 in range(a1, e1):
            for i2 in range(a2, e2):
                base = off + i0 * s0 + i1 * s1 + i2 * s2
                cbase = coff + i0 * c0 + i1 * c1 + i2 * c2
                bx = _index(base)
                bc = _index(cbase)
                if runs and finite and pfmt == rb.NATIVE:
                    for i in range(_index(a3), _index(e3)):
                        v = rb.load(x[bx + i], xfmt)
                        nan += v != v
                        codes[bc + i] = _as_code(
                            rb.code_of(v, recip, z, quant_min, quant_max, rb.NATIVE, True), codes)
                elif runs and finite and pfmt == rb.BF16:
                    for i in range(_index(a3), _index(e3)):
                        v = rb.load(x[bx + i], xfmt)
                        nan += v != v
                        codes[bc + i] = _as_code(
                            rb.code_of(v, recip, z, quant_min, quant_max, rb.BF16, True), codes)
                else:
                    for i3 in range(a3, e3):
                        v = rb.load(x[_index(base + i3 * s3)], xfmt)
                        nan += v != v
                        codes[_index(cbase + i3 * c3)] = _as_code(
                            rb.code_of(v, recip, z, quant_min, quant_max, pfmt, False), codes)
    return nan


@njit(cache=True, nogil=True)
def blocks(x, off, st, xfmt, shape, block, k_start, k_stop, mode, mapping, quant_min,
           quant_max, sym_zero_point, eps, afmt, sfmt, pfmt, scale, zero_point, codes, coff,
           cst):
    """Blocks ``k_start..k_stop`` (C order over the parameter grid) of the 4-D view
    ``(x, off, st)`` of ``shape``.

    OBSERVE: scale (compute type T, flat) and zero point (int32) of each block; with
    OBSERVE_AND_QUANTIZE also its codes, in the same pass; QUANTIZE: codes with the given
    scale and zero point.  Codes are written through an unsigned view of their bytes.
    Returns the number of blocks holding NaN or ±inf (observing: their parameters are
    meaningless and the caller raises), or of NaN inputs (QUANTIZE).
    """
    grid = _grid(shape, block)
    bad = 0
    for k in range(k_start, k_stop):
        a0, e0, a1, e1, a2, e2, a3, e3 = _block_box(k, shape, block, grid)
        if mode == QUANTIZE:
            recip = rb.reciprocal(scale[k], sfmt)
            bad += _quantize_block(x, off, st, xfmt, codes, coff, cst, a0, e0, a1, e1, a2,
                                   e2, a3, e3, recip, type(recip)(zero_point[k]), quant_min,
                                   quant_max, pfmt)
            continue
        lo, hi = _block_minmax(x, off, st, xfmt, a0, e0, a1, e1, a2, e2, a3, e3)
        lo = type(eps)(lo)
        hi = type(eps)(hi)
        if lo - lo != 0 or hi - hi != 0:
            bad += 1
            scale[k] = eps
            zero_point[k] = np.int32(sym_zero_point)
            continue
        s, z = rb.block_qparams(lo, hi, mapping, quant_min, quant_max, sym_zero_point, eps,
                                afmt)
        s = rb.round_to(s, sfmt)
        scale[k] = s
        zero_point[k] = np.int32(z)
        if mode == OBSERVE_AND_QUANTIZE:
            _quantize_block(x, off, st, xfmt, codes, coff, cst, a0, e0, a1, e1, a2, e2, a3,
                            e3, rb.reciprocal(s, sfmt), z, quant_min, quant_max, pfmt)
    return bad


@njit(cache=True, nogil=True)
def dequantize_blocks(codes, coff, cst, signed, nbits, shape, block, k_start, k_stop, scale,
                      zero_point, quant_min, quant_max, ofmt, pfmt, out, ooff, ost):
    """Values of the codes of blocks ``k_start..k_stop``; codes are read through an
    unsigned view (``signed``: sign-extended from ``nbits``).  Returns the count of codes
    outside [quant_min, quant_max] (their values are computed all the same)."""
    grid = _grid(shape, block)
    c0, c1, c2, c3 = cst
    o0, o1, o2, o3 = ost
    outside = 0
    for k in range(k_start, k_stop):
        a0, e0, a1, e1, a2, e2, a3, e3 = _block_box(k, shape, block, grid)
        s = scale[k]
        z = zero_point[k]
        for i0 in range(a0, e0):
            for i1 in range(a1, e1):
                for i2 in range(a2, e2):
                    cbase = coff + i0 * c0 + i1 * c1 + i2 * c2
                    obase = ooff + i0 * o0 + i1 * o1 + i2 * o2
                    for i3 in range(a3, e3):
                        c = np.int64(codes[_index(cbase + i3 * c3)])
                        if signed:
                            c -= (c >> (nbits - 1)) << nbits
                        outside += (c < quant_min) or (c > quant_max)
                        o = _index(obase + i3 * o3)
                        out[o] = rb.store(rb.value_of(c, z, s, ofmt, pfmt), ofmt, out[o])
    return outside


# --------------------------------------------------------------------------- host side


def run_blocks(kernel, n_blocks, n_elements, args_before, args_after):
    """``kernel(*args_before, start, stop, *args_after)`` over ranges of blocks on the
    kept pool (:func:`~numba_quant._cpu.threads.over_ranges`); their counts summed."""
    return sum(over_ranges(kernel, n_blocks, n_elements, args_before, args_after))


def flat(a4):
    """``(flat, offset, strides)``: the 1-D buffer of a 4-D view from its lowest address,
    the position of element (0, 0, 0, 0), and the strides in elements."""
    itemsize = a4.itemsize
    if any(s % itemsize for s in a4.strides):
        raise ValueError(f"array strides {a4.strides} are not multiples of the item size "
                         f"{itemsize}")
    st = tuple(s // itemsize for s in a4.strides)
    low = sum((n - 1) * s for n, s in zip(a4.shape, st) if s < 0)
    high = sum((n - 1) * s for n, s in zip(a4.shape, st) if s > 0)
    corner = a4[tuple(slice(n - 1, n) if s < 0 else slice(0, 1)
                      for n, s in zip(a4.shape, st))]
    buf = np.lib.stride_tricks.as_strided(corner, (high - low + 1,), (itemsize,),
                                          writeable=a4.flags.writeable)
    return buf, -low, st


def _unsigned(a):
    return a.view(f"u{a.itemsize}")


def run_observe(x4, xfmt, block4, mapping, qmin, qmax, sym_zp, eps, afmt, sfmt, pfmt,
                scale4, zp4, codes4):
    x, off, st = flat(x4)
    if codes4 is None:
        mode, codes, coff, cst = OBSERVE, np.empty(1, np.uint8), 0, (0, 0, 0, 0)
    else:
        mode = OBSERVE_AND_QUANTIZE
        codes, coff, cst = flat(_unsigned(codes4))
    return run_blocks(blocks, scale4.size, x4.size,
                (x, off, st, xfmt, x4.shape, block4),
                (mode, mapping, qmin, qmax, sym_zp, eps, afmt, sfmt, pfmt,
                 scale4.reshape(-1), zp4.reshape(-1), codes, coff, cst))


def run_quantize(x4, xfmt, block4, scale4, sfmt, zp4, qmin, qmax, pfmt, codes4):
    x, off, st = flat(x4)
    codes, coff, cst = flat(_unsigned(codes4))
    eps = scale4.dtype.type(1)
    return run_blocks(blocks, scale4.size, x4.size,
                (x, off, st, xfmt, x4.shape, block4),
                (QUANTIZE, 0, qmin, qmax, 0, eps, 0, sfmt, pfmt, scale4.reshape(-1),
                 zp4.reshape(-1), codes, coff, cst))


def run_dequantize(codes4, block4, scale4, zp4, qmin, qmax, ofmt, pfmt, out4):
    codes, coff, cst = flat(_unsigned(codes4))
    out, ooff, ost = flat(out4)
    return run_blocks(dequantize_blocks, scale4.size, codes4.size,
                (codes, coff, cst, codes4.dtype.kind == "i", 8 * codes4.itemsize,
                 codes4.shape, block4),
                (scale4.reshape(-1), zp4.reshape(-1), qmin, qmax, ofmt, pfmt, out, ooff, ost))


def as_input(x):
    """``(array, kind)``: x as a native-endian array the kernels read (bfloat16 and
    float16 as their uint16 bit patterns, no copy)."""
    if torch_arrays.is_tensor(x):
        if torch_arrays.is_bfloat16(x):
            return torch_arrays.bfloat16_bits(x), "bfloat16"
        x = torch_arrays.to_numpy(x)
    x = np.asarray(x)
    kind = _checks.block_input_kind(x.dtype)
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if kind in ("bfloat16", "float16"):
        x = x.view(np.uint16)
    return x, kind


def as_codes(codes):
    codes = torch_arrays.to_numpy(codes, "codes") if torch_arrays.is_tensor(codes) \
        else np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"codes must be integers; got dtype {codes.dtype}")
    if not codes.dtype.isnative:
        codes = codes.astype(codes.dtype.newbyteorder("="))
    return codes


def bits_view(a):
    """A float16/bfloat16 array as its uint16 bit patterns (same memory)."""
    return a.view(np.uint16)


def cast_params(values, dtype, shape, like):
    """Kernel parameters (compute type or int32, 4-D) in the caller's dtype and shape."""
    return np.asarray(values).astype(dtype).reshape(shape)
