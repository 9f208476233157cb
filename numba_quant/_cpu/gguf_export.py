"""CPU kernels of the GGUF export's measured quantization: each row of a tensor read
from the input file goes once through the cache, widened to float32, quantized, decoded
back and compared, and only its bytes and two sums leave the row.

Done as separate passes over chunks of rows (widen, quantize, decode, sum), the types
that quantize in a single pass spend most of an export moving float32 chunks through
memory; these kernels keep one row's floats and decoded values in two row buffers per
task.  Only those types have such a kernel (:data:`MEASURED`); the others, whose block
searches outweigh the passes, are measured with :func:`error_rows` after the chunked
passes, which sums each row the same way (so every route reports the same sums, bit for
bit).

The input rows are uint16 as the file holds them: F16 and BF16 bit patterns, or F32
values as two halves each (low half first, as in a little-endian file), so that one
compiled kernel serves all three.  Widening is exact (F16 by the table of
:mod:`numba_quant._cpu.widen`).
"""
import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._host import tuning as _tuning
from numba_quant._cpu.gguf import ROW_OK, checked_by_row, row_scratch, weighted_row_ok
from numba_quant._cpu.threads import over_ranges
from numba_quant._cpu.widen import F16_TABLE, widen_bf16_row, widen_f16_row
from numba_quant._reference import gguf_legacy as lg

# How the uint16 input holds its values.
STORED_F32, STORED_F16, STORED_BF16 = 0, 1, 2
STORED_KINDS = {"F32": STORED_F32, "F16": STORED_F16, "BF16": STORED_BF16}
# Columns of the per-row sums.
SIGNAL, NOISE = 0, 1


@njit(cache=True)
def _widen_row(src, kind, table, x):
    if kind == STORED_F16:
        widen_f16_row(src, table, x)
    elif kind == STORED_BF16:
        widen_bf16_row(src, x)
    else:
        bits = x.view(np.uint32)
        for j in range(x.size):
            bits[j] = np.uint32(src[2 * j]) | (np.uint32(src[2 * j + 1]) << np.uint32(16))


@njit(cache=True)
def _error_row(x, back):
    # float64 sums of x**2 and (back - x)**2 in four interleaved partial sums, added in a
    # fixed order: vectorised without reassociation, so the result does not depend on
    # the compiler's choices, and the route that decodes after the GPU gives the same.
    n = x.size
    a0 = a1 = a2 = a3 = 0.0
    e0 = e1 = e2 = e3 = 0.0
    for j in range(0, n - n % 4, 4):
        v0, v1, v2, v3 = (np.float64(x[j]), np.float64(x[j + 1]), np.float64(x[j + 2]),
                          np.float64(x[j + 3]))
        d0, d1, d2, d3 = (np.float64(back[j]) - v0, np.float64(back[j + 1]) - v1,
                          np.float64(back[j + 2]) - v2, np.float64(back[j + 3]) - v3)
        a0 += v0 * v0
        a1 += v1 * v1
        a2 += v2 * v2
        a3 += v3 * v3
        e0 += d0 * d0
        e1 += d1 * d1
        e2 += d2 * d2
        e3 += d3 * d3
    for j in range(n - n % 4, n):
        v = np.float64(x[j])
        d = np.float64(back[j]) - v
        a0 += v * v
        e0 += d * d
    return (a0 + a1) + (a2 + a3), (e0 + e1) + (e2 + e3)


@njit(cache=True)
def _measure(x, back, sums, i):
    sums[i, SIGNAL], sums[i, NOISE] = _error_row(x, back)


@njit(nogil=True, cache=True)
def _error_rows(x, back, sums, r0, r1):
    for i in range(r0, r1):
        _measure(x[i], back[i], sums, i)


@njit(cache=True)
def _row_buffers(src, kind):
    n = src.shape[1] // 2 if kind == STORED_F32 else src.shape[1]
    return np.empty(n, np.float32), np.empty(n, np.float32)


@njit(cache=True)
def _next_row(src, kind, table, x, has_qw, i, status):
    # Row i widened into x; False when it is refused before quantizing, as the kernels
    # of numba_quant._cpu.gguf refuse it (Q8_0 has no weights: never).
    _widen_row(src, kind, table, x)
    return weighted_row_ok(x, has_qw, i, status)


@njit(cache=True)
def _written(finite, out, i, status, type_size, fields):
    # Row i's bytes are good (checked_by_row found nothing): go on to measure them.
    checked_by_row(finite, out, i, status, type_size, fields)
    return status[i] == ROW_OK


# Kernels: src uint16 (rows, n_per_row or 2 * n_per_row for F32), read-only; kind one of
# STORED_*; table F16_TABLE; qw, has_qw, out, status, type_size, fields, blocks as the
# quantize kernels of numba_quant._cpu.gguf take them; sums float64 (rows, 2); rows
# r0 .. r1-1, stopping at a range's first bad row (its status says why).

@njit(nogil=True, cache=True)
def measured_q8_0(src, kind, table, qw, has_qw, out, status, type_size, fields, blocks,
                  sums, r0, r1):
    fs, ws = row_scratch(blocks)
    x, back = _row_buffers(src, kind)
    for i in range(r0, r1):
        if not _next_row(src[i], kind, table, x, has_qw, i, status):
            return
        finite = lg.quantize_row_q8_0(x, qw, has_qw, out[i], fs, ws)
        if not _written(finite, out, i, status, type_size, fields):
            return
        lg.dequantize_row_q8_0(out[i], back)
        _measure(x, back, sums, i)


@njit(nogil=True, cache=True)
def measured_q4_0(src, kind, table, qw, has_qw, out, status, type_size, fields, blocks,
                  sums, r0, r1):
    fs, ws = row_scratch(blocks)
    x, back = _row_buffers(src, kind)
    for i in range(r0, r1):
        if not _next_row(src[i], kind, table, x, has_qw, i, status):
            return
        finite = lg.quantize_row_q4_0(x, qw, has_qw, out[i], fs, ws)
        if not _written(finite, out, i, status, type_size, fields):
            return
        lg.dequantize_row_q4_0(out[i], back)
        _measure(x, back, sums, i)


@njit(nogil=True, cache=True)
def measured_q4_1(src, kind, table, qw, has_qw, out, status, type_size, fields, blocks,
                  sums, r0, r1):
    fs, ws = row_scratch(blocks)
    x, back = _row_buffers(src, kind)
    for i in range(r0, r1):
        if not _next_row(src[i], kind, table, x, has_qw, i, status):
            return
        finite = lg.quantize_row_q4_1(x, qw, has_qw, out[i], fs, ws)
        if not _written(finite, out, i, status, type_size, fields):
            return
        lg.dequantize_row_q4_1(out[i], back)
        _measure(x, back, sums, i)


@njit(nogil=True, cache=True)
def measured_q5_0(src, kind, table, qw, has_qw, out, status, type_size, fields, blocks,
                  sums, r0, r1):
    fs, ws = row_scratch(blocks)
    x, back = _row_buffers(src, kind)
    for i in range(r0, r1):
        if not _next_row(src[i], kind, table, x, has_qw, i, status):
            return
        finite = lg.quantize_row_q5_0(x, qw, has_qw, out[i], fs, ws)
        if not _written(finite, out, i, status, type_size, fields):
            return
        lg.dequantize_row_q5_0(out[i], back)
        _measure(x, back, sums, i)


@njit(nogil=True, cache=True)
def measured_q5_1(src, kind, table, qw, has_qw, out, status, type_size, fields, blocks,
                  sums, r0, r1):
    fs, ws = row_scratch(blocks)
    x, back = _row_buffers(src, kind)
    for i in range(r0, r1):
        if not _next_row(src[i], kind, table, x, has_qw, i, status):
            return
        finite = lg.quantize_row_q5_1(x, qw, has_qw, out[i], fs, ws)
        if not _written(finite, out, i, status, type_size, fields):
            return
        lg.dequantize_row_q5_1(out[i], back)
        _measure(x, back, sums, i)


#: The types with a measured single-pass kernel, by name.
MEASURED = {"Q8_0": measured_q8_0, "Q4_0": measured_q4_0, "Q4_1": measured_q4_1,
            "Q5_0": measured_q5_0, "Q5_1": measured_q5_1}


def stored_bits(rows, stored):
    """The rows of a tensor stored as ``stored`` (F32, F16 or BF16; 2-D, C order) as the
    read-only uint16 array the kernels take (one compiled kernel for every input)."""
    bits = np.asarray(rows).view(np.uint16)
    if bits.flags.writeable:
        bits = bits.view()
        bits.flags.writeable = False
    return bits


def quantize_measured(name, bits, stored, qw, out, type_size, fields, sums):
    """Quantize the rows ``bits`` (from :func:`stored_bits`) of a tensor stored as
    ``stored`` (F32, F16 or BF16) to the type ``name`` (one of :data:`MEASURED`) into the
    uint8 rows ``out``, with ``qw`` the importance weights (float32) or None, and write
    into ``sums`` (float64 ``(rows, 2)``) each row's sums of x**2 and of the squared
    error of the values decoded from its bytes.  Returns each row's status (int8); a
    range of rows stops at its first bad row, leaving the rest unset."""
    rows, columns = bits.shape
    n_per_row = columns // 2 if stored == "F32" else columns
    status = np.zeros(rows, np.int8)
    weights = np.zeros(n_per_row, np.float32) if qw is None else qw
    over_ranges(MEASURED[name], rows, rows * n_per_row,
                (bits, STORED_KINDS[stored], F16_TABLE, weights, qw is not None, out, status,
                 type_size, fields, _tuning.GGUF_CPU_SUPER_BLOCKS, sums))
    return status


def error_rows(x, back, sums):
    """Into ``sums`` (float64 ``(rows, 2)``): each row's sums of x**2 and of
    (back - x)**2, summed as the measured kernels sum them, for float32 rows ``x`` and
    their decoded values ``back``."""
    over_ranges(_error_rows, x.shape[0], x.size, (x, back, sums))
