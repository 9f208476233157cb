#!/usr/bin/env python
"""Versions of the GPU stack and the device that tools/gpu_check.sh runs on."""
import importlib, platform, sys
print("python", sys.version.split()[0], platform.machine())
for name in ("numpy", "numba", "numba_cuda", "llvmlite", "cupy", "torch", "pytest", "hypothesis"):
    try:
        m = importlib.import_module(name)
        print(f"{name:12s} {getattr(m, '__version__', '?')}")
    except Exception as e:
        print(f"{name:12s} not importable: {type(e).__name__}: {e}")
from numba import cuda
print("numba.cuda.is_available():", cuda.is_available())
cuda.detect()
dev = cuda.get_current_device()
print("device", getattr(dev, "name", "?"), "cc", dev.compute_capability)
