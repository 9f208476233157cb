"""Integer codes shared by the public functions and the kernels of both backends.

Imported as ``codes`` everywhere (``ref`` is :mod:`numba_quant._reference.integer`).

Kept free of numba so that ``import numba_quant`` does not import it: numba loads with
the first computation.
"""

# One code per (formula, scheme) pair; cambricon ignores the scheme.
SYMMETRIC = 0
AFFINE = 1
CAMBRICON = 2

# What a reduction reports besides (min, max).
OK = 0
HAS_NONFINITE = 1  # nonfinite="raise" and a NaN or infinity was seen
EMPTY_CHANNEL = 2  # nonfinite="omit" and some channel has no finite element
BAD_PARAMETERS = 3  # a scale or zero point that quantization does not take

# What an element-wise quantization kernel writes.
FAKE = 0  # the de-quantized value (fake quantization)
CODE = 1  # the code (quantization; float or integer output)
DECODE = 2  # the value of a code given as input (de-quantization)

# Histogram grids of the calibrators (numba_quant._reference.hist).
POW2_GRID = 0
LINEAR_GRID = 1
# both grids in one pass (the CPU kernel; counts[0] power-of-two, counts[1] linear)
BOTH_GRIDS = 2
# The exponent of a channel whose values are all zero: every value lies in bin ``half``
# at any exponent, and merging keeps it there.
ZERO_EXPONENT = -100000
