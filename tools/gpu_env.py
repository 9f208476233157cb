#!/usr/bin/env python
"""Versions of the GPU stack and the device that tools/gpu_check.sh runs on."""
import importlib
import platform
import sys

PACKAGES = ("numpy", "numba", "numba_cuda", "llvmlite", "cupy", "torch", "pytest",
            "hypothesis")


def main():
    print("python", sys.version.split()[0], platform.machine())
    for name in PACKAGES:
        try:
            module = importlib.import_module(name)
            print(f"{name:12s} {getattr(module, '__version__', '?')}")
        except Exception as e:  # noqa: BLE001 - report every package, go on
            print(f"{name:12s} not importable: {type(e).__name__}: {e}")
    from numba import cuda
    print("numba.cuda.is_available():", cuda.is_available())
    cuda.detect()
    dev = cuda.get_current_device()
    print("device", getattr(dev, "name", "?"), "cc", dev.compute_capability)


if __name__ == "__main__":
    main()
