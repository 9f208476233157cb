"""Loaded by tools/gpu_check.sh's Python processes only (on PYTHONPATH there).

numba-cuda 0.30.4 calls np.row_stack, which numpy 2.5 removed: restore the alias.
"""
import numpy
if not hasattr(numpy, "row_stack"):
    numpy.row_stack = numpy.vstack
