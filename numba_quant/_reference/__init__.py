"""The arithmetic, once: scalar ``@njit`` functions that the CPU and the CUDA kernels both call."""
