"""The GGUF (llama.cpp / ggml) quantization types: block sizes, byte sizes, ids.

A numba-free table, read by the public module :mod:`numba_quant.gguf`, the kernels and
the tests.  The integer ids are ggml's ``enum ggml_type`` values, which gguf-py's
``gguf.GGMLQuantizationType`` repeats; gguf is never imported here: an enum member is
accepted through ``int()``.
"""
from collections import namedtuple

# Scratch given to every row quantizer (per GPU thread; the CPU's tasks get at least
# this), so that the row functions never allocate: float32 and int32 elements.  The
# largest need is the K-quants' search, 1024 of each per 256-value super-block.
GGUF_FSCRATCH = 2048
GGUF_ISCRATCH = 2048

# The super-block of the K-quants, IQ4_XS and the ternary types.
QK_K = 256

GGUFType = namedtuple(
    "GGUFType",
    [
        "name",          # gguf-py's GGMLQuantizationType member name
        "ggml_type",     # ggml's enum value
        "block_size",    # values per block
        "type_size",     # bytes per block
        "uses_imatrix",  # whether ggml's quantizer reads quant_weights
        "f16_fields",    # byte offsets of the float16 scales inside a block
    ],
)

_TYPES = (
    GGUFType("F16", 1, 1, 2, False, (0,)),
    GGUFType("BF16", 30, 1, 2, False, ()),
    GGUFType("Q8_0", 8, 32, 34, False, (0,)),
    GGUFType("Q4_0", 2, 32, 18, True, (0,)),
    GGUFType("Q4_1", 3, 32, 20, True, (0, 2)),
    GGUFType("Q5_0", 6, 32, 22, True, (0,)),
    GGUFType("Q5_1", 7, 32, 24, True, (0, 2)),
    GGUFType("Q2_K", 10, QK_K, 84, True, (80, 82)),
    GGUFType("Q3_K", 11, QK_K, 110, True, (108,)),
    GGUFType("Q4_K", 12, QK_K, 144, True, (0, 2)),
    GGUFType("Q5_K", 13, QK_K, 176, True, (0, 2)),
    GGUFType("Q6_K", 14, QK_K, 210, True, (208,)),
    GGUFType("IQ4_NL", 20, 32, 18, True, (0,)),
    GGUFType("IQ4_XS", 23, QK_K, 136, True, (0,)),
    GGUFType("TQ1_0", 34, QK_K, 54, False, (52,)),
    GGUFType("TQ2_0", 35, QK_K, 66, False, (64,)),
    GGUFType("MXFP4", 39, 32, 17, False, ()),
)

BY_NAME = {t.name: t for t in _TYPES}
BY_ID = {t.ggml_type: t for t in _TYPES}
NAMES = tuple(t.name for t in _TYPES)


def _known():
    return ", ".join(NAMES)


def lookup(qtype):
    """The :class:`GGUFType` of ``qtype``: a name (``"Q4_0"``, any case), ggml's integer
    id, or a ``gguf.GGMLQuantizationType`` member (read through ``int()``)."""
    if isinstance(qtype, GGUFType):
        return qtype
    if isinstance(qtype, str):
        found = BY_NAME.get(qtype.upper())
        if found is None:
            raise ValueError(f"qtype: unknown GGUF type {qtype!r}; known types: {_known()}")
        return found
    if isinstance(qtype, bool) or not hasattr(qtype, "__index__") and not hasattr(qtype, "__int__"):
        raise TypeError(
            f"qtype: expected a type name, ggml's integer id or a gguf.GGMLQuantizationType, "
            f"got {type(qtype).__name__} {qtype!r}")
    found = BY_ID.get(int(qtype))
    if found is None:
        label = getattr(qtype, "name", None)
        shown = f"{int(qtype)} ({label})" if label else f"{int(qtype)}"
        raise ValueError(
            f"qtype: GGUF type id {shown} is not supported; supported: "
            + ", ".join(f"{t.name}={t.ggml_type}" for t in _TYPES))
    return found


def row_size(qtype, n_per_row):
    """Bytes of one quantized row of ``n_per_row`` values (ggml's ``ggml_row_size``);
    ``n_per_row`` must be a whole number of blocks."""
    t = lookup(qtype)
    check_row_length(t, n_per_row)
    return n_per_row // t.block_size * t.type_size


def check_row_length(t, n_per_row):
    """A ValueError unless ``n_per_row`` is a positive multiple of ``t``'s block size."""
    if n_per_row <= 0 or n_per_row % t.block_size:
        raise ValueError(
            f"x: the last dimension (n_per_row = {n_per_row}) must be a positive multiple "
            f"of {t.name}'s block size {t.block_size}")
