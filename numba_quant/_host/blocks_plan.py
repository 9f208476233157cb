"""The plan of a block-wise call: codes, number formats and the 4-D view of the data.

Kept free of numba so that it imports with ``numba_quant``.

The kernels see every input as a 4-D array with a block size per axis.  Axes of length
one are dropped, and neighbouring axes are merged where the memory allows it and the
blocks stay the same sets of elements (the inner axis blocked whole, or the outer axis
not blocked and the inner axis divided evenly); leading axes of length one pad the
result to four axes.  A (4096, 24576) array in blocks of (1, 128) thus becomes one
axis of 1e8 elements in blocks of 128, and the kernels walk contiguous runs.
"""
import numpy as np

# Mapping types (torchao's MappingType), as kernel codes.
ASYMMETRIC = 0
SYMMETRIC = 1
SYMMETRIC_NO_CLIPPING_ERR = 2
MAPPING_TYPES = {"asymmetric": ASYMMETRIC, "symmetric": SYMMETRIC,
                 "symmetric_no_clipping_err": SYMMETRIC_NO_CLIPPING_ERR}

# Number formats, relative to the type T the kernel computes in (float32 or float64):
# NATIVE is T itself; the others are narrower formats emulated by rounding a T value to
# them after each operation (torch's CPU arithmetic in bfloat16/float16 rounds each
# operation's float32 result; float32 from float64 is the same idea).
NATIVE = 0
BF16 = 1
F16 = 2
F32 = 3

# The largest number of axes the kernels take.
AXES = 4


def bfloat16_dtype():
    """``ml_dtypes.bfloat16`` as a numpy dtype, or None where ml_dtypes is not installed."""
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes comes with the test extra
        return None
    return np.dtype(ml_dtypes.bfloat16)


def is_bfloat16(dtype):
    bf16 = bfloat16_dtype()
    return bf16 is not None and np.dtype(dtype) == bf16


def float_kind(dtype):
    """"bfloat16", "float16", "float32" or "float64" for a float dtype, else None."""
    dtype = np.dtype(dtype)
    if is_bfloat16(dtype):
        return "bfloat16"
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return {2: "float16", 4: "float32", 8: "float64"}[dtype.itemsize]
    return None


def compute_type(*kinds):
    """The kernel's float type T for the float kinds involved: float64 if any is float64."""
    return np.dtype(np.float64) if "float64" in kinds else np.dtype(np.float32)


def fmt(kind, T):
    """The format code of a float kind relative to the compute type T."""
    if kind == "bfloat16":
        return BF16
    if kind == "float16":
        return F16
    if kind == "float32" and T == np.float64:
        return F32
    return NATIVE


def promote(a, b):
    """torch's promotion of two float kinds (bfloat16 with float16 gives float32)."""
    if a == b:
        return a
    order = ("float16", "float32", "float64")
    if "bfloat16" in (a, b):
        other = b if a == "bfloat16" else a
        return "float32" if other == "float16" else other
    return max(a, b, key=order.index)


def grid_shape(shape, block_size):
    """The full-rank parameter shape: ``ceil(d / b)`` per axis."""
    return tuple(-(-d // b) for d, b in zip(shape, block_size))


def torchao_shape(shape, block_size):
    """torchao's parameter shape (keepdim=False): an axis blocked whole (b == d > 1) is dropped."""
    return tuple(-(-d // b) for d, b in zip(shape, block_size) if not (b == d and b > 1))


def canonical(shape, block_size, strides):
    """``(shape4, block4, strides4)`` of a 4-D view, or None where more axes remain.

    ``strides`` is a list of stride tuples (one per array that takes the same view,
    e.g. the input and the codes); axes merge only where every array allows it.
    """
    axes = [(d, b, [s[i] for s in strides]) for i, (d, b) in enumerate(zip(shape, block_size))
            if d != 1]
    merged = []
    for d, b, st in axes:
        if merged:
            pd, pb, pst = merged[-1]
            contiguous = all(ps == s * d for ps, s in zip(pst, st))
            if contiguous and (b == d or (pb == 1 and d % b == 0)):
                merged[-1] = (pd * d, pb * d if b == d else b, st)
                continue
        merged.append((d, b, st))
    if len(merged) > AXES:
        return None
    pad = [(1, 1, [0] * len(strides))] * (AXES - len(merged))
    merged = pad + merged
    return (tuple(m[0] for m in merged), tuple(m[1] for m in merged),
            [tuple(m[2][k] for m in merged) for k in range(len(strides))])
