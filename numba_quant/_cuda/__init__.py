"""The CUDA backend: GPU arrays in and out, ``@cuda.jit`` kernels; imported only when a GPU array arrives."""
