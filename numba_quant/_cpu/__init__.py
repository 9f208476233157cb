"""The CPU backend: numpy arrays in and out, ``@njit`` kernels (serial and parallel)."""
