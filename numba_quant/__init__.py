"""numba_quant: quantization parameters and quantized arrays, exact and fast, on CPU and GPU.

The functions follow OneFlow's quantization operators (``MinMaxObserver``,
``MovingAverageMinMaxObserver``, ``fake_quantization``, ``quantization``) value for value.
numpy arrays run on parallel CPU kernels; GPU arrays (CuPy, Numba device arrays, PyTorch
CUDA tensors) run on CUDA kernels and the results stay on the GPU.  Dask arrays (numpy or
CuPy chunks) give lazy Dask arrays whose tasks run the same kernels chunk by chunk;
``open_dask`` opens an ``.npy`` file as one.
"""
from numba_quant.blocks import (
    choose_qparams_affine,
    choose_qparams_and_quantize_affine,
    dequantize_affine,
    quantize_affine,
)
from numba_quant.calibrate import HistogramObserver, compute_amax, exact_amax_percentile
from numba_quant.fake_quant import (
    FakeQuantization,
    Quantization,
    dequantize,
    fake_quantization,
    quantization,
    quantize,
)
from numba_quant.dask_io import open_dask
from numba_quant.moving_average import (
    MovingAverageMinMaxObserver,
    moving_average_min_max_observer,
)
from numba_quant.packing import pack_int4, unpack_int4
from numba_quant.observer import MinMaxObserver, min_max_observer
from numba_quant.float8 import from_bits, from_float8, to_bits, to_float8
from numba_quant.mx import from_mx, mx_fake_quantize, to_mx
from numba_quant.nvfp4 import from_nvfp4, nvfp4_fake_quantize, to_nvfp4
from numba_quant.reporting.report import Report, report

__version__ = "0.1.0"

__all__ = [
    "choose_qparams_affine",
    "choose_qparams_and_quantize_affine",
    "dequantize_affine",
    "quantize_affine",
    "pack_int4",
    "unpack_int4",

    "HistogramObserver",
    "compute_amax",
    "exact_amax_percentile",
    "FakeQuantization",
    "Quantization",
    "dequantize",
    "fake_quantization",
    "quantization",
    "quantize",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "moving_average_min_max_observer",
    "min_max_observer",
    "open_dask",
    "to_bits",
    "from_bits",
    "to_float8",
    "from_float8",
    "to_mx",
    "from_mx",
    "mx_fake_quantize",
    "to_nvfp4",
    "from_nvfp4",
    "nvfp4_fake_quantize",
    "Report",
    "report",
]
