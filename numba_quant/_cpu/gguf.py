"""CPU kernels of the GGUF types: ranges of rows on the kept thread pool, each task with
its own scratch.

One compiled kernel per type and direction (a kernel that took the row function as an
argument could not be cached), each a thin serial loop around the type's row function
from the shared reference, compiled without the GIL.  Serial kernels on the pool rather
than ``prange`` because a parallel kernel is compiled twice over (its loop body as a
separate function, then the kernel around it, each optimizing the whole row function
again): the first call of a type compiles in about half the time, and runs as fast.
The row functions are ``inline="always"`` for the same reason (compiled once, inside
the kernel), so each kernel has its row function's ``error_model`` (the K-quants'
``"numpy"``: a float division by zero gives inf or NaN, as in C).  The quantize kernels
also flag, per row, a non-finite input (status 1) and a float16 scale that came out
infinite (status 2): ggml writes such rows silently; the public module refuses them.
Most kernels test a row before quantizing it; F16 and BF16 look at the output first,
and the legacy types and Q8_0 without an importance matrix learn it from the blocks'
extremes while quantizing (both write the bad row's bytes).
"""
import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._host import torch_arrays
from numba_quant._host import tuning as _tuning
from numba_quant._cpu.threads import over_ranges
from numba_quant._host.codes import GGUF_ROW_NONFINITE, GGUF_ROW_OK, GGUF_ROW_SCALE_OVERFLOW
from numba_quant._host.gguf_types import GGUF_FSCRATCH, GGUF_ISCRATCH
from numba_quant._reference import gguf_iq as iq
from numba_quant._reference import gguf_kquants as kq
from numba_quant._reference import gguf_legacy as lg
from numba_quant._reference import gguf_ternary as tq
from numba_quant._reference.gguf_k_low import K_SCRATCH_PER_BLOCK
from numba_quant._reference.gguf_rows import f16_overflow, finite_row

ROW_OK, ROW_NONFINITE, ROW_SCALE_OVERFLOW = GGUF_ROW_OK, GGUF_ROW_NONFINITE, GGUF_ROW_SCALE_OVERFLOW


@njit(cache=True)
def row_scratch(blocks):
    # Room for the K-quants to search ``blocks`` super-blocks side by side.
    size = max(GGUF_FSCRATCH, GGUF_ISCRATCH, K_SCRATCH_PER_BLOCK * blocks)
    return np.empty(size, np.float32), np.empty(size, np.int32)


@njit(cache=True)
def row_ok(row, i, status):
    # True when row i may be quantized; flags a non-finite one.
    if finite_row(row):
        return True
    status[i] = ROW_NONFINITE
    return False


@njit(cache=True)
def weighted_row_ok(row, has_qw, i, status):
    # The legacy types test a row before quantizing it only with importance weights:
    # their weighted fit does not see a NaN; without weights, the row function reports a
    # non-finite value itself (checked_by_row).
    return not has_qw or row_ok(row, i, status)


@njit(cache=True)
def _after(out, i, status, type_size, fields):
    if f16_overflow(out[i], type_size, fields):
        status[i] = ROW_SCALE_OVERFLOW


# Quantize kernels: x float32 (rows, n_per_row) C-contiguous, qw float32 (n_per_row,)
# (x's first row when has_qw is False), out uint8 (rows, row_size), status int8 (rows,)
# zeroed, fields int64 offsets of the float16 fields in a block of type_size bytes,
# blocks the K-quants' super-blocks per batch (GGUF_CPU_SUPER_BLOCKS); rows r0 .. r1-1.

# F16 and BF16 write a non-finite value exactly where the input has one or a value beyond
# the type's range, so their row functions report a bad output value (found while
# writing), and the input is read again only then: one pass over the floats.

@njit(nogil=True, cache=True)
def quantize_f16(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if not lg.quantize_row_f16(x[i], qw, has_qw, out[i], fs, ws) and row_ok(x[i], i, status):
            status[i] = ROW_SCALE_OVERFLOW


@njit(nogil=True, cache=True)
def quantize_bf16(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if not lg.quantize_row_bf16(x[i], qw, has_qw, out[i], fs, ws) and row_ok(x[i], i, status):
            status[i] = ROW_SCALE_OVERFLOW


@njit(cache=True)
def checked_by_row(finite, out, i, status, type_size, fields):
    # The legacy types and Q8_0 without an importance matrix: the row function said
    # whether the row was finite.
    if finite:
        _after(out, i, status, type_size, fields)
    else:
        status[i] = ROW_NONFINITE


@njit(nogil=True, cache=True)
def quantize_q8_0(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        finite = lg.quantize_row_q8_0(x[i], qw, has_qw, out[i], fs, ws)
        checked_by_row(finite, out, i, status, type_size, fields)


@njit(nogil=True, cache=True)
def quantize_q4_0(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if weighted_row_ok(x[i], has_qw, i, status):
            finite = lg.quantize_row_q4_0(x[i], qw, has_qw, out[i], fs, ws)
            checked_by_row(finite, out, i, status, type_size, fields)


@njit(nogil=True, cache=True)
def quantize_q4_1(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if weighted_row_ok(x[i], has_qw, i, status):
            finite = lg.quantize_row_q4_1(x[i], qw, has_qw, out[i], fs, ws)
            checked_by_row(finite, out, i, status, type_size, fields)


@njit(nogil=True, cache=True)
def quantize_q5_0(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if weighted_row_ok(x[i], has_qw, i, status):
            finite = lg.quantize_row_q5_0(x[i], qw, has_qw, out[i], fs, ws)
            checked_by_row(finite, out, i, status, type_size, fields)


@njit(nogil=True, cache=True)
def quantize_q5_1(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if weighted_row_ok(x[i], has_qw, i, status):
            finite = lg.quantize_row_q5_1(x[i], qw, has_qw, out[i], fs, ws)
            checked_by_row(finite, out, i, status, type_size, fields)


@njit(nogil=True, cache=True)
def quantize_iq4_nl(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if row_ok(x[i], i, status):
            iq.quantize_row_iq4_nl(x[i], qw, has_qw, out[i], fs, ws)
            _after(out, i, status, type_size, fields)


@njit(nogil=True, cache=True)
def quantize_iq4_xs(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if row_ok(x[i], i, status):
            iq.quantize_row_iq4_xs(x[i], qw, has_qw, out[i], fs, ws)
            _after(out, i, status, type_size, fields)


@njit(nogil=True, cache=True)
def quantize_mxfp4(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if row_ok(x[i], i, status):
            iq.quantize_row_mxfp4(x[i], qw, has_qw, out[i], fs, ws)


@njit(nogil=True, cache=True)
def quantize_tq1_0(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if row_ok(x[i], i, status):
            tq.quantize_row_tq1_0(x[i], qw, has_qw, out[i], fs, ws)
            _after(out, i, status, type_size, fields)


@njit(nogil=True, cache=True)
def quantize_tq2_0(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if row_ok(x[i], i, status):
            tq.quantize_row_tq2_0(x[i], qw, has_qw, out[i], fs, ws)
            _after(out, i, status, type_size, fields)


@njit(nogil=True, cache=True, error_model="numpy")
def quantize_q2_k(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if row_ok(x[i], i, status):
            kq.quantize_row_q2_k(x[i], qw, has_qw, out[i], fs, ws)
            _after(out, i, status, type_size, fields)


@njit(nogil=True, cache=True, error_model="numpy")
def quantize_q3_k(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if row_ok(x[i], i, status):
            kq.quantize_row_q3_k(x[i], qw, has_qw, out[i], fs, ws)
            _after(out, i, status, type_size, fields)


@njit(nogil=True, cache=True, error_model="numpy")
def quantize_q4_k(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if row_ok(x[i], i, status):
            kq.quantize_row_q4_k(x[i], qw, has_qw, out[i], fs, ws)
            _after(out, i, status, type_size, fields)


@njit(nogil=True, cache=True, error_model="numpy")
def quantize_q5_k(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if row_ok(x[i], i, status):
            kq.quantize_row_q5_k(x[i], qw, has_qw, out[i], fs, ws)
            _after(out, i, status, type_size, fields)


@njit(nogil=True, cache=True, error_model="numpy")
def quantize_q6_k(x, qw, has_qw, out, status, type_size, fields, blocks, r0, r1):
    fs, ws = row_scratch(blocks)
    for i in range(r0, r1):
        if row_ok(x[i], i, status):
            kq.quantize_row_q6_k(x[i], qw, has_qw, out[i], fs, ws)
            _after(out, i, status, type_size, fields)


# Dequantize kernels: data uint8 (rows, row_size) C-contiguous, out float32
# (rows, n_per_row); rows r0 .. r1-1.

@njit(nogil=True, cache=True)
def dequantize_f16(data, out, r0, r1):
    for i in range(r0, r1):
        lg.dequantize_row_f16(data[i], out[i])


@njit(nogil=True, cache=True)
def dequantize_bf16(data, out, r0, r1):
    for i in range(r0, r1):
        lg.dequantize_row_bf16(data[i], out[i])


@njit(nogil=True, cache=True)
def dequantize_q8_0(data, out, r0, r1):
    for i in range(r0, r1):
        lg.dequantize_row_q8_0(data[i], out[i])


@njit(nogil=True, cache=True)
def dequantize_q4_0(data, out, r0, r1):
    for i in range(r0, r1):
        lg.dequantize_row_q4_0(data[i], out[i])


@njit(nogil=True, cache=True)
def dequantize_q4_1(data, out, r0, r1):
    for i in range(r0, r1):
        lg.dequantize_row_q4_1(data[i], out[i])


@njit(nogil=True, cache=True)
def dequantize_q5_0(data, out, r0, r1):
    for i in range(r0, r1):
        lg.dequantize_row_q5_0(data[i], out[i])


@njit(nogil=True, cache=True)
def dequantize_q5_1(data, out, r0, r1):
    for i in range(r0, r1):
        lg.dequantize_row_q5_1(data[i], out[i])


@njit(nogil=True, cache=True)
def dequantize_iq4_nl(data, out, r0, r1):
    for i in range(r0, r1):
        iq.dequantize_row_iq4_nl(data[i], out[i])


@njit(nogil=True, cache=True)
def dequantize_iq4_xs(data, out, r0, r1):
    for i in range(r0, r1):
        iq.dequantize_row_iq4_xs(data[i], out[i])


@njit(nogil=True, cache=True)
def dequantize_mxfp4(data, out, r0, r1):
    for i in range(r0, r1):
        iq.dequantize_row_mxfp4(data[i], out[i])


@njit(nogil=True, cache=True)
def dequantize_tq1_0(data, out, r0, r1):
    for i in range(r0, r1):
        tq.dequantize_row_tq1_0(data[i], out[i])


@njit(nogil=True, cache=True)
def dequantize_tq2_0(data, out, r0, r1):
    for i in range(r0, r1):
        tq.dequantize_row_tq2_0(data[i], out[i])


@njit(nogil=True, cache=True, error_model="numpy")
def dequantize_q2_k(data, out, r0, r1):
    for i in range(r0, r1):
        kq.dequantize_row_q2_k(data[i], out[i])


@njit(nogil=True, cache=True, error_model="numpy")
def dequantize_q3_k(data, out, r0, r1):
    for i in range(r0, r1):
        kq.dequantize_row_q3_k(data[i], out[i])


@njit(nogil=True, cache=True, error_model="numpy")
def dequantize_q4_k(data, out, r0, r1):
    for i in range(r0, r1):
        kq.dequantize_row_q4_k(data[i], out[i])


@njit(nogil=True, cache=True, error_model="numpy")
def dequantize_q5_k(data, out, r0, r1):
    for i in range(r0, r1):
        kq.dequantize_row_q5_k(data[i], out[i])


@njit(nogil=True, cache=True, error_model="numpy")
def dequantize_q6_k(data, out, r0, r1):
    for i in range(r0, r1):
        kq.dequantize_row_q6_k(data[i], out[i])


# The kernels of each type, by the type's name: (quantize, dequantize).
KERNELS = {
    "F16": (quantize_f16, dequantize_f16),
    "BF16": (quantize_bf16, dequantize_bf16),
    "Q8_0": (quantize_q8_0, dequantize_q8_0),
    "Q4_0": (quantize_q4_0, dequantize_q4_0),
    "Q4_1": (quantize_q4_1, dequantize_q4_1),
    "Q5_0": (quantize_q5_0, dequantize_q5_0),
    "Q5_1": (quantize_q5_1, dequantize_q5_1),
    "IQ4_NL": (quantize_iq4_nl, dequantize_iq4_nl),
    "IQ4_XS": (quantize_iq4_xs, dequantize_iq4_xs),
    "MXFP4": (quantize_mxfp4, dequantize_mxfp4),
    "TQ1_0": (quantize_tq1_0, dequantize_tq1_0),
    "TQ2_0": (quantize_tq2_0, dequantize_tq2_0),
    "Q2_K": (quantize_q2_k, dequantize_q2_k),
    "Q3_K": (quantize_q3_k, dequantize_q3_k),
    "Q4_K": (quantize_q4_k, dequantize_q4_k),
    "Q5_K": (quantize_q5_k, dequantize_q5_k),
    "Q6_K": (quantize_q6_k, dequantize_q6_k),
}


def quantize_rows(name, x, qw, has_qw, out, status, type_size, fields):
    """Quantize the float32 rows ``x`` to the type ``name`` into ``out``, a few ranges of
    rows per thread (each row's status in ``status``)."""
    over_ranges(KERNELS[name][0], x.shape[0], x.size,
                (x, qw, has_qw, out, status, type_size, fields,
                 _tuning.GGUF_CPU_SUPER_BLOCKS))


def dequantize_rows(name, data, out):
    """The float32 values of the rows of bytes ``data`` of the type ``name``."""
    over_ranges(KERNELS[name][1], data.shape[0], out.size, (data, out))


# --------------------------------------------------------------------------- the interface
# (the same functions in numba_quant._cuda.gguf)
def source(x, name):
    """``(a, bf16_bits)``: ``x`` as the numpy array the kernels read, and whether it holds
    bfloat16 bit patterns (uint16) rather than values.  A PyTorch CPU tensor is read over
    its memory; ml_dtypes' bfloat16 is viewed as its bits."""
    if torch_arrays.is_tensor(x):
        if torch_arrays.is_bfloat16(x):
            return torch_arrays.bfloat16_bits(x, name), True
        return torch_arrays.to_numpy(x, name), False
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(x).__name__}")
    if x.dtype.name == "bfloat16" and x.dtype.itemsize == 2:
        return x.view(np.uint16), True
    return x, False


def _float32_rows(rows, r0, r1, bf16_bits):
    part = rows[r0:r1]
    if bf16_bits:
        return (part.astype(np.uint32) << np.uint32(16)).view(np.float32)
    part = np.ascontiguousarray(part, dtype=np.float32)
    return part if part.flags.writeable else part.copy()


def quantize(name, rows, bf16_bits, qw, out, type_size, fields):
    """Quantize the 2-D ``rows`` (from :func:`source`) to the type ``name`` into ``out``
    (uint8 rows); ``qw`` the importance weights (float32, on the host) or None.  Returns
    each row's status (int8, on the host), up to the first chunk of rows with a problem.

    Inputs other than C-contiguous float32 are converted a chunk of rows
    (``WIDEN_CHUNK`` elements) at a time, never as a float32 copy of the whole."""
    n_rows, n_per_row = rows.shape
    status = np.zeros(n_rows, np.int8)
    # Read-only input (a memory-mapped file) is copied a chunk at a time as well: the
    # kernels would otherwise be compiled a second time for read-only arrays.
    direct = (not bf16_bits and rows.dtype == np.float32 and rows.flags.c_contiguous
              and rows.flags.writeable)
    step = n_rows if direct else max(1, _tuning.WIDEN_CHUNK // n_per_row)
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        xf = rows[r0:r1] if direct else _float32_rows(rows, r0, r1, bf16_bits)
        quantize_rows(name, xf, xf[0] if qw is None else qw, qw is not None, out[r0:r1],
                      status[r0:r1], type_size, fields)
        if status[r0:r1].any():
            break
    return status


def dequantize(name, data, out):
    """The float32 values of the uint8 rows ``data`` (2-D, from :func:`source`) of the
    type ``name`` into ``out``."""
    data = np.ascontiguousarray(data)
    if not data.flags.writeable:        # one compiled kernel for both kinds of input
        data = data.copy()
    dequantize_rows(name, data, out)
