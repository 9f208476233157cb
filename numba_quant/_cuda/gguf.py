"""CUDA kernels of the GGUF types: one thread per row, each with its own scratch.

Each kernel runs the type's row function from the shared reference (the same functions
the CPU kernels run, compiled as device functions), with the row checks of
:mod:`numba_quant._reference.gguf_rows`: a row holding NaN or infinity is not quantized
(status 1), a row whose float16 scale (F16/BF16: a value) came out infinite is flagged
(status 2).  The kernels of a type are made by one factory from its row function and
compiled on first use.  A thread keeps 2,048 floats and 2,048 int32 of scratch in local
memory, what the largest row function (the K-quants' searches over 256 values) needs.

Under the CUDA simulator the kernels run as Python, one simulated thread at a time; the
row functions they call are the compiled CPU ones, given the numpy arrays that the
simulator's in-kernel arrays wrap (compiled code cannot take the simulator's objects).
"""
import numpy as np
from numba import cuda, float32, int32

from numba_quant._cuda import primitives as _cuda_primitives  # noqa: F401  (CUDA primitives before any kernel)
from numba_quant._cuda import arrays
from numba_quant._cuda import chunks
from numba_quant._cuda import launch
from numba_quant._host import checks as _checks
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


_finite_row = _device_function(gguf_rows.finite_row)
_f16_overflow = _device_function(gguf_rows.f16_overflow)
_bf16_overflow = _device_function(gguf_rows.bf16_overflow)


def _named(function, name):
    # Each type's kernel under a name of its own (in profiles and tools/check_ptx.py).
    function.__name__ = function.__qualname__ = name
    return function


def _quantize_kernel(name, row_function):
    """The quantize kernel of a type: ``kernel(x, qw, has_qw, out, status, type_size,
    fields)``, x float32 (rows, n_per_row), qw float32 (n_per_row,) (any float32 row when
    ``has_qw`` is False), out uint8 (rows, row_size), status int8 (rows,) zeroed, fields
    the byte offsets of the float16 fields in a block of ``type_size`` bytes."""
    quantize_row = _device_function(row_function)
    bf16 = name == "BF16"

    def kernel(x, qw, has_qw, out, status, type_size, fields):
        fs = cuda.local.array(GGUF_FSCRATCH, float32)
        ws = cuda.local.array(GGUF_ISCRATCH, int32)
        r = cuda.grid(1)
        stride = cuda.gridsize(1)
        while r < x.shape[0]:
            if _finite_row(x[r]):
                quantize_row(x[r], qw, has_qw, out[r], fs, ws)
                if bf16:
                    overflow = _bf16_overflow(out[r])
                else:
                    overflow = _f16_overflow(out[r], type_size, fields)
                if overflow:
                    status[r] = GGUF_ROW_SCALE_OVERFLOW
            else:
                status[r] = GGUF_ROW_NONFINITE
            r += stride

    return cuda.jit(_named(kernel, f"quantize_{name.lower()}"))


def _dequantize_kernel(name, row_function):
    """The dequantize kernel of a type: ``kernel(data, out)``, data uint8 (rows,
    row_size), out float32 (rows, n_per_row)."""
    dequantize_row = _device_function(row_function)

    def kernel(data, out):
        r = cuda.grid(1)
        stride = cuda.gridsize(1)
        while r < data.shape[0]:
            dequantize_row(data[r], out[r])
            r += stride

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


def quantize(name, rows, bf16_bits, qw, out, type_size, fields):
    """Quantize the 2-D device ``rows`` (from :func:`source`) to the type ``name`` into
    ``out`` (uint8 rows on the device, any GPU array kind); ``qw`` the importance weights
    (float32, on the host) or None.  Returns each row's status (int8, on the host).

    Inputs other than float32 are converted on the device a chunk of rows
    (``DEVICE_WIDEN_CHUNK`` elements) at a time."""
    n_rows, n_per_row = rows.shape
    kernel = KERNELS[name][0]
    target = arrays.device(out)
    weights = cuda.to_device(np.zeros(1, np.float32) if qw is None else qw)
    status = cuda.to_device(np.zeros(n_rows, np.int8))
    fields = cuda.to_device(fields)
    convert = bf16_bits or rows.dtype != np.float32
    step = max(1, _tuning.DEVICE_WIDEN_CHUNK // n_per_row) if convert else n_rows
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        blocks, threads = launch.grid(r1 - r0)
        kernel[blocks, threads](_float32_rows(rows, r0, r1, bf16_bits), weights,
                                qw is not None, target[r0:r1], status[r0:r1],
                                type_size, fields)
    return status.copy_to_host()


def dequantize(name, data, out):
    """The float32 values of the uint8 device rows ``data`` (2-D, from :func:`source`)
    of the type ``name`` into ``out`` (any GPU array kind)."""
    blocks, threads = launch.grid(data.shape[0])
    KERNELS[name][1][blocks, threads](data, arrays.device(out))
