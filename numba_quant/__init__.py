"""numba_quant: quantization parameters and quantized arrays, exact and fast, on CPU and GPU.

The functions follow OneFlow's quantization operators (``MinMaxObserver``,
``MovingAverageMinMaxObserver``, ``fake_quantization``, ``quantization``) value for value.
numpy arrays run on parallel CPU kernels; GPU arrays (CuPy, Numba device arrays, PyTorch
CUDA tensors) run on CUDA kernels and the results stay on the GPU.
"""
from numba_quant.fake_quant import (
    FakeQuantization,
    Quantization,
    dequantize,
    fake_quantization,
    quantization,
    quantize,
)
from numba_quant.moving_average import (
    MovingAverageMinMaxObserver,
    moving_average_min_max_observer,
)
from numba_quant.observer import MinMaxObserver, min_max_observer
from numba_quant.float8 import from_bits, from_float8, to_bits, to_float8
from numba_quant.mx import from_mx, mx_fake_quantize, to_mx
from numba_quant.nvfp4 import from_nvfp4, nvfp4_fake_quantize, to_nvfp4

__version__ = "0.1.0"

__all__ = [
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
]
