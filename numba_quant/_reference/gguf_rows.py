"""The checks around each GGUF row, shared by the CPU and CUDA kernels, and the bound of
their row functions' inner loops (:func:`trips`).

ggml quantizes whatever it is given: a NaN or infinity turns silently into finite codes,
and a block whose scale overflows float16 silently into an infinite scale.  The kernels
of both devices therefore test each row before quantizing it (:func:`finite_row`) and
each quantized row after (:func:`f16_overflow`, :func:`bf16_overflow`), and report the
row's status for the public layer to refuse.
"""
import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._reference.bits import bits_from_f32

_EXPONENT = np.uint32(0x7F800000)   # a float32's exponent field

# The types whose quantizers read the whole row when they use an importance matrix (the
# weights take the row's mean square, ggml's sigma2 over n_per_row): their rows cannot be
# split into blocks quantized apart.  Every other type quantizes each block (256 values:
# each super-block) on its own, so a row function given a run of whole blocks (and the
# importance weights of those columns) writes those blocks' bytes.
WHOLE_ROW_WITH_IMATRIX = ("Q4_0", "Q4_1", "Q5_0", "Q5_1")


@njit(cache=True, inline="always")
def trips(a, n):
    """``n`` (at most ``a.size``) as an unsigned loop bound the compiler cannot fold, for
    the row functions' inner loops over a block, which index the whole row at
    ``np.uint64(start) + j``.  A loop of a known 16 or 32 trips is unrolled into scalar
    code, one of a run-time length vectorises; an unsigned index skips the check for a
    negative one; and no view is made per block (a view counts a reference to its
    array, an atomic operation that stalls the stores in flight: about a quarter of
    the samples of a Q4_1 row function in a profile)."""
    return np.uint64(min(n, a.size))


@njit(cache=True)
def finite_row(x):
    """True when every value of the float32 row ``x`` is finite: no exponent field all
    ones, found as the largest exponent field of the row (an integer maximum, which
    vectorises; a loop that stops at the first bad value does not)."""
    top = np.uint32(0)
    for j in range(x.size):
        top = max(top, bits_from_f32(x[j]) & _EXPONENT)
    return top != _EXPONENT


@njit(cache=True)
def f16_overflow(row, type_size, fields):
    """True when a float16 field of any block of the quantized ``row`` is infinite.

    ``fields``: the byte offsets of the float16 fields in a block of ``type_size`` bytes.
    An all-ones exponent (bits 2-6 of the high byte) is infinity (a NaN cannot come from
    finite input); found as the largest exponent field, as in :func:`finite_row`."""
    top = 0
    for f in fields:
        for b in range(row.size // type_size):
            top = max(top, row[b * type_size + f + 1] & 0x7C)
    return top == 0x7C


@njit(cache=True)
def bf16_overflow(row):
    """True when a value of the BF16 ``row`` (little-endian pairs of bytes) is infinite:
    an exponent field (bits 0-6 of the high byte, bit 7 of the low) all ones."""
    top = 0
    for j in range(row.size // 2):
        top = max(top, ((row[2 * j + 1] & 0x7F) << 1) | (row[2 * j] >> 7))
    return top == 0xFF
