"""The backend interface: one set of names, on both devices.

The dispatcher hands the public functions a ``Backend`` whose capabilities are the
modules of the same name in ``numba_quant/_cpu`` and ``numba_quant/_cuda``.  Every
operation named here must exist on both (the CUDA one imported in the simulator here);
a function the public layer calls on one device only would break the other.
"""
import importlib

import numpy as np
import pytest

from numba_quant import _dispatch

INTERFACE = {
    "arrays": ("as_output", "contiguous", "copy_into", "empty", "from_host", "placeholder",
               "to_host", "view4", "wrap"),
    "channels": ("as_array", "as_codes", "as_state", "channel_minmax", "code_params",
                 "count_nonfinite", "moving_observe", "observe", "parameter_values",
                 "quantize_map", "shares_memory", "store"),
    "blocks": ("as_codes", "as_input", "bits_view", "cast_params", "run_dequantize",
               "run_observe", "run_quantize"),
    "blockwise": ("native", "overlaps_differently", "run_map", "run_minmax", "run_observe"),
    "formats": ("decode", "dequantize_blocks", "encode", "fp8_scales", "group_abs_max",
                "quantize_blocks", "scale_run"),
    "hist": ("block_histograms", "channel_histograms"),
    "gguf": ("dequantize", "quantize", "source"),
}


def test_interface_names_every_capability():
    assert set(INTERFACE) == set(_dispatch.CAPABILITIES) | set(_dispatch.LAZY)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("capability", sorted(INTERFACE))
def test_backend_has_the_interface(device, capability):
    module = importlib.import_module(f"numba_quant._{device}.{capability}")
    missing = [n for n in INTERFACE[capability] if not callable(getattr(module, n, None))]
    assert not missing, f"numba_quant._{device}.{capability} lacks {missing}"


@pytest.mark.gpu
def test_dispatcher_picks_the_device_and_rejects_mixing():
    from numba import cuda
    host = np.zeros(3, np.float32)
    assert _dispatch.backend(host).device == "cpu"
    assert _dispatch.backend([1.0, 2.0]).device == "cpu"
    assert _dispatch.backend(host, 2.0, None).device == "cpu"
    device = cuda.to_device(host)
    assert _dispatch.backend(device).device == "cuda"
    with pytest.raises(ValueError, match="same device"):
        _dispatch.backend(host, device)
    with pytest.raises(ValueError, match="same device"):
        _dispatch.backend(device, host)
    assert _dispatch.backend(host) is _dispatch.cpu()
