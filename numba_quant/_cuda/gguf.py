"""CUDA kernels of the GGUF types: one thread per run of whole blocks, each with its own
scratch.

Each thread runs the type's row function from the shared reference (the same functions
the CPU kernels run, compiled as device functions) on a run of whole blocks of one row:
one block of 256 values (the K-quants, IQ4_XS, the ternary types), 8 blocks of the
32-value types, 256 values of F16/BF16 (``GGUF_GPU_TASK_VALUES``); every type quantizes
each block on its own, except the legacy Q4/Q5 types with an importance matrix, whose
weights take the whole row's mean square: those get one thread per row.  Around each run
the row checks of :mod:`numba_quant._reference.gguf_rows`: a run holding NaN or infinity
is not quantized, a run whose float16 scale (F16/BF16: a value) came out infinite is
flagged; the flags of a row's runs meet in its status word (``cuda.atomic.or_``), a
non-finite input taking precedence as on the CPU.  The kernels of a type are made by one
factory from its row function and compiled on first use.  A thread keeps 2,048 floats and
2,048 int32 of scratch in local memory, more than the largest row function (the
K-quants' search of a super-block, 1,024 of each) needs.

Under the CUDA simulator the kernels run as Python, one simulated thread at a time; the
row functions they call are the compiled CPU ones, given the numpy arrays that the
simulator's in-kernel arrays wrap (compiled code cannot take the simulator's objects).
"""
import numpy as np
from numba import cuda, float32, int32, njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._cuda import primitives as _cuda_primitives  # noqa: F401  (CUDA primitives before any kernel)
from numba_quant._cuda import arrays
from numba_quant._cuda import chunks
from numba_quant._cuda import launch
from numba_quant._host import checks as _checks
from numba_quant._host import gguf_types as _types
from numba_quant._host import tuning as _tuning
from numba_quant._host.codes import GGUF_ROW_NONFINITE, GGUF_ROW_SCALE_OVERFLOW
from numba_quant._host.gguf_types import GGUF_FSCRATCH, GGUF_ISCRATCH
from numba_quant._reference import gguf_iq as iq
from numba_quant._reference import gguf_kquants as kq
from numba_quant._reference import gguf_legacy as lg
from numba_quant._reference import gguf_rows
from numba_quant._reference import gguf_ternary as tq

SIMULATOR = arrays.SIMULATOR

if SIMULATOR:
    from numba.cuda.simulator.cudadrv.devicearray import FakeWithinKernelCUDAArray

    def _plain(a):
        return a._item._ary if isinstance(a, FakeWithinKernelCUDAArray) else a

    def _device_function(function):
        """``function`` callable from a simulated kernel (see the module)."""
        def call(*args):
            return function(*[_plain(a) for a in args])
        return call
else:
    def _device_function(function):
        return function


# A row's status word: a bit per problem found in any of its runs.
_NONFINITE_BIT = 1
_OVERFLOW_BIT = 2

_finite_row = _device_function(gguf_rows.finite_row)
_f16_overflow = _device_function(gguf_rows.f16_overflow)
_bf16_overflow = _device_function(gguf_rows.bf16_overflow)


@njit(cache=True)
def run_count(n_per_row, block_values, run_blocks):
    """Runs of ``run_blocks`` blocks of ``block_values`` values in a row (the last run
    may be shorter): the tasks of one row."""
    return (n_per_row // block_values + run_blocks - 1) // run_blocks


@njit(cache=True)
def run_of(t, runs, run_blocks, block_values, n_per_row):
    """Task ``t``'s row and its values ``[v0, v1)``, ``runs`` tasks per row."""
    r = t // runs
    v0 = (t - r * runs) * run_blocks * block_values
    return r, v0, min(n_per_row, v0 + run_blocks * block_values)


def _named(function, name):
    # Each type's kernel under a name of its own (in profiles and tools/check_ptx.py).
    function.__name__ = function.__qualname__ = name
    return function


def _quantize_kernel(name, row_function):
    """The quantize kernel of a type: ``kernel(x, qw, out, status, type_size, fields,
    block_values, run_blocks)``; x float32 (rows, n_per_row), qw float32 (n_per_row,)
    importance weights (an empty array: none), out uint8 (rows, row_size), status int32
    (rows,) zeroed, fields the byte offsets of the float16 fields in a block of
    ``type_size`` bytes; each thread quantizes a run of ``run_blocks`` blocks of
    ``block_values`` values."""
    quantize_row = _device_function(row_function)
    bf16 = name == "BF16"

    def kernel(x, qw, out, status, type_size, fields, block_values, run_blocks):
        fs = cuda.local.array(GGUF_FSCRATCH, float32)
        ws = cuda.local.array(GGUF_ISCRATCH, int32)
        n_rows, n_per_row = x.shape
        runs = run_count(n_per_row, block_values, run_blocks)
        has_qw = qw.size > 0
        t = cuda.grid(1)
        stride = cuda.gridsize(1)
        while t < n_rows * runs:
            r, v0, v1 = run_of(t, runs, run_blocks, block_values, n_per_row)
            o0 = v0 // block_values * type_size
            o1 = v1 // block_values * type_size
            values = x[r, v0:v1]
            if _finite_row(values):
                weights = qw[v0:v1] if has_qw else qw
                quantize_row(values, weights, has_qw, out[r, o0:o1], fs, ws)
                if bf16:
                    overflow = _bf16_overflow(out[r, o0:o1])
                else:
                    overflow = _f16_overflow(out[r, o0:o1], type_size, fields)
                if overflow:
                    cuda.atomic.or_(status, r, _OVERFLOW_BIT)
            else:
                cuda.atomic.or_(status, r, _NONFINITE_BIT)
            t += stride

    return cuda.jit(_named(kernel, f"quantize_{name.lower()}"))


def _dequantize_kernel(name, row_function):
    """The dequantize kernel of a type: ``kernel(data, out, block_values, type_size,
    run_blocks)``, data uint8 (rows, row_size), out float32 (rows, n_per_row); each thread
    a run of ``run_blocks`` blocks."""
    dequantize_row = _device_function(row_function)

    def kernel(data, out, block_values, type_size, run_blocks):
        n_rows, n_per_row = out.shape
        runs = run_count(n_per_row, block_values, run_blocks)
        t = cuda.grid(1)
        stride = cuda.gridsize(1)
        while t < n_rows * runs:
            r, v0, v1 = run_of(t, runs, run_blocks, block_values, n_per_row)
            dequantize_row(data[r, v0 // block_values * type_size:
                                v1 // block_values * type_size], out[r, v0:v1])
            t += stride

    return cuda.jit(_named(kernel, f"dequantize_{name.lower()}"))


# The row functions of each type, by the type's name: (quantize, dequantize).
_ROW_FUNCTIONS = {
    "F16": (lg.quantize_row_f16, lg.dequantize_row_f16),
    "BF16": (lg.quantize_row_bf16, lg.dequantize_row_bf16),
    "Q8_0": (lg.quantize_row_q8_0, lg.dequantize_row_q8_0),
    "Q4_0": (lg.quantize_row_q4_0, lg.dequantize_row_q4_0),
    "Q4_1": (lg.quantize_row_q4_1, lg.dequantize_row_q4_1),
    "Q5_0": (lg.quantize_row_q5_0, lg.dequantize_row_q5_0),
    "Q5_1": (lg.quantize_row_q5_1, lg.dequantize_row_q5_1),
    "IQ4_NL": (iq.quantize_row_iq4_nl, iq.dequantize_row_iq4_nl),
    "IQ4_XS": (iq.quantize_row_iq4_xs, iq.dequantize_row_iq4_xs),
    "MXFP4": (iq.quantize_row_mxfp4, iq.dequantize_row_mxfp4),
    "TQ1_0": (tq.quantize_row_tq1_0, tq.dequantize_row_tq1_0),
    "TQ2_0": (tq.quantize_row_tq2_0, tq.dequantize_row_tq2_0),
    "Q2_K": (kq.quantize_row_q2_k, kq.dequantize_row_q2_k),
    "Q3_K": (kq.quantize_row_q3_k, kq.dequantize_row_q3_k),
    "Q4_K": (kq.quantize_row_q4_k, kq.dequantize_row_q4_k),
    "Q5_K": (kq.quantize_row_q5_k, kq.dequantize_row_q5_k),
    "Q6_K": (kq.quantize_row_q6_k, kq.dequantize_row_q6_k),
}

# The kernels of each type: (quantize, dequantize); compiled when first launched.
KERNELS = {name: (_quantize_kernel(name, q), _dequantize_kernel(name, d))
           for name, (q, d) in _ROW_FUNCTIONS.items()}


# --------------------------------------------------------------------------- the interface
# (the same functions in numba_quant._cpu.gguf)
def source(x, name):
    """``(a, bf16_bits)``: ``x`` as a C-contiguous Numba device array over its memory
    (copied on the device when it is strided), and whether it holds bfloat16 bit
    patterns (uint16) rather than values."""
    d = arrays.device(x)
    _checks.device_array_dtype(d.dtype)
    bits = chunks.bfloat16_bits(x, d)
    if bits is not None:
        return arrays.contiguous(bits), True
    return arrays.contiguous(d), False


def _float32_rows(rows, r0, r1, bf16_bits):
    part = rows[r0:r1]
    if not bf16_bits and part.dtype == np.float32:
        return part
    return arrays.device(chunks.converted(part, np.float32, bfloat16=bf16_bits))


def _run_blocks(name, block_values, has_qw, n_per_row):
    """Blocks per thread: the whole row where the quantizer reads it whole, else whole
    blocks of about GGUF_GPU_TASK_VALUES values."""
    if has_qw and name in gguf_rows.WHOLE_ROW_WITH_IMATRIX:
        return n_per_row // block_values
    return max(1, _tuning.GGUF_GPU_TASK_VALUES // block_values)


def _launch(n_rows, n_per_row, block_values, run_blocks):
    return launch.grid(n_rows * run_count(n_per_row, block_values, run_blocks))


def quantize(name, rows, bf16_bits, qw, out, type_size, fields):
    """Quantize the 2-D device ``rows`` (from :func:`source`) to the type ``name`` into
    ``out`` (uint8 rows on the device, any GPU array kind); ``qw`` the importance weights
    (float32, on the host) or None.  Returns each row's status (int8, on the host).

    Inputs other than float32 are converted on the device a chunk of rows
    (``DEVICE_WIDEN_CHUNK`` elements) at a time."""
    n_rows, n_per_row = rows.shape
    block_values = _types.lookup(name).block_size
    run_blocks = _run_blocks(name, block_values, qw is not None, n_per_row)
    kernel = KERNELS[name][0]
    target = arrays.device(out)
    weights = cuda.to_device(np.zeros(0, np.float32) if qw is None else qw)
    flags = cuda.to_device(np.zeros(n_rows, np.int32))
    fields = cuda.to_device(fields)
    convert = bf16_bits or rows.dtype != np.float32
    step = max(1, _tuning.DEVICE_WIDEN_CHUNK // n_per_row) if convert else n_rows
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        blocks, threads = _launch(r1 - r0, n_per_row, block_values, run_blocks)
        kernel[blocks, threads](_float32_rows(rows, r0, r1, bf16_bits), weights,
                                target[r0:r1], flags[r0:r1], type_size, fields,
                                block_values, run_blocks)
    flags = flags.copy_to_host()
    # A non-finite input first, as on the CPU (where such a row is not quantized at all).
    return np.where(flags & _NONFINITE_BIT, GGUF_ROW_NONFINITE,
                    np.where(flags & _OVERFLOW_BIT, GGUF_ROW_SCALE_OVERFLOW, 0)).astype(np.int8)


def dequantize(name, data, out):
    """The float32 values of the uint8 device rows ``data`` (2-D, from :func:`source`)
    of the type ``name`` into ``out`` (any GPU array kind)."""
    t = _types.lookup(name)
    target = arrays.device(out)
    n_rows, n_per_row = target.shape
    run_blocks = _run_blocks(name, t.block_size, False, n_per_row)
    blocks, threads = _launch(n_rows, n_per_row, t.block_size, run_blocks)
    KERNELS[name][1][blocks, threads](data, target, t.block_size, t.type_size, run_blocks)
